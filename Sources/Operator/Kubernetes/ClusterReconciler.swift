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
    /// Makes the passwords of `<cluster>-operator-credentials` (created once, never rotated by
    /// the operator). Injected so tests can fix them.
    public var makePassword: @Sendable () -> String = { Self.randomPassword() }
    /// How soon a cluster whose spec names Secrets is looked at again: Secrets are not watched
    /// (the operator may only get them by name), so a changed password, or a missing Secret
    /// created later, is noticed within this interval.
    public var secretPollInterval: Duration = .seconds(30)
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
        var problems = FloeClusterValidation.problems(cluster)
        let specValid = problems.isEmpty
        var conflicts: [ObjectKey] = []
        var syncError: (any Error)?
        var appliedStatefulSet: StatefulSet?
        var changed: [(reason: String, key: ObjectKey, message: String)] = []
        func note(_ reason: String, _ key: ObjectKey) { changed.append((reason, key, "\(reason) \(key.kind) \(key.name)")) }
        let names = ClusterNames(cluster: key.name, namespace: key.namespace)

        // The Secrets the spec names (and the operator's own credentials, created on first need).
        var security = SecurityInputs(problems: [], material: nil, access: .plaintext)
        if problems.isEmpty {
            do {
                security = try await securityInputs(cluster, names: names, log: log) { reason, key in note(reason, key) }
                problems += security.problems
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                syncError = error  // SyncFailed, retried with backoff; nothing is rendered without them
            }
        }

        // Safe scale-in: the StatefulSet keeps its brokers until the leaving ones own nothing.
        var rendered = cluster
        var drain: String?
        if problems.isEmpty, syncError == nil, let guardian = scaleInGuard,
           let current = caches.statefulSets.get(namespace: key.namespace, name: names.statefulSet)?.spec?.replicas {
            let desired = cluster.spec.replicas ?? FloeDefaults.replicas
            let bootstrap = Self.brokerAddresses(
                caches.brokerPods(names), port: cluster.spec.listeners?.kafkaPort ?? FloeDefaults.kafkaPort,
                dnsNames: security.access.usesTLS ? names : nil)
            if desired < current {
                switch await guardian.drain(cluster: key.description, leaving: Array(desired..<current), bootstrap: bootstrap, access: security.access) {
                case .drained:
                    log.info("leaving brokers own nothing; scaling in", metadata: ["from": "\(current)", "to": "\(desired)"])
                    await recordEvent(cluster, type: "Normal", reason: "Drained", message: "Brokers \(desired)…\(current - 1) own no partitions; scaling in from \(current) to \(desired)")
                case .draining(let message), .unreachable(let message):
                    rendered.spec.replicas = current
                    drain = message
                }
            } else if desired > current {
                await guardian.undrain(cluster: key.description, brokers: Array(current..<desired), bootstrap: bootstrap, access: security.access)
            }
        }

        if problems.isEmpty, syncError == nil {
            do {
                let all = try Render.render(rendered, security: security.material)
                // Secrets are not cached (the operator may not list them): synced on their own.
                let secrets = all.filter { if case .secret = $0 { true } else { false } }
                let desired = all.filter { if case .secret = $0 { false } else { true } }
                let plan = SyncPlan.plan(desired: desired, observed: caches.observed(namespace: key.namespace, contentOf: Set(desired.map(\.key))), ownerUID: cluster.metadata.uid ?? "")
                conflicts = plan.conflicts
                for object in secrets {
                    if let change = try await syncSecret(object, ownerUID: cluster.metadata.uid ?? "") {
                        if change == "Conflict" { conflicts.append(object.key) } else { note(change, object.key) }
                    }
                }
                // SASL turned off: the users Secret goes once the StatefulSet that mounted it no
                // longer does (deleted after the actions below; a pod created from the old
                // template in between must still find it).
                let usersSecretRetired = secrets.isEmpty && Self.mountsUsers(caches.statefulSets.get(namespace: key.namespace, name: names.statefulSet))
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
                if usersSecretRetired {
                    let k = ObjectKey(apiVersion: Secret.apiVersion, kind: Secret.kind, namespace: key.namespace, name: names.usersSecret)
                    if let uid = try await ownedSecretUID(k, ownerUID: cluster.metadata.uid ?? "") {
                        try await delete(k, uid: uid)
                        note("Deleted", k)
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
        if specValid && Self.namesSecrets(cluster.spec) { return .requeueAfter(secretPollInterval) }
        return .done
    }

    /// The Kafka addresses of the running broker pods: pod IP and the Kafka port, or, with
    /// `dnsNames` (a TLS internal listener, whose certificates name the brokers, not their IPs),
    /// the pod's DNS name under the headless Service (the name the broker advertises).
    static func brokerAddresses(_ pods: [Pod], port: Int32, dnsNames: ClusterNames? = nil) -> [BrokerAddress] {
        let running = pods.filter { $0.metadata.deletionTimestamp == nil && $0.status?.phase == "Running" }
        if let names = dnsNames {
            return running.compactMap { pod in pod.status?.podIP == nil ? nil : pod.metadata.name }.sorted()
                .map { BrokerAddress(host: "\($0).\(names.headlessService).\(names.namespace).svc", port: Int(port)) }
        }
        return running.compactMap { $0.status?.podIP }.sorted().map { BrokerAddress(host: $0, port: Int(port)) }
    }

    /// What the security fields need from Secrets: problems (missing Secrets or keys, unusable
    /// passwords: named, never shown), the renderer's passwords, and the operator's own access.
    struct SecurityInputs {
        var problems: [String]
        var material: SecurityMaterial?
        var access: KafkaAccess
    }

    /// Reads the Secrets the spec names (each once per pass) and, when a listener uses SASL,
    /// the operator credentials, creating them on first need: two random passwords for
    /// `floe-operator` and `floe-broker`, owned by the cluster, never rotated by the operator
    /// (deleting the Secret makes a new one, and the brokers roll to it).
    func securityInputs(_ cluster: FloeCluster, names: ClusterNames, log: Logger, note: (String, ObjectKey) -> Void) async throws -> SecurityInputs {
        let spec = cluster.spec
        let plan = SecurityPlan(spec)
        var problems: [String] = []
        var read: [String: [String: String]?] = [:]
        func secret(_ name: String) async throws -> [String: String]? {
            if let known = read[name] { return known }
            do {
                let data = try SecretData.decode(try await client.get(Secret.self, namespace: names.namespace, name: name))
                read[name] = .some(data)
                return data
            } catch let e as KubeAPIError where e.isNotFound {
                read[name] = .some(nil)
                return nil
            }
        }
        var missing = Set<String>()
        for (name, key, field) in SecurityPlan.requiredSecretKeys(spec) {
            guard let data = try await secret(name) else {
                if missing.insert(name).inserted { problems.append("Secret \(name) (\(field)) does not exist in namespace \(names.namespace)") }
                continue
            }
            if data[key] == nil { problems.append("Secret \(name) (\(field)) has no key \(key)") }
        }
        var passwords: [String: String] = [:]
        for (i, user) in (spec.users ?? []).enumerated() {
            let ref = user.passwordSecret
            guard let data = try await secret(ref.name) else {
                if missing.insert(ref.name).inserted {
                    problems.append("Secret \(ref.name) (spec.users[\(i)].passwordSecret) does not exist in namespace \(names.namespace)")
                }
                continue
            }
            guard let password = data[ref.key] else {
                problems.append("Secret \(ref.name) (spec.users[\(i)].passwordSecret) has no key \(ref.key)")
                continue
            }
            if password.isEmpty || password.contains(where: { $0 == "\n" || $0 == "\r" }) {
                problems.append("the password of user \(user.name) (Secret \(ref.name) key \(ref.key)) is empty or spans lines")
                continue
            }
            passwords[user.name] = password
        }
        guard plan.usesSASL || plan.internalProtocol.usesTLS else { return SecurityInputs(problems: problems, material: nil, access: .plaintext) }

        var material: SecurityMaterial?
        if plan.usesSASL {
            let credentials = names.operatorCredentialsSecret
            if let data = try await secret(credentials) {
                if let op = data[SecurityLayout.operatorUser], let broker = data[SecurityLayout.brokerUser], !op.isEmpty, !broker.isEmpty {
                    material = SecurityMaterial(userPasswords: passwords, operatorPassword: op, brokerPassword: broker)
                } else {
                    problems.append("Secret \(credentials) lacks the keys \(SecurityLayout.operatorUser) and \(SecurityLayout.brokerUser); "
                                    + "delete it and the operator writes a new one")
                }
            } else if problems.isEmpty {
                let op = makePassword()
                let broker = makePassword()
                let owner = OwnerReference(apiVersion: FloeCluster.apiVersion, kind: FloeCluster.kind, name: names.cluster,
                                           uid: cluster.metadata.uid ?? "", controller: true, blockOwnerDeletion: true)
                let created = Secret(
                    metadata: ObjectMeta(name: credentials, namespace: names.namespace, labels: names.labels(component: "credentials"),
                                         ownerReferences: [owner]),
                    data: [SecurityLayout.operatorUser: Data(op.utf8).base64EncodedString(),
                           SecurityLayout.brokerUser: Data(broker.utf8).base64EncodedString()],
                    type: "Opaque")
                _ = try await client.create(created)
                log.info("created the operator credentials", metadata: ["secret": credentials])
                note("Created", ObjectKey(apiVersion: Secret.apiVersion, kind: Secret.kind, namespace: names.namespace, name: credentials))
                read[credentials] = .some([SecurityLayout.operatorUser: op, SecurityLayout.brokerUser: broker])
                material = SecurityMaterial(userPasswords: passwords, operatorPassword: op, brokerPassword: broker)
            }
        }
        guard problems.isEmpty else { return SecurityInputs(problems: problems, material: nil, access: .plaintext) }
        let access = try KafkaAccess.forCluster(spec, names: names, secrets: read.compactMapValues { $0 })
        return SecurityInputs(problems: problems, material: material, access: access)
    }

    /// 32 random bytes as hex (64 characters: no ':' or line breaks, safe in the users file).
    static func randomPassword() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: .min ... .max, using: &generator)) }.joined()
    }

    /// Creates or updates a rendered Secret; returns "Created", "Updated", "Conflict" (the name
    /// is held by an object without our controller reference) or nil (already as rendered).
    private func syncSecret(_ object: ManagedObject, ownerUID: String) async throws -> String? {
        guard case .secret(let desired) = object else { return nil }
        let k = object.key
        do {
            let current = try await client.get(Secret.self, namespace: k.namespace, name: k.name)
            guard current.metadata.controllerReference?.uid == ownerUID else { return "Conflict" }
            if current.metadata.annotations?[Render.hashAnnotation] == desired.metadata.annotations?[Render.hashAnnotation],
               current.data == desired.data, current.metadata.labels == desired.metadata.labels {
                return nil
            }
            _ = try await client.apply(desired, fieldManager: fieldManager)
            return "Updated"
        } catch let e as KubeAPIError where e.isNotFound {
            _ = try await client.apply(desired, fieldManager: fieldManager)
            return "Created"
        }
    }

    /// The uid of a Secret we own, nil when it is absent or not ours.
    private func ownedSecretUID(_ k: ObjectKey, ownerUID: String) async throws -> String? {
        do {
            let s = try await client.get(Secret.self, namespace: k.namespace, name: k.name)
            return s.metadata.controllerReference?.uid == ownerUID ? s.metadata.uid : nil
        } catch let e as KubeAPIError where e.isNotFound {
            return nil
        }
    }

    /// Whether the spec names Secrets whose content the operator uses (users' passwords, TLS).
    static func namesSecrets(_ spec: FloeClusterSpec) -> Bool {
        let plan = SecurityPlan(spec)
        return plan.usesSASL || plan.usesTLS
    }

    /// Whether a StatefulSet's pods mount the users Secret (SASL was on when it was rendered).
    static func mountsUsers(_ sts: StatefulSet?) -> Bool {
        sts?.spec?.template.spec?.volumes?.contains { $0.name == "users" } ?? false
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
            case .secret: meta = try await client.get(Secret.self, namespace: k.namespace, name: k.name).metadata
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
        case .secret(let o): _ = try await client.apply(o, fieldManager: fieldManager)
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
            case Secret.kind: try await client.delete(Secret.self, namespace: key.namespace, name: key.name, uid: uid)
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
