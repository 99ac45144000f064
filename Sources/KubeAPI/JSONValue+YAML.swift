import YAML

extension JSONValue {
    /// A YAML node as JSON, with YAML 1.2 core-schema typing of plain scalars (quoted scalars
    /// are always strings): null, true/false, integers, floats; everything else a string.
    public init(yaml node: YAMLNode) {
        self = convert(node)
    }
}

private func convert(_ node: YAMLNode) -> JSONValue {
    switch node {
    case .null:
        return .null
    case .sequence(let items):
        return .array(items.map(convert))
    case .mapping(let pairs):
        var object: [String: JSONValue] = [:]
        for (k, v) in pairs { object[k] = convert(v) }
        return .object(object)
    case .scalar(let s, let quoted):
        if quoted { return .string(s) }
        switch s {
        case "", "~", "null", "Null", "NULL": return .null
        case "true", "True", "TRUE": return .bool(true)
        case "false", "False", "FALSE": return .bool(false)
        default: break
        }
        if let i = Int64(s) { return .int(i) }
        if let first = s.unicodeScalars.first, "0123456789+-.".unicodeScalars.contains(first),
            s.allSatisfy({ "0123456789+-.eE".contains($0) }), let d = Double(s)
        {
            return .double(d)
        }
        return .string(s)
    }
}
