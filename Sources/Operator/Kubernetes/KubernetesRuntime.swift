import ControllerRuntime
import Foundation
import KubeAPI
import Support
import Synchronization

/// Options of `floe-operator run`.
public struct RunOptions: Sendable, Equatable {
    public var leaderElect = false
    public var leaderElectionNamespace: String?
    public var leaseName = "floe-operator-leader"
    public var identity: String?
    public var leaseDuration: Duration = .seconds(15)
    public var renewDeadline: Duration = .seconds(10)
    public var retryPeriod: Duration = .seconds(2)
    /// `:8080`; nil: no HTTP port.
    public var httpAddress: String? = ":8080"
    /// nil: all namespaces.
    public var watchNamespaces: [String]?
    public var kubeconfig: String?
    public var master: String?
    public var resyncPeriod: Duration = .seconds(300)
    public var workers = 2
    public var qps: Double = 20
    public var burst = 40

    public init() {}
}

/// `floe-operator run`: connects to the API server, serves `/metrics`, `/healthz` and
/// `/readyz`, (optionally) waits to lead, then runs the informers and the FloeCluster
/// controller until cancelled (SIGTERM), releasing the lease on the way out.
///
/// Readiness: a standby replica is ready (it is healthy and waiting); a leader is ready once
/// every informer has synced. Leadership lost (renew failed past the deadline) ends `run` with
/// ``ControllerRuntimeError/leadershipLost(lease:identity:)``: the process exits and restarts
/// as a candidate, so two replicas never both act on a stale view.
public final class KubernetesRuntime: Sendable {
    public let options: RunOptions
    public let logger: Logger
    public let metrics = MetricsRegistry()
    let clock: any FloeClock
    private let leading = Mutex(false)
    private let caches = Mutex<ClusterCaches?>(nil)

    public init(options: RunOptions, logger: Logger, clock: any FloeClock = RealClock()) {
        self.options = options
        self.logger = logger
        self.clock = clock
    }

    /// The client configuration: `--master` (plain URL, no credentials), `--kubeconfig`, the
    /// in-cluster service account, or `$KUBECONFIG` / `~/.kube/config`, in that order.
    public static func clientConfig(_ options: RunOptions, environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(KubeAPIError) -> KubeClientConfig
    {
        if let path = options.kubeconfig { return try .kubeconfig(path: path) }
        if let master = options.master { return KubeClientConfig(server: master) }
        if environment["KUBERNETES_SERVICE_HOST"] != nil { return try .inCluster(environment: environment) }
        let path = environment["KUBECONFIG"] ?? (environment["HOME"].map { $0 + "/.kube/config" } ?? "")
        return try .kubeconfig(path: path)
    }

    public func run() async throws {
        let config = try Self.clientConfig(options)
        let identity = options.identity ?? ProcessInfo.processInfo.environment["POD_NAME"]
            ?? "\(ProcessInfo.processInfo.hostName)_\(UUID().uuidString.prefix(8))"
        // The identity in the User-Agent makes each replica's requests attributable in audit logs.
        let client = try KubeClient(config: config, userAgent: "floe-operator/\(FloeVersion.string) (\(identity))", clock: clock,
                                    qps: options.qps, burst: options.burst)
        defer { client.shutdown() }
        let leaderGauge = metrics.gauge("floe_operator_leader", help: "1 while this replica leads (or runs without leader election).")
        let console = ConsoleStore()
        let consoleRoutes = ConsoleRoutes(store: console, fault: ConsoleRoutes.faultFromEnvironment())
        let probes: ProbeServer? = try options.httpAddress.map { address in
            try ProbeServer(listening: address) { [self] (request: ProbeServer.Request) in
                switch request.path {
                case "/healthz", "/livez": return .ok("ok\n")
                case "/readyz":
                    let isLeading = leading.withLock { $0 }
                    let synced = caches.withLock { $0?.hasSynced ?? false }
                    if !isLeading || synced { return .ok("ok\n") }
                    return ProbeServer.Response(status: 503, body: "caches not synced\n")
                case "/metrics": return .ok(metrics.render(), contentType: "text/plain; version=0.0.4")
                default: return consoleRoutes.handle(request) ?? .notFound
                }
            }
        }
        defer { probes?.stop() }
        if let probes { logger.info("serving probes and metrics", metadata: ["http.port": "\(probes.port)"]) }

        if options.leaderElect {
            let namespace = options.leaderElectionNamespace ?? config.namespace ?? "default"
            let election = LeaderElection(
                client: client,
                config: LeaderElectionConfig(namespace: namespace, leaseName: options.leaseName, identity: identity,
                                             leaseDuration: options.leaseDuration, renewDeadline: options.renewDeadline,
                                             retryPeriod: options.retryPeriod),
                clock: clock, logger: logger,
                onChange: { [self] on in
                    leading.withLock { $0 = on }
                    leaderGauge.set(on ? 1 : 0)
                })
            logger.info("waiting for leadership", metadata: ["lease": "\(namespace)/\(options.leaseName)", "identity": identity])
            try await election.run { [self] in try await runController(client: client, console: console) }
        } else {
            leading.withLock { $0 = true }
            leaderGauge.set(1)
            try await runController(client: client, console: console)
        }
    }

    /// The informers and the controller; returns when cancelled.
    func runController(client: KubeClient, console: ConsoleStore? = nil) async throws {
        let queue = WorkQueue<ObjectName>(clock: clock)
        let ns = options.watchNamespaces
        let resync = options.resyncPeriod
        let log = logger
        let enqueueCluster: Informer<FloeCluster>.Handler = { event in
            let m = event.object.metadata
            queue.add(ObjectName(namespace: m.namespace ?? "", name: m.name ?? ""))
        }
        @Sendable func enqueueOwner(_ m: ObjectMeta) {
            guard let ref = m.controllerReference, ref.kind == FloeCluster.kind, ref.apiVersion == FloeCluster.apiVersion else { return }
            queue.add(ObjectName(namespace: m.namespace ?? "", name: ref.name))
        }
        let owned = "app.kubernetes.io/managed-by=\(Render.managerName)"
        let caches = ClusterCaches(
            clusters: InformerGroup(client: client, namespaces: ns, clock: clock, resyncPeriod: resync, logger: log, handler: enqueueCluster),
            configMaps: InformerGroup(client: client, namespaces: ns, labelSelector: owned, clock: clock, resyncPeriod: resync, logger: log) {
                enqueueOwner($0.object.metadata)
            },
            services: InformerGroup(client: client, namespaces: ns, labelSelector: owned, clock: clock, resyncPeriod: resync, logger: log) {
                enqueueOwner($0.object.metadata)
            },
            statefulSets: InformerGroup(client: client, namespaces: ns, labelSelector: owned, clock: clock, resyncPeriod: resync, logger: log) {
                enqueueOwner($0.object.metadata)
            },
            podDisruptionBudgets: InformerGroup(client: client, namespaces: ns, labelSelector: owned, clock: clock, resyncPeriod: resync, logger: log) {
                enqueueOwner($0.object.metadata)
            },
            // Pods are owned by the StatefulSet; their cluster is the instance label.
            pods: InformerGroup(client: client, namespaces: ns, labelSelector: owned, clock: clock, resyncPeriod: resync, logger: log) {
                let m = $0.object.metadata
                guard let cluster = m.labels?["app.kubernetes.io/instance"] else { return }
                queue.add(ObjectName(namespace: m.namespace ?? "", name: cluster))
            })
        self.caches.withLock { $0 = caches }
        defer { self.caches.withLock { $0 = nil } }
        var reconciler = ClusterReconciler(client: client, caches: caches, clock: clock, logger: logger, metrics: metrics)
        reconciler.scaleInGuard = ScaleInGuard(logger: logger)
        let reports = AutoscalingReports()
        reconciler.autoscalingReports = reports
        let autoscaling = try AutoscalingManager(
            client: client, caches: caches, events: reconciler.events, reports: reports, logger: logger, enqueue: { queue.add($0) },
            console: console)
        let controller = Controller(name: "floecluster", queue: queue, reconciler: reconciler, workers: options.workers, logger: logger, metrics: metrics)
        let clock = clock
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await caches.clusters.run() }
            group.addTask { await caches.configMaps.run() }
            group.addTask { await caches.services.run() }
            group.addTask { await caches.statefulSets.run() }
            group.addTask { await caches.podDisruptionBudgets.run() }
            group.addTask { await caches.pods.run() }
            group.addTask {
                // Reconcile only from synced caches (else "not observed" would look like "absent").
                while !caches.hasSynced {
                    do { try await clock.sleep(for: .milliseconds(20)) } catch { return }
                }
                log.info("caches synced; reconciling")
                await withTaskGroup(of: Void.self) { inner in
                    inner.addTask { await controller.run(clock: clock) }
                    inner.addTask { await autoscaling.run() }
                }
            }
            await group.waitForAll()
        }
        try Task.checkCancellation()
    }
}
