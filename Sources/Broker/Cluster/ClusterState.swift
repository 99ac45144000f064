import KafkaProtocol
import SASL

/// A broker as the cluster metadata knows it.
///
/// `epoch` is the log offset of its latest registration (so it only grows); `fenced` brokers
/// own nothing new and are not listed to clients; `draining` brokers get no new placements.
public struct BrokerInfo: Codable, Sendable, Equatable {
    public var id: Int32
    public var epoch: Int64
    /// Random per process start; tells a restart from a duplicate.
    public var incarnation: String
    public var host: String
    public var port: Int32
    /// True when the broker's WAL is in the bucket (any broker can recover it after a crash).
    public var objectWAL: Bool
    public var fenced: Bool
    public var draining: Bool
    /// Fenced after a clean shutdown: everything it acknowledged is in objects, so its
    /// partitions move without WAL recovery.
    public var stoppedCleanly: Bool
    /// The address of its external listener, if it has one (absent in entries written before
    /// listeners existed).
    public var external: BrokerEndpoint? = nil

    /// Where a client connected on `listener` reaches this broker: the external address on the
    /// external listener (the internal one when the broker has none), else the internal one.
    public func address(on listener: ListenerName) -> (host: String, port: Int32) {
        if listener == .external, let e = external { return (e.host, e.port) }
        return (host, port)
    }
}

/// A host and port a broker is reached at.
public struct BrokerEndpoint: Codable, Sendable, Equatable {
    public var host: String
    public var port: Int32
    public init(host: String, port: Int32) {
        self.host = host
        self.port = port
    }
}

/// The listeners of a broker: the internal one (brokers and clients inside the cluster) and an
/// optional external one, whose clients are given every broker's external address.
public enum ListenerName: String, Sendable, Hashable {
    case `internal` = "PLAINTEXT"
    case external = "EXTERNAL"
}

/// A reassignment in progress: the partition's requested owner.
public struct PendingMove: Codable, Sendable, Equatable {
    public var target: Int32
    /// The full replica list the client asked for (reported back by ListPartitionReassignments).
    public var replicas: [Int32]
    public var requestedMillis: Int64
}

/// The cluster metadata: what every broker replays from the metadata log (see `MetadataLog`).
///
/// Invariant: `partitions[i].index == i` for every topic; a partition's `owner` is a registered
/// broker id or -1 (none yet); `leaderEpoch` (the partition epoch) grows by one at every change
/// of owner.
public struct ClusterState: Codable, Sendable, Equatable {
    static let formatVersion: UInt16 = 1
    public var clusterID: String = ""
    /// The epoch of the controller whose records are current; entries of older epochs are ignored.
    public var controllerEpoch: UInt64 = 0
    public var controllerID: Int32 = -1
    public var nextStream: UInt64 = 1
    /// Producer ids below this are handed out (blocks are reserved before use).
    public var producerIDReserved: Int64 = 0
    public var topics: [String: TopicRecord] = [:]
    /// Broker settings changed through AlterConfigs on the broker resource (cluster-wide).
    public var dynamicBrokerConfigs: [String: String] = [:]
    public var brokers: [Int32: BrokerInfo] = [:]
    /// Reassignments in progress, by "topic\u{0}index".
    public var moves: [String: PendingMove] = [:]
    /// SCRAM credentials by user, then by mechanism name (`SCRAM-SHA-256`); salted and iterated,
    /// never a password. Absent in snapshots written before SASL (nil: no users).
    public var scramUsers: [String: [String: ScramCredential]]? = nil
    /// ACL bindings (absent in snapshots written before ACLs existed; see `acls`).
    public var aclBindings: [AclBinding]? = nil
    /// Client quotas by entity, sorted (absent in snapshots written before quotas; see `quotaEntries`).
    public var clientQuotas: [ClientQuotaEntry]? = nil

    public init() {}

    /// The ACL bindings, in the order they were created.
    public var acls: [AclBinding] {
        get { aclBindings ?? [] }
        set { aclBindings = newValue.isEmpty ? nil : newValue }
    }

    static func moveKey(_ topic: String, _ index: Int32) -> String { topic + "\u{0}" + String(index) }
    static func splitMoveKey(_ key: String) -> (String, Int32)? {
        guard let sep = key.lastIndex(of: "\u{0}"), let i = Int32(key[key.index(after: sep)...]) else { return nil }
        return (String(key[..<sep]), i)
    }

    /// Brokers that may own partitions: registered, not fenced.
    public var liveBrokers: [BrokerInfo] { brokers.values.filter { !$0.fenced }.sorted { $0.id < $1.id } }
    /// Brokers that may receive new partitions: live and not draining.
    public var placeableBrokers: [BrokerInfo] { liveBrokers.filter { !$0.draining } }

    /// How many partitions each broker owns.
    public var ownedCounts: [Int32: Int] {
        var counts: [Int32: Int] = [:]
        for t in topics.values { for p in t.partitions { counts[p.owner, default: 0] += 1 } }
        return counts
    }

    /// The broker with the fewest partitions among `candidates`, ties to the lowest id; counts
    /// are updated so repeated calls spread.
    static func leastLoaded(_ candidates: [Int32], _ counts: inout [Int32: Int]) -> Int32 {
        guard let best = candidates.min(by: { (counts[$0] ?? 0, $0) < (counts[$1] ?? 0, $1) }) else { return -1 }
        counts[best, default: 0] += 1
        return best
    }
}

/// One change to `ClusterState`. Records carry whole values (a topic, a broker), so applying
/// one is an assignment and replay is trivially deterministic.
public enum MetadataRecord: Codable, Sendable, Equatable {
    /// A controller took over: entries of lower epochs are ignored from here on.
    case controller(epoch: UInt64, node: Int32)
    case clusterID(String)
    case topic(TopicRecord)
    case deleteTopic(String)
    case nextStream(UInt64)
    case producerIDs(reservedBelow: Int64)
    case dynamicBrokerConfigs([String: String])
    case broker(BrokerInfo)
    case unregisterBroker(Int32)
    case move(topic: String, partition: Int32, PendingMove?)
    /// A user's SCRAM credentials by mechanism name; nil (or empty) removes the user.
    case scramUser(name: String, credentials: [String: ScramCredential]?)
    /// The whole set of ACL bindings.
    case acls([AclBinding])
    /// One entity's client quotas by key; nil removes the entity.
    case clientQuota(entity: ClientQuotaEntity, values: [String: Double]?)

    func apply(to s: inout ClusterState) {
        switch self {
        case let .controller(epoch, node):
            s.controllerEpoch = max(s.controllerEpoch, epoch)
            s.controllerID = node
        case let .clusterID(id): s.clusterID = id
        case let .topic(t): s.topics[t.name] = t
        case let .deleteTopic(name):
            s.topics[name] = nil
            s.moves = s.moves.filter { ClusterState.splitMoveKey($0.key)?.0 != name }
        case let .nextStream(n): s.nextStream = n
        case let .producerIDs(below): s.producerIDReserved = below
        case let .dynamicBrokerConfigs(c): s.dynamicBrokerConfigs = c
        case let .broker(b): s.brokers[b.id] = b
        case let .unregisterBroker(id): s.brokers[id] = nil
        case let .move(topic, partition, move): s.moves[ClusterState.moveKey(topic, partition)] = move
        case let .scramUser(name, credentials):
            var users = s.scramUsers ?? [:]
            users[name] = (credentials?.isEmpty ?? true) ? nil : credentials
            s.scramUsers = users.isEmpty ? nil : users
        case let .acls(bindings): s.acls = bindings
        case let .clientQuota(entity, values): s.setQuotas(entity, values)
        }
    }

    /// The records that turn `old` into `new` (both derived from the same history).
    static func diff(from old: ClusterState, to new: ClusterState) -> [MetadataRecord] {
        var out: [MetadataRecord] = []
        if new.clusterID != old.clusterID { out.append(.clusterID(new.clusterID)) }
        for name in old.topics.keys.sorted() where new.topics[name] == nil { out.append(.deleteTopic(name)) }
        for name in new.topics.keys.sorted() where new.topics[name] != old.topics[name] { out.append(.topic(new.topics[name]!)) }
        if new.nextStream != old.nextStream { out.append(.nextStream(new.nextStream)) }
        if new.producerIDReserved != old.producerIDReserved { out.append(.producerIDs(reservedBelow: new.producerIDReserved)) }
        if new.dynamicBrokerConfigs != old.dynamicBrokerConfigs { out.append(.dynamicBrokerConfigs(new.dynamicBrokerConfigs)) }
        for id in old.brokers.keys.sorted() where new.brokers[id] == nil { out.append(.unregisterBroker(id)) }
        for id in new.brokers.keys.sorted() where new.brokers[id] != old.brokers[id] { out.append(.broker(new.brokers[id]!)) }
        if new.acls != old.acls { out.append(.acls(new.acls)) }
        // Moves of deleted topics vanish with `.deleteTopic`.
        for key in Set(old.moves.keys).union(new.moves.keys).sorted() where old.moves[key] != new.moves[key] {
            guard let (topic, index) = ClusterState.splitMoveKey(key) else { continue }
            if new.moves[key] == nil && new.topics[topic] == nil { continue }
            out.append(.move(topic: topic, partition: index, new.moves[key]))
        }
        let oldUsers = old.scramUsers ?? [:], newUsers = new.scramUsers ?? [:]
        for name in Set(oldUsers.keys).union(newUsers.keys).sorted() where oldUsers[name] != newUsers[name] {
            out.append(.scramUser(name: name, credentials: newUsers[name]))
        }
        if new.clientQuotas != old.clientQuotas {
            let oldQuotas = QuotaTable(old.quotaEntries).quotas, newQuotas = QuotaTable(new.quotaEntries).quotas
            for entity in Set(oldQuotas.keys).union(newQuotas.keys).sorted() where oldQuotas[entity] != newQuotas[entity] {
                out.append(.clientQuota(entity: entity, values: newQuotas[entity]))
            }
        }
        return out
    }
}

/// One object of the metadata log: records written together by one controller.
struct MetadataLogEntry: Codable, Sendable, Equatable {
    static let formatVersion: UInt16 = 1
    var offset: UInt64
    var controllerEpoch: UInt64
    var writtenMillis: Int64
    var records: [MetadataRecord]
}

/// A snapshot of the cluster state as of `offset` (every entry up to it applied).
struct MetadataSnapshot: Codable, Sendable, Equatable {
    var offset: UInt64
    var state: ClusterState
}
