import CFloeShims
import Foundation
import Support
import Synchronization
import Testing

/// A Mutex in a class, so closures can share it.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}

@Suite struct ClockTests {
    @Test func manualClockWakesSleepersAtTheirDeadlines() async throws {
        let clock = ManualClock()
        let start = clock.now()
        let woke = Locked<[Int]>([])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await clock.sleep(for: .milliseconds(100))
                woke.withLock { $0.append(100) }
            }
            group.addTask {
                try await clock.sleep(for: .milliseconds(300))
                woke.withLock { $0.append(300) }
            }
            await clock.waitForSleepers(2)
            clock.advance(by: .milliseconds(99))
            #expect(clock.sleeperCount == 2)
            clock.advance(by: .milliseconds(1))
            // The 100 ms sleeper was resumed by advance; the other is still asleep.
            #expect(clock.sleeperCount == 1)
            clock.advance(by: .milliseconds(200))
            try await group.waitForAll()
        }
        #expect(woke.withLock { $0.sorted() } == [100, 300])
        #expect(clock.now().duration(since: start) == .milliseconds(300))
    }

    @Test func manualClockSleepIsCancellable() async throws {
        let clock = ManualClock()
        let task = Task { try await clock.sleep(for: .seconds(3600)) }
        await clock.waitForSleepers(1)
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(clock.sleeperCount == 0)
    }

    @Test func wallTimeAdvancesWithTheClock() {
        let clock = ManualClock(wallTime: Date(timeIntervalSince1970: 1000))
        clock.advance(by: .milliseconds(1500))
        #expect(clock.wallTime().timeIntervalSince1970 == 1001.5)
    }

    @Test func durationConversions() {
        #expect(Duration.milliseconds(1500).nanosecondsClamped == 1_500_000_000)
        #expect(Duration.seconds(Int64.max).nanosecondsClamped == Int64.max)
        #expect(Duration.milliseconds(250).secondsDouble == 0.25)
    }
}

@Suite struct BackoffTests {
    @Test func ceilingGrowsExponentiallyUpToTheMaximum() {
        let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5), multiplier: 2, jitter: .none)
        #expect(backoff.ceiling(forAttempt: 0) == .milliseconds(100))
        #expect(backoff.ceiling(forAttempt: 3) == .milliseconds(800))
        #expect(backoff.ceiling(forAttempt: 6) == .seconds(5))
        #expect(backoff.ceiling(forAttempt: 1000) == .seconds(5))
        var rng = SplitMix64(seed: 1)
        #expect(backoff.delay(forAttempt: 2, using: &rng) == .milliseconds(400))
    }

    @Test func fullJitterStaysWithinTheCeilingAndVaries() {
        let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5), jitter: .full)
        var rng = SplitMix64(seed: 42)
        for attempt in 0..<12 {
            var seen = Set<Duration>()
            for _ in 0..<50 {
                let d = backoff.delay(forAttempt: attempt, using: &rng)
                #expect(d >= .zero && d <= backoff.ceiling(forAttempt: attempt))
                seen.insert(d)
            }
            #expect(seen.count > 40)
        }
    }

    @Test func equalJitterKeepsAFloor() {
        let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5), jitter: .equal)
        var rng = SplitMix64(seed: 9)
        for _ in 0..<200 {
            let d = backoff.delay(forAttempt: 1, using: &rng)
            #expect(d >= .milliseconds(100) && d <= .milliseconds(200))
        }
    }

    @Test func seededDelaysAreReproducible() {
        let backoff = Backoff()
        var a = SplitMix64(seed: 5)
        var b = SplitMix64(seed: 5)
        let first = (0..<10).map { backoff.delay(forAttempt: $0, using: &a) }
        let second = (0..<10).map { backoff.delay(forAttempt: $0, using: &b) }
        #expect(first == second)
    }
}

@Suite struct MetricsTests {
    @Test func rendersCountersGaugesAndHistograms() {
        let registry = MetricsRegistry()
        registry.counter("floe_requests_total", help: "Requests handled.", labels: ["api": "produce"]).increment(by: 3)
        registry.counter("floe_requests_total", help: "Requests handled.", labels: ["api": "fetch"]).increment()
        registry.gauge("floe_partitions", help: "Partitions owned.").set(12)
        let h = registry.histogram("floe_latency_seconds", help: "Latency.", labels: ["op": "put"], buckets: [0.01, 0.1, 1])
        h.observe(0.005)
        h.observe(0.05)
        h.observe(0.05)
        h.observe(3)
        // The same name and labels give the same series.
        registry.counter("floe_requests_total", help: "Requests handled.", labels: ["api": "fetch"]).increment()
        let expected = """
            # HELP floe_latency_seconds Latency.
            # TYPE floe_latency_seconds histogram
            floe_latency_seconds_bucket{op="put",le="0.01"} 1
            floe_latency_seconds_bucket{op="put",le="0.1"} 3
            floe_latency_seconds_bucket{op="put",le="1"} 3
            floe_latency_seconds_bucket{op="put",le="+Inf"} 4
            floe_latency_seconds_sum{op="put"} 3.105
            floe_latency_seconds_count{op="put"} 4
            # HELP floe_partitions Partitions owned.
            # TYPE floe_partitions gauge
            floe_partitions 12
            # HELP floe_requests_total Requests handled.
            # TYPE floe_requests_total counter
            floe_requests_total{api="fetch"} 2
            floe_requests_total{api="produce"} 3

            """
        #expect(registry.render() == expected)
    }

    @Test func escapesLabelValuesAndHelp() {
        let registry = MetricsRegistry()
        registry.counter("x_total", help: "a\\b\nc", labels: ["k": "say \"hi\"\n"]).increment()
        #expect(registry.render() == "# HELP x_total a\\\\b\\nc\n# TYPE x_total counter\nx_total{k=\"say \\\"hi\\\"\\n\"} 1\n")
    }

    @Test func concurrentIncrementsAreNotLost() async {
        let registry = MetricsRegistry()
        let counter = registry.counter("c_total", help: "c")
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 { group.addTask { for _ in 0..<1000 { counter.increment() } } }
        }
        #expect(counter.value == 8000)
    }
}

@Suite struct LoggerTests {
    @Test func recordsCarryMergedMetadataAndRespectTheLevel() {
        let sink = CollectingLogSink()
        let logger = Logger(label: "objectstore", level: .info, metadata: ["storage.bucket": "b"], sink: sink)
            .with("broker.id", "1")
        logger.debug("not shown")
        logger.warning("retrying request", metadata: ["attempt": "2", "error": "timed out after 1s"])
        let records = sink.records
        #expect(records.count == 1)
        #expect(records[0].metadata == ["storage.bucket": "b", "broker.id": "1", "attempt": "2", "error": "timed out after 1s"])
        var record = records[0]
        record.time = Date(timeIntervalSince1970: 0)
        #expect(record.formatted
            == "1970-01-01T00:00:00.000Z warning objectstore: retrying request attempt=2 broker.id=1 error=\"timed out after 1s\" storage.bucket=b")
    }

    @Test func messagesAreBuiltLazily() {
        let logger = Logger(label: "x", level: .error, sink: CollectingLogSink())
        let built = Locked(false)
        func expensive() -> String {
            built.withLock { $0 = true }
            return "x"
        }
        logger.info(expensive())
        #expect(built.withLock { $0 } == false)
    }
}

@Suite struct BlockingThreadPoolTests {
    @Test func idlePriorityThreadsRunTheirJobsUnderSchedIdle() async throws {
        #if os(Linux)
        let idle = BlockingThreadPool(name: "test-idle", threads: 2, idlePriority: true)
        let normal = BlockingThreadPool(name: "test-normal", threads: 1)
        defer { idle.shutdown(); normal.shutdown() }
        #expect(try await idle.run { floe_thread_get_policy() } == Int32(FLOE_SCHED_IDLE))
        #expect(try await normal.run { floe_thread_get_policy() } == Int32(FLOE_SCHED_OTHER))
        // Each thread switches itself as it starts; give the second one a moment.
        for _ in 0..<200 where idle.threadsAtIdlePriority < 2 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(idle.threadsAtIdlePriority == 2)
        #expect(normal.threadsAtIdlePriority == 0)
        #endif
    }

    @Test func runsWorkAndPropagatesErrors() async throws {
        let pool = BlockingThreadPool(name: "test", threads: 2, queueLimit: 4)
        defer { pool.shutdown() }
        let results = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<50 { group.addTask { try await pool.run { i * 2 } } }
            return try await group.reduce(0, +)
        }
        #expect(results == (0..<50).map { $0 * 2 }.reduce(0, +))
        struct Boom: Error {}
        await #expect(throws: Boom.self) { try await pool.run { throw Boom() } }
    }

    /// A job's closure, and what it captured, is released once the job has run: the pool used
    /// to keep the last few hundred run jobs in its queue, and with them every object body a
    /// `put` had captured (gigabytes of resident memory under a produce load).
    @Test func releasesWhatARunJobCaptured() async throws {
        final class Payload: Sendable { let bytes = [UInt8](repeating: 7, count: 1024) }
        let pool = BlockingThreadPool(name: "test", threads: 1)
        defer { pool.shutdown() }
        weak var released: Payload?
        do {
            let payload = Payload()
            released = payload
            let count = try await pool.run { payload.bytes.count }
            #expect(count == 1024)
        }
        // With one thread, the second job runs only after the first job's loop iteration ended,
        // so nothing but the queue could still hold the first closure.
        _ = try await pool.run { 0 }
        #expect(released == nil, "the pool still holds the closure of a job that has run")
    }

    @Test func rejectsWorkAfterShutdown() async {
        let pool = BlockingThreadPool(name: "test", threads: 1)
        pool.shutdown()
        await #expect(throws: SupportError.shutDown(component: "thread pool test")) { try await pool.run { 1 } }
    }
}

@Suite struct FIFOQueueTests {
    final class Payload: Sendable {}

    @Test func popsInOrderAcrossCompactions() {
        var q = FIFOQueue<Int>()
        var next = 0
        for i in 0..<1000 {
            q.append(i)
            if i % 3 != 0, let v = q.popFirst() {
                #expect(v == next)
                next += 1
            }
        }
        while let v = q.popFirst() {
            #expect(v == next)
            next += 1
        }
        #expect(next == 1000 && q.isEmpty && q.popFirst() == nil)
    }

    @Test func releasesAnElementWhenPopped() {
        var q = FIFOQueue<Payload>()
        weak var released: Payload?
        do {
            let p = Payload()
            released = p
            q.append(p)
            q.append(Payload())
        }
        _ = q.popFirst()
        #expect(released == nil, "a popped element stayed alive in its slot")
        #expect(q.count == 1)
    }
}
