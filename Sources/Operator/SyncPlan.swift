import KubeAPI

/// What the syncer should do with one object.
public enum SyncAction: Sendable, Equatable {
    /// The object does not exist: create it (server-side apply).
    case create(ManagedObject)
    /// The object exists and is ours, but its rendered hash differs: apply the new form.
    case update(ManagedObject)
    /// The object exists, is ours and its hash matches: apply anyway to undo edits to fields we
    /// own (the API server writes nothing when nothing differs), but record no change.
    case reapply(ManagedObject)
    /// The object is ours but no longer rendered (for example the cluster changed shape):
    /// delete it, with a precondition on its uid.
    case delete(ObjectKey, uid: String?)

    public var key: ObjectKey {
        switch self {
        case .create(let o), .update(let o), .reapply(let o): o.key
        case .delete(let k, _): k
        }
    }

    /// Whether carrying it out changes the cluster (worth an Event).
    public var isChange: Bool {
        if case .reapply = self { return false }
        return true
    }
}

/// An object as observed in the cluster: only what the plan needs.
public struct ObservedObject: Sendable, Equatable {
    public var key: ObjectKey
    public var metadata: ObjectMeta

    public init(key: ObjectKey, metadata: ObjectMeta) {
        self.key = key
        self.metadata = metadata
    }
}

/// The result of comparing desired with observed objects. `conflicts` are objects we would
/// create or update but that exist without our controller reference: they are left alone.
public struct SyncPlan: Sendable, Equatable {
    public var actions: [SyncAction]
    public var conflicts: [ObjectKey]

    /// Decides, per object, create / update / reapply / delete. Pure and deterministic
    /// (actions sorted: creates and updates in the desired order, then deletes by key).
    ///
    /// Rules:
    /// 1. A desired object that is not observed is created.
    /// 2. A desired object observed with our controller reference (`uid == ownerUID`) is
    ///    updated when its `floe.dev/rendered-hash` differs, reapplied otherwise.
    /// 3. A desired object observed without our controller reference is a conflict: never
    ///    adopted, never overwritten.
    /// 4. An observed object with our controller reference that is not desired is deleted,
    ///    unless it is already being deleted.
    /// 5. Any other observed object is ignored.
    public static func plan(desired: [ManagedObject], observed: [ObservedObject], ownerUID: String) -> SyncPlan {
        var observedByKey: [ObjectKey: ObservedObject] = [:]
        for o in observed { observedByKey[o.key] = o }
        func isOurs(_ m: ObjectMeta) -> Bool { m.controllerReference?.uid == ownerUID }

        var actions: [SyncAction] = []
        var conflicts: [ObjectKey] = []
        var desiredKeys = Set<ObjectKey>()
        for object in desired {
            let key = object.key
            desiredKeys.insert(key)
            guard let existing = observedByKey[key] else {
                actions.append(.create(object))
                continue
            }
            guard isOurs(existing.metadata) else {
                conflicts.append(key)
                continue
            }
            let want = object.metadata.annotations?[Render.hashAnnotation]
            let have = existing.metadata.annotations?[Render.hashAnnotation]
            actions.append(want != nil && want == have ? .reapply(object) : .update(object))
        }
        let stale = observed.filter { !desiredKeys.contains($0.key) && isOurs($0.metadata) && $0.metadata.deletionTimestamp == nil }
        for o in stale.sorted(by: { $0.key < $1.key }) {
            actions.append(.delete(o.key, uid: o.metadata.uid))
        }
        return SyncPlan(actions: actions, conflicts: conflicts.sorted())
    }
}
