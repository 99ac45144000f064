import Foundation
import Testing

@testable import Operator

/// Schedules and the predictive floor on a manual clock: the wall-clock time is a `Date` the
/// test advances tick by tick, the autoscaler's clock the matching number of seconds.
@Suite struct PrescaleTests {
    static let MiB = 1024.0 * 1024.0

    /// 2026-11-27 00:00:00 UTC (a Friday).
    static let day = Self.utc("2026-11-27T00:00:00Z")

    static func utc(_ text: String) -> Date {
        let f = ISO8601DateFormatter()
        return f.date(from: text)!
    }

    /// Target 50 MiB/s per broker, 1…30 brokers, down window 300 s, steps 4 / 1.
    func spec(schedules: [ScheduleSpec] = [], predictive: PredictiveSpec? = nil) -> AutoscalingSpec {
        AutoscalingSpec(
            enabled: true, minBrokers: 1, maxBrokers: 30, targets: .init(bytesInPerSecond: Int64(50 * Self.MiB)), tolerancePercent: 10,
            scaleUp: .init(stabilizationWindowSeconds: 0, maxStepBrokers: 4), scaleDown: .init(stabilizationWindowSeconds: 300, maxStepBrokers: 1),
            schedules: schedules, predictive: predictive)
    }

    func loads(_ total: Double, brokers: Int) -> [Int32: BrokerLoad?] {
        Dictionary(uniqueKeysWithValues: (1...brokers).map { (Int32($0), BrokerLoad(bytesInPerSecond: total / Double(brokers))) })
    }

    /// Ticks every 5 s from `start` to `end` (wall clock), applying each change at once; returns the changes.
    func run(_ spec: AutoscalingSpec, brokers: inout Int, from start: Date, to end: Date, load: (Date) -> Double) throws -> [(Date, AutoscalerDecision)] {
        var scaler = Autoscaler(settings: AutoscalerSettings(spec))
        var prescaler = Prescaler(policy: try PrescalePolicy(spec))
        var changes: [(Date, AutoscalerDecision)] = []
        var now = start
        while now < end {
            let t = now.timeIntervalSince(start)
            prescaler.observe(bytesIn: load(now), at: now)
            let d = scaler.decide(now: t, current: brokers, loads: loads(load(now), brokers: brokers), floors: prescaler.evaluate(at: now).floors)
            if d.isChange {
                changes.append((now, d))
                brokers = d.desired
                scaler.scaled(to: brokers, at: t)
            }
            now = now.addingTimeInterval(5)
        }
        return changes
    }

    // MARK: Cron

    @Test func cronFieldsAcceptListsRangesStepsAndNames() throws {
        let c = try CronExpression("0,30 8-18/2 * nov-dec mon-fri")
        #expect(c.minutes == [0, 30])
        #expect(c.hours == [8, 10, 12, 14, 16, 18])
        #expect(c.months == [11, 12])
        #expect(c.daysOfWeek == [1, 2, 3, 4, 5])
        #expect(try CronExpression("*/15 * * * 7").daysOfWeek == [0])
        #expect(try CronExpression("5/20 * * * *").minutes == [5, 25, 45])
        // Both day fields restricted: either matches (Vixie cron). 2026-11-27 is a Friday, the 27th.
        let friday = CivilDay(daysSinceEpoch: Int(Self.day.timeIntervalSince1970 / 86_400))
        #expect(friday.day == 27 && friday.month == 11 && friday.year == 2026 && friday.weekday == 5)
        #expect(try CronExpression("0 0 1 * fri").matches(day: friday))
        #expect(try CronExpression("0 0 27 * mon").matches(day: friday))
        #expect(try !CronExpression("0 0 1 * mon").matches(day: friday))
        #expect(try !CronExpression("0 0 1 * *").matches(day: friday))
    }

    @Test func badCronIsRefusedNamingTheField() {
        for (text, words) in [
            ("0 20 * *", "4 fields"), ("60 * * * *", "minute field"), ("* 24 * * *", "hour field"), ("* * 0 * *", "day-of-month"),
            ("* * * 13 *", "month field"), ("* * * * mo", "day-of-week"), ("*/0 * * * *", "step"), ("5-1 * * * *", "backwards"),
            ("1,,2 * * * *", "empty"),
        ] {
            #expect {
                _ = try CronExpression(text)
            } throws: { error in
                "\(error)".contains(words)
            }
        }
    }

    // MARK: Schedules

    /// The floor rises lead-time early, holds through the window, falls after it; the count follows
    /// and then scales in by the normal rules (down window, one step at a time).
    @Test func scheduleRaisesTheFloorLeadTimeEarlyAndReleasesItAfterwards() throws {
        let s = spec(schedules: [ScheduleSpec(name: "black-friday", start: "0 20 27 11 *", durationMinutes: 60, minBrokers: 8, leadTimeSeconds: 300)])
        var brokers = 1
        let changes = try run(s, brokers: &brokers, from: Self.utc("2026-11-27T19:00:00Z"), to: Self.utc("2026-11-27T22:00:00Z")) { _ in 20 * Self.MiB }
        let up = try #require(changes.first)
        #expect(up.0 == Self.utc("2026-11-27T19:55:00Z"), "raised at \(up.0)")
        #expect(up.1.desired == 8)
        #expect(up.1.reason.hasPrefix("schedule black-friday floor 8"), "\(up.1.reason)")
        #expect(up.1.floor?.source == "schedule black-friday")
        // Nothing else until the window closes at 21:00; then one step down per 300 s window.
        let downs = changes.dropFirst()
        #expect(downs.allSatisfy { $0.1.desired == $0.1.current - 1 })
        let firstDown = try #require(downs.first)
        #expect(firstDown.0 >= Self.utc("2026-11-27T21:05:00Z"), "scale-in at \(firstDown.0): before the down window after the window closed")
        #expect(firstDown.0 < Self.utc("2026-11-27T21:06:00Z"))
        #expect(!firstDown.1.reason.contains("floor"), "\(firstDown.1.reason)")
        #expect(brokers < 8)
        // And a year later it fires again; on the 26th it does not.
        var p = Prescaler(policy: try PrescalePolicy(s))
        #expect(p.evaluate(at: Self.utc("2026-11-26T20:30:00Z")).floors.isEmpty)
        #expect(p.evaluate(at: Self.utc("2027-11-27T20:30:00Z")).highest?.brokers == 8)
        #expect(p.evaluate(at: Self.utc("2026-11-27T19:54:59Z")).floors.isEmpty)
        #expect(p.evaluate(at: Self.utc("2026-11-27T20:59:59Z")).highest?.brokers == 8)
        #expect(p.evaluate(at: Self.utc("2026-11-27T21:00:00Z")).floors.isEmpty)
    }

    /// Above the floor the reactive policy still scales; a scale-in stops at the floor and says so.
    @Test func reactivePolicyScalesAboveTheFloorAndScaleInStopsAtIt() throws {
        let s = spec(schedules: [ScheduleSpec(name: "sale", start: "0 20 * * *", durationMinutes: 120, minBrokers: 4, leadTimeSeconds: 0)])
        var brokers = 1
        // 500 MiB/s from 20:10 to 20:40 (10 brokers at 50 MiB/s), 20 MiB/s otherwise.
        let changes = try run(s, brokers: &brokers, from: Self.utc("2026-11-27T19:50:00Z"), to: Self.utc("2026-11-27T21:30:00Z")) { now in
            let m = now.timeIntervalSince(Self.utc("2026-11-27T20:00:00Z")) / 60
            return m >= 10 && m < 40 ? 500 * Self.MiB : 20 * Self.MiB
        }
        #expect(changes.first?.1.desired == 4)
        #expect(changes.map(\.1.desired).max() == 10, "\(changes.map { "\($0.1.current)→\($0.1.desired)" })")
        let heldAt4 = changes.filter { $0.0 < Self.utc("2026-11-27T22:00:00Z") && $0.1.desired == 4 && $0.1.current == 5 }
        let last = try #require(heldAt4.last)
        #expect(last.1.reason.contains("held at schedule sale floor 4"), "\(last.1.reason)")
        #expect(last.1.floor?.brokers == 4)
        // Nothing went below 4 before the window closed at 22:00 (the run ends at 21:30).
        #expect(changes.allSatisfy { $0.1.desired >= 4 })
    }

    @Test func overlappingWindowsTakeTheHighestFloor() throws {
        let s = spec(schedules: [
            ScheduleSpec(name: "evening", start: "0 20 * * *", durationMinutes: 120, minBrokers: 4, leadTimeSeconds: 0),
            ScheduleSpec(name: "flash-sale", start: "0 21 * * *", durationMinutes: 30, minBrokers: 8, leadTimeSeconds: 0),
            ScheduleSpec(name: "small", start: "10 21 * * *", durationMinutes: 10, minBrokers: 2, leadTimeSeconds: 0),
        ])
        var p = Prescaler(policy: try PrescalePolicy(s))
        #expect(p.evaluate(at: Self.utc("2026-11-27T20:30:00Z")).highest?.label == "schedule evening floor 4")
        let overlap = p.evaluate(at: Self.utc("2026-11-27T21:15:00Z"))
        #expect(overlap.active.map(\.name) == ["evening", "flash-sale", "small"])
        #expect(overlap.highest?.label == "schedule flash-sale floor 8")
        #expect(p.evaluate(at: Self.utc("2026-11-27T21:45:00Z")).highest?.label == "schedule evening floor 4")
        #expect(p.evaluate(at: Self.utc("2026-11-27T22:00:00Z")).floors.isEmpty)
        // A schedule overlapping itself (every 10 minutes, 60 minutes long) counts once.
        var selfOverlap = Prescaler(policy: try PrescalePolicy(spec(schedules: [
            ScheduleSpec(name: "often", start: "*/10 * * * *", durationMinutes: 60, minBrokers: 3, leadTimeSeconds: 0)])))
        let o = selfOverlap.evaluate(at: Self.utc("2026-11-27T20:35:00Z"))
        #expect(o.active.count == 1 && o.floors.count == 1)
        #expect(o.active.first?.end == Self.utc("2026-11-27T21:30:00Z"))
        var brokers = 1
        let changes = try run(s, brokers: &brokers, from: Self.utc("2026-11-27T19:59:00Z"), to: Self.utc("2026-11-27T21:20:00Z")) { _ in 10 * Self.MiB }
        #expect(changes.map(\.1.desired) == [4, 8], "\(changes.map(\.1.reason))")
        #expect(changes.last?.1.reason.hasPrefix("schedule flash-sale floor 8") == true)
    }

    /// Time zones and daylight saving: Europe/Berlin changes on 2026-03-29 (02:00 CET → 03:00
    /// CEST) and 2026-10-25 (03:00 CEST → 02:00 CET).
    @Test func timeZonesAndDaylightSavingChanges() throws {
        let berlin = try #require(TimeZone(identifier: "Europe/Berlin"))
        let at0230 = try CronExpression("30 2 * * *")
        func firings(_ from: String, _ to: String) -> [Date] { at0230.firings(from: Self.utc(from), through: Self.utc(to), in: berlin) }
        // An ordinary day: 02:30 CET is 01:30 UTC.
        #expect(firings("2026-03-28T00:00:00Z", "2026-03-28T23:59:59Z") == [Self.utc("2026-03-28T01:30:00Z")])
        // Spring forward: 02:30 does not exist; fires once, at 03:00 CEST = 01:00 UTC.
        #expect(firings("2026-03-29T00:00:00Z", "2026-03-29T23:59:59Z") == [Self.utc("2026-03-29T01:00:00Z")])
        // Fall back: 02:30 happens twice; fires once, at the first (02:30 CEST = 00:30 UTC).
        #expect(firings("2026-10-25T00:00:00Z", "2026-10-25T23:59:59Z") == [Self.utc("2026-10-25T00:30:00Z")])
        // The day after: 02:30 CET = 01:30 UTC.
        #expect(firings("2026-10-26T00:00:00Z", "2026-10-26T23:59:59Z") == [Self.utc("2026-10-26T01:30:00Z")])
        // A window at 09:00 New York on weekdays follows its own zone (EST, UTC−5 in December).
        let ny = try #require(TimeZone(identifier: "America/New_York"))
        #expect(try CronExpression("0 9 * * 1-5").firings(from: Self.utc("2026-12-05T00:00:00Z"), through: Self.utc("2026-12-08T00:00:00Z"), in: ny)
            == [Self.utc("2026-12-07T14:00:00Z")])
        // Through the policy: a 02:30 Berlin window with a 10-minute lead on the spring-forward day
        // raises the floor at 00:50 UTC (10 minutes before 03:00 CEST) and holds 60 minutes after.
        let s = spec(schedules: [ScheduleSpec(name: "night-batch", start: "30 2 * * *", timeZone: "Europe/Berlin", durationMinutes: 60, minBrokers: 3, leadTimeSeconds: 600)])
        var p = Prescaler(policy: try PrescalePolicy(s))
        #expect(p.evaluate(at: Self.utc("2026-03-29T00:49:59Z")).floors.isEmpty)
        #expect(p.evaluate(at: Self.utc("2026-03-29T00:50:00Z")).highest?.brokers == 3)
        #expect(p.evaluate(at: Self.utc("2026-03-29T01:59:59Z")).highest?.brokers == 3)
        #expect(p.evaluate(at: Self.utc("2026-03-29T02:00:00Z")).floors.isEmpty)
        // Fall-back day: one window only, 00:20-01:30 UTC; not again at the second 02:30 (01:30 UTC).
        #expect(p.evaluate(at: Self.utc("2026-10-25T00:19:59Z")).floors.isEmpty)
        #expect(p.evaluate(at: Self.utc("2026-10-25T00:20:00Z")).highest?.brokers == 3)
        #expect(p.evaluate(at: Self.utc("2026-10-25T01:29:59Z")).highest?.brokers == 3)
        #expect(p.evaluate(at: Self.utc("2026-10-25T01:30:00Z")).floors.isEmpty)
        #expect(p.evaluate(at: Self.utc("2026-10-25T02:00:00Z")).floors.isEmpty)
    }

    @Test func expectedBytesInBecomeBrokersAtTheTargetAndAreCappedAtMax() throws {
        let s = spec(schedules: [
            ScheduleSpec(name: "peak", start: "0 20 * * *", durationMinutes: 60, expectedBytesInPerSecond: Int64(420 * Self.MiB)),
            ScheduleSpec(name: "huge", start: "0 10 * * *", durationMinutes: 60, expectedBytesInPerSecond: Int64(5000 * Self.MiB)),
        ])
        let policy = try PrescalePolicy(s)
        #expect(policy.schedules.map(\.floor) == [9, 30])
        #expect(policy.schedules[0].floorSource == "expected 420.0 MiB/s at 50.0 MiB/s per broker")
        #expect(policy.schedules[0].leadTime == 300)
    }

    // MARK: Predictive

    /// Seven simulated days of a daily evening rush (to 200 MiB/s at 20:00 within 2 minutes): on
    /// the eighth day the predictive floor has the brokers there before 20:00; reactive alone
    /// reaches them only after the rush has begun.
    @Test func predictiveFloorLearnedFromSevenDaysAnticipatesTheDailyPeak() throws {
        let trace = LoadTrace.festivalWeek(low: 10 * Self.MiB, daily: 200 * Self.MiB, festival: 200 * Self.MiB, days: 8)
        let start = Self.utc("2026-11-16T00:00:00Z")
        let reactive = AutoscalerSettings(spec())
        let predictiveSpec = spec(predictive: PredictiveSpec(enabled: true))
        let plain = Simulation.run(trace: trace, settings: reactive, initial: 1, tick: 10, start: start)
        let predicted = Simulation.run(trace: trace, settings: reactive, initial: 1, tick: 10, prescale: try PrescalePolicy(predictiveSpec), start: start)
        func brokers(_ r: SimulationResult, at t: Double) -> Int { r.brokersOverTime.last { $0.time <= t }!.brokers }
        let rush = 7 * 86_400.0 + 20 * 3600  // day 8, 20:00
        // 200 MiB/s at 50 MiB/s per broker needs 4 brokers.
        #expect(brokers(predicted, at: rush - 60) >= 4, "predictive: \(brokers(predicted, at: rush - 60)) brokers at 19:59")
        #expect(brokers(plain, at: rush - 60) < 4, "reactive: \(brokers(plain, at: rush - 60)) brokers at 19:59")
        #expect(predicted.decisions.contains { $0.reason.contains("predictive floor") && $0.floor?.source == "predictive" })
        // Under-provisioned minutes on the last day: none with prediction, some without.
        #expect(predicted.underProvisionedMinutes < plain.underProvisionedMinutes, "\(predicted.underProvisionedMinutes) vs \(plain.underProvisionedMinutes)")
        #expect(predicted.worstBacklogBytes < plain.worstBacklogBytes)
    }

    /// A one-off peak in the history (the festival) is not repeated every day once four days are known.
    @Test func aOneOffPeakDoesNotBecomeADailyFloor() {
        var h = LoadHistory(days: 7)
        let base = Self.utc("2026-11-20T00:00:00Z")
        for day in 0..<6 {
            let v = day == 3 ? 1000 * Self.MiB : 100 * Self.MiB
            h.record(bytesIn: v, at: base.addingTimeInterval(Double(day) * 86_400 + 20 * 3600))
        }
        let next = base.addingTimeInterval(6 * 86_400 + 19.5 * 3600)
        let peak = h.predictPeak(from: next, lookahead: 3600, days: 7)
        #expect(peak?.bytesIn == 100 * Self.MiB)
        #expect(peak?.days == 6)
        // With only three days known, the highest counts.
        var short = LoadHistory(days: 7)
        for day in 0..<3 { short.record(bytesIn: day == 1 ? 1000 * Self.MiB : 100 * Self.MiB, at: base.addingTimeInterval(Double(day) * 86_400 + 20 * 3600)) }
        #expect(short.predictPeak(from: base.addingTimeInterval(3 * 86_400 + 19.5 * 3600), lookahead: 3600, days: 7)?.bytesIn == 1000 * Self.MiB)
    }

    /// The history survives a restart through its status form, and stays bounded.
    @Test func historyRoundTripsThroughStatusAndStaysBounded() throws {
        var h = LoadHistory(days: 7)
        let base = Self.utc("2026-11-01T00:00:00Z")
        for minute in stride(from: 0, to: 30 * 24 * 60, by: 1) {  // 30 days, one sample a minute
            let t = base.addingTimeInterval(Double(minute) * 60)
            h.record(bytesIn: Double(minute % 1440) * 1024, at: t)
        }
        let status = try #require(h.status)
        #expect(status.kibPerSecond.count == (7 * 288 * 4 + 2) / 3 * 4, "7 days of 4-byte buckets, base64")
        let back = try LoadHistory(status, days: 7)
        #expect(back == h)
        let now = base.addingTimeInterval(30 * 86_400 + 600)
        #expect(back.predictPeak(from: now, lookahead: 3600, days: 7)?.bytesIn == h.predictPeak(from: now, lookahead: 3600, days: 7)?.bytesIn)
        #expect(back.value(bucket: LoadHistory.bucket(base)) == nil, "older than 7 days is gone")
        // A corrupt status is refused with a message, not silently emptied.
        #expect(throws: OperatorError.self) { try LoadHistory(LoadHistoryStatus(bucketSeconds: 300, newestBucketStart: 0, kibPerSecond: "%%%"), days: 7) }
        // A gap of more than the history forgets everything before it.
        var gap = h
        gap.record(bytesIn: 5, at: now.addingTimeInterval(8 * 86_400))
        #expect(gap.predictPeak(from: now.addingTimeInterval(8 * 86_400 + 7200), lookahead: 3600, days: 7) == nil)
        #expect(gap.predictPeak(from: now.addingTimeInterval(9 * 86_400 - 1800), lookahead: 3600, days: 7)?.bytesIn == 5)
    }

    // MARK: Validation

    @Test func validationNamesBadSchedules() {
        let s = spec(
            schedules: [
                ScheduleSpec(name: "a", start: "0 25 * * *", durationMinutes: 60, minBrokers: 2),
                ScheduleSpec(name: "b", start: "0 20 * * *", timeZone: "Mars/Olympus", durationMinutes: -5, minBrokers: 2, leadTimeSeconds: -1),
                ScheduleSpec(name: "b", start: "0 20 * * *", durationMinutes: 60),
                ScheduleSpec(name: "Bad_Name", start: "0 20 * * *", durationMinutes: 60, minBrokers: 99),
            ], predictive: PredictiveSpec(enabled: true, historyDays: 30))
        let problems = FloeClusterValidation.autoscalingProblems(s, replicas: nil)
        let text = problems.joined(separator: "\n")
        #expect(text.contains("spec.autoscaling.schedules[0] (a).start: cron \"0 25 * * *\": hour field \"25\" has 25, outside 0-23"), "\(text)")
        #expect(text.contains("timeZone \"Mars/Olympus\" is not a known IANA time zone"))
        #expect(text.contains("durationMinutes -5 must be at least 1"))
        #expect(text.contains("leadTimeSeconds -1 is negative"))
        #expect(text.contains("(b).name \"b\" is used twice"))
        #expect(text.contains("(b) needs a floor: minBrokers or expectedBytesInPerSecond"))
        #expect(text.contains("name \"Bad_Name\" must be lower-case"))
        #expect(text.contains("minBrokers 99 exceeds maxBrokers 30"))
        #expect(text.contains("predictive.historyDays 30 is outside 1-14"))
        var noTarget = spec(schedules: [ScheduleSpec(name: "x", start: "0 20 * * *", durationMinutes: 60, expectedBytesInPerSecond: 1)],
                            predictive: PredictiveSpec(enabled: true))
        noTarget.targets = .init(cpuUtilizationPercent: 50)
        let p2 = FloeClusterValidation.autoscalingProblems(noTarget, replicas: nil).joined(separator: "\n")
        #expect(p2.contains("expectedBytesInPerSecond needs spec.autoscaling.targets.bytesInPerSecond"))
        #expect(p2.contains("predictive needs spec.autoscaling.targets.bytesInPerSecond"))
        #expect(FloeClusterValidation.autoscalingProblems(spec(schedules: [
            ScheduleSpec(name: "ok", start: "*/30 8-20 * nov fri", timeZone: "Europe/Berlin", durationMinutes: 30, minBrokers: 3)]), replicas: nil) == [])
    }

    // MARK: Status

    /// The status shows the floor and the windows; the history is written there and carried over
    /// a restart (before the autoscaler's first report) while predictive is on, dropped when off.
    @Test func statusShowsFloorsAndKeepsTheHistoryAcrossARestart() throws {
        var cluster = try sampleCluster("autoscaling")
        var prescaler = Prescaler(policy: try PrescalePolicy(cluster.spec.autoscaling!))
        // 2026-11-27 19:56 UTC = 20:56 Berlin: inside black-friday's lead time (window opens 20:00 Berlin = 19:00 UTC).
        let now = Self.utc("2026-11-27T19:02:00Z")
        prescaler.observe(bytesIn: 300 * Self.MiB, at: now.addingTimeInterval(-86_400 + 600))
        prescaler.observe(bytesIn: 1 * Self.MiB, at: now)
        var view = ElasticityView()
        view.desired = 8
        view.prescale = prescaler.evaluate(at: now)
        view.loadHistory = prescaler.history.status
        let report = AutoscalingManager.report(view, dryRun: false)
        let a = report.status
        #expect(a.floorBrokers == 8, "\(String(describing: a.floorReason))")
        #expect(a.floorReason?.hasPrefix("schedule black-friday floor 8") == true)
        #expect(a.activeSchedules?.map(\.name) == ["black-friday"])
        #expect(a.activeSchedules?.first?.start == "2026-11-27T19:00:00Z")
        #expect(a.activeSchedules?.first?.raiseAt == "2026-11-27T18:55:00Z")
        #expect(a.predictedBytesInPerSecond == Int64(360 * Self.MiB))
        let saved = try #require(a.loadHistory)

        // The operator restarts: its first status pass has no report yet; the history stays.
        cluster.status = FloeClusterStatus(autoscaling: a)
        let restarted = StatusComputer.compute(StatusInput(cluster: cluster, statefulSet: nil, problems: [], now: now))
        #expect(restarted.autoscaling?.loadHistory == saved)
        let back = try LoadHistory(saved, days: 7)
        #expect(back.predictPeak(from: now, lookahead: 3600, days: 7)?.bytesIn == 300 * Self.MiB)
        // Predictive turned off: the history is not carried.
        cluster.spec.autoscaling?.predictive?.enabled = false
        #expect(StatusComputer.compute(StatusInput(cluster: cluster, statefulSet: nil, problems: [], now: now)).autoscaling == nil)
    }
}
