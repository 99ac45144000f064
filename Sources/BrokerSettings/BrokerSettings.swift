/// The broker's configuration contract: every setting `floe-broker` reads, declared once with
/// its name, type, default, who may set it and whether it can change at run time.
///
/// Two programs read this table and neither imports the other (docs/architecture.md):
/// - the broker (`BrokerConfig`) takes its defaults from it, accepts only declared keys and
///   validates every value at start-up, so a bad value is a one-line error naming the key;
/// - the operator renders only declared keys (the properties file and the container flags) and
///   admits a `spec.config` key only when it is declared and `access == .user`.
///
/// Adding a setting: add one `BrokerSetting` to `all` (keep it sorted by group), read it in the
/// broker, and document it in docs/broker.md. `BrokerSettingsTests` and the operator's render
/// tests then cover it.
///
/// Example: `BrokerSettings.problem("node.id", "x")` is `"node.id=x: not an integer"`;
/// `BrokerSettings.named["num.partitions"]?.access` is `.user`.
public struct BrokerSetting: Sendable, Hashable {
    public enum ValueType: Sendable, Hashable {
        /// Any text.
        case string
        /// A decimal integer within the bounds (inclusive).
        case integer(min: Int64, max: Int64)
        case boolean
        /// One of the listed words (case-sensitive, as Kafka's).
        case choice([String])
        /// A comma-separated list, each item one of the listed words.
        case list([String])
        /// A listen address `HOST:PORT`: the host an IPv4 address, `localhost` or empty (all
        /// interfaces), the port 0-65535 (0 picks a free one). `optional`: empty means off.
        case address(optional: Bool)
        /// An address given to clients, `HOST[:PORT]` (empty: the default). The host is a name or
        /// an address without blanks; the port 1-65535. `template`: `{node}` and `{N+node}` are
        /// allowed (the broker replaces them with its node id, and N plus it).
        case advertisedAddress(template: Bool)
        /// A storage URL: `file://…`, `s3://…` or `memory://…` (fully parsed by the broker's
        /// `StorageURL` at start-up).
        case storageURL
        /// Fixed: only the default is allowed (served to clients, not configurable in Floe).
        case fixed
    }

    /// Who may set a value.
    public enum Access: String, Sendable, Hashable {
        /// The operator renders it from the FloeCluster spec; `spec.config` may not set it.
        case `operator`
        /// The user may set it (`spec.config`, a properties file, a flag or the environment).
        case user
        /// Reported to clients (DescribeConfigs) with its fixed value; nobody sets it.
        case readOnly
    }

    public let name: String
    public let type: ValueType
    /// The default as text; nil: unset unless given (e.g. `log.retention.hours`).
    public let defaultValue: String?
    public let access: Access
    /// Whether AlterConfigs may change it at run time (a dynamic broker config).
    public let dynamic: Bool
    public let summary: String

    public init(_ name: String, _ type: ValueType, default defaultValue: String?, access: Access, dynamic: Bool = false,
                _ summary: String) {
        self.name = name
        self.type = type
        self.defaultValue = defaultValue
        self.access = access
        self.dynamic = dynamic
        self.summary = summary
    }

    /// The command-line flag: `node.id` → `--node-id`.
    public var flag: String { "--" + String(name.map { $0 == "." ? "-" : $0 }) }

    /// The environment variable: `node.id` → `FLOE_NODE_ID`.
    public var environmentVariable: String { "FLOE_" + String(name.uppercased().map { $0 == "." ? "_" : $0 }) }

    /// Why `value` is not acceptable, in the user's terms (the caller names the setting), or nil.
    ///
    /// Example: `.integer(min: 1, max: 10)` gives "must be between 1 and 10" for `0`;
    /// `.advertisedAddress` gives "the port must be a number 1-65535" for `host:abc`.
    public func problem(_ value: String) -> String? {
        if value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            return "contains a control character (a line break or tab); a value is one line"
        }
        let v = value.trimmingBlanks
        switch type {
        case .string:
            return nil
        case .integer(let lo, let hi):
            guard let n = Int64(v) else {
                return v.isEmpty ? "is empty; expected a whole number" : "not an integer"
            }
            if n < lo || n > hi {
                if hi == Int64.max { return "must be at least \(lo)" }
                return "must be between \(lo) and \(hi)"
            }
            return nil
        case .boolean:
            return ["true", "false"].contains(v.lowercased()) ? nil : "must be true or false"
        case .choice(let options):
            return options.contains(v) ? nil : "must be one of " + options.map { $0.isEmpty ? "(empty)" : $0 }.joined(separator: ", ")
        case .list(let options):
            let items = v.split(separator: ",").map { String($0).trimmingBlanks }
            if items.isEmpty { return "must list at least one of \(options.joined(separator: ", "))" }
            for item in items where !options.contains(item) { return "\(item) is not one of \(options.joined(separator: ", "))" }
            return nil
        case .address(let optional):
            if v.isEmpty { return optional ? nil : "is empty; expected HOST:PORT" }
            return AddressRules.listenProblem(v)
        case .advertisedAddress(let template):
            if v.isEmpty { return nil }
            return AddressRules.advertisedProblem(v, template: template)
        case .storageURL:
            return StorageURLRules.problem(v)
        case .fixed:
            return v == (defaultValue ?? "") ? nil : "is fixed at \(defaultValue ?? "(unset)") in Floe and cannot be set"
        }
    }
}

public enum BrokerSettings {
    static let maxInt = Int64(Int32.max)
    static let maxLong = Int64.max
    static let securityProtocols = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]

    // Floe's own settings. The operator owns where the broker listens, what it advertises, its
    // identity, its storage and its WAL; the rest are tuning knobs a user may set.
    public static let listen = BrokerSetting(
        "listen", .address(optional: false), default: "127.0.0.1:9092", access: .operator, "Kafka listener, HOST:PORT.")
    public static let advertise = BrokerSetting(
        "advertise", .advertisedAddress(template: false), default: "", access: .operator, "Address given to clients, HOST[:PORT] (default: the listen address).")
    public static let externalListen = BrokerSetting(
        "external.listen", .address(optional: true), default: "", access: .operator,
        "External Kafka listener, HOST:PORT (empty: none). Its clients are given every broker's external address.")
    public static let externalAdvertise = BrokerSetting(
        "external.advertise", .advertisedAddress(template: true), default: "", access: .operator,
        "Address given to clients of the external listener, HOST[:PORT]; {node} is replaced by the node id and {N+node} by N plus it "
            + "(e.g. 203.0.113.7:{31090+node}). Default: the external listen address.")
    public static let storage = BrokerSetting(
        "storage", .storageURL, default: "file://./floe-data", access: .operator,
        "The bucket: file:///path, s3://bucket/prefix?endpoint=…&region=…&path_style=…&anonymous=…, memory://name (tests).")
    public static let wal = BrokerSetting(
        "wal", .choice(["", "file", "object", "memory"]), default: "", access: .operator,
        "Write-ahead log kind: file, object, or empty for the storage's default; memory only with memory:// storage (tests).")
    public static let walDir = BrokerSetting(
        "wal.dir", .string, default: "", access: .operator, "Directory of the file WAL.")
    public static let nodeID = BrokerSetting(
        "node.id", .integer(min: 0, max: maxInt), default: "0", access: .operator, "Broker id.")
    public static let http = BrokerSetting(
        "http", .address(optional: true), default: "", access: .operator, "HTTP listener for /metrics, /healthz, /readyz, /drain, HOST:PORT (empty: off).")
    public static let clusterID = BrokerSetting(
        "cluster.id", .string, default: "", access: .operator, "Cluster id (empty: the one recorded in the bucket).")

    /// Every setting the broker reads.
    public static let all: [BrokerSetting] = [
        listen, advertise, externalListen, externalAdvertise, storage, wal, walDir, nodeID, http, clusterID,
        .init("log.level", .choice(["trace", "debug", "info", "notice", "warning", "error"]), default: "info", access: .user,
              "Log level."),
        .init("event.loops", .integer(min: 1, max: 256), default: "2", access: .user, "Network event-loop threads."),
        .init("socket.request.max.bytes", .integer(min: 1024, max: maxInt), default: "104857600", access: .user,
              "Largest request frame accepted."),
        .init("max.connections", .integer(min: 1, max: maxInt), default: "10000", access: .user, "Open client connections at most."),
        .init("connections.max.idle.ms", .integer(min: 0, max: maxLong), default: "600000", access: .user,
              "Idle connections are closed after this long."),
        .init("connection.unsent.max.bytes", .integer(min: 1024, max: maxLong), default: "4194304", access: .user,
              "Response bytes of one connection not yet written to its socket at most: reading its requests pauses above this "
                  + "and resumes once they drain below half of it."),
        .init("request.read.timeout.ms", .integer(min: 0, max: maxInt), default: "30000", access: .user,
              "Once the first byte of a request has arrived, the whole request must arrive within this time, "
                  + "else the connection is closed (0: no limit)."),
        // TLS on the listeners (docs/security.md, "TLS"); the listeners' protocols are with SASL's settings below.
        .init("ssl.certificate.file", .string, default: "", access: .operator,
              "PEM server certificate chain of every TLS listener; reloaded when it changes."),
        .init("ssl.key.file", .string, default: "", access: .operator, "PEM private key of ssl.certificate.file; reloaded with it."),
        .init("ssl.client.ca.file", .string, default: "", access: .operator, "PEM CA bundle that client certificates must chain to."),
        .init("ssl.client.auth", .choice(["none", "requested", "required"]), default: "none", access: .operator,
              "Whether TLS listeners ask for client certificates; a verified one makes the principal User:<subject DN> on SSL listeners."),
        .init("inter.broker.ssl.ca.file", .string, default: "", access: .operator,
              "PEM CA bundle the broker's own client connections verify brokers with when the internal listener uses TLS."),
        .init("authentication.timeout.ms", .integer(min: 0, max: maxInt), default: "10000", access: .user,
              "A connection whose TLS handshake and (on SASL listeners) authentication are not done this long after accept is closed (0: no limit)."),
        .init("max.parked.fetches", .integer(min: 0, max: maxInt), default: "10000", access: .user,
              "Long-poll Fetches waiting for data at most, over all connections; beyond it a Fetch is answered at once."),
        .init("max.parked.fetches.per.connection", .integer(min: 0, max: maxInt), default: "16", access: .user,
              "Long-poll Fetches of one connection waiting for data at most; beyond it a Fetch is answered at once."),
        .init("wal.flush.interval.ms", .integer(min: 1, max: 60_000), default: "20", access: .user,
              "Object WAL: how long appends are batched before one object write."),
        .init("log.cache.bytes", .integer(min: 0, max: maxLong), default: "134217728", access: .user, "Log cache size (recent records)."),
        .init("block.cache.bytes", .integer(min: 0, max: maxLong), default: "67108864", access: .user, "Block cache size (cold reads)."),
        .init("max.pinned.bytes", .integer(min: 1, max: maxLong), default: "134217728", access: .user,
              "Bytes not yet uploaded to objects at most; produce waits above it."),
        .init("upload.trigger.bytes", .integer(min: 1, max: maxLong), default: "33554432", access: .user,
              "Un-uploaded bytes that trigger an upload."),
        .init("producer.snapshot.interval.ms", .integer(min: 100, max: maxLong), default: "10000", access: .user,
              "How often producer state is snapshotted."),
        .init("transactional.id.expiration.ms", .integer(min: 1, max: 2_147_483_647), default: "604800000", access: .user,
              "A transactional id with no transaction open and no request for this long is deleted (its next InitProducerId starts with a new producer id)."),
        .init("transaction.max.timeout.ms", .integer(min: 1, max: 2_147_483_647), default: "900000", access: .user,
              "The largest transaction.timeout.ms a transactional producer may ask for (INVALID_TRANSACTION_TIMEOUT above)."),
        .init("transaction.abort.timed.out.transaction.cleanup.interval.ms", .integer(min: 100, max: 2_147_483_647), default: "10000",
              access: .user, "How often the transaction coordinator aborts transactions open past their timeout."),
        .init("unstable.api.versions.enable", .boolean, default: "false", access: .user,
              "Serve and advertise API versions Kafka's schemas mark unstable: EndTxn v5 (KIP-890 part 2, an epoch bump per transaction)."),
        .init("retention.check.interval.ms", .integer(min: 100, max: maxLong), default: "30000", access: .user,
              "How often retention runs."),
        .init("quota.window.num", .integer(min: 2, max: 1000), default: "11", access: .user,
              "Client quotas: samples the produce, fetch and request rates are measured over."),
        .init("quota.window.size.seconds", .integer(min: 1, max: 3600), default: "1", access: .user,
              "Client quotas: the duration of one sample."),
        .init("log.cleaner.backoff.ms", .integer(min: 10, max: maxLong), default: "15000", access: .user, dynamic: true,
              "How often key compaction looks at the partitions of compacted topics (cleanup.policy=compact) this broker owns."),
        .init("log.cleaner.enable", .boolean, default: "true", access: .user,
              "Whether key compaction runs (false: cleanup.policy=compact is stored but not applied)."),
        .init("object.grace.ms", .integer(min: 0, max: maxLong), default: "600000", access: .user,
              "Unreferenced data objects are deleted only after this grace period."),
        .init("compaction.max.job.bytes", .integer(min: 1, max: maxLong), default: "67108864", access: .user,
              "Input bytes of one compaction job at most (also bounds compaction's memory)."),
        .init("compaction.split.stream.bytes", .integer(min: 1, max: maxLong), default: "4194304", access: .user,
              "A stream with at least this many bytes in a job gets objects of its own."),
        .init("compaction.max.level", .integer(min: 0, max: 10), default: "3", access: .user,
              "Highest compaction level (0: compaction off)."),
        .init("broker.session.timeout.ms", .integer(min: 500, max: maxInt), default: "6000", access: .user,
              "A broker that has not heartbeated the controller for this long is fenced and its partitions fail over; also the controller lease's duration."),
        .init("broker.heartbeat.interval.ms", .integer(min: 50, max: maxInt), default: "500", access: .user,
              "How often a broker heartbeats the controller (and candidates read the controller lease)."),
        .init("wal.retry.ms", .integer(min: 0, max: maxInt), default: "30000", access: .user,
              "Object WAL: a failed object write is retried for this long before the WAL fails (and the broker reopens its storage)."),
        .init("wal.hedge.ms", .integer(min: 0, max: maxInt), default: "2000", access: .user,
              "Object WAL: an object write with no answer after this long gets a second identical write beside it (0: no hedging)."),
        .init("storage.stall.ms", .integer(min: 100, max: maxInt), default: "2000", access: .user,
              "/readyz answers 503 once an append has waited this long to become durable."),
        .init("storage.outage.max.ms", .integer(min: 0, max: maxLong), default: "120000", access: .user,
              "/healthz answers 503 once appends have been failing or stalled for this long (0: never), so a liveness probe restarts the broker."),
        // Authorization (docs/security.md, ## ACLs).
        .init("authorizer", .choice(["", "acl"]), default: "", access: .operator,
              "Authorizer: empty (off, every request allowed) or acl (the ACL bindings of the cluster metadata)."),
        .init("super.users", .string, default: "", access: .operator,
              "Principals allowed everything, separated by ';' (e.g. User:admin;User:broker)."),
        .init("allow.everyone.if.no.acl.found", .boolean, default: "false", access: .user,
              "With authorizer=acl: allow a request on a resource no ACL binding covers."),

        // Kafka broker properties, served through DescribeConfigs (Kafka 3.x defaults).
        .init("auto.create.topics.enable", .boolean, default: "true", access: .user, dynamic: true,
              "Create a topic on first produce or metadata request."),
        .init("num.partitions", .integer(min: 1, max: maxInt), default: "1", access: .user, dynamic: true,
              "Partitions of an auto-created topic."),
        .init("default.replication.factor", .integer(min: 1, max: Int64(Int16.max)), default: "1", access: .user, dynamic: true,
              "Accepted and noted; durability comes from object storage."),
        .init("delete.topic.enable", .boolean, default: "true", access: .user, dynamic: true, "Whether DeleteTopics is allowed."),
        .init("log.retention.ms", .integer(min: -1, max: maxLong), default: "604800000", access: .user, dynamic: true,
              "Default retention.ms of topics (-1: keep forever)."),
        .init("log.retention.minutes", .integer(min: -1, max: maxInt), default: nil, access: .user,
              "log.retention.ms in minutes (used when log.retention.ms is not set)."),
        .init("log.retention.hours", .integer(min: -1, max: maxInt), default: nil, access: .user,
              "log.retention.ms in hours (used when neither log.retention.ms nor .minutes is set)."),
        .init("log.retention.bytes", .integer(min: -1, max: maxLong), default: "-1", access: .user, dynamic: true,
              "Default retention.bytes of topics."),
        .init("log.cleanup.policy", .list(["delete", "compact"]), default: "delete", access: .user, dynamic: true,
              "Default cleanup.policy of topics."),
        .init("message.max.bytes", .integer(min: 1, max: maxInt), default: "1048588", access: .user, dynamic: true,
              "Default max.message.bytes of topics."),
        .init("log.segment.bytes", .integer(min: 14, max: maxInt), default: "1073741824", access: .user, dynamic: true,
              "Default segment.bytes of topics (accepted; objects are sized by the stream store)."),
        .init("log.roll.ms", .integer(min: 1, max: maxLong), default: "604800000", access: .user, dynamic: true,
              "Default segment.ms of topics (accepted)."),
        .init("compression.type", .choice(["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]), default: "producer",
              access: .user, dynamic: true, "Default compression.type of topics (batches are stored as sent)."),
        .init("min.insync.replicas", .integer(min: 1, max: maxInt), default: "1", access: .user, dynamic: true,
              "Default min.insync.replicas of topics (accepted)."),
        .init("log.message.timestamp.type", .choice(["CreateTime", "LogAppendTime"]), default: "CreateTime", access: .user,
              dynamic: true, "Default message.timestamp.type of topics."),
        .init("offsets.topic.replication.factor", .fixed, default: "1", access: .readOnly,
              "Consumer offsets live in the bucket; there is no offsets topic to replicate."),
        .init("transaction.state.log.replication.factor", .fixed, default: "1", access: .readOnly,
              "There is no transaction state topic to replicate."),
        .init("group.initial.rebalance.delay.ms", .integer(min: 0, max: maxInt), default: "3000", access: .user,
              "The first rebalance of an empty group waits this long for more members."),
        .init("group.min.session.timeout.ms", .integer(min: 0, max: maxInt), default: "6000", access: .user,
              "Smallest session timeout a member may ask for."),
        .init("group.max.session.timeout.ms", .integer(min: 0, max: maxInt), default: "1800000", access: .user,
              "Largest session timeout a member may ask for."),
        .init("offsets.retention.minutes", .integer(min: 1, max: maxInt), default: "10080", access: .user,
              "Committed offsets of an empty group expire this long after their commit."),
        .init("group.consumer.session.timeout.ms", .integer(min: 1, max: maxInt), default: "45000", access: .user,
              "A KIP-848 consumer group member that has not sent a heartbeat for this long is removed."),
        .init("group.consumer.heartbeat.interval.ms", .integer(min: 1, max: maxInt), default: "5000", access: .user,
              "The interval KIP-848 consumer group members are told to send heartbeats at."),
        .init("group.consumer.migration.policy", .choice(["bidirectional", "upgrade", "downgrade", "disabled"]), default: "bidirectional",
              access: .user,
              "Which online conversions between classic and KIP-848 consumer groups are made (mixed groups; disabled: they do not mix)."),

        // Security (issue 14): listener protocols, SASL and users. SSL and SASL_SSL speak TLS (settings above).
        .init("security.protocol", .choice(securityProtocols), default: "PLAINTEXT", access: .operator,
              "Security protocol of the internal listener: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."),
        .init("external.security.protocol", .choice(securityProtocols), default: "PLAINTEXT", access: .operator,
              "Security protocol of the external listener: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."),
        .init("sasl.enabled.mechanisms", .list(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]), default: "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
              access: .user, "SASL mechanisms offered on SASL listeners."),
        .init("sasl.users.file", .string, default: "", access: .operator,
              "Bootstrap users, one name:password per line: each gets SCRAM-SHA-256/512 credentials in the cluster metadata (re-read when it changes)."),
        .init("inter.broker.user", .string, default: "", access: .operator,
              "The user (from sasl.users.file) a broker authenticates as (SCRAM-SHA-512) on its own connections when the internal listener uses SASL."),
        .init("connections.max.reauth.ms", .integer(min: 0, max: maxLong), default: "0", access: .user,
              "KIP-368: SASL sessions last this long; the client re-authenticates on the same connection before, else it is closed (0: off)."),
        .init("connection.failed.authentication.delay.ms", .integer(min: 0, max: maxInt), default: "100", access: .user,
              "A failed SASL authentication is answered after this delay."),
        .init("connection.failed.authentication.max", .integer(min: 1, max: maxInt), default: "3", access: .user,
              "Failed SASL authentications on one connection before its next attempt closes it."),
    ]

    /// Every setting by name.
    public static let named: [String: BrokerSetting] = Dictionary(uniqueKeysWithValues: all.map { ($0.name, $0) })

    /// Names of the settings AlterConfigs may change at run time.
    public static let dynamicNames: Set<String> = Set(all.filter(\.dynamic).map(\.name))

    /// Why `name=value` is not acceptable (one line naming the key), or nil.
    public static func problem(_ name: String, _ value: String) -> String? {
        guard let setting = named[name] else { return "\(name): unknown setting" }
        return setting.problem(value).map { "\(name)=\(value): \($0)" }
    }
}
