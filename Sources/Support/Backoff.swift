/// Exponential backoff with jitter. The ceiling for attempt `n` (0-based) is
/// `min(maximum, initial * multiplier^n)`; the delay is drawn from that ceiling according to
/// ``Jitter``, using the random number generator the caller passes in (seed it in tests).
///
/// Example: initial 100 ms, multiplier 2, maximum 5 s, full jitter: attempt 0 waits a uniform
/// random time in [0, 100 ms], attempt 3 in [0, 800 ms], attempt 10 in [0, 5 s].
public struct Backoff: Sendable, Hashable {
    public enum Jitter: Sendable, Hashable {
        /// Uniform in [0, ceiling] ("full jitter"): spreads retries of many clients the most.
        case full
        /// Uniform in [ceiling/2, ceiling]: keeps a floor under the delay.
        case equal
        /// Exactly the ceiling.
        case none
    }

    public var initial: Duration
    public var maximum: Duration
    public var multiplier: Double
    public var jitter: Jitter

    public init(initial: Duration = .milliseconds(50), maximum: Duration = .seconds(5), multiplier: Double = 2,
                jitter: Jitter = .full) {
        precondition(initial >= .zero && maximum >= initial && multiplier >= 1,
                     "Backoff needs 0 <= initial <= maximum and multiplier >= 1")
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self.jitter = jitter
    }

    /// The largest delay attempt `attempt` (0-based) can wait.
    public func ceiling(forAttempt attempt: Int) -> Duration {
        let initialNanos = Double(initial.nanosecondsClamped)
        let maxNanos = Double(maximum.nanosecondsClamped)
        var value = initialNanos
        var n = 0
        while n < max(0, attempt) && value < maxNanos {
            value *= multiplier
            n += 1
        }
        return .nanoseconds(Int64(min(value, maxNanos)))
    }

    /// The delay before retry number `attempt` (0-based), drawn with `generator`.
    public func delay(forAttempt attempt: Int, using generator: inout some RandomNumberGenerator) -> Duration {
        let cap = ceiling(forAttempt: attempt).nanosecondsClamped
        switch jitter {
        case .none: return .nanoseconds(cap)
        case .full: return cap == 0 ? .zero : .nanoseconds(Int64.random(in: 0...cap, using: &generator))
        case .equal: return cap == 0 ? .zero : .nanoseconds(cap / 2 + Int64.random(in: 0...(cap - cap / 2), using: &generator))
        }
    }
}

/// A small, fast, seedable generator (SplitMix64). Deterministic for a given seed, so tests and
/// fault-injection runs can be replayed; not for cryptographic use.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
