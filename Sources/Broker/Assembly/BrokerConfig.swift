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
    public func accepts(_ key: String) -> Bool { BrokerSettings.named[key] != nil }

    /// Checks every declared value against the contract (`BrokerSettings`) and the rules that
    /// span settings; throws the first problem as one line naming the key. Run at start-up,
    /// before anything is opened.
    ///
    /// Example: `node.id=x` fails with "invalid setting node.id=x (from file): not an integer".
    public func validate() throws {
        for key in values.keys.sorted() {
            guard let setting = BrokerSettings.named[key], let value = values[key] else { continue }
            if let reason = setting.problem(value) {
                throw BrokerError.configuration("invalid setting \(key)=\(value) (from \(sources[key]?.rawValue ?? "default")): \(reason)")
            }
        }
        if values["wal"]?.trimmingSpaces == "memory" && !(values["storage"] ?? "").hasPrefix("memory://") {
            throw BrokerError.configuration(
                "invalid setting wal=memory: acknowledged records would not be durable; it is allowed only with memory:// storage (tests)")
        }
        let minSession = try int("group.min.session.timeout.ms")
        let maxSession = try int("group.max.session.timeout.ms")
        if minSession > maxSession {
            throw BrokerError.configuration(
                "invalid setting group.min.session.timeout.ms=\(minSession): exceeds group.max.session.timeout.ms=\(maxSession)")
        }
    }

    /// The group coordinator's settings (`group.*`, `offsets.retention.minutes`).
    public func groupConfig() throws -> GroupConfig {
        var g = GroupConfig()
        g.minSessionTimeout = .milliseconds(Int64(try int("group.min.session.timeout.ms")))
        g.maxSessionTimeout = .milliseconds(Int64(try int("group.max.session.timeout.ms")))
        g.initialRebalanceDelay = .milliseconds(Int64(try int("group.initial.rebalance.delay.ms")))
        g.offsetsRetention = .seconds(Int64(try int("offsets.retention.minutes")) * 60)
        return g
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

    /// Parses a Java-style properties file (`PropertiesFile`, the codec the operator writes with).
    public static func parseProperties(_ text: String, path: String) throws -> [String: String] {
        do {
            return try PropertiesFile.decode(text)
        } catch {
            throw BrokerError.configuration("config file \(path) \(error)")
        }
    }
}
