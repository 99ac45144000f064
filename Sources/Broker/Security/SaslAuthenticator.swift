import KafkaProtocol
import SASL
import Support
import Synchronization

/// Which requests a connection may send, from its session (Kafka's rules for SASL listeners):
/// ApiVersions, SaslHandshake and SaslAuthenticate always; anything else only once the session
/// is authenticated and, with KIP-368 re-authentication, before the session expires. The router
/// closes the connection on any other request, as Kafka does.
public enum SaslGate {
    public static let preAuthenticationApis: Set<ApiKey> = [.apiVersions, .saslHandshake, .saslAuthenticate]

    /// Why `apiKey` may not be served on `session` now, or nil.
    public static func refusal(_ apiKey: ApiKey, session: ConnectionSession, now: ContinuousClock.Instant) -> String? {
        refusal(apiKey, state: session.snapshot, now: now)
    }

    /// The same, from a session state already read (the router reads it once per request).
    public static func refusal(_ apiKey: ApiKey, state s: ConnectionSession.State, now: ContinuousClock.Instant) -> String? {
        if preAuthenticationApis.contains(apiKey) { return nil }
        if !s.authenticated { return "request before SASL authentication" }
        if let expiry = s.sessionExpiry, now >= expiry { return "SASL session expired (connections.max.reauth.ms)" }
        return nil
    }
}

/// The broker's side of SASL: the exchange in progress on each connection, the checks, the
/// session it establishes, metrics and (rate-limited, secret-free) logs.
///
/// Per connection: SaslHandshake picks a mechanism; SaslAuthenticate then carries the
/// mechanism's messages (PLAIN: one; SCRAM: client-first, client-final). Success sets the
/// session's principal to `User:<name>`, `authenticated`, and with `connections.max.reauth.ms`
/// its expiry (KIP-368: the client re-authenticates on the same connection before it; the same
/// user only). Failure answers SASL_AUTHENTICATION_FAILED after `failureDelay`, leaves the
/// session unauthenticated (so any request but the SASL ones closes the connection), and after
/// `maxFailures` failures on a connection its next SASL request closes it.
///
/// Example: a SCRAM-SHA-512 login is SaslHandshake("SCRAM-SHA-512") → `mechanisms` echoed,
/// SaslAuthenticate(client-first) → server-first, SaslAuthenticate(client-final) → server-final
/// with `sessionLifetimeMs` = `connections.max.reauth.ms`.
public final class SaslAuthenticator: Sendable {
    public struct Settings: Sendable {
        /// `sasl.enabled.mechanisms`, in order.
        public var enabledMechanisms: [String] = [PlainMechanism.name, ScramMechanism.sha256.rawValue, ScramMechanism.sha512.rawValue]
        /// `connections.max.reauth.ms`; nil: sessions never expire.
        public var reauthentication: Duration? = nil
        /// `connection.failed.authentication.delay.ms`: how long a failure's answer is held back.
        public var failureDelay: Duration = .milliseconds(100)
        /// `connection.failed.authentication.max`: failures on one connection before it is closed.
        public var maxFailures: Int = 3
        public init() {}
    }

    enum Pending: Sendable {
        case plain
        case scram(ScramServerExchange)
    }

    struct ConnectionState: Sendable {
        var pending: Pending?
        var failures = 0
        var touched: ContinuousClock.Instant
    }

    struct Key: Hashable, Sendable {
        var listener: ListenerName
        var id: UInt64
    }

    let settings: Settings
    let credential: @Sendable (String, ScramMechanism) -> ScramCredential?
    let now: @Sendable () -> ContinuousClock.Instant
    let logger: Logger
    let limiter: LogRateLimiter
    let metrics: MetricsRegistry
    private let connections = Mutex<[Key: ConnectionState]>([:])
    /// Entries of connections not heard from for this long are forgotten (a client gone mid-exchange).
    static let staleAfter: Duration = .seconds(600)

    /// `credential` looks a user's credential up (the cluster metadata); `now` is injected for tests.
    public init(settings: Settings, credential: @escaping @Sendable (String, ScramMechanism) -> ScramCredential?,
                metrics: MetricsRegistry = MetricsRegistry(), logger: Logger = .discarding,
                now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }) {
        self.settings = settings
        self.credential = credential
        self.metrics = metrics
        self.logger = logger
        self.limiter = LogRateLimiter(burst: 10, interval: .seconds(10))
        self.now = now
    }

    /// The handlers of SaslHandshake and SaslAuthenticate.
    public var handlers: [any ApiHandler] { [SaslHandshakeHandler(authenticator: self), SaslAuthenticateHandler(authenticator: self)] }

    func key(_ c: ConnectionInfo) -> Key { Key(listener: c.listener, id: c.id) }

    private func withState<R>(_ connection: ConnectionInfo, _ body: (inout ConnectionState) -> R) -> R {
        let t = now()
        return connections.withLock { all in
            if all.count > 1024 { all = all.filter { t - $0.value.touched < Self.staleAfter } }
            var state = all[key(connection)] ?? ConnectionState(touched: t)
            state.touched = t
            let result = body(&state)
            all[key(connection)] = state
            return result
        }
    }

    /// Entries tracked (for tests: a finished exchange leaves only its failure count).
    var trackedConnections: Int { connections.withLock { $0.count } }

    // MARK: SaslHandshake

    func handshake(_ request: SaslHandshakeRequest, connection: ConnectionInfo, version: Int16 = 1) -> ApiResult {
        let session = connection.session
        let enabled = settings.enabledMechanisms
        guard session.securityProtocol.usesSASL else {
            return .response(.saslHandshake(SaslHandshakeResponse(errorCode: KafkaErrorCode.illegalSaslState.rawValue, mechanisms: [])))
        }
        let refused = withState(connection) { s -> Bool in
            if s.failures >= settings.maxFailures { return true }
            s.pending = nil
            return false
        }
        if refused { return .close }
        guard enabled.contains(request.mechanism) else {
            return .response(.saslHandshake(SaslHandshakeResponse(errorCode: KafkaErrorCode.unsupportedSaslMechanism.rawValue, mechanisms: enabled)))
        }
        let current = session.snapshot
        if current.authenticated, let previous = current.mechanism, previous != request.mechanism {
            // KIP-368: re-authentication keeps the mechanism.
            return .response(.saslHandshake(SaslHandshakeResponse(errorCode: KafkaErrorCode.illegalSaslState.rawValue, mechanisms: enabled)))
        }
        let pending: Pending
        if let scram = ScramMechanism(rawValue: request.mechanism) { pending = .scram(ScramServerExchange(mechanism: scram)) } else { pending = .plain }
        withState(connection) { $0.pending = pending }
        session.update {
            $0.mechanism = request.mechanism
            $0.rawTokens = version == 0
        }
        return .response(.saslHandshake(SaslHandshakeResponse(errorCode: 0, mechanisms: enabled)))
    }

    /// One raw token of the SaslHandshake v0 flow (librdkafka before it sees SaslAuthenticate,
    /// old Java clients): the token is the whole frame, the answer is the next token as a whole
    /// frame (empty for PLAIN's success). It is the SaslAuthenticate exchange without the
    /// envelope; a failure closes the connection, as Kafka does in this flow.
    func rawToken(_ request: ServerRequest) async -> HandlerResult {
        let header = RequestHeader(requestApiKey: ApiKey.saslAuthenticate.rawValue, requestApiVersion: 0, correlationId: 0, clientId: nil)
        let context = RequestContext(connection: request.connection, header: header, apiKey: .saslAuthenticate)
        let result = authenticate(SaslAuthenticateRequest(authBytes: request.bytes), context: context)
        guard case let .response(.saslAuthenticate(answer)) = result, answer.errorCode == 0 else {
            request.connection.session.update { $0.rawTokens = false }
            return .close
        }
        if request.connection.session.authenticated { request.connection.session.update { $0.rawTokens = false } }
        return .respond(answer.authBytes)
    }

    // MARK: SaslAuthenticate

    enum Outcome {
        case challenge([UInt8])
        case success(user: String, answer: [UInt8])
        case failure(reason: String, user: String?)
        case illegalState
        case close
    }

    func authenticate(_ request: SaslAuthenticateRequest, context: RequestContext) -> ApiResult {
        let connection = context.connection
        let session = connection.session
        let mechanism = session.snapshot.mechanism ?? ""
        let outcome: Outcome = withState(connection) { s -> Outcome in
            if s.failures >= settings.maxFailures { return .close }
            guard let pending = s.pending else { return .illegalState }
            s.pending = nil
            switch pending {
            case .plain:
                do {
                    let (user, password) = try PlainMechanism.parse(request.authBytes)
                    // PLAIN checks the password against the stored SCRAM credential.
                    let found = ScramMechanism.allCases.lazy.compactMap { m in self.credential(user, m).map { (m, $0) } }.first
                    guard let (m, credential) = found else { return .failure(reason: "unknown user", user: user) }
                    guard credential.matches(password: password, mechanism: m) else { return .failure(reason: "invalid credentials", user: user) }
                    return .success(user: user, answer: [])
                } catch {
                    return .failure(reason: "\(error)", user: nil)
                }
            case var .scram(exchange):
                let scramMechanism = exchange.mechanism
                let knownUser = exchange.user  // nil before client-first; the exchange forgets it on failure
                do {
                    let step = try exchange.receive(request.authBytes) { user in self.credential(user, scramMechanism) }
                    switch step {
                    case let .challenge(bytes):
                        s.pending = .scram(exchange)
                        return .challenge(bytes)
                    case let .success(user, answer):
                        return .success(user: user, answer: answer)
                    }
                } catch {
                    return .failure(reason: "\(error)", user: knownUser)
                }
            }
        }
        let version = context.apiVersion
        switch outcome {
        case .close:
            return .close
        case .illegalState:
            return .response(.saslAuthenticate(SaslAuthenticateResponse(
                errorCode: KafkaErrorCode.illegalSaslState.rawValue, errorMessage: "SaslAuthenticate before a SaslHandshake", authBytes: [])))
        case let .challenge(bytes):
            return .response(.saslAuthenticate(SaslAuthenticateResponse(errorCode: 0, errorMessage: nil, authBytes: bytes)))
        case let .success(user, answer):
            let principal = KafkaPrincipal(name: user)
            let previous = session.snapshot
            if previous.authenticated && previous.principal != .anonymous && previous.principal != principal {
                return fail(context: context, mechanism: mechanism, user: user, reason: "re-authentication as another user")
            }
            let lifetime = settings.reauthentication
            let expiry = lifetime.map { now() + $0 }
            session.update {
                $0.principal = principal
                $0.authenticated = true
                $0.sessionExpiry = expiry
            }
            counter(mechanism, "success").increment()
            if previous.authenticated {
                metrics.counter("floe_broker_sasl_reauthentications_total", help: "KIP-368 re-authentications on open connections, by mechanism",
                                labels: ["mechanism": mechanism]).increment()
            }
            let lifetimeMs = lifetime.map { Int64($0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000) } ?? 0
            return .response(.saslAuthenticate(SaslAuthenticateResponse(
                errorCode: 0, errorMessage: nil, authBytes: answer, sessionLifetimeMs: version >= 1 ? lifetimeMs : 0)))
        case let .failure(reason, user):
            return fail(context: context, mechanism: mechanism, user: user, reason: reason)
        }
    }

    private func fail(context: RequestContext, mechanism: String, user: String?, reason: String) -> ApiResult {
        let connection = context.connection
        let failures = withState(connection) { s -> Int in
            s.pending = nil
            s.failures += 1
            return s.failures
        }
        connection.session.update {
            $0.authenticated = false
            $0.principal = .anonymous
            $0.sessionExpiry = nil
        }
        counter(mechanism, "failure").increment()
        // Never the password or the proof: the user name, the mechanism and the kind of failure.
        let decision = limiter.admit("sasl-failure")
        if decision.emit {
            var metadata = ["peer": connection.peer, "mechanism": mechanism, "user": user ?? "", "reason": reason,
                            "failures.on.connection": "\(failures)"]
            if decision.suppressedBefore > 0 { metadata["suppressed"] = "\(decision.suppressedBefore)" }
            logger.warning("SASL authentication failed", metadata: metadata)
        }
        // Kafka's message, the same for an unknown user and a wrong password.
        let response = AnyResponse.saslAuthenticate(SaslAuthenticateResponse(
            errorCode: KafkaErrorCode.saslAuthenticationFailed.rawValue,
            errorMessage: "Authentication failed during authentication due to invalid credentials with SASL mechanism \(mechanism)",
            authBytes: []))
        let delay = settings.failureDelay
        if delay <= .zero { return .response(response) }
        return .deferred {
            // The delay is the throttle itself (Kafka's connection.failed.authentication.delay.ms);
            // cancelled (the server stopping), the answer goes out at once.
            do { try await Task.sleep(for: delay) } catch {}
            return response
        }
    }

    private func counter(_ mechanism: String, _ result: String) -> Counter {
        metrics.counter("floe_broker_sasl_authentications_total", help: "SASL authentications by mechanism and result (success, failure)",
                        labels: ["mechanism": mechanism.isEmpty ? "none" : mechanism, "result": result])
    }
}

/// SaslHandshake (API 17), versions 0–1. After v1 the tokens travel in SaslAuthenticate
/// requests; after v0 they travel as raw frames (`SaslAuthenticator.rawToken`). librdkafka 2.0
/// (Debian 12's kcat) only authenticates when v0 is in the advertised range, then uses v1.
struct SaslHandshakeHandler: ApiHandler {
    let authenticator: SaslAuthenticator
    let apiKey = ApiKey.saslHandshake
    let versions: ClosedRange<Int16> = 0...1

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .saslHandshake(r) = request else { return .close }
        return authenticator.handshake(r, connection: context.connection, version: context.apiVersion)
    }
}

/// SaslAuthenticate (API 36), versions 0–2 (1 adds the session lifetime of KIP-368).
struct SaslAuthenticateHandler: ApiHandler {
    let authenticator: SaslAuthenticator
    let apiKey = ApiKey.saslAuthenticate
    let versions: ClosedRange<Int16> = 0...2

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .saslAuthenticate(r) = request else { return .close }
        guard context.connection.session.securityProtocol.usesSASL else {
            return .response(.saslAuthenticate(SaslAuthenticateResponse(
                errorCode: KafkaErrorCode.illegalSaslState.rawValue, errorMessage: "this listener does not use SASL", authBytes: [])))
        }
        return authenticator.authenticate(r, context: context)
    }
}
