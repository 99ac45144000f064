import Dispatch
import Synchronization
import Testing
@testable import Broker

/// `DurabilityWait`: the race between an append becoming durable and the request's deadline.
struct DurabilityWaitTests {
    struct Boom: Error {}

    /// A durability that completes only when the test says so.
    final class Gate: Sendable {
        private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))
        func wait() async {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if s.open { return true }
                    s.waiters.append(c)
                    return false
                }
                if now { c.resume() }
            }
        }
        func open() {
            let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
                s.open = true
                defer { s.waiters = [] }
                return s.waiters
            }
            for w in waiters { w.resume() }
        }
    }

    @Test func durableBeforeTheDeadlineRunsThenFirst() async {
        let thenRan = Mutex(false)
        let outcome = await DurabilityWait.wait(Durability(wait: {}), timeout: .seconds(60), then: { thenRan.withLock { $0 = true } })
        guard case .durable = outcome else {
            Issue.record("expected durable, got \(outcome)")
            return
        }
        #expect(thenRan.withLock { $0 })
    }

    @Test func aFailureIsReported() async {
        let outcome = await DurabilityWait.wait(Durability(wait: { throw Boom() }), timeout: .seconds(60), then: {})
        guard case let .failed(error) = outcome else {
            Issue.record("expected failed, got \(outcome)")
            return
        }
        #expect(error is Boom)
    }

    @Test func theDeadlineWinsAndTheAppendStillCompletesLater() async {
        let gate = Gate()
        let thenRan = Gate()
        let outcome = await DurabilityWait.wait(Durability(wait: { await gate.wait() }), timeout: .milliseconds(20), then: { thenRan.open() })
        guard case .timedOut = outcome else {
            Issue.record("expected timedOut, got \(outcome)")
            return
        }
        // The wait goes on in the background: once durable, `then` still runs.
        gate.open()
        await thenRan.wait()
    }

    /// A durability told by callback (as the stream store's is): a callback made at once, or
    /// later from another thread, answers the wait, and its deadline is cancelled either way.
    @Test func aCallbackAnswersTheWaitAndCancelsItsDeadline() async {
        let deadlines = DeadlineTimer()
        let atOnce = Durability(wait: {}, notify: { done in done(.success(())) })
        guard case .durable = await DurabilityWait.wait(atOnce, timeout: .seconds(60), deadlines: deadlines, then: {}) else {
            Issue.record("a callback made at once should answer durable")
            return
        }
        let later = Durability(wait: {}, notify: { done in
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(5)) { done(.failure(Boom())) }
        })
        guard case let .failed(error) = await DurabilityWait.wait(later, timeout: .seconds(60), deadlines: deadlines, then: {}) else {
            Issue.record("a failure reported later should answer failed")
            return
        }
        #expect(error is Boom)
        #expect(deadlines.pending == 0, "answered waits leave no deadline behind")
    }

    /// One timer serves every deadline: each fires once, also an earlier one added after a later
    /// one (at its own time, not the later one's), cancelled ones never, and none is left after.
    /// Fire times are taken in the callbacks: a busy test process may look much later.
    @Test func deadlinesFireOnceInTimeAndCancelledOnesNever() async throws {
        let deadlines = DeadlineTimer()
        let fired = Mutex<[(String, UInt64)]>([])
        let start = DispatchTime.now().uptimeNanoseconds
        func record(_ name: String) -> @Sendable () -> Void {
            { fired.withLock { $0.append((name, DispatchTime.now().uptimeNanoseconds - start)) } }
        }
        _ = deadlines.add(after: .milliseconds(1000), record("late"))
        _ = deadlines.add(after: .milliseconds(30), record("early"))
        let cancelled = deadlines.add(after: .milliseconds(10), record("cancelled"))
        deadlines.cancel(cancelled)
        while fired.withLock({ $0.count < 2 }) { try await Task.sleep(for: .milliseconds(5)) }
        try await Task.sleep(for: .milliseconds(50))
        let events = fired.withLock { $0 }
        #expect(events.map(\.0) == ["early", "late"])
        #expect(events[0].1 >= 30_000_000 && events[0].1 < 1_000_000_000, "early fired at \(events[0].1) ns, before the late deadline")
        #expect(events[1].1 >= 1_000_000_000)
        #expect(deadlines.pending == 0)
    }

    @Test func dispatchIntervalsAreClampedNotTrapped() {
        #expect(DurabilityWait.dispatchInterval(.milliseconds(1500)) == .nanoseconds(1_500_000_000))
        #expect(DurabilityWait.dispatchInterval(.seconds(-1)) == .nanoseconds(0))
        #expect(DurabilityWait.dispatchInterval(.seconds(Int64.max)) == .never)
        #expect(DurabilityWait.dispatchInterval(.milliseconds(Int64(Int32.max))) == .nanoseconds(Int(Int32.max) * 1_000_000))
    }
}
