import Synchronization

/// One request as the server hands it to the broker: the frame body (request header and body,
/// without the 4-byte size prefix) and the connection it came on.
public struct ServerRequest: Sendable {
    public let bytes: [UInt8]
    public let connection: ConnectionInfo
    /// Position of this request among the connection's requests, from 0.
    public let seq: UInt64
}

/// Identity of a client connection, for logs, metrics and per-connection state.
///
/// Two values are equal when they name the same connection (`id`, `peer`, `listener`); the
/// session is that connection's mutable security state and does not take part.
public struct ConnectionInfo: Sendable, Hashable {
    public let id: UInt64
    public let peer: String
    /// The listener the connection came in on (which addresses its clients are given).
    public var listener: ListenerName = .internal
    /// Who the client is and how it authenticated; one object per connection, shared by every
    /// request of it.
    public var session: ConnectionSession = ConnectionSession()

    public init(id: UInt64, peer: String, listener: ListenerName = .internal, session: ConnectionSession = ConnectionSession()) {
        self.id = id
        self.peer = peer
        self.listener = listener
        self.session = session
    }

    public static func == (a: ConnectionInfo, b: ConnectionInfo) -> Bool {
        a.id == b.id && a.peer == b.peer && a.listener == b.listener
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(id)
        hasher.combine(peer)
        hasher.combine(listener)
    }
}

/// A Kafka principal, `type:name` (Kafka's `KafkaPrincipal`): `User:alice` after SASL,
/// `User:CN=client,O=acme` from a client certificate, `User:ANONYMOUS` before either.
public struct KafkaPrincipal: Sendable, Hashable, CustomStringConvertible {
    public var type: String
    public var name: String
    public init(type: String = "User", name: String) {
        self.type = type
        self.name = name
    }
    public static let anonymous = KafkaPrincipal(name: "ANONYMOUS")
    public var description: String { "\(type):\(name)" }
}

/// The security protocol of a listener, with Kafka's names.
public enum SecurityProtocol: String, Sendable, Hashable, CaseIterable {
    case plaintext = "PLAINTEXT"
    case ssl = "SSL"
    case saslPlaintext = "SASL_PLAINTEXT"
    case saslSSL = "SASL_SSL"

    public var usesTLS: Bool { self == .ssl || self == .saslSSL }
    public var usesSASL: Bool { self == .saslPlaintext || self == .saslSSL }
}

/// One connection's security state: the listener's protocol, and the principal the TLS layer
/// (client certificate) or the SASL handlers established. The authorizer reads `principal`.
///
/// Thread-safe: requests of one connection are handled in order, but deferred work and other
/// loops may read it.
public final class ConnectionSession: Sendable {
    public let securityProtocol: SecurityProtocol
    private let state: Mutex<State>

    public struct State: Sendable {
        public var principal: KafkaPrincipal
        /// True once the connection may send requests other than ApiVersions and the SASL
        /// ones: at once on PLAINTEXT and SSL listeners, after SaslAuthenticate on SASL ones.
        public var authenticated: Bool
        /// The SASL mechanism chosen by SaslHandshake (nil before it, and on non-SASL listeners).
        public var mechanism: String?
        /// When the SASL session expires (KIP-368), in `ContinuousClock` terms; nil: never.
        public var sessionExpiry: ContinuousClock.Instant?
        /// After a SaslHandshake v0 the client sends the mechanism's tokens as raw frames (no
        /// Kafka header) until authentication ends: the router hands them to the authenticator.
        public var rawTokens: Bool = false
        /// Quota throttling (KIP-219): none of the connection's requests is read or handled
        /// before this instant (set by `QuotaEnforcingHandler`; nil: not throttled).
        public var throttledUntil: ContinuousClock.Instant? = nil
        /// Set by the event loop when the connection closes or starts closing, or the server
        /// drains: a throttle no longer holds its remaining requests back, so they finish and
        /// shutdown is not delayed. (A muted connection is not read, so its peer's close is
        /// seen only once the throttle is over, as in Kafka.)
        public var closed: Bool = false
    }

    public init(securityProtocol: SecurityProtocol = .plaintext, principal: KafkaPrincipal = .anonymous) {
        self.securityProtocol = securityProtocol
        state = Mutex(State(principal: principal, authenticated: !securityProtocol.usesSASL, mechanism: nil, sessionExpiry: nil))
    }

    public var principal: KafkaPrincipal { state.withLock { $0.principal } }
    public var authenticated: Bool { state.withLock { $0.authenticated } }
    public var snapshot: State { state.withLock { $0 } }
    /// The instant the connection's next request must wait for (quota throttling), or nil when
    /// it need not wait (not throttled, throttle over, or connection closed).
    public var throttleWait: ContinuousClock.Instant? {
        state.withLock { s in
            guard !s.closed, let until = s.throttledUntil, until > .now else { return nil }
            return until
        }
    }

    /// Changes the state under the session's lock.
    public func update<R>(_ body: (inout State) throws -> R) rethrows -> R {
        try state.withLock { try body(&$0) }
    }
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
