import Foundation
import KubeAPI
import Testing

@testable import Operator

@Suite struct StatusTests {
    let t0 = Date(timeIntervalSince1970: 1_700_000_000)
    let t1 = Date(timeIntervalSince1970: 1_700_000_600)

    func statefulSet(generation: Int64 = 2, observed: Int64 = 2, replicas: Int32, ready: Int32, updated: Int32) -> StatefulSet {
        StatefulSet(
            metadata: ObjectMeta(name: "minio-broker", generation: generation), spec: nil,
            status: StatefulSetStatus(observedGeneration: observed, replicas: replicas, readyReplicas: ready, updatedReplicas: updated))
    }

    func conditions(_ s: FloeClusterStatus) -> [String: String] {
        Dictionary(uniqueKeysWithValues: (s.conditions ?? []).map { ($0.type, "\($0.status)/\($0.reason)") })
    }

    @Test func invalidSpecIsDegradedWithTheProblems() throws {
        var cluster = try sampleCluster("s3-minio")
        cluster.metadata.generation = 7
        cluster.spec.storage.bucket = "gs://x"
        let problems = FloeClusterValidation.problems(cluster)
        let s = StatusComputer.compute(StatusInput(cluster: cluster, statefulSet: nil, problems: problems, now: t0))
        #expect(conditions(s) == ["Degraded": "True/InvalidSpec", "Ready": "False/InvalidSpec", "Progressing": "False/InvalidSpec"])
        let degraded = try #require(s.condition("Degraded"))
        #expect(degraded.message.contains("spec.storage.bucket \"gs://x\" must start with s3:// or file:///"))
        #expect(s.observedGeneration == 7)
        #expect(s.conditions?.allSatisfy { $0.observedGeneration == 7 && $0.lastTransitionTime == "2023-11-14T22:13:20Z" } == true)
    }

    func pod(_ name: String, ready: Bool, waiting: String? = nil, restarts: Int32 = 0, exitCode: Int32? = nil) -> Pod {
        let state = waiting.map { ContainerState(waiting: .init(reason: $0, message: "back-off restarting failed container")) }
            ?? ContainerState(running: .object([:]))
        return Pod(
            metadata: ObjectMeta(name: name, namespace: "floe-test"),
            status: PodStatus(
                phase: "Running", conditions: [PodCondition(type: "Ready", status: ready ? "True" : "False")],
                containerStatuses: [
                    ContainerStatus(name: "broker", ready: ready, restartCount: restarts, state: state,
                                    lastState: exitCode.map { ContainerState(terminated: .init(exitCode: $0)) })
                ]))
    }

    @Test func crashLoopingBrokersAreDegradedNamingThePods() throws {
        var cluster = try sampleCluster("s3-minio")
        cluster.metadata.generation = 2
        let pods = [
            pod("minio-broker-0", ready: true), pod("minio-broker-2", ready: false, waiting: "ImagePullBackOff"),
            pod("minio-broker-1", ready: false, waiting: "CrashLoopBackOff", restarts: 4, exitCode: 2),
        ]
        let s = StatusComputer.compute(StatusInput(
            cluster: cluster, statefulSet: statefulSet(replicas: 3, ready: 1, updated: 3), problems: [], pods: pods, now: t0))
        #expect(conditions(s) == ["Degraded": "True/CrashLoopBackOff", "Ready": "False/CrashLoopBackOff", "Progressing": "False/CrashLoopBackOff"])
        let message = try #require(s.condition("Degraded")?.message)
        #expect(message.contains("minio-broker-1: CrashLoopBackOff after 4 restarts (last exit code 2)"))
        #expect(message.contains("minio-broker-2: ImagePullBackOff"))
        #expect(!message.contains("minio-broker-0"))
        #expect(s.condition("Ready")?.message == "1/3 brokers ready; broker pods are failing (see Degraded).")
        #expect(s.brokers == [
            BrokerState(name: "minio-broker-0", ready: true, state: "Running", restarts: 0),
            BrokerState(name: "minio-broker-1", ready: false, state: "CrashLoopBackOff", restarts: 4,
                        message: "back-off restarting failed container (last exit code 2)"),
            BrokerState(name: "minio-broker-2", ready: false, state: "ImagePullBackOff", restarts: 0,
                        message: "back-off restarting failed container"),
        ])
        // Pods that are merely starting are not failures.
        let starting = StatusComputer.compute(StatusInput(
            cluster: cluster, statefulSet: statefulSet(replicas: 3, ready: 1, updated: 3), problems: [],
            pods: [pod("minio-broker-0", ready: false, waiting: "ContainerCreating")], now: t0))
        #expect(conditions(starting)["Degraded"] == "False/AsExpected")
    }

    @Test func zeroReplicasIsNotReady() throws {
        var cluster = try sampleCluster("s3-minio")
        cluster.metadata.generation = 2
        cluster.spec.replicas = 0
        let s = StatusComputer.compute(StatusInput(
            cluster: cluster, statefulSet: statefulSet(replicas: 0, ready: 0, updated: 0), problems: [], now: t0))
        #expect(conditions(s) == ["Degraded": "False/AsExpected", "Ready": "False/NoBrokers", "Progressing": "False/Stable"])
    }

    @Test func lifecycleFromCreatingToReady() throws {
        var cluster = try sampleCluster("s3-minio")
        cluster.metadata.generation = 2
        var s = StatusComputer.compute(StatusInput(cluster: cluster, statefulSet: nil, problems: [], now: t0))
        #expect(conditions(s) == ["Degraded": "False/AsExpected", "Ready": "False/Creating", "Progressing": "True/Creating"])
        #expect(s.bootstrap == "minio-bootstrap.floe-test.svc:9092")
        #expect(s.selector == "app.kubernetes.io/component=broker,app.kubernetes.io/instance=minio,app.kubernetes.io/name=floe")

        cluster.status = s
        s = StatusComputer.compute(
            StatusInput(cluster: cluster, statefulSet: statefulSet(replicas: 1, ready: 0, updated: 1), problems: [], now: t1))
        #expect(conditions(s)["Progressing"] == "True/ScalingUp")
        // Unchanged status values keep their transition time; none changed here.
        #expect(s.conditions?.allSatisfy { $0.lastTransitionTime == KubeTime.format(t0) } == true)

        cluster.status = s
        s = StatusComputer.compute(
            StatusInput(cluster: cluster, statefulSet: statefulSet(replicas: 3, ready: 3, updated: 3), problems: [], now: t1))
        #expect(conditions(s) == ["Degraded": "False/AsExpected", "Ready": "True/AllBrokersReady", "Progressing": "False/Stable"])
        #expect(s.replicas == 3 && s.readyReplicas == 3)
        #expect(s.condition("Ready")?.lastTransitionTime == KubeTime.format(t1))
        #expect(s.condition("Progressing")?.lastTransitionTime == KubeTime.format(t1))
        #expect(s.condition("Degraded")?.lastTransitionTime == KubeTime.format(t0))
    }

    @Test func pendingRolloutAndScaleDownAreProgressing() throws {
        var cluster = try sampleCluster("s3-minio")
        cluster.metadata.generation = 2
        let notObserved = StatusComputer.compute(
            StatusInput(cluster: cluster, statefulSet: statefulSet(generation: 5, observed: 4, replicas: 3, ready: 3, updated: 3), problems: [], now: t0))
        #expect(conditions(notObserved)["Progressing"] == "True/RollingUpdate")
        let rolling = StatusComputer.compute(
            StatusInput(cluster: cluster, statefulSet: statefulSet(replicas: 3, ready: 3, updated: 1), problems: [], now: t0))
        #expect(conditions(rolling)["Ready"] == "False/RollingUpdate")
        let down = StatusComputer.compute(
            StatusInput(cluster: cluster, statefulSet: statefulSet(replicas: 5, ready: 5, updated: 5), problems: [], now: t0))
        #expect(conditions(down)["Progressing"] == "True/ScalingDown")
    }

    @Test func conflictsAndSyncErrorsAreDegraded() throws {
        let cluster = try sampleCluster("minimal")
        let key = ObjectKey(apiVersion: "v1", kind: "Service", namespace: "floe-test", name: "local-bootstrap")
        let s = StatusComputer.compute(StatusInput(cluster: cluster, statefulSet: nil, problems: [], conflicts: [key], now: t0))
        #expect(conditions(s)["Degraded"] == "True/OwnershipConflict")
        #expect(s.condition("Degraded")?.message.contains("Service floe-test/local-bootstrap") == true)
        let e = StatusComputer.compute(StatusInput(cluster: cluster, statefulSet: nil, problems: [], syncError: "403 Forbidden", now: t0))
        #expect(conditions(e)["Degraded"] == "True/SyncFailed")
    }

    @Test func autoscalerFieldsAreCarriedOver() throws {
        var cluster = try sampleCluster("autoscaling")
        let decision = ScalingDecision(time: "2023-11-14T22:00:00Z", from: 3, to: 5, reason: "bytes in 180% of target")
        cluster.status = FloeClusterStatus(load: ClusterLoad(brokers: 3, bytesInPerSecond: 1000), lastScaling: decision)
        let s = StatusComputer.compute(StatusInput(cluster: cluster, statefulSet: nil, problems: [], now: t0))
        #expect(s.lastScaling == decision && s.load?.bytesInPerSecond == 1000)
    }
}
