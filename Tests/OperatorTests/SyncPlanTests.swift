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

    // MARK: skipping applies of objects that match the cache

    /// `o` as the API server would store it: our fields plus uid, resourceVersion, a foreign
    /// annotation and label, server defaults inside lists, and status.
    func stored(_ o: ManagedObject, owner: String) throws -> ObservedObject {
        var json = try o.json()
        edit(&json, ["metadata", "uid"], .string("uid-\(o.key.name)"))
        edit(&json, ["metadata", "resourceVersion"], .string("42"))
        edit(&json, ["metadata", "annotations", "someone.else/note"], .string("x"))
        edit(&json, ["metadata", "labels", "team"], .string("payments"))
        edit(&json, ["status"], .object(["observedGeneration": .int(3)]))
        if case .statefulSet = o {
            edit(&json, ["spec", "minReadySeconds"], .int(0))
            edit(&json, ["spec", "template", "spec", "containers", "0", "terminationMessagePath"], .string("/dev/termination-log"))
        }
        if case .service = o { edit(&json, ["spec", "sessionAffinity"], .string("None")) }
        var m = o.metadata
        m.uid = "uid-\(o.key.name)"
        return ObservedObject(key: o.key, metadata: m, content: json)
    }

    /// Sets (or with nil removes) the value at `path`; numeric components index arrays.
    func edit(_ v: inout JSONValue, _ path: [String], _ new: JSONValue?) {
        guard let head = path.first else {
            if let new { v = new }
            return
        }
        let rest = Array(path.dropFirst())
        switch v {
        case .array(var a):
            let i = Int(head)!
            if i == a.count { a.append(.object([:])) }  // one past the end appends
            if rest.isEmpty, new == nil { a.remove(at: i) } else { edit(&a[i], rest, new) }
            v = .array(a)
        default:
            var o: [String: JSONValue]
            if case .object(let existing) = v { o = existing } else { o = [:] }
            if rest.isEmpty, new == nil {
                o[head] = nil
            } else {
                var child = o[head] ?? .object([:])
                edit(&child, rest, new)
                o[head] = child
            }
            v = .object(o)
        }
    }

    @Test func objectsMatchingTheCacheAreKeptWithoutARequest() throws {
        for sample in ["minimal", "autoscaling", "file-wal", "s3-minio"] {
            let cluster = try sampleCluster(sample)
            let uid = cluster.metadata.uid!
            let desired = try Render.render(cluster)
            let obs = try desired.map { try stored($0, owner: uid) }
            let plan = SyncPlan.plan(desired: desired, observed: obs, ownerUID: uid)
            #expect(plan.actions == desired.map { .keep($0.key) }, "sample \(sample)")
            #expect(plan.actions.filter(\.isChange).isEmpty)
        }
    }

    /// Built-in objects from a list response have no apiVersion/kind (a real API server omits
    /// them); they are still recognised as unchanged.
    @Test func objectsFromAListWithoutKindAreKept() throws {
        let cluster = try sampleCluster("s3-minio")
        let uid = cluster.metadata.uid!
        let desired = try Render.render(cluster)
        let obs = try desired.map { o in
            var stored = try stored(o, owner: uid)
            edit(&stored.content!, ["apiVersion"], nil)
            edit(&stored.content!, ["kind"], nil)
            return stored
        }
        let plan = SyncPlan.plan(desired: desired, observed: obs, ownerUID: uid)
        #expect(plan.actions == desired.map { .keep($0.key) })
    }

    @Test func anEditedFieldWeOwnIsReappliedOthersKept() throws {
        let cluster = try sampleCluster("minimal")
        let uid = cluster.metadata.uid!
        let desired = try Render.render(cluster)
        // (object index, path, new value or nil to remove): each an edit of a field we render.
        let edits: [(Int, [String], JSONValue?)] = [
            (0, ["data", Render.propertiesFile], .string("storage.url=s3://elsewhere\n")),
            (1, ["spec", "publishNotReadyAddresses"], .bool(false)),
            (2, ["spec", "ports", "0", "port"], .int(9999)),
            (2, ["spec", "ports", "1"], .object(["name": .string("extra"), "port": .int(1)])),  // an element added to our list
            (3, ["spec", "replicas"], .int(7)),
            (3, ["spec", "template", "spec", "containers", "0", "image"], .string("evil:latest")),
            (3, ["metadata", "labels", "app.kubernetes.io/instance"], nil),  // one of our labels removed
            (3, ["metadata", "ownerReferences", "0", "blockOwnerDeletion"], .bool(false)),
            (4, ["spec", "maxUnavailable"], .int(2)),
        ]
        for (index, path, value) in edits {
            var obs = try desired.map { try stored($0, owner: uid) }
            edit(&obs[index].content!, path, value)
            let plan = SyncPlan.plan(desired: desired, observed: obs, ownerUID: uid)
            var expected = desired.map { SyncAction.keep($0.key) }
            expected[index] = .reapply(desired[index])
            #expect(plan.actions == expected, "edit \(path) of \(desired[index].key)")
        }
    }

    @Test func unknownContentOrAChangedHashIsNeverKept() throws {
        var cluster = try sampleCluster("minimal")
        let uid = cluster.metadata.uid!
        let before = try Render.render(cluster)
        var obs = try before.map { try stored($0, owner: uid) }
        obs[1].content = nil
        cluster.spec.replicas = 2
        let plan = SyncPlan.plan(desired: try Render.render(cluster), observed: obs, ownerUID: uid)
        #expect(plan.actions.map { action -> String in
            switch action {
            case .keep: "keep"
            case .reapply: "reapply"
            case .update: "update"
            case .create, .delete: "other"
            }
        } == ["keep", "reapply", "keep", "update", "keep"])
    }

    @Test func coversIgnoresExtrasAndEmptyDesiredContainers() {
        let desired: JSONValue = .object(["a": .int(1), "b": .array([]), "c": .object([:]), "d": .null,
                                          "e": .array([.object(["x": .string("y")])])])
        #expect(SyncPlan.covers(observed: .object(["a": .int(1), "e": .array([.object(["x": .string("y"), "z": .bool(true)])]), "f": .int(2)]),
                                desired: desired))
        #expect(SyncPlan.covers(observed: .object(["a": .double(1), "e": .array([.object(["x": .string("y")])])]), desired: desired))
        #expect(!SyncPlan.covers(observed: .object(["a": .int(2), "e": .array([.object(["x": .string("y")])])]), desired: desired))
        #expect(!SyncPlan.covers(observed: .object(["a": .int(1), "e": .array([])]), desired: desired))
        #expect(!SyncPlan.covers(observed: .object(["a": .int(1), "b": .array([.int(1)]), "e": .array([.object(["x": .string("y")])])]),
                                 desired: desired))
        #expect(!SyncPlan.covers(observed: .object(["e": .array([.object(["x": .string("y")])])]), desired: desired))
    }

    @Test func onlyTheStatefulSetSpecRefusalCallsForARecreate() {
        let refusal = "StatefulSet.apps \"demo-broker\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than "
            + "'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' "
            + "and 'minReadySeconds' are forbidden"
        func api(_ resource: String, _ status: Int, _ message: String) -> KubeAPIError {
            .api(verb: "apply", resource: resource, namespace: "apps", name: "demo-broker", status: status, reason: "Invalid", message: message)
        }
        #expect(SyncPlan.isImmutableFieldChange(api("statefulsets.apps", 422, refusal)))
        // The wording of older versions (fewer fields listed) too.
        #expect(SyncPlan.isImmutableFieldChange(api("statefulsets.apps", 422,
            "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'template', and 'updateStrategy' are forbidden")))
        // An invalid value is not an immutable field: re-creating would not help.
        #expect(!SyncPlan.isImmutableFieldChange(api("statefulsets.apps", 422,
            "StatefulSet.apps \"demo-broker\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0")))
        #expect(!SyncPlan.isImmutableFieldChange(api("statefulsets.apps", 500, refusal)))
        #expect(!SyncPlan.isImmutableFieldChange(api("configmaps", 422, refusal)))
        #expect(!SyncPlan.isImmutableFieldChange(.conflict(verb: "apply", resource: "statefulsets.apps", namespace: "apps", name: "x",
                                                           reason: "Conflict", message: refusal)))
    }
}
