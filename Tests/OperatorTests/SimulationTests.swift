import Foundation
import Testing

@testable import Operator

@Suite struct SimulationTests {
    static let MiB = 1024.0 * 1024.0

    func settings() -> AutoscalerSettings {
        AutoscalerSettings(AutoscalingSpec(
            enabled: true, minBrokers: 2, maxBrokers: 12, targets: .init(bytesInPerSecond: Int64(50 * Self.MiB))))
    }

    @Test func festivalDayUsesFewerBrokerHoursThanAStaticClusterAndNeverFlaps() {
        let trace = LoadTrace.festivalDay(low: 20 * Self.MiB, high: 400 * Self.MiB)
        let r = Simulation.run(trace: trace, settings: settings(), initial: 2)
        #expect(r.staticBrokers == 8)
        #expect(r.brokerHours < r.staticBrokerHours * 0.6, "elastic \(r.brokerHours) vs static \(r.staticBrokerHours)")
        #expect(r.flaps == 0, "\(r.decisions.map { "\($0.current)→\($0.desired)" })")
        #expect(r.brokersOverTime.map(\.brokers).max() == 8, "the peak needs every static broker")
        // With ±20 % noise on every sample: still no flap, and still cheaper than static.
        let noisy = Simulation.run(trace: trace, settings: settings(), initial: 2, noise: 0.2, seed: 3)
        #expect(noisy.flaps == 0, "\(noisy.decisions.map { "\($0.current)→\($0.desired)" })")
        #expect(noisy.brokerHours < noisy.staticBrokerHours * 0.6)
        // Load between the target and target × 1.1 is within the tolerance (no scaling there, by
        // the policy's definition); beyond it only while brokers are on their way (the climb to
        // 20× in 10 minutes): minutes, not hours.
        #expect(r.beyondToleranceMinutes < 10, "\(r.beyondToleranceMinutes) min beyond the tolerance")
        #expect(r.underProvisionedMinutes > r.beyondToleranceMinutes)
    }

    @Test func traceReadsCSVAndRejectsBadRows() throws {
        let t = try LoadTrace.csv("seconds,bytes_in\n0,100\n# comment\n60,200\n")
        #expect(t.points.count == 2)
        #expect(t.bytesIn(at: 30) == 150)
        #expect(throws: OperatorError.self) { try LoadTrace.csv("0,100\n60,abc\n") }
        #expect(throws: OperatorError.self) { try LoadTrace.csv("0,100\n") }
    }

    @Test func festivalCurveStaysWithinItsRangeAndReachesThePeak() {
        let t = LoadTrace.festivalDay(low: 10, high: 100)
        let values = t.points.map(\.bytesIn)
        #expect(values.min() == 10)
        #expect(values.max() == 100)
        #expect(t.duration == 86_400)
    }

    @Test func festivalWeekHasADailyRushAndOneFestivalHour() {
        let t = LoadTrace.festivalWeek(low: 10, daily: 100, festival: 1000)
        #expect(t.duration == 7 * 86_400)
        #expect(t.points.map(\.bytesIn).min() == 10)
        for day in 0..<7 {
            let rush = t.bytesIn(at: Double(day) * 86_400 + 20.5 * 3600)
            #expect(rush == (day == 4 ? 1000 : 100), "day \(day) 20:30: \(rush)")
            #expect(t.bytesIn(at: Double(day) * 86_400 + 21.5 * 3600) == 100, "day \(day) 21:30")
            #expect(t.bytesIn(at: Double(day) * 86_400 + 3 * 3600) == 10, "day \(day) 03:00")
        }
        #expect(t.points.filter { $0.bytesIn == 1000 }.count == 59, "one hour at the festival rate, reached within a minute")
    }
}
