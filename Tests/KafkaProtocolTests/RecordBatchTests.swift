import Bytes
import Foundation
import Testing
@testable import KafkaProtocol

/// Deterministic generator for seeded tests (SplitMix64).
struct RecordsRNG: RandomNumberGenerator {
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

/// Random batches for round-trip tests.
enum RandomBatches {
    static func bytes(_ rng: inout RecordsRNG, maxCount: Int) -> [UInt8]? {
        switch rng.next() % 6 {
        case 0: return nil
        case 1: return []
        default: return (0..<Int(rng.next() % UInt64(maxCount + 1))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        }
    }

    static func builder(_ rng: inout RecordsRNG, compression: CompressionCodec) -> RecordBatchBuilder {
        var b = RecordBatchBuilder(baseTimestamp: 1_600_000_000_000 + Int64(rng.next() % 100_000_000), compression: compression)
        b.baseOffset = Int64(rng.next() % 1_000_000)
        b.partitionLeaderEpoch = Int32(rng.next() % 50) - 1
        if rng.next() % 2 == 0 {
            b.producerId = Int64(rng.next() % 100_000)
            b.producerEpoch = Int16(rng.next() % 100)
            b.baseSequence = Int32(rng.next() % 10_000)
        }
        b.isTransactional = rng.next() % 4 == 0
        b.timestampType = rng.next() % 5 == 0 ? .logAppendTime : .createTime
        let count = Int(rng.next() % 20)
        for i in 0..<count {
            let headers = (0..<Int(rng.next() % 3)).map { h in
                Record.Header(key: "h\(h)-\(rng.next() % 1000)-é", value: bytes(&rng, maxCount: 20))
            }
            b.append(
                Record(
                    timestampDelta: Int64(rng.next() % 10_000) - 100, offsetDelta: Int32(i),
                    key: bytes(&rng, maxCount: 40), value: bytes(&rng, maxCount: rng.next() % 8 == 0 ? 3000 : 200),
                    headers: headers))
        }
        return b
    }
}

/// Recomputes the CRC of a batch after a test edited its bytes.
func resealed(_ batch: [UInt8]) -> [UInt8] {
    var copy = batch
    let crc = CRC32C.checksum(copy[RecordBatchHeader.attributesOffset...])
    withUnsafeBytes(of: crc.bigEndian) { for i in 0..<4 { copy[RecordBatchHeader.crcOffset + i] = $0[i] } }
    return copy
}

func patchInt32(_ bytes: inout [UInt8], at offset: Int, _ value: Int32) {
    withUnsafeBytes(of: value.bigEndian) { for i in 0..<4 { bytes[offset + i] = $0[i] } }
}

struct RecordBatchTests {
    @Test(arguments: [CompressionCodec.none, .gzip])
    func seededRandomBatchesRoundTrip(codec: CompressionCodec) throws {
        var rng = RecordsRNG(seed: codec == .none ? 11 : 12)
        for iteration in 0..<150 {
            let builder = RandomBatches.builder(&rng, compression: codec)
            let bytes = try builder.build()
            let batch = try RecordBatch(validating: bytes[...])
            let h = batch.header
            #expect(h.totalSize == bytes.count)
            #expect(h.magic == 2)
            #expect(h.baseOffset == builder.baseOffset)
            #expect(h.partitionLeaderEpoch == builder.partitionLeaderEpoch)
            #expect(h.producerId == builder.producerId && h.producerEpoch == builder.producerEpoch)
            #expect(h.baseSequence == builder.baseSequence)
            #expect(h.recordCount == Int32(builder.records.count))
            #expect(h.lastOffsetDelta == Int32(builder.records.count - 1))
            #expect(try batch.compression() == codec)
            #expect(batch.isTransactional == builder.isTransactional)
            #expect(h.attributes.timestampType == builder.timestampType)
            let records = try batch.records()
            #expect(records == builder.records, "iteration \(iteration)")
            // Parse, rebuild: identical bytes.
            #expect(try RecordBatchBuilder(copying: batch).build() == bytes, "iteration \(iteration)")
        }
    }

    @Test func builderExampleAndAbsoluteOffsetsAndTimestamps() throws {
        var builder = RecordBatchBuilder(baseTimestamp: 1_700_000_000_000)
        builder.baseOffset = 1000
        builder.append(timestamp: 1_700_000_000_000, key: Array("k".utf8), value: Array("v".utf8))
        builder.append(
            timestamp: 1_700_000_000_007, key: nil, value: Array("w".utf8),
            headers: [Record.Header(key: "trace", value: [1, 2])])
        let batch = try RecordBatch(validating: try builder.build()[...])
        #expect(batch.header.lastOffsetDelta == 1)
        #expect(batch.header.maxTimestamp == 1_700_000_000_007)
        let records = try batch.records()
        #expect(records.map { batch.offset(of: $0) } == [1000, 1001])
        #expect(records.map { batch.timestamp(of: $0) } == [1_700_000_000_000, 1_700_000_000_007])
        #expect(records[1].key == nil)
        #expect(records[1].headers == [Record.Header(key: "trace", value: [1, 2])])
        #expect(batch.header.nextOffset == 1002)
    }

    @Test func anySingleByteFlipInTheCRCRegionIsDetected() throws {
        var rng = RecordsRNG(seed: 21)
        for codec in [CompressionCodec.none, .gzip] {
            var builder = RandomBatches.builder(&rng, compression: codec)
            builder.append(timestamp: 1_600_000_000_500, key: [1, 2, 3], value: [4, 5, 6])
            let bytes = try builder.build()
            for index in RecordBatchHeader.attributesOffset..<bytes.count {
                var corrupt = bytes
                corrupt[index] ^= UInt8(1 << (index % 8))
                let batch = try RecordBatch(unverified: corrupt[...])
                #expect(throws: KafkaProtocolError.self, "byte \(index)") { try batch.verifyCRC() }
                do {
                    try batch.verifyCRC()
                } catch let error {
                    guard case .crcMismatch(let stored, let computed, _) = error else {
                        Issue.record("byte \(index): expected a CRC mismatch, got \(error)")
                        continue
                    }
                    #expect(stored == batch.header.crc && stored != computed)
                }
                #expect(throws: KafkaProtocolError.self) { try RecordBatch(validating: corrupt[...]) }
            }
        }
    }

    @Test func truncatedBatchesNeverCrash() throws {
        var rng = RecordsRNG(seed: 31)
        for codec in [CompressionCodec.none, .gzip] {
            var builder = RandomBatches.builder(&rng, compression: codec)
            builder.append(timestamp: 1_600_000_000_500, key: [1], value: Array(repeating: 9, count: 300))
            builder.append(timestamp: 1_600_000_000_501, key: nil, value: [1], headers: [.init(key: "k", value: [2])])
            let bytes = try builder.build()
            for cut in 0..<bytes.count {
                let prefix = bytes[0..<cut]
                #expect(throws: KafkaProtocolError.self, "cut \(cut)") { try RecordBatch(validating: prefix) }
                var strict = RecordBatchReader(prefix)
                if cut == 0 {
                    #expect(try strict.next() == nil)
                } else {
                    #expect(throws: KafkaProtocolError.self, "cut \(cut)") { try strict.next() }
                    var lenient = RecordBatchReader(prefix, trailingPartialBatch: .allow)
                    #expect(try lenient.next() == nil)
                    #expect(lenient.partialBatch == prefix)
                }
                // The same cut with a consistent length and CRC reaches the record decoder.
                if cut >= RecordBatchHeader.size {
                    var sealed = Array(prefix)
                    patchInt32(&sealed, at: 8, Int32(cut - RecordBatchHeader.logOverhead))
                    sealed = resealed(sealed)
                    let batch = try RecordBatch(unverified: sealed[...])
                    #expect(throws: KafkaProtocolError.self, "records cut \(cut)") { try batch.records() }
                }
            }
        }
    }

    @Test func randomRecordSectionsNeverCrash() throws {
        var rng = RecordsRNG(seed: 41)
        for _ in 0..<2000 {
            var builder = RecordBatchBuilder(baseTimestamp: 0)
            builder.lastOffsetDelta = Int32(rng.next() % 4) - 1
            var bytes = try builder.build()
            bytes += (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            patchInt32(&bytes, at: 8, Int32(bytes.count - RecordBatchHeader.logOverhead))
            patchInt32(&bytes, at: 57, Int32(rng.next() % 5))
            let batch = try RecordBatch(unverified: resealed(bytes)[...])
            // Either decodes or throws; never traps.
            do {
                let records = try batch.records()
                #expect(records.count == Int(batch.header.recordCount))
            } catch {
                #expect(!"\(error)".isEmpty)
            }
        }
    }

    @Test func offsetRewriteKeepsCRCValidAndRecordsIntact() throws {
        var rng = RecordsRNG(seed: 51)
        var blob: [UInt8] = []
        var originals: [[Record]] = []
        var deltas: [Int32] = []
        for i in 0..<8 {
            var builder = RandomBatches.builder(&rng, compression: i % 2 == 0 ? .none : .gzip)
            builder.append(timestamp: 1_600_000_000_000, key: nil, value: [UInt8(i)])
            let bytes = try builder.build()
            originals.append(builder.records)
            deltas.append(Int32(builder.records.count - 1))
            blob += bytes
        }
        let assignment = try RecordBatch.assignOffsets(in: &blob, startingAt: 5000, partitionLeaderEpoch: 9)
        #expect(assignment.batchCount == 8)
        #expect(assignment.firstOffset == 5000)
        #expect(assignment.nextOffset == 5000 + Int64(deltas.reduce(0) { $0 + Int($1) + 1 }))
        let batches = try RecordBatchReader.batches(in: blob[...])  // validates every CRC
        var expected: Int64 = 5000
        for (i, batch) in batches.enumerated() {
            #expect(batch.header.baseOffset == expected)
            #expect(batch.header.partitionLeaderEpoch == 9)
            #expect(try batch.records() == originals[i])
            expected = batch.header.nextOffset
        }
        #expect(expected == assignment.nextOffset)

        // Single-batch setters.
        let first = batches[0].bytes.count
        RecordBatch.setBaseOffset(-7, in: &blob, batchStart: first)
        RecordBatch.setPartitionLeaderEpoch(12, in: &blob, batchStart: first)
        let second = try RecordBatch(validating: blob[first...].prefix(batches[1].bytes.count))
        #expect(second.header.baseOffset == -7)
        #expect(second.header.partitionLeaderEpoch == 12)
    }

    @Test func offsetRewriteOfABadBufferChangesNothing() throws {
        var builder = RecordBatchBuilder(baseTimestamp: 0)
        builder.append(timestamp: 0, key: nil, value: [1])
        let good = try builder.build()
        var blob = good + good + Array(good.prefix(30))
        let before = blob
        #expect(throws: KafkaProtocolError.self) { try RecordBatch.assignOffsets(in: &blob, startingAt: 100) }
        #expect(blob == before)
        // A sub-range that holds only whole batches works.
        let result = try RecordBatch.assignOffsets(in: &blob, range: 0..<(2 * good.count), startingAt: 100)
        #expect(result.nextOffset == 102)
    }

    @Test func brokerValidationRejectsInconsistentHeaders() throws {
        var builder = RecordBatchBuilder(baseTimestamp: 0)
        for i in 0..<3 { builder.append(timestamp: Int64(i), key: nil, value: [UInt8(i)]) }
        let good = try builder.build()
        _ = try RecordBatch(validating: good[...])

        var wrongDelta = good
        patchInt32(&wrongDelta, at: 23, 5)
        #expect(throws: KafkaProtocolError.invalidRecordBatch(
            reason: "lastOffsetDelta 5 does not match recordCount 3 (expected 2)", offset: 23)) {
            try RecordBatch(validating: resealed(wrongDelta)[...])
        }

        var negativeCount = good
        patchInt32(&negativeCount, at: 57, -1)
        #expect(throws: KafkaProtocolError.invalidRecordBatch(reason: "negative recordCount -1", offset: 57)) {
            try RecordBatch(validating: resealed(negativeCount)[...])
        }

        var wrongCount = good
        patchInt32(&wrongCount, at: 57, 2)
        patchInt32(&wrongCount, at: 23, 1)
        let twoOfThree = try RecordBatch(validating: resealed(wrongCount)[...])
        #expect(throws: KafkaProtocolError.self) { try twoOfThree.records() }

        // batchLength must match the bytes given.
        #expect(throws: KafkaProtocolError.self) { try RecordBatch(validating: (good + [0])[...]) }
        var longer = good
        patchInt32(&longer, at: 8, Int32(good.count))
        #expect(throws: KafkaProtocolError.self) { try RecordBatch(validating: longer[...]) }
        var tooShort = good
        patchInt32(&tooShort, at: 8, 10)
        #expect(throws: KafkaProtocolError.self) { try RecordBatch(validating: tooShort[...]) }

        // Unknown codec 5.
        var codec5 = good
        codec5[22] = 5
        #expect(throws: KafkaProtocolError.self) { try RecordBatch(validating: resealed(codec5)[...]) }

        // An empty batch may keep any lastOffsetDelta (compaction leaves such batches).
        var empty = RecordBatchBuilder(baseTimestamp: 0)
        empty.lastOffsetDelta = 41
        let emptyBatch = try RecordBatch(validating: try empty.build()[...])
        #expect(try emptyBatch.records().isEmpty)
        #expect(emptyBatch.header.nextOffset == 42)
    }

    @Test func opaqueCodecsAreStoredAsSentButNotDecoded() throws {
        var builder = RecordBatchBuilder(baseTimestamp: 0)
        builder.append(timestamp: 0, key: nil, value: [1, 2, 3])
        for codec in [CompressionCodec.snappy, .lz4, .zstd] {
            builder.compression = codec
            #expect(throws: KafkaProtocolError.unsupportedCompression(codec: codec.description)) { try builder.build() }
        }
        builder.compression = .none
        var bytes = try builder.build()
        for codec in [CompressionCodec.snappy, .lz4, .zstd] {
            bytes[22] = UInt8(codec.rawValue)
            let sealed = resealed(bytes)
            let batch = try RecordBatch(validating: sealed[...])  // a broker accepts it
            #expect(try batch.compression() == codec)
            #expect(throws: KafkaProtocolError.unsupportedCompression(codec: codec.description)) { try batch.records() }
            var mutable = sealed
            try RecordBatch.assignOffsets(in: &mutable, startingAt: 77)
            #expect(try RecordBatch(validating: mutable[...]).header.baseOffset == 77)
        }
    }

    @Test func controlRecordsAreRecognised() throws {
        for type in [ControlRecordType.commit, .abort] {
            let bytes = try RecordBatchBuilder.endTransactionBatch(
                type, coordinatorEpoch: 17, producerId: 900, producerEpoch: 3, timestamp: 1_700_000_000_000)
            let batch = try RecordBatch(validating: bytes[...])
            #expect(batch.isControlBatch && batch.isTransactional)
            #expect(try batch.controlRecordType() == type)
            let record = try batch.records()[0]
            #expect(try record.controlKey() == ControlRecordKey(version: 0, type: type))
            #expect(try record.endTransactionMarker() == EndTransactionMarker(version: 0, coordinatorEpoch: 17))
            // Wire form of the key: version 0, type 0 (abort) or 1 (commit).
            #expect(record.key == [0, 0, 0, type == .commit ? 1 : 0])
        }
        #expect(ControlRecordType(rawValue: 2) == .other(2))
        var data = RecordBatchBuilder(baseTimestamp: 0)
        data.append(timestamp: 0, key: nil, value: [1])
        #expect(try RecordBatch(validating: try data.build()[...]).controlRecordType() == nil)
        let shortKey = Record(timestampDelta: 0, offsetDelta: 0, key: [0, 0, 1], value: nil)
        #expect(throws: KafkaProtocolError.self) { try shortKey.controlKey() }
    }

    @Test func legacyMessageSetsAreRejectedClearly() throws {
        for magic: UInt8 in [0, 1] {
            // offset 42, size, crc, magic, attributes, [timestamp], key -1, value "hi".
            var message: [UInt8] = [0xDE, 0xAD, 0xBE, 0xEF, magic, 0]
            if magic == 1 { message += [UInt8](repeating: 0, count: 8) }
            message += [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 2, 0x68, 0x69]
            var set: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 42]
            withUnsafeBytes(of: UInt32(message.count).bigEndian) { set += $0 }
            set += message
            let expected = KafkaProtocolError.unsupportedMagic(Int8(magic), baseOffset: 42)
            #expect(throws: expected) { try RecordBatch(validating: set[...]) }
            var reader = RecordBatchReader(set, trailingPartialBatch: .allow)
            #expect(throws: expected) { try reader.next() }
            var rewrite = set
            #expect(throws: expected) { try RecordBatch.assignOffsets(in: &rewrite, startingAt: 0) }
            #expect(expected.description.contains("legacy message format magic \(magic)"))
        }
        var builder = RecordBatchBuilder(baseTimestamp: 0)
        builder.append(timestamp: 0, key: nil, value: [1])
        var magic3 = try builder.build()
        magic3[16] = 3
        #expect(throws: KafkaProtocolError.invalidRecordBatch(reason: "unknown magic byte 3 (expected 2)", offset: 16)) {
            try RecordBatch(validating: magic3[...])
        }
    }

    @Test func readerWalksABlobAndReportsATrailingPartialBatch() throws {
        var rng = RecordsRNG(seed: 61)
        var blob: [UInt8] = []
        var sizes: [Int] = []
        for _ in 0..<5 {
            var builder = RandomBatches.builder(&rng, compression: .none)
            builder.append(timestamp: 1_600_000_000_000, key: nil, value: [7])
            let bytes = try builder.build()
            sizes.append(bytes.count)
            blob += bytes
        }
        let whole = try RecordBatchReader.batches(in: blob[...])
        #expect(whole.map(\.bytes.count) == sizes)
        #expect(whole[1].bytes.startIndex == sizes[0])  // views into the blob

        let truncated = blob.dropLast(sizes[4] / 2)
        var lenient = RecordBatchReader(truncated, trailingPartialBatch: .allow)
        var seen = 0
        while try lenient.next() != nil { seen += 1 }
        #expect(seen == 4)
        #expect(lenient.partialBatch?.count == sizes[4] - sizes[4] / 2)
        #expect(lenient.byteOffset == sizes.prefix(4).reduce(0, +))
        #expect(try lenient.next() == nil)

        var strict = RecordBatchReader(truncated)
        for _ in 0..<4 { _ = try strict.next() }
        #expect(throws: KafkaProtocolError.self) { try strict.next() }

        // A corrupt batch in the middle is reported with its position in the blob.
        var corrupt = blob
        corrupt[sizes[0] + 8] = 0x7F  // second batch's batchLength becomes huge: partial
        var reader = RecordBatchReader(corrupt)
        _ = try reader.next()
        #expect(throws: KafkaProtocolError.self) { try reader.next() }
        var badLength = blob
        patchInt32(&badLength, at: sizes[0] + 8, 3)
        var reader2 = RecordBatchReader(badLength)
        _ = try reader2.next()
        #expect(throws: KafkaProtocolError.invalidRecordBatch(reason: "batchLength 3 is below the minimum of 49", offset: sizes[0] + 8)) {
            try reader2.next()
        }
    }

    @Test func gzipBatchWrittenByPythonDecodes() throws {
        let bytes = try fixtureBytes("compression/gzip-batch.bin")
        let json = try JSONSerialization.jsonObject(with: Data(try fixtureBytes("compression/gzip-batch.json"))) as! [String: Any]
        var reader = RecordBatchReader(bytes)
        let batch = try #require(try reader.next())
        #expect(try reader.next() == nil)
        #expect(try batch.compression() == .gzip)
        #expect(batch.header.crc == UInt32(json["crc"] as! Int))
        #expect(batch.header.partitionLeaderEpoch == Int32(json["partitionLeaderEpoch"] as! Int))
        #expect(batch.header.producerId == Int64(json["producerId"] as! Int))
        #expect(batch.header.producerEpoch == Int16(json["producerEpoch"] as! Int))
        #expect(batch.header.baseSequence == Int32(json["baseSequence"] as! Int))
        #expect(batch.header.baseTimestamp == Int64(json["baseTimestamp"] as! Int))
        #expect(batch.header.maxTimestamp == Int64(json["maxTimestamp"] as! Int))

        func hex(_ value: Any?) -> [UInt8]? {
            guard let s = value as? String else { return nil }
            var out: [UInt8] = []
            var i = s.startIndex
            while i < s.endIndex {
                let j = s.index(i, offsetBy: 2)
                out.append(UInt8(s[i..<j], radix: 16)!)
                i = j
            }
            return out
        }
        let expected = (json["records"] as! [[String: Any]]).map { r in
            Record(
                timestampDelta: Int64(r["timestampDelta"] as! Int), offsetDelta: Int32(r["offsetDelta"] as! Int),
                key: hex(r["key"]), value: hex(r["value"]),
                headers: (r["headers"] as! [[String: Any]]).map { Record.Header(key: $0["key"] as! String, value: hex($0["value"])) })
        }
        let records = try batch.records()
        #expect(records == expected)
        #expect(records[1].key == nil && records[2].value == nil && records[3].key == [])
        #expect(records[0].headers[2].value == nil && records[0].headers[1].value == [])

        // Re-encoding with our gzip gives different compressed bytes but the same records.
        var builder = try RecordBatchBuilder(copying: batch)
        builder.compression = .gzip
        let ours = try RecordBatch(validating: try builder.build()[...])
        #expect(try ours.records() == records)
    }

    @Test func gzipBatchDecompressionIsBounded() throws {
        var builder = RecordBatchBuilder(baseTimestamp: 0, compression: .gzip)
        for _ in 0..<8 { builder.append(timestamp: 0, key: nil, value: [UInt8](repeating: 0, count: 100_000)) }
        let bytes = try builder.build()
        #expect(bytes.count < 10_000)
        let batch = try RecordBatch(validating: bytes[...])
        #expect(throws: KafkaProtocolError.decompressedSizeExceeded(codec: "gzip", limit: 100_000)) {
            try batch.records(maxDecompressedSize: 100_000)
        }
        #expect(try batch.records().count == 8)
    }

    @Test func headerParsingReportsShortInput() {
        #expect(throws: KafkaProtocolError.self) { try RecordBatchHeader(parsing: [UInt8](repeating: 0, count: 60)[...]) }
        #expect(throws: KafkaProtocolError.self) { try RecordBatchHeader(parsing: [UInt8]()[...]) }
    }
}
