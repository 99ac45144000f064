import Synchronization

/// A registry of metrics rendered in the Prometheus text exposition format (version 0.0.4).
/// A metric is identified by its name and its label set; asking twice for the same name and
/// labels returns the same instance. All metrics of one name share one type and help text.
///
/// Example: `registry.counter("floe_requests_total", help: "Requests.", labels: ["api": "produce"]).increment()`
/// renders as
/// ```
/// # HELP floe_requests_total Requests.
/// # TYPE floe_requests_total counter
/// floe_requests_total{api="produce"} 1
/// ```
public final class MetricsRegistry: Sendable {
    public enum Kind: String, Sendable {
        case counter, gauge, histogram
    }

    private enum Metric: Sendable {
        case counter(Counter)
        case gauge(Gauge)
        case histogram(Histogram)
    }

    private struct Family: Sendable {
        var kind: Kind
        var help: String
        var metrics: [LabelSet: Metric] = [:]
    }

    private let families = Mutex<[String: Family]>([:])

    public init() {}

    /// Returns the counter `name{labels}`, creating it at zero.
    public func counter(_ name: String, help: String, labels: [String: String] = [:]) -> Counter {
        let metric = register(name, help: help, kind: .counter, labels: labels) { .counter(Counter()) }
        guard case .counter(let counter) = metric else { preconditionFailure("metric \(name) is not a counter") }
        return counter
    }

    /// Returns the gauge `name{labels}`, creating it at zero.
    public func gauge(_ name: String, help: String, labels: [String: String] = [:]) -> Gauge {
        let metric = register(name, help: help, kind: .gauge, labels: labels) { .gauge(Gauge()) }
        guard case .gauge(let gauge) = metric else { preconditionFailure("metric \(name) is not a gauge") }
        return gauge
    }

    /// Returns the histogram `name{labels}` with the given upper bucket bounds (sorted, finite;
    /// `+Inf` is implicit). All histograms of one name should use the same bounds.
    public func histogram(_ name: String, help: String, labels: [String: String] = [:],
                          buckets: [Double] = Histogram.defaultLatencyBuckets) -> Histogram {
        let metric = register(name, help: help, kind: .histogram, labels: labels) { .histogram(Histogram(buckets: buckets)) }
        guard case .histogram(let histogram) = metric else { preconditionFailure("metric \(name) is not a histogram") }
        return histogram
    }

    private func register(_ name: String, help: String, kind: Kind, labels: [String: String],
                          make: () -> Metric) -> Metric {
        precondition(MetricsRegistry.isValidName(name), "invalid metric name \(name)")
        for key in labels.keys {
            precondition(MetricsRegistry.isValidName(key) && !key.contains(":") && key != "le",
                         "invalid label name \(key) on metric \(name)")
        }
        let key = LabelSet(labels)
        return families.withLock { families in
            var family = families[name] ?? Family(kind: kind, help: help)
            precondition(family.kind == kind, "metric \(name) registered as \(family.kind), requested as \(kind)")
            if let existing = family.metrics[key] { return existing }
            let metric = make()
            family.metrics[key] = metric
            families[name] = family
            return metric
        }
    }

    /// The whole registry in the Prometheus text format, families sorted by name and series by
    /// label values.
    public func render() -> String {
        let snapshot = families.withLock { $0 }
        var out = ""
        for name in snapshot.keys.sorted() {
            let family = snapshot[name]!
            out += "# HELP \(name) \(MetricsRegistry.escapeHelp(family.help))\n"
            out += "# TYPE \(name) \(family.kind.rawValue)\n"
            for labels in family.metrics.keys.sorted() {
                switch family.metrics[labels]! {
                case .counter(let c):
                    out += "\(name)\(labels.rendered()) \(MetricsRegistry.format(c.value))\n"
                case .gauge(let g):
                    out += "\(name)\(labels.rendered()) \(MetricsRegistry.format(g.value))\n"
                case .histogram(let h):
                    let s = h.snapshot()
                    for (bound, count) in zip(s.bounds, s.cumulativeCounts) {
                        out += "\(name)_bucket\(labels.rendered(extra: ("le", MetricsRegistry.format(bound)))) \(count)\n"
                    }
                    out += "\(name)_bucket\(labels.rendered(extra: ("le", "+Inf"))) \(s.count)\n"
                    out += "\(name)_sum\(labels.rendered()) \(MetricsRegistry.format(s.sum))\n"
                    out += "\(name)_count\(labels.rendered()) \(s.count)\n"
                }
            }
        }
        return out
    }

    static func isValidName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first else { return false }
        func isLetter(_ c: Unicode.Scalar) -> Bool { (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_" || c == ":" }
        return isLetter(first) && name.unicodeScalars.allSatisfy { isLetter($0) || ($0 >= "0" && $0 <= "9") }
    }

    static func escapeHelp(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    static func escapeLabelValue(_ text: String) -> String {
        escapeHelp(text).replacingOccurrences(of: "\"", with: "\\\"")
    }

    /// Integral values print without a fraction (`3`), others in Swift's shortest form (`0.25`).
    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}

/// A sorted list of label pairs, the identity of one series within a family.
struct LabelSet: Hashable, Comparable, Sendable {
    let pairs: [(String, String)]

    init(_ labels: [String: String]) { pairs = labels.sorted { $0.key < $1.key }.map { ($0.key, $0.value) } }

    static func == (a: Self, b: Self) -> Bool { a.pairs.elementsEqual(b.pairs) { $0 == $1 } }
    func hash(into hasher: inout Hasher) {
        for (k, v) in pairs {
            hasher.combine(k)
            hasher.combine(v)
        }
    }
    static func < (a: Self, b: Self) -> Bool {
        a.pairs.lexicographicallyPrecedes(b.pairs) { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
    }

    func rendered(extra: (String, String)? = nil) -> String {
        var all = pairs
        if let extra { all.append(extra) }
        if all.isEmpty { return "" }
        return "{" + all.map { "\($0.0)=\"\(MetricsRegistry.escapeLabelValue($0.1))\"" }.joined(separator: ",") + "}"
    }
}

/// A value that only goes up (resets only when the process restarts).
public final class Counter: Sendable {
    private let storage = Mutex<Double>(0)
    public init() {}
    public func increment(by amount: Double = 1) {
        precondition(amount >= 0, "a counter cannot decrease (increment by \(amount))")
        storage.withLock { $0 += amount }
    }
    public func increment(by amount: Int) { increment(by: Double(amount)) }
    public var value: Double { storage.withLock { $0 } }
}

/// A value that goes up and down.
public final class Gauge: Sendable {
    private let storage = Mutex<Double>(0)
    public init() {}
    public func set(_ value: Double) { storage.withLock { $0 = value } }
    public func add(_ delta: Double) { storage.withLock { $0 += delta } }
    public var value: Double { storage.withLock { $0 } }
}

/// Counts observations into buckets with fixed upper bounds, plus their sum and count.
/// Invariant: the rendered bucket counts are cumulative and the `+Inf` bucket equals `count`.
public final class Histogram: Sendable {
    /// Seconds, from 1 ms to 10 s: request latencies.
    public static let defaultLatencyBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    /// Seconds, from 0.5 ms to 10 s, with steps of 5 ms or less up to 50 ms: where a WAL flush
    /// interval (20 ms) and an object write add up (append durability, object store operations).
    public static let fineLatencyBuckets: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03,
                                                      0.035, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    /// Seconds, from 50 µs to 1 s: steps that take well under a millisecond when all is well (a
    /// WAL group commit).
    public static let subMillisecondBuckets: [Double] = [0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.00075,
                                                         0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1]

    public struct Snapshot: Sendable {
        public var bounds: [Double]
        public var cumulativeCounts: [UInt64]
        public var sum: Double
        public var count: UInt64
    }

    private struct State {
        var counts: [UInt64]
        var sum: Double = 0
        var count: UInt64 = 0
    }

    public let bounds: [Double]
    private let state: Mutex<State>

    public init(buckets: [Double]) {
        precondition(buckets.allSatisfy(\.isFinite) && zip(buckets, buckets.dropFirst()).allSatisfy { $0 < $1 },
                     "histogram buckets must be finite and strictly increasing: \(buckets)")
        bounds = buckets
        state = Mutex(State(counts: Array(repeating: 0, count: buckets.count)))
    }

    public func observe(_ value: Double) {
        let index = bounds.firstIndex { value <= $0 }
        state.withLock { s in
            if let index { s.counts[index] += 1 }
            s.sum += value
            s.count += 1
        }
    }

    public func observe(_ duration: Duration) { observe(duration.secondsDouble) }

    public func snapshot() -> Snapshot {
        state.withLock { s in
            var running: UInt64 = 0
            let cumulative = s.counts.map { c -> UInt64 in
                running += c
                return running
            }
            return Snapshot(bounds: bounds, cumulativeCounts: cumulative, sum: s.sum, count: s.count)
        }
    }
}
