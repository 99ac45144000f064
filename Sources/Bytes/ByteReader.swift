/// Errors raised while reading bytes. Each names what was being read and where.
public enum BytesError: Error, Equatable, CustomStringConvertible {
    /// Fewer bytes remained than a read needed.
    case truncated(reading: String, needed: Int, available: Int, offset: Int)
    /// A variable-length integer ran past its maximum width.
    case malformedVarint(offset: Int)
    /// A length prefix was negative (other than a permitted null marker) or larger than the input.
    case invalidLength(reading: String, length: Int, offset: Int)
    /// A string was not valid UTF-8.
    case invalidUTF8(offset: Int)

    public var description: String {
        switch self {
        case let .truncated(reading, needed, available, offset):
            return "truncated input reading \(reading) at offset \(offset): needed \(needed) bytes, \(available) available"
        case let .malformedVarint(offset):
            return "malformed varint at offset \(offset): more than the maximum number of bytes"
        case let .invalidLength(reading, length, offset):
            return "invalid length \(length) reading \(reading) at offset \(offset)"
        case let .invalidUTF8(offset):
            return "invalid UTF-8 in string at offset \(offset)"
        }
    }
}

/// A cursor over an immutable byte array. Reads are big-endian, as on the Kafka wire.
///
/// Invariant: `base.startIndex <= readerIndex <= endIndex <= base.endIndex`. Slicing with
/// `readSlice` shares the underlying storage, so no bytes are copied.
///
/// Example: over `[0x00, 0x2A, 0x05]`, `readInt16()` returns 42 and leaves `readerIndex == 2`;
/// `readUnsignedVarint()` then returns 5 and `remaining == 0`.
public struct ByteReader: Sendable {
    public let base: ArraySlice<UInt8>
    public private(set) var readerIndex: Int
    public let endIndex: Int

    public init(_ bytes: [UInt8]) {
        self.init(bytes[...])
    }

    public init(_ slice: ArraySlice<UInt8>) {
        base = slice
        readerIndex = slice.startIndex
        endIndex = slice.endIndex
    }

    /// Bytes left to read.
    @inlinable public var remaining: Int { endIndex - readerIndex }
    public var isAtEnd: Bool { readerIndex == endIndex }
    /// Offset of the cursor from the start of the input, for error messages.
    public var offset: Int { readerIndex - base.startIndex }

    @inline(__always)
    mutating func need(_ count: Int, _ what: @autoclosure () -> String) throws(BytesError) {
        if count > endIndex - readerIndex {
            throw .truncated(reading: what(), needed: count, available: endIndex - readerIndex, offset: offset)
        }
    }

    @inline(__always)
    mutating func load<T: FixedWidthInteger>(_: T.Type, _ what: StaticString) throws(BytesError) -> T {
        let size = MemoryLayout<T>.size
        try need(size, "\(what)")
        let start = readerIndex - base.startIndex
        let value = base.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: start, as: T.self) }
        readerIndex += size
        return T(bigEndian: value)
    }

    public mutating func readUInt8() throws(BytesError) -> UInt8 { try load(UInt8.self, "uint8") }
    public mutating func readInt8() throws(BytesError) -> Int8 { try load(Int8.self, "int8") }
    public mutating func readInt16() throws(BytesError) -> Int16 { try load(Int16.self, "int16") }
    public mutating func readUInt16() throws(BytesError) -> UInt16 { try load(UInt16.self, "uint16") }
    public mutating func readInt32() throws(BytesError) -> Int32 { try load(Int32.self, "int32") }
    public mutating func readUInt32() throws(BytesError) -> UInt32 { try load(UInt32.self, "uint32") }
    public mutating func readInt64() throws(BytesError) -> Int64 { try load(Int64.self, "int64") }
    public mutating func readUInt64() throws(BytesError) -> UInt64 { try load(UInt64.self, "uint64") }

    public mutating func readBool() throws(BytesError) -> Bool { try readUInt8() != 0 }

    public mutating func readFloat64() throws(BytesError) -> Double {
        Double(bitPattern: try readUInt64())
    }

    /// Unsigned LEB128 varint of at most 5 bytes (Kafka's UNSIGNED_VARINT).
    public mutating func readUnsignedVarint() throws(BytesError) -> UInt32 {
        let start = offset
        var result: UInt32 = 0
        var shift: UInt32 = 0
        while true {
            let byte = try load(UInt8.self, "varint")
            if shift == 28 && byte > 0x0F { throw .malformedVarint(offset: start) }
            result |= UInt32(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    /// Unsigned LEB128 varint of at most 10 bytes.
    public mutating func readUnsignedVarlong() throws(BytesError) -> UInt64 {
        let start = offset
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try load(UInt8.self, "varlong")
            if shift == 63 && byte > 0x01 { throw .malformedVarint(offset: start) }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    /// Zigzag-encoded signed varint (Kafka's VARINT).
    public mutating func readVarint() throws(BytesError) -> Int32 {
        let raw = try readUnsignedVarint()
        return Int32(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    /// Zigzag-encoded signed varlong (Kafka's VARLONG).
    public mutating func readVarlong() throws(BytesError) -> Int64 {
        let raw = try readUnsignedVarlong()
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    /// The next `count` bytes as a slice sharing this reader's storage.
    public mutating func readSlice(_ count: Int, _ what: @autoclosure () -> String = "bytes") throws(BytesError) -> ArraySlice<UInt8> {
        if count < 0 { throw .invalidLength(reading: what(), length: count, offset: offset) }
        try need(count, what())
        let slice = base[readerIndex..<(readerIndex + count)]
        readerIndex += count
        return slice
    }

    public mutating func readBytes(_ count: Int, _ what: @autoclosure () -> String = "bytes") throws(BytesError) -> [UInt8] {
        Array(try readSlice(count, what()))
    }

    /// Reads `count` bytes as UTF-8.
    public mutating func readString(_ count: Int) throws(BytesError) -> String {
        let start = offset
        let slice = try readSlice(count, "string")
        guard let s = slice.withUnsafeBufferPointer({ String(validating: $0, as: UTF8.self) }) else {
            throw .invalidUTF8(offset: start)
        }
        return s
    }

    public mutating func skip(_ count: Int) throws(BytesError) {
        _ = try readSlice(count, "skipped bytes")
    }

    /// Everything not yet read, without consuming it.
    public var remainingSlice: ArraySlice<UInt8> { base[readerIndex..<endIndex] }

    /// A reader over the next `count` bytes; this reader moves past them.
    public mutating func subReader(_ count: Int, _ what: @autoclosure () -> String = "sub-message") throws(BytesError) -> ByteReader {
        ByteReader(try readSlice(count, what()))
    }
}
