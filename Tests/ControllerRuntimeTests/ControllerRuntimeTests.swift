import ControllerRuntime
import FloeTestSupport
import Foundation
import KubeAPI
import Support
import Testing

@Suite struct WorkQueueStateTests {
    let t0 = MonotonicInstant(nanoseconds: 1_000_000_000)

    @Test func deduplicatesAndNeverHandsOutAKeyTwice() {
        var q = WorkQueueState<String>()
        q.add("a"); q.add("b"); q.add("a")
        #expect(q.readyCount == 2)
        #expect(q.next(now: t0) == .key("a"))
        q.add("a")  // while processing: dirty, not queued
        #expect(q.next(now: t0) == .key("b"))
        #expect(q.next(now: t0) == .wait(until: nil))
        q.done("a")  // re-queued because it was added during processing
        #expect(q.next(now: t0) == .key("a"))
        q.done("a")
        q.done("b")
        #expect(q.next(now: t0) == .wait(until: nil))
    }

    @Test func perKeyExponentialBackoffAndForget() {
        var q = WorkQueueState<String>(backoff: Backoff(initial: .milliseconds(10), maximum: .seconds(1), jitter: .none))
        #expect(q.addRateLimited("k", now: t0) == .milliseconds(10))
        #expect(q.next(now: t0) == .wait(until: t0.advanced(by: .milliseconds(10))))
        #expect(q.next(now: t0.advanced(by: .milliseconds(10))) == .key("k"))
        q.done("k")
        #expect(q.addRateLimited("k", now: t0) == .milliseconds(20))
        q.done("k")
        #expect(q.addRateLimited("k", now: t0) == .milliseconds(40))
        #expect(q.addRateLimited("other", now: t0) == .milliseconds(10), "backoff is per key")
        q.forget("k")
        #expect(q.failureCount("k") == 0)
        #expect(q.addRateLimited("k", now: t0) == .milliseconds(10))
        for _ in 0..<20 { _ = q.addRateLimited("k", now: t0) }
        #expect(q.addRateLimited("k", now: t0) == .seconds(1), "capped at the maximum")
    }

    @Test func delayedAddsKeepTheEarliestDeadlineAndImmediateAddsWin() {
        var q = WorkQueueState<String>()
        q.add("k", at: t0.advanced(by: .seconds(5)), now: t0)
        q.add("k", at: t0.advanced(by: .seconds(2)), now: t0)
        #expect(q.next(now: t0) == .wait(until: t0.advanced(by: .seconds(2))))
        q.add("k")
        #expect(q.next(now: t0) == .key("k"))
        q.done("k")
        #expect(q.next(now: t0.advanced(by: .seconds(10))) == .wait(until: nil), "the delayed entry was superseded")
    }

    @Test func boundedAndShutDownDrains() {
        var q = WorkQueueState<Int>(capacity: 3)
        let added = [q.add(1), q.add(2), q.add(3)]
        #expect(added == [true, true, true])
        let fourth = q.add(4)
        #expect(fourth == false)
        let again = q.add(1)
        #expect(again, "an already queued key is not a new one")
        #expect(q.refused == 1)
        q.shutDown()
        let late = q.add(5)
        #expect(late == false)
        #expect(q.next(now: t0) == .key(1))
        #expect(q.next(now: t0) == .key(2))
        #expect(q.next(now: t0) == .key(3))
        #expect(q.next(now: t0) == .shutDown)
    }
}

@Suite struct WorkQueueTests {
    @Test func workerWakesOnAddAndOnDeadlineWithAManualClock() async {
        let clock = ManualClock()
        let queue = WorkQueue<String>(clock: clock)
        queue.add("x", after: .seconds(3))
        async let first = queue.next()
        await clock.waitForSleepers(1)  // the worker sleeps until the deadline
        clock.advance(by: .seconds(3))
        #expect(await first == "x")
        queue.done("x")
        async let second = queue.next()
        queue.add("y")
        #expect(await second == "y")
        queue.done("y")
        queue.shutDown()
        #expect(await queue.next() == nil)
    }
}

extension LeaderElector.Action {
    /// The lease a `.create` writes (nil for any other action), for `requireCase`.
    var created: LeaseSpec? { if case .create(let spec) = self { spec } else { nil } }
    /// The lease an `.update` writes (nil for any other action).
    var updated: LeaseSpec? { if case .update(let spec) = self { spec } else { nil } }
}

@Suite struct LeaderElectorTests {
    let config = LeaderElectionConfig(namespace: "ns", leaseName: "l", identity: "me", leaseDuration: .seconds(15),
                                      renewDeadline: .seconds(10), retryPeriod: .seconds(2))
    let t0 = MonotonicInstant(nanoseconds: 1_000_000_000)
    let wall = Date(timeIntervalSince1970: 1_700_000_000)

    @Test func acquiresAMissingLeaseAndRenews() throws {
        var e = LeaderElector(config: config)
        let (action, transition) = e.decide(lease: nil, now: t0, wall: wall)
        let spec = try requireCase(action, ".create", \.created)
        #expect(transition == nil)
        #expect(spec.holderIdentity == "me" && spec.leaseDurationSeconds == 15 && spec.leaseTransitions == 0)
        #expect(e.writeSucceeded(spec, now: t0) == .startedLeading)
        #expect(e.isLeader)
        let (renew, _) = e.decide(lease: spec, now: t0.advanced(by: .seconds(2)), wall: wall.addingTimeInterval(2))
        let renewed = try requireCase(renew, ".update", \.updated)
        #expect(renewed.holderIdentity == "me" && renewed.acquireTime == spec.acquireTime && renewed.renewTime != spec.renewTime)
        #expect(e.writeSucceeded(renewed, now: t0.advanced(by: .seconds(2))) == nil)
    }

    @Test func waitsForAnotherHolderUntilItsRecordStopsChangingForTheLeaseDuration() throws {
        var e = LeaderElector(config: config)
        // The remote renewTime is far in the past: irrelevant, only our observation time counts.
        let other = LeaseSpec(holderIdentity: "other", leaseDurationSeconds: 15, acquireTime: "2000-01-01T00:00:00.000000Z",
                              renewTime: "2000-01-01T00:00:00.000000Z", leaseTransitions: 3)
        #expect(e.decide(lease: other, now: t0, wall: wall).action == .wait(.seconds(2)))
        #expect(e.decide(lease: other, now: t0.advanced(by: .seconds(14)), wall: wall).action == .wait(.seconds(2)))
        // The holder renews: the clock starts again.
        var renewed = other
        renewed.renewTime = "2000-01-01T00:00:10.000000Z"
        #expect(e.decide(lease: renewed, now: t0.advanced(by: .seconds(14)), wall: wall).action == .wait(.seconds(2)))
        #expect(e.decide(lease: renewed, now: t0.advanced(by: .seconds(28)), wall: wall).action == .wait(.seconds(2)))
        let (takeover, _) = e.decide(lease: renewed, now: t0.advanced(by: .seconds(29)), wall: wall)
        let spec = try requireCase(takeover, ".update", \.updated)
        #expect(spec.holderIdentity == "me" && spec.leaseTransitions == 4)
    }

    @Test func releasedLeaseIsTakenAtOnce() throws {
        var e = LeaderElector(config: config)
        let released = LeaseSpec(holderIdentity: nil, leaseDurationSeconds: 1, leaseTransitions: 1)
        let spec = try requireCase(e.decide(lease: released, now: t0, wall: wall).action, ".update (a takeover)", \.updated)
        #expect(spec.holderIdentity == "me" && spec.leaseTransitions == 2)
    }

    @Test func leaderLosesAfterRenewDeadlineOrWhenAnotherHolderAppears() throws {
        var e = LeaderElector(config: config)
        let spec = try requireCase(e.decide(lease: nil, now: t0, wall: wall).action, ".create", \.created)
        _ = e.writeSucceeded(spec, now: t0)
        #expect(e.writeFailed(now: t0.advanced(by: .seconds(5))) == nil, "within the renew deadline")
        #expect(e.writeFailed(now: t0.advanced(by: .seconds(10))) == .stoppedLeading)
        #expect(!e.isLeader)

        var f = LeaderElector(config: config)
        let s2 = try requireCase(f.decide(lease: nil, now: t0, wall: wall).action, ".create", \.created)
        _ = f.writeSucceeded(s2, now: t0)
        let stolen = LeaseSpec(holderIdentity: "other", leaseDurationSeconds: 15, leaseTransitions: 1)
        #expect(f.decide(lease: stolen, now: t0.advanced(by: .seconds(2)), wall: wall).transition == .stoppedLeading)
        #expect(!f.isLeader)
    }

    @Test func releaseClearsTheHolderOnlyWhenLeading() throws {
        var e = LeaderElector(config: config)
        #expect(e.release(current: LeaseSpec(holderIdentity: "me"), wall: wall) == nil, "not leading: nothing to release")
        let spec = try requireCase(e.decide(lease: nil, now: t0, wall: wall).action, ".create", \.created)
        _ = e.writeSucceeded(spec, now: t0)
        let released = e.release(current: spec, wall: wall)
        #expect(released?.holderIdentity == nil && released?.leaseDurationSeconds == 1 && released?.leaseTransitions == 0)
        #expect(!e.isLeader)
    }
}

@Suite struct ProbeServerTests {
    @Test func servesPathsAndRejectsOtherMethods() throws {
        let server = try ProbeServer(address: "127.0.0.1:0") { path in
            path == "/healthz" ? .ok("ok\n") : path == "/readyz" ? ProbeServer.Response(status: 503, body: "no\n") : .notFound
        }
        defer { server.stop() }
        func get(_ request: String) throws -> String {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = server.port.bigEndian
            sin.sin_addr.s_addr = inet_addr("127.0.0.1")
            let r = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            #expect(r == 0)
            _ = Array(request.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            var out: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                out += buf[0..<n]
            }
            return String(decoding: out, as: UTF8.self)
        }
        let health = try get("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(health.hasPrefix("HTTP/1.1 200 OK\r\n") && health.hasSuffix("\r\n\r\nok\n"))
        #expect(try get("GET /readyz?verbose HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 503"))
        #expect(try get("GET /nope HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 404"))
        #expect(try get("POST /healthz HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 405"))
        #expect(throws: SupportError.self) { _ = try ProbeServer(address: "nonsense") { _ in .notFound } }
    }
}
