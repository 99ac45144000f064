import KafkaProtocol

extension BrokerCore {
    /// Whether `authorizer=acl`: without an authorizer the ACL APIs answer SECURITY_DISABLED, as
    /// Kafka's do.
    var aclsEnabled: Bool { config["authorizer"] == "acl" }
}

private let securityDisabled = KafkaErrorCode.securityDisabled.rawValue
private let noAuthorizer = "no authorizer is configured (authorizer=acl turns ACLs on)"

extension AclBindingFilter {
    /// A filter from its wire fields, or nil when a code is unknown (INVALID_REQUEST).
    init?(resourceType: Int8, resourceName: String?, patternType: Int8, principal: String?, host: String?, operation: Int8, permission: Int8) {
        guard let t = AclResourceType(rawValue: resourceType), let p = AclPatternType(rawValue: patternType),
              let o = AclOperation(rawValue: operation), let m = AclPermission(rawValue: permission) else { return nil }
        self.init(resourceType: t, resourceName: resourceName, patternType: p, principal: principal, host: host, operation: o, permission: m)
    }
}

/// CreateAcls (API 30): runs on the controller (forwarded there), which adds the valid bindings
/// in one metadata change. Each creation gets its own result; creating an existing binding
/// succeeds without a duplicate.
struct CreateAclsHandler: ApiHandler {
    let core: BrokerCore
    let apiKey = ApiKey.createAcls
    let versions: ClosedRange<Int16> = 0...3

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .createAcls(r) = request else { return .close }
        guard core.aclsEnabled else {
            return .response(.createAcls(CreateAclsResponse(results: r.creations.map { _ in .init(errorCode: securityDisabled, errorMessage: noAuthorizer) })))
        }
        var results: [CreateAclsResponse.AclCreationResult] = []
        var valid: [AclBinding] = []
        for c in r.creations {
            guard let t = AclResourceType(rawValue: c.resourceType), let p = AclPatternType(rawValue: c.resourcePatternType),
                  let o = AclOperation(rawValue: c.operation), let m = AclPermission(rawValue: c.permissionType) else {
                results.append(.init(errorCode: KafkaErrorCode.invalidRequest.rawValue, errorMessage: "unknown resource type, pattern, operation or permission code"))
                continue
            }
            let b = AclBinding(resourceType: t, resourceName: c.resourceName, patternType: p, principal: c.principal, host: c.host, operation: o, permission: m)
            if let reason = b.invalidReason {
                results.append(.init(errorCode: KafkaErrorCode.invalidRequest.rawValue, errorMessage: reason))
                continue
            }
            valid.append(b)
            results.append(.init(errorCode: 0))
        }
        if !valid.isEmpty {
            let added = valid
            do {
                try await core.registry.mutate { s in
                    var acls = s.acls
                    for b in added where !acls.contains(b) { acls.append(b) }
                    s.acls = acls
                }
                core.logger.info("ACLs created", metadata: ["acls": "\(added.count)", "principal": "\(context.connection.session.principal)"])
            } catch {
                let code: KafkaErrorCode = if case BrokerError.notController = error { .notController } else { .unknownServerError }
                for i in results.indices where results[i].errorCode == 0 {
                    results[i] = .init(errorCode: code.rawValue, errorMessage: "\(error)")
                }
            }
        }
        return .response(.createAcls(CreateAclsResponse(results: results)))
    }
}

/// DeleteAcls (API 31): runs on the controller; every binding matching a filter is removed, and
/// each filter's result lists the bindings it matched.
struct DeleteAclsHandler: ApiHandler {
    let core: BrokerCore
    let apiKey = ApiKey.deleteAcls
    let versions: ClosedRange<Int16> = 0...3

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .deleteAcls(r) = request else { return .close }
        guard core.aclsEnabled else {
            return .response(.deleteAcls(DeleteAclsResponse(filterResults: r.filters.map { _ in .init(errorCode: securityDisabled, errorMessage: noAuthorizer) })))
        }
        let filters: [AclBindingFilter?] = r.filters.map {
            AclBindingFilter(resourceType: $0.resourceTypeFilter, resourceName: $0.resourceNameFilter, patternType: $0.patternTypeFilter,
                             principal: $0.principalFilter, host: $0.hostFilter, operation: $0.operation, permission: $0.permissionType)
        }
        do {
            let matched = try await core.registry.mutate { s -> [[AclBinding]] in
                let before = s.acls
                let matched = filters.map { f in f.map { f in before.filter { f.matches($0) } } ?? [] }
                s.acls = before.filter { b in !filters.contains { $0?.matches(b) ?? false } }
                return matched
            }
            var results: [DeleteAclsResponse.DeleteAclsFilterResult] = []
            for (f, m) in zip(filters, matched) {
                guard f != nil else {
                    results.append(.init(errorCode: KafkaErrorCode.invalidRequest.rawValue, errorMessage: "unknown resource type, pattern, operation or permission code"))
                    continue
                }
                results.append(.init(errorCode: 0, matchingAcls: m.map {
                    .init(errorCode: 0, resourceType: $0.resourceType.rawValue, resourceName: $0.resourceName, patternType: $0.patternType.rawValue,
                          principal: $0.principal, host: $0.host, operation: $0.operation.rawValue, permissionType: $0.permission.rawValue)
                }))
            }
            let removed = matched.reduce(0) { $0 + $1.count }
            if removed > 0 { core.logger.info("ACLs deleted", metadata: ["acls": "\(removed)", "principal": "\(context.connection.session.principal)"]) }
            return .response(.deleteAcls(DeleteAclsResponse(filterResults: results)))
        } catch {
            let code: KafkaErrorCode = if case BrokerError.notController = error { .notController } else { .unknownServerError }
            return .response(.deleteAcls(DeleteAclsResponse(filterResults: r.filters.map { _ in .init(errorCode: code.rawValue, errorMessage: "\(error)") })))
        }
    }
}

/// DescribeAcls (API 29): the bindings matching the filter, from this broker's copy of the
/// metadata, grouped by resource pattern.
struct DescribeAclsHandler: ApiHandler {
    let core: BrokerCore
    let apiKey = ApiKey.describeAcls
    let versions: ClosedRange<Int16> = 0...3

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .describeAcls(r) = request else { return .close }
        guard core.aclsEnabled else {
            return .response(.describeAcls(DescribeAclsResponse(errorCode: securityDisabled, errorMessage: noAuthorizer)))
        }
        guard let filter = AclBindingFilter(resourceType: r.resourceTypeFilter, resourceName: r.resourceNameFilter, patternType: r.patternTypeFilter,
                                            principal: r.principalFilter, host: r.hostFilter, operation: r.operation, permission: r.permissionType) else {
            return .response(.describeAcls(DescribeAclsResponse(errorCode: KafkaErrorCode.invalidRequest.rawValue,
                                                                errorMessage: "unknown resource type, pattern, operation or permission code")))
        }
        return .response(.describeAcls(Self.describe(core.registry.state.acls, filter)))
    }

    static func describe(_ bindings: [AclBinding], _ filter: AclBindingFilter) -> DescribeAclsResponse {
        struct Key: Hashable { let type: AclResourceType; let name: String; let pattern: AclPatternType }
        var order: [Key] = []
        var byResource: [Key: [DescribeAclsResponse.AclDescription]] = [:]
        for b in bindings where filter.matches(b) {
            let k = Key(type: b.resourceType, name: b.resourceName, pattern: b.patternType)
            if byResource[k] == nil { order.append(k) }
            byResource[k, default: []].append(.init(principal: b.principal, host: b.host, operation: b.operation.rawValue, permissionType: b.permission.rawValue))
        }
        return DescribeAclsResponse(errorCode: 0, resources: order.map {
            .init(resourceType: $0.type.rawValue, resourceName: $0.name, patternType: $0.pattern.rawValue, acls: byResource[$0]!)
        })
    }
}
