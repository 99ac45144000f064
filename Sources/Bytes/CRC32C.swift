import CFloeShims

/// CRC32C (Castagnoli), the checksum of Kafka's RecordBatch v2 and of every Floe persistent
/// format. Runs on the CPU's CRC32 instruction where available.
///
/// Example: `CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283`.
public enum CRC32C {
    public static func checksum<C: ContiguousBytes>(_ data: C) -> UInt32 {
        update(0, data)
    }

    /// Extends `crc` (0 to start) over `data`; chaining updates equals one checksum of the whole.
    public static func update<C: ContiguousBytes>(_ crc: UInt32, _ data: C) -> UInt32 {
        data.withUnsafeBytes { floe_crc32c_update(crc, $0.baseAddress, $0.count) }
    }

    public static func update(_ crc: UInt32, _ data: UnsafeRawBufferPointer) -> UInt32 {
        floe_crc32c_update(crc, data.baseAddress, data.count)
    }

    /// The table-driven path, for cross-checking the hardware one.
    public static func softwareChecksum<C: ContiguousBytes>(_ data: C) -> UInt32 {
        data.withUnsafeBytes { floe_crc32c_update_software(0, $0.baseAddress, $0.count) }
    }

    public static var isHardwareAccelerated: Bool { floe_crc32c_is_hardware() != 0 }
}

/// Byte containers that expose contiguous storage.
public protocol ContiguousBytes {
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}

extension Array: ContiguousBytes where Element == UInt8 {}
extension ArraySlice: ContiguousBytes where Element == UInt8 {}
extension UnsafeRawBufferPointer: ContiguousBytes {
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try body(self) }
}
