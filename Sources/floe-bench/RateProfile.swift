import Foundation

// Rate profiles for `floe-bench kafka --rate`: a target send rate that changes over the run, so
// a person can watch a cluster grow and shrink under load. Pure values; the sending loop in
// KafkaBenchmark.swift asks `RateSchedule` when each request is due.

/// A target send rate over time, in records per second, from the start of the run.
///
/// Invariant: `0 < low <= high`, and `low <= rate(at: t) <= high` for every `t >= 0`;
/// `records(by:)` is the exact integral of `rate(at:)` from 0, so it is continuous and strictly
/// increasing.
///
/// Shapes (with `--rate 1000..5000 --ramp 10s --hold 20s --down 10s`):
/// - `constant`: `low` throughout (`--rate 2000`, `--rate 5MiB/s`).
/// - `ramp` (the default with a range): 1000 at 0 s rising linearly to 5000 at 10 s (3000 at
///   5 s), 5000 until 30 s, falling linearly to 1000 at 40 s, then 1000 for the rest of the run.
///   `records(by: 10) = 1000 × 10 + 4000 × 10 / 2 = 30,000`.
/// - `step`: 1000 until 10 s, 5000 from 10 s to 30 s, 1000 from 30 s on (the --down time is
///   spent at the low rate; the run still defaults to ramp + hold + down).
/// - `daily` (`--period P`): `low + (high − low) × f(x)` with `x = (t mod P) / P`, the fraction
///   of a "day" (0 = midnight), repeating every period:
///
///       h(x) = sin²(π x)                              day hump: 0 at midnight, 1 at noon
///       s(x) = cos²(π (x − 0.8) / (2 × 0.025))        festival spike around x = 0.8 (19:12),
///              for |x − 0.8| < 0.025, else 0          5% of the day wide at its base
///       f(x) = 0.6 × h(x) × (1 − s(x)) + s(x)
///
///   `f` is a blend of the hump (at most 0.6) and 1 weighted by the spike, so `0 <= f <= 1`:
///   the low rate at midnight, 0.6 of the way up at noon, the high rate exactly at 19:12, back
///   on the hump 36 "minutes" either side. In a 10-minute period the spike lasts 30 s.
struct RateProfile: Equatable, Sendable {
    /// The three phases of a ramp or step profile, in seconds.
    struct Phases: Equatable, Sendable {
        var up: Double
        var hold: Double
        var down: Double
        var total: Double { up + hold + down }
    }

    enum Shape: Equatable, Sendable {
        case constant
        case ramp(Phases)
        case step(Phases)
        case daily(period: Double)
    }

    let low: Double
    let high: Double
    let shape: Shape

    /// A fixed rate.
    init(constant recordsPerSecond: Double) {
        low = recordsPerSecond
        high = recordsPerSecond
        shape = .constant
    }

    init(low: Double, high: Double, shape: Shape) {
        precondition(low > 0 && low <= high, "rate profile needs 0 < low <= high, got \(low)..\(high)")
        self.low = low
        self.high = high
        self.shape = shape
    }

    /// Whether the rate changes over time (progress lines are printed for these).
    var isShaped: Bool {
        if case .constant = shape { return false }
        return true
    }

    /// The run length the profile implies when --duration is not given: ramp + hold + down, or
    /// one period; nil for a constant rate.
    var naturalDuration: Double? {
        switch shape {
        case .constant: return nil
        case let .ramp(p), let .step(p): return p.total
        case let .daily(period): return period
        }
    }

    /// The target rate in records per second `seconds` after the start.
    func rate(at seconds: Double) -> Double {
        let t = max(0, seconds)
        let span = high - low
        switch shape {
        case .constant:
            return low
        case let .ramp(p):
            if t < p.up { return low + span * t / p.up }
            if t < p.up + p.hold { return high }
            if t < p.total { return high - span * (t - p.up - p.hold) / p.down }
            return low
        case let .step(p):
            return t >= p.up && t < p.up + p.hold ? high : low
        case let .daily(period):
            let x = (t / period).truncatingRemainder(dividingBy: 1)
            return low + span * Daily.f(x)
        }
    }

    /// Records due from the start to `seconds`: the integral of `rate(at:)` over `0...seconds`.
    func records(by seconds: Double) -> Double {
        let t = max(0, seconds)
        let span = high - low
        switch shape {
        case .constant:
            return low * t
        case let .ramp(p):
            // The rate rises from low to high over `up` and falls back over `down`: the area
            // above `low` is a trapezoid of height `span`.
            let u = min(t, p.up)
            var above = span * (p.up > 0 ? u * u / (2 * p.up) : 0)
            if t > p.up { above += span * min(t - p.up, p.hold) }
            if t > p.up + p.hold {
                let d = min(t - p.up - p.hold, p.down)
                above += span * (d - (p.down > 0 ? d * d / (2 * p.down) : 0))
            }
            return low * t + above
        case let .step(p):
            return low * t + span * min(max(t - p.up, 0), p.hold)
        case let .daily(period):
            let y = t / period
            let whole = y.rounded(.down)
            return low * t + span * period * (whole * Daily.integral(1) + Daily.integral(y - whole))
        }
    }

    /// One line for the run's method text, e.g. "ramp 1,024 → 8,192 records/s over 10 s, hold
    /// 10 s, down 10 s, then 1,024".
    func describe(recordSize: Int) -> String {
        func r(_ v: Double) -> String {
            String(format: "%.0f records/s (%.2f MiB/s)", v, v * Double(recordSize) / 1_048_576)
        }
        switch shape {
        case .constant:
            return "a fixed \(r(low))"
        case let .ramp(p):
            return "ramp \(r(low)) → \(r(high)) over \(seconds(p.up)), hold \(seconds(p.hold)), down over \(seconds(p.down)), then the low rate"
        case let .step(p):
            return "step: \(r(low)) for \(seconds(p.up)), \(r(high)) for \(seconds(p.hold)), then the low rate"
        case let .daily(period):
            return "daily curve \(r(low)) .. \(r(high)) over a \(seconds(period)) period (hump to 0.6 at noon, spike to 1.0 at 19:12)"
        }
    }

    private func seconds(_ s: Double) -> String { String(format: "%g s", s) }

    /// The daily curve on a unit day, and its exact integral (see the type's doc comment).
    enum Daily {
        static let hump = 0.6
        static let spikeAt = 0.8
        static let spikeHalfWidth = 0.025

        static func f(_ x: Double) -> Double {
            let h = sin(Double.pi * x) * sin(Double.pi * x)
            let s = spike(x)
            return hump * h * (1 - s) + s
        }

        static func spike(_ x: Double) -> Double {
            let u = x - spikeAt
            guard abs(u) < spikeHalfWidth else { return 0 }
            let c = cos(Double.pi * u / (2 * spikeHalfWidth))
            return c * c
        }

        /// ∫₀ˣ f for 0 <= x <= 1: hump × (H − HS) + S, where H = ∫h, S = ∫s and HS = ∫h·s.
        static func integral(_ x: Double) -> Double {
            let twoPi = 2 * Double.pi
            let bigH = x / 2 - sin(twoPi * x) / (2 * twoPi)
            let w = spikeHalfWidth
            let k = Double.pi / w  // s = (1 + cos(k u)) / 2 with u = x − spikeAt
            let u = min(max(x - spikeAt, -w), w)
            // ∫ s du from −w to u (sin(−k w) = sin(−π) = 0).
            let bigS = (u + w) / 2 + sin(k * u) / (2 * k)
            // h·s = ¼ (1 + cos ku − cos 2πx − ½ cos(2πx₀ + (2π+k)u) − ½ cos(2πx₀ + (2π−k)u)).
            func hs(_ u: Double) -> Double {
                let a = twoPi * spikeAt
                return (u + sin(k * u) / k - sin(a + twoPi * u) / twoPi
                    - sin(a + (twoPi + k) * u) / (2 * (twoPi + k)) - sin(a + (twoPi - k) * u) / (2 * (twoPi - k))) / 4
            }
            let bigHS = hs(u) - hs(-w)
            return hump * (bigH - bigHS) + bigS
        }
    }
}

/// When each request of a profiled run is due: request `k` (counted from 0 over all
/// connections) is due at the time `t` where `records(by: t) = k × recordsPerRequest`, so
/// request 0 is due at the start and the number of requests due by `t` is
/// `⌊records(by: t) / recordsPerRequest⌋ + 1`.
///
/// Each connection keeps its own schedule and asks for increasing `k` (its own requests
/// `i, i + C, i + 2C, …`); the previous answer is the lower bracket of the next search.
struct RateSchedule: Sendable {
    let profile: RateProfile
    let recordsPerRequest: Double
    private var lastDue = 0.0

    init(profile: RateProfile, recordsPerRequest: Int) {
        self.profile = profile
        self.recordsPerRequest = Double(recordsPerRequest)
    }

    /// Seconds from the start at which request `k` is due. `k` must not decrease between calls.
    mutating func dueTime(ofRequest k: Int) -> Double {
        let target = Double(k) * recordsPerRequest
        if case .constant = profile.shape {
            lastDue = target / profile.low
            return lastDue
        }
        if target <= profile.records(by: lastDue) { return lastDue }  // request 0 at the start
        // records(by:) is strictly increasing with slope >= low: bracket, then bisect to 100 ns
        // (the answer is the bracket's upper end: at most 100 ns late, never early).
        var lo = lastDue
        var step = max(recordsPerRequest / profile.high, 1e-3)
        var hi = lo + step
        while profile.records(by: hi) < target {
            lo = hi
            step *= 2
            hi = lo + step
        }
        while hi - lo > 1e-7 {
            let mid = (lo + hi) / 2
            if profile.records(by: mid) < target { lo = mid } else { hi = mid }
        }
        lastDue = hi
        return hi
    }
}

// MARK: - Parsing the options

extension RateProfile {
    static let byteUnits: [(String, Double)] = [
        ("B/s", 1), ("KB/s", 1e3), ("KiB/s", 1024), ("MB/s", 1e6), ("MiB/s", 1_048_576), ("GB/s", 1e9),
        ("GiB/s", 1_073_741_824),
    ]

    /// A rate profile from the options of `floe-bench kafka`, or nil without --rate (as fast as
    /// the window allows). `recordSize` converts byte rates to records/s.
    ///
    /// `--rate 2000` → constant 2000 records/s; `--rate 5MiB/s` with 1 KiB records → constant
    /// 5120 records/s; `--rate 5MiB/s..50MiB/s` → ramp 5120..51200 (profile `ramp`, 60 s per
    /// phase unless --ramp/--hold/--down say otherwise); `--profile daily --period 10m` → the
    /// daily curve over 600 s.
    static func parse(
        rate: String?, profile: String?, ramp: String?, hold: String?, down: String?, period: String?,
        recordSize: Int
    ) throws -> RateProfile? {
        guard let rate else {
            for (name, value) in [("profile", profile), ("ramp", ramp), ("hold", hold), ("down", down), ("period", period)]
            where value != nil {
                throw KafkaBenchError("--\(name) needs a range in --rate, e.g. --rate 1MiB/s..8MiB/s")
            }
            return nil
        }
        let bounds = rate.components(separatedBy: "..")
        guard bounds.count <= 2 else { throw KafkaBenchError("--rate \(rate): a range has one '..', e.g. 1000..5000") }
        let values = try bounds.map { try parseRate($0, option: rate, recordSize: recordSize) }
        if values.count == 1 {
            for (name, value) in [("profile", profile), ("ramp", ramp), ("hold", hold), ("down", down), ("period", period)]
            where value != nil {
                throw KafkaBenchError("--\(name) needs a range in --rate (low..high), got the single rate \(rate)")
            }
            return RateProfile(constant: values[0])
        }
        let (low, high) = (values[0], values[1])
        guard low <= high else {
            throw KafkaBenchError("--rate \(rate): the low end (\(bounds[0])) is above the high end (\(bounds[1]))")
        }
        func duration(_ name: String, _ text: String?, default def: Double) throws -> Double {
            guard let text else { return def }
            return try parseDuration(text, option: name)
        }
        switch profile ?? "ramp" {
        case "ramp", "step":
            if period != nil { throw KafkaBenchError("--period is for --profile daily") }
            let phases = Phases(
                up: try duration("ramp", ramp, default: 60), hold: try duration("hold", hold, default: 60),
                down: try duration("down", down, default: 60))
            guard phases.total > 0 else { throw KafkaBenchError("--ramp, --hold and --down are all 0: the profile has no length") }
            return RateProfile(low: low, high: high, shape: profile == "step" ? .step(phases) : .ramp(phases))
        case "daily":
            for (name, value) in [("ramp", ramp), ("hold", hold), ("down", down)] where value != nil {
                throw KafkaBenchError("--\(name) is for --profile ramp or step; daily takes --period")
            }
            let p = try duration("period", period, default: 600)
            guard p > 0 else { throw KafkaBenchError("--period must be longer than 0, got \(period ?? "")") }
            return RateProfile(low: low, high: high, shape: .daily(period: p))
        case let other:
            throw KafkaBenchError("--profile \(other): unknown profile (use ramp, step or daily)")
        }
    }

    /// One end of --rate: a plain number is records/s; a number with a byte unit is bytes of
    /// record values per second.
    static func parseRate(_ text: String, option: String, recordSize: Int) throws -> Double {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix { $0.isNumber || $0 == "." }
        let unit = trimmed.dropFirst(digits.count).trimmingCharacters(in: .whitespaces)
        guard !digits.isEmpty, let number = Double(digits) else {
            throw KafkaBenchError("--rate \(option): \"\(trimmed)\" is not a rate (use records/s like 2000, or bytes/s like 5MiB/s)")
        }
        let perSecond: Double
        if unit.isEmpty || unit == "/s" {
            perSecond = number
        } else if let scale = byteUnits.first(where: { $0.0 == unit })?.1 {
            perSecond = number * scale / Double(recordSize)
        } else {
            let names = byteUnits.map(\.0).joined(separator: ", ")
            throw KafkaBenchError("--rate \(option): unknown unit \"\(unit)\" (use a plain number for records/s, or \(names))")
        }
        guard perSecond > 0, perSecond.isFinite else {
            throw KafkaBenchError("--rate \(option): rates must be above 0, got \"\(trimmed)\"")
        }
        return perSecond
    }
}

/// A duration option in seconds: `90s`, `2m`, `1h`, `500ms` or plain seconds (`1.5`).
func parseDuration(_ text: String, option: String) throws -> Double {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("", 1)]
    let digits = text.prefix { $0.isNumber || $0 == "." }
    let unit = String(text.dropFirst(digits.count))
    guard !digits.isEmpty, let number = Double(digits) else {
        throw KafkaBenchError("--\(option) \(text): not a duration (use 90s, 2m, 500ms or plain seconds)")
    }
    guard let scale = units.first(where: { $0.0 == unit })?.1 else {
        throw KafkaBenchError("--\(option) \(text): unknown unit \"\(unit)\" (use ms, s, m or h)")
    }
    return number * scale
}
