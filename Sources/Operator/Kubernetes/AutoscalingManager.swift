import ControllerRuntime
import Foundation
import HTTPClient
import KafkaClient
import KubeAPI
import Support
import Synchronization

/// The autoscalers' latest reports, by cluster: written by their controllers, read by the
/// reconciler into `status.autoscaling`, `status.load` and `status.lastScaling`.
public final class AutoscalingReports: Sendable {
    private let reports = Mutex<[ObjectName: AutoscalingReport]>([:])

    public init() {}

    public func get(_ key: ObjectName) -> AutoscalingReport? { reports.withLock { $0[key] } }
    func set(_ key: ObjectName, _ report: AutoscalingReport?) { reports.withLock { $0[key] = report } }
}

/// Runs one `ElasticityController` per FloeCluster whose `spec.autoscaling.enabled` is true,
/// with a `KubernetesFleet`: the same decisions, moves and drains as `floe-operator local`,
/// acting through the scale subresource. Started, restarted (when the autoscaling or
/// balancing spec changes) and stopped by looking at the cluster cache every few seconds.
///
/// The controllers hold no state that matters across restarts: a new operator leader starts
/// from the spec, the pods and the cluster's metadata (a drain in progress is finished by the
/// reconciler's `ScaleInGuard` whatever happens here).
public actor AutoscalingManager {
    struct Running {
        var spec: AutoscalingSpec
        var balancing: BalancingSpec?
        var task: Task<Void, Never>
    }

    let client: KubeClient
    let caches: ClusterCaches
    let events: EventRecorder
    let logger: Logger
    let reports: AutoscalingReports
    /// Asks the reconciler for a pass (to write the status).
    let enqueue: @Sendable (ObjectName) -> Void
    let http: HTTPClient
    /// Where each controller's view goes for the web console (nil: no console).
    let console: ConsoleStore?
    private var running: [ObjectName: Running] = [:]

    public init(client: KubeClient, caches: ClusterCaches, events: EventRecorder, reports: AutoscalingReports, logger: Logger,
                enqueue: @escaping @Sendable (ObjectName) -> Void, console: ConsoleStore? = nil) throws {
        self.console = console
        self.client = client
        self.caches = caches
        self.events = events
        self.reports = reports
        self.logger = logger
        self.enqueue = enqueue
        self.http = try HTTPClient()
    }

    /// Until cancelled: every 3 s, start, restart or stop controllers to match the clusters.
    public func run() async {
        while !Task.isCancelled {
            sync()
            do { try await Task.sleep(for: .seconds(3)) } catch { break }
        }
        for (key, r) in running {
            r.task.cancel()
            reports.set(key, nil)
            console?.remove(key.description)
        }
        running = [:]
        http.shutdown()
    }

    func sync() {
        var wanted: [ObjectName: FloeCluster] = [:]
        for cluster in caches.clusters.listAll() where cluster.metadata.deletionTimestamp == nil {
            guard let a = cluster.spec.autoscaling, a.isEnabled, FloeClusterValidation.problems(cluster).isEmpty else { continue }
            wanted[ObjectName(namespace: cluster.metadata.namespace ?? "", name: cluster.metadata.name ?? "")] = cluster
        }
        for (key, r) in running where wanted[key] == nil || wanted[key]?.spec.autoscaling != r.spec || wanted[key]?.spec.balancing != r.balancing {
            logger.info("autoscaler stopped", metadata: ["cluster": key.description])
            r.task.cancel()
            running[key] = nil
            reports.set(key, nil)
            console?.remove(key.description)
            enqueue(key)
        }
        for (key, cluster) in wanted where running[key] == nil {
            running[key] = Running(spec: cluster.spec.autoscaling!, balancing: cluster.spec.balancing, task: start(key, cluster))
            logger.info("autoscaler started", metadata: ["cluster": key.description])
        }
    }

    private func start(_ key: ObjectName, _ cluster: FloeCluster) -> Task<Void, Never> {
        let spec = cluster.spec
        let names = ClusterNames(cluster: key.name, namespace: key.namespace)
        let kafkaPort = Int(spec.listeners?.kafkaPort ?? FloeDefaults.kafkaPort)
        let fleet = KubernetesFleet(
            client: client, caches: caches, names: names, kafkaPort: kafkaPort, httpPort: Int(spec.listeners?.httpPort ?? FloeDefaults.httpPort),
            dnsNames: SecurityPlan(spec).internalProtocol.usesTLS)
        let kube = client
        var settings = ElasticitySettings(
            autoscaling: AutoscalerSettings(spec.autoscaling!), balancer: BalancerSettings(spec.balancing, targets: spec.autoscaling?.targets),
            balancingEnabled: spec.balancing?.enabled ?? true,
            balancingInterval: Double(spec.balancing?.intervalSeconds ?? FloeDefaults.balancingIntervalSeconds), tick: 2, loadWindow: 20)
        // Validation (checked before a controller starts) refuses what PrescalePolicy refuses.
        do throws(OperatorError) {
            settings.prescale = try PrescalePolicy(spec.autoscaling!)
        } catch {
            logger.error("schedules and predictive floor not used", metadata: ["cluster": key.description, "error": "\(error)"])
        }
        // The predictive floor's memory from before this controller started (restart, spec change).
        var history: LoadHistory?
        if let p = settings.prescale.predictive, let saved = cluster.status?.autoscaling?.loadHistory {
            do throws(OperatorError) {
                history = try LoadHistory(saved, days: p.historyDays)
            } catch {
                logger.warning("status.autoscaling.loadHistory unreadable; predicting from an empty history", metadata: ["cluster": key.description, "error": "\(error)"])
            }
        }
        let reference = ObjectReference(
            apiVersion: FloeCluster.apiVersion, kind: FloeCluster.kind, name: key.name, namespace: key.namespace, uid: cluster.metadata.uid)
        let (events, reports, enqueue, http) = (self.events, self.reports, self.enqueue, self.http)
        let log = logger.with("cluster", key.description)
        let dryRun = spec.autoscaling?.dryRun ?? false
        let recorder = console?.register(key.description, settings: settings)
        let lastPublished = Mutex<(report: AutoscalingReport?, at: ContinuousClock.Instant)>((nil, .now))
        return Task {
            // Bootstrap from the running pods; the admin client learns the rest from Metadata.
            var bootstrap: [BrokerAddress] = []
            while bootstrap.isEmpty && !Task.isCancelled {
                bootstrap = await fleet.members().map(\.kafka)
                if bootstrap.isEmpty { try? await Task.sleep(for: .seconds(2)) }
            }
            // The operator's own credentials and the cluster CA, when the internal listener needs them.
            var made: KafkaAdminClient?
            while made == nil && !Task.isCancelled {
                do {
                    made = try OperatorKafka.adminClient(bootstrap: bootstrap, access: try await KafkaAccess.read(spec, names: names, client: kube))
                } catch {
                    log.error("cannot make the admin client; autoscaling waits", metadata: ["error": "\(error)"])
                    try? await Task.sleep(for: .seconds(30))
                }
            }
            guard let admin = made else { return }
            defer { admin.close() }
            let controller = ElasticityController(
                settings: settings, fleet: fleet, admin: admin, http: http, logger: log, bootstrap: "\(names.bootstrapService):\(kafkaPort)",
                history: history, onTick: { view in
                    recorder?.record(view)
                    let report = Self.report(view, dryRun: dryRun)
                    // Status writes: at once when the decision or phase changed, else at most every 30 s.
                    let publish = lastPublished.withLock { last -> Bool in
                        let changed = last.report?.status.phase != report.status.phase || last.report?.status.lastDecision != report.status.lastDecision
                            || last.report?.status.desiredBrokers != report.status.desiredBrokers
                            || last.report?.status.floorBrokers != report.status.floorBrokers
                            || last.report?.status.activeSchedules != report.status.activeSchedules
                        guard changed || ContinuousClock.now - last.at >= .seconds(30) else { return false }
                        last = (report, .now)
                        return true
                    }
                    if publish {
                        reports.set(key, report)
                        enqueue(key)
                    }
                },
                onEvent: { type, reason, message in
                    Task { await events.record(reference, type: type, reason: reason, message: String(message.prefix(1024))) }
                })
            await controller.run()
        }
    }

    /// The status view of a controller's snapshot. Rates are rounded to KiB/s so that small
    /// fluctuations do not rewrite the status.
    static func report(_ view: ElasticityView, dryRun: Bool) -> AutoscalingReport {
        func kib(_ v: Double?) -> Int64? { v.map { Int64(($0 / 1024).rounded()) * 1024 } }
        let brokers = view.brokers.map {
            BrokerLoadStatus(
                id: $0.id, known: $0.load != nil, bytesInPerSecond: kib($0.load?.bytesInPerSecond), bytesOutPerSecond: kib($0.load?.bytesOutPerSecond),
                cpuPercent: $0.load?.cpuPercent.map { Int32($0.rounded()) }, partitions: Int32($0.partitions),
                produceP99Milliseconds: $0.load?.produceP99.map { $0 * 1000 })
        }
        let decision = view.lastChange.map {
            ScalingDecision(time: KubeTime.format($0.time), from: Int32($0.from), to: Int32($0.to), reason: String($0.reason.prefix(1024)))
        }
        let known = view.brokers.compactMap(\.load)
        let cpu = known.compactMap(\.cpuPercent)
        let load = ClusterLoad(
            brokers: Int32(view.brokers.count), bytesInPerSecond: kib(known.map(\.bytesInPerSecond).reduce(0, +)),
            bytesOutPerSecond: kib(known.map(\.bytesOutPerSecond).reduce(0, +)),
            requestsPerSecond: Int64(known.map(\.requestsPerSecond).reduce(0, +).rounded()),
            cpuUtilizationPercent: cpu.isEmpty ? nil : Int32((cpu.reduce(0, +) / Double(cpu.count)).rounded()), observedAt: nil)
        func window(_ w: ScheduleWindow) -> ScheduleWindowStatus {
            ScheduleWindowStatus(
                name: w.name, floorBrokers: Int32(w.floor), raiseAt: KubeTime.format(w.raiseAt), start: KubeTime.format(w.start), end: KubeTime.format(w.end))
        }
        let floor = view.prescale?.highest
        let active = view.prescale?.active.map(window)
        return AutoscalingReport(
            status: AutoscalingStatus(
                desiredBrokers: Int32(view.desired), phase: view.phase.description, dryRun: dryRun ? true : nil, brokers: brokers, lastDecision: decision,
                floorBrokers: floor.map { Int32($0.brokers) }, floorReason: floor.map { String("\($0.label) (\($0.detail))".prefix(1024)) },
                activeSchedules: active?.isEmpty == false ? active : nil, nextSchedule: view.prescale?.next.map(window),
                predictedBytesInPerSecond: kib(view.prescale?.predictedBytesIn), loadHistory: view.loadHistory),
            load: load)
    }
}
