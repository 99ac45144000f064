import KafkaProtocol
import Support

/// The states of a classic consumer group, named as Kafka names them in ListGroups and
/// DescribeGroups answers.
public enum GroupState: String, Sendable, CaseIterable {
    /// No members; the group may still hold committed offsets.
    case empty = "Empty"
    /// A rebalance has begun: members must rejoin before the rebalance timeout.
    case preparingRebalance = "PreparingRebalance"
    /// Everyone has joined; waiting for the leader's assignments in SyncGroup.
    case completingRebalance = "CompletingRebalance"
    /// Assignments are distributed; members heartbeat.
    case stable = "Stable"
    /// The group is being deleted; it accepts nothing.
    case dead = "Dead"
}

/// Error codes the coordinator answers that `KafkaErrorCode` misnumbers or lacks (in Apache
/// Kafka 81 is GROUP_MAX_SIZE_REACHED and 82 FENCED_INSTANCE_ID).
enum GroupErrorCode {
    static let groupMaxSizeReached: Int16 = 81
    static let fencedInstanceId: Int16 = 82
}

/// Identifies one deferred reply (a JoinGroup, SyncGroup, OffsetCommit or DeleteGroups waiting
/// for an event). Issued by the coordinator, unique per process.
public typealias RequestToken = UInt64

/// Limits and timings of the group coordinator, with Apache Kafka's defaults.
public struct GroupConfig: Sendable {
    /// `group.min.session.timeout.ms`.
    public var minSessionTimeout: Duration = .seconds(6)
    /// `group.max.session.timeout.ms`.
    public var maxSessionTimeout: Duration = .seconds(1800)
    /// `group.initial.rebalance.delay.ms`: the first rebalance of an empty group waits this long
    /// for more members before completing.
    public var initialRebalanceDelay: Duration = .seconds(3)
    /// `group.max.size`: members (including those awaiting their member id) per group.
    public var maxMembersPerGroup: Int = 1000
    /// Groups this coordinator holds at most (memory bound); further new groups are refused
    /// with COORDINATOR_NOT_AVAILABLE.
    public var maxGroups: Int = 10_000
    /// `offset.metadata.max.bytes`.
    public var offsetMetadataMaxBytes: Int = 4096
    /// `offsets.retention.minutes`: offsets of an Empty group expire this long after their commit.
    public var offsetsRetention: Duration = .seconds(7 * 24 * 3600)
    /// `offsets.retention.check.interval.ms`.
    public var offsetsRetentionCheckInterval: Duration = .seconds(600)
    /// `group.consumer.session.timeout.ms`: a KIP-848 consumer group member that has not sent a
    /// heartbeat for this long is removed.
    public var consumerSessionTimeout: Duration = .seconds(45)
    /// `group.consumer.heartbeat.interval.ms`: the interval consumer group members are told to
    /// heartbeat at.
    public var consumerHeartbeatInterval: Duration = .seconds(5)
    /// `group.consumer.migration.policy`: conversions between classic and consumer groups.
    public var migrationPolicy: GroupMigrationPolicy = .bidirectional
    /// The longest the timer loop sleeps before looking at deadlines again.
    public var timerResolution: Duration = .milliseconds(100)

    public init() {}
}

/// One protocol a member supports (for consumers: an assignor name and its subscription bytes).
public struct GroupProtocol: Sendable, Hashable {
    public var name: String
    public var metadata: [UInt8]
    public init(name: String, metadata: [UInt8]) {
        self.name = name
        self.metadata = metadata
    }
}

/// A member of a group as the state machine tracks it.
public struct GroupMember: Sendable, Equatable {
    public var memberId: String
    public var groupInstanceId: String?
    public var clientId: String
    public var clientHost: String
    public var sessionTimeout: Duration
    public var rebalanceTimeout: Duration
    public var protocolType: String
    /// In the member's order of preference.
    public var protocols: [GroupProtocol]
    /// The leader's assignment for this member in the current generation (empty until synced).
    public var assignment: [UInt8] = []
    /// When the member is considered dead without a heartbeat (or another request).
    public var sessionDeadline: MonotonicInstant
    /// The JoinGroup waiting for the rebalance to complete.
    public var awaitingJoin: RequestToken?
    /// The SyncGroup waiting for the leader's assignments.
    public var awaitingSync: RequestToken?

    public func metadata(for protocolName: String?) -> [UInt8] {
        guard let protocolName else { return [] }
        return protocols.first { $0.name == protocolName }?.metadata ?? []
    }
}

/// A JoinGroup as the state machine sees it (version differences already resolved).
public struct JoinRequest: Sendable {
    public var memberId: String
    public var groupInstanceId: String?
    public var clientId: String
    public var clientHost: String
    public var sessionTimeoutMs: Int32
    /// Version 0 has none: pass the session timeout.
    public var rebalanceTimeoutMs: Int32
    public var protocolType: String
    public var protocols: [GroupProtocol]
    /// Version 4+: a first join without member id gets MEMBER_ID_REQUIRED and a member id.
    public var requireKnownMemberId: Bool

    public init(memberId: String, groupInstanceId: String? = nil, clientId: String, clientHost: String,
                sessionTimeoutMs: Int32, rebalanceTimeoutMs: Int32, protocolType: String,
                protocols: [GroupProtocol], requireKnownMemberId: Bool) {
        self.memberId = memberId
        self.groupInstanceId = groupInstanceId
        self.clientId = clientId
        self.clientHost = clientHost
        self.sessionTimeoutMs = sessionTimeoutMs
        self.rebalanceTimeoutMs = rebalanceTimeoutMs
        self.protocolType = protocolType
        self.protocols = protocols
        self.requireKnownMemberId = requireKnownMemberId
    }
}

/// A member as listed to the leader in its JoinGroup response.
public struct JoinedMember: Sendable, Equatable {
    public var memberId: String
    public var groupInstanceId: String?
    public var metadata: [UInt8]
}

/// The answer to one JoinGroup, independent of the wire version.
public struct JoinOutcome: Sendable, Equatable {
    public var errorCode: Int16
    public var generationId: Int32 = -1
    public var protocolType: String?
    public var protocolName: String?
    public var leader: String = ""
    public var memberId: String
    /// Non-empty for the leader only.
    public var members: [JoinedMember] = []
    /// A static leader rejoining a stable group need not compute assignments (v9+).
    public var skipAssignment = false

    static func error(_ code: Int16, memberId: String) -> JoinOutcome {
        JoinOutcome(errorCode: code, memberId: memberId)
    }
}

/// The answer to one SyncGroup.
public struct SyncOutcome: Sendable, Equatable {
    public var errorCode: Int16
    public var protocolType: String?
    public var protocolName: String?
    public var assignment: [UInt8] = []

    static func error(_ code: Int16) -> SyncOutcome { SyncOutcome(errorCode: code) }
}

/// What the owner of a group state machine must do after a call.
public enum GroupAction: Sendable, Equatable {
    /// Answer the JoinGroup identified by the token.
    case completeJoin(RequestToken, JoinOutcome)
    /// Answer the SyncGroup identified by the token.
    case completeSync(RequestToken, SyncOutcome)
    /// The group's resumable metadata (``GroupStateMachine/durableView``) changed: write it.
    case persist
}

/// The membership part of a group that is written to the bucket: the last completed generation
/// (Stable) or the Empty group, so a restarted coordinator resumes the generation, and members
/// of a stable group keep heartbeating without a rebalance.
public struct GroupSnapshot: Sendable, Equatable {
    public struct Member: Sendable, Equatable {
        public var memberId: String
        public var groupInstanceId: String?
        public var clientId: String
        public var clientHost: String
        public var sessionTimeoutMs: Int32
        public var rebalanceTimeoutMs: Int32
        public var protocols: [GroupProtocol]
        public var assignment: [UInt8]
    }

    public var protocolType: String?
    public var protocolName: String?
    public var generationId: Int32
    public var leaderId: String?
    /// Empty for an Empty group; the members of the generation otherwise (in join order).
    public var members: [Member]

    public static let empty = GroupSnapshot(protocolType: nil, protocolName: nil, generationId: 0, leaderId: nil, members: [])
}

/// One classic consumer group (Kafka's JoinGroup/SyncGroup protocol) as a pure state machine.
///
/// Every method takes the current time and returns the actions its owner must perform
/// (complete deferred replies, persist); it never does I/O. Time-driven transitions happen in
/// ``expire(now:)``, which the owner calls at ``nextDeadline`` or later.
///
/// Transitions:
/// - Empty → PreparingRebalance when a member joins (completion waits at least
///   `initialRebalanceDelay`, so members starting together land in one generation).
/// - Stable/CompletingRebalance → PreparingRebalance when a member joins, the leader rejoins, a
///   member changes its protocols, leaves or its session expires.
/// - PreparingRebalance → CompletingRebalance when every member has rejoined (and no member
///   holding a MEMBER_ID_REQUIRED id is outstanding), or at the rebalance timeout, which removes
///   the members that did not rejoin. The generation is incremented (first generation: 1), a
///   protocol every member supports is chosen by vote of preference, the leader is kept or the
///   first member is elected, and the leader receives the member list.
/// - PreparingRebalance → Empty (generation incremented) when no member is left.
/// - CompletingRebalance → Stable when the leader sends SyncGroup with the assignments; if the
///   leader does not sync within the rebalance timeout, members that did not sync are removed
///   and a new rebalance starts.
///
/// Invariants: `members` is empty exactly in Empty (and Dead); `leaderId` names a member
/// whenever there is one; `staticMembers` maps every member's instance id to its member id;
/// every outstanding reply token is held by exactly one member and is answered exactly once.
public struct GroupStateMachine: Sendable {
    public let groupId: String
    public let config: GroupConfig
    public private(set) var state: GroupState = .empty
    public private(set) var generationId: Int32 = 0
    public private(set) var protocolType: String?
    public private(set) var protocolName: String?
    public private(set) var leaderId: String?
    public private(set) var members: [String: GroupMember] = [:]
    /// Member ids in join order (leader election picks the first).
    public private(set) var memberOrder: [String] = []
    /// Member ids handed out with MEMBER_ID_REQUIRED, and when they expire.
    public private(set) var pendingMembers: [String: MonotonicInstant] = [:]
    /// group.instance.id → member id.
    public private(set) var staticMembers: [String: String] = [:]
    public private(set) var rebalanceDeadline: MonotonicInstant?
    public private(set) var initialDelayDeadline: MonotonicInstant?
    public private(set) var syncDeadline: MonotonicInstant?
    /// What is (to be) written to the bucket.
    public private(set) var durableView: GroupSnapshot = .empty

    public init(groupId: String, config: GroupConfig) {
        self.groupId = groupId
        self.config = config
    }

    /// Rebuilds a group from its persisted view: Stable with the stored members (their sessions
    /// start now) or Empty.
    public init(groupId: String, config: GroupConfig, restoring snapshot: GroupSnapshot, now: MonotonicInstant) {
        self.init(groupId: groupId, config: config)
        generationId = snapshot.generationId
        protocolType = snapshot.protocolType
        durableView = snapshot
        guard !snapshot.members.isEmpty else { return }
        protocolName = snapshot.protocolName
        state = .stable
        for m in snapshot.members {
            let session = Duration.milliseconds(Int64(m.sessionTimeoutMs))
            members[m.memberId] = GroupMember(
                memberId: m.memberId, groupInstanceId: m.groupInstanceId, clientId: m.clientId, clientHost: m.clientHost,
                sessionTimeout: session, rebalanceTimeout: .milliseconds(Int64(m.rebalanceTimeoutMs)),
                protocolType: snapshot.protocolType ?? "", protocols: m.protocols, assignment: m.assignment,
                sessionDeadline: now.advanced(by: session))
            memberOrder.append(m.memberId)
            if let instance = m.groupInstanceId { staticMembers[instance] = m.memberId }
        }
        leaderId = snapshot.leaderId.flatMap { members[$0] != nil ? $0 : nil } ?? memberOrder.first
    }

    public var isEmpty: Bool { members.isEmpty && pendingMembers.isEmpty }

    /// The replies that answer every parked JoinGroup and SyncGroup with `errorCode`, for a
    /// group this coordinator gives up (it moved to another broker, or another writer fenced
    /// it). The machine is discarded afterwards, so nothing is changed here.
    public func abandon(errorCode: Int16) -> [GroupAction] {
        var actions: [GroupAction] = []
        for id in memberOrder {
            guard let member = members[id] else { continue }
            if let token = member.awaitingJoin { actions.append(.completeJoin(token, .error(errorCode, memberId: member.memberId))) }
            if let token = member.awaitingSync { actions.append(.completeSync(token, .error(errorCode))) }
        }
        return actions
    }

    // MARK: JoinGroup

    /// Handles a JoinGroup. `newMemberId` is used if the request needs a member id assigned.
    /// The reply for `token` is among the returned actions, now or from a later call.
    public mutating func join(_ request: JoinRequest, token: RequestToken, newMemberId: String,
                              now: MonotonicInstant) -> [GroupAction] {
        func fail(_ code: Int16) -> [GroupAction] {
            [.completeJoin(token, .error(code, memberId: request.memberId))]
        }
        if state == .dead { return fail(KafkaErrorCode.coordinatorNotAvailable.rawValue) }
        let session = Duration.milliseconds(Int64(request.sessionTimeoutMs))
        if session < config.minSessionTimeout || session > config.maxSessionTimeout {
            return fail(KafkaErrorCode.invalidSessionTimeout.rawValue)
        }
        if !supports(protocolType: request.protocolType, protocols: request.protocols, excluding: request.memberId) {
            return fail(KafkaErrorCode.inconsistentGroupProtocol.rawValue)
        }

        if request.memberId.isEmpty {
            if let instance = request.groupInstanceId, let oldId = staticMembers[instance] {
                return rejoinStatic(request, oldId: oldId, newId: newMemberId, token: token, now: now)
            }
            if members.count + pendingMembers.count >= config.maxMembersPerGroup {
                return fail(GroupErrorCode.groupMaxSizeReached)
            }
            if request.requireKnownMemberId && request.groupInstanceId == nil {
                pendingMembers[newMemberId] = now.advanced(by: session)
                return [.completeJoin(token, .error(KafkaErrorCode.memberIdRequired.rawValue, memberId: newMemberId))]
            }
            return addMember(request, id: newMemberId, token: token, now: now)
        }

        if pendingMembers.removeValue(forKey: request.memberId) != nil {
            return addMember(request, id: request.memberId, token: token, now: now)
        }
        if let instance = request.groupInstanceId, let known = staticMembers[instance], known != request.memberId {
            return fail(GroupErrorCode.fencedInstanceId)
        }
        guard var member = members[request.memberId] else {
            return fail(KafkaErrorCode.unknownMemberId.rawValue)
        }
        let unchanged = member.protocols == request.protocols && member.protocolType == request.protocolType
        switch state {
        case .preparingRebalance:
            var actions: [GroupAction] = []
            if let old = member.awaitingJoin {
                actions.append(.completeJoin(old, .error(KafkaErrorCode.rebalanceInProgress.rawValue, memberId: member.memberId)))
            }
            update(&member, with: request, now: now)
            member.awaitingJoin = token
            members[member.memberId] = member
            return actions + maybeCompleteJoin(now: now)
        case .completingRebalance, .stable:
            // An unchanged rejoin gets the current generation again (the member lost its
            // JoinGroup response), except the leader of a stable group, whose rejoin asks for a
            // new rebalance.
            if unchanged && (state == .completingRebalance || member.memberId != leaderId) {
                member.sessionDeadline = now.advanced(by: member.sessionTimeout)
                members[member.memberId] = member
                return [.completeJoin(token, currentGenerationOutcome(for: member.memberId))]
            }
            update(&member, with: request, now: now)
            member.awaitingJoin = token
            members[member.memberId] = member
            return prepareRebalance(now: now)
        case .empty, .dead:
            return fail(KafkaErrorCode.unknownMemberId.rawValue)
        }
    }

    /// A static member (known group.instance.id) joining with an empty member id: it restarted.
    /// The old member id is fenced and replaced; a stable group does not rebalance unless the
    /// member changed its protocols.
    mutating func rejoinStatic(_ request: JoinRequest, oldId: String, newId: String, token: RequestToken,
                               now: MonotonicInstant) -> [GroupAction] {
        guard var member = members.removeValue(forKey: oldId) else {
            staticMembers[request.groupInstanceId!] = nil
            return addMember(request, id: newId, token: token, now: now)
        }
        var actions: [GroupAction] = []
        let fenced = GroupErrorCode.fencedInstanceId
        if let old = member.awaitingJoin { actions.append(.completeJoin(old, .error(fenced, memberId: oldId))) }
        if let old = member.awaitingSync { actions.append(.completeSync(old, .error(fenced))) }
        member.awaitingJoin = nil
        member.awaitingSync = nil
        let unchanged = member.protocols == request.protocols && member.protocolType == request.protocolType
        member.memberId = newId
        members[newId] = member
        memberOrder = memberOrder.map { $0 == oldId ? newId : $0 }
        staticMembers[request.groupInstanceId!] = newId
        if leaderId == oldId { leaderId = newId }
        update(&member, with: request, now: now)

        switch state {
        case .stable where unchanged:
            members[newId] = member
            var outcome = currentGenerationOutcome(for: newId)
            if newId == leaderId { outcome.skipAssignment = true }
            refreshDurableView()
            return actions + [.completeJoin(token, outcome), .persist]
        case .preparingRebalance:
            member.awaitingJoin = token
            members[newId] = member
            return actions + maybeCompleteJoin(now: now)
        default:
            member.awaitingJoin = token
            members[newId] = member
            return actions + prepareRebalance(now: now)
        }
    }

    mutating func addMember(_ request: JoinRequest, id: String, token: RequestToken, now: MonotonicInstant) -> [GroupAction] {
        if members.count + pendingMembers.count >= config.maxMembersPerGroup {
            return [.completeJoin(token, .error(GroupErrorCode.groupMaxSizeReached, memberId: id))]
        }
        var member = GroupMember(
            memberId: id, groupInstanceId: request.groupInstanceId, clientId: request.clientId, clientHost: request.clientHost,
            sessionTimeout: .zero, rebalanceTimeout: .zero, protocolType: request.protocolType, protocols: request.protocols,
            sessionDeadline: now)
        update(&member, with: request, now: now)
        member.awaitingJoin = token
        if members.isEmpty { protocolType = request.protocolType }
        members[id] = member
        memberOrder.append(id)
        if let instance = request.groupInstanceId { staticMembers[instance] = id }
        if leaderId == nil { leaderId = id }
        if state == .preparingRebalance { return maybeCompleteJoin(now: now) }
        return prepareRebalance(now: now)
    }

    func update(_ member: inout GroupMember, with request: JoinRequest, now: MonotonicInstant) {
        member.sessionTimeout = .milliseconds(Int64(request.sessionTimeoutMs))
        member.rebalanceTimeout = .milliseconds(Int64(request.rebalanceTimeoutMs > 0 ? request.rebalanceTimeoutMs : request.sessionTimeoutMs))
        member.protocolType = request.protocolType
        member.protocols = request.protocols
        member.clientId = request.clientId
        member.clientHost = request.clientHost
        member.sessionDeadline = now.advanced(by: member.sessionTimeout)
    }

    /// Whether a member with these protocols may be in the group with the other members.
    func supports(protocolType: String, protocols: [GroupProtocol], excluding memberId: String) -> Bool {
        if protocolType.isEmpty || protocols.isEmpty { return false }
        let others = members.values.filter { $0.memberId != memberId }
        if others.isEmpty { return true }
        if let groupType = self.protocolType, groupType != protocolType { return false }
        var common = Set(protocols.map(\.name))
        for m in others { common.formIntersection(m.protocols.map(\.name)) }
        return !common.isEmpty
    }

    /// The protocol every member supports that most members prefer (each votes for its most
    /// preferred common protocol); ties go to the leader's preference order.
    func selectProtocol() -> String? {
        guard let first = memberOrder.first.flatMap({ members[$0] }) else { return nil }
        var common = Set(first.protocols.map(\.name))
        for m in members.values { common.formIntersection(m.protocols.map(\.name)) }
        if common.isEmpty { return nil }
        var votes: [String: Int] = [:]
        for m in members.values {
            if let choice = m.protocols.first(where: { common.contains($0.name) }) { votes[choice.name, default: 0] += 1 }
        }
        let leader = leaderId.flatMap { members[$0] } ?? first
        let best = votes.values.max() ?? 0
        return leader.protocols.map(\.name).first { common.contains($0) && votes[$0, default: 0] == best }
    }

    func currentGenerationOutcome(for memberId: String) -> JoinOutcome {
        JoinOutcome(errorCode: 0, generationId: generationId, protocolType: protocolType, protocolName: protocolName,
                    leader: leaderId ?? "", memberId: memberId,
                    members: memberId == leaderId ? joinedMembers() : [])
    }

    func joinedMembers() -> [JoinedMember] {
        memberOrder.compactMap { members[$0] }.map {
            JoinedMember(memberId: $0.memberId, groupInstanceId: $0.groupInstanceId, metadata: $0.metadata(for: protocolName))
        }
    }

    mutating func prepareRebalance(now: MonotonicInstant) -> [GroupAction] {
        var actions: [GroupAction] = []
        if state == .completingRebalance {
            for id in memberOrder {
                members[id]!.assignment = []
                if let sync = members[id]!.awaitingSync {
                    actions.append(.completeSync(sync, .error(KafkaErrorCode.rebalanceInProgress.rawValue)))
                    members[id]!.awaitingSync = nil
                }
            }
        }
        let wasEmpty = state == .empty
        state = .preparingRebalance
        syncDeadline = nil
        let timeout = members.values.map(\.rebalanceTimeout).max() ?? .zero
        rebalanceDeadline = now.advanced(by: timeout)
        if wasEmpty && config.initialRebalanceDelay > .zero {
            initialDelayDeadline = now.advanced(by: min(config.initialRebalanceDelay, timeout))
        }
        return actions + maybeCompleteJoin(now: now)
    }

    mutating func maybeCompleteJoin(now: MonotonicInstant) -> [GroupAction] {
        guard state == .preparingRebalance else { return [] }
        if let delay = initialDelayDeadline, now < delay { return [] }
        let allJoined = members.values.allSatisfy { $0.awaitingJoin != nil } && pendingMembers.isEmpty
        return allJoined ? completeJoin(now: now) : []
    }

    /// Ends the join phase: drops members that did not rejoin, starts the next generation.
    mutating func completeJoin(now: MonotonicInstant) -> [GroupAction] {
        var actions: [GroupAction] = []
        for id in memberOrder where members[id]?.awaitingJoin == nil {
            if let sync = members[id]?.awaitingSync {
                actions.append(.completeSync(sync, .error(KafkaErrorCode.unknownMemberId.rawValue)))
            }
            removeMember(id)
        }
        rebalanceDeadline = nil
        initialDelayDeadline = nil
        generationId &+= 1
        if generationId <= 0 { generationId = 1 }
        if members.isEmpty {
            state = .empty
            protocolName = nil
            leaderId = nil
            refreshDurableView()
            return actions + [.persist]
        }
        protocolName = selectProtocol()
        if leaderId == nil || members[leaderId!] == nil { leaderId = memberOrder.first }
        state = .completingRebalance
        syncDeadline = now.advanced(by: members.values.map(\.rebalanceTimeout).max() ?? .zero)
        for id in memberOrder {
            guard var member = members[id], let token = member.awaitingJoin else { continue }
            member.awaitingJoin = nil
            member.assignment = []
            member.sessionDeadline = now.advanced(by: member.sessionTimeout)
            members[id] = member
            actions.append(.completeJoin(token, currentGenerationOutcome(for: id)))
        }
        return actions
    }

    mutating func removeMember(_ id: String) {
        guard let member = members.removeValue(forKey: id) else { return }
        memberOrder.removeAll { $0 == id }
        if let instance = member.groupInstanceId, staticMembers[instance] == id { staticMembers[instance] = nil }
        if leaderId == id { leaderId = memberOrder.first }
    }

    // MARK: SyncGroup

    /// Handles a SyncGroup. `protocolType`/`protocolName` are nil below version 5.
    public mutating func sync(memberId: String, groupInstanceId: String?, generationId: Int32,
                              protocolType: String?, protocolName: String?,
                              assignments: [String: [UInt8]], token: RequestToken, now: MonotonicInstant) -> [GroupAction] {
        func fail(_ code: Int16) -> [GroupAction] { [.completeSync(token, .error(code))] }
        if state == .dead { return fail(KafkaErrorCode.coordinatorNotAvailable.rawValue) }
        if let code = memberError(memberId: memberId, groupInstanceId: groupInstanceId) { return fail(code) }
        if generationId != self.generationId { return fail(KafkaErrorCode.illegalGeneration.rawValue) }
        if let protocolType, protocolType != self.protocolType { return fail(KafkaErrorCode.inconsistentGroupProtocol.rawValue) }
        if let protocolName, protocolName != self.protocolName { return fail(KafkaErrorCode.inconsistentGroupProtocol.rawValue) }
        members[memberId]!.sessionDeadline = now.advanced(by: members[memberId]!.sessionTimeout)
        switch state {
        case .preparingRebalance:
            return fail(KafkaErrorCode.rebalanceInProgress.rawValue)
        case .completingRebalance:
            var actions: [GroupAction] = []
            if let old = members[memberId]!.awaitingSync {
                actions.append(.completeSync(old, .error(KafkaErrorCode.rebalanceInProgress.rawValue)))
            }
            members[memberId]!.awaitingSync = token
            guard memberId == leaderId else { return actions }
            for id in memberOrder { members[id]!.assignment = assignments[id] ?? [] }
            state = .stable
            syncDeadline = nil
            for id in memberOrder {
                guard let waiting = members[id]!.awaitingSync else { continue }
                members[id]!.awaitingSync = nil
                actions.append(.completeSync(waiting, syncSuccess(for: id)))
            }
            refreshDurableView()
            return actions + [.persist]
        case .stable:
            return [.completeSync(token, syncSuccess(for: memberId))]
        case .empty, .dead:
            return fail(KafkaErrorCode.unknownMemberId.rawValue)
        }
    }

    func syncSuccess(for memberId: String) -> SyncOutcome {
        SyncOutcome(errorCode: 0, protocolType: protocolType, protocolName: protocolName, assignment: members[memberId]?.assignment ?? [])
    }

    /// UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID for a request naming this member, or nil.
    func memberError(memberId: String, groupInstanceId: String?) -> Int16? {
        if let instance = groupInstanceId, let known = staticMembers[instance], known != memberId {
            return GroupErrorCode.fencedInstanceId
        }
        return members[memberId] == nil ? KafkaErrorCode.unknownMemberId.rawValue : nil
    }

    // MARK: Heartbeat, LeaveGroup, OffsetCommit validation

    /// Handles a Heartbeat; returns its error code (0 for success).
    public mutating func heartbeat(memberId: String, groupInstanceId: String?, generationId: Int32, now: MonotonicInstant) -> Int16 {
        if state == .dead { return KafkaErrorCode.coordinatorNotAvailable.rawValue }
        if let code = memberError(memberId: memberId, groupInstanceId: groupInstanceId) { return code }
        members[memberId]!.sessionDeadline = now.advanced(by: members[memberId]!.sessionTimeout)
        switch state {
        case .preparingRebalance:
            return KafkaErrorCode.rebalanceInProgress.rawValue
        case .completingRebalance, .stable:
            return generationId == self.generationId ? 0 : KafkaErrorCode.illegalGeneration.rawValue
        case .empty, .dead:
            return KafkaErrorCode.unknownMemberId.rawValue
        }
    }

    /// Removes members (LeaveGroup). Each identity is a member id, or an instance id with an
    /// empty or matching member id. Returns one error code per identity and the actions.
    public mutating func leave(_ identities: [(memberId: String, groupInstanceId: String?)], now: MonotonicInstant) -> ([Int16], [GroupAction]) {
        if state == .dead { return (identities.map { _ in KafkaErrorCode.coordinatorNotAvailable.rawValue }, []) }
        var codes: [Int16] = []
        var actions: [GroupAction] = []
        var removed = false
        for identity in identities {
            var id = identity.memberId
            if let instance = identity.groupInstanceId {
                guard let known = staticMembers[instance] else {
                    codes.append(KafkaErrorCode.unknownMemberId.rawValue)
                    continue
                }
                if !id.isEmpty && id != known {
                    codes.append(GroupErrorCode.fencedInstanceId)
                    continue
                }
                id = known
            }
            if pendingMembers.removeValue(forKey: id) != nil {
                codes.append(0)
                removed = true
                continue
            }
            guard let member = members[id] else {
                codes.append(KafkaErrorCode.unknownMemberId.rawValue)
                continue
            }
            if let join = member.awaitingJoin {
                actions.append(.completeJoin(join, .error(KafkaErrorCode.unknownMemberId.rawValue, memberId: id)))
            }
            if let sync = member.awaitingSync { actions.append(.completeSync(sync, .error(KafkaErrorCode.unknownMemberId.rawValue))) }
            removeMember(id)
            codes.append(0)
            removed = true
        }
        if removed { actions += membershipChanged(now: now) }
        return (codes, actions)
    }

    /// After members were removed: a stable or completing group rebalances; a preparing one may
    /// now have everyone it waits for.
    mutating func membershipChanged(now: MonotonicInstant) -> [GroupAction] {
        switch state {
        case .stable, .completingRebalance: prepareRebalance(now: now)
        case .preparingRebalance: maybeCompleteJoin(now: now)
        case .empty, .dead: []
        }
    }

    /// Whether an OffsetCommit from this member at this generation may be applied; returns the
    /// error code (0 to commit). A commit with generation < 0 and no member id (a standalone
    /// consumer, or any v0 commit) is accepted only while the group has no members.
    public mutating func validateCommit(memberId: String, groupInstanceId: String?, generationId: Int32, now: MonotonicInstant) -> Int16 {
        if state == .dead { return KafkaErrorCode.coordinatorNotAvailable.rawValue }
        if generationId < 0 && memberId.isEmpty && groupInstanceId == nil && members.isEmpty { return 0 }
        if let code = memberError(memberId: memberId, groupInstanceId: groupInstanceId) { return code }
        if state == .completingRebalance { return KafkaErrorCode.rebalanceInProgress.rawValue }
        if generationId != self.generationId { return KafkaErrorCode.illegalGeneration.rawValue }
        members[memberId]!.sessionDeadline = now.advanced(by: members[memberId]!.sessionTimeout)
        return 0
    }

    /// Marks the group Dead (DeleteGroups of an Empty group). Returns false if it has members.
    public mutating func markDead() -> Bool {
        guard isEmpty, state == .empty else { return false }
        state = .dead
        return true
    }

    /// Undoes ``markDead()`` (the deletion failed).
    public mutating func reviveFromDead() {
        if state == .dead { state = .empty }
    }

    // MARK: Time

    /// The earliest instant at which ``expire(now:)`` has something to do, or nil.
    public var nextDeadline: MonotonicInstant? {
        var next: MonotonicInstant? = nil
        func consider(_ d: MonotonicInstant?) {
            if let d, next == nil || d < next! { next = d }
        }
        consider(rebalanceDeadline)
        consider(initialDelayDeadline)
        consider(syncDeadline)
        for d in pendingMembers.values { consider(d) }
        for m in members.values where m.awaitingJoin == nil && m.awaitingSync == nil { consider(m.sessionDeadline) }
        return next
    }

    /// Applies every deadline that has passed: expired pending member ids, expired sessions
    /// (members waiting in JoinGroup or SyncGroup are kept alive by that request), the end of the
    /// initial delay, the sync timeout and the rebalance timeout.
    public mutating func expire(now: MonotonicInstant) -> [GroupAction] {
        guard state != .dead else { return [] }
        var actions: [GroupAction] = []
        let expiredPending = pendingMembers.filter { $0.value <= now }.map(\.key)
        for id in expiredPending { pendingMembers[id] = nil }
        var removed = !expiredPending.isEmpty

        for id in memberOrder {
            guard let m = members[id], m.awaitingJoin == nil, m.awaitingSync == nil, m.sessionDeadline <= now else { continue }
            removeMember(id)
            removed = true
        }
        if removed { actions += membershipChanged(now: now) }

        if state == .completingRebalance, let deadline = syncDeadline, deadline <= now {
            // The leader did not send its assignments in time: drop who did not sync, rebalance.
            for id in memberOrder where members[id]?.awaitingSync == nil { removeMember(id) }
            actions += prepareRebalance(now: now)
        }
        if state == .preparingRebalance, let delay = initialDelayDeadline, delay <= now {
            initialDelayDeadline = nil
            actions += maybeCompleteJoin(now: now)
        }
        if state == .preparingRebalance, let deadline = rebalanceDeadline, deadline <= now {
            actions += completeJoin(now: now)
        }
        return actions
    }

    mutating func refreshDurableView() {
        durableView = GroupSnapshot(
            protocolType: protocolType, protocolName: state == .stable ? protocolName : nil, generationId: generationId,
            leaderId: state == .stable ? leaderId : nil,
            members: state != .stable ? [] : memberOrder.compactMap { members[$0] }.map {
                GroupSnapshot.Member(
                    memberId: $0.memberId, groupInstanceId: $0.groupInstanceId, clientId: $0.clientId, clientHost: $0.clientHost,
                    sessionTimeoutMs: Int32(clamping: $0.sessionTimeout.nanosecondsClamped / 1_000_000),
                    rebalanceTimeoutMs: Int32(clamping: $0.rebalanceTimeout.nanosecondsClamped / 1_000_000),
                    protocols: $0.protocols, assignment: $0.assignment)
            })
    }
}
