import Foundation
import KafkaProtocol
import ObjectStore
import StreamStorage
import Support
import Synchronization
import Testing
@testable import Broker

/// The broker side of storage outages: produce timeouts, and the storage supervisor reopening a
/// store whose WAL failed (what a restart used to be needed for).
@Suite struct StorageOutageTests {
    /// A produce whose batch is not durable within the request's timeout answers
    /// REQUEST_TIMED_OUT then (not when durability finally comes); the batch may still become
    /// durable, and the idempotent producer's retry of it is then answered with its offsets.
    @Test func produceAnswersWithinItsTimeoutAndTheRetryIsADuplicate() async throws {
        let h = try await Harness.make()
        let topic = try await h.createTopic("t")
        _ = try await h.core.partitions.partition(topic: "t", index: 0)
        let log = try #require(h.storage.log(topic.partitions[0].stream))
        log.holdDurability()
        let batch = try makeBatch(count: 2, producerId: 9, epoch: 0, sequence: 0)
        let request = ProduceRequest(acks: -1, timeoutMs: 300, topicData: [.init(name: "t", partitionData: [.init(index: 0, records: batch[...])])])
        let started = ContinuousClock.now
        let first = try requireResponse(try await h.call(ProduceHandler(core: h.core), .produce(request), version: 9), as: ProduceResponse.self)
        let took = ContinuousClock.now - started
        #expect(first.responses[0].partitionResponses[0].errorCode == KafkaErrorCode.requestTimedOut.rawValue)
        #expect(took >= .milliseconds(300) && took < .seconds(5))
        // Durability comes later: the retry is recognized and gets the original offsets.
        log.releaseDurability()
        let retry = try requireResponse(try await h.call(ProduceHandler(core: h.core), .produce(request), version: 9), as: ProduceResponse.self)
        #expect(retry.responses[0].partitionResponses[0].errorCode == 0)
        #expect(retry.responses[0].partitionResponses[0].baseOffset == 0)
        #expect(try await h.fetch("t", offset: 0).highWatermark == 2)
    }

    /// A stream store whose object WAL fails every write once the bucket is "down".
    final class Rig: Sendable {
        let faulty: FaultInjectingObjectStore
        let storage: StreamLogStorage
        let reopened = Atomic<Int>(0)

        init() async throws {
            let faulty = FaultInjectingObjectStore(MemoryObjectStore(name: "outage"))
            self.faulty = faulty
            let metadata = BucketMetadataStore(store: faulty, prefix: "streams/manifest/", clock: RealClock(), graceMillis: 0)
            let open: @Sendable () async throws -> StreamStore = {
                let wal = try await ObjectStoreWAL.open(store: faulty, prefix: "wal/node-0/", clock: RealClock(),
                                                        config: ObjectStoreWAL.Config(flushInterval: .milliseconds(1), attempts: 1))
                return try await StreamStore.open(wal: wal, metadata: metadata, objects: faulty, clock: RealClock())
            }
            var supervision = StreamLogStorage.Supervision()
            supervision.interval = .milliseconds(10)
            supervision.reopenBackoff = .milliseconds(10)
            supervision.maxReopenBackoff = .milliseconds(50)
            supervision.stallAfter = .milliseconds(200)
            storage = StreamLogStorage(store: try await open(), reopen: open, supervision: supervision)
            storage.onReopen { [weak self] in self?.reopened.wrappingAdd(1, ordering: .relaxed) }
        }

        func down() { faulty.setPlan(FaultPlan(errorRate: 1, faults: [.transport])) }
        func up() { faulty.setPlan(.none) }
    }

    /// Polls `condition` every 10 ms for up to `limit` (generous: when many tests run at once the
    /// cooperative pool can be starved for seconds); fails the test naming `what` if it never holds.
    func eventually(_ what: String, within limit: Duration = .seconds(60), detail: () -> String = { "" },
                    _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out waiting for: \(what) \(detail())")
                throw HarnessError.unexpected(what)
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    @Test func aFailedWALIsReopenedOnceTheBucketIsBackAndNothingAcknowledgedIsLost() async throws {
        let rig = try await Rig()
        let supervisor = Task { try await rig.storage.run() }
        defer { supervisor.cancel() }
        let log = try await rig.storage.openLog(stream: 1)
        try await log.reserve(batchSizes: [5])
        let kept = try log.append(Array("kept!".utf8)[...], recordCount: 1)
        try await kept.durable.wait()
        // Under a loaded test run the append may take longer than the rig's 200 ms stall
        // threshold, and the supervisor reports healthy again only at its next check.
        try await eventually("the storage to be healthy after an acknowledged append") { rig.storage.health.isHealthy }

        rig.down()
        try await log.reserve(batchSizes: [4])
        let lost = try log.append(Array("lost".utf8)[...], recordCount: 1)
        await #expect(throws: (any Error).self) { try await lost.durable.wait() }
        try await eventually("the supervisor notices the failed WAL") { !rig.storage.health.isHealthy }
        // While down: appends are refused at once, acknowledged data is still read.
        #expect(try await log.read(from: 0, maxBytes: 1 << 20).count == 1)
        // The supervisor moves from failed to recovering when it starts reopening (later on a
        // loaded machine); with the bucket down, no reopen can succeed.
        try await eventually("the supervisor is reopening") {
            if case .recovering = rig.storage.health.condition { true } else { false }
        }
        #expect(rig.reopened.load(ordering: .relaxed) == 0)

        rig.up()
        try await eventually("the storage is reopened and healthy") { rig.storage.health.isHealthy && rig.reopened.load(ordering: .relaxed) == 1 }
        #expect(rig.storage.health.recoveries == 1)
        let again = try await rig.storage.openLog(stream: 1)
        #expect(again.endOffset == 1)
        #expect(try await again.read(from: 0, maxBytes: 1 << 20).map { Array($0.bytes) } == [Array("kept!".utf8)])
        try await again.reserve(batchSizes: [5])
        let next = try again.append(Array("after".utf8)[...], recordCount: 1)
        try await next.durable.wait()
        #expect(next.baseOffset == 1)
        try await rig.storage.close()
    }

    /// Writes that keep failing for less than the WAL's retry window make the storage
    /// "stalled" (not ready) without failing it; it is healthy again once they land.
    @Test func aStallIsReportedAndClearsWithoutAReopen() async throws {
        let faulty = FaultInjectingObjectStore(MemoryObjectStore(name: "stall"))
        let metadata = BucketMetadataStore(store: faulty, prefix: "streams/manifest/", clock: RealClock(), graceMillis: 0)
        var walConfig = ObjectStoreWAL.Config(flushInterval: .milliseconds(1), attempts: 1, backoff: .milliseconds(5))
        walConfig.retryFor = .seconds(60)
        walConfig.maxBackoff = .milliseconds(20)
        let wal = try await ObjectStoreWAL.open(store: faulty, prefix: "wal/node-0/", clock: RealClock(), config: walConfig)
        let store = try await StreamStore.open(wal: wal, metadata: metadata, objects: faulty, clock: RealClock())
        var supervision = StreamLogStorage.Supervision()
        supervision.interval = .milliseconds(10)
        supervision.stallAfter = .milliseconds(100)
        let storage = StreamLogStorage(store: store, reopen: nil, supervision: supervision)
        let supervisor = Task { try await storage.run() }
        defer { supervisor.cancel() }
        let log = try await storage.openLog(stream: 3)
        faulty.setPlan(FaultPlan(errorRate: 1, faults: [.transport], operations: [.put]))
        try await log.reserve(batchSizes: [7])
        let pending = try log.append(Array("delayed".utf8)[...], recordCount: 1)
        try await eventually("the stall is reported", detail: {
            "condition \(storage.health.condition), WAL oldest pending \(String(describing: store.oldestPendingAppend)), "
                + "store failure \(String(describing: store.failure)), faults injected \(faulty.injectedCount)"
        }) {
            if case .stalled = storage.health.condition { return true } else { return false }
        }
        faulty.setPlan(.none)
        try await pending.durable.wait()
        try await eventually("healthy again") { storage.health.isHealthy }
        #expect(storage.health.outages == 1 && storage.health.recoveries == 0)
    }
}
