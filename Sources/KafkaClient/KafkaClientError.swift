import KafkaProtocol

#if canImport(Glibc)
import Glibc
#endif

/// Every error the Kafka client raises: which peer (`address`, as "host:port") and what failed.
///
/// Example: `127.0.0.1:9092: connect failed: Connection refused (errno 111)`.
public struct KafkaClientError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// getaddrinfo could not resolve the host.
        case resolveFailed(reason: String)
        /// Every resolved address refused or failed the TCP connect (`code` is the last errno).
        case connectFailed(code: Int32, reason: String)
        /// No address accepted the TCP connect within the connect timeout.
        case connectTimeout(milliseconds: Int64)
        /// No answer to this call within its timeout; the connection was closed.
        case requestTimeout(api: ApiKey, version: Int16, correlationId: Int32, milliseconds: Int64)
        /// The connection is closed (by `close()`, by the peer, after a timeout, a socket error,
        /// a bad frame or an unknown correlation ID); `reason` says which, with the cause's text.
        /// Every call pending on it, and every later call, fails with this one error.
        case closed(reason: String)
        /// A socket call failed while connecting (once connected, socket failures close the
        /// connection and surface as `.closed`).
        case io(operation: String, code: Int32)
        /// The request could not be encoded (e.g. a version the codec does not define).
        case encode(api: ApiKey?, version: Int16, error: KafkaProtocolError)
        /// The response frame could not be decoded at the request's version.
        case decode(api: ApiKey, version: Int16, error: KafkaProtocolError)
        /// The peer sent a frame larger than the limit or with a bad size prefix (the reason of
        /// the `.closed` error the connection then fails with).
        case badFrame(error: KafkaProtocolError)
        /// The peer answered with a correlation ID no call is waiting for (the reason of the
        /// `.closed` error the connection then fails with: the stream can no longer be trusted).
        case unexpectedCorrelationId(Int32)
        /// A response body of another API than the caller expected.
        case unexpectedResponse(expected: String, got: ApiKey)
        /// `send(_:apiKey:version:)` was given an `AnyRequest` of another API than `apiKey`.
        case apiKeyMismatch(given: ApiKey, request: ApiKey)
        /// A broker address that is not "host:port" (`BrokerAddress(parsing:)`), or no address at all.
        case invalidAddress(reason: String)
        /// The broker answered `api` with a Kafka error `code` (a `KafkaErrorCode` raw value) for
        /// `resource` (e.g. "topic orders", "broker 2"; nil for the whole request).
        case kafka(api: ApiKey, code: Int16, message: String?, resource: String?)
        /// No version of `api` is served by the broker (`broker`, nil when it does not list the
        /// API) and understood by this client (`client`).
        case unsupportedVersion(api: ApiKey, broker: ClosedRange<Int16>?, client: ClosedRange<Int16>)
        /// The answer to `api` decoded but does not fit the request (e.g. a partition missing).
        case unexpectedAnswer(api: ApiKey, reason: String)
        /// TLS setup or the handshake failed (untrusted or mismatched certificate, refused protocol).
        case tls(reason: String)
    }

    /// The peer as "host:port" ("[v6]:port" for IPv6 literals); empty when no peer is involved
    /// (`KafkaResponse.expect` on a response value).
    public let address: String
    public let kind: Kind

    public init(address: String, kind: Kind) {
        self.address = address
        self.kind = kind
    }

    public var description: String { address.isEmpty ? detail : "\(address): \(detail)" }

    /// What failed, without the address.
    public var detail: String {
        let what: String
        switch kind {
        case let .resolveFailed(reason):
            what = "cannot resolve host: \(reason)"
        case let .connectFailed(code, reason):
            what = "connect failed: \(reason) (errno \(code))"
        case let .connectTimeout(ms):
            what = "connect timed out after \(ms) ms"
        case let .requestTimeout(api, version, correlationId, ms):
            what = "no answer to \(api.name) v\(version) (correlation id \(correlationId)) within \(ms) ms; connection closed"
        case let .closed(reason):
            what = "connection closed: \(reason)"
        case let .io(operation, code):
            what = "\(operation) failed: \(errnoText(code)) (errno \(code))"
        case let .encode(api, version, error):
            what = "cannot encode \(api?.name ?? "request") v\(version): \(error)"
        case let .decode(api, version, error):
            what = "cannot decode \(api.name) v\(version) response: \(error)"
        case let .badFrame(error):
            what = "bad response frame: \(error); connection closed"
        case let .unexpectedCorrelationId(id):
            what = "response for correlation id \(id), which no call is waiting for; connection closed"
        case let .unexpectedResponse(expected, got):
            what = "expected a \(expected) response, got \(got.name)"
        case let .apiKeyMismatch(given, request):
            what = "apiKey \(given.name) does not match the request's API \(request.name)"
        case let .invalidAddress(reason):
            what = "invalid broker address: \(reason)"
        case let .kafka(api, code, message, resource):
            let name = KafkaErrorCode(rawValue: code)?.name ?? "unknown error code"
            what = "\(api.name) failed\(resource.map { " for \($0)" } ?? ""): \(name) (\(code))\(message.map { ": \($0)" } ?? "")"
        case let .unsupportedVersion(api, broker, client):
            let served = broker.map { "v\($0.lowerBound)–\($0.upperBound)" } ?? "no version"
            what = "the broker serves \(api.name) \(served); this client needs v\(client.lowerBound)–\(client.upperBound)"
        case let .unexpectedAnswer(api, reason):
            what = "unexpected \(api.name) answer: \(reason)"
        case let .tls(reason):
            what = "TLS failed: \(reason)"
        }
        return what
    }
}

func errnoText(_ code: Int32) -> String { String(cString: strerror(code)) }
