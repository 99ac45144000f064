/// A minimal XML reader for S3's small response documents: elements, text and the five
/// predefined entities plus numeric references. Attributes, comments, processing instructions
/// and DOCTYPE are skipped; namespaces are ignored (names are kept as written).
struct XMLElement: Sendable {
    var name: String
    var children: [XMLElement] = []
    var text: String = ""

    func child(_ name: String) -> XMLElement? { children.first { $0.name == name } }
    func children(_ name: String) -> [XMLElement] { children.filter { $0.name == name } }
    /// The text of the first child named `name`.
    func value(_ name: String) -> String? { child(name)?.text }

    struct ParseError: Error, CustomStringConvertible {
        var offset: Int
        var reason: String
        var description: String { "malformed XML at byte \(offset): \(reason)" }
    }

    static func parse(_ bytes: [UInt8]) throws -> XMLElement {
        var parser = Parser(bytes: bytes)
        return try parser.document()
    }

    private struct Parser {
        let bytes: [UInt8]
        var i = 0

        func fail(_ reason: String) -> ParseError { ParseError(offset: i, reason: reason) }

        func starts(with text: String) -> Bool {
            let t = Array(text.utf8)
            return i + t.count <= bytes.count && Array(bytes[i..<(i + t.count)]) == t
        }

        mutating func skip(past text: String) throws {
            let t = Array(text.utf8)
            while i + t.count <= bytes.count {
                if Array(bytes[i..<(i + t.count)]) == t {
                    i += t.count
                    return
                }
                i += 1
            }
            throw fail("missing \(text)")
        }

        mutating func skipMisc() throws {
            while i < bytes.count {
                if bytes[i] == 32 || bytes[i] == 9 || bytes[i] == 10 || bytes[i] == 13 {
                    i += 1
                } else if starts(with: "<?") {
                    try skip(past: "?>")
                } else if starts(with: "<!--") {
                    try skip(past: "-->")
                } else if starts(with: "<!") {
                    try skip(past: ">")
                } else {
                    return
                }
            }
        }

        mutating func document() throws -> XMLElement {
            try skipMisc()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "<") else { throw fail("no root element") }
            return try element()
        }

        mutating func name() throws -> String {
            let start = i
            while i < bytes.count, ![32, 9, 10, 13, UInt8(ascii: ">"), UInt8(ascii: "/"), UInt8(ascii: "=")].contains(bytes[i]) { i += 1 }
            guard i > start else { throw fail("expected a name") }
            return String(decoding: bytes[start..<i], as: UTF8.self)
        }

        /// Parses `<name ...>children</name>` or `<name .../>` starting at `<`.
        mutating func element() throws -> XMLElement {
            i += 1
            var current = XMLElement(name: try name())
            // Attributes: skip, honouring quotes.
            while true {
                guard i < bytes.count else { throw fail("unterminated start tag <\(current.name)") }
                let c = bytes[i]
                if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                    i += 1
                    while i < bytes.count && bytes[i] != c { i += 1 }
                    i += 1
                } else if c == UInt8(ascii: "/") && i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: ">") {
                    i += 2
                    return current
                } else if c == UInt8(ascii: ">") {
                    i += 1
                    break
                } else {
                    i += 1
                }
            }
            var text: [UInt8] = []
            while true {
                guard i < bytes.count else { throw fail("unterminated element <\(current.name)>") }
                if starts(with: "</") {
                    i += 2
                    let closing = try name()
                    guard closing == current.name else { throw fail("</\(closing)> closes <\(current.name)>") }
                    try skip(past: ">")
                    current.text = try decodeEntities(text)
                    return current
                } else if starts(with: "<![CDATA[") {
                    i += 9
                    let start = i
                    try skip(past: "]]>")
                    text += bytes[start..<(i - 3)]
                } else if starts(with: "<!--") || starts(with: "<?") {
                    try skipMisc()
                } else if bytes[i] == UInt8(ascii: "<") {
                    current.children.append(try element())
                } else {
                    text.append(bytes[i])
                    i += 1
                }
            }
        }

        func decodeEntities(_ raw: [UInt8]) throws -> String {
            guard raw.contains(UInt8(ascii: "&")) else { return String(decoding: raw, as: UTF8.self) }
            var out: [UInt8] = []
            var j = 0
            while j < raw.count {
                guard raw[j] == UInt8(ascii: "&") else {
                    out.append(raw[j])
                    j += 1
                    continue
                }
                guard let end = raw[j...].firstIndex(of: UInt8(ascii: ";")) else { throw fail("unterminated entity") }
                let entity = String(decoding: raw[(j + 1)..<end], as: UTF8.self)
                switch entity {
                case "amp": out.append(UInt8(ascii: "&"))
                case "lt": out.append(UInt8(ascii: "<"))
                case "gt": out.append(UInt8(ascii: ">"))
                case "quot": out.append(UInt8(ascii: "\""))
                case "apos": out.append(UInt8(ascii: "'"))
                default:
                    let scalarValue: UInt32?
                    if entity.hasPrefix("#x") { scalarValue = UInt32(entity.dropFirst(2), radix: 16) }
                    else if entity.hasPrefix("#") { scalarValue = UInt32(entity.dropFirst(1)) }
                    else { scalarValue = nil }
                    guard let scalarValue, let scalar = Unicode.Scalar(scalarValue) else { throw fail("unknown entity &\(entity);") }
                    out += Array(String(Character(scalar)).utf8)
                }
                j = end + 1
            }
            return String(decoding: out, as: UTF8.self)
        }
    }
}

/// Escapes text for an XML element's content.
func xmlEscape(_ text: String) -> String {
    var out = ""
    for c in text.unicodeScalars {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        default: out.unicodeScalars.append(c)
        }
    }
    return out
}
