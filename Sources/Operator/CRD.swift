import KubeAPI

// The FloeCluster CustomResourceDefinition, generated from the Swift types above. Each type's
// schema switches over its CodingKeys, so a field without a schema does not compile.

extension FloeClusterSpec: SchemaDescribed {
    public static var schema: Schema {
        .object(CodingKeys.self, "Desired state of a Floe cluster.", required: [.storage]) { key in
            switch key {
            case .image: .string("Broker container image.").defaulted(.string(FloeDefaults.image)).minLength(1)
            case .imagePullPolicy:
                .string("Pull policy of the broker image.").oneOf(["Always", "IfNotPresent", "Never"])
                    .defaulted(.string(FloeDefaults.imagePullPolicy))
            case .replicas:
                .int32("Number of brokers. The scale subresource sets this field.").minimum(0).maximum(1000)
                    .defaulted(.int(Int64(FloeDefaults.replicas)))
            case .resources: resourceRequirementsSchema
            case .storage: StorageSpec.schema
            case .listeners: ListenersSpec.schema
            case .config:
                .stringMap("Broker configuration properties, written to the broker's properties file.")
            case .podTemplate: PodTemplateOverrides.schema
            case .terminationGracePeriodSeconds:
                .int64("Time a stopping broker has to hand over its partitions before it is killed.").minimum(10)
                    .maximum(3600).defaulted(.int(FloeDefaults.terminationGracePeriodSeconds))
            case .autoscaling: AutoscalingSpec.schema
            case .balancing: BalancingSpec.schema
            case .disruptionBudget:
                .object(DisruptionBudgetSpec.CodingKeys.self, "The brokers' PodDisruptionBudget.") { key in
                    switch key {
                    case .maxUnavailable:
                        .int32("Brokers a voluntary disruption may take down at once.").minimum(0).defaulted(.int(1))
                    }
                }
            case .users:
                .array(of: UserSpec.schema, "SASL users; the operator writes them, with its own, into the Secret <cluster>-users.")
                    .maxItems(1000).listMapKeyed("name")
            case .authorization: AuthorizationSpec.schema
            }
        }
        .rule(
            "!has(self.autoscaling) || !self.autoscaling.enabled || (self.replicas >= self.autoscaling.minBrokers && self.replicas <= self.autoscaling.maxBrokers)",
            message: "spec.replicas must lie within [autoscaling.minBrokers, autoscaling.maxBrokers] while autoscaling is enabled")
    }
}

let resourceRequirementsSchema: Schema = .object(ResourceRequirementsKeys.self, "Broker container resources.") { key in
    switch key {
    case .limits: .map(of: .quantity("A quantity."), "Resource limits, e.g. cpu: \"2\", memory: 2Gi.")
    case .requests: .map(of: .quantity("A quantity."), "Resource requests, e.g. cpu: 500m, memory: 1Gi.")
    }
}

/// The keys of `ResourceRequirements` (whose own CodingKeys are synthesized and private).
enum ResourceRequirementsKeys: String, CodingKey, CaseIterable { case limits, requests }
/// The keys of `Toleration`.
enum TolerationKeys: String, CodingKey, CaseIterable { case key, `operator`, value, effect, tolerationSeconds }
enum PodSecurityKeys: String, CodingKey, CaseIterable { case runAsNonRoot, runAsUser, runAsGroup, fsGroup, seccompProfile }
enum ContainerSecurityKeys: String, CodingKey, CaseIterable {
    case runAsNonRoot, runAsUser, readOnlyRootFilesystem, allowPrivilegeEscalation, capabilities, seccompProfile
}
enum CapabilityKeys: String, CodingKey, CaseIterable { case add, drop }
enum SeccompKeys: String, CodingKey, CaseIterable { case type }

extension Schema {
    static var seccompProfile: Schema {
        .object(SeccompKeys.self, "Seccomp profile.", required: [.type]) { _ in
            .string("RuntimeDefault, Localhost or Unconfined.").oneOf(["RuntimeDefault", "Localhost", "Unconfined"])
        }
    }
}

extension StorageSpec: SchemaDescribed {
    public static var schema: Schema {
        .object(CodingKeys.self, "Object storage holding all of the cluster's data.", required: [.bucket]) { key in
            switch key {
            case .bucket:
                .string("Bucket URL: s3://bucket[/prefix] or file:///path (a local directory, for tests).")
                    .pattern("^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|file:///.*)$").maxLength(1024)
            case .endpoint:
                .string("S3 endpoint URL (e.g. http://minio.minio:9000); the AWS endpoint for the region when absent.")
                    .pattern("^https?://.+").maxLength(1024)
            case .region: .string("S3 region.").defaulted(.string(FloeDefaults.region)).minLength(1).maxLength(64)
            case .pathStyle: .boolean("Use path-style S3 URLs (MinIO and most S3-compatible servers).").defaulted(false)
            case .credentials: StorageCredentials.schema
            case .anonymous: .boolean("Access S3 without credentials. Exclusive with credentials.").defaulted(false)
            case .wal: WALSpec.schema
            case .caSecretName:
                .string("Secret whose ca.crt is the CA bundle of an https endpoint (a private object store).").minLength(1).maxLength(253)
            }
        }
        .rule(
            "!self.bucket.startsWith('s3://') || has(self.credentials) || self.anonymous",
            message: "s3 storage needs credentials (a Secret reference) unless anonymous is true")
        .rule("!(has(self.credentials) && self.anonymous)", message: "credentials and anonymous are exclusive")
    }
}

extension StorageCredentials: SchemaDescribed {
    public static var schema: Schema {
        .object(CodingKeys.self, "S3 credentials from a Secret in the cluster's namespace.", required: [.secretName]) { key in
            switch key {
            case .secretName: .string("Name of the Secret.").minLength(1).maxLength(253)
            case .accessKeyIdKey:
                .string("Key of the access key id in the Secret.").defaulted(.string(FloeDefaults.accessKeyIdKey)).minLength(1)
            case .secretAccessKeyKey:
                .string("Key of the secret access key in the Secret.").defaulted(.string(FloeDefaults.secretAccessKeyKey))
                    .minLength(1)
            case .sessionTokenKey: .string("Key of an optional session token in the Secret.").minLength(1)
            }
        }
    }
}

extension WALSpec: SchemaDescribed {
    public static var schema: Schema {
        .object(CodingKeys.self, "Write-ahead log of the brokers.") { key in
            switch key {
            case .kind:
                .string("object: in the bucket (stateless brokers); file: on a per-broker volume.").oneOf(["object", "file"])
                    .defaulted(.string(FloeDefaults.walKind))
            case .volumeSize: .quantity("Size of each broker's WAL volume; required for the file WAL.")
            case .storageClassName: .string("Storage class of the WAL volumes.").minLength(1)
            }
        }
        .rule("self.kind != 'file' || has(self.volumeSize)", message: "the file WAL needs volumeSize")
    }
}

extension ListenersSpec: SchemaDescribed {
    public static var schema: Schema {
        .object(CodingKeys.self, "Ports and exposure of the brokers.") { key in
            switch key {
            case .kafkaPort:
                .int32("Kafka protocol port.").minimum(1024).maximum(65535).defaulted(.int(Int64(FloeDefaults.kafkaPort)))
            case .httpPort:
                .int32("HTTP port for /metrics, /healthz, /readyz.").minimum(1024).maximum(65535)
                    .defaulted(.int(Int64(FloeDefaults.httpPort)))
            case .serviceType:
                .string("Type of the bootstrap Service.").oneOf(["ClusterIP", "NodePort", "LoadBalancer"])
                    .defaulted(.string(FloeDefaults.serviceType))
            case .external: ExternalListenerSpec.schema
            case .tls: ListenerTLSSpec.schema
            case .authentication: ListenerAuthenticationSpec.schema
            }
        }
        .rule("self.kafkaPort != self.httpPort", message: "kafkaPort and httpPort must differ")
    }
}

extension ExternalListenerSpec: SchemaDescribed {
    public static var schema: Schema {
        .object(CodingKeys.self, "A listener for clients outside the cluster: one Service per broker, external advertised addresses.") { key in
            switch key {
            case .type:
                .string("NodePort (broker n at advertisedHost:nodePortBase+n) or LoadBalancer (broker n at advertisedHost:port).")
                    .oneOf(["NodePort", "LoadBalancer"]).defaulted(.string(FloeDefaults.externalType))
            case .port:
                .int32("Container and LoadBalancer port of the external listener.").minimum(1024).maximum(65535)
                    .defaulted(.int(Int64(FloeDefaults.externalPort)))
            case .advertisedHost:
                .string("Host advertised to external clients; {node} is the broker's ordinal, $(POD_IP) and $(HOST_IP) the pod's and "
                        + "its node's IP. NodePort default: $(HOST_IP). Required for LoadBalancer.").minLength(1)
            case .nodePortBase:
                .int32("NodePort: broker n gets node port nodePortBase + n.").minimum(30000).maximum(32767)
                    .defaulted(.int(Int64(FloeDefaults.externalNodePortBase)))
            case .tls: ListenerTLSSpec.schema
            case .authentication: ListenerAuthenticationSpec.schema
            }
        }
        .rule("self.type != 'LoadBalancer' || has(self.advertisedHost)", message: "a LoadBalancer external listener needs advertisedHost")
    }
}

extension ListenerTLSSpec: SchemaDescribed {
    public static var schema: Schema {
        .object(CodingKeys.self, "TLS on the listener; the broker reloads rotated certificates without a restart.", required: [.secretName]) { key in
            switch key {
            case .secretName:
                .string("kubernetes.io/tls Secret with tls.crt and tls.key (and, for the internal listener, ca.crt: the CA that signed tls.crt).")
                    .minLength(1).maxLength(253)
            case .caSecretName: .string("Secret whose ca.crt verifies client certificates.").minLength(1).maxLength(253)
            case .clientAuth:
                .string("Client certificates: none, requested or required (required or requested needs caSecretName).")
                    .oneOf(["none", "requested", "required"]).defaulted("none")
            }
        }
        .rule("self.clientAuth == 'none' || has(self.caSecretName)", message: "clientAuth requested or required needs caSecretName")
    }
}

extension ListenerAuthenticationSpec: SchemaDescribed {
    public static var schema: Schema {
        .object(CodingKeys.self, "How the listener's clients authenticate.", required: [.type]) { key in
            switch key {
            case .type:
                .string("scram-sha-512, scram-sha-256 or plain (SASL, users from spec.users), or tls (client certificates; needs tls with caSecretName).")
                    .oneOf(["scram-sha-512", "scram-sha-256", "plain", "tls"])
            }
        }
    }
}

extension UserSpec: SchemaDescribed {
    public static var schema: Schema {
        .object(CodingKeys.self, "A SASL user and the Secret key holding its password.", required: [.name, .passwordSecret]) { key in
            switch key {
            case .name:
                .string("User name (the principal is User:<name>).").minLength(1).maxLength(253).pattern("^[A-Za-z0-9._@-]+$")
            case .passwordSecret:
                .object(SecretKeyReference.CodingKeys.self, "A key of a Secret in the cluster's namespace.", required: [.name, .key]) { key in
                    switch key {
                    case .name: .string("Secret name.").minLength(1).maxLength(253)
                    case .key: .string("Key in the Secret.").minLength(1).maxLength(253)
                    }
                }
            }
        }
    }
}

extension AuthorizationSpec: SchemaDescribed {
    public static var schema: Schema {
        .object(CodingKeys.self, "Authorization of Kafka requests.") { key in
            switch key {
            case .type: .string("acl: Kafka ACLs are enforced; none: everything is allowed.").oneOf(["acl", "none"]).defaulted("none")
            case .superUsers:
                .array(of: .string("A principal, e.g. User:admin or User:CN=ops,O=acme.").pattern("^User:.+"),
                       "Principals that pass every check (the operator's own users always do).")
            }
        }
    }
}

extension PodTemplateOverrides: SchemaDescribed {
    public static var schema: Schema {
        .object(CodingKeys.self, "Additions to the broker pods.") { key in
            switch key {
            case .annotations: .stringMap("Annotations added to the broker pods.")
            case .labels: .stringMap("Labels added to the broker pods (the operator's own labels win).")
            case .nodeSelector: .stringMap("Node selector of the broker pods.")
            case .tolerations:
                .array(
                    of: .object(TolerationKeys.self, "A v1 Toleration.") { key in
                        switch key {
                        case .key: .string("Taint key.")
                        case .operator: .string("Exists or Equal.").oneOf(["Exists", "Equal"])
                        case .value: .string("Taint value.")
                        case .effect: .string("Taint effect.").oneOf(["NoSchedule", "PreferNoSchedule", "NoExecute"])
                        case .tolerationSeconds: .int64("How long a NoExecute taint is tolerated.")
                        }
                    }, "Tolerations of the broker pods.")
            case .affinity: .opaqueObject("A v1 Affinity for the broker pods, passed through unchanged.")
            case .priorityClassName: .string("Priority class of the broker pods.")
            case .serviceAccountName: .string("Service account of the broker pods.")
            case .imagePullSecrets: .array(of: .string("A Secret name.").minLength(1), "Secrets used to pull the broker image.")
            case .topologySpreadConstraints:
                .array(of: .opaqueObject("A v1 TopologySpreadConstraint."),
                       "Topology spread constraints of the broker pods, passed through unchanged (default: spread across nodes; [] for none).")
            case .env: .stringMap("Extra environment variables of the broker container (names the operator sets are refused).")
            case .securityContext:
                .object(PodSecurityKeys.self, "Pod security context, field by field over the operator's (uid 65532, non-root, seccomp RuntimeDefault).") { key in
                    switch key {
                    case .runAsNonRoot: Schema(["type": "boolean", "description": "Refuse to run as root."])
                    case .runAsUser: .int64("User id.").minimum(0)
                    case .runAsGroup: .int64("Group id.").minimum(0)
                    case .fsGroup: .int64("Group owning mounted volumes.").minimum(0)
                    case .seccompProfile: .seccompProfile
                    }
                }
            case .containerSecurityContext:
                .object(ContainerSecurityKeys.self, "Broker container security context, field by field over the operator's (non-root, read-only root, no escalation, no capabilities).") { key in
                    switch key {
                    case .runAsNonRoot: Schema(["type": "boolean", "description": "Refuse to run as root."])
                    case .runAsUser: .int64("User id.").minimum(0)
                    case .readOnlyRootFilesystem: Schema(["type": "boolean", "description": "Mount the root file system read-only."])
                    case .allowPrivilegeEscalation: Schema(["type": "boolean", "description": "Allow setuid and the like."])
                    case .capabilities:
                        .object(CapabilityKeys.self, "Linux capabilities.") { key in
                            switch key {
                            case .add: .array(of: .string("A capability, e.g. NET_BIND_SERVICE."), "Capabilities added.")
                            case .drop: .array(of: .string("A capability, or ALL."), "Capabilities dropped.")
                            }
                        }
                    case .seccompProfile: .seccompProfile
                    }
                }
            }
        }
    }
}

extension AutoscalingSpec: SchemaDescribed {
    public static var schema: Schema {
        .object(CodingKeys.self, "Autoscaling policy: desired brokers from per-broker load targets.") { key in
            switch key {
            case .enabled: .boolean("Let the operator change spec.replicas from measured load.").defaulted(false)
            case .minBrokers: .int32("Fewest brokers.").minimum(1).maximum(1000).defaulted(.int(Int64(FloeDefaults.minBrokers)))
            case .maxBrokers: .int32("Most brokers.").minimum(1).maximum(1000).defaulted(.int(Int64(FloeDefaults.maxBrokers)))
            case .targets: AutoscalingTargets.schema
            case .tolerancePercent:
                .int32("No scaling while every metric is within this percentage of its target.").minimum(0).maximum(100)
                    .defaulted(.int(Int64(FloeDefaults.tolerancePercent)))
            case .scaleUp:
                ScalingBehavior.schema(
                    "Scale-up behaviour.", window: FloeDefaults.scaleUpWindowSeconds, step: FloeDefaults.scaleUpMaxStep)
            case .scaleDown:
                ScalingBehavior.schema(
                    "Scale-down behaviour.", window: FloeDefaults.scaleDownWindowSeconds, step: FloeDefaults.scaleDownMaxStep)
            case .dryRun: .boolean("Decide and report (status, Events) without changing the broker count.").defaulted(false)
            case .schedules:
                .array(of: ScheduleSpec.schema, "Known peaks: windows that raise the minimum broker count ahead of time.").maxItems(50)
                    .listMapKeyed("name")
            case .predictive: PredictiveSpec.schema
            }
        }
        .rule("self.minBrokers <= self.maxBrokers", message: "minBrokers must not exceed maxBrokers")
    }
}

extension ScheduleSpec: SchemaDescribed {
    public static var schema: Schema {
        .object(CodingKeys.self, "A window with a broker floor, raised leadTimeSeconds before it opens.", required: [.name, .start, .durationMinutes]) {
            key in
            switch key {
            case .name: .string("Name, used in decisions and status.").minLength(1).maxLength(63).pattern("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
            case .start:
                .string("Cron (minute hour day-of-month month day-of-week) of each window's start; *, lists, ranges, steps, jan-dec, sun-sat.")
                    .pattern("^\\s*\\S+(\\s+\\S+){4}\\s*$")
            case .timeZone: .string("IANA time zone of start (Europe/Berlin); daylight-saving changes are followed.").defaulted("UTC")
            case .durationMinutes: .int32("How long each window stays open.").minimum(1).maximum(10080)
            case .minBrokers: .int32("Brokers to keep during the window.").minimum(1).maximum(1000)
            case .expectedBytesInPerSecond:
                .int64("Expected produced bytes per second during the window; kept as brokers at the bytes-in target.").minimum(1)
            case .leadTimeSeconds:
                .int32("The floor is raised this long before the window opens.").minimum(0).maximum(86400)
                    .defaulted(.int(Int64(FloeDefaults.scheduleLeadTimeSeconds)))
            }
        }
        .rule("has(self.minBrokers) || has(self.expectedBytesInPerSecond)", message: "a schedule needs minBrokers or expectedBytesInPerSecond")
    }
}

extension PredictiveSpec: SchemaDescribed {
    public static var schema: Schema {
        .object(CodingKeys.self, "Predictive floor from the daily load curve (history in status.autoscaling.loadHistory).") { key in
            switch key {
            case .enabled: .boolean("Keep capacity for the load predicted by time of day.").defaulted(false)
            case .historyDays:
                .int32("Days of 5-minute peaks kept.").minimum(1).maximum(14).defaulted(.int(Int64(FloeDefaults.predictiveHistoryDays)))
            case .lookaheadMinutes:
                .int32("The prediction covers the next this many minutes.").minimum(5).maximum(1440)
                    .defaulted(.int(Int64(FloeDefaults.predictiveLookaheadMinutes)))
            case .marginPercent:
                .int32("Headroom over the predicted peak.").minimum(0).maximum(1000).defaulted(.int(Int64(FloeDefaults.predictiveMarginPercent)))
            }
        }
    }
}

extension AutoscalingTargets: SchemaDescribed {
    public static var schema: Schema {
        .object(CodingKeys.self, "Per-broker load targets; a target left out is not used.") { key in
            switch key {
            case .bytesInPerSecond: .int64("Produced bytes per second per broker.").minimum(1)
            case .bytesOutPerSecond: .int64("Fetched bytes per second per broker.").minimum(1)
            case .requestsPerSecond: .int64("Kafka requests per second per broker.").minimum(1)
            case .cpuUtilizationPercent: .int32("CPU use per broker, percent of its request.").minimum(1).maximum(100)
            }
        }
    }
}

extension ScalingBehavior {
    static func schema(_ description: String, window: Int32, step: Int32) -> Schema {
        .object(CodingKeys.self, description) { key in
            switch key {
            case .stabilizationWindowSeconds:
                .int32("A decision must hold this long before it is acted on.").minimum(0).maximum(3600)
                    .defaulted(.int(Int64(window)))
            case .maxStepBrokers: .int32("Most brokers added or removed in one step.").minimum(1).maximum(100).defaulted(.int(Int64(step)))
            }
        }
    }
}

extension BalancingSpec: SchemaDescribed {
    public static var schema: Schema {
        .object(CodingKeys.self, "Partition balancing between scaling events.") { key in
            switch key {
            case .enabled: .boolean("Move partitions to even out load.").defaulted(true)
            case .intervalSeconds:
                .int32("Seconds between balancing rounds.").minimum(10).maximum(86400)
                    .defaulted(.int(Int64(FloeDefaults.balancingIntervalSeconds)))
            case .maxMovesPerRound:
                .int32("Most partition moves in one round.").minimum(1).maximum(10000)
                    .defaulted(.int(Int64(FloeDefaults.maxMovesPerRound)))
            case .dryRun: .boolean("Compute and report plans without moving partitions.").defaulted(false)
            case .tolerancePercent:
                .int32("Band: every broker's bytes in + out within the mean ± this percentage.").minimum(1).maximum(100)
                    .defaulted(.int(Int64(FloeDefaults.balancingTolerancePercent)))
            case .moveCooldownSeconds:
                .int32("A moved partition is not moved again, and no round starts, within this many seconds.").minimum(0).maximum(86400)
                    .defaulted(.int(Int64(FloeDefaults.moveCooldownSeconds)))
            }
        }
    }
}

enum ConditionKeys: String, CodingKey, CaseIterable {
    case type, status, observedGeneration, lastTransitionTime, reason, message
}

extension FloeClusterStatus: SchemaDescribed {
    public static var schema: Schema {
        .object(CodingKeys.self, "Observed state, written by the operator.") { key in
            switch key {
            case .observedGeneration: .int64("Generation of the spec the status was computed from.")
            case .conditions:
                .array(
                    of: .object(
                        ConditionKeys.self, "A metav1.Condition.", required: [.type, .status, .lastTransitionTime, .reason, .message]
                    ) { key in
                        switch key {
                        case .type: .string("Ready, Progressing or Degraded.").maxLength(316)
                        case .status: .string("True, False or Unknown.").oneOf(["True", "False", "Unknown"])
                        case .observedGeneration: .int64("Generation the condition was computed from.").minimum(0)
                        case .lastTransitionTime:
                            Schema(["type": "string", "format": "date-time", "description": "When status last changed."])
                        case .reason: .string("CamelCase reason.").maxLength(1024)
                        case .message: .string("Human-readable detail.").maxLength(32768)
                        }
                    }, "Ready, Progressing and Degraded."
                ).listMapKeyed("type")
            case .replicas: .int32("Brokers that exist.")
            case .readyReplicas: .int32("Brokers that are ready.")
            case .selector: .string("Label selector of the broker pods (scale subresource).")
            case .bootstrap: .string("Bootstrap address for Kafka clients.")
            case .load:
                .object(ClusterLoad.CodingKeys.self, "Last measured load.") { key in
                    switch key {
                    case .brokers: .int32("Brokers measured.")
                    case .bytesInPerSecond: .int64("Produced bytes per second, all brokers.")
                    case .bytesOutPerSecond: .int64("Fetched bytes per second, all brokers.")
                    case .requestsPerSecond: .int64("Requests per second, all brokers.")
                    case .cpuUtilizationPercent: .int32("Mean CPU use, percent of request.")
                    case .observedAt: Schema(["type": "string", "format": "date-time", "description": "When measured."])
                    }
                }
            case .lastScaling: ScalingDecision.schema
            case .autoscaling:
                .object(AutoscalingStatus.CodingKeys.self, "The autoscaler's view (while autoscaling is enabled).") { key in
                    switch key {
                    case .desiredBrokers: .int32("Brokers the autoscaler wants now.")
                    case .phase: .string("steady, scaling out to N, or scaling in to N (draining ...).")
                    case .dryRun: Schema(["type": "boolean", "description": "Decisions are reported, not acted on."])
                    case .brokers:
                        .array(
                            of: .object(BrokerLoadStatus.CodingKeys.self, "One broker's measured load.", required: [.id, .known]) { key in
                                switch key {
                                case .id: .int32("Node id (pod ordinal).")
                                case .known: Schema(["type": "boolean", "description": "False when its metrics could not be read."])
                                case .bytesInPerSecond: .int64("Produced bytes per second.")
                                case .bytesOutPerSecond: .int64("Fetched bytes per second.")
                                case .cpuPercent: .int32("CPU seconds per second, percent of one core.")
                                case .partitions: .int32("Partitions it owns.")
                                case .produceP99Milliseconds:
                                    Schema(["type": "number", "description": "Produce p99 over the window (its histogram bucket's upper bound), ms."])
                                }
                            }, "Per broker."
                        ).listMapKeyed("id")
                    case .lastDecision: ScalingDecision.schema
                    case .floorBrokers: .int32("The highest schedule or predictive floor in force.")
                    case .floorReason: .string("Which floor and why.")
                    case .activeSchedules: .array(of: ScheduleWindowStatus.schema, "Schedule windows whose floor holds now.")
                    case .nextSchedule: ScheduleWindowStatus.schema
                    case .predictedBytesInPerSecond: .int64("Predicted peak bytes in per second over the lookahead, margin included.")
                    case .loadHistory:
                        .object(LoadHistoryStatus.CodingKeys.self, "The predictive floor's memory.", required: [.bucketSeconds, .newestBucketStart, .kibPerSecond]) {
                            key in
                            switch key {
                            case .bucketSeconds: .int32("Seconds per bucket (300).")
                            case .newestBucketStart: .int64("Unix seconds at which the newest bucket starts.")
                            case .kibPerSecond: .string("Base64 of little-endian UInt32 peak KiB/s per bucket, oldest first; 0xFFFFFFFF = no sample.")
                            }
                        }
                    }
                }
            case .brokers:
                .array(
                    of: .object(BrokerState.CodingKeys.self, "One broker pod.", required: [.name, .ready, .state]) { key in
                        switch key {
                        case .name: .string("Pod name.")
                        case .ready: Schema(["type": "boolean", "description": "Whether the pod is Ready."])
                        case .state: .string("Running, the container's waiting reason (CrashLoopBackOff, ImagePullBackOff, ...), or the pod phase.")
                        case .restarts: .int32("Container restarts.")
                        case .message: .string("Why it is not running, from the kubelet (and the last exit code).").maxLength(4096)
                        }
                    }, "Each broker pod's state."
                ).listMapKeyed("name")
            }
        }
    }
}

extension ScheduleWindowStatus {
    static var schema: Schema {
        .object(CodingKeys.self, "One schedule window.", required: [.name, .floorBrokers, .raiseAt, .start, .end]) { key in
            switch key {
            case .name: .string("Schedule name.")
            case .floorBrokers: .int32("Its floor.")
            case .raiseAt: Schema(["type": "string", "format": "date-time", "description": "When the floor is raised (start - lead time)."])
            case .start: Schema(["type": "string", "format": "date-time", "description": "When the window opens."])
            case .end: Schema(["type": "string", "format": "date-time", "description": "When the window closes and the floor falls."])
            }
        }
    }
}

extension ScalingDecision {
    static var schema: Schema {
        .object(CodingKeys.self, "A scaling decision.", required: [.time, .from, .to, .reason]) { key in
            switch key {
            case .time: Schema(["type": "string", "format": "date-time", "description": "When it was decided."])
            case .from: .int32("Brokers before.")
            case .to: .int32("Brokers after.")
            case .reason: .string("Why: metric, value, target, what was computed and what limited it.")
            }
        }
    }
}

extension Schema {
    /// A list whose items are identified by `key` (server-side apply merges them by it).
    func listMapKeyed(_ key: String) -> Schema {
        var copy = self
        copy = copy.setting("x-kubernetes-list-type", "map").setting("x-kubernetes-list-map-keys", [.string(key)])
        return copy
    }

    fileprivate func setting(_ key: String, _ value: JSONValue) -> Schema {
        var json = self.json
        json[key] = value
        return Schema(json)
    }
}

/// The CustomResourceDefinition of FloeCluster (`apiextensions.k8s.io/v1`), as a JSON value.
/// `floe-operator crd` prints it as YAML; `deploy/crd-floecluster.yaml` is that output.
public enum FloeClusterCRD {
    public static var name: String { "\(FloeCluster.resource).\(FloeCluster.group)" }

    public static func make() -> JSONValue {
        let root: JSONValue = [
            "type": "object",
            "description": "A Floe cluster: stateless Kafka-compatible brokers over object storage, run by floe-operator.",
            "required": ["spec"],
            "properties": [
                "apiVersion": ["type": "string"],
                "kind": ["type": "string"],
                "metadata": ["type": "object"],
                "spec": .object(FloeClusterSpec.schema.json),
                "status": .object(FloeClusterStatus.schema.json),
            ],
        ]
        let columns: [JSONValue] = [
            ["name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas", "description": "Desired brokers"],
            ["name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas", "description": "Ready brokers"],
            ["name": "Status", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason", "description": "Reason of the Ready condition"],
            ["name": "Bootstrap", "type": "string", "jsonPath": ".status.bootstrap", "description": "Bootstrap address", "priority": 1],
            ["name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"],
        ]
        let version: JSONValue = [
            "name": "v1alpha1",
            "served": true,
            "storage": true,
            "schema": ["openAPIV3Schema": root],
            "subresources": [
                "status": [:],
                "scale": [
                    "specReplicasPath": ".spec.replicas",
                    "statusReplicasPath": ".status.replicas",
                    "labelSelectorPath": ".status.selector",
                ],
            ],
            "additionalPrinterColumns": .array(columns),
        ]
        return [
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": [
                "name": .string(name),
                "labels": ["app.kubernetes.io/name": "floe-operator", "app.kubernetes.io/part-of": "floe"],
            ],
            "spec": [
                "group": .string(FloeCluster.group),
                "scope": "Namespaced",
                "names": [
                    "kind": .string(FloeCluster.kind),
                    "listKind": .string(FloeCluster.kind + "List"),
                    "plural": .string(FloeCluster.resource),
                    "singular": "floecluster",
                    "shortNames": [.string(FloeCluster.shortName)],
                    "categories": ["all", "floe"],
                ],
                "versions": [version],
            ],
        ]
    }

    /// The CRD as YAML, with a header saying where it comes from.
    public static func yaml() -> String {
        "# Generated by `floe-operator crd` from Sources/Operator/CRD.swift. Do not edit.\n" + YAMLEmitter.emit(make())
    }
}
