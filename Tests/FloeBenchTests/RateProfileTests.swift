import Testing

@testable import floe_bench

@Suite struct RateProfileParsingTests {
    func parse(
        _ rate: String?, profile: String? = nil, ramp: String? = nil, hold: String? = nil, down: String? = nil,
        period: String? = nil, recordSize: Int = 1024
    ) throws -> RateProfile? {
        try RateProfile.parse(
            rate: rate, profile: profile, ramp: ramp, hold: hold, down: down, period: period, recordSize: recordSize)
    }

    func message(_ body: () throws -> Void) -> String {
        do {
            try body()
            Issue.record("no error thrown")
            return ""
        } catch {
            return "\(error)"
        }
    }

    @Test func recordsAndBytesPerSecond() throws {
        #expect(try parse(nil) == nil)
        #expect(try parse("2000") == RateProfile(constant: 2000))
        #expect(try parse("5MiB/s") == RateProfile(constant: 5120))
        #expect(try parse("1MB/s", recordSize: 1000) == RateProfile(constant: 1000))
        #expect(try parse("512KiB/s", recordSize: 512) == RateProfile(constant: 1024))
        #expect(try parse("0.5GiB/s", recordSize: 1_048_576) == RateProfile(constant: 512))
    }

    @Test func rangesDefaultToARampOfSixtySecondsPerPhase() throws {
        let p = try #require(try parse("5MiB/s..50MiB/s"))
        #expect(p == RateProfile(low: 5120, high: 51200, shape: .ramp(.init(up: 60, hold: 60, down: 60))))
        #expect(p.naturalDuration == 180)
        let q = try #require(try parse("1000..10000", ramp: "90s", hold: "2m", down: "500ms"))
        #expect(q == RateProfile(low: 1000, high: 10000, shape: .ramp(.init(up: 90, hold: 120, down: 0.5))))
        let s = try #require(try parse("1000..2000", profile: "step", ramp: "10", hold: "1.5m"))
        #expect(s.shape == .step(.init(up: 10, hold: 90, down: 60)))
        let d = try #require(try parse("1000..2000", profile: "daily", period: "10m"))
        #expect(d.shape == .daily(period: 600))
        #expect(d.naturalDuration == 600)
        #expect(try parse("1000..2000", profile: "daily")?.shape == .daily(period: 600))
    }

    @Test func errorsNameTheOptionAndTheInput() throws {
        #expect(message { _ = try parse("5XB/s") }.contains("unknown unit \"XB/s\""))
        #expect(message { _ = try parse("5XB/s") }.contains("MiB/s"))
        #expect(message { _ = try parse("fast") }.contains("\"fast\" is not a rate"))
        #expect(message { _ = try parse("0") }.contains("above 0"))
        #expect(message { _ = try parse("50MiB/s..5MiB/s") }.contains("the low end (50MiB/s) is above the high end (5MiB/s)"))
        #expect(message { _ = try parse("1..2..3") }.contains("one '..'"))
        #expect(message { _ = try parse("1000..2000", profile: "sine") }.contains("--profile sine: unknown profile"))
        #expect(message { _ = try parse("1000..2000", ramp: "10x") }.contains("--ramp 10x: unknown unit \"x\""))
        #expect(message { _ = try parse("1000..2000", hold: "soon") }.contains("--hold soon: not a duration"))
        #expect(message { _ = try parse("1000", ramp: "10s") }.contains("--ramp needs a range"))
        #expect(message { _ = try parse(nil, profile: "daily") }.contains("--profile needs a range"))
        #expect(message { _ = try parse("1000..2000", period: "1m") }.contains("--period is for --profile daily"))
        #expect(message { _ = try parse("1000..2000", profile: "daily", ramp: "1m") }.contains("--ramp is for --profile ramp or step"))
        #expect(message { _ = try parse("1000..2000", ramp: "0", hold: "0", down: "0") }.contains("no length"))
    }

    @Test func durations() throws {
        #expect(try parseDuration("90s", option: "d") == 90)
        #expect(try parseDuration("2m", option: "d") == 120)
        #expect(try parseDuration("500ms", option: "d") == 0.5)
        #expect(try parseDuration("1h", option: "d") == 3600)
        #expect(try parseDuration("12.5", option: "d") == 12.5)
    }
}

@Suite struct RateProfileShapeTests {
    let ramp = RateProfile(low: 1000, high: 5000, shape: .ramp(.init(up: 10, hold: 20, down: 10)))

    @Test func rampHoldDownThenLow() {
        #expect(ramp.rate(at: 0) == 1000)
        #expect(ramp.rate(at: 5) == 3000)
        #expect(ramp.rate(at: 10) == 5000)
        #expect(ramp.rate(at: 29.9) == 5000)
        #expect(ramp.rate(at: 35) == 3000)
        #expect(ramp.rate(at: 40) == 1000)
        #expect(ramp.rate(at: 100) == 1000)
        #expect(ramp.records(by: 10) == 30_000)
        #expect(ramp.records(by: 30) == 130_000)
        #expect(ramp.records(by: 40) == 160_000)
        #expect(ramp.records(by: 50) == 170_000)
    }

    @Test func zeroLengthPhases() {
        let p = RateProfile(low: 100, high: 200, shape: .ramp(.init(up: 0, hold: 5, down: 0)))
        #expect(p.rate(at: 0) == 200)
        #expect(p.rate(at: 5) == 100)
        #expect(p.records(by: 5) == 1000)
        #expect(p.records(by: 6) == 1100)
    }

    @Test func stepJumpsWithoutARamp() {
        let p = RateProfile(low: 1000, high: 5000, shape: .step(.init(up: 10, hold: 20, down: 10)))
        #expect(p.rate(at: 9.999) == 1000)
        #expect(p.rate(at: 10) == 5000)
        #expect(p.rate(at: 29.999) == 5000)
        #expect(p.rate(at: 30) == 1000)
        #expect(p.records(by: 10) == 10_000)
        #expect(p.records(by: 30) == 110_000)
        #expect(p.records(by: 40) == 120_000)
    }

    @Test func dailyStaysWithinTheRangeAndPeaksAtHigh() {
        let p = RateProfile(low: 1000, high: 5000, shape: .daily(period: 600))
        var highest = 0.0
        for i in 0...60_000 {
            let r = p.rate(at: Double(i) * 0.02)  // two periods in 20 ms steps
            #expect(r >= 1000 && r <= 5000, "rate \(r) at \(Double(i) * 0.02) s")
            highest = max(highest, r)
        }
        #expect(p.rate(at: 0) == 1000)  // midnight
        #expect(abs(p.rate(at: 300) - 3400) < 1e-6)  // noon: 0.6 of the range
        #expect(abs(p.rate(at: 480) - 5000) < 1e-6)  // the spike at 0.8 of the period
        #expect(abs(p.rate(at: 1080) - 5000) < 1e-6)  // and again in the next period
        #expect(highest > 4999)
        // Outside the spike it is the hump alone.
        #expect(abs(p.rate(at: 450) - (1000 + 4000 * 0.6 * 0.5)) < 1e-6)  // 0.75 of the day: sin² = 0.5
    }

    /// The closed-form integral against a fine numeric one (Simpson), over two periods.
    @Test func dailyIntegralMatchesNumericIntegration() {
        let p = RateProfile(low: 1000, high: 5000, shape: .daily(period: 600))
        var simpson = 0.0
        let h = 0.01
        var t = 0.0
        for _ in 0..<120_000 {
            simpson += h / 6 * (p.rate(at: t) + 4 * p.rate(at: t + h / 2) + p.rate(at: t + h))
            t += h
            if Int((t / h).rounded()) % 3000 == 0 {
                #expect(abs(p.records(by: t) - simpson) < 0.01, "at \(t) s: \(p.records(by: t)) vs \(simpson)")
            }
        }
    }
}

@Suite struct RateScheduleTests {
    /// Requests due by `t` from the schedule (request k is due at dueTime(k)) against the
    /// integral: ⌊records(by: t) / per request⌋ + 1, within one request (a due time may be up to
    /// 100 ns late, so at an exact multiple the schedule can count one fewer).
    func checkSchedule(_ profile: RateProfile, perRequest: Int, until end: Double, connections: Int = 1) {
        var schedules = (0..<connections).map { _ in RateSchedule(profile: profile, recordsPerRequest: perRequest) }
        var dueTimes: [Double] = []
        var k = 0
        while true {
            let t = schedules[k % connections].dueTime(ofRequest: k)
            if t > end { break }
            if let last = dueTimes.last { #expect(t >= last) }
            dueTimes.append(t)
            k += 1
        }
        var checked = 0
        var i = 0
        for step in 0...Int(end * 10) {
            let t = Double(step) / 10
            while i < dueTimes.count && dueTimes[i] <= t { i += 1 }
            let fromIntegral = Int(profile.records(by: t) / Double(perRequest)) + 1
            #expect(abs(i - fromIntegral) <= 1, "at \(t) s: \(i) requests due, integral says \(fromIntegral)")
            checked += 1
        }
        #expect(checked > 0)
    }

    @Test func constantMatchesFixedInterval() {
        var s = RateSchedule(profile: RateProfile(constant: 2000), recordsPerRequest: 16)
        #expect(s.dueTime(ofRequest: 0) == 0)
        #expect(s.dueTime(ofRequest: 125) == 1)
        checkSchedule(RateProfile(constant: 2000), perRequest: 16, until: 5)
    }

    @Test func rampScheduleFollowsTheIntegral() {
        let p = RateProfile(low: 1000, high: 8000, shape: .ramp(.init(up: 10, hold: 10, down: 10)))
        checkSchedule(p, perRequest: 16, until: 40)
        checkSchedule(p, perRequest: 16, until: 40, connections: 3)
    }

    @Test func stepScheduleFollowsTheIntegral() {
        let p = RateProfile(low: 1000, high: 50_000, shape: .step(.init(up: 2, hold: 3, down: 2)))
        checkSchedule(p, perRequest: 16, until: 8)
    }

    @Test func dailyScheduleFollowsTheIntegral() {
        let p = RateProfile(low: 500, high: 20_000, shape: .daily(period: 60))
        checkSchedule(p, perRequest: 16, until: 120, connections: 2)
    }

    @Test func slowRatesWaitLongBetweenRequests() {
        // 1 record/s with 16 records per request: request 1 is due after 16 s.
        var s = RateSchedule(profile: RateProfile(low: 1, high: 2, shape: .ramp(.init(up: 0, hold: 0, down: 1))), recordsPerRequest: 16)
        #expect(s.dueTime(ofRequest: 0) == 0)
        let t1 = s.dueTime(ofRequest: 1)
        #expect(abs(t1 - 15.5) < 1e-6)  // 1.5 records in the first second, then 1/s
    }
}
