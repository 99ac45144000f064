import Foundation
import KubeAPI
import Testing

@testable import Operator

@Suite struct CRDTests {
    @Test func checkedInCRDMatchesTheGenerator() throws {
        let yaml = FloeClusterCRD.yaml()
        for path in ["deploy/crd-floecluster.yaml", "charts/floe-operator/crds/floecluster.yaml"] {
            if let diff = try compareWithFile(yaml, repositoryRoot.appendingPathComponent(path)) {
                Issue.record(Comment(rawValue: diff))
            }
        }
    }

    @Test func crdShape() throws {
        let crd = FloeClusterCRD.make()
        #expect(crd["metadata"]?["name"] == "floeclusters.floe.dev")
        #expect(crd["spec"]?["names"]?["shortNames"] == ["floe"])
        guard case .array(let versions)? = crd["spec"]?["versions"], let v = versions.first else {
            Issue.record("no versions")
            return
        }
        #expect(v["name"] == "v1alpha1")
        #expect(v["subresources"]?["status"] == [:])
        #expect(
            v["subresources"]?["scale"]
                == ["specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"])
        let spec = v["schema"]?["openAPIV3Schema"]?["properties"]?["spec"]
        #expect(spec?["properties"]?["replicas"]?["default"] == 3)
        #expect(spec?["properties"]?["autoscaling"]?["x-kubernetes-validations"]?.description.contains("self.minBrokers <= self.maxBrokers") == true)
    }

    /// Every field of a fully populated FloeCluster has a schema node, and every schema
    /// property is a field the types encode: the schema is neither missing nor inventing fields.
    @Test func schemaCoversExactlyTheEncodedFields() throws {
        let full = FloeCluster(
            metadata: ObjectMeta(name: "full"),
            spec: FloeClusterSpec(
                image: "i", imagePullPolicy: "Always", replicas: 3, resources: ResourceRequirements(limits: ["cpu": "1"], requests: ["cpu": "1"]),
                storage: StorageSpec(
                    bucket: "s3://b-b", endpoint: "http://e", region: "r", pathStyle: true,
                    credentials: StorageCredentials(secretName: "s", accessKeyIdKey: "a", secretAccessKeyKey: "b", sessionTokenKey: "c"),
                    anonymous: false, wal: WALSpec(kind: "file", volumeSize: "1Gi", storageClassName: "sc"), caSecretName: "s3-ca"),
                listeners: ListenersSpec(kafkaPort: 9092, httpPort: 8080, serviceType: "ClusterIP",
                                         external: ExternalListenerSpec(type: "NodePort", port: 9094, advertisedHost: "h", nodePortBase: 31090,
                                                                        tls: ListenerTLSSpec(secretName: "t", caSecretName: "ca", clientAuth: "required"),
                                                                        authentication: ListenerAuthenticationSpec(type: "tls")),
                                         tls: ListenerTLSSpec(secretName: "t", caSecretName: "ca", clientAuth: "required"),
                                         authentication: ListenerAuthenticationSpec(type: "scram-sha-512")),
                config: ["k": "v"],
                podTemplate: PodTemplateOverrides(
                    annotations: ["a": "b"], labels: ["c": "d"], nodeSelector: ["e": "f"],
                    tolerations: [Toleration(key: "k", operator: "Equal", value: "v", effect: "NoSchedule", tolerationSeconds: 5)],
                    affinity: ["nodeAffinity": [:]], priorityClassName: "p", serviceAccountName: "sa",
                    imagePullSecrets: ["regcred"], topologySpreadConstraints: [["maxSkew": 1]], env: ["TZ": "UTC"],
                    securityContext: PodSecurityContext(runAsNonRoot: true, runAsUser: 1, runAsGroup: 1, fsGroup: 1, seccompProfile: SeccompProfile(type: "RuntimeDefault")),
                    containerSecurityContext: SecurityContext(
                        runAsNonRoot: true, runAsUser: 1, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false,
                        capabilities: Capabilities(add: ["NET_BIND_SERVICE"], drop: ["ALL"]), seccompProfile: SeccompProfile(type: "RuntimeDefault"))),
                terminationGracePeriodSeconds: 60,
                autoscaling: AutoscalingSpec(
                    enabled: true, minBrokers: 1, maxBrokers: 5,
                    targets: AutoscalingTargets(bytesInPerSecond: 1, bytesOutPerSecond: 1, requestsPerSecond: 1, cpuUtilizationPercent: 50),
                    tolerancePercent: 10, scaleUp: ScalingBehavior(stabilizationWindowSeconds: 0, maxStepBrokers: 2),
                    scaleDown: ScalingBehavior(stabilizationWindowSeconds: 300, maxStepBrokers: 1), dryRun: false,
                    schedules: [ScheduleSpec(name: "black-friday", start: "0 20 27 11 *", timeZone: "Europe/Berlin", durationMinutes: 60, minBrokers: 4,
                                             expectedBytesInPerSecond: 1, leadTimeSeconds: 300)],
                    predictive: PredictiveSpec(enabled: true, historyDays: 7, lookaheadMinutes: 60, marginPercent: 20)),
                balancing: BalancingSpec(enabled: true, intervalSeconds: 60, maxMovesPerRound: 5, dryRun: true, tolerancePercent: 20, moveCooldownSeconds: 60),
                disruptionBudget: DisruptionBudgetSpec(maxUnavailable: 2),
                users: [UserSpec(name: "u", passwordSecret: SecretKeyReference(name: "s", key: "k"))],
                authorization: AuthorizationSpec(type: "acl", superUsers: ["User:admin"])),
            status: FloeClusterStatus(
                observedGeneration: 1,
                conditions: [Condition(type: "Ready", status: "True", observedGeneration: 1, lastTransitionTime: "t", reason: "r", message: "m")],
                replicas: 3, readyReplicas: 3, selector: "a=b", bootstrap: "b:9092",
                load: ClusterLoad(brokers: 3, bytesInPerSecond: 1, bytesOutPerSecond: 1, requestsPerSecond: 1, cpuUtilizationPercent: 1, observedAt: "t"),
                lastScaling: ScalingDecision(time: "t", from: 1, to: 2, reason: "r"),
                brokers: [BrokerState(name: "b-0", ready: false, state: "CrashLoopBackOff", restarts: 2, message: "m")],
                autoscaling: AutoscalingStatus(
                    desiredBrokers: 2, phase: "steady", dryRun: true,
                    brokers: [BrokerLoadStatus(id: 0, known: true, bytesInPerSecond: 1, bytesOutPerSecond: 1, cpuPercent: 1, partitions: 1, produceP99Milliseconds: 5)],
                    lastDecision: ScalingDecision(time: "t", from: 1, to: 2, reason: "r"), floorBrokers: 4, floorReason: "schedule black-friday floor 4",
                    activeSchedules: [ScheduleWindowStatus(name: "black-friday", floorBrokers: 4, raiseAt: "t", start: "t", end: "t")],
                    nextSchedule: ScheduleWindowStatus(name: "black-friday", floorBrokers: 4, raiseAt: "t", start: "t", end: "t"),
                    predictedBytesInPerSecond: 1, loadHistory: LoadHistoryStatus(bucketSeconds: 300, newestBucketStart: 0, kibPerSecond: "AAAAAA=="))))
        let encoded = try JSONValue(encoding: full)
        guard case .array(let versions)? = FloeClusterCRD.make()["spec"]?["versions"], let schema = versions.first?["schema"]?["openAPIV3Schema"] else {
            Issue.record("no schema")
            return
        }
        var encodedPaths = Set<String>()
        var schemaPaths = Set<String>()
        collectValuePaths(encoded, "", into: &encodedPaths)
        collectSchemaPaths(schema, "", into: &schemaPaths)
        let ignored: Set<String> = [".metadata.name"]  // metadata is the API server's, not ours
        #expect(encodedPaths.subtracting(schemaPaths).subtracting(ignored).sorted() == [], "fields without schema")
        #expect(schemaPaths.subtracting(encodedPaths).sorted() == [], "schema properties no field encodes")
    }
}

/// Paths of object properties in a value; map-like objects (labels, config, resources,
/// affinity, env, topology spread constraints) stop at the map itself.
func collectValuePaths(_ v: JSONValue, _ path: String, into set: inout Set<String>) {
    let maps: Set<String> = [
        ".spec.config", ".spec.podTemplate.annotations", ".spec.podTemplate.labels", ".spec.podTemplate.nodeSelector",
        ".spec.resources.limits", ".spec.resources.requests", ".spec.podTemplate.affinity", ".spec.podTemplate.env",
        ".spec.podTemplate.topologySpreadConstraints",
    ]
    if !path.isEmpty { set.insert(path) }
    if maps.contains(path) { return }
    switch v {
    case .object(let o): for (k, child) in o { collectValuePaths(child, "\(path).\(k)", into: &set) }
    case .array(let a): for child in a { collectValuePaths(child, path, into: &set) }
    default: break
    }
}

func collectSchemaPaths(_ s: JSONValue, _ path: String, into set: inout Set<String>) {
    if !path.isEmpty { set.insert(path) }
    if case .object(let props)? = s["properties"] {
        for (k, child) in props { collectSchemaPaths(child, "\(path).\(k)", into: &set) }
    }
    if let items = s["items"] { collectSchemaPaths(items, path, into: &set) }
}

extension JSONValue: CustomStringConvertible {
    public var description: String { (try? KubeJSON.string(self)) ?? "<unencodable>" }
}
