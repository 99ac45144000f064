import KafkaProtocol
import ObjectStore
import Support
import Synchronization

/// The partitions this broker serves, opened on first use: those the cluster metadata says it
/// owns. A partition owned elsewhere is refused with `BrokerError.notLeader` (clients get
/// NOT_LEADER_OR_FOLLOWER naming the owner, refresh metadata and move); a request for a
/// partition being handed over waits for the move to commit first.
///
/// Opening a partition opens its stream and rebuilds its idempotent-producer state: the last
/// snapshot (`<prefix>producers/<stream>`) plus the batch headers logged after it. Snapshots
/// are written by `snapshotProducers()` (periodically and at shutdown), holding only durable
/// batches, so the state is always a function of the log.
public final class PartitionSet: Sendable {
    let registry: TopicRegistry
    let storage: any LogStorage
    let store: any ObjectStore
    let prefix: String
    let metrics: MetricsRegistry?
    let logger: Logger
    /// This broker's node id (ownership is checked against it).
    let node: Int32
    private let opened = Mutex<[UInt64: Task<Partition, any Error>]>([:])
    /// Streams handed over, with the partition epoch they were handed over at: not served again
    /// until the metadata names this broker at a newer epoch.
    private let leaving = Mutex<[UInt64: Int32]>([:])
    /// Requests held while their partition is handed over, woken by every metadata change.
    private let metadataWatchers = Mutex<[ObjectIdentifier: AppendSignal]>([:])
    /// How long such a request is held at most.
    let handOverHold: Duration = .seconds(2)
    /// Requests held now (for tests and diagnostics).
    var heldRequests: Int { metadataWatchers.withLock { $0.count } }

    public init(registry: TopicRegistry, storage: any LogStorage, store: any ObjectStore, prefix: String,
                metrics: MetricsRegistry?, logger: Logger, node: Int32 = 0) {
        self.node = node
        self.registry = registry
        self.storage = storage
        self.store = store
        self.prefix = prefix
        self.metrics = metrics
        self.logger = logger
    }

    func snapshotKey(_ stream: UInt64) -> String { prefix + "producers/\(stream)" }

    /// The partition, opening it if needed; nil if the topic or partition does not exist.
    public func partition(topic name: String, index: Int32) async throws -> Partition? {
        guard let topic = registry.topic(named: name), index >= 0, Int(index) < topic.partitions.count else { return nil }
        var record = topic.partitions[Int(index)]
        if record.owner == node && isLeaving(record) {
            record = await holdDuringHandOver(topic: name, index: index, record)
        }
        guard record.owner == node, !isLeaving(record) else {
            throw BrokerError.notLeader(topic: name, partition: index, owner: record.owner)
        }
        return try await open(topic, record)
    }

    /// Whether `record` is being (or was) handed over by this broker at its current epoch.
    func isLeaving(_ record: PartitionRecord) -> Bool {
        leaving.withLock { $0[record.stream].map { record.leaderEpoch <= $0 } ?? false }
    }

    /// A request for a partition in the middle of its hand-over waits for the move to commit
    /// (the controller names the new owner right after the hand-over, tens of milliseconds), so
    /// that its NOT_LEADER_OR_FOLLOWER answer names the new owner and clients go straight there
    /// instead of retrying with backoff against metadata that has not changed yet. Bounded by
    /// `handOverHold`; returns the partition's record as the metadata has it then.
    private func holdDuringHandOver(topic name: String, index: Int32, _ record: PartitionRecord) async -> PartitionRecord {
        let deadline = ContinuousClock.now + handOverHold
        var current = record
        while current.owner == node && isLeaving(current) {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { break }
            let signal = AppendSignal()
            metadataWatchers.withLock { $0[ObjectIdentifier(signal)] = signal }
            // Read again after watching, so a change in between is not missed.
            guard let t = registry.topic(named: name), Int(index) < t.partitions.count else { break }
            current = t.partitions[Int(index)]
            if current.owner == node && isLeaving(current) { await signal.wait(timeout: left) }
            metadataWatchers.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(signal)) }
            guard let t2 = registry.topic(named: name), Int(index) < t2.partitions.count else { break }
            current = t2.partitions[Int(index)]
        }
        return current
    }

    /// Stops serving a partition for a reassignment: refuses new requests, waits for appends in
    /// flight, makes everything acknowledged durable in objects and writes the producer state.
    /// Idempotent; a partition never opened here has nothing to hand over.
    public func handOver(topic name: String, index: Int32, leaderEpoch: Int32) async throws {
        guard let topic = registry.topic(named: name), index >= 0, Int(index) < topic.partitions.count else { return }
        let record = topic.partitions[Int(index)]
        leaving.withLock { $0[record.stream] = max($0[record.stream] ?? leaderEpoch, leaderEpoch) }
        try await release(stream: record.stream)
    }

    /// Closes an open partition's stream (uploading what it holds) and snapshots its producers.
    func release(stream: UInt64) async throws {
        guard let task = opened.withLock({ $0[stream] }) else { return }
        guard let p = try? await task.value else {
            opened.withLock { o in if o[stream] == task { o[stream] = nil } }
            return
        }
        try await p.log.close()
        let snap = p.takeSnapshot()
        let bytes = try DocumentEnvelope.encode(snap, kind: .producerState, version: ProducerSnapshot.formatVersion)
        _ = try await store.put(snapshotKey(stream), bytes, condition: .none)
        opened.withLock { o in if o[stream] == task { o[stream] = nil } }
        p.notifyAppended()
    }

    /// Reacts to new metadata: partitions that moved away are closed (after a failover the old
    /// owner may still have them open).
    func ownershipChanged(from old: ClusterState, to new: ClusterState) {
        defer {
            let held = metadataWatchers.withLock { Array($0.values) }
            for w in held { w.fire() }
        }
        var gone: [UInt64] = []
        for (name, t) in old.topics {
            for p in t.partitions where p.owner == node {
                let now = new.topics[name].flatMap { Int(p.index) < $0.partitions.count ? $0.partitions[Int(p.index)] : nil }
                if now == nil || now!.owner != node {
                    gone.append(p.stream)
                    leaving.withLock { $0[p.stream] = max($0[p.stream] ?? p.leaderEpoch, now?.leaderEpoch ?? p.leaderEpoch) }
                }
            }
        }
        guard !gone.isEmpty else { return }
        let logger = self.logger
        Task {
            for s in gone {
                do { try await self.release(stream: s) } catch {
                    logger.warning("closing a partition that moved away failed", metadata: ["stream": "\(s)", "error": "\(error)"])
                }
            }
        }
    }

    func open(_ topic: TopicRecord, _ record: PartitionRecord) async throws -> Partition {
        let task = opened.withLock { o -> Task<Partition, any Error> in
            if let t = o[record.stream] { return t }
            let t = Task { try await self.load(topic, record) }
            o[record.stream] = t
            return t
        }
        do {
            return try await task.value
        } catch {
            // A failed open is retried by the next caller.
            opened.withLock { o in
                if let t = o[record.stream], t == task { o[record.stream] = nil }
            }
            throw error
        }
    }

    private func load(_ topic: TopicRecord, _ record: PartitionRecord) async throws -> Partition {
        let started = ContinuousClock.now
        let log = try await storage.openLog(stream: record.stream)
        let streamOpened = ContinuousClock.now
        var table = ProducerStateTable()
        var txns = TransactionIndex()
        var from = log.startOffset
        do {
            let data = try await store.get(snapshotKey(record.stream), range: nil)
            let snap = try DocumentEnvelope.decode(ProducerSnapshot.self, from: data.bytes, kind: .producerState,
                                                   versions: 1...ProducerSnapshot.formatVersion, key: snapshotKey(record.stream))
            if snap.offset <= log.endOffset && snap.stream == record.stream {
                table = snap.table
                txns = snap.txns ?? TransactionIndex()
                from = max(from, snap.offset)
            }
        } catch let error as ObjectStoreError {
            guard case .notFound = error else { throw error }
        }
        var replayed = 0
        while from < log.endOffset {
            let batches = try await log.read(from: from, maxBytes: 4 << 20)
            guard !batches.isEmpty else { break }
            for b in batches where b.endOffset > from {
                let batch = try RecordBatch(unverified: b.bytes)
                table.replay(batch.header, baseOffset: b.baseOffset)
                try txns.replay(batch, baseOffset: b.baseOffset)
                replayed += 1
            }
            from = batches.last!.endOffset
        }
        logger.debug("partition opened", metadata: [
            "topic": topic.name, "partition": "\(record.index)", "stream": "\(record.stream)",
            "start": "\(log.startOffset)", "end": "\(log.endOffset)", "producers": "\(table.producers.count)", "replayed.batches": "\(replayed)",
            "open.ms": "\((streamOpened - started).millisecondsClamped)", "total.ms": "\((ContinuousClock.now - started).millisecondsClamped)"])
        return Partition(topic: topic.name, index: record.index, stream: record.stream, leaderEpoch: record.leaderEpoch, log: log,
                         producers: table, txns: txns, counters: PartitionCounters(metrics: metrics, topic: topic.name, partition: record.index))
    }

    /// Partitions opened so far.
    public var openPartitions: [Partition] {
        get async {
            let tasks = opened.withLock { Array($0.values) }
            var out: [Partition] = []
            for t in tasks {
                do {
                    out.append(try await t.value)
                } catch {
                    continue  // a failed open was reported to its caller and is not an open partition
                }
            }
            return out
        }
    }

    /// Writes producer-state snapshots of partitions whose state changed.
    public func snapshotProducers() async throws {
        for p in await openPartitions {
            guard let snap = p.takeSnapshotIfDirty() else { continue }
            let bytes = try DocumentEnvelope.encode(snap, kind: .producerState, version: ProducerSnapshot.formatVersion)
            _ = try await store.put(snapshotKey(p.stream), bytes, condition: .none)
        }
    }

    /// Applies each open partition's topic retention.
    public func applyRetention(nowMillis: Int64, brokerConfig: BrokerConfig) async throws {
        for p in await openPartitions {
            guard let topic = registry.topic(named: p.topic) else { continue }
            let configs = brokerConfig.effectiveTopicConfigs(topic.configs, dynamic: registry.dynamicBrokerConfigs)
            guard (configs["cleanup.policy"] ?? "delete").contains("delete") else { continue }
            let ms = Int64(configs["retention.ms"] ?? "") ?? -1
            let bytes = Int64(configs["retention.bytes"] ?? "") ?? -1
            if ms < 0 && bytes < 0 { continue }
            try await p.log.applyRetention(maxAgeMillis: ms >= 0 ? ms : nil, maxBytes: bytes >= 0 ? bytes : nil, nowMillis: nowMillis)
        }
    }

    /// Forgets a deleted topic's partitions: their data is trimmed away and their state deleted.
    public func drop(_ topic: TopicRecord) async throws {
        for record in topic.partitions {
            let p = try await open(topic, record)
            opened.withLock { _ = $0.removeValue(forKey: record.stream) }
            try await p.log.trim(to: p.log.endOffset)
            try await p.log.close()
            try await store.delete(snapshotKey(record.stream))
            p.notifyAppended()
        }
    }

    /// Forgets every open partition (their storage was replaced after a failure): each reopens
    /// on the next request, on the new storage, with its producer state rebuilt from durable data.
    /// Long polls on the old ones are woken so they look again.
    func dropAll() async {
        let old = opened.withLock { o -> [Task<Partition, any Error>] in defer { o = [:] }; return Array(o.values) }
        for task in old {
            if let p = try? await task.value { p.notifyAppended() }
        }
    }

    /// Makes every partition's data durable and writes the producer snapshots.
    public func closeAll() async throws {
        let parts = await openPartitions
        for p in parts { try await p.log.close() }
        try await snapshotProducers()
        for p in parts { p.notifyAppended() }
    }
}
