import Bytes

/// A stream's identifier (a partition's stream, assigned by the caller).
public typealias StreamID = UInt64

/// One record batch as stored: opaque bytes (a Kafka RecordBatch, never parsed here) covering
/// the offsets `[baseOffset, baseOffset + recordCount)`.
///
/// Example: a batch with `baseOffset == 10` and `recordCount == 5` holds offsets 10...14 and
/// `endOffset == 15`, the base offset of the next batch of the same stream.
public struct StoredBatch: Sendable, Equatable {
    public var baseOffset: Int64
    public var recordCount: Int32
    /// Wall-clock milliseconds at append, used by time-based retention.
    public var appendTimeMillis: Int64
    public var bytes: ArraySlice<UInt8>

    public init(baseOffset: Int64, recordCount: Int32, appendTimeMillis: Int64, bytes: ArraySlice<UInt8>) {
        self.baseOffset = baseOffset
        self.recordCount = recordCount
        self.appendTimeMillis = appendTimeMillis
        self.bytes = bytes
    }

    public var endOffset: Int64 { baseOffset + Int64(recordCount) }
}

/// Magic numbers of Floe's stream-storage formats (ASCII, big-endian).
enum Magic {
    static let walObject: UInt32 = 0x464C_574F  // "FLWO"
    static let walSegment: UInt32 = 0x464C_5753  // "FLWS"
    static let dataObject: UInt32 = 0x464C_444F  // "FLDO"
    static let manifest: UInt32 = 0x464C_534D  // "FLSM"
}

/// Maps a `BytesError` thrown while decoding into `StreamStorageError.corrupt`.
@inline(__always)
func decoding<T>(_ what: String, _ key: String, _ body: () throws(BytesError) -> T) throws(StreamStorageError) -> T {
    do { return try body() } catch { throw .corrupt(what: what, key: key, detail: error.description) }
}

// MARK: - WAL record

/// One entry of a write-ahead log: a batch of one stream at one epoch.
///
/// Byte layout (big-endian), 45 bytes of header then the payload:
/// ```
/// 0   u32  length L of everything after this field (41 + payload size)
/// 4   u32  CRC32C of bytes [8, 4 + L)
/// 8   u8   version (1)
/// 9   u64  stream id
/// 17  u64  stream epoch
/// 25  i64  base offset
/// 33  u32  record count
/// 37  i64  append time (ms)
/// 45  ...  payload (the RecordBatch bytes)
/// ```
public struct WALRecord: Sendable, Equatable {
    public var streamID: StreamID
    public var epoch: UInt64
    public var batch: StoredBatch

    public init(streamID: StreamID, epoch: UInt64, batch: StoredBatch) {
        self.streamID = streamID
        self.epoch = epoch
        self.batch = batch
    }

    static let version: UInt8 = 1
    static let headerSize = 45

    public var encodedSize: Int { Self.headerSize + batch.bytes.count }

    func encode(into writer: inout ByteWriter) {
        var body = ByteWriter(capacity: encodedSize)
        body.writeUInt8(Self.version)
        body.writeUInt64(streamID)
        body.writeUInt64(epoch)
        body.writeInt64(batch.baseOffset)
        body.writeUInt32(UInt32(bitPattern: batch.recordCount))
        body.writeInt64(batch.appendTimeMillis)
        let head = body.take()
        var crc = CRC32C.update(0, head)
        crc = CRC32C.update(crc, batch.bytes)
        writer.writeUInt32(UInt32(4 + head.count + batch.bytes.count))
        writer.writeUInt32(crc)
        writer.writeBytes(head)
        writer.writeBytes(batch.bytes)
    }

    /// The result of decoding one record from the front of a buffer.
    enum Decoded {
        case record(WALRecord)
        /// The buffer ends inside a record (a torn write at the tail of a log).
        case torn
    }

    /// Decodes the record at the reader's position. A record cut short by the end of the input
    /// is `.torn`; a complete record with a wrong CRC or version throws.
    ///
    /// `crcSalt` is XOR'ed into the stored CRC by writers that reuse files (a recycled WAL
    /// segment): a record left over from the file's earlier use does not verify under the new
    /// salt. 0 for records that are never written over old ones.
    static func decode(_ reader: inout ByteReader, key: String, crcSalt: UInt32 = 0) throws(StreamStorageError) -> Decoded {
        if reader.remaining < 8 { return .torn }
        let start = reader.offset
        let length = Int(try decoding("WAL record length", key) { () throws(BytesError) in try reader.readUInt32() })
        let crc = try decoding("WAL record crc", key) { () throws(BytesError) in try reader.readUInt32() } ^ crcSalt
        guard length >= 4 + 41 - 4 else {
            throw .corrupt(what: "WAL record", key: key, detail: "length \(length) at offset \(start) is below the header size")
        }
        let bodyLength = length - 4
        if reader.remaining < bodyLength { return .torn }
        let body = try decoding("WAL record body", key) { () throws(BytesError) in try reader.readSlice(bodyLength) }
        let actual = CRC32C.checksum(body)
        guard actual == crc else {
            throw .corrupt(what: "WAL record", key: key, detail: "CRC32C mismatch at offset \(start): stored \(crc), computed \(actual)")
        }
        var r = ByteReader(body)
        return try decoding("WAL record", key) { () throws(BytesError) -> Decoded in
            let version = try r.readUInt8()
            guard version == Self.version else {
                throw BytesError.invalidLength(reading: "WAL record version (expected \(Self.version))", length: Int(version), offset: start)
            }
            let stream = try r.readUInt64()
            let epoch = try r.readUInt64()
            let base = try r.readInt64()
            let count = Int32(bitPattern: try r.readUInt32())
            let time = try r.readInt64()
            let payload = try r.readSlice(r.remaining)
            return .record(WALRecord(
                streamID: stream, epoch: epoch,
                batch: StoredBatch(baseOffset: base, recordCount: count, appendTimeMillis: time, bytes: payload)))
        }
    }
}

// MARK: - WAL object (object-store WAL)

/// The header of one object of the object-store WAL. Objects are numbered by `sequence` and
/// created with put-if-absent; an object with no records is a fence written on takeover.
///
/// Byte layout (big-endian), then `recordCount` WAL records:
/// ```
/// 0   u32  magic "FLWO"
/// 4   u8   version (1)
/// 5   u8   kind: 0 data, 1 takeover fence, 2 hole marker
/// 6   u64  WAL epoch of the writer
/// 14  u64  writer nonce (random per writer instance)
/// 22  u64  sequence number of this object
/// 30  u64  WAL position of the first record (positions are consecutive)
/// 38  u32  record count
/// 42  u32  CRC32C of bytes [0, 42)
/// 46  ...  records
/// ```
public struct WALObjectHeader: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        case data = 0
        /// Written by a new writer after the highest sequence it found: objects after it with a
        /// lower epoch are invalid.
        case takeoverFence = 1
        /// Written by a new writer into a missing sequence number so a write still in flight
        /// there fails; it carries no records and does not invalidate later objects.
        case holeMarker = 2
    }
    public var kind: Kind
    public var epoch: UInt64
    public var writerNonce: UInt64
    public var sequence: UInt64
    public var firstPosition: UInt64
    public var recordCount: UInt32

    static let version: UInt8 = 1
    static let size = 46

    func encode(into w: inout ByteWriter) {
        let start = w.bytes.count
        w.writeUInt32(Magic.walObject)
        w.writeUInt8(Self.version)
        w.writeUInt8(kind.rawValue)
        w.writeUInt64(epoch)
        w.writeUInt64(writerNonce)
        w.writeUInt64(sequence)
        w.writeUInt64(firstPosition)
        w.writeUInt32(recordCount)
        w.writeUInt32(CRC32C.checksum(w.bytes[start...]))
    }

    /// Encodes a whole WAL object.
    static func encodeObject(header: WALObjectHeader, records: [WALRecord]) -> [UInt8] {
        var w = ByteWriter(capacity: size + records.reduce(0) { $0 + $1.encodedSize })
        header.encode(into: &w)
        for record in records { record.encode(into: &w) }
        return w.take()
    }

    /// Decodes a whole WAL object; any truncation or CRC mismatch throws (objects are written
    /// atomically, so a torn object is corruption).
    static func decodeObject(_ bytes: ArraySlice<UInt8>, key: String) throws(StreamStorageError) -> (WALObjectHeader, [WALRecord]) {
        var r = ByteReader(bytes)
        let header = try decoding("WAL object header", key) { () throws(BytesError) -> (WALObjectHeader, UInt32, UInt32, UInt8) in
            let magic = try r.readUInt32()
            let version = try r.readUInt8()
            let kindByte = try r.readUInt8()
            let h = WALObjectHeader(
                kind: Kind(rawValue: kindByte) ?? .data, epoch: try r.readUInt64(), writerNonce: try r.readUInt64(), sequence: try r.readUInt64(),
                firstPosition: try r.readUInt64(), recordCount: try r.readUInt32())
            let crc = try r.readUInt32()
            return (h, magic, crc, version)
        }
        guard header.1 == Magic.walObject else {
            throw .corrupt(what: "WAL object", key: key, detail: "bad magic \(header.1)")
        }
        guard header.3 == version else {
            throw .corrupt(what: "WAL object", key: key, detail: "unsupported version \(header.3)")
        }
        let computed = CRC32C.checksum(bytes[bytes.startIndex..<(bytes.startIndex + 42)])
        guard computed == header.2 else {
            throw .corrupt(what: "WAL object header", key: key, detail: "CRC32C mismatch: stored \(header.2), computed \(computed)")
        }
        guard bytes[bytes.startIndex + 5] <= 2 else {
            throw .corrupt(what: "WAL object header", key: key, detail: "unknown kind \(bytes[bytes.startIndex + 5])")
        }
        var records: [WALRecord] = []
        records.reserveCapacity(Int(header.0.recordCount))
        for index in 0..<Int(header.0.recordCount) {
            switch try WALRecord.decode(&r, key: key) {
            case let .record(record): records.append(record)
            case .torn:
                throw .corrupt(what: "WAL object", key: key, detail: "truncated at record \(index) of \(header.0.recordCount)")
            }
        }
        guard r.isAtEnd else {
            throw .corrupt(what: "WAL object", key: key, detail: "\(r.remaining) trailing bytes after \(header.0.recordCount) records")
        }
        return (header.0, records)
    }
}

// MARK: - WAL segment file (local-file WAL)

/// The header of one segment file of the local-file WAL, followed by WAL records appended in
/// position order. A torn record at the end of the newest segment is cut off on recovery.
///
/// Byte layout (big-endian), version 2:
/// ```
/// 0   u32  magic "FLWS"
/// 4   u8   version (2)
/// 5   u64  WAL position of the first record in this segment
/// 13  u32  CRC salt: random, never 0
/// 17  u32  CRC32C of bytes [0, 17)
/// 21  ...  records
/// ```
/// Version 2 segments may be recycled files: each record's stored CRC is XOR'ed with the
/// segment's salt, so what is left of the file's earlier use after the last record fails its
/// CRC and ends the segment (recovery then checks that the next segment starts where this one
/// ended). Version 1 (written before 2026-12-04) has no salt field (its CRC is at 13, records at
/// 17) and is never written over old records.
enum WALSegmentHeader {
    static let version: UInt8 = 2
    /// The largest header (version 2); version 1's is 17 bytes.
    static let size = 21

    struct Decoded: Equatable {
        var firstPosition: UInt64
        var version: UInt8
        /// XOR'ed into each record's stored CRC (0 for version 1).
        var crcSalt: UInt32
        /// Where the records start.
        var size: Int
    }

    static func encode(firstPosition: UInt64, crcSalt: UInt32) -> [UInt8] {
        precondition(crcSalt != 0, "a zero salt would let a recycled file's old records verify")
        var w = ByteWriter(capacity: size)
        w.writeUInt32(Magic.walSegment)
        w.writeUInt8(version)
        w.writeUInt64(firstPosition)
        w.writeUInt32(crcSalt)
        w.writeUInt32(CRC32C.checksum(w.bytes))
        return w.take()
    }

    /// A random salt for a new segment.
    static func newSalt() -> UInt32 { UInt32.random(in: 1...UInt32.max) }

    static func decode(_ bytes: ArraySlice<UInt8>, key: String) throws(StreamStorageError) -> Decoded {
        let v1Size = 17
        guard bytes.count >= v1Size else {
            throw .corrupt(what: "WAL segment header", key: key, detail: "only \(bytes.count) bytes, need \(v1Size)")
        }
        var r = ByteReader(bytes)
        return try decoding("WAL segment header", key) { () throws(BytesError) -> Decoded in
            let magic = try r.readUInt32()
            let version = try r.readUInt8()
            let first = try r.readUInt64()
            guard magic == Magic.walSegment, version == 1 || version == 2 else {
                throw BytesError.invalidLength(reading: "segment header (magic \(magic), version \(version))", length: 0, offset: 0)
            }
            let salt = version == 2 ? try r.readUInt32() : 0
            let crcAt = r.offset
            let crc = try r.readUInt32()
            let computed = CRC32C.checksum(bytes[bytes.startIndex..<(bytes.startIndex + crcAt)])
            guard crc == computed, version == 1 || salt != 0 else {
                throw BytesError.invalidLength(reading: "segment header (version \(version), crc \(crc) vs \(computed), salt \(salt))", length: 0, offset: 0)
            }
            return Decoded(firstPosition: first, version: version, crcSalt: salt, size: r.offset)
        }
    }
}
