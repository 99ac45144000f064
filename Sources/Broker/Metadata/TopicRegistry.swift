import KafkaProtocol
import ObjectStore
import Synchronization

/// One partition of a topic: its index, the stream holding its records, and its leader epoch.
public struct PartitionRecord: Codable, Sendable, Equatable {
    public var index: Int32
    public var stream: UInt64
    public var leaderEpoch: Int32
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

/// The registry document persisted in the bucket.
struct RegistryDocument: Codable, Sendable, Equatable {
    static let formatVersion: UInt16 = 1
    var generation: UInt64 = 0
    var nextStream: UInt64 = 1
    /// Producer ids below this are handed out (blocks are reserved before use).
    var producerIDReserved: Int64 = 0
    var topics: [String: TopicRecord] = [:]
    /// Broker settings changed through AlterConfigs on the broker resource.
    var dynamicBrokerConfigs: [String: String] = [:]
    /// Generated on the first write; stable for the bucket's life.
    var clusterID: String = ""
}

/// The topics and partitions of a single broker, persisted in the bucket as one document
/// (`<prefix>registry`, see `DocumentEnvelope`) changed only by conditional writes.
///
/// Reads (`topic(named:)`, `topics`) are lock-protected snapshots and never wait for I/O.
/// Changes run one at a time: read-modify-write against the last known ETag (`If-Match`, or
/// `If-None-Match` for the first write); on a conflict the document is reloaded and the change
/// re-applied and re-validated, at most a few times.
///
/// Example: `create(name: "orders", partitions: 3, ...)` assigns three fresh stream ids
/// (never reused, even after the topic is deleted) and a random topic id.
public final class TopicRegistry: Sendable {
    let store: any ObjectStore
    public let key: String
    private let state = Mutex<(doc: RegistryDocument, etag: String?)>((RegistryDocument(), nil))
    private let writer = AsyncLock()

    public static let maxAttempts = 5

    private init(store: any ObjectStore, key: String) {
        self.store = store
        self.key = key
    }

    /// Loads the registry (an absent document is an empty registry).
    public static func load(store: any ObjectStore, prefix: String) async throws -> TopicRegistry {
        let r = TopicRegistry(store: store, key: prefix + "registry")
        try await r.reload()
        return r
    }

    func reload() async throws {
        do {
            let data = try await store.get(key, range: nil)
            let doc = try DocumentEnvelope.decode(
                RegistryDocument.self, from: data.bytes, kind: .registry, versions: 1...RegistryDocument.formatVersion, key: key)
            state.withLock { $0 = (doc, data.etag) }
        } catch let error as ObjectStoreError {
            if case .notFound = error {
                state.withLock { $0 = (RegistryDocument(), nil) }
                return
            }
            throw error
        }
    }

    // MARK: reads

    public var topics: [TopicRecord] { state.withLock { Array($0.doc.topics.values) }.sorted { $0.name < $1.name } }
    public func topic(named name: String) -> TopicRecord? { state.withLock { $0.doc.topics[name] } }
    public func topic(id: KafkaUUID) -> TopicRecord? {
        state.withLock { s in s.doc.topics.values.first { $0.topicID == id } }
    }
    public var dynamicBrokerConfigs: [String: String] { state.withLock { $0.doc.dynamicBrokerConfigs } }
    var generation: UInt64 { state.withLock { $0.doc.generation } }

    // MARK: changes

    /// Applies `change` to the newest document and writes it conditionally; returns what the
    /// change returned. A change that throws leaves the registry untouched.
    func mutate<T: Sendable>(_ change: @Sendable (inout RegistryDocument) throws -> T) async throws -> T {
        try await writer.withLock {
            var attempt = 0
            while true {
                attempt += 1
                let (current, etag) = state.withLock { $0 }
                var doc = current
                let result = try change(&doc)
                if doc == current { return result }
                doc.generation += 1
                let bytes = try DocumentEnvelope.encode(doc, kind: .registry, version: RegistryDocument.formatVersion)
                do {
                    let newTag = try await store.put(key, bytes, condition: etag.map { .ifMatch($0) } ?? .ifAbsent)
                    state.withLock { $0 = (doc, newTag) }
                    return result
                } catch let error as ObjectStoreError {
                    guard case .preconditionFailed = error else { throw error }
                    if attempt >= Self.maxAttempts { throw BrokerError.conflict(key: key, attempts: attempt) }
                    try await reload()
                }
            }
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
        let build: @Sendable (inout RegistryDocument) throws -> TopicRecord = { doc in
            if doc.topics[name] != nil { throw TopicError(.topicAlreadyExists, "topic \(name) already exists") }
            var parts: [PartitionRecord] = []
            for i in 0..<partitions {
                parts.append(PartitionRecord(index: i, stream: doc.nextStream, leaderEpoch: 0))
                doc.nextStream += 1
            }
            let id = KafkaUUID.random()
            let topic = TopicRecord(name: name, id: id.hex, partitions: parts, configs: configs,
                                    requestedReplicationFactor: replicationFactor, createdMillis: nowMillis)
            doc.topics[name] = topic
            return topic
        }
        if validateOnly {
            var copy = state.withLock { $0.doc }
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
        let grow: @Sendable (inout RegistryDocument) throws -> TopicRecord = { doc in
            guard var t = doc.topics[name] else { throw TopicError(.unknownTopicOrPartition, "topic \(name) does not exist") }
            let have = Int32(t.partitions.count)
            guard count > have else {
                throw TopicError(.invalidPartitions, "topic \(name) has \(have) partitions; the new count \(count) must be larger")
            }
            guard count <= 100_000 else { throw TopicError(.invalidPartitions, "number of partitions must be at most 100000") }
            for i in have..<count {
                t.partitions.append(PartitionRecord(index: i, stream: doc.nextStream, leaderEpoch: 0))
                doc.nextStream += 1
            }
            doc.topics[name] = t
            return t
        }
        if validateOnly {
            var copy = state.withLock { $0.doc }
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

    /// The cluster id stored in the registry, created (22-character base64 of a random UUID) if absent.
    public func clusterID() async throws -> String {
        let existing = state.withLock { $0.doc.clusterID }
        if !existing.isEmpty { return existing }
        return try await mutate { doc in
            if doc.clusterID.isEmpty { doc.clusterID = KafkaUUID.random().description }
            return doc.clusterID
        }
    }

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
