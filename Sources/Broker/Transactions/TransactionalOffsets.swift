import KafkaProtocol
import ObjectStore
import Support

/// Offsets a transaction committed to a group with TxnOffsetCommit, not visible yet: they are
/// applied to the group when the transaction commits and dropped when it aborts.
///
/// Stored per (group, producer id) at `<prefix><escaped group>/<producer id>` (envelope kind 7,
/// JSON payload version 1, CRC32C), so they survive a crash of the group coordinator between
/// TxnOffsetCommit and the transaction's end. Only the producer currently owning the
/// transactional id writes it (the transaction coordinator fences older epochs), so plain
/// read-merge-write under this broker's per-key lock is enough.
public struct PendingTxnOffsets: Codable, Sendable, Equatable {
    public static let formatVersion: UInt16 = 1
    public struct Offset: Codable, Sendable, Equatable {
        public var topic: String
        public var partition: Int32
        public var offset: Int64
        public var leaderEpoch: Int32
        public var metadata: String?
    }
    public var groupId: String
    public var producerId: Int64
    public var producerEpoch: Int16
    public var offsets: [Offset]

    /// Adds `more`, replacing offsets of the same partitions.
    public mutating func merge(_ more: [Offset]) {
        for o in more {
            offsets.removeAll { $0.topic == o.topic && $0.partition == o.partition }
            offsets.append(o)
        }
    }
}

/// The store of ``PendingTxnOffsets`` and their application to the group coordinator.
public actor TxnOffsetStore {
    nonisolated let store: any ObjectStore
    nonisolated let prefix: String
    nonisolated let groups: GroupCoordinator
    nonisolated let logger: Logger
    var busy: Set<String> = []
    var waiting: [String: [CheckedContinuation<Void, Never>]] = [:]
    /// Pending partitions per group and producer, for groups read from the bucket since start
    /// (OffsetFetch with require_stable). Kept in step by `add` and `complete`.
    var pending: [String: [Int64: Set<TopicPartition>]] = [:]

    public init(store: any ObjectStore, prefix: String, groups: GroupCoordinator, logger: Logger) {
        self.store = store
        self.prefix = prefix
        self.groups = groups
        self.logger = logger
    }

    nonisolated func key(group: String, producerId: Int64) -> String {
        prefix + ObjectKey.escaped(group) + "/\(producerId)"
    }

    func locked<T: Sendable>(_ k: String, _ body: () async throws -> T) async rethrows -> T {
        while busy.contains(k) { await withCheckedContinuation { waiting[k, default: []].append($0) } }
        busy.insert(k)
        defer {
            busy.remove(k)
            if var w = waiting[k], !w.isEmpty {
                let next = w.removeFirst()
                waiting[k] = w.isEmpty ? nil : w
                next.resume()
            }
        }
        return try await body()
    }

    func read(_ k: String) async throws -> PendingTxnOffsets? {
        do {
            let data = try await store.get(k, range: nil)
            return try DocumentEnvelope.decode(PendingTxnOffsets.self, from: data.bytes, kind: .pendingTxnOffsets,
                                               versions: 1...PendingTxnOffsets.formatVersion, key: k)
        } catch ObjectStoreError.notFound {
            return nil
        }
    }

    /// TxnOffsetCommit: records the offsets as pending for (group, producer).
    public func add(group: String, producerId: Int64, producerEpoch: Int16, offsets: [PendingTxnOffsets.Offset]) async throws {
        let k = key(group: group, producerId: producerId)
        try await locked(k) {
            var doc = try await read(k) ?? PendingTxnOffsets(groupId: group, producerId: producerId, producerEpoch: producerEpoch, offsets: [])
            if producerEpoch < doc.producerEpoch {
                throw TxnRefusal(.invalidProducerEpoch, "producer \(producerId) epoch \(producerEpoch) is older than \(doc.producerEpoch)")
            }
            if producerEpoch > doc.producerEpoch { doc.offsets = [] }
            doc.producerEpoch = producerEpoch
            doc.merge(offsets)
            _ = try await store.put(k, try DocumentEnvelope.encode(doc, kind: .pendingTxnOffsets, version: PendingTxnOffsets.formatVersion),
                                    condition: .none)
            if pending[group] != nil {
                pending[group]![producerId] = Set(doc.offsets.map { TopicPartition($0.topic, $0.partition) })
            }
        }
    }

    /// The transaction of `producerId` ended: its pending offsets for `group` are committed to
    /// the group (durably) or dropped, then forgotten. Idempotent (a retried marker finds none).
    /// `producerEpoch` is the epoch the transaction ran at (``MarkerPlan/offsetsEpoch``: after
    /// EndTxn v5 one below the marker's).
    public func complete(group: String, producerId: Int64, producerEpoch: Int16, commit: Bool) async throws {
        let k = key(group: group, producerId: producerId)
        try await locked(k) {
            guard let doc = try await read(k) else {
                pending[group]?[producerId] = nil
                return
            }
            if commit && doc.producerEpoch != producerEpoch {
                // Left by an older (fenced) producer of this id: never part of this transaction.
                logger.warning("pending transactional offsets of an older producer epoch dropped", metadata: [
                    "group.id": group, "producer.id": "\(producerId)", "epoch": "\(doc.producerEpoch)", "commit.epoch": "\(producerEpoch)"])
            } else if commit && !doc.offsets.isEmpty {
                let code = await groups.commitTransactional(groupId: group, offsets: doc.offsets)
                if code != 0 {
                    throw TxnRefusal(KafkaErrorCode(rawValue: code) ?? .unknownServerError,
                                     "committing the transactional offsets of group \(group) failed with error \(code)")
                }
            }
            try await store.delete(k)
            pending[group]?[producerId] = nil
        }
    }

    /// Partitions of `group` with offsets pending in some transaction (OffsetFetch with
    /// require_stable answers UNSTABLE_OFFSET_COMMIT for them). The first question about a
    /// group reads its pending documents from the bucket; later ones are answered from memory.
    public func pendingPartitions(group: String) async throws -> Set<TopicPartition> {
        if pending[group] == nil {
            let groupPrefix = String(key(group: group, producerId: 0).dropLast(1))
            var found: [Int64: Set<TopicPartition>] = [:]
            for o in try await store.listAll(prefix: groupPrefix) {
                if let doc = try await read(o.key) {
                    found[doc.producerId] = Set(doc.offsets.map { TopicPartition($0.topic, $0.partition) })
                }
            }
            if pending[group] == nil { pending[group] = found }
        }
        return pending[group]!.values.reduce(into: Set<TopicPartition>()) { $0.formUnion($1) }
    }
}

extension GroupCoordinator {
    /// Commits a transaction's offsets to a group (the transaction committed): no member or
    /// generation check (they were checked at TxnOffsetCommit), durable before returning.
    /// Returns 0 or the error code.
    func commitTransactional(groupId: String, offsets: [PendingTxnOffsets.Offset]) async -> Int16 {
        if let code = await resident(groupId) { return code }
        guard ensureGroup(groupId) else { return KafkaErrorCode.coordinatorNotAvailable.rawValue }
        let nowMs = wallMillis()
        let entries = offsets.map {
            OffsetCommitEntry(partition: TopicPartition($0.topic, $0.partition),
                              offset: CommittedOffset(offset: $0.offset, leaderEpoch: $0.leaderEpoch, metadata: $0.metadata, commitTimestampMs: nowMs),
                              errorCode: 0)
        }
        let token = newToken()
        groups[groupId]!.queued.append(PendingCommit(token: token, entries: entries))
        switch await waitDurable(token, groupId: groupId) {
        case let .commit(results): return results.first { $0.errorCode != 0 }?.errorCode ?? 0
        case let .unavailable(code): return code
        default: return KafkaErrorCode.unknownServerError.rawValue
        }
    }

    /// Checks a TxnOffsetCommit's member and generation when it names them (KIP-447).
    func validateTransactionalCommit(groupId: String, memberId: String, groupInstanceId: String?, generationId: Int32) async -> Int16 {
        if let code = await resident(groupId) { return code }
        guard generationId >= 0 || !memberId.isEmpty, groups[groupId] != nil else { return 0 }
        return groups[groupId]!.machine.validateCommit(memberId: memberId, groupInstanceId: groupInstanceId, generationId: generationId, now: clock.now())
    }
}

/// OffsetFetch with `require_stable` (v7+): partitions whose offsets a transaction has pending
/// are answered UNSTABLE_OFFSET_COMMIT (the client retries until the transaction ends), as Kafka
/// does. Wraps the group coordinator's OffsetFetch handler.
struct StableOffsetFetchHandler: ApiHandler {
    let inner: any ApiHandler
    let offsets: TxnOffsetStore
    var apiKey: ApiKey { inner.apiKey }
    var versions: ClosedRange<Int16> { inner.versions }

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .offsetFetch(r) = request, context.apiVersion >= 7, r.requireStable else {
            return await inner.handle(request, context: context)
        }
        let result = await inner.handle(request, context: context)
        switch result {
        case let .response(response): return .response(await mark(response, version: context.apiVersion, request: r))
        case let .deferred(body):
            return .deferred {
                guard let response = await body() else { return nil }
                return await mark(response, version: context.apiVersion, request: r)
            }
        default: return result
        }
    }

    func mark(_ response: AnyResponse, version: Int16, request r: OffsetFetchRequest) async -> AnyResponse {
        guard case var .offsetFetch(out) = response else { return response }
        let unstable = KafkaErrorCode.unstableOffsetCommit.rawValue
        func pendingSet(_ group: String) async -> Set<TopicPartition> {
            do { return try await offsets.pendingPartitions(group: group) } catch { return [] }
        }
        if version >= 8 {
            for gi in out.groups.indices {
                let pending = await pendingSet(out.groups[gi].groupId)
                guard !pending.isEmpty else { continue }
                for ti in out.groups[gi].topics.indices {
                    let name = out.groups[gi].topics[ti].name
                    for pi in out.groups[gi].topics[ti].partitions.indices
                    where pending.contains(TopicPartition(name, out.groups[gi].topics[ti].partitions[pi].partitionIndex)) {
                        out.groups[gi].topics[ti].partitions[pi].errorCode = unstable
                        out.groups[gi].topics[ti].partitions[pi].committedOffset = -1
                    }
                }
            }
        } else {
            let pending = await pendingSet(r.groupId)
            guard !pending.isEmpty else { return response }
            for ti in out.topics.indices {
                let name = out.topics[ti].name
                for pi in out.topics[ti].partitions.indices where pending.contains(TopicPartition(name, out.topics[ti].partitions[pi].partitionIndex)) {
                    out.topics[ti].partitions[pi].errorCode = unstable
                    out.topics[ti].partitions[pi].committedOffset = -1
                }
            }
        }
        return .offsetFetch(out)
    }
}
