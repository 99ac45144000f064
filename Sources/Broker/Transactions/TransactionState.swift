import KafkaProtocol

/// The states of a transactional id, as Kafka's `TransactionState` names them (DescribeTransactions
/// and ListTransactions answer these names).
public enum TxnState: String, Codable, Sendable, CaseIterable {
    case empty = "Empty"
    case ongoing = "Ongoing"
    case prepareCommit = "PrepareCommit"
    case prepareAbort = "PrepareAbort"
    case completeCommit = "CompleteCommit"
    case completeAbort = "CompleteAbort"

    /// A decision was taken and its markers may not all be written yet.
    public var isPreparing: Bool { self == .prepareCommit || self == .prepareAbort }
}

/// A partition of a transaction, as stored (`topic`, `partition`).
public struct TxnPartition: Codable, Sendable, Hashable, Comparable {
    public var topic: String
    public var partition: Int32
    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }
    public static func < (a: Self, b: Self) -> Bool { (a.topic, a.partition) < (b.topic, b.partition) }
}

/// Everything the bucket holds about one transactional id: one document per id
/// (`<prefix>transactions/<escaped id>`, envelope kind 6, JSON payload, CRC32C), replaced only
/// by conditional writes on the ETag last read or written, so a coordinator that lost the id to
/// another (placement change, restart) cannot overwrite the newer state.
///
/// Payload versions: 1 has every field but `transactionEpoch` and `nextProducerId`; 2 adds
/// them. A document is written as version 2 only while one of them is set (a transaction ended
/// by EndTxn v5, between its prepare and its completion), else as version 1, so a broker that
/// reads only version 1 reads every other document; it refuses a version 2 one instead of
/// completing it wrongly.
///
/// A coordinator that reads a record in PrepareCommit/PrepareAbort finishes it: writes the
/// markers again (a marker for a partition already completed changes nothing) and completes.
public struct TransactionMetadata: Codable, Sendable, Equatable {
    /// The newest payload version this broker writes and reads.
    public static let formatVersion: UInt16 = 2

    public var transactionalId: String
    public var producerId: Int64
    public var producerEpoch: Int16
    /// The producer id before the last epoch exhaustion (-1: none).
    public var lastProducerId: Int64 = -1
    public var timeoutMs: Int32
    public var state: TxnState
    public var partitions: [TxnPartition] = []
    /// Groups whose offsets the transaction commits (AddOffsetsToTxn).
    public var groups: [String] = []
    /// Wall-clock milliseconds when the open transaction started (-1: none open).
    public var startMs: Int64 = -1
    public var lastUpdateMs: Int64
    /// A transaction ended by EndTxn v5 (KIP-890 part 2), while prepared: the epoch it ran at,
    /// one below `producerEpoch` (nil: the end did not bump the epoch; payload version 2).
    public var transactionEpoch: Int16? = nil
    /// EndTxn v5 at an exhausted epoch, while prepared: the producer id the completion moves the
    /// id to, at epoch 0 (nil: none; payload version 2).
    public var nextProducerId: Int64? = nil

    /// The payload version this value is written as (see the type's comment).
    public var payloadVersion: UInt16 { transactionEpoch == nil && nextProducerId == nil ? 1 : 2 }

    public init(transactionalId: String, producerId: Int64, producerEpoch: Int16, timeoutMs: Int32, state: TxnState, nowMs: Int64) {
        self.transactionalId = transactionalId
        self.producerId = producerId
        self.producerEpoch = producerEpoch
        self.timeoutMs = timeoutMs
        self.state = state
        self.lastUpdateMs = nowMs
    }
}

/// The markers a decision needs written: each partition gets a COMMIT or ABORT control batch
/// at the producer's epoch, each group's pending transactional offsets are applied or dropped.
public struct MarkerPlan: Sendable, Equatable {
    public var producerId: Int64
    public var producerEpoch: Int16
    public var commit: Bool
    public var partitions: [TxnPartition]
    public var groups: [String]
    /// EndTxn v5: the epoch the transaction ran at, one below the markers' (nil: the markers'
    /// epoch).
    public var transactionEpoch: Int16? = nil

    /// The epoch of the pending group offsets a commit applies: the transaction's (TxnOffsetCommit
    /// carried it); offsets left at any other epoch are a fenced producer's and are dropped.
    public var offsetsEpoch: Int16 { transactionEpoch ?? producerEpoch }
}

/// A refusal from the transaction state machine: a Kafka error code and why.
public struct TxnRefusal: Error, Sendable, Equatable {
    public var code: KafkaErrorCode
    public var message: String
    public init(_ code: KafkaErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }
}

/// The transaction coordinator's rules (Kafka's `TransactionCoordinator`), as pure functions on
/// ``TransactionMetadata``: each returns the new metadata to write (and the markers to write
/// after it), or a refusal. The coordinator actor persists and performs them.
///
/// Example: init → (pid 5, epoch 0, Empty); add t-0 → Ongoing [t-0]; end(commit) →
/// PrepareCommit with markers COMMIT(5, 0) on t-0; after the markers → CompleteCommit.
public enum TxnRules {
    /// InitProducerId for an id with metadata `current` (nil: first use). `newProducerId` is
    /// called when a fresh producer id is needed (first use, epoch exhaustion).
    /// Returns the metadata to write, and the abort to perform first when a transaction of the
    /// previous producer was open (its markers carry the new epoch, fencing the old producer).
    /// Whether the id has expired: no transaction open (Empty, CompleteCommit or CompleteAbort)
    /// and no change for `expirationMs`.
    public static func expired(_ m: TransactionMetadata, nowMs: Int64, expirationMs: Int64) -> Bool {
        switch m.state {
        case .empty, .completeCommit, .completeAbort: return nowMs - m.lastUpdateMs >= expirationMs
        case .ongoing, .prepareCommit, .prepareAbort: return false
        }
    }

    public static func initProducer(_ current: TransactionMetadata?, transactionalId: String, timeoutMs: Int32,
                                    expectedProducerId: Int64, expectedEpoch: Int16, nowMs: Int64,
                                    newProducerId: () throws -> Int64) throws -> (TransactionMetadata, abort: MarkerPlan?) {
        guard var m = current else {
            return (TransactionMetadata(transactionalId: transactionalId, producerId: try newProducerId(), producerEpoch: 0,
                                        timeoutMs: timeoutMs, state: .empty, nowMs: nowMs), nil)
        }
        if m.state.isPreparing {
            throw TxnRefusal(.concurrentTransactions, "transaction of \(transactionalId) is completing")
        }
        // KIP-360: a producer that names its id and epoch may only resume from the current one.
        if expectedProducerId >= 0 {
            let isCurrent = expectedProducerId == m.producerId && expectedEpoch == m.producerEpoch
            let isPrevious = expectedProducerId == m.lastProducerId
            if !isCurrent && !isPrevious {
                throw TxnRefusal(.producerFenced, "producer \(expectedProducerId) epoch \(expectedEpoch) is not the current producer of \(transactionalId)")
            }
        }
        var abort: MarkerPlan? = nil
        if m.producerEpoch >= Int16.max - 1 {
            m.lastProducerId = m.producerId
            m.producerId = try newProducerId()
            m.producerEpoch = 0
        } else {
            m.producerEpoch += 1
        }
        if m.state == .ongoing {
            abort = MarkerPlan(producerId: m.lastProducerId >= 0 && m.producerEpoch == 0 ? m.lastProducerId : m.producerId,
                               producerEpoch: m.producerEpoch == 0 ? Int16.max : m.producerEpoch,
                               commit: false, partitions: m.partitions, groups: m.groups)
        }
        m.state = .empty
        m.partitions = []
        m.groups = []
        m.startMs = -1
        m.timeoutMs = timeoutMs
        m.lastUpdateMs = nowMs
        return (m, abort)
    }

    /// Checks that a request of (`producerId`, `epoch`) comes from the current producer.
    public static func checkProducer(_ m: TransactionMetadata, producerId: Int64, epoch: Int16) throws {
        guard producerId == m.producerId else {
            throw TxnRefusal(.invalidProducerIdMapping, "producer \(producerId) is not the producer of \(m.transactionalId) (\(m.producerId))")
        }
        guard epoch == m.producerEpoch else {
            throw TxnRefusal(.producerFenced, "producer \(producerId) epoch \(epoch) is fenced by epoch \(m.producerEpoch) of \(m.transactionalId)")
        }
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: the transaction becomes (or stays) Ongoing with
    /// these partitions and groups added.
    public static func add(_ current: TransactionMetadata, producerId: Int64, epoch: Int16, partitions: [TxnPartition],
                           groups: [String], nowMs: Int64) throws -> TransactionMetadata {
        try checkProducer(current, producerId: producerId, epoch: epoch)
        var m = current
        if m.state.isPreparing {
            throw TxnRefusal(.concurrentTransactions, "transaction of \(m.transactionalId) is completing")
        }
        if m.state != .ongoing {
            m.state = .ongoing
            m.startMs = nowMs
            m.partitions = []
            m.groups = []
        }
        for p in partitions where !m.partitions.contains(p) { m.partitions.append(p) }
        for g in groups where !m.groups.contains(g) { m.groups.append(g) }
        m.lastUpdateMs = nowMs
        return m
    }

    /// EndTxn: an Ongoing transaction moves to PrepareCommit/PrepareAbort with its markers.
    /// A retry of a completed end answers success with no work (nil plan).
    public static func end(_ current: TransactionMetadata, producerId: Int64, epoch: Int16, commit: Bool,
                           nowMs: Int64) throws -> (TransactionMetadata, MarkerPlan?) {
        try checkProducer(current, producerId: producerId, epoch: epoch)
        var m = current
        switch m.state {
        case .ongoing:
            m.state = commit ? .prepareCommit : .prepareAbort
            m.lastUpdateMs = nowMs
            return (m, plan(m))
        case .completeCommit where commit, .completeAbort where !commit:
            return (m, nil)
        case .prepareCommit where commit, .prepareAbort where !commit:
            throw TxnRefusal(.concurrentTransactions, "transaction of \(m.transactionalId) is completing")
        case .empty where !commit:
            // Nothing was added: an abort has nothing to undo (Kafka answers it the same way).
            return (m, nil)
        default:
            throw TxnRefusal(.invalidTxnState, "cannot \(commit ? "commit" : "abort") the transaction of \(m.transactionalId) in state \(m.state.rawValue)")
        }
    }

    /// EndTxn v5+ (KIP-890 part 2, Kafka's transaction version 2): every commit or abort bumps
    /// the producer epoch. The prepared state and its markers carry the new epoch, which fences
    /// the producer's old epoch everywhere. At an exhausted epoch (`Int16.max - 1`) the markers
    /// use `Int16.max` and the completion moves the id to `newProducerId()` at epoch 0.
    /// Returns the prepared metadata and its markers, or the unchanged metadata and nil for a
    /// retry of an EndTxn that already completed (the client lost the answer: it gets the
    /// current producer id and epoch again, with no second bump).
    ///
    /// Kafka's rules: a request of the current epoch ends an Ongoing transaction; with the
    /// previous epoch (or, after a rotation, the last epoch of the previous producer id) it is
    /// a retry — answered at once when the transaction completed that way, CONCURRENT_TRANSACTIONS
    /// while it is still being completed; an abort with nothing open (Empty, or after a completed
    /// transaction) still bumps the epoch; any other epoch is PRODUCER_FENCED.
    ///
    /// Example: (pid 5, epoch 3, Ongoing [t-0]) end(commit, 5, 3) → PrepareCommit at epoch 4,
    /// markers COMMIT(5, 4) on t-0; after completion a retry end(commit, 5, 3) → (5, 4), no plan.
    public static func endBumpingEpoch(_ current: TransactionMetadata, producerId: Int64, epoch: Int16, commit: Bool, nowMs: Int64,
                                       newProducerId: () throws -> Int64) throws -> (TransactionMetadata, MarkerPlan?) {
        let m = current
        let retryAfterRotation = m.lastProducerId >= 0 && producerId == m.lastProducerId && epoch == Int16.max - 1 && m.producerEpoch == 0
        let retryAfterBump = producerId == m.producerId && Int32(m.producerEpoch) == Int32(epoch) + 1
        guard producerId == m.producerId || retryAfterRotation else {
            throw TxnRefusal(.invalidProducerIdMapping, "producer \(producerId) is not the producer of \(m.transactionalId) (\(m.producerId))")
        }
        let validEpoch: Bool
        switch m.state {
        case .ongoing, .empty: validEpoch = epoch == m.producerEpoch
        case .prepareCommit, .prepareAbort: validEpoch = retryAfterBump
        case .completeCommit, .completeAbort: validEpoch = retryAfterBump || retryAfterRotation || epoch == m.producerEpoch
        }
        guard validEpoch else {
            throw TxnRefusal(.producerFenced, "producer \(producerId) epoch \(epoch) is fenced by epoch \(m.producerEpoch) of \(m.transactionalId)")
        }
        let isRetry = retryAfterBump || retryAfterRotation
        func invalid() -> TxnRefusal {
            TxnRefusal(.invalidTxnState, "cannot \(commit ? "commit" : "abort") the transaction of \(m.transactionalId) in state \(m.state.rawValue)\(isRetry ? " (retry)" : "")")
        }
        func prepare(nothingOpen: Bool) throws -> (TransactionMetadata, MarkerPlan?) {
            var next = m
            if m.producerEpoch >= Int16.max - 1 { next.nextProducerId = try newProducerId() }
            next.transactionEpoch = m.producerEpoch
            next.producerEpoch = m.producerEpoch == Int16.max ? Int16.max : m.producerEpoch + 1
            next.state = commit ? .prepareCommit : .prepareAbort
            if nothingOpen {
                next.partitions = []
                next.groups = []
                next.startMs = nowMs
            }
            next.lastUpdateMs = nowMs
            return (next, plan(next))
        }
        switch (m.state, commit) {
        case (.ongoing, _):
            return try prepare(nothingOpen: false)
        case (.completeCommit, true), (.completeAbort, false):
            if isRetry { return (m, nil) }
            if commit { throw invalid() }
            return try prepare(nothingOpen: true)
        case (.completeCommit, false), (.empty, false):
            if isRetry { throw invalid() }
            return try prepare(nothingOpen: true)
        case (.prepareCommit, true), (.prepareAbort, false):
            throw TxnRefusal(.concurrentTransactions, "transaction of \(m.transactionalId) is completing")
        case (.completeAbort, true), (.empty, true), (.prepareCommit, false), (.prepareAbort, true):
            throw invalid()
        }
    }

    /// The markers of a prepared transaction.
    public static func plan(_ m: TransactionMetadata) -> MarkerPlan {
        MarkerPlan(producerId: m.producerId, producerEpoch: m.producerEpoch, commit: m.state == .prepareCommit,
                   partitions: m.partitions, groups: m.groups, transactionEpoch: m.transactionEpoch)
    }

    /// After every marker is written: the transaction is complete. A transaction ended at an
    /// exhausted epoch by EndTxn v5 moves the id to its next producer id, at epoch 0.
    public static func complete(_ current: TransactionMetadata, nowMs: Int64) -> TransactionMetadata {
        var m = current
        guard m.state.isPreparing else { return m }
        m.state = m.state == .prepareCommit ? .completeCommit : .completeAbort
        if let next = m.nextProducerId {
            m.lastProducerId = m.producerId
            m.producerId = next
            m.producerEpoch = 0
            m.nextProducerId = nil
        }
        m.transactionEpoch = nil
        m.partitions = []
        m.groups = []
        m.startMs = -1
        m.lastUpdateMs = nowMs
        return m
    }

    /// An Ongoing transaction past its timeout is aborted by the coordinator with the epoch
    /// bumped (fencing the producer, as Kafka does); nil when it is not due.
    public static func timeout(_ current: TransactionMetadata, nowMs: Int64) -> (TransactionMetadata, MarkerPlan)? {
        guard current.state == .ongoing, current.startMs >= 0, nowMs - current.startMs > Int64(current.timeoutMs) else { return nil }
        var m = current
        guard m.producerEpoch < Int16.max - 1 else {
            m.state = .prepareAbort
            m.lastUpdateMs = nowMs
            return (m, plan(m))
        }
        m.producerEpoch += 1
        m.state = .prepareAbort
        m.lastUpdateMs = nowMs
        return (m, plan(m))
    }
}
