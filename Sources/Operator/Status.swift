import Foundation
import KubeAPI

/// What one reconcile pass observed, from which the status is computed.
public struct StatusInput: Sendable {
    public var cluster: FloeCluster
    /// The cluster's StatefulSet as last read, nil when it does not exist (yet).
    public var statefulSet: StatefulSet?
    /// Validation problems of the spec (`FloeClusterValidation.problems`).
    public var problems: [String]
    /// Objects we wanted but that exist without our owner reference (from the sync plan).
    public var conflicts: [ObjectKey]
    /// The error of the last apply, if the pass failed part-way.
    public var syncError: String?
    /// The cluster's broker pods (from the pod cache).
    public var pods: [Pod]
    public var now: Date
    /// While brokers are drained before the StatefulSet shrinks: what is left to move.
    public var drain: String?
    /// The autoscaler's latest view (nil: autoscaling off, or not measured yet).
    public var autoscaling: AutoscalingReport?

    public init(
        cluster: FloeCluster, statefulSet: StatefulSet?, problems: [String], conflicts: [ObjectKey] = [], syncError: String? = nil,
        pods: [Pod] = [], now: Date, drain: String? = nil, autoscaling: AutoscalingReport? = nil
    ) {
        self.drain = drain
        self.autoscaling = autoscaling
        self.cluster = cluster
        self.statefulSet = statefulSet
        self.pods = pods
        self.problems = problems
        self.conflicts = conflicts
        self.syncError = syncError
        self.now = now
    }
}

/// Computes a FloeCluster's status. Pure: written once per pass by the shell.
///
/// Conditions, each with `observedGeneration = metadata.generation`:
/// - `Degraded` True when the spec is invalid (`InvalidSpec`, problems in the message), an
///   object we need is owned by someone else (`OwnershipConflict`) or applying failed
///   (`SyncFailed`), or a broker pod is failing (the pod's waiting reason: `CrashLoopBackOff`,
///   `ImagePullBackOff`, `CreateContainerConfigError`, …, every failing pod in the message);
///   otherwise False (`AsExpected`).
/// - `Progressing` True while the StatefulSet is missing, not yet observed at its latest
///   generation, or has brokers not updated or not ready (`Creating`, `RollingUpdate`,
///   `ScalingUp`, `ScalingDown`, `Draining` while the leaving brokers' partitions move); False (`Stable` or the Degraded reason) otherwise.
/// - `Ready` True when every desired broker runs the current spec and is ready (`AllBrokersReady`);
///   with `replicas: 0` it is False (`NoBrokers`): nothing serves clients.
/// A condition's `lastTransitionTime` is kept from the previous status while its `status`
/// value is unchanged. Load and the last scaling decision are carried over untouched.
public enum StatusComputer {
    /// Container states that will not resolve by waiting: the broker crash-loops, its image
    /// cannot be pulled, or its configuration (a Secret key, a ConfigMap) is missing.
    public static let failingReasons: Set<String> = [
        "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError",
        "CreateContainerError", "RunContainerError",
    ]

    /// The broker pods that are failing, as a Degraded reason (the first failing pod's, by name)
    /// and a message naming every failing pod with its reason, restarts and the kubelet's message;
    /// nil when none fails.
    ///
    /// Example: `("CrashLoopBackOff", "Broker pods are failing: events-broker-1: CrashLoopBackOff
    /// after 4 restarts (last exit code 1): back-off restarting failed container")`.
    public static func brokerFailures(_ pods: [Pod]) -> (reason: String, message: String)? {
        var reason: String?
        var parts: [String] = []
        for pod in pods.sorted(by: { ($0.metadata.name ?? "") < ($1.metadata.name ?? "") }) {
            for c in pod.status?.containerStatuses ?? [] {
                guard let waiting = c.state?.waiting, let r = waiting.reason, failingReasons.contains(r) else { continue }
                reason = reason ?? r
                var text = "\(pod.metadata.name ?? "?"): \(r)"
                if let n = c.restartCount, n > 0 { text += " after \(n) restart\(n == 1 ? "" : "s")" }
                if let code = c.lastState?.terminated?.exitCode { text += " (last exit code \(code))" }
                if let m = waiting.message, !m.isEmpty { text += ": " + m }
                parts.append(text)
            }
        }
        guard let reason else { return nil }
        // The CRD caps a condition message at 32768 characters; stay well below it.
        return (reason, String(("Broker pods are failing: " + parts.joined(separator: "; ")).prefix(8192)))
    }

    /// Each pod's state for `status.brokers`, sorted by name; nil when there are none.
    public static func brokerStates(_ pods: [Pod]) -> [BrokerState]? {
        guard !pods.isEmpty else { return nil }
        return pods.sorted(by: { ($0.metadata.name ?? "") < ($1.metadata.name ?? "") }).map { pod in
            let c = pod.status?.containerStatuses?.first
            var state = pod.status?.phase ?? "Pending"
            var message: String?
            if c?.state?.running != nil {
                state = "Running"
            } else if let waiting = c?.state?.waiting, let reason = waiting.reason {
                state = reason
                message = waiting.message
            }
            if let code = c?.lastState?.terminated?.exitCode, state != "Running" {
                message = (message.map { $0 + " " } ?? "") + "(last exit code \(code))"
            }
            return BrokerState(
                name: pod.metadata.name ?? "", ready: pod.status?.isReady ?? false, state: state, restarts: c?.restartCount,
                message: message.map { String($0.prefix(1024)) })
        }
    }

    public static func compute(_ input: StatusInput) -> FloeClusterStatus {
        let cluster = input.cluster
        let generation = cluster.metadata.generation ?? 0
        let previous = cluster.status
        let names = ClusterNames(cluster: cluster.metadata.name ?? "", namespace: cluster.metadata.namespace ?? "")
        let desired = cluster.spec.replicas ?? FloeDefaults.replicas
        let sts = input.statefulSet
        let current = sts?.status?.replicas ?? 0
        let ready = sts?.status?.readyReplicas ?? 0
        let updated = sts?.status?.updatedReplicas ?? 0
        let stsObserved = sts.map { ($0.status?.observedGeneration ?? 0) >= ($0.metadata.generation ?? 0) } ?? false

        var degraded: (Bool, String, String) = (false, "AsExpected", "No problems observed.")
        if !input.problems.isEmpty {
            degraded = (true, "InvalidSpec", "The spec is invalid: " + input.problems.joined(separator: "; "))
        } else if !input.conflicts.isEmpty {
            degraded = (
                true, "OwnershipConflict",
                "Objects exist that this cluster needs but does not own (not adopted): "
                    + input.conflicts.sorted().map(\.description).joined(separator: ", ")
            )
        } else if let e = input.syncError {
            degraded = (true, "SyncFailed", "Applying the rendered objects failed: \(e)")
        } else if let failing = brokerFailures(input.pods) {
            degraded = (true, failing.reason, failing.message)
        }

        var progressing: (Bool, String, String)
        var readyCond: (Bool, String, String)
        if degraded.0 {
            progressing = (false, degraded.1, "Not progressing while degraded.")
            readyCond = (false, degraded.1, "Not ready while degraded.")
            if let sts, input.problems.isEmpty == false || input.conflicts.isEmpty == false || input.syncError != nil {
                // Brokers may still be serving the previous spec; say so.
                let r = sts.status?.readyReplicas ?? 0
                readyCond.2 = "Not ready while degraded; \(r) broker(s) of the previous spec are ready."
            } else {
                readyCond.2 = "\(ready)/\(desired) brokers ready; broker pods are failing (see Degraded)."
            }
        } else if desired == 0 {
            progressing = (current > 0, current > 0 ? "ScalingDown" : "Stable", current > 0 ? "Scaling down to 0 brokers." : "No brokers requested.")
            readyCond = (false, "NoBrokers", "spec.replicas is 0: no broker serves clients.")
        } else if sts == nil {
            progressing = (true, "Creating", "Creating the broker StatefulSet.")
            readyCond = (false, "Creating", "The broker StatefulSet does not exist yet.")
        } else if !stsObserved {
            progressing = (true, "RollingUpdate", "The StatefulSet controller has not yet acted on the latest spec.")
            readyCond = (false, "RollingUpdate", "\(ready)/\(desired) brokers ready; update pending.")
        } else if current < desired {
            progressing = (true, "ScalingUp", "Scaling up from \(current) to \(desired) brokers.")
            readyCond = (false, "ScalingUp", "\(ready)/\(desired) brokers ready.")
        } else if current > desired, let drain = input.drain {
            progressing = (true, "Draining", "Scaling down from \(current) to \(desired) brokers once drained: \(drain).")
            readyCond = (false, "Draining", "\(ready)/\(current) brokers ready; \(current - desired) draining.")
        } else if current > desired {
            progressing = (true, "ScalingDown", "Scaling down from \(current) to \(desired) brokers.")
            readyCond = (false, "ScalingDown", "\(ready)/\(desired) brokers ready.")
        } else if updated < desired || ready < desired {
            progressing = (true, "RollingUpdate", "\(updated)/\(desired) brokers updated, \(ready)/\(desired) ready.")
            readyCond = (false, "RollingUpdate", "\(ready)/\(desired) brokers ready.")
        } else {
            progressing = (false, "Stable", "All \(desired) brokers run the current spec.")
            readyCond = (true, "AllBrokersReady", "\(ready)/\(desired) brokers ready.")
        }

        func condition(_ type: String, _ v: (Bool, String, String)) -> Condition {
            let status = v.0 ? "True" : "False"
            let old = previous?.condition(type)
            let since = (old?.status == status) ? old!.lastTransitionTime : KubeTime.format(input.now)
            return Condition(
                type: type, status: status, observedGeneration: generation, lastTransitionTime: since, reason: v.1, message: v.2)
        }

        let kafkaPort = cluster.spec.listeners?.kafkaPort ?? FloeDefaults.kafkaPort
        return FloeClusterStatus(
            observedGeneration: generation,
            conditions: [condition("Ready", readyCond), condition("Progressing", progressing), condition("Degraded", degraded)],
            replicas: current,
            readyReplicas: ready,
            selector: LabelSelector(matchLabels: names.selectorLabels).queryString,
            bootstrap: names.bootstrapAddress(port: kafkaPort),
            load: input.autoscaling?.load ?? previous?.load,
            lastScaling: input.autoscaling?.status.lastDecision ?? previous?.lastScaling,
            brokers: brokerStates(input.pods),
            autoscaling: input.autoscaling?.status ?? carriedHistory(cluster))
    }
}

extension StatusComputer {
    /// Before the autoscaler's first report (an operator restart), the predictive floor's history
    /// is carried over so that the first status write does not erase what the restart must read.
    static func carriedHistory(_ cluster: FloeCluster) -> AutoscalingStatus? {
        guard let a = cluster.spec.autoscaling, a.isEnabled, a.predictive?.enabled == true,
            let history = cluster.status?.autoscaling?.loadHistory
        else { return nil }
        return AutoscalingStatus(loadHistory: history)
    }
}

/// What the autoscaler hands the status: its view and the cluster-wide sums.
public struct AutoscalingReport: Sendable, Equatable {
    public var status: AutoscalingStatus
    public var load: ClusterLoad

    public init(status: AutoscalingStatus, load: ClusterLoad) {
        self.status = status
        self.load = load
    }
}
