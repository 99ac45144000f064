import Foundation
import KafkaProtocol
import Support

// KIP-848 consumer groups ("group.protocol=consumer"): the group and its members as a pure
// state machine, following Apache Kafka 4.x's GroupMetadataManager and CurrentAssignmentBuilder.

/// A topic as the consumer-group coordinator sees it: its name, id and partition count.
public struct TopicShape: Sendable, Hashable {
    public var name: String
    public var id: KafkaUUID
    public var partitions: Int

    public init(name: String, id: KafkaUUID, partitions: Int) {
        self.name = name
        self.id = id
        self.partitions = partitions
    }
}

/// Partitions by topic id. A member's assignment, a target assignment, owned partitions.
public typealias ConsumerAssignment = [KafkaUUID: Set<Int32>]

/// Error codes of KIP-848 that `KafkaErrorCode` lacks (Apache Kafka's numbers).
enum ConsumerGroupErrorCode {
    static let fencedMemberEpoch: Int16 = 110
    static let unreleasedInstanceId: Int16 = 111
    static let unsupportedAssignor: Int16 = 112
    static let staleMemberEpoch: Int16 = 113
    static let invalidRegularExpression: Int16 = 130
}

/// Where a member stands in reconciling towards its target assignment (Kafka's MemberState).
public enum ConsumerMemberState: UInt8, Sendable {
    /// The member owns exactly what it was given at its epoch.
    case stable = 0
    /// The member must revoke `pendingRevocation` before it may move to the next epoch.
    case unrevokedPartitions = 1
    /// The member is at the target epoch but waits for partitions other members still own.
    case unreleasedPartitions = 2

    var name: String {
        switch self {
        case .stable: "STABLE"
        case .unrevokedPartitions: "UNREVOKED_PARTITIONS"
        case .unreleasedPartitions: "UNRELEASED_PARTITIONS"
        }
    }
}

/// One member of a consumer group.
public struct ConsumerMember: Sendable, Equatable {
    public var memberId: String
    public var instanceId: String?
    public var rackId: String?
    public var clientId: String
    public var clientHost: String
    public var rebalanceTimeoutMs: Int32
    /// Sorted, without duplicates.
    public var subscribedTopicNames: [String]
    /// A regular expression: every topic whose whole name matches is subscribed too.
    public var subscribedTopicRegex: String?
    public var serverAssignor: String?
    /// -2 for a static member that left temporarily (it keeps its partitions until its session expires).
    public var memberEpoch: Int32
    public var previousMemberEpoch: Int32
    public var state: ConsumerMemberState
    /// What the member owns at `memberEpoch` (its heartbeat response lists exactly these).
    public var assigned: ConsumerAssignment
    /// What the member still owns but must give up before moving on.
    public var pendingRevocation: ConsumerAssignment
    /// Not persisted: set again when the group is read.
    public var sessionDeadline: MonotonicInstant?
    /// Set while the member must revoke partitions: if it has not by then it is fenced.
    public var revocationDeadline: MonotonicInstant?
    /// Set for a member that speaks the classic protocol (JoinGroup/SyncGroup/Heartbeat) in a
    /// mixed group (MixedGroups.swift); nil for a ConsumerGroupHeartbeat member.
    public var classic: ClassicMemberInfo?

    public init(memberId: String, instanceId: String? = nil, rackId: String? = nil, clientId: String = "", clientHost: String = "",
                rebalanceTimeoutMs: Int32 = 300_000, subscribedTopicNames: [String] = [], subscribedTopicRegex: String? = nil,
                serverAssignor: String? = nil,
                memberEpoch: Int32 = 0, previousMemberEpoch: Int32 = 0, state: ConsumerMemberState = .stable,
                assigned: ConsumerAssignment = [:], pendingRevocation: ConsumerAssignment = [:], classic: ClassicMemberInfo? = nil) {
        self.memberId = memberId
        self.instanceId = instanceId
        self.rackId = rackId
        self.clientId = clientId
        self.clientHost = clientHost
        self.rebalanceTimeoutMs = rebalanceTimeoutMs
        self.subscribedTopicNames = subscribedTopicNames
        self.subscribedTopicRegex = subscribedTopicRegex
        self.serverAssignor = serverAssignor
        self.memberEpoch = memberEpoch
        self.previousMemberEpoch = previousMemberEpoch
        self.state = state
        self.assigned = assigned
        self.pendingRevocation = pendingRevocation
        self.classic = classic
    }

    /// The session a heartbeat (or any request of a classic member) starts: a classic member's
    /// own from its JoinGroup, else the coordinator's `group.consumer.session.timeout.ms`.
    func session(_ config: GroupConfig) -> Duration {
        classic.map { .milliseconds(Int64($0.sessionTimeoutMs)) } ?? config.consumerSessionTimeout
    }
}

/// A ConsumerGroupHeartbeat as the state machine sees it.
public struct ConsumerHeartbeat: Sendable {
    public var memberId: String
    public var memberEpoch: Int32
    public var instanceId: String?
    public var rackId: String?
    /// -1 when not sent (only a full request carries it).
    public var rebalanceTimeoutMs: Int32
    /// nil: unchanged since the last heartbeat.
    public var subscribedTopicNames: [String]?
    /// nil: unchanged; empty: no regular expression.
    public var subscribedTopicRegex: String?
    public var serverAssignor: String?
    /// nil: not sent.
    public var ownedPartitions: ConsumerAssignment?
    public var clientId: String
    public var clientHost: String

    public init(memberId: String, memberEpoch: Int32, instanceId: String? = nil, rackId: String? = nil, rebalanceTimeoutMs: Int32 = -1,
                subscribedTopicNames: [String]? = nil, subscribedTopicRegex: String? = nil, serverAssignor: String? = nil,
                ownedPartitions: ConsumerAssignment? = nil, clientId: String = "", clientHost: String = "") {
        self.memberId = memberId
        self.memberEpoch = memberEpoch
        self.instanceId = instanceId
        self.rackId = rackId
        self.rebalanceTimeoutMs = rebalanceTimeoutMs
        self.subscribedTopicNames = subscribedTopicNames
        self.subscribedTopicRegex = subscribedTopicRegex
        self.serverAssignor = serverAssignor
        self.ownedPartitions = ownedPartitions
        self.clientId = clientId
        self.clientHost = clientHost
    }
}

/// The answer to one heartbeat.
public struct ConsumerHeartbeatOutcome: Sendable, Equatable {
    public var errorCode: Int16 = 0
    public var errorMessage: String?
    public var memberId: String?
    public var memberEpoch: Int32 = 0
    public var heartbeatIntervalMs: Int32 = 0
    /// Present when the member must learn its (new) assignment.
    public var assignment: ConsumerAssignment?

    static func error(_ code: Int16, _ message: String) -> ConsumerHeartbeatOutcome {
        ConsumerHeartbeatOutcome(errorCode: code, errorMessage: message)
    }
}

/// The server-side assignors, by the names clients give in `group.remote.assignor`.
public enum ConsumerAssignorName: String, Sendable, CaseIterable {
    case uniform
    case range
}

/// One KIP-848 consumer group.
///
/// Invariants (Kafka's):
/// - `groupEpoch` is bumped whenever membership, a subscription, the preferred assignor or the
///   metadata of a subscribed topic changes; the target assignment is recomputed for the new
///   epoch at once (`assignmentEpoch == groupEpoch` after every heartbeat).
/// - A member moves towards its target one step per heartbeat: partitions it must give up are
///   revoked first (it stays at its epoch until its heartbeat no longer lists them), then it
///   moves to the target epoch and gets the partitions nobody else owns; partitions still owned
///   by another member are handed over only once that member has released them. So a partition
///   is never in two members' `assigned ∪ pendingRevocation` at once.
/// - Time enters only as `now`; deadlines are values the owner fires with ``expire(now:)``.
public struct ConsumerGroup: Sendable, Equatable {
    public var groupId: String
    public var groupEpoch: Int32 = 0
    public var assignmentEpoch: Int32 = 0
    public var members: [String: ConsumerMember] = [:]
    /// Target assignment of `assignmentEpoch`, per member id.
    public var target: [String: ConsumerAssignment] = [:]
    /// The subscribed topics (by name) the target was computed from.
    public var subscribedTopics: [String: TopicShape] = [:]

    public init(groupId: String) {
        self.groupId = groupId
    }

    /// Kafka's consumer group states, as ListGroups and ConsumerGroupDescribe name them.
    public var stateName: String {
        if members.isEmpty { return "Empty" }
        if groupEpoch > assignmentEpoch { return "Assigning" }
        if members.values.contains(where: { $0.state != .stable || ($0.memberEpoch != assignmentEpoch && $0.memberEpoch >= 0) }) {
            return "Reconciling"
        }
        return "Stable"
    }

    /// The assignor the members prefer most (ties: by name), else `uniform`.
    public var preferredAssignor: ConsumerAssignorName {
        var counts: [String: Int] = [:]
        for m in members.values { if let a = m.serverAssignor { counts[a, default: 0] += 1 } }
        let best = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.first?.key
        return best.flatMap(ConsumerAssignorName.init(rawValue:)) ?? .uniform
    }

    public var nextDeadline: MonotonicInstant? {
        members.values.flatMap { [$0.sessionDeadline, $0.revocationDeadline].compactMap { $0 } }.min()
    }

    public func staticMember(_ instanceId: String) -> ConsumerMember? {
        members.values.first { $0.instanceId == instanceId }
    }

    /// The epoch of the member owning each partition (assigned or pending revocation).
    func owners(except memberId: String) -> [KafkaUUID: [Int32: String]] {
        var out: [KafkaUUID: [Int32: String]] = [:]
        for m in members.values where m.memberId != memberId {
            for (t, ps) in m.assigned { for p in ps { out[t, default: [:]][p] = m.memberId } }
            for (t, ps) in m.pendingRevocation { for p in ps { out[t, default: [:]][p] = m.memberId } }
        }
        return out
    }

    // MARK: Heartbeat

    /// Checks the request's shape (Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`);
    /// nil when it is valid.
    public static func validate(_ r: ConsumerHeartbeat) -> ConsumerHeartbeatOutcome? {
        let invalid = KafkaErrorCode.invalidRequest.rawValue
        if r.memberEpoch < -2 { return .error(invalid, "MemberEpoch \(r.memberEpoch) is invalid.") }
        if r.memberEpoch != 0 && r.memberId.isEmpty { return .error(invalid, "MemberId can't be empty.") }
        if r.memberEpoch == -2 && r.instanceId == nil { return .error(invalid, "InstanceId can't be null for a static member leaving (epoch -2).") }
        if r.memberEpoch == 0 {
            if r.rebalanceTimeoutMs == -1 { return .error(invalid, "RebalanceTimeoutMs must be provided in first request.") }
            if let owned = r.ownedPartitions, owned.values.contains(where: { !$0.isEmpty }) {
                return .error(invalid, "TopicPartitions must be empty when (re-)joining.")
            }
            if r.subscribedTopicNames == nil && r.subscribedTopicRegex == nil {
                return .error(invalid, "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.")
            }
        }
        if let regex = r.subscribedTopicRegex, !regex.isEmpty, TopicPattern(regex) == nil {
            return .error(ConsumerGroupErrorCode.invalidRegularExpression, "SubscribedTopicRegex \(regex) is not a valid regular expression.")
        }
        if let a = r.serverAssignor, ConsumerAssignorName(rawValue: a) == nil {
            return .error(ConsumerGroupErrorCode.unsupportedAssignor,
                          "ServerAssignor \(a) is not supported. Supported assignors: uniform, range.")
        }
        return nil
    }

    /// Applies one (validated) heartbeat. `topics` is the cluster's topics by name, read for this
    /// heartbeat (so topics created or grown since are seen). Returns the answer and whether the
    /// group's persistent state changed.
    public mutating func heartbeat(_ r: ConsumerHeartbeat, topics: [String: TopicShape], now: MonotonicInstant,
                                   config: GroupConfig, newMemberId: String) -> (ConsumerHeartbeatOutcome, Bool) {
        let before = self
        let outcome = apply(r, topics: topics, now: now, config: config, newMemberId: newMemberId)
        return (outcome, !persistentlyEqual(before))
    }

    func persistentlyEqual(_ other: ConsumerGroup) -> Bool {
        var a = self, b = other
        for id in a.members.keys { a.members[id]!.sessionDeadline = nil; a.members[id]!.revocationDeadline = nil }
        for id in b.members.keys { b.members[id]!.sessionDeadline = nil; b.members[id]!.revocationDeadline = nil }
        return a == b
    }

    mutating func apply(_ r: ConsumerHeartbeat, topics: [String: TopicShape], now: MonotonicInstant, config: GroupConfig,
                        newMemberId: String) -> ConsumerHeartbeatOutcome {
        let interval = Int32(clamping: config.consumerHeartbeatInterval.nanosecondsClamped / 1_000_000)

        if r.memberEpoch == -1 || r.memberEpoch == -2 {
            return leave(r)
        }

        var member: ConsumerMember
        var bump = false
        if r.memberEpoch == 0 {
            let id = r.memberId.isEmpty ? newMemberId : r.memberId
            if let existing = members[id] {
                member = existing
                if member.memberEpoch == -2 {
                    // A static member that left temporarily comes back under its old member id.
                    member.memberEpoch = 0
                    member.previousMemberEpoch = 0
                    member.state = .stable
                }
            } else if let instanceId = r.instanceId, let previous = staticMember(instanceId) {
                guard previous.memberEpoch == -2 else {
                    return .error(ConsumerGroupErrorCode.unreleasedInstanceId,
                                  "Static member \(previous.memberId) with instance id \(instanceId) is not released yet.")
                }
                // The static member comes back under a new member id: it takes over the old
                // member's assignment without a rebalance.
                member = previous
                member.memberId = id
                member.memberEpoch = 0
                member.previousMemberEpoch = 0
                member.state = .stable
                members[previous.memberId] = nil
                target[id] = target.removeValue(forKey: previous.memberId)
            } else {
                guard members.count < config.maxMembersPerGroup else {
                    return .error(GroupErrorCode.groupMaxSizeReached,
                                  "The consumer group has reached its maximum capacity of \(config.maxMembersPerGroup) members.")
                }
                member = ConsumerMember(memberId: id, instanceId: r.instanceId)
                bump = true
            }
        } else {
            guard let existing = members[r.memberId] else {
                return .error(KafkaErrorCode.unknownMemberId.rawValue, "Member \(r.memberId) is not a member of group \(groupId).")
            }
            if r.memberEpoch > existing.memberEpoch {
                return .error(ConsumerGroupErrorCode.fencedMemberEpoch,
                              "The consumer group member has a greater member epoch (\(r.memberEpoch)) than the one known by the group coordinator (\(existing.memberEpoch)). The member must abandon all its partitions and rejoin.")
            }
            if r.memberEpoch < existing.memberEpoch {
                // The response that moved the member to its epoch may have been lost: accept the
                // previous epoch if the member owns no more than it is given now.
                let subset = r.ownedPartitions.map { owned in owned.allSatisfy { $0.value.isSubset(of: existing.assigned[$0.key] ?? []) } } ?? true
                guard r.memberEpoch == existing.previousMemberEpoch && subset else {
                    return .error(ConsumerGroupErrorCode.fencedMemberEpoch,
                                  "The consumer group member has a smaller member epoch (\(r.memberEpoch)) than the one known by the group coordinator (\(existing.memberEpoch)). The member must abandon all its partitions and rejoin.")
                }
            }
            member = existing
        }

        // Update what the member declares.
        if let names = r.subscribedTopicNames {
            let sorted = Array(Set(names)).sorted()
            if sorted != member.subscribedTopicNames { member.subscribedTopicNames = sorted; bump = true }
        }
        if let regex = r.subscribedTopicRegex {
            let value = regex.isEmpty ? nil : regex
            if value != member.subscribedTopicRegex { member.subscribedTopicRegex = value; bump = true }
        }
        // The assignor is sent with full requests (joining) and when it changes.
        if (r.memberEpoch == 0 || r.serverAssignor != nil) && r.serverAssignor != member.serverAssignor {
            member.serverAssignor = r.serverAssignor
            bump = true
        }
        if r.rebalanceTimeoutMs != -1 { member.rebalanceTimeoutMs = r.rebalanceTimeoutMs }
        if let rack = r.rackId { member.rackId = rack }
        if r.instanceId != nil { member.instanceId = r.instanceId }
        member.clientId = r.clientId
        member.clientHost = r.clientHost
        member.sessionDeadline = now.advanced(by: member.session(config))
        members[member.memberId] = member

        let old = members[member.memberId]!
        let updated = advance(old, bump: bump, topics: topics, owned: r.ownedPartitions, now: now)

        let full = r.rebalanceTimeoutMs != -1 && (r.subscribedTopicNames != nil || r.subscribedTopicRegex != nil) && r.ownedPartitions != nil
        var outcome = ConsumerHeartbeatOutcome(memberId: updated.memberId, memberEpoch: updated.memberEpoch, heartbeatIntervalMs: interval)
        if r.memberEpoch == 0 || full || updated.assigned != old.assigned || updated.memberEpoch != r.memberEpoch {
            outcome.assignment = updated.assigned
        }
        return outcome
    }

    /// The topics the members subscribe to (names and regular expressions), by name.
    func resolvedSubscriptions(_ topics: [String: TopicShape]) -> [String: TopicShape] {
        var subscribed: [String: TopicShape] = [:]
        for m in members.values {
            for name in m.subscribedTopicNames { if let t = topics[name] { subscribed[name] = t } }
            if let pattern = m.subscribedTopicRegex.flatMap(TopicPattern.init) {
                for (name, t) in topics where pattern.matches(name) { subscribed[name] = t }
            }
        }
        return subscribed
    }

    /// After `old` (already stored in `members`) declared itself: bumps the group epoch when
    /// `bump` or the subscribed topics' metadata changed (a topic created or grown), recomputes
    /// the target, and moves the member one reconciliation step with what it owns. Returns the
    /// member as stored.
    mutating func advance(_ old: ConsumerMember, bump: Bool, topics: [String: TopicShape], owned: ConsumerAssignment?,
                          now: MonotonicInstant) -> ConsumerMember {
        let subscribed = resolvedSubscriptions(topics)
        var bump = bump
        if subscribed != subscribedTopics {
            subscribedTopics = subscribed
            bump = true
        }
        if bump { groupEpoch += 1 }
        if groupEpoch > assignmentEpoch { computeTarget() }

        var updated = reconcile(old, owned: owned)
        if updated.state == .unrevokedPartitions {
            if old.state != .unrevokedPartitions || old.revocationDeadline == nil {
                updated.revocationDeadline = now.advanced(by: .milliseconds(Int64(max(updated.rebalanceTimeoutMs, 0))))
            }
        } else {
            updated.revocationDeadline = nil
        }
        members[updated.memberId] = updated
        return updated
    }

    mutating func leave(_ r: ConsumerHeartbeat) -> ConsumerHeartbeatOutcome {
        let found: ConsumerMember?
        if let instanceId = r.instanceId {
            found = staticMember(instanceId)
            guard let found else {
                return .error(KafkaErrorCode.unknownMemberId.rawValue, "Instance id \(instanceId) is unknown.")
            }
            guard found.memberId == r.memberId else {
                return .error(GroupErrorCode.fencedInstanceId,
                              "Static member \(r.memberId) with instance id \(instanceId) was replaced by member \(found.memberId).")
            }
        } else {
            found = members[r.memberId]
        }
        guard let member = found else {
            return .error(KafkaErrorCode.unknownMemberId.rawValue, "Member \(r.memberId) is not a member of group \(groupId).")
        }
        if r.memberEpoch == -2 {
            // A static member leaving temporarily keeps its partitions and target until its session ends.
            members[member.memberId]!.memberEpoch = -2
        } else {
            remove(member.memberId)
        }
        return ConsumerHeartbeatOutcome(memberId: member.memberId, memberEpoch: r.memberEpoch)
    }

    /// Removes a member (left, fenced, or its session expired) and bumps the group epoch; its
    /// partitions are free for their next owners.
    public mutating func remove(_ memberId: String) {
        guard members.removeValue(forKey: memberId) != nil else { return }
        target[memberId] = nil
        groupEpoch += 1
    }

    /// Removes the members whose session or revocation deadline has passed; returns their ids.
    public mutating func expire(now: MonotonicInstant) -> [String] {
        let gone = members.values.filter { m in
            (m.sessionDeadline.map { $0 <= now } ?? false) || (m.state == .unrevokedPartitions && (m.revocationDeadline.map { $0 <= now } ?? false))
        }.map(\.memberId).sorted()
        for id in gone { remove(id) }
        return gone
    }

    /// Gives every member a fresh session (after the group is read from the bucket).
    public mutating func restartSessions(now: MonotonicInstant, config: GroupConfig) {
        for id in members.keys {
            members[id]!.sessionDeadline = now.advanced(by: members[id]!.session(config))
            if members[id]!.state == .unrevokedPartitions {
                members[id]!.revocationDeadline = now.advanced(by: .milliseconds(Int64(max(members[id]!.rebalanceTimeoutMs, 0))))
            }
        }
    }

    /// Recomputes the target assignment for the current group epoch.
    mutating func computeTarget() {
        let byName = subscribedTopics
        let specs = members.values.sorted { $0.memberId < $1.memberId }.map { m in
            var ids = Set(m.subscribedTopicNames.compactMap { byName[$0]?.id })
            if let pattern = m.subscribedTopicRegex.flatMap(TopicPattern.init) {
                for (name, t) in byName where pattern.matches(name) { ids.insert(t.id) }
            }
            return AssignorMember(memberId: m.memberId, instanceId: m.instanceId, topics: ids)
        }
        let shapes = byName.values.sorted { $0.name < $1.name }
        switch preferredAssignor {
        case .uniform: target = UniformAssignor.assign(members: specs, topics: shapes, previous: target)
        case .range: target = RangeAssignor.assign(members: specs, topics: shapes)
        }
        assignmentEpoch = groupEpoch
    }

    /// One step of Kafka's CurrentAssignmentBuilder. `owned` is what the member's heartbeat lists
    /// (nil: not sent, taken as still owning everything it had).
    func reconcile(_ member: ConsumerMember, owned: ConsumerAssignment?) -> ConsumerMember {
        if member.memberEpoch == -2 { return member }
        func ownsAny(_ revoking: ConsumerAssignment) -> Bool {
            guard let owned else { return true }
            return revoking.contains { t, ps in !(owned[t] ?? []).isDisjoint(with: ps) }
        }
        switch member.state {
        case .stable:
            if member.memberEpoch != assignmentEpoch { return nextAssignment(member, ownsAny: ownsAny) }
            return member
        case .unrevokedPartitions:
            if ownsAny(member.pendingRevocation) { return member }
            var m = member
            m.pendingRevocation = [:]
            return nextAssignment(m, ownsAny: ownsAny)
        case .unreleasedPartitions:
            return nextAssignment(member, ownsAny: ownsAny)
        }
    }

    func nextAssignment(_ member: ConsumerMember, ownsAny: (ConsumerAssignment) -> Bool) -> ConsumerMember {
        let goal = target[member.memberId] ?? [:]
        let taken = owners(except: member.memberId)
        var assigned: ConsumerAssignment = [:]
        var revoking: ConsumerAssignment = [:]
        var unreleased = false
        for t in Set(goal.keys).union(member.assigned.keys) {
            let want = goal[t] ?? []
            let have = member.assigned[t] ?? []
            var keep = have.intersection(want)
            let revoke = have.subtracting(want)
            for p in want.subtracting(have) {
                if taken[t]?[p] == nil { keep.insert(p) } else { unreleased = true }
            }
            if !keep.isEmpty { assigned[t] = keep }
            if !revoke.isEmpty { revoking[t] = revoke }
        }
        var m = member
        if !revoking.isEmpty && ownsAny(revoking) {
            // Revocation first: the member stays at its epoch, keeping only what it keeps.
            m.state = .unrevokedPartitions
            m.assigned = Self.intersect(assigned, member.assigned)
            m.pendingRevocation = revoking
            return m
        }
        m.state = unreleased ? .unreleasedPartitions : .stable
        m.previousMemberEpoch = member.memberEpoch
        m.memberEpoch = assignmentEpoch
        m.assigned = assigned
        m.pendingRevocation = [:]
        return m
    }

    static func intersect(_ a: ConsumerAssignment, _ b: ConsumerAssignment) -> ConsumerAssignment {
        var out: ConsumerAssignment = [:]
        for (t, ps) in a {
            let both = ps.intersection(b[t] ?? [])
            if !both.isEmpty { out[t] = both }
        }
        return out
    }
}

/// A subscription's regular expression: a topic is subscribed when the expression matches its
/// whole name (as Kafka's `Pattern.matcher(topic).matches()`). Kafka uses RE2/J syntax; this is
/// ICU's (NSRegularExpression), which agrees on the usual patterns (`^orders-.*`, `a|b`, classes).
struct TopicPattern {
    let expression: NSRegularExpression

    init?(_ pattern: String) {
        guard let e = try? NSRegularExpression(pattern: pattern) else { return nil }  // an invalid pattern is the caller's error to report
        expression = e
    }

    func matches(_ name: String) -> Bool {
        let range = NSRange(name.startIndex..<name.endIndex, in: name)
        guard let m = expression.firstMatch(in: name, options: [.anchored], range: range) else { return false }
        return m.range == range
    }
}
