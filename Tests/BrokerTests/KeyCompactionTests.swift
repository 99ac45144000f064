import FloeTestSupport
import Foundation
import KafkaProtocol
import ObjectStore
import StreamStorage
import Support
import Testing
@testable import Broker

/// A stored batch as the produce path keeps it: the producer's bytes (base offset 0 inside)
/// at the stream's `base`; `records` are (key, value), timestamps `t0 + i`.
private func stored(_ base: Int64, _ records: [(String?, String?)], t0: Int64 = 1_000, control: Bool = false) throws -> StoredBatch {
    var b = RecordBatchBuilder(baseTimestamp: t0)
    b.isControl = control
    b.isTransactional = control
    for (i, (k, v)) in records.enumerated() {
        b.append(timestamp: t0 + Int64(i), key: k.map { Array($0.utf8) }, value: v.map { Array($0.utf8) })
    }
    let bytes = try b.build()
    return StoredBatch(baseOffset: base, recordCount: Int32(records.count), appendTimeMillis: 5, bytes: bytes[...])
}

/// (offset, key, value, timestamp) of every record of `batches`, checking each batch's CRC.
private func contents(_ batches: [StoredBatch]) throws -> [(Int64, String?, String?, Int64)] {
    var out: [(Int64, String?, String?, Int64)] = []
    for s in batches {
        let b = try RecordBatch(unverified: s.bytes)
        try b.verifyCRC()  // (not validate(): a compacted batch has fewer records than lastOffsetDelta + 1)
        for r in try b.records() {
            out.append((s.baseOffset + Int64(r.offsetDelta), r.key.map { String(decoding: $0, as: UTF8.self) },
                        r.value.map { String(decoding: $0, as: UTF8.self) }, b.timestamp(of: r)))
        }
    }
    return out
}

@Suite struct KeyCleanerTests {
    @Test func keepsTheNewestRecordPerKeyAtItsOffset() throws {
        let input = [try stored(0, [("k1", "a"), ("k2", "b"), ("k3", "c")]),
                     try stored(3, [("k1", "d"), ("k4", "e")])]
        let r = try KeyCleaner.clean(input, nowMillis: 10_000, deleteRetentionMillis: 500)
        #expect(r.recordsRemoved == 1 && r.nextDeleteHorizon == nil)
        let got = try contents(r.batches).map { "\($0.0):\($0.1!)=\($0.2!)" }
        #expect(got == ["1:k2=b", "2:k3=c", "3:k1=d", "4:k4=e"])
        // Offsets and spans are kept: the first batch still covers 0...2 (lastOffsetDelta 2).
        #expect(r.batches.map(\.baseOffset) == [0, 3] && r.batches.map(\.recordCount) == [3, 2])
        #expect(try RecordBatch(unverified: r.batches[0].bytes).header.lastOffsetDelta == 2)
        #expect(try RecordBatch(unverified: r.batches[0].bytes).header.recordCount == 2)
        // The untouched batch keeps its bytes.
        #expect(r.batches[1].bytes == input[1].bytes)
        // Timestamps are kept.
        #expect(try contents(r.batches).map(\.3) == [1_001, 1_002, 1_000, 1_001])
    }

    @Test func tombstonesGetADeleteHorizonAndGoAfterIt() throws {
        let input = [try stored(0, [("k1", "a"), ("k2", "b")]), try stored(2, [("k1", nil), ("k3", "c")])]
        let first = try KeyCleaner.clean(input, nowMillis: 10_000, deleteRetentionMillis: 500)
        #expect(first.nextDeleteHorizon == 10_500)
        let header = try RecordBatch(unverified: first.batches[1].bytes).header
        #expect(header.attributes.hasDeleteHorizon && header.baseTimestamp == 10_500)
        #expect(try contents(first.batches).map { "\($0.1!)=\($0.2 ?? "null")@\($0.3)" } == ["k2=b@1001", "k1=null@1000", "k3=c@1001"])
        // Before the horizon: unchanged (nothing to rewrite).
        let again = try KeyCleaner.clean(first.batches, nowMillis: 10_499, deleteRetentionMillis: 500)
        #expect(again.batches == first.batches && again.recordsRemoved == 0 && again.nextDeleteHorizon == 10_500)
        // After it: the tombstone is gone, the rest stays.
        let later = try KeyCleaner.clean(first.batches, nowMillis: 10_500, deleteRetentionMillis: 500)
        #expect(later.recordsRemoved == 1 && later.nextDeleteHorizon == nil)
        #expect(try contents(later.batches).map { "\($0.0):\($0.1!)=\($0.2!)" } == ["1:k2=b", "3:k3=c"])
    }

    @Test func keylessRecordsGoControlBatchesStayAndTheLastBatchIsKeptEmpty() throws {
        let control = try stored(2, [("\u{0}\u{0}\u{0}\u{1}", "marker")], control: true)
        let input = [try stored(0, [(nil, "x"), ("k", "a")]), control, try stored(3, [("k", "b")]), try stored(4, [("k", nil)])]
        // The tombstone's horizon has passed already (it was set by an earlier cleaning).
        let withHorizon = try KeyCleaner.clean(input, nowMillis: 0, deleteRetentionMillis: 0)
        let r = try KeyCleaner.clean(withHorizon.batches, nowMillis: 1, deleteRetentionMillis: 0)
        #expect(r.batches.map(\.baseOffset) == [2, 4], "batches: \(r.batches.map(\.baseOffset))")
        #expect(r.batches[0].bytes == control.bytes)
        let last = try RecordBatch(unverified: r.batches[1].bytes)
        try last.verifyCRC()
        #expect(last.header.recordCount == 0 && last.header.lastOffsetDelta == 0 && r.batches[1].recordCount == 1)
    }
}

extension KeyCleanerTests {
    /// An idempotent producer's last batch stays (empty) even when all its records are
    /// superseded, so its sequence numbers survive a rebuild of the producer state.
    @Test func theLastBatchOfEachProducerIsKept() throws {
        func batch(_ base: Int64, producer: Int64, sequence: Int32, _ records: [(String, String)]) throws -> StoredBatch {
            var b = RecordBatchBuilder(baseTimestamp: 1)
            b.producerId = producer
            b.producerEpoch = 0
            b.baseSequence = sequence
            for (k, v) in records { b.append(timestamp: 1, key: Array(k.utf8), value: Array(v.utf8)) }
            let bytes = try b.build()
            return StoredBatch(baseOffset: base, recordCount: Int32(records.count), appendTimeMillis: 1, bytes: bytes[...])
        }
        let input = [try batch(0, producer: 7, sequence: 0, [("k", "a")]), try batch(1, producer: 7, sequence: 1, [("k", "b")]),
                     try batch(2, producer: 8, sequence: 0, [("k", "c")]), try batch(3, producer: 8, sequence: 1, [("j", "d")])]
        let r = try KeyCleaner.clean(input, nowMillis: 1, deleteRetentionMillis: 0)
        #expect(r.batches.map(\.baseOffset) == [1, 2, 3], "batches \(r.batches.map(\.baseOffset))")
        let kept = try RecordBatch(unverified: r.batches[0].bytes)
        #expect(kept.header.recordCount == 0 && kept.header.producerId == 7 && kept.header.baseSequence == 1)
        #expect(try contents(r.batches).map { "\($0.0):\($0.1!)" } == ["2:k", "3:j"])
    }
}

@Suite struct KeyCompactorPlanTests {
    func state(_ ranges: [(Int64, Int64, UInt64, Int64)], cleanedEnd: Int64) -> KeyCleaningState {
        KeyCleaningState(epoch: 1, startOffset: 0, ranges: ranges.map {
            ObjectRange(objectID: UInt64($0.0), startOffset: $0.0, endOffset: $0.1, bytes: $0.2, maxAppendTimeMillis: $0.3)
        }, cleanedEnd: cleanedEnd)
    }

    @Test func dirtyRatioLagsAndHorizons() {
        var settings = KeyCompactor.TopicSettings()
        // 100 clean bytes, 60 dirty: ratio 0.375 < 0.5.
        let s = state([(0, 10, 100, 1_000), (10, 20, 60, 2_000)], cleanedEnd: 10)
        #expect(KeyCompactor.plan(s, settings: settings, nowMillis: 5_000, horizonDue: false, firstLook: false) == nil)
        settings.minCleanableDirtyRatio = 0.3
        #expect(KeyCompactor.plan(s, settings: settings, nowMillis: 5_000, horizonDue: false, firstLook: false) == 20)
        // min.compaction.lag.ms keeps the young range out: nothing dirty is cleanable.
        settings.minCompactionLagMillis = 4_000
        #expect(KeyCompactor.plan(s, settings: settings, nowMillis: 5_000, horizonDue: false, firstLook: false) == nil)
        // max.compaction.lag.ms forces a cleaning below the ratio.
        settings = KeyCompactor.TopicSettings()
        settings.maxCompactionLagMillis = 2_500
        #expect(KeyCompactor.plan(s, settings: settings, nowMillis: 5_000, horizonDue: false, firstLook: false) == 20)
        // Nothing dirty: only a due tombstone horizon (or a first look) cleans the prefix again.
        let clean = state([(0, 10, 100, 1_000)], cleanedEnd: 10)
        settings = KeyCompactor.TopicSettings()
        #expect(KeyCompactor.plan(clean, settings: settings, nowMillis: 5_000, horizonDue: false, firstLook: false) == nil)
        #expect(KeyCompactor.plan(clean, settings: settings, nowMillis: 5_000, horizonDue: true, firstLook: false) == 10)
        #expect(KeyCompactor.plan(clean, settings: settings, nowMillis: 5_000, horizonDue: false, firstLook: true) == 10)
    }
}

@Suite struct KeyCompactionStoreTests {
    /// Random updates and deletes over a few keys, uploaded and cleaned round after round: a
    /// reader always sees the newest value of every key, offsets never move, and once data
    /// stops, repeated cleaning writes nothing (convergence).
    @Test(arguments: [1, 2, 3] as [UInt64]) func convergesAndKeepsTheNewestValueOfEveryKey(seed: UInt64) async throws {
        let bucket = MemoryObjectStore()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("floe-keycompaction-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let clock = RealClock()
        let store = try await StreamStore.open(wal: try await FileWAL.open(directory: dir),
                                               metadata: BucketMetadataStore(store: bucket, prefix: "m/", clock: clock),
                                               objects: bucket, clock: clock)
        let stream = try await store.open(1, epoch: 1)
        let registry = MetricsRegistry()
        let compactor = KeyCompactor(metrics: registry)
        var settings = KeyCompactor.TopicSettings()
        settings.deleteRetentionMillis = 0
        settings.minCleanableDirtyRatio = 0.2
        var rng = TestRandom(seed: seed)
        var newest: [String: String?] = [:]
        var appended = 0
        var written = 0
        for round in 0..<12 {
            for b in 0..<Int(rng.next() % 6 + 1) {
                var records: [(String?, String?)] = []
                for i in 0..<Int(rng.next() % 8 + 1) {
                    let key = "k\(rng.next() % 20)"
                    let value: String? = rng.next() % 7 == 0 ? nil : "v\(round)-\(b)-\(i)"
                    records.append((key, value))
                    newest[key] = value
                }
                let batch = try stored(0, records)
                appended += batch.bytes.count
                _ = try await stream.append(Array(batch.bytes), recordCount: Int32(records.count))
            }
            try await store.uploadNow()
            let o = try await compactor.clean(stream, topic: "t", partition: 0, settings: settings, nowMillis: Int64(Date().timeIntervalSince1970 * 1000) + 1)
            written += o.writtenBytes
        }
        let end = stream.endOffset
        // Once nothing new arrives: a cleaning may finish the tail and one more drops its
        // tombstones (retention 0); after that nothing is written.
        settings.minCleanableDirtyRatio = 0
        _ = try await compactor.clean(stream, topic: "t", partition: 0, settings: settings, nowMillis: Int64(Date().timeIntervalSince1970 * 1000) + 1)
        _ = try await compactor.clean(stream, topic: "t", partition: 0, settings: settings, nowMillis: Int64(Date().timeIntervalSince1970 * 1000) + 1)
        let objects = try await bucket.listAll(prefix: "streams/data/").count
        for _ in 0..<4 {
            let o = try await compactor.clean(stream, topic: "t", partition: 0, settings: settings, nowMillis: Int64(Date().timeIntervalSince1970 * 1000) + 1)
            #expect(o.writtenBytes == 0, "seed \(seed): a converged partition was rewritten (\(o.writtenBytes) bytes)")
        }
        #expect(try await bucket.listAll(prefix: "streams/data/").count == objects)
        #expect(stream.startOffset == 0 && stream.endOffset == end)
        // What a consumer from the beginning sees: one record per live key, its newest value;
        // deleted keys (tombstones past their zero retention) are gone.
        var seen: [(Int64, String?, String?, Int64)] = []
        var offset: Int64 = 0
        while offset < end {
            let batches = try await stream.read(from: offset, maxBytes: 1 << 20)
            seen += try contents(batches).filter { $0.0 >= offset }
            offset = batches.last!.endOffset
        }
        let live = newest.compactMapValues { $0 }
        #expect(Dictionary(seen.map { ($0.1!, $0.2 ?? "null") }, uniquingKeysWith: { a, _ in a + "+dup" }) == live,
                "seed \(seed): reader saw \(seen.map { "\($0.1!)=\($0.2 ?? "null")" })")
        #expect(registry.counter("floe_cleaner_records_removed_total", help: "").value > 0)
        #expect(written > 0 && appended > 0)
        try await store.close()
    }
}

@Suite struct KeyCompactionOwnershipTests {
    func openStore(_ bucket: MemoryObjectStore) async throws -> StreamStore {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("floe-keycompaction-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return try await StreamStore.open(wal: try await FileWAL.open(directory: dir),
                                          metadata: BucketMetadataStore(store: bucket, prefix: "m/", clock: RealClock()),
                                          objects: bucket, clock: RealClock())
    }

    /// Two brokers on one bucket: the partition moves from A to B. A's cleaner (a stale owner)
    /// is refused by the epoch and changes nothing; B cleans, and nothing acknowledged is lost.
    @Test func onlyTheCurrentOwnerCleansAndAMoveLosesNothing() async throws {
        let bucket = MemoryObjectStore()
        let a = try await openStore(bucket)
        let b = try await openStore(bucket)
        let sa = try await a.open(1, epoch: 1)
        for round in 0..<6 {
            _ = try await sa.append(Array(try stored(0, [("x", "x\(round)"), ("y", "y\(round)"), ("z", "z\(round)")]).bytes), recordCount: 3)
        }
        try await a.uploadNow()
        try await sa.close()  // the hand-over
        let sb = try await b.open(1, epoch: 2)
        let now = Int64(Date().timeIntervalSince1970 * 1000) + 1
        await #expect(throws: StreamStorageError.self) {
            _ = try await KeyCompactor(metrics: nil).clean(sa, topic: "t", partition: 0, settings: KeyCompactor.TopicSettings(), nowMillis: now)
        }
        let manifest = try await BucketMetadataStore(store: bucket, prefix: "m/", clock: RealClock()).latest()
        #expect(manifest.streams[1]?.ranges.allSatisfy { manifest.objects[$0.objectID]?.level == 0 } == true,
                "the stale owner's rewrite was committed")
        let o = try await KeyCompactor(metrics: nil).clean(sb, topic: "t", partition: 0, settings: KeyCompactor.TopicSettings(), nowMillis: now)
        #expect(o.writtenBytes > 0 && o.recordsRemoved == 15)
        let got = try contents(try await sb.read(from: 0, maxBytes: 1 << 20)).map { "\($0.0):\($0.1!)=\($0.2!)" }
        #expect(got == ["15:x=x5", "16:y=y5", "17:z=z5"])
        #expect(sb.startOffset == 0 && sb.endOffset == 18)
        try await a.close()
        try await b.close()
    }
}

@Suite struct KeylessProduceTests {
    @Test func keylessRecordsAreRefusedOnCompactedTopicsOnly() async throws {
        let h = try await Harness.make()
        _ = try await h.createTopic("compacted", configs: ["cleanup.policy": "compact,delete"])
        _ = try await h.createTopic("plain")
        var b = RecordBatchBuilder(baseTimestamp: 1)
        b.append(timestamp: 1, key: Array("k".utf8), value: [1])
        b.append(timestamp: 1, key: nil, value: [2])
        let keyless = try b.build()
        let refused = try #require(try await h.produce("compacted", batch: keyless))
        #expect(refused.errorCode == KafkaErrorCode.invalidRecord.rawValue, "error \(refused.errorCode)")
        let accepted = try #require(try await h.produce("plain", batch: keyless))
        #expect(accepted.errorCode == 0)
        let keyed = try #require(try await h.produce("compacted", batch: try makeBatch(count: 3)))
        #expect(keyed.errorCode == 0 && keyed.baseOffset == 0)
    }
}
