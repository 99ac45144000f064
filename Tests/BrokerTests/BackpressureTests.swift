import FloeTestSupport
import Foundation
import KafkaProtocol
import Support
import Synchronization
import Testing
@testable import Broker

#if canImport(Glibc)
import Glibc
#endif

/// Answers every request with a large response and records the server's unsent bytes seen
/// when each request reaches it.
final class LargeResponder: RequestHandler, Sendable {
    let size: Int
    let counters: Mutex<ServerCounters?>
    let handled = Atomic<Int>(0)
    let peakUnsent = Mutex<Double>(0)

    init(size: Int) {
        self.size = size
        counters = Mutex(nil)
    }

    func handle(_ request: ServerRequest) async -> HandlerResult {
        handled.wrappingAdd(1, ordering: .relaxed)
        if let unsent = counters.withLock({ $0 })?.unsentBytes.value {
            peakUnsent.withLock { $0 = max($0, unsent) }
        }
        return .respond(request.bytes + [UInt8](repeating: 0x5A, count: size))
    }
}

/// Frames `[0x10]` wait as a long poll until cancelled (or 90 s, so that a failing run ends);
/// `[0x20]` wait as ordinary deferred work until the gate opens, and record whether they were
/// cancelled.
final class LongPollProbe: RequestHandler, Sendable {
    let gate = Gate()
    let arrivals = Gate()
    let pollCancelled = Gate()
    let deferredWasCancelled = Mutex<Bool?>(nil)

    func handle(_ request: ServerRequest) async -> HandlerResult {
        arrivals.arrive()
        if request.bytes.first == 0x10 {
            return .longPoll { [self] in
                do { try await Task.sleep(for: .seconds(90)) } catch { pollCancelled.arrive() }
                return request.bytes
            }
        }
        return .deferred { [self] in
            await gate.pass()
            deferredWasCancelled.withLock { $0 = Task.isCancelled }
            return request.bytes
        }
    }
}

/// Waits for `condition`, polling every 5 ms, at most `seconds` (a bound on a hang, not a timing
/// check); false when it never held.
func eventually(within seconds: Double = 60, _ condition: () -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
    while !condition() {
        if ContinuousClock.now >= deadline { return false }
        try await Task.sleep(for: .milliseconds(5))
    }
    return true
}

/// Awaits `gate` having `count` arrivals, at most `seconds`; false on timeout.
func arrivals(_ gate: Gate, _ count: Int, within seconds: Double = 60) async -> Bool {
    await withTaskGroup(of: Bool.self) { group in
        group.addTask {
            await gate.waitForArrivals(count)
            return true
        }
        group.addTask {
            do { try await Task.sleep(for: .milliseconds(Int64(seconds * 1000))) } catch {}
            return false
        }
        let first = await group.next() ?? false
        group.cancelAll()
        // The waiter cannot be cancelled: let it resume by arriving as often as needed.
        if !first { for _ in 0..<count { gate.arrive() } }
        return first
    }
}

struct BackpressureTests {
    /// A client that pipelines requests and does not read: the server stops reading once its
    /// unsent responses pass the bound, and serves everything once the client reads.
    @Test func unsentBoundPausesReadingAndResumes() async throws {
        let responseSize = 16 * 1024
        let bound = 64 * 1024
        let inFlight = 4
        let handler = LargeResponder(size: responseSize)
        var config = try ServerConfiguration(listen: SocketAddress(parsing: "127.0.0.1:0"), maxInFlightRequestsPerConnection: inFlight)
        config.maxUnsentBytesPerConnection = bound
        let requests = 2_000
        try await withServer(config, handler: handler) { server in
            handler.counters.withLock { $0 = server.counters }
            let fd = try TestClient.connect(port: server.port)
            defer { close(fd) }
            var frames: [UInt8] = []
            for i in 0..<requests { frames += [0, 0, 0, 4] + withUnsafeBytes(of: UInt32(i).bigEndian, Array.init) }
            let sent = frames.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            try #require(sent == frames.count)
            // Nothing is read yet: the server must stop reading (32 MiB of responses would be due).
            let paused = try await eventually { server.counters.unsentPauses.value >= 1 }
            try #require(paused, "the server never paused reading: \(handler.handled.load(ordering: .relaxed)) requests handled")
            let handledWhilePaused = handler.handled.load(ordering: .relaxed)
            #expect(handledWhilePaused < requests)
            // Unsent bytes never exceeded the bound plus the responses of the requests in flight.
            let peak = handler.peakUnsent.withLock { $0 }
            #expect(peak <= Double(bound + (inFlight + 1) * (responseSize + 8)), "peak unsent bytes \(peak)")
            // Reading everything now: reading resumes and every response arrives, in order.
            let got = try await withCheckedThrowingContinuation { (c: CheckedContinuation<[[UInt8]], Error>) in
                Thread { c.resume(with: Result { try TestClient.readFrames(fd, count: requests) }) }.start()
            }
            #expect(got.count == requests)
            #expect(got.enumerated().allSatisfy { i, f in Array(f.prefix(4)) == withUnsafeBytes(of: UInt32(i).bigEndian, Array.init) })
            #expect(handler.handled.load(ordering: .relaxed) == requests)
        }
        #expect(handler.counters.withLock { $0 }?.unsentBytes.value == 0)
    }

    /// A peer that goes away cancels its long polls at once; ordinary deferred work (a Produce's
    /// append) runs on uncancelled.
    @Test func closingAConnectionCancelsItsLongPollOnly() async throws {
        let probe = LongPollProbe()
        try await withServer(handler: probe) { server in
            let fd = try TestClient.connect(port: server.port)
            let frames: [UInt8] = [0, 0, 0, 1, 0x20, 0, 0, 0, 1, 0x10]
            let sent = frames.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            try #require(sent == frames.count)
            let both = await arrivals(probe.arrivals, 2)
            try #require(both, "the server did not hand over both requests")
            close(fd)
            // Without cancellation the poll would wait 90 s; 60 s bounds the wait for it.
            let cancelled = await arrivals(probe.pollCancelled, 1)
            #expect(cancelled, "the long poll was not cancelled when its connection closed")
            probe.gate.open()
            let finished = try await eventually { probe.deferredWasCancelled.withLock { $0 } != nil }
            try #require(finished)
            #expect(probe.deferredWasCancelled.withLock { $0 } == false, "ordinary deferred work must not be cancelled")
        }
    }

    /// A request trickling in (1 byte every 50 ms) is closed after the read deadline, although
    /// the connection is never idle for long.
    @Test func slowlorisIsClosedAfterTheReadDeadline() async throws {
        var config = try ServerConfiguration(listen: SocketAddress(parsing: "127.0.0.1:0"), idleTimeoutMilliseconds: 1_000)
        config.requestReadTimeoutMilliseconds = 500
        try await withServer(config) { server in
            // A well-behaved request on another connection is served.
            let other = try await TestClient.exchange(port: server.port, send: [[0x02, 7]], expect: 1).get()
            #expect(other == [[0x02, 7]])
            let total = 120  // 6 s of trickling at most, far past the 0.5 s deadline
            let closedAfter = try await withCheckedThrowingContinuation { (c: CheckedContinuation<Int?, Error>) in
                Thread {
                    c.resume(with: Result {
                        let fd = try TestClient.connect(port: server.port)
                        defer { close(fd) }
                        // Announces a frame of `total` bytes, then sends it one byte at a time.
                        let prefix = withUnsafeBytes(of: UInt32(total).bigEndian, Array.init)
                        _ = prefix.withUnsafeBytes { send(fd, $0.baseAddress, 4, Int32(MSG_NOSIGNAL)) }
                        for i in 0..<total {
                            var byte: UInt8 = 0x02
                            if send(fd, &byte, 1, Int32(MSG_NOSIGNAL)) != 1 { return i }
                            var probe: UInt8 = 0
                            let r = recv(fd, &probe, 1, Int32(MSG_DONTWAIT))
                            if r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) { return i }
                            usleep(50_000)  // the client's pace (the attack), not synchronization
                        }
                        return nil
                    })
                }.start()
            }
            let closed = try #require(closedAfter, "the server kept a trickling request open past its read deadline")
            #expect(closed < total)
            #expect(server.counters.requestReadTimeouts.value == 1)
        }
    }

    /// Long polls are bounded per connection and in total; beyond a bound a Fetch is answered
    /// at once. A long poll is cancellable (what the server does when its connection closes).
    @Test func parkedFetchesAreBounded() async throws {
        let h = try await Harness.make(settings: ["max.parked.fetches.per.connection": "2", "max.parked.fetches": "3"])
        try await h.createTopic("t")
        let handler = FetchHandler(core: h.core)
        let request = AnyRequest.fetch(FetchRequest(maxWaitMs: 60_000, minBytes: 1, maxBytes: 1 << 20, topics: [
            .init(topic: "t", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)]),
        ]))
        func fetch(on connection: UInt64) async -> ApiResult {
            let context = RequestContext(connection: ConnectionInfo(id: connection, peer: "test"),
                                         header: RequestHeader(requestApiKey: ApiKey.fetch.rawValue, requestApiVersion: 11, correlationId: 1, clientId: "t"),
                                         apiKey: .fetch)
            return await handler.handle(request, context: context)
        }
        var polls: [(@Sendable () async -> AnyResponse?)] = []
        polls.append(try requireCase(await fetch(on: 1), "a long poll", \.longPollAnswer))
        polls.append(try requireCase(await fetch(on: 1), "a long poll", \.longPollAnswer))
        // The connection's third waiting Fetch is answered at once, empty.
        let third = try requireCase(await fetch(on: 1), "an answer at once (per-connection bound)", \.response)
        #expect(try fetchedRecords(try requireResponse(third, as: FetchResponse.self).responses[0].partitions[0].records).isEmpty)
        polls.append(try requireCase(await fetch(on: 2), "a long poll", \.longPollAnswer))
        // Three wait in total: another connection's Fetch is answered at once too.
        _ = try requireCase(await fetch(on: 3), "an answer at once (total bound)", \.response)
        #expect(h.core.parked.admitted == 3)
        #expect(h.core.parked.refused == 2)
        // A cancelled long poll (its connection closed) returns at once instead of in 60 s.
        let cancelled = Task { [poll = polls[0]] in await poll() }
        cancelled.cancel()
        #expect(await cancelled.value == nil)
        // A produce wakes the others, which answer with the records.
        let rest = Array(polls[1...])
        polls = []
        async let answers = withTaskGroup(of: AnyResponse?.self) { group in
            for poll in rest { group.addTask { await poll() } }
            return await group.reduce(into: [AnyResponse?]()) { $0.append($1) }
        }
        #expect(try await h.produce("t", batch: try makeBatch(count: 2))?.errorCode == 0)
        for answer in await answers {
            #expect(try fetchedRecords(try requireResponse(answer, as: FetchResponse.self).responses[0].partitions[0].records).count == 2)
        }
        // Admissions end with their long polls.
        let released = try await eventually { h.core.parked.admitted == 0 }
        #expect(released, "admissions left: \(h.core.parked.admitted)")
    }
}

extension ApiResult {
    /// The answer of a `.response` (nil for any other result), for `requireCase`.
    var response: AnyResponse? { if case let .response(r) = self { r } else { nil } }
}

extension TestClient {
    /// Reads `count` size-prefixed frames from a blocking socket.
    static func readFrames(_ fd: Int32, count: Int) throws -> [[UInt8]] {
        var buffer: [UInt8] = []
        var received: [[UInt8]] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var start = 0
        while received.count < count {
            let r = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw TimedOut(received: received) }
            if r <= 0 { throw Closed(received: received) }
            buffer.append(contentsOf: chunk[0..<r])
            while buffer.count - start >= 4 {
                let size = Int(UInt32(buffer[start]) << 24 | UInt32(buffer[start + 1]) << 16 | UInt32(buffer[start + 2]) << 8 | UInt32(buffer[start + 3]))
                guard buffer.count - start >= 4 + size else { break }
                received.append(Array(buffer[(start + 4)..<(start + 4 + size)]))
                start += 4 + size
            }
            if start > 1 << 20 {
                buffer.removeFirst(start)
                start = 0
            }
        }
        return received
    }
}
