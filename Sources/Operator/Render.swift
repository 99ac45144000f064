import BrokerSettings
import CCrypto
import Foundation
import KubeAPI

/// Identity of a Kubernetes object: group/version, kind, namespace and name.
public struct ObjectKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var apiVersion: String
    public var kind: String
    public var namespace: String
    public var name: String

    public init(apiVersion: String, kind: String, namespace: String, name: String) {
        self.apiVersion = apiVersion
        self.kind = kind
        self.namespace = namespace
        self.name = name
    }

    public var description: String { "\(kind) \(namespace)/\(name)" }

    public static func < (a: ObjectKey, b: ObjectKey) -> Bool {
        (a.kind, a.namespace, a.name, a.apiVersion) < (b.kind, b.namespace, b.name, b.apiVersion)
    }
}

/// One object the reconciler manages for a cluster.
public enum ManagedObject: Sendable, Equatable {
    case configMap(ConfigMap)
    case service(Service)
    case statefulSet(StatefulSet)
    case podDisruptionBudget(PodDisruptionBudget)
    /// The users Secret (`<cluster>-users`); synced by the reconciler apart from the sync plan,
    /// which works from caches that hold no Secrets.
    case secret(Secret)

    public var metadata: ObjectMeta {
        get {
            switch self {
            case .configMap(let o): o.metadata
            case .service(let o): o.metadata
            case .statefulSet(let o): o.metadata
            case .podDisruptionBudget(let o): o.metadata
            case .secret(let o): o.metadata
            }
        }
        set {
            switch self {
            case .configMap(var o): o.metadata = newValue; self = .configMap(o)
            case .service(var o): o.metadata = newValue; self = .service(o)
            case .statefulSet(var o): o.metadata = newValue; self = .statefulSet(o)
            case .podDisruptionBudget(var o): o.metadata = newValue; self = .podDisruptionBudget(o)
            case .secret(var o): o.metadata = newValue; self = .secret(o)
            }
        }
    }

    public var key: ObjectKey {
        let (apiVersion, kind): (String, String) =
            switch self {
            case .configMap: (ConfigMap.apiVersion, ConfigMap.kind)
            case .service: (Service.apiVersion, Service.kind)
            case .statefulSet: (StatefulSet.apiVersion, StatefulSet.kind)
            case .podDisruptionBudget: (PodDisruptionBudget.apiVersion, PodDisruptionBudget.kind)
            case .secret: (Secret.apiVersion, Secret.kind)
            }
        return ObjectKey(apiVersion: apiVersion, kind: kind, namespace: metadata.namespace ?? "", name: metadata.name ?? "")
    }

    /// The object as JSON (nil fields absent).
    public func json() throws(KubeAPIError) -> JSONValue {
        switch self {
        case .configMap(let o): try JSONValue(encoding: o)
        case .service(let o): try JSONValue(encoding: o)
        case .statefulSet(let o): try JSONValue(encoding: o)
        case .podDisruptionBudget(let o): try JSONValue(encoding: o)
        case .secret(let o): try JSONValue(encoding: o)
        }
    }
}

/// Names and labels derived from a cluster's name; the one place they are spelled.
public struct ClusterNames: Sendable, Equatable {
    public let cluster: String
    public let namespace: String
    public var configMap: String { "\(cluster)-config" }
    public var headlessService: String { "\(cluster)-brokers" }
    public var bootstrapService: String { "\(cluster)-bootstrap" }
    public var statefulSet: String { "\(cluster)-broker" }
    public var podDisruptionBudget: String { "\(cluster)-broker" }
    /// Broker `ordinal`'s own Service for the external listener.
    public func externalService(_ ordinal: Int32) -> String { "\(statefulSet)-\(ordinal)-external" }

    public init(cluster: String, namespace: String) {
        self.cluster = cluster
        self.namespace = namespace
    }

    /// Labels that select this cluster's broker pods (the StatefulSet selector: never changes).
    public var selectorLabels: [String: String] {
        [
            "app.kubernetes.io/name": "floe", "app.kubernetes.io/instance": cluster,
            "app.kubernetes.io/component": "broker",
        ]
    }

    /// The standard labels on every rendered object.
    public func labels(component: String) -> [String: String] {
        [
            "app.kubernetes.io/name": "floe", "app.kubernetes.io/instance": cluster,
            "app.kubernetes.io/component": component, "app.kubernetes.io/managed-by": Render.managerName,
        ]
    }

    public func bootstrapAddress(port: Int32) -> String { "\(bootstrapService).\(namespace).svc:\(port)" }
}

/// Turns a FloeCluster into the objects that run it. Pure: the same cluster always renders to
/// the same objects (keys sorted, no clocks, no randomness), which golden files pin.
///
/// Rendered, in this order: the broker ConfigMap, the headless Service (broker identities,
/// not-ready addresses published), the bootstrap Service, the StatefulSet of brokers, a
/// PodDisruptionBudget allowing one broker down, the external Services, and, when a listener
/// uses SASL, the users Secret `<cluster>-users` (from `security`, which the caller reads from
/// Secrets: the renderer does no I/O). Each carries our controller owner reference,
/// the standard labels and a `floe.dev/rendered-hash` annotation (FNV-1a of the object without
/// it), which the sync plan compares to decide whether an update is needed.
public enum Render {
    public static let managerName = "floe-operator"
    public static let hashAnnotation = "floe.dev/rendered-hash"
    public static let configHashAnnotation = "floe.dev/config-hash"
    public static let propertiesFile = "broker.properties"
    public static let configDir = "/etc/floe"
    public static let walDir = "/var/lib/floe/wal"
    public static let brokerUser: Int64 = 65532
    /// The broker executable in the Floe image (deploy/Dockerfile), which holds both programs.
    public static let brokerCommand = "/usr/local/bin/floe-broker"

    public static func render(_ cluster: FloeCluster, security: SecurityMaterial? = nil) throws(OperatorError) -> [ManagedObject] {
        let id = "\(cluster.metadata.namespace ?? "")/\(cluster.metadata.name ?? "")"
        let problems = FloeClusterValidation.problems(cluster)
        if !problems.isEmpty { throw .invalidSpec(cluster: id, problems: problems) }
        guard let namespace = cluster.metadata.namespace, !namespace.isEmpty else {
            throw .notRenderable(cluster: id, missing: "metadata.namespace")
        }
        guard let uid = cluster.metadata.uid, !uid.isEmpty else { throw .notRenderable(cluster: id, missing: "metadata.uid") }
        let names = ClusterNames(cluster: cluster.metadata.name!, namespace: namespace)
        let owner = OwnerReference(
            apiVersion: FloeCluster.apiVersion, kind: FloeCluster.kind, name: names.cluster, uid: uid,
            controller: true, blockOwnerDeletion: true)
        let spec = cluster.spec
        let kafkaPort = spec.listeners?.kafkaPort ?? FloeDefaults.kafkaPort
        let httpPort = spec.listeners?.httpPort ?? FloeDefaults.httpPort

        func meta(_ name: String, component: String) -> ObjectMeta {
            ObjectMeta(name: name, namespace: namespace, labels: names.labels(component: component), ownerReferences: [owner])
        }

        let properties = brokerProperties(spec)
        let configMap = ConfigMap(metadata: meta(names.configMap, component: "config"), data: [propertiesFile: properties])

        let servicePorts = [
            ServicePort(name: "kafka", port: kafkaPort, targetPort: .string("kafka"), protocol: "TCP"),
            ServicePort(name: "http", port: httpPort, targetPort: .string("http"), protocol: "TCP"),
        ]
        let headless = Service(
            metadata: meta(names.headlessService, component: "broker"),
            spec: ServiceSpec(
                clusterIP: "None", selector: names.selectorLabels, ports: servicePorts, publishNotReadyAddresses: true))
        let bootstrap = Service(
            metadata: meta(names.bootstrapService, component: "bootstrap"),
            spec: ServiceSpec(
                type: spec.listeners?.serviceType ?? FloeDefaults.serviceType, selector: names.selectorLabels,
                ports: [ServicePort(name: "kafka", port: kafkaPort, targetPort: .string("kafka"), protocol: "TCP")]))

        let plan = SecurityPlan(spec)
        var usersFile: String?
        if plan.usesSASL {
            guard let security else {
                throw .notRenderable(cluster: id, missing: "the passwords of spec.users and of \(names.operatorCredentialsSecret) (read from Secrets)")
            }
            usersFile = security.usersFile()
        }
        var statefulSet = brokerStatefulSet(
            spec, names: names, meta: meta(names.statefulSet, component: "broker"), kafkaPort: kafkaPort, httpPort: httpPort,
            configHash: FNV1a.hex(properties))
        if let usersFile, let security {
            statefulSet.spec?.template.metadata?.annotations?[SecurityLayout.usersHashAnnotation] =
                HMACSHA256.hex(key: security.operatorPassword, usersFile)
        }

        let pdb = PodDisruptionBudget(
            metadata: meta(names.podDisruptionBudget, component: "broker"),
            spec: PodDisruptionBudgetSpec(maxUnavailable: .int(spec.disruptionBudget?.maxUnavailable ?? 1),
                                          selector: LabelSelector(matchLabels: names.selectorLabels)))

        var objects: [ManagedObject] = [
            .configMap(configMap), .service(headless), .service(bootstrap), .statefulSet(statefulSet), .podDisruptionBudget(pdb),
        ]
        if let external = spec.listeners?.external {
            // One Service per broker, selecting its pod by the StatefulSet's pod-name label.
            let type = external.type ?? FloeDefaults.externalType
            let port = external.port ?? FloeDefaults.externalPort
            let base = external.nodePortBase ?? FloeDefaults.externalNodePortBase
            for ordinal in 0..<externalServiceCount(spec) {
                let podName = "\(names.statefulSet)-\(ordinal)"
                objects.append(.service(Service(
                    metadata: meta(names.externalService(ordinal), component: "external"),
                    spec: ServiceSpec(
                        type: type, selector: names.selectorLabels.merging(["statefulset.kubernetes.io/pod-name": podName]) { a, _ in a },
                        ports: [ServicePort(name: "kafka-external", port: port, targetPort: .string("external"), protocol: "TCP",
                                            nodePort: type == "NodePort" ? base + ordinal : nil)]))))
            }
        }
        if let usersFile {
            objects.append(.secret(Secret(
                metadata: meta(names.usersSecret, component: "users"),
                data: [SecurityLayout.usersKey: Data(usersFile.utf8).base64EncodedString()], type: "Opaque")))
        }
        for i in objects.indices {
            objects[i].metadata.annotations = [hashAnnotation: try renderedHash(objects[i])]
        }
        return objects
    }

    /// Brokers spread across nodes, as evenly as the scheduler can without refusing to place one
    /// (a cluster with fewer nodes than brokers still runs).
    static func defaultSpread(_ names: ClusterNames) -> JSONValue {
        .array([.object([
            "maxSkew": .int(1), "topologyKey": .string("kubernetes.io/hostname"), "whenUnsatisfiable": .string("ScheduleAnyway"),
            "labelSelector": .object(["matchLabels": .object(names.selectorLabels.mapValues { .string($0) })]),
        ])])
    }

    /// The environment variables the operator sets on the broker container (users may not).
    public static let reservedEnv: Set<String> = [
        "POD_NAME", "POD_NAMESPACE", "NODE_ID", "POD_IP", "HOST_IP", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    ]

    /// How many brokers get an external Service: every broker the cluster may have (the
    /// autoscaler's maximum when it is on), so scaling never waits for a Service.
    static func externalServiceCount(_ spec: FloeClusterSpec) -> Int32 {
        let replicas = spec.replicas ?? FloeDefaults.replicas
        guard let a = spec.autoscaling, a.enabled ?? false else { return max(0, replicas) }
        return max(0, replicas, a.maxBrokers ?? replicas)
    }

    /// The hash of an object's rendered form, ignoring any hash annotation it already carries.
    public static func renderedHash(_ object: ManagedObject) throws(OperatorError) -> String {
        var copy = object
        copy.metadata.annotations?[hashAnnotation] = nil
        if copy.metadata.annotations?.isEmpty == true { copy.metadata.annotations = nil }
        do {
            return FNV1a.hex(try KubeJSON.string(copy.json()))
        } catch {
            throw .encode(object: object.key.description, detail: error.description)
        }
    }

    /// The broker's properties file: the operator-owned settings (`storage`, `wal`, `wal.dir`),
    /// then the user's `spec.config`, one `key=value` per line, keys sorted, written with the
    /// codec the broker reads (`PropertiesFile`). Every key is declared in `BrokerSettings`; the
    /// per-pod settings (listen, advertise, node id, HTTP) are flags (`brokerArguments`).
    ///
    /// Example (S3 on MinIO): `storage=s3://floe-data/cluster-a?endpoint=http://minio.minio.svc:9000&path_style=true&region=us-east-1`
    /// and `wal=object`; credentials come from the Secret as `AWS_*` environment variables.
    public static func brokerProperties(_ spec: FloeClusterSpec) -> String {
        var entries = SecurityPlan(spec).properties()
        entries[BrokerSettings.storage.name] = storageURL(spec.storage)
        let walKind = spec.storage.wal?.kind ?? FloeDefaults.walKind
        entries[BrokerSettings.wal.name] = walKind
        if walKind == "file" { entries[BrokerSettings.walDir.name] = walDir }
        var text = PropertiesFile.encode(entries, header: "Written by floe-operator; edit spec.config of the FloeCluster instead.")
        let user = spec.config ?? [:]
        if !user.isEmpty { text += PropertiesFile.encode(user, header: "spec.config") }
        return text
    }

    /// The broker's `storage` URL for a storage spec: `file:///path` as given; for S3 the bucket
    /// URL with the connection settings as query parameters (`StorageURL` in the broker), sorted:
    /// `anonymous`, `ca_file` (the mounted `caSecretName`), `endpoint`, `path_style`, `region`.
    public static func storageURL(_ s: StorageSpec) -> String {
        guard s.bucket.hasPrefix("s3://") else { return s.bucket }
        var query: [(String, String)] = []
        if s.anonymous == true { query.append(("anonymous", "true")) }
        if s.caSecretName != nil { query.append(("ca_file", "\(SecurityLayout.storageCADir)/\(SecurityLayout.caKey)")) }
        if let e = s.endpoint { query.append(("endpoint", e)) }
        query.append(("path_style", String(s.pathStyle ?? false)))
        query.append(("region", s.region ?? FloeDefaults.region))
        return s.bucket + "?" + query.map { $0.0 + "=" + percentEncode($0.1) }.joined(separator: "&")
    }

    /// Percent-encodes everything but unreserved characters, `:` and `/` (so endpoints stay readable).
    static func percentEncode(_ s: String) -> String {
        var out = ""
        for byte in s.utf8 {
            let c = Character(UnicodeScalar(byte))
            if byte < 0x80 && (c.isLetter || c.isNumber || "-._~:/".contains(c)) {
                out.append(c)
            } else {
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }

    /// The broker container's arguments: the properties file, then the per-pod settings as flags
    /// (declared in `BrokerSettings`; the kubelet expands `$(VAR)` from the container's env).
    /// The operator's pod security context with the user's fields laid over it.
    static func podSecurity(_ user: PodSecurityContext?) -> PodSecurityContext {
        PodSecurityContext(
            runAsNonRoot: user?.runAsNonRoot ?? true, runAsUser: user?.runAsUser ?? brokerUser, runAsGroup: user?.runAsGroup ?? brokerUser,
            fsGroup: user?.fsGroup ?? brokerUser, seccompProfile: user?.seccompProfile ?? SeccompProfile(type: "RuntimeDefault"))
    }

    /// The operator's container security context with the user's fields laid over it.
    static func containerSecurity(_ user: SecurityContext?) -> SecurityContext {
        SecurityContext(
            runAsNonRoot: user?.runAsNonRoot ?? true, runAsUser: user?.runAsUser, readOnlyRootFilesystem: user?.readOnlyRootFilesystem ?? true,
            allowPrivilegeEscalation: user?.allowPrivilegeEscalation ?? false, capabilities: user?.capabilities ?? Capabilities(drop: ["ALL"]),
            seccompProfile: user?.seccompProfile)
    }

    static func brokerArguments(kafkaPort: Int32, httpPort: Int32, advertisedHost: String, external: ExternalListenerSpec?) -> [String] {
        var args = [
            "--config=\(configDir)/\(propertiesFile)",
            BrokerSettings.listen.flag + "=0.0.0.0:\(kafkaPort)",
            BrokerSettings.advertise.flag + "=\(advertisedHost):\(kafkaPort)",
            BrokerSettings.nodeID.flag + "=$(NODE_ID)",
            BrokerSettings.http.flag + "=:\(httpPort)",
        ]
        if let external {
            let port = external.port ?? FloeDefaults.externalPort
            let nodePort = (external.type ?? FloeDefaults.externalType) == "NodePort"
            let host = external.advertisedHost ?? "$(HOST_IP)"
            // The broker expands {node} and {N+node} (BrokerSettings.externalAdvertise).
            let advertisedPort = nodePort ? "{\(external.nodePortBase ?? FloeDefaults.externalNodePortBase)+node}" : "\(port)"
            args.append(BrokerSettings.externalListen.flag + "=0.0.0.0:\(port)")
            args.append(BrokerSettings.externalAdvertise.flag + "=\(host):\(advertisedPort)")
        }
        return args
    }

    static func brokerStatefulSet(
        _ spec: FloeClusterSpec, names: ClusterNames, meta: ObjectMeta, kafkaPort: Int32, httpPort: Int32, configHash: String
    ) -> StatefulSet {
        let storage = spec.storage
        let fileWAL = (storage.wal?.kind ?? FloeDefaults.walKind) == "file"
        let advertisedHost = "$(POD_NAME).\(names.headlessService).\(names.namespace).svc"

        var env: [EnvVar] = [
            EnvVar(name: "POD_NAME", valueFrom: EnvVarSource(fieldRef: ObjectFieldSelector(fieldPath: "metadata.name"))),
            EnvVar(name: "POD_NAMESPACE", valueFrom: EnvVarSource(fieldRef: ObjectFieldSelector(fieldPath: "metadata.namespace"))),
            EnvVar(
                name: "NODE_ID",
                valueFrom: EnvVarSource(fieldRef: ObjectFieldSelector(fieldPath: "metadata.labels['apps.kubernetes.io/pod-index']"))),
        ]
        if spec.listeners?.external != nil {
            env.append(EnvVar(name: "POD_IP", valueFrom: EnvVarSource(fieldRef: ObjectFieldSelector(fieldPath: "status.podIP"))))
            env.append(EnvVar(name: "HOST_IP", valueFrom: EnvVarSource(fieldRef: ObjectFieldSelector(fieldPath: "status.hostIP"))))
        }
        if let c = storage.credentials {
            env.append(EnvVar(name: "AWS_ACCESS_KEY_ID", valueFrom: EnvVarSource(secretKeyRef: KeySelector(name: c.secretName, key: c.accessKeyIdKey ?? FloeDefaults.accessKeyIdKey))))
            env.append(EnvVar(name: "AWS_SECRET_ACCESS_KEY", valueFrom: EnvVarSource(secretKeyRef: KeySelector(name: c.secretName, key: c.secretAccessKeyKey ?? FloeDefaults.secretAccessKeyKey))))
            if let token = c.sessionTokenKey {
                env.append(EnvVar(name: "AWS_SESSION_TOKEN", valueFrom: EnvVarSource(secretKeyRef: KeySelector(name: c.secretName, key: token))))
            }
        }

        for (name, value) in (spec.podTemplate?.env ?? [:]).sorted(by: { $0.key < $1.key }) {
            env.append(EnvVar(name: name, value: value))
        }

        var mounts = [
            VolumeMount(name: "config", mountPath: configDir, readOnly: true),
            VolumeMount(name: "tmp", mountPath: "/tmp"),
        ]
        if fileWAL { mounts.append(VolumeMount(name: "wal", mountPath: walDir)) }
        let security = securityVolumes(spec, names: names)
        mounts += security.map(\.mount)

        let container = Container(
            name: "broker",
            image: spec.image ?? FloeDefaults.image,
            imagePullPolicy: spec.imagePullPolicy ?? FloeDefaults.imagePullPolicy,
            command: [brokerCommand],
            args: brokerArguments(kafkaPort: kafkaPort, httpPort: httpPort, advertisedHost: advertisedHost, external: spec.listeners?.external),
            env: env,
            ports: [
                ContainerPort(name: "kafka", containerPort: kafkaPort, protocol: "TCP"),
                ContainerPort(name: "http", containerPort: httpPort, protocol: "TCP"),
            ] + (spec.listeners?.external.map {
                [ContainerPort(name: "external", containerPort: $0.port ?? FloeDefaults.externalPort, protocol: "TCP")]
            } ?? []),
            resources: spec.resources ?? ResourceRequirements(limits: ["memory": "1Gi"], requests: ["cpu": "500m", "memory": "1Gi"]),
            readinessProbe: Probe(
                httpGet: HTTPGetAction(path: "/readyz", port: .string("http")), periodSeconds: 5, timeoutSeconds: 2, failureThreshold: 3),
            livenessProbe: Probe(
                httpGet: HTTPGetAction(path: "/healthz", port: .string("http")), initialDelaySeconds: 10, periodSeconds: 10,
                timeoutSeconds: 5, failureThreshold: 6),
            lifecycle: Lifecycle(preStop: LifecycleHandler(httpGet: HTTPGetAction(path: "/drain", port: .string("http")))),
            securityContext: containerSecurity(spec.podTemplate?.containerSecurityContext),
            volumeMounts: mounts)

        var podLabels = spec.podTemplate?.labels ?? [:]
        for (k, v) in names.labels(component: "broker") { podLabels[k] = v }
        var podAnnotations = spec.podTemplate?.annotations ?? [:]
        podAnnotations[configHashAnnotation] = configHash

        let overrides = spec.podTemplate
        let podSpec = PodSpec(
            containers: [container],
            volumes: [
                Volume(name: "config", configMap: ConfigMapVolumeSource(name: names.configMap)),
                Volume(name: "tmp", emptyDir: EmptyDirVolumeSource(sizeLimit: "256Mi")),
            ] + security.map(\.volume),
            serviceAccountName: overrides?.serviceAccountName,
            automountServiceAccountToken: false,
            enableServiceLinks: false,
            securityContext: podSecurity(overrides?.securityContext),
            terminationGracePeriodSeconds: spec.terminationGracePeriodSeconds ?? FloeDefaults.terminationGracePeriodSeconds,
            nodeSelector: overrides?.nodeSelector,
            tolerations: overrides?.tolerations,
            affinity: overrides?.affinity,
            priorityClassName: overrides?.priorityClassName,
            imagePullSecrets: overrides?.imagePullSecrets.map { $0.map { LocalObjectReference(name: $0) } },
            topologySpreadConstraints: overrides?.topologySpreadConstraints ?? defaultSpread(names))

        var claims: [PersistentVolumeClaim]? = nil
        if fileWAL, let size = storage.wal?.volumeSize {
            claims = [
                PersistentVolumeClaim(
                    metadata: ObjectMeta(name: "wal", labels: names.selectorLabels),
                    spec: PersistentVolumeClaimSpec(
                        accessModes: ["ReadWriteOnce"], storageClassName: storage.wal?.storageClassName,
                        resources: ResourceRequirements(requests: ["storage": size])))
            ]
        }

        return StatefulSet(
            metadata: meta,
            spec: StatefulSetSpec(
                replicas: spec.replicas ?? FloeDefaults.replicas,
                serviceName: names.headlessService,
                selector: LabelSelector(matchLabels: names.selectorLabels),
                podManagementPolicy: "Parallel",
                updateStrategy: StatefulSetUpdateStrategy(type: "RollingUpdate"),
                template: PodTemplateSpec(metadata: ObjectMeta(labels: podLabels, annotations: podAnnotations), spec: podSpec),
                volumeClaimTemplates: claims,
                revisionHistoryLimit: 5))
    }
}

extension Render {
    /// The Secret volumes of the security settings, each mounted read-only: the listeners' TLS
    /// Secret, the client CA, the users file and the object store's CA. Rotating the TLS Secret
    /// changes nothing here (the broker reloads the files), so it restarts no pod.
    static func securityVolumes(_ spec: FloeClusterSpec, names: ClusterNames) -> [(volume: Volume, mount: VolumeMount)] {
        let plan = SecurityPlan(spec)
        var out: [(Volume, VolumeMount)] = []
        func add(_ name: String, secret: String, at path: String) {
            out.append((Volume(name: name, secret: SecretVolumeSource(secretName: secret, defaultMode: SecurityLayout.secretMode)),
                        VolumeMount(name: name, mountPath: path, readOnly: true)))
        }
        if plan.usesTLS, let tls = plan.tls {
            add("tls", secret: tls.secretName, at: SecurityLayout.tlsDir)
            if plan.clientAuth != "none", let ca = plan.clientCASecret { add("client-ca", secret: ca, at: SecurityLayout.clientCADir) }
        }
        if plan.usesSASL { add("users", secret: names.usersSecret, at: SecurityLayout.usersDir) }
        if let ca = spec.storage.caSecretName { add("s3-ca", secret: ca, at: SecurityLayout.storageCADir) }
        return out
    }
}

/// HMAC-SHA256 through libcrypto, as lower-case hex.
enum HMACSHA256 {
    static func hex(key: String, _ message: String) -> String {
        let k = Array(key.utf8)
        let m = Array(message.utf8)
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let result = k.withUnsafeBytes { kb in
            m.withUnsafeBytes { mb in
                HMAC(EVP_sha256(), kb.baseAddress, Int32(kb.count), mb.baseAddress?.assumingMemoryBound(to: UInt8.self), mb.count, &out, &length)
            }
        }
        precondition(result != nil && length == 32, "HMAC-SHA256 failed")
        return out.map { String(format: "%02x", $0) }.joined()
    }
}

/// FNV-1a, 64-bit: a stable content hash for change detection (not for security).
public enum FNV1a {
    public static func hash(_ text: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in text.utf8 {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01B3
        }
        return h
    }

    public static func hex(_ text: String) -> String {
        let s = String(hash(text), radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
