import Foundation

/// A JSON document as a value: the shape of opaque Kubernetes fields (`affinity`, CRD schemas)
/// and the common currency of the YAML emitter.
///
/// Invariant: numbers that are integral in the source decode as `.int`; only numbers with a
/// fraction or exponent that do not fit an `Int64` decode as `.double`. Objects are unordered;
/// every serialisation of them sorts keys, so output is deterministic.
public enum JSONValue: Sendable, Hashable, Codable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {  // type probe, not an I/O path
            self = .bool(b)
        } else if let i = try? c.decode(Int64.self) {
            self = .int(i)
        } else if let d = try? c.decode(Double.self) {
            self = .double(d)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    /// The value of `key` when this is an object.
    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// Converts any `Encodable` (a Kubernetes object, a spec) into a `JSONValue` through the
    /// same encoder used on the wire, so nil fields are absent here too.
    public init<T: Encodable>(encoding value: T) throws(KubeAPIError) {
        let data = try KubeJSON.encode(value)
        self = try KubeJSON.decode(JSONValue.self, from: data)
    }

    /// Decodes this value as `T` (e.g. a typed object from a list of mixed objects).
    public func decode<T: Decodable>(as type: T.Type) throws(KubeAPIError) -> T {
        try KubeJSON.decode(type, from: KubeJSON.encode(self))
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}
