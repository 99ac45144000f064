import Foundation

/// The broker's settings, merged from defaults, a Java-style properties file, `FLOE_*`
/// environment variables and flags (flag > env > file > default).
///
/// Two kinds of keys share one namespace:
/// - Floe settings: `listen`, `advertise`, `storage`, `wal`, `node.id`, `http`, `log.level`,
///   `cluster.id` (flags `--listen`, env `FLOE_LISTEN`, properties `listen=`…);
/// - Kafka broker properties that clients can see through DescribeConfigs and that supply topic
///   defaults: `auto.create.topics.enable`, `num.partitions`, `default.replication.factor`,
///   `log.retention.ms` (or `.hours`/`.minutes`), `log.retention.bytes`, `message.max.bytes`, ….
///
/// Example: `FLOE_LOG_RETENTION_MS=60000` sets `log.retention.ms`, the default `retention.ms`
/// of every topic that does not set its own.
public struct BrokerConfig: Sendable {
    /// Effective values by key, and where each came from.
    public private(set) var values: [String: String]
    public private(set) var sources: [String: Source]

    public enum Source: String, Sendable {
        case `default`, file, environment, flag
    }

    /// Floe's own settings with their defaults.
    public static let floeDefaults: [String: String] = [
        "listen": "127.0.0.1:9092",
        "advertise": "",
        "storage": "file://./floe-data",
        "wal": "",
        "wal.dir": "",
        "node.id": "0",
        "http": "",
        "log.level": "info",
        "cluster.id": "",
        "event.loops": "2",
        "socket.request.max.bytes": "104857600",
        "max.connections": "10000",
        "connections.max.idle.ms": "600000",
        "wal.flush.interval.ms": "20",
        "log.cache.bytes": "134217728",
        "block.cache.bytes": "67108864",
        "max.pinned.bytes": "134217728",
        "upload.trigger.bytes": "33554432",
        "producer.snapshot.interval.ms": "10000",
        "retention.check.interval.ms": "30000",
        "object.grace.ms": "600000",
        "compaction.max.job.bytes": "67108864",
        "compaction.split.stream.bytes": "4194304",
        "compaction.max.level": "3",
    ]

    /// Kafka broker properties served through DescribeConfigs (Kafka 3.x defaults).
    public static let kafkaDefaults: [String: String] = [
        "auto.create.topics.enable": "true",
        "num.partitions": "1",
        "default.replication.factor": "1",
        "delete.topic.enable": "true",
        "log.retention.ms": "604800000",
        "log.retention.bytes": "-1",
        "log.cleanup.policy": "delete",
        "message.max.bytes": "1048588",
        "log.segment.bytes": "1073741824",
        "log.roll.ms": "604800000",
        "compression.type": "producer",
        "min.insync.replicas": "1",
        "log.message.timestamp.type": "CreateTime",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "group.initial.rebalance.delay.ms": "3000",
        "group.min.session.timeout.ms": "6000",
        "group.max.session.timeout.ms": "1800000",
        "offsets.retention.minutes": "10080",
    ]

    public init(values: [String: String] = [:], sources: [String: Source] = [:]) {
        var v = Self.floeDefaults.merging(Self.kafkaDefaults) { a, _ in a }
        var s = v.mapValues { _ in Source.default }
        for (k, value) in values {
            v[k] = value
            s[k] = sources[k] ?? .flag
        }
        self.values = v
        self.sources = s
    }

    /// Builds the configuration from the layers; later layers win.
    public static func resolve(file: [String: String], environment: [String: String], flags: [String: String]) -> BrokerConfig {
        var c = BrokerConfig()
        for (k, v) in file { c.set(k, v, .file) }
        for (name, v) in environment where name.hasPrefix("FLOE_") {
            let key = String(name.dropFirst(5)).lowercased().replacingOccurrences(of: "_", with: ".")
            guard c.accepts(key) else { continue }
            c.set(key, v, .environment)
        }
        for (k, v) in flags { c.set(k, v, .flag) }
        c.normalizeRetention()
        return c
    }

    /// Whether `key` is a setting this broker knows (unknown file keys are kept and reported).
    public func accepts(_ key: String) -> Bool {
        Self.floeDefaults[key] != nil || Self.kafkaDefaults[key] != nil || key == "log.retention.hours" || key == "log.retention.minutes"
    }

    public mutating func set(_ key: String, _ value: String, _ source: Source) {
        values[key] = value
        sources[key] = source
    }

    /// Kafka's precedence: `log.retention.ms` over `.minutes` over `.hours`.
    mutating func normalizeRetention() {
        if sources["log.retention.ms"] == .default {
            if let m = values["log.retention.minutes"], let n = Int64(m) {
                set("log.retention.ms", String(n * 60_000), sources["log.retention.minutes"] ?? .file)
            } else if let h = values["log.retention.hours"], let n = Int64(h) {
                set("log.retention.ms", String(n * 3_600_000), sources["log.retention.hours"] ?? .file)
            }
        }
    }

    public subscript(key: String) -> String? { values[key] }

    public func int(_ key: String) throws -> Int {
        guard let text = values[key], let n = Int(text.trimmingSpaces) else {
            throw BrokerError.invalidConfig(name: key, value: values[key] ?? "(unset)", reason: "not an integer")
        }
        return n
    }

    public func bool(_ key: String) throws -> Bool {
        switch values[key]?.trimmingSpaces.lowercased() {
        case "true": return true
        case "false": return false
        default: throw BrokerError.invalidConfig(name: key, value: values[key] ?? "(unset)", reason: "must be true or false")
        }
    }

    /// Keys given in a file or the environment that the broker does not know.
    public var unknownKeys: [String] { values.keys.filter { !accepts($0) }.sorted() }

    /// The effective topic configs: explicit ones, then the broker's (dynamic, then static)
    /// synonyms, then Kafka's defaults.
    public func effectiveTopicConfigs(_ explicit: [String: String], dynamic: [String: String]) -> [String: String] {
        var out: [String: String] = [:]
        for name in TopicConfigs.all.keys {
            out[name] = topicConfig(name, explicit: explicit, dynamic: dynamic)?.value
        }
        return out
    }

    /// One topic config's effective value and its source; nil for an unknown name.
    public func topicConfig(_ name: String, explicit: [String: String], dynamic: [String: String]) -> (value: String, source: ConfigSource)? {
        guard let def = TopicConfigs.all[name] else { return nil }
        if let v = explicit[name] { return (v, .dynamicTopic) }
        if let syn = def.brokerSynonym {
            if let v = dynamic[syn] { return (v, .dynamicBroker) }
            if let src = sources[syn], src != .default, let v = values[syn] { return (v, .staticBroker) }
        }
        return (def.defaultValue, .default)
    }

    /// Parses a Java-style properties file: `key=value` or `key: value` lines, `#`/`!` comments,
    /// blank lines; a trailing backslash continues a line.
    public static func parseProperties(_ text: String, path: String) throws -> [String: String] {
        var out: [String: String] = [:]
        var pending = ""
        var lineNumber = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = String(raw).trimmingSpaces
            if line.hasSuffix("\r") { line.removeLast() }
            if pending.isEmpty && (line.isEmpty || line.hasPrefix("#") || line.hasPrefix("!")) { continue }
            if line.hasSuffix("\\") {
                pending += String(line.dropLast())
                continue
            }
            line = pending + line
            pending = ""
            guard let sep = line.firstIndex(where: { $0 == "=" || $0 == ":" }) else {
                throw BrokerError.configuration("config file \(path) line \(lineNumber): expected key=value, found \(line)")
            }
            let key = String(line[..<sep]).trimmingSpaces
            let value = String(line[line.index(after: sep)...]).trimmingSpaces
            guard !key.isEmpty else { throw BrokerError.configuration("config file \(path) line \(lineNumber): empty key") }
            out[key] = value
        }
        return out
    }
}
