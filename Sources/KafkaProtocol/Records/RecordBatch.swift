import Bytes

/// A zero-copy view of one RecordBatch v2 inside a larger buffer (a Produce request's
/// `records`, a Fetch response, a stored segment).
///
/// Invariants, once constructed: `bytes.count == header.totalSize`, `header.magic == 2`,
/// `header.batchLength >= 49`. `init(validating:)` also guarantees the CRC matches and the checks
/// of `validate()` pass; `init(unverified:)` guarantees only the invariants above.
///
/// Example: for a `records` blob holding two batches of 100 and 80 bytes,
/// `RecordBatch(validating: blob[0..<100])` is the first and `blob[100..<180]` the second; each
/// view shares the blob's storage. `RecordBatchReader` walks a blob this way.
public struct RecordBatch: Sendable {
    /// Exactly the batch's bytes, sharing storage with the buffer it was read from.
    public let bytes: ArraySlice<UInt8>
    public let header: RecordBatchHeader

    /// Parses the header and checks the length; no CRC or content checks.
    public init(unverified bytes: ArraySlice<UInt8>) throws(KafkaProtocolError) {
        let header = try RecordBatchHeader(parsing: bytes)
        let minimumLength = RecordBatchHeader.size - RecordBatchHeader.logOverhead
        guard header.batchLength >= Int32(minimumLength) else {
            throw .invalidRecordBatch(
                reason: "batchLength \(header.batchLength) is below the minimum of \(minimumLength)", offset: 8)
        }
        guard header.totalSize == bytes.count else {
            throw .invalidRecordBatch(
                reason: "batchLength \(header.batchLength) implies \(header.totalSize) bytes but the batch has \(bytes.count)",
                offset: 8)
        }
        self.bytes = bytes
        self.header = header
    }

    /// Parses the header and runs every check of `validate()`, CRC included.
    public init(validating bytes: ArraySlice<UInt8>) throws(KafkaProtocolError) {
        try self.init(unverified: bytes)
        try validate()
    }

    /// The checks a broker makes before accepting a batch, without decompressing it:
    /// a known compression codec; `recordCount >= 0`; for an uncompressed non-empty batch,
    /// `lastOffsetDelta == recordCount - 1`; and the CRC32C over attributes…end.
    public func validate() throws(KafkaProtocolError) {
        let codec = try header.attributes.compression()
        guard header.recordCount >= 0 else {
            throw .invalidRecordBatch(reason: "negative recordCount \(header.recordCount)", offset: 57)
        }
        if codec == .none && header.recordCount > 0 && header.lastOffsetDelta != header.recordCount - 1 {
            throw .invalidRecordBatch(
                reason: "lastOffsetDelta \(header.lastOffsetDelta) does not match recordCount \(header.recordCount) (expected \(header.recordCount - 1))",
                offset: 23)
        }
        try verifyCRC()
    }

    /// The CRC32C of bytes 21…end, as it should be stored at byte 17.
    public func computedCRC() -> UInt32 {
        CRC32C.checksum(bytes[(bytes.startIndex + RecordBatchHeader.attributesOffset)...])
    }

    /// Throws `.crcMismatch` when the stored CRC differs from the computed one.
    public func verifyCRC() throws(KafkaProtocolError) {
        let computed = computedCRC()
        guard computed == header.crc else {
            throw .crcMismatch(stored: header.crc, computed: computed, baseOffset: header.baseOffset)
        }
    }

    /// The compression codec; throws for codec values 5–7.
    public func compression() throws(KafkaProtocolError) -> CompressionCodec {
        try header.attributes.compression()
    }

    /// The records section after the header, compressed when the batch is.
    public var recordsSection: ArraySlice<UInt8> { bytes[(bytes.startIndex + RecordBatchHeader.size)...] }

    public var isControlBatch: Bool { header.attributes.isControl }
    public var isTransactional: Bool { header.attributes.isTransactional }

    /// Decodes the records (decompressing gzip, bounded by `maxDecompressedSize`).
    ///
    /// Throws `.unsupportedCompression` for snappy, lz4 and zstd, and `.invalidRecordBatch`
    /// when the number of records differs from `recordCount` or bytes are left over.
    public func records(maxDecompressedSize: Int = Compression.defaultMaxDecompressedSize) throws(KafkaProtocolError) -> [Record] {
        let codec = try compression()
        let section: ArraySlice<UInt8>
        switch codec {
        case .none: section = recordsSection
        default: section = try Compression.decompress(recordsSection, codec: codec, maxSize: maxDecompressedSize)[...]
        }
        let count = Int(header.recordCount)
        guard count >= 0 else {
            throw .invalidRecordBatch(reason: "negative recordCount \(count)", offset: 57)
        }
        // Every record takes at least 7 bytes, which bounds the allocation below.
        guard count <= section.count / 7 + 1 else {
            throw .invalidRecordBatch(
                reason: "recordCount \(count) cannot fit in \(section.count) bytes of records (base offset \(header.baseOffset))",
                offset: 57)
        }
        var reader = RecordFieldReader(section)
        var records: [Record] = []
        records.reserveCapacity(count)
        for index in 0..<count {
            records.append(try Record.read(from: &reader, index: index))
        }
        guard reader.remaining == 0 else {
            throw .invalidRecordBatch(
                reason: "\(reader.remaining) bytes follow the \(count) records the header announces (base offset \(header.baseOffset))",
                offset: RecordBatchHeader.size + reader.offset)
        }
        return records
    }

    /// The absolute offset of `record` in this batch.
    public func offset(of record: Record) -> Int64 { header.baseOffset + Int64(record.offsetDelta) }

    /// The absolute timestamp of `record` (milliseconds). For a log-append-time batch Kafka
    /// reports `maxTimestamp` for every record.
    public func timestamp(of record: Record) -> Int64 {
        header.attributes.timestampType == .logAppendTime ? header.maxTimestamp : header.baseTimestamp + record.timestampDelta
    }

    /// The COMMIT/ABORT type of a control batch (its single record's key); nil for a data batch.
    public func controlRecordType() throws(KafkaProtocolError) -> ControlRecordType? {
        guard isControlBatch else { return nil }
        let records = try records()
        guard let first = records.first else {
            throw .invalidRecordBatch(reason: "control batch at base offset \(header.baseOffset) holds no record", offset: 57)
        }
        return try first.controlKey().type
    }
}

// MARK: - Rewriting in place

extension RecordBatch {
    /// Overwrites the `baseOffset` of the batch starting at `batchStart` in `buffer`.
    /// `baseOffset` is outside the CRC, so the batch stays valid.
    public static func setBaseOffset(_ baseOffset: Int64, in buffer: inout [UInt8], batchStart: Int) {
        precondition(batchStart >= 0 && batchStart + RecordBatchHeader.size <= buffer.count, "batch header out of range")
        buffer.withUnsafeMutableBytes { $0.storeBytes(of: baseOffset.bigEndian, toByteOffset: batchStart, as: Int64.self) }
    }

    /// Overwrites the `partitionLeaderEpoch` of the batch starting at `batchStart`; outside the CRC.
    public static func setPartitionLeaderEpoch(_ epoch: Int32, in buffer: inout [UInt8], batchStart: Int) {
        precondition(batchStart >= 0 && batchStart + RecordBatchHeader.size <= buffer.count, "batch header out of range")
        buffer.withUnsafeMutableBytes {
            $0.storeBytes(
                of: epoch.bigEndian, toByteOffset: batchStart + RecordBatchHeader.partitionLeaderEpochOffset, as: Int32.self)
        }
    }

    /// What `assignOffsets` did.
    public struct OffsetAssignment: Sendable, Equatable {
        /// Base offset given to the first batch.
        public var firstOffset: Int64
        /// The offset after the last batch: where the next append starts.
        public var nextOffset: Int64
        public var batchCount: Int
    }

    /// Gives consecutive offsets to every batch in `buffer[range]`, as a partition leader does on
    /// append: batch *i* gets `baseOffset = next` and `next += lastOffsetDelta + 1`; with
    /// `partitionLeaderEpoch` set, each batch's epoch is overwritten too. Records are not
    /// re-encoded and CRCs stay valid.
    ///
    /// Only lengths and header fields are checked here (the buffer must hold whole v2 batches);
    /// validate the batches (CRC) before or after as needed. On error nothing has been written.
    ///
    /// Example: two batches with `lastOffsetDelta` 2 and 0, starting at 500, get base offsets
    /// 500 and 503, and the result's `nextOffset` is 504.
    @discardableResult
    public static func assignOffsets(
        in buffer: inout [UInt8], range: Range<Int>? = nil, startingAt firstOffset: Int64,
        partitionLeaderEpoch: Int32? = nil
    ) throws(KafkaProtocolError) -> OffsetAssignment {
        let range = range ?? 0..<buffer.count
        precondition(range.lowerBound >= 0 && range.upperBound <= buffer.count, "range out of buffer bounds")
        // Two passes: check every header first, so a bad batch leaves the buffer untouched.
        var next = firstOffset
        var count = 0
        for write in [false, true] {
            next = firstOffset
            count = 0
            try walk(&buffer, range: range, write: write, &next, &count, partitionLeaderEpoch)
        }
        return OffsetAssignment(firstOffset: firstOffset, nextOffset: next, batchCount: count)
    }

    private static func walk(
        _ buffer: inout [UInt8], range: Range<Int>, write: Bool, _ next: inout Int64, _ count: inout Int,
        _ partitionLeaderEpoch: Int32?
    ) throws(KafkaProtocolError) {
        var position = range.lowerBound
        let result: Result<Void, KafkaProtocolError> = buffer.withUnsafeMutableBytes { raw in
            while position < range.upperBound {
                let remaining = range.upperBound - position
                if remaining > RecordBatchHeader.magicOffset {
                    let magic = Int8(bitPattern: raw[position + RecordBatchHeader.magicOffset])
                    guard magic == RecordBatchHeader.currentMagic else {
                        let base = Int64(bigEndian: raw.loadUnaligned(fromByteOffset: position, as: Int64.self))
                        if magic == 0 || magic == 1 { return .failure(.unsupportedMagic(magic, baseOffset: base)) }
                        return .failure(.invalidRecordBatch(
                            reason: "unknown magic byte \(magic) (expected 2)", offset: position - range.lowerBound + 16))
                    }
                }
                guard remaining >= RecordBatchHeader.size else {
                    return .failure(.invalidRecordBatch(
                        reason: "\(remaining) trailing bytes are shorter than a batch header", offset: position - range.lowerBound))
                }
                let length = Int(Int32(bigEndian: raw.loadUnaligned(fromByteOffset: position + 8, as: Int32.self)))
                let total = RecordBatchHeader.logOverhead + length
                guard length >= RecordBatchHeader.size - RecordBatchHeader.logOverhead, total <= remaining else {
                    return .failure(.invalidRecordBatch(
                        reason: "batchLength \(length) does not fit the \(remaining) bytes left", offset: position - range.lowerBound + 8))
                }
                let lastOffsetDelta = Int32(bigEndian: raw.loadUnaligned(fromByteOffset: position + 23, as: Int32.self))
                guard lastOffsetDelta >= -1 else {
                    return .failure(.invalidRecordBatch(
                        reason: "negative lastOffsetDelta \(lastOffsetDelta)", offset: position - range.lowerBound + 23))
                }
                if write {
                    raw.storeBytes(of: next.bigEndian, toByteOffset: position, as: Int64.self)
                    if let partitionLeaderEpoch {
                        raw.storeBytes(
                            of: partitionLeaderEpoch.bigEndian,
                            toByteOffset: position + RecordBatchHeader.partitionLeaderEpochOffset, as: Int32.self)
                    }
                }
                // An empty batch (lastOffsetDelta -1) still takes no offset.
                next += Int64(lastOffsetDelta) + 1
                position += total
                count += 1
            }
            return .success(())
        }
        try result.get()
    }
}
