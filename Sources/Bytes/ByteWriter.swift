/// A growable byte buffer written big-endian, as on the Kafka wire.
///
/// Example: `writeInt16(42)` then `writeUnsignedVarint(300)` yields
/// `[0x00, 0x2A, 0xAC, 0x02]`. Length prefixes that are known only after the body is written
/// use `reserveInt32()` and `patchInt32(at:_:)`.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 256) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public var count: Int { bytes.count }

    @inline(__always)
    mutating func store<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func writeUInt8(_ v: UInt8) { bytes.append(v) }
    public mutating func writeInt8(_ v: Int8) { bytes.append(UInt8(bitPattern: v)) }
    public mutating func writeInt16(_ v: Int16) { store(v) }
    public mutating func writeUInt16(_ v: UInt16) { store(v) }
    public mutating func writeInt32(_ v: Int32) { store(v) }
    public mutating func writeUInt32(_ v: UInt32) { store(v) }
    public mutating func writeInt64(_ v: Int64) { store(v) }
    public mutating func writeUInt64(_ v: UInt64) { store(v) }
    public mutating func writeBool(_ v: Bool) { bytes.append(v ? 1 : 0) }
    public mutating func writeFloat64(_ v: Double) { store(v.bitPattern) }

    public mutating func writeUnsignedVarint(_ v: UInt32) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    public mutating func writeUnsignedVarlong(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    public mutating func writeVarint(_ v: Int32) {
        writeUnsignedVarint(UInt32(bitPattern: (v << 1) ^ (v >> 31)))
    }

    public mutating func writeVarlong(_ v: Int64) {
        writeUnsignedVarlong(UInt64(bitPattern: (v << 1) ^ (v >> 63)))
    }

    public mutating func writeBytes<C: Collection>(_ data: C) where C.Element == UInt8 {
        bytes.append(contentsOf: data)
    }

    public mutating func writeString(_ s: String) {
        var s = s
        s.withUTF8 { bytes.append(contentsOf: $0) }
    }

    /// Appends a zero Int32 and returns its position, to be filled by `patchInt32`.
    public mutating func reserveInt32() -> Int {
        let at = bytes.count
        store(Int32(0))
        return at
    }

    public mutating func patchInt32(at index: Int, _ v: Int32) {
        let be = UInt32(bitPattern: v).bigEndian
        withUnsafeBytes(of: be) { raw in
            for i in 0..<4 { bytes[index + i] = raw[i] }
        }
    }

    public mutating func patchUInt32(at index: Int, _ v: UInt32) {
        patchInt32(at: index, Int32(bitPattern: v))
    }

    /// Number of bytes `writeUnsignedVarint(v)` would append.
    public static func unsignedVarintSize(_ v: UInt32) -> Int {
        var v = v
        var n = 1
        while v >= 0x80 { v >>= 7; n += 1 }
        return n
    }

    public static func varintSize(_ v: Int32) -> Int {
        unsignedVarintSize(UInt32(bitPattern: (v << 1) ^ (v >> 31)))
    }

    public static func varlongSize(_ v: Int64) -> Int {
        var u = UInt64(bitPattern: (v << 1) ^ (v >> 63))
        var n = 1
        while u >= 0x80 { u >>= 7; n += 1 }
        return n
    }

    /// Takes the written bytes, leaving the writer empty.
    public mutating func take() -> [UInt8] {
        defer { bytes = [] }
        return bytes
    }
}
