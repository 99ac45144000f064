/// The compression codec of a RecordBatch v2, held in bits 0–2 of its attributes.
///
/// Floe stores and serves every batch exactly as the producer sent it, so the broker never needs
/// to decompress on the hot path. Decoding records (for tests, tools and control-record checks)
/// is supported for `none` and `gzip`; `snappy`, `lz4` and `zstd` batches are carried opaquely and
/// asking for their records throws `.unsupportedCompression(codec:)`.
///
/// Example: attributes `0x0011` (transactional, gzip) give `.gzip`; `0x0007` is rejected since
/// codec 7 does not exist.
public enum CompressionCodec: Int16, Sendable, CaseIterable, CustomStringConvertible {
    case none = 0
    case gzip = 1
    case snappy = 2
    case lz4 = 3
    case zstd = 4

    /// Bits of the batch attributes that hold the codec.
    public static let attributeMask: Int16 = 0x07

    /// The codec named by `attributes`; throws for the unassigned values 5, 6 and 7.
    public init(attributes: Int16) throws(KafkaProtocolError) {
        let raw = attributes & Self.attributeMask
        guard let codec = CompressionCodec(rawValue: raw) else {
            throw .invalidRecordBatch(reason: "unknown compression codec \(raw) in attributes \(attributes)", offset: 21)
        }
        self = codec
    }

    /// The name Kafka uses in `compression.type`.
    public var description: String {
        switch self {
        case .none: "none"
        case .gzip: "gzip"
        case .snappy: "snappy"
        case .lz4: "lz4"
        case .zstd: "zstd"
        }
    }

    /// Whether this module can decompress and compress the codec.
    public var isSupportedForRecordDecoding: Bool { self == .none || self == .gzip }
}

/// Compression and decompression of a record batch's records section, by codec.
public enum Compression {
    /// Default ceiling on a decompressed records section (64 MiB): well above Kafka's default
    /// `message.max.bytes` (about 1 MiB) times a typical compression ratio, and where a
    /// decompression bomb stops.
    public static let defaultMaxDecompressedSize = 64 * 1024 * 1024

    /// Decompresses `data` compressed with `codec`, refusing output larger than `maxSize`.
    public static func decompress(
        _ data: ArraySlice<UInt8>, codec: CompressionCodec, maxSize: Int = defaultMaxDecompressedSize
    ) throws(KafkaProtocolError) -> [UInt8] {
        switch codec {
        case .none:
            guard data.count <= maxSize else {
                throw .decompressedSizeExceeded(codec: codec.description, limit: maxSize)
            }
            return Array(data)
        case .gzip:
            return try Gzip.decompress(data, maxSize: maxSize)
        case .snappy, .lz4, .zstd:
            throw .unsupportedCompression(codec: codec.description)
        }
    }

    /// Compresses `data` with `codec`.
    public static func compress(_ data: ArraySlice<UInt8>, codec: CompressionCodec) throws(KafkaProtocolError) -> [UInt8] {
        switch codec {
        case .none: return Array(data)
        case .gzip: return try Gzip.compress(data)
        case .snappy, .lz4, .zstd: throw .unsupportedCompression(codec: codec.description)
        }
    }
}
