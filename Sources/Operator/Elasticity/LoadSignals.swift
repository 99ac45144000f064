import Foundation

/// A partition as the load model names it (topic and partition index).
public struct PartitionKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public static func < (a: Self, b: Self) -> Bool { (a.topic, a.partition) < (b.topic, b.partition) }
    public var description: String { "\(topic)-\(partition)" }
}

/// The counters of one broker read from one scrape of its `/metrics` (Prometheus text format).
///
/// Counters only ever grow within one broker process; a restarted broker starts again from 0,
/// which `LoadTracker` treats as a reset (the new value is the increase).
public struct BrokerScrape: Sendable, Equatable {
    /// Record batch bytes appended, by partition (`floe_broker_partition_bytes_in_total`).
    public var bytesIn: [PartitionKey: Double] = [:]
    /// Record batch bytes served by Fetch, by partition (`floe_broker_partition_bytes_out_total`).
    public var bytesOut: [PartitionKey: Double] = [:]
    /// Requests handled, all APIs (`floe_broker_requests_total`, summed over labels).
    public var requests: Double = 0
    /// User + system CPU seconds of the broker process (`process_cpu_seconds_total`).
    public var cpuSeconds: Double?
    /// Produce latency histogram (`floe_broker_request_duration_seconds_bucket{api="Produce"}`):
    /// cumulative counts by upper bound in seconds, `+Inf` as `.infinity`.
    public var produceLatency: [Double: Double] = [:]

    public init() {}

    /// Reads the series the load model uses out of a `/metrics` body; other series are ignored.
    /// A line that is not `name{labels} value` or `name value` is skipped (comments, blank lines).
    ///
    /// Example: `floe_broker_partition_bytes_in_total{partition="3",topic="orders"} 1048576`
    /// adds 1 MiB to `bytesIn[orders-3]`.
    public static func parse(_ text: String) -> BrokerScrape {
        var scrape = BrokerScrape()
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            guard let first = line.first, first != "#" else { continue }
            guard let sample = PrometheusSample(line) else { continue }
            switch sample.name {
            case "floe_broker_partition_bytes_in_total":
                if let key = sample.partitionKey { scrape.bytesIn[key, default: 0] += sample.value }
            case "floe_broker_partition_bytes_out_total":
                if let key = sample.partitionKey { scrape.bytesOut[key, default: 0] += sample.value }
            case "floe_broker_requests_total": scrape.requests += sample.value
            case "process_cpu_seconds_total": scrape.cpuSeconds = sample.value
            case "floe_broker_request_duration_seconds_bucket":
                guard sample.labels["api"] == "Produce", let le = sample.labels["le"] else { continue }
                if let bound = le == "+Inf" ? Double.infinity : Double(le) { scrape.produceLatency[bound] = sample.value }
            default: continue
            }
        }
        return scrape
    }
}

/// One line of the Prometheus text format: `name{k="v",…} value [timestamp]`.
struct PrometheusSample {
    var name: String
    var labels: [String: String]
    var value: Double

    init?(_ line: Substring) {
        var labels: [String: String] = [:]
        let rest: Substring
        if let open = line.firstIndex(of: "{") {
            guard let close = line.lastIndex(of: "}"), close > open else { return nil }
            name = String(line[..<open])
            labels = Self.parseLabels(line[line.index(after: open)..<close])
            rest = line[line.index(after: close)...]
        } else {
            guard let space = line.firstIndex(of: " ") else { return nil }
            name = String(line[..<space])
            rest = line[space...]
        }
        guard let text = rest.split(separator: " ").first, let value = Double(text) else { return nil }
        self.labels = labels
        self.value = value
    }

    var partitionKey: PartitionKey? {
        guard let topic = labels["topic"], let p = labels["partition"].flatMap({ Int32($0) }) else { return nil }
        return PartitionKey(topic, p)
    }

    /// `k="v",k2="v2"` with `\"`, `\\` and `\n` escapes in values.
    static func parseLabels(_ text: Substring) -> [String: String] {
        var labels: [String: String] = [:]
        var i = text.startIndex
        while i < text.endIndex {
            guard let eq = text[i...].firstIndex(of: "=") else { break }
            let key = text[i..<eq].trimmingCharacters(in: CharacterSet(charactersIn: ", "))
            var j = text.index(after: eq)
            guard j < text.endIndex, text[j] == "\"" else { break }
            j = text.index(after: j)
            var value = ""
            while j < text.endIndex, text[j] != "\"" {
                if text[j] == "\\", text.index(after: j) < text.endIndex {
                    j = text.index(after: j)
                    value.append(text[j] == "n" ? "\n" : text[j])
                } else {
                    value.append(text[j])
                }
                j = text.index(after: j)
            }
            labels[key] = value
            i = j < text.endIndex ? text.index(after: j) : j
        }
        return labels
    }
}

/// Rates of one broker over the tracker's window.
public struct BrokerLoad: Sendable, Equatable {
    public var bytesInPerSecond: Double
    public var bytesOutPerSecond: Double
    public var requestsPerSecond: Double
    /// CPU time per second of wall time, as a percentage of one core; nil when not exported.
    public var cpuPercent: Double?
    /// The 99th percentile of Produce handling time over the window, as the upper bound of its
    /// histogram bucket (seconds); nil when no Produce was handled.
    public var produceP99: Double?

    public init(bytesInPerSecond: Double = 0, bytesOutPerSecond: Double = 0, requestsPerSecond: Double = 0, cpuPercent: Double? = nil,
                produceP99: Double? = nil) {
        self.produceP99 = produceP99
        self.bytesInPerSecond = bytesInPerSecond
        self.bytesOutPerSecond = bytesOutPerSecond
        self.requestsPerSecond = requestsPerSecond
        self.cpuPercent = cpuPercent
    }
}

/// Rates of one partition over the window, summed over every broker that served it (a
/// partition that moved counts on the old owner until its counter stops growing, then on the new).
public struct PartitionLoad: Sendable, Equatable {
    public var bytesInPerSecond: Double
    public var bytesOutPerSecond: Double

    public init(bytesInPerSecond: Double = 0, bytesOutPerSecond: Double = 0) {
        self.bytesInPerSecond = bytesInPerSecond
        self.bytesOutPerSecond = bytesOutPerSecond
    }

    /// The scalar the balancer evens out: bytes in plus bytes out per second.
    public var weight: Double { bytesInPerSecond + bytesOutPerSecond }
}

/// Short windows of counter samples per broker, turned into rates.
///
/// Invariant: a broker is *known* only while its latest scrape succeeded and the window holds at
/// least two successful scrapes of it spanning `minimumSpan`; otherwise `load(of:)` is nil
/// ("unknown"), never zero. The autoscaler treats unknown as "may be busy": it blocks scale-in.
///
/// Example: window 30 s, scrapes every 5 s of a counter 0, 5 MiB, 10 MiB, … → 1 MiB/s.
public struct LoadTracker: Sendable {
    public let window: Double
    public let minimumSpan: Double
    private var samples: [Int32: [(time: Double, scrape: BrokerScrape)]] = [:]
    private var failing: Set<Int32> = []

    public init(windowSeconds: Double = 30, minimumSpanSeconds: Double? = nil) {
        window = windowSeconds
        minimumSpan = minimumSpanSeconds ?? windowSeconds / 4
    }

    /// Adds a scrape of `broker` at `time` (seconds on any monotonic clock); nil = the scrape failed.
    public mutating func record(broker: Int32, at time: Double, _ scrape: BrokerScrape?) {
        guard let scrape else {
            failing.insert(broker)
            return
        }
        failing.remove(broker)
        var list = samples[broker, default: []]
        list.append((time, scrape))
        list.removeAll { time - $0.time > window }
        samples[broker] = list
    }

    /// Forgets a broker that left the cluster.
    public mutating func forget(broker: Int32) {
        samples[broker] = nil
        failing.remove(broker)
    }

    public var brokers: [Int32] { Array(Set(samples.keys).union(failing)).sorted() }

    /// The broker's rates, or nil when it is unknown (see the type's invariant).
    public func load(of broker: Int32) -> BrokerLoad? {
        guard !failing.contains(broker), let list = samples[broker], let first = list.first, let last = list.last,
              last.time - first.time >= minimumSpan
        else { return nil }
        let span = last.time - first.time
        let (bytesIn, bytesOut) = partitionIncreases(list).reduce(into: (0.0, 0.0)) { sum, entry in
            sum.0 += entry.value.in
            sum.1 += entry.value.out
        }
        var cpu: Double?
        if let c0 = first.scrape.cpuSeconds, let c1 = last.scrape.cpuSeconds { cpu = Self.increase(c0, c1) / span * 100 }
        return BrokerLoad(
            bytesInPerSecond: bytesIn / span, bytesOutPerSecond: bytesOut / span,
            requestsPerSecond: Self.increase(list.map(\.scrape.requests)) / span, cpuPercent: cpu,
            produceP99: Self.quantile(0.99, from: first.scrape.produceLatency, to: last.scrape.produceLatency))
    }

    /// The `q` quantile of the observations a cumulative histogram gained between two scrapes:
    /// the upper bound of the first bucket holding it (the largest finite bound when it is in
    /// `+Inf`). A histogram that went backwards (a restart) counts from zero.
    static func quantile(_ q: Double, from a: [Double: Double], to b: [Double: Double]) -> Double? {
        let reset = (b[.infinity] ?? 0) < (a[.infinity] ?? 0)
        let gained = b.keys.sorted().map { ($0, (b[$0] ?? 0) - (reset ? 0 : a[$0] ?? 0)) }
        guard let total = gained.last?.1, total > 0 else { return nil }
        let hit = gained.first { $0.1 >= q * total }?.0 ?? .infinity
        return hit.isFinite ? hit : gained.map(\.0).filter(\.isFinite).max()
    }

    /// Per-partition rates summed over the known brokers.
    public func partitionLoads() -> [PartitionKey: PartitionLoad] {
        var loads: [PartitionKey: PartitionLoad] = [:]
        for (broker, list) in samples where !failing.contains(broker) {
            guard let first = list.first, let last = list.last, last.time - first.time >= minimumSpan else { continue }
            let span = last.time - first.time
            for (key, inc) in partitionIncreases(list) {
                loads[key, default: PartitionLoad()].bytesInPerSecond += inc.in / span
                loads[key, default: PartitionLoad()].bytesOutPerSecond += inc.out / span
            }
        }
        return loads
    }

    private func partitionIncreases(_ list: [(time: Double, scrape: BrokerScrape)]) -> [PartitionKey: (in: Double, out: Double)] {
        var keys = Set<PartitionKey>()
        for s in list { keys.formUnion(s.scrape.bytesIn.keys); keys.formUnion(s.scrape.bytesOut.keys) }
        var result: [PartitionKey: (in: Double, out: Double)] = [:]
        for key in keys {
            result[key] = (Self.increase(list.map { $0.scrape.bytesIn[key] ?? 0 }), Self.increase(list.map { $0.scrape.bytesOut[key] ?? 0 }))
        }
        return result
    }

    /// The increase of a counter over consecutive samples; a drop is a reset (the process restarted
    /// or the series was re-created), after which the new value is the increase.
    static func increase(_ values: [Double]) -> Double {
        zip(values, values.dropFirst()).reduce(0) { $0 + increase($1.0, $1.1) }
    }

    static func increase(_ a: Double, _ b: Double) -> Double { b >= a ? b - a : b }
}
