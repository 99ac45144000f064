import Foundation
import ObjectStore
import Support
import Synchronization
import Testing
@testable import StreamStorage

/// Storage outages as the WAL sees them: retries for a time window, hedged writes, and what a
/// failed store still serves.
@Suite struct OutageTests {
    /// Counts attempts and fails the first `failures` of them.
    final class Attempts: Sendable {
        let state = Mutex<(count: Int, failures: Int, hang: Set<Int>)>((0, 0, []))
        init(failures: Int, hang: Set<Int> = []) { state.withLock { $0.failures = failures; $0.hang = hang } }
        var count: Int { state.withLock { $0.count } }

        func run(_ n: Int) async -> HedgedWrite.AttemptResult {
            let (fail, hang) = state.withLock { s -> (Bool, Bool) in
                s.count += 1
                return (s.count <= s.failures, s.hang.contains(n))
            }
            if hang {
                // A request that never answers (until the test ends).
                try? await Task.sleep(for: .seconds(3600))
                return .retry(.io(operation: "put", key: "k", detail: "hung"))
            }
            return fail ? .retry(.io(operation: "put", key: "k", detail: "refused")) : .done
        }
    }

    /// Drives a manual clock until `task` finishes.
    func drive<T: Sendable>(_ clock: ManualClock, step: Duration, _ task: Task<T, Never>, finished: @escaping @Sendable () -> Bool) async -> T {
        while !finished() {
            // Only advance while the code under test sleeps on the clock (its backoff or hedge timer).
            if clock.sleeperCount > 0 { clock.advance(by: step) }
            try? await Task.sleep(for: .milliseconds(1))
        }
        return await task.value
    }

    @Test func aFailingWriteIsRetriedForTheWholeWindowNotOnlyForItsAttempts() async {
        let clock = ManualClock()
        // 12 failures at 1 s apart (backoff capped at 1 s) fit in a 30 s window; 3 attempts alone would not.
        let attempts = Attempts(failures: 12)
        let done = Atomic<Bool>(false)
        let task = Task {
            let r = await HedgedWrite.run(clock: clock, attempts: 3, retryFor: .seconds(30), backoff: .milliseconds(100),
                                          maxBackoff: .seconds(1), hedgeAfter: nil) { await attempts.run($0) }
            done.store(true, ordering: .relaxed)
            return r
        }
        let result = await drive(clock, step: .seconds(1), task) { done.load(ordering: .relaxed) }
        #expect(throws: Never.self) { try result.get() }
        #expect(attempts.count == 13)
    }

    @Test func withoutAWindowTheWriteFailsAfterItsAttempts() async {
        let clock = ManualClock()
        let attempts = Attempts(failures: 12)
        let done = Atomic<Bool>(false)
        let task = Task {
            let r = await HedgedWrite.run(clock: clock, attempts: 3, retryFor: .zero, backoff: .milliseconds(100),
                                          maxBackoff: .seconds(1), hedgeAfter: nil) { await attempts.run($0) }
            done.store(true, ordering: .relaxed)
            return r
        }
        let result = await drive(clock, step: .seconds(1), task) { done.load(ordering: .relaxed) }
        #expect(throws: StreamStorageError.self) { try result.get() }
        #expect(attempts.count == 3)
    }

    @Test func theWindowEndsTheRetries() async {
        let clock = ManualClock()
        let attempts = Attempts(failures: 1000)
        let done = Atomic<Bool>(false)
        let task = Task {
            let r = await HedgedWrite.run(clock: clock, attempts: 3, retryFor: .seconds(10), backoff: .milliseconds(100),
                                          maxBackoff: .seconds(1), hedgeAfter: nil) { await attempts.run($0) }
            done.store(true, ordering: .relaxed)
            return r
        }
        let result = await drive(clock, step: .seconds(1), task) { done.load(ordering: .relaxed) }
        #expect(throws: StreamStorageError.self) { try result.get() }
        #expect((10...13).contains(attempts.count))
    }

    @Test func aHungAttemptIsHedgedAndTheHedgeWins() async {
        let clock = ManualClock()
        let attempts = Attempts(failures: 0, hang: [0])
        let done = Atomic<Bool>(false)
        let task = Task {
            let r = await HedgedWrite.run(clock: clock, attempts: 1, retryFor: .zero, backoff: .milliseconds(100),
                                          maxBackoff: .seconds(1), hedgeAfter: .seconds(2)) { await attempts.run($0) }
            done.store(true, ordering: .relaxed)
            return r
        }
        let result = await drive(clock, step: .seconds(1), task) { done.load(ordering: .relaxed) }
        #expect(throws: Never.self) { try result.get() }
        #expect(attempts.count == 2)
    }

    @Test func aFinalErrorIsNotRetried() async {
        let calls = Atomic<Int>(0)
        let result = await HedgedWrite.run(clock: RealClock(), attempts: 5, retryFor: .seconds(30), backoff: .milliseconds(1),
                                           maxBackoff: .milliseconds(1), hedgeAfter: nil) { _ in
            calls.wrappingAdd(1, ordering: .relaxed)
            return .final(.walFenced(wal: "w", epoch: 1, detail: "taken over"))
        }
        #expect(throws: StreamStorageError.self) { try result.get() }
        #expect(calls.load(ordering: .relaxed) == 1)
    }

    /// An outage shorter than `retryFor`: appends wait, nothing fails, and they are durable
    /// once the store answers again; the WAL reports the wait as its oldest pending append.
    @Test func anOutageShorterThanTheWindowDelaysAcknowledgementsWithoutFailingTheLog() async throws {
        let faulty = FaultInjectingObjectStore(MemoryObjectStore())
        var config = ObjectStoreWAL.Config(flushInterval: .milliseconds(1), flushBytes: 1, attempts: 1, backoff: .milliseconds(5))
        config.retryFor = .seconds(30)
        config.maxBackoff = .milliseconds(20)
        let wal = try await ObjectStoreWAL.open(store: faulty, prefix: "wal/", clock: RealClock(), config: config)
        faulty.setPlan(FaultPlan(errorRate: 1, faults: [.transport]))
        let r = record(1, 0, "during the outage")
        try await wal.reserve(bytes: r.encodedSize)
        let ticket = try wal.append(r)
        let deadline = ContinuousClock.now + .seconds(60)  // generous: a loaded test process can starve timers
        while faulty.injectedCount < 4 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(faulty.injectedCount >= 4)  // retried past its single attempt
        #expect(wal.oldestPendingAppend != nil)
        faulty.setPlan(.none)
        #expect(try await ticket.wait() == 1)
        #expect(wal.oldestPendingAppend == nil)
        try await wal.close()
    }

    /// A store whose WAL failed refuses appends but still serves what was acknowledged.
    @Test func aFailedStoreStillServesAcknowledgedReads() async throws {
        let faulty = FaultInjectingObjectStore(MemoryObjectStore())
        let wal = try await ObjectStoreWAL.open(store: faulty, prefix: "wal/", clock: RealClock(),
                                                config: ObjectStoreWAL.Config(flushInterval: .milliseconds(1), flushBytes: 1, attempts: 1))
        let metadata = BucketMetadataStore(store: faulty, prefix: "m/", clock: RealClock())
        let store = try await StreamStore.open(wal: wal, metadata: metadata, objects: faulty, clock: RealClock())
        let stream = try await store.open(7, epoch: 1)
        _ = try await stream.append(Array("acknowledged".utf8), recordCount: 1)
        faulty.setPlan(FaultPlan(errorRate: 1, faults: [.transport], operations: [.put]))
        await #expect(throws: (any Error).self) { _ = try await stream.append(Array("lost".utf8), recordCount: 1) }
        #expect(store.failure != nil)
        await #expect(throws: (any Error).self) { _ = try await stream.append(Array("refused".utf8), recordCount: 1) }
        let read = try await stream.read(from: 0, maxBytes: 1 << 20)
        #expect(read.map { Array($0.bytes) } == [Array("acknowledged".utf8)])
        await store.abandon()
        #expect(try await stream.read(from: 0, maxBytes: 1 << 20).count == 1)
    }
}
