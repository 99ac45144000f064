import Bytes

/// Every error the Kafka protocol layer raises. Each case says what failed and with which input.
public enum KafkaProtocolError: Error, Equatable, CustomStringConvertible {
    /// The bytes ran out or were malformed at the byte level.
    case bytes(BytesError, message: String)
    /// A message was asked for at a version its schema does not define.
    case unsupportedVersion(message: String, version: Int16)
    /// A null was given for a field that is not nullable at this version.
    case nullNotAllowed(message: String, field: String, version: Int16)
    /// A field that does not exist at this version holds a non-default value.
    case fieldNotInVersion(message: String, field: String, version: Int16)
    /// A string longer than its classic int16 length prefix can express.
    case stringTooLong(field: String, length: Int)
    /// An API key outside Kafka's table.
    case unknownApiKey(Int16)
    /// A size-prefixed frame announced more bytes than the limit allows.
    case frameTooLarge(size: Int, limit: Int)
    /// A size prefix was negative.
    case invalidFrameSize(Int32)
    /// A record batch could not be read or verified.
    case invalidRecordBatch(reason: String, offset: Int)
    /// A record batch's stored CRC32C differs from the one computed over its bytes.
    case crcMismatch(stored: UInt32, computed: UInt32, baseOffset: Int64)
    /// A legacy message set (magic 0 or 1), which Floe does not accept.
    case unsupportedMagic(Int8, baseOffset: Int64)
    /// A compression codec Floe cannot decode or encode here.
    case unsupportedCompression(codec: String)
    /// zlib reported an error.
    case compression(codec: String, reason: String)
    /// Decompressed data would exceed the configured ceiling (a decompression bomb, or a limit set
    /// too low).
    case decompressedSizeExceeded(codec: String, limit: Int)

    public var description: String {
        switch self {
        case let .bytes(error, message):
            return "cannot decode \(message): \(error)"
        case let .unsupportedVersion(message, version):
            return "\(message) has no version \(version)"
        case let .nullNotAllowed(message, field, version):
            return "\(message).\(field) cannot be null at version \(version)"
        case let .fieldNotInVersion(message, field, version):
            return "\(message).\(field) does not exist at version \(version) but holds a non-default value"
        case let .stringTooLong(field, length):
            return "\(field) is \(length) bytes long, more than the 32767 an int16 length prefix allows"
        case let .unknownApiKey(key):
            return "unknown API key \(key)"
        case let .frameTooLarge(size, limit):
            return "frame of \(size) bytes exceeds the limit of \(limit) bytes"
        case let .invalidFrameSize(size):
            return "invalid frame size \(size)"
        case let .invalidRecordBatch(reason, offset):
            return "invalid record batch at byte \(offset): \(reason)"
        case let .crcMismatch(stored, computed, baseOffset):
            return "record batch at base offset \(baseOffset) is corrupt: stored CRC32C \(hex(stored)), computed \(hex(computed))"
        case let .unsupportedMagic(magic, baseOffset):
            return "record batch at base offset \(baseOffset) uses legacy message format magic \(magic); only magic 2 (Kafka 0.11+) is supported"
        case let .unsupportedCompression(codec):
            return "compression codec \(codec) is not supported here"
        case let .compression(codec, reason):
            return "\(codec) failed: \(reason)"
        case let .decompressedSizeExceeded(codec, limit):
            return "\(codec) data decompresses to more than the limit of \(limit) bytes; refusing it"
        }
    }
}

private func hex(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: max(0, 8 - s.count)) + s
}
