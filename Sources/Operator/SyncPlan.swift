import KubeAPI

/// What the syncer should do with one object.
public enum SyncAction: Sendable, Equatable {
    /// The object does not exist: create it (server-side apply).
    case create(ManagedObject)
    /// The object exists and is ours, but its rendered hash differs: apply the new form.
    case update(ManagedObject)
    /// The object exists, is ours and its hash matches, but either its observed content is
    /// unknown or a field we set differs there (someone edited it): apply again to undo the
    /// edit, but record no change.
    case reapply(ManagedObject)
    /// The object exists, is ours, its hash matches and every field we set has the same value in
    /// the observed copy: nothing to send (an apply would be a no-op on the server).
    case keep(ObjectKey)
    /// The object is ours but no longer rendered (for example the cluster changed shape):
    /// delete it, with a precondition on its uid.
    case delete(ObjectKey, uid: String?)

    public var key: ObjectKey {
        switch self {
        case .create(let o), .update(let o), .reapply(let o): o.key
        case .delete(let k, _), .keep(let k): k
        }
    }

    /// Whether carrying it out changes the cluster (worth an Event).
    public var isChange: Bool {
        switch self {
        case .reapply, .keep: false
        case .create, .update, .delete: true
        }
    }
}

/// An object as observed in the cluster: only what the plan needs. `content` is the whole
/// observed object as JSON (from the informer cache); without it the plan cannot tell drift
/// and always re-applies unchanged objects.
public struct ObservedObject: Sendable, Equatable {
    public var key: ObjectKey
    public var metadata: ObjectMeta
    public var content: JSONValue?

    public init(key: ObjectKey, metadata: ObjectMeta, content: JSONValue? = nil) {
        self.key = key
        self.metadata = metadata
        self.content = content
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
    ///    updated when its `floe.dev/rendered-hash` differs. When it matches, it is kept (no
    ///    request) if the observed content covers every field we render (`covers`), and
    ///    reapplied otherwise, so an edit of a field we own is undone.
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
            if want == nil || want != have {
                actions.append(.update(object))
            } else if let content = existing.content, let rendered = renderedJSON(object), covers(observed: content, desired: rendered) {
                actions.append(.keep(key))
            } else {
                actions.append(.reapply(object))
            }
        }
        let stale = observed.filter { !desiredKeys.contains($0.key) && isOurs($0.metadata) && $0.metadata.deletionTimestamp == nil }
        for o in stale.sorted(by: { $0.key < $1.key }) {
            actions.append(.delete(o.key, uid: o.metadata.uid))
        }
        return SyncPlan(actions: actions, conflicts: conflicts.sorted())
    }

    /// The desired object as JSON, without `apiVersion` and `kind`; nil when it cannot be
    /// encoded, so it is re-applied and the apply reports the encoding error.
    ///
    /// The type is already in the key, and objects from list responses carry no
    /// `apiVersion`/`kind` (a real API server omits them on built-in list items), so comparing
    /// them made every object look edited after an operator restart: each was re-patched once,
    /// and objects never refreshed by a watch event kept being re-patched.
    static func renderedJSON(_ object: ManagedObject) -> JSONValue? {
        do {
            guard case .object(var fields) = try object.json() else { return nil }
            fields["apiVersion"] = nil
            fields["kind"] = nil
            return .object(fields)
        } catch {
            return nil
        }
    }

    /// Whether every field set in `desired` has the same value in `observed`: objects may carry
    /// more keys (server defaults, status, fields of other managers), arrays must have the same
    /// length and cover element by element, scalars must be equal. A `null` or empty
    /// object/array in `desired` is covered by an absent key. Conservative: any doubt (a server
    /// that normalises a value, an extra list element) answers false, which costs one apply.
    static func covers(observed: JSONValue, desired: JSONValue) -> Bool {
        switch (desired, observed) {
        case (.object(let d), .object(let o)):
            for (k, v) in d {
                if let ov = o[k] {
                    if !covers(observed: ov, desired: v) { return false }
                } else if !v.isEmptyOrNull {
                    return false
                }
            }
            return true
        case (.array(let d), .array(let o)):
            guard d.count == o.count else { return false }
            return zip(d, o).allSatisfy { covers(observed: $1, desired: $0) }
        case (.int(let d), .double(let o)):
            return Double(d) == o
        default:
            return desired == observed
        }
    }
}

extension JSONValue {
    fileprivate var isEmptyOrNull: Bool {
        switch self {
        case .null: true
        case .array(let a): a.isEmpty
        case .object(let o): o.isEmpty
        default: false
        }
    }
}

extension SyncPlan {
    /// Whether `error` is the API server refusing a StatefulSet update because a field other
    /// than `replicas`, `template`, `updateStrategy`, … changed (`volumeClaimTemplates`,
    /// `selector`, `serviceName`, `podManagementPolicy`): HTTP 422 with "spec: Forbidden:
    /// updates to statefulset spec for fields other than …" (the list of fields grew between
    /// Kubernetes versions; the phrase did not). Such a StatefulSet can only be re-created. Any
    /// other 422 (an invalid value) is not: re-creating would fail the same way, without the
    /// old StatefulSet.
    public static func isImmutableFieldChange(_ error: KubeAPIError) -> Bool {
        guard case .api(_, let resource, _, _, 422, _, let message) = error, resource == "statefulsets.apps" else { return false }
        return message.contains("updates to statefulset spec for fields other than")
    }
}
