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
        let outcome = await DurabilityWait.wait({}, timeout: .seconds(60), then: { thenRan.withLock { $0 = true } })
        guard case .durable = outcome else {
            Issue.record("expected durable, got \(outcome)")
            return
        }
        #expect(thenRan.withLock { $0 })
    }

    @Test func aFailureIsReported() async {
        let outcome = await DurabilityWait.wait({ throw Boom() }, timeout: .seconds(60), then: {})
        guard case let .failed(error) = outcome else {
            Issue.record("expected failed, got \(outcome)")
            return
        }
        #expect(error is Boom)
    }

    @Test func theDeadlineWinsAndTheAppendStillCompletesLater() async {
        let gate = Gate()
        let thenRan = Gate()
        let outcome = await DurabilityWait.wait({ await gate.wait() }, timeout: .milliseconds(20), then: { thenRan.open() })
        guard case .timedOut = outcome else {
            Issue.record("expected timedOut, got \(outcome)")
            return
        }
        // The wait goes on in the background: once durable, `then` still runs.
        gate.open()
        await thenRan.wait()
    }

    @Test func dispatchIntervalsAreClampedNotTrapped() {
        #expect(DurabilityWait.dispatchInterval(.milliseconds(1500)) == .nanoseconds(1_500_000_000))
        #expect(DurabilityWait.dispatchInterval(.seconds(-1)) == .nanoseconds(0))
        #expect(DurabilityWait.dispatchInterval(.seconds(Int64.max)) == .never)
        #expect(DurabilityWait.dispatchInterval(.milliseconds(Int64(Int32.max))) == .nanoseconds(Int(Int32.max) * 1_000_000))
    }
}
