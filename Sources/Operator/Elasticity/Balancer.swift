import Foundation

/// How the balancer judges and limits a round.
public struct BalancerSettings: Sendable, Equatable {
    /// The band: every broker's load within mean × (1 ± tolerance).
    public var tolerance: Double
    /// Differences below this many bytes per second are not worth a move (an idle cluster is
    /// balanced whatever its partitions do).
    public var minimumImbalance: Double
    /// Most moves in one balancing round (a drain is not limited: it must finish).
    public var maxMoves: Int
    /// A partition moved less than this many seconds ago is not moved again by the balancer.
    public var moveCooldown: Double
    /// Plan and report, but do not move.
    public var dryRun: Bool

    public init(tolerance: Double = 0.2, minimumImbalance: Double = 64 * 1024, maxMoves: Int = Int(FloeDefaults.maxMovesPerRound),
                moveCooldown: Double = 120, dryRun: Bool = false) {
        self.tolerance = tolerance
        self.minimumImbalance = minimumImbalance
        self.maxMoves = maxMoves
        self.moveCooldown = moveCooldown
        self.dryRun = dryRun
    }

    public init(_ spec: BalancingSpec?, targets: AutoscalingTargets?) {
        self.init(
            tolerance: Double(spec?.tolerancePercent ?? FloeDefaults.balancingTolerancePercent) / 100,
            // 5 % of a broker's target, when there is one: smaller differences are noise.
            minimumImbalance: targets?.bytesInPerSecond.map { Double($0) * 0.05 } ?? 64 * 1024,
            maxMoves: Int(spec?.maxMovesPerRound ?? FloeDefaults.maxMovesPerRound),
            moveCooldown: Double(spec?.moveCooldownSeconds ?? FloeDefaults.moveCooldownSeconds),
            dryRun: spec?.dryRun ?? false)
    }
}

/// A partition where it is now, with its load (bytes in + out per second) and when it last moved.
public struct PartitionPlacement: Sendable, Equatable {
    public var key: PartitionKey
    public var owner: Int32
    public var load: Double
    public var lastMoved: Double?

    public init(key: PartitionKey, owner: Int32, load: Double, lastMoved: Double? = nil) {
        self.key = key
        self.owner = owner
        self.load = load
        self.lastMoved = lastMoved
    }
}

public struct PlannedMove: Sendable, Equatable, CustomStringConvertible {
    public enum Why: String, Sendable { case drain, balance }
    public var key: PartitionKey
    public var from: Int32
    public var to: Int32
    public var load: Double
    public var why: Why

    public var description: String { "\(key) \(from) → \(to) (\(ByteRate.format(load)), \(why.rawValue))" }
}

/// Per-broker load and partition count.
public struct BrokerTally: Sendable, Equatable {
    public var load: Double = 0
    public var partitions: Int = 0
}

/// A balancing plan: the moves, every broker's load before and after, and the band.
public struct BalancePlan: Sendable, Equatable {
    public var moves: [PlannedMove]
    public var before: [Int32: BrokerTally]
    public var after: [Int32: BrokerTally]
    /// The load band the eligible brokers should sit in.
    public var band: ClosedRange<Double>
    /// Brokers that receive partitions (live, not draining).
    public var eligible: [Int32]
    /// True when after the moves every eligible broker is inside the band and no draining broker owns anything.
    public var balanced: Bool
    /// Why the plan stops where it does, when it is not balanced.
    public var note: String?

    /// The plan as a table a person reads (`floe-operator plan`, dry runs, logs).
    public func rendered() -> String {
        var out = "band \(ByteRate.format(band.lowerBound)) … \(ByteRate.format(band.upperBound)) per broker\n"
        out += "broker  load before       partitions  load after        partitions\n"
        for id in Set(before.keys).union(after.keys).sorted() {
            let b = before[id] ?? BrokerTally(), a = after[id] ?? BrokerTally()
            let mark = eligible.contains(id) ? "" : "  (draining)"
            out += String(format: "%6d  %-16@ %10d  %-16@ %10d", id, ByteRate.format(b.load) as NSString, b.partitions,
                          ByteRate.format(a.load) as NSString, a.partitions) + mark + "\n"
        }
        out += moves.isEmpty ? "no moves\n" : moves.map { "move \($0)" }.joined(separator: "\n") + "\n"
        if balanced { out += "balanced after \(moves.count) move(s)\n" } else if let note { out += "not balanced: \(note)\n" }
        return out
    }
}

/// Chooses partition moves. Pure: the same input gives the same plan.
///
/// A round, step by step:
/// 1. Drain: every partition owned by a broker that is not eligible (draining, or gone) moves,
///    heaviest first, to the eligible broker with the least load (then fewest partitions, then
///    lowest id). Not limited by `maxMoves` or the cooldown: a drain must finish.
/// 2. Balance, at most `maxMoves` moves: while a broker is outside the band
///    [mean × (1 − tolerance), mean × (1 + tolerance)] (widened to mean ± minimumImbalance), take
///    the most loaded broker that has a movable partition and the least loaded broker, and move
///    the partition that brings the two closest together — only if that strictly narrows the gap
///    between them (so a round never makes things worse and always ends). Partitions in their
///    cooldown are not movable.
///
/// Example: brokers 1 and 2 with partitions of 3, 3, 2 and 2 MiB/s all on 1, broker 2 new:
/// mean 5, band 4…6 → move a 3 (gap 10 → 4), then a 2 (gap 4 → 0): 2 moves, both at 5 MiB/s.
public enum Balancer {
    public static func plan(
        eligible: [Int32], partitions: [PartitionPlacement], settings: BalancerSettings, now: Double
    ) -> BalancePlan {
        let eligibleSet = Set(eligible)
        var tally: [Int32: BrokerTally] = Dictionary(uniqueKeysWithValues: eligible.map { ($0, BrokerTally()) })
        var placement = partitions.sorted { $0.key < $1.key }
        for p in placement {
            tally[p.owner, default: BrokerTally()].load += p.load
            tally[p.owner, default: BrokerTally()].partitions += 1
        }
        let before = tally
        let total = placement.reduce(0) { $0 + $1.load }
        let mean = eligible.isEmpty ? 0 : total / Double(eligible.count)
        let band = min(mean * (1 - settings.tolerance), mean - settings.minimumImbalance).clamped(atLeast: 0)
            ... max(mean * (1 + settings.tolerance), mean + settings.minimumImbalance)
        var moves: [PlannedMove] = []

        func apply(_ index: Int, to target: Int32, why: PlannedMove.Why) {
            let p = placement[index]
            tally[p.owner]!.load -= p.load
            tally[p.owner]!.partitions -= 1
            tally[target]!.load += p.load
            tally[target]!.partitions += 1
            moves.append(PlannedMove(key: p.key, from: p.owner, to: target, load: p.load, why: why))
            placement[index].owner = target
            placement[index].lastMoved = now
        }
        func lightest() -> Int32? {
            eligible.min { a, b in
                let x = tally[a]!, y = tally[b]!
                return (x.load, x.partitions, a) < (y.load, y.partitions, b)
            }
        }

        guard !eligible.isEmpty else {
            let stranded = placement.count
            return BalancePlan(
                moves: [], before: before, after: tally, band: band, eligible: [], balanced: stranded == 0,
                note: stranded == 0 ? nil : "no eligible broker for \(stranded) partition(s)")
        }

        // 1. Drain.
        let draining = placement.indices.filter { !eligibleSet.contains(placement[$0].owner) }
            .sorted { (placement[$0].load, placement[$1].key) > (placement[$1].load, placement[$0].key) }
        for i in draining { apply(i, to: lightest()!, why: .drain) }

        // 2. Balance.
        var note: String?
        func outOfBand() -> Bool { eligible.contains { !band.contains(tally[$0]!.load) } }
        while outOfBand() {
            guard moves.filter({ $0.why == .balance }).count < settings.maxMoves else {
                note = "stopped at maxMovesPerRound \(settings.maxMoves)"
                break
            }
            let target = lightest()!
            var best: (index: Int, gap: Double)?
            for source in eligible.sorted(by: { (tally[$0]!.load, $1) > (tally[$1]!.load, $0) }) where source != target {
                let gap = tally[source]!.load - tally[target]!.load
                for i in placement.indices where placement[i].owner == source {
                    let p = placement[i]
                    if let moved = p.lastMoved, now - moved < settings.moveCooldown { continue }
                    guard p.load > 0, p.load < gap else { continue }
                    let newGap = abs(gap - 2 * p.load)
                    if best == nil || newGap < best!.gap { best = (i, newGap) }
                }
                if best != nil { break }
            }
            guard let best else {
                note = "no move narrows the gap (partitions too coarse, or in their cooldown)"
                break
            }
            apply(best.index, to: target, why: .balance)
        }
        return BalancePlan(
            moves: moves, before: before, after: tally, band: band, eligible: eligible.sorted(),
            balanced: !outOfBand() && placement.allSatisfy { eligibleSet.contains($0.owner) }, note: outOfBand() ? note : nil)
    }
}

private extension Double {
    func clamped(atLeast low: Double) -> Double { Swift.max(self, low) }
}
