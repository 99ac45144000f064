import BrokerSettings
import Foundation
import KubeAPI
import Testing

@testable import Operator

@Suite struct RenderGoldenTests {
    @Test(arguments: sampleNames) func renderedObjectsMatchGoldenFile(name: String) throws {
        let yaml = try renderYAML(try sampleCluster(name))
        if let diff = try compareWithFile(yaml, goldenDirectory.appendingPathComponent("\(name).rendered.yaml")) {
            Issue.record(Comment(rawValue: diff))
        }
    }

    @Test(arguments: sampleNames) func renderingIsDeterministic(name: String) throws {
        let c = try sampleCluster(name)
        #expect(try renderYAML(c) == renderYAML(c))
    }
}

@Suite struct RenderTests {
    @Test func everyObjectIsOwnedLabelledAndHashed() throws {
        let cluster = try sampleCluster("s3-minio")
        let objects = try Render.render(cluster)
        #expect(objects.map(\.key.kind) == ["ConfigMap", "Service", "Service", "StatefulSet", "PodDisruptionBudget"])
        for o in objects {
            let m = o.metadata
            #expect(m.namespace == "floe-test")
            #expect(
                m.ownerReferences == [
                    OwnerReference(
                        apiVersion: "floe.dev/v1alpha1", kind: "FloeCluster", name: "minio", uid: cluster.metadata.uid!, controller: true,
                        blockOwnerDeletion: true)
                ])
            #expect(m.labels?["app.kubernetes.io/managed-by"] == "floe-operator")
            #expect(m.labels?["app.kubernetes.io/instance"] == "minio")
            #expect(m.labels?["app.kubernetes.io/name"] == "floe")
            #expect(m.labels?["app.kubernetes.io/component"] != nil)
            #expect(m.annotations?[Render.hashAnnotation] == (try Render.renderedHash(o)))
            #expect(nullCount(try o.json()) == 0)
        }
    }

    /// The external listener: a NodePort Service per broker (node port base + ordinal, selecting
    /// the pod by name), the container port, the broker flags (the broker expands {N+node}) and
    /// the node's IP in the environment.
    @Test func externalListenerRendersAServicePerBrokerAndTheBrokerFlags() throws {
        let objects = try Render.render(try sampleCluster("external"))
        let external = objects.compactMap(\.service).filter { $0.metadata.name?.hasSuffix("-external") == true }
        #expect(external.map(\.metadata.name) == ["edge-broker-0-external", "edge-broker-1-external", "edge-broker-2-external"])
        for (i, s) in external.enumerated() {
            #expect(s.spec?.type == "NodePort")
            #expect(s.spec?.ports?.map(\.nodePort) == [Int32(31090 + i)])
            #expect(s.spec?.ports?.first?.port == 9094 && s.spec?.ports?.first?.targetPort == .string("external"))
            #expect(s.spec?.selector?["statefulset.kubernetes.io/pod-name"] == "edge-broker-\(i)")
        }
        let sts = try #require(objects.compactMap(\.statefulSet).first)
        let c = try #require(sts.spec?.template.spec?.containers.first)
        #expect(c.args?.contains("--external-listen=0.0.0.0:9094") == true)
        #expect(c.args?.contains("--external-advertise=$(HOST_IP):{31090+node}") == true)
        #expect(c.ports?.contains { $0.name == "external" && $0.containerPort == 9094 } == true)
        #expect(c.env?.contains { $0.name == "HOST_IP" && $0.valueFrom?.fieldRef?.fieldPath == "status.hostIP" } == true)

        // Without an external listener nothing of this is rendered.
        let plain = try Render.render(try sampleCluster("s3-minio"))
        #expect(!plain.compactMap(\.service).contains { $0.metadata.name?.hasSuffix("-external") == true })
        let plainArgs = try #require(plain.compactMap(\.statefulSet).first?.spec?.template.spec?.containers.first?.args)
        #expect(!plainArgs.contains { $0.hasPrefix("--external") })
    }

    /// Pod template additions: image pull secrets, extra env after the operator's own, the
    /// default spread across nodes (or the user's, or none), and the disruption budget.
    @Test func podTemplateAdditionsAndDisruptionBudget() throws {
        var cluster = try sampleCluster("s3-minio")
        let defaults = try Render.render(cluster)
        let defaultPod = try #require(defaults.compactMap(\.statefulSet).first?.spec?.template.spec)
        #expect(defaultPod.topologySpreadConstraints == Render.defaultSpread(ClusterNames(cluster: "minio", namespace: "floe-test")))
        #expect(defaults.compactMap(\.podDisruptionBudget).first?.spec?.maxUnavailable == .int(1))

        cluster.spec.podTemplate = PodTemplateOverrides(imagePullSecrets: ["regcred"], topologySpreadConstraints: [], env: ["TZ": "UTC", "A": "1"])
        cluster.spec.disruptionBudget = DisruptionBudgetSpec(maxUnavailable: 0)
        #expect(FloeClusterValidation.problems(cluster) == [])
        let objects = try Render.render(cluster)
        let pod = try #require(objects.compactMap(\.statefulSet).first?.spec?.template.spec)
        #expect(pod.imagePullSecrets == [LocalObjectReference(name: "regcred")])
        #expect(pod.topologySpreadConstraints == .array([]))
        let env = try #require(pod.containers.first?.env).map(\.name)
        #expect(env.suffix(2) == ["A", "TZ"] && env.first == "POD_NAME")
        #expect(objects.compactMap(\.podDisruptionBudget).first?.spec?.maxUnavailable == .int(0))
    }

    @Test func securityContextOverridesLayOverTheDefaults() throws {
        var cluster = try sampleCluster("s3-minio")
        cluster.spec.podTemplate = PodTemplateOverrides(
            securityContext: PodSecurityContext(runAsUser: 1_000_680_000, fsGroup: 1_000_680_000),
            containerSecurityContext: SecurityContext(capabilities: Capabilities(add: ["NET_BIND_SERVICE"], drop: ["ALL"])))
        #expect(FloeClusterValidation.problems(cluster) == [])
        let pod = try #require(try Render.render(cluster).compactMap(\.statefulSet).first?.spec?.template.spec)
        // The user's fields win; the rest stay the operator's secure defaults.
        #expect(pod.securityContext == PodSecurityContext(
            runAsNonRoot: true, runAsUser: 1_000_680_000, runAsGroup: Render.brokerUser, fsGroup: 1_000_680_000,
            seccompProfile: SeccompProfile(type: "RuntimeDefault")))
        let c = try #require(pod.containers.first?.securityContext)
        #expect(c.capabilities == Capabilities(add: ["NET_BIND_SERVICE"], drop: ["ALL"]))
        #expect(c.readOnlyRootFilesystem == true && c.allowPrivilegeEscalation == false && c.runAsNonRoot == true)
    }

    @Test func brokerPodShape() throws {
        let sts = try #require(try Render.render(try sampleCluster("s3-minio")).compactMap(\.statefulSet).first)
        let spec = try #require(sts.spec)
        #expect(spec.replicas == 3 && spec.serviceName == "minio-brokers" && spec.volumeClaimTemplates == nil)
        let pod = try #require(spec.template.spec)
        let c = try #require(pod.containers.first)
        #expect(c.args?.contains("--advertise=$(POD_NAME).minio-brokers.floe-test.svc:9092") == true)
        #expect(c.args?.contains("--node-id=$(NODE_ID)") == true)
        // The bucket and its connection settings are in the properties file, not a flag.
        #expect(c.args?.contains { $0.hasPrefix("--storage") } == false)
        #expect(c.args?.contains("--http=:8080") == true)
        #expect(c.readinessProbe?.httpGet?.path == "/readyz" && c.livenessProbe?.httpGet?.path == "/healthz")
        #expect(c.lifecycle?.preStop?.httpGet?.path == "/drain")
        #expect(pod.terminationGracePeriodSeconds == 120)
        #expect(c.securityContext?.readOnlyRootFilesystem == true && c.securityContext?.allowPrivilegeEscalation == false)
        #expect(c.securityContext?.capabilities?.drop == ["ALL"] && pod.securityContext?.runAsNonRoot == true)
        #expect(c.volumeMounts?.contains { $0.mountPath == "/tmp" } == true)
        let env = Dictionary(uniqueKeysWithValues: (c.env ?? []).map { ($0.name, $0) })
        #expect(env["AWS_ACCESS_KEY_ID"]?.valueFrom?.secretKeyRef == KeySelector(name: "floe-minio-credentials", key: "AWS_ACCESS_KEY_ID"))
        #expect(env["AWS_SECRET_ACCESS_KEY"]?.valueFrom?.secretKeyRef?.key == "AWS_SECRET_ACCESS_KEY")
        #expect(env["NODE_ID"]?.valueFrom?.fieldRef?.fieldPath == "metadata.labels['apps.kubernetes.io/pod-index']")
        #expect(env.values.allSatisfy { $0.value == nil }, "no literal values, credentials only by reference")
    }

    @Test func servicesAndBudget() throws {
        let objects = try Render.render(try sampleCluster("minimal"))
        let services = objects.compactMap(\.service)
        let headless = try #require(services.first { $0.metadata.name == "local-brokers" })
        #expect(headless.spec?.clusterIP == "None" && headless.spec?.publishNotReadyAddresses == true)
        let bootstrap = try #require(services.first { $0.metadata.name == "local-bootstrap" })
        #expect(bootstrap.spec?.clusterIP == nil && bootstrap.spec?.ports?.map(\.port) == [9092])
        guard case .podDisruptionBudget(let pdb)? = objects.last else {
            Issue.record("expected the last object to be the PodDisruptionBudget, got \(String(describing: objects.last))")
            return
        }
        #expect(pdb.spec?.maxUnavailable == .int(1))
        #expect(pdb.spec?.selector?.matchLabels == ClusterNames(cluster: "local", namespace: "floe-test").selectorLabels)
    }

    @Test func fileWALAddsAVolumeClaimAndNothingElseDoes() throws {
        for name in sampleNames {
            let sts = try #require(try Render.render(try sampleCluster(name)).compactMap(\.statefulSet).first)
            let claims = sts.spec?.volumeClaimTemplates ?? []
            if name == "file-wal" {
                #expect(claims.count == 1 && claims[0].spec.resources?.requests?["storage"] == "20Gi")
                #expect(claims[0].spec.storageClassName == "fast-ssd")
                #expect(sts.spec?.template.spec?.containers[0].volumeMounts?.contains { $0.mountPath == Render.walDir } == true)
            } else {
                #expect(claims.isEmpty, "\(name) must not ask for volumes")
            }
        }
    }

    @Test func configChangeRollsPodsAndChangesHashes() throws {
        var cluster = try sampleCluster("s3-minio")
        let before = try Render.render(cluster)
        cluster.spec.config?["num.partitions"] = "12"
        let after = try Render.render(cluster)
        let podHash = { (o: [ManagedObject]) in o.compactMap(\.statefulSet).first?.spec?.template.metadata?.annotations?[Render.configHashAnnotation] }
        #expect(podHash(before) != podHash(after))
        #expect(before[0].metadata.annotations != after[0].metadata.annotations)
        // Services do not depend on the configuration.
        #expect(before[1] == after[1] && before[2] == after[2])
        #expect(after[0].configMap?.data?["broker.properties"]?.contains("num.partitions=12\n") == true)
    }

    @Test func podOverridesAreApplied() throws {
        let sts = try #require(try Render.render(try sampleCluster("autoscaling")).compactMap(\.statefulSet).first)
        let pod = try #require(sts.spec?.template)
        #expect(pod.spec?.nodeSelector == ["workload": "streaming"])
        #expect(pod.spec?.tolerations == [Toleration(key: "dedicated", operator: "Equal", value: "streaming", effect: "NoSchedule")])
        #expect(pod.spec?.affinity?["podAntiAffinity"] != nil)
        #expect(pod.metadata?.annotations?["prometheus.io/scrape"] == "true")
        #expect(pod.metadata?.annotations?[Render.configHashAnnotation] != nil)
    }

    @Test func userLabelsCannotStealTheSelector() throws {
        var cluster = try sampleCluster("minimal")
        cluster.spec.podTemplate = PodTemplateOverrides(labels: ["app.kubernetes.io/instance": "other", "team": "a"])
        let sts = try #require(try Render.render(cluster).compactMap(\.statefulSet).first)
        #expect(sts.spec?.template.metadata?.labels?["app.kubernetes.io/instance"] == "local")
        #expect(sts.spec?.template.metadata?.labels?["team"] == "a")
    }

    @Test func propertiesAreEscaped() throws {
        var spec = FloeClusterSpec(storage: StorageSpec(bucket: "file:///data"))
        spec.config = ["a key=x": " lead\\ing\nnext", "plain": "v=1:2"]
        let text = Render.brokerProperties(spec)
        #expect(text.contains("a\\ key\\=x=\\ lead\\\\ing\\nnext\n"))
        #expect(text.contains("plain=v=1:2\n"))
        #expect(text.contains("storage=file:///data\n") && text.contains("wal=object\n"))
        #expect(try PropertiesFile.decode(text) == ["storage": "file:///data", "wal": "object", "a key=x": " lead\\ing\nnext", "plain": "v=1:2"])
    }

    /// The contract: every key the operator renders (properties and flags) is a declared broker
    /// setting, and the S3 connection settings reach the broker in the storage URL it parses.
    @Test(arguments: sampleNames) func renderedKeysAreDeclaredBrokerSettings(name: String) throws {
        let objects = try Render.render(try sampleCluster(name))
        let properties = try #require(objects.compactMap(\.configMap).first?.data?[Render.propertiesFile])
        for (key, value) in try PropertiesFile.decode(properties) {
            #expect(BrokerSettings.problem(key, value) == nil, "\(name): \(key)=\(value)")
        }
        let container = try #require(objects.compactMap(\.statefulSet).first?.spec?.template.spec?.containers.first)
        for arg in container.args ?? [] where arg != "--config=\(Render.configDir)/\(Render.propertiesFile)" {
            let flag = try #require(arg.split(separator: "=", maxSplits: 1).first.map(String.init))
            #expect(BrokerSettings.all.contains { $0.flag == flag }, "\(name): \(arg) is not a declared setting's flag")
        }
    }

    @Test func s3ConnectionSettingsAreInTheStorageURL() throws {
        var storage = StorageSpec(bucket: "s3://floe-data/cluster-a", endpoint: "http://minio.minio.svc:9000", pathStyle: true)
        #expect(Render.storageURL(storage) == "s3://floe-data/cluster-a?endpoint=http://minio.minio.svc:9000&path_style=true&region=us-east-1")
        storage.endpoint = nil
        storage.anonymous = true
        storage.region = "eu west"
        #expect(Render.storageURL(storage) == "s3://floe-data/cluster-a?anonymous=true&path_style=true&region=eu%20west")
        #expect(Render.storageURL(StorageSpec(bucket: "file:///var/lib/floe")) == "file:///var/lib/floe")
    }

    @Test func invalidOrIncompleteClustersAreNotRendered() throws {
        var cluster = try sampleCluster("minimal")
        cluster.spec.storage.bucket = "gs://nope"
        #expect(throws: OperatorError.self) { try Render.render(cluster) }
        var noUID = try sampleCluster("minimal")
        noUID.metadata.uid = nil
        #expect(throws: OperatorError.notRenderable(cluster: "floe-test/local", missing: "metadata.uid")) { try Render.render(noUID) }
    }
}

func nullCount(_ v: JSONValue) -> Int {
    switch v {
    case .null: return 1
    case .array(let a): return a.map(nullCount).reduce(0, +)
    case .object(let o): return o.values.map(nullCount).reduce(0, +)
    default: return 0
    }
}
