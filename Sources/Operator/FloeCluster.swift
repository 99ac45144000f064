import KubeAPI
import Support

/// Defaults applied both by the API server (they are written into the CRD schema) and by the
/// renderer when a field is absent (a manifest rendered offline has not been defaulted).
public enum FloeDefaults {
    public static let image = "floe:\(FloeVersion.string)"
    public static let imagePullPolicy = "IfNotPresent"
    public static let replicas: Int32 = 3
    public static let region = "us-east-1"
    public static let accessKeyIdKey = "AWS_ACCESS_KEY_ID"
    public static let secretAccessKeyKey = "AWS_SECRET_ACCESS_KEY"
    public static let walKind = "object"
    public static let kafkaPort: Int32 = 9092
    public static let httpPort: Int32 = 8080
    public static let serviceType = "ClusterIP"
    public static let externalType = "NodePort"
    public static let externalPort: Int32 = 9094
    public static let externalNodePortBase: Int32 = 31090
    public static let terminationGracePeriodSeconds: Int64 = 120
    public static let minBrokers: Int32 = 1
    public static let maxBrokers: Int32 = 10
    public static let tolerancePercent: Int32 = 10
    public static let scaleUpWindowSeconds: Int32 = 0
    public static let scaleDownWindowSeconds: Int32 = 300
    public static let scaleUpMaxStep: Int32 = 4
    public static let scaleDownMaxStep: Int32 = 1
    public static let balancingIntervalSeconds: Int32 = 300
    public static let maxMovesPerRound: Int32 = 10
    public static let balancingTolerancePercent: Int32 = 20
    public static let moveCooldownSeconds: Int32 = 120
    public static let scheduleLeadTimeSeconds: Int32 = 300
    public static let predictiveHistoryDays: Int32 = 7
    public static let predictiveLookaheadMinutes: Int32 = 60
    public static let predictiveMarginPercent: Int32 = 20
}

/// A Floe cluster: `floe.dev/v1alpha1`, kind `FloeCluster`, plural `floeclusters`, short name
/// `floe`. The operator owns everything it renders from it; `spec.replicas` is the scale
/// subresource's replica count (`kubectl scale floe/NAME --replicas=5`).
public struct FloeCluster: KubeObject {
    public static let apiVersion = "floe.dev/v1alpha1"
    public static let kind = "FloeCluster"
    public static let resource = "floeclusters"
    public static let shortName = "floe"
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ObjectMeta
    public var spec: FloeClusterSpec
    public var status: FloeClusterStatus?

    public init(metadata: ObjectMeta, spec: FloeClusterSpec, status: FloeClusterStatus? = nil) {
        self.apiVersion = Self.apiVersion
        self.kind = Self.kind
        self.metadata = metadata
        self.spec = spec
        self.status = status
    }
}

public struct FloeClusterSpec: Codable, Sendable, Equatable {
    public var image: String?
    public var imagePullPolicy: String?
    public var replicas: Int32?
    public var resources: ResourceRequirements?
    public var storage: StorageSpec
    public var listeners: ListenersSpec?
    /// Broker configuration, written to the broker's properties file as given (keys the
    /// operator sets itself are rejected by validation).
    public var config: [String: String]?
    public var podTemplate: PodTemplateOverrides?
    public var terminationGracePeriodSeconds: Int64?
    public var autoscaling: AutoscalingSpec?
    public var balancing: BalancingSpec?
    /// How many brokers voluntary disruptions (node drains) may take down at once.
    public var disruptionBudget: DisruptionBudgetSpec?
    /// SASL users, each with its password in a Secret the user names (docs/operator.md, Security).
    public var users: [UserSpec]?
    /// Who may do what: `acl` turns Kafka ACLs on (`authorizer=acl`), with super users.
    public var authorization: AuthorizationSpec?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case image, imagePullPolicy, replicas, resources, storage, listeners, config, podTemplate
        case terminationGracePeriodSeconds, autoscaling, balancing, disruptionBudget, users, authorization
    }

    public init(
        image: String? = nil, imagePullPolicy: String? = nil, replicas: Int32? = nil, resources: ResourceRequirements? = nil,
        storage: StorageSpec, listeners: ListenersSpec? = nil, config: [String: String]? = nil,
        podTemplate: PodTemplateOverrides? = nil, terminationGracePeriodSeconds: Int64? = nil,
        autoscaling: AutoscalingSpec? = nil, balancing: BalancingSpec? = nil, disruptionBudget: DisruptionBudgetSpec? = nil,
        users: [UserSpec]? = nil, authorization: AuthorizationSpec? = nil
    ) {
        self.users = users
        self.authorization = authorization
        self.disruptionBudget = disruptionBudget
        self.image = image
        self.imagePullPolicy = imagePullPolicy
        self.replicas = replicas
        self.resources = resources
        self.storage = storage
        self.listeners = listeners
        self.config = config
        self.podTemplate = podTemplate
        self.terminationGracePeriodSeconds = terminationGracePeriodSeconds
        self.autoscaling = autoscaling
        self.balancing = balancing
    }
}

/// The PodDisruptionBudget of the brokers.
public struct DisruptionBudgetSpec: Codable, Sendable, Equatable {
    /// Brokers a voluntary disruption may take down at once (default 1).
    public var maxUnavailable: Int32?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case maxUnavailable
    }

    public init(maxUnavailable: Int32? = nil) { self.maxUnavailable = maxUnavailable }
}

/// Where the brokers keep everything. `bucket` is `s3://bucket[/prefix]` or `file:///path`.
public struct StorageSpec: Codable, Sendable, Equatable {
    public var bucket: String
    public var endpoint: String?
    public var region: String?
    public var pathStyle: Bool?
    public var credentials: StorageCredentials?
    /// Explicitly unauthenticated S3 access (a public or test bucket); exclusive with `credentials`.
    public var anonymous: Bool?
    public var wal: WALSpec?
    /// A Secret whose `ca.crt` is the CA bundle that signed an HTTPS `endpoint`'s certificate (a
    /// private object store); mounted into the brokers and passed as `ca_file=` in the storage URL.
    public var caSecretName: String?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case bucket, endpoint, region, pathStyle, credentials, anonymous, wal, caSecretName
    }

    public init(
        bucket: String, endpoint: String? = nil, region: String? = nil, pathStyle: Bool? = nil,
        credentials: StorageCredentials? = nil, anonymous: Bool? = nil, wal: WALSpec? = nil, caSecretName: String? = nil
    ) {
        self.caSecretName = caSecretName
        self.bucket = bucket
        self.endpoint = endpoint
        self.region = region
        self.pathStyle = pathStyle
        self.credentials = credentials
        self.anonymous = anonymous
        self.wal = wal
    }
}

/// S3 credentials by Secret reference (same namespace as the cluster); values never appear in
/// the FloeCluster or in rendered objects, only `secretKeyRef`s.
public struct StorageCredentials: Codable, Sendable, Equatable {
    public var secretName: String
    public var accessKeyIdKey: String?
    public var secretAccessKeyKey: String?
    public var sessionTokenKey: String?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case secretName, accessKeyIdKey, secretAccessKeyKey, sessionTokenKey
    }

    public init(secretName: String, accessKeyIdKey: String? = nil, secretAccessKeyKey: String? = nil, sessionTokenKey: String? = nil) {
        self.secretName = secretName
        self.accessKeyIdKey = accessKeyIdKey
        self.secretAccessKeyKey = secretAccessKeyKey
        self.sessionTokenKey = sessionTokenKey
    }
}

/// The brokers' write-ahead log: `object` (in the bucket; brokers stay stateless) or `file`
/// (on a per-broker volume of `volumeSize`, the only case with volume claims).
public struct WALSpec: Codable, Sendable, Equatable {
    public var kind: String?
    public var volumeSize: String?
    public var storageClassName: String?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case kind, volumeSize, storageClassName
    }

    public init(kind: String? = nil, volumeSize: String? = nil, storageClassName: String? = nil) {
        self.kind = kind
        self.volumeSize = volumeSize
        self.storageClassName = storageClassName
    }
}

public struct ListenersSpec: Codable, Sendable, Equatable {
    public var kafkaPort: Int32?
    public var httpPort: Int32?
    /// Type of the bootstrap Service: `ClusterIP`, `NodePort` or `LoadBalancer`.
    public var serviceType: String?
    /// A second listener for clients outside the cluster, with its own advertised addresses.
    public var external: ExternalListenerSpec?
    /// TLS on the internal listener (the one the brokers, the operator and in-cluster clients use).
    public var tls: ListenerTLSSpec?
    /// How clients of the internal listener authenticate.
    public var authentication: ListenerAuthenticationSpec?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case kafkaPort, httpPort, serviceType, external, tls, authentication
    }

    public init(kafkaPort: Int32? = nil, httpPort: Int32? = nil, serviceType: String? = nil, external: ExternalListenerSpec? = nil,
                tls: ListenerTLSSpec? = nil, authentication: ListenerAuthenticationSpec? = nil) {
        self.tls = tls
        self.authentication = authentication
        self.kafkaPort = kafkaPort
        self.httpPort = httpPort
        self.serviceType = serviceType
        self.external = external
    }
}

/// The external listener: each broker gets a Service of its own (`<cluster>-broker-<n>-external`)
/// and advertises, to clients connected on this listener, an address those clients can reach.
///
/// - `NodePort`: broker n is `advertisedHost:(nodePortBase + n)`; `advertisedHost` defaults to
///   `$(HOST_IP)`, the IP of the node the pod runs on.
/// - `LoadBalancer`: broker n is `advertisedHost:port`; `advertisedHost` is required (a DNS name
///   pointing at that broker's load balancer, e.g. `broker-{node}.kafka.example.com`).
/// In `advertisedHost`, `{node}` is the broker's ordinal and `$(POD_IP)`/`$(HOST_IP)` the pod's
/// and its node's IP.
public struct ExternalListenerSpec: Codable, Sendable, Equatable {
    /// `NodePort` (default) or `LoadBalancer`.
    public var type: String?
    /// The container (and LoadBalancer) port of the external listener.
    public var port: Int32?
    public var advertisedHost: String?
    /// NodePort: broker n gets node port `nodePortBase + n`.
    public var nodePortBase: Int32?
    /// TLS on the external listener.
    public var tls: ListenerTLSSpec?
    /// How clients of the external listener authenticate.
    public var authentication: ListenerAuthenticationSpec?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case type, port, advertisedHost, nodePortBase, tls, authentication
    }

    public init(type: String? = nil, port: Int32? = nil, advertisedHost: String? = nil, nodePortBase: Int32? = nil,
                tls: ListenerTLSSpec? = nil, authentication: ListenerAuthenticationSpec? = nil) {
        self.tls = tls
        self.authentication = authentication
        self.type = type
        self.port = port
        self.advertisedHost = advertisedHost
        self.nodePortBase = nodePortBase
    }
}

/// TLS on a listener. The Secret (type `kubernetes.io/tls`, in the cluster's namespace) holds
/// `tls.crt` (the server certificate chain) and `tls.key`; the internal listener's Secret also
/// needs `ca.crt` (the CA that signed `tls.crt`: cert-manager writes it), with which the brokers
/// and the operator verify the brokers. It is mounted read-only at `/etc/floe/tls`; the broker
/// reloads the files when Kubernetes rotates them, so a new certificate does not restart pods.
///
/// `clientAuth` asks clients for certificates signed by the CA in `caSecretName` (key `ca.crt`):
/// `none` (default), `requested` or `required`. The broker has one certificate and one client CA
/// for all its TLS listeners, so when both listeners use TLS they must name the same Secrets and
/// `clientAuth`.
///
/// Example: `{secretName: events-tls, caSecretName: clients-ca, clientAuth: required}`.
public struct ListenerTLSSpec: Codable, Sendable, Equatable {
    public var secretName: String
    public var caSecretName: String?
    public var clientAuth: String?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case secretName, caSecretName, clientAuth
    }

    public init(secretName: String, caSecretName: String? = nil, clientAuth: String? = nil) {
        self.secretName = secretName
        self.caSecretName = caSecretName
        self.clientAuth = clientAuth
    }
}

/// How a listener's clients authenticate: `scram-sha-512`, `scram-sha-256` or `plain` (SASL, with
/// the users of `spec.users`; over TLS when the listener has `tls`), or `tls` (client
/// certificates, principal `User:<subject DN>`; needs `tls` with `caSecretName`).
public struct ListenerAuthenticationSpec: Codable, Sendable, Equatable {
    public var type: String

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case type
    }

    public init(type: String) { self.type = type }
}

/// A Kafka user of the cluster: SASL name and the Secret key holding its password. The operator
/// collects every user into the Secret `<cluster>-users` (the broker's `sasl.users.file`).
///
/// Example: `{name: orders-app, passwordSecret: {name: orders-app-kafka, key: password}}`.
public struct UserSpec: Codable, Sendable, Equatable {
    public var name: String
    public var passwordSecret: SecretKeyReference

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case name, passwordSecret
    }

    public init(name: String, passwordSecret: SecretKeyReference) {
        self.name = name
        self.passwordSecret = passwordSecret
    }
}

/// One key of a Secret in the cluster's namespace.
public struct SecretKeyReference: Codable, Sendable, Equatable, Hashable {
    public var name: String
    public var key: String

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case name, key
    }

    public init(name: String, key: String) {
        self.name = name
        self.key = key
    }
}

/// `type: acl` turns the broker's authorizer on (`authorizer=acl`); `superUsers` (principals such
/// as `User:admin` or `User:CN=ops,O=acme`) pass every check, as do the operator's own users.
public struct AuthorizationSpec: Codable, Sendable, Equatable {
    public var type: String?
    public var superUsers: [String]?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case type, superUsers
    }

    public init(type: String? = nil, superUsers: [String]? = nil) {
        self.type = type
        self.superUsers = superUsers
    }
}

/// What a user may add to the broker pods. Labels cannot replace the operator's selector labels.
public struct PodTemplateOverrides: Codable, Sendable, Equatable {
    public var annotations: [String: String]?
    public var labels: [String: String]?
    public var nodeSelector: [String: String]?
    public var tolerations: [Toleration]?
    /// A `v1.Affinity`, passed to the pods unchanged.
    public var affinity: JSONValue?
    public var priorityClassName: String?
    public var serviceAccountName: String?
    /// Names of Secrets in the cluster's namespace used to pull the broker image.
    public var imagePullSecrets: [String]?
    /// `[]v1.TopologySpreadConstraint`, passed to the pods unchanged. When absent, brokers are
    /// spread across nodes (maxSkew 1, ScheduleAnyway); `[]` turns spreading off.
    public var topologySpreadConstraints: JSONValue?
    /// Extra environment variables of the broker container (plain values; names the operator
    /// sets itself are refused).
    public var env: [String: String]?
    /// The pod's security context, field by field over the operator's (non-root uid 65532,
    /// seccomp RuntimeDefault): e.g. `runAsUser` and `fsGroup` for an OpenShift-style range.
    public var securityContext: PodSecurityContext?
    /// The broker container's security context, field by field over the operator's (non-root,
    /// read-only root file system, no privilege escalation, all capabilities dropped).
    public var containerSecurityContext: SecurityContext?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case annotations, labels, nodeSelector, tolerations, affinity, priorityClassName, serviceAccountName
        case imagePullSecrets, topologySpreadConstraints, env, securityContext, containerSecurityContext
    }

    public init(
        annotations: [String: String]? = nil, labels: [String: String]? = nil, nodeSelector: [String: String]? = nil,
        tolerations: [Toleration]? = nil, affinity: JSONValue? = nil, priorityClassName: String? = nil, serviceAccountName: String? = nil,
        imagePullSecrets: [String]? = nil, topologySpreadConstraints: JSONValue? = nil, env: [String: String]? = nil,
        securityContext: PodSecurityContext? = nil, containerSecurityContext: SecurityContext? = nil
    ) {
        self.securityContext = securityContext
        self.containerSecurityContext = containerSecurityContext
        self.annotations = annotations
        self.labels = labels
        self.nodeSelector = nodeSelector
        self.tolerations = tolerations
        self.affinity = affinity
        self.priorityClassName = priorityClassName
        self.serviceAccountName = serviceAccountName
        self.imagePullSecrets = imagePullSecrets
        self.topologySpreadConstraints = topologySpreadConstraints
        self.env = env
    }
}

/// Autoscaling policy (acted on by the autoscaler). Targets are per broker; a target left out
/// is not used. The desired count stays within `[minBrokers, maxBrokers]`.
public struct AutoscalingSpec: Codable, Sendable, Equatable {
    public var enabled: Bool?
    public var minBrokers: Int32?
    public var maxBrokers: Int32?
    public var targets: AutoscalingTargets?
    /// No scaling while every metric is within this percentage of its target.
    public var tolerancePercent: Int32?
    public var scaleUp: ScalingBehavior?
    public var scaleDown: ScalingBehavior?
    /// Decide and report (status, Events) but leave the broker count alone.
    public var dryRun: Bool?
    /// Known peaks: windows that raise the minimum ahead of time.
    public var schedules: [ScheduleSpec]?
    /// A floor learned from the daily load curve (opt-in).
    public var predictive: PredictiveSpec?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case enabled, minBrokers, maxBrokers, targets, tolerancePercent, scaleUp, scaleDown, dryRun, schedules, predictive
    }

    public init(
        enabled: Bool? = nil, minBrokers: Int32? = nil, maxBrokers: Int32? = nil, targets: AutoscalingTargets? = nil,
        tolerancePercent: Int32? = nil, scaleUp: ScalingBehavior? = nil, scaleDown: ScalingBehavior? = nil, dryRun: Bool? = nil,
        schedules: [ScheduleSpec]? = nil, predictive: PredictiveSpec? = nil
    ) {
        self.schedules = schedules
        self.predictive = predictive
        self.dryRun = dryRun
        self.enabled = enabled
        self.minBrokers = minBrokers
        self.maxBrokers = maxBrokers
        self.targets = targets
        self.tolerancePercent = tolerancePercent
        self.scaleUp = scaleUp
        self.scaleDown = scaleDown
    }

    public var isEnabled: Bool { enabled ?? false }
    public var resolvedMin: Int32 { minBrokers ?? FloeDefaults.minBrokers }
    public var resolvedMax: Int32 { maxBrokers ?? FloeDefaults.maxBrokers }
}

/// A known peak: from each `start` (cron, in `timeZone`) for `durationMinutes`, the autoscaler
/// keeps at least the floor — `minBrokers`, or enough brokers for `expectedBytesInPerSecond` at the
/// bytes-in target (the higher when both are set) — raised `leadTimeSeconds` before the start so
/// the brokers are ready and balanced when the load arrives. The reactive policy still scales above.
///
/// Example: `{name: black-friday, start: "0 20 27 11 *", timeZone: Europe/Berlin, durationMinutes: 240,
/// expectedBytesInPerSecond: 419430400}` keeps 8 brokers (at 50 MiB/s each) from 19:55 to 00:00.
public struct ScheduleSpec: Codable, Sendable, Equatable {
    public var name: String
    /// Five-field cron: minute hour day-of-month month day-of-week (`*`, lists, ranges, steps, names).
    public var start: String
    /// IANA time zone of `start` (default UTC); daylight-saving changes are followed.
    public var timeZone: String?
    public var durationMinutes: Int32
    public var minBrokers: Int32?
    public var expectedBytesInPerSecond: Int64?
    /// How long before `start` the floor is raised (default 300).
    public var leadTimeSeconds: Int32?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case name, start, timeZone, durationMinutes, minBrokers, expectedBytesInPerSecond, leadTimeSeconds
    }

    public init(name: String, start: String, timeZone: String? = nil, durationMinutes: Int32, minBrokers: Int32? = nil,
                expectedBytesInPerSecond: Int64? = nil, leadTimeSeconds: Int32? = nil) {
        self.name = name
        self.start = start
        self.timeZone = timeZone
        self.durationMinutes = durationMinutes
        self.minBrokers = minBrokers
        self.expectedBytesInPerSecond = expectedBytesInPerSecond
        self.leadTimeSeconds = leadTimeSeconds
    }
}

/// The predictive floor: the peak bytes in of each 5-minute slot over the last `historyDays`
/// days is kept (in `status.autoscaling.loadHistory`, so a restart does not forget); the next
/// `lookaheadMinutes` are predicted by time of day and capacity kept for that × (1 + margin).
public struct PredictiveSpec: Codable, Sendable, Equatable {
    public var enabled: Bool?
    public var historyDays: Int32?
    public var lookaheadMinutes: Int32?
    public var marginPercent: Int32?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case enabled, historyDays, lookaheadMinutes, marginPercent
    }

    public init(enabled: Bool? = nil, historyDays: Int32? = nil, lookaheadMinutes: Int32? = nil, marginPercent: Int32? = nil) {
        self.enabled = enabled
        self.historyDays = historyDays
        self.lookaheadMinutes = lookaheadMinutes
        self.marginPercent = marginPercent
    }
}

public struct AutoscalingTargets: Codable, Sendable, Equatable {
    public var bytesInPerSecond: Int64?
    public var bytesOutPerSecond: Int64?
    public var requestsPerSecond: Int64?
    public var cpuUtilizationPercent: Int32?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case bytesInPerSecond, bytesOutPerSecond, requestsPerSecond, cpuUtilizationPercent
    }

    public init(bytesInPerSecond: Int64? = nil, bytesOutPerSecond: Int64? = nil, requestsPerSecond: Int64? = nil, cpuUtilizationPercent: Int32? = nil) {
        self.bytesInPerSecond = bytesInPerSecond
        self.bytesOutPerSecond = bytesOutPerSecond
        self.requestsPerSecond = requestsPerSecond
        self.cpuUtilizationPercent = cpuUtilizationPercent
    }
}

/// How fast one direction of scaling may go: a decision must hold for the whole window, and
/// one step adds or removes at most `maxStepBrokers`.
public struct ScalingBehavior: Codable, Sendable, Equatable {
    public var stabilizationWindowSeconds: Int32?
    public var maxStepBrokers: Int32?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case stabilizationWindowSeconds, maxStepBrokers
    }

    public init(stabilizationWindowSeconds: Int32? = nil, maxStepBrokers: Int32? = nil) {
        self.stabilizationWindowSeconds = stabilizationWindowSeconds
        self.maxStepBrokers = maxStepBrokers
    }
}

public struct BalancingSpec: Codable, Sendable, Equatable {
    public var enabled: Bool?
    public var intervalSeconds: Int32?
    public var maxMovesPerRound: Int32?
    /// Compute and report plans without moving partitions.
    public var dryRun: Bool?
    /// The band: every broker's bytes in + out within the mean ± this percentage.
    public var tolerancePercent: Int32?
    /// A partition is not moved again by the balancer within this many seconds of its last move,
    /// and no balancing round starts within it of the last moves.
    public var moveCooldownSeconds: Int32?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case enabled, intervalSeconds, maxMovesPerRound, dryRun, tolerancePercent, moveCooldownSeconds
    }

    public init(enabled: Bool? = nil, intervalSeconds: Int32? = nil, maxMovesPerRound: Int32? = nil, dryRun: Bool? = nil,
                tolerancePercent: Int32? = nil, moveCooldownSeconds: Int32? = nil) {
        self.tolerancePercent = tolerancePercent
        self.moveCooldownSeconds = moveCooldownSeconds
        self.enabled = enabled
        self.intervalSeconds = intervalSeconds
        self.maxMovesPerRound = maxMovesPerRound
        self.dryRun = dryRun
    }
}

/// One broker pod as the status reports it: ready or not and why, and its restarts.
///
/// Example: `{name: events-broker-1, ready: false, state: CrashLoopBackOff, restarts: 4,
/// message: "back-off restarting failed container (exit code 1)"}`.
public struct BrokerState: Codable, Sendable, Equatable {
    public var name: String
    public var ready: Bool
    /// `Running`, or the container's waiting reason (`ContainerCreating`, `CrashLoopBackOff`,
    /// `ImagePullBackOff`, …), or the pod phase when no container status exists yet.
    public var state: String
    public var restarts: Int32?
    public var message: String?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case name, ready, state, restarts, message
    }

    public init(name: String, ready: Bool, state: String, restarts: Int32? = nil, message: String? = nil) {
        self.name = name
        self.ready = ready
        self.state = state
        self.restarts = restarts
        self.message = message
    }
}

/// Written once per reconcile pass. Every condition carries the `metadata.generation` it was
/// computed from; `observedGeneration` is that generation too.
public struct FloeClusterStatus: Codable, Sendable, Equatable {
    public var observedGeneration: Int64?
    public var conditions: [Condition]?
    public var replicas: Int32?
    public var readyReplicas: Int32?
    /// Label selector of the broker pods in query form, for the scale subresource.
    public var selector: String?
    /// `host:port` of the bootstrap Service.
    public var bootstrap: String?
    public var load: ClusterLoad?
    public var lastScaling: ScalingDecision?
    /// Each broker pod's state, by pod name (absent when there are no pods).
    public var brokers: [BrokerState]?
    /// The autoscaler's view (present while `spec.autoscaling.enabled`).
    public var autoscaling: AutoscalingStatus?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case observedGeneration, conditions, replicas, readyReplicas, selector, bootstrap, load, lastScaling, brokers, autoscaling
    }

    public init(
        observedGeneration: Int64? = nil, conditions: [Condition]? = nil, replicas: Int32? = nil, readyReplicas: Int32? = nil,
        selector: String? = nil, bootstrap: String? = nil, load: ClusterLoad? = nil, lastScaling: ScalingDecision? = nil,
        brokers: [BrokerState]? = nil, autoscaling: AutoscalingStatus? = nil
    ) {
        self.autoscaling = autoscaling
        self.brokers = brokers
        self.observedGeneration = observedGeneration
        self.conditions = conditions
        self.replicas = replicas
        self.readyReplicas = readyReplicas
        self.selector = selector
        self.bootstrap = bootstrap
        self.load = load
        self.lastScaling = lastScaling
    }

    public func condition(_ type: String) -> Condition? { conditions?.first { $0.type == type } }
}

/// Cluster-wide load as last measured by the autoscaler (sums over brokers; CPU is the mean).
public struct ClusterLoad: Codable, Sendable, Equatable {
    public var brokers: Int32?
    public var bytesInPerSecond: Int64?
    public var bytesOutPerSecond: Int64?
    public var requestsPerSecond: Int64?
    public var cpuUtilizationPercent: Int32?
    public var observedAt: String?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case brokers, bytesInPerSecond, bytesOutPerSecond, requestsPerSecond, cpuUtilizationPercent, observedAt
    }

    public init(
        brokers: Int32? = nil, bytesInPerSecond: Int64? = nil, bytesOutPerSecond: Int64? = nil, requestsPerSecond: Int64? = nil,
        cpuUtilizationPercent: Int32? = nil, observedAt: String? = nil
    ) {
        self.brokers = brokers
        self.bytesInPerSecond = bytesInPerSecond
        self.bytesOutPerSecond = bytesOutPerSecond
        self.requestsPerSecond = requestsPerSecond
        self.cpuUtilizationPercent = cpuUtilizationPercent
        self.observedAt = observedAt
    }
}

/// The autoscaler's last change of the broker count, and why.
public struct ScalingDecision: Codable, Sendable, Equatable {
    public var time: String
    public var from: Int32
    public var to: Int32
    public var reason: String

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case time, from, to, reason
    }

    public init(time: String, from: Int32, to: Int32, reason: String) {
        self.time = time
        self.from = from
        self.to = to
        self.reason = reason
    }
}

/// What the autoscaler sees and does for one cluster.
///
/// Example: `{desiredBrokers: 3, phase: "scaling out to 3", brokers: [{id: 0, bytesInPerSecond: 5242880, partitions: 4}, …],
/// lastDecision: {from: 2, to: 3, reason: "bytesIn 11.0 MiB/s total, … → 3"}}`.
public struct AutoscalingStatus: Codable, Sendable, Equatable {
    public var desiredBrokers: Int32?
    /// `steady`, `scaling out to N`, or `scaling in to N (draining …)`.
    public var phase: String?
    public var dryRun: Bool?
    public var brokers: [BrokerLoadStatus]?
    public var lastDecision: ScalingDecision?
    /// The highest floor in force from schedules or prediction (absent when none).
    public var floorBrokers: Int32?
    /// Why: `schedule black-friday floor 8 (…)` or `predictive floor 3 (…)`.
    public var floorReason: String?
    /// Schedule windows whose floor holds now.
    public var activeSchedules: [ScheduleWindowStatus]?
    /// The next schedule window to come (within a day).
    public var nextSchedule: ScheduleWindowStatus?
    /// The predictive floor's expected peak bytes in over its lookahead, margin included.
    public var predictedBytesInPerSecond: Int64?
    /// The predictive floor's memory (while predictive is enabled).
    public var loadHistory: LoadHistoryStatus?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case desiredBrokers, phase, dryRun, brokers, lastDecision, floorBrokers, floorReason, activeSchedules, nextSchedule
        case predictedBytesInPerSecond, loadHistory
    }

    public init(desiredBrokers: Int32? = nil, phase: String? = nil, dryRun: Bool? = nil, brokers: [BrokerLoadStatus]? = nil,
                lastDecision: ScalingDecision? = nil, floorBrokers: Int32? = nil, floorReason: String? = nil,
                activeSchedules: [ScheduleWindowStatus]? = nil, nextSchedule: ScheduleWindowStatus? = nil,
                predictedBytesInPerSecond: Int64? = nil, loadHistory: LoadHistoryStatus? = nil) {
        self.floorBrokers = floorBrokers
        self.floorReason = floorReason
        self.activeSchedules = activeSchedules
        self.nextSchedule = nextSchedule
        self.predictedBytesInPerSecond = predictedBytesInPerSecond
        self.loadHistory = loadHistory
        self.desiredBrokers = desiredBrokers
        self.phase = phase
        self.dryRun = dryRun
        self.brokers = brokers
        self.lastDecision = lastDecision
    }
}

/// One broker's measured load; `known: false` when its metrics could not be read (it then
/// blocks scale-in).
public struct BrokerLoadStatus: Codable, Sendable, Equatable {
    public var id: Int32
    public var known: Bool
    public var bytesInPerSecond: Int64?
    public var bytesOutPerSecond: Int64?
    public var cpuPercent: Int32?
    public var partitions: Int32?
    /// Produce p99 over the window, as its histogram bucket's upper bound in milliseconds.
    public var produceP99Milliseconds: Double?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case id, known, bytesInPerSecond, bytesOutPerSecond, cpuPercent, partitions, produceP99Milliseconds
    }

    public init(id: Int32, known: Bool, bytesInPerSecond: Int64? = nil, bytesOutPerSecond: Int64? = nil, cpuPercent: Int32? = nil,
                partitions: Int32? = nil, produceP99Milliseconds: Double? = nil) {
        self.produceP99Milliseconds = produceP99Milliseconds
        self.id = id
        self.known = known
        self.bytesInPerSecond = bytesInPerSecond
        self.bytesOutPerSecond = bytesOutPerSecond
        self.cpuPercent = cpuPercent
        self.partitions = partitions
    }
}

/// One window of a schedule: the floor holds from `raiseAt` (start − lead time) until `end`.
public struct ScheduleWindowStatus: Codable, Sendable, Equatable {
    public var name: String
    public var floorBrokers: Int32
    public var raiseAt: String
    public var start: String
    public var end: String

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case name, floorBrokers, raiseAt, start, end
    }

    public init(name: String, floorBrokers: Int32, raiseAt: String, start: String, end: String) {
        self.name = name
        self.floorBrokers = floorBrokers
        self.raiseAt = raiseAt
        self.start = start
        self.end = end
    }
}

/// The predictive floor's load history in compact form: per 5-minute bucket, oldest first and
/// ending with the bucket starting at `newestBucketStart` (unix seconds), the peak cluster bytes in
/// as KiB/s in a little-endian UInt32 (0xFFFFFFFF: no sample), base64. 7 days: 2016 buckets, 10.8 KB.
public struct LoadHistoryStatus: Codable, Sendable, Equatable {
    public var bucketSeconds: Int32
    public var newestBucketStart: Int64
    public var kibPerSecond: String

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case bucketSeconds, newestBucketStart, kibPerSecond
    }

    public init(bucketSeconds: Int32, newestBucketStart: Int64, kibPerSecond: String) {
        self.bucketSeconds = bucketSeconds
        self.newestBucketStart = newestBucketStart
        self.kibPerSecond = kibPerSecond
    }
}
