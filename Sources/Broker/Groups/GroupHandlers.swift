import KafkaProtocol

// The Kafka APIs of the group coordinator. Each handler translates between the wire versions
// and the coordinator; version differences live here, group logic in GroupStateMachine.

/// `host` part of a peer address, as Kafka shows client hosts (`/127.0.0.1`).
func clientHost(_ peer: String) -> String {
    guard let colon = peer.lastIndex(of: ":") else { return "/" + peer }
    return "/" + peer[..<colon]
}

/// FindCoordinator v0–v6: group keys (type 0) are answered from the coordinator's
/// ``GroupPlacement`` (COORDINATOR_NOT_AVAILABLE while it names none); transactional ids
/// (type 1) from the same placement (the transaction coordinator uses it too). Version 4+ answers each of the batched keys;
/// share-group keys (type 2) get INVALID_REQUEST.
public struct FindCoordinatorHandler: ApiHandler {
    let coordinator: GroupCoordinator
    public var apiKey: ApiKey { .findCoordinator }
    public var versions: ClosedRange<Int16> { 0...6 }

    /// The answer for one key, with the coordinator's address for clients of `listener`.
    func locate(_ key: String, keyType: Int8, listener: ListenerName) -> Result<(nodeId: Int32, host: String, port: Int32), FindCoordinatorError> {
        let placement = coordinator.placement
        switch keyType {
        case 0:
            guard let found = placement.coordinator(for: key) else {
                return .failure(FindCoordinatorError(code: KafkaErrorCode.coordinatorNotAvailable.rawValue,
                                                     message: "no coordinator available for group"))
            }
            let a = placement.address(of: found.nodeId, on: listener) ?? (found.host, found.port)
            return .success((found.nodeId, a.host, a.port))
        case 1:
            // Transactional ids are placed like groups (TransactionCoordinator uses the same placement).
            guard let found = placement.coordinator(for: key) else {
                return .failure(FindCoordinatorError(code: KafkaErrorCode.coordinatorNotAvailable.rawValue,
                                                     message: "no coordinator available for transactional id"))
            }
            let a = placement.address(of: found.nodeId, on: listener) ?? (found.host, found.port)
            return .success((found.nodeId, a.host, a.port))
        default:
            return .failure(FindCoordinatorError(code: KafkaErrorCode.invalidRequest.rawValue,
                                                 message: "unsupported coordinator key type \(keyType)"))
        }
    }

    struct FindCoordinatorError: Error {
        var code: Int16
        var message: String
    }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .findCoordinator(r) = request else { return .close }
        if context.apiVersion >= 4 {
            let answers = r.coordinatorKeys.map { key in
                switch locate(key, keyType: r.keyType, listener: context.connection.listener) {
                case let .success(c):
                    FindCoordinatorResponse.Coordinator(key: key, nodeId: c.nodeId, host: c.host, port: c.port)
                case let .failure(e):
                    FindCoordinatorResponse.Coordinator(key: key, nodeId: -1, host: "", port: -1, errorCode: e.code, errorMessage: e.message)
                }
            }
            return .response(.findCoordinator(FindCoordinatorResponse(coordinators: answers)))
        }
        switch locate(r.key, keyType: r.keyType, listener: context.connection.listener) {
        case let .success(c):
            return .response(.findCoordinator(FindCoordinatorResponse(
                errorCode: 0, errorMessage: context.apiVersion >= 1 ? "NONE" : nil, nodeId: c.nodeId, host: c.host, port: c.port)))
        case let .failure(e):
            return .response(.findCoordinator(FindCoordinatorResponse(
                errorCode: e.code, errorMessage: context.apiVersion >= 1 ? e.message : nil, nodeId: -1, host: "", port: -1)))
        }
    }
}

/// JoinGroup v0–v9, deferred until the rebalance completes.
public struct JoinGroupHandler: ApiHandler {
    let coordinator: GroupCoordinator
    public var apiKey: ApiKey { .joinGroup }
    public var versions: ClosedRange<Int16> { 0...9 }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .joinGroup(r) = request else { return .close }
        let version = context.apiVersion
        let join = JoinRequest(
            memberId: r.memberId, groupInstanceId: version >= 5 ? r.groupInstanceId : nil, clientId: context.clientId ?? "",
            clientHost: clientHost(context.connection.peer), sessionTimeoutMs: r.sessionTimeoutMs,
            rebalanceTimeoutMs: version >= 1 ? r.rebalanceTimeoutMs : r.sessionTimeoutMs, protocolType: r.protocolType,
            protocols: r.protocols.map { GroupProtocol(name: $0.name, metadata: $0.metadata) }, requireKnownMemberId: version >= 4)
        switch await coordinator.join(groupId: r.groupId, request: join) {
        case let .done(outcome):
            return .response(.joinGroup(Self.response(outcome, version: version)))
        case let .pending(token):
            return .deferred {
                switch await coordinator.wait(token) {
                case let .join(outcome): return .joinGroup(Self.response(outcome, version: version))
                case let .unavailable(code): return .joinGroup(Self.response(.error(code, memberId: r.memberId), version: version))
                default: return .joinGroup(Self.response(.error(KafkaErrorCode.unknownServerError.rawValue, memberId: r.memberId), version: version))
                }
            }
        }
    }

    static func response(_ o: JoinOutcome, version: Int16) -> JoinGroupResponse {
        JoinGroupResponse(
            errorCode: o.errorCode, generationId: o.generationId, protocolType: version >= 7 ? o.protocolType : nil,
            protocolName: o.protocolName ?? (version >= 7 ? nil : ""), leader: o.leader,
            skipAssignment: version >= 9 && o.skipAssignment, memberId: o.memberId,
            members: o.members.map {
                .init(memberId: $0.memberId, groupInstanceId: version >= 5 ? $0.groupInstanceId : nil, metadata: $0.metadata)
            })
    }
}

/// SyncGroup v0–v5, deferred until the leader's assignments arrive.
public struct SyncGroupHandler: ApiHandler {
    let coordinator: GroupCoordinator
    public var apiKey: ApiKey { .syncGroup }
    public var versions: ClosedRange<Int16> { 0...5 }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .syncGroup(r) = request else { return .close }
        let version = context.apiVersion
        var assignments: [String: [UInt8]] = [:]
        for a in r.assignments { assignments[a.memberId] = a.assignment }
        let ticket = await coordinator.sync(
            groupId: r.groupId, memberId: r.memberId, groupInstanceId: version >= 3 ? r.groupInstanceId : nil,
            generationId: r.generationId, protocolType: version >= 5 ? r.protocolType : nil,
            protocolName: version >= 5 ? r.protocolName : nil, assignments: assignments)
        switch ticket {
        case let .done(outcome):
            return .response(.syncGroup(Self.response(outcome, version: version)))
        case let .pending(token):
            return .deferred {
                switch await coordinator.wait(token) {
                case let .sync(outcome): return .syncGroup(Self.response(outcome, version: version))
                case let .unavailable(code): return .syncGroup(Self.response(.error(code), version: version))
                default: return .syncGroup(Self.response(.error(KafkaErrorCode.unknownServerError.rawValue), version: version))
                }
            }
        }
    }

    static func response(_ o: SyncOutcome, version: Int16) -> SyncGroupResponse {
        SyncGroupResponse(errorCode: o.errorCode, protocolType: version >= 5 ? o.protocolType : nil,
                          protocolName: version >= 5 ? o.protocolName : nil, assignment: o.assignment)
    }
}

/// Heartbeat v0–v4.
public struct HeartbeatHandler: ApiHandler {
    let coordinator: GroupCoordinator
    public var apiKey: ApiKey { .heartbeat }
    public var versions: ClosedRange<Int16> { 0...4 }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .heartbeat(r) = request else { return .close }
        let code = await coordinator.heartbeat(groupId: r.groupId, memberId: r.memberId,
                                               groupInstanceId: context.apiVersion >= 3 ? r.groupInstanceId : nil,
                                               generationId: r.generationId)
        return .response(.heartbeat(HeartbeatResponse(errorCode: code)))
    }
}

/// LeaveGroup v0–v5: one member id before v3, a batch of member identities from v3.
public struct LeaveGroupHandler: ApiHandler {
    let coordinator: GroupCoordinator
    public var apiKey: ApiKey { .leaveGroup }
    public var versions: ClosedRange<Int16> { 0...5 }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .leaveGroup(r) = request else { return .close }
        if context.apiVersion < 3 {
            let (top, codes) = await coordinator.leave(groupId: r.groupId, members: [(r.memberId, nil)])
            return .response(.leaveGroup(LeaveGroupResponse(errorCode: top != 0 ? top : codes.first ?? 0)))
        }
        let identities = r.members.map { (memberId: $0.memberId, groupInstanceId: $0.groupInstanceId) }
        let (top, codes) = await coordinator.leave(groupId: r.groupId, members: identities)
        if top != 0 { return .response(.leaveGroup(LeaveGroupResponse(errorCode: top))) }
        let results = zip(r.members, codes).map {
            LeaveGroupResponse.MemberResponse(memberId: $0.memberId, groupInstanceId: $0.groupInstanceId, errorCode: $1)
        }
        return .response(.leaveGroup(LeaveGroupResponse(errorCode: 0, members: results)))
    }
}

/// OffsetCommit v0–v9, answered once the offsets are durable in the bucket. v0 and
/// generation -1 commits (standalone consumers) are accepted while the group has no members.
/// The retention time of v2–v4 is ignored (the broker's retention applies).
public struct OffsetCommitHandler: ApiHandler {
    let coordinator: GroupCoordinator
    public var apiKey: ApiKey { .offsetCommit }
    public var versions: ClosedRange<Int16> { 0...9 }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .offsetCommit(r) = request else { return .close }
        let version = context.apiVersion
        let nowMs = Int64(coordinator.clock.wallTime().timeIntervalSince1970 * 1000)
        var entries: [OffsetCommitEntry] = []
        var partitionCounts: [String: Int?] = [:]
        for topic in r.topics {
            if partitionCounts[topic.name] == nil { partitionCounts[topic.name] = .some(await coordinator.topics.partitionCount(topic: topic.name)) }
            let count = partitionCounts[topic.name]!
            for p in topic.partitions {
                var code: Int16 = 0
                if count == nil || p.partitionIndex < 0 || p.partitionIndex >= count! {
                    code = KafkaErrorCode.unknownTopicOrPartition.rawValue
                } else if (p.committedMetadata?.utf8.count ?? 0) > coordinator.config.offsetMetadataMaxBytes {
                    code = KafkaErrorCode.offsetMetadataTooLarge.rawValue
                }
                let timestamp = version == 1 && p.commitTimestamp >= 0 ? p.commitTimestamp : nowMs
                entries.append(OffsetCommitEntry(
                    partition: TopicPartition(topic.name, p.partitionIndex),
                    offset: CommittedOffset(offset: p.committedOffset, leaderEpoch: version >= 6 ? p.committedLeaderEpoch : -1,
                                            metadata: p.committedMetadata, commitTimestampMs: timestamp),
                    errorCode: code))
            }
        }
        let committed = entries
        let ticket = await coordinator.commit(
            groupId: r.groupId, memberId: version >= 1 ? r.memberId : "", groupInstanceId: version >= 7 ? r.groupInstanceId : nil,
            generationId: version >= 1 ? r.generationIdOrMemberEpoch : -1, entries: entries,
            unknownGroupCode: version >= 9 ? KafkaErrorCode.groupIdNotFound.rawValue : KafkaErrorCode.unknownMemberId.rawValue,
            apiVersion: version)
        switch ticket {
        case let .done(results):
            return .response(.offsetCommit(Self.response(results)))
        case let .pending(token):
            let groupId = r.groupId
            return .deferred {
                switch await coordinator.waitDurable(token, groupId: groupId) {
                case let .commit(results): return .offsetCommit(Self.response(results))
                case let .unavailable(code):
                    return .offsetCommit(Self.response(committed.map {
                        PartitionResult(topic: $0.partition.topic, partition: $0.partition.partition, errorCode: code)
                    }))
                default: return nil
                }
            }
        }
    }

    /// Groups results by topic in first-appearance order.
    static func response(_ results: [PartitionResult]) -> OffsetCommitResponse {
        var topics: [OffsetCommitResponse.OffsetCommitResponseTopic] = []
        var index: [String: Int] = [:]
        for r in results {
            if index[r.topic] == nil {
                index[r.topic] = topics.count
                topics.append(.init(name: r.topic, partitions: []))
            }
            topics[index[r.topic]!].partitions.append(.init(partitionIndex: r.partition, errorCode: r.errorCode))
        }
        return OffsetCommitResponse(topics: topics)
    }
}

/// OffsetFetch v0–v9, including the multi-group form of v8+. At v9 a KIP-848 consumer group
/// checks the member id and epoch (UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH). A partition without a committed
/// offset answers -1 (and leader epoch -1, empty metadata). Null topics (v2+) mean every
/// committed offset of the group. require_stable is accepted: no commit is ever pending
/// visibly (commits are applied only once durable). v0 answers UNKNOWN_TOPIC_OR_PARTITION for
/// topics that do not exist, as Kafka's ZooKeeper-era v0 did; later versions answer -1.
public struct OffsetFetchHandler: ApiHandler {
    let coordinator: GroupCoordinator
    public var apiKey: ApiKey { .offsetFetch }
    public var versions: ClosedRange<Int16> { 0...9 }

    struct GroupAnswer {
        var errorCode: Int16
        var topics: [(name: String, partitions: [(index: Int32, offset: CommittedOffset?, errorCode: Int16)])]
    }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .offsetFetch(r) = request else { return .close }
        let version = context.apiVersion
        if version >= 8 {
            var groups: [OffsetFetchResponse.OffsetFetchResponseGroup] = []
            for g in r.groups {
                let wanted = g.topics.map { $0.map { (name: $0.name, partitions: $0.partitionIndexes) } }
                let answer = await fetch(groupId: g.groupId, topics: wanted, version: version,
                                         memberId: version >= 9 ? g.memberId : nil, memberEpoch: version >= 9 ? g.memberEpoch : -1)
                groups.append(.init(
                    groupId: g.groupId,
                    topics: answer.topics.map { t in
                        .init(name: t.name, partitions: t.partitions.map {
                            .init(partitionIndex: $0.index, committedOffset: $0.offset?.offset ?? -1,
                                  committedLeaderEpoch: $0.offset?.leaderEpoch ?? -1, metadata: $0.offset?.metadata ?? "",
                                  errorCode: $0.errorCode)
                        })
                    },
                    errorCode: answer.errorCode))
            }
            return .response(.offsetFetch(OffsetFetchResponse(groups: groups)))
        }
        let wanted = r.topics.map { $0.map { (name: $0.name, partitions: $0.partitionIndexes) } }
        let answer = await fetch(groupId: r.groupId, topics: wanted, version: version)
        var topics = answer.topics
        if version < 2 && answer.errorCode != 0 {
            // No top-level error code before v2: report it on every partition.
            topics = topics.map { t in (t.name, t.partitions.map { ($0.index, nil, answer.errorCode) }) }
        }
        return .response(.offsetFetch(OffsetFetchResponse(
            topics: topics.map { t in
                .init(name: t.name, partitions: t.partitions.map {
                    .init(partitionIndex: $0.index, committedOffset: $0.offset?.offset ?? -1,
                          committedLeaderEpoch: $0.offset?.leaderEpoch ?? -1, metadata: $0.offset?.metadata ?? "",
                          errorCode: $0.errorCode)
                })
            },
            errorCode: version >= 2 ? answer.errorCode : 0)))
    }

    func fetch(groupId: String, topics wanted: [(name: String, partitions: [Int32])]?, version: Int16,
               memberId: String? = nil, memberEpoch: Int32 = -1) async -> GroupAnswer {
        let requested = wanted.map { $0.flatMap { t in t.partitions.map { TopicPartition(t.name, $0) } } }
        let offsets: [TopicPartition: CommittedOffset]
        switch await coordinator.committedOffsets(groupId: groupId, partitions: requested, memberId: memberId, memberEpoch: memberEpoch) {
        case let .success(found): offsets = found
        case let .failure(unavailable):
            return GroupAnswer(errorCode: unavailable.errorCode,
                               topics: (wanted ?? []).map { t in (t.name, t.partitions.map { ($0, nil, unavailable.errorCode) }) })
        }
        guard let wanted else {
            // Every committed offset, by topic.
            var byTopic: [String: [(index: Int32, offset: CommittedOffset?, errorCode: Int16)]] = [:]
            for (tp, o) in offsets { byTopic[tp.topic, default: []].append((tp.partition, o, 0)) }
            return GroupAnswer(errorCode: 0, topics: byTopic.keys.sorted().map { name in
                (name, byTopic[name]!.sorted { $0.index < $1.index })
            })
        }
        var topics: [(name: String, partitions: [(index: Int32, offset: CommittedOffset?, errorCode: Int16)])] = []
        for t in wanted {
            var missingCode: Int16 = 0
            if version == 0, await coordinator.topics.partitionCount(topic: t.name) == nil {
                missingCode = KafkaErrorCode.unknownTopicOrPartition.rawValue
            }
            topics.append((t.name, t.partitions.map { index in
                let o = offsets[TopicPartition(t.name, index)]
                return (index, o, o == nil ? missingCode : 0)
            }))
        }
        return GroupAnswer(errorCode: 0, topics: topics)
    }
}

/// ListGroups v0–v5 (states filter from v4, types filter from v5: "classic" or "consumer"; a
/// consumer group's protocol type is "consumer").
public struct ListGroupsHandler: ApiHandler {
    let coordinator: GroupCoordinator
    public var apiKey: ApiKey { .listGroups }
    public var versions: ClosedRange<Int16> { 0...5 }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .listGroups(r) = request else { return .close }
        let version = context.apiVersion
        let (code, list) = await coordinator.listGroups(states: version >= 4 ? r.statesFilter : [],
                                                        types: version >= 5 ? r.typesFilter : [])
        return .response(.listGroups(ListGroupsResponse(errorCode: code, groups: list.map {
            .init(groupId: $0.groupId, protocolType: $0.protocolType, groupState: version >= 4 ? $0.state : "",
                  groupType: version >= 5 ? $0.type : "")
        })))
    }
}

/// DescribeGroups v0–v5. Member metadata and assignments are shown in Stable only (as Kafka
/// does); a group the coordinator does not hold is reported Dead with no error.
public struct DescribeGroupsHandler: ApiHandler {
    let coordinator: GroupCoordinator
    public var apiKey: ApiKey { .describeGroups }
    public var versions: ClosedRange<Int16> { 0...5 }

    /// READ, DELETE and DESCRIBE (bits 3, 6, 8): every group operation, as there are no ACLs.
    static let allGroupOperations: Int32 = (1 << 3) | (1 << 6) | (1 << 8)

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .describeGroups(r) = request else { return .close }
        let version = context.apiVersion
        let operations = version >= 3 && r.includeAuthorizedOperations ? Self.allGroupOperations : Int32.min
        var described: [DescribeGroupsResponse.DescribedGroup] = []
        for id in r.groups {
            switch await coordinator.describe(groupId: id) {
            case let .failure(unavailable):
                described.append(.init(errorCode: unavailable.errorCode, groupId: id, authorizedOperations: operations))
            case let .success(d):
                described.append(.init(
                    errorCode: 0, groupId: id, groupState: d.state.rawValue, protocolType: d.protocolType, protocolData: d.protocolName,
                    members: d.members.map {
                        .init(memberId: $0.memberId, groupInstanceId: version >= 4 ? $0.groupInstanceId : nil, clientId: $0.clientId,
                              clientHost: $0.clientHost, memberMetadata: $0.metadata, memberAssignment: $0.assignment)
                    },
                    authorizedOperations: operations))
            }
        }
        return .response(.describeGroups(DescribeGroupsResponse(groups: described)))
    }
}

/// DeleteGroups v0–v2: NON_EMPTY_GROUP while members remain, GROUP_ID_NOT_FOUND for unknown
/// groups; success once the group's object is deleted.
public struct DeleteGroupsHandler: ApiHandler {
    let coordinator: GroupCoordinator
    public var apiKey: ApiKey { .deleteGroups }
    public var versions: ClosedRange<Int16> { 0...2 }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .deleteGroups(r) = request else { return .close }
        var tickets: [(String, Ticket<Int16>)] = []
        for id in r.groupsNames { tickets.append((id, await coordinator.delete(groupId: id))) }
        let immediate = tickets.allSatisfy { if case .done = $0.1 { true } else { false } }
        let coordinator = self.coordinator
        let answers = tickets
        let complete: @Sendable () async -> DeleteGroupsResponse = {
            var results: [DeleteGroupsResponse.DeletableGroupResult] = []
            for (id, ticket) in answers {
                switch ticket {
                case let .done(code): results.append(.init(groupId: id, errorCode: code))
                case let .pending(token):
                    switch await coordinator.waitDurable(token, groupId: id) {
                    case let .delete(code), let .unavailable(code): results.append(.init(groupId: id, errorCode: code))
                    default: results.append(.init(groupId: id, errorCode: KafkaErrorCode.unknownServerError.rawValue))
                    }
                }
            }
            return DeleteGroupsResponse(results: results)
        }
        if immediate { return .response(.deleteGroups(await complete())) }
        return .deferred { .deleteGroups(await complete()) }
    }
}
