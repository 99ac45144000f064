import KafkaProtocol
import Synchronization

/// What the authorizer makes of one request before its handler sees it.
enum Screening: Sendable {
    /// Everything asked is allowed: the handler runs on the request as it is.
    case pass
    /// Nothing the request asks may be done: this is the answer.
    case answer(AnyResponse)
    /// Part of it is allowed: the handler runs on the narrowed request, and `complete` adds the
    /// refused items (or removes what may not be seen) to its answer.
    case narrowed(AnyRequest, complete: @Sendable (AnyResponse) -> AnyResponse)
    /// Refused, and the response has no field to say so at this version.
    case close
}

/// The authorization of one request (Kafka's checks in `KafkaApis`): which operation on which
/// resource each API needs, per item, and what an unauthorized item is answered.
///
/// | API | needs |
/// |---|---|
/// | Produce | WRITE topic; WRITE transactional id when it has one |
/// | Fetch (consumer) | READ topic; Fetch from a replica: CLUSTER_ACTION cluster |
/// | Metadata | DESCRIBE topic (unlisted when not requested by name); CREATE cluster or topic to auto-create |
/// | ListOffsets, OffsetForLeaderEpoch, DescribeTopicPartitions | DESCRIBE topic |
/// | OffsetCommit | READ group, READ topic |
/// | OffsetFetch | DESCRIBE group, DESCRIBE topic |
/// | FindCoordinator | DESCRIBE group / DESCRIBE transactional id |
/// | JoinGroup, SyncGroup, Heartbeat, LeaveGroup | READ group |
/// | ConsumerGroupHeartbeat | READ group, DESCRIBE each subscribed topic; ConsumerGroupDescribe: DESCRIBE group |
/// | DescribeGroups | DESCRIBE group; ListGroups: DESCRIBE cluster or DESCRIBE group (filtered) |
/// | DeleteGroups | DELETE group |
/// | CreateTopics | CREATE cluster or CREATE topic |
/// | DeleteTopics, DeleteRecords | DELETE topic |
/// | CreatePartitions | ALTER topic |
/// | DescribeConfigs / AlterConfigs, IncrementalAlterConfigs | DESCRIBE_CONFIGS / ALTER_CONFIGS topic or cluster (broker resources) |
/// | InitProducerId | WRITE transactional id; without one IDEMPOTENT_WRITE cluster or WRITE on some topic |
/// | AlterPartitionReassignments / ListPartitionReassignments | ALTER / DESCRIBE cluster |
/// | DescribeCluster | DESCRIBE cluster |
/// | OffsetDelete | DELETE group, READ topic (Authorization+Admin.swift) |
/// | DescribeLogDirs / ElectLeaders | DESCRIBE / ALTER cluster |
/// | DescribeProducers | READ topic |
/// | ListClientMetricsResources | DESCRIBE_CONFIGS cluster |
/// | CreateAcls, DeleteAcls / DescribeAcls | ALTER / DESCRIBE cluster |
/// | AlterClientQuotas / DescribeClientQuotas | ALTER_CONFIGS / DESCRIBE_CONFIGS cluster |
/// | AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit, WriteTxnMarkers, DescribeTransactions, ListTransactions | see Authorization+Transactions.swift |
/// | BrokerRegistration, BrokerHeartbeat, StopReplica, UpdateMetadata, AllocateProducerIds | CLUSTER_ACTION cluster |
///
/// Other APIs (ApiVersions, SASL, GetTelemetrySubscriptions, PushTelemetry) need nothing.
struct AccessCheck: Sendable {
    let authorizer: Authorizer
    let principal: KafkaPrincipal
    let host: String
    /// Topic names by id (Fetch v13+ names topics by id).
    let topicName: @Sendable (KafkaUUID) -> String?
    /// Whether a Metadata request would create the topic (it does not exist and
    /// `auto.create.topics.enable` is on): that needs CREATE.
    let wouldAutoCreate: @Sendable (String) -> Bool

    func allowed(_ op: AclOperation, _ resource: AclResource) -> Bool {
        authorizer.authorize(principal, host: host, op, resource)
    }
    func topic(_ op: AclOperation, _ name: String) -> Bool { allowed(op, .topic(name)) }
    func group(_ op: AclOperation, _ name: String) -> Bool { allowed(op, .group(name)) }
    func cluster(_ op: AclOperation) -> Bool { allowed(op, .cluster) }

    static let topicDenied = KafkaErrorCode.topicAuthorizationFailed.rawValue
    static let groupDenied = KafkaErrorCode.groupAuthorizationFailed.rawValue
    static let clusterDenied = KafkaErrorCode.clusterAuthorizationFailed.rawValue
    static let txnDenied = KafkaErrorCode.transactionalIdAuthorizationFailed.rawValue

    /// A refusal carried by the response's top-level error code.
    static func refuse(_ apiKey: ApiKey, _ code: Int16, version: Int16) -> Screening {
        guard let (response, versions) = AnyResponse.topLevelError(apiKey: apiKey, errorCode: code), versions.contains(version) else { return .close }
        return .answer(response)
    }

    func screen(_ request: AnyRequest, version: Int16) -> Screening {
        switch request {
        case let .produce(r): return produce(r)
        case let .fetch(r): return fetch(r, version: version)
        case let .metadata(r): return metadata(r, version: version)
        case let .listOffsets(r):
            let denied = Set(r.topics.map(\.name).filter { !topic(.describe, $0) })
            if denied.isEmpty { return .pass }
            var narrowed = r
            narrowed.topics.removeAll { denied.contains($0.name) }
            let refused = r.topics.filter { denied.contains($0.name) }.map { t in
                ListOffsetsResponse.ListOffsetsTopicResponse(name: t.name, partitions: t.partitions.map {
                    .init(partitionIndex: $0.partitionIndex, errorCode: Self.topicDenied) })
            }
            return .narrowed(.listOffsets(narrowed)) { response in
                guard case var .listOffsets(out) = response else { return response }
                out.topics += refused
                return .listOffsets(out)
            }
        case let .offsetForLeaderEpoch(r):
            let denied = Set(r.topics.map(\.topic).filter { !topic(.describe, $0) })
            if denied.isEmpty { return .pass }
            var narrowed = r
            narrowed.topics.removeAll { denied.contains($0.topic) }
            let refused = r.topics.filter { denied.contains($0.topic) }.map { t in
                OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult(topic: t.topic, partitions: t.partitions.map {
                    .init(errorCode: Self.topicDenied, partition: $0.partition, leaderEpoch: -1, endOffset: -1) })
            }
            return .narrowed(.offsetForLeaderEpoch(narrowed)) { response in
                guard case var .offsetForLeaderEpoch(out) = response else { return response }
                out.topics += refused
                return .offsetForLeaderEpoch(out)
            }
        case let .describeTopicPartitions(r):
            let denied = Set(r.topics.map(\.name).filter { !topic(.describe, $0) })
            if denied.isEmpty { return .pass }
            var narrowed = r
            narrowed.topics.removeAll { denied.contains($0.name) }
            let refused = r.topics.filter { denied.contains($0.name) }.map {
                DescribeTopicPartitionsResponse.DescribeTopicPartitionsResponseTopic(errorCode: Self.topicDenied, name: $0.name)
            }
            return .narrowed(.describeTopicPartitions(narrowed)) { response in
                guard case var .describeTopicPartitions(out) = response else { return response }
                out.topics += refused
                return .describeTopicPartitions(out)
            }
        case let .offsetCommit(r):
            guard group(.read, r.groupId) else {
                var out = OffsetCommitResponse()
                out.topics = r.topics.map { t in .init(name: t.name, partitions: t.partitions.map { .init(partitionIndex: $0.partitionIndex, errorCode: Self.groupDenied) }) }
                return .answer(.offsetCommit(out))
            }
            let denied = Set(r.topics.map(\.name).filter { !topic(.read, $0) })
            if denied.isEmpty { return .pass }
            var narrowed = r
            narrowed.topics.removeAll { denied.contains($0.name) }
            let refused = r.topics.filter { denied.contains($0.name) }.map { t in
                OffsetCommitResponse.OffsetCommitResponseTopic(name: t.name, partitions: t.partitions.map {
                    .init(partitionIndex: $0.partitionIndex, errorCode: Self.topicDenied) })
            }
            return .narrowed(.offsetCommit(narrowed)) { response in
                guard case var .offsetCommit(out) = response else { return response }
                out.topics += refused
                return .offsetCommit(out)
            }
        case let .offsetFetch(r): return offsetFetch(r, version: version)
        case let .findCoordinator(r):
            func resource(_ key: String) -> AclResource { r.keyType == 1 ? .transactionalId(key) : .group(key) }
            let code = r.keyType == 1 ? Self.txnDenied : Self.groupDenied
            if version < 4 {
                return allowed(.describe, resource(r.key)) ? .pass : Self.refuse(.findCoordinator, code, version: version)
            }
            let denied = Set(r.coordinatorKeys.filter { !allowed(.describe, resource($0)) })
            if denied.isEmpty { return .pass }
            var narrowed = r
            narrowed.coordinatorKeys.removeAll { denied.contains($0) }
            let refused = r.coordinatorKeys.filter { denied.contains($0) }.map {
                FindCoordinatorResponse.Coordinator(key: $0, nodeId: -1, host: "", port: -1, errorCode: code)
            }
            if narrowed.coordinatorKeys.isEmpty { return .answer(.findCoordinator(FindCoordinatorResponse(coordinators: refused))) }
            return .narrowed(.findCoordinator(narrowed)) { response in
                guard case var .findCoordinator(out) = response else { return response }
                out.coordinators += refused
                return .findCoordinator(out)
            }
        case let .joinGroup(r): return group(.read, r.groupId) ? .pass : Self.refuse(.joinGroup, Self.groupDenied, version: version)
        case let .syncGroup(r): return group(.read, r.groupId) ? .pass : Self.refuse(.syncGroup, Self.groupDenied, version: version)
        case let .heartbeat(r): return group(.read, r.groupId) ? .pass : Self.refuse(.heartbeat, Self.groupDenied, version: version)
        case let .leaveGroup(r): return group(.read, r.groupId) ? .pass : Self.refuse(.leaveGroup, Self.groupDenied, version: version)
        case let .consumerGroupHeartbeat(r): return consumerGroupHeartbeat(r, version: version)
        case let .consumerGroupDescribe(r): return consumerGroupDescribe(r)
        case let .describeGroups(r):
            let denied = Set(r.groups.filter { !group(.describe, $0) })
            if denied.isEmpty && !r.includeAuthorizedOperations { return .pass }
            var narrowed = r
            narrowed.groups.removeAll { denied.contains($0) }
            let refused = r.groups.filter { denied.contains($0) }.map {
                DescribeGroupsResponse.DescribedGroup(errorCode: Self.groupDenied, groupId: $0, groupState: "", protocolType: "", protocolData: "")
            }
            if narrowed.groups.isEmpty { return .answer(.describeGroups(DescribeGroupsResponse(groups: refused))) }
            return .narrowed(.describeGroups(narrowed)) { [self] response in
                guard case var .describeGroups(out) = response else { return response }
                if r.includeAuthorizedOperations {
                    for i in out.groups.indices where out.groups[i].errorCode == 0 {
                        out.groups[i].authorizedOperations = authorizer.authorizedOperations(
                            principal, host: host, .group(out.groups[i].groupId), candidates: Authorizer.groupOperations)
                    }
                }
                out.groups += refused
                return .describeGroups(out)
            }
        case .listGroups:
            if cluster(.describe) { return .pass }
            return .narrowed(request) { [self] response in
                guard case var .listGroups(out) = response else { return response }
                out.groups.removeAll { !group(.describe, $0.groupId) }
                return .listGroups(out)
            }
        case let .deleteGroups(r):
            let denied = Set(r.groupsNames.filter { !group(.delete, $0) })
            if denied.isEmpty { return .pass }
            var narrowed = r
            narrowed.groupsNames.removeAll { denied.contains($0) }
            let refused = r.groupsNames.filter { denied.contains($0) }.map { DeleteGroupsResponse.DeletableGroupResult(groupId: $0, errorCode: Self.groupDenied) }
            if narrowed.groupsNames.isEmpty { return .answer(.deleteGroups(DeleteGroupsResponse(results: refused))) }
            return .narrowed(.deleteGroups(narrowed)) { response in
                guard case var .deleteGroups(out) = response else { return response }
                out.results += refused
                return .deleteGroups(out)
            }
        case let .createTopics(r):
            if cluster(.create) { return .pass }
            let denied = Set(r.topics.map(\.name).filter { !topic(.create, $0) })
            if denied.isEmpty { return .pass }
            var narrowed = r
            narrowed.topics.removeAll { denied.contains($0.name) }
            let refused = r.topics.filter { denied.contains($0.name) }.map {
                CreateTopicsResponse.CreatableTopicResult(name: $0.name, errorCode: Self.topicDenied, errorMessage: "not authorized to create topic \($0.name)",
                                                          numPartitions: -1, replicationFactor: -1)
            }
            if narrowed.topics.isEmpty { return .answer(.createTopics(CreateTopicsResponse(topics: refused))) }
            return .narrowed(.createTopics(narrowed)) { response in
                guard case var .createTopics(out) = response else { return response }
                out.topics += refused
                return .createTopics(out)
            }
        case let .deleteTopics(r): return deleteTopics(r)
        case let .deleteRecords(r):
            let denied = Set(r.topics.map(\.name).filter { !topic(.delete, $0) })
            if denied.isEmpty { return .pass }
            var narrowed = r
            narrowed.topics.removeAll { denied.contains($0.name) }
            let refused = r.topics.filter { denied.contains($0.name) }.map { t in
                DeleteRecordsResponse.DeleteRecordsTopicResult(name: t.name, partitions: t.partitions.map {
                    .init(partitionIndex: $0.partitionIndex, lowWatermark: -1, errorCode: Self.topicDenied) })
            }
            if narrowed.topics.isEmpty { return .answer(.deleteRecords(DeleteRecordsResponse(topics: refused))) }
            return .narrowed(.deleteRecords(narrowed)) { response in
                guard case var .deleteRecords(out) = response else { return response }
                out.topics += refused
                return .deleteRecords(out)
            }
        case let .createPartitions(r):
            let denied = Set(r.topics.map(\.name).filter { !topic(.alter, $0) })
            if denied.isEmpty { return .pass }
            var narrowed = r
            narrowed.topics.removeAll { denied.contains($0.name) }
            let refused = r.topics.filter { denied.contains($0.name) }.map {
                CreatePartitionsResponse.CreatePartitionsTopicResult(name: $0.name, errorCode: Self.topicDenied, errorMessage: "not authorized to alter topic \($0.name)")
            }
            if narrowed.topics.isEmpty { return .answer(.createPartitions(CreatePartitionsResponse(results: refused))) }
            return .narrowed(.createPartitions(narrowed)) { response in
                guard case var .createPartitions(out) = response else { return response }
                out.results += refused
                return .createPartitions(out)
            }
        case let .describeConfigs(r):
            let denied = r.resources.filter { !configAllowed(.describeConfigs, type: $0.resourceType, name: $0.resourceName) }
            if denied.isEmpty { return .pass }
            var narrowed = r
            narrowed.resources.removeAll { res in denied.contains { $0.resourceType == res.resourceType && $0.resourceName == res.resourceName } }
            let refused = denied.map {
                DescribeConfigsResponse.DescribeConfigsResult(errorCode: Self.configCode($0.resourceType), errorMessage: "not authorized",
                                                              resourceType: $0.resourceType, resourceName: $0.resourceName)
            }
            if narrowed.resources.isEmpty { return .answer(.describeConfigs(DescribeConfigsResponse(results: refused))) }
            return .narrowed(.describeConfigs(narrowed)) { response in
                guard case var .describeConfigs(out) = response else { return response }
                out.results += refused
                return .describeConfigs(out)
            }
        case let .alterConfigs(r):
            let denied = r.resources.filter { !configAllowed(.alterConfigs, type: $0.resourceType, name: $0.resourceName) }
            if denied.isEmpty { return .pass }
            var narrowed = r
            narrowed.resources.removeAll { res in denied.contains { $0.resourceType == res.resourceType && $0.resourceName == res.resourceName } }
            let refused = denied.map {
                AlterConfigsResponse.AlterConfigsResourceResponse(errorCode: Self.configCode($0.resourceType), errorMessage: "not authorized",
                                                                  resourceType: $0.resourceType, resourceName: $0.resourceName)
            }
            if narrowed.resources.isEmpty { return .answer(.alterConfigs(AlterConfigsResponse(responses: refused))) }
            return .narrowed(.alterConfigs(narrowed)) { response in
                guard case var .alterConfigs(out) = response else { return response }
                out.responses += refused
                return .alterConfigs(out)
            }
        case let .incrementalAlterConfigs(r):
            let denied = r.resources.filter { !configAllowed(.alterConfigs, type: $0.resourceType, name: $0.resourceName) }
            if denied.isEmpty { return .pass }
            var narrowed = r
            narrowed.resources.removeAll { res in denied.contains { $0.resourceType == res.resourceType && $0.resourceName == res.resourceName } }
            let refused = denied.map {
                IncrementalAlterConfigsResponse.AlterConfigsResourceResponse(errorCode: Self.configCode($0.resourceType), errorMessage: "not authorized",
                                                                             resourceType: $0.resourceType, resourceName: $0.resourceName)
            }
            if narrowed.resources.isEmpty { return .answer(.incrementalAlterConfigs(IncrementalAlterConfigsResponse(responses: refused))) }
            return .narrowed(.incrementalAlterConfigs(narrowed)) { response in
                guard case var .incrementalAlterConfigs(out) = response else { return response }
                out.responses += refused
                return .incrementalAlterConfigs(out)
            }
        case let .initProducerId(r):
            if let txn = r.transactionalId {
                return allowed(.write, .transactionalId(txn)) ? .pass : Self.refuse(.initProducerId, Self.txnDenied, version: version)
            }
            if cluster(.idempotentWrite) || authorizer.authorizeAny(principal, host: host, .write, type: .topic) { return .pass }
            return Self.refuse(.initProducerId, Self.clusterDenied, version: version)
        case .alterPartitionReassignments:
            return cluster(.alter) ? .pass : .answer(.alterPartitionReassignments(AlterPartitionReassignmentsResponse(errorCode: Self.clusterDenied)))
        case .listPartitionReassignments:
            return cluster(.describe) ? .pass : .answer(.listPartitionReassignments(ListPartitionReassignmentsResponse(errorCode: Self.clusterDenied)))
        case let .describeCluster(r):
            guard cluster(.describe) else { return .answer(.describeCluster(DescribeClusterResponse(errorCode: Self.clusterDenied, clusterId: ""))) }
            guard r.includeClusterAuthorizedOperations else { return .pass }
            return .narrowed(request) { [self] response in
                guard case var .describeCluster(out) = response else { return response }
                out.clusterAuthorizedOperations = authorizer.authorizedOperations(principal, host: host, .cluster, candidates: Authorizer.clusterOperations)
                return .describeCluster(out)
            }
        case .describeAcls:
            return cluster(.describe) ? .pass : .answer(.describeAcls(DescribeAclsResponse(errorCode: Self.clusterDenied, errorMessage: "not authorized to describe ACLs")))
        case let .createAcls(r):
            if cluster(.alter) { return .pass }
            return .answer(.createAcls(CreateAclsResponse(results: r.creations.map { _ in
                .init(errorCode: Self.clusterDenied, errorMessage: "not authorized to create ACLs") })))
        case let .deleteAcls(r):
            if cluster(.alter) { return .pass }
            return .answer(.deleteAcls(DeleteAclsResponse(filterResults: r.filters.map { _ in
                .init(errorCode: Self.clusterDenied, errorMessage: "not authorized to delete ACLs") })))
        case let .offsetDelete(r): return offsetDelete(r)
        case .describeLogDirs: return describeLogDirs(version: version)
        case let .electLeaders(r): return electLeaders(r, version: version)
        case let .describeProducers(r): return describeProducers(r)
        case .listClientMetricsResources: return listClientMetricsResources()
        case .brokerRegistration:
            return cluster(.clusterAction) ? .pass : .answer(.brokerRegistration(BrokerRegistrationResponse(errorCode: Self.clusterDenied, brokerEpoch: -1)))
        case .brokerHeartbeat:
            return cluster(.clusterAction) ? .pass : .answer(.brokerHeartbeat(BrokerHeartbeatResponse(errorCode: Self.clusterDenied, isFenced: false)))
        case .stopReplica: return cluster(.clusterAction) ? .pass : Self.refuse(.stopReplica, Self.clusterDenied, version: version)
        case .updateMetadata: return cluster(.clusterAction) ? .pass : Self.refuse(.updateMetadata, Self.clusterDenied, version: version)
        case .addPartitionsToTxn, .addOffsetsToTxn, .endTxn, .txnOffsetCommit, .writeTxnMarkers, .describeTransactions, .listTransactions:
            return screenTransactions(request, version: version)
        case .allocateProducerIds:
            return cluster(.clusterAction) ? .pass : .answer(.allocateProducerIds(AllocateProducerIdsResponse(errorCode: Self.clusterDenied)))
        case .alterClientQuotas, .describeClientQuotas: return clientQuotas(request)
        default:
            return .pass
        }
    }

    /// Config resources: 2 topic, 4 broker, 8 broker logger (both checked on the cluster).
    func configAllowed(_ op: AclOperation, type: Int8, name: String) -> Bool {
        type == 2 ? topic(op, name) : cluster(op)
    }
    static func configCode(_ type: Int8) -> Int16 { type == 2 ? topicDenied : clusterDenied }

    private func produce(_ r: ProduceRequest) -> Screening {
        if let txn = r.transactionalId, !allowed(.write, .transactionalId(txn)) {
            return .answer(.produce(ProduceResponse(responses: r.topicData.map { t in
                .init(name: t.name, partitionResponses: t.partitionData.map { .init(index: $0.index, errorCode: Self.txnDenied, baseOffset: -1) }) })))
        }
        let denied = Set(r.topicData.map(\.name).filter { !topic(.write, $0) })
        if denied.isEmpty { return .pass }
        var narrowed = r
        narrowed.topicData.removeAll { denied.contains($0.name) }
        let refused = r.topicData.filter { denied.contains($0.name) }.map { t in
            ProduceResponse.TopicProduceResponse(name: t.name, partitionResponses: t.partitionData.map {
                .init(index: $0.index, errorCode: Self.topicDenied, baseOffset: -1) })
        }
        if narrowed.topicData.isEmpty && r.acks != 0 { return .answer(.produce(ProduceResponse(responses: refused))) }
        return .narrowed(.produce(narrowed)) { response in
            guard case var .produce(out) = response else { return response }
            out.responses += refused
            return .produce(out)
        }
    }

    private func fetch(_ r: FetchRequest, version: Int16) -> Screening {
        let replica = version >= 15 ? r.replicaState.replicaId : r.replicaId
        if replica >= 0 {
            return cluster(.clusterAction) ? .pass : Self.refuse(.fetch, Self.clusterDenied, version: version)
        }
        func name(_ t: FetchRequest.FetchTopic) -> String { version >= 13 ? (topicName(t.topicId) ?? "") : t.topic }
        // Unknown topic ids are left to the handler (UNKNOWN_TOPIC_ID).
        let isDenied: (FetchRequest.FetchTopic) -> Bool = { [self] t in
            let n = name(t)
            return !n.isEmpty && !topic(.read, n)
        }
        let deniedTopics = r.topics.filter(isDenied)
        if deniedTopics.isEmpty { return .pass }
        var narrowed = r
        narrowed.topics.removeAll(where: isDenied)
        let refused = deniedTopics.map { t in
            FetchResponse.FetchableTopicResponse(topic: t.topic, topicId: t.topicId, partitions: t.partitions.map {
                .init(partitionIndex: $0.partition, errorCode: Self.topicDenied, highWatermark: -1, lastStableOffset: -1, logStartOffset: -1,
                      records: []) })  // librdkafka refuses a null record set
        }
        // Nothing left to read: answer now rather than long-poll an empty request.
        if narrowed.topics.isEmpty { return .answer(.fetch(FetchResponse(sessionId: 0, responses: refused))) }
        return .narrowed(.fetch(narrowed)) { response in
            guard case var .fetch(out) = response else { return response }
            out.responses += refused
            return .fetch(out)
        }
    }

    private func metadata(_ r: MetadataRequest, version: Int16) -> Screening {
        var narrowed = r
        var refused: [MetadataResponse.MetadataResponseTopic] = []
        if let topics = r.topics {
            var kept: [MetadataRequest.MetadataRequestTopic] = []
            for t in topics {
                let name = t.name ?? topicName(t.topicId) ?? ""
                if name.isEmpty {
                    kept.append(t)
                } else if !topic(.describe, name) {
                    refused.append(.init(errorCode: Self.topicDenied, name: t.name, topicId: t.topicId, topicAuthorizedOperations: Int32.min))
                } else if r.allowAutoTopicCreation && wouldAutoCreate(name) && !cluster(.create) && !topic(.create, name) {
                    refused.append(.init(errorCode: Self.topicDenied, name: t.name, topicId: t.topicId, topicAuthorizedOperations: Int32.min))
                } else {
                    kept.append(t)
                }
            }
            narrowed.topics = kept
        }
        let listAll = r.topics == nil
        let wantTopicOps = r.includeTopicAuthorizedOperations, wantClusterOps = r.includeClusterAuthorizedOperations
        let requestedNone = r.topics != nil && narrowed.topics?.isEmpty == true && !(r.topics?.isEmpty ?? true)
        let refusedTopics = refused
        return .narrowed(.metadata(narrowed)) { [self] response in
            guard case var .metadata(out) = response else { return response }
            // A request whose every topic was refused must not list them all (an empty list
            // there would mean "every topic" before v1).
            if requestedNone { out.topics = [] }
            if listAll { out.topics.removeAll { !topic(.describe, $0.name ?? "") } }
            if wantTopicOps {
                for i in out.topics.indices where out.topics[i].errorCode == 0 {
                    out.topics[i].topicAuthorizedOperations = authorizer.authorizedOperations(
                        principal, host: host, .topic(out.topics[i].name ?? ""), candidates: Authorizer.topicOperations)
                }
            }
            if wantClusterOps {
                out.clusterAuthorizedOperations = authorizer.authorizedOperations(principal, host: host, .cluster, candidates: Authorizer.clusterOperations)
            }
            out.topics += refusedTopics
            return .metadata(out)
        }
    }

    private func offsetFetch(_ r: OffsetFetchRequest, version: Int16) -> Screening {
        if version < 8 {
            guard group(.describe, r.groupId) else { return Self.refuse(.offsetFetch, Self.groupDenied, version: version) }
            // Topics the principal may not describe are answered with TOPIC_AUTHORIZATION_FAILED
            // (named ones) or left out (all of the group's).
            return .narrowed(.offsetFetch(r)) { [self] response in
                guard case var .offsetFetch(out) = response else { return response }
                if r.topics == nil {
                    out.topics.removeAll { !topic(.describe, $0.name) }
                } else {
                    for i in out.topics.indices where !topic(.describe, out.topics[i].name) {
                        for j in out.topics[i].partitions.indices {
                            out.topics[i].partitions[j] = .init(partitionIndex: out.topics[i].partitions[j].partitionIndex, committedOffset: -1,
                                                                metadata: "", errorCode: Self.topicDenied)
                        }
                    }
                }
                return .offsetFetch(out)
            }
        }
        let deniedGroups = Set(r.groups.map(\.groupId).filter { !group(.describe, $0) })
        var narrowed = r
        narrowed.groups.removeAll { deniedGroups.contains($0.groupId) }
        let refused = r.groups.filter { deniedGroups.contains($0.groupId) }.map { OffsetFetchResponse.OffsetFetchResponseGroup(groupId: $0.groupId, errorCode: Self.groupDenied) }
        if narrowed.groups.isEmpty && !refused.isEmpty { return .answer(.offsetFetch(OffsetFetchResponse(groups: refused))) }
        let askedAll = Dictionary(r.groups.map { ($0.groupId, $0.topics == nil) }, uniquingKeysWith: { a, _ in a })
        return .narrowed(.offsetFetch(narrowed)) { [self] response in
            guard case var .offsetFetch(out) = response else { return response }
            for g in out.groups.indices {
                if askedAll[out.groups[g].groupId] ?? false {
                    out.groups[g].topics.removeAll { !topic(.describe, $0.name) }
                    continue
                }
                for i in out.groups[g].topics.indices where !topic(.describe, out.groups[g].topics[i].name) {
                    for j in out.groups[g].topics[i].partitions.indices {
                        out.groups[g].topics[i].partitions[j] = .init(partitionIndex: out.groups[g].topics[i].partitions[j].partitionIndex,
                                                                      committedOffset: -1, metadata: "", errorCode: Self.topicDenied)
                    }
                }
            }
            out.groups += refused
            return .offsetFetch(out)
        }
    }

    private func deleteTopics(_ r: DeleteTopicsRequest) -> Screening {
        var narrowed = r
        var refused: [DeleteTopicsResponse.DeletableTopicResult] = []
        narrowed.topicNames = r.topicNames.filter { n in
            if topic(.delete, n) { return true }
            refused.append(.init(name: n, errorCode: Self.topicDenied, errorMessage: "not authorized to delete topic \(n)"))
            return false
        }
        narrowed.topics = r.topics.filter { t in
            let n = t.name ?? topicName(t.topicId) ?? ""
            if n.isEmpty || topic(.delete, n) { return true }
            refused.append(.init(name: t.name, topicId: t.topicId, errorCode: Self.topicDenied, errorMessage: "not authorized to delete topic \(n)"))
            return false
        }
        if refused.isEmpty { return .pass }
        if narrowed.topicNames.isEmpty && narrowed.topics.isEmpty { return .answer(.deleteTopics(DeleteTopicsResponse(responses: refused))) }
        let extra = refused
        return .narrowed(.deleteTopics(narrowed)) { response in
            guard case var .deleteTopics(out) = response else { return response }
            out.responses += extra
            return .deleteTopics(out)
        }
    }
}

/// The broker's current authorizer: its settings, and the ACL bindings of the cluster metadata
/// (rebuilt whenever they change).
public final class BrokerAuthorizer: Sendable {
    private let current: Mutex<Authorizer>

    public init(settings: AuthorizerSettings, bindings: [AclBinding] = []) {
        current = Mutex(Authorizer(settings: settings, bindings: bindings))
    }

    public var authorizer: Authorizer { current.withLock { $0 } }

    func update(bindings: [AclBinding]) {
        current.withLock { $0 = Authorizer(settings: $0.settings, bindings: bindings) }
    }

    /// Follows the ACL bindings of `log`.
    func follow(_ log: MetadataLog) {
        update(bindings: log.current.acls)
        log.observe { [weak self] old, new in
            if old.acls != new.acls { self?.update(bindings: new.acls) }
        }
    }
}

/// Runs the authorizer before an API's handler (see `AccessCheck`).
struct AuthorizingHandler: ApiHandler {
    let inner: any ApiHandler
    let authorizer: BrokerAuthorizer
    let core: BrokerCore
    var apiKey: ApiKey { inner.apiKey }
    var versions: ClosedRange<Int16> { inner.versions }

    /// The IP of a peer `HOST:PORT` (`[v6]:port` too).
    static func host(ofPeer peer: String) -> String {
        guard let colon = peer.lastIndex(of: ":") else { return peer }
        var host = peer[..<colon]
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        return String(host)
    }

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        let a = authorizer.authorizer
        guard a.settings.enabled else { return await inner.handle(request, context: context) }
        let core = self.core
        let check = AccessCheck(authorizer: a, principal: context.connection.session.principal, host: Self.host(ofPeer: context.connection.peer),
                                topicName: { core.registry.topic(id: $0)?.name },
                                wouldAutoCreate: { core.registry.topic(named: $0) == nil && core.autoCreateTopics })
        switch check.screen(request, version: context.apiVersion) {
        case .pass: return await inner.handle(request, context: context)
        case let .answer(response): return .response(response)
        case .close: return .close
        case let .narrowed(narrowed, complete):
            switch await inner.handle(narrowed, context: context) {
            case let .response(r): return .response(complete(r))
            case .noResponse: return .noResponse
            case .close: return .close
            case let .deferred(later): return .deferred { await later().map(complete) }
            case let .longPoll(later): return .longPoll { await later().map(complete) }
            }
        }
    }
}
