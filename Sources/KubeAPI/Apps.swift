import Foundation

// `apps/v1` StatefulSet, `policy/v1` PodDisruptionBudget, `coordination.k8s.io/v1` Lease and
// `autoscaling/v1` Scale.

/// `apps/v1` StatefulSet.
public struct StatefulSet: KubeObject {
    public static let apiVersion = "apps/v1"
    public static let kind = "StatefulSet"
    public static let resource = "statefulsets"
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: StatefulSetSpec?
    public var status: StatefulSetStatus?

    public init(metadata: ObjectMeta, spec: StatefulSetSpec? = nil, status: StatefulSetStatus? = nil) {
        self.apiVersion = Self.apiVersion
        self.kind = Self.kind
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }
}

public struct StatefulSetSpec: Codable, Sendable, Equatable {
    public var replicas: Int32?
    public var serviceName: String?
    public var selector: LabelSelector
    /// `OrderedReady` or `Parallel`.
    public var podManagementPolicy: String?
    public var updateStrategy: StatefulSetUpdateStrategy?
    public var template: PodTemplateSpec
    public var volumeClaimTemplates: [PersistentVolumeClaim]?
    public var minReadySeconds: Int32?
    public var revisionHistoryLimit: Int32?

    public init(
        replicas: Int32? = nil, serviceName: String? = nil, selector: LabelSelector, podManagementPolicy: String? = nil,
        updateStrategy: StatefulSetUpdateStrategy? = nil, template: PodTemplateSpec, volumeClaimTemplates: [PersistentVolumeClaim]? = nil,
        minReadySeconds: Int32? = nil, revisionHistoryLimit: Int32? = nil
    ) {
        self.replicas = replicas
        self.serviceName = serviceName
        self.selector = selector
        self.podManagementPolicy = podManagementPolicy
        self.updateStrategy = updateStrategy
        self.template = template
        self.volumeClaimTemplates = volumeClaimTemplates
        self.minReadySeconds = minReadySeconds
        self.revisionHistoryLimit = revisionHistoryLimit
    }
}

public struct StatefulSetUpdateStrategy: Codable, Sendable, Equatable {
    /// `RollingUpdate` or `OnDelete`.
    public var type: String?
    public var rollingUpdate: RollingUpdateStatefulSetStrategy?

    public init(type: String? = nil, rollingUpdate: RollingUpdateStatefulSetStrategy? = nil) {
        self.type = type
        self.rollingUpdate = rollingUpdate
    }
}

public struct RollingUpdateStatefulSetStrategy: Codable, Sendable, Equatable {
    public var partition: Int32?
    public var maxUnavailable: IntOrString?

    public init(partition: Int32? = nil, maxUnavailable: IntOrString? = nil) {
        self.partition = partition
        self.maxUnavailable = maxUnavailable
    }
}

public struct StatefulSetStatus: Codable, Sendable, Equatable {
    public var observedGeneration: Int64?
    public var replicas: Int32?
    public var readyReplicas: Int32?
    public var currentReplicas: Int32?
    public var updatedReplicas: Int32?
    public var availableReplicas: Int32?
    public var currentRevision: String?
    public var updateRevision: String?

    public init(
        observedGeneration: Int64? = nil, replicas: Int32? = nil, readyReplicas: Int32? = nil, currentReplicas: Int32? = nil,
        updatedReplicas: Int32? = nil, availableReplicas: Int32? = nil, currentRevision: String? = nil, updateRevision: String? = nil
    ) {
        self.observedGeneration = observedGeneration
        self.replicas = replicas
        self.readyReplicas = readyReplicas
        self.currentReplicas = currentReplicas
        self.updatedReplicas = updatedReplicas
        self.availableReplicas = availableReplicas
        self.currentRevision = currentRevision
        self.updateRevision = updateRevision
    }
}

/// `policy/v1` PodDisruptionBudget.
public struct PodDisruptionBudget: KubeObject {
    public static let apiVersion = "policy/v1"
    public static let kind = "PodDisruptionBudget"
    public static let resource = "poddisruptionbudgets"
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: PodDisruptionBudgetSpec?
    public var status: PodDisruptionBudgetStatus?

    public init(metadata: ObjectMeta, spec: PodDisruptionBudgetSpec? = nil, status: PodDisruptionBudgetStatus? = nil) {
        self.apiVersion = Self.apiVersion
        self.kind = Self.kind
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }
}

public struct PodDisruptionBudgetSpec: Codable, Sendable, Equatable {
    public var maxUnavailable: IntOrString?
    public var minAvailable: IntOrString?
    public var selector: LabelSelector?

    public init(maxUnavailable: IntOrString? = nil, minAvailable: IntOrString? = nil, selector: LabelSelector? = nil) {
        self.maxUnavailable = maxUnavailable
        self.minAvailable = minAvailable
        self.selector = selector
    }
}

public struct PodDisruptionBudgetStatus: Codable, Sendable, Equatable {
    public var currentHealthy: Int32?
    public var desiredHealthy: Int32?
    public var disruptionsAllowed: Int32?
    public var expectedPods: Int32?

    public init(currentHealthy: Int32? = nil, desiredHealthy: Int32? = nil, disruptionsAllowed: Int32? = nil, expectedPods: Int32? = nil) {
        self.currentHealthy = currentHealthy
        self.desiredHealthy = desiredHealthy
        self.disruptionsAllowed = disruptionsAllowed
        self.expectedPods = expectedPods
    }
}

/// `coordination.k8s.io/v1` Lease, used for leader election. Times are RFC 3339 with
/// microseconds (`MicroTime`).
public struct Lease: KubeObject {
    public static let apiVersion = "coordination.k8s.io/v1"
    public static let kind = "Lease"
    public static let resource = "leases"
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: LeaseSpec?

    public init(metadata: ObjectMeta, spec: LeaseSpec? = nil) {
        self.apiVersion = Self.apiVersion
        self.kind = Self.kind
        self.metadata = metadata
        self.spec = spec
    }
}

public struct LeaseSpec: Codable, Sendable, Equatable {
    public var holderIdentity: String?
    public var leaseDurationSeconds: Int32?
    public var acquireTime: String?
    public var renewTime: String?
    public var leaseTransitions: Int32?

    public init(holderIdentity: String? = nil, leaseDurationSeconds: Int32? = nil, acquireTime: String? = nil, renewTime: String? = nil, leaseTransitions: Int32? = nil) {
        self.holderIdentity = holderIdentity
        self.leaseDurationSeconds = leaseDurationSeconds
        self.acquireTime = acquireTime
        self.renewTime = renewTime
        self.leaseTransitions = leaseTransitions
    }
}

/// `autoscaling/v1` Scale: the body of every `/scale` subresource.
public struct Scale: KubeObject {
    public static let apiVersion = "autoscaling/v1"
    public static let kind = "Scale"
    public static let resource = "scale"
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: ScaleSpec?
    public var status: ScaleStatus?

    public init(metadata: ObjectMeta, spec: ScaleSpec? = nil, status: ScaleStatus? = nil) {
        self.apiVersion = Self.apiVersion
        self.kind = Self.kind
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }
}

public struct ScaleSpec: Codable, Sendable, Equatable {
    public var replicas: Int32?

    public init(replicas: Int32? = nil) { self.replicas = replicas }
}

public struct ScaleStatus: Codable, Sendable, Equatable {
    public var replicas: Int32
    public var selector: String?

    public init(replicas: Int32, selector: String? = nil) {
        self.replicas = replicas
        self.selector = selector
    }
}
