import Foundation
import Testing
@testable import Broker
@testable import KafkaProtocol

private let alice = KafkaPrincipal(name: "alice")
private let bob = KafkaPrincipal(name: "bob")

private func allow(_ type: AclResourceType, _ name: String, _ op: AclOperation, _ principal: String = "User:alice",
                   pattern: AclPatternType = .literal, host: String = "*") -> AclBinding {
    AclBinding(resourceType: type, resourceName: name, patternType: pattern, principal: principal, host: host, operation: op, permission: .allow)
}
private func deny(_ type: AclResourceType, _ name: String, _ op: AclOperation, _ principal: String = "User:alice",
                  pattern: AclPatternType = .literal, host: String = "*") -> AclBinding {
    AclBinding(resourceType: type, resourceName: name, patternType: pattern, principal: principal, host: host, operation: op, permission: .deny)
}
private func authorizer(_ bindings: [AclBinding], superUsers: Set<String> = [], allowIfNone: Bool = false) -> Authorizer {
    Authorizer(settings: AuthorizerSettings(enabled: true, superUsers: superUsers, allowEveryoneIfNoAclFound: allowIfNone), bindings: bindings)
}

struct AuthorizerTests {
    @Test func offAllowsEverything() {
        let a = Authorizer(settings: .off, bindings: [deny(.topic, "t", .all)])
        #expect(a.authorize(alice, host: "10.0.0.1", .write, .topic("t")))
    }

    @Test func noBindingDeniesUnlessAllowEveryone() {
        #expect(!authorizer([]).authorize(alice, host: "1.2.3.4", .read, .topic("t")))
        #expect(authorizer([], allowIfNone: true).authorize(alice, host: "1.2.3.4", .read, .topic("t")))
        // A binding for someone else covers the resource: allow.everyone no longer applies.
        #expect(!authorizer([allow(.topic, "t", .read, "User:bob")], allowIfNone: true).authorize(alice, host: "1.2.3.4", .read, .topic("t")))
    }

    @Test func denyWinsOverAllow() {
        let a = authorizer([allow(.topic, "t", .all), deny(.topic, "t", .write)])
        #expect(a.authorize(alice, host: "h", .read, .topic("t")))
        #expect(!a.authorize(alice, host: "h", .write, .topic("t")))
        let wildcardDeny = authorizer([allow(.topic, "t", .read), deny(.topic, "*", .read, "User:*")])
        #expect(!wildcardDeny.authorize(alice, host: "h", .read, .topic("t")))
    }

    @Test func impliedOperations() {
        for op in [AclOperation.read, .write, .delete, .alter] {
            #expect(authorizer([allow(.topic, "t", op)]).authorize(alice, host: "h", .describe, .topic("t")), "\(op) implies DESCRIBE")
        }
        #expect(!authorizer([allow(.topic, "t", .create)]).authorize(alice, host: "h", .describe, .topic("t")))
        #expect(authorizer([allow(.topic, "t", .alterConfigs)]).authorize(alice, host: "h", .describeConfigs, .topic("t")))
        #expect(!authorizer([allow(.topic, "t", .describeConfigs)]).authorize(alice, host: "h", .alterConfigs, .topic("t")))
        // DENY READ does not deny DESCRIBE (only the operation itself or ALL is denied).
        #expect(authorizer([allow(.topic, "t", .describe), deny(.topic, "t", .read)]).authorize(alice, host: "h", .describe, .topic("t")))
    }

    @Test func patternsPrincipalsAndHosts() {
        let a = authorizer([allow(.topic, "orders-", .read, pattern: .prefixed), allow(.group, "*", .read, "User:*"),
                            allow(.topic, "audit", .read, host: "10.0.0.5")])
        #expect(a.authorize(alice, host: "h", .read, .topic("orders-eu")))
        #expect(!a.authorize(alice, host: "h", .read, .topic("order")))
        #expect(!a.authorize(bob, host: "h", .read, .topic("orders-eu")))
        #expect(a.authorize(bob, host: "h", .read, .group("any-group")))
        #expect(a.authorize(alice, host: "10.0.0.5", .read, .topic("audit")))
        #expect(!a.authorize(alice, host: "10.0.0.6", .read, .topic("audit")))
        #expect(a.authorize(alice, host: "h", .read, .group("g")))
    }

    @Test func superUsersPass() {
        let a = authorizer([deny(.topic, "t", .all, "User:root")], superUsers: ["User:root"])
        #expect(a.authorize(KafkaPrincipal(name: "root"), host: "h", .write, .topic("t")))
        #expect(AuthorizerSettings.parseSuperUsers(" User:a ;User:b;; ") == ["User:a", "User:b"])
    }

    /// The authorizer against a direct reading of Kafka's rules, over random binding sets.
    @Test func matchesReferenceOverRandomBindings() {
        var rng = TestRandom(seed: 14)
        let names = ["a", "ab", "abc", "b", "*", ""]
        let principals = ["User:alice", "User:bob", "User:*"]
        let hosts = ["*", "10.0.0.1", "10.0.0.2"]
        let ops: [AclOperation] = [.all, .read, .write, .create, .delete, .alter, .describe, .describeConfigs, .alterConfigs, .idempotentWrite]
        let types: [AclResourceType] = [.topic, .group, .transactionalId]
        var checked = 0, allowedCount = 0
        for round in 0..<400 {
            var bindings: [AclBinding] = []
            for _ in 0..<Int.random(in: 0...8, using: &rng) {
                let pattern: AclPatternType = Bool.random(using: &rng) ? .literal : .prefixed
                var name = names.randomElement(using: &rng)!
                if name.isEmpty && pattern == .literal { name = "a" }
                bindings.append(AclBinding(resourceType: types.randomElement(using: &rng)!, resourceName: name, patternType: pattern,
                                           principal: principals.randomElement(using: &rng)!, host: hosts.randomElement(using: &rng)!,
                                           operation: ops.randomElement(using: &rng)!,
                                           permission: Int.random(in: 0..<3, using: &rng) == 0 ? .deny : .allow))
            }
            let allowIfNone = round % 4 == 0
            let a = authorizer(bindings, allowIfNone: allowIfNone)
            for _ in 0..<20 {
                let principal = KafkaPrincipal(name: ["alice", "bob", "carol"].randomElement(using: &rng)!)
                let host = ["10.0.0.1", "10.0.0.2"].randomElement(using: &rng)!
                let op = ops.dropFirst().randomElement(using: &rng)!
                let resource = AclResource(types.randomElement(using: &rng)!, ["a", "ab", "abc", "b", "c"].randomElement(using: &rng)!)
                let expected = Self.reference(bindings, principal: principal, host: host, op: op, resource: resource, allowIfNone: allowIfNone)
                #expect(a.authorize(principal, host: host, op, resource) == expected,
                        "round \(round): \(principal) \(host) \(op) \(resource) over \(bindings)")
                checked += 1
                if expected { allowedCount += 1 }
            }
        }
        // The random sets exercise both answers.
        #expect(allowedCount > checked / 20 && allowedCount < checked - checked / 20)
    }

    static func reference(_ bindings: [AclBinding], principal: KafkaPrincipal, host: String, op: AclOperation, resource: AclResource,
                          allowIfNone: Bool) -> Bool {
        func applies(_ b: AclBinding) -> Bool {
            guard b.resourceType == resource.type else { return false }
            if b.patternType == .literal { return b.resourceName == resource.name || b.resourceName == "*" }
            return resource.name.starts(with: b.resourceName)
        }
        let relevant = bindings.filter(applies)
        let mine = relevant.filter { ($0.principal == "User:\(principal.name)" || $0.principal == "User:*") && ($0.host == host || $0.host == "*") }
        if mine.contains(where: { $0.permission == .deny && ($0.operation == op || $0.operation == .all) }) { return false }
        let implying: [AclOperation: [AclOperation]] = [.describe: [.read, .write, .delete, .alter], .describeConfigs: [.alterConfigs]]
        if mine.contains(where: { $0.permission == .allow && ($0.operation == op || $0.operation == .all || implying[op, default: []].contains($0.operation)) }) {
            return true
        }
        return allowIfNone && relevant.isEmpty
    }

    @Test func filters() {
        let lit = allow(.topic, "orders", .read)
        let pre = allow(.topic, "ord", .write, pattern: .prefixed)
        let star = allow(.topic, "*", .describe, "User:*")
        let grp = allow(.group, "orders", .read)
        let all = [lit, pre, star, grp]
        func matching(_ f: AclBindingFilter) -> [AclBinding] { all.filter(f.matches) }
        #expect(matching(AclBindingFilter()) == all)
        #expect(matching(AclBindingFilter(resourceType: .topic)) == [lit, pre, star])
        #expect(matching(AclBindingFilter(resourceName: "orders")) == [lit, grp])
        #expect(matching(AclBindingFilter(resourceType: .topic, resourceName: "orders", patternType: .match)) == [lit, pre, star])
        #expect(matching(AclBindingFilter(resourceType: .topic, resourceName: "ord", patternType: .literal)) == [])
        #expect(matching(AclBindingFilter(resourceType: .topic, resourceName: "ord", patternType: .prefixed)) == [pre])
        #expect(matching(AclBindingFilter(principal: "User:*")) == [star])
        #expect(matching(AclBindingFilter(operation: .write, permission: .allow)) == [pre])
        #expect(matching(AclBindingFilter(permission: .deny)) == [])
    }

    @Test func invalidBindings() {
        #expect(allow(.topic, "t", .read).invalidReason == nil)
        #expect(allow(.any, "t", .read).invalidReason != nil)
        #expect(allow(.topic, "t", .any).invalidReason != nil)
        #expect(allow(.topic, "t", .read, "alice").invalidReason != nil)
        #expect(allow(.topic, "t", .read, pattern: .match).invalidReason != nil)
        #expect(allow(.cluster, "other", .alter).invalidReason != nil)
        #expect(allow(.cluster, "kafka-cluster", .alter).invalidReason == nil)
    }

    @Test func clusterStateKeepsAclsAndReadsOlderSnapshots() throws {
        var old = ClusterState()
        old.clusterID = "c"
        let encodedOld = try JSONEncoder().encode(old)
        #expect(!String(decoding: encodedOld, as: UTF8.self).contains("acl"))
        #expect(try JSONDecoder().decode(ClusterState.self, from: encodedOld).acls == [])
        var new = old
        new.acls = [allow(.topic, "t", .read), deny(.group, "g", .all, pattern: .prefixed)]
        #expect(try JSONDecoder().decode(ClusterState.self, from: JSONEncoder().encode(new)) == new)
        let records = MetadataRecord.diff(from: old, to: new)
        #expect(records == [.acls(new.acls)])
        var replayed = old
        for r in records { r.apply(to: &replayed) }
        #expect(replayed == new)
        #expect(MetadataRecord.diff(from: new, to: old) == [.acls([])])
    }
}

struct AclHandlerTests {
    @Test func withoutAnAuthorizerTheAclApisAreDisabled() async throws {
        let h = try await Harness.make()
        let create = CreateAclsRequest(creations: [
            .init(resourceType: 2, resourceName: "t", resourcePatternType: 3, principal: "User:a", host: "*", operation: 3, permissionType: 3)])
        let created = try requireResponse(try await h.call(CreateAclsHandler(core: h.core), .createAcls(create), version: 3), as: CreateAclsResponse.self)
        #expect(created.results.map(\.errorCode) == [KafkaErrorCode.securityDisabled.rawValue])
        let described = try requireResponse(try await h.call(DescribeAclsHandler(core: h.core), .describeAcls(DescribeAclsRequest(
            resourceTypeFilter: 1, patternTypeFilter: 1, operation: 1, permissionType: 1)), version: 3), as: DescribeAclsResponse.self)
        #expect(described.errorCode == KafkaErrorCode.securityDisabled.rawValue)
        #expect(h.core.registry.state.acls.isEmpty)
    }

    @Test func createDescribeDeleteThroughTheMetadataLog() async throws {
        let h = try await Harness.make(settings: ["authorizer": "acl"])
        let create = CreateAclsRequest(creations: [
            .init(resourceType: 2, resourceName: "orders", resourcePatternType: 3, principal: "User:alice", host: "*", operation: 3, permissionType: 3),
            .init(resourceType: 2, resourceName: "ord", resourcePatternType: 4, principal: "User:bob", host: "10.0.0.1", operation: 4, permissionType: 2),
            .init(resourceType: 3, resourceName: "g", resourcePatternType: 3, principal: "alice", host: "*", operation: 3, permissionType: 3),
            .init(resourceType: 9, resourceName: "x", resourcePatternType: 3, principal: "User:a", host: "*", operation: 3, permissionType: 3),
        ])
        let created = try requireResponse(try await h.call(CreateAclsHandler(core: h.core), .createAcls(create), version: 3), as: CreateAclsResponse.self)
        #expect(created.results.map(\.errorCode) == [0, 0, KafkaErrorCode.invalidRequest.rawValue, KafkaErrorCode.invalidRequest.rawValue])
        #expect(h.core.registry.state.acls.count == 2)

        // Filters: MATCH finds the bindings that apply to topic "orders" (literal and prefixed).
        let describe = DescribeAclsRequest(resourceTypeFilter: 2, resourceNameFilter: "orders", patternTypeFilter: 2, operation: 1, permissionType: 1)
        let described = try requireResponse(try await h.call(DescribeAclsHandler(core: h.core), .describeAcls(describe), version: 3), as: DescribeAclsResponse.self)
        #expect(described.errorCode == 0)
        #expect(described.resources.map(\.resourceName) == ["orders", "ord"])
        #expect(described.resources.map(\.patternType) == [3, 4])
        #expect(described.resources[1].acls.map(\.host) == ["10.0.0.1"])
        let unknown = DescribeAclsRequest(resourceTypeFilter: 0, patternTypeFilter: 1, operation: 1, permissionType: 1)
        let refused = try requireResponse(try await h.call(DescribeAclsHandler(core: h.core), .describeAcls(unknown), version: 3), as: DescribeAclsResponse.self)
        #expect(refused.errorCode == KafkaErrorCode.invalidRequest.rawValue)

        // The bindings are in the metadata log: a restarted broker has them.
        try await h.core.partitions.closeAll()
        let again = try await Harness.make(store: h.store, storage: h.storage, settings: ["authorizer": "acl"])
        #expect(again.core.registry.state.acls.count == 2)

        let delete = DeleteAclsRequest(filters: [
            .init(resourceTypeFilter: 1, resourceNameFilter: nil, patternTypeFilter: 1, principalFilter: "User:bob", hostFilter: nil, operation: 1, permissionType: 1),
            .init(resourceTypeFilter: 2, resourceNameFilter: "nothing", patternTypeFilter: 3, operation: 1, permissionType: 1),
        ])
        let deleted = try requireResponse(try await again.call(DeleteAclsHandler(core: again.core), .deleteAcls(delete), version: 3), as: DeleteAclsResponse.self)
        #expect(deleted.filterResults.map(\.errorCode) == [0, 0])
        #expect(deleted.filterResults.map { $0.matchingAcls.map(\.resourceName) } == [["ord"], []])
        #expect(again.core.registry.state.acls.map(\.resourceName) == ["orders"])
    }

    /// The handler wrapper: with `authorizer=acl`, the session's principal decides.
    @Test func authorizingHandlerUsesTheSessionPrincipal() async throws {
        let h = try await Harness.make(settings: ["authorizer": "acl"])
        try await h.createTopic("t")
        _ = try await h.call(CreateAclsHandler(core: h.core), .createAcls(CreateAclsRequest(creations: [
            .init(resourceType: 2, resourceName: "t", resourcePatternType: 3, principal: "User:alice", host: "*", operation: 8, permissionType: 3),
        ])), version: 3)
        let authorizer = BrokerAuthorizer(settings: AuthorizerSettings(enabled: true))
        authorizer.follow(h.core.registry.log)
        let handler = AuthorizingHandler(inner: MetadataHandler(core: h.core), authorizer: authorizer, core: h.core)
        func topics(as principal: KafkaPrincipal) async throws -> [String: Int16] {
            let session = ConnectionSession(principal: principal)
            let context = RequestContext(connection: ConnectionInfo(id: 1, peer: "127.0.0.1:5000", session: session),
                                         header: RequestHeader(requestApiKey: ApiKey.metadata.rawValue, requestApiVersion: 12, correlationId: 1, clientId: "t"),
                                         apiKey: .metadata)
            guard case let .response(.metadata(r)) = await handler.handle(.metadata(MetadataRequest(topics: [.init(name: "t")], allowAutoTopicCreation: false)),
                                                                           context: context) else { throw HarnessError.unexpected("no metadata answer") }
            return Dictionary(r.topics.map { ($0.name ?? "", $0.errorCode) }, uniquingKeysWith: { a, _ in a })
        }
        #expect(try await topics(as: KafkaPrincipal(name: "alice")) == ["t": 0])
        #expect(try await topics(as: KafkaPrincipal(name: "bob")) == ["t": KafkaErrorCode.topicAuthorizationFailed.rawValue])
        // A deny added later applies at once (the authorizer follows the metadata log).
        _ = try await h.call(CreateAclsHandler(core: h.core), .createAcls(CreateAclsRequest(creations: [
            .init(resourceType: 2, resourceName: "t", resourcePatternType: 3, principal: "User:alice", host: "127.0.0.1", operation: 2, permissionType: 2),
        ])), version: 3)
        #expect(try await topics(as: KafkaPrincipal(name: "alice")) == ["t": KafkaErrorCode.topicAuthorizationFailed.rawValue])
    }
}
