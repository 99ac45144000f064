import KafkaProtocol

/// A broker's "host:port", as given for bootstrap or listed by Metadata.
///
/// Example: `try BrokerAddress(parsing: "broker-0.floe:9092")` is host "broker-0.floe", port 9092;
/// an IPv6 literal is written in brackets: `"[::1]:9092"` is host "::1".
public struct BrokerAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses "host:port" (port 1–65535; "[v6]:port" for IPv6 literals). Throws
    /// `KafkaClientError` `.invalidAddress` naming the text.
    public init(parsing text: String) throws(KafkaClientError) {
        func invalid(_ reason: String) -> KafkaClientError {
            KafkaClientError(address: text, kind: .invalidAddress(reason: reason))
        }
        guard let colon = text.lastIndex(of: ":") else { throw invalid("expected host:port") }
        var host = Substring(text[..<colon])
        let portText = text[text.index(after: colon)...]
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard !host.isEmpty else { throw invalid("empty host") }
        guard let port = Int(portText), (1...65535).contains(port) else { throw invalid("port '\(portText)' is not 1–65535") }
        self.host = String(host)
        self.port = port
    }

    /// "host:port", with brackets around IPv6 literals (the connection pool's key).
    public var description: String { SocketConnect.address(host: host, port: port) }
}

/// A live broker as Metadata or DescribeCluster list it.
public struct ClusterBroker: Sendable, Equatable {
    public var id: Int32
    public var host: String
    public var port: Int
    public var rack: String?

    public init(id: Int32, host: String, port: Int, rack: String? = nil) {
        self.id = id
        self.host = host
        self.port = port
        self.rack = rack
    }

    public var address: BrokerAddress { BrokerAddress(host: host, port: port) }
}

/// One partition of a Metadata answer: its leader (-1: none) at `leaderEpoch` (-1 before
/// Metadata v7), and the partition's error (nil when none, e.g. LEADER_NOT_AVAILABLE while its
/// owner is fenced).
public struct PartitionInfo: Sendable, Equatable {
    public var topic: String
    public var partition: Int32
    public var leader: Int32
    public var leaderEpoch: Int32
    public var error: KafkaErrorCode?

    public init(topic: String, partition: Int32, leader: Int32, leaderEpoch: Int32, error: KafkaErrorCode? = nil) {
        self.topic = topic
        self.partition = partition
        self.leader = leader
        self.leaderEpoch = leaderEpoch
        self.error = error
    }

    public var topicPartition: TopicPartition { TopicPartition(topic, partition) }
}

/// What one Metadata answer says about the cluster.
///
/// `partitions` holds every partition of every topic answered, sorted by topic then partition
/// (internal topics only when asked for). A topic the broker answered with an error and no
/// partitions (e.g. UNKNOWN_TOPIC_OR_PARTITION for a name asked for) is in `topicErrors`.
public struct ClusterMetadata: Sendable {
    public var clusterId: String?
    /// -1 when the broker names no controller.
    public var controllerId: Int32
    public var brokers: [ClusterBroker]
    public var partitions: [PartitionInfo]
    public var topicErrors: [String: KafkaErrorCode]

    public init(clusterId: String?, controllerId: Int32, brokers: [ClusterBroker], partitions: [PartitionInfo],
                topicErrors: [String: KafkaErrorCode] = [:]) {
        self.clusterId = clusterId
        self.controllerId = controllerId
        self.brokers = brokers
        self.partitions = partitions
        self.topicErrors = topicErrors
    }

    /// The partition's entry, if the answer has it.
    public func partition(_ tp: TopicPartition) -> PartitionInfo? {
        partitions.first { $0.topic == tp.topic && $0.partition == tp.partition }
    }
}

/// A topic and a partition index, ordered by topic then index; printed "orders-3" as Kafka's
/// tools do.
public struct TopicPartition: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public init(_ topic: String, _ partition: Int32) {
        self.init(topic: topic, partition: partition)
    }

    public static func < (a: TopicPartition, b: TopicPartition) -> Bool {
        (a.topic, a.partition) < (b.topic, b.partition)
    }

    public var description: String { "\(topic)-\(partition)" }
}

/// A reassignment in progress as ListPartitionReassignments reports it. On Floe `replicas` is
/// the current owner followed by the requested list, `adding` the target (when it is not the
/// owner yet) and `removing` the current owner.
public struct PartitionReassignment: Sendable, Equatable {
    public var topicPartition: TopicPartition
    public var replicas: [Int32]
    public var adding: [Int32]
    public var removing: [Int32]

    public init(topicPartition: TopicPartition, replicas: [Int32], adding: [Int32], removing: [Int32]) {
        self.topicPartition = topicPartition
        self.replicas = replicas
        self.adding = adding
        self.removing = removing
    }
}
