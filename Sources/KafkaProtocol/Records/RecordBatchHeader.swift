import Bytes

/// Whether a batch's timestamps were set by the producer or by the broker on append.
public enum TimestampType: Sendable, Equatable {
    case createTime
    case logAppendTime
}

/// The 16-bit attributes of a RecordBatch v2.
///
/// Bits: 0–2 compression codec, 3 timestamp type (1 = log append time), 4 transactional,
/// 5 control batch, 6 delete horizon set (then `baseTimestamp` is the delete horizon). Bits 7–15
/// are unused and preserved as found.
///
/// Example: `0x0031` is a transactional control batch with gzip compression bits (control
/// batches are in practice uncompressed).
public struct RecordBatchAttributes: RawRepresentable, Sendable, Equatable, Hashable {
    public var rawValue: Int16
    public init(rawValue: Int16) { self.rawValue = rawValue }

    public init(
        compression: CompressionCodec = .none, timestampType: TimestampType = .createTime,
        isTransactional: Bool = false, isControl: Bool = false, hasDeleteHorizon: Bool = false
    ) {
        var raw = compression.rawValue
        if timestampType == .logAppendTime { raw |= 1 << 3 }
        if isTransactional { raw |= 1 << 4 }
        if isControl { raw |= 1 << 5 }
        if hasDeleteHorizon { raw |= 1 << 6 }
        rawValue = raw
    }

    /// The codec; throws for the unassigned codec values 5–7.
    public func compression() throws(KafkaProtocolError) -> CompressionCodec {
        try CompressionCodec(attributes: rawValue)
    }

    public var timestampType: TimestampType { rawValue & (1 << 3) != 0 ? .logAppendTime : .createTime }
    public var isTransactional: Bool { rawValue & (1 << 4) != 0 }
    public var isControl: Bool { rawValue & (1 << 5) != 0 }
    public var hasDeleteHorizon: Bool { rawValue & (1 << 6) != 0 }
}

/// The fixed 61-byte header of a RecordBatch v2 (Kafka's `DefaultRecordBatch`).
///
/// Byte layout (big-endian):
/// ```
///  0 baseOffset int64          27 baseTimestamp int64
///  8 batchLength int32         35 maxTimestamp int64
/// 12 partitionLeaderEpoch int32 43 producerId int64
/// 16 magic int8 (= 2)          51 producerEpoch int16
/// 17 crc uint32                53 baseSequence int32
/// 21 attributes int16          57 recordCount int32
/// 23 lastOffsetDelta int32     61 records…
/// ```
/// `batchLength` counts the bytes after itself, so a batch occupies `12 + batchLength` bytes.
/// The CRC32C covers bytes 21 to the end of the batch; `baseOffset`, `batchLength` and
/// `partitionLeaderEpoch` are outside it, so a broker can rewrite offsets and the epoch in place.
///
/// Example: a batch with `baseOffset` 100 and `lastOffsetDelta` 4 holds offsets 100…104, and the
/// next batch in the log starts at offset 105.
public struct RecordBatchHeader: Sendable, Equatable {
    public static let size = 61
    /// Bytes before `batchLength` ends (baseOffset + batchLength): the log overhead.
    public static let logOverhead = 12
    /// Offset of the magic byte, the same in legacy message sets (magic 0 and 1).
    public static let magicOffset = 16
    public static let crcOffset = 17
    /// The CRC covers from here to the end of the batch.
    public static let attributesOffset = 21
    public static let partitionLeaderEpochOffset = 12
    public static let currentMagic: Int8 = 2

    public var baseOffset: Int64
    public var batchLength: Int32
    public var partitionLeaderEpoch: Int32
    public var magic: Int8
    public var crc: UInt32
    public var attributes: RecordBatchAttributes
    public var lastOffsetDelta: Int32
    public var baseTimestamp: Int64
    public var maxTimestamp: Int64
    public var producerId: Int64
    public var producerEpoch: Int16
    public var baseSequence: Int32
    public var recordCount: Int32

    /// Total bytes of the batch, header included.
    public var totalSize: Int { Self.logOverhead + Int(batchLength) }
    /// The offset of the last record (`baseOffset + lastOffsetDelta`).
    public var lastOffset: Int64 { baseOffset + Int64(lastOffsetDelta) }
    /// The offset the next batch in the log starts at.
    public var nextOffset: Int64 { lastOffset + 1 }

    public init(
        baseOffset: Int64, batchLength: Int32, partitionLeaderEpoch: Int32, magic: Int8 = currentMagic,
        crc: UInt32, attributes: RecordBatchAttributes, lastOffsetDelta: Int32, baseTimestamp: Int64,
        maxTimestamp: Int64, producerId: Int64, producerEpoch: Int16, baseSequence: Int32, recordCount: Int32
    ) {
        self.baseOffset = baseOffset
        self.batchLength = batchLength
        self.partitionLeaderEpoch = partitionLeaderEpoch
        self.magic = magic
        self.crc = crc
        self.attributes = attributes
        self.lastOffsetDelta = lastOffsetDelta
        self.baseTimestamp = baseTimestamp
        self.maxTimestamp = maxTimestamp
        self.producerId = producerId
        self.producerEpoch = producerEpoch
        self.baseSequence = baseSequence
        self.recordCount = recordCount
    }

    /// Reads the header at the start of `bytes` (which may continue past the header).
    ///
    /// Checks only what is needed to interpret the fields: at least 61 bytes and magic 2 (magic
    /// 0 or 1 throws `.unsupportedMagic`, other values `.invalidRecordBatch`). Use
    /// `RecordBatch(validating:)` for the full checks.
    public init(parsing bytes: ArraySlice<UInt8>) throws(KafkaProtocolError) {
        if bytes.count > Self.magicOffset {
            let magic = Int8(bitPattern: bytes[bytes.startIndex + Self.magicOffset])
            if magic != Self.currentMagic {
                let base = bytes.count >= 8 ? Self.loadInt64(bytes, at: 0) : -1
                if magic == 0 || magic == 1 { throw .unsupportedMagic(magic, baseOffset: base) }
                throw .invalidRecordBatch(reason: "unknown magic byte \(magic) (expected 2)", offset: Self.magicOffset)
            }
        }
        guard bytes.count >= Self.size else {
            throw .invalidRecordBatch(
                reason: "\(bytes.count) bytes is shorter than the \(Self.size)-byte batch header", offset: 0)
        }
        var r = ByteReader(bytes)
        do {
            baseOffset = try r.readInt64()
            batchLength = try r.readInt32()
            partitionLeaderEpoch = try r.readInt32()
            magic = try r.readInt8()
            crc = try r.readUInt32()
            attributes = RecordBatchAttributes(rawValue: try r.readInt16())
            lastOffsetDelta = try r.readInt32()
            baseTimestamp = try r.readInt64()
            maxTimestamp = try r.readInt64()
            producerId = try r.readInt64()
            producerEpoch = try r.readInt16()
            baseSequence = try r.readInt32()
            recordCount = try r.readInt32()
        } catch {
            // Unreachable after the length check above; kept so no error is swallowed.
            throw .bytes(error, message: "record batch header")
        }
    }

    /// Appends the 61 header bytes.
    public func write(to writer: inout ByteWriter) {
        writer.writeInt64(baseOffset)
        writer.writeInt32(batchLength)
        writer.writeInt32(partitionLeaderEpoch)
        writer.writeInt8(magic)
        writer.writeUInt32(crc)
        writer.writeInt16(attributes.rawValue)
        writer.writeInt32(lastOffsetDelta)
        writer.writeInt64(baseTimestamp)
        writer.writeInt64(maxTimestamp)
        writer.writeInt64(producerId)
        writer.writeInt16(producerEpoch)
        writer.writeInt32(baseSequence)
        writer.writeInt32(recordCount)
    }

    static func loadInt64(_ bytes: ArraySlice<UInt8>, at offset: Int) -> Int64 {
        bytes.withUnsafeBytes { Int64(bigEndian: $0.loadUnaligned(fromByteOffset: offset, as: Int64.self)) }
    }

    static func loadInt32(_ bytes: ArraySlice<UInt8>, at offset: Int) -> Int32 {
        bytes.withUnsafeBytes { Int32(bigEndian: $0.loadUnaligned(fromByteOffset: offset, as: Int32.self)) }
    }
}
