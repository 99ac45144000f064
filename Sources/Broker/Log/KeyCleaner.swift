import KafkaProtocol
import StreamStorage

/// Key compaction's per-key selection over a partition's cleanable prefix (a pure function;
/// `KeyCompactor` decides when and where to run it, `Stream.rewrite` commits its result).
///
/// A record's offset is its stored batch's base offset (the stream's, not the one in the bytes,
/// which Fetch stamps) plus its offset delta.
///
/// Rules (Apache Kafka's log cleaner, KIP-534 for tombstones):
/// - A data record is kept only if it is the newest record of its key in the prefix; records
///   without a key are removed (produce refuses them on compacted topics; they may predate a
///   switch of `cleanup.policy`).
/// - A tombstone (null value) that is the newest of its key is kept until its batch's delete
///   horizon: the first cleaning that sees it sets the batch's delete-horizon attribute (bit 6)
///   with `baseTimestamp` = now + `delete.retention.ms` (record timestamp deltas are rebased, so
///   every record keeps its timestamp); a later cleaning after the horizon removes it.
/// - Control batches (transaction markers) are kept as they are.
/// - Batches keep their base offset and `lastOffsetDelta` (offsets are preserved; removed
///   records leave gaps). A batch with every record kept and nothing to change keeps its bytes;
///   a rewritten batch gets a recomputed CRC32C; a batch with no record left is dropped, except
///   the last batch of each idempotent producer (its sequence numbers, read back when the
///   producer state is rebuilt after a restart, must not go back) and the prefix's last batch,
///   kept empty (as Kafka keeps empty batches): a consumer positioned
///   after the last record kept then still gets a batch that moves it to the prefix's end (the
///   high watermark, when no newer data follows), instead of empty fetches forever.
///   Snappy, lz4 and zstd batches that must be rewritten are recompressed with gzip (this
///   module cannot compress those codecs); consumers read any codec.
///
/// Example: batches `[k1=a@0, k2=b@1]`, `[k1=c@2, k2=null@3]` → `[k1=c@2, k2=null@3]` (first
/// batch dropped: both its records are superseded), the second rewritten with a delete horizon.
enum KeyCleaner {
    struct Result: Sendable, Equatable {
        var batches: [StoredBatch]
        var recordsRemoved: Int
        /// The earliest delete horizon of a tombstone kept (when the next cleaning can drop it).
        var nextDeleteHorizon: Int64?
    }

    static func clean(_ input: [StoredBatch], nowMillis: Int64, deleteRetentionMillis: Int64) throws -> Result {
        // Pass 1: the newest offset of every key.
        var decoded: [[Record]?] = []
        decoded.reserveCapacity(input.count)
        var newest: [ArraySlice<UInt8>: Int64] = [:]
        var lastOfProducer: [Int64: Int] = [:]
        for (i, stored) in input.enumerated() {
            let batch = try RecordBatch(unverified: stored.bytes)
            if batch.header.producerId >= 0 { lastOfProducer[batch.header.producerId] = i }
            if batch.isControlBatch {
                decoded.append(nil)
                continue
            }
            let records = try batch.records()
            for r in records {
                guard let key = r.key else { continue }
                newest[key] = stored.baseOffset + Int64(r.offsetDelta)
            }
            decoded.append(records)
        }
        // Pass 2: keep the newest record per key, drop expired tombstones.
        var out: [StoredBatch] = []
        var removed = 0
        var nextHorizon: Int64? = nil
        for (i, stored) in input.enumerated() {
            guard let records = decoded[i] else {
                out.append(stored)
                continue
            }
            let batch = try RecordBatch(unverified: stored.bytes)
            let h = batch.header
            let existingHorizon: Int64? = h.attributes.hasDeleteHorizon ? h.baseTimestamp : nil
            var kept: [Record] = []
            var tombstones = false
            for r in records {
                guard let key = r.key, newest[key] == stored.baseOffset + Int64(r.offsetDelta) else { continue }
                if r.value == nil {
                    if let horizon = existingHorizon, horizon <= nowMillis { continue }
                    tombstones = true
                }
                kept.append(r)
            }
            removed += records.count - kept.count
            let horizon = existingHorizon ?? (tombstones ? nowMillis + deleteRetentionMillis : nil)
            if tombstones, let horizon { nextHorizon = min(nextHorizon ?? horizon, horizon) }
            if kept.count == records.count && horizon == existingHorizon {
                out.append(stored)
                continue
            }
            if kept.isEmpty && i != input.count - 1 && lastOfProducer[h.producerId] != i { continue }
            let bytes = try rebuild(batch, baseOffset: stored.baseOffset, records: kept, deleteHorizon: horizon)
            out.append(StoredBatch(baseOffset: stored.baseOffset, recordCount: stored.recordCount,
                                   appendTimeMillis: stored.appendTimeMillis, bytes: bytes[...]))
        }
        return Result(batches: out, recordsRemoved: removed, nextDeleteHorizon: nextHorizon)
    }

    /// `batch` with only `records` (deltas as in `batch`), the same header fields and offsets
    /// (stored batches keep the producer's base offset in their bytes: the stream's offset,
    /// `baseOffset`, is stamped in at fetch and written here),
    /// and `deleteHorizon` (if any) as its delete horizon.
    static func rebuild(_ batch: RecordBatch, baseOffset: Int64, records: [Record], deleteHorizon: Int64?) throws -> [UInt8] {
        let h = batch.header
        var builder = RecordBatchBuilder()
        builder.baseOffset = baseOffset
        builder.partitionLeaderEpoch = h.partitionLeaderEpoch
        builder.producerId = h.producerId
        builder.producerEpoch = h.producerEpoch
        builder.baseSequence = h.baseSequence
        builder.isTransactional = h.attributes.isTransactional
        builder.isControl = h.attributes.isControl
        builder.timestampType = h.attributes.timestampType
        builder.unusedAttributeBits = h.attributes.rawValue & ~0x7F
        builder.maxTimestamp = h.maxTimestamp
        builder.lastOffsetDelta = h.lastOffsetDelta
        builder.compression = try h.attributes.compression()
        let base = deleteHorizon ?? h.baseTimestamp
        builder.baseTimestamp = base
        builder.hasDeleteHorizon = deleteHorizon != nil
        for var r in records {
            r.timestampDelta = h.baseTimestamp + r.timestampDelta - base
            builder.append(r)
        }
        if builder.compression != .none && builder.compression != .gzip {
            builder.compression = .gzip
        }
        return try builder.build()
    }
}
