import Foundation
import Testing

@testable import Operator

@Suite struct BalancerTests {
    static let MiB = 1024.0 * 1024.0

    func p(_ n: Int32, on owner: Int32, _ mib: Double, movedAt: Double? = nil) -> PartitionPlacement {
        PartitionPlacement(key: PartitionKey("t", n), owner: owner, load: mib * Self.MiB, lastMoved: movedAt)
    }

    @Test func newBrokerReceivesTheFewestMovesThatBalance() {
        let parts = [p(0, on: 1, 3), p(1, on: 1, 3), p(2, on: 1, 2), p(3, on: 1, 2)]
        let plan = Balancer.plan(eligible: [1, 2], partitions: parts, settings: BalancerSettings(), now: 0)
        #expect(plan.balanced)
        #expect(plan.moves.count == 2, "\(plan.rendered())")
        #expect(plan.after[1]?.load == 5 * Self.MiB)
        #expect(plan.after[2]?.load == 5 * Self.MiB)
        #expect(plan.moves.allSatisfy { $0.from == 1 && $0.to == 2 && $0.why == .balance })
    }

    @Test func balancedClusterMovesNothing() {
        let parts: [PartitionPlacement] = (0..<12).map { (i: Int) -> PartitionPlacement in
            let mib: Double = 1 + Double(i % 2) * 0.3
            return p(Int32(i), on: Int32(i % 3 + 1), mib)
        }
        let plan = Balancer.plan(eligible: [1, 2, 3], partitions: parts, settings: BalancerSettings(), now: 0)
        #expect(plan.moves.isEmpty, "\(plan.rendered())")
        #expect(plan.balanced)
    }

    @Test func drainMovesEverythingOffAndIgnoresTheMoveLimit() {
        var parts = (0..<6).map { p(Int32($0), on: 3, 1) }
        parts += [p(6, on: 1, 2), p(7, on: 2, 2)]
        let settings = BalancerSettings(maxMoves: 1)
        let plan = Balancer.plan(eligible: [1, 2], partitions: parts, settings: settings, now: 0)
        #expect(plan.moves.filter { $0.why == .drain }.count == 6)
        #expect(plan.after[3]?.partitions == 0)
        #expect(plan.moves.allSatisfy { $0.to != 3 })
        #expect(plan.after[1]?.load == plan.after[2]?.load)
    }

    @Test func partitionsInTheirCooldownStay() {
        let parts = [p(0, on: 1, 4, movedAt: 100), p(1, on: 1, 4, movedAt: 100)]
        let settings = BalancerSettings(moveCooldown: 120)
        let early = Balancer.plan(eligible: [1, 2], partitions: parts, settings: settings, now: 150)
        #expect(early.moves.isEmpty)
        #expect(!early.balanced)
        #expect(early.note?.contains("cooldown") == true)
        let later = Balancer.plan(eligible: [1, 2], partitions: parts, settings: settings, now: 221)
        #expect(later.moves.count == 1)
        #expect(later.balanced)
    }

    @Test func moveLimitStopsARound() {
        let parts = (0..<8).map { p(Int32($0), on: 1, 1) }
        let plan = Balancer.plan(eligible: [1, 2, 3, 4], partitions: parts, settings: BalancerSettings(maxMoves: 3), now: 0)
        #expect(plan.moves.count == 3)
        #expect(!plan.balanced)
        #expect(plan.note?.contains("maxMovesPerRound 3") == true)
    }

    @Test func idleImbalanceIsNotWorthAMove() {
        // 20 KiB/s against 0: under the minimum imbalance (64 KiB/s).
        let parts = [PartitionPlacement(key: PartitionKey("t", 0), owner: 1, load: 20 * 1024)]
        let plan = Balancer.plan(eligible: [1, 2], partitions: parts, settings: BalancerSettings(), now: 0)
        #expect(plan.moves.isEmpty)
        #expect(plan.balanced)
    }

    /// A round never makes the spread wider, and repeated rounds (with the moves applied) stop:
    /// seeded random clusters, each planned until a round moves nothing.
    @Test func repeatedRoundsConvergeAndNeverWiden() {
        var random = SeededRandom(seed: 99)
        for _ in 0..<200 {
            let brokers = Int32.random(in: 2...6, using: &random)
            let count = Int.random(in: 1...40, using: &random)
            var parts = (0..<count).map { i in
                p(Int32(i), on: Int32.random(in: 1...brokers, using: &random), random.uniform(0, 8))
            }
            var rounds = 0
            while true {
                let plan = Balancer.plan(eligible: Array(1...brokers), partitions: parts, settings: BalancerSettings(maxMoves: 5, moveCooldown: 0), now: 0)
                let spread = { (t: [Int32: BrokerTally]) in
                    (1...brokers).map { t[$0]?.load ?? 0 }.max()! - (1...brokers).map { t[$0]?.load ?? 0 }.min()!
                }
                #expect(spread(plan.after) <= spread(plan.before) + 1e-6)
                if plan.moves.isEmpty { break }
                for m in plan.moves { parts[parts.firstIndex { $0.key == m.key }!].owner = m.to }
                rounds += 1
                if rounds >= 50 {
                    Issue.record("planning did not converge in 50 rounds")
                    break
                }
            }
        }
    }

    @Test func renderedPlanShowsBeforeAndAfter() {
        let plan = Balancer.plan(eligible: [1, 2], partitions: [p(0, on: 1, 3), p(1, on: 1, 3)], settings: BalancerSettings(), now: 0)
        let text = plan.rendered()
        #expect(text.contains("move t-1 1 → 2 (3.0 MiB/s, balance)") || text.contains("move t-0 1 → 2 (3.0 MiB/s, balance)"), "\(text)")
        #expect(text.contains("balanced after 1 move(s)"))
    }
}

@Suite struct LoadSignalTests {
    @Test func parsesTheBrokersMetrics() {
        let text = """
            # HELP floe_broker_partition_bytes_in_total Record batch bytes appended
            # TYPE floe_broker_partition_bytes_in_total counter
            floe_broker_partition_bytes_in_total{partition="3",topic="orders"} 1048576
            floe_broker_partition_bytes_in_total{partition="0",topic="we\\"ird"} 10
            floe_broker_partition_bytes_out_total{partition="3",topic="orders"} 2e3
            floe_broker_requests_total{api="Produce"} 5
            floe_broker_requests_total{api="Fetch"} 7
            process_cpu_seconds_total 1.5
            floe_broker_request_duration_seconds_bucket{api="Produce",le="0.001"} 90
            floe_broker_request_duration_seconds_bucket{api="Produce",le="0.01"} 99
            floe_broker_request_duration_seconds_bucket{api="Produce",le="+Inf"} 100
            floe_broker_request_duration_seconds_bucket{api="Fetch",le="+Inf"} 7
            garbage line
            """
        let s = BrokerScrape.parse(text)
        #expect(s.bytesIn[PartitionKey("orders", 3)] == 1_048_576)
        #expect(s.bytesIn[PartitionKey("we\"ird", 0)] == 10)
        #expect(s.bytesOut[PartitionKey("orders", 3)] == 2000)
        #expect(s.requests == 12)
        #expect(s.cpuSeconds == 1.5)
        #expect(s.produceLatency == [0.001: 90, 0.01: 99, .infinity: 100])
    }

    @Test func produceP99IsTheBucketOfTheWindowsObservations() {
        // Before: 100 fast requests. In the window: 100 more, 98 under 1 ms, 2 under 10 ms → p99 ≤ 10 ms.
        let a: [Double: Double] = [0.001: 100, 0.01: 100, .infinity: 100]
        let b: [Double: Double] = [0.001: 198, 0.01: 200, .infinity: 200]
        #expect(LoadTracker.quantile(0.99, from: a, to: b) == 0.01)
        #expect(LoadTracker.quantile(0.5, from: a, to: b) == 0.001)
        #expect(LoadTracker.quantile(0.99, from: b, to: b) == nil, "no observations in the window")
        // All in +Inf: the largest finite bound.
        #expect(LoadTracker.quantile(0.99, from: a, to: [0.001: 100, 0.01: 100, .infinity: 150]) == 0.01)
    }

    func scrape(_ bytesIn: Double, cpu: Double = 0) -> BrokerScrape {
        var s = BrokerScrape()
        s.bytesIn[PartitionKey("t", 0)] = bytesIn
        s.cpuSeconds = cpu
        return s
    }

    @Test func ratesOverTheWindowAndResets() throws {
        var tracker = LoadTracker(windowSeconds: 30)
        for i in 0...6 { tracker.record(broker: 1, at: Double(i) * 5, scrape(Double(i) * 5_000_000, cpu: Double(i) * 2.5)) }
        let load = try #require(tracker.load(of: 1))
        #expect(abs(load.bytesInPerSecond - 1_000_000) < 1)
        #expect(abs((load.cpuPercent ?? 0) - 50) < 0.01)
        // A restart: the counter drops to 1 MB, which counts as 1 MB of increase.
        tracker.record(broker: 1, at: 35, scrape(1_000_000))
        let after = try #require(tracker.load(of: 1))
        // Window now 5…35 s: increases 5×5 MB + 1 MB over 30 s.
        #expect(abs(after.bytesInPerSecond - 26_000_000 / 30) < 1)
    }

    @Test func aBrokerThatCannotBeScrapedIsUnknownNeverIdle() {
        var tracker = LoadTracker(windowSeconds: 30)
        #expect(tracker.load(of: 1) == nil, "never scraped")
        tracker.record(broker: 1, at: 0, scrape(0))
        #expect(tracker.load(of: 1) == nil, "one sample is no rate")
        tracker.record(broker: 1, at: 10, scrape(100))
        #expect(tracker.load(of: 1) != nil)
        tracker.record(broker: 1, at: 15, nil)
        #expect(tracker.load(of: 1) == nil, "the last scrape failed")
        #expect(tracker.brokers == [1])
    }

    @Test func aMovedPartitionsLoadIsSummedOverItsOwners() {
        var tracker = LoadTracker(windowSeconds: 30)
        // Broker 1 served t-0 until t = 10, broker 2 from then on, at 1000 B/s throughout.
        for t in stride(from: 0.0, through: 20, by: 5) {
            tracker.record(broker: 1, at: t, scrape(min(t, 10) * 1000))
            tracker.record(broker: 2, at: t, scrape(max(0, t - 10) * 1000))
        }
        let load = tracker.partitionLoads()[PartitionKey("t", 0)]
        #expect(load.map { abs($0.bytesInPerSecond - 1000) < 1 } == true, "\(String(describing: load))")
    }
}
