import Foundation
import Testing

@testable import Operator

/// The autoscaler on a manual clock: time is a number the test advances.
@Suite struct AutoscalerTests {
    static let MiB = 1024.0 * 1024.0

    /// Target 5 MiB/s in per broker, tolerance 10 %, up window 30 s, down window 300 s.
    func settings(min: Int32 = 1, max: Int32 = 10, upStep: Int32 = 4, downStep: Int32 = 1, upWindow: Int32 = 30) -> AutoscalerSettings {
        AutoscalerSettings(AutoscalingSpec(
            enabled: true, minBrokers: min, maxBrokers: max, targets: .init(bytesInPerSecond: Int64(5 * Self.MiB)),
            tolerancePercent: 10, scaleUp: .init(stabilizationWindowSeconds: upWindow, maxStepBrokers: upStep),
            scaleDown: .init(stabilizationWindowSeconds: 300, maxStepBrokers: downStep)))
    }

    /// `total` bytes in per second spread evenly over `brokers` brokers.
    func loads(_ total: Double, brokers: Int) -> [Int32: BrokerLoad?] {
        Dictionary(uniqueKeysWithValues: (1...brokers).map { (Int32($0), BrokerLoad(bytesInPerSecond: total / Double(brokers))) })
    }

    /// Runs the autoscaler every `tick` seconds from `start` to `end`, applying each change at
    /// once (as a perfect shell would); returns the decisions that changed the count.
    func run(_ scaler: inout Autoscaler, brokers: inout Int, from start: Double, to end: Double, tick: Double = 5,
             load: (Double) -> Double) -> [AutoscalerDecision] {
        var changes: [AutoscalerDecision] = []
        var t = start
        while t < end {
            let d = scaler.decide(now: t, current: brokers, loads: loads(load(t), brokers: brokers))
            if d.isChange {
                changes.append(d)
                brokers = d.desired
                scaler.scaled(to: brokers, at: t)
            }
            t += tick
        }
        return changes
    }

    @Test func noisySteadyLoadMakesNoDecisionForAnHour() {
        // 14 MiB/s ± 20 % on 4 brokers (70 % of their 20 MiB/s), a sample every 5 s for an hour.
        var random = SeededRandom(seed: 42)
        var scaler = Autoscaler(settings: settings())
        var brokers = 4
        let changes = run(&scaler, brokers: &brokers, from: 0, to: 3600) { _ in 14 * Self.MiB * random.uniform(0.8, 1.2) }
        #expect(changes.isEmpty, "decisions: \(changes.map(\.reason))")
        #expect(brokers == 4)
    }

    @Test func noisyLoadAtCapacityScalesAtMostOnceAndNeverFlaps() {
        // 20 MiB/s ± 20 % on 4 brokers: the peaks are above the band, so one scale-out is right;
        // after it, nothing may go back and forth.
        var random = SeededRandom(seed: 7)
        var scaler = Autoscaler(settings: settings(upWindow: 0))
        var brokers = 4
        let changes = run(&scaler, brokers: &brokers, from: 0, to: 3600) { _ in 20 * Self.MiB * random.uniform(0.8, 1.2) }
        #expect(changes.count <= 1, "decisions: \(changes.map { "\($0.current)→\($0.desired): \($0.reason)" })")
        #expect(changes.allSatisfy { $0.desired > $0.current })
    }

    @Test func stepUpScalesWithinTheUpWindow() throws {
        // 8 MiB/s on 2 brokers, then 40 MiB/s from t = 100 s: wants 8 brokers; step 4 → 6, then 8.
        var scaler = Autoscaler(settings: settings(upWindow: 30))
        var brokers = 2
        let changes = run(&scaler, brokers: &brokers, from: 0, to: 400) { $0 < 100 ? 8 * Self.MiB : 40 * Self.MiB }
        let first = try #require(changes.first)
        #expect(first.time >= 100 + 30 && first.time <= 100 + 30 + 5, "first scale-out at \(first.time) s")
        #expect(first.desired == 6, "step limit 4 from 2: \(first.reason)")
        #expect(first.metric == "bytesIn")
        #expect(first.reason.contains("target 5.0 MiB/s"), "\(first.reason)")
        #expect(brokers == 8)
        #expect(changes.allSatisfy { $0.desired > $0.current })
    }

    @Test func shortSpikeDoesNotScaleIn() {
        // 18 MiB/s on 4 brokers with a 60 s dip to 2 MiB/s: the dip is shorter than the 300 s down window.
        var scaler = Autoscaler(settings: settings())
        var brokers = 4
        let changes = run(&scaler, brokers: &brokers, from: 0, to: 1800) { ($0 >= 600 && $0 < 660) ? 2 * Self.MiB : 18 * Self.MiB }
        #expect(changes.isEmpty, "decisions: \(changes.map(\.reason))")
    }

    @Test func sustainedDropScalesInOneStepPerWindow() {
        // 18 MiB/s on 4 brokers, then 2 MiB/s from t = 600: down to 1 broker, one at a time, each
        // after the 300 s window held.
        var scaler = Autoscaler(settings: settings())
        var brokers = 4
        let changes = run(&scaler, brokers: &brokers, from: 0, to: 3000) { $0 < 600 ? 18 * Self.MiB : 2 * Self.MiB }
        #expect(changes.map(\.desired) == [3, 2, 1])
        #expect(changes.first.map { $0.time >= 900 } == true, "first scale-in at \(changes.first?.time ?? -1) s")
        for (a, b) in zip(changes, changes.dropFirst()) { #expect(b.time - a.time >= 300) }
    }

    @Test func minAndMaxHold() {
        var scaler = Autoscaler(settings: settings(min: 2, max: 5, upStep: 10, upWindow: 0))
        var brokers = 2
        let up = run(&scaler, brokers: &brokers, from: 0, to: 100) { _ in 200 * Self.MiB }
        #expect(brokers == 5)
        #expect(up.count == 1)
        let down = run(&scaler, brokers: &brokers, from: 100, to: 3000) { _ in 0 }
        #expect(brokers == 2)
        #expect(down.allSatisfy { $0.desired >= 2 })
        // A count outside the bounds (set by hand) is brought back at once.
        let d = scaler.decide(now: 3000, current: 7, loads: loads(0, brokers: 7))
        #expect(d.desired == 5)
    }

    @Test func unscrapableBrokerBlocksScaleIn() {
        var scaler = Autoscaler(settings: settings())
        var loads = loads(1 * Self.MiB, brokers: 4)
        loads[3] = .some(nil)
        var decisions: [AutoscalerDecision] = []
        for t in stride(from: 0.0, to: 1200, by: 5) { decisions.append(scaler.decide(now: t, current: 4, loads: loads)) }
        #expect(decisions.allSatisfy { !$0.isChange })
        #expect(decisions.last?.reason.contains("scale-in blocked: broker 3 not scraped") == true, "\(decisions.last?.reason ?? "")")
        // Once broker 3 answers again, the same load scales in after the window.
        loads[3] = BrokerLoad(bytesInPerSecond: 0)
        var changed: AutoscalerDecision?
        for t in stride(from: 1200.0, to: 1600, by: 5) {
            let d = scaler.decide(now: t, current: 4, loads: loads)
            if d.isChange { changed = d; break }
        }
        #expect(changed?.desired == 3)
    }

    @Test func highestMetricWins() throws {
        var spec = AutoscalingSpec(
            enabled: true, minBrokers: 1, maxBrokers: 20,
            targets: .init(bytesInPerSecond: Int64(5 * Self.MiB), bytesOutPerSecond: Int64(10 * Self.MiB)),
            scaleUp: .init(stabilizationWindowSeconds: 0, maxStepBrokers: 20))
        spec.tolerancePercent = 10
        var scaler = Autoscaler(settings: AutoscalerSettings(spec))
        // 10 MiB/s in wants 2; 60 MiB/s out wants 6.
        let load = BrokerLoad(bytesInPerSecond: 10 * Self.MiB, bytesOutPerSecond: 60 * Self.MiB)
        let d = scaler.decide(now: 0, current: 1, loads: [1: load])
        #expect(d.desired == 6)
        #expect(d.metric == "bytesOut")
    }

    @Test func byteRatesParseAndFormat() {
        #expect(ByteRate.parse("5MiB/s") == 5 * Self.MiB)
        #expect(ByteRate.parse("512KiB/s") == 524_288.0)
        #expect(ByteRate.parse("1000") == 1000)
        #expect(ByteRate.parse("2MB/s") == 2e6)
        #expect(ByteRate.parse("fast") == nil)
        #expect(ByteRate.parse("-1MiB/s") == nil)
        #expect(ByteRate.format(41.94 * Self.MiB) == "41.9 MiB/s")
    }
}

extension SeededRandom {
    mutating func uniform(_ low: Double, _ high: Double) -> Double { Double.random(in: low..<high, using: &self) }
}
