import Bytes

/// A Kafka protocol message (request, response, header or data schema) with a codec generated
/// from its JSON schema.
///
/// Invariants:
/// - `init(from:version:)` and `encode(to:version:)` accept exactly `validVersions`; any other
///   version throws `KafkaProtocolError.unsupportedVersion`.
/// - Decoding reads exactly the fields the schema defines at `version`; fields absent at that
///   version keep their defaults. Unknown tagged fields are kept and re-emitted, so
///   decode → encode reproduces the input bytes.
/// - Encoding throws `.fieldNotInVersion` when a field that does not exist at `version` holds a
///   non-default value and the schema does not mark it `ignorable` (as Apache Kafka does), and
///   `.nullNotAllowed` when a field holds nil at a version where it is not nullable.
///
/// Example: `try ApiVersionsRequest(clientSoftwareName: "floe").encode(to: &writer, version: 3)`
/// writes `0x05 "floe" 0x01 "" 0x00` (compact strings and an empty tagged-field section).
public protocol KafkaMessage: Sendable, Equatable {
    /// The API key, or −1 for headers and data schemas.
    static var apiKey: Int16 { get }
    /// The versions this codec reads and writes.
    static var validVersions: ClosedRange<Int16> { get }
    /// The first flexible version (compact encodings and tagged fields), or nil if none is.
    static var flexibleVersions: Int16? { get }
    /// Reads one message at `version`. Throws, never traps, on truncated or malformed input.
    init(from reader: inout ByteReader, version: Int16) throws(KafkaProtocolError)
    /// Appends the message encoded at `version`.
    func encode(to writer: inout ByteWriter, version: Int16) throws(KafkaProtocolError)
}

extension KafkaMessage {
    /// Whether `version` uses compact encodings and tagged-field sections.
    public static func isFlexible(version: Int16) -> Bool {
        guard let first = flexibleVersions else { return false }
        return version >= first
    }

    /// Decodes a whole byte array at `version` (trailing bytes are ignored, as Kafka does).
    public init(bytes: [UInt8], version: Int16) throws(KafkaProtocolError) {
        var reader = ByteReader(bytes)
        try self.init(from: &reader, version: version)
    }

    /// The message encoded at `version` as a fresh byte array.
    public func encoded(version: Int16) throws(KafkaProtocolError) -> [UInt8] {
        var writer = ByteWriter()
        try encode(to: &writer, version: version)
        return writer.take()
    }
}

/// A tagged field whose tag this codec does not know, kept as raw bytes so it can be re-emitted.
///
/// Invariant: `data` is the field's payload without the tag and size prefixes. Generated
/// structs keep these in `unknownTaggedFields` in the order read; encoding merges them with the
/// known tagged fields by ascending tag, which reproduces the input when it was in tag order
/// (Kafka always writes tags in ascending order).
public struct TaggedField: Sendable, Hashable {
    public var tag: UInt32
    public var data: [UInt8]

    public init(tag: UInt32, data: [UInt8]) {
        self.tag = tag
        self.data = data
    }
}
