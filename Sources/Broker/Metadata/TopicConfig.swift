/// Kafka's configuration value types, numbered as DescribeConfigs v3+ reports them.
public enum ConfigType: Int8, Sendable {
    case boolean = 1, string = 2, int = 3, short = 4, long = 5, double = 6, list = 7, password = 9
}

/// Where an effective configuration value comes from, numbered as DescribeConfigs v1+ reports it.
public enum ConfigSource: Int8, Sendable {
    case dynamicTopic = 1
    case dynamicBroker = 2
    case staticBroker = 4
    case `default` = 5
}

/// One topic configuration Floe accepts: its type, Kafka's default, the broker setting that
/// supplies a cluster-wide default (Kafka's synonym), and a validator.
///
/// Invariant: `validate` accepts exactly the values Apache Kafka accepts for the name (within
/// the type's range and the listed choices); stored values are kept as the client sent them.
public struct TopicConfigDefinition: Sendable {
    public let name: String
    public let type: ConfigType
    public let defaultValue: String
    /// The broker property that sets this config's default for every topic (e.g.
    /// `log.retention.ms` for `retention.ms`), if any.
    public let brokerSynonym: String?
    public let documentation: String
    let check: @Sendable (String) -> String?

    /// nil when `value` is acceptable, else the reason it is not.
    public func validate(_ value: String) -> String? { check(value) }
}

/// The catalogue of topic configurations (Kafka 3.x names and defaults).
///
/// Example: `TopicConfigs.definition("retention.ms")?.validate("-1")` is nil (infinite
/// retention is allowed); `validate("abc")` says the value is not a long.
public enum TopicConfigs {
    static func long(min: Int64 = .min, max: Int64 = .max) -> @Sendable (String) -> String? {
        { v in
            guard let n = Int64(v.trimmingSpaces) else { return "not a 64-bit integer" }
            if n < min { return "must be at least \(min)" }
            if n > max { return "must be at most \(max)" }
            return nil
        }
    }
    static func int(min: Int64 = Int64(Int32.min), max: Int64 = Int64(Int32.max)) -> @Sendable (String) -> String? {
        { v in
            guard let n = Int32(v.trimmingSpaces) else { return "not a 32-bit integer" }
            if Int64(n) < min { return "must be at least \(min)" }
            if Int64(n) > max { return "must be at most \(max)" }
            return nil
        }
    }
    static func double(min: Double, max: Double) -> @Sendable (String) -> String? {
        { v in
            guard let d = Double(v.trimmingSpaces) else { return "not a number" }
            if d < min || d > max { return "must be between \(min) and \(max)" }
            return nil
        }
    }
    static let boolean: @Sendable (String) -> String? = { v in
        ["true", "false"].contains(v.trimmingSpaces.lowercased()) ? nil : "must be true or false"
    }
    static func choice(_ options: [String]) -> @Sendable (String) -> String? {
        { v in options.contains(v.trimmingSpaces) ? nil : "must be one of \(options.joined(separator: ", "))" }
    }
    static func listOf(_ options: [String]) -> @Sendable (String) -> String? {
        { v in
            let items = v.split(separator: ",").map { String($0).trimmingSpaces }
            guard !items.isEmpty else { return "must list at least one of \(options.joined(separator: ", "))" }
            for item in items where !options.contains(item) {
                return "\(item) is not one of \(options.joined(separator: ", "))"
            }
            return nil
        }
    }
    static let anyString: @Sendable (String) -> String? = { _ in nil }

    static func def(_ name: String, _ type: ConfigType, _ value: String, _ synonym: String?, _ doc: String,
                    _ check: @escaping @Sendable (String) -> String?) -> TopicConfigDefinition {
        TopicConfigDefinition(name: name, type: type, defaultValue: value, brokerSynonym: synonym, documentation: doc, check: check)
    }

    /// Every topic configuration, by name.
    public static let all: [String: TopicConfigDefinition] = {
        let maxLong = String(Int64.max)
        let list: [TopicConfigDefinition] = [
            def("cleanup.policy", .list, "delete", "log.cleanup.policy",
                "delete: old data is removed by retention; compact: key compaction keeps the newest record per key (docs/compaction.md); both may be given.",
                listOf(["delete", "compact"])),
            def("compression.type", .string, "producer", "compression.type",
                "Floe stores batches as the producer sent them (producer); other values are accepted and stored.",
                choice(["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"])),
            def("delete.retention.ms", .long, "86400000", "log.cleaner.delete.retention.ms", "How long a tombstone (null value) is kept after the key compaction that first saw it.", long(min: 0)),
            def("file.delete.delay.ms", .long, "60000", "log.segment.delete.delay.ms", "Accepted for compatibility.", long(min: 0)),
            def("flush.messages", .long, maxLong, "log.flush.interval.messages", "Accepted; every acknowledged batch is durable in the WAL anyway.", long(min: 1)),
            def("flush.ms", .long, maxLong, "log.flush.interval.ms", "Accepted; every acknowledged batch is durable in the WAL anyway.", long(min: 0)),
            def("follower.replication.throttled.replicas", .list, "", nil, "Accepted for compatibility.", anyString),
            def("index.interval.bytes", .int, "4096", "log.index.interval.bytes", "Accepted for compatibility.", int(min: 0)),
            def("leader.replication.throttled.replicas", .list, "", nil, "Accepted for compatibility.", anyString),
            def("local.retention.bytes", .long, "-2", "log.local.retention.bytes", "Accepted for compatibility.", long(min: -2)),
            def("local.retention.ms", .long, "-2", "log.local.retention.ms", "Accepted for compatibility.", long(min: -2)),
            def("max.compaction.lag.ms", .long, maxLong, "log.cleaner.max.compaction.lag.ms", "A committed record older than this is cleaned even below min.cleanable.dirty.ratio (compacted topics).", long(min: 1)),
            def("max.message.bytes", .int, "1048588", "message.max.bytes",
                "Largest record batch accepted for this topic (after compression).", int(min: 0)),
            def("message.downconversion.enable", .boolean, "true", "log.message.downconversion.enable", "Accepted for compatibility.", boolean),
            def("message.timestamp.after.max.ms", .long, maxLong, "log.message.timestamp.after.max.ms", "Accepted for compatibility.", long(min: 0)),
            def("message.timestamp.before.max.ms", .long, maxLong, "log.message.timestamp.before.max.ms", "Accepted for compatibility.", long(min: 0)),
            def("message.timestamp.difference.max.ms", .long, maxLong, "log.message.timestamp.difference.max.ms", "Accepted for compatibility.", long(min: 0)),
            def("message.timestamp.type", .string, "CreateTime", "log.message.timestamp.type",
                "CreateTime (producer timestamps) or LogAppendTime (accepted and stored; batches are served as sent).",
                choice(["CreateTime", "LogAppendTime"])),
            def("min.cleanable.dirty.ratio", .double, "0.5", "log.cleaner.min.cleanable.ratio", "Key compaction runs when dirty bytes are at least this share of the cleanable bytes.", double(min: 0, max: 1)),
            def("min.compaction.lag.ms", .long, "0", "log.cleaner.min.compaction.lag.ms", "Data appended less than this long ago is never cleaned (compacted topics).", long(min: 0)),
            def("min.insync.replicas", .int, "1", "min.insync.replicas", "Accepted; durability comes from the WAL and object storage.", int(min: 1)),
            def("preallocate", .boolean, "false", "log.preallocate", "Accepted for compatibility.", boolean),
            def("remote.storage.enable", .boolean, "false", nil, "Accepted for compatibility (all data is in object storage).", boolean),
            def("retention.bytes", .long, "-1", "log.retention.bytes",
                "Per-partition size above which the oldest data is deleted (-1: no limit).", long(min: -1)),
            def("retention.ms", .long, "604800000", "log.retention.ms",
                "Age after which data is deleted (-1: keep forever).", long(min: -1)),
            def("segment.bytes", .int, "1073741824", "log.segment.bytes", "Accepted; storage objects are sized by the stream store.", int(min: 14)),
            def("segment.index.bytes", .int, "10485760", "log.index.size.max.bytes", "Accepted for compatibility.", int(min: 4)),
            def("segment.jitter.ms", .long, "0", "log.roll.jitter.ms", "Accepted for compatibility.", long(min: 0)),
            def("segment.ms", .long, "604800000", "log.roll.ms", "Accepted; storage objects are sized by the stream store.", long(min: 1)),
            def("unclean.leader.election.enable", .boolean, "false", "unclean.leader.election.enable", "Accepted for compatibility.", boolean),
        ]
        return Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) })
    }()

    public static func definition(_ name: String) -> TopicConfigDefinition? { all[name] }

    /// Checks `configs` (name → value); returns the first problem as (name, reason).
    public static func validate(_ configs: [String: String]) -> (name: String, reason: String)? {
        for (name, value) in configs.sorted(by: { $0.key < $1.key }) {
            guard let def = all[name] else { return (name, "unknown topic configuration \(name)") }
            if let reason = def.validate(value) { return (name, "invalid value \(value) for \(name): \(reason)") }
        }
        return nil
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
