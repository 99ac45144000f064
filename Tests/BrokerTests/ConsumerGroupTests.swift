import FloeTestSupport
import KafkaProtocol
import ObjectStore
import Support
import Testing
@testable import Broker

/// KIP-848 consumer groups: the server-side assignors and the reconciliation state machine.
struct ConsumerAssignorTests {
    static let t1 = TopicShape(name: "t1", id: StaticTopics.id(of: "t1"), partitions: 7)
    static let t2 = TopicShape(name: "t2", id: StaticTopics.id(of: "t2"), partitions: 7)

    static func members(_ ids: [String], topics: [TopicShape]) -> [AssignorMember] {
        ids.map { AssignorMember(memberId: $0, topics: Set(topics.map(\.id))) }
    }

    /// Every partition of `topics` exactly once over the assignment.
    static func expectComplete(_ a: [String: ConsumerAssignment], topics: [TopicShape], sourceLocation: SourceLocation = #_sourceLocation) {
        var seen: [KafkaUUID: [Int32]] = [:]
        for (_, m) in a { for (t, ps) in m { seen[t, default: []] += ps } }
        for t in topics {
            #expect(seen[t.id, default: []].sorted() == (0..<Int32(t.partitions)).map { $0 },
                    "topic \(t.name): partitions assigned \(seen[t.id, default: []].sorted()) instead of each of 0..<\(t.partitions) once",
                    sourceLocation: sourceLocation)
        }
    }

    @Test func rangeIsContiguousPerTopicAndCoPartitioned() {
        let a = RangeAssignor.assign(members: Self.members(["c", "a", "b"], topics: [Self.t1, Self.t2]), topics: [Self.t1, Self.t2])
        #expect(a["a"]?[Self.t1.id] == [0, 1, 2], "a got \(String(describing: a["a"]?[Self.t1.id]))")
        #expect(a["b"]?[Self.t1.id] == [3, 4], "b got \(String(describing: a["b"]?[Self.t1.id]))")
        #expect(a["c"]?[Self.t1.id] == [5, 6], "c got \(String(describing: a["c"]?[Self.t1.id]))")
        for m in ["a", "b", "c"] { #expect(a[m]?[Self.t1.id] == a[m]?[Self.t2.id], "member \(m): t1 and t2 partitions differ") }
        Self.expectComplete(a, topics: [Self.t1, Self.t2])
    }

    @Test func rangeGivesTopicsOnlyToTheirSubscribers() {
        let ms = [AssignorMember(memberId: "a", topics: [Self.t1.id]), AssignorMember(memberId: "b", topics: [Self.t1.id, Self.t2.id])]
        let a = RangeAssignor.assign(members: ms, topics: [Self.t1, Self.t2])
        #expect(a["a"]?[Self.t2.id] == nil, "a does not subscribe to t2 but got \(String(describing: a["a"]?[Self.t2.id]))")
        #expect(a["b"]?[Self.t2.id] == Set(0..<7), "b should get all of t2")
        Self.expectComplete(a, topics: [Self.t1, Self.t2])
    }

    @Test func uniformIsBalancedAndComplete() {
        var rng = SplitMix64(seed: 7)
        for round in 0..<50 {
            let n = Int(rng.next() % 6) + 1
            let topics = (0..<Int(rng.next() % 3) + 1).map { TopicShape(name: "x\($0)", id: StaticTopics.id(of: "x\($0)-\(round)"), partitions: Int(rng.next() % 17)) }
            let ids = (0..<n).map { "m\($0)" }
            let a = UniformAssignor.assign(members: Self.members(ids, topics: topics), topics: topics, previous: [:])
            Self.expectComplete(a, topics: topics)
            let loads = ids.map { id in a[id]!.values.reduce(0) { $0 + $1.count } }
            #expect(loads.max()! - loads.min()! <= 1, "round \(round): loads \(loads) differ by more than one")
        }
    }

    @Test func uniformIsStickyWhenMembersComeAndGo() {
        let topics = [TopicShape(name: "t", id: StaticTopics.id(of: "t"), partitions: 12)]
        let before = UniformAssignor.assign(members: Self.members(["a", "b", "c"], topics: topics), topics: topics, previous: [:])
        let after = UniformAssignor.assign(members: Self.members(["a", "b", "c", "d"], topics: topics), topics: topics, previous: before)
        Self.expectComplete(after, topics: topics)
        var moved = 0
        for m in ["a", "b", "c"] {
            let old = before[m]![topics[0].id] ?? [], new = after[m]![topics[0].id] ?? []
            #expect(new.isSubset(of: old), "\(m) gained partitions \(new.subtracting(old)) when d joined")
            moved += old.count - new.count
        }
        #expect(moved == 3, "\(moved) partitions moved when the 4th member joined; 3 must")
        let shrunk = UniformAssignor.assign(members: Self.members(["a", "c", "d"], topics: topics), topics: topics, previous: after)
        for m in ["a", "c", "d"] {
            let old = after[m]![topics[0].id] ?? [], new = shrunk[m]![topics[0].id] ?? []
            #expect(old.isSubset(of: new), "\(m) lost partitions \(old.subtracting(new)) when b left")
        }
        Self.expectComplete(shrunk, topics: topics)
    }

    @Test func uniformRespectsHeterogeneousSubscriptions() {
        let ms = [AssignorMember(memberId: "a", topics: [Self.t1.id]), AssignorMember(memberId: "b", topics: [Self.t1.id, Self.t2.id])]
        let a = UniformAssignor.assign(members: ms, topics: [Self.t1, Self.t2], previous: [:])
        Self.expectComplete(a, topics: [Self.t1, Self.t2])
        #expect(a["a"]?[Self.t2.id] == nil, "a does not subscribe to t2")
        // b must take all 7 of t2, so a should take all of t1 (7 each).
        #expect(a["a"]?[Self.t1.id]?.count == 7, "a got \(a["a"]?[Self.t1.id]?.count ?? 0) partitions of t1, expected 7")
    }
}

/// A simulated KIP-848 client: owns exactly what its last response assigned.
struct SimConsumer {
    var memberId: String
    var epoch: Int32 = 0
    var owned: ConsumerAssignment = [:]
    var topics: [String]
    var joined = false

    func request() -> ConsumerHeartbeat {
        ConsumerHeartbeat(memberId: memberId, memberEpoch: joined ? epoch : 0, rebalanceTimeoutMs: 300_000,
                          subscribedTopicNames: topics, ownedPartitions: joined ? owned : [:], clientId: "sim")
    }

    mutating func apply(_ o: ConsumerHeartbeatOutcome) {
        if o.errorCode != 0 {
            owned = [:]
            joined = false
            return
        }
        joined = true
        memberId = o.memberId ?? memberId
        epoch = o.memberEpoch
        if let a = o.assignment { owned = a.filter { !$0.value.isEmpty } }
    }
}

struct ConsumerGroupStateMachineTests {
    static let topics = ["t": TopicShape(name: "t", id: StaticTopics.id(of: "t"), partitions: 8)]
    static let tid = StaticTopics.id(of: "t")

    /// No partition in two members' `assigned ∪ pendingRevocation`.
    static func expectExclusive(_ g: ConsumerGroup, sourceLocation: SourceLocation = #_sourceLocation) {
        var owner: [KafkaUUID: [Int32: String]] = [:]
        for m in g.members.values {
            for (t, ps) in m.assigned.merging(m.pendingRevocation, uniquingKeysWith: { $0.union($1) }) {
                for p in ps {
                    #expect(owner[t]?[p] == nil, "partition \(p) held by both \(owner[t]?[p] ?? "") and \(m.memberId) at group epoch \(g.groupEpoch)",
                            sourceLocation: sourceLocation)
                    owner[t, default: [:]][p] = m.memberId
                }
            }
        }
    }

    static func expectClientsExclusive(_ clients: [SimConsumer], sourceLocation: SourceLocation = #_sourceLocation) {
        var owner: [Int32: String] = [:]
        for c in clients where c.joined {
            for p in c.owned[tid] ?? [] {
                #expect(owner[p] == nil, "clients \(owner[p] ?? "") and \(c.memberId) both own partition \(p)", sourceLocation: sourceLocation)
                owner[p] = c.memberId
            }
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5])
    func randomMembershipNeverSharesAPartitionAndConverges(seed: Int) {
        var rng = SplitMix64(seed: UInt64(seed))
        let clock = ManualClock()
        var g = ConsumerGroup(groupId: "g")
        var clients: [SimConsumer] = []
        var next = 0
        for step in 0..<400 {
            let roll = rng.next() % 10
            if roll == 0 && clients.count < 5 || clients.isEmpty {
                next += 1
                clients.append(SimConsumer(memberId: "m\(next)", topics: ["t"]))
            } else if roll == 1 && clients.count > 1 {
                let i = Int(rng.next() % UInt64(clients.count))
                let c = clients.remove(at: i)
                if c.joined {
                    let (o, _) = g.heartbeat(ConsumerHeartbeat(memberId: c.memberId, memberEpoch: -1), topics: Self.topics, now: clock.now(),
                                             config: GroupConfig(), newMemberId: "unused")
                    #expect(o.errorCode == 0, "step \(step): leave of \(c.memberId) failed with \(o.errorCode)")
                }
            }
            let i = Int(rng.next() % UInt64(clients.count))
            let (o, _) = g.heartbeat(clients[i].request(), topics: Self.topics, now: clock.now(), config: GroupConfig(),
                                     newMemberId: clients[i].memberId)
            #expect(o.errorCode == 0, "step \(step): heartbeat of \(clients[i].memberId) failed: \(o.errorMessage ?? "")")
            clients[i].apply(o)
            Self.expectExclusive(g)
            Self.expectClientsExclusive(clients)
        }
        // Quiet: everyone heartbeats until the group is stable.
        for _ in 0..<10 {
            for i in clients.indices {
                let (o, _) = g.heartbeat(clients[i].request(), topics: Self.topics, now: clock.now(), config: GroupConfig(),
                                         newMemberId: clients[i].memberId)
                clients[i].apply(o)
                Self.expectClientsExclusive(clients)
            }
        }
        #expect(g.stateName == "Stable", "group is \(g.stateName) after quiet rounds")
        let all = clients.flatMap { $0.owned[Self.tid] ?? [] }.sorted()
        #expect(all == Array(0..<8), "clients own \(all) at the end, not each partition once")
        for c in clients { #expect(c.epoch == g.groupEpoch, "\(c.memberId) at epoch \(c.epoch), group at \(g.groupEpoch)") }
    }

    func join(_ g: inout ConsumerGroup, _ id: String, instanceId: String? = nil, now: MonotonicInstant) -> ConsumerHeartbeatOutcome {
        g.heartbeat(ConsumerHeartbeat(memberId: id, memberEpoch: 0, instanceId: instanceId, rebalanceTimeoutMs: 1000,
                                      subscribedTopicNames: ["t"], ownedPartitions: [:]),
                    topics: Self.topics, now: now, config: GroupConfig(), newMemberId: id).0
    }

    @Test func epochErrors() {
        let clock = ManualClock()
        var g = ConsumerGroup(groupId: "g")
        let a = join(&g, "a", now: clock.now())
        #expect(a.errorCode == 0 && a.memberEpoch == 1, "join: \(a)")
        #expect(a.assignment?[Self.tid] == Set(0..<8), "a alone gets all 8 partitions: \(String(describing: a.assignment))")
        let ahead = g.heartbeat(ConsumerHeartbeat(memberId: "a", memberEpoch: 5), topics: Self.topics, now: clock.now(),
                                config: GroupConfig(), newMemberId: "x").0
        #expect(ahead.errorCode == ConsumerGroupErrorCode.fencedMemberEpoch, "epoch ahead: got \(ahead.errorCode)")
        let unknown = g.heartbeat(ConsumerHeartbeat(memberId: "zz", memberEpoch: 1), topics: Self.topics, now: clock.now(),
                                  config: GroupConfig(), newMemberId: "x").0
        #expect(unknown.errorCode == KafkaErrorCode.unknownMemberId.rawValue, "unknown member: got \(unknown.errorCode)")
        #expect(ConsumerGroup.validate(ConsumerHeartbeat(memberId: "a", memberEpoch: 0, rebalanceTimeoutMs: 10, subscribedTopicRegex: "t(.*"))?.errorCode
                == ConsumerGroupErrorCode.invalidRegularExpression, "a regex that does not compile gets INVALID_REGULAR_EXPRESSION")
        #expect(ConsumerGroup.validate(ConsumerHeartbeat(memberId: "a", memberEpoch: 0, rebalanceTimeoutMs: 10, subscribedTopicRegex: "t.*")) == nil)
        #expect(ConsumerGroup.validate(ConsumerHeartbeat(memberId: "", memberEpoch: 1))?.errorCode == KafkaErrorCode.invalidRequest.rawValue,
                "a heartbeat without member id is invalid")
        #expect(ConsumerGroup.validate(ConsumerHeartbeat(memberId: "a", memberEpoch: 0, rebalanceTimeoutMs: 10, subscribedTopicNames: ["t"],
                                                         serverAssignor: "sticky"))?.errorCode == ConsumerGroupErrorCode.unsupportedAssignor)
    }

    @Test func revocationComesBeforeAssignment() {
        let clock = ManualClock()
        var g = ConsumerGroup(groupId: "g")
        var a = SimConsumer(memberId: "a", topics: ["t"])
        a.apply(join(&g, "a", now: clock.now()))
        #expect(a.owned[Self.tid]?.count == 8)
        let b = join(&g, "b", now: clock.now())
        #expect(b.memberEpoch == 2, "b joins at the new group epoch 2, got \(b.memberEpoch)")
        let bGot = b.assignment.flatMap { $0[Self.tid] } ?? []
        #expect(bGot.isEmpty, "b must get nothing while a still owns everything: \(String(describing: b.assignment))")
        // a heartbeats still owning everything: told to keep 4 (revocation), stays at epoch 1.
        let r1 = g.heartbeat(a.request(), topics: Self.topics, now: clock.now(), config: GroupConfig(), newMemberId: "x").0
        #expect(r1.memberEpoch == 1 && r1.assignment?[Self.tid]?.count == 4, "a must revoke 4 at epoch 1: \(r1)")
        a.apply(r1)
        #expect(g.members["a"]?.state == .unrevokedPartitions)
        let b2 = g.heartbeat(ConsumerHeartbeat(memberId: "b", memberEpoch: 2, ownedPartitions: [:]), topics: Self.topics, now: clock.now(),
                             config: GroupConfig(), newMemberId: "x").0
        let b2Got = b2.assignment.flatMap { $0[Self.tid] } ?? []
        #expect(b2Got.isEmpty, "b gets nothing before a acknowledged the revocation: \(b2)")
        let r2 = g.heartbeat(a.request(), topics: Self.topics, now: clock.now(), config: GroupConfig(), newMemberId: "x").0
        #expect(r2.memberEpoch == 2, "a moves to epoch 2 once it released: \(r2)")
        let b3 = g.heartbeat(ConsumerHeartbeat(memberId: "b", memberEpoch: 2, ownedPartitions: [:]), topics: Self.topics, now: clock.now(),
                             config: GroupConfig(), newMemberId: "x").0
        #expect(b3.assignment?[Self.tid]?.count == 4, "b gets the 4 released partitions: \(b3)")
        #expect(g.stateName == "Stable", "group is \(g.stateName)")
    }

    @Test func revocationTimeoutFencesTheMember() {
        let clock = ManualClock()
        var g = ConsumerGroup(groupId: "g")
        _ = join(&g, "a", now: clock.now())
        _ = join(&g, "b", now: clock.now())
        _ = g.heartbeat(ConsumerHeartbeat(memberId: "a", memberEpoch: 1), topics: Self.topics, now: clock.now(), config: GroupConfig(), newMemberId: "x")
        #expect(g.members["a"]?.state == .unrevokedPartitions)
        clock.advance(by: .milliseconds(1001))
        #expect(g.expire(now: clock.now()) == ["a"], "a did not revoke within its rebalance timeout")
        #expect(g.members["b"] != nil, "b keeps heartbeating")
    }

    @Test func sessionTimeoutAndStaticMembers() {
        let clock = ManualClock()
        var g = ConsumerGroup(groupId: "g")
        _ = join(&g, "a", instanceId: "i1", now: clock.now())
        let epoch = g.groupEpoch
        let left = g.heartbeat(ConsumerHeartbeat(memberId: "a", memberEpoch: -2, instanceId: "i1"), topics: Self.topics, now: clock.now(),
                               config: GroupConfig(), newMemberId: "x").0
        #expect(left.errorCode == 0 && left.memberEpoch == -2, "static leave: \(left)")
        #expect(g.groupEpoch == epoch, "a static member leaving temporarily does not bump the group epoch")
        let same = g
        var again = same
        let sameId = join(&again, "a", instanceId: "i1", now: clock.now())
        #expect(sameId.errorCode == 0 && sameId.memberEpoch == epoch && sameId.assignment?[Self.tid]?.count == 8,
                "the static member back under its old member id resumes at the group epoch: \(sameId)")
        let back = join(&g, "a2", instanceId: "i1", now: clock.now())
        #expect(back.errorCode == 0 && back.assignment?[Self.tid]?.count == 8, "the static member comes back with its partitions: \(back)")
        #expect(g.groupEpoch == epoch, "rejoining under a new member id does not bump the group epoch")
        let dup = join(&g, "a3", instanceId: "i1", now: clock.now())
        #expect(dup.errorCode == ConsumerGroupErrorCode.unreleasedInstanceId, "a second member with the same instance id: \(dup.errorCode)")
        clock.advance(by: .seconds(46))
        #expect(g.expire(now: clock.now()) == ["a2"], "the session expired")
        #expect(g.members.isEmpty && g.stateName == "Empty")
    }

    @Test func topicGrowthBumpsTheEpoch() {
        let clock = ManualClock()
        var g = ConsumerGroup(groupId: "g")
        var a = SimConsumer(memberId: "a", topics: ["t", "later"])
        a.apply(join(&g, "a", now: clock.now()))
        let before = g.groupEpoch
        var grown = Self.topics
        grown["later"] = TopicShape(name: "later", id: StaticTopics.id(of: "later"), partitions: 2)
        let o = g.heartbeat(a.request(), topics: grown, now: clock.now(), config: GroupConfig(), newMemberId: "x").0
        #expect(g.groupEpoch == before + 1, "a created topic bumps the group epoch")
        #expect(o.assignment?[StaticTopics.id(of: "later")] == [0, 1], "the new topic's partitions are assigned: \(o)")
    }

    @Test func regexSubscriptionFollowsTopics() {
        let clock = ManualClock()
        var g = ConsumerGroup(groupId: "g")
        var topics = Self.topics
        topics["orders-eu"] = TopicShape(name: "orders-eu", id: StaticTopics.id(of: "orders-eu"), partitions: 2)
        topics["xorders-eu"] = TopicShape(name: "xorders-eu", id: StaticTopics.id(of: "xorders-eu"), partitions: 2)
        let j = g.heartbeat(ConsumerHeartbeat(memberId: "a", memberEpoch: 0, rebalanceTimeoutMs: 1000, subscribedTopicRegex: "orders-.*",
                                              ownedPartitions: [:]), topics: topics, now: clock.now(), config: GroupConfig(), newMemberId: "a").0
        #expect(j.errorCode == 0 && Set(j.assignment?.keys.map { $0 } ?? []) == [StaticTopics.id(of: "orders-eu")],
                "only the whole-name match is assigned: \(j)")
        topics["orders-us"] = TopicShape(name: "orders-us", id: StaticTopics.id(of: "orders-us"), partitions: 1)
        let h = g.heartbeat(ConsumerHeartbeat(memberId: "a", memberEpoch: j.memberEpoch), topics: topics, now: clock.now(),
                            config: GroupConfig(), newMemberId: "x").0
        #expect(h.assignment?[StaticTopics.id(of: "orders-us")] == [0], "a matching topic created later is assigned: \(h)")
    }

    @Test func recordRoundTrip() throws {
        let clock = ManualClock()
        var g = ConsumerGroup(groupId: "g")
        _ = join(&g, "a", instanceId: "i", now: clock.now())
        _ = join(&g, "b", now: clock.now())
        _ = g.heartbeat(ConsumerHeartbeat(memberId: "a", memberEpoch: 1), topics: Self.topics, now: clock.now(), config: GroupConfig(), newMemberId: "x")
        _ = g.heartbeat(ConsumerHeartbeat(memberId: "r", memberEpoch: 0, rebalanceTimeoutMs: 5, subscribedTopicRegex: "t|u", ownedPartitions: [:]),
                        topics: Self.topics, now: clock.now(), config: GroupConfig(), newMemberId: "r")
        #expect(g.members["r"]?.subscribedTopicRegex == "t|u")
        let record = GroupRecord(groupId: "g", snapshot: .empty, offsets: [TopicPartition("t", 0): CommittedOffset(offset: 5, commitTimestampMs: 1)],
                                 consumer: g)
        let bytes = record.encoded()
        #expect(Array(bytes[4..<6]) == [0, 2], "a consumer group is written as version 2")
        let back = try GroupRecord(decoding: bytes, key: "groups/g")
        #expect(back == record, "round trip changed the record")
        #expect(back.consumer?.members["a"]?.state == .unrevokedPartitions)
        var corrupt = bytes
        corrupt[corrupt.count - 1] ^= 1
        #expect(throws: GroupStoreError.self) { try GroupRecord(decoding: corrupt, key: "groups/g") }
        let classic = GroupRecord(groupId: "c", snapshot: .empty, offsets: [:]).encoded()
        #expect(Array(classic[4..<6]) == [0, 1], "a classic group is still written as version 1")
    }
}

/// The consumer group APIs through the coordinator and its router.
struct ConsumerGroupCoordinatorTests {
    static let tid = StaticTopics.id(of: "t")

    func heartbeat(_ w: GroupWire, _ r: ConsumerGroupHeartbeatRequest) async throws -> ConsumerGroupHeartbeatResponse {
        guard case let .consumerGroupHeartbeat(out) = try await w.call(r, version: 1) else { throw TestFailure("not a heartbeat response") }
        return out
    }

    func joinRequest(_ id: String) -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest(groupId: "g", memberId: id, memberEpoch: 0, rebalanceTimeoutMs: 30_000, subscribedTopicNames: ["t"],
                                      topicPartitions: [])
    }

    @Test func joinCommitAndResumeOnAnotherCoordinator() async throws {
        let store = MemoryObjectStore(name: "cg")
        let w = try await GroupWire(store: store)
        let j = try await heartbeat(w, joinRequest("m1"))
        #expect(j.errorCode == 0 && j.memberEpoch == 1 && j.heartbeatIntervalMs == 5000, "join: \(j)")
        #expect(j.assignment?.topicPartitions.first?.partitions == [0, 1, 2], "m1 gets t's 3 partitions: \(String(describing: j.assignment))")
        // Commit with the member epoch (v9), a stale one, and one from v8.
        func commit(_ epoch: Int32, version: Int16) async throws -> Int16 {
            let r = OffsetCommitRequest(groupId: "g", generationIdOrMemberEpoch: epoch, memberId: "m1",
                                        topics: [.init(name: "t", partitions: [.init(partitionIndex: 0, committedOffset: 42)])])
            guard case let .offsetCommit(out) = try await w.call(r, version: version) else { throw TestFailure("not a commit response") }
            return out.topics.first?.partitions.first?.errorCode ?? -100
        }
        #expect(try await commit(1, version: 9) == 0)
        #expect(try await commit(0, version: 9) == ConsumerGroupErrorCode.staleMemberEpoch, "an older epoch is stale")
        #expect(try await commit(2, version: 9) == ConsumerGroupErrorCode.fencedMemberEpoch, "a newer epoch is fenced")
        #expect(try await commit(1, version: 8) == KafkaErrorCode.unsupportedVersion.rawValue, "consumer members must commit with v9+")
        // A classic JoinGroup for this group is refused.
        guard case let .joinGroup(classic) = try await w.call(JoinGroupRequest(groupId: "g", sessionTimeoutMs: 10_000, rebalanceTimeoutMs: 10_000,
                                                                               memberId: "", protocolType: "consumer",
                                                                               protocols: [.init(name: "range", metadata: [])]), version: 7)
        else { throw TestFailure("not a join response") }
        #expect(classic.errorCode == KafkaErrorCode.inconsistentGroupProtocol.rawValue, "classic join: \(classic.errorCode)")
        // ListGroups shows the group as a consumer group.
        guard case let .listGroups(list) = try await w.call(ListGroupsRequest(typesFilter: ["consumer"]), version: 5) else { throw TestFailure("list") }
        #expect(list.groups.map(\.groupId) == ["g"] && list.groups.first?.groupType == "consumer" && list.groups.first?.groupState == "Stable",
                "ListGroups: \(list.groups)")
        guard case let .listGroups(classicOnly) = try await w.call(ListGroupsRequest(typesFilter: ["classic"]), version: 5) else { throw TestFailure("list") }
        #expect(classicOnly.groups.isEmpty, "classic filter lists \(classicOnly.groups)")

        // The coordinator moves (the old one crashes: nothing more is written): a new one reads
        // the group from the bucket, which the join was answered only after; m1 keeps its epoch.
        let join = try await w.send(joinRequest("m9"), version: 1)
        #expect(join.isDeferred, "a heartbeat that changes the group is answered after the write")
        _ = try await join.value()
        let w2 = try await GroupWire(store: store, preload: false)
        let m9 = try await heartbeat(w2, ConsumerGroupHeartbeatRequest(groupId: "g", memberId: "m9", memberEpoch: 2))
        #expect(m9.errorCode == 0 && m9.memberEpoch == 2, "m9's epoch is known after the move: \(m9)")
        guard case let .consumerGroupDescribe(d) = try await w2.call(ConsumerGroupDescribeRequest(groupIds: ["g", "nope"]), version: 0)
        else { throw TestFailure("describe") }
        let g = try #require(d.groups.first)
        #expect(g.errorCode == 0 && g.groupState == "Reconciling" && g.groupEpoch == 2 && g.assignorName == "uniform", "describe: \(g)")
        #expect(g.members.map(\.memberId) == ["m1", "m9"] && g.members.first?.assignment.topicPartitions.first?.topicName == "t"
                && g.members.first?.assignment.topicPartitions.first?.partitions == [0, 1, 2], "members: \(g.members)")
        let targets = g.members.map { $0.targetAssignment.topicPartitions.first?.partitions.count ?? 0 }.sorted()
        #expect(targets == [1, 2], "target assignment of epoch 2 splits t's 3 partitions: \(targets)")
        #expect(d.groups.last?.errorCode == KafkaErrorCode.groupIdNotFound.rawValue, "unknown group: \(String(describing: d.groups.last))")
        // Offset fetch by the member with its epoch, and the committed offset survived the move.
        let fetch = OffsetFetchRequest(groups: [.init(groupId: "g", memberId: "m1", memberEpoch: 1, topics: [.init(name: "t", partitionIndexes: [0])])])
        guard case let .offsetFetch(f) = try await w2.call(fetch, version: 9) else { throw TestFailure("fetch") }
        #expect(f.groups.first?.topics.first?.partitions.first?.committedOffset == 42, "fetched \(f.groups)")
        let stale = OffsetFetchRequest(groups: [.init(groupId: "g", memberId: "m1", memberEpoch: 0, topics: [.init(name: "t", partitionIndexes: [0])])])
        guard case let .offsetFetch(f2) = try await w2.call(stale, version: 9) else { throw TestFailure("fetch") }
        #expect(f2.groups.first?.errorCode == ConsumerGroupErrorCode.staleMemberEpoch, "stale fetch: \(f2.groups)")
        // Leave: the group is empty, deletable.
        let leave = try await heartbeat(w2, ConsumerGroupHeartbeatRequest(groupId: "g", memberId: "m1", memberEpoch: -1))
        #expect(leave.errorCode == 0 && leave.memberEpoch == -1, "leave: \(leave)")
        guard case let .listGroups(assigning) = try await w2.call(ListGroupsRequest(), version: 5) else { throw TestFailure("list") }
        #expect(assigning.groups.first?.groupState == "Assigning", "m9 has not heartbeated since m1 left: \(assigning.groups)")
        let leave9 = try await heartbeat(w2, ConsumerGroupHeartbeatRequest(groupId: "g", memberId: "m9", memberEpoch: -1))
        #expect(leave9.errorCode == 0, "m9 leaves: \(leave9)")
        guard case let .listGroups(after) = try await w2.call(ListGroupsRequest(), version: 5) else { throw TestFailure("list") }
        #expect(after.groups.first?.groupState == "Empty", "after leaving: \(after.groups)")
    }

    /// OffsetDelete on a KIP-848 group: refused for a topic a live member subscribes to
    /// (GROUP_SUBSCRIBED_TO_TOPIC), done once the members have left.
    @Test func offsetDeleteRespectsConsumerMembersSubscriptions() async throws {
        let w = try await GroupWire()
        let j = try await heartbeat(w, joinRequest("m1"))
        #expect(j.errorCode == 0 && j.memberEpoch == 1)
        let commit = OffsetCommitRequest(groupId: "g", generationIdOrMemberEpoch: 1, memberId: "m1",
                                         topics: [.init(name: "t", partitions: [.init(partitionIndex: 0, committedOffset: 7)])])
        guard case let .offsetCommit(c) = try await w.call(commit, version: 9) else { throw TestFailure("not a commit response") }
        #expect(c.topics.first?.partitions.first?.errorCode == 0)
        func delete() async throws -> (Int16, Int16?) {
            let r = OffsetDeleteRequest(groupId: "g", topics: [.init(name: "t", partitions: [.init(partitionIndex: 0)])])
            guard case let .offsetDelete(out) = try await w.call(r, version: 0) else { throw TestFailure("not an OffsetDelete response") }
            return (out.errorCode, out.topics.first?.partitions.first?.errorCode)
        }
        let live = try await delete()
        #expect(live.0 == 0 && live.1 == KafkaErrorCode.groupSubscribedToTopic.rawValue, "while m1 is subscribed: \(live)")
        _ = try await heartbeat(w, ConsumerGroupHeartbeatRequest(groupId: "g", memberId: "m1", memberEpoch: -1))
        let empty = try await delete()
        #expect(empty.0 == 0 && empty.1 == 0, "after m1 left: \(empty)")
    }

    @Test func sessionExpiryThroughTheTimer() async throws {
        let w = try await GroupWire()
        _ = try await heartbeat(w, joinRequest("m1"))
        let j2 = try await heartbeat(w, joinRequest("m2"))
        #expect(j2.memberEpoch == 2)
        await w.advance(.seconds(30))
        _ = try await heartbeat(w, ConsumerGroupHeartbeatRequest(groupId: "g", memberId: "m2", memberEpoch: 2))
        await w.advance(.seconds(20))
        let c = try #require(await w.coordinator.group("g") == nil ? nil : (await w.coordinator.describeConsumerGroup("g")).get())
        #expect(Array(c.members.keys) == ["m2"], "m1 missed its session: members \(c.members.keys.sorted())")
    }

    @Test func classicGroupRefusesConsumerHeartbeat() async throws {
        let w = try await GroupWire()
        _ = try await w.send(JoinGroupRequest(groupId: "g", sessionTimeoutMs: 10_000, rebalanceTimeoutMs: 10_000, memberId: "",
                                              protocolType: "consumer", protocols: [.init(name: "range", metadata: [])]), version: 3)
        let hb = try await heartbeat(w, joinRequest("m1"))
        #expect(hb.errorCode == KafkaErrorCode.groupIdNotFound.rawValue, "consumer heartbeat to a classic group: \(hb)")
    }
}

/// ACLs of the consumer group APIs.
struct ConsumerGroupAccessTests {
    static func check(_ bindings: [AclBinding]) -> AccessCheck {
        AccessCheck(authorizer: Authorizer(settings: AuthorizerSettings(enabled: true, superUsers: []), bindings: bindings),
                    principal: KafkaPrincipal(name: "alice"), host: "10.1.1.1", topicName: { _ in nil }, wouldAutoCreate: { _ in false })
    }
    static func allow(_ op: AclOperation, _ r: AclResource) -> AclBinding {
        AclBinding(resourceType: r.type, resourceName: r.name, principal: "User:alice", operation: op, permission: .allow)
    }
    static let hb = AnyRequest.consumerGroupHeartbeat(ConsumerGroupHeartbeatRequest(groupId: "g", memberEpoch: 0, subscribedTopicNames: ["t"]))

    func code(_ s: Screening) -> Int16? {
        switch s {
        case .pass: nil
        case let .answer(.consumerGroupHeartbeat(r)): r.errorCode
        case let .answer(.consumerGroupDescribe(r)): r.groups.first?.errorCode
        default: -1
        }
    }

    @Test func heartbeatNeedsReadGroupAndDescribeTopics() {
        #expect(code(Self.check([]).screen(Self.hb, version: 1)) == KafkaErrorCode.groupAuthorizationFailed.rawValue)
        #expect(code(Self.check([Self.allow(.read, .group("g"))]).screen(Self.hb, version: 1)) == KafkaErrorCode.topicAuthorizationFailed.rawValue)
        #expect(code(Self.check([Self.allow(.read, .group("g")), Self.allow(.describe, .topic("t"))]).screen(Self.hb, version: 1)) == nil)
    }

    @Test func describeNeedsDescribeGroup() {
        let r = AnyRequest.consumerGroupDescribe(ConsumerGroupDescribeRequest(groupIds: ["g"]))
        #expect(code(Self.check([Self.allow(.read, .topic("t"))]).screen(r, version: 0)) == KafkaErrorCode.groupAuthorizationFailed.rawValue)
        #expect(code(Self.check([Self.allow(.describe, .group("g"))]).screen(r, version: 0)) == nil)
    }
}
