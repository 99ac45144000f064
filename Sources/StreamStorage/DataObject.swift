import Bytes

/// One index entry of a data object: a block holding a contiguous run of one stream's batches.
///
/// Example: an entry `(stream 7, start 100, end 160, position 13, length 4096)` says bytes
/// `[13, 13 + 4096)` of the object hold stream 7's batches covering offsets 100..<160.
public struct DataBlockEntry: Sendable, Equatable {
    public var streamID: StreamID
    public var startOffset: Int64
    public var endOffset: Int64
    public var maxAppendTimeMillis: Int64
    public var position: UInt64
    public var length: UInt32
    public var crc: UInt32

    static let size = 48
}

/// A data object: immutable, uniquely named, holding runs of batches of one or many streams,
/// cut into blocks so that a reader fetches only the byte ranges it needs.
///
/// Byte layout (big-endian):
/// ```
/// 0    u32  magic "FLDO"
/// 4    u8   version (1)
/// 5    u64  object id
/// 13   ...  blocks; a block is a sequence of entries
///           [i64 base offset][u32 record count][i64 append time ms][u32 length][payload]
/// I    u32  index entry count N, then N entries of 48 bytes:
///           [u64 stream][i64 start][i64 end][i64 max append time][u64 position][u32 length][u32 block CRC32C]
/// F    u64  index position I            (footer: the last 24 bytes)
/// F+8  u32  index length (4 + 48 N)
/// F+12 u32  CRC32C of the index
/// F+16 u8   version (1), then 3 reserved zero bytes
/// F+20 u32  magic "FLDO"
/// ```
/// Invariants: within one stream, blocks appear in offset order and are contiguous
/// (`entry[i].endOffset == entry[i+1].startOffset`) for each run added to the builder.
///
/// Version 2 (written only by key compaction, `DataObjectBuilder(allowGaps: true)`) is the same
/// layout, but a run's batches may leave gaps between them (offsets only increase): key
/// compaction drops whole batches and keeps the others at their offsets. Blocks and batches
/// still start at their entry's start offset and end at its end offset. Version 1 readers
/// refuse version 2 objects ("unsupported version") instead of misreading them.
public enum DataObjectFormat {
    static let version: UInt8 = 1
    /// The version of objects whose runs may have gaps (key compaction's outputs).
    static let gappedVersion: UInt8 = 2
    static let headerSize = 13
    public static let footerSize = 24

    /// Decodes the footer (the last 24 bytes of an object) into the index's byte range.
    static func decodeFooter(_ bytes: ArraySlice<UInt8>, key: String) throws(StreamStorageError) -> (position: UInt64, length: UInt32, crc: UInt32) {
        guard bytes.count == footerSize else {
            throw .corrupt(what: "data object footer", key: key, detail: "\(bytes.count) bytes, need \(footerSize)")
        }
        var r = ByteReader(bytes)
        let (position, length, crc, version, magic) = try decoding("data object footer", key) {
            () throws(BytesError) -> (UInt64, UInt32, UInt32, UInt8, UInt32) in
            let p = try r.readUInt64(), l = try r.readUInt32(), c = try r.readUInt32(), v = try r.readUInt8()
            try r.skip(3)
            return (p, l, c, v, try r.readUInt32())
        }
        guard magic == Magic.dataObject else { throw .corrupt(what: "data object footer", key: key, detail: "bad magic \(magic)") }
        guard version == Self.version || version == Self.gappedVersion else { throw .corrupt(what: "data object footer", key: key, detail: "unsupported version \(version)") }
        return (position, length, crc)
    }

    /// Decodes and checks the index bytes located by the footer.
    static func decodeIndex(_ bytes: ArraySlice<UInt8>, crc: UInt32, key: String) throws(StreamStorageError) -> [DataBlockEntry] {
        let computed = CRC32C.checksum(bytes)
        guard computed == crc else {
            throw .corrupt(what: "data object index", key: key, detail: "CRC32C mismatch: stored \(crc), computed \(computed)")
        }
        var r = ByteReader(bytes)
        return try decoding("data object index", key) { () throws(BytesError) -> [DataBlockEntry] in
            let count = Int(try r.readUInt32())
            guard count * DataBlockEntry.size == r.remaining else {
                throw BytesError.invalidLength(reading: "index entry count", length: count, offset: 0)
            }
            var entries: [DataBlockEntry] = []
            entries.reserveCapacity(count)
            for _ in 0..<count {
                entries.append(DataBlockEntry(
                    streamID: try r.readUInt64(), startOffset: try r.readInt64(), endOffset: try r.readInt64(),
                    maxAppendTimeMillis: try r.readInt64(), position: try r.readUInt64(), length: try r.readUInt32(),
                    crc: try r.readUInt32()))
            }
            return entries
        }
    }

    /// Decodes a whole object (used by compaction and tests): its index and every block.
    static func decodeObject(_ bytes: ArraySlice<UInt8>, key: String) throws(StreamStorageError) -> [(DataBlockEntry, [StoredBatch])] {
        guard bytes.count >= headerSize + footerSize else {
            throw .corrupt(what: "data object", key: key, detail: "only \(bytes.count) bytes")
        }
        var head = ByteReader(bytes.prefix(headerSize))
        let magic = try decoding("data object header", key) { () throws(BytesError) in try head.readUInt32() }
        guard magic == Magic.dataObject else { throw .corrupt(what: "data object header", key: key, detail: "bad magic \(magic)") }
        let footer = try decodeFooter(bytes.suffix(footerSize), key: key)
        let start = bytes.startIndex + Int(footer.position)
        guard Int(footer.position) + Int(footer.length) <= bytes.count - footerSize else {
            throw .corrupt(what: "data object", key: key, detail: "index range beyond the object")
        }
        let index = try decodeIndex(bytes[start..<(start + Int(footer.length))], crc: footer.crc, key: key)
        var result: [(DataBlockEntry, [StoredBatch])] = []
        for entry in index {
            let s = bytes.startIndex + Int(entry.position)
            guard Int(entry.position) + Int(entry.length) <= Int(footer.position) else {
                throw .corrupt(what: "data object", key: key, detail: "block of stream \(entry.streamID) beyond the index")
            }
            result.append((entry, try decodeBlock(bytes[s..<(s + Int(entry.length))], entry: entry, key: key)))
        }
        return result
    }

    /// Decodes one block and checks its CRC and that it covers exactly the entry's offsets.
    static func decodeBlock(_ bytes: ArraySlice<UInt8>, entry: DataBlockEntry, key: String) throws(StreamStorageError) -> [StoredBatch] {
        let computed = CRC32C.checksum(bytes)
        guard computed == entry.crc, bytes.count == Int(entry.length) else {
            throw .corrupt(what: "data block of stream \(entry.streamID) at \(entry.startOffset)", key: key,
                           detail: "CRC32C mismatch or wrong length: stored \(entry.crc), computed \(computed)")
        }
        var r = ByteReader(bytes)
        var batches: [StoredBatch] = []
        var next = entry.startOffset
        while !r.isAtEnd {
            let batch = try decoding("data block entry", key) { () throws(BytesError) -> StoredBatch in
                let base = try r.readInt64()
                let count = Int32(bitPattern: try r.readUInt32())
                let time = try r.readInt64()
                let length = Int(try r.readUInt32())
                return StoredBatch(baseOffset: base, recordCount: count, appendTimeMillis: time, bytes: try r.readSlice(length))
            }
            // Gaps (a batch starting beyond the previous one's end) come from key compaction.
            guard batch.baseOffset == next || (!batches.isEmpty && batch.baseOffset > next), batch.recordCount > 0 else {
                throw .corrupt(what: "data block of stream \(entry.streamID)", key: key,
                               detail: "batch at \(batch.baseOffset) (count \(batch.recordCount)) where \(next) was expected")
            }
            next = batch.endOffset
            batches.append(batch)
        }
        guard next == entry.endOffset else {
            throw .corrupt(what: "data block of stream \(entry.streamID)", key: key,
                           detail: "block ends at \(next), index says \(entry.endOffset)")
        }
        return batches
    }
}

/// Builds one data object. Add each stream's contiguous run with `add(stream:batches:)`;
/// runs are cut into blocks of about `blockBytes`.
public struct DataObjectBuilder: Sendable {
    public let objectID: UInt64
    public let blockBytes: Int
    /// Whether a run's batches may leave offset gaps (key compaction); such objects are
    /// written as format version 2.
    public let allowGaps: Bool
    private var writer: ByteWriter
    public private(set) var index: [DataBlockEntry] = []

    public init(objectID: UInt64, blockBytes: Int = 512 * 1024, capacity: Int = 1 << 20, allowGaps: Bool = false) {
        self.objectID = objectID
        self.blockBytes = max(1, blockBytes)
        self.allowGaps = allowGaps
        writer = ByteWriter(capacity: capacity)
        writer.writeUInt32(Magic.dataObject)
        writer.writeUInt8(allowGaps ? DataObjectFormat.gappedVersion : DataObjectFormat.version)
        writer.writeUInt64(objectID)
    }

    public var isEmpty: Bool { index.isEmpty }
    public var byteCount: Int { writer.count }

    /// The exact upper bound of an object's size for `runs` (each a list of batch payload
    /// sizes), so the builder's buffer never regrows: header, 24 bytes of framing per batch,
    /// payloads, the index (4 bytes plus 48 per block; a run ends a block, and a block closes
    /// once it reaches `blockBytes`) and the footer.
    public static func capacity(runs: [[Int]], blockBytes: Int) -> Int {
        let blockBytes = max(1, blockBytes)
        var total = DataObjectFormat.headerSize + 4 + DataObjectFormat.footerSize
        for run in runs {
            var blocks = 1
            var inBlock = 0
            for payload in run {
                let framed = payload + 24
                total += framed
                inBlock += framed
                if inBlock >= blockBytes {
                    blocks += 1
                    inBlock = 0
                }
            }
            total += blocks * DataBlockEntry.size
        }
        return total
    }

    /// Appends a run of one stream's batches; they must be contiguous in offset order (with
    /// `allowGaps`, increasing: a batch may start beyond the previous one's end).
    public mutating func add(stream: StreamID, batches: some Collection<StoredBatch>) {
        var blockStart = writer.count
        var first: Int64? = nil
        var expected: Int64? = nil
        var end: Int64 = 0
        var maxTime = Int64.min
        func finish(_ w: inout ByteWriter, _ index: inout [DataBlockEntry]) {
            guard let startOffset = first else { return }
            let length = w.count - blockStart
            index.append(DataBlockEntry(
                streamID: stream, startOffset: startOffset, endOffset: end, maxAppendTimeMillis: maxTime,
                position: UInt64(blockStart), length: UInt32(length), crc: CRC32C.checksum(w.bytes[blockStart...])))
        }
        for batch in batches {
            if let e = expected {
                precondition(batch.baseOffset == e || (allowGaps && batch.baseOffset > e), "DataObjectBuilder: stream \(stream) run not contiguous at \(batch.baseOffset), expected \(e)")
            }
            expected = batch.endOffset
            if first == nil { first = batch.baseOffset }
            writer.writeInt64(batch.baseOffset)
            writer.writeUInt32(UInt32(bitPattern: batch.recordCount))
            writer.writeInt64(batch.appendTimeMillis)
            writer.writeUInt32(UInt32(batch.bytes.count))
            writer.writeBytes(batch.bytes)
            end = batch.endOffset
            maxTime = max(maxTime, batch.appendTimeMillis)
            if writer.count - blockStart >= blockBytes {
                finish(&writer, &index)
                blockStart = writer.count
                first = nil
                maxTime = .min
            }
        }
        finish(&writer, &index)
    }

    /// Writes the index and footer and returns the object's bytes.
    public mutating func finish() -> [UInt8] {
        let indexPosition = writer.count
        writer.writeUInt32(UInt32(index.count))
        for e in index {
            writer.writeUInt64(e.streamID)
            writer.writeInt64(e.startOffset)
            writer.writeInt64(e.endOffset)
            writer.writeInt64(e.maxAppendTimeMillis)
            writer.writeUInt64(e.position)
            writer.writeUInt32(e.length)
            writer.writeUInt32(e.crc)
        }
        let indexLength = writer.count - indexPosition
        let crc = CRC32C.checksum(writer.bytes[indexPosition...])
        writer.writeUInt64(UInt64(indexPosition))
        writer.writeUInt32(UInt32(indexLength))
        writer.writeUInt32(crc)
        writer.writeUInt8(allowGaps ? DataObjectFormat.gappedVersion : DataObjectFormat.version)
        writer.writeUInt8(0)
        writer.writeUInt8(0)
        writer.writeUInt8(0)
        writer.writeUInt32(Magic.dataObject)
        return writer.take()
    }
}
