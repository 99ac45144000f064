import BrokerSettings
import Foundation

/// The broker's settings, merged from defaults, a Java-style properties file, `FLOE_*`
/// environment variables and flags (flag > env > file > default).
///
/// Every key is declared in `BrokerSettings` (the contract the operator renders from); `validate()`
/// checks values against it at start-up. Two kinds of keys share one namespace:
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

    /// Defaults of every declared setting (`BrokerSettings.all`, the contract the operator
    /// renders from); settings without a default are absent until given.
    public static let defaults: [String: String] = {
        var d: [String: String] = [:]
        for setting in BrokerSettings.all { if let v = setting.defaultValue { d[setting.name] = v } }
        return d
    }()

    public init(values: [String: String] = [:], sources: [String: Source] = [:]) {
        var v = Self.defaults
        var s = v.mapValues { _ in Source.default }
        for (k, value) in values {
            v[k] = value
            s[k] = sources[k] ?? .flag
        }
        self.values = v
        self.sources = s
    }

    /// Builds the configuration from the layers; later layers win. `filePath` and
    /// `flagOrigins` (how each flag was spelled) only name the settings in error messages.
    public static func resolve(file: [String: String], environment: [String: String], flags: [String: String],
                               filePath: String? = nil, flagOrigins: [String: SettingOrigin] = [:]) -> BrokerConfig {
        var c = BrokerConfig()
        c.filePath = filePath
        c.flagOrigins = flagOrigins
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

    /// The config file's path, for messages.
    public private(set) var filePath: String?
    /// How each flag was spelled (`--node-id`, `--set`), for messages.
    public private(set) var flagOrigins: [String: SettingOrigin] = [:]

    /// Where `key`'s value came from, as the user wrote it.
    public func origin(_ key: String) -> SettingOrigin {
        switch sources[key] ?? .default {
        case .default: return .default
        case .file: return .file(filePath ?? "the config file")
        case .environment: return .environment
        case .flag: return flagOrigins[key] ?? .flag(BrokerSettings.named[key]?.flag ?? "--" + key)
        }
    }

    /// Whether `key` is a setting this broker knows.
    public func accepts(_ key: String) -> Bool { BrokerSettings.named[key] != nil }

    /// Checks every value against the contract (`BrokerSettings`: type, range, and the rules
    /// that span settings) and refuses undeclared keys; throws the first problem as one line
    /// naming the setting as the user gave it. Run at start-up, before anything is opened.
    ///
    /// Example: `--node-id x` fails with `invalid --node-id "x": not an integer`; `num.partitions=0`
    /// in a file fails with `invalid num.partitions="0" in /etc/floe/broker.properties: must be at least 1`.
    public func validate() throws {
        for key in values.keys.sorted() where !accepts(key) {
            throw BrokerError.configuration(BrokerSettings.unknownSetting(key, origin: origin(key), value: values[key] ?? ""))
        }
        if let first = BrokerSettings.problems(values, origin: origin).first {
            throw BrokerError.configuration(first.description)
        }
    }

    /// The group coordinator's settings (`group.*`, `offsets.retention.minutes`).
    public func groupConfig() throws -> GroupConfig {
        var g = GroupConfig()
        g.minSessionTimeout = .milliseconds(Int64(try int("group.min.session.timeout.ms")))
        g.maxSessionTimeout = .milliseconds(Int64(try int("group.max.session.timeout.ms")))
        g.initialRebalanceDelay = .milliseconds(Int64(try int("group.initial.rebalance.delay.ms")))
        g.offsetsRetention = .seconds(Int64(try int("offsets.retention.minutes")) * 60)
        g.consumerSessionTimeout = .milliseconds(Int64(try int("group.consumer.session.timeout.ms")))
        g.consumerHeartbeatInterval = .milliseconds(Int64(try int("group.consumer.heartbeat.interval.ms")))
        let policy = values["group.consumer.migration.policy"]?.trimmingSpaces ?? "(unset)"
        guard let migration = GroupMigrationPolicy(rawValue: policy) else {
            throw BrokerError.invalidConfig(name: "group.consumer.migration.policy", value: policy,
                                            reason: "must be one of bidirectional, upgrade, downgrade, disabled")
        }
        g.migrationPolicy = migration
        return g
    }

    public mutating func set(_ key: String, _ value: String, _ source: Source) {
        values[key] = value
        sources[key] = source
    }

    /// Kafka's precedence: `log.retention.ms` over `.minutes` over `.hours`; a negative value
    /// means no limit (-1), as in Kafka. A value that is not a number is left for `validate()`
    /// to refuse under its own name.
    mutating func normalizeRetention() {
        if sources["log.retention.ms"] == .default {
            if let m = values["log.retention.minutes"], let n = Int64(m.trimmingSpaces) {
                set("log.retention.ms", n < 0 ? "-1" : String(n * 60_000), sources["log.retention.minutes"] ?? .file)
            } else if let h = values["log.retention.hours"], let n = Int64(h.trimmingSpaces) {
                set("log.retention.ms", n < 0 ? "-1" : String(n * 3_600_000), sources["log.retention.hours"] ?? .file)
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

    /// Keys given in a file that the broker does not know (`validate()` refuses them).
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

    /// Parses a Java-style properties file (`PropertiesFile`, the codec the operator writes with).
    public static func parseProperties(_ text: String, path: String) throws -> [String: String] {
        do {
            return try PropertiesFile.decode(text)
        } catch {
            throw BrokerError.configuration("config file \(path) \(error)")
        }
    }
}
