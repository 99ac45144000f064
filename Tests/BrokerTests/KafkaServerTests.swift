import Foundation
import Synchronization
import Support
import Testing
@testable import Broker

#if canImport(Glibc)
import Glibc
#endif

/// Echoes each request; the response of request `seq` is deferred by a seeded random delay so
/// completions arrive out of order. Odd first bytes get no response.
struct ScramblingEcho: RequestHandler {
    func handle(_ request: ServerRequest) async -> HandlerResult {
        if request.bytes.first == 0xEE { return .close }
        if request.bytes.first == 0x01 { return .noResponse }
        let delay = UInt64((request.seq &* 2_654_435_761) % 4)
        if delay == 0 { return .respond(request.bytes) }
        return .deferred {
            try? await Task.sleep(nanoseconds: delay * 1_000_000)  // scrambles completion order only
            return request.bytes
        }
    }
}

/// A blocking test client on its own thread, so the cooperative pool stays free for the server.
/// Raw frames on purpose: these tests feed the server's framing layer echo payloads, oversized
/// and malformed frames, which `KafkaConnection` (Kafka requests only) cannot send. Kafka
/// requests in tests go through `KafkaConnection`.
enum TestClient {
    static func exchange(port: UInt16, send frames: [[UInt8]], expect responses: Int) async -> Result<[[UInt8]], Error> {
        await withCheckedContinuation { c in
            let t = Thread { c.resume(returning: Result { try blockingExchange(port: port, frames: frames, responses: responses) }) }
            t.start()
        }
    }

    struct Closed: Error { let received: [[UInt8]] }
    struct TimedOut: Error { let received: [[UInt8]] }

    static func connect(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr)
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if r != 0 { throw POSIXError(.ECONNREFUSED) }
        // Generous: CPU-heavy suites running in parallel can keep the cooperative pool (where the
        // server's handlers run) busy for several seconds.
        var tv = timeval(tv_sec: 120, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    static func blockingExchange(port: UInt16, frames: [[UInt8]], responses: Int) throws -> [[UInt8]] {
        let fd = try connect(port: port)
        defer { close(fd) }
        var out: [UInt8] = []
        for f in frames {
            let n = UInt32(f.count).bigEndian
            withUnsafeBytes(of: n) { out.append(contentsOf: $0) }
            out.append(contentsOf: f)
        }
        var sent = 0
        while sent < out.count {
            let w = out[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if w <= 0 { break }
            sent += w
        }
        var buffer: [UInt8] = []
        var received: [[UInt8]] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while received.count < responses {
            let r = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw TimedOut(received: received) }
            if r <= 0 { throw Closed(received: received) }
            buffer.append(contentsOf: chunk[0..<r])
            while buffer.count >= 4 {
                let size = Int(UInt32(buffer[0]) << 24 | UInt32(buffer[1]) << 16 | UInt32(buffer[2]) << 8 | UInt32(buffer[3]))
                guard buffer.count >= 4 + size else { break }
                received.append(Array(buffer[4..<(4 + size)]))
                buffer.removeFirst(4 + size)
            }
        }
        return received
    }
}

func withServer(_ configuration: ServerConfiguration? = nil, handler: any RequestHandler = ScramblingEcho(),
                _ body: (KafkaServer) async throws -> Void) async throws {
    let config = try configuration ?? ServerConfiguration(listen: SocketAddress(parsing: "127.0.0.1:0"))
    let server = try KafkaServer(configuration: config, handler: handler)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await server.run() }
        do {
            try await body(server)
        } catch {
            server.shutdown()
            throw error
        }
        server.shutdown()
        try await group.waitForAll()
    }
}

struct KafkaServerTests {
    @Test func pipelinedResponsesComeBackInRequestOrder() async throws {
        try await withServer { server in
            let frames = (0..<300).map { i -> [UInt8] in [0x02] + withUnsafeBytes(of: UInt32(i).bigEndian, Array.init) + [UInt8](repeating: UInt8(i % 251), count: i % 97) }
            let got = try await TestClient.exchange(port: server.port, send: frames, expect: frames.count).get()
            #expect(got == frames)
        }
    }

    /// A response written to a peer that has gone fails with EPIPE; it must not raise SIGPIPE,
    /// which would kill whatever process embeds the broker (this test process: the broker's
    /// writev did, and a loaded CI run died of signal 13).
    @Test func writingToAPeerThatHasGoneIsEPIPENotASignal() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        close(fds[1])
        defer { close(fds[0]) }
        let (_, continuation) = AsyncStream<ServerRequest>.makeStream()
        let connection = Connection(id: 1, fd: fds[0], peer: "test", listener: .internal, maxFrameSize: 1 << 20, maxInFlight: 4,
                                    maxUnsentBytes: 1 << 20, continuation: continuation, longPolls: LongPollGroup(),
                                    unsentGauge: Gauge(), now: 0)
        connection.enqueue([0x02])
        connection.complete(seq: 0, outcome: EventLoop.Outcome.bytes([UInt8](repeating: 7, count: 1000)))
        connection.moveCompletedToOutbound()
        guard case let .failed(code) = connection.writeOutbound() else {
            Issue.record("a write to a closed peer did not fail")
            return
        }
        #expect(code == EPIPE)
    }

    @Test func requestsWithoutResponseKeepTheOrderOfTheOthers() async throws {
        try await withServer { server in
            let frames = (0..<100).map { i -> [UInt8] in [i % 3 == 0 ? 0x01 : 0x02, UInt8(i)] }
            let expected = frames.filter { $0[0] == 0x02 }
            let got = try await TestClient.exchange(port: server.port, send: frames, expect: expected.count).get()
            #expect(got == expected)
        }
    }

    @Test func manyConnectionsAtOnceBeyondTheInFlightLimit() async throws {
        let config = try ServerConfiguration(listen: SocketAddress(parsing: "127.0.0.1:0"), maxInFlightRequestsPerConnection: 4)
        try await withServer(config) { server in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for c in 0..<8 {
                    group.addTask {
                        let frames = (0..<200).map { i -> [UInt8] in [0x02, UInt8(c), UInt8(i & 0xFF), UInt8(i >> 8)] }
                        let got = try await TestClient.exchange(port: server.port, send: frames, expect: frames.count).get()
                        #expect(got == frames)
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    @Test func oversizedFrameClosesOnlyThatConnection() async throws {
        let config = try ServerConfiguration(listen: SocketAddress(parsing: "127.0.0.1:0"), maxFrameSize: 1024)
        try await withServer(config) { server in
            let big = [UInt8](repeating: 0x02, count: 2048)
            let result = await TestClient.exchange(port: server.port, send: [[0x02, 9], big, [0x02, 10]], expect: 3)
            guard case let .failure(error as TestClient.Closed) = result else {
                Issue.record("expected the connection to be closed, got \(result)")
                return
            }
            #expect(error.received == [[0x02, 9]])
            let other = try await TestClient.exchange(port: server.port, send: [[0x02, 1]], expect: 1).get()
            #expect(other == [[0x02, 1]])
        }
    }

    @Test func handlerCanCloseAfterEarlierResponses() async throws {
        try await withServer { server in
            let result = await TestClient.exchange(port: server.port, send: [[0x02, 1], [0x02, 2], [0xEE], [0x02, 3]], expect: 3)
            guard case let .failure(error as TestClient.Closed) = result else {
                Issue.record("expected close, got \(result)")
                return
            }
            #expect(error.received == [[0x02, 1], [0x02, 2]])
        }
    }

    @Test func portInUseIsAClearError() async throws {
        try await withServer { server in
            let config = try ServerConfiguration(listen: SocketAddress(parsing: "127.0.0.1:\(server.port)"))
            #expect {
                _ = try KafkaServer(configuration: config, handler: ScramblingEcho())
            } throws: { error in
                "\(error)".contains("127.0.0.1:\(server.port): address already in use")
            }
        }
    }

    @Test func badListenAddressIsRejected() {
        #expect(throws: NetworkError.invalidAddress("nohost")) { try SocketAddress(parsing: "nohost") }
        #expect(throws: NetworkError.invalidAddress("256.1.1.1:9092")) { try SocketAddress(parsing: "256.1.1.1:9092") }
    }

    @Test func shutdownFinishesRequestsInFlight() async throws {
        let gate = Gate()
        let server = try KafkaServer(configuration: ServerConfiguration(listen: SocketAddress(parsing: "127.0.0.1:0")), handler: GatedEcho(gate: gate))
        async let serving: Void = server.run()
        async let reply = TestClient.exchange(port: server.port, send: [[1], [2], [3]], expect: 3)
        await gate.waitForArrivals(3)
        server.shutdown()
        gate.open()
        let got = try await reply.get()
        #expect(got == [[1], [2], [3]])
        await serving
        #expect(server.openConnections == 0)
    }
}

/// Holds deferred responses until the test opens the gate.
final class Gate: Sendable {
    struct State {
        var open = false
        var arrivals = 0
        var passWaiters: [CheckedContinuation<Void, Never>] = []
        var arrivalWaiters: [(count: Int, continuation: CheckedContinuation<Void, Never>)] = []
    }
    private let state = Mutex(State())

    func arrive() {
        let ready = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.arrivals += 1
            let due = s.arrivalWaiters.filter { $0.count <= s.arrivals }.map(\.continuation)
            s.arrivalWaiters.removeAll { $0.count <= s.arrivals }
            return due
        }
        ready.forEach { $0.resume() }
    }

    func waitForArrivals(_ n: Int) async {
        await withCheckedContinuation { c in
            let now = state.withLock { s -> Bool in
                if s.arrivals >= n { return true }
                s.arrivalWaiters.append((n, c))
                return false
            }
            if now { c.resume() }
        }
    }

    func open() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.open = true
            defer { s.passWaiters = [] }
            return s.passWaiters
        }
        waiters.forEach { $0.resume() }
    }

    func pass() async {
        await withCheckedContinuation { c in
            let now = state.withLock { s -> Bool in
                if s.open { return true }
                s.passWaiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }
}

struct GatedEcho: RequestHandler {
    let gate: Gate
    func handle(_ request: ServerRequest) async -> HandlerResult {
        gate.arrive()
        return .deferred {
            await gate.pass()
            return request.bytes
        }
    }
}
