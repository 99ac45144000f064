import Foundation
import HTTPClient
import KafkaClient
import KafkaProtocol
import Support

/// Settings of the closed loop around the pure policies.
public struct ElasticitySettings: Sendable {
    public var autoscaling: AutoscalerSettings
    /// nil = autoscaling off (the fleet keeps its count; the balancer still runs).
    public var autoscalingEnabled: Bool
    public var balancer: BalancerSettings
    public var balancingEnabled: Bool
    /// Seconds between balancing rounds when nothing scaled.
    public var balancingInterval: Double
    /// Seconds between ticks (scrape, decide, act).
    public var tick: Double
    /// Seconds of samples the rates are computed over.
    public var loadWindow: Double
    /// How long a partition move or a new broker may take before the step is retried.
    public var stepTimeout: Double
    /// Schedules and the predictive floor (none by default).
    public var prescale: PrescalePolicy

    public init(autoscaling: AutoscalerSettings, autoscalingEnabled: Bool = true, balancer: BalancerSettings = BalancerSettings(),
                balancingEnabled: Bool = true, balancingInterval: Double = 60, tick: Double = 2, loadWindow: Double = 20,
                stepTimeout: Double = 60, prescale: PrescalePolicy = .none) {
        self.prescale = prescale
        self.autoscaling = autoscaling
        self.autoscalingEnabled = autoscalingEnabled
        self.balancer = balancer
        self.balancingEnabled = balancingEnabled
        self.balancingInterval = balancingInterval
        self.tick = tick
        self.loadWindow = loadWindow
        self.stepTimeout = stepTimeout
    }
}

/// What the controller is doing, for people (the live view) and for resuming.
public enum ElasticityPhase: Sendable, Equatable, CustomStringConvertible {
    case steady
    /// Brokers were added up to `target`; waiting until they are ready and registered, then balancing onto them.
    case scalingOut(target: Int)
    /// Brokers `brokers` are draining: their partitions move away, then they stop.
    case scalingIn(target: Int, brokers: [Int32])

    public var description: String {
        switch self {
        case .steady: "steady"
        case .scalingOut(let t): "scaling out to \(t)"
        case .scalingIn(let t, let b): "scaling in to \(t) (draining \(b.map(String.init).joined(separator: ", ")))"
        }
    }
}

/// One thing that happened, for the live view and logs.
public struct ElasticityEvent: Sendable, Equatable {
    public var time: Date
    public var text: String
}

/// A partition move the controller started, for the console: from → to, why, how long it took.
public struct MoveRecord: Sendable, Equatable {
    public enum Outcome: String, Sendable {
        case moving, done, refused
        case timedOut = "timed out"
    }
    public var partition: PartitionKey
    public var from: Int32
    public var to: Int32
    /// What the round was for: `scale-out`, `drain` or `balance`.
    public var why: String
    /// Bytes in + out per second of the partition when it was planned.
    public var load: Double
    public var started: Date
    /// Seconds from the reassignment request until Metadata showed the new owner (nil until then).
    public var seconds: Double?
    public var outcome: Outcome
}

/// A change of the broker count the autoscaler decided, with its reason.
public struct ScalingRecord: Sendable, Equatable {
    public var time: Date
    public var from: Int
    public var to: Int
    public var reason: String
    /// Decided in a dry run: reported, not acted on.
    public var dryRun: Bool
}

/// A snapshot of the controller for display.
public struct ElasticityView: Sendable {
    public struct Broker: Sendable {
        public var id: Int32
        public var state: String
        public var load: BrokerLoad?
        public var partitions: Int
    }
    public var brokers: [Broker] = []
    public var phase: ElasticityPhase = .steady
    public var movesInProgress: Int = 0
    public var lastDecision: (time: Date, text: String)?
    /// The last change of the broker count the autoscaler decided (acted on, or not in a dry run).
    public var lastChange: (time: Date, from: Int, to: Int, reason: String)?
    /// The count the autoscaler wants now.
    public var desired: Int = 0
    public var events: [ElasticityEvent] = []
    public var bootstrap: String = ""
    /// Schedules and prediction at the last tick (nil when neither is configured).
    public var prescale: PrescaleState?
    /// The predictive floor's history in its status form (nil when predictive is off or empty).
    public var loadHistory: LoadHistoryStatus?
    /// Recent scaling decisions, oldest first (bounded: the controller keeps the last 100).
    public var decisions: [ScalingRecord] = []
    /// Recent partition moves, oldest first, then those in flight (bounded: the last 200).
    public var moves: [MoveRecord] = []
    /// What the balancer would do now (nil before the first Metadata, or when balancing is off).
    public var plan: BalancePlan?
    /// When this view was last refreshed (wall clock).
    public var updated: Date?

    /// The view as a block of text: one line per broker, then the phase, moves, decision and events.
    public func rendered(now: Date = Date()) -> String {
        var out = "Floe local cluster — bootstrap \(bootstrap) — \(Self.clock(now))\n"
        let totalIn = brokers.compactMap(\.load?.bytesInPerSecond).reduce(0, +)
        let totalOut = brokers.compactMap(\.load?.bytesOutPerSecond).reduce(0, +)
        out += "brokers \(brokers.count)   in \(ByteRate.format(totalIn))   out \(ByteRate.format(totalOut))   \(phase)\n"
        out += "  broker  state      in            out           partitions  cpu   produce p99\n"
        for b in brokers {
            let i = b.load.map { ByteRate.format($0.bytesInPerSecond) } ?? "unknown"
            let o = b.load.map { ByteRate.format($0.bytesOutPerSecond) } ?? "unknown"
            let cpu = b.load?.cpuPercent.map { String(format: "%.0f%%", $0) } ?? "-"
            let p99 = b.load?.produceP99.map { "≤ " + String(format: "%g", $0 * 1000) + " ms" } ?? "-"
            out += "  " + [pad("\(b.id)", 6), pad(b.state, 10), pad(i, 13), pad(o, 13), pad("\(b.partitions)", 11), pad(cpu, 5), p99]
                .joined(separator: " ") + "\n"
        }
        out += "moves in progress: \(movesInProgress)\n"
        if let p = prescale {
            if let f = p.highest { out += "floor: \(f.label) (\(f.detail))\n" }
            if let n = p.next { out += "next schedule: \(n.name) floor \(n.floor) from \(Self.clock(n.raiseAt)) (opens \(Self.clock(n.start)))\n" }
        }
        if let d = lastDecision { out += "last decision \(Self.clock(d.time)): \(d.text)\n" }
        for e in events.suffix(6) { out += "  \(Self.clock(e.time))  \(e.text)\n" }
        return out
    }

    private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }

    static func clock(_ date: Date) -> String {
        let f = DateFormatter()
        f.dateFormat = "HH:mm:ss"
        return f.string(from: date)
    }
}

/// The closed loop: scrape every broker, let the autoscaler decide, scale out (add brokers,
/// wait until ready and registered, balance onto them), scale in (drain, move everything off,
/// confirm through Metadata, then stop), and balance between scaling events.
///
/// One step at a time. A step that fails (a move refused or too slow, a broker not ready in
/// time) is retried on a later tick, never skipped; a broker that still owns a partition is
/// never removed.
public actor ElasticityController {
    public let settings: ElasticitySettings
    let fleet: any BrokerFleet
    let admin: KafkaAdminClient
    let http: HTTPClient
    let logger: Logger
    let started = ContinuousClock.now

    var tracker: LoadTracker
    var autoscaler: Autoscaler
    var prescaler: Prescaler
    /// Wall-clock time for schedules and the load history (injected; the system clock by default).
    let wallClock: @Sendable () -> Date
    var phase: ElasticityPhase = .steady
    var phaseSince: Double = 0
    var lastMoved: [PartitionKey: Double] = [:]
    var lastBalance: Double = 0
    var lastMoves: Double = -Double.infinity
    /// The count the last dry-run decision asked for (reported once per change).
    var lastDryRun: Int?
    var view = ElasticityView()
    var events: [ElasticityEvent] = []
    var decisionLog = RingBuffer<ScalingRecord>(capacity: 100)
    var moveLog = RingBuffer<MoveRecord>(capacity: 200)
    /// Called after every tick with the new view (the live display, the status).
    let onTick: @Sendable (ElasticityView) -> Void
    /// Called for what deserves a Kubernetes Event: (type, reason, message).
    let onEvent: @Sendable (String, String, String) -> Void

    /// `history`: the predictive floor's memory from before a restart (from the status).
    public init(settings: ElasticitySettings, fleet: any BrokerFleet, admin: KafkaAdminClient, http: HTTPClient, logger: Logger,
                bootstrap: String, history: LoadHistory? = nil, wallClock: @escaping @Sendable () -> Date = { Date() },
                onTick: @escaping @Sendable (ElasticityView) -> Void = { _ in },
                onEvent: @escaping @Sendable (String, String, String) -> Void = { _, _, _ in }) {
        self.wallClock = wallClock
        prescaler = Prescaler(policy: settings.prescale, history: history)
        self.onEvent = onEvent
        self.settings = settings
        self.fleet = fleet
        self.admin = admin
        self.http = http
        self.logger = logger
        self.onTick = onTick
        tracker = LoadTracker(windowSeconds: settings.loadWindow)
        autoscaler = Autoscaler(settings: settings.autoscaling)
        view.bootstrap = bootstrap
    }

    var now: Double {
        let d = ContinuousClock.now - started
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// Ticks until cancelled.
    public func run() async {
        while !Task.isCancelled {
            await tick()
            try? await Task.sleep(for: .milliseconds(Int64(settings.tick * 1000)))
        }
    }

    func tick() async {
        let members = await fleet.members()
        await scrape(members)
        if !settings.prescale.isEmpty {
            let wall = wallClock()
            // Only a complete measurement goes into the history: an unscraped broker's load is unknown, not zero.
            let known = members.compactMap { tracker.load(of: $0.id) }
            if !known.isEmpty && known.count == members.count {
                prescaler.observe(bytesIn: known.map(\.bytesInPerSecond).reduce(0, +), at: wall)
            }
            view.prescale = prescaler.evaluate(at: wall)
            view.loadHistory = prescaler.history.status
        }
        let metadata: ClusterMetadata
        do {
            metadata = try await admin.metadata()
        } catch {
            logger.warning("metadata unavailable; no decision this tick", metadata: ["error": "\(error)"])
            publish(members: members, metadata: nil)
            return
        }
        publish(members: members, metadata: metadata)
        do {
            switch phase {
            case .steady: try await steady(members: members, metadata: metadata)
            case .scalingOut(let target): try await continueScaleOut(target: target, members: members, metadata: metadata)
            case .scalingIn(let target, let brokers): try await continueScaleIn(target: target, brokers: brokers, members: members, metadata: metadata)
            }
        } catch is CancellationError {
            return
        } catch {
            record("step failed, retrying: \(error)", level: .warning, event: ("Warning", "ScalingStepFailed"))
        }
    }

    // MARK: Steps

    func steady(members: [FleetMember], metadata: ClusterMetadata) async throws {
        let current = members.count
        if settings.autoscalingEnabled {
            let loads = Dictionary(uniqueKeysWithValues: members.map { ($0.id, tracker.load(of: $0.id)) })
            let decision = autoscaler.decide(now: now, current: current, loads: loads, floors: view.prescale?.floors ?? [])
            view.desired = decision.desired
            if decision.isChange {
                let text = "\(decision.current) → \(decision.desired) brokers: \(decision.reason)"
                view.lastDecision = (Date(), text)
                view.lastChange = (Date(), decision.current, decision.desired, decision.reason)
                let logged = ScalingRecord(time: Date(), from: decision.current, to: decision.desired, reason: decision.reason,
                                           dryRun: settings.autoscaling.dryRun)
                if settings.autoscaling.dryRun {
                    // Once per new answer, not every tick: a dry run repeats its decision each tick.
                    if decision.desired != lastDryRun {
                        lastDryRun = decision.desired
                        decisionLog.append(logged)
                        record("dry run, not acting: \(text)", event: ("Normal", "ScalingDryRun"))
                    }
                } else if decision.desired > current {
                    decisionLog.append(logged)
                    record("scale out \(text)", event: ("Normal", "ScalingOut"))
                    try await fleet.grow(to: decision.desired)
                    enter(.scalingOut(target: decision.desired))
                    return
                } else {
                    let brokers = members.map(\.id).sorted().suffix(current - decision.desired).map { $0 }
                    decisionLog.append(logged)
                    record("scale in \(text)", event: ("Normal", "ScalingIn"))
                    for id in brokers { try await admin.setDraining(broker: id, true) }
                    enter(.scalingIn(target: decision.desired, brokers: brokers))
                    return
                }
            }
        }
        if settings.balancingEnabled, now - lastBalance >= settings.balancingInterval, now - lastMoves >= settings.balancer.moveCooldown {
            lastBalance = now
            try await balance(eligible: members.map(\.id), metadata: metadata, reason: "balance")
        }
    }

    func continueScaleOut(target: Int, members: [FleetMember], metadata: ClusterMetadata) async throws {
        if members.count < target { try await fleet.grow(to: target) }
        let registered = Set(metadata.brokers.map(\.id))
        var waiting: [Int32] = []
        for m in members {
            let ready = registered.contains(m.id) ? await isReady(m) : false
            if !ready { waiting.append(m.id) }
        }
        if members.count < target { waiting.append(contentsOf: (members.count..<target).map { Int32($0) }) }
        guard waiting.isEmpty else {
            if now - phaseSince > settings.stepTimeout { record("brokers \(waiting) not ready after \(Int(settings.stepTimeout)) s; still waiting", level: .warning) }
            return
        }
        // A broker keeps its draining mark across registrations: one that a scale-in removed
        // and this scale-out brings back must be cleared, or it would get nothing.
        for m in members { try await admin.setDraining(broker: m.id, false) }
        record("\(target) brokers ready and registered; balancing onto the new ones", event: ("Normal", "ScaledOut"))
        try await balance(eligible: members.map(\.id), metadata: metadata, reason: "scale-out", ignoreCooldown: true)
        autoscaler.scaled(to: target, at: now)
        lastBalance = now
        enter(.steady)
    }

    func continueScaleIn(target: Int, brokers: [Int32], members: [FleetMember], metadata: ClusterMetadata) async throws {
        let leaving = Set(brokers)
        let stillOwned = metadata.partitions.filter { leaving.contains($0.leader) }
        if !stillOwned.isEmpty {
            let eligible = members.map(\.id).filter { !leaving.contains($0) }
            try await balance(eligible: eligible, metadata: metadata, reason: "drain", drainOnly: true)
            return  // confirm on the next tick, from a fresh Metadata
        }
        // Confirmed through Metadata: the leaving brokers own nothing. Stop them.
        record("brokers \(brokers.map(String.init).joined(separator: ", ")) own nothing; stopping them", event: ("Normal", "ScaledIn"))
        try await fleet.remove(brokers)
        for id in brokers { tracker.forget(broker: id) }
        autoscaler.scaled(to: target, at: now)
        enter(.steady)
    }

    func enter(_ next: ElasticityPhase) {
        phase = next
        phaseSince = now
        view.phase = next
    }

    // MARK: Moves

    /// Plans and executes one round: the drain of every partition on a broker outside
    /// `eligible`, then (unless `drainOnly`) balancing moves. Waits until Metadata shows each
    /// moved partition on its new owner, or the step timeout.
    func balance(eligible: [Int32], metadata: ClusterMetadata, reason: String, ignoreCooldown: Bool = false, drainOnly: Bool = false) async throws {
        let loads = tracker.partitionLoads()
        let placements = metadata.partitions.filter { $0.leader >= 0 }.map { p -> PartitionPlacement in
            let key = PartitionKey(p.topic, p.partition)
            return PartitionPlacement(key: key, owner: p.leader, load: loads[key]?.weight ?? 0, lastMoved: ignoreCooldown ? nil : lastMoved[key])
        }
        var balancer = settings.balancer
        if drainOnly { balancer.maxMoves = 0 }
        let plan = Balancer.plan(eligible: eligible, partitions: placements, settings: balancer, now: now)
        guard !plan.moves.isEmpty else { return }
        if balancer.dryRun && !drainOnly {
            record("dry run (\(reason)): would move \(plan.moves.count) partition(s)\n\(plan.rendered())")
            return
        }
        record("\(reason): moving \(plan.moves.count) partition(s)")
        logger.info("plan (\(reason))\n\(plan.rendered())")
        try await execute(plan.moves, reason: reason)
    }

    func execute(_ moves: [PlannedMove], reason: String = "balance") async throws {
        let startedAt = Date()
        var records = Dictionary(uniqueKeysWithValues: moves.map {
            ($0.key, MoveRecord(partition: $0.key, from: $0.from, to: $0.to, why: reason, load: $0.load, started: startedAt, outcome: .moving))
        })
        view.movesInProgress = moves.count
        view.moves = moveLog.elements + moves.compactMap { records[$0.key] }
        onTick(view)
        // Every move ends in the log, whatever happens (done, refused, or still moving when the step failed).
        defer {
            view.movesInProgress = 0
            for m in moves {
                guard var r = records[m.key] else { continue }
                if r.outcome == .moving { r.outcome = .timedOut }
                moveLog.append(r)
            }
            view.moves = moveLog.elements
            onTick(view)  // the console sees the round end now, not a tick later
        }
        let started = now
        let request = Dictionary(uniqueKeysWithValues: moves.map { (TopicPartition(topic: $0.key.topic, partition: $0.key.partition), $0.to) })
        let errors = try await admin.reassign(request)
        let refused = errors.compactMap { key, error in error.map { "\(key): \($0)" } }
        if !refused.isEmpty { record("reassignment refused for \(refused.sorted().joined(separator: ", "))", level: .warning) }
        for (key, error) in errors where error != nil { records[PartitionKey(key.topic, key.partition)]?.outcome = .refused }
        var pending = Dictionary(uniqueKeysWithValues: moves.filter { errors[TopicPartition(topic: $0.key.topic, partition: $0.key.partition)] == .some(nil) }.map { ($0.key, $0.to) })
        var pause = 10
        while !pending.isEmpty {
            try await Task.sleep(for: .milliseconds(pause))
            pause = min(pause * 2, 200)
            let m = try await admin.metadata(topics: Array(Set(pending.keys.map(\.topic))))
            for p in m.partitions {
                let key = PartitionKey(p.topic, p.partition)
                if let to = pending[key], p.leader == to {
                    pending[key] = nil
                    lastMoved[key] = now
                    records[key]?.outcome = .done
                    records[key]?.seconds = now - started
                }
            }
            if now - started > settings.stepTimeout {
                throw OperatorError.moveTimedOut(pending.keys.sorted().map(\.description))
            }
        }
        lastMoves = now
        let ms = Int(((now - started) * 1000).rounded())
        record("moved \(moves.count - refused.count) partition(s) in \(ms) ms: " + moves.prefix(6).map(\.description).joined(separator: "; ") + (moves.count > 6 ? "; …" : ""),
               event: ("Normal", "PartitionsMoved"))
    }

    // MARK: Signals

    func scrape(_ members: [FleetMember]) async {
        let time = now
        let results = await withTaskGroup(of: (Int32, BrokerScrape?).self) { group in
            for m in members {
                group.addTask { [http] in
                    do {
                        let response = try await http.execute(HTTPRequest(method: "GET", url: m.metricsURL, timeout: .seconds(2)))
                        return (m.id, response.status == 200 ? BrokerScrape.parse(response.bodyText) : nil)
                    } catch {
                        return (m.id, nil)
                    }
                }
            }
            var all: [(Int32, BrokerScrape?)] = []
            for await r in group { all.append(r) }
            return all
        }
        for (id, scrape) in results { tracker.record(broker: id, at: time, scrape) }
        let present = Set(members.map(\.id))
        for id in tracker.brokers where !present.contains(id) { tracker.forget(broker: id) }
    }

    func isReady(_ m: FleetMember) async -> Bool {
        guard let r = try? await http.execute(HTTPRequest(method: "GET", url: m.readyURL, timeout: .seconds(2))) else { return false }
        return r.status == 200
    }

    func publish(members: [FleetMember], metadata: ClusterMetadata?) {
        var owned: [Int32: Int] = [:]
        for p in metadata?.partitions ?? [] { owned[p.leader, default: 0] += 1 }
        let registered = Set(metadata?.brokers.map(\.id) ?? [])
        let draining: Set<Int32> = if case .scalingIn(_, let b) = phase { Set(b) } else { [] }
        view.brokers = members.map { m in
            let state = draining.contains(m.id) ? "draining" : registered.contains(m.id) ? "ready" : "starting"
            return ElasticityView.Broker(id: m.id, state: state, load: tracker.load(of: m.id), partitions: owned[m.id] ?? 0)
        }
        view.events = events
        view.decisions = decisionLog.elements
        view.moves = moveLog.elements
        view.updated = Date()
        if let metadata, settings.balancingEnabled {
            let loads = tracker.partitionLoads()
            let placements = metadata.partitions.filter { $0.leader >= 0 }.map { p -> PartitionPlacement in
                let key = PartitionKey(p.topic, p.partition)
                return PartitionPlacement(key: key, owner: p.leader, load: loads[key]?.weight ?? 0, lastMoved: lastMoved[key])
            }
            view.plan = Balancer.plan(eligible: members.map(\.id).filter { !draining.contains($0) }, partitions: placements,
                                      settings: settings.balancer, now: now)
        } else {
            view.plan = nil
        }
        onTick(view)
    }

    func record(_ text: String, level: Logger.Level = .notice, event: (type: String, reason: String)? = nil) {
        logger.log(level, text)
        if let event { onEvent(event.type, event.reason, text) }
        events.append(ElasticityEvent(time: Date(), text: text.split(separator: "\n").first.map(String.init) ?? text))
        if events.count > 50 { events.removeFirst(events.count - 50) }
        view.events = events
    }

    /// The current view (for tests and the console).
    public func snapshot() -> ElasticityView { view }
}
