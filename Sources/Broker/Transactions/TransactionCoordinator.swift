import KafkaProtocol
import ObjectStore
import Support

/// Writes the markers of a decided transaction: a COMMIT/ABORT control batch into every
/// partition (on its owner), and the group offsets committed or dropped. Throws when any part
/// could not be written; the coordinator then keeps the transaction prepared and retries.
public protocol TxnMarkerSink: Sendable {
    func write(_ plan: MarkerPlan, transactionalId: String) async throws
    /// Asks the coordinator broker `node` (nil: none known) whether `partition` is in the open
    /// transaction of `transactionalId` at this producer epoch: nil if it is, else the error.
    func verifyRemote(transactionalId: String, producerId: Int64, producerEpoch: Int16, partition: TxnPartition, node: Int32?) async -> KafkaErrorCode?
}

extension TxnMarkerSink {
    public func verifyRemote(transactionalId: String, producerId: Int64, producerEpoch: Int16, partition: TxnPartition, node: Int32?) async -> KafkaErrorCode? {
        .coordinatorNotAvailable
    }
}

/// The transaction coordinator of the transactional ids placed on this broker (placed like
/// groups, by ``GroupPlacement``). It keeps each id's ``TransactionMetadata`` in the bucket
/// (one document per id, conditional writes on the ETag) and in memory, and performs what
/// ``TxnRules`` decides:
///
/// 1. the new state is written first (a decision is durable before any marker),
/// 2. then the markers are written (``TxnMarkerSink``),
/// 3. then the completed state is written.
///
/// A crash between 1 and 3 leaves the id prepared in the bucket; the coordinator that reads it
/// next (this broker restarted, or another one after a placement change) completes it: at
/// start and every `rescanInterval` it lists the ids placed on it and finishes prepared ones;
/// transactions open past their timeout are aborted with the producer's epoch bumped.
///
/// Requests for one id run one at a time (`busy`); different ids proceed concurrently.
public actor TransactionCoordinator {
    nonisolated let store: any ObjectStore
    /// Key prefix of transaction documents (for example `transactions/`).
    nonisolated let prefix: String
    public nonisolated let nodeId: Int32
    public nonisolated let placement: any GroupPlacement
    nonisolated let producerIds: @Sendable () async throws -> Int64
    nonisolated let markers: any TxnMarkerSink
    nonisolated let now: @Sendable () -> Int64
    nonisolated let logger: Logger
    /// transaction.max.timeout.ms: InitProducerId asking for more gets INVALID_TRANSACTION_TIMEOUT.
    public nonisolated let maxTimeoutMs: Int32
    /// transactional.id.expiration.ms: an id with no transaction open and no request for this
    /// long is deleted from the bucket and forgotten (``expire(_:)``).
    public nonisolated let expirationMs: Int64

    struct Entry {
        var meta: TransactionMetadata
        var etag: String
    }

    var entries: [String: Entry] = [:]
    var busy: Set<String> = []
    var waiting: [String: [CheckedContinuation<Void, Never>]] = [:]

    public init(nodeId: Int32, store: any ObjectStore, prefix: String, placement: any GroupPlacement, maxTimeoutMs: Int32,
                expirationMs: Int64 = 604_800_000,
                producerIds: @escaping @Sendable () async throws -> Int64, markers: any TxnMarkerSink,
                now: @escaping @Sendable () -> Int64 = { wallMillis() }, logger: Logger) {
        self.nodeId = nodeId
        self.store = store
        self.prefix = prefix
        self.placement = placement
        self.maxTimeoutMs = maxTimeoutMs
        self.expirationMs = expirationMs
        self.producerIds = producerIds
        self.markers = markers
        self.now = now
        self.logger = logger
    }

    // MARK: keys

    public nonisolated func key(_ transactionalId: String) -> String {
        prefix + ObjectKey.escaped(transactionalId)
    }

    public nonisolated func isCoordinator(of transactionalId: String) -> Bool {
        placement.coordinator(for: transactionalId)?.nodeId == nodeId
    }

    static func encode(_ m: TransactionMetadata) throws -> [UInt8] {
        try DocumentEnvelope.encode(m, kind: .transactionState, version: m.payloadVersion)
    }

    static func decode(_ bytes: [UInt8], key: String) throws -> TransactionMetadata {
        try DocumentEnvelope.decode(TransactionMetadata.self, from: bytes, kind: .transactionState, versions: 1...TransactionMetadata.formatVersion, key: key)
    }

    // MARK: one id at a time

    func acquire(_ id: String) async {
        while busy.contains(id) {
            await withCheckedContinuation { waiting[id, default: []].append($0) }
        }
        busy.insert(id)
    }

    func release(_ id: String) {
        busy.remove(id)
        if var w = waiting[id], !w.isEmpty {
            let next = w.removeFirst()
            waiting[id] = w.isEmpty ? nil : w
            next.resume()
        }
    }

    /// Runs `body` holding the id, with its current metadata (read from the bucket when not in
    /// memory). Refuses ids placed elsewhere with NOT_COORDINATOR.
    func with<T: Sendable>(_ id: String, _ body: (TransactionMetadata?) async throws -> T) async throws -> T {
        guard isCoordinator(of: id) else { throw TxnRefusal(.notCoordinator, "transactional id \(id) is coordinated by another broker") }
        await acquire(id)
        defer { release(id) }
        let current = try await load(id)
        return try await body(current)
    }

    /// The metadata of `id`: memory, else the bucket (nil if it has none).
    func load(_ id: String) async throws -> TransactionMetadata? {
        if let e = entries[id] { return e.meta }
        let k = key(id)
        do {
            let data = try await store.get(k, range: nil)
            let m = try Self.decode(data.bytes, key: k)
            entries[id] = Entry(meta: m, etag: data.etag)
            return m
        } catch ObjectStoreError.notFound {
            return nil
        } catch let e as BrokerError {
            logger.error("transaction document cannot be read", metadata: ["transactional.id": id, "key": k, "error": "\(e)"])
            throw TxnRefusal(.coordinatorNotAvailable, "transaction state of \(id) cannot be read: \(e)")
        } catch {
            throw TxnRefusal(.coordinatorNotAvailable, "transaction state of \(id) cannot be read: \(error)")
        }
    }

    /// Writes `m` conditionally on the ETag last seen. A conflict means another coordinator
    /// wrote the id: it is forgotten here and the request gets NOT_COORDINATOR.
    func persist(_ m: TransactionMetadata) async throws {
        let id = m.transactionalId
        let k = key(id)
        let bytes = try Self.encode(m)
        do {
            let tag = try await store.put(k, bytes, condition: entries[id].map { .ifMatch($0.etag) } ?? .ifAbsent)
            entries[id] = Entry(meta: m, etag: tag)
        } catch ObjectStoreError.preconditionFailed {
            entries[id] = nil
            logger.warning("transaction document changed by another coordinator; giving the id up", metadata: ["transactional.id": id, "key": k])
            throw TxnRefusal(.notCoordinator, "transaction state of \(id) was written by another coordinator")
        } catch let r as TxnRefusal {
            throw r
        } catch {
            logger.warning("writing transaction document failed", metadata: ["transactional.id": id, "key": k, "error": "\(error)"])
            throw TxnRefusal(.coordinatorNotAvailable, "writing the transaction state of \(id) failed: \(error)")
        }
    }

    /// Writes a prepared transaction's markers and completes it. On a failure the id stays
    /// prepared (the background pass retries) and the caller gets `code`.
    func finish(_ m: TransactionMetadata, _ plan: MarkerPlan) async throws -> TransactionMetadata {
        do {
            try await markers.write(plan, transactionalId: m.transactionalId)
        } catch {
            logger.warning("transaction markers not written yet; will retry", metadata: [
                "transactional.id": m.transactionalId, "producer.id": "\(plan.producerId)", "commit": "\(plan.commit)", "error": "\(error)"])
            throw TxnRefusal(.concurrentTransactions, "markers of \(m.transactionalId) are not all written yet: \(error)")
        }
        let done = TxnRules.complete(m, nowMs: now())
        try await persist(done)
        return done
    }

    // MARK: requests

    public func initProducerId(transactionalId id: String, timeoutMs: Int32, producerId: Int64, producerEpoch: Int16) async throws -> (Int64, Int16) {
        guard timeoutMs > 0, timeoutMs <= maxTimeoutMs else {
            throw TxnRefusal(.invalidTransactionTimeout, "transaction.timeout.ms \(timeoutMs) is not in 1…\(maxTimeoutMs) (transaction.max.timeout.ms)")
        }
        return try await with(id) { current in
            var current = current
            // A decided transaction is finished first (its producer is being replaced anyway).
            if let c = current, c.state.isPreparing { current = try await finish(c, TxnRules.plan(c)) }
            let needsNew = current == nil || current!.producerEpoch >= Int16.max - 1
            let fresh: Int64
            do { fresh = needsNew ? try await producerIds() : -1 } catch {
                throw TxnRefusal(.coordinatorNotAvailable, "producer id allocation failed: \(error)")
            }
            let (next, abort) = try TxnRules.initProducer(current, transactionalId: id, timeoutMs: timeoutMs, expectedProducerId: producerId,
                                                           expectedEpoch: producerEpoch, nowMs: now(), newProducerId: { fresh })
            if let abort {
                // The previous producer's open transaction is aborted at the new epoch first.
                var preparing = current!
                preparing.state = .prepareAbort
                preparing.producerId = abort.producerId
                preparing.producerEpoch = abort.producerEpoch
                try await persist(preparing)
                _ = try await finish(preparing, abort)
                logger.info("open transaction aborted by a new producer", metadata: ["transactional.id": id, "producer.id": "\(abort.producerId)"])
            }
            try await persist(next)
            return (next.producerId, next.producerEpoch)
        }
    }

    public func addPartitions(transactionalId id: String, producerId: Int64, producerEpoch: Int16, partitions: [TxnPartition]) async throws {
        try await with(id) { current in
            guard let current else { throw TxnRefusal(.invalidProducerIdMapping, "transactional id \(id) has no producer") }
            let next = try TxnRules.add(current, producerId: producerId, epoch: producerEpoch, partitions: partitions, groups: [], nowMs: now())
            if next != current { try await persist(next) }
        }
    }

    public func addOffsets(transactionalId id: String, producerId: Int64, producerEpoch: Int16, groupId: String) async throws {
        try await with(id) { current in
            guard let current else { throw TxnRefusal(.invalidProducerIdMapping, "transactional id \(id) has no producer") }
            let next = try TxnRules.add(current, producerId: producerId, epoch: producerEpoch, partitions: [], groups: [groupId], nowMs: now())
            if next != current { try await persist(next) }
        }
    }

    /// EndTxn: decides (``TxnRules/end`` or, for EndTxn v5+, ``TxnRules/endBumpingEpoch``),
    /// persists the decision, writes the markers and completes. Returns the producer id and
    /// epoch the client continues with (EndTxn v5 answers them): after a bump the new ones, for
    /// a retry of a completed end the current ones.
    @discardableResult
    public func endTxn(transactionalId id: String, producerId: Int64, producerEpoch: Int16, commit: Bool,
                       bumpEpoch: Bool = false) async throws -> (Int64, Int16) {
        try await with(id) { current in
            guard let current else { throw TxnRefusal(.invalidProducerIdMapping, "transactional id \(id) has no producer") }
            let prepared: TransactionMetadata
            let plan: MarkerPlan?
            if bumpEpoch {
                // The epoch after this one would be Int16.max: the id moves to a fresh producer id.
                let fresh: Int64
                do { fresh = current.producerEpoch >= Int16.max - 1 ? try await producerIds() : -1 } catch {
                    throw TxnRefusal(.coordinatorNotAvailable, "producer id allocation failed: \(error)")
                }
                (prepared, plan) = try TxnRules.endBumpingEpoch(current, producerId: producerId, epoch: producerEpoch, commit: commit,
                                                                 nowMs: now(), newProducerId: { fresh })
            } else {
                (prepared, plan) = try TxnRules.end(current, producerId: producerId, epoch: producerEpoch, commit: commit, nowMs: now())
            }
            guard let plan else { return (current.producerId, current.producerEpoch) }
            try await persist(prepared)
            let done = try await finish(prepared, plan)
            return (done.producerId, done.producerEpoch)
        }
    }

    /// Whether a transactional Produce of (`producerId`, `epoch`) to `partition` is part of the
    /// open transaction of `id`, answered as Kafka's coordinator answers AddPartitionsToTxn
    /// `verifyOnly` (3.8+): another producer id INVALID_PRODUCER_ID_MAPPING, another epoch
    /// PRODUCER_FENCED, a transaction being completed CONCURRENT_TRANSACTIONS, a partition not in
    /// the open transaction TRANSACTION_ABORTABLE (``verifyProduce`` maps these for the producer).
    public func verify(transactionalId id: String, producerId: Int64, producerEpoch: Int16, partition: TxnPartition) async -> KafkaErrorCode? {
        do {
            return try await with(id) { current in
                guard let m = current, m.producerId == producerId else { return .invalidProducerIdMapping }
                guard m.producerEpoch == producerEpoch else { return .producerFenced }
                if m.state.isPreparing { return .concurrentTransactions }
                guard m.state == .ongoing, m.partitions.contains(partition) else { return .transactionAbortable }
                return nil
            }
        } catch let r as TxnRefusal {
            return r.code
        } catch {
            return .coordinatorNotAvailable
        }
    }

    /// ``verify`` here when this broker coordinates `id`, else by AddPartitionsToTxn v5
    /// (verifyOnly) to the broker that does (KIP-890), with the answer mapped for a producer
    /// sending Produce `produceVersion`, as Kafka's partition leader maps it: coordinator errors
    /// and an unreachable coordinator become NOT_ENOUGH_REPLICAS (retriable), PRODUCER_FENCED
    /// becomes INVALID_PRODUCER_EPOCH, and TRANSACTION_ABORTABLE reaches only Produce v11+
    /// (the first version that knows it; older producers get INVALID_TXN_STATE).
    public func verifyProduce(transactionalId id: String, producerId: Int64, producerEpoch: Int16, partition: TxnPartition,
                              produceVersion: Int16) async -> KafkaErrorCode? {
        let code: KafkaErrorCode?
        if isCoordinator(of: id) {
            code = await verify(transactionalId: id, producerId: producerId, producerEpoch: producerEpoch, partition: partition)
        } else {
            code = await markers.verifyRemote(transactionalId: id, producerId: producerId, producerEpoch: producerEpoch, partition: partition,
                                              node: placement.coordinator(for: id)?.nodeId)
        }
        switch code {
        case .notCoordinator?, .coordinatorNotAvailable?, .coordinatorLoadInProgress?, .concurrentTransactions?: return .notEnoughReplicas
        case .producerFenced?: return .invalidProducerEpoch
        case .transactionAbortable? where produceVersion < 11: return .invalidTxnState
        default: return code
        }
    }

    public func describe(transactionalId id: String) async throws -> TransactionMetadata? {
        try await with(id) { $0 }
    }

    /// Every id placed here with a document in the bucket (read if not in memory).
    public func list() async throws -> [TransactionMetadata] {
        try await rescan()
        return entries.values.map(\.meta).filter { isCoordinator(of: $0.transactionalId) }.sorted { $0.transactionalId < $1.transactionalId }
    }

    // MARK: background

    /// Reads every document of an id placed here that is not in memory.
    func rescan() async throws {
        let objects = try await store.listAll(prefix: prefix)
        for o in objects {
            guard let id = Self.transactionalId(ofKey: o.key, prefix: prefix), entries[id] == nil, isCoordinator(of: id) else { continue }
            do {
                _ = try await load(id)
            } catch {
                logger.warning("transaction document skipped", metadata: ["key": o.key, "error": "\(error)"])
            }
        }
        // Ids that moved away are forgotten (their new coordinator reads them from the bucket).
        for id in entries.keys where !isCoordinator(of: id) && !busy.contains(id) { entries[id] = nil }
    }

    static func transactionalId(ofKey key: String, prefix: String) -> String? {
        guard key.hasPrefix(prefix) else { return nil }
        return ObjectKey.unescaped(key.dropFirst(prefix.count))
    }

    /// One background pass: prepared transactions are completed, timed-out ones aborted,
    /// expired ids deleted.
    public func tick() async {
        for id in Array(entries.keys) {
            guard let m = entries[id]?.meta, isCoordinator(of: id) else { continue }
            if TxnRules.expired(m, nowMs: now(), expirationMs: expirationMs) {
                await expire(id)
                continue
            }
            if m.state.isPreparing || TxnRules.timeout(m, nowMs: now()) != nil {
                do {
                    try await with(id) { current in
                        guard let c = current else { return }
                        if c.state.isPreparing {
                            _ = try await finish(c, TxnRules.plan(c))
                            logger.info("prepared transaction completed", metadata: ["transactional.id": id, "state": c.state.rawValue])
                        } else if let (aborting, plan) = TxnRules.timeout(c, nowMs: now()) {
                            try await persist(aborting)
                            _ = try await finish(aborting, plan)
                            logger.info("transaction timed out and was aborted", metadata: ["transactional.id": id, "producer.id": "\(c.producerId)",
                                                                                          "timeout.ms": "\(c.timeoutMs)"])
                        }
                    }
                } catch {
                    logger.debug("background transaction pass failed", metadata: ["transactional.id": id, "error": "\(error)"])
                }
            }
        }
    }

    /// Deletes an expired id's document (Kafka's `transactional.id.expiration.ms`): the next
    /// InitProducerId for it starts afresh with a new producer id. Holding the id, the document
    /// is deleted only if the bucket still has the version this coordinator last wrote or read
    /// (ETag); a coordinator that still holds the deleted version in memory fails its next
    /// conditional write and reads the id again (absent). Not closed: a coordinator that took the
    /// id over and wrote it between that check and the delete loses its write (the window is one
    /// request, during a placement change; the id then starts afresh, as if it had expired).
    func expire(_ id: String) async {
        do {
            try await with(id) { current in
                guard let c = current, TxnRules.expired(c, nowMs: now(), expirationMs: expirationMs), let etag = entries[id]?.etag else { return }
                let k = key(id)
                let info = try await store.head(k)
                guard info.etag == etag, isCoordinator(of: id) else {
                    entries[id] = nil  // written elsewhere meanwhile: read it again when asked
                    return
                }
                try await store.delete(k)
                entries[id] = nil
                logger.info("transactional id expired", metadata: ["transactional.id": id, "producer.id": "\(c.producerId)",
                                                                  "idle.ms": "\(now() - c.lastUpdateMs)"])
            }
        } catch ObjectStoreError.notFound {
            entries[id] = nil
        } catch {
            logger.debug("expiring a transactional id failed; will retry", metadata: ["transactional.id": id, "error": "\(error)"])
        }
    }

    /// Background passes until cancelled: `tick` every `interval`, a rescan of the bucket every
    /// `rescanEvery` passes (and at once).
    public func run(interval: Duration = .seconds(1), rescanEvery: Int = 10) async {
        var n = 0
        while !Task.isCancelled {
            if n % rescanEvery == 0 {
                do { try await rescan() } catch {
                    logger.warning("listing transaction documents failed", metadata: ["error": "\(error)"])
                }
            }
            n += 1
            await tick()
            do { try await Task.sleep(for: interval) } catch { return }
        }
    }
}
