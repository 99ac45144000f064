import Foundation

/// The autoscaling policy with every default resolved: what `spec.autoscaling` means.
public struct AutoscalerSettings: Sendable, Equatable {
    public var minBrokers: Int
    public var maxBrokers: Int
    /// Per-broker targets; nil = not used.
    public var bytesInPerSecond: Double?
    public var bytesOutPerSecond: Double?
    public var requestsPerSecond: Double?
    public var cpuPercent: Double?
    /// Fraction (0.1 = 10 %): scale out only above target × (1 + tolerance); scale in only to a
    /// count at which the load stays below target × (1 − tolerance).
    public var tolerance: Double
    public var scaleUpWindow: Double
    public var scaleDownWindow: Double
    public var scaleUpStep: Int
    public var scaleDownStep: Int
    /// Decide and report, but do not change the broker count.
    public var dryRun: Bool

    public init(_ spec: AutoscalingSpec) {
        minBrokers = Int(spec.resolvedMin)
        maxBrokers = Int(spec.resolvedMax)
        bytesInPerSecond = spec.targets?.bytesInPerSecond.map(Double.init)
        bytesOutPerSecond = spec.targets?.bytesOutPerSecond.map(Double.init)
        requestsPerSecond = spec.targets?.requestsPerSecond.map(Double.init)
        cpuPercent = spec.targets?.cpuUtilizationPercent.map(Double.init)
        tolerance = Double(spec.tolerancePercent ?? FloeDefaults.tolerancePercent) / 100
        scaleUpWindow = Double(spec.scaleUp?.stabilizationWindowSeconds ?? FloeDefaults.scaleUpWindowSeconds)
        scaleDownWindow = Double(spec.scaleDown?.stabilizationWindowSeconds ?? FloeDefaults.scaleDownWindowSeconds)
        scaleUpStep = Int(spec.scaleUp?.maxStepBrokers ?? FloeDefaults.scaleUpMaxStep)
        scaleDownStep = Int(spec.scaleDown?.maxStepBrokers ?? FloeDefaults.scaleDownMaxStep)
        dryRun = spec.dryRun ?? false
    }

    /// (metric name, per-broker target, how to read it from a broker's load, unit).
    var metrics: [(name: String, target: Double, read: @Sendable (BrokerLoad) -> Double?, unit: Unit)] {
        var list: [(String, Double, @Sendable (BrokerLoad) -> Double?, Unit)] = []
        if let t = bytesInPerSecond { list.append(("bytesIn", t, { $0.bytesInPerSecond }, .bytesPerSecond)) }
        if let t = bytesOutPerSecond { list.append(("bytesOut", t, { $0.bytesOutPerSecond }, .bytesPerSecond)) }
        if let t = requestsPerSecond { list.append(("requests", t, { $0.requestsPerSecond }, .perSecond)) }
        if let t = cpuPercent { list.append(("cpu", t, { $0.cpuPercent }, .percent)) }
        return list
    }

    enum Unit {
        case bytesPerSecond, perSecond, percent

        func format(_ v: Double) -> String {
            switch self {
            case .bytesPerSecond: ByteRate.format(v)
            case .perSecond: String(format: "%.0f/s", v)
            case .percent: String(format: "%.0f%%", v)
            }
        }
    }
}

/// One verdict of the autoscaler.
public struct AutoscalerDecision: Sendable, Equatable {
    /// Seconds on the caller's clock.
    public var time: Double
    public var current: Int
    /// The broker count to have now (equal to `current` when nothing should change).
    public var desired: Int
    /// What the load alone asks for at this instant, before stabilization and step limits.
    public var recommended: Int
    /// The metric that asked for the most brokers, when any asked for a change.
    public var metric: String?
    /// Human-readable: the metric, its value, the target, what was computed and what limited it.
    public var reason: String
    /// The schedule or predictive floor that raised the minimum above `minBrokers`, if one did.
    public var floor: CapacityFloor?

    public var isChange: Bool { desired != current }
}

/// The autoscaler: per-broker load in, a broker count out. Pure; the caller passes the time.
///
/// Rules, in order (each tick):
/// 1. Per metric with a target: `total` = sum over the known brokers. Utilization =
///    total / (current × target). Above 1 + tolerance the metric recommends
///    ⌈total / target⌉ brokers (scale out to where utilization is at most 1). Otherwise, if
///    ⌈total / (target × (1 − tolerance))⌉ is below `current`, it recommends that (scale in only
///    to a count that keeps utilization below 1 − tolerance: the gap between the two thresholds is
///    the hysteresis that stops flapping). Otherwise it recommends `current`.
///    The highest recommendation of all metrics wins, clamped to [min, max].
/// 2. An unknown broker (not scraped) blocks scale-in: its load may be anything.
/// 3. Stabilization (as Kubernetes' HPA): scaling out uses the lowest recommendation of the last
///    `scaleUpWindow` seconds, scaling in the highest of the last `scaleDownWindow` seconds; so a
///    decision must hold for the whole window, and a short spike never causes a scale-in.
/// 4. One step changes the count by at most `scaleUpStep` / `scaleDownStep`.
/// 5. Floors (schedules, prediction: `Prescaler`) raise the minimum to the highest of them
///    (never above max). Below it, the count goes to the floor at once (no window, no step: the
///    floor is deliberate); above it the rules above apply unchanged, and a scale-in stops at it.
///    Every decision a floor shaped names it: `schedule black-friday floor 8 (…)`.
///
/// Example (target bytes in 5 MiB/s, tolerance 10 %, 2 brokers): 24 MiB/s in total is 240 % →
/// recommends ⌈24 / 5⌉ = 5; with step 4 → 5 (2 + 3). At 4 brokers, 13 MiB/s recommends
/// ⌈13 / 4.5⌉ = 3, and once every recommendation of the last 300 s is ≤ 3 → 3.
public struct Autoscaler: Sendable {
    public var settings: AutoscalerSettings
    private var history: [(time: Double, count: Int)] = []

    public init(settings: AutoscalerSettings) { self.settings = settings }

    public mutating func decide(now: Double, current: Int, loads: [Int32: BrokerLoad?], floors: [CapacityFloor] = []) -> AutoscalerDecision {
        let s = settings
        let known = loads.values.compactMap { $0 }
        let unknown = loads.filter { $0.value == nil }.map(\.key).sorted()
        var recommended = current
        var metric: String?
        var why: [String] = []
        // The highest floor, when it is above minBrokers (the first of equal ones).
        let floor = floors.reduce(nil as CapacityFloor?) { best, f in f.brokers > (best?.brokers ?? s.minBrokers) ? f : best }
        let minimum = min(floor?.brokers ?? s.minBrokers, s.maxBrokers)

        if current < minimum || current > s.maxBrokers {
            let bound = min(max(current, minimum), s.maxBrokers)
            history.removeAll()
            let reason: String
            if let floor, current < minimum {
                let capped = floor.brokers > s.maxBrokers ? ", capped at maxBrokers \(s.maxBrokers)" : ""
                reason = "\(floor.label) (\(floor.detail))\(capped): \(current) brokers is below it → \(bound)"
            } else {
                reason = "\(current) brokers is outside [minBrokers \(s.minBrokers), maxBrokers \(s.maxBrokers)] → \(bound)"
            }
            return AutoscalerDecision(
                time: now, current: current, desired: bound, recommended: bound, metric: current < minimum ? floor?.source : nil,
                reason: reason, floor: current < minimum ? floor : nil)
        }
        if known.isEmpty {
            why.append(loads.isEmpty ? "no brokers to measure" : "no broker could be scraped (\(Self.list(unknown)))")
        } else {
            recommended = 0
            for m in s.metrics {
                let values = known.compactMap(m.read)
                guard !values.isEmpty else { continue }
                let total = values.reduce(0, +)
                let utilization = total / (Double(current) * m.target)
                var wants = current
                if utilization > 1 + s.tolerance {
                    wants = Int((total / m.target).rounded(.up))
                } else {
                    let floor = Int((total / (m.target * (1 - s.tolerance))).rounded(.up))
                    if floor < current { wants = max(floor, 1) }
                }
                why.append(
                    "\(m.name) \(m.unit.format(total)) total, \(m.unit.format(total / Double(current))) per broker over \(current), "
                        + "target \(m.unit.format(m.target)) (\(Int((utilization * 100).rounded()))%) → \(wants)")
                if wants > recommended {
                    recommended = wants
                    metric = m.name
                }
            }
            if recommended == 0 { recommended = current }
        }
        var heldByFloor = false
        if let floor, recommended < minimum {
            why.append("held at \(floor.label) (\(floor.detail))")
            heldByFloor = true
        }
        recommended = min(max(recommended, minimum), s.maxBrokers)
        if recommended < current && !unknown.isEmpty {
            why.append("scale-in blocked: broker \(Self.list(unknown)) not scraped")
            recommended = current
        }

        history.append((now, recommended))
        let horizon = max(s.scaleUpWindow, s.scaleDownWindow)
        history.removeAll { now - $0.time > horizon }

        var desired = current
        let upCandidates = history.filter { now - $0.time <= s.scaleUpWindow }.map(\.count)
        let downCandidates = history.filter { now - $0.time <= s.scaleDownWindow }.map(\.count)
        if let lowest = upCandidates.min(), lowest > current {
            desired = min(lowest, current + s.scaleUpStep)
            if lowest != recommended { why.append("lowest over the \(Int(s.scaleUpWindow)) s up window: \(lowest)") }
            if desired < lowest { why.append("step limit \(s.scaleUpStep) → \(desired)") }
        } else if let highest = downCandidates.max(), highest < current {
            desired = max(highest, current - s.scaleDownStep)
            if heldByFloor && desired == recommended { metric = floor?.source }
            if highest != recommended { why.append("highest over the \(Int(s.scaleDownWindow)) s down window: \(highest)") }
            if desired > highest { why.append("step limit \(s.scaleDownStep) → \(desired)") }
        } else if recommended != current {
            let window = recommended > current ? s.scaleUpWindow : s.scaleDownWindow
            why.append("waiting: \(recommended) has not held for the \(Int(window)) s window")
        }
        return AutoscalerDecision(
            time: now, current: current, desired: desired, recommended: recommended,
            metric: desired == current ? nil : metric, reason: why.joined(separator: "; "), floor: heldByFloor ? floor : nil)
    }

    /// The scale operation finished: stabilization restarts from the new count (recommendations
    /// made for the old count no longer say anything about the new one).
    public mutating func scaled(to count: Int, at now: Double) {
        history = [(now, count)]
    }

    static func list(_ ids: [Int32]) -> String { ids.map(String.init).joined(separator: ", ") }
}

/// Bytes per second as people read them: `512 B/s`, `3.4 KiB/s`, `41.9 MiB/s`.
public enum ByteRate {
    public static func format(_ bytesPerSecond: Double) -> String {
        let v = bytesPerSecond
        if v < 1024 { return String(format: "%.0f B/s", v) }
        if v < 1024 * 1024 { return String(format: "%.1f KiB/s", v / 1024) }
        return String(format: "%.1f MiB/s", v / (1024 * 1024))
    }

    /// Parses `5MiB/s`, `512KiB/s`, `1000000` (bytes per second), `2.5MB/s`.
    public static func parse(_ text: String) -> Double? {
        var t = text.trimmingCharacters(in: .whitespaces)
        if t.hasSuffix("/s") { t.removeLast(2) }
        let units: [(String, Double)] = [
            ("KiB", 1024), ("MiB", 1024 * 1024), ("GiB", 1024 * 1024 * 1024), ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("B", 1),
        ]
        for (suffix, factor) in units where t.hasSuffix(suffix) {
            guard let v = Double(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), v >= 0 else { return nil }
            return v * factor
        }
        guard let v = Double(t), v >= 0 else { return nil }
        return v
    }
}
