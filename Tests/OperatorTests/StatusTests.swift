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
