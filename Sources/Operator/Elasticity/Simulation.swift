import Foundation

/// A load trace: cluster bytes in per second over time (bytes out follow the same curve times
/// `fanOut`, as consumers read what producers write).
public struct LoadTrace: Sendable {
    public var points: [(time: Double, bytesIn: Double)]
    public var fanOut: Double

    public init(points: [(time: Double, bytesIn: Double)], fanOut: Double = 1) {
        self.points = points.sorted { $0.time < $1.time }
        self.fanOut = fanOut
    }

    public var duration: Double { (points.last?.time ?? 0) - (points.first?.time ?? 0) }

    /// Linear interpolation between points; flat before the first and after the last.
    public func bytesIn(at t: Double) -> Double {
        guard let first = points.first, let last = points.last else { return 0 }
        if t <= first.time { return first.bytesIn }
        if t >= last.time { return last.bytesIn }
        // Binary search for the first point after t (traces of a week have 10,000 points).
        var lo = 0, hi = points.count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if points[mid].time > t { hi = mid } else { lo = mid + 1 }
        }
        let a = points[lo - 1], b = points[lo]
        return a.bytesIn + (b.bytesIn - a.bytesIn) * (t - a.time) / (b.time - a.time)
    }

    /// A day (86,400 s) with a night trough at `low`, a broad daytime hump to 40 % of the way to
    /// `high`, and a festival peak: from 20:00 the load climbs to `high` in 10 minutes, holds 50
    /// minutes and falls back within 30 minutes. One point per minute.
    ///
    /// hump(t) = low + 0.4 × (high − low) × sin²(π × (t − 6 h) / 18 h) between 06:00 and 24:00.
    public static func festivalDay(low: Double, high: Double) -> LoadTrace {
        var points: [(Double, Double)] = []
        for minute in 0...(24 * 60) {
            let t = Double(minute) * 60
            let hour = t / 3600
            var v = low
            if hour >= 6 { v += 0.4 * (high - low) * pow(sin(Double.pi * (hour - 6) / 18), 2) }
            let peakStart = 20.0, rise = 10.0 / 60, hold = 50.0 / 60, fall = 30.0 / 60
            if hour >= peakStart && hour < peakStart + rise {
                v = max(v, low + (high - low) * (hour - peakStart) / rise)
            } else if hour >= peakStart + rise && hour < peakStart + rise + hold {
                v = high
            } else if hour >= peakStart + rise + hold && hour < peakStart + rise + hold + fall {
                v = max(v, high - (high - low) * (hour - peakStart - rise - hold) / fall)
            }
            points.append((t, v))
        }
        return LoadTrace(points: points)
    }

    /// A week (`days` × 86,400 s, one point per minute) of daily curves, plus one festival hour.
    ///
    /// Each day: `low` at night; from 06:00 a hump to 40 % of the way to `daily` (sin², peaking at
    /// 15:00); at 20:00 the evening rush climbs to `daily` in 2 minutes, holds until 22:00 and
    /// falls back to the hump by 22:30. On day `festivalDay` (0-based; default 4, the Friday when
    /// the week starts on a Monday) from `festivalHour`:00 the load jumps to `festival` (e.g. 10 ×
    /// `daily`) within one minute and holds one hour, then returns to the evening rush.
    public static func festivalWeek(low: Double, daily: Double, festival: Double, festivalDay: Int = 4, festivalHour: Double = 20, days: Int = 7) -> LoadTrace {
        var points: [(Double, Double)] = []
        for minute in 0...(days * 24 * 60) {
            let t = Double(minute) * 60
            let day = minute / (24 * 60)
            let minuteOfDay = Double(minute % (24 * 60))  // whole minutes: no rounding at the edges below
            let hour = minuteOfDay / 60
            var v = low
            if hour >= 6 { v += 0.4 * (daily - low) * pow(sin(Double.pi * (hour - 6) / 18), 2) }
            if hour >= 20 && hour < 22 {
                let f = (minuteOfDay - 20 * 60) / 2
                v = max(v, f >= 1 ? daily : low + (daily - low) * f)  // exactly `daily` once reached (no rounding above it)
            } else if hour >= 22 && hour < 22.5 {
                v = max(v, daily - (daily - low) * (hour - 22) / 0.5)
            }
            if day == festivalDay && hour >= festivalHour && hour < festivalHour + 1 {
                let f = minuteOfDay - festivalHour * 60
                v = max(v, f >= 1 ? festival : v + (festival - v) * f)
            }
            points.append((t, v))
        }
        return LoadTrace(points: points)
    }

    /// Reads `seconds,bytes_in_per_second` lines (a header line and `#` comments are skipped).
    public static func csv(_ text: String) throws -> LoadTrace {
        var points: [(Double, Double)] = []
        for (n, line) in text.split(separator: "\n").enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let fields = trimmed.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard fields.count >= 2, let t = Double(fields[0]), let v = Double(fields[1]), v >= 0 else {
                if n == 0 { continue }  // a header
                throw OperatorError.badManifest(source: "trace line \(n + 1)", detail: "expected seconds,bytes_in_per_second, got \"\(trimmed)\"")
            }
            points.append((t, v))
        }
        guard points.count >= 2 else { throw OperatorError.badManifest(source: "trace", detail: "fewer than two points") }
        return LoadTrace(points: points)
    }
}

/// What a replay of a trace through the autoscaler gives.
public struct SimulationResult: Sendable {
    /// (time, brokers running) at every change, starting with the initial count.
    public var brokersOverTime: [(time: Double, brokers: Int)]
    public var decisions: [AutoscalerDecision]
    public var brokerHours: Double
    /// The fewest brokers that carry the trace's peak at the target: a cluster sized statically.
    public var staticBrokers: Int
    public var staticBrokerHours: Double
    /// Minutes with load above the running brokers' target capacity.
    public var underProvisionedMinutes: Double
    /// Minutes with load above target × (1 + tolerance): beyond what the policy lets pass.
    public var beyondToleranceMinutes: Double
    /// Direction reversals within `flapWindow` (up then down, or down then up).
    public var flaps: Int
    /// The most bytes that would have queued at once: load above the brokers' target capacity
    /// accumulates, capacity above the load drains it.
    public var worstBacklogBytes: Double = 0
    /// Decisions a schedule or predictive floor shaped.
    public var floorDecisions: Int = 0

    public var saving: Double { staticBrokerHours > 0 ? 1 - brokerHours / staticBrokerHours : 0 }
}

/// Replays a trace through the same `Autoscaler` the operator runs, on a simulated clock.
///
/// Model: load is spread evenly over the running brokers (the balancer's job); a scale-out
/// takes `readyDelay` seconds before the new brokers count (start, register, moves); a scale-in
/// takes effect after `drainDelay`. No noise unless `noise` > 0 (uniform ± that fraction, seeded).
public enum Simulation {
    /// `prescale`: schedules and prediction, on a wall clock where the trace's time 0 is `start`.
    public static func run(
        trace: LoadTrace, settings: AutoscalerSettings, initial: Int, tick: Double = 5, readyDelay: Double = 30, drainDelay: Double = 10,
        noise: Double = 0, seed: UInt64 = 1, flapWindow: Double = 600, prescale: PrescalePolicy = .none,
        start wallStart: Date = Date(timeIntervalSince1970: 0)
    ) -> SimulationResult {
        var scaler = Autoscaler(settings: settings)
        var prescaler = Prescaler(policy: prescale)
        var backlog = 0.0, worstBacklog = 0.0
        var brokers = initial
        var pending: (at: Double, count: Int)?
        var over: [(Double, Int)] = [(0, brokers)]
        var decisions: [AutoscalerDecision] = []
        var brokerSeconds = 0.0, underSeconds = 0.0, beyondSeconds = 0.0
        var rng = SeededRandom(seed: seed)
        let start = trace.points.first?.time ?? 0
        let end = start + trace.duration
        let perBroker = settings.bytesInPerSecond ?? .infinity
        var t = start
        while t < end {
            if let p = pending, t >= p.at {
                brokers = p.count
                scaler.scaled(to: brokers, at: t)
                over.append((t - start, brokers))
                pending = nil
            }
            var total = trace.bytesIn(at: t)
            if noise > 0 { total *= 1 + noise * (2 * Double(rng.next() % 1_000_000) / 1_000_000 - 1) }
            brokerSeconds += Double(brokers) * tick
            if total > Double(brokers) * perBroker { underSeconds += tick }
            if total > Double(brokers) * perBroker * (1 + settings.tolerance) { beyondSeconds += tick }
            if perBroker.isFinite {
                backlog = max(0, backlog + (total - Double(brokers) * perBroker) * tick)
                worstBacklog = max(worstBacklog, backlog)
            }
            let wall = wallStart.addingTimeInterval(t - start)
            var floors: [CapacityFloor] = []
            if !prescale.isEmpty {
                prescaler.observe(bytesIn: total, at: wall)
                floors = prescaler.evaluate(at: wall).floors
            }
            if pending == nil {
                let each = BrokerLoad(bytesInPerSecond: total / Double(brokers), bytesOutPerSecond: total * trace.fanOut / Double(brokers))
                let loads = Dictionary(uniqueKeysWithValues: (1...brokers).map { (Int32($0), Optional(each)) })
                let d = scaler.decide(now: t, current: brokers, loads: loads, floors: floors)
                if d.isChange {
                    decisions.append(d)
                    pending = (t + (d.desired > brokers ? readyDelay : drainDelay), d.desired)
                }
            }
            t += tick
        }
        let peak = trace.points.map(\.bytesIn).max() ?? 0
        let staticCount = max(settings.minBrokers, min(settings.maxBrokers, Int((peak / perBroker).rounded(.up))))
        var flaps = 0
        for (a, b) in zip(decisions, decisions.dropFirst())
        where (a.desired > a.current) != (b.desired > b.current) && b.time - a.time < flapWindow { flaps += 1 }
        return SimulationResult(
            brokersOverTime: over, decisions: decisions, brokerHours: brokerSeconds / 3600, staticBrokers: staticCount,
            staticBrokerHours: Double(staticCount) * trace.duration / 3600, underProvisionedMinutes: underSeconds / 60,
            beyondToleranceMinutes: beyondSeconds / 60, flaps: flaps, worstBacklogBytes: worstBacklog,
            floorDecisions: decisions.filter { $0.floor != nil }.count)
    }
}

/// SplitMix64: a small seeded generator, so a simulation with noise repeats exactly.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
