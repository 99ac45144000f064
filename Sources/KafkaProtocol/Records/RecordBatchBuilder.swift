import Bytes

/// Builds one RecordBatch v2: collects records, then `build()` lays out the header, encodes (and
/// if asked, compresses) the records, and fills in `batchLength` and the CRC32C.
///
/// Defaults describe a plain, non-idempotent producer's batch: producer id -1, epoch -1, base
/// sequence -1, partition leader epoch -1, create-time timestamps, no compression.
///
/// Example:
/// ```
/// var builder = RecordBatchBuilder(baseTimestamp: 1_700_000_000_000)
/// builder.append(timestamp: 1_700_000_000_000, key: Array("k".utf8), value: Array("v".utf8))
/// builder.append(timestamp: 1_700_000_000_007, key: nil, value: Array("w".utf8))
/// let bytes = try builder.build()   // offsetDeltas 0 and 1, timestampDeltas 0 and 7,
///                                   // lastOffsetDelta 1, maxTimestamp 1_700_000_000_007
/// ```
public struct RecordBatchBuilder: Sendable {
    public var baseOffset: Int64 = 0
    public var partitionLeaderEpoch: Int32 = -1
    public var producerId: Int64 = -1
    public var producerEpoch: Int16 = -1
    public var baseSequence: Int32 = -1
    public var isTransactional = false
    public var isControl = false
    public var hasDeleteHorizon = false
    public var compression: CompressionCodec = .none
    public var timestampType: TimestampType = .createTime
    /// Timestamp the records' deltas are relative to; set by the first `append(timestamp:…)`
    /// when nil. Still nil at `build()` (an empty batch given no timestamp) writes -1.
    public var baseTimestamp: Int64?
    /// When nil, `build()` uses `baseTimestamp + max(timestampDelta)`.
    public var maxTimestamp: Int64?
    /// When nil, `build()` uses the last record's `offsetDelta` (-1 for an empty batch).
    public var lastOffsetDelta: Int32?
    /// Extra attribute bits (7–15) to set; Kafka defines none.
    public var unusedAttributeBits: Int16 = 0
    public private(set) var records: [Record] = []

    public init(baseTimestamp: Int64? = nil, compression: CompressionCodec = .none) {
        self.baseTimestamp = baseTimestamp
        self.compression = compression
    }

    /// A builder that reproduces `batch`: same header fields, same records. For an uncompressed
    /// batch, or a gzip batch made by this module, `build()` returns the batch's bytes exactly.
    public init(copying batch: RecordBatch) throws(KafkaProtocolError) {
        let h = batch.header
        baseOffset = h.baseOffset
        partitionLeaderEpoch = h.partitionLeaderEpoch
        producerId = h.producerId
        producerEpoch = h.producerEpoch
        baseSequence = h.baseSequence
        isTransactional = h.attributes.isTransactional
        isControl = h.attributes.isControl
        hasDeleteHorizon = h.attributes.hasDeleteHorizon
        compression = try h.attributes.compression()
        timestampType = h.attributes.timestampType
        baseTimestamp = h.baseTimestamp
        maxTimestamp = h.maxTimestamp
        lastOffsetDelta = h.lastOffsetDelta
        unusedAttributeBits = h.attributes.rawValue & ~0x7F
        records = try batch.records()
    }

    /// Appends a record as given (deltas included).
    public mutating func append(_ record: Record) { records.append(record) }

    /// Appends a record at the next offset delta, with its timestamp made relative to
    /// `baseTimestamp` (which the first call sets when it is nil).
    public mutating func append(
        timestamp: Int64, key: [UInt8]?, value: [UInt8]?, headers: [Record.Header] = []
    ) {
        let base = baseTimestamp ?? timestamp
        baseTimestamp = base
        let offsetDelta = (records.last?.offsetDelta ?? -1) + 1
        records.append(
            Record(timestampDelta: timestamp - base, offsetDelta: offsetDelta, key: key, value: value, headers: headers))
    }

    public var attributes: RecordBatchAttributes {
        var a = RecordBatchAttributes(
            compression: compression, timestampType: timestampType, isTransactional: isTransactional,
            isControl: isControl, hasDeleteHorizon: hasDeleteHorizon)
        a.rawValue |= unusedAttributeBits & ~0x7F
        return a
    }

    /// The encoded batch. Throws `.unsupportedCompression` for snappy, lz4 and zstd.
    public func build() throws(KafkaProtocolError) -> [UInt8] {
        let base = baseTimestamp ?? -1
        let header = RecordBatchHeader(
            baseOffset: baseOffset, batchLength: 0, partitionLeaderEpoch: partitionLeaderEpoch, crc: 0,
            attributes: attributes, lastOffsetDelta: lastOffsetDelta ?? records.last?.offsetDelta ?? -1,
            baseTimestamp: base,
            maxTimestamp: maxTimestamp ?? (records.map(\.timestampDelta).max().map { base + $0 } ?? base),
            producerId: producerId, producerEpoch: producerEpoch, baseSequence: baseSequence,
            recordCount: Int32(records.count))

        var recordBytes = 0
        for record in records {
            let body = record.bodySize
            recordBytes += ByteWriter.varintSize(Int32(body)) + body
        }
        var writer = ByteWriter(capacity: RecordBatchHeader.size + recordBytes)
        header.write(to: &writer)
        if compression == .none {
            for record in records { record.write(to: &writer) }
        } else {
            var plain = ByteWriter(capacity: recordBytes)
            for record in records { record.write(to: &plain) }
            writer.writeBytes(try Compression.compress(plain.bytes[...], codec: compression))
        }
        writer.patchInt32(at: 8, Int32(writer.count - RecordBatchHeader.logOverhead))
        let crc = CRC32C.checksum(writer.bytes[RecordBatchHeader.attributesOffset...])
        writer.patchUInt32(at: RecordBatchHeader.crcOffset, crc)
        return writer.take()
    }

    /// A control batch holding one COMMIT or ABORT marker, as a transaction coordinator writes it.
    public static func endTransactionBatch(
        _ type: ControlRecordType, coordinatorEpoch: Int32, producerId: Int64, producerEpoch: Int16, timestamp: Int64,
        baseOffset: Int64 = 0, partitionLeaderEpoch: Int32 = -1
    ) throws(KafkaProtocolError) -> [UInt8] {
        var builder = RecordBatchBuilder(baseTimestamp: timestamp)
        builder.baseOffset = baseOffset
        builder.partitionLeaderEpoch = partitionLeaderEpoch
        builder.producerId = producerId
        builder.producerEpoch = producerEpoch
        builder.isTransactional = true
        builder.isControl = true
        builder.append(
            timestamp: timestamp, key: ControlRecordKey(type: type).bytes,
            value: EndTransactionMarker(coordinatorEpoch: coordinatorEpoch).bytes)
        return try builder.build()
    }
}
