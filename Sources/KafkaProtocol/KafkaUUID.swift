/// A Kafka UUID (topic IDs, directory IDs): 16 bytes, big-endian on the wire.
///
/// Invariant: `mostSignificantBits` holds wire bytes 0–7 and `leastSignificantBits` bytes 8–15.
/// `description` is the URL-safe base64 form without padding that Kafka prints (22 characters),
/// e.g. `KafkaUUID.zero.description == "AAAAAAAAAAAAAAAAAAAAAA"`.
public struct KafkaUUID: Hashable, Sendable, CustomStringConvertible {
    public var mostSignificantBits: UInt64
    public var leastSignificantBits: UInt64

    public init(mostSignificantBits: UInt64, leastSignificantBits: UInt64) {
        self.mostSignificantBits = mostSignificantBits
        self.leastSignificantBits = leastSignificantBits
    }

    /// The all-zero UUID, Kafka's "no topic ID".
    public static let zero = KafkaUUID(mostSignificantBits: 0, leastSignificantBits: 0)

    /// The 16 bytes in wire order.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(16)
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: mostSignificantBits >> UInt64(shift))) }
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: leastSignificantBits >> UInt64(shift))) }
        return out
    }

    /// Builds a UUID from 16 bytes in wire order; nil for any other count.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 16 else { return nil }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for (i, byte) in bytes.enumerated() {
            if i < 8 { high = high << 8 | UInt64(byte) } else { low = low << 8 | UInt64(byte) }
        }
        self.init(mostSignificantBits: high, leastSignificantBits: low)
    }

    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    public var description: String {
        let input = bytes
        var out: [UInt8] = []
        out.reserveCapacity(22)
        var i = 0
        while i < 16 {
            let b0 = UInt32(input[i])
            let b1 = i + 1 < 16 ? UInt32(input[i + 1]) : 0
            let b2 = i + 2 < 16 ? UInt32(input[i + 2]) : 0
            let group = b0 << 16 | b1 << 8 | b2
            let available = min(3, 16 - i)
            for k in 0...available {
                out.append(Self.alphabet[Int((group >> UInt32(18 - 6 * k)) & 0x3F)])
            }
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses Kafka's 22-character URL-safe base64 form; nil if `text` is not one.
    public init?(base64URL text: String) {
        let chars = Array(text.utf8)
        guard chars.count == 22 else { return nil }
        var values: [UInt32] = []
        values.reserveCapacity(22)
        for c in chars {
            guard let index = Self.alphabet.firstIndex(of: c) else { return nil }
            values.append(UInt32(index))
        }
        var out: [UInt8] = []
        var i = 0
        while i < 22 {
            let count = min(4, 22 - i)
            var group: UInt32 = 0
            for k in 0..<4 { group = group << 6 | (k < count ? values[i + k] : 0) }
            let produced = count - 1
            for k in 0..<produced { out.append(UInt8(truncatingIfNeeded: group >> UInt32(16 - 8 * k))) }
            i += 4
        }
        // The last character carries 4 padding bits that must be zero in a canonical encoding.
        guard values[21] & 0x0F == 0 else { return nil }
        self.init(bytes: out)
    }
}
