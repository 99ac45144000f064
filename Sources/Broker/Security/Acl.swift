import Foundation
import KafkaProtocol

/// What an ACL binding is about, with Kafka's wire codes (`org.apache.kafka.common.resource.ResourceType`).
/// `any` appears only in filters.
public enum AclResourceType: Int8, Codable, Sendable, Hashable, CaseIterable {
    case any = 1
    case topic = 2
    case group = 3
    case cluster = 4
    case transactionalId = 5
}

/// How a binding's resource name matches (`PatternType`). `any` and `match` appear only in filters:
/// `any` matches bindings of every pattern type with the exact name; `match` matches the bindings
/// that would apply to a resource of that name (literal equal, literal `*`, prefixed prefix of it).
public enum AclPatternType: Int8, Codable, Sendable, Hashable, CaseIterable {
    case any = 1
    case match = 2
    case literal = 3
    case prefixed = 4
}

/// An operation (`AclOperation`); `any` appears only in filters, `all` in bindings covers every one.
public enum AclOperation: Int8, Codable, Sendable, Hashable, CaseIterable {
    case any = 1
    case all = 2
    case read = 3
    case write = 4
    case create = 5
    case delete = 6
    case alter = 7
    case describe = 8
    case clusterAction = 9
    case describeConfigs = 10
    case alterConfigs = 11
    case idempotentWrite = 12
    case createTokens = 13
    case describeTokens = 14

    /// The operations that imply this one when allowed (Kafka: DESCRIBE is implied by READ, WRITE,
    /// DELETE and ALTER; DESCRIBE_CONFIGS by ALTER_CONFIGS). ALL implies everything.
    var impliedBy: Set<AclOperation> {
        switch self {
        case .describe: [self, .all, .read, .write, .delete, .alter]
        case .describeConfigs: [self, .all, .alterConfigs]
        default: [self, .all]
        }
    }
}

/// `AclPermissionType`; `any` appears only in filters.
public enum AclPermission: Int8, Codable, Sendable, Hashable, CaseIterable {
    case any = 1
    case deny = 2
    case allow = 3
}

/// The resource a request acts on.
public struct AclResource: Sendable, Hashable, CustomStringConvertible {
    public var type: AclResourceType
    public var name: String
    public init(_ type: AclResourceType, _ name: String) {
        self.type = type
        self.name = name
    }
    public static let cluster = AclResource(.cluster, "kafka-cluster")
    public static func topic(_ name: String) -> AclResource { AclResource(.topic, name) }
    public static func group(_ name: String) -> AclResource { AclResource(.group, name) }
    public static func transactionalId(_ name: String) -> AclResource { AclResource(.transactionalId, name) }
    public var description: String { "\(type):\(name)" }
}

/// One ACL, as stored in the cluster metadata: `principal` (`User:alice`, or `User:*` for
/// everyone) from `host` (an IP, or `*`) may (`allow`) or may not (`deny`) do `operation` on
/// the resources `resourceType`/`resourceName` match under `patternType` (`literal`: that name,
/// or every name when it is `*`; `prefixed`: names starting with it).
public struct AclBinding: Codable, Sendable, Hashable {
    public var resourceType: AclResourceType
    public var resourceName: String
    public var patternType: AclPatternType
    public var principal: String
    public var host: String
    public var operation: AclOperation
    public var permission: AclPermission

    public init(resourceType: AclResourceType, resourceName: String, patternType: AclPatternType = .literal, principal: String,
                host: String = "*", operation: AclOperation, permission: AclPermission) {
        self.resourceType = resourceType
        self.resourceName = resourceName
        self.patternType = patternType
        self.principal = principal
        self.host = host
        self.operation = operation
        self.permission = permission
    }

    /// Why a binding cannot be stored (Kafka's CreateAcls checks), or nil.
    public var invalidReason: String? {
        if resourceType == .any { return "the resource type may not be ANY" }
        if patternType == .any || patternType == .match { return "the pattern type must be LITERAL or PREFIXED" }
        if operation == .any { return "the operation may not be ANY" }
        if permission == .any { return "the permission may not be ANY" }
        if resourceName.isEmpty { return "the resource name is empty" }
        if resourceType == .cluster && resourceName != AclResource.cluster.name { return "the cluster resource is named kafka-cluster" }
        guard let sep = principal.firstIndex(of: ":"), sep != principal.startIndex, principal.index(after: sep) != principal.endIndex else {
            return "the principal must be TYPE:NAME, e.g. User:alice"
        }
        if host.isEmpty { return "the host is empty (use * for every host)" }
        return nil
    }

    /// Whether this binding's resource pattern applies to `resource`.
    func covers(_ resource: AclResource) -> Bool {
        guard resourceType == resource.type else { return false }
        switch patternType {
        case .literal: return resourceName == resource.name || resourceName == "*"
        case .prefixed: return resource.name.hasPrefix(resourceName)
        case .any, .match: return false
        }
    }
}

/// A filter over bindings (DescribeAcls, DeleteAcls), with Kafka's semantics: `any` values and
/// nil strings match everything; pattern type `match` matches the bindings that apply to a
/// resource named `resourceName`.
public struct AclBindingFilter: Sendable, Hashable {
    public var resourceType: AclResourceType
    public var resourceName: String?
    public var patternType: AclPatternType
    public var principal: String?
    public var host: String?
    public var operation: AclOperation
    public var permission: AclPermission

    public init(resourceType: AclResourceType = .any, resourceName: String? = nil, patternType: AclPatternType = .any,
                principal: String? = nil, host: String? = nil, operation: AclOperation = .any, permission: AclPermission = .any) {
        self.resourceType = resourceType
        self.resourceName = resourceName
        self.patternType = patternType
        self.principal = principal
        self.host = host
        self.operation = operation
        self.permission = permission
    }

    public func matches(_ b: AclBinding) -> Bool {
        if resourceType != .any && resourceType != b.resourceType { return false }
        if let principal, principal != b.principal { return false }
        if let host, host != b.host { return false }
        if operation != .any && operation != b.operation { return false }
        if permission != .any && permission != b.permission { return false }
        switch patternType {
        case .any:
            if let resourceName, resourceName != b.resourceName { return false }
        case .literal, .prefixed:
            if patternType != b.patternType { return false }
            if let resourceName, resourceName != b.resourceName { return false }
        case .match:
            guard let resourceName else { return true }
            switch b.patternType {
            case .literal: return b.resourceName == resourceName || b.resourceName == "*"
            case .prefixed: return resourceName.hasPrefix(b.resourceName)
            case .any, .match: return false
            }
        }
        return true
    }
}

/// The authorizer's settings: `authorizer`, `super.users`, `allow.everyone.if.no.acl.found`.
public struct AuthorizerSettings: Sendable, Equatable {
    /// False: every request is allowed (the `authorizer` setting is empty).
    public var enabled: Bool
    public var superUsers: Set<String>
    public var allowEveryoneIfNoAclFound: Bool

    public init(enabled: Bool, superUsers: Set<String> = [], allowEveryoneIfNoAclFound: Bool = false) {
        self.enabled = enabled
        self.superUsers = superUsers
        self.allowEveryoneIfNoAclFound = allowEveryoneIfNoAclFound
    }

    public static let off = AuthorizerSettings(enabled: false)

    /// Parses `super.users`: principals separated by ';' (Kafka's separator), blanks trimmed.
    public static func parseSuperUsers(_ text: String) -> Set<String> {
        Set(text.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
    }
}

/// Kafka's ACL authorization (AclAuthorizer / StandardAuthorizer) over a set of bindings:
/// 1. off ⇒ allowed; a super user ⇒ allowed;
/// 2. a DENY binding for the principal (or `User:*`) and host (or `*`) whose pattern covers the
///    resource and whose operation is the one asked or ALL ⇒ denied (deny wins);
/// 3. an ALLOW binding likewise, where the operation may also be one implying the asked one
///    (READ, WRITE, DELETE, ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS) ⇒ allowed;
/// 4. otherwise denied, unless `allow.everyone.if.no.acl.found` and no binding at all covers the
///    resource.
public struct Authorizer: Sendable {
    public let settings: AuthorizerSettings
    /// Bindings by resource type.
    private let byType: [AclResourceType: [AclBinding]]

    public init(settings: AuthorizerSettings, bindings: [AclBinding]) {
        self.settings = settings
        self.byType = Dictionary(grouping: bindings, by: \.resourceType)
    }

    public func authorize(_ principal: KafkaPrincipal, host: String, _ operation: AclOperation, _ resource: AclResource) -> Bool {
        guard settings.enabled else { return true }
        let name = principal.description
        if settings.superUsers.contains(name) { return true }
        let wildcard = principal.type + ":*"
        let covering = (byType[resource.type] ?? []).filter { $0.covers(resource) }
        var allowed = false
        for b in covering where (b.principal == name || b.principal == wildcard) && (b.host == "*" || b.host == host) {
            switch b.permission {
            case .deny:
                if b.operation == operation || b.operation == .all { return false }
            case .allow:
                if operation.impliedBy.contains(b.operation) { allowed = true }
            case .any:
                break
            }
        }
        if allowed { return true }
        return settings.allowEveryoneIfNoAclFound && covering.isEmpty
    }

    /// Whether `operation` is allowed on some resource of `type` (Kafka's `authorizeByResourceType`,
    /// used for idempotent producers holding WRITE on any topic): an ALLOW binding of that type for
    /// the principal and host, not cancelled by a DENY on a literal `*` or a prefix-of-everything.
    public func authorizeAny(_ principal: KafkaPrincipal, host: String, _ operation: AclOperation, type: AclResourceType) -> Bool {
        guard settings.enabled else { return true }
        let name = principal.description
        if settings.superUsers.contains(name) { return true }
        let wildcard = principal.type + ":*"
        let mine = (byType[type] ?? []).filter { ($0.principal == name || $0.principal == wildcard) && ($0.host == "*" || $0.host == host) }
        let deniedEverywhere = mine.contains {
            $0.permission == .deny && ($0.operation == operation || $0.operation == .all)
                && (($0.patternType == .literal && $0.resourceName == "*") || ($0.patternType == .prefixed && $0.resourceName.isEmpty))
        }
        if deniedEverywhere { return false }
        return mine.contains { $0.permission == .allow && operation.impliedBy.contains($0.operation) }
    }

    /// The bit set of operations allowed on `resource` (MetadataResponse's authorized operations):
    /// bit `1 << code` for each operation among `candidates`.
    public func authorizedOperations(_ principal: KafkaPrincipal, host: String, _ resource: AclResource,
                                     candidates: [AclOperation]) -> Int32 {
        var bits: Int32 = 0
        for op in candidates where authorize(principal, host: host, op, resource) { bits |= 1 << Int32(op.rawValue) }
        return bits
    }

    /// Kafka's operations reported per resource type (include_*_authorized_operations).
    static let topicOperations: [AclOperation] = [.read, .write, .create, .delete, .alter, .describe, .describeConfigs, .alterConfigs]
    static let groupOperations: [AclOperation] = [.read, .delete, .describe]
    static let clusterOperations: [AclOperation] = [.create, .alter, .describe, .clusterAction, .describeConfigs, .alterConfigs, .idempotentWrite]
}
