import Bytes
import Testing
@testable import StreamStorage

struct TestRandom: RandomNumberGenerator {
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

func randomBytes(_ n: Int, _ rng: inout TestRandom) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) } }

func batch(_ base: Int64, _ count: Int32, _ bytes: [UInt8], time: Int64 = 1000) -> StoredBatch {
    StoredBatch(baseOffset: base, recordCount: count, appendTimeMillis: time, bytes: bytes[...])
}

@Suite struct FormatTests {
    @Test func walRecordRoundTripAndTornTail() throws {
        var rng = TestRandom(seed: 1)
        var w = ByteWriter()
        var records: [WALRecord] = []
        var base: Int64 = 0
        for i in 0..<50 {
            let count = Int32.random(in: 1...20, using: &rng)
            let r = WALRecord(streamID: UInt64(i % 3), epoch: 7, batch: batch(base, count, randomBytes(Int.random(in: 0...300, using: &rng), &rng), time: Int64(i)))
            base += Int64(count)
            r.encode(into: &w)
            records.append(r)
        }
        let bytes = w.take()
        // Every prefix decodes to the records it fully contains, then reports a torn tail.
        for cut in stride(from: 0, through: bytes.count, by: 37) + [bytes.count] {
            var reader = ByteReader(bytes[0..<cut])
            var decoded: [WALRecord] = []
            loop: while !reader.isAtEnd {
                switch try WALRecord.decode(&reader, key: "test") {
                case let .record(r): decoded.append(r)
                case .torn: break loop
                }
            }
            #expect(decoded == Array(records.prefix(decoded.count)))
            if cut == bytes.count { #expect(decoded.count == records.count) }
        }
    }

    @Test func walRecordDetectsBitFlip() throws {
        var w = ByteWriter()
        WALRecord(streamID: 1, epoch: 1, batch: batch(0, 1, [1, 2, 3])).encode(into: &w)
        var bytes = w.take()
        bytes[bytes.count - 1] ^= 0x40
        var reader = ByteReader(bytes)
        #expect(throws: StreamStorageError.self) { _ = try WALRecord.decode(&reader, key: "flip") }
    }

    @Test func walObjectRoundTripAndCorruption() throws {
        let records = (0..<5).map { WALRecord(streamID: 9, epoch: 2, batch: batch(Int64($0 * 2), 2, [UInt8]("r\($0)".utf8))) }
        let header = WALObjectHeader(kind: .data, epoch: 3, writerNonce: 0xABCD, sequence: 17, firstPosition: 100, recordCount: 5)
        let bytes = WALObjectHeader.encodeObject(header: header, records: records)
        let (h, r) = try WALObjectHeader.decodeObject(bytes[...], key: "wal/17")
        #expect(h == header)
        #expect(r == records)
        for index in [0, 6, 30, bytes.count - 2] {
            var bad = bytes
            bad[index] ^= 1
            #expect(throws: StreamStorageError.self) { _ = try WALObjectHeader.decodeObject(bad[...], key: "wal/17") }
        }
        #expect(throws: StreamStorageError.self) { _ = try WALObjectHeader.decodeObject(bytes.dropLast(3), key: "wal/17") }
    }

    @Test func dataObjectRoundTripWithBlocksAndRangeDecode() throws {
        var rng = TestRandom(seed: 2)
        var builder = DataObjectBuilder(objectID: 42, blockBytes: 1000)
        var expected: [StreamID: [StoredBatch]] = [:]
        for stream in [StreamID(5), 1, 9] {
            var base = Int64(stream) * 1000
            var batches: [StoredBatch] = []
            for _ in 0..<Int.random(in: 1...40, using: &rng) {
                let c = Int32.random(in: 1...10, using: &rng)
                batches.append(batch(base, c, randomBytes(Int.random(in: 1...200, using: &rng), &rng)))
                base += Int64(c)
            }
            builder.add(stream: stream, batches: batches)
            expected[stream] = batches
        }
        let index = builder.index
        let bytes = builder.finish()
        // Whole-object decode.
        var got: [StreamID: [StoredBatch]] = [:]
        for (entry, batches) in try DataObjectFormat.decodeObject(bytes[...], key: "obj") { got[entry.streamID, default: []] += batches }
        #expect(got == expected)
        // Reader path: footer, then index, then one block by range.
        let footer = try DataObjectFormat.decodeFooter(bytes.suffix(DataObjectFormat.footerSize), key: "obj")
        let p = Int(footer.position)
        let decodedIndex = try DataObjectFormat.decodeIndex(bytes[p..<(p + Int(footer.length))], crc: footer.crc, key: "obj")
        #expect(decodedIndex == index)
        #expect(index.count > 3)  // blocks were cut
        for entry in decodedIndex {
            let s = Int(entry.position)
            let blockBatches = try DataObjectFormat.decodeBlock(bytes[s..<(s + Int(entry.length))], entry: entry, key: "obj")
            #expect(blockBatches.first?.baseOffset == entry.startOffset)
            #expect(blockBatches.last?.endOffset == entry.endOffset)
        }
        var bad = bytes
        bad[Int(index[1].position) + 3] ^= 0x10
        #expect(throws: StreamStorageError.self) { _ = try DataObjectFormat.decodeObject(bad[...], key: "obj") }
    }

    @Test func manifestRoundTripAndCRC() throws {
        var m = Manifest()
        _ = try m.openStream(1, epoch: 3)
        _ = try m.openStream(2, epoch: 1)
        let id = m.prepare(deadlineMillis: 5000)
        let rejected = try m.commitUpload(objectID: id, size: 300, ranges: [
            CommitRange(streamID: 1, epoch: 3, range: ObjectRange(objectID: id, startOffset: 0, endOffset: 10, bytes: 100, maxAppendTimeMillis: 7)),
            CommitRange(streamID: 2, epoch: 0, range: ObjectRange(objectID: id, startOffset: 0, endOffset: 4, bytes: 50, maxAppendTimeMillis: 7)),
        ], nowMillis: 10, graceMillis: 60_000)
        #expect(rejected == [2])
        _ = m.prepare(deadlineMillis: 99)
        m.version = 12
        let bytes = m.encode()
        #expect(try Manifest.decode(bytes[...], key: "m") == m)
        var bad = bytes
        bad[20] ^= 4
        #expect(throws: StreamStorageError.self) { _ = try Manifest.decode(bad[...], key: "m") }
    }

    /// A version-1 manifest (written before objects had a level) still decodes; its objects
    /// come back at level 0, and re-encoding writes version 2.
    @Test func manifestVersion1StillDecodes() throws {
        var w = ByteWriter(capacity: 128)
        w.writeUInt32(0x464C_534D)
        w.writeUInt8(1)
        w.writeUInt64(7)  // manifest version
        w.writeUInt64(9)  // next object id
        w.writeUInt32(1)  // one stream with one range in object 8
        for v: UInt64 in [5, 2] { w.writeUInt64(v) }
        for v: Int64 in [0, 10] { w.writeInt64(v) }
        w.writeUInt32(1)
        w.writeUInt64(8)
        for v: Int64 in [0, 10] { w.writeInt64(v) }
        w.writeUInt64(100)
        w.writeInt64(3)
        w.writeUInt32(1)  // object 8: size 200, one stream, created 4 (no level field)
        w.writeUInt64(8)
        w.writeUInt64(200)
        w.writeUInt32(1)
        w.writeInt64(4)
        w.writeUInt32(0)
        w.writeUInt32(0)
        w.writeUInt32(CRC32C.checksum(w.bytes))
        let m = try Manifest.decode(w.take()[...], key: "v1")
        #expect(m.objects[8] == DataObjectInfo(objectID: 8, size: 200, streamCount: 1, createdMillis: 4, level: 0))
        #expect(m.streams[5]?.ranges.map(\.objectID) == [8])
        #expect(m.encode()[4] == 2)
        #expect(try Manifest.decode(m.encode()[...], key: "v2") == m)
    }
}

@Suite struct ManifestRuleTests {
    func range(_ o: UInt64, _ s: Int64, _ e: Int64, bytes: UInt64 = 10, time: Int64 = 0) -> ObjectRange {
        ObjectRange(objectID: o, startOffset: s, endOffset: e, bytes: bytes, maxAppendTimeMillis: time)
    }

    @Test func fencingContiguityAndIdempotentCommit() throws {
        var m = Manifest()
        _ = try m.openStream(7, epoch: 2)
        #expect(throws: StreamStorageError.fenced(stream: 7, epoch: 1, currentEpoch: 2)) { _ = try m.openStream(7, epoch: 1) }
        let a = m.prepare(deadlineMillis: 100)
        _ = try m.commitUpload(objectID: a, size: 1, ranges: [CommitRange(streamID: 7, epoch: 2, range: range(a, 0, 5))], nowMillis: 0, graceMillis: 10)
        // Retrying the same commit is a no-op.
        _ = try m.commitUpload(objectID: a, size: 1, ranges: [CommitRange(streamID: 7, epoch: 2, range: range(a, 0, 5))], nowMillis: 0, graceMillis: 10)
        #expect(m.streams[7]?.endOffset == 5)
        let b = m.prepare(deadlineMillis: 100)
        #expect(throws: StreamStorageError.nonContiguous(stream: 7, expected: 5, got: 6)) {
            _ = try m.commitUpload(objectID: b, size: 1, ranges: [CommitRange(streamID: 7, epoch: 2, range: range(b, 6, 9))], nowMillis: 0, graceMillis: 10)
        }
        #expect(throws: StreamStorageError.fenced(stream: 7, epoch: 1, currentEpoch: 2)) {
            try m.trim(7, epoch: 1, to: 3, nowMillis: 0, graceMillis: 10)
        }
    }

    @Test func trimDeletesWholeObjectsOnlyAfterGrace() throws {
        var m = Manifest()
        _ = try m.openStream(1, epoch: 1)
        for (s, e) in [(Int64(0), Int64(10)), (10, 20), (20, 30)] {
            let id = m.prepare(deadlineMillis: 1000)
            _ = try m.commitUpload(objectID: id, size: 10, ranges: [CommitRange(streamID: 1, epoch: 1, range: range(id, s, e))], nowMillis: 0, graceMillis: 50)
        }
        try m.trim(1, epoch: 1, to: 15, nowMillis: 100, graceMillis: 50)
        #expect(m.streams[1]?.ranges.map(\.objectID) == [2, 3])
        #expect(m.streams[1]?.startOffset == 15)
        #expect(m.deletions == [1: PendingDeletion(deadlineMillis: 150, bytes: 10)])
        #expect(m.dueGarbage(nowMillis: 149) == [])
        #expect(m.dueGarbage(nowMillis: 150) == [1])
        m.forget([1])
        #expect(m.deletions.isEmpty)
        #expect(m.streams[1]?.range(containing: 15)?.objectID == 2)
        #expect(m.streams[1]?.range(containing: 30) == nil)
    }

    @Test func compactionCommitValidatesCoverage() throws {
        var m = Manifest()
        _ = try m.openStream(1, epoch: 1)
        _ = try m.openStream(2, epoch: 1)
        let a = m.prepare(deadlineMillis: 1000)
        _ = try m.commitUpload(objectID: a, size: 10, ranges: [
            CommitRange(streamID: 1, epoch: 1, range: range(a, 0, 10)), CommitRange(streamID: 2, epoch: 1, range: range(a, 0, 4))], nowMillis: 0, graceMillis: 5)
        let b = m.prepare(deadlineMillis: 1000)
        _ = try m.commitUpload(objectID: b, size: 10, ranges: [CommitRange(streamID: 1, epoch: 1, range: range(b, 10, 20))], nowMillis: 0, graceMillis: 5)
        let out = m.prepare(deadlineMillis: 1000)
        let info = DataObjectInfo(objectID: out, size: 20, streamCount: 2, createdMillis: 1)
        var missing = m
        #expect(throws: StreamStorageError.self) {
            try missing.commitCompaction(inputs: [a, b], outputs: [(info, [(1, range(out, 0, 20))])], nowMillis: 1, graceMillis: 5)
        }
        #expect(missing == m)
        try m.commitCompaction(inputs: [a, b], outputs: [(info, [(1, range(out, 0, 20)), (2, range(out, 0, 4))])], nowMillis: 1, graceMillis: 5)
        #expect(m.streams[1]?.ranges == [range(out, 0, 20)])
        #expect(Set(m.deletions.keys) == [a, b])
    }
}

@Suite struct PlannerTests {
    func manifest(_ objects: [(UInt64, UInt64, [(StreamID, UInt64)])]) -> Manifest {
        var m = Manifest()
        var next: [StreamID: Int64] = [:]
        for (id, size, streams) in objects {
            m.objects[id] = DataObjectInfo(objectID: id, size: size, streamCount: UInt32(streams.count), createdMillis: 0)
            for (s, bytes) in streams {
                let start = next[s, default: 0]
                m.streams[s, default: StreamMetadata(streamID: s, epoch: 1)].ranges.append(
                    ObjectRange(objectID: id, startOffset: start, endOffset: start + 10, bytes: bytes, maxAppendTimeMillis: Int64(id)))
                m.streams[s]!.endOffset = start + 10
                next[s] = start + 10
            }
        }
        return m
    }

    @Test func mergesSmallAndSplitsLargeStreams() {
        let policy = CompactionPolicy(splitStreamBytes: 60, maxJobBytes: 1000)
        let m = manifest([(1, 50, [(1, 30), (2, 20)]), (2, 50, [(1, 35), (3, 15)]), (3, 500, [(4, 500)])])
        let jobs = CompactionPlanner.plan(m, policy: policy)
        #expect(jobs == [CompactionJob(inputs: [1, 2], ownObjectStreams: [1], mergedStreams: [2, 3], outputLevel: 1)])
    }

    @Test func singleSmallObjectIsLeftAloneAndJobsAreBounded() {
        let policy = CompactionPolicy(splitStreamBytes: 60, maxJobBytes: 100)
        #expect(CompactionPlanner.plan(manifest([(1, 50, [(1, 30), (2, 20)])]), policy: policy) == [])
        // Objects 1 and 2 are final (one stream, at least 60 bytes); 3 and 4 fit one job.
        let m = manifest([(1, 60, [(1, 10)]), (2, 60, [(2, 10)]), (3, 30, [(1, 10)]), (4, 30, [(2, 10)])])
        let jobs = CompactionPlanner.plan(m, policy: policy)
        #expect(jobs.map(\.inputs) == [[3, 4]])
        let three = manifest([(1, 40, [(1, 10)]), (2, 40, [(2, 10)]), (3, 40, [(1, 10)])])
        let tight = CompactionPlanner.plan(three, policy: policy)
        #expect(tight.map(\.inputs) == [[1, 2]])  // object 3 would pass 100 bytes; alone it waits
        #expect(tight.allSatisfy { j in j.inputs.reduce(UInt64(0)) { $0 + three.objects[$1]!.size } <= 100 })
    }

    @Test func splitsLargeStreamOutOfABigMultiStreamObject() {
        let policy = CompactionPolicy(splitStreamBytes: 60, maxJobBytes: 1000)
        let jobs = CompactionPlanner.plan(manifest([(1, 500, [(1, 450), (2, 50)])]), policy: policy)
        #expect(jobs == [CompactionJob(inputs: [1], ownObjectStreams: [1], mergedStreams: [2], outputLevel: 1)])
    }

    @Test func levelsAreMergedOnlyWithTheirOwnLevelAndNeedEnoughInputs() {
        let policy = CompactionPolicy(splitStreamBytes: 1000, maxJobBytes: 10_000, maxLevel: 3, minMergeInputs: 3)
        var m = manifest([(1, 50, [(1, 10)]), (2, 50, [(2, 10)]), (3, 50, [(3, 10)]), (4, 50, [(4, 10)]), (5, 50, [(5, 10)])])
        for id in [1, 2] as [UInt64] { m.objects[id]!.level = 1 }
        for id in [3, 4] as [UInt64] { m.objects[id]!.level = 2 }
        m.objects[5]!.level = 3
        // Two level-1 objects are not enough at level 1 (3 needed); level 2 likewise; 5 is final.
        #expect(CompactionPlanner.plan(m, policy: policy) == [])
        m.objects[2]!.level = 2
        #expect(CompactionPlanner.plan(m, policy: policy) == [
            CompactionJob(inputs: [2, 3, 4], ownObjectStreams: [], mergedStreams: [2, 3, 4], outputLevel: 3)])
        #expect(CompactionPlanner.plan(m, policy: .disabled) == [])
    }

    @Test func retentionBySizeAndTime() {
        var s = StreamMetadata(streamID: 1, epoch: 1, startOffset: 0, endOffset: 250)
        s.ranges = [
            ObjectRange(objectID: 1, startOffset: 0, endOffset: 100, bytes: 1 << 20, maxAppendTimeMillis: 10),
            ObjectRange(objectID: 2, startOffset: 100, endOffset: 200, bytes: 1 << 20, maxAppendTimeMillis: 20),
            ObjectRange(objectID: 3, startOffset: 200, endOffset: 250, bytes: 1 << 20, maxAppendTimeMillis: 30),
        ]
        #expect(RetentionPlanner.newStartOffset(s, policy: RetentionPolicy(maxBytes: 2 << 20), nowMillis: 0) == 100)
        #expect(RetentionPlanner.newStartOffset(s, policy: RetentionPolicy(maxAgeMillis: 15), nowMillis: 40) == 200)
        #expect(RetentionPlanner.newStartOffset(s, policy: RetentionPolicy(maxAgeMillis: 100), nowMillis: 40) == nil)
        s.startOffset = 150
        #expect(RetentionPlanner.newStartOffset(s, policy: RetentionPolicy(maxBytes: 2 << 20), nowMillis: 0) == nil)
    }
}

@Suite struct LogCacheTests {
    @Test func evictionQueueStaysBoundedUnderTrims() {
        var cache = LogCache(capacityBytes: 1 << 30)
        for i in 0..<20_000 {
            cache.insert(1, batch(Int64(i), 1, [1]), walPosition: UInt64(i + 1))
            cache.markUploaded(1, below: Int64(i + 1))
            cache.trim(1, below: Int64(i))  // keep one entry
        }
        #expect(cache.liveCount == 1)
        #expect(cache.orderLength <= 4 * 256 + 1)
        #expect(cache.read(1, from: 19_999, maxBytes: 10, below: 20_000)?.count == 1)
    }

    @Test func readsEvictsOnlyUploadedAndPins() {
        var cache = LogCache(capacityBytes: 25)
        cache.insert(1, batch(0, 10, Array(repeating: 1, count: 10)), walPosition: 1)
        cache.insert(1, batch(10, 15, Array(repeating: 2, count: 10)), walPosition: 2)
        cache.insert(2, batch(0, 1, Array(repeating: 3, count: 10)), walPosition: 3)
        // Over capacity but everything is pinned: nothing evicted.
        #expect(cache.totalBytes == 30)
        #expect(cache.read(1, from: 12, maxBytes: 1, below: 100)?.map(\.baseOffset) == [10])
        #expect(cache.read(1, from: 5, maxBytes: 100, below: 100)?.map(\.baseOffset) == [0, 10])
        #expect(cache.read(1, from: 5, maxBytes: 100, below: 10)?.map(\.baseOffset) == [0])
        #expect(cache.pending(upTo: 2).mapValues { $0.map(\.batch.baseOffset) } == [1: [0, 10]])
        cache.markUploaded(1, below: 10)
        #expect(cache.totalBytes == 20)
        #expect(cache.read(1, from: 5, maxBytes: 100, below: 100) == nil)
        #expect(cache.pinnedBytes == 20)
        #expect(cache.read(1, from: 25, maxBytes: 100, below: 100) == [])
    }
}

@Suite struct DataObjectCapacityTests {
    /// The capacity estimate bounds the built object from above, tightly: the builder's buffer
    /// never regrows (a regrow doubles a 32 MiB upload's memory for a moment).
    @Test func capacityBoundsTheBuiltObject() {
        var rng = TestRandom(seed: 42)
        for round in 0..<200 {
            let blockBytes = [1, 64, 1000, 4096, 65_536][round % 5]
            let runCount = Int.random(in: 1...6, using: &rng)
            var builder = DataObjectBuilder(objectID: UInt64(round), blockBytes: blockBytes, capacity: 16)
            var sizes: [[Int]] = []
            for stream in 0..<runCount {
                let lengths = (0..<Int.random(in: 1...40, using: &rng)).map { _ in Int.random(in: 0...3000, using: &rng) }
                var base: Int64 = 0
                let batches = lengths.map { length -> StoredBatch in
                    defer { base += 1 }
                    return batch(base, 1, randomBytes(length, &rng))
                }
                builder.add(stream: UInt64(stream), batches: batches)
                sizes.append(lengths)
            }
            let bytes = builder.finish()
            let capacity = DataObjectBuilder.capacity(runs: sizes, blockBytes: blockBytes)
            #expect(bytes.count <= capacity, "round \(round): \(bytes.count) bytes > capacity \(capacity)")
            // At most one block per run is counted that the builder did not need.
            #expect(capacity - bytes.count <= runCount * DataBlockEntry.size, "round \(round): slack \(capacity - bytes.count)")
        }
    }
}
