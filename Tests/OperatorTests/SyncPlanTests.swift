import Foundation
import KubeAPI
import Testing

@testable import Operator

@Suite struct SyncPlanTests {
    func observed(_ o: ManagedObject, owner: String?, hash: String? = nil, terminating: Bool = false) -> ObservedObject {
        var m = o.metadata
        m.uid = "uid-\(o.key.name)"
        m.ownerReferences = owner.map { [OwnerReference(apiVersion: FloeCluster.apiVersion, kind: FloeCluster.kind, name: "x", uid: $0, controller: true)] }
        if let hash { m.annotations = [Render.hashAnnotation: hash] }
        if terminating { m.deletionTimestamp = "2023-11-14T22:13:20Z" }
        return ObservedObject(key: o.key, metadata: m)
    }

    @Test func nothingObservedCreatesEverything() throws {
        let desired = try Render.render(try sampleCluster("minimal"))
        let plan = SyncPlan.plan(desired: desired, observed: [], ownerUID: "u")
        #expect(plan.actions == desired.map { .create($0) })
        #expect(plan.conflicts.isEmpty)
    }

    @Test func unchangedObjectsAreReappliedChangedOnesUpdated() throws {
        let cluster = try sampleCluster("minimal")
        let uid = cluster.metadata.uid!
        let desired = try Render.render(cluster)
        var obs = desired.map { observed($0, owner: uid, hash: $0.metadata.annotations?[Render.hashAnnotation]) }
        obs[3] = observed(desired[3], owner: uid, hash: "0000000000000000")  // the StatefulSet changed
        let plan = SyncPlan.plan(desired: desired, observed: obs, ownerUID: uid)
        #expect(plan.actions.map(\.isChange) == [false, false, false, true, false])
        #expect(plan.actions[3] == .update(desired[3]))
    }

    @Test func foreignObjectsAreConflictsNeverTouched() throws {
        let cluster = try sampleCluster("minimal")
        let uid = cluster.metadata.uid!
        let desired = try Render.render(cluster)
        let foreign = [observed(desired[2], owner: nil), observed(desired[4], owner: "someone-else")]
        let plan = SyncPlan.plan(desired: desired, observed: foreign, ownerUID: uid)
        #expect(plan.conflicts == [desired[4].key, desired[2].key].sorted())
        #expect(!plan.actions.contains { $0.key == desired[2].key || $0.key == desired[4].key })
        #expect(plan.actions.count == 3)
    }

    @Test func staleOwnedObjectsAreDeletedOthersIgnored() throws {
        let cluster = try sampleCluster("minimal")
        let uid = cluster.metadata.uid!
        let desired = try Render.render(cluster)
        let extra = ManagedObject.service(Service(metadata: ObjectMeta(name: "local-old", namespace: "floe-test")))
        let unowned = ManagedObject.service(Service(metadata: ObjectMeta(name: "not-ours", namespace: "floe-test")))
        let going = ManagedObject.configMap(ConfigMap(metadata: ObjectMeta(name: "local-going", namespace: "floe-test")))
        let obs = desired.map { observed($0, owner: uid, hash: $0.metadata.annotations?[Render.hashAnnotation]) } + [
            observed(extra, owner: uid), observed(unowned, owner: nil), observed(going, owner: uid, terminating: true),
        ]
        let plan = SyncPlan.plan(desired: desired, observed: obs, ownerUID: uid)
        let deletes = plan.actions.filter { if case .delete = $0 { return true } else { return false } }
        #expect(deletes == [.delete(extra.key, uid: "uid-local-old")])
        #expect(plan.conflicts.isEmpty)
    }

    @Test func changingTheSpecChangesOnlyAffectedHashes() throws {
        var cluster = try sampleCluster("minimal")
        let uid = cluster.metadata.uid!
        let before = try Render.render(cluster)
        let obs = before.map { observed($0, owner: uid, hash: $0.metadata.annotations?[Render.hashAnnotation]) }
        cluster.spec.replicas = 2
        let plan = SyncPlan.plan(desired: try Render.render(cluster), observed: obs, ownerUID: uid)
        #expect(plan.actions.filter(\.isChange).map(\.key.kind) == ["StatefulSet"])
    }
}
