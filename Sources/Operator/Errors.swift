import KubeAPI

/// The one error type of the Operator module. Each case names the cluster (`namespace/name`).
public enum OperatorError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The spec breaks validation rules; the cluster gets a `Degraded` condition listing them.
    case invalidSpec(cluster: String, problems: [String])
    /// The object lacks what rendering needs (namespace, uid): it did not come from the API server.
    case notRenderable(cluster: String, missing: String)
    /// A manifest could not be read as a FloeCluster.
    case badManifest(source: String, detail: String)
    /// A rendered object could not be encoded as JSON.
    case encode(object: String, detail: String)
    /// Re-creating an object (an immutable field changed) did not complete.
    case recreate(object: String, detail: String)
    /// Partition moves that did not complete within the step timeout (retried on a later tick).
    case moveTimedOut([String])
    /// A local broker process could not be started or stopped.
    case localBroker(id: Int32, detail: String)
    /// A schedule or predictive setting of `spec.autoscaling` (or its persisted load history) that cannot be used.
    case invalidSchedule(detail: String)
    /// The operator cannot open a connection with the security a cluster's internal listener needs.
    case adminSecurityUnavailable(detail: String)

    public var description: String {
        switch self {
        case .invalidSpec(let c, let p): return "FloeCluster \(c) is invalid: " + p.joined(separator: "; ")
        case .notRenderable(let c, let m): return "FloeCluster \(c) cannot be rendered: \(m) is missing"
        case .badManifest(let s, let d): return "\(s) is not a FloeCluster manifest: \(d)"
        case .encode(let o, let d): return "cannot encode \(o): \(d)"
        case .recreate(let o, let d): return "cannot re-create \(o): \(d)"
        case .moveTimedOut(let p): return "partition moves not complete in time: " + p.joined(separator: ", ")
        case .localBroker(let id, let d): return "local broker \(id): \(d)"
        case .invalidSchedule(let d): return d
        case .adminSecurityUnavailable(let d): return "cannot connect to the brokers: \(d)"
        }
    }
}
