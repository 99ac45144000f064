import KafkaProtocol
import ObjectStore
import Support
import Synchronization

/// One partition of a topic: its index, the stream holding its records, its owner broker and
/// its partition epoch (Kafka's leader epoch: raised at every change of owner).
public struct PartitionRecord: Codable, Sendable, Equatable {
    public var index: Int32
    public var stream: UInt64
    public var leaderEpoch: Int32
    /// The broker serving the partition (-1: none).
    public var owner: Int32

    public init(index: Int32, stream: UInt64, leaderEpoch: Int32, owner: Int32) {
        self.index = index
        self.stream = stream
        self.leaderEpoch = leaderEpoch
        self.owner = owner
    }

    // Registry documents written before clusters had no owner: the single broker owned all.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        index = try c.decode(Int32.self, forKey: .index)
        stream = try c.decode(UInt64.self, forKey: .stream)
        leaderEpoch = try c.decode(Int32.self, forKey: .leaderEpoch)
        owner = try c.decodeIfPresent(Int32.self, forKey: .owner) ?? -1
    }
}

/// A topic as the registry stores it.
///
/// Invariant: `partitions[i].index == i`; `configs` holds only explicitly set, validated values
/// (defaults are never stored, so a changed broker default applies to every topic).
public struct TopicRecord: Codable, Sendable, Equatable {
    public var name: String
    /// The topic id, 16 bytes as 32 hex digits.
    public var id: String
    public var partitions: [PartitionRecord]
    public var configs: [String: String]
    /// The replication factor the client asked for (accepted and noted; durability comes from
    /// object storage, so each partition has one replica, its leader).
    public var requestedReplicationFactor: Int16
    public var createdMillis: Int64

    public var topicID: KafkaUUID { KafkaUUID(hex: id) ?? .zero }
}

/// The registry document a single broker persisted in the bucket before clusters existed
/// (`<prefix>registry`); the first controller imports it into the metadata log.
struct RegistryDocument: Codable, Sendable, Equatable {
    static let formatVersion: UInt16 = 1
    var generation: UInt64 = 0
    var nextStream: UInt64 = 1
    var producerIDReserved: Int64 = 0
    var topics: [String: TopicRecord] = [:]
    var dynamicBrokerConfigs: [String: String] = [:]
    var clusterID: String = ""
}

/// Topics, partitions and the rest of the cluster metadata as this broker sees it: a view of
/// the replicated `MetadataLog` (`<prefix>cluster/`), changed only by the active controller.
///
/// Reads (`topic(named:)`, `topics`) are lock-protected snapshots and never wait for I/O.
/// Changes (`create`, `delete`, …) run one at a time on the controller: the change is applied to
/// the current state, the difference is appended to the log as records, and every broker
/// replays them. On any other broker a change throws `BrokerError.notController`; its handlers
/// forward the request to the controller instead.
///
/// Example: `create(name: "orders", partitions: 3, ...)` on the controller assigns three fresh
/// stream ids (never reused, even after the topic is deleted), a random topic id, and owners
/// spread over the live brokers that are not draining.
public final class TopicRegistry: Sendable {
    let store: any ObjectStore
    /// Where a pre-cluster registry document may be (imported once).
    public let key: String
    public let log: MetadataLog
    private let role = Mutex<UInt64?>(nil)
    private let writer = AsyncLock()

    public static let maxAttempts = 5

    private init(store: any ObjectStore, prefix: String, logger: Logger) {
        self.store = store
        self.key = prefix + "registry"
        self.log = MetadataLog(store: store, prefix: prefix + "cluster/", logger: logger)
    }

    /// Loads the metadata log (a bucket without one is an empty cluster).
    public static func load(store: any ObjectStore, prefix: String, logger: Logger = .discarding) async throws -> TopicRegistry {
        let r = TopicRegistry(store: store, prefix: prefix, logger: logger)
        try await r.log.load()
        return r
    }

    // MARK: reads

    public var state: ClusterState { log.current }
    public var topics: [TopicRecord] { Array(log.current.topics.values).sorted { $0.name < $1.name } }
    public func topic(named name: String) -> TopicRecord? { log.current.topics[name] }
    public func topic(id: KafkaUUID) -> TopicRecord? { log.current.topics.values.first { $0.topicID == id } }
    public var dynamicBrokerConfigs: [String: String] { log.current.dynamicBrokerConfigs }
    /// The controller epoch this broker writes with, if it is the active controller.
    public var controllerEpoch: UInt64? { role.withLock { $0 } }

    // MARK: controller role

    /// Makes this broker the writer of the log at `epoch` (a lease just won): catches up, writes
    /// the epoch record (deposing any older controller) and, on a new cluster, the cluster id and
    /// any pre-cluster registry document.
    public func becomeController(epoch: UInt64, node: Int32) async throws {
        try await writer.withLock {
            try await log.catchUp()
            var records: [MetadataRecord] = [.controller(epoch: epoch, node: node)]
            var imported = log.current
            if log.offset == 0, let legacy = try await loadLegacy() {
                imported.topics = legacy.topics
                imported.nextStream = legacy.nextStream
                imported.producerIDReserved = legacy.producerIDReserved
                imported.dynamicBrokerConfigs = legacy.dynamicBrokerConfigs
                imported.clusterID = legacy.clusterID
            }
            if imported.clusterID.isEmpty { imported.clusterID = KafkaUUID.random().description }
            records += MetadataRecord.diff(from: log.current, to: imported)
            try await log.append(records, epoch: epoch)
            role.withLock { $0 = epoch }
        }
    }

    /// Stops writing (the lease was lost or the broker shuts down).
    public func resignController() { role.withLock { $0 = nil } }

    private func loadLegacy() async throws -> RegistryDocument? {
        do {
            let data = try await store.get(key, range: nil)
            return try DocumentEnvelope.decode(RegistryDocument.self, from: data.bytes, kind: .registry,
                                               versions: 1...RegistryDocument.formatVersion, key: key)
        } catch ObjectStoreError.notFound {
            return nil
        }
    }

    // MARK: changes

    /// Applies `change` to the current state and appends the difference to the log; returns
    /// what the change returned. A change that throws leaves everything untouched. Only the
    /// active controller may call this (`BrokerError.notController` otherwise).
    func mutate<T: Sendable>(_ change: @Sendable (inout ClusterState) throws -> T) async throws -> T {
        try await writer.withLock {
            guard let epoch = role.withLock({ $0 }) else {
                throw BrokerError.notController(epoch: 0, current: log.current.controllerEpoch)
            }
            let base = log.current
            var next = base
            let result = try change(&next)
            if next == base { return result }
            do {
                try await log.append(MetadataRecord.diff(from: base, to: next), epoch: epoch)
            } catch let e as BrokerError {
                if case .notController = e { role.withLock { $0 = nil } }
                throw e
            }
            return result
        }
    }

    /// Why a topic name is invalid, or nil (Kafka's rules: 1…249 of `[a-zA-Z0-9._-]`, not `.` or `..`).
    public static func nameProblem(_ name: String) -> String? {
        if name.isEmpty { return "topic name is empty" }
        if name == "." || name == ".." { return "topic name cannot be '.' or '..'" }
        if name.utf8.count > 249 { return "topic name is longer than 249 characters" }
        for c in name.utf8 {
            let ok = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 46 || c == 95 || c == 45
            if !ok { return "topic name \(name) contains a character other than ASCII alphanumerics, '.', '_' and '-'" }
        }
        return nil
    }

    /// Creates a topic. Throws `TopicError` for Kafka-level refusals.
    @discardableResult
    public func create(name: String, partitions: Int32, replicationFactor: Int16, configs: [String: String],
                       validateOnly: Bool = false, nowMillis: Int64 = wallMillis()) async throws -> TopicRecord {
        if let problem = Self.nameProblem(name) { throw TopicError(.invalidTopicException, problem) }
        guard partitions >= 1 && partitions <= 100_000 else {
            throw TopicError(.invalidPartitions, "number of partitions must be between 1 and 100000, not \(partitions)")
        }
        guard replicationFactor >= 1 else {
            throw TopicError(.invalidReplicationFactor, "replication factor must be at least 1, not \(replicationFactor)")
        }
        if let (_, reason) = TopicConfigs.validate(configs) { throw TopicError(.invalidConfig, reason) }
        let build: @Sendable (inout ClusterState) throws -> TopicRecord = { doc in
            if doc.topics[name] != nil { throw TopicError(.topicAlreadyExists, "topic \(name) already exists") }
            var parts: [PartitionRecord] = []
            var counts = doc.ownedCounts
            let placeable = doc.placeableBrokers.map(\.id)
            for i in 0..<partitions {
                parts.append(PartitionRecord(index: i, stream: doc.nextStream, leaderEpoch: 0,
                                             owner: ClusterState.leastLoaded(placeable, &counts)))
                doc.nextStream += 1
            }
            let id = KafkaUUID.random()
            let topic = TopicRecord(name: name, id: id.hex, partitions: parts, configs: configs,
                                    requestedReplicationFactor: replicationFactor, createdMillis: nowMillis)
            doc.topics[name] = topic
            return topic
        }
        if validateOnly {
            var copy = log.current
            return try build(&copy)
        }
        return try await mutate(build)
    }

    /// Deletes a topic; returns its record (its streams are the caller's to discard).
    @discardableResult
    public func delete(name: String) async throws -> TopicRecord {
        try await mutate { doc in
            guard let t = doc.topics.removeValue(forKey: name) else {
                throw TopicError(.unknownTopicOrPartition, "topic \(name) does not exist")
            }
            return t
        }
    }

    /// Grows a topic to `count` partitions.
    @discardableResult
    public func createPartitions(name: String, count: Int32, validateOnly: Bool = false) async throws -> TopicRecord {
        let grow: @Sendable (inout ClusterState) throws -> TopicRecord = { doc in
            guard var t = doc.topics[name] else { throw TopicError(.unknownTopicOrPartition, "topic \(name) does not exist") }
            let have = Int32(t.partitions.count)
            guard count > have else {
                throw TopicError(.invalidPartitions, "topic \(name) has \(have) partitions; the new count \(count) must be larger")
            }
            guard count <= 100_000 else { throw TopicError(.invalidPartitions, "number of partitions must be at most 100000") }
            var counts = doc.ownedCounts
            let placeable = doc.placeableBrokers.map(\.id)
            for i in have..<count {
                t.partitions.append(PartitionRecord(index: i, stream: doc.nextStream, leaderEpoch: 0,
                                                    owner: ClusterState.leastLoaded(placeable, &counts)))
                doc.nextStream += 1
            }
            doc.topics[name] = t
            return t
        }
        if validateOnly {
            var copy = log.current
            return try grow(&copy)
        }
        return try await mutate(grow)
    }

    /// Replaces a topic's explicit configs with `configs` (validated first).
    public func setConfigs(topic name: String, _ configs: [String: String], validateOnly: Bool = false) async throws {
        if let (_, reason) = TopicConfigs.validate(configs) { throw TopicError(.invalidConfig, reason) }
        guard topic(named: name) != nil else { throw TopicError(.unknownTopicOrPartition, "topic \(name) does not exist") }
        if validateOnly { return }
        try await mutate { doc in
            guard var t = doc.topics[name] else { throw TopicError(.unknownTopicOrPartition, "topic \(name) does not exist") }
            t.configs = configs
            doc.topics[name] = t
        }
    }

    /// The cluster id recorded in the metadata log (written by the first controller).
    public var clusterID: String { log.current.clusterID }

    /// Replaces the dynamic broker configs.
    public func setDynamicBrokerConfigs(_ configs: [String: String]) async throws {
        try await mutate { doc in doc.dynamicBrokerConfigs = configs }
    }

    /// Reserves `count` producer ids; returns the first.
    public func reserveProducerIDs(_ count: Int64) async throws -> Int64 {
        try await mutate { doc in
            let first = doc.producerIDReserved
            doc.producerIDReserved += count
            return first
        }
    }
}

/// A Kafka-level refusal of a topic operation: the error code for the response and a message.
public struct TopicError: Error, Sendable, CustomStringConvertible {
    public let code: KafkaErrorCode
    public let message: String
    public init(_ code: KafkaErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}

/// A FIFO async mutex for slow, rare critical sections (registry writes). Never held by hot paths.
final class AsyncLock: Sendable {
    private let state = Mutex<(locked: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func withLock<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    func acquire() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if !s.locked {
                    s.locked = true
                    return true
                }
                s.waiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty {
                s.locked = false
                return nil
            }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}

extension KafkaUUID {
    /// A random version-4 UUID, never the zero UUID.
    static func random() -> KafkaUUID {
        var g = SystemRandomNumberGenerator()
        let high = (g.next() & ~0xF000) | 0x4000
        let low = (g.next() & ~(UInt64(0xC) << 60)) | (UInt64(0x8) << 60)
        return KafkaUUID(mostSignificantBits: high, leastSignificantBits: low)
    }

    var hex: String {
        let h = String(mostSignificantBits, radix: 16), l = String(leastSignificantBits, radix: 16)
        return String(repeating: "0", count: 16 - h.count) + h + String(repeating: "0", count: 16 - l.count) + l
    }

    init?(hex: String) {
        guard hex.count == 32, let h = UInt64(hex.prefix(16), radix: 16), let l = UInt64(hex.suffix(16), radix: 16) else { return nil }
        self.init(mostSignificantBits: h, leastSignificantBits: l)
    }
}
