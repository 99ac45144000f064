import KafkaProtocol

/// An aborted transaction of one partition: the producer, its first data offset and the offset
/// of its ABORT marker. Fetch (read_committed) returns those overlapping the fetched range.
public struct AbortedTxn: Codable, Sendable, Equatable {
    public var producerId: Int64
    public var firstOffset: Int64
    /// The ABORT marker's offset (Kafka's "last offset" of the aborted transaction).
    public var lastOffset: Int64
}

/// The transactions of one partition, as Kafka's `ProducerStateManager` and `TxnIndex` keep
/// them: per producer id the first offset of its open transaction, and the list of aborted
/// transactions. A pure value; the partition holds it under its lock and feeds it every
/// transactional batch and every marker in offset order.
///
/// Invariants:
/// - `lastStableOffset(highWatermark:)` is the smallest first offset of an open transaction,
///   or the high watermark when none is open (no read_committed consumer reads past it);
/// - a transaction is open from its first transactional batch to its COMMIT or ABORT marker;
/// - `recent` remembers the transactions whose marker may not be durable yet, so the index can
///   be cut back to any durable end (`truncated(below:)`), exactly as replaying the log would.
///
/// Example: producer 7 writes at 10 and 12, producer 8 at 11; LSO(hw 13) = 10. ABORT of 7 at
/// 13: LSO(hw 14) = 11, aborted = [(7, 10, 13)]; COMMIT of 8 at 14: LSO(hw 15) = 15.
public struct TransactionIndex: Codable, Sendable, Equatable {
    public struct Completed: Codable, Sendable, Equatable {
        public var producerId: Int64
        public var firstOffset: Int64
        public var markerOffset: Int64
        public var aborted: Bool
    }

    /// Producer id → first offset of its open transaction.
    public var ongoing: [Int64: Int64] = [:]
    /// Aborted transactions, in marker-offset order.
    public var aborted: [AbortedTxn] = []
    /// Transactions completed by markers not yet known durable (pruned by `truncated`).
    public var recent: [Completed] = []

    public init() {}

    /// A transactional data batch of `producerId` at `baseOffset`.
    public mutating func data(producerId: Int64, baseOffset: Int64) {
        if ongoing[producerId] == nil { ongoing[producerId] = baseOffset }
    }

    /// A COMMIT (`commit`) or ABORT marker of `producerId` at `offset`. A marker for a producer
    /// with no open transaction changes nothing (Kafka writes markers even to partitions that
    /// got no data, after a retry or a timeout).
    public mutating func marker(producerId: Int64, commit: Bool, offset: Int64) {
        guard let first = ongoing.removeValue(forKey: producerId) else { return }
        if !commit { aborted.append(AbortedTxn(producerId: producerId, firstOffset: first, lastOffset: offset)) }
        recent.append(Completed(producerId: producerId, firstOffset: first, markerOffset: offset, aborted: !commit))
    }

    /// Whether `producerId` has an open transaction here.
    public func isOngoing(_ producerId: Int64) -> Bool { ongoing[producerId] != nil }

    public func lastStableOffset(highWatermark: Int64) -> Int64 {
        min(highWatermark, ongoing.values.min() ?? highWatermark)
    }

    /// The aborted transactions a read_committed fetch of `[from, to)` must be told about:
    /// those whose marker is at or after `from` and whose data starts before `to`.
    public func abortedTransactions(from: Int64, to: Int64) -> [AbortedTxn] {
        aborted.filter { $0.lastOffset >= from && $0.firstOffset < to }
    }

    /// The index as of the durable end `end`: markers at or after it are undone (their
    /// transactions reopen), transactions first seen at or after it are forgotten.
    public func truncated(below end: Int64) -> TransactionIndex {
        var t = self
        for c in recent where c.markerOffset >= end {
            if c.aborted { t.aborted.removeAll { $0.producerId == c.producerId && $0.lastOffset == c.markerOffset } }
            if c.firstOffset < end, t.ongoing[c.producerId] == nil || t.ongoing[c.producerId]! >= end {
                t.ongoing[c.producerId] = c.firstOffset
            }
        }
        t.ongoing = t.ongoing.filter { $0.value < end }
        t.recent = []
        return t
    }

    /// Forgets aborted transactions wholly before `start` (deleted by retention or DeleteRecords).
    public mutating func forget(below start: Int64) {
        aborted.removeAll { $0.lastOffset < start }
    }

    /// Drops completed entries whose markers are durable (below `end`).
    public mutating func settle(below end: Int64) {
        recent.removeAll { $0.markerOffset < end }
    }

    /// Replays one batch read from the log (partition open): transactional data opens a
    /// transaction, a control batch closes it.
    public mutating func replay(_ batch: RecordBatch, baseOffset: Int64) throws {
        let h = batch.header
        guard h.attributes.isTransactional, h.producerId >= 0 else { return }
        if h.attributes.isControl {
            switch try batch.controlRecordType() {
            case .commit: marker(producerId: h.producerId, commit: true, offset: baseOffset)
            case .abort: marker(producerId: h.producerId, commit: false, offset: baseOffset)
            default: break
            }
        } else {
            data(producerId: h.producerId, baseOffset: baseOffset)
        }
    }

    /// A control batch carrying one COMMIT or ABORT marker of `producerId` at `producerEpoch`.
    public static func markerBatch(producerId: Int64, producerEpoch: Int16, commit: Bool, coordinatorEpoch: Int32,
                                   timestamp: Int64) throws(KafkaProtocolError) -> [UInt8] {
        var b = RecordBatchBuilder(baseTimestamp: timestamp)
        b.producerId = producerId
        b.producerEpoch = producerEpoch
        b.baseSequence = -1
        b.isTransactional = true
        b.isControl = true
        b.append(timestamp: timestamp, key: ControlRecordKey(type: commit ? .commit : .abort).bytes,
                 value: EndTransactionMarker(coordinatorEpoch: coordinatorEpoch).bytes)
        return try b.build()
    }
}
