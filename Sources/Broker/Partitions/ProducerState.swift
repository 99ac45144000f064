import KafkaProtocol

/// The last batches an idempotent producer wrote to one partition.
public struct ProducerEntry: Codable, Sendable, Equatable {
    public struct Batch: Codable, Sendable, Equatable {
        public var firstSequence: Int32
        public var lastSequence: Int32
        public var baseOffset: Int64
        public var lastOffset: Int64
    }
    public var epoch: Int16
    /// The newest batches, oldest first, at most `ProducerStateTable.retainedBatches`.
    public var batches: [Batch]
}

/// What to do with an incoming batch of an idempotent producer.
public enum SequenceVerdict: Sendable, Equatable {
    /// A new batch in sequence: append it.
    case append
    /// A retry of a batch already appended: answer with its original offsets, append nothing.
    case duplicate(baseOffset: Int64, lastOffset: Int64)
    /// Refuse the batch with this error.
    case reject(KafkaErrorCode, String)
}

/// Idempotent-producer state of one partition, as Kafka keeps it: per producer id the epoch and
/// the last five batches' sequence ranges and offsets. A pure value; the partition holds it
/// under its lock and applies `check` then `record` for each batch in offset order.
///
/// Rules (Kafka's `ProducerStateManager`):
/// - producer id −1: not idempotent, always appended, nothing recorded;
/// - unknown producer: appended whatever the sequence (its state may have expired with the data);
/// - older epoch: INVALID_PRODUCER_EPOCH;
/// - newer epoch: the first sequence must be 0, else OUT_OF_ORDER_SEQUENCE_NUMBER;
/// - same epoch: a batch equal to a retained one (same first and last sequence) is a duplicate;
///   otherwise the first sequence must follow the last one (wrapping after Int32.max).
///
/// Example: after batches 0…4 and 5…9 at offsets 100…104 and 105…109, a retry of 5…9 is
/// `.duplicate(baseOffset: 105, lastOffset: 109)`, 10…14 is `.append`, 12…14 is rejected.
public struct ProducerStateTable: Codable, Sendable, Equatable {
    public static let retainedBatches = 5
    public var producers: [Int64: ProducerEntry] = [:]

    public init() {}

    public func check(producerId: Int64, epoch: Int16, firstSequence: Int32, lastSequence: Int32) -> SequenceVerdict {
        guard producerId >= 0 else { return .append }
        guard let entry = producers[producerId] else { return .append }
        if epoch < entry.epoch {
            return .reject(.invalidProducerEpoch, "producer \(producerId) epoch \(epoch) is older than the current epoch \(entry.epoch)")
        }
        if epoch > entry.epoch {
            return firstSequence == 0 ? .append : .reject(
                .outOfOrderSequenceNumber,
                "producer \(producerId) starts epoch \(epoch) at sequence \(firstSequence), expected 0")
        }
        if let dup = entry.batches.first(where: { $0.firstSequence == firstSequence && $0.lastSequence == lastSequence }) {
            return .duplicate(baseOffset: dup.baseOffset, lastOffset: dup.lastOffset)
        }
        guard let last = entry.batches.last else { return .append }
        let expected = last.lastSequence == Int32.max ? 0 : last.lastSequence + 1
        if firstSequence != expected {
            return .reject(.outOfOrderSequenceNumber,
                           "producer \(producerId) epoch \(epoch): sequence \(firstSequence) does not follow \(last.lastSequence) (expected \(expected))")
        }
        return .append
    }

    public mutating func record(producerId: Int64, epoch: Int16, firstSequence: Int32, lastSequence: Int32,
                                baseOffset: Int64, lastOffset: Int64) {
        guard producerId >= 0 else { return }
        var entry = producers[producerId] ?? ProducerEntry(epoch: epoch, batches: [])
        if entry.epoch != epoch {
            entry = ProducerEntry(epoch: epoch, batches: [])
        }
        entry.batches.append(.init(firstSequence: firstSequence, lastSequence: lastSequence, baseOffset: baseOffset, lastOffset: lastOffset))
        if entry.batches.count > Self.retainedBatches { entry.batches.removeFirst(entry.batches.count - Self.retainedBatches) }
        producers[producerId] = entry
    }

    /// Records a batch found in the log (recovery), from its header.
    public mutating func replay(_ header: RecordBatchHeader, baseOffset: Int64) {
        guard header.producerId >= 0, header.recordCount > 0 else { return }
        if header.attributes.isControl {
            // A transaction marker carries no sequence; a newer epoch fences the older batches.
            if (producers[header.producerId]?.epoch ?? -1) < header.producerEpoch {
                producers[header.producerId] = ProducerEntry(epoch: header.producerEpoch, batches: [])
            }
            return
        }
        let last = Self.lastSequence(first: header.baseSequence, count: header.recordCount)
        record(producerId: header.producerId, epoch: header.producerEpoch, firstSequence: header.baseSequence, lastSequence: last,
               baseOffset: baseOffset, lastOffset: baseOffset + Int64(header.lastOffsetDelta))
    }

    /// The state as of offset `end`: batches at or after it are forgotten (they may not be
    /// durable); producers left with no batch are dropped.
    public func truncated(below end: Int64) -> ProducerStateTable {
        var t = ProducerStateTable()
        for (pid, var entry) in producers {
            entry.batches.removeAll { $0.lastOffset >= end }
            if !entry.batches.isEmpty { t.producers[pid] = entry }
        }
        return t
    }

    /// The last sequence of a batch of `count` records starting at `first`, wrapping as Kafka does.
    public static func lastSequence(first: Int32, count: Int32) -> Int32 {
        let sum = Int64(first) + Int64(count) - 1
        return sum > Int64(Int32.max) ? Int32(sum - Int64(Int32.max) - 1) : Int32(sum)
    }
}

/// A producer-state snapshot as stored in the bucket: the table as of `offset`.
/// Version 2 adds the transaction index (nil when read from version 1, which had none).
struct ProducerSnapshot: Codable, Sendable {
    static let formatVersion: UInt16 = 2
    var stream: UInt64
    var offset: Int64
    var table: ProducerStateTable
    var txns: TransactionIndex? = nil
}
