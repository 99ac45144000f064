import Bytes
import KafkaProtocol
import Support

// Mixed consumer groups (KIP-848's online migration): a consumer group may hold members that
// speak the classic protocol (JoinGroup/SyncGroup/Heartbeat/LeaveGroup) next to
// ConsumerGroupHeartbeat members, so an application can be rolled from
// `group.protocol=classic` to `consumer` one instance at a time, and back. As in Apache Kafka
// 4.x:
// - upgrade: the first ConsumerGroupHeartbeat for a Stable classic group whose members all use
//   protocol type `consumer` converts it into a consumer group; each classic member keeps its
//   assignment and subscription and goes on talking the classic protocol;
// - the server-side assignor computes every member's target; a classic member cannot reconcile
//   incrementally, so when it is not at the group's epoch its Heartbeat answers
//   REBALANCE_IN_PROGRESS and its next JoinGroup moves it one reconciliation step, with the
//   partitions its subscription says it owns (revocation first; partitions another member still
//   owns are withheld until released). SyncGroup gives it what it holds at its epoch;
// - downgrade: when the last ConsumerGroupHeartbeat member leaves (or is fenced) and classic
//   members remain, the group becomes a classic group again, which starts a rebalance.

/// `group.consumer.migration.policy`: which conversions between classic and consumer groups the
/// coordinator makes.
public enum GroupMigrationPolicy: String, Sendable, CaseIterable {
    /// Upgrade and downgrade (Kafka 4.x's default).
    case bidirectional
    /// Only classic → consumer.
    case upgrade
    /// Only consumer → classic.
    case downgrade
    /// Neither, and classic members may not join a consumer group that has members: classic and
    /// consumer groups do not mix.
    case disabled

    var allowsUpgrade: Bool { self == .bidirectional || self == .upgrade }
    var allowsDowngrade: Bool { self == .bidirectional || self == .downgrade }
}

/// What a member speaking the classic protocol inside a consumer group keeps from its JoinGroup.
public struct ClassicMemberInfo: Sendable, Equatable {
    public var sessionTimeoutMs: Int32
    /// Its protocols (assignor names with their ConsumerProtocol subscriptions), in its order of
    /// preference; never empty. The first one names the protocol its JoinGroup and SyncGroup
    /// answers carry (the coordinator assigns, so no client-side assignor is chosen).
    public var protocols: [GroupProtocol]

    public init(sessionTimeoutMs: Int32, protocols: [GroupProtocol]) {
        self.sessionTimeoutMs = sessionTimeoutMs
        self.protocols = protocols
    }

    var protocolName: String { protocols.first?.name ?? "" }
}

/// The ConsumerProtocol payloads of the classic protocol type `consumer`: a member's
/// subscription (JoinGroup metadata) and its assignment (SyncGroup), each an int16 version
/// followed by the message's fields. A version newer than the schema's is read with the newest
/// fields known (as Kafka's clients and coordinator do).
enum ClassicConsumerProtocol {
    struct Subscription: Equatable {
        var topics: [String]
        /// Empty below version 1 (eager clients own nothing when they join).
        var owned: [String: Set<Int32>]
    }

    static func subscription(_ bytes: [UInt8]) -> Subscription? {
        guard let s = decode(ConsumerProtocolSubscription.self, bytes) else { return nil }
        var owned: [String: Set<Int32>] = [:]
        for tp in s.ownedPartitions { owned[tp.topic, default: []].formUnion(tp.partitions) }
        return Subscription(topics: s.topics, owned: owned)
    }

    static func assignment(_ bytes: [UInt8]) -> [String: Set<Int32>]? {
        guard let a = decode(ConsumerProtocolAssignment.self, bytes) else { return nil }
        var out: [String: Set<Int32>] = [:]
        for tp in a.assignedPartitions { out[tp.topic, default: []].formUnion(tp.partitions) }
        return out
    }

    /// The version prefix, then the message at that version (a newer one read as the newest
    /// known); nil when the bytes are not such a message (the caller refuses the member or the
    /// conversion).
    static func decode<M: KafkaMessage>(_: M.Type, _ bytes: [UInt8]) -> M? {
        var reader = ByteReader(bytes)
        do {
            let version = try reader.readInt16()
            guard version >= 0 else { return nil }
            return try M(from: &reader, version: min(version, M.validVersions.upperBound))
        } catch {
            return nil
        }
    }

    /// Version 0 (every version reads it; the later ones add no fields to an assignment).
    static func encodeAssignment(_ partitions: [String: Set<Int32>]) -> [UInt8] {
        let a = ConsumerProtocolAssignment(assignedPartitions: partitions.filter { !$0.value.isEmpty }.sorted { $0.key < $1.key }.map {
            .init(topic: $0.key, partitions: $0.value.sorted())
        })
        var writer = ByteWriter(capacity: 64)
        writer.writeInt16(0)
        do {
            try a.encode(to: &writer, version: 0)
        } catch {
            preconditionFailure("a consumer assignment of existing topics always encodes: \(error)")
        }
        return writer.take()
    }
}

extension ConsumerGroup {
    /// The topic ids of partitions given by topic name; names of unknown topics are dropped.
    static func byId(_ partitions: [String: Set<Int32>], topics: [String: TopicShape]) -> ConsumerAssignment {
        var out: ConsumerAssignment = [:]
        for (name, ps) in partitions where !ps.isEmpty { if let t = topics[name] { out[t.id, default: []].formUnion(ps) } }
        return out
    }

    /// The topic names of an assignment by topic id (the subscribed topics name them).
    func byName(_ a: ConsumerAssignment) -> [String: Set<Int32>] {
        var names: [KafkaUUID: String] = [:]
        for t in subscribedTopics.values { names[t.id] = t.name }
        var out: [String: Set<Int32>] = [:]
        for (id, ps) in a where !ps.isEmpty { if let name = names[id] { out[name, default: []].formUnion(ps) } }
        return out
    }

    /// Whether the group has members and all speak the classic protocol (it may turn back into
    /// a classic group).
    public var hasOnlyClassicMembers: Bool { !members.isEmpty && members.values.allSatisfy { $0.classic != nil } }

    // MARK: Upgrade

    /// The consumer group a classic group becomes on the first ConsumerGroupHeartbeat for it, or
    /// nil when Kafka would not convert it: it is not Stable (a rebalance is under way or it has
    /// no members), a member id handed out with MEMBER_ID_REQUIRED is outstanding, its protocol
    /// type is not `consumer`, or a member's subscription or assignment is not a
    /// ConsumerProtocol one. Every member keeps its assignment at an epoch equal to the
    /// generation, which is also the group and target epoch, so the conversion moves no
    /// partition.
    public static func converting(_ classic: GroupStateMachine, topics: [String: TopicShape]) -> ConsumerGroup? {
        guard classic.state == .stable, classic.pendingMembers.isEmpty, classic.protocolType == "consumer",
              let protocolName = classic.protocolName else { return nil }
        var group = ConsumerGroup(groupId: classic.groupId)
        group.groupEpoch = classic.generationId
        group.assignmentEpoch = classic.generationId
        for member in classic.members.values {
            guard let subscription = ClassicConsumerProtocol.subscription(member.metadata(for: protocolName)),
                  let assigned = ClassicConsumerProtocol.assignment(member.assignment) else { return nil }
            // The chosen protocol first: the member's answers keep naming it.
            let protocols = member.protocols.filter { $0.name == protocolName } + member.protocols.filter { $0.name != protocolName }
            let m = ConsumerMember(
                memberId: member.memberId, instanceId: member.groupInstanceId, clientId: member.clientId, clientHost: member.clientHost,
                rebalanceTimeoutMs: Int32(clamping: member.rebalanceTimeout.nanosecondsClamped / 1_000_000),
                subscribedTopicNames: Array(Set(subscription.topics)).sorted(),
                memberEpoch: classic.generationId, previousMemberEpoch: classic.generationId, state: .stable,
                assigned: byId(assigned, topics: topics),
                classic: ClassicMemberInfo(sessionTimeoutMs: Int32(clamping: member.sessionTimeout.nanosecondsClamped / 1_000_000),
                                           protocols: protocols))
            group.members[m.memberId] = m
            group.members[m.memberId]!.sessionDeadline = member.sessionDeadline
            group.target[m.memberId] = m.assigned
        }
        group.subscribedTopics = group.resolvedSubscriptions(topics)
        return group
    }

    // MARK: Classic members

    /// A JoinGroup of a classic member (new or known): records its subscription, session and
    /// protocols, bumps the group epoch when its subscription changed (or it is new), and moves
    /// it one reconciliation step with the partitions its subscription says it owns. The answer
    /// carries its member epoch as the generation; no member list (the coordinator assigns).
    public mutating func classicJoin(_ r: JoinRequest, topics: [String: TopicShape], now: MonotonicInstant, config: GroupConfig,
                                     newMemberId: String) -> JoinOutcome {
        func fail(_ code: Int16) -> JoinOutcome { .error(code, memberId: r.memberId) }
        guard r.protocolType == "consumer", let first = r.protocols.first,
              let subscription = ClassicConsumerProtocol.subscription(first.metadata) else {
            return fail(KafkaErrorCode.inconsistentGroupProtocol.rawValue)
        }
        let session = Duration.milliseconds(Int64(r.sessionTimeoutMs))
        if session < config.minSessionTimeout || session > config.maxSessionTimeout {
            return fail(KafkaErrorCode.invalidSessionTimeout.rawValue)
        }
        if let instanceId = r.groupInstanceId, let known = staticMember(instanceId), !r.memberId.isEmpty, known.memberId != r.memberId {
            return fail(GroupErrorCode.fencedInstanceId)
        }
        var member: ConsumerMember
        var bump = false
        if let existing = members[r.memberId] {
            guard existing.classic != nil else { return fail(KafkaErrorCode.unknownMemberId.rawValue) }
            member = existing
        } else if r.memberId.isEmpty, let instanceId = r.groupInstanceId, let previous = staticMember(instanceId) {
            // A static member comes back under a new member id and keeps its partitions.
            member = previous
            member.memberId = newMemberId
            members[previous.memberId] = nil
            target[newMemberId] = target.removeValue(forKey: previous.memberId)
        } else {
            if r.memberId.isEmpty && r.requireKnownMemberId && r.groupInstanceId == nil {
                return .error(KafkaErrorCode.memberIdRequired.rawValue, memberId: newMemberId)
            }
            guard members.count < config.maxMembersPerGroup else { return fail(GroupErrorCode.groupMaxSizeReached) }
            member = ConsumerMember(memberId: r.memberId.isEmpty ? newMemberId : r.memberId, instanceId: r.groupInstanceId)
            bump = true
        }
        let names = Array(Set(subscription.topics)).sorted()
        if names != member.subscribedTopicNames || member.subscribedTopicRegex != nil || member.serverAssignor != nil {
            member.subscribedTopicNames = names
            member.subscribedTopicRegex = nil
            member.serverAssignor = nil
            bump = true
        }
        member.rebalanceTimeoutMs = r.rebalanceTimeoutMs
        member.clientId = r.clientId
        member.clientHost = r.clientHost
        member.classic = ClassicMemberInfo(sessionTimeoutMs: r.sessionTimeoutMs, protocols: r.protocols)
        member.sessionDeadline = now.advanced(by: session)
        members[member.memberId] = member
        let updated = advance(member, bump: bump, topics: topics, owned: Self.byId(subscription.owned, topics: topics), now: now)
        return JoinOutcome(errorCode: 0, generationId: updated.memberEpoch, protocolType: "consumer", protocolName: first.name,
                           leader: "", memberId: updated.memberId)
    }

    /// The classic member a request names, or the error code: UNKNOWN_MEMBER_ID (unknown, or a
    /// ConsumerGroupHeartbeat member), FENCED_INSTANCE_ID (its instance id belongs to another
    /// member), ILLEGAL_GENERATION (not its member epoch).
    func classicMember(_ memberId: String, instanceId: String?, generationId: Int32) -> Result<ConsumerMember, ClassicRefusal> {
        if let instanceId, let known = staticMember(instanceId), known.memberId != memberId {
            return .failure(ClassicRefusal(code: GroupErrorCode.fencedInstanceId))
        }
        guard let member = members[memberId], member.classic != nil else {
            return .failure(ClassicRefusal(code: KafkaErrorCode.unknownMemberId.rawValue))
        }
        guard generationId == member.memberEpoch else { return .failure(ClassicRefusal(code: KafkaErrorCode.illegalGeneration.rawValue)) }
        return .success(member)
    }

    /// A SyncGroup of a classic member: what it holds at its epoch, as a ConsumerProtocol
    /// assignment (the partitions it must give up are left out, so it revokes them).
    public mutating func classicSync(memberId: String, instanceId: String?, generationId: Int32, protocolType: String?,
                                     protocolName: String?, now: MonotonicInstant, config: GroupConfig) -> SyncOutcome {
        let member: ConsumerMember
        switch classicMember(memberId, instanceId: instanceId, generationId: generationId) {
        case let .failure(refusal): return .error(refusal.code)
        case let .success(m): member = m
        }
        let name = member.classic!.protocolName
        if let protocolType, protocolType != "consumer" { return .error(KafkaErrorCode.inconsistentGroupProtocol.rawValue) }
        if let protocolName, protocolName != name { return .error(KafkaErrorCode.inconsistentGroupProtocol.rawValue) }
        members[memberId]!.sessionDeadline = now.advanced(by: member.session(config))
        return SyncOutcome(errorCode: 0, protocolType: "consumer", protocolName: name,
                           assignment: ClassicConsumerProtocol.encodeAssignment(byName(member.assigned)))
    }

    /// A Heartbeat of a classic member: REBALANCE_IN_PROGRESS while it is not reconciled to the
    /// group's epoch (it must rejoin to move on), else 0.
    public mutating func classicHeartbeat(memberId: String, instanceId: String?, generationId: Int32, now: MonotonicInstant,
                                          config: GroupConfig) -> Int16 {
        let member: ConsumerMember
        switch classicMember(memberId, instanceId: instanceId, generationId: generationId) {
        case let .failure(refusal): return refusal.code
        case let .success(m): member = m
        }
        members[memberId]!.sessionDeadline = now.advanced(by: member.session(config))
        let reconciled = member.state == .stable && member.memberEpoch == assignmentEpoch
        return reconciled ? 0 : KafkaErrorCode.rebalanceInProgress.rawValue
    }

    /// A LeaveGroup: removes each member named (by member id, or by instance id with an empty
    /// or matching member id). One error code per identity.
    public mutating func classicLeave(_ identities: [(memberId: String, groupInstanceId: String?)]) -> [Int16] {
        identities.map { identity in
            var id = identity.memberId
            if let instanceId = identity.groupInstanceId {
                guard let known = staticMember(instanceId) else { return KafkaErrorCode.unknownMemberId.rawValue }
                if !id.isEmpty && id != known.memberId { return GroupErrorCode.fencedInstanceId }
                id = known.memberId
            }
            guard members[id] != nil else { return KafkaErrorCode.unknownMemberId.rawValue }
            remove(id)
            return 0
        }
    }

    // MARK: Downgrade

    /// The classic group this group turns back into once only classic members remain, all
    /// Stable at one member epoch, or nil. (Members still reconciling are told to rejoin by
    /// their Heartbeat; the downgrade waits for them, so that the generation is the one every
    /// member last joined at and their commits before rejoining the classic group are
    /// accepted.) Every member keeps what it holds (as a ConsumerProtocol assignment); the
    /// caller starts a rebalance so the classic protocol forms its own generation. The protocol
    /// is the first member's (by id) that every member supports, else its first (the rebalance
    /// chooses again).
    public func downgraded() -> GroupSnapshot? {
        guard hasOnlyClassicMembers, let epoch = members.first?.value.memberEpoch,
              members.values.allSatisfy({ $0.state == .stable && $0.memberEpoch == epoch }) else { return nil }
        let ordered = members.values.sorted { $0.memberId < $1.memberId }
        let supportedByAll = ordered.dropFirst().reduce(Set(ordered[0].classic!.protocols.map(\.name))) {
            $0.intersection($1.classic!.protocols.map(\.name))
        }
        let protocolName = ordered[0].classic!.protocols.map(\.name).first { supportedByAll.contains($0) } ?? ordered[0].classic!.protocolName
        return GroupSnapshot(
            protocolType: "consumer", protocolName: protocolName, generationId: epoch, leaderId: ordered[0].memberId,
            members: ordered.map { m in
                GroupSnapshot.Member(memberId: m.memberId, groupInstanceId: m.instanceId, clientId: m.clientId, clientHost: m.clientHost,
                                     sessionTimeoutMs: m.classic!.sessionTimeoutMs, rebalanceTimeoutMs: m.rebalanceTimeoutMs,
                                     protocols: m.classic!.protocols,
                                     assignment: ClassicConsumerProtocol.encodeAssignment(byName(m.assigned)))
            })
    }
}

/// The error code refusing a classic member's request.
struct ClassicRefusal: Error {
    var code: Int16
}

extension GroupStateMachine {
    /// A classic group that was a consumer group (``ConsumerGroup/downgraded()``): restored
    /// Stable from the snapshot, then rebalancing at once, so the members rejoin and the classic
    /// protocol forms a generation of its own. Returns the machine and its actions.
    static func downgrading(groupId: String, config: GroupConfig, snapshot: GroupSnapshot,
                            now: MonotonicInstant) -> (GroupStateMachine, [GroupAction]) {
        var machine = GroupStateMachine(groupId: groupId, config: config, restoring: snapshot, now: now)
        let actions = machine.prepareRebalance(now: now)
        machine.refreshDurableView()
        return (machine, actions + [.persist])
    }
}
