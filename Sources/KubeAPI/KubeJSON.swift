import Foundation

/// The one error type of the KubeAPI module. Each case names what failed and with which input.
public enum KubeAPIError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A value of `type` could not be encoded.
    case encode(type: String, detail: String)
    /// Bytes could not be decoded as `type`; `detail` carries the decoder's coding path.
    case decode(type: String, detail: String)

    public var description: String {
        switch self {
        case .encode(let type, let detail): return "cannot encode \(type): \(detail)"
        case .decode(let type, let detail): return "cannot decode \(type): \(detail)"
        }
    }
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
