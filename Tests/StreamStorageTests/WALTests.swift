import Bytes
import Foundation
import ObjectStore
import Support
import Synchronization
import Testing
@testable import StreamStorage

func temporaryDirectory(_ name: String) -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("floe-\(name)-\(UUID().uuidString)")
    try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

func record(_ stream: StreamID, _ base: Int64, _ payload: String, epoch: UInt64 = 1) -> WALRecord {
    WALRecord(streamID: stream, epoch: epoch, batch: StoredBatch(baseOffset: base, recordCount: 1, appendTimeMillis: 5, bytes: Array(payload.utf8)[...]))
}

func appendAll(_ wal: any WriteAheadLog, _ records: [WALRecord]) async throws -> [WALPosition] {
    var tickets: [WALAppendTicket] = []
    for r in records {
        try await wal.reserve(bytes: r.encodedSize)
        tickets.append(try wal.append(r))
    }
    var positions: [WALPosition] = []
    for t in tickets { positions.append(try await t.wait()) }
    return positions
}

@Suite struct FileWALTests {
    @Test func appendsRecoverInOrderAndContinuePositions() async throws {
        let dir = temporaryDirectory("filewal")
        defer { try? FileManager.default.removeItem(at: dir) }
        let wal = try await FileWAL.open(directory: dir, config: FileWAL.Config(segmentBytes: 300))
        #expect(wal.recovered.isEmpty)
        let records = (0..<40).map { record(UInt64($0 % 3), Int64($0), "payload-\($0)") }
        var positions: [WALPosition] = []
        for r in records { positions += try await appendAll(wal, [r]) }  // one write each, so segments roll
        #expect(positions == Array(1...40))
        try await wal.close()
        let again = try await FileWAL.open(directory: dir)
        #expect(again.recovered.map(\.0) == Array(1...40))
        #expect(again.recovered.map(\.1) == records)
        #expect(try FileWAL.listSegments(dir).count > 2)  // segments rolled
        let more = try await appendAll(again, [record(1, 100, "after")])
        #expect(more == [41])
        // Trimming deletes whole segments only.
        try await again.trim(through: 20)
        try await again.close()
        let third = try await FileWAL.open(directory: dir)
        #expect(third.recovered.first!.0 <= 21)
        #expect(third.recovered.last!.0 == 41)
        #expect(third.recovered.contains { $0.0 == 21 })
        try await third.close()
    }

    @Test func secondWriterOnTheSameDirectoryIsRefused() async throws {
        let dir = temporaryDirectory("filewal-lock")
        defer { try? FileManager.default.removeItem(at: dir) }
        let wal = try await FileWAL.open(directory: dir)
        await #expect(throws: StreamStorageError.self) { _ = try await FileWAL.open(directory: dir) }
        await wal.abandon()
        let again = try await FileWAL.open(directory: dir)
        try await again.close()
    }

    @Test func tornTailIsCutAndEarlierRecordsSurvive() async throws {
        let dir = temporaryDirectory("filewal-torn")
        defer { try? FileManager.default.removeItem(at: dir) }
        let wal = try await FileWAL.open(directory: dir)
        _ = try await appendAll(wal, (0..<5).map { record(1, Int64($0), "r\($0)") })
        try await wal.close()
        let segment = try FileWAL.listSegments(dir).last!.1
        let handle = try FileHandle(forWritingTo: segment)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data([0, 0, 0, 90, 1, 2, 3]))  // a record cut short
        try handle.close()
        let again = try await FileWAL.open(directory: dir)
        #expect(again.recovered.count == 5)
        _ = try await appendAll(again, [record(1, 5, "r5")])
        try await again.close()
        let third = try await FileWAL.open(directory: dir)
        #expect(third.recovered.map(\.1.batch.baseOffset) == [0, 1, 2, 3, 4, 5])
        try await third.close()
    }

    @Test func corruptSealedSegmentIsAnError() async throws {
        let dir = temporaryDirectory("filewal-corrupt")
        defer { try? FileManager.default.removeItem(at: dir) }
        let wal = try await FileWAL.open(directory: dir, config: FileWAL.Config(segmentBytes: 100))
        for i in 0..<6 { _ = try await appendAll(wal, [record(1, Int64(i), String(repeating: "x", count: 40))]) }
        try await wal.close()
        let first = try FileWAL.listSegments(dir).first!.1
        var bytes = try [UInt8](Data(contentsOf: first))
        bytes[WALSegmentHeader.size + 20] ^= 0xFF
        try Data(bytes).write(to: first)
        await #expect(throws: StreamStorageError.self) { _ = try await FileWAL.open(directory: dir) }
    }
}

extension FileWALTests {
    /// Appends each record in its own write, so a small `segmentBytes` rolls often.
    func appendOneByOne(_ wal: FileWAL, _ records: [WALRecord]) async throws -> [WALPosition] {
        var positions: [WALPosition] = []
        for r in records { positions += try await appendAll(wal, [r]) }
        return positions
    }

    func inode(_ url: URL) throws -> UInt64 {
        (try FileManager.default.attributesOfItem(atPath: url.path)[.systemFileNumber] as! NSNumber).uint64Value
    }

    @Test func trimmedSegmentsAreRecycledAndTheirOldRecordsNeverReplay() async throws {
        let dir = temporaryDirectory("filewal-recycle")
        defer { try? FileManager.default.removeItem(at: dir) }
        // Records of one size (91 bytes), written first into segments of 11 records, later
        // into the same files as segments of 5: the 6 old records after the 5 new ones start
        // exactly where a new record would. Without the salt they verify, and recovery would
        // replay them (or find the next segment starting 6 positions early).
        let rec = { (i: Int) in record(1, Int64(i), "p" + String(format: "%05d", i) + String(repeating: "x", count: 40)) }
        let opened = try await FileWAL.open(directory: dir, config: FileWAL.Config(segmentBytes: 1000, spareSegments: 2))
        var written: [WALPosition: WALRecord] = [:]
        let first = (0..<60).map(rec)
        for (p, r) in zip(try await appendOneByOne(opened, first), first) { written[p] = r }
        #expect(try FileWAL.listSegments(dir).count == 6)
        try await opened.trim(through: 50)
        try await opened.close()  // the writer trims before it stops
        let spares = try FileWAL.listSegments(dir, suffix: ".spare")
        #expect(spares.count == 2)  // four segments trimmed: two kept, two deleted
        #expect(try FileWAL.listSegments(dir).count == 2)
        let spareInodes = Set(try spares.map { try inode($0.1) })

        let wal = try await FileWAL.open(directory: dir, config: FileWAL.Config(segmentBytes: 400, spareSegments: 2))
        let second = (60..<74).map(rec)
        for (p, r) in zip(try await appendOneByOne(wal, second), second) { written[p] = r }
        #expect(try FileWAL.listSegments(dir, suffix: ".spare").isEmpty)
        let segmentInodes = Set(try FileWAL.listSegments(dir).map { try inode($0.1) })
        #expect(segmentInodes.isSuperset(of: spareInodes))  // the spares became segments
        try await wal.close()

        let again = try await FileWAL.open(directory: dir)
        #expect(again.recovered.map(\.0) == Array(45...74))
        for (p, r) in again.recovered { #expect(written[p] == r, "position \(p)") }
        #expect(try await appendAll(again, [rec(75)]) == [75])
        try await again.close()
    }

    @Test func versionOneSegmentsStillRecover() async throws {
        let dir = temporaryDirectory("filewal-v1")
        defer { try? FileManager.default.removeItem(at: dir) }
        // A segment as brokers before version 2 wrote it: a 17-byte header, unsalted CRCs.
        var w = ByteWriter(capacity: 64)
        w.writeUInt32(0x464C_5753)
        w.writeUInt8(1)
        w.writeUInt64(7)
        w.writeUInt32(CRC32C.checksum(w.bytes))
        let records = (0..<3).map { record(2, Int64($0), "old-\($0)") }
        for r in records { r.encode(into: &w) }
        try Data(w.take()).write(to: dir.appendingPathComponent(FileWAL.segmentName(7)))
        let wal = try await FileWAL.open(directory: dir)
        #expect(wal.recovered.map(\.0) == [7, 8, 9])
        #expect(wal.recovered.map(\.1) == records)
        #expect(try await appendAll(wal, [record(2, 3, "new")]) == [10])
        try await wal.close()
        let again = try await FileWAL.open(directory: dir)
        #expect(again.recovered.map(\.0) == [7, 8, 9, 10])
        try await again.close()
    }

    @Test func aSealedSegmentMissingItsLastRecordIsAnError() async throws {
        let dir = temporaryDirectory("filewal-lastrecord")
        defer { try? FileManager.default.removeItem(at: dir) }
        let wal = try await FileWAL.open(directory: dir, config: FileWAL.Config(segmentBytes: 200))
        _ = try await appendOneByOne(wal, (0..<8).map { record(1, Int64($0), String(repeating: "y", count: 40)) })
        try await wal.close()
        let sealed = try FileWAL.listSegments(dir).first!.1
        var bytes = try [UInt8](Data(contentsOf: sealed))
        bytes[bytes.count - 3] ^= 0x01  // inside the segment's last record
        try Data(bytes).write(to: sealed)
        // A version 2 segment ends at its first bad record; the next one then starts one
        // position later than expected, and that is the error.
        await #expect(throws: StreamStorageError.self) { _ = try await FileWAL.open(directory: dir) }
    }

    @Test func anEmptyNewestSegmentKeepsPositionsGoing() async throws {
        let dir = temporaryDirectory("filewal-empty")
        defer { try? FileManager.default.removeItem(at: dir) }
        // A crash right after a roll, with every earlier segment trimmed: only a header.
        let header = WALSegmentHeader.encode(firstPosition: 500, crcSalt: 12345)
        try Data(header).write(to: dir.appendingPathComponent(FileWAL.segmentName(500)))
        let wal = try await FileWAL.open(directory: dir)
        #expect(wal.recovered.isEmpty)
        #expect(try await appendAll(wal, [record(1, 0, "a")]) == [500])
        try await wal.close()
    }

    /// Every group commit is timed (its wait behind the one before, its write + fdatasync) and
    /// counts its records, so an append's time to durable can be taken apart.
    @Test func groupCommitsAreTimedAndCounted() async throws {
        let dir = temporaryDirectory("filewal-metrics")
        defer { try? FileManager.default.removeItem(at: dir) }
        let registry = MetricsRegistry()
        let wal = try await FileWAL.open(directory: dir, metrics: registry)
        _ = try await appendAll(wal, (0..<10).map { record(1, Int64($0), "r\($0)") })
        _ = try await appendAll(wal, [record(2, 0, "alone")])
        try await wal.close()
        let text = registry.render()
        let commits = try #require(text.split(separator: "\n").first { $0.hasPrefix("floe_wal_commit_records_count ") })
        let count = try #require(Int(commits.split(separator: " ")[1]))
        #expect((2...11).contains(count), "the second append is a commit of its own: \(text)")
        #expect(text.contains("floe_wal_commit_records_sum 11\n"), "\(text)")
        #expect(text.contains("floe_wal_commit_seconds_count \(count)\n"), "\(text)")
        #expect(text.contains("floe_wal_queue_seconds_count \(count)\n"), "\(text)")
        #expect(!text.contains("floe_wal_commit_seconds_sum 0\n"), "a commit with fdatasync takes time: \(text)")
    }
}

@Suite struct ObjectStoreWALTests {
    let fast = ObjectStoreWAL.Config(flushInterval: .seconds(3600), flushBytes: 1, maxInFlight: 4, attempts: 1)

    @Test func flushesOnIntervalWithManualClock() async throws {
        let store = MemoryObjectStore()
        let clock = ManualClock()
        let wal = try await ObjectStoreWAL.open(store: store, prefix: "wal/", clock: clock,
                                                config: ObjectStoreWAL.Config(flushInterval: .milliseconds(50), flushBytes: 1 << 20))
        await clock.waitForSleepers(1)
        let r = record(1, 0, "hello")
        try await wal.reserve(bytes: r.encodedSize)
        let ticket = try wal.append(r)
        let objectsBefore = try await store.listAll(prefix: "wal/").count
        clock.advance(by: .milliseconds(50))
        #expect(try await ticket.wait() == 1)
        #expect(try await store.listAll(prefix: "wal/").count == objectsBefore + 1)
        try await wal.close()
    }

    @Test func groupCommitsBySizeAndRecovers() async throws {
        let store = MemoryObjectStore()
        let wal = try await ObjectStoreWAL.open(store: store, prefix: "wal/", clock: RealClock(),
                                                config: ObjectStoreWAL.Config(flushInterval: .seconds(3600), flushBytes: 200, maxInFlight: 2))
        let records = (0..<30).map { record(UInt64($0 % 4), Int64($0), "payload-\($0)-" + String(repeating: "z", count: $0)) }
        let tickets = try records.map { r in try wal.append(r) }  // no reservation needed below the budget
        // The last record may sit below the size threshold: close flushes it.
        try await wal.close()
        for (i, t) in tickets.enumerated() { #expect(try await t.wait() == WALPosition(i + 1)) }
        let objects = try await store.listAll(prefix: "wal/")
        #expect(objects.count > 3 && objects.count < 31)  // grouped, not one per record
        let again = try await ObjectStoreWAL.open(store: store, prefix: "wal/", clock: RealClock(), config: fast)
        #expect(again.recovered.map(\.1) == records)
        #expect(again.recovered.map(\.0) == Array(1...30))
        try await again.close()
    }

    @Test func ambiguousWriteErrorIsResolvedAsOwnWrite() async throws {
        let base = MemoryObjectStore()
        let faulty = FaultInjectingObjectStore(base)
        let wal = try await ObjectStoreWAL.open(store: faulty, prefix: "wal/", clock: RealClock(),
                                                config: ObjectStoreWAL.Config(flushInterval: .seconds(3600), flushBytes: 1, attempts: 3, backoff: .milliseconds(1)))
        faulty.failNext(.put, with: .timeout, afterApplying: true)
        #expect(try await appendAll(wal, [record(1, 0, "a")]) == [1])
        try await wal.close()
    }

    /// Two writers on one WAL: the second takes over while the first keeps appending. Every
    /// record the first had acknowledged is recovered by the second; after the takeover the
    /// first one's appends fail.
    @Test(arguments: [UInt64(1), 2, 3, 4, 5])
    func takeoverFencesTheOldWriter(seed: UInt64) async throws {
        var rng = TestRandom(seed: seed)
        let store = MemoryObjectStore()
        let config = ObjectStoreWAL.Config(flushInterval: .seconds(3600), flushBytes: Int.random(in: 1...300, using: &rng), maxInFlight: 4, attempts: 1)
        let old = try await ObjectStoreWAL.open(store: store, prefix: "wal/", clock: RealClock(), config: config, nonce: 1)
        let count = Int.random(in: 20...80, using: &rng)
        let records = (0..<count).map { record(UInt64($0 % 3), Int64($0), "old-\($0)") }
        let takeoverAt = Int.random(in: 0..<count, using: &rng)
        let (acked, newWAL) = try await withThrowingTaskGroup(of: Void.self, returning: ([Int], ObjectStoreWAL).self) { group in
            let ackedBox = Locked<[Int]>([])
            let newBox = Locked<ObjectStoreWAL?>(nil)
            var tickets: [(Int, WALAppendTicket)] = []
            for (i, r) in records.enumerated() {
                if i == takeoverAt {
                    group.addTask {
                        let w = try await ObjectStoreWAL.open(store: store, prefix: "wal/", clock: RealClock(), config: config, nonce: 2)
                        newBox.withLock { $0 = w }
                    }
                }
                do { tickets.append((i, try old.append(r))) } catch { break }
                if i % 7 == 0 { await Task.yield() }
            }
            old.seal(onlyIfFull: false)  // the tail below flushBytes (the interval timer is an hour)
            for (i, t) in tickets {
                group.addTask {
                    do {
                        _ = try await t.wait()
                        ackedBox.withLock { $0.append(i) }
                    } catch {}
                }
            }
            try await group.waitForAll()
            return (ackedBox.withLock { $0.sorted() }, newBox.withLock { $0! })
        }
        let recovered = Set(newWAL.recovered.map { String(decoding: $0.1.batch.bytes, as: UTF8.self) })
        for i in acked { #expect(recovered.contains("old-\(i)"), "acknowledged record \(i) lost (seed \(seed))") }
        // The old writer is fenced now: its next append fails and is never acknowledged.
        var failed = false
        do {
            let t = try old.append(record(9, 999, "late"))
            old.seal(onlyIfFull: false)
            _ = try await t.wait()
        } catch {
            failed = true
        }
        #expect(failed)
        await old.abandon()
        // The new writer works, and a third takeover still sees everything the second acknowledged.
        let ta = try newWAL.append(record(1, 1000, "new-a"))
        let tb = try newWAL.append(record(2, 1000, "new-b"))
        newWAL.seal(onlyIfFull: false)
        _ = try await ta.wait()
        _ = try await tb.wait()
        await newWAL.abandon()
        let third = try await ObjectStoreWAL.open(store: store, prefix: "wal/", clock: RealClock(), config: config, nonce: 3)
        let thirdSet = Set(third.recovered.map { String(decoding: $0.1.batch.bytes, as: UTF8.self) })
        #expect(thirdSet.contains("new-a") && thirdSet.contains("new-b"))
        for i in acked { #expect(thirdSet.contains("old-\(i)")) }
        try await third.close()
    }
}

/// A lock-protected value shared between test tasks.
final class Locked<T: Sendable>: Sendable {
    private let mutex: Mutex<T>
    init(_ value: T) { mutex = Mutex(value) }
    func withLock<R: Sendable>(_ body: (inout T) -> R) -> R { mutex.withLock { body(&$0) } }
}

@Suite struct ObjectStoreWALProtocolTests {
    func object(_ kind: WALObjectHeader.Kind, epoch: UInt64, seq: UInt64, first: WALPosition, records: [WALRecord], nonce: UInt64 = 7) -> [UInt8] {
        WALObjectHeader.encodeObject(header: WALObjectHeader(kind: kind, epoch: epoch, writerNonce: nonce, sequence: seq,
                                                             firstPosition: first, recordCount: UInt32(records.count)), records: records)
    }

    /// Objects 3 and 5 exist, 4 is "in flight" for the old writer. The takeover marks 4 so the
    /// old write fails, fences after 5, and recovers 3 and 5. A zombie object written later
    /// beyond the fence with the old epoch is ignored by the next takeover.
    @Test func holeMarkerFenceAndZombieObjects() async throws {
        let store = MemoryObjectStore()
        let r3 = record(1, 0, "three"), r4 = record(1, 1, "four"), r5 = record(2, 0, "five")
        _ = try await store.put(ObjectStoreWAL.key("wal/", 3), object(.data, epoch: 1, seq: 3, first: 1, records: [r3]), condition: .ifAbsent)
        _ = try await store.put(ObjectStoreWAL.key("wal/", 5), object(.data, epoch: 1, seq: 5, first: 3, records: [r5]), condition: .ifAbsent)
        let wal = try await ObjectStoreWAL.open(store: store, prefix: "wal/", clock: RealClock())
        #expect(wal.epoch == 2)
        #expect(wal.fenceSequence == 6)
        #expect(wal.recovered.map(\.1) == [r3, r5])
        // The old writer's in-flight object 4 can no longer land, nor can anything at 6.
        await #expect(throws: ObjectStoreError.self) {
            _ = try await store.put(ObjectStoreWAL.key("wal/", 4), object(.data, epoch: 1, seq: 4, first: 2, records: [r4]), condition: .ifAbsent)
        }
        await #expect(throws: ObjectStoreError.self) {
            _ = try await store.put(ObjectStoreWAL.key("wal/", 6), object(.data, epoch: 1, seq: 6, first: 4, records: [r4]), condition: .ifAbsent)
        }
        // A zombie write beyond the fence with the old epoch lands but is not valid.
        _ = try await store.put(ObjectStoreWAL.key("wal/", 7), object(.data, epoch: 1, seq: 7, first: 4, records: [record(3, 0, "zombie")]), condition: .ifAbsent)
        let t = try wal.append(record(4, 0, "mine"))
        wal.seal(onlyIfFull: false)
        #expect(try await t.wait() == 4)
        await wal.abandon()
        let next = try await ObjectStoreWAL.open(store: store, prefix: "wal/", clock: RealClock())
        let payloads = next.recovered.map { String(decoding: $0.1.batch.bytes, as: UTF8.self) }
        #expect(payloads == ["three", "five", "mine"])
        #expect(next.epoch == 3)
        try await next.close()
    }

    @Test func ownLandedWriteIsRecognisedAndForeignObjectFences() async throws {
        let store = MemoryObjectStore()
        let wal = try await ObjectStoreWAL.open(store: store, prefix: "wal/", clock: RealClock(),
                                                config: ObjectStoreWAL.Config(flushInterval: .seconds(3600), flushBytes: 1, attempts: 1))
        // Someone else occupies the next sequence number: the write must fail as fenced.
        let nextSeq = wal.fenceSequence + ObjectStoreWAL.maxWindow
        _ = try await store.put(ObjectStoreWAL.key("wal/", nextSeq), object(.takeoverFence, epoch: 9, seq: nextSeq, first: 1, records: [], nonce: 99), condition: .ifAbsent)
        let t = try wal.append(record(1, 0, "x"))
        await #expect(throws: StreamStorageError.self) { _ = try await t.wait() }
        #expect(throws: StreamStorageError.self) { _ = try wal.append(record(1, 1, "y")) }
        await wal.abandon()
    }
}
