import KafkaProtocol
import Support

/// A group as ListGroups reports it.
public struct ListedGroup: Sendable, Equatable {
    public var groupId: String
    public var protocolType: String
    /// Kafka's state name ("Stable", "Empty", "Reconciling", ...).
    public var state: String
    /// "classic" or "consumer" (ListGroups v5's group type).
    public var type: String
}

// KIP-848 consumer groups in the coordinator: a group is either classic (its
// `GroupStateMachine`) or a consumer group (`Entry.consumer`, the machine staying Empty); both
// share the committed offsets, the group object and its writer.
extension GroupCoordinator {
    /// The earliest deadline of the group's classic machine and consumer members.
    func nextDeadline(_ groupId: String) -> MonotonicInstant? {
        guard let e = groups[groupId] else { return nil }
        return [e.machine.nextDeadline, e.consumer?.nextDeadline].compactMap { $0 }.min()
    }

    func markDirty(_ groupId: String) {
        groups[groupId]?.metadataDirty = true
        dirty.insert(groupId)
        persistContinuation.yield()
    }

    /// Removes the consumer members whose session (or revocation time) ran out.
    func expireConsumerMembers(_ groupId: String, now: MonotonicInstant) {
        guard groups[groupId]?.consumer != nil else { return }
        let gone = groups[groupId]!.consumer!.expire(now: now)
        if !gone.isEmpty {
            logger.info("consumer group members expired", metadata: ["group.id": groupId, "members": "\(gone)"])
            markDirty(groupId)
            downgradeIfOnlyClassicMembers(groupId)
        }
        deadlines[groupId] = nextDeadline(groupId)
    }

    /// A member id no member of `group` has (``makeMemberId``, drawn again on a collision).
    func freshConsumerMemberId(_ group: ConsumerGroup, base: String) -> String {
        var memberId = makeMemberId(base: base)
        while group.members[memberId] != nil { memberId = makeMemberId(base: base) }
        return memberId
    }

    /// A classic JoinGroup for a consumer group, or nil when the group is not one (the classic
    /// machine answers). An empty consumer group becomes a classic group (its offsets kept); one
    /// with members takes the joiner as a classic member (MixedGroups.swift), unless the
    /// migration policy is `disabled`: then INCONSISTENT_GROUP_PROTOCOL.
    func classicJoinToConsumerGroup(_ groupId: String, request: JoinRequest, topics shapes: [String: TopicShape]) -> JoinOutcome? {
        guard let c = groups[groupId]?.consumer else { return nil }
        if c.members.isEmpty {
            groups[groupId]!.consumer = nil
            markDirty(groupId)
            return nil
        }
        guard config.migrationPolicy != .disabled else { return .error(KafkaErrorCode.inconsistentGroupProtocol.rawValue, memberId: request.memberId) }
        let memberId = freshConsumerMemberId(c, base: request.groupInstanceId ?? request.clientId)
        let before = c
        let outcome = groups[groupId]!.consumer!.classicJoin(request, topics: shapes, now: clock.now(), config: config, newMemberId: memberId)
        if !groups[groupId]!.consumer!.persistentlyEqual(before) {
            markDirty(groupId)
            downgradeIfOnlyClassicMembers(groupId)
        }
        deadlines[groupId] = nextDeadline(groupId)
        return outcome
    }

    /// Turns a consumer group whose members all speak the classic protocol (and are reconciled,
    /// ``ConsumerGroup/downgraded()``) back into a classic group, when the migration policy
    /// allows downgrades: after a ConsumerGroupHeartbeat member left or was fenced, or a classic
    /// member's rejoin completed its reconciliation.
    func downgradeIfOnlyClassicMembers(_ groupId: String) {
        guard config.migrationPolicy.allowsDowngrade, let snapshot = groups[groupId]?.consumer?.downgraded() else { return }
        let (machine, actions) = GroupStateMachine.downgrading(groupId: groupId, config: config, snapshot: snapshot, now: clock.now())
        groups[groupId]!.machine = machine
        groups[groupId]!.consumer = nil
        logger.info("consumer group turned back into a classic group", metadata: ["group.id": groupId, "members": "\(snapshot.members.count)"])
        perform(actions, groupId: groupId)
    }

    /// Kafka's OffsetCommit rules for a consumer group: a commit without member epoch (-1) is
    /// accepted while the group has no members; otherwise the member must exist, commit with
    /// OffsetCommit v9+, and carry its current epoch (greater: FENCED_MEMBER_EPOCH; smaller:
    /// STALE_MEMBER_EPOCH). A classic member commits with any version and its member epoch as
    /// the generation (another: ILLEGAL_GENERATION, so it rejoins).
    func validateConsumerCommit(_ groupId: String, memberId: String, memberEpoch: Int32, apiVersion: Int16) -> Int16 {
        guard let c = groups[groupId]?.consumer else { return 0 }
        if memberEpoch < 0 && c.members.isEmpty { return 0 }
        guard let member = c.members[memberId] else { return KafkaErrorCode.unknownMemberId.rawValue }
        if member.classic != nil { return memberEpoch == member.memberEpoch ? 0 : KafkaErrorCode.illegalGeneration.rawValue }
        if apiVersion < 9 { return KafkaErrorCode.unsupportedVersion.rawValue }
        if memberEpoch > member.memberEpoch { return ConsumerGroupErrorCode.fencedMemberEpoch }
        if memberEpoch < member.memberEpoch { return ConsumerGroupErrorCode.staleMemberEpoch }
        return 0
    }

    /// Kafka's OffsetFetch rules (v9+) for a consumer group: without member id and epoch the
    /// fetch is an admin's; otherwise the member must exist and carry its current epoch.
    func consumerFetchRefusal(_ groupId: String, memberId: String?, memberEpoch: Int32) -> Int16? {
        guard let c = groups[groupId]?.consumer else { return nil }
        if memberId == nil && memberEpoch < 0 { return nil }
        guard let memberId, let member = c.members[memberId] else { return KafkaErrorCode.unknownMemberId.rawValue }
        return memberEpoch == member.memberEpoch ? nil : ConsumerGroupErrorCode.staleMemberEpoch
    }

    /// One ConsumerGroupHeartbeat (KIP-848). When it changed the group's persistent state, a
    /// token comes with the answer: send the answer only after ``waitDurable(_:groupId:)`` says
    /// the change is written (as Kafka answers after its log append), else that call's error.
    public func consumerHeartbeat(groupId: String, request r: ConsumerHeartbeat) async -> (ConsumerHeartbeatOutcome, RequestToken?) {
        let o = await heartbeatOutcome(groupId: groupId, request: r)
        guard o.1 else { return (o.0, nil) }
        let token = newToken()
        groups[groupId]?.membershipWaiters.append(token)
        return (o.0, token)
    }

    func heartbeatOutcome(groupId: String, request r: ConsumerHeartbeat) async -> (ConsumerHeartbeatOutcome, Bool) {
        func fail(_ code: Int16, _ message: String) -> (ConsumerHeartbeatOutcome, Bool) { (.error(code, message), false) }
        if groupId.isEmpty { return fail(KafkaErrorCode.invalidRequest.rawValue, "GroupId can't be empty.") }
        if let problem = groupKeyProblem(groupId) { return fail(KafkaErrorCode.invalidGroupId.rawValue, problem) }
        if let invalid = ConsumerGroup.validate(r) {
            logger.info("consumer group heartbeat refused", metadata: ["group.id": groupId, "error": invalid.errorMessage ?? ""])
            return (invalid, false)
        }
        // Read the topics first: after `resident` nothing awaits, so the group cannot change under us.
        let shapes = await topics.topicShapes()
        if let code = await resident(groupId) { return fail(code, "This broker cannot serve group \(groupId) now.") }
        if groups[groupId] == nil {
            guard r.memberEpoch == 0 else {
                return fail(KafkaErrorCode.unknownMemberId.rawValue, "Member \(r.memberId) is not a member of group \(groupId).")
            }
            guard ensureGroup(groupId) else {
                return fail(KafkaErrorCode.coordinatorNotAvailable.rawValue, "The coordinator holds too many groups.")
            }
        }
        if groups[groupId]!.consumer == nil {
            let m = groups[groupId]!.machine
            if m.isEmpty && m.state == .empty {
                groups[groupId]!.consumer = ConsumerGroup(groupId: groupId)
            } else if config.migrationPolicy.allowsUpgrade, r.memberEpoch == 0, let converted = ConsumerGroup.converting(m, topics: shapes) {
                // Online upgrade: the classic members keep their partitions as classic members.
                perform(m.abandon(errorCode: KafkaErrorCode.rebalanceInProgress.rawValue), groupId: groupId)
                groups[groupId]!.machine = GroupStateMachine(groupId: groupId, config: config)
                groups[groupId]!.consumer = converted
                markDirty(groupId)
                logger.info("classic group converted into a consumer group", metadata: ["group.id": groupId, "members": "\(converted.members.count)"])
            } else {
                return fail(KafkaErrorCode.groupIdNotFound.rawValue, "Group \(groupId) is not a consumer group.")
            }
        }
        let memberId = freshConsumerMemberId(groups[groupId]!.consumer!, base: r.clientId)
        let (outcome, changed) = groups[groupId]!.consumer!.heartbeat(r, topics: shapes, now: clock.now(), config: config, newMemberId: memberId)
        if changed {
            markDirty(groupId)
            downgradeIfOnlyClassicMembers(groupId)
        }
        deadlines[groupId] = nextDeadline(groupId)
        dropIfUnused(groupId)
        return (outcome, changed && groups[groupId] != nil)
    }

    /// A consumer group for ConsumerGroupDescribe, or the error code and message to answer.
    public func describeConsumerGroup(_ groupId: String) async -> Result<ConsumerGroup, ConsumerGroupDescribeError> {
        if let code = await resident(groupId) { return .failure(ConsumerGroupDescribeError(errorCode: code, message: nil)) }
        guard let e = groups[groupId], e.machine.state != .dead, e.consumer != nil || !e.machine.isEmpty || e.etag != nil else {
            return .failure(ConsumerGroupDescribeError(errorCode: KafkaErrorCode.groupIdNotFound.rawValue, message: "Group \(groupId) not found."))
        }
        guard let c = e.consumer else {
            return .failure(ConsumerGroupDescribeError(errorCode: KafkaErrorCode.groupIdNotFound.rawValue,
                                                       message: "Group \(groupId) is not a consumer group."))
        }
        return .success(c)
    }
}

public struct ConsumerGroupDescribeError: Error, Sendable {
    public var errorCode: Int16
    public var message: String?
}
