import KafkaProtocol
import ObjectStore
import Support
import Synchronization
import Testing
@testable import Broker

// MARK: - partition side: LSO and aborted transactions

@Suite struct TransactionIndexTests {
    @Test func lastStableOffsetFollowsTheOldestOpenTransaction() {
        var t = TransactionIndex()
        #expect(t.lastStableOffset(highWatermark: 10) == 10)
        t.data(producerId: 7, baseOffset: 10)
        t.data(producerId: 8, baseOffset: 11)
        t.data(producerId: 7, baseOffset: 12)
        #expect(t.lastStableOffset(highWatermark: 13) == 10, "producer 7's transaction starts at 10")
        t.marker(producerId: 7, commit: false, offset: 13)
        #expect(t.lastStableOffset(highWatermark: 14) == 11, "after 7's abort, 8's transaction at 11 is the oldest open one")
        #expect(t.aborted == [AbortedTxn(producerId: 7, firstOffset: 10, lastOffset: 13)])
        t.marker(producerId: 8, commit: true, offset: 14)
        #expect(t.lastStableOffset(highWatermark: 15) == 15)
        #expect(t.aborted.count == 1, "a commit adds no aborted transaction: \(t.aborted)")
    }

    @Test func abortedTransactionsOverlappingTheFetchedRange() {
        var t = TransactionIndex()
        t.data(producerId: 1, baseOffset: 0)
        t.marker(producerId: 1, commit: false, offset: 5)
        t.data(producerId: 2, baseOffset: 6)
        t.marker(producerId: 2, commit: false, offset: 9)
        #expect(t.abortedTransactions(from: 0, to: 3).map(\.producerId) == [1])
        #expect(t.abortedTransactions(from: 6, to: 10).map(\.producerId) == [2], "the first abort's marker (5) is before the range")
        #expect(t.abortedTransactions(from: 5, to: 7).map(\.producerId) == [1, 2])
        #expect(t.abortedTransactions(from: 10, to: 20).isEmpty)
    }

    @Test func markerWithoutOpenTransactionChangesNothing() {
        var t = TransactionIndex()
        t.marker(producerId: 3, commit: false, offset: 4)
        #expect(t == TransactionIndex())
    }

    @Test func truncationUndoesMarkersNotYetDurable() {
        var t = TransactionIndex()
        t.data(producerId: 1, baseOffset: 0)
        t.data(producerId: 2, baseOffset: 1)
        t.marker(producerId: 1, commit: false, offset: 2)
        t.marker(producerId: 2, commit: true, offset: 3)
        t.data(producerId: 3, baseOffset: 4)
        // Durable end 3: the commit of 2 (at 3) and the data of 3 (at 4) are not durable.
        let cut = t.truncated(below: 3)
        #expect(cut.ongoing == [2: 1], "producer 2's transaction reopens; 3's is forgotten: \(cut.ongoing)")
        #expect(cut.aborted == [AbortedTxn(producerId: 1, firstOffset: 0, lastOffset: 2)])
        // Durable end 2: the abort of 1 is undone too.
        let cut2 = t.truncated(below: 2)
        #expect(cut2.ongoing == [1: 0, 2: 1])
        #expect(cut2.aborted.isEmpty)
    }

    @Test func replayFromLogBatchesRebuildsTheSameIndex() throws {
        var live = TransactionIndex()
        var replayed = TransactionIndex()
        func data(_ pid: Int64, at offset: Int64) throws -> RecordBatch {
            var b = RecordBatchBuilder(baseTimestamp: 1)
            b.producerId = pid
            b.producerEpoch = 0
            b.baseSequence = 0
            b.isTransactional = true
            b.append(timestamp: 1, key: nil, value: [1])
            return try RecordBatch(validating: try b.build()[...])
        }
        try replayed.replay(try data(5, at: 0), baseOffset: 0)
        live.data(producerId: 5, baseOffset: 0)
        let abort = try TransactionIndex.markerBatch(producerId: 5, producerEpoch: 0, commit: false, coordinatorEpoch: 0, timestamp: 2)
        let batch = try RecordBatch(validating: abort[...])
        #expect(batch.isControlBatch && batch.isTransactional)
        #expect(try batch.controlRecordType() == .abort)
        try replayed.replay(batch, baseOffset: 1)
        live.marker(producerId: 5, commit: false, offset: 1)
        #expect(replayed == live)
        #expect(replayed.aborted == [AbortedTxn(producerId: 5, firstOffset: 0, lastOffset: 1)])
    }

    @Test func producerTableReplaysMarkersWithoutSequences() throws {
        var table = ProducerStateTable()
        table.record(producerId: 5, epoch: 0, firstSequence: 0, lastSequence: 2, baseOffset: 0, lastOffset: 2)
        let marker = try RecordBatch(validating: try TransactionIndex.markerBatch(producerId: 5, producerEpoch: 0, commit: true,
                                                                                  coordinatorEpoch: 0, timestamp: 1)[...])
        table.replay(marker.header, baseOffset: 3)
        #expect(table.check(producerId: 5, epoch: 0, firstSequence: 3, lastSequence: 3) == .append,
                "after a commit marker the producer's sequence continues at 3")
        let bumped = try RecordBatch(validating: try TransactionIndex.markerBatch(producerId: 5, producerEpoch: 1, commit: false,
                                                                                  coordinatorEpoch: 0, timestamp: 1)[...])
        table.replay(bumped.header, baseOffset: 4)
        if case .reject(let code, _) = table.check(producerId: 5, epoch: 0, firstSequence: 3, lastSequence: 3) {
            #expect(code == .invalidProducerEpoch)
        } else {
            Issue.record("a batch of epoch 0 after a marker of epoch 1 must be refused")
        }
    }
}

// MARK: - coordinator rules

@Suite struct TxnRulesTests {
    func fresh(_ pid: Int64 = 5) throws -> TransactionMetadata {
        try TxnRules.initProducer(nil, transactionalId: "t", timeoutMs: 1000, expectedProducerId: -1, expectedEpoch: -1, nowMs: 0,
                                  newProducerId: { pid }).0
    }

    @Test func firstInitGivesANewProducerAtEpochZero() throws {
        let m = try fresh()
        #expect(m.producerId == 5 && m.producerEpoch == 0 && m.state == .empty)
    }

    @Test func reinitBumpsTheEpochAndAbortsTheOpenTransaction() throws {
        var m = try fresh()
        m = try TxnRules.add(m, producerId: 5, epoch: 0, partitions: [TxnPartition("a", 0)], groups: ["g"], nowMs: 10)
        #expect(m.state == .ongoing && m.startMs == 10)
        let (next, abort) = try TxnRules.initProducer(m, transactionalId: "t", timeoutMs: 1000, expectedProducerId: -1, expectedEpoch: -1,
                                                      nowMs: 20, newProducerId: { Issue.record("no new id needed"); return -1 })
        #expect(next.producerId == 5 && next.producerEpoch == 1 && next.state == .empty && next.partitions.isEmpty)
        #expect(abort == MarkerPlan(producerId: 5, producerEpoch: 1, commit: false, partitions: [TxnPartition("a", 0)], groups: ["g"]))
        // The old producer (epoch 0) is fenced.
        #expect(throws: TxnRefusal.self) { try TxnRules.add(next, producerId: 5, epoch: 0, partitions: [], groups: [], nowMs: 30) }
        do {
            _ = try TxnRules.end(next, producerId: 5, epoch: 0, commit: true, nowMs: 30)
            Issue.record("EndTxn of the fenced epoch must be refused")
        } catch let r as TxnRefusal {
            #expect(r.code == .producerFenced)
        }
    }

    @Test func epochExhaustionGivesANewProducerId() throws {
        var m = try fresh()
        m.producerEpoch = Int16.max - 1
        let (next, _) = try TxnRules.initProducer(m, transactionalId: "t", timeoutMs: 1000, expectedProducerId: -1, expectedEpoch: -1,
                                                  nowMs: 0, newProducerId: { 99 })
        #expect(next.producerId == 99 && next.producerEpoch == 0 && next.lastProducerId == 5)
    }

    @Test func kip360ResumeOnlyFromTheCurrentProducer() throws {
        let m = try fresh()
        let (next, _) = try TxnRules.initProducer(m, transactionalId: "t", timeoutMs: 1000, expectedProducerId: 5, expectedEpoch: 0,
                                                  nowMs: 0, newProducerId: { -1 })
        #expect(next.producerEpoch == 1)
        do {
            _ = try TxnRules.initProducer(next, transactionalId: "t", timeoutMs: 1000, expectedProducerId: 5, expectedEpoch: 0,
                                          nowMs: 0, newProducerId: { -1 })
            Issue.record("a stale producer epoch must be fenced")
        } catch let r as TxnRefusal {
            #expect(r.code == .producerFenced)
        }
    }

    @Test func endCommitPreparesThenCompletes() throws {
        var m = try fresh()
        m = try TxnRules.add(m, producerId: 5, epoch: 0, partitions: [TxnPartition("a", 1), TxnPartition("b", 0)], groups: [], nowMs: 1)
        let (prepared, plan) = try TxnRules.end(m, producerId: 5, epoch: 0, commit: true, nowMs: 2)
        #expect(prepared.state == .prepareCommit)
        #expect(plan == MarkerPlan(producerId: 5, producerEpoch: 0, commit: true, partitions: [TxnPartition("a", 1), TxnPartition("b", 0)], groups: []))
        let done = TxnRules.complete(prepared, nowMs: 3)
        #expect(done.state == .completeCommit && done.partitions.isEmpty)
        // A retried commit succeeds with nothing to do; an abort now is refused.
        #expect(try TxnRules.end(done, producerId: 5, epoch: 0, commit: true, nowMs: 4).1 == nil)
        #expect(throws: TxnRefusal.self) { try TxnRules.end(done, producerId: 5, epoch: 0, commit: false, nowMs: 4) }
        // Another transaction starts from the completed state.
        let again = try TxnRules.add(done, producerId: 5, epoch: 0, partitions: [TxnPartition("c", 0)], groups: [], nowMs: 5)
        #expect(again.state == .ongoing && again.partitions == [TxnPartition("c", 0)] && again.startMs == 5)
    }

    @Test func preparingRefusesNewWorkWithConcurrentTransactions() throws {
        var m = try fresh()
        m = try TxnRules.add(m, producerId: 5, epoch: 0, partitions: [TxnPartition("a", 0)], groups: [], nowMs: 1)
        let (prepared, _) = try TxnRules.end(m, producerId: 5, epoch: 0, commit: false, nowMs: 2)
        do {
            _ = try TxnRules.add(prepared, producerId: 5, epoch: 0, partitions: [TxnPartition("a", 0)], groups: [], nowMs: 3)
            Issue.record("adding to a preparing transaction must be refused")
        } catch let r as TxnRefusal {
            #expect(r.code == .concurrentTransactions)
        }
    }

    @Test func timeoutAbortsWithABumpedEpoch() throws {
        var m = try fresh()
        m = try TxnRules.add(m, producerId: 5, epoch: 0, partitions: [TxnPartition("a", 0)], groups: [], nowMs: 100)
        #expect(TxnRules.timeout(m, nowMs: 1100) == nil, "not past 1000 ms yet")
        let (aborting, plan) = try #require(TxnRules.timeout(m, nowMs: 1101))
        #expect(aborting.state == .prepareAbort && aborting.producerEpoch == 1)
        #expect(plan.commit == false && plan.producerEpoch == 1 && plan.partitions == [TxnPartition("a", 0)])
    }
}

// MARK: - coordinator actor against a memory bucket

final class RecordingMarkers: TxnMarkerSink, @unchecked Sendable {
    // Guarded by `lock`.
    let lock = Mutex<(plans: [MarkerPlan], failing: Bool)>(([], false))
    var plans: [MarkerPlan] { lock.withLock { $0.plans } }
    func setFailing(_ f: Bool) { lock.withLock { $0.failing = f } }
    func write(_ plan: MarkerPlan, transactionalId: String) async throws {
        try lock.withLock { s in
            if s.failing { throw TxnRefusal(.kafkaStorageError, "injected") }
            s.plans.append(plan)
        }
    }
}

@Suite struct TransactionCoordinatorTests {
    final class WallClock: Sendable {
        let value: Mutex<Int64>
        init(_ v: Int64) { value = Mutex(v) }
        func set(_ v: Int64) { value.withLock { $0 = v } }
        var now: Int64 { value.withLock { $0 } }
    }

    func coordinator(_ store: MemoryObjectStore, _ markers: RecordingMarkers, now: WallClock = WallClock(0),
                     expirationMs: Int64 = 604_800_000) -> TransactionCoordinator {
        let ids = WallClock(100)
        return TransactionCoordinator(
            nodeId: 1, store: store, prefix: "transactions/", placement: SingleBrokerPlacement(nodeId: 1, host: "h", port: 1),
            maxTimeoutMs: 60_000, expirationMs: expirationMs, producerIds: { ids.value.withLock { $0 += 1; return $0 } }, markers: markers,
            now: { now.now }, logger: Logger(label: "txn-test"))
    }

    @Test func commitWritesMarkersAndSurvivesARestart() async throws {
        let store = MemoryObjectStore(name: "txn")
        let markers = RecordingMarkers()
        let c = coordinator(store, markers)
        let (pid, epoch) = try await c.initProducerId(transactionalId: "tx/1", timeoutMs: 10_000, producerId: -1, producerEpoch: -1)
        #expect(pid == 101 && epoch == 0)
        try await c.addPartitions(transactionalId: "tx/1", producerId: pid, producerEpoch: epoch, partitions: [TxnPartition("a", 0)])
        #expect(await c.verify(transactionalId: "tx/1", producerId: pid, producerEpoch: epoch, partition: TxnPartition("a", 0)) == nil)
        #expect(await c.verify(transactionalId: "tx/1", producerId: pid, producerEpoch: epoch, partition: TxnPartition("a", 1)) == .invalidTxnState)
        try await c.endTxn(transactionalId: "tx/1", producerId: pid, producerEpoch: epoch, commit: true)
        #expect(markers.plans == [MarkerPlan(producerId: pid, producerEpoch: 0, commit: true, partitions: [TxnPartition("a", 0)], groups: [])])
        // A new coordinator on the same bucket sees the completed state and bumps the epoch.
        let c2 = coordinator(store, markers)
        let described = try await c2.describe(transactionalId: "tx/1")
        let m = try #require(described)
        #expect(m.state == TxnState.completeCommit && m.producerId == pid)
        let (pid2, epoch2) = try await c2.initProducerId(transactionalId: "tx/1", timeoutMs: 10_000, producerId: -1, producerEpoch: -1)
        #expect(pid2 == pid && epoch2 == 1)
        // The document is versioned and checksummed: a flipped byte is refused, naming the key.
        let key = c2.key("tx/1")
        #expect(key == "transactions/tx%2F1")
        var bytes = try await store.get(key, range: nil).bytes
        bytes[bytes.count - 2] ^= 0x40
        #expect(throws: BrokerError.self) { try TransactionCoordinator.decode(bytes, key: key) }
    }

    @Test func aPreparedTransactionIsCompletedByTheNextCoordinator() async throws {
        let store = MemoryObjectStore(name: "txn")
        let markers = RecordingMarkers()
        let c = coordinator(store, markers)
        let (pid, epoch) = try await c.initProducerId(transactionalId: "t", timeoutMs: 10_000, producerId: -1, producerEpoch: -1)
        try await c.addPartitions(transactionalId: "t", producerId: pid, producerEpoch: epoch, partitions: [TxnPartition("a", 0)])
        markers.setFailing(true)
        do {
            try await c.endTxn(transactionalId: "t", producerId: pid, producerEpoch: epoch, commit: true)
            Issue.record("EndTxn must fail while markers cannot be written")
        } catch let r as TxnRefusal {
            #expect(r.code == .concurrentTransactions)
        }
        markers.setFailing(false)
        // "Restart": another coordinator reads the prepared state and completes it.
        let c2 = coordinator(store, markers)
        try await c2.rescan()
        await c2.tick()
        #expect(markers.plans.map(\.commit) == [true])
        #expect(try await c2.describe(transactionalId: "t")?.state == .completeCommit)
        // The old coordinator is fenced by the ETag: its next write fails with NOT_COORDINATOR.
        do {
            _ = try await c.initProducerId(transactionalId: "t", timeoutMs: 10_000, producerId: -1, producerEpoch: -1)
            Issue.record("a stale coordinator must not overwrite the newer state")
        } catch let r as TxnRefusal {
            #expect(r.code == .notCoordinator)
        }
    }

    @Test func timedOutTransactionIsAbortedAndTheProducerFenced() async throws {
        let store = MemoryObjectStore(name: "txn")
        let markers = RecordingMarkers()
        let clock = WallClock(1_000)
        let c = coordinator(store, markers, now: clock)
        let (pid, epoch) = try await c.initProducerId(transactionalId: "t", timeoutMs: 500, producerId: -1, producerEpoch: -1)
        try await c.addPartitions(transactionalId: "t", producerId: pid, producerEpoch: epoch, partitions: [TxnPartition("a", 0)])
        await c.tick()
        #expect(markers.plans.isEmpty, "not timed out yet")
        clock.set(1_501)
        await c.tick()
        #expect(markers.plans == [MarkerPlan(producerId: pid, producerEpoch: 1, commit: false, partitions: [TxnPartition("a", 0)], groups: [])])
        do {
            try await c.endTxn(transactionalId: "t", producerId: pid, producerEpoch: epoch, commit: true)
            Issue.record("the producer of the timed-out transaction must be fenced")
        } catch let r as TxnRefusal {
            #expect(r.code == .producerFenced)
        }
    }

    /// transactional.id.expiration.ms: a completed id idle that long is deleted from the bucket
    /// (and its next init starts with a new producer id); an open transaction never expires; a
    /// document written by another coordinator since this one read it is not deleted.
    @Test func idleIdsExpireOpenOnesDoNot() async throws {
        let store = MemoryObjectStore(name: "txn")
        let markers = RecordingMarkers()
        let clock = WallClock(1_000)
        let c = coordinator(store, markers, now: clock, expirationMs: 10_000)
        let (done, e0) = try await c.initProducerId(transactionalId: "done", timeoutMs: 60_000, producerId: -1, producerEpoch: -1)
        try await c.addPartitions(transactionalId: "done", producerId: done, producerEpoch: e0, partitions: [TxnPartition("a", 0)])
        try await c.endTxn(transactionalId: "done", producerId: done, producerEpoch: e0, commit: true)
        let (open, e1) = try await c.initProducerId(transactionalId: "open", timeoutMs: 60_000, producerId: -1, producerEpoch: -1)
        try await c.addPartitions(transactionalId: "open", producerId: open, producerEpoch: e1, partitions: [TxnPartition("a", 1)])
        _ = try await c.initProducerId(transactionalId: "moved", timeoutMs: 60_000, producerId: -1, producerEpoch: -1)
        clock.set(10_999)
        await c.tick()
        #expect(try await store.listAll(prefix: "transactions/").count == 3, "nothing is idle for 10 s yet")
        // "moved" is rewritten by another coordinator (same bucket) after this one read it.
        let other = coordinator(store, markers, now: clock, expirationMs: 10_000)
        _ = try await other.initProducerId(transactionalId: "moved", timeoutMs: 60_000, producerId: -1, producerEpoch: -1)
        clock.set(31_000)  // all three idle past 10 s; the open transaction is within its 60 s timeout
        await c.tick()
        let left = try await store.listAll(prefix: "transactions/").map(\.key).sorted()
        #expect(left == ["transactions/moved", "transactions/open"], "left: \(left)")
        // The expired id starts afresh: a new producer id at epoch 0.
        let (again, epoch) = try await c.initProducerId(transactionalId: "done", timeoutMs: 60_000, producerId: -1, producerEpoch: -1)
        #expect(again != done && epoch == 0)
    }

    @Test func timeoutAboveTheBrokerMaximumIsRefused() async throws {
        let c = coordinator(MemoryObjectStore(name: "txn"), RecordingMarkers())
        do {
            _ = try await c.initProducerId(transactionalId: "t", timeoutMs: 60_001, producerId: -1, producerEpoch: -1)
            Issue.record("a timeout above transaction.max.timeout.ms must be refused")
        } catch let r as TxnRefusal {
            #expect(r.code == .invalidTransactionTimeout)
        }
    }
}
