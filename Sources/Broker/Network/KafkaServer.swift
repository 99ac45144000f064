#if canImport(Glibc)
import Glibc
#endif
import Foundation
import KafkaProtocol
import Synchronization

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
    /// Which listener this server is (its connections' `ConnectionInfo.listener`).
    public var listener: ListenerName = .internal

    public init(listen: SocketAddress, eventLoops: Int = 2, maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize,
                maxConnections: Int = 10_000, maxInFlightRequestsPerConnection: Int = 64,
                idleTimeoutMilliseconds: UInt64 = 600_000) {
        self.listen = listen
        self.eventLoops = eventLoops
        self.maxFrameSize = maxFrameSize
        self.maxConnections = maxConnections
        self.maxInFlightRequestsPerConnection = maxInFlightRequestsPerConnection
        self.idleTimeoutMilliseconds = idleTimeoutMilliseconds
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

    public init(configuration: ServerConfiguration, handler: any RequestHandler,
                log: @escaping @Sendable (String, String) -> Void = { _, _ in }) throws(NetworkError) {
        let (fd, port) = try Socket.listen(configuration.listen, backlog: 1024)
        self.port = port
        do {
            core = try ServerCore(configuration: configuration, handler: handler, listener: fd, log: log)
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
    let logSink: @Sendable (String, String) -> Void
    nonisolated(unsafe) private(set) var loops: [EventLoop] = []
    // nonisolated(unsafe): `loops` is written once in init, before any thread starts, and only read after.
    let openConnections = Atomic<Int>(0)
    private let connectionIDs = Atomic<UInt64>(2)
    private let newConnections: AsyncStream<(ConnectionInfo, AsyncStream<ServerRequest>, EventLoop)>
    private let newConnectionsContinuation: AsyncStream<(ConnectionInfo, AsyncStream<ServerRequest>, EventLoop)>.Continuation
    private let shutdownStarted = Atomic<Bool>(false)

    init(configuration: ServerConfiguration, handler: any RequestHandler, listener: Int32,
         log: @escaping @Sendable (String, String) -> Void) throws(NetworkError) {
        self.configuration = configuration
        self.handler = handler
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

    func connectionOpened(_ info: ConnectionInfo, requests: AsyncStream<ServerRequest>, loop: EventLoop) {
        newConnectionsContinuation.yield((info, requests, loop))
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
            let thread = Thread {
                loop.run()
                exited.leave()
            }
            thread.name = "floe-net"
            thread.start()
        }
        let handler = self.handler
        await withDiscardingTaskGroup { group in
            for await (info, requests, loop) in newConnections {
                group.addTask {
                    await Self.serve(info, requests: requests, loop: loop, handler: handler)
                }
            }
        }
        for loop in loops { loop.post(.stop) }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            exited.notify(queue: .global()) { c.resume() }
        }
    }

    /// Runs one connection's requests in order; deferred responses complete concurrently.
    private static func serve(_ info: ConnectionInfo, requests: AsyncStream<ServerRequest>, loop: EventLoop,
                              handler: any RequestHandler) async {
        await withDiscardingTaskGroup { group in
            for await request in requests {
                let seq = request.seq
                switch await handler.handle(request) {
                case let .respond(bytes):
                    loop.post(.response(connection: info.id, seq: seq, outcome: .bytes(bytes)))
                case .noResponse:
                    loop.post(.response(connection: info.id, seq: seq, outcome: .none))
                case .close:
                    loop.post(.response(connection: info.id, seq: seq, outcome: .close))
                case let .deferred(complete):
                    group.addTask {
                        let bytes = await complete()
                        loop.post(.response(connection: info.id, seq: seq, outcome: bytes.map { .bytes($0) } ?? .none))
                    }
                }
            }
        }
    }
}
