/// Accumulates indented Swift source lines.
struct Code {
    private(set) var lines: [String] = []
    private var depth = 0

    mutating func line(_ text: String = "") {
        lines.append(text.isEmpty ? "" : String(repeating: "    ", count: depth) + text)
    }

    /// `header {` … `}` with the body indented.
    /// An `else …`/`catch` header joins the preceding closing brace: `} else {`.
    mutating func block(_ header: String, _ body: (inout Code) -> Void) {
        let indentation = String(repeating: "    ", count: depth)
        if (header.hasPrefix("else") || header.hasPrefix("catch")), lines.last == indentation + "}" {
            lines[lines.count - 1] = indentation + "} " + header + " {"
        } else {
            line(header + " {")
        }
        depth += 1
        body(&self)
        depth -= 1
        line("}")
    }

    /// Runs `body` inside `if condition {}` unless the condition is `.always`; emits nothing for `.never`.
    mutating func when(_ condition: Condition, _ body: (inout Code) -> Void) {
        switch condition {
        case .always: body(&self)
        case .never: return
        case let .when(test): block("if \(test)", body)
        }
    }

    mutating func indent() { depth += 1 }
    mutating func dedent() { depth -= 1 }

    var text: String { lines.joined(separator: "\n") + "\n" }
}
