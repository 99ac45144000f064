import Support
import Synchronization

/// A token bucket: `burst` requests may go at once, then `qps` per second on average.
/// Pure: the caller passes the time. ``reserve(now:)`` always grants a slot and returns how long
/// to wait before using it (zero when a token is available), so waiting callers are served in
/// the order they reserved and no request is ever refused.
///
/// Example: qps 5, burst 2: at t=0 three reservations return 0, 0 and 200 ms.
public struct TokenBucket: Sendable, Equatable {
    public let qps: Double
    public let burst: Int
    private var tokens: Double
    private var last: MonotonicInstant?

    public init(qps: Double, burst: Int) {
        precondition(qps > 0 && burst >= 1, "TokenBucket needs qps > 0 and burst >= 1")
        self.qps = qps
        self.burst = burst
        tokens = Double(burst)
    }

    public mutating func reserve(now: MonotonicInstant) -> Duration {
        if let last {
            let elapsed = max(0, now.duration(since: last).secondsDouble)
            tokens = min(Double(burst), tokens + elapsed * qps)
        }
        last = now
        tokens -= 1
        if tokens >= 0 { return .zero }
        return .nanoseconds(Int64((-tokens / qps) * 1e9))
    }
}

/// The client-side rate limiter shared by every request of a ``KubeClient``.
public final class RateLimiter: Sendable {
    private let bucket: Mutex<TokenBucket>
    private let clock: any FloeClock

    public init(qps: Double, burst: Int, clock: any FloeClock) {
        bucket = Mutex(TokenBucket(qps: qps, burst: burst))
        self.clock = clock
    }

    /// Waits (on the injected clock) until this request may go.
    public func wait() async throws {
        let now = clock.now()
        let delay = bucket.withLock { $0.reserve(now: now) }
        if delay > .zero { try await clock.sleep(for: delay) }
    }
}
