import Foundation

// Core (`v1`) kinds and the pod template pieces the operator renders. Every optional field is
// omitted from the JSON when nil; unknown fields sent by the server are ignored.

/// `v1` ConfigMap.
public struct ConfigMap: KubeObject {
    public static let apiVersion = "v1"
    public static let kind = "ConfigMap"
    public static let resource = "configmaps"
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var data: [String: String]?
    public var immutable: Bool?

    public init(metadata: ObjectMeta, data: [String: String]? = nil, immutable: Bool? = nil) {
        self.apiVersion = Self.apiVersion
        self.kind = Self.kind
        self.metadata = metadata
        self.data = data
        self.immutable = immutable
    }
}

/// `v1` Secret: only read, for its keys (values are base64 in `data`).
public struct Secret: KubeObject {
    public static let apiVersion = "v1"
    public static let kind = "Secret"
    public static let resource = "secrets"
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var data: [String: String]?
    public var stringData: [String: String]?
    public var type: String?

    public init(metadata: ObjectMeta, data: [String: String]? = nil, stringData: [String: String]? = nil, type: String? = nil) {
        self.apiVersion = Self.apiVersion
        self.kind = Self.kind
        self.metadata = metadata
        self.data = data
        self.stringData = stringData
        self.type = type
    }
}

/// `v1` Service. A headless service has `clusterIP: "None"`.
public struct Service: KubeObject {
    public static let apiVersion = "v1"
    public static let kind = "Service"
    public static let resource = "services"
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: ServiceSpec?

    public init(metadata: ObjectMeta, spec: ServiceSpec? = nil) {
        self.apiVersion = Self.apiVersion
        self.kind = Self.kind
        self.metadata = metadata
        self.spec = spec
    }
}

public struct ServiceSpec: Codable, Sendable, Equatable {
    /// `ClusterIP`, `NodePort`, `LoadBalancer`.
    public var type: String?
    public var clusterIP: String?
    public var selector: [String: String]?
    public var ports: [ServicePort]?
    public var publishNotReadyAddresses: Bool?

    public init(type: String? = nil, clusterIP: String? = nil, selector: [String: String]? = nil, ports: [ServicePort]? = nil, publishNotReadyAddresses: Bool? = nil) {
        self.type = type
        self.clusterIP = clusterIP
        self.selector = selector
        self.ports = ports
        self.publishNotReadyAddresses = publishNotReadyAddresses
    }
}

public struct ServicePort: Codable, Sendable, Equatable {
    public var name: String?
    public var port: Int32
    public var targetPort: IntOrString?
    public var `protocol`: String?
    public var appProtocol: String?
    /// The port on every node (NodePort and LoadBalancer Services; nil: the API server picks one).
    public var nodePort: Int32?

    public init(name: String? = nil, port: Int32, targetPort: IntOrString? = nil, protocol: String? = nil, appProtocol: String? = nil,
                nodePort: Int32? = nil) {
        self.name = name
        self.port = port
        self.targetPort = targetPort
        self.protocol = `protocol`
        self.appProtocol = appProtocol
        self.nodePort = nodePort
    }
}

/// `v1` Pod, read for readiness only.
public struct Pod: KubeObject {
    public static let apiVersion = "v1"
    public static let kind = "Pod"
    public static let resource = "pods"
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: PodSpec?
    public var status: PodStatus?

    public init(metadata: ObjectMeta, spec: PodSpec? = nil, status: PodStatus? = nil) {
        self.apiVersion = Self.apiVersion
        self.kind = Self.kind
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }
}

public struct PodStatus: Codable, Sendable, Equatable {
    public var phase: String?
    public var podIP: String?
    public var conditions: [PodCondition]?
    public var containerStatuses: [ContainerStatus]?

    public init(phase: String? = nil, podIP: String? = nil, conditions: [PodCondition]? = nil, containerStatuses: [ContainerStatus]? = nil) {
        self.phase = phase
        self.podIP = podIP
        self.conditions = conditions
        self.containerStatuses = containerStatuses
    }

    /// True when the `Ready` condition is `"True"`.
    public var isReady: Bool { conditions?.contains { $0.type == "Ready" && $0.status == "True" } ?? false }
}

/// One container's state as the kubelet reports it (the fields the operator reads).
public struct ContainerStatus: Codable, Sendable, Equatable {
    public var name: String
    public var ready: Bool?
    public var restartCount: Int32?
    public var state: ContainerState?
    public var lastState: ContainerState?

    public init(name: String, ready: Bool? = nil, restartCount: Int32? = nil, state: ContainerState? = nil, lastState: ContainerState? = nil) {
        self.name = name
        self.ready = ready
        self.restartCount = restartCount
        self.state = state
        self.lastState = lastState
    }
}

public struct ContainerState: Codable, Sendable, Equatable {
    public struct Waiting: Codable, Sendable, Equatable {
        public var reason: String?
        public var message: String?
        public init(reason: String? = nil, message: String? = nil) {
            self.reason = reason
            self.message = message
        }
    }

    public struct Terminated: Codable, Sendable, Equatable {
        public var exitCode: Int32?
        public var reason: String?
        public var message: String?
        public init(exitCode: Int32? = nil, reason: String? = nil, message: String? = nil) {
            self.exitCode = exitCode
            self.reason = reason
            self.message = message
        }
    }

    public var waiting: Waiting?
    /// `running` carries only `startedAt`, kept opaque.
    public var running: JSONValue?
    public var terminated: Terminated?

    public init(waiting: Waiting? = nil, running: JSONValue? = nil, terminated: Terminated? = nil) {
        self.waiting = waiting
        self.running = running
        self.terminated = terminated
    }
}

public struct PodCondition: Codable, Sendable, Equatable {
    public var type: String
    public var status: String

    public init(type: String, status: String) {
        self.type = type
        self.status = status
    }
}

public struct PodTemplateSpec: Codable, Sendable, Equatable {
    public var metadata: ObjectMeta?
    public var spec: PodSpec?

    public init(metadata: ObjectMeta? = nil, spec: PodSpec? = nil) {
        self.metadata = metadata
        self.spec = spec
    }
}

/// `v1.LocalObjectReference`: an object in the same namespace, by name.
public struct LocalObjectReference: Codable, Sendable, Equatable {
    public var name: String
    public init(name: String) { self.name = name }
}

public struct PodSpec: Codable, Sendable, Equatable {
    public var containers: [Container]
    public var initContainers: [Container]?
    public var volumes: [Volume]?
    public var serviceAccountName: String?
    public var automountServiceAccountToken: Bool?
    public var enableServiceLinks: Bool?
    public var securityContext: PodSecurityContext?
    public var terminationGracePeriodSeconds: Int64?
    public var nodeSelector: [String: String]?
    public var tolerations: [Toleration]?
    /// `v1.Affinity`, carried opaquely: the operator passes the user's value through untouched.
    public var affinity: JSONValue?
    public var priorityClassName: String?
    public var imagePullSecrets: [LocalObjectReference]?
    /// `[]v1.TopologySpreadConstraint`, carried opaquely.
    public var topologySpreadConstraints: JSONValue?

    public init(
        containers: [Container], initContainers: [Container]? = nil, volumes: [Volume]? = nil,
        serviceAccountName: String? = nil, automountServiceAccountToken: Bool? = nil, enableServiceLinks: Bool? = nil,
        securityContext: PodSecurityContext? = nil, terminationGracePeriodSeconds: Int64? = nil,
        nodeSelector: [String: String]? = nil, tolerations: [Toleration]? = nil, affinity: JSONValue? = nil,
        priorityClassName: String? = nil, imagePullSecrets: [LocalObjectReference]? = nil, topologySpreadConstraints: JSONValue? = nil
    ) {
        self.imagePullSecrets = imagePullSecrets
        self.topologySpreadConstraints = topologySpreadConstraints
        self.containers = containers
        self.initContainers = initContainers
        self.volumes = volumes
        self.serviceAccountName = serviceAccountName
        self.automountServiceAccountToken = automountServiceAccountToken
        self.enableServiceLinks = enableServiceLinks
        self.securityContext = securityContext
        self.terminationGracePeriodSeconds = terminationGracePeriodSeconds
        self.nodeSelector = nodeSelector
        self.tolerations = tolerations
        self.affinity = affinity
        self.priorityClassName = priorityClassName
    }
}

public struct Toleration: Codable, Sendable, Equatable {
    public var key: String?
    /// `Exists` or `Equal`.
    public var `operator`: String?
    public var value: String?
    /// `NoSchedule`, `PreferNoSchedule`, `NoExecute`.
    public var effect: String?
    public var tolerationSeconds: Int64?

    public init(key: String? = nil, operator: String? = nil, value: String? = nil, effect: String? = nil, tolerationSeconds: Int64? = nil) {
        self.key = key
        self.operator = `operator`
        self.value = value
        self.effect = effect
        self.tolerationSeconds = tolerationSeconds
    }
}

public struct PodSecurityContext: Codable, Sendable, Equatable {
    public var runAsNonRoot: Bool?
    public var runAsUser: Int64?
    public var runAsGroup: Int64?
    public var fsGroup: Int64?
    public var seccompProfile: SeccompProfile?

    public init(runAsNonRoot: Bool? = nil, runAsUser: Int64? = nil, runAsGroup: Int64? = nil, fsGroup: Int64? = nil, seccompProfile: SeccompProfile? = nil) {
        self.runAsNonRoot = runAsNonRoot
        self.runAsUser = runAsUser
        self.runAsGroup = runAsGroup
        self.fsGroup = fsGroup
        self.seccompProfile = seccompProfile
    }
}

public struct SeccompProfile: Codable, Sendable, Equatable {
    /// `RuntimeDefault`, `Localhost`, `Unconfined`.
    public var type: String

    public init(type: String) { self.type = type }
}

public struct Container: Codable, Sendable, Equatable {
    public var name: String
    public var image: String?
    public var imagePullPolicy: String?
    public var command: [String]?
    public var args: [String]?
    public var env: [EnvVar]?
    public var ports: [ContainerPort]?
    public var resources: ResourceRequirements?
    public var readinessProbe: Probe?
    public var livenessProbe: Probe?
    public var startupProbe: Probe?
    public var lifecycle: Lifecycle?
    public var securityContext: SecurityContext?
    public var volumeMounts: [VolumeMount]?

    public init(
        name: String, image: String? = nil, imagePullPolicy: String? = nil, command: [String]? = nil, args: [String]? = nil,
        env: [EnvVar]? = nil, ports: [ContainerPort]? = nil, resources: ResourceRequirements? = nil,
        readinessProbe: Probe? = nil, livenessProbe: Probe? = nil, startupProbe: Probe? = nil, lifecycle: Lifecycle? = nil,
        securityContext: SecurityContext? = nil, volumeMounts: [VolumeMount]? = nil
    ) {
        self.name = name
        self.image = image
        self.imagePullPolicy = imagePullPolicy
        self.command = command
        self.args = args
        self.env = env
        self.ports = ports
        self.resources = resources
        self.readinessProbe = readinessProbe
        self.livenessProbe = livenessProbe
        self.startupProbe = startupProbe
        self.lifecycle = lifecycle
        self.securityContext = securityContext
        self.volumeMounts = volumeMounts
    }
}

public struct EnvVar: Codable, Sendable, Equatable {
    public var name: String
    public var value: String?
    public var valueFrom: EnvVarSource?

    public init(name: String, value: String? = nil, valueFrom: EnvVarSource? = nil) {
        self.name = name
        self.value = value
        self.valueFrom = valueFrom
    }
}

public struct EnvVarSource: Codable, Sendable, Equatable {
    public var secretKeyRef: KeySelector?
    public var configMapKeyRef: KeySelector?
    public var fieldRef: ObjectFieldSelector?

    public init(secretKeyRef: KeySelector? = nil, configMapKeyRef: KeySelector? = nil, fieldRef: ObjectFieldSelector? = nil) {
        self.secretKeyRef = secretKeyRef
        self.configMapKeyRef = configMapKeyRef
        self.fieldRef = fieldRef
    }
}

/// `SecretKeySelector` / `ConfigMapKeySelector`: one key of a named object.
public struct KeySelector: Codable, Sendable, Equatable {
    public var name: String
    public var key: String
    public var optional: Bool?

    public init(name: String, key: String, optional: Bool? = nil) {
        self.name = name
        self.key = key
        self.optional = optional
    }
}

public struct ObjectFieldSelector: Codable, Sendable, Equatable {
    public var fieldPath: String
    public var apiVersion: String?

    public init(fieldPath: String, apiVersion: String? = nil) {
        self.fieldPath = fieldPath
        self.apiVersion = apiVersion
    }
}

public struct ContainerPort: Codable, Sendable, Equatable {
    public var name: String?
    public var containerPort: Int32
    public var `protocol`: String?

    public init(name: String? = nil, containerPort: Int32, protocol: String? = nil) {
        self.name = name
        self.containerPort = containerPort
        self.protocol = `protocol`
    }
}

/// Requests and limits as quantity strings (`"500m"`, `"1Gi"`).
public struct ResourceRequirements: Codable, Sendable, Equatable {
    public var limits: [String: String]?
    public var requests: [String: String]?

    public init(limits: [String: String]? = nil, requests: [String: String]? = nil) {
        self.limits = limits
        self.requests = requests
    }
}

public struct Probe: Codable, Sendable, Equatable {
    public var httpGet: HTTPGetAction?
    public var exec: ExecAction?
    public var initialDelaySeconds: Int32?
    public var periodSeconds: Int32?
    public var timeoutSeconds: Int32?
    public var successThreshold: Int32?
    public var failureThreshold: Int32?

    public init(
        httpGet: HTTPGetAction? = nil, exec: ExecAction? = nil, initialDelaySeconds: Int32? = nil, periodSeconds: Int32? = nil,
        timeoutSeconds: Int32? = nil, successThreshold: Int32? = nil, failureThreshold: Int32? = nil
    ) {
        self.httpGet = httpGet
        self.exec = exec
        self.initialDelaySeconds = initialDelaySeconds
        self.periodSeconds = periodSeconds
        self.timeoutSeconds = timeoutSeconds
        self.successThreshold = successThreshold
        self.failureThreshold = failureThreshold
    }
}

public struct HTTPGetAction: Codable, Sendable, Equatable {
    public var path: String?
    public var port: IntOrString
    public var scheme: String?

    public init(path: String? = nil, port: IntOrString, scheme: String? = nil) {
        self.path = path
        self.port = port
        self.scheme = scheme
    }
}

public struct ExecAction: Codable, Sendable, Equatable {
    public var command: [String]?

    public init(command: [String]? = nil) { self.command = command }
}

public struct Lifecycle: Codable, Sendable, Equatable {
    public var preStop: LifecycleHandler?
    public var postStart: LifecycleHandler?

    public init(preStop: LifecycleHandler? = nil, postStart: LifecycleHandler? = nil) {
        self.preStop = preStop
        self.postStart = postStart
    }
}

public struct LifecycleHandler: Codable, Sendable, Equatable {
    public var httpGet: HTTPGetAction?
    public var exec: ExecAction?

    public init(httpGet: HTTPGetAction? = nil, exec: ExecAction? = nil) {
        self.httpGet = httpGet
        self.exec = exec
    }
}

public struct SecurityContext: Codable, Sendable, Equatable {
    public var runAsNonRoot: Bool?
    public var runAsUser: Int64?
    public var readOnlyRootFilesystem: Bool?
    public var allowPrivilegeEscalation: Bool?
    public var capabilities: Capabilities?
    public var seccompProfile: SeccompProfile?

    public init(
        runAsNonRoot: Bool? = nil, runAsUser: Int64? = nil, readOnlyRootFilesystem: Bool? = nil,
        allowPrivilegeEscalation: Bool? = nil, capabilities: Capabilities? = nil, seccompProfile: SeccompProfile? = nil
    ) {
        self.runAsNonRoot = runAsNonRoot
        self.runAsUser = runAsUser
        self.readOnlyRootFilesystem = readOnlyRootFilesystem
        self.allowPrivilegeEscalation = allowPrivilegeEscalation
        self.capabilities = capabilities
        self.seccompProfile = seccompProfile
    }
}

public struct Capabilities: Codable, Sendable, Equatable {
    public var add: [String]?
    public var drop: [String]?

    public init(add: [String]? = nil, drop: [String]? = nil) {
        self.add = add
        self.drop = drop
    }
}

public struct VolumeMount: Codable, Sendable, Equatable {
    public var name: String
    public var mountPath: String
    public var readOnly: Bool?
    public var subPath: String?

    public init(name: String, mountPath: String, readOnly: Bool? = nil, subPath: String? = nil) {
        self.name = name
        self.mountPath = mountPath
        self.readOnly = readOnly
        self.subPath = subPath
    }
}

/// A pod volume; exactly one source is set.
public struct Volume: Codable, Sendable, Equatable {
    public var name: String
    public var emptyDir: EmptyDirVolumeSource?
    public var secret: SecretVolumeSource?
    public var configMap: ConfigMapVolumeSource?

    public init(name: String, emptyDir: EmptyDirVolumeSource? = nil, secret: SecretVolumeSource? = nil, configMap: ConfigMapVolumeSource? = nil) {
        self.name = name
        self.emptyDir = emptyDir
        self.secret = secret
        self.configMap = configMap
    }
}

public struct EmptyDirVolumeSource: Codable, Sendable, Equatable {
    public var medium: String?
    public var sizeLimit: String?

    public init(medium: String? = nil, sizeLimit: String? = nil) {
        self.medium = medium
        self.sizeLimit = sizeLimit
    }
}

public struct SecretVolumeSource: Codable, Sendable, Equatable {
    public var secretName: String
    public var defaultMode: Int32?
    public var optional: Bool?

    public init(secretName: String, defaultMode: Int32? = nil, optional: Bool? = nil) {
        self.secretName = secretName
        self.defaultMode = defaultMode
        self.optional = optional
    }
}

public struct ConfigMapVolumeSource: Codable, Sendable, Equatable {
    public var name: String
    public var defaultMode: Int32?
    public var optional: Bool?

    public init(name: String, defaultMode: Int32? = nil, optional: Bool? = nil) {
        self.name = name
        self.defaultMode = defaultMode
        self.optional = optional
    }
}

/// A claim template inside a StatefulSet (`v1` PersistentVolumeClaim, spec only).
public struct PersistentVolumeClaim: Codable, Sendable, Equatable {
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: PersistentVolumeClaimSpec

    public init(metadata: ObjectMeta, spec: PersistentVolumeClaimSpec) {
        self.apiVersion = "v1"
        self.kind = "PersistentVolumeClaim"
        self.metadata = metadata
        self.spec = spec
    }
}

public struct PersistentVolumeClaimSpec: Codable, Sendable, Equatable {
    public var accessModes: [String]?
    public var storageClassName: String?
    public var resources: ResourceRequirements?

    public init(accessModes: [String]? = nil, storageClassName: String? = nil, resources: ResourceRequirements? = nil) {
        self.accessModes = accessModes
        self.storageClassName = storageClassName
        self.resources = resources
    }
}

/// `v1` Event (the core kind, which every cluster version serves).
public struct Event: KubeObject {
    public static let apiVersion = "v1"
    public static let kind = "Event"
    public static let resource = "events"
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var involvedObject: ObjectReference
    public var reason: String?
    public var message: String?
    /// `Normal` or `Warning`.
    public var type: String?
    public var source: EventSource?
    public var firstTimestamp: String?
    public var lastTimestamp: String?
    public var count: Int32?
    public var reportingComponent: String?
    public var reportingInstance: String?

    public init(
        metadata: ObjectMeta, involvedObject: ObjectReference, reason: String? = nil, message: String? = nil, type: String? = nil,
        source: EventSource? = nil, firstTimestamp: String? = nil, lastTimestamp: String? = nil, count: Int32? = nil,
        reportingComponent: String? = nil, reportingInstance: String? = nil
    ) {
        self.apiVersion = Self.apiVersion
        self.kind = Self.kind
        self.metadata = metadata
        self.involvedObject = involvedObject
        self.reason = reason
        self.message = message
        self.type = type
        self.source = source
        self.firstTimestamp = firstTimestamp
        self.lastTimestamp = lastTimestamp
        self.count = count
        self.reportingComponent = reportingComponent
        self.reportingInstance = reportingInstance
    }
}

public struct ObjectReference: Codable, Sendable, Equatable {
    public var apiVersion: String?
    public var kind: String?
    public var name: String?
    public var namespace: String?
    public var uid: String?
    public var resourceVersion: String?

    public init(apiVersion: String? = nil, kind: String? = nil, name: String? = nil, namespace: String? = nil, uid: String? = nil, resourceVersion: String? = nil) {
        self.apiVersion = apiVersion
        self.kind = kind
        self.name = name
        self.namespace = namespace
        self.uid = uid
        self.resourceVersion = resourceVersion
    }
}

public struct EventSource: Codable, Sendable, Equatable {
    public var component: String?
    public var host: String?

    public init(component: String? = nil, host: String? = nil) {
        self.component = component
        self.host = host
    }
}
