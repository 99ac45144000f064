import Testing
@testable import Bytes

struct CRC32CTests {
    // Published CRC32C check values: RFC 3720 (iSCSI) appendix B.4 and the "123456789" check.
    @Test func publishedVectors() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum((0..<32).map { UInt8(31 - $0) }) == 0x113F_DB5C)
        #expect(CRC32C.checksum([UInt8]()) == 0)
    }

    @Test func hardwareMatchesSoftwareOnRandomInputs() {
        var rng = SplitMix64(seed: 0xF10E)
        // Lengths around the three-way blocks of the hardware path (3 x 256, 3 x 2048, 3 x 8192).
        for length in [0, 1, 3, 7, 8, 9, 15, 16, 63, 64, 65, 767, 768, 769, 1000, 4096, 6143, 6144, 6151, 16_900,
                       24_575, 24_576, 24_577, 65_537, 200_003] {
            let data = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            #expect(CRC32C.checksum(data) == CRC32C.softwareChecksum(data), "length \(length)")
            // Unaligned starts exercise the byte-wise prologue.
            if length > 3 {
                let slice = data[3...]
                #expect(CRC32C.checksum(slice) == CRC32C.softwareChecksum(Array(slice)))
            }
        }
    }

    @Test func chainedUpdatesEqualOneChecksum() {
        let data = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var crc: UInt32 = 0
        var i = 0
        for step in [1, 7, 100, 993, 4000, 4899] {
            crc = CRC32C.update(crc, data[i..<(i + step)])
            i += step
        }
        #expect(i == data.count)
        #expect(crc == CRC32C.checksum(data))
    }
}

/// Deterministic generator for seeded tests.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
