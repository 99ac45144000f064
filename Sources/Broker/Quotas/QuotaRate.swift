/// A rate measured over sampled windows, exactly as Kafka's `Rate` over a `SampledStat`
/// (`quota.window.num` = 11 samples of `quota.window.size.seconds` = 1 s), with Kafka's
/// throttle-time formula. A value, not a clock reader: every call is given the time.
///
/// Samples: each has a start time and a sum. A record goes into the current sample, or into a
/// new one when the current sample is a full window old (the oldest is reused once there are
/// `samples` of them). A sample older than `samples` windows counts as empty. The rate is the
/// sum of the samples divided by the time since the oldest sample began, but never less than
/// `samples - 1` windows (Kafka's `Rate.windowSize`), so a client that has just started cannot
/// burst at ten times its quota in its first second.
///
/// Example (1 s windows, 11 samples, quota 1000 B/s): 5000 bytes recorded at t = 0 give
/// 5000 / 10 s = 500 B/s (within quota); 12 000 bytes more at t = 0.5 s give 17 000 / 10.5 s
/// (0.5 s elapsed plus the 10 windows not yet full) ≈ 1619 B/s: over, so throttle =
/// (1619 − 1000) / 1000 × 10 500 ms = 6500 ms.
public struct QuotaRate: Sendable, Equatable {
    public var samples: Int
    public var windowMillis: Int64
    struct Sample: Sendable, Equatable {
        var start: Int64
        var value: Double
    }
    private var list: [Sample] = []
    private var current = 0

    public init(samples: Int = 11, windowMillis: Int64 = 1000) {
        self.samples = max(2, samples)
        self.windowMillis = max(1, windowMillis)
    }

    /// Adds `value` at `now` (negative values undo an earlier record, as Kafka's unrecord does).
    public mutating func record(_ value: Double, now: Int64) {
        if list.isEmpty { list.append(Sample(start: now, value: 0)) }
        if now - list[current].start >= windowMillis {
            current = (current + 1) % samples
            if current >= list.count {
                list.append(Sample(start: now, value: 0))
            } else {
                list[current] = Sample(start: now, value: 0)
            }
        }
        list[current].value += value
    }

    private mutating func purge(now: Int64) {
        let expireAge = Int64(samples) * windowMillis
        for i in list.indices where now - list[i].start >= expireAge { list[i] = Sample(start: now, value: 0) }
    }

    /// The duration the rate is measured over, in milliseconds (Kafka's `Rate.windowSize`).
    public mutating func windowSize(now: Int64) -> Int64 {
        purge(now: now)
        if list.isEmpty { list.append(Sample(start: now, value: 0)) }
        let oldest = list.map(\.start).min() ?? now
        var elapsed = now - oldest
        let fullWindows = elapsed / windowMillis
        let minFull = Int64(samples - 1)
        if fullWindows < minFull { elapsed += (minFull - fullWindows) * windowMillis }
        return max(elapsed, 1)
    }

    /// The rate per second at `now`.
    public mutating func measure(now: Int64) -> Double {
        purge(now: now)
        let total = list.reduce(0) { $0 + $1.value }
        return total / (Double(windowSize(now: now)) / 1000)
    }

    /// Kafka's throttle time for a rate over `limit`: (rate − limit) / limit × window size,
    /// rounded; 0 when the rate is within the limit. `maxMillis` bounds it (request quotas).
    public mutating func throttleMillis(limit: Double, now: Int64, maxMillis: Int64? = nil) -> Int64 {
        let rate = measure(now: now)
        guard limit > 0, rate > limit else { return 0 }
        let t = Int64(((rate - limit) / limit * Double(windowSize(now: now))).rounded())
        guard let maxMillis else { return max(0, t) }
        return max(0, min(t, maxMillis))
    }
}
