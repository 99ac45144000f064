import Foundation
import Support
import Synchronization

/// The console's JSON documents (`/api/...`, see docs/console.md). Times are milliseconds since
/// the Unix epoch (`…Ms`), rates bytes per second, so scripts need no date or unit parsing.
public enum ConsoleAPI {
    public struct ClusterList: Encodable, Sendable, Equatable {
        public var clusters: [ClusterSummary]
    }

    public struct ClusterSummary: Encodable, Sendable, Equatable {
        public var name: String
        public var phase: String
        public var brokers: Int
        public var updatedMs: Int64?
    }

    /// One cluster now: `/api/clusters/NAME`.
    public struct Cluster: Encodable, Sendable, Equatable {
        public var name: String
        public var nowMs: Int64
        /// When the controller last refreshed its view; nil before its first tick.
        public var updatedMs: Int64?
        public var bootstrap: String
        public var phase: String
        public var desiredBrokers: Int
        public var readyBrokers: Int
        public var movesInProgress: Int
        public var bytesInPerSecond: Double
        public var bytesOutPerSecond: Double
        public var brokers: [Broker]
        public var decisions: [Decision]
        public var moves: [Move]
        public var plan: Plan?
        public var autoscaler: Autoscaler
        public var balancer: BalancerConfig
        public var schedules: Schedules
        public var events: [Event]
    }

    public struct Broker: Encodable, Sendable, Equatable {
        public var id: Int32
        /// `starting` (not registered yet), `ready`, `draining`, `gone` (removed; kept a while).
        public var state: String
        public var partitions: Int
        /// nil: the broker's load is unknown (not scraped, or not long enough).
        public var bytesInPerSecond: Double?
        public var bytesOutPerSecond: Double?
        public var cpuPercent: Double?
        public var produceP99Ms: Double?
        /// For `gone` brokers: when they left.
        public var goneMs: Int64?
    }

    public struct Decision: Encodable, Sendable, Equatable {
        public var timeMs: Int64
        public var from: Int
        public var to: Int
        public var reason: String
        public var dryRun: Bool
    }

    public struct Move: Encodable, Sendable, Equatable {
        public var partition: String
        public var from: Int32
        public var to: Int32
        /// `scale-out`, `drain` or `balance`.
        public var why: String
        public var loadBytesPerSecond: Double
        public var startedMs: Int64
        public var seconds: Double?
        /// `moving`, `done`, `refused`, `timed out`.
        public var outcome: String
    }

    public struct Plan: Encodable, Sendable, Equatable {
        public var balanced: Bool
        public var note: String?
        public var bandLowBytesPerSecond: Double
        public var bandHighBytesPerSecond: Double
        public var moves: [PlannedMove]
    }

    public struct PlannedMove: Encodable, Sendable, Equatable {
        public var partition: String
        public var from: Int32
        public var to: Int32
        public var why: String
        public var loadBytesPerSecond: Double
    }

    public struct Autoscaler: Encodable, Sendable, Equatable {
        public var enabled: Bool
        public var minBrokers: Int
        public var maxBrokers: Int
        public var targetBytesInPerSecond: Double?
        public var targetBytesOutPerSecond: Double?
        public var targetRequestsPerSecond: Double?
        public var targetCpuPercent: Double?
        public var tolerancePercent: Double
        public var scaleUpWindowSeconds: Double
        public var scaleDownWindowSeconds: Double
        public var scaleUpStep: Int
        public var scaleDownStep: Int
        public var dryRun: Bool
        public var tickSeconds: Double
        public var loadWindowSeconds: Double
    }

    public struct BalancerConfig: Encodable, Sendable, Equatable {
        public var enabled: Bool
        public var intervalSeconds: Double
        public var tolerancePercent: Double
        public var maxMovesPerRound: Int
        public var moveCooldownSeconds: Double
        public var dryRun: Bool
    }

    public struct Schedules: Encodable, Sendable, Equatable {
        public var configured: [Schedule]
        public var active: [Window]
        public var next: Window?
        public var floorBrokers: Int?
        public var floorReason: String?
        public var predictive: Bool
        public var predictedBytesInPerSecond: Double?
    }

    public struct Schedule: Encodable, Sendable, Equatable {
        public var name: String
        public var cron: String
        public var timeZone: String
        public var durationSeconds: Double
        public var leadSeconds: Double
        public var floorBrokers: Int
        public var floorSource: String
    }

    public struct Window: Encodable, Sendable, Equatable {
        public var name: String
        public var floorBrokers: Int
        public var raiseAtMs: Int64
        public var startMs: Int64
        public var endMs: Int64
    }

    public struct Event: Encodable, Sendable, Equatable {
        public var timeMs: Int64
        public var text: String
    }

    /// `/api/clusters/NAME/series?sinceMs=T`: samples newer than T, oldest first.
    public struct Series: Encodable, Sendable, Equatable {
        public var name: String
        public var intervalSeconds: Double
        public var samples: [Sample]
    }

    /// One point of the time series.
    public struct Sample: Encodable, Sendable, Equatable {
        public var timeMs: Int64
        public var bytesInPerSecond: Double
        public var bytesOutPerSecond: Double
        public var desiredBrokers: Int
        public var readyBrokers: Int
        public var brokers: Int
    }

    public struct Failure: Encodable, Sendable, Equatable {
        public var error: String
    }

    static func ms(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }
}

/// One cluster's console state: the controller's latest view and the last hour of samples.
///
/// Fed by the controller's `onTick` (every tick and at the start of a move round); read by the
/// HTTP thread. Bounded: `history / sampleInterval` samples in a `RingBuffer`, gone brokers for
/// `goneFor` seconds; decisions and moves are bounded by the controller.
///
/// Example: history 3600 s, interval 2 s → at most 1800 samples; a tick 0.5 s after the last
/// sample updates nothing in the series.
public final class ConsoleRecorder: Sendable {
    public let name: String
    public let settings: ElasticitySettings
    public let sampleInterval: Double
    let goneFor: Double
    private let state: Mutex<State>

    struct State {
        var view: ElasticityView?
        var samples: RingBuffer<ConsoleAPI.Sample>
        /// Brokers no longer in the view: their last row and when they left.
        var gone: [Int32: (row: ConsoleAPI.Broker, at: Date)] = [:]
    }

    public init(name: String, settings: ElasticitySettings, history: Double = 3600, sampleInterval: Double = 2, goneFor: Double = 900) {
        self.name = name
        self.settings = settings
        self.sampleInterval = sampleInterval
        self.goneFor = goneFor
        state = Mutex(State(samples: RingBuffer(capacity: max(1, Int((history / sampleInterval).rounded(.up))))))
    }

    /// Takes a new view of the controller (at wall-clock `now`).
    public func record(_ view: ElasticityView, now: Date = Date()) {
        let sample = ConsoleAPI.Sample(
            timeMs: ConsoleAPI.ms(now), bytesInPerSecond: view.brokers.compactMap(\.load?.bytesInPerSecond).reduce(0, +),
            bytesOutPerSecond: view.brokers.compactMap(\.load?.bytesOutPerSecond).reduce(0, +),
            desiredBrokers: desired(view), readyBrokers: Self.ready(view), brokers: view.brokers.count)
        state.withLock { s in
            let present = Set(view.brokers.map(\.id))
            for old in s.view?.brokers ?? [] where !present.contains(old.id) {
                var row = Self.row(old)
                row.state = "gone"
                row.goneMs = ConsoleAPI.ms(now)
                s.gone[old.id] = (row, now)
            }
            for id in present { s.gone[id] = nil }
            s.gone = s.gone.filter { now.timeIntervalSince($0.value.at) < goneFor }
            s.view = view
            if let last = s.samples.last, Double(sample.timeMs - last.timeMs) / 1000 < sampleInterval { return }
            s.samples.append(sample)
        }
    }

    /// The cluster now, as `/api/clusters/NAME` answers.
    public func snapshot(now: Date = Date()) -> ConsoleAPI.Cluster {
        let (view, gone) = state.withLock { ($0.view, $0.gone.values.map(\.row)) }
        let v = view ?? ElasticityView()
        let rows = v.brokers.map(Self.row) + gone.sorted { $0.id < $1.id }
        return ConsoleAPI.Cluster(
            name: name, nowMs: ConsoleAPI.ms(now), updatedMs: v.updated.map(ConsoleAPI.ms), bootstrap: v.bootstrap, phase: v.phase.description,
            desiredBrokers: desired(v), readyBrokers: Self.ready(v), movesInProgress: v.movesInProgress,
            bytesInPerSecond: v.brokers.compactMap(\.load?.bytesInPerSecond).reduce(0, +),
            bytesOutPerSecond: v.brokers.compactMap(\.load?.bytesOutPerSecond).reduce(0, +),
            brokers: rows,
            decisions: v.decisions.map { ConsoleAPI.Decision(timeMs: ConsoleAPI.ms($0.time), from: $0.from, to: $0.to, reason: $0.reason, dryRun: $0.dryRun) },
            moves: v.moves.map {
                ConsoleAPI.Move(partition: $0.partition.description, from: $0.from, to: $0.to, why: $0.why, loadBytesPerSecond: $0.load,
                                startedMs: ConsoleAPI.ms($0.started), seconds: $0.seconds, outcome: $0.outcome.rawValue)
            },
            plan: v.plan.map { p in
                ConsoleAPI.Plan(
                    balanced: p.balanced && p.moves.isEmpty, note: p.note, bandLowBytesPerSecond: p.band.lowerBound, bandHighBytesPerSecond: p.band.upperBound,
                    moves: p.moves.map { ConsoleAPI.PlannedMove(partition: $0.key.description, from: $0.from, to: $0.to, why: $0.why.rawValue, loadBytesPerSecond: $0.load) })
            },
            autoscaler: autoscalerSettings, balancer: balancerSettings, schedules: schedules(v),
            events: v.events.suffix(20).map { ConsoleAPI.Event(timeMs: ConsoleAPI.ms($0.time), text: $0.text) })
    }

    /// Samples newer than `sinceMs` (all of them when nil), oldest first.
    public func series(sinceMs: Int64?) -> ConsoleAPI.Series {
        let samples = state.withLock { s in sinceMs.map { t in s.samples.suffix { $0.timeMs > t } } ?? s.samples.elements }
        return ConsoleAPI.Series(name: name, intervalSeconds: sampleInterval, samples: samples)
    }

    public var summary: ConsoleAPI.ClusterSummary {
        let v = state.withLock { $0.view }
        return ConsoleAPI.ClusterSummary(name: name, phase: v?.phase.description ?? "starting", brokers: v?.brokers.count ?? 0,
                                         updatedMs: v?.updated.map(ConsoleAPI.ms))
    }

    /// Without autoscaling the fleet keeps its count: desired is what runs.
    func desired(_ v: ElasticityView) -> Int { settings.autoscalingEnabled && v.desired > 0 ? v.desired : v.brokers.count }

    /// Registered brokers (ready, or draining: still serving until they own nothing).
    static func ready(_ v: ElasticityView) -> Int { v.brokers.filter { $0.state == "ready" || $0.state == "draining" }.count }

    static func row(_ b: ElasticityView.Broker) -> ConsoleAPI.Broker {
        ConsoleAPI.Broker(id: b.id, state: b.state, partitions: b.partitions, bytesInPerSecond: b.load?.bytesInPerSecond,
                          bytesOutPerSecond: b.load?.bytesOutPerSecond, cpuPercent: b.load?.cpuPercent, produceP99Ms: b.load?.produceP99.map { $0 * 1000 })
    }

    var autoscalerSettings: ConsoleAPI.Autoscaler {
        let a = settings.autoscaling
        return ConsoleAPI.Autoscaler(
            enabled: settings.autoscalingEnabled, minBrokers: a.minBrokers, maxBrokers: a.maxBrokers, targetBytesInPerSecond: a.bytesInPerSecond,
            targetBytesOutPerSecond: a.bytesOutPerSecond, targetRequestsPerSecond: a.requestsPerSecond, targetCpuPercent: a.cpuPercent,
            tolerancePercent: a.tolerance * 100, scaleUpWindowSeconds: a.scaleUpWindow, scaleDownWindowSeconds: a.scaleDownWindow,
            scaleUpStep: a.scaleUpStep, scaleDownStep: a.scaleDownStep, dryRun: a.dryRun, tickSeconds: settings.tick, loadWindowSeconds: settings.loadWindow)
    }

    var balancerSettings: ConsoleAPI.BalancerConfig {
        let b = settings.balancer
        return ConsoleAPI.BalancerConfig(
            enabled: settings.balancingEnabled, intervalSeconds: settings.balancingInterval, tolerancePercent: b.tolerance * 100,
            maxMovesPerRound: b.maxMoves, moveCooldownSeconds: b.moveCooldown, dryRun: b.dryRun)
    }

    func schedules(_ v: ElasticityView) -> ConsoleAPI.Schedules {
        func window(_ w: ScheduleWindow) -> ConsoleAPI.Window {
            ConsoleAPI.Window(name: w.name, floorBrokers: w.floor, raiseAtMs: ConsoleAPI.ms(w.raiseAt), startMs: ConsoleAPI.ms(w.start), endMs: ConsoleAPI.ms(w.end))
        }
        let floor = v.prescale?.highest
        return ConsoleAPI.Schedules(
            configured: settings.prescale.schedules.map {
                ConsoleAPI.Schedule(name: $0.name, cron: $0.cron.description, timeZone: $0.timeZone.identifier, durationSeconds: $0.duration,
                                    leadSeconds: $0.leadTime, floorBrokers: $0.floor, floorSource: $0.floorSource)
            },
            active: v.prescale?.active.map(window) ?? [], next: v.prescale?.next.map(window), floorBrokers: floor?.brokers,
            floorReason: floor.map { "\($0.label) (\($0.detail))" }, predictive: settings.prescale.predictive != nil,
            predictedBytesInPerSecond: v.prescale?.predictedBytesIn)
    }
}

/// The clusters the console shows, by name (`local`, or `namespace/name` in Kubernetes).
public final class ConsoleStore: Sendable {
    private let recorders = Mutex<[String: ConsoleRecorder]>([:])

    public init() {}

    /// A new recorder for `name` (replacing any earlier one: a restarted controller starts a new history).
    @discardableResult
    public func register(_ name: String, settings: ElasticitySettings) -> ConsoleRecorder {
        let r = ConsoleRecorder(name: name, settings: settings)
        recorders.withLock { $0[name] = r }
        return r
    }

    public func remove(_ name: String) { recorders.withLock { $0[name] = nil } }

    public func recorder(_ name: String) -> ConsoleRecorder? { recorders.withLock { $0[name] } }

    public var all: [ConsoleRecorder] { recorders.withLock { $0.values.sorted { $0.name < $1.name } } }
}
