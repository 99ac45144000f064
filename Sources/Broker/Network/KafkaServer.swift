#if canImport(Glibc)
import Glibc
#endif
import Foundation
import KafkaProtocol
import Support
import Synchronization
import TLS

/// Limits and sizes of the network server.
public struct ServerConfiguration: Sendable {
    public var listen: SocketAddress
    /// Event-loop threads; connections are spread over them round-robin.
    public var eventLoops: Int
    /// Largest request frame accepted (Kafka's `socket.request.max.bytes`).
    public var maxFrameSize: Int
    /// Open connections beyond this are closed on accept.
    public var maxConnections: Int
    /// Requests read from one connection and not yet answered; reading pauses at this bound.
    public var maxInFlightRequestsPerConnection: Int
    /// Connections with nothing in flight for this long are closed (0 disables), as Kafka's
    /// `connections.max.idle.ms`.
    public var idleTimeoutMilliseconds: UInt64
    /// Response bytes of one connection not yet written to its socket at most
    /// (`connection.unsent.max.bytes`): above it the connection's requests are no longer read,
    /// and reading resumes once they drain to half of it; beyond the first 4, requests are handed
    /// over only while their estimated answers fit under it too (`Connection.mayDispatch`). A
    /// connection's memory is then about twice this, and at worst this plus the answers of its
    /// `maxInFlightRequestsPerConnection` requests.
    public var maxUnsentBytesPerConnection: Int
    /// Once the first byte of a request has arrived, the whole request must arrive within this
    /// time, else the connection is closed (`request.read.timeout.ms`; 0 disables). A client
    /// trickling bytes (slowloris) is not idle, so `idleTimeoutMilliseconds` alone never closes it.
    public var requestReadTimeoutMilliseconds: UInt64
    /// Which listener this server is (its connections' `ConnectionInfo.listener`).
    public var listener: ListenerName = .internal
    /// The listener's security protocol (`security.protocol`, `external.security.protocol`); each
    /// connection's `ConnectionSession` starts with it. SSL and SASL_SSL speak TLS with `tls`.
    public var securityProtocol: SecurityProtocol = .plaintext
    /// The server certificates of a TLS listener (required when `securityProtocol.usesTLS`).
    public var tls: TLSServerCertificates?
    /// A connection whose TLS handshake and (on SASL listeners) authentication are not done this
    /// long after accept is closed (`authentication.timeout.ms`; 0 disables).
    public var authenticationTimeoutMilliseconds: UInt64 = 10_000

    public init(listen: SocketAddress, eventLoops: Int = 2, maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize,
                maxConnections: Int = 10_000, maxInFlightRequestsPerConnection: Int = 64,
                idleTimeoutMilliseconds: UInt64 = 600_000, maxUnsentBytesPerConnection: Int = 4 << 20,
                requestReadTimeoutMilliseconds: UInt64 = 30_000) {
        self.listen = listen
        self.eventLoops = eventLoops
        self.maxFrameSize = maxFrameSize
        self.maxConnections = maxConnections
        self.maxInFlightRequestsPerConnection = maxInFlightRequestsPerConnection
        self.idleTimeoutMilliseconds = idleTimeoutMilliseconds
        self.maxUnsentBytesPerConnection = maxUnsentBytesPerConnection
        self.requestReadTimeoutMilliseconds = requestReadTimeoutMilliseconds
    }
}

/// What the server counts, for the broker's metrics (standalone instances when not exported).
public struct ServerCounters: Sendable {
    /// Connections closed because a request did not arrive in full within the read timeout.
    public let requestReadTimeouts: Counter
    /// Times a connection stopped being read because its unsent response bytes passed the bound.
    public let unsentPauses: Counter
    /// Response bytes queued and not yet written, over all connections.
    public let unsentBytes: Gauge
    /// Connections closed because TLS or SASL authentication was not done within authentication.timeout.ms.
    public let authenticationTimeouts: Counter
    /// TLS handshakes that failed (bad or missing client certificate, old protocol version, not TLS).
    public let tlsHandshakeFailures: Counter

    public init(metrics: MetricsRegistry? = nil, listener: ListenerName = .internal) {
        guard let metrics else {
            requestReadTimeouts = Counter(); unsentPauses = Counter(); unsentBytes = Gauge()
            authenticationTimeouts = Counter(); tlsHandshakeFailures = Counter()
            return
        }
        let labels = ["listener": listener == .internal ? "internal" : "external"]
        requestReadTimeouts = metrics.counter(
            "floe_broker_request_read_timeouts_total",
            help: "Connections closed because a started request did not arrive in full within request.read.timeout.ms", labels: labels)
        unsentPauses = metrics.counter(
            "floe_broker_connection_unsent_pauses_total",
            help: "Times a connection's reading paused because its unsent response bytes exceeded connection.unsent.max.bytes",
            labels: labels)
        unsentBytes = metrics.gauge("floe_broker_unsent_response_bytes", help: "Response bytes queued and not yet written to sockets",
                                    labels: labels)
        authenticationTimeouts = metrics.counter(
            "floe_broker_authentication_timeouts_total",
            help: "Connections closed because their TLS handshake or SASL authentication was not done within authentication.timeout.ms",
            labels: labels)
        tlsHandshakeFailures = metrics.counter(
            "floe_broker_tls_handshake_failures_total", help: "TLS handshakes that failed", labels: labels)
    }
}

/// A Kafka-protocol TCP server: size-prefixed frames in, responses out in request order.
///
/// Lifecycle: `init` binds the port (so a taken port fails at once, with the address in the
/// error); `run()` serves until `shutdown()` is called, then stops accepting, stops reading new
/// requests, finishes the requests in flight, writes their responses, closes every connection and
/// returns.
///
/// Example:
/// ```
/// let server = try KafkaServer(configuration: .init(listen: try SocketAddress(parsing: "127.0.0.1:0")), handler: broker)
/// print(server.port)           // the port actually bound
/// try await server.run()       // returns after server.shutdown()
/// ```
public final class KafkaServer: Sendable {
    private let core: ServerCore
    /// The bound port (useful when listening on port 0).
    public let port: UInt16

    public init(configuration: ServerConfiguration, handler: any RequestHandler, counters: ServerCounters = ServerCounters(),
                log: @escaping @Sendable (String, String) -> Void = { _, _ in }) throws(NetworkError) {
        let (fd, port) = try Socket.listen(configuration.listen, backlog: 1024)
        self.port = port
        do {
            core = try ServerCore(configuration: configuration, handler: handler, counters: counters, listener: fd, log: log)
        } catch {
            close(fd)
            throw error
        }
    }

    /// Serves until `shutdown()`; returns when every connection is closed.
    public func run() async {
        await core.run()
    }

    /// Starts a graceful shutdown; `run()` returns when it is complete.
    public func shutdown() {
        core.shutdown()
    }

    /// Connections currently open.
    public var openConnections: Int { core.openConnections.load(ordering: .relaxed) }

    /// What the server counts (request read timeouts, unsent-bytes pauses, unsent bytes).
    public var counters: ServerCounters { core.counters }
}

func monotonicMilliseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
}

/// Shared state of the server: its loops and the stream of new connections.
final class ServerCore: Sendable {
    let configuration: ServerConfiguration
    let handler: any RequestHandler
    let counters: ServerCounters
    let logSink: @Sendable (String, String) -> Void
    nonisolated(unsafe) private(set) var loops: [EventLoop] = []
    // nonisolated(unsafe): `loops` is written once in init, before any thread starts, and only read after.
    let openConnections = Atomic<Int>(0)
    private let connectionIDs = Atomic<UInt64>(2)
    private let newConnections: AsyncStream<NewConnection>
    private let newConnectionsContinuation: AsyncStream<NewConnection>.Continuation
    private let shutdownStarted = Atomic<Bool>(false)

    /// A connection as handed from its event loop to the task serving it.
    struct NewConnection: Sendable {
        let info: ConnectionInfo
        let requests: AsyncStream<ServerRequest>
        let longPolls: LongPollGroup
        let loop: EventLoop
    }

    init(configuration: ServerConfiguration, handler: any RequestHandler, counters: ServerCounters, listener: Int32,
         log: @escaping @Sendable (String, String) -> Void) throws(NetworkError) {
        precondition(!configuration.securityProtocol.usesTLS || configuration.tls != nil,
                     "a \(configuration.securityProtocol.rawValue) listener needs server certificates")
        self.configuration = configuration
        self.handler = handler
        self.counters = counters
        self.logSink = log
        (newConnections, newConnectionsContinuation) = AsyncStream.makeStream()
        var loops: [EventLoop] = []
        for i in 0..<max(1, configuration.eventLoops) {
            loops.append(try EventLoop(index: i, server: self))
        }
        self.loops = loops
        loops[0].setListener(listener)
    }

    func log(_ message: String, _ peer: String) { logSink(message, peer) }

    func nextConnectionID() -> UInt64 { connectionIDs.wrappingAdd(1, ordering: .relaxed).oldValue }

    func admitConnection() -> Bool {
        let now = openConnections.wrappingAdd(1, ordering: .relaxed).newValue
        if now > configuration.maxConnections {
            openConnections.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    func connectionClosed() { openConnections.wrappingSubtract(1, ordering: .relaxed) }

    func connectionOpened(_ connection: NewConnection) {
        newConnectionsContinuation.yield(connection)
    }

    func listenerClosed() {
        // No new connection can be adopted after the loops have processed `.drain`; the stream of
        // new connections ends so that `run` waits only for the ones already open.
        for loop in loops { loop.post(.drain) }
        newConnectionsContinuation.finish()
    }

    func shutdown() {
        guard !shutdownStarted.exchange(true, ordering: .relaxed) else { return }
        loops[0].post(.stopAccepting)
    }

    func run() async {
        let exited = DispatchGroup()
        for loop in loops {
            exited.enter()
            startNamedThread("floe-net") {
                loop.run()
                exited.leave()
            }
        }
        let handler = self.handler
        await withDiscardingTaskGroup { group in
            for await connection in newConnections {
                group.addTask {
                    await Self.serve(connection, handler: handler)
                }
            }
        }
        for loop in loops { loop.post(.stop) }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            exited.notify(queue: .global()) { c.resume() }
        }
    }

    /// Runs one connection's requests in order; deferred responses complete concurrently, and
    /// long polls in the connection's `LongPollGroup` (cancelled when the connection closes).
    private static func serve(_ connection: NewConnection, handler: any RequestHandler) async {
        let id = connection.info.id
        let loop = connection.loop
        let longPolls = connection.longPolls
        await withDiscardingTaskGroup { group in
            group.addTask {
                await longPolls.run { seq, bytes in
                    loop.post(.response(connection: id, seq: seq, outcome: bytes.map { .bytes($0) } ?? .none))
                }
            }
            for await request in connection.requests {
                let seq = request.seq
                // A throttled connection (client quotas) is muted: its next request waits, in
                // steps, so that a closed connection stops waiting at once.
                while let until = request.connection.session.throttleWait {
                    do {
                        try await ContinuousClock().sleep(until: min(until, .now + .milliseconds(100)))
                    } catch {
                        break  // cancelled: serve what is left without waiting
                    }
                }
                switch await handler.handle(request) {
                case let .respond(bytes):
                    loop.post(.response(connection: id, seq: seq, outcome: .bytes(bytes)))
                case .noResponse:
                    loop.post(.response(connection: id, seq: seq, outcome: .none))
                case .close:
                    loop.post(.response(connection: id, seq: seq, outcome: .close))
                case let .deferred(complete):
                    // Runs to its end even if the connection closes meanwhile (a Produce's append).
                    group.addTask {
                        let bytes = await complete()
                        loop.post(.response(connection: id, seq: seq, outcome: bytes.map { .bytes($0) } ?? .none))
                    }
                case let .longPoll(complete):
                    longPolls.start(seq: seq, complete)
                }
            }
            // No request is handled any more: the group ends once its long polls have answered.
            longPolls.finish()
        }
    }
}

/// The long polls of one connection, run as child tasks of one task group that the
/// connection's event loop cancels when the connection closes (`cancelAll`), so a client that
/// went away does not keep its Fetches parked until their max wait.
///
/// Events go through an `AsyncStream`: `start` from the task serving the connection, `cancelAll`
/// from the event loop's thread, `finish` once no request is handled any more, `done` from each
/// poll as it answers. `run` returns once finished and every poll has answered; until then a
/// `cancelAll` still reaches the running polls. The stream is bounded in practice: every `start`
/// (and its `done`) is a request in flight (at most `maxInFlightRequestsPerConnection` at a
/// time) and `cancelAll` is sent at most twice. A poll started after `cancelAll` starts
/// cancelled (the group is cancelled) and answers at once.
final class LongPollGroup: Sendable {
    private enum Event: Sendable {
        case start(seq: UInt64, complete: @Sendable () async -> [UInt8]?)
        case done
        case cancelAll
        case finish
    }
    private let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation

    init() {
        (events, continuation) = AsyncStream.makeStream()
    }

    func start(seq: UInt64, _ complete: @escaping @Sendable () async -> [UInt8]?) {
        continuation.yield(.start(seq: seq, complete: complete))
    }

    /// The connection closed: every long poll, running or started later, is cancelled.
    func cancelAll() { continuation.yield(.cancelAll) }

    /// No poll will start any more; `run` returns once the running ones have answered.
    func finish() { continuation.yield(.finish) }

    /// Runs the polls; `answer(seq, bytes)` receives each one's answer.
    func run(answer: @escaping @Sendable (UInt64, [UInt8]?) -> Void) async {
        let continuation = self.continuation
        await withDiscardingTaskGroup { group in
            var running = 0
            var finished = false
            for await event in events {
                switch event {
                case let .start(seq, complete):
                    running += 1
                    group.addTask {
                        answer(seq, await complete())
                        continuation.yield(.done)
                    }
                case .done:
                    running -= 1
                case .cancelAll:
                    group.cancelAll()
                case .finish:
                    finished = true
                }
                if finished && running == 0 { break }
            }
        }
        continuation.finish()
    }
}
