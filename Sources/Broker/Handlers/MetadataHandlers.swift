import KafkaProtocol

/// Authorized-operations bits reported when a client asks (no ACLs: everything a topic admits).
let allTopicOperations: Int32 = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11)
let allClusterOperations: Int32 = (1 << 4) | (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12)

/// Metadata (API 3), versions 0–12: the cluster's live brokers, and topics with one replica per
/// partition, its owner (the leader, at the partition epoch; -1 with LEADER_NOT_AVAILABLE while
/// the owner is fenced and its partitions wait). Unknown topics are created when
/// `auto.create.topics.enable` is true and the request allows it (v4+; always for v0–3).
public struct MetadataHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.metadata
    public let versions: ClosedRange<Int16> = 0...12
    public init(core: BrokerCore) { self.core = core }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .metadata(r) = request else { return .close }
        let version = context.apiVersion
        let cluster = core.registry.state
        var response = MetadataResponse(
            brokers: core.liveBrokers(on: context.connection.listener).map { .init(nodeId: $0.id, host: $0.host, port: $0.port, rack: nil) },
            clusterId: core.clusterId, controllerId: cluster.controllerID)
        if r.includeClusterAuthorizedOperations && version >= 8 && version <= 10 {
            response.clusterAuthorizedOperations = allClusterOperations
        }
        // Which topics: v0 [] and v1+ null mean all.
        var wanted: [(name: String?, id: KafkaUUID)] = []
        let all: Bool
        if let topics = r.topics {
            all = version == 0 && topics.isEmpty
            wanted = topics.map { ($0.name, $0.topicId) }
        } else {
            all = true
        }
        if all {
            wanted = core.registry.topics.map { ($0.name, $0.topicID) }
        }
        let allowCreate = version < 4 || r.allowAutoTopicCreation
        for w in wanted {
            var t = MetadataResponse.MetadataResponseTopic(name: w.name, topicId: w.id)
            if r.includeTopicAuthorizedOperations && version >= 8 { t.topicAuthorizedOperations = allTopicOperations }
            var record: TopicRecord? = nil
            if let name = w.name, !name.isEmpty {
                record = core.registry.topic(named: name)
                if record == nil {
                    if let problem = TopicRegistry.nameProblem(name) {
                        t.errorCode = KafkaErrorCode.invalidTopicException.rawValue
                        core.logger.debug("metadata for an invalid topic name", metadata: ["topic": name, "reason": problem])
                    } else if allowCreate && core.autoCreateTopics {
                        do {
                            record = try await core.autoCreate(name)
                        } catch {
                            core.logger.warning("topic auto-creation failed", metadata: ["topic": name, "error": "\(error)"])
                            t.errorCode = KafkaErrorCode.unknownServerError.rawValue
                        }
                    } else {
                        t.errorCode = KafkaErrorCode.unknownTopicOrPartition.rawValue
                    }
                }
            } else if w.id != .zero {
                record = core.registry.topic(id: w.id)
                if record == nil { t.errorCode = KafkaErrorCode.unknownTopicId.rawValue }
            } else {
                t.errorCode = KafkaErrorCode.invalidTopicException.rawValue
            }
            if let record {
                t.name = record.name
                t.topicId = record.topicID
                t.errorCode = 0
                let state = core.registry.state
                t.partitions = record.partitions.map { p in
                    let v = PartitionView(p, state)
                    return .init(errorCode: v.errorCode, partitionIndex: p.index, leaderId: v.leader, leaderEpoch: p.leaderEpoch,
                                 replicaNodes: [p.owner], isrNodes: v.isr, offlineReplicas: v.offline)
                }
            }
            response.topics.append(t)
        }
        return .response(.metadata(response))
    }
}

/// How clients see a partition: one replica, its owner, which leads while it is live; a fenced
/// owner (its partitions waiting for it) shows leader -1 and LEADER_NOT_AVAILABLE.
struct PartitionView {
    let errorCode: Int16
    let leader: Int32
    let isr: [Int32]
    let offline: [Int32]

    init(_ p: PartitionRecord, _ state: ClusterState) {
        let online = state.brokers[p.owner].map { !$0.fenced } ?? false
        errorCode = online ? 0 : KafkaErrorCode.leaderNotAvailable.rawValue
        leader = online ? p.owner : -1
        isr = online ? [p.owner] : []
        offline = online ? [] : [p.owner]
    }
}

/// DescribeTopicPartitions (API 75), version 0 (Kafka 3.7+ admin clients describe topics with
/// it): the requested topics (all when none is named), sorted by name, with their partitions as
/// Metadata shows them, at most `responsePartitionLimit` partitions per answer; `nextCursor`
/// names where the next request starts. Unknown topics get UNKNOWN_TOPIC_OR_PARTITION.
public struct DescribeTopicPartitionsHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.describeTopicPartitions
    public let versions: ClosedRange<Int16> = 0...0
    public init(core: BrokerCore) { self.core = core }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .describeTopicPartitions(r) = request else { return .close }
        let state = core.registry.state
        var names = r.topics.isEmpty ? Array(state.topics.keys) : r.topics.map(\.name)
        names = Array(Set(names)).sorted()
        var response = DescribeTopicPartitionsResponse()
        var budget = Int(r.responsePartitionLimit > 0 ? r.responsePartitionLimit : 2000)
        for name in names {
            if let c = r.cursor, name < c.topicName { continue }
            guard let record = state.topics[name] else {
                response.topics.append(.init(errorCode: KafkaErrorCode.unknownTopicOrPartition.rawValue, name: name, topicId: .zero,
                                             isInternal: false, partitions: [], topicAuthorizedOperations: allTopicOperations))
                continue
            }
            let first = r.cursor.flatMap { $0.topicName == name ? Int($0.partitionIndex) : nil } ?? 0
            if budget == 0 {
                if first < record.partitions.count { response.nextCursor = .init(topicName: name, partitionIndex: Int32(first)) }
                if response.nextCursor != nil { break }
                continue
            }
            var t = DescribeTopicPartitionsResponse.DescribeTopicPartitionsResponseTopic(
                errorCode: 0, name: name, topicId: record.topicID, isInternal: false, partitions: [], topicAuthorizedOperations: allTopicOperations)
            for p in record.partitions where Int(p.index) >= first {
                if budget == 0 {
                    response.nextCursor = .init(topicName: name, partitionIndex: p.index)
                    break
                }
                let v = PartitionView(p, state)
                t.partitions.append(.init(errorCode: v.errorCode, partitionIndex: p.index, leaderId: v.leader, leaderEpoch: p.leaderEpoch,
                                          replicaNodes: [p.owner], isrNodes: v.isr, eligibleLeaderReplicas: [], lastKnownElr: [],
                                          offlineReplicas: v.offline))
                budget -= 1
            }
            response.topics.append(t)
            if response.nextCursor != nil { break }
        }
        return .response(.describeTopicPartitions(response))
    }
}

/// DescribeCluster (API 60), versions 0–1: the live brokers (with their addresses on the
/// listener the client came in on) and the controller.
public struct DescribeClusterHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.describeCluster
    public let versions: ClosedRange<Int16> = 0...1
    public init(core: BrokerCore) { self.core = core }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .describeCluster(r) = request else { return .close }
        var response = DescribeClusterResponse(
            endpointType: r.endpointType, clusterId: core.clusterId, controllerId: core.registry.state.controllerID,
            brokers: core.liveBrokers(on: context.connection.listener).map { .init(brokerId: $0.id, host: $0.host, port: $0.port, rack: nil) })
        if r.endpointType != 1 {
            response.errorCode = KafkaErrorCode.invalidRequest.rawValue
            response.errorMessage = "endpoint type \(r.endpointType) is not served; only brokers (1)"
            response.brokers = []
        }
        if r.includeClusterAuthorizedOperations { response.clusterAuthorizedOperations = allClusterOperations }
        return .response(.describeCluster(response))
    }
}
