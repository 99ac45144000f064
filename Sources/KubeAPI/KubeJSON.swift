import Foundation

/// The one error type of the KubeAPI module. Each case names what failed and with which input.
public enum KubeAPIError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A value of `type` could not be encoded.
    case encode(type: String, detail: String)
    /// Bytes could not be decoded as `type`; `detail` carries the decoder's coding path.
    case decode(type: String, detail: String)
    /// The API server answered `verb` on `resource` (`statefulsets.apps`) `namespace/name` with
    /// an error status; `reason` and `message` come from its `Status` body.
    case api(verb: String, resource: String, namespace: String?, name: String?, status: Int, reason: String, message: String)
    /// 409 on an update, patch or apply: the object changed since it was read (stale
    /// resourceVersion), it already exists, or an apply conflicts with another field manager.
    /// Re-read and retry (level-triggered: requeue).
    case conflict(verb: String, resource: String, namespace: String?, name: String?, reason: String, message: String)
    /// No response: connection refused, TLS failure, timeout (the HTTP client's error text).
    case transport(verb: String, resource: String, namespace: String?, name: String?, detail: String)
    /// A watch or a continued list asked for a resourceVersion the server no longer has
    /// (410 Gone / Expired): relist from scratch.
    case expired(verb: String, resource: String, namespace: String?, message: String)
    /// A watch line exceeded the splitter's bound.
    case watchLineTooLong(limit: Int)
    /// Client configuration (kubeconfig, in-cluster files, flags) is unusable.
    case configuration(source: String, detail: String)

    public var description: String {
        func target(_ resource: String, _ namespace: String?, _ name: String?) -> String {
            var t = resource
            if let namespace { t += " in namespace \(namespace)" }
            if let name { t += " named \(name)" }
            return t
        }
        switch self {
        case .encode(let type, let detail): return "cannot encode \(type): \(detail)"
        case .decode(let type, let detail): return "cannot decode \(type): \(detail)"
        case .api(let verb, let resource, let ns, let name, let status, let reason, let message):
            return "\(verb) \(target(resource, ns, name)): HTTP \(status) \(reason): \(message)"
        case .conflict(let verb, let resource, let ns, let name, let reason, let message):
            return "\(verb) \(target(resource, ns, name)): HTTP 409 \(reason): \(message)"
        case .transport(let verb, let resource, let ns, let name, let detail):
            return "\(verb) \(target(resource, ns, name)): no response: \(detail)"
        case .expired(let verb, let resource, let ns, let message):
            return "\(verb) \(target(resource, ns, nil)): HTTP 410 Expired: \(message)"
        case .watchLineTooLong(let limit): return "watch stream line longer than \(limit) bytes"
        case .configuration(let source, let detail): return "Kubernetes client configuration \(source): \(detail)"
        }
    }

    /// The HTTP status the server answered with, if it answered.
    public var httpStatus: Int? {
        switch self {
        case .api(_, _, _, _, let status, _, _): status
        case .conflict: 409
        case .expired: 410
        default: nil
        }
    }

    public var isNotFound: Bool { httpStatus == 404 }
    public var isConflict: Bool { if case .conflict = self { true } else { false } }
    public var isExpired: Bool { if case .expired = self { true } else { false } }
}

/// JSON as the Kubernetes API expects it: keys sorted (deterministic output for golden files and
/// hashes), slashes unescaped, and optional fields that are nil left out entirely (never `null`,
/// which a merge patch would read as "delete this field"). Unknown fields are ignored on decode.
public enum KubeJSON {
    public static func encode<T: Encodable>(_ value: T, pretty: Bool = false) throws(KubeAPIError) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted] : [.sortedKeys, .withoutEscapingSlashes]
        do {
            return try encoder.encode(value)
        } catch {
            throw .encode(type: String(describing: T.self), detail: String(describing: error))
        }
    }

    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws(KubeAPIError) -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw .decode(type: String(describing: T.self), detail: "missing field \(path(context.codingPath + [key]))")
        } catch let DecodingError.typeMismatch(expected, context) {
            throw .decode(type: String(describing: T.self), detail: "field \(path(context.codingPath)) is not \(expected)")
        } catch let DecodingError.valueNotFound(expected, context) {
            throw .decode(type: String(describing: T.self), detail: "field \(path(context.codingPath)) is null, expected \(expected)")
        } catch let DecodingError.dataCorrupted(context) {
            throw .decode(type: String(describing: T.self), detail: "\(context.debugDescription) at \(path(context.codingPath))")
        } catch {
            throw .decode(type: String(describing: T.self), detail: String(describing: error))
        }
    }

    /// The compact JSON text of `value` (sorted keys).
    public static func string<T: Encodable>(_ value: T) throws(KubeAPIError) -> String {
        String(decoding: try encode(value), as: UTF8.self)
    }

    static func path(_ keys: [any CodingKey]) -> String {
        if keys.isEmpty { return "<root>" }
        return keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    }
}

/// Kubernetes timestamps: RFC 3339 in UTC with second precision (`2024-05-01T12:00:00Z`).
public enum KubeTime {
    public static func format(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: date)
    }

    public static func parse(_ text: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        if let d = f.date(from: text) { return d }
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: text)
    }
}
