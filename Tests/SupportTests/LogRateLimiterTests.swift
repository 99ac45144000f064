import Support
import Testing

@Suite struct LogRateLimiterTests {
    @Test func letsABurstThroughPerIntervalThenSummarises() {
        let clock = ManualClock()
        let limiter = LogRateLimiter(burst: 2, interval: .seconds(10), clock: clock)
        let first = (0..<5).map { _ in limiter.admit("malformed") }
        #expect(first.map(\.emit) == [true, true, false, false, false])
        #expect(first.allSatisfy { $0.suppressedBefore == 0 })
        // Another key has its own budget.
        #expect(limiter.admit("other").emit)
        clock.advance(by: .seconds(10))
        let next = limiter.admit("malformed")
        #expect(next == .init(emit: true, suppressedBefore: 3))
        // Reported once only.
        #expect(limiter.admit("malformed") == .init(emit: true, suppressedBefore: 0))
        #expect(limiter.admit("malformed") == .init(emit: false, suppressedBefore: 0))
    }

    @Test func flushReportsEndedIntervalsOnce() {
        let clock = ManualClock()
        let limiter = LogRateLimiter(burst: 1, interval: .seconds(5), clock: clock)
        for _ in 0..<4 { _ = limiter.admit("a") }
        for _ in 0..<2 { _ = limiter.admit("b") }
        #expect(limiter.flush().isEmpty, "nothing is due before the interval ends")
        clock.advance(by: .seconds(5))
        let due = limiter.flush()
        #expect(due.map(\.key) == ["a", "b"])
        #expect(due.map(\.suppressed) == [3, 1])
        #expect(limiter.flush().isEmpty)
        #expect(limiter.admit("a") == .init(emit: true, suppressedBefore: 0))
    }

    @Test func keyTableIsBounded() {
        let clock = ManualClock()
        let limiter = LogRateLimiter(burst: 1, interval: .seconds(5), maxKeys: 2, clock: clock)
        #expect(limiter.admit("k0").emit)
        #expect(limiter.admit("k1").emit)
        // Full: new keys share the overflow entry (one record let through, the rest counted).
        #expect(limiter.admit("k2").emit)
        #expect(!limiter.admit("k3").emit, "k3 shares the overflow entry with k2")
        clock.advance(by: .seconds(5))
        // Ended windows without suppressed records are evicted to make room.
        _ = limiter.flush()
        #expect(limiter.admit("k4").emit)
    }

    @Test func rateLimitedLoggerWritesBurstAndSummary() {
        let clock = ManualClock()
        let sink = CollectingLogSink()
        let log = RateLimitedLogger(Logger(label: "t", level: .info, sink: sink),
                                    limiter: LogRateLimiter(burst: 3, interval: .seconds(10), clock: clock))
        for i in 0..<1_000 { log.info("closing connection: malformed request body", metadata: ["peer": "p\(i)"]) }
        log.debug("not enabled")
        #expect(sink.records.count == 3)
        clock.advance(by: .seconds(10))
        log.flush()
        let records = sink.records
        #expect(records.count == 4)
        #expect(records.last?.message == "suppressed similar messages")
        #expect(records.last?.metadata["suppressed"] == "997")
        #expect(records.last?.metadata["message"] == "closing connection: malformed request body")
    }
}
