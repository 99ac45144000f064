/// Swift naming for schema names.
enum Naming {
    static let keywords: Set<String> = [
        "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import", "init",
        "inout", "internal", "let", "open", "operator", "private", "precedencegroup", "protocol", "public",
        "rethrows", "static", "struct", "subscript", "typealias", "var", "break", "case", "catch", "continue",
        "default", "defer", "do", "else", "fallthrough", "for", "guard", "if", "in", "repeat", "return",
        "throw", "switch", "where", "while", "Any", "as", "await", "false", "is", "nil", "self", "Self",
        "super", "throws", "true", "try", "_",
    ]

    /// `TopicId` → `topicId`, `ThrottleTimeMs` → `throttleTimeMs`, `KRaftVersion` → `kRaftVersion`:
    /// only the first character is lowered, mechanically.
    static func lowerCamel(_ name: String) -> String {
        guard let first = name.first else { return name }
        return first.lowercased() + name.dropFirst()
    }

    /// A property or case name, backticked when it is a Swift keyword.
    static func identifier(_ schemaName: String) -> String {
        let name = lowerCamel(schemaName)
        return keywords.contains(name) ? "`\(name)`" : name
    }

    /// The name without backticks, for messages and error texts.
    static func plain(_ schemaName: String) -> String { lowerCamel(schemaName) }

    static func stringLiteral(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += "\\u{\(String(scalar.value, radix: 16))}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// Text safe inside a `///` comment line.
    static func docText(_ s: String) -> String {
        s.replacingOccurrences(of: "\n", with: " ")
    }
}
