import Foundation
import Synchronization

/// A point on a monotonic timeline, in nanoseconds from an arbitrary origin fixed per clock.
/// Only differences between instants of the same clock are meaningful.
public struct MonotonicInstant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: UInt64

    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    public static func < (a: Self, b: Self) -> Bool { a.nanoseconds < b.nanoseconds }

    /// The instant `duration` later (negative durations move earlier, saturating at the origin).
    public func advanced(by duration: Duration) -> MonotonicInstant {
        let delta = duration.nanosecondsClamped
        if delta >= 0 { return MonotonicInstant(nanoseconds: nanoseconds &+ UInt64(delta)) }
        let back = UInt64(-delta)
        return MonotonicInstant(nanoseconds: back > nanoseconds ? 0 : nanoseconds - back)
    }

    /// `self - earlier` as a duration (negative if `earlier` is later).
    public func duration(since earlier: MonotonicInstant) -> Duration {
        if nanoseconds >= earlier.nanoseconds { return .nanoseconds(Int64(clamping: nanoseconds - earlier.nanoseconds)) }
        return .nanoseconds(-Int64(clamping: earlier.nanoseconds - nanoseconds))
    }

    public var description: String { "\(nanoseconds)ns" }
}

extension Duration {
    /// The duration in whole nanoseconds, clamped to the Int64 range.
    public var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        let (sum, overflow2) = product.addingReportingOverflow(attoseconds / 1_000_000_000)
        if overflow2 { return seconds < 0 ? .min : .max }
        return sum
    }

    /// The duration in whole milliseconds (for logs).
    public var millisecondsClamped: Int64 { nanosecondsClamped / 1_000_000 }

    /// The duration in seconds as a floating-point number (for metrics and reports).
    public var secondsDouble: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// The source of time every Floe component is given instead of reading the system clock
/// directly, so that tests can drive time with a ``ManualClock`` and never sleep.
///
/// Invariants: `now()` never goes backwards; `sleep(for:)` returns no earlier than `now()` has
/// advanced by the duration, and throws `CancellationError` when the calling task is cancelled.
public protocol FloeClock: Sendable {
    /// The current monotonic instant.
    func now() -> MonotonicInstant
    /// The current wall-clock time (for signatures, timestamps in logs and object names).
    func wallTime() -> Date
    /// Suspends the calling task for `duration` of this clock's time.
    func sleep(for duration: Duration) async throws
}

/// The process's real clocks: `CLOCK_MONOTONIC` and the system wall clock.
public struct RealClock: FloeClock {
    public init() {}

    public func now() -> MonotonicInstant {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return MonotonicInstant(nanoseconds: UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec))
    }

    public func wallTime() -> Date { Date() }

    public func sleep(for duration: Duration) async throws {
        if duration <= .zero {
            try Task.checkCancellation()
            return
        }
        try await Task.sleep(for: duration)
    }
}

/// A clock that moves only when a test calls ``advance(by:)``. Sleepers are resumed, in deadline
/// order, as soon as the clock reaches their deadline; ``waitForSleepers(_:)`` lets a test wait
/// until the code under test has gone to sleep, so no real sleeping is ever needed.
///
/// Example: a retry loop sleeps 100 ms between attempts; the test awaits `waitForSleepers(1)`,
/// then `advance(by: .milliseconds(100))`, and the loop makes its next attempt.
public final class ManualClock: FloeClock {
    private struct Sleeper {
        var deadline: MonotonicInstant
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now: MonotonicInstant
        var wall: Date
        var nextID: UInt64 = 0
        var sleepers: [UInt64: Sleeper] = [:]
        var cancelledBeforeRegistration: Set<UInt64> = []
        var sleeperWaiters: [(count: Int, continuation: CheckedContinuation<Void, Never>)] = []
    }

    private let state: Mutex<State>

    public init(start: MonotonicInstant = MonotonicInstant(nanoseconds: 1_000_000_000),
                wallTime: Date = Date(timeIntervalSince1970: 1_700_000_000)) {
        state = Mutex(State(now: start, wall: wallTime))
    }

    public func now() -> MonotonicInstant { state.withLock { $0.now } }
    public func wallTime() -> Date { state.withLock { $0.wall } }

    /// The number of tasks currently suspended in ``sleep(for:)``.
    public var sleeperCount: Int { state.withLock { $0.sleepers.count } }

    /// The earliest deadline among current sleepers, if any.
    public var nextDeadline: MonotonicInstant? { state.withLock { $0.sleepers.values.map(\.deadline).min() } }

    /// Moves both the monotonic and the wall clock forward and resumes every sleeper whose
    /// deadline has been reached.
    public func advance(by duration: Duration) {
        precondition(duration >= .zero, "ManualClock.advance(by:) needs a non-negative duration, got \(duration)")
        let due: [Sleeper] = state.withLock { s in
            s.now = s.now.advanced(by: duration)
            s.wall = s.wall.addingTimeInterval(duration.secondsDouble)
            let ready = s.sleepers.filter { $0.value.deadline <= s.now }
            for id in ready.keys { s.sleepers.removeValue(forKey: id) }
            return ready.values.sorted { $0.deadline < $1.deadline }
        }
        for sleeper in due { sleeper.continuation.resume() }
    }

    /// Returns once at least `count` tasks are suspended in ``sleep(for:)``.
    public func waitForSleepers(_ count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { s -> Bool in
                if s.sleepers.count >= count { return true }
                s.sleeperWaiters.append((count, continuation))
                return false
            }
            if ready { continuation.resume() }
        }
    }

    public func sleep(for duration: Duration) async throws {
        try Task.checkCancellation()
        if duration <= .zero { return }
        let id = state.withLock { s -> UInt64 in
            s.nextID += 1
            return s.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let (outcome, waiters): (Bool?, [CheckedContinuation<Void, Never>]) = state.withLock { s in
                    if s.cancelledBeforeRegistration.remove(id) != nil { return (false, []) }
                    let deadline = s.now.advanced(by: duration)
                    if deadline <= s.now { return (true, []) }
                    s.sleepers[id] = Sleeper(deadline: deadline, continuation: continuation)
                    var woken: [CheckedContinuation<Void, Never>] = []
                    s.sleeperWaiters.removeAll { waiter in
                        if s.sleepers.count >= waiter.count {
                            woken.append(waiter.continuation)
                            return true
                        }
                        return false
                    }
                    return (nil, woken)
                }
                switch outcome {
                case .some(true): continuation.resume()
                case .some(false): continuation.resume(throwing: CancellationError())
                case .none: break
                }
                for waiter in waiters { waiter.resume() }
            }
        } onCancel: {
            let sleeper: Sleeper? = state.withLock { s in
                if let sleeper = s.sleepers.removeValue(forKey: id) { return sleeper }
                s.cancelledBeforeRegistration.insert(id)
                return nil
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }
}
