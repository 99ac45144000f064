import FloeTestSupport
import Foundation
import ObjectStore
import Support
import Testing
@testable import StreamStorage

/// `Stream.rewrite` (key compaction's storage half): offsets preserved, gaps readable from every
/// read path, fenced commits, nothing written when nothing changes.
@Suite struct KeyRewriteTests {
    /// Appends `count` batches of 2 records each ("b<i>"), base offsets 0, 2, 4, …
    func fill(_ s: StreamStorage.Stream, from first: Int, count: Int) async throws {
        for i in first..<(first + count) { _ = try await s.append(Array("b\(i)".utf8), recordCount: 2) }
    }

    func dataObjects(_ bucket: MemoryObjectStore, _ h: Harness) async throws -> Int {
        try await bucket.listAll(prefix: h.config.dataPrefix).count
    }

    @Test func rewriteKeepsOffsetsAndEveryReadPathSkipsGaps() async throws {
        let bucket = MemoryObjectStore()
        let harness = Harness(objects: bucket, walKind: .file, small: false)
        let store = try await harness.open()
        let s = try await store.open(1, epoch: 1)
        try await fill(s, from: 0, count: 10)  // offsets 0..<20
        try await store.uploadNow()
        try await fill(s, from: 10, count: 2)  // 20..<24, only in the WAL and the log cache
        // Before: the uploaded batches are still in the log cache too (the hot read path).
        #expect(try await s.read(from: 0, maxBytes: 1).map(\.baseOffset) == [0])
        let state = try await s.cleaningState()
        #expect(state.cleanedEnd == 0 && state.ranges.map(\.endOffset) == [20] && state.dirtyBytes > 0)
        let keep: Set<Int64> = [2, 6, 10, 18]
        let outcome = try await s.rewrite(through: 20) { batches in batches.filter { keep.contains($0.baseOffset) } }
        #expect(outcome?.committed == true && (outcome?.writtenBytes ?? 0) > 0)
        #expect(s.startOffset == 0 && s.endOffset == 24, "offsets unchanged: start \(s.startOffset), end \(s.endOffset)")
        // Gaps: an offset in a removed batch reads the next batch kept (the cache no longer
        // serves the replaced batches).
        for (from, want) in [(0, 2), (1, 2), (3, 2), (4, 6), (7, 6), (8, 10), (11, 10), (12, 18), (19, 18), (20, 20), (23, 22)] as [(Int64, Int64)] {
            let got = try await s.read(from: from, maxBytes: 1).first?.baseOffset
            #expect(got == want, "read from \(from): first batch \(String(describing: got)), expected \(want)")
        }
        #expect(try await s.read(from: 0, maxBytes: 1 << 20).map(\.baseOffset) == [2, 6, 10, 18])
        #expect(try await s.cleaningState().cleanedEnd == 20)
        // Cold path: a fresh store reads the rewritten object through the block cache.
        try await s.close()
        try await store.close()
        let other = try await Harness(objects: bucket, walKind: .file, small: false).open()
        let s2 = try await other.open(1, epoch: 2)
        #expect(try await s2.read(from: 4, maxBytes: 1 << 20).map(\.baseOffset) == [6, 10, 18])  // one object per read
        #expect(try await s2.read(from: 19, maxBytes: 1 << 20).map(\.baseOffset) == [18])
        #expect(try await s2.read(from: 20, maxBytes: 1 << 20).map(\.baseOffset) == [20, 22])
        #expect(try await s2.read(from: 13, maxBytes: 1).map { Array($0.bytes) } == [Array("b9".utf8)])
        try await other.close()
    }

    @Test func gapsAcrossBlocksOfTheOffsetIndex() async throws {
        let bucket = MemoryObjectStore()
        let harness = Harness(objects: bucket, walKind: .file)  // 200-byte blocks, small caches
        let store = try await harness.open()
        let s = try await store.open(3, epoch: 1)
        for i in 0..<60 { _ = try await s.append(Array(repeating: UInt8(i), count: 40), recordCount: 1) }
        try await store.uploadNow()
        // Keep every tenth batch: whole blocks disappear between the kept ones.
        _ = try await s.rewrite(through: 60) { $0.filter { $0.baseOffset % 10 == 9 } }
        for from in stride(from: Int64(0), to: 60, by: 1) {
            let want = (from / 10) * 10 + 9
            #expect(try await s.read(from: from, maxBytes: 1).first?.baseOffset == want, "read from \(from)")
        }
        try await store.close()
    }

    @Test func aTrailingGapContinuesAtTheNextRange() async throws {
        let bucket = MemoryObjectStore()
        let harness = Harness(objects: bucket, walKind: .file, small: false)
        let store = try await harness.open()
        let s = try await store.open(2, epoch: 1)
        try await fill(s, from: 0, count: 5)  // 0..<10
        try await store.uploadNow()
        try await fill(s, from: 5, count: 5)  // 10..<20
        try await store.uploadNow()
        // Only the first batch of the first range stays: 2..<10 is a gap at the range's end.
        _ = try await s.rewrite(through: 10) { batches in [batches[0]] }
        #expect(try await s.read(from: 4, maxBytes: 1).first?.baseOffset == 10)
        #expect(try await s.read(from: 0, maxBytes: 1 << 20).first?.baseOffset == 0)
        try await store.close()
    }

    @Test func unchangedPrefixIsNotRewrittenAgain() async throws {
        let bucket = MemoryObjectStore()
        let harness = Harness(objects: bucket, walKind: .file, small: false)
        let store = try await harness.open()
        let s = try await store.open(1, epoch: 1)
        try await fill(s, from: 0, count: 10)
        try await store.uploadNow()
        let first = try await s.rewrite(through: 20) { $0.filter { $0.baseOffset >= 10 } }
        #expect(first?.committed == true)
        let manifest = try await store.metadata.latest()
        let objects = try await dataObjects(bucket, harness)
        for _ in 0..<3 {
            let again = try await s.rewrite(through: 20) { $0.filter { $0.baseOffset >= 10 } }
            #expect(again?.committed == false && again?.writtenBytes == 0)
        }
        #expect(try await dataObjects(bucket, harness) == objects, "an unchanged prefix wrote an object")
        #expect(try await store.metadata.latest().version == manifest.version, "an unchanged prefix changed the manifest")
        try await store.close()
    }

    @Test func rewriteIsFencedAndReplacedObjectsGoOnlyAfterTheCommit() async throws {
        let bucket = MemoryObjectStore()
        let harness = Harness(objects: bucket, walKind: .file, small: false)
        let store = try await harness.open()
        let s = try await store.open(1, epoch: 1)
        try await fill(s, from: 0, count: 4)
        try await store.uploadNow()
        let before = try await store.metadata.latest()
        // The owner moved: the new epoch fences the old handle's rewrite, which commits nothing.
        let s2 = try await store.open(1, epoch: 2)
        await #expect(throws: StreamStorageError.fenced(stream: 1, epoch: 1, currentEpoch: 2)) {
            _ = try await s.rewrite(through: 8) { [$0.last!] }
        }
        let after = try await store.metadata.latest()
        #expect(after.streams[1]?.ranges == before.streams[1]?.ranges)
        // A failed commit (an invalid result) leaves the old object referenced and in the bucket.
        await #expect(throws: StreamStorageError.self) { _ = try await s2.rewrite(through: 8) { _ in [] } }
        let old = before.streams[1]!.ranges[0].objectID
        #expect(try await store.metadata.latest().objects[old] != nil)
        _ = try await s2.rewrite(through: 8) { [$0.last!] }
        let m = try await store.metadata.latest()
        #expect(m.objects[old] == nil && m.deletions[old] != nil, "the replaced object is scheduled for deletion")
        #expect(m.objects[m.streams[1]!.ranges[0].objectID]?.level == CompactionPolicy.keyCleanedLevel)
        // Object compaction never takes a key-compacted object as input.
        #expect(CompactionPlanner.plan(m, policy: CompactionPolicy(splitStreamBytes: 1 << 30)).allSatisfy { !$0.inputs.contains(m.streams[1]!.ranges[0].objectID) })
        try await store.close()
    }

    @Test func gappedDataObjectsAreVersion2AndRoundTrip() throws {
        var plain = DataObjectBuilder(objectID: 1, blockBytes: 64)
        plain.add(stream: 1, batches: [StoredBatch(baseOffset: 0, recordCount: 2, appendTimeMillis: 1, bytes: [1, 2][...])])
        let plainBytes = plain.finish()
        #expect(plainBytes[4] == 1 && plainBytes[plainBytes.count - 8] == 1)
        var gapped = DataObjectBuilder(objectID: 2, blockBytes: 64, allowGaps: true)
        let batches = [StoredBatch(baseOffset: 0, recordCount: 2, appendTimeMillis: 1, bytes: [1][...]),
                       StoredBatch(baseOffset: 5, recordCount: 1, appendTimeMillis: 2, bytes: [2][...]),
                       StoredBatch(baseOffset: 9, recordCount: 3, appendTimeMillis: 3, bytes: [3][...])]
        gapped.add(stream: 7, batches: batches)
        let bytes = gapped.finish()
        #expect(bytes[4] == 2 && bytes[bytes.count - 8] == 2)
        let decoded = try DataObjectFormat.decodeObject(bytes[...], key: "k")
        #expect(decoded.flatMap(\.1) == batches)
        #expect(decoded.first?.0.startOffset == 0 && decoded.last?.0.endOffset == 12)
    }
}
