import Foundation

/// A Kubernetes object kind this module knows: its group/version, kind and REST resource.
/// Conforming types carry `apiVersion` and `kind` as stored fields (set by their initialisers,
/// optional because list items from the server may omit them).
public protocol KubeObject: Codable, Sendable, Equatable {
    /// `v1`, `apps/v1`, `floe.dev/v1alpha1`.
    static var apiVersion: String { get }
    static var kind: String { get }
    /// The plural lower-case resource name used in REST paths (`statefulsets`).
    static var resource: String { get }
    var metadata: ObjectMeta { get set }
}

extension KubeObject {
    /// The API group (`""` for the core group).
    public static var group: String {
        guard let slash = apiVersion.firstIndex(of: "/") else { return "" }
        return String(apiVersion[..<slash])
    }
}

/// `metav1.ObjectMeta`, without `managedFields` (ignored on decode, never sent).
public struct ObjectMeta: Codable, Sendable, Equatable {
    public var name: String?
    public var generateName: String?
    public var namespace: String?
    public var uid: String?
    public var resourceVersion: String?
    public var generation: Int64?
    public var creationTimestamp: String?
    public var deletionTimestamp: String?
    public var labels: [String: String]?
    public var annotations: [String: String]?
    public var ownerReferences: [OwnerReference]?
    public var finalizers: [String]?

    public init(
        name: String? = nil, generateName: String? = nil, namespace: String? = nil, uid: String? = nil,
        resourceVersion: String? = nil, generation: Int64? = nil, creationTimestamp: String? = nil,
        deletionTimestamp: String? = nil, labels: [String: String]? = nil, annotations: [String: String]? = nil,
        ownerReferences: [OwnerReference]? = nil, finalizers: [String]? = nil
    ) {
        self.name = name
        self.generateName = generateName
        self.namespace = namespace
        self.uid = uid
        self.resourceVersion = resourceVersion
        self.generation = generation
        self.creationTimestamp = creationTimestamp
        self.deletionTimestamp = deletionTimestamp
        self.labels = labels
        self.annotations = annotations
        self.ownerReferences = ownerReferences
        self.finalizers = finalizers
    }

    /// The owner reference marked `controller: true`, if any (at most one exists).
    public var controllerReference: OwnerReference? {
        ownerReferences?.first { $0.controller == true }
    }
}

/// `metav1.OwnerReference`. An object has at most one reference with `controller == true`.
public struct OwnerReference: Codable, Sendable, Equatable {
    public var apiVersion: String
    public var kind: String
    public var name: String
    public var uid: String
    public var controller: Bool?
    public var blockOwnerDeletion: Bool?

    public init(apiVersion: String, kind: String, name: String, uid: String, controller: Bool? = nil, blockOwnerDeletion: Bool? = nil) {
        self.apiVersion = apiVersion
        self.kind = kind
        self.name = name
        self.uid = uid
        self.controller = controller
        self.blockOwnerDeletion = blockOwnerDeletion
    }
}

/// `metav1.ListMeta`: the list's resourceVersion (to start a watch from) and the pagination token.
public struct ListMeta: Codable, Sendable, Equatable {
    public var resourceVersion: String?
    /// The `continue` token; empty or nil when this is the last page.
    public var continueToken: String?
    public var remainingItemCount: Int64?

    enum CodingKeys: String, CodingKey {
        case resourceVersion, remainingItemCount
        case continueToken = "continue"
    }

    public init(resourceVersion: String? = nil, continueToken: String? = nil, remainingItemCount: Int64? = nil) {
        self.resourceVersion = resourceVersion
        self.continueToken = continueToken
        self.remainingItemCount = remainingItemCount
    }
}

/// A list response (`StatefulSetList`, ...). `items` is never nil: the server sends `null` or
/// omits it for an empty list, both decode as `[]`.
public struct KubeList<Item: Codable & Sendable & Equatable>: Codable, Sendable, Equatable {
    public var apiVersion: String?
    public var kind: String?
    public var metadata: ListMeta
    public var items: [Item]

    enum CodingKeys: String, CodingKey { case apiVersion, kind, metadata, items }

    public init(apiVersion: String? = nil, kind: String? = nil, metadata: ListMeta = ListMeta(), items: [Item]) {
        self.apiVersion = apiVersion
        self.kind = kind
        self.metadata = metadata
        self.items = items
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        apiVersion = try c.decodeIfPresent(String.self, forKey: .apiVersion)
        kind = try c.decodeIfPresent(String.self, forKey: .kind)
        metadata = try c.decodeIfPresent(ListMeta.self, forKey: .metadata) ?? ListMeta()
        items = try c.decodeIfPresent([Item].self, forKey: .items) ?? []
    }
}

/// One line of a watch stream. `BOOKMARK` carries only a resourceVersion; `ERROR` carries a
/// `Status` (for example `410 Gone` when the requested resourceVersion is too old).
public enum WatchEvent<Object: Codable & Sendable & Equatable>: Sendable, Equatable, Decodable {
    case added(Object)
    case modified(Object)
    case deleted(Object)
    case bookmark(resourceVersion: String)
    case error(Status)

    enum CodingKeys: String, CodingKey { case type, object }
    struct BookmarkObject: Decodable {
        struct Meta: Decodable { var resourceVersion: String }
        var metadata: Meta
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let type = try c.decode(String.self, forKey: .type)
        switch type {
        case "ADDED": self = .added(try c.decode(Object.self, forKey: .object))
        case "MODIFIED": self = .modified(try c.decode(Object.self, forKey: .object))
        case "DELETED": self = .deleted(try c.decode(Object.self, forKey: .object))
        case "BOOKMARK": self = .bookmark(resourceVersion: try c.decode(BookmarkObject.self, forKey: .object).metadata.resourceVersion)
        case "ERROR": self = .error(try c.decode(Status.self, forKey: .object))
        default:
            throw DecodingError.dataCorruptedError(forKey: .type, in: c, debugDescription: "unknown watch event type \(type)")
        }
    }
}

/// `metav1.Status`: the body of API errors (`reason` such as `NotFound`, `Conflict`, `Expired`).
public struct Status: Codable, Sendable, Equatable {
    public var apiVersion: String?
    public var kind: String?
    public var status: String?
    public var message: String?
    public var reason: String?
    public var code: Int32?

    public init(status: String? = nil, message: String? = nil, reason: String? = nil, code: Int32? = nil) {
        self.apiVersion = "v1"
        self.kind = "Status"
        self.status = status
        self.message = message
        self.reason = reason
        self.code = code
    }
}

/// `metav1.Condition`. `status` is `"True"`, `"False"` or `"Unknown"`; `lastTransitionTime`
/// changes only when `status` changes.
public struct Condition: Codable, Sendable, Equatable {
    public var type: String
    public var status: String
    public var observedGeneration: Int64?
    public var lastTransitionTime: String
    public var reason: String
    public var message: String

    public init(type: String, status: String, observedGeneration: Int64? = nil, lastTransitionTime: String, reason: String, message: String) {
        self.type = type
        self.status = status
        self.observedGeneration = observedGeneration
        self.lastTransitionTime = lastTransitionTime
        self.reason = reason
        self.message = message
    }
}

/// `metav1.LabelSelector`.
public struct LabelSelector: Codable, Sendable, Equatable {
    public var matchLabels: [String: String]?
    public var matchExpressions: [LabelSelectorRequirement]?

    public init(matchLabels: [String: String]? = nil, matchExpressions: [LabelSelectorRequirement]? = nil) {
        self.matchLabels = matchLabels
        self.matchExpressions = matchExpressions
    }

    /// The selector in the query-string form (`a=1,b=2`, keys sorted), as used by
    /// `?labelSelector=` and by the scale subresource's `status.selector`.
    public var queryString: String {
        var parts = (matchLabels ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        for r in matchExpressions ?? [] {
            switch r.operator {
            case "In": parts.append("\(r.key) in (\((r.values ?? []).joined(separator: ",")))")
            case "NotIn": parts.append("\(r.key) notin (\((r.values ?? []).joined(separator: ",")))")
            case "Exists": parts.append(r.key)
            default: parts.append("!\(r.key)")
            }
        }
        return parts.joined(separator: ",")
    }
}

public struct LabelSelectorRequirement: Codable, Sendable, Equatable {
    public var key: String
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    public var `operator`: String
    public var values: [String]?

    public init(key: String, operator: String, values: [String]? = nil) {
        self.key = key
        self.operator = `operator`
        self.values = values
    }
}

/// A field that is either an integer or a string (`targetPort: 9092` or `targetPort: kafka`,
/// `maxUnavailable: 1` or `"25%"`).
public enum IntOrString: Codable, Sendable, Equatable, Hashable {
    case int(Int32)
    case string(String)

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let i = try? c.decode(Int32.self) {  // type probe; the string decode below reports failure
            self = .int(i)
        } else {
            self = .string(try c.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .int(let i): try c.encode(i)
        case .string(let s): try c.encode(s)
        }
    }
}
