import CYAML

/// A parsed YAML node. Scalars keep their text and whether they were quoted, so a caller can
/// tell the string `"true"` from the boolean `true`.
///
/// Example: `try YAMLNode.parse("a: [1, 'x']")` gives
/// `.mapping([("a", .sequence([.scalar("1", quoted: false), .scalar("x", quoted: true)]))])`.
public indirect enum YAMLNode: Sendable, Equatable {
    case scalar(String, quoted: Bool)
    case sequence([YAMLNode])
    /// Keys in document order; duplicate keys are rejected while parsing.
    case mapping([(String, YAMLNode)])
    case null

    public static func == (lhs: YAMLNode, rhs: YAMLNode) -> Bool {
        switch (lhs, rhs) {
        case let (.scalar(a, qa), .scalar(b, qb)): return a == b && qa == qb
        case let (.sequence(a), .sequence(b)): return a == b
        case let (.mapping(a), .mapping(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case (.null, .null): return true
        default: return false
        }
    }

    /// The value for `key` in a mapping, nil otherwise.
    public subscript(key: String) -> YAMLNode? {
        guard case let .mapping(pairs) = self else { return nil }
        return pairs.first { $0.0 == key }?.1
    }

    /// A scalar's text (nil for non-scalars and null).
    public var string: String? {
        if case let .scalar(s, _) = self { return s }
        return nil
    }

    /// A plain scalar read as a YAML 1.1/1.2 core boolean.
    public var bool: Bool? {
        guard case let .scalar(s, quoted) = self, !quoted else { return nil }
        switch s {
        case "true", "True", "TRUE", "yes", "Yes", "on", "On": return true
        case "false", "False", "FALSE", "no", "No", "off", "Off": return false
        default: return nil
        }
    }

    public var int: Int? {
        guard case let .scalar(s, quoted) = self, !quoted else { return nil }
        return Int(s)
    }

    public var array: [YAMLNode]? {
        if case let .sequence(items) = self { return items }
        return nil
    }

    public var pairs: [(String, YAMLNode)]? {
        if case let .mapping(p) = self { return p }
        return nil
    }

    /// Parses a single YAML document (an empty input is `.null`).
    public static func parse(_ text: String) throws(YAMLError) -> YAMLNode {
        let documents = try parseAll(text)
        if documents.count > 1 { throw .multipleDocuments(count: documents.count) }
        return documents.first ?? .null
    }

    /// Parses every document of a stream (`---` separated).
    public static func parseAll(_ text: String) throws(YAMLError) -> [YAMLNode] {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { throw .parser(message: "cannot initialise libyaml", line: 0, column: 0) }
        defer { yaml_parser_delete(&parser) }
        let bytes = Array(text.utf8)
        return try bytes.withUnsafeBufferPointer { (buffer) throws(YAMLError) -> [YAMLNode] in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var builder = Builder()
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else {
                    let message = parser.problem.map { String(cString: $0) } ?? "unknown error"
                    throw .parser(message: message, line: Int(parser.problem_mark.line) + 1, column: Int(parser.problem_mark.column) + 1)
                }
                defer { yaml_event_delete(&event) }
                if event.type == YAML_STREAM_END_EVENT { break }
                try builder.handle(&event)
            }
            return builder.documents
        }
    }
}

/// Errors of the YAML module; each says where in the input it happened.
public enum YAMLError: Error, Equatable, CustomStringConvertible {
    case parser(message: String, line: Int, column: Int)
    case duplicateKey(String, line: Int)
    case nonScalarKey(line: Int)
    case unsupportedAlias(line: Int)
    case multipleDocuments(count: Int)

    public var description: String {
        switch self {
        case let .parser(message, line, column): return "YAML syntax error at line \(line), column \(column): \(message)"
        case let .duplicateKey(key, line): return "duplicate key '\(key)' in YAML mapping at line \(line)"
        case let .nonScalarKey(line): return "YAML mapping key at line \(line) is not a scalar"
        case let .unsupportedAlias(line): return "YAML aliases (*name) are not supported (line \(line))"
        case let .multipleDocuments(count): return "expected one YAML document, found \(count)"
        }
    }
}

/// Turns libyaml's event stream into nodes with an explicit stack.
private struct Builder {
    enum Frame {
        case sequence([YAMLNode])
        case mapping([(String, YAMLNode)], pendingKey: String?)
    }

    var documents: [YAMLNode] = []
    var stack: [Frame] = []
    var current: YAMLNode?

    mutating func handle(_ event: inout yaml_event_t) throws(YAMLError) {
        let line = Int(event.start_mark.line) + 1
        switch event.type {
        case YAML_DOCUMENT_START_EVENT:
            current = nil
        case YAML_DOCUMENT_END_EVENT:
            documents.append(current ?? .null)
        case YAML_SEQUENCE_START_EVENT:
            stack.append(.sequence([]))
        case YAML_MAPPING_START_EVENT:
            stack.append(.mapping([], pendingKey: nil))
        case YAML_SEQUENCE_END_EVENT:
            guard case let .sequence(items)? = stack.popLast() else { return }
            try add(.sequence(items), line: line)
        case YAML_MAPPING_END_EVENT:
            guard case let .mapping(pairs, _)? = stack.popLast() else { return }
            try add(.mapping(pairs), line: line)
        case YAML_SCALAR_EVENT:
            let scalar = event.data.scalar
            let text = String(decoding: UnsafeBufferPointer(start: scalar.value, count: scalar.length), as: UTF8.self)
            let quoted = scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE || scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE
                || scalar.style == YAML_LITERAL_SCALAR_STYLE || scalar.style == YAML_FOLDED_SCALAR_STYLE
            let isNull = !quoted && (text == "" || text == "~" || text == "null" || text == "Null" || text == "NULL")
            try add(isNull ? .null : .scalar(text, quoted: quoted), line: line)
        case YAML_ALIAS_EVENT:
            throw .unsupportedAlias(line: line)
        default:
            break
        }
    }

    private mutating func add(_ node: YAMLNode, line: Int) throws(YAMLError) {
        guard let top = stack.popLast() else {
            current = node
            return
        }
        switch top {
        case var .sequence(items):
            items.append(node)
            stack.append(.sequence(items))
        case .mapping(var pairs, let pendingKey):
            if let key = pendingKey {
                pairs.append((key, node))
                stack.append(.mapping(pairs, pendingKey: nil))
            } else {
                let key: String
                switch node {
                case let .scalar(s, _): key = s
                case .null: key = ""
                default: throw .nonScalarKey(line: line)
                }
                if pairs.contains(where: { $0.0 == key }) { throw .duplicateKey(key, line: line) }
                stack.append(.mapping(pairs, pendingKey: key))
            }
        }
    }
}
