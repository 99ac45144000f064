import Foundation

/// Writes a `JSONValue` as block-style YAML, deterministically: object keys sorted, two-space
/// indentation, sequences of mappings written `- key: value` at the parent's indentation.
///
/// Strings are written plain only when YAML would read them back as the same string (no
/// `true`/`null`/number look-alikes, no indicator characters); multi-line strings use a literal
/// block (`|` or `|-`); anything else is double-quoted with JSON escapes, which YAML reads
/// identically. It emits only; parsing YAML is the YAML module's job.
///
/// Example: `["a": [1, "x: y"], "b": [:]]` becomes
/// ```
/// a:
/// - 1
/// - "x: y"
/// b: {}
/// ```
public enum YAMLEmitter {
    /// One document, ending in a newline.
    public static func emit(_ value: JSONValue) -> String {
        var out = ""
        switch value {
        case .object(let o) where !o.isEmpty: writeObject(o, indent: 0, into: &out)
        case .array(let a) where !a.isEmpty: writeArray(a, indent: 0, into: &out)
        default: out = scalar(value, indent: 2) + "\n"
        }
        return out
    }

    /// Several documents separated by `---` lines.
    public static func emitDocuments(_ values: [JSONValue]) -> String {
        values.map { "---\n" + emit($0) }.joined()
    }

    private static func pad(_ n: Int) -> String { String(repeating: " ", count: n) }

    private static func isCollection(_ v: JSONValue) -> Bool {
        switch v {
        case .object(let o): return !o.isEmpty
        case .array(let a): return !a.isEmpty
        default: return false
        }
    }

    private static func writeObject(_ o: [String: JSONValue], indent: Int, into out: inout String) {
        for key in o.keys.sorted() {
            let value = o[key]!
            out += pad(indent) + quoteKey(key) + ":"
            switch value {
            case .object(let child) where !child.isEmpty:
                out += "\n"
                writeObject(child, indent: indent + 2, into: &out)
            case .array(let child) where !child.isEmpty:
                out += "\n"
                writeArray(child, indent: indent, into: &out)
            default:
                out += " " + scalar(value, indent: indent + 2) + "\n"
            }
        }
    }

    private static func writeArray(_ a: [JSONValue], indent: Int, into out: inout String) {
        for item in a {
            switch item {
            case .object(let child) where !child.isEmpty:
                // First key on the dash line, the rest aligned under it.
                var nested = ""
                writeObject(child, indent: indent + 2, into: &nested)
                out += pad(indent) + "- " + nested.dropFirst(indent + 2)
            case .array(let child) where !child.isEmpty:
                out += pad(indent) + "-\n"
                writeArray(child, indent: indent + 2, into: &out)
            default:
                out += pad(indent) + "- " + scalar(item, indent: indent + 2) + "\n"
            }
        }
    }

    private static func scalar(_ v: JSONValue, indent: Int) -> String {
        switch v {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d):
            if d.isFinite && d == d.rounded() && abs(d) < 1e15 { return String(Int64(d)) + ".0" }
            return d.isFinite ? "\(d)" : (d.isNaN ? ".nan" : (d > 0 ? ".inf" : "-.inf"))
        case .string(let s): return quoteString(s, indent: indent)
        case .array: return "[]"
        case .object: return "{}"
        }
    }

    private static func quoteKey(_ k: String) -> String {
        isPlainSafe(k) ? k : jsonQuoted(k)
    }

    private static func quoteString(_ s: String, indent: Int) -> String {
        if isPlainSafe(s) { return s }
        if let block = literalBlock(s, indent: indent) { return block }
        return jsonQuoted(s)
    }

    /// A literal block scalar for multi-line text, when it round-trips exactly.
    private static func literalBlock(_ s: String, indent: Int) -> String? {
        guard s.contains("\n") else { return nil }
        var body = s
        let chomp: String
        if body.hasSuffix("\n") {
            body.removeLast()
            if body.hasSuffix("\n") { return nil }  // several trailing newlines: keep it quoted
            chomp = "|"
        } else {
            chomp = "|-"
        }
        let lines = body.split(separator: "\n", omittingEmptySubsequences: false)
        guard let first = lines.first, !first.isEmpty, first.first != " ", first.first != "\t" else { return nil }
        for line in lines {
            if line.last == " " || line.last == "\t" { return nil }
            if line.unicodeScalars.contains(where: { $0 != "\t" && needsEscape($0) }) { return nil }
        }
        let prefix = pad(indent)
        return chomp + "\n" + lines.map { $0.isEmpty ? "" : prefix + $0 }.joined(separator: "\n")
    }

    private static let reserved: Set<String> = [
        "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE",
        "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF", "y", "Y", "n", "N",
    ]

    /// Plain (unquoted) only for strings YAML 1.1 and 1.2 both read back as this same string:
    /// a conservative character set, no indicator at the start, no `: ` or ` #` inside, and
    /// nothing that looks like a boolean, null or number.
    static func isPlainSafe(_ s: String) -> Bool {
        if reserved.contains(s) { return false }
        let scalars = Array(s.unicodeScalars)
        guard let first = scalars.first, let last = scalars.last else { return false }
        func isAlnum(_ u: Unicode.Scalar) -> Bool {
            (u >= "a" && u <= "z") || (u >= "A" && u <= "Z") || (u >= "0" && u <= "9")
        }
        guard isAlnum(first) || first == "/" || first == "_" else { return false }
        guard last != " " else { return false }
        for u in scalars where !(isAlnum(u) || "-_./ ()$,=+@<>^".unicodeScalars.contains(u)) {
            return false
        }
        if s.contains(" #") { return false }
        return !looksNumeric(s)
    }

    /// Anything a YAML 1.1 or 1.2 reader might take for a number, timestamp or sexagesimal.
    private static func looksNumeric(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first else { return false }
        let digitLike = (first >= "0" && first <= "9") || first == "." || first == "+" || first == "-"
        if !digitLike { return false }
        // Conservative: quote every string starting like a number unless it has a letter
        // other than e/E/x/o/b and the usual number punctuation.
        let letters = s.unicodeScalars.filter { ($0 >= "a" && $0 <= "z") || ($0 >= "A" && $0 <= "Z") }
        if letters.isEmpty { return true }
        return letters.allSatisfy { "eExXoObBinfINFaA".unicodeScalars.contains($0) }
    }

    /// Control characters, and the characters YAML 1.1 treats as line breaks or a byte-order mark.
    private static func needsEscape(_ u: Unicode.Scalar) -> Bool {
        u.value < 0x20 || (u.value >= 0x7F && u.value <= 0x9F) || u.value == 0x2028 || u.value == 0x2029 || u.value == 0xFEFF
    }

    static func jsonQuoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if needsEscape(u) {
                    out += String(format: "\\u%04X", u.value)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
