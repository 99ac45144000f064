import Bytes
import KafkaProtocol
import Testing

/// Seeded randomized round trips over every generated message at every valid version.
@Suite struct RoundTripTests {
    static let names: [String] = generatedMessageTypes().map { String(describing: $0) }
    static let seeds: [UInt64] = [1, 2, 3, 5, 8, 13, 21, 34]

    static func type(named name: String) -> any RandomMessage.Type {
        generatedMessageTypes().first { String(describing: $0) == name }!
    }

    @Test func everySchemaHasAType() {
        // 186 schema files: 88 requests, 88 responses, 2 headers, 8 data schemas.
        #expect(Self.names.count == 186)
        #expect(Set(Self.names).count == 186)
    }

    /// encode → decode gives an equal value, the decoder consumes every byte, and
    /// decode → encode gives identical bytes.
    @Test(arguments: names)
    func roundTrip(name: String) throws {
        try check(Self.type(named: name))
    }

    func check<M: RandomMessage>(_: M.Type) throws {
        for version in M.validVersions {
            for seed in Self.seeds {
                var rng = SplitMix64(seed: seed &* 0x1_0000 &+ UInt64(version))
                let value = M.random(version: version, using: &rng)
                let bytes = try value.encoded(version: version)
                var reader = ByteReader(bytes)
                let decoded = try M(from: &reader, version: version)
                #expect(decoded == value, "\(M.self) v\(version) seed \(seed)")
                #expect(reader.isAtEnd, "\(M.self) v\(version) seed \(seed): \(reader.remaining) bytes left")
                let again = try decoded.encoded(version: version)
                #expect(again == bytes, "\(M.self) v\(version) seed \(seed): re-encoding differs")
            }
        }
    }

    /// Every strict prefix of an encoding throws (never traps, never succeeds).
    @Test(arguments: names)
    func truncatedInputThrows(name: String) throws {
        try checkTruncation(Self.type(named: name))
    }

    func checkTruncation<M: RandomMessage>(_: M.Type) throws {
        for version in M.validVersions {
            var rng = SplitMix64(seed: 99 &+ UInt64(version))
            let bytes = try M.random(version: version, using: &rng).encoded(version: version)
            for length in 0..<bytes.count {
                var reader = ByteReader(bytes[0..<length])
                do {
                    _ = try M(from: &reader, version: version)
                    Issue.record("\(M.self) v\(version): a \(length)-byte prefix of \(bytes.count) bytes decoded")
                } catch {
                    guard case .bytes = error else {
                        Issue.record("\(M.self) v\(version): unexpected error \(error)")
                        return
                    }
                }
            }
        }
    }

    /// Versions outside the schema's range are refused both ways.
    @Test(arguments: names)
    func unsupportedVersionsThrow(name: String) throws {
        try checkUnsupported(Self.type(named: name))
    }

    func checkUnsupported<M: RandomMessage>(_: M.Type) throws {
        let above = M.validVersions.upperBound + 1
        var rng = SplitMix64(seed: 7)
        let value = M.random(version: M.validVersions.upperBound, using: &rng)
        #expect(throws: KafkaProtocolError.unsupportedVersion(message: "\(M.self)", version: above)) {
            _ = try value.encoded(version: above)
        }
        #expect(throws: KafkaProtocolError.unsupportedVersion(message: "\(M.self)", version: -1)) {
            _ = try M(bytes: [], version: -1)
        }
    }
}
