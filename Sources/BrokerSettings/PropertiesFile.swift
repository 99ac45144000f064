/// The broker's properties file (Java `.properties` syntax, the subset Kafka users write):
/// `key=value` or `key: value` lines, `#`/`!` comments, blank lines, a trailing backslash
/// continues a line, and `\\`, `\n`, `\r`, `\t`, `\=`, `\:`, `\#`, `\!`, `\ ` escapes.
///
/// The operator writes the file with `encode`, the broker reads it with `decode`: one codec, so
/// what is rendered is what is read. Example: `encode(["a b": "x=y"])` is `"a\\ b=x=y\n"`, and
/// `decode` of that gives back `["a b": "x=y"]`.
public enum PropertiesFile {
    public struct DecodeError: Error, Sendable, Equatable, CustomStringConvertible {
        public let line: Int
        public let reason: String
        public var description: String { "line \(line): \(reason)" }
    }

    /// One `key=value` line per entry, keys sorted; a `header` comment line first when given.
    public static func encode(_ entries: [String: String], header: String? = nil) -> String {
        var text = header.map { "# " + $0 + "\n" } ?? ""
        for (k, v) in entries.sorted(by: { $0.key < $1.key }) {
            text += escape(k, isKey: true) + "=" + escape(v, isKey: false) + "\n"
        }
        return text
    }

    public static func escape(_ s: String, isKey: Bool) -> String {
        var out = ""
        for (i, c) in s.enumerated() {
            switch c {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "=", ":", "#", "!", " ":
                // Separators and comment marks are literal in a key only when escaped; in a
                // value only a leading space would be lost.
                if isKey || (c == " " && i == 0) { out += "\\" }
                out.append(c)
            default: out.append(c)
            }
        }
        return out
    }

    public static func decode(_ text: String) throws(DecodeError) -> [String: String] {
        var out: [String: String] = [:]
        var pending = ""
        var lineNumber = 0
        var startLine = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = String(raw)
            if line.hasSuffix("\r") { line.removeLast() }
            line = trimLeading(line)
            if pending.isEmpty && (line.isEmpty || line.hasPrefix("#") || line.hasPrefix("!")) { continue }
            if pending.isEmpty { startLine = lineNumber }
            if endsWithContinuation(line) {
                pending += String(line.dropLast())
                continue
            }
            line = pending + line
            pending = ""
            let (key, value) = try split(line, lineNumber: startLine)
            out[key] = value
        }
        if !pending.isEmpty {
            let (key, value) = try split(pending, lineNumber: startLine)
            out[key] = value
        }
        return out
    }

    static func trimLeading(_ s: String) -> String {
        String(s.drop(while: { $0 == " " || $0 == "\t" || $0 == "\u{0C}" }))
    }

    /// An odd number of trailing backslashes continues the line.
    static func endsWithContinuation(_ s: String) -> Bool {
        var n = 0
        for c in s.reversed() {
            guard c == "\\" else { break }
            n += 1
        }
        return n % 2 == 1
    }

    static func split(_ line: String, lineNumber: Int) throws(DecodeError) -> (String, String) {
        var key = ""
        var rest = Substring(line)
        var found = false
        var escaped = false
        while let c = rest.first {
            rest = rest.dropFirst()
            if escaped {
                key.append(unescape(c))
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else if c == "=" || c == ":" {
                found = true
                break
            } else {
                key.append(c)
            }
        }
        guard found else { throw DecodeError(line: lineNumber, reason: "expected key=value, found \(line)") }
        let trimmedKey = key.trimmingBlanks
        guard !trimmedKey.isEmpty else { throw DecodeError(line: lineNumber, reason: "empty key") }
        var value = ""
        var keep = 0  // characters up to the last escaped one, which trailing-blank trimming keeps
        escaped = false
        for c in trimLeading(String(rest)) {
            if escaped {
                value.append(unescape(c))
                keep = value.count
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else {
                value.append(c)
            }
        }
        // Trailing blanks are not significant (Kafka users rarely mean them; an escaped one is kept).
        while value.count > keep, let last = value.last, last == " " || last == "\t" { value.removeLast() }
        return (trimmedKey, value)
    }

    static func unescape(_ c: Character) -> Character {
        switch c {
        case "n": "\n"
        case "r": "\r"
        case "t": "\t"
        default: c
        }
    }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    var trimmingBlanks: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
