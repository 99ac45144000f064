import KubeAPI

/// One node of an OpenAPI v3 schema as the Kubernetes API server accepts it (structural:
/// every node typed, unknown fields only where `x-kubernetes-preserve-unknown-fields` says so).
///
/// Object schemas are built from a type's `CodingKeys`, with a closure that must `switch` over
/// every key: adding a field to a type without describing it in the schema does not compile,
/// and a key the type does not have cannot be described. That is what keeps the generated CRD
/// and the Swift types from drifting apart.
public struct Schema: Sendable, Equatable {
    public private(set) var json: [String: JSONValue]

    init(_ json: [String: JSONValue]) { self.json = json }

    public static func string(_ description: String) -> Schema {
        Schema(["type": "string", "description": .string(description)])
    }

    public static func int32(_ description: String) -> Schema {
        Schema(["type": "integer", "format": "int32", "description": .string(description)])
    }

    public static func int64(_ description: String) -> Schema {
        Schema(["type": "integer", "format": "int64", "description": .string(description)])
    }

    public static func boolean(_ description: String) -> Schema {
        Schema(["type": "boolean", "description": .string(description)])
    }

    /// A quantity such as `500m` or `1Gi` (an int-or-string in Kubernetes' own schemas).
    public static func quantity(_ description: String) -> Schema {
        Schema([
            "description": .string(description), "x-kubernetes-int-or-string": true,
            "anyOf": [["type": "integer"], ["type": "string"]],
            "pattern": "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$",
        ])
    }

    public static func stringMap(_ description: String) -> Schema {
        Schema(["type": "object", "description": .string(description), "additionalProperties": ["type": "string"]])
    }

    public static func map(of value: Schema, _ description: String) -> Schema {
        Schema(["type": "object", "description": .string(description), "additionalProperties": .object(value.json)])
    }

    public static func array(of item: Schema, _ description: String) -> Schema {
        Schema(["type": "array", "description": .string(description), "items": .object(item.json)])
    }

    /// An object whose contents the API server keeps as given (used for `affinity`).
    public static func opaqueObject(_ description: String) -> Schema {
        Schema(["type": "object", "description": .string(description), "x-kubernetes-preserve-unknown-fields": true])
    }

    /// An object with one property per coding key; `property` must cover every key.
    public static func object<Key: CodingKey & CaseIterable>(
        _ keys: Key.Type, _ description: String, required: [Key] = [], property: (Key) -> Schema
    ) -> Schema {
        var properties: [String: JSONValue] = [:]
        for key in Key.allCases {
            properties[key.stringValue] = .object(property(key).json)
        }
        var json: [String: JSONValue] = ["type": "object", "description": .string(description), "properties": .object(properties)]
        if !required.isEmpty { json["required"] = .array(required.map { .string($0.stringValue) }) }
        return Schema(json)
    }

    public func defaulted(_ value: JSONValue) -> Schema { with("default", value) }
    public func oneOf(_ values: [String]) -> Schema { with("enum", .array(values.map { .string($0) })) }
    public func minimum(_ n: Int64) -> Schema { with("minimum", .int(n)) }
    public func maximum(_ n: Int64) -> Schema { with("maximum", .int(n)) }
    public func minLength(_ n: Int64) -> Schema { with("minLength", .int(n)) }
    public func maxLength(_ n: Int64) -> Schema { with("maxLength", .int(n)) }
    public func maxItems(_ n: Int64) -> Schema { with("maxItems", .int(n)) }
    public func pattern(_ regex: String) -> Schema { with("pattern", .string(regex)) }

    /// Adds a CEL rule (`x-kubernetes-validations`) evaluated by the API server against this node.
    public func rule(_ rule: String, message: String) -> Schema {
        var copy = self
        var rules: [JSONValue] = []
        if case .array(let existing)? = json["x-kubernetes-validations"] { rules = existing }
        rules.append(["rule": .string(rule), "message": .string(message)])
        copy.json["x-kubernetes-validations"] = .array(rules)
        return copy
    }

    private func with(_ key: String, _ value: JSONValue) -> Schema {
        var copy = self
        copy.json[key] = value
        return copy
    }
}

/// A type that describes its own JSON shape for the CRD's OpenAPI schema.
public protocol SchemaDescribed {
    static var schema: Schema { get }
}
