import Foundation
import Testing
@testable import KafkaProtocol

/// Bytes of a file under Fixtures/ (copied into the test bundle).
func fixtureBytes(_ path: String) throws -> [UInt8] {
    guard let root = Bundle.module.resourceURL else {
        throw FixtureMissing(path: path)
    }
    let url = root.appendingPathComponent("Fixtures").appendingPathComponent(path)
    return [UInt8](try Data(contentsOf: url))
}

struct FixtureMissing: Error { let path: String }

struct CompressionTests {
    @Test func codecFromAttributes() throws {
        #expect(try CompressionCodec(attributes: 0) == .none)
        #expect(try CompressionCodec(attributes: 1) == .gzip)
        #expect(try CompressionCodec(attributes: 2) == .snappy)
        #expect(try CompressionCodec(attributes: 3) == .lz4)
        #expect(try CompressionCodec(attributes: 4) == .zstd)
        // Higher bits (timestamp type, transactional, control…) do not change the codec.
        #expect(try CompressionCodec(attributes: 0x0078 | 1) == .gzip)
        for bad: Int16 in [5, 6, 7, 0x0F] {
            #expect(throws: KafkaProtocolError.self) { try CompressionCodec(attributes: bad) }
        }
        #expect(CompressionCodec.allCases.map(\.description) == ["none", "gzip", "snappy", "lz4", "zstd"])
    }

    @Test func gzipRoundTripsSeededRandomData() throws {
        var rng = RecordsRNG(seed: 0x621F)
        for size in [0, 1, 2, 100, 4095, 4096, 4097, 65_536, 300_000] {
            // Half random (incompressible), half repetitive (compressible).
            let random = (0..<size / 2).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let repetitive = (0..<(size - size / 2)).map { UInt8($0 % 17) }
            let data = random + repetitive
            let compressed = try Gzip.compress(data)
            #expect(compressed.starts(with: [0x1F, 0x8B]), "gzip magic for size \(size)")
            #expect(try Gzip.decompress(compressed) == data, "size \(size)")
            #expect(try Compression.decompress(compressed[...], codec: .gzip) == data)
        }
    }

    @Test func decodesAStreamWrittenByPythonsGzipModule() throws {
        let expected = try fixtureBytes("compression/text.txt")
        let gz = try fixtureBytes("compression/text.txt.gz")
        #expect(expected.count == 23_553)
        #expect(try Gzip.decompress(gz) == expected)
        // Our own encoding of the same text decodes to it too.
        #expect(try Gzip.decompress(try Gzip.compress(expected)) == expected)
    }

    @Test func decodesConcatenatedMembers() throws {
        let gz = try fixtureBytes("compression/multi-member.gz")
        #expect(try Gzip.decompress(gz) == Array("first member\nsecond member\n".utf8))
    }

    @Test func truncatedStreamIsAnErrorAtEveryCutPoint() throws {
        let gz = try fixtureBytes("compression/text.txt.gz")
        for cut in 0..<gz.count {
            #expect(throws: KafkaProtocolError.self, "cut at \(cut)") { try Gzip.decompress(gz[0..<cut]) }
        }
    }

    @Test func corruptStreamsAreErrors() throws {
        let gz = try fixtureBytes("compression/text.txt.gz")
        // The CRC32 in the trailer.
        var badTrailer = gz
        badTrailer[gz.count - 6] ^= 0x01
        #expect(throws: KafkaProtocolError.self) { try Gzip.decompress(badTrailer) }
        // The uncompressed length in the trailer.
        var badLength = gz
        badLength[gz.count - 1] ^= 0x01
        #expect(throws: KafkaProtocolError.self) { try Gzip.decompress(badLength) }
        // Deflate data in the middle.
        var badBody = gz
        badBody[gz.count / 2] ^= 0xFF
        #expect(throws: KafkaProtocolError.self) { try Gzip.decompress(badBody) }
        // Not gzip at all.
        #expect(throws: KafkaProtocolError.self) { try Gzip.decompress(Array("plain text, not gzip".utf8)) }
        // A gzip member followed by garbage.
        #expect(throws: KafkaProtocolError.self) { try Gzip.decompress(gz + [1, 2, 3, 4]) }
        do {
            _ = try Gzip.decompress(badTrailer)
        } catch {
            #expect("\(error)".contains("gzip"))
        }
    }

    @Test func decompressionBombIsRefused() throws {
        let zeros = [UInt8](repeating: 0, count: 8 << 20)
        let bomb = try Gzip.compress(zeros)
        #expect(bomb.count < 64 * 1024)
        #expect(throws: KafkaProtocolError.decompressedSizeExceeded(codec: "gzip", limit: 1 << 20)) {
            try Gzip.decompress(bomb, maxSize: 1 << 20)
        }
        // The limit is inclusive.
        #expect(try Gzip.decompress(bomb, maxSize: zeros.count).count == zeros.count)
        #expect(throws: KafkaProtocolError.decompressedSizeExceeded(codec: "gzip", limit: zeros.count - 1)) {
            try Gzip.decompress(bomb, maxSize: zeros.count - 1)
        }
    }

    @Test func snappyLz4AndZstdAreNotDecoded() {
        for codec in [CompressionCodec.snappy, .lz4, .zstd] {
            #expect(!codec.isSupportedForRecordDecoding)
            #expect(throws: KafkaProtocolError.unsupportedCompression(codec: codec.description)) {
                try Compression.decompress([1, 2, 3][...], codec: codec)
            }
            #expect(throws: KafkaProtocolError.unsupportedCompression(codec: codec.description)) {
                try Compression.compress([1, 2, 3][...], codec: codec)
            }
        }
    }
}
