import Bytes

/// One record inside a RecordBatch v2, with its offset and timestamp relative to the batch.
///
/// Wire form (all lengths are zigzag varints; -1 means null):
/// ```
/// length varint | attributes int8 | timestampDelta varlong | offsetDelta varint
/// keyLength varint | key | valueLength varint | value
/// headerCount varint | (headerKeyLength varint | headerKey utf8 | headerValueLength varint | headerValue)*
/// ```
/// `key`, `value` and header values are slices: decoded from an uncompressed batch they share
/// the batch's storage (no copy); from a compressed batch, the decompressed buffer's.
///
/// Example: in a batch with `baseOffset` 1000 and `baseTimestamp` 1_700_000_000_000, a record
/// with `offsetDelta` 3 and `timestampDelta` 25 has offset 1003 and timestamp
/// 1_700_000_000_025 (see `RecordBatch.offset(of:)` and `timestamp(of:)`).
public struct Record: Sendable, Equatable {
    /// A record header: a UTF-8 key and nullable bytes.
    public struct Header: Sendable, Equatable {
        public var key: String
        public var value: ArraySlice<UInt8>?

        public init(key: String, value: ArraySlice<UInt8>?) {
            self.key = key
            self.value = value
        }

        public init(key: String, value: [UInt8]?) {
            self.init(key: key, value: value.map { $0[...] })
        }
    }

    /// Unused by Kafka so far; kept as read.
    public var attributes: Int8
    public var timestampDelta: Int64
    public var offsetDelta: Int32
    public var key: ArraySlice<UInt8>?
    public var value: ArraySlice<UInt8>?
    public var headers: [Header]

    public init(
        attributes: Int8 = 0, timestampDelta: Int64, offsetDelta: Int32, key: ArraySlice<UInt8>?,
        value: ArraySlice<UInt8>?, headers: [Header] = []
    ) {
        self.attributes = attributes
        self.timestampDelta = timestampDelta
        self.offsetDelta = offsetDelta
        self.key = key
        self.value = value
        self.headers = headers
    }

    public init(
        attributes: Int8 = 0, timestampDelta: Int64, offsetDelta: Int32, key: [UInt8]?, value: [UInt8]?,
        headers: [Header] = []
    ) {
        self.init(
            attributes: attributes, timestampDelta: timestampDelta, offsetDelta: offsetDelta,
            key: key.map { $0[...] }, value: value.map { $0[...] }, headers: headers)
    }

    /// Reads one record (length prefix included) from `reader`. `index` names it in errors.
    static func read(from reader: inout RecordFieldReader, index: Int) throws(KafkaProtocolError) -> Record {
        let start = reader.offset
        let length = Int(try reader.varint("record \(index) length"))
        guard length >= 0 else {
            throw .invalidRecordBatch(reason: "record \(index) has negative length \(length)", offset: start)
        }
        var body = try reader.subReader(length, "record \(index)")
        let attributes = try body.int8("record \(index) attributes")
        let timestampDelta = try body.varlong("record \(index) timestamp delta")
        let offsetDelta = try body.varint("record \(index) offset delta")
        let key = try body.nullableBytes("record \(index) key")
        let value = try body.nullableBytes("record \(index) value")
        let headerCount = Int(try body.varint("record \(index) header count"))
        guard headerCount >= 0 else {
            throw .invalidRecordBatch(reason: "record \(index) has negative header count \(headerCount)", offset: start)
        }
        // Each header takes at least two bytes, which bounds the allocation below.
        guard headerCount <= body.remaining / 2 else {
            throw .invalidRecordBatch(
                reason: "record \(index) claims \(headerCount) headers in \(body.remaining) bytes", offset: start)
        }
        var headers: [Header] = []
        headers.reserveCapacity(headerCount)
        for h in 0..<headerCount {
            let keyLength = Int(try body.varint("record \(index) header \(h) key length"))
            guard keyLength >= 0 else {
                throw .invalidRecordBatch(
                    reason: "record \(index) header \(h) has a null or negative key length \(keyLength)", offset: start)
            }
            let headerKey = try body.string(keyLength, "record \(index) header \(h) key")
            let headerValue = try body.nullableBytes("record \(index) header \(h) value")
            headers.append(Header(key: headerKey, value: headerValue))
        }
        guard body.remaining == 0 else {
            throw .invalidRecordBatch(
                reason: "record \(index) declares \(length) bytes but its fields end \(body.remaining) bytes earlier",
                offset: start)
        }
        return Record(
            attributes: attributes, timestampDelta: timestampDelta, offsetDelta: offsetDelta, key: key, value: value,
            headers: headers)
    }

    /// Bytes of the body after the length prefix.
    var bodySize: Int {
        var n = 1 + ByteWriter.varlongSize(timestampDelta) + ByteWriter.varintSize(offsetDelta)
        n += Self.nullableSize(key) + Self.nullableSize(value)
        n += ByteWriter.varintSize(Int32(headers.count))
        for header in headers {
            let keyLength = header.key.utf8.count
            n += ByteWriter.varintSize(Int32(keyLength)) + keyLength + Self.nullableSize(header.value)
        }
        return n
    }

    private static func nullableSize(_ bytes: ArraySlice<UInt8>?) -> Int {
        guard let bytes else { return 1 }
        return ByteWriter.varintSize(Int32(bytes.count)) + bytes.count
    }

    /// Appends the record, length prefix included.
    func write(to writer: inout ByteWriter) {
        writer.writeVarint(Int32(bodySize))
        writer.writeInt8(attributes)
        writer.writeVarlong(timestampDelta)
        writer.writeVarint(offsetDelta)
        Self.writeNullable(key, to: &writer)
        Self.writeNullable(value, to: &writer)
        writer.writeVarint(Int32(headers.count))
        for header in headers {
            writer.writeVarint(Int32(header.key.utf8.count))
            writer.writeString(header.key)
            Self.writeNullable(header.value, to: &writer)
        }
    }

    private static func writeNullable(_ bytes: ArraySlice<UInt8>?, to writer: inout ByteWriter) {
        guard let bytes else {
            writer.writeVarint(-1)
            return
        }
        writer.writeVarint(Int32(bytes.count))
        writer.writeBytes(bytes)
    }
}

/// The type of a control record, from its key. COMMIT and ABORT end a transaction; other types
/// (leader change, snapshot markers, …) belong to KRaft's own logs and are kept as numbers.
public enum ControlRecordType: Sendable, Equatable {
    case abort
    case commit
    case other(Int16)

    public init(rawValue: Int16) {
        switch rawValue {
        case 0: self = .abort
        case 1: self = .commit
        default: self = .other(rawValue)
        }
    }

    public var rawValue: Int16 {
        switch self {
        case .abort: 0
        case .commit: 1
        case let .other(v): v
        }
    }
}

/// The key of a control record: `version int16, type int16` (version 0 today).
public struct ControlRecordKey: Sendable, Equatable {
    public var version: Int16
    public var type: ControlRecordType

    public init(version: Int16 = 0, type: ControlRecordType) {
        self.version = version
        self.type = type
    }

    public var bytes: [UInt8] {
        var w = ByteWriter(capacity: 4)
        w.writeInt16(version)
        w.writeInt16(type.rawValue)
        return w.take()
    }
}

/// The value of a COMMIT or ABORT control record: `version int16, coordinatorEpoch int32`.
public struct EndTransactionMarker: Sendable, Equatable {
    public var version: Int16
    public var coordinatorEpoch: Int32

    public init(version: Int16 = 0, coordinatorEpoch: Int32) {
        self.version = version
        self.coordinatorEpoch = coordinatorEpoch
    }

    public var bytes: [UInt8] {
        var w = ByteWriter(capacity: 6)
        w.writeInt16(version)
        w.writeInt32(coordinatorEpoch)
        return w.take()
    }
}

extension Record {
    /// The control key of a record in a control batch. Throws when the key is null or shorter
    /// than 4 bytes (later key versions may append fields, which are ignored).
    public func controlKey() throws(KafkaProtocolError) -> ControlRecordKey {
        guard let key else {
            throw .invalidRecordBatch(reason: "control record at offset delta \(offsetDelta) has a null key", offset: 0)
        }
        var r = ByteReader(key)
        do {
            let version = try r.readInt16()
            let type = try r.readInt16()
            return ControlRecordKey(version: version, type: ControlRecordType(rawValue: type))
        } catch {
            throw .bytes(error, message: "control record key at offset delta \(offsetDelta)")
        }
    }

    /// The end-transaction marker in the value of a COMMIT or ABORT control record.
    public func endTransactionMarker() throws(KafkaProtocolError) -> EndTransactionMarker {
        guard let value else {
            throw .invalidRecordBatch(reason: "control record at offset delta \(offsetDelta) has a null value", offset: 0)
        }
        var r = ByteReader(value)
        do {
            let version = try r.readInt16()
            let epoch = try r.readInt32()
            return EndTransactionMarker(version: version, coordinatorEpoch: epoch)
        } catch {
            throw .bytes(error, message: "end transaction marker at offset delta \(offsetDelta)")
        }
    }
}

/// A `ByteReader` whose reads throw `KafkaProtocolError.bytes` naming the field being read.
struct RecordFieldReader {
    var reader: ByteReader

    init(_ bytes: ArraySlice<UInt8>) { reader = ByteReader(bytes) }
    init(_ reader: ByteReader) { self.reader = reader }

    var offset: Int { reader.offset }
    var remaining: Int { reader.remaining }

    mutating func int8(_ what: @autoclosure () -> String) throws(KafkaProtocolError) -> Int8 {
        do { return try reader.readInt8() } catch { throw .bytes(error, message: what()) }
    }

    mutating func varint(_ what: @autoclosure () -> String) throws(KafkaProtocolError) -> Int32 {
        do { return try reader.readVarint() } catch { throw .bytes(error, message: what()) }
    }

    mutating func varlong(_ what: @autoclosure () -> String) throws(KafkaProtocolError) -> Int64 {
        do { return try reader.readVarlong() } catch { throw .bytes(error, message: what()) }
    }

    mutating func string(_ count: Int, _ what: @autoclosure () -> String) throws(KafkaProtocolError) -> String {
        do { return try reader.readString(count) } catch { throw .bytes(error, message: what()) }
    }

    /// Bytes with a varint length where -1 means null.
    mutating func nullableBytes(_ what: @autoclosure () -> String) throws(KafkaProtocolError) -> ArraySlice<UInt8>? {
        let length = Int(try varint(what()))
        if length == -1 { return nil }
        do { return try reader.readSlice(length, what()) } catch { throw .bytes(error, message: what()) }
    }

    mutating func subReader(_ count: Int, _ what: @autoclosure () -> String) throws(KafkaProtocolError) -> RecordFieldReader {
        do { return RecordFieldReader(try reader.subReader(count, what())) } catch { throw .bytes(error, message: what()) }
    }
}
