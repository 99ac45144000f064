import Testing
@testable import Broker
@testable import KafkaProtocol

/// The API → operation table (`AccessCheck`): for each request, the bindings that let it through
/// and the error code it gets without them.
struct AccessCheckTests {
    struct Row: CustomTestStringConvertible, Sendable {
        let name: String
        let request: AnyRequest
        let version: Int16
        let needs: [(AclOperation, AclResource)]
        let denied: KafkaErrorCode
        var testDescription: String { name }
    }

    static let user = KafkaPrincipal(name: "alice")
    static let t = AclResource.topic("t"), g = AclResource.group("g"), tx = AclResource.transactionalId("tx"), cluster = AclResource.cluster
    static let produceData = [ProduceRequest.TopicProduceData(name: "t", partitionData: [.init(index: 0, records: [])])]
    static let fetchTopics = [FetchRequest.FetchTopic(topic: "t", partitions: [.init(partition: 0)])]

    static let rows: [Row] = [
        Row(name: "Produce", request: .produce(ProduceRequest(acks: -1, topicData: produceData)), version: 9, needs: [(.write, t)], denied: .topicAuthorizationFailed),
        Row(name: "Produce transactional", request: .produce(ProduceRequest(transactionalId: "tx", acks: -1, topicData: produceData)), version: 9,
            needs: [(.write, t), (.write, tx)], denied: .transactionalIdAuthorizationFailed),
        Row(name: "Fetch", request: .fetch(FetchRequest(replicaId: -1, topics: fetchTopics)), version: 12, needs: [(.read, t)], denied: .topicAuthorizationFailed),
        Row(name: "Fetch by a replica", request: .fetch(FetchRequest(replicaId: 1, topics: fetchTopics)), version: 12,
            needs: [(.clusterAction, cluster)], denied: .clusterAuthorizationFailed),
        Row(name: "Metadata", request: .metadata(MetadataRequest(topics: [.init(name: "t")], allowAutoTopicCreation: false)), version: 12,
            needs: [(.describe, t)], denied: .topicAuthorizationFailed),
        Row(name: "Metadata auto-creating", request: .metadata(MetadataRequest(topics: [.init(name: "new")], allowAutoTopicCreation: true)), version: 12,
            needs: [(.describe, .topic("new")), (.create, .topic("new"))], denied: .topicAuthorizationFailed),
        Row(name: "ListOffsets", request: .listOffsets(ListOffsetsRequest(topics: [.init(name: "t", partitions: [.init(partitionIndex: 0)])])), version: 7,
            needs: [(.describe, t)], denied: .topicAuthorizationFailed),
        Row(name: "OffsetForLeaderEpoch", request: .offsetForLeaderEpoch(OffsetForLeaderEpochRequest(replicaId: -1, topics: [.init(topic: "t", partitions: [.init(partition: 0)])])),
            version: 4, needs: [(.describe, t)], denied: .topicAuthorizationFailed),
        Row(name: "DescribeTopicPartitions", request: .describeTopicPartitions(DescribeTopicPartitionsRequest(topics: [.init(name: "t")])), version: 0,
            needs: [(.describe, t)], denied: .topicAuthorizationFailed),
        Row(name: "OffsetCommit", request: .offsetCommit(OffsetCommitRequest(groupId: "g", topics: [.init(name: "t", partitions: [.init(partitionIndex: 0)])])), version: 8,
            needs: [(.read, g), (.read, t)], denied: .groupAuthorizationFailed),
        Row(name: "OffsetFetch v7", request: .offsetFetch(OffsetFetchRequest(groupId: "g", topics: nil)), version: 7, needs: [(.describe, g)], denied: .groupAuthorizationFailed),
        Row(name: "OffsetFetch v8", request: .offsetFetch(OffsetFetchRequest(groups: [.init(groupId: "g", topics: nil)])), version: 8,
            needs: [(.describe, g)], denied: .groupAuthorizationFailed),
        Row(name: "FindCoordinator group", request: .findCoordinator(FindCoordinatorRequest(key: "g", keyType: 0)), version: 3, needs: [(.describe, g)], denied: .groupAuthorizationFailed),
        Row(name: "FindCoordinator transaction", request: .findCoordinator(FindCoordinatorRequest(keyType: 1, coordinatorKeys: ["tx"])), version: 4,
            needs: [(.describe, tx)], denied: .transactionalIdAuthorizationFailed),
        Row(name: "JoinGroup", request: .joinGroup(JoinGroupRequest(groupId: "g")), version: 7, needs: [(.read, g)], denied: .groupAuthorizationFailed),
        Row(name: "SyncGroup", request: .syncGroup(SyncGroupRequest(groupId: "g")), version: 5, needs: [(.read, g)], denied: .groupAuthorizationFailed),
        Row(name: "Heartbeat", request: .heartbeat(HeartbeatRequest(groupId: "g")), version: 4, needs: [(.read, g)], denied: .groupAuthorizationFailed),
        Row(name: "LeaveGroup", request: .leaveGroup(LeaveGroupRequest(groupId: "g")), version: 4, needs: [(.read, g)], denied: .groupAuthorizationFailed),
        Row(name: "DescribeGroups", request: .describeGroups(DescribeGroupsRequest(groups: ["g"])), version: 5, needs: [(.describe, g)], denied: .groupAuthorizationFailed),
        Row(name: "DeleteGroups", request: .deleteGroups(DeleteGroupsRequest(groupsNames: ["g"])), version: 2, needs: [(.delete, g)], denied: .groupAuthorizationFailed),
        Row(name: "CreateTopics (topic)", request: .createTopics(CreateTopicsRequest(topics: [.init(name: "t", numPartitions: 1, replicationFactor: 1)])), version: 7,
            needs: [(.create, t)], denied: .topicAuthorizationFailed),
        Row(name: "CreateTopics (cluster)", request: .createTopics(CreateTopicsRequest(topics: [.init(name: "t", numPartitions: 1, replicationFactor: 1)])), version: 7,
            needs: [(.create, cluster)], denied: .topicAuthorizationFailed),
        Row(name: "DeleteTopics by name", request: .deleteTopics(DeleteTopicsRequest(topicNames: ["t"])), version: 5, needs: [(.delete, t)], denied: .topicAuthorizationFailed),
        Row(name: "DeleteTopics v6", request: .deleteTopics(DeleteTopicsRequest(topics: [.init(name: "t")])), version: 6, needs: [(.delete, t)], denied: .topicAuthorizationFailed),
        Row(name: "DeleteRecords", request: .deleteRecords(DeleteRecordsRequest(topics: [.init(name: "t", partitions: [.init(partitionIndex: 0, offset: 1)])])), version: 2,
            needs: [(.delete, t)], denied: .topicAuthorizationFailed),
        Row(name: "CreatePartitions", request: .createPartitions(CreatePartitionsRequest(topics: [.init(name: "t", count: 2)])), version: 3,
            needs: [(.alter, t)], denied: .topicAuthorizationFailed),
        Row(name: "DescribeConfigs topic", request: .describeConfigs(DescribeConfigsRequest(resources: [.init(resourceType: 2, resourceName: "t")])), version: 4,
            needs: [(.describeConfigs, t)], denied: .topicAuthorizationFailed),
        Row(name: "DescribeConfigs broker", request: .describeConfigs(DescribeConfigsRequest(resources: [.init(resourceType: 4, resourceName: "0")])), version: 4,
            needs: [(.describeConfigs, cluster)], denied: .clusterAuthorizationFailed),
        Row(name: "AlterConfigs topic", request: .alterConfigs(AlterConfigsRequest(resources: [.init(resourceType: 2, resourceName: "t")])), version: 2,
            needs: [(.alterConfigs, t)], denied: .topicAuthorizationFailed),
        Row(name: "IncrementalAlterConfigs broker", request: .incrementalAlterConfigs(IncrementalAlterConfigsRequest(resources: [.init(resourceType: 4, resourceName: "")])),
            version: 1, needs: [(.alterConfigs, cluster)], denied: .clusterAuthorizationFailed),
        Row(name: "InitProducerId transactional", request: .initProducerId(InitProducerIdRequest(transactionalId: "tx")), version: 4,
            needs: [(.write, tx)], denied: .transactionalIdAuthorizationFailed),
        Row(name: "InitProducerId idempotent", request: .initProducerId(InitProducerIdRequest(transactionalId: nil)), version: 4,
            needs: [(.idempotentWrite, cluster)], denied: .clusterAuthorizationFailed),
        Row(name: "AlterPartitionReassignments", request: .alterPartitionReassignments(AlterPartitionReassignmentsRequest()), version: 0,
            needs: [(.alter, cluster)], denied: .clusterAuthorizationFailed),
        Row(name: "ListPartitionReassignments", request: .listPartitionReassignments(ListPartitionReassignmentsRequest()), version: 0,
            needs: [(.describe, cluster)], denied: .clusterAuthorizationFailed),
        Row(name: "DescribeCluster", request: .describeCluster(DescribeClusterRequest()), version: 1, needs: [(.describe, cluster)], denied: .clusterAuthorizationFailed),
        Row(name: "CreateAcls", request: .createAcls(CreateAclsRequest(creations: [.init()])), version: 3, needs: [(.alter, cluster)], denied: .clusterAuthorizationFailed),
        Row(name: "DeleteAcls", request: .deleteAcls(DeleteAclsRequest(filters: [.init()])), version: 3, needs: [(.alter, cluster)], denied: .clusterAuthorizationFailed),
        Row(name: "DescribeAcls", request: .describeAcls(DescribeAclsRequest()), version: 3, needs: [(.describe, cluster)], denied: .clusterAuthorizationFailed),
        Row(name: "BrokerRegistration", request: .brokerRegistration(BrokerRegistrationRequest()), version: 4, needs: [(.clusterAction, cluster)], denied: .clusterAuthorizationFailed),
        Row(name: "BrokerHeartbeat", request: .brokerHeartbeat(BrokerHeartbeatRequest()), version: 1, needs: [(.clusterAction, cluster)], denied: .clusterAuthorizationFailed),
        Row(name: "StopReplica", request: .stopReplica(StopReplicaRequest()), version: 4, needs: [(.clusterAction, cluster)], denied: .clusterAuthorizationFailed),
        Row(name: "UpdateMetadata", request: .updateMetadata(UpdateMetadataRequest()), version: 8, needs: [(.clusterAction, cluster)], denied: .clusterAuthorizationFailed),
        Row(name: "AllocateProducerIds", request: .allocateProducerIds(AllocateProducerIdsRequest()), version: 0, needs: [(.clusterAction, cluster)], denied: .clusterAuthorizationFailed),
    ]

    static func check(_ bindings: [AclBinding], superUsers: Set<String> = []) -> AccessCheck {
        AccessCheck(authorizer: Authorizer(settings: AuthorizerSettings(enabled: true, superUsers: superUsers), bindings: bindings),
                    principal: user, host: "10.1.1.1", topicName: { _ in nil }, wouldAutoCreate: { $0 != "t" })
    }

    static func grants(_ needs: [(AclOperation, AclResource)], principal: String = "User:alice") -> [AclBinding] {
        needs.map { AclBinding(resourceType: $0.1.type, resourceName: $0.1.name, principal: principal, operation: $0.0, permission: .allow) }
    }

    /// A response of the request's API with nothing in it (what a handler given nothing answers).
    static func empty(for request: AnyRequest) -> AnyResponse? {
        switch request {
        case .produce: .produce(ProduceResponse())
        case .fetch: .fetch(FetchResponse())
        case .metadata: .metadata(MetadataResponse())
        case .listOffsets: .listOffsets(ListOffsetsResponse())
        case .offsetForLeaderEpoch: .offsetForLeaderEpoch(OffsetForLeaderEpochResponse())
        case .describeTopicPartitions: .describeTopicPartitions(DescribeTopicPartitionsResponse())
        case .offsetCommit: .offsetCommit(OffsetCommitResponse())
        case .offsetFetch: .offsetFetch(OffsetFetchResponse())
        case .findCoordinator: .findCoordinator(FindCoordinatorResponse())
        case .describeGroups: .describeGroups(DescribeGroupsResponse())
        case .deleteGroups: .deleteGroups(DeleteGroupsResponse())
        case .createTopics: .createTopics(CreateTopicsResponse())
        case .deleteTopics: .deleteTopics(DeleteTopicsResponse())
        case .deleteRecords: .deleteRecords(DeleteRecordsResponse())
        case .createPartitions: .createPartitions(CreatePartitionsResponse())
        case .describeConfigs: .describeConfigs(DescribeConfigsResponse())
        case .alterConfigs: .alterConfigs(AlterConfigsResponse())
        case .incrementalAlterConfigs: .incrementalAlterConfigs(IncrementalAlterConfigsResponse())
        case .listGroups: .listGroups(ListGroupsResponse())
        default: nil
        }
    }

    /// Every `errorCode` field in a response, at any depth.
    static func errorCodes(_ value: Any) -> [Int16] {
        var out: [Int16] = []
        for child in Mirror(reflecting: value).children {
            if child.label == "errorCode", let code = child.value as? Int16 { out.append(code) }
            out += errorCodes(child.value)
        }
        return out
    }

    /// What the client would see: the refusal or the completed answer to the narrowed request,
    /// and whether the handler would run on the request unchanged.
    static func outcome(_ s: Screening, _ row: Row) -> (unchanged: Bool, codes: [Int16]) {
        switch s {
        case .pass: return (true, [])
        case .close: return (false, [])
        case let .answer(r): return (false, errorCodes(r))
        case let .narrowed(req, complete):
            guard let empty = empty(for: row.request) else { return (false, []) }
            return (req == row.request, errorCodes(complete(empty)))
        }
    }

    @Test(arguments: rows) func grantedRequestsRunUnchanged(_ row: Row) {
        let (unchanged, codes) = Self.outcome(Self.check(Self.grants(row.needs)).screen(row.request, version: row.version), row)
        #expect(unchanged)
        #expect(!codes.contains(row.denied.rawValue))
    }

    @Test(arguments: rows) func deniedRequestsGetTheirCode(_ row: Row) {
        let (unchanged, codes) = Self.outcome(Self.check([]).screen(row.request, version: row.version), row)
        #expect(!unchanged)
        #expect(codes.contains(row.denied.rawValue), "codes \(codes)")
    }

    @Test(arguments: rows) func superUsersRunUnchanged(_ row: Row) {
        let (unchanged, _) = Self.outcome(Self.check([], superUsers: ["User:alice"]).screen(row.request, version: row.version), row)
        #expect(unchanged)
    }

    /// Granting the operations to someone else does not help.
    @Test(arguments: rows) func grantsAreByPrincipal(_ row: Row) {
        let (unchanged, _) = Self.outcome(Self.check(Self.grants(row.needs, principal: "User:bob")).screen(row.request, version: row.version), row)
        #expect(!unchanged)
    }

    @Test func metadataListsOnlyDescribableTopics() throws {
        let check = Self.check(Self.grants([(.describe, .topic("seen"))]))
        guard case let .narrowed(_, complete) = check.screen(.metadata(MetadataRequest(topics: nil)), version: 12) else {
            Issue.record("expected a filtered answer")
            return
        }
        let full = MetadataResponse(topics: [.init(name: "seen"), .init(name: "hidden")])
        guard case let .metadata(out) = complete(.metadata(full)) else { throw HarnessError.closed }
        #expect(out.topics.map(\.name) == ["seen"])
    }

    @Test func mixedProduceRefusesOnlyTheDeniedTopic() throws {
        let data = [ProduceRequest.TopicProduceData(name: "ok", partitionData: [.init(index: 0)]),
                    ProduceRequest.TopicProduceData(name: "no", partitionData: [.init(index: 0)])]
        let check = Self.check(Self.grants([(.write, .topic("ok"))]))
        guard case let .narrowed(.produce(narrowed), complete) = check.screen(.produce(ProduceRequest(acks: -1, topicData: data)), version: 9) else {
            Issue.record("expected a narrowed request")
            return
        }
        #expect(narrowed.topicData.map(\.name) == ["ok"])
        guard case let .produce(out) = complete(.produce(ProduceResponse(responses: [.init(name: "ok", partitionResponses: [.init(index: 0)])]))) else { throw HarnessError.closed }
        #expect(out.responses.map(\.name) == ["ok", "no"])
        #expect(out.responses.map { $0.partitionResponses[0].errorCode } == [0, KafkaErrorCode.topicAuthorizationFailed.rawValue])
    }

    @Test func idempotentProducerMayHoldWriteOnAnyTopic() {
        let check = Self.check(Self.grants([(.write, .topic("orders"))]))
        guard case .pass = check.screen(.initProducerId(InitProducerIdRequest(transactionalId: nil)), version: 4) else {
            Issue.record("WRITE on a topic should allow an idempotent producer")
            return
        }
    }

    @Test func hostOfPeer() {
        #expect(AuthorizingHandler.host(ofPeer: "10.0.0.7:51234") == "10.0.0.7")
        #expect(AuthorizingHandler.host(ofPeer: "[::1]:9092") == "::1")
    }
}

extension AccessCheckTests {
    /// include_*_authorized_operations: Kafka's bit sets (bit `1 << code` per allowed operation).
    @Test func authorizedOperationsAreReported() throws {
        let check = Self.check(Self.grants([(.read, .topic("t")), (.describe, .cluster), (.alterConfigs, .cluster)]))
        guard case let .narrowed(_, complete) = check.screen(.metadata(MetadataRequest(topics: [.init(name: "t")], allowAutoTopicCreation: false,
                                                                                      includeClusterAuthorizedOperations: true,
                                                                                      includeTopicAuthorizedOperations: true)), version: 10) else {
            Issue.record("expected a completed answer")
            return
        }
        guard case let .metadata(out) = complete(.metadata(MetadataResponse(topics: [.init(name: "t")]))) else { throw HarnessError.closed }
        // READ (3) implies DESCRIBE (8).
        #expect(out.topics[0].topicAuthorizedOperations == (1 << 3) | (1 << 8))
        // DESCRIBE (8), ALTER_CONFIGS (11) which implies DESCRIBE_CONFIGS (10).
        #expect(out.clusterAuthorizedOperations == (1 << 8) | (1 << 10) | (1 << 11))
        guard case let .narrowed(_, completeCluster) = check.screen(.describeCluster(DescribeClusterRequest(includeClusterAuthorizedOperations: true)), version: 1),
              case let .describeCluster(described) = completeCluster(.describeCluster(DescribeClusterResponse(clusterId: "c"))) else {
            Issue.record("expected DescribeCluster to report the cluster's operations")
            return
        }
        #expect(described.clusterAuthorizedOperations == (1 << 8) | (1 << 10) | (1 << 11))
    }
}
