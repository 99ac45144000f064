/// One request as the server hands it to the broker: the frame body (request header and body,
/// without the 4-byte size prefix) and the connection it came on.
public struct ServerRequest: Sendable {
    public let bytes: [UInt8]
    public let connection: ConnectionInfo
    /// Position of this request among the connection's requests, from 0.
    public let seq: UInt64
}

/// Identity of a client connection, for logs, metrics and per-connection state.
public struct ConnectionInfo: Sendable, Hashable {
    public let id: UInt64
    public let peer: String
    /// The listener the connection came in on (which addresses its clients are given).
    public var listener: ListenerName = .internal
}

/// What the broker does with a request.
public enum HandlerResult: Sendable {
    /// Send this response frame body (response header and body; the server adds the size prefix).
    case respond([UInt8])
    /// Send nothing (a Produce with acks=0); later responses still go out in order.
    case noResponse
    /// The response is known later (a Produce waiting for durability, a long-poll Fetch). The
    /// server goes on with the connection's next request meanwhile and still writes responses in
    /// request order. A nil result sends nothing.
    case deferred(@Sendable () async -> [UInt8]?)
    /// Like `.deferred`, but the work only waits (a long-poll Fetch): when the connection
    /// closes (peer gone, error, idle, shutdown) its task is cancelled at once, and it must then
    /// return promptly. Never use it for work that writes (a Produce appending): that is
    /// `.deferred`, which runs to its end even after the client has gone.
    case longPoll(@Sendable () async -> [UInt8]?)
    /// Close the connection once the responses of earlier requests are written.
    case close
}

/// The broker side of the network server.
///
/// `handle` is called for one connection's requests strictly in the order they arrived, the
/// next one only after the previous call returned. Work that must follow request order
/// (appending to a partition) belongs in `handle`; waiting that may overlap later requests
/// belongs in a `.deferred` result (`.longPoll` when it only waits and may be abandoned).
public protocol RequestHandler: Sendable {
    func handle(_ request: ServerRequest) async -> HandlerResult
}
