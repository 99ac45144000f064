import KafkaProtocol
import Support
import Testing
@testable import Broker

/// Drives a GroupStateMachine by hand: a manual timeline, tokens, and the replies it produced.
struct GroupHarness {
    var group: GroupStateMachine
    var now = MonotonicInstant(nanoseconds: 1_000_000_000)
    var nextToken: RequestToken = 0
    var joins: [RequestToken: JoinOutcome] = [:]
    var syncs: [RequestToken: SyncOutcome] = [:]
    var persisted = 0
    var nextId = 0

    init(config: GroupConfig = GroupConfig()) {
        group = GroupStateMachine(groupId: "g", config: config)
    }

    mutating func token() -> RequestToken {
        nextToken += 1
        return nextToken
    }

    mutating func apply(_ actions: [GroupAction]) {
        for a in actions {
            switch a {
            case let .completeJoin(t, o):
                #expect(joins[t] == nil, "token \(t) answered twice")
                joins[t] = o
            case let .completeSync(t, o):
                #expect(syncs[t] == nil, "token \(t) answered twice")
                syncs[t] = o
            case .persist: persisted += 1
            }
        }
    }

    static func protocols(_ names: [String]) -> [GroupProtocol] {
        names.map { GroupProtocol(name: $0, metadata: Array("\($0)-meta".utf8)) }
    }

    /// Sends a JoinGroup; returns its token.
    mutating func join(_ memberId: String = "", instance: String? = nil, protocols: [String] = ["range"],
                       session: Int32 = 10_000, rebalance: Int32 = 30_000, v4: Bool = true) -> RequestToken {
        let t = token()
        nextId += 1
        let request = JoinRequest(memberId: memberId, groupInstanceId: instance, clientId: "c", clientHost: "/127.0.0.1",
                                  sessionTimeoutMs: session, rebalanceTimeoutMs: rebalance, protocolType: "consumer",
                                  protocols: Self.protocols(protocols), requireKnownMemberId: v4)
        apply(group.join(request, token: t, newMemberId: "m\(nextId)", now: now))
        return t
    }

    /// Joins with the MEMBER_ID_REQUIRED round trip; returns the member id and the second join's token.
    mutating func joinNew(protocols: [String] = ["range"], session: Int32 = 10_000, rebalance: Int32 = 30_000) -> (String, RequestToken) {
        let first = join(protocols: protocols, session: session, rebalance: rebalance)
        let outcome = joins[first]!
        #expect(outcome.errorCode == KafkaErrorCode.memberIdRequired.rawValue)
        return (outcome.memberId, join(outcome.memberId, protocols: protocols, session: session, rebalance: rebalance))
    }

    mutating func sync(_ memberId: String, generation: Int32, assignments: [String: [UInt8]] = [:],
                       instance: String? = nil) -> RequestToken {
        let t = token()
        apply(group.sync(memberId: memberId, groupInstanceId: instance, generationId: generation, protocolType: nil,
                         protocolName: nil, assignments: assignments, token: t, now: now))
        return t
    }

    mutating func advance(_ d: Duration) {
        now = now.advanced(by: d)
        if let next = group.nextDeadline, next <= now { apply(group.expire(now: now)) }
    }

    mutating func heartbeat(_ memberId: String, _ generation: Int32, instance: String? = nil) -> Int16 {
        group.heartbeat(memberId: memberId, groupInstanceId: instance, generationId: generation, now: now)
    }
}

struct GroupStateMachineTests {
    @Test func firstJoinNeedsAMemberIdThenTheInitialDelayGathersEveryone() {
        var h = GroupHarness()
        let (a, ta) = h.joinNew()
        #expect(h.group.state == .preparingRebalance)
        #expect(h.joins[ta] == nil, "the first rebalance waits for the initial delay")
        h.advance(.seconds(1))
        let (b, tb) = h.joinNew()
        let (c, tc) = h.joinNew()
        #expect(h.joins[tb] == nil && h.joins[tc] == nil)
        h.advance(.seconds(2))
        #expect(h.group.state == .completingRebalance)
        #expect(h.group.generationId == 1)
        let leader = h.joins[ta]!
        #expect(leader.errorCode == 0 && leader.leader == a && leader.memberId == a && leader.generationId == 1)
        #expect(leader.members.map(\.memberId) == [a, b, c])
        #expect(leader.members.first!.metadata == Array("range-meta".utf8))
        #expect(leader.protocolName == "range" && leader.protocolType == "consumer")
        for (t, id) in [(tb, b), (tc, c)] {
            #expect(h.joins[t]!.memberId == id && h.joins[t]!.leader == a && h.joins[t]!.members.isEmpty)
        }
    }

    @Test func joinWithoutMemberIdBeforeV4IsAddedDirectly() {
        var h = GroupHarness(config: { var c = GroupConfig(); c.initialRebalanceDelay = .zero; return c }())
        let t = h.join(v4: false)
        #expect(h.joins[t]!.errorCode == 0 && h.joins[t]!.memberId == "m1" && h.joins[t]!.generationId == 1)
        #expect(h.group.state == .completingRebalance)
    }

    @Test func protocolIsTheOneEveryMemberSupportsByVote() {
        var h = GroupHarness()
        let (_, t1) = h.joinNew(protocols: ["range", "roundrobin"])
        _ = h.joinNew(protocols: ["roundrobin", "range"])
        _ = h.joinNew(protocols: ["sticky", "roundrobin", "range"])
        h.advance(.seconds(3))
        #expect(h.joins[t1]!.protocolName == "roundrobin")
        let bad = h.join(protocols: ["cooperative-sticky"])
        #expect(h.joins[bad]!.errorCode == KafkaErrorCode.inconsistentGroupProtocol.rawValue)
    }

    @Test func invalidSessionTimeoutIsRejected() {
        var h = GroupHarness()
        let t = h.join(session: 1000)
        #expect(h.joins[t]!.errorCode == KafkaErrorCode.invalidSessionTimeout.rawValue)
        #expect(h.group.members.isEmpty && h.group.pendingMembers.isEmpty)
    }

    /// Two members through a full generation; returns (harness, leader, follower).
    func stableGroup() -> (GroupHarness, String, String) {
        var h = GroupHarness()
        let (a, _) = h.joinNew()
        let (b, _) = h.joinNew()
        h.advance(.seconds(3))
        let fs = h.sync(b, generation: 1)
        #expect(h.syncs[fs] == nil, "a follower waits for the leader")
        let ls = h.sync(a, generation: 1, assignments: [a: [1], b: [2]])
        #expect(h.syncs[ls] == SyncOutcome(errorCode: 0, protocolType: "consumer", protocolName: "range", assignment: [1]))
        #expect(h.syncs[fs]!.assignment == [2])
        #expect(h.group.state == .stable)
        #expect(h.persisted == 1)
        #expect(h.group.durableView.members.map(\.assignment) == [[1], [2]])
        return (h, a, b)
    }

    @Test func syncDistributesTheLeadersAssignments() {
        var (h, _, b) = stableGroup()
        // A late sync in Stable gets the assignment at once.
        let again = h.sync(b, generation: 1)
        #expect(h.syncs[again]!.assignment == [2])
        let stale = h.sync(b, generation: 0)
        #expect(h.syncs[stale]!.errorCode == KafkaErrorCode.illegalGeneration.rawValue)
        let unknown = h.sync("nobody", generation: 1)
        #expect(h.syncs[unknown]!.errorCode == KafkaErrorCode.unknownMemberId.rawValue)
    }

    @Test func heartbeatErrors() {
        var (h, a, b) = stableGroup()
        #expect(h.heartbeat(a, 1) == 0)
        #expect(h.heartbeat("nobody", 1) == KafkaErrorCode.unknownMemberId.rawValue)
        #expect(h.heartbeat(b, 7) == KafkaErrorCode.illegalGeneration.rawValue)
        _ = h.joinNew()  // a third member triggers a rebalance
        #expect(h.group.state == .preparingRebalance)
        #expect(h.heartbeat(a, 1) == KafkaErrorCode.rebalanceInProgress.rawValue)
    }

    @Test func leaderLeavingRebalancesAndElectsANewLeader() {
        var (h, a, b) = stableGroup()
        let (codes, actions) = h.group.leave([(a, nil)], now: h.now)
        h.apply(actions)
        #expect(codes == [0])
        #expect(h.group.state == .preparingRebalance && h.group.leaderId == b)
        #expect(h.heartbeat(b, 1) == KafkaErrorCode.rebalanceInProgress.rawValue)
        let rejoin = h.join(b)
        #expect(h.joins[rejoin]!.generationId == 2 && h.joins[rejoin]!.leader == b)
        #expect(h.joins[rejoin]!.members.map(\.memberId) == [b])
        let (again, _) = h.group.leave([(a, nil)], now: h.now)
        #expect(again == [KafkaErrorCode.unknownMemberId.rawValue])
    }

    @Test func lastMemberLeavingEmptiesTheGroupAndBumpsTheGeneration() {
        var (h, a, b) = stableGroup()
        let (codes, actions) = h.group.leave([(a, nil), (b, nil)], now: h.now)
        h.apply(actions)
        #expect(codes == [0, 0])
        #expect(h.group.state == .empty && h.group.generationId == 2 && h.group.leaderId == nil)
        #expect(h.persisted == 2)
    }

    @Test func sessionTimeoutRemovesASilentMemberAndRebalances() {
        var (h, a, b) = stableGroup()
        // a keeps heartbeating every 3 s, b is silent; b's 10 s session runs out.
        for _ in 0..<3 {
            h.advance(.seconds(3))
            #expect(h.heartbeat(a, 1) == 0)
        }
        h.advance(.seconds(1) + .milliseconds(1))
        #expect(h.group.members[b] == nil)
        #expect(h.group.state == .preparingRebalance)
        let rejoin = h.join(a)
        #expect(h.joins[rejoin]!.generationId == 2 && h.joins[rejoin]!.members.map(\.memberId) == [a])
        #expect(h.heartbeat(b, 1) == KafkaErrorCode.unknownMemberId.rawValue)
    }

    @Test func rebalanceTimeoutRemovesMembersThatDoNotRejoin() {
        var (h, a, b) = stableGroup()
        let (c, tc) = h.joinNew()
        let ta = h.join(a)
        // b heartbeats (learning of the rebalance) but never rejoins.
        for _ in 0..<9 {
            h.advance(.seconds(3))
            #expect(h.heartbeat(b, 1) == KafkaErrorCode.rebalanceInProgress.rawValue)
        }
        #expect(h.joins[ta] == nil)
        h.advance(.seconds(3))  // 30 s rebalance timeout
        #expect(h.group.generationId == 2 && h.group.state == .completingRebalance)
        #expect(Set(h.group.members.keys) == [a, c])
        #expect(h.joins[ta]!.members.map(\.memberId) == [a, c] && h.joins[tc]!.errorCode == 0)
    }

    @Test func leaderThatNeverSyncsIsRemovedAtTheSyncTimeout() {
        var h = GroupHarness()
        let (a, _) = h.joinNew()
        let (b, _) = h.joinNew()
        h.advance(.seconds(3))
        let fs = h.sync(b, generation: 1)
        for _ in 0..<10 {
            h.advance(.seconds(3))
            guard h.group.state == .completingRebalance else { break }
            #expect(h.heartbeat(b, 1) == 0)
            if h.group.members[a] != nil { #expect(h.heartbeat(a, 1) == 0, "the leader is alive, it just does not sync") }
        }
        #expect(h.syncs[fs]!.errorCode == KafkaErrorCode.rebalanceInProgress.rawValue)
        #expect(h.group.members[a] == nil && h.group.state == .preparingRebalance)
    }

    @Test func staticMemberRestartKeepsTheStableGroupAndFencesTheOldId() {
        var h = GroupHarness()
        let tl = h.join(instance: "i-1")
        let tf = h.join(instance: "i-2")
        h.advance(.seconds(3))
        let leader = h.joins[tl]!.memberId, follower = h.joins[tf]!.memberId
        _ = h.sync(leader, generation: 1, assignments: [leader: [1], follower: [2]])
        #expect(h.group.state == .stable)
        // The follower restarts: same instance id, no member id.
        let restart = h.join(instance: "i-2")
        let outcome = h.joins[restart]!
        #expect(outcome.errorCode == 0 && outcome.generationId == 1 && outcome.memberId != follower)
        #expect(h.group.state == .stable, "no rebalance for a static member coming back")
        #expect(h.heartbeat(follower, 1, instance: "i-2") == GroupErrorCode.fencedInstanceId)
        #expect(h.heartbeat(outcome.memberId, 1, instance: "i-2") == 0)
        let s = h.sync(outcome.memberId, generation: 1, instance: "i-2")
        #expect(h.syncs[s]!.assignment == [2])
        // Leaving by instance id alone.
        let (codes, actions) = h.group.leave([("", "i-2")], now: h.now)
        h.apply(actions)
        #expect(codes == [0] && h.group.state == .preparingRebalance)
    }

    @Test func commitValidation() {
        var (h, a, _) = stableGroup()
        #expect(h.group.validateCommit(memberId: a, groupInstanceId: nil, generationId: 1, now: h.now) == 0)
        #expect(h.group.validateCommit(memberId: a, groupInstanceId: nil, generationId: 0, now: h.now) == KafkaErrorCode.illegalGeneration.rawValue)
        #expect(h.group.validateCommit(memberId: "", groupInstanceId: nil, generationId: -1, now: h.now) == KafkaErrorCode.unknownMemberId.rawValue)
        var empty = GroupHarness()
        #expect(empty.group.validateCommit(memberId: "", groupInstanceId: nil, generationId: -1, now: empty.now) == 0)
    }

    @Test func restoredGroupIsStableWithItsMembers() {
        let (h, a, b) = stableGroup()
        let restored = GroupStateMachine(groupId: "g", config: GroupConfig(), restoring: h.group.durableView, now: h.now)
        #expect(restored.state == .stable && restored.generationId == 1 && restored.leaderId == a)
        #expect(restored.memberOrder == [a, b] && restored.members[b]!.assignment == [2])
        #expect(restored.protocolName == "range")
    }
}
