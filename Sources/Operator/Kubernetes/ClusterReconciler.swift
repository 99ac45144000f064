import ControllerRuntime
import Foundation
import KafkaClient
import KubeAPI
import Support

/// The caches the reconciler reads (informers over the watched namespaces).
public struct ClusterCaches: Sendable {
    public let clusters: InformerGroup<FloeCluster>
    public let configMaps: InformerGroup<ConfigMap>
    public let services: InformerGroup<Service>
    public let statefulSets: InformerGroup<StatefulSet>
    public let podDisruptionBudgets: InformerGroup<PodDisruptionBudget>
    /// Broker pods (labelled `managed-by=floe-operator` through the pod template), for status.
    public let pods: InformerGroup<Pod>

    public var hasSynced: Bool {
        clusters.hasSynced && configMaps.hasSynced && services.hasSynced && statefulSets.hasSynced && podDisruptionBudgets.hasSynced
            && pods.hasSynced
    }

    /// The broker pods of one cluster (selected by the StatefulSet's selector labels).
    func brokerPods(_ names: ClusterNames) -> [Pod] {
        let selector = names.selectorLabels
        return pods.list(namespace: names.namespace).filter { pod in
            let labels = pod.metadata.labels ?? [:]
            return selector.allSatisfy { labels[$0.key] == $0.value }
        }
    }

    /// Our labelled objects in `namespace`, as the sync plan sees them. Those named in
    /// `contentOf` (the desired keys) carry their cached content, so the plan can skip applying
    /// objects that match what we render; the others (other clusters' objects, stale ones) only
    /// need metadata, and encoding them would cost every pass time proportional to the namespace.
    func observed(namespace: String, contentOf: Set<ObjectKey>) -> [ObservedObject] {
        func keyed(_ object: ManagedObject) -> ObservedObject {
            let key = object.key
            var content: JSONValue?
            if contentOf.contains(key) {
                do { content = try object.json() } catch { content = nil }  // unknown content: the plan re-applies
            }
            return ObservedObject(key: key, metadata: object.metadata, content: content)
        }
        return configMaps.list(namespace: namespace).map { keyed(.configMap($0)) }
            + services.list(namespace: namespace).map { keyed(.service($0)) }
            + statefulSets.list(namespace: namespace).map { keyed(.statefulSet($0)) }
            + podDisruptionBudgets.list(namespace: namespace).map { keyed(.podDisruptionBudget($0)) }
    }
}

/// Reconciles one FloeCluster per pass: render → server-side apply the desired objects that
/// are missing, changed or drifted (objects whose cached copy has our hash and every field we
/// render are not sent) →
/// prune objects we own that are no longer wanted → compute status once → write it once
/// (only when it changed) → record Events: Normal for what changed, Warning for every pass
/// that ends Degraded (repeats count on one Event, see ``EventRecorder``).
///
/// - Never adopts: a desired name held by an object without our controller reference is a
///   conflict (Degraded/OwnershipConflict), left untouched. Caches only hold objects labelled
///   `managed-by=floe-operator`, so before creating, the object is read to be sure.
/// - An invalid spec renders nothing and yields Degraded/InvalidSpec; the pass succeeds (no
///   crash loop, no retry storm): the next spec change triggers the next pass.
/// - Apply or status errors make the pass throw, so the key is requeued with backoff.
/// - A StatefulSet whose apply is refused because an immutable field changed (the WAL volume
///   claim, the selector: 422 "updates to statefulset spec for fields other than …") is
///   re-created the way Strimzi does it: deleted with `propagationPolicy: Orphan` (the pods keep
///   running), and once it is gone applied again; the new StatefulSet adopts the pods and rolls
///   them if its pod template changed. A Normal Event `Recreated` says so. Existing volume
///   claims are not resized.
/// - A deleted cluster needs nothing: the garbage collector removes its children by owner reference.
public struct ClusterReconciler: Reconciler {
    public let client: KubeClient
    public let caches: ClusterCaches
    public let clock: any FloeClock
    public let logger: Logger
    public let fieldManager: String
    /// Shared by every copy of the reconciler (it remembers the Events it wrote).
    public let events: EventRecorder
    /// How long a re-created StatefulSet's predecessor may take to go (its orphaned pods are
    /// released by the garbage collector first).
    public var recreateTimeout: Duration = .seconds(60)
    /// Drains brokers before the StatefulSet shrinks (nil: scale-in is not guarded; unit tests
    /// without brokers).
    public var scaleInGuard: ScaleInGuard?
    /// The autoscalers' latest reports (nil: no autoscaling in this process).
    public var autoscalingReports: AutoscalingReports?
    /// How soon a pass that is waiting for a drain looks again.
    public var drainPollInterval: Duration = .seconds(1)
    let changes: Counter

    public init(client: KubeClient, caches: ClusterCaches, clock: any FloeClock, logger: Logger, metrics: MetricsRegistry,
                fieldManager: String = Render.managerName, events: EventRecorder? = nil) {
        self.client = client
        self.caches = caches
        self.clock = clock
        self.logger = logger
        self.fieldManager = fieldManager
        self.events = events ?? EventRecorder(sink: client, component: fieldManager, clock: clock, logger: logger)
        changes = metrics.counter("floe_reconcile_object_changes_total", help: "Objects created, updated, re-created or deleted by the reconciler.")
    }

    public func reconcile(_ key: ObjectName) async throws -> ReconcileResult {
        guard let cluster = caches.clusters.get(namespace: key.namespace, name: key.name) else { return .done }
        if cluster.metadata.deletionTimestamp != nil { return .done }
        let log = logger.with("reconcile.key", key.description)
        let problems = FloeClusterValidation.problems(cluster)
        var conflicts: [ObjectKey] = []
        var syncError: (any Error)?
        var appliedStatefulSet: StatefulSet?
        var changed: [(reason: String, key: ObjectKey, message: String)] = []
        func note(_ reason: String, _ key: ObjectKey) { changed.append((reason, key, "\(reason) \(key.kind) \(key.name)")) }
        let names = ClusterNames(cluster: key.name, namespace: key.namespace)

        // Safe scale-in: the StatefulSet keeps its brokers until the leaving ones own nothing.
        var rendered = cluster
        var drain: String?
        if problems.isEmpty, let guardian = scaleInGuard,
           let current = caches.statefulSets.get(namespace: key.namespace, name: names.statefulSet)?.spec?.replicas {
            let desired = cluster.spec.replicas ?? FloeDefaults.replicas
            let bootstrap = Self.brokerAddresses(caches.brokerPods(names), port: cluster.spec.listeners?.kafkaPort ?? FloeDefaults.kafkaPort)
            if desired < current {
                switch await guardian.drain(cluster: key.description, leaving: Array(desired..<current), bootstrap: bootstrap) {
                case .drained:
                    log.info("leaving brokers own nothing; scaling in", metadata: ["from": "\(current)", "to": "\(desired)"])
                    await recordEvent(cluster, type: "Normal", reason: "Drained", message: "Brokers \(desired)…\(current - 1) own no partitions; scaling in from \(current) to \(desired)")
                case .draining(let message), .unreachable(let message):
                    rendered.spec.replicas = current
                    drain = message
                }
            } else if desired > current {
                await guardian.undrain(cluster: key.description, brokers: Array(current..<desired), bootstrap: bootstrap)
            }
        }

        if problems.isEmpty {
            do {
                let desired = try Render.render(rendered)
                let plan = SyncPlan.plan(desired: desired, observed: caches.observed(namespace: key.namespace, contentOf: Set(desired.map(\.key))), ownerUID: cluster.metadata.uid ?? "")
                conflicts = plan.conflicts
                for action in plan.actions {
                    switch action {
                    case .create(let object):
                        if try await heldByOther(object, ownerUID: cluster.metadata.uid ?? "") {
                            conflicts.append(object.key)
                            continue
                        }
                        if let sts = try await apply(object, ownerUID: cluster.metadata.uid ?? "", log: log).statefulSet { appliedStatefulSet = sts }
                        note("Created", object.key)
                    case .update(let object), .reapply(let object):
                        let applied = try await apply(object, ownerUID: cluster.metadata.uid ?? "", log: log)
                        if let sts = applied.statefulSet { appliedStatefulSet = sts }
                        if applied.recreated {
                            let k = object.key
                            changed.append(("Recreated", k, "\(k.kind) \(k.name) re-created: immutable field changed; pods kept"))
                        } else if case .update = action {
                            note("Updated", object.key)
                        }
                    case .keep:
                        continue  // the cached copy already carries everything we render
                    case .delete(let objectKey, let uid):
                        try await delete(objectKey, uid: uid)
                        note("Deleted", objectKey)
                    }
                }
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                syncError = error
            }
        }

        for (reason, objectKey, message) in changed {
            changes.increment()
            log.info("object changed", metadata: ["change": reason, "object": objectKey.description])
            await recordEvent(cluster, type: "Normal", reason: reason, message: message)
        }

        let statefulSet = appliedStatefulSet ?? caches.statefulSets.get(namespace: key.namespace, name: names.statefulSet)
        let status = StatusComputer.compute(
            StatusInput(cluster: cluster, statefulSet: statefulSet, problems: problems, conflicts: conflicts.sorted(),
                        syncError: syncError.map { "\($0)" }, pods: caches.brokerPods(names), now: clock.wallTime(), drain: drain,
                        autoscaling: (cluster.spec.autoscaling?.isEnabled ?? false) ? autoscalingReports?.get(key) : nil))
        if let degraded = status.condition("Degraded"), degraded.status == "True" {
            // Every pass that ends degraded (InvalidSpec, OwnershipConflict, SyncFailed, a failing
            // broker pod): the recorder counts a repeat on the Event it wrote, so `count` says how
            // many passes saw the failure.
            await recordEvent(cluster, type: "Warning", reason: degraded.reason, message: degraded.message)
        }
        if status != cluster.status {
            var updated = cluster
            updated.status = status
            _ = try await client.updateStatus(updated)
        }
        if let syncError { throw syncError }
        if let drain {
            log.info("waiting for brokers to drain", metadata: ["drain": drain])
            return .requeueAfter(drainPollInterval)
        }
        return .done
    }

    /// The Kafka addresses of the running broker pods (pod IP and the Kafka port).
    static func brokerAddresses(_ pods: [Pod], port: Int32) -> [BrokerAddress] {
        pods.filter { $0.metadata.deletionTimestamp == nil && $0.status?.phase == "Running" }
            .compactMap { $0.status?.podIP }.sorted().map { BrokerAddress(host: $0, port: Int(port)) }
    }

    /// Whether `object`'s name is taken by an object without our controller reference.
    private func heldByOther(_ object: ManagedObject, ownerUID: String) async throws -> Bool {
        let k = object.key
        do {
            let meta: ObjectMeta
            switch object {
            case .configMap: meta = try await client.get(ConfigMap.self, namespace: k.namespace, name: k.name).metadata
            case .service: meta = try await client.get(Service.self, namespace: k.namespace, name: k.name).metadata
            case .statefulSet: meta = try await client.get(StatefulSet.self, namespace: k.namespace, name: k.name).metadata
            case .podDisruptionBudget: meta = try await client.get(PodDisruptionBudget.self, namespace: k.namespace, name: k.name).metadata
            }
            return meta.controllerReference?.uid != ownerUID
        } catch let e as KubeAPIError where e.isNotFound {
            return false
        }
    }

    /// Server-side apply; returns the StatefulSet as the server stored it (for status), and
    /// whether it had to be re-created (an immutable field changed).
    private func apply(_ object: ManagedObject, ownerUID: String, log: Logger) async throws -> (statefulSet: StatefulSet?, recreated: Bool) {
        switch object {
        case .configMap(let o): _ = try await client.apply(o, fieldManager: fieldManager)
        case .service(let o): _ = try await client.apply(o, fieldManager: fieldManager)
        case .podDisruptionBudget(let o): _ = try await client.apply(o, fieldManager: fieldManager)
        case .statefulSet(let o):
            do {
                return (try await client.apply(o, fieldManager: fieldManager), false)
            } catch let e as KubeAPIError where SyncPlan.isImmutableFieldChange(e) {
                return (try await recreate(o, ownerUID: ownerUID, refusal: e, log: log), true)
            }
        }
        return (nil, false)
    }

    /// Re-creates a StatefulSet whose apply was refused because an immutable field changed:
    /// 1. read it, and stop (rethrowing `refusal`) unless it is ours;
    /// 2. delete it with `propagationPolicy: Orphan` and its uid as precondition: the pods stay
    ///    (the garbage collector only takes the owner reference out of them);
    /// 3. wait until it is gone (the API server keeps it, with the `orphan` finalizer, until the
    ///    pods are released), polling on the injected clock up to ``recreateTimeout``;
    /// 4. apply the desired StatefulSet: it is created, adopts the pods by its selector, and
    ///    rolls them only if its pod template differs from theirs.
    /// A failure at any step throws (SyncFailed, retried with backoff); the next pass finds
    /// either the old StatefulSet (and starts over) or none (and creates it).
    private func recreate(_ desired: StatefulSet, ownerUID: String, refusal: KubeAPIError, log: Logger) async throws -> StatefulSet {
        let ns = desired.metadata.namespace ?? ""
        let name = desired.metadata.name ?? ""
        let current: StatefulSet
        do {
            current = try await client.get(StatefulSet.self, namespace: ns, name: name)
        } catch let e as KubeAPIError where e.isNotFound {
            return try await client.apply(desired, fieldManager: fieldManager)  // gone meanwhile
        }
        guard let uid = current.metadata.uid, current.metadata.controllerReference?.uid == ownerUID else { throw refusal }
        log.info("re-creating the StatefulSet: an immutable field changed; its pods are orphaned, not deleted",
                 metadata: ["object": "\(ns)/\(name)", "refusal": "\(refusal)"])
        if current.metadata.deletionTimestamp == nil {
            do {
                try await client.delete(StatefulSet.self, namespace: ns, name: name, uid: uid, propagation: .orphan)
            } catch let e as KubeAPIError where e.isNotFound {
                // already gone
            }
        }
        let deadline = clock.now().advanced(by: recreateTimeout)
        while true {
            do {
                let still = try await client.get(StatefulSet.self, namespace: ns, name: name)
                if still.metadata.uid != uid { break }  // someone else created it again: apply over it
            } catch let e as KubeAPIError where e.isNotFound {
                break
            }
            if clock.now() >= deadline {
                throw OperatorError.recreate(object: "StatefulSet \(ns)/\(name)", detail: "the old StatefulSet (uid \(uid)) was not gone after \(recreateTimeout)")
            }
            try await clock.sleep(for: .milliseconds(100))
        }
        return try await client.apply(desired, fieldManager: fieldManager)
    }

    private func delete(_ key: ObjectKey, uid: String?) async throws {
        do {
            switch key.kind {
            case ConfigMap.kind: try await client.delete(ConfigMap.self, namespace: key.namespace, name: key.name, uid: uid)
            case Service.kind: try await client.delete(Service.self, namespace: key.namespace, name: key.name, uid: uid)
            case StatefulSet.kind: try await client.delete(StatefulSet.self, namespace: key.namespace, name: key.name, uid: uid)
            case PodDisruptionBudget.kind: try await client.delete(PodDisruptionBudget.self, namespace: key.namespace, name: key.name, uid: uid)
            default: return
            }
        } catch let e as KubeAPIError where e.isNotFound {
            return  // already gone
        }
    }

    /// Records a core/v1 Event on the cluster (a repeat counts on the Event already written).
    /// Failing to record is logged, never fatal.
    private func recordEvent(_ cluster: FloeCluster, type: String, reason: String, message: String) async {
        let object = ObjectReference(apiVersion: FloeCluster.apiVersion, kind: FloeCluster.kind, name: cluster.metadata.name,
                                     namespace: cluster.metadata.namespace, uid: cluster.metadata.uid,
                                     resourceVersion: cluster.metadata.resourceVersion)
        await events.record(object, type: type, reason: reason, message: message)
    }
}
