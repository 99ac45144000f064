import KafkaProtocol

/// What a request handler sees besides the request body.
public struct RequestContext: Sendable {
    public let connection: ConnectionInfo
    public let header: RequestHeader
    public let apiKey: ApiKey
    public var apiVersion: Int16 { header.requestApiVersion }
    public var clientId: String? { header.clientId }
}

/// The outcome of one API call.
public enum ApiResult: Sendable {
    /// Answer now.
    case response(AnyResponse)
    /// Send nothing (Produce with acks=0).
    case noResponse
    /// Answer later (durability, long polls); the connection's next requests proceed meanwhile
    /// and responses are still written in request order.
    case deferred(@Sendable () async -> AnyResponse?)
    /// Answer later, but only waiting (a long-poll Fetch): cancelled when the connection closes
    /// (see `HandlerResult.longPoll`); on cancellation it answers at once with what it has.
    case longPoll(@Sendable () async -> AnyResponse?)
    /// Close the connection after the earlier responses.
    case close
}

/// One Kafka API as the broker implements it.
///
/// The router calls `handle` for a connection's requests in arrival order, one at a time (see
/// `RequestHandler`); the versions in `versions` are what ApiVersions advertises, so they must be
/// exactly the versions `handle` serves correctly.
public protocol ApiHandler: Sendable {
    var apiKey: ApiKey { get }
    var versions: ClosedRange<Int16> { get }
    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult
}
