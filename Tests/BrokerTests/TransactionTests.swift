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

// MARK: - KIP-890 part 2: EndTxn v5 bumps the epoch

@Suite struct TxnEpochBumpRulesTests {
    func ongoing(epoch: Int16 = 3) throws -> TransactionMetadata {
        var m = TransactionMetadata(transactionalId: "t", producerId: 5, producerEpoch: epoch, timeoutMs: 1000, state: .empty, nowMs: 0)
        m = try TxnRules.add(m, producerId: 5, epoch: epoch, partitions: [TxnPartition("a", 0)], groups: ["g"], nowMs: 10)
        return m
    }

    func refusal(_ body: () throws -> Any) -> KafkaErrorCode? {
        do {
            _ = try body()
            return nil
        } catch let r as TxnRefusal {
            return r.code
        } catch {
            return .unknownServerError
        }
    }

    func noNewId() -> Int64 {
        Issue.record("no new producer id is needed")
        return -1
    }

    @Test func commitPreparesAtTheNextEpochAndCompletesThere() throws {
        let m = try ongoing()
        let (prepared, plan) = try TxnRules.endBumpingEpoch(m, producerId: 5, epoch: 3, commit: true, nowMs: 20, newProducerId: noNewId)
        #expect(prepared.state == .prepareCommit && prepared.producerEpoch == 4 && prepared.nextProducerId == nil)
        // The markers carry the new epoch: they fence epoch 3 in every partition.
        #expect(plan == MarkerPlan(producerId: 5, producerEpoch: 4, commit: true, partitions: [TxnPartition("a", 0)], groups: ["g"],
                                   transactionEpoch: 3))
        // The group offsets the commit applies are the ones TxnOffsetCommit wrote at epoch 3.
        #expect(plan?.offsetsEpoch == 3 && prepared.transactionEpoch == 3)
        let done = TxnRules.complete(prepared, nowMs: 30)
        #expect(done.state == .completeCommit && done.producerId == 5 && done.producerEpoch == 4 && done.partitions.isEmpty)
        #expect(done.transactionEpoch == nil && done.payloadVersion == 1)
        // The next transaction runs at epoch 4; epoch 3 is fenced.
        let next = try TxnRules.add(done, producerId: 5, epoch: 4, partitions: [TxnPartition("b", 0)], groups: [], nowMs: 40)
        #expect(next.state == .ongoing && next.producerEpoch == 4)
        #expect(refusal { try TxnRules.add(done, producerId: 5, epoch: 3, partitions: [TxnPartition("b", 0)], groups: [], nowMs: 40) } == .producerFenced)
        // The version 0–4 rules see epoch 3 as fenced too.
        #expect(refusal { try TxnRules.end(done, producerId: 5, epoch: 3, commit: true, nowMs: 40) } == .producerFenced)
    }

    @Test func aRetryOfACompletedEndIsAnsweredWithoutASecondBump() throws {
        let m = try ongoing()
        let (prepared, _) = try TxnRules.endBumpingEpoch(m, producerId: 5, epoch: 3, commit: false, nowMs: 20, newProducerId: noNewId)
        let done = TxnRules.complete(prepared, nowMs: 30)
        let (again, plan) = try TxnRules.endBumpingEpoch(done, producerId: 5, epoch: 3, commit: false, nowMs: 40, newProducerId: noNewId)
        #expect(plan == nil && again == done && again.producerEpoch == 4)
        // The same retry with the other outcome is a state error, not a new transaction.
        #expect(refusal { try TxnRules.endBumpingEpoch(done, producerId: 5, epoch: 3, commit: true, nowMs: 40, newProducerId: self.noNewId) }
                == .invalidTxnState)
        // While the end is still being completed, the retry waits (retriable).
        #expect(refusal { try TxnRules.endBumpingEpoch(prepared, producerId: 5, epoch: 3, commit: false, nowMs: 25, newProducerId: self.noNewId) }
                == .concurrentTransactions)
        // Older epochs are fenced; the new epoch may not commit a transaction it never opened.
        #expect(refusal { try TxnRules.endBumpingEpoch(done, producerId: 5, epoch: 2, commit: false, nowMs: 40, newProducerId: self.noNewId) }
                == .producerFenced)
        #expect(refusal { try TxnRules.endBumpingEpoch(done, producerId: 5, epoch: 4, commit: true, nowMs: 40, newProducerId: self.noNewId) }
                == .invalidTxnState)
        #expect(refusal { try TxnRules.endBumpingEpoch(done, producerId: 6, epoch: 4, commit: false, nowMs: 40, newProducerId: self.noNewId) }
                == .invalidProducerIdMapping)
    }

    @Test func anAbortWithNothingOpenStillBumpsTheEpoch() throws {
        let empty = TransactionMetadata(transactionalId: "t", producerId: 5, producerEpoch: 0, timeoutMs: 1000, state: .empty, nowMs: 0)
        let (prepared, plan) = try TxnRules.endBumpingEpoch(empty, producerId: 5, epoch: 0, commit: false, nowMs: 20, newProducerId: noNewId)
        #expect(prepared.state == .prepareAbort && prepared.producerEpoch == 1)
        #expect(plan == MarkerPlan(producerId: 5, producerEpoch: 1, commit: false, partitions: [], groups: [], transactionEpoch: 0))
        #expect(refusal { try TxnRules.endBumpingEpoch(empty, producerId: 5, epoch: 0, commit: true, nowMs: 20, newProducerId: self.noNewId) }
                == .invalidTxnState)
    }

    @Test func anExhaustedEpochMovesToANewProducerIdAtCompletion() throws {
        let m = try ongoing(epoch: Int16.max - 1)
        let (prepared, plan) = try TxnRules.endBumpingEpoch(m, producerId: 5, epoch: Int16.max - 1, commit: true, nowMs: 20, newProducerId: { 99 })
        // The markers use the last epoch of producer 5; the completion moves the id to 99.
        #expect(prepared.producerId == 5 && prepared.producerEpoch == Int16.max && prepared.nextProducerId == 99)
        #expect(plan?.producerId == 5 && plan?.producerEpoch == Int16.max && plan?.offsetsEpoch == Int16.max - 1)
        let done = TxnRules.complete(prepared, nowMs: 30)
        #expect(done.producerId == 99 && done.producerEpoch == 0 && done.lastProducerId == 5 && done.nextProducerId == nil)
        // A retry names the old id and its last epoch: answered with the new identity.
        let (again, none) = try TxnRules.endBumpingEpoch(done, producerId: 5, epoch: Int16.max - 1, commit: true, nowMs: 40, newProducerId: noNewId)
        #expect(none == nil && again.producerId == 99 && again.producerEpoch == 0)
        // The old id is no longer the producer of the transactional id.
        #expect(refusal { try TxnRules.add(done, producerId: 5, epoch: Int16.max - 1, partitions: [], groups: [], nowMs: 40) }
                == .invalidProducerIdMapping)
        #expect(refusal { try TxnRules.endBumpingEpoch(done, producerId: 5, epoch: 7, commit: true, nowMs: 40, newProducerId: self.noNewId) }
                == .invalidProducerIdMapping)
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
        #expect(await c.verify(transactionalId: "tx/1", producerId: pid, producerEpoch: epoch, partition: TxnPartition("a", 1)) == .transactionAbortable)
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

    /// A new producer for `id` with a transaction open on `partitions`.
    func begin(_ c: TransactionCoordinator, _ id: String, _ partitions: [TxnPartition]) async throws -> (Int64, Int16) {
        let (pid, epoch) = try await c.initProducerId(transactionalId: id, timeoutMs: 10_000, producerId: -1, producerEpoch: -1)
        try await c.addPartitions(transactionalId: id, producerId: pid, producerEpoch: epoch, partitions: partitions)
        return (pid, epoch)
    }

    @Test func aPreparedTransactionIsCompletedByTheNextCoordinator() async throws {
        let store = MemoryObjectStore(name: "txn")
        let markers = RecordingMarkers()
        let c = coordinator(store, markers)
        let (pid, epoch) = try await begin(c, "t", [TxnPartition("a", 0)])
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

    /// EndTxn v5: the bump is persisted, answered, and fences the old epoch at the coordinator
    /// (AddPartitionsToTxn, EndTxn) and on the produce path; a retry gets the same answer.
    @Test func endTxnBumpingTheEpochPersistsAndFencesTheOldEpoch() async throws {
        let store = MemoryObjectStore(name: "txn")
        let markers = RecordingMarkers()
        let c = coordinator(store, markers)
        let (pid, epoch) = try await begin(c, "t", [TxnPartition("a", 0)])
        let answer = try await c.endTxn(transactionalId: "t", producerId: pid, producerEpoch: epoch, commit: true, bumpEpoch: true)
        #expect(answer == (pid, 1))
        #expect(markers.plans == [MarkerPlan(producerId: pid, producerEpoch: 1, commit: true, partitions: [TxnPartition("a", 0)], groups: [],
                                             transactionEpoch: 0)])
        // A lost answer: the retry gets the same producer id and epoch, and nothing is written again.
        let retry = try await c.endTxn(transactionalId: "t", producerId: pid, producerEpoch: epoch, commit: true, bumpEpoch: true)
        #expect(retry == (pid, 1) && markers.plans.count == 1)
        // The bump is in the bucket: another coordinator reads epoch 1.
        let c2 = coordinator(store, markers)
        let m = try #require(try await c2.describe(transactionalId: "t"))
        #expect(m.state == .completeCommit && m.producerId == pid && m.producerEpoch == 1)
        // Epoch 0 is fenced.
        do {
            try await c2.addPartitions(transactionalId: "t", producerId: pid, producerEpoch: 0, partitions: [TxnPartition("a", 0)])
            Issue.record("AddPartitionsToTxn of the old epoch must be fenced")
        } catch let r as TxnRefusal {
            #expect(r.code == .producerFenced)
        }
        #expect(await c2.verify(transactionalId: "t", producerId: pid, producerEpoch: 0, partition: TxnPartition("a", 0)) == .producerFenced)
        #expect(await c2.verifyProduce(transactionalId: "t", producerId: pid, producerEpoch: 0, partition: TxnPartition("a", 0), produceVersion: 11)
                == .invalidProducerEpoch)
        // The next transaction at epoch 1 works, and is ended with another bump.
        try await c2.addPartitions(transactionalId: "t", producerId: pid, producerEpoch: 1, partitions: [TxnPartition("a", 0)])
        #expect(await c2.verify(transactionalId: "t", producerId: pid, producerEpoch: 1, partition: TxnPartition("a", 0)) == nil)
        let second = try await c2.endTxn(transactionalId: "t", producerId: pid, producerEpoch: 1, commit: false, bumpEpoch: true)
        #expect(second == (pid, 2))
    }

    /// EndTxn v5 at epoch 32766: the prepared state names the next producer id (payload version
    /// 2) so that a coordinator completing it after a crash moves the id there too; the retry
    /// of the lost answer names the old id and gets the new one.
    @Test func endTxnAtAnExhaustedEpochMovesToANewProducerIdAcrossACrash() async throws {
        let store = MemoryObjectStore(name: "txn")
        let markers = RecordingMarkers()
        var m = TransactionMetadata(transactionalId: "t", producerId: 7, producerEpoch: Int16.max - 1, timeoutMs: 10_000, state: .ongoing, nowMs: 0)
        m.partitions = [TxnPartition("a", 0)]
        m.startMs = 0
        _ = try await store.put("transactions/t", try TransactionCoordinator.encode(m), condition: .ifAbsent)
        let c = coordinator(store, markers)
        markers.setFailing(true)
        do {
            try await c.endTxn(transactionalId: "t", producerId: 7, producerEpoch: Int16.max - 1, commit: true, bumpEpoch: true)
            Issue.record("EndTxn must fail while markers cannot be written")
        } catch let r as TxnRefusal {
            #expect(r.code == .concurrentTransactions)
        }
        let prepared = try TransactionCoordinator.decode(try await store.get("transactions/t", range: nil).bytes, key: "transactions/t")
        #expect(prepared.state == .prepareCommit && prepared.producerEpoch == Int16.max && prepared.nextProducerId == 101)
        #expect(prepared.transactionEpoch == Int16.max - 1 && prepared.payloadVersion == 2)
        markers.setFailing(false)
        let c2 = coordinator(store, markers)
        try await c2.rescan()
        await c2.tick()
        #expect(markers.plans == [MarkerPlan(producerId: 7, producerEpoch: Int16.max, commit: true, partitions: [TxnPartition("a", 0)], groups: [],
                                             transactionEpoch: Int16.max - 1)])
        let retry = try await c2.endTxn(transactionalId: "t", producerId: 7, producerEpoch: Int16.max - 1, commit: true, bumpEpoch: true)
        #expect(retry == (101, 0))
        let done = try TransactionCoordinator.decode(try await store.get("transactions/t", range: nil).bytes, key: "transactions/t")
        #expect(done.producerId == 101 && done.producerEpoch == 0 && done.lastProducerId == 7 && done.nextProducerId == nil
                && done.transactionEpoch == nil)
    }

    /// The fields of payload version 1, as brokers before EndTxn v5 wrote them.
    struct PayloadV1: Encodable {
        var transactionalId = "old"
        var producerId: Int64 = 12
        var producerEpoch: Int16 = 4
        var lastProducerId: Int64 = -1
        var timeoutMs: Int32 = 60_000
        var state = "Ongoing"
        var partitions = [TxnPartition("a", 3)]
        var groups = ["g"]
        var startMs: Int64 = 100
        var lastUpdateMs: Int64 = 200
    }

    @Test func version1DocumentsStillReadAndOnlyARotationWritesVersion2() throws {
        let key = "transactions/old"
        let old = try DocumentEnvelope.encode(PayloadV1(), kind: .transactionState, version: 1)
        let m = try TransactionCoordinator.decode(old, key: key)
        var expected = TransactionMetadata(transactionalId: "old", producerId: 12, producerEpoch: 4, timeoutMs: 60_000, state: .ongoing, nowMs: 200)
        expected.partitions = [TxnPartition("a", 3)]
        expected.groups = ["g"]
        expected.startMs = 100
        #expect(m == expected)
        // Written back without a next producer id it stays version 1 (readable by older brokers).
        let rewritten = try TransactionCoordinator.encode(m)
        #expect(rewritten[5] == 0 && rewritten[6] == 1)
        var rotating = m
        rotating.nextProducerId = 40
        let v2 = try TransactionCoordinator.encode(rotating)
        #expect(v2[5] == 0 && v2[6] == 2)
        #expect(try TransactionCoordinator.decode(v2, key: key) == rotating)
        // Still checksummed: a flipped payload byte is refused.
        var bad = v2
        bad[bad.count - 3] ^= 0x01
        #expect(throws: BrokerError.self) { try TransactionCoordinator.decode(bad, key: key) }
    }

    /// TRANSACTION_ABORTABLE reaches a producer only from Produce v11; older ones get
    /// INVALID_TXN_STATE for a partition not added to the transaction.
    @Test func aPartitionNotInTheTransactionIsAbortableFromProduceV11() async throws {
        let c = coordinator(MemoryObjectStore(name: "txn"), RecordingMarkers())
        let (pid, epoch) = try await begin(c, "t", [TxnPartition("a", 0)])
        let missing = TxnPartition("a", 1)
        #expect(await c.verifyProduce(transactionalId: "t", producerId: pid, producerEpoch: epoch, partition: missing, produceVersion: 11) == .transactionAbortable)
        #expect(await c.verifyProduce(transactionalId: "t", producerId: pid, producerEpoch: epoch, partition: missing, produceVersion: 10) == .invalidTxnState)
        #expect(await c.verifyProduce(transactionalId: "t", producerId: pid, producerEpoch: epoch, partition: TxnPartition("a", 0), produceVersion: 10) == nil)
    }
}
