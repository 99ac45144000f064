import Bytes
import FloeTestSupport
import KafkaProtocol
import ObjectStore
import Support
import Testing
@testable import Broker

/// A simulated classic consumer inside a mixed group: owns exactly what its last SyncGroup gave
/// it, and tells the coordinator so in its next JoinGroup's subscription (cooperative).
struct SimClassic {
    var memberId: String
    var generation: Int32 = -1
    var owned: Set<Int32> = []

    func joinRequest(session: Int32 = 10_000) -> JoinRequest {
        JoinRequest(memberId: memberId, clientId: "sim", clientHost: "/127.0.0.1", sessionTimeoutMs: session, rebalanceTimeoutMs: 30_000,
                    protocolType: "consumer",
                    protocols: [GroupProtocol(name: "cooperative-sticky", metadata: MixedGroupTests.subscription(["t"], owned: ["t": owned]))],
                    requireKnownMemberId: false)
    }

    /// JoinGroup: the client keeps owning what it owns until its SyncGroup answer.
    mutating func join(_ g: inout ConsumerGroup, now: MonotonicInstant) -> Int16 {
        let j = g.classicJoin(joinRequest(), topics: MixedGroupTests.topics, now: now, config: GroupConfig(), newMemberId: memberId)
        if j.errorCode == 0 { generation = j.generationId }
        return j.errorCode
    }

    /// SyncGroup: the client then owns exactly what the answer lists.
    mutating func sync(_ g: inout ConsumerGroup, now: MonotonicInstant) {
        let s = g.classicSync(memberId: memberId, instanceId: nil, generationId: generation, protocolType: "consumer",
                              protocolName: "cooperative-sticky", now: now, config: GroupConfig())
        #expect(s.errorCode == 0, "sync of \(memberId): \(s.errorCode)")
        owned = ClassicConsumerProtocol.assignment(s.assignment)?["t"] ?? []
    }

    /// JoinGroup then SyncGroup, as a client does; returns the join's error code.
    mutating func rejoin(_ g: inout ConsumerGroup, now: MonotonicInstant) -> Int16 {
        let code = join(&g, now: now)
        if code == 0 { sync(&g, now: now) }
        return code
    }
}

struct MixedGroupTests {
    static let topics = ["t": TopicShape(name: "t", id: StaticTopics.id(of: "t"), partitions: 6)]
    static let tid = StaticTopics.id(of: "t")

    /// A ConsumerProtocol subscription (version 1: topics, no user data, owned partitions).
    static func subscription(_ topics: [String], owned: [String: Set<Int32>] = [:]) -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        w.writeInt16(1)
        let s = ConsumerProtocolSubscription(topics: topics, ownedPartitions: owned.sorted { $0.key < $1.key }.map {
            .init(topic: $0.key, partitions: $0.value.sorted())
        })
        try! s.encode(to: &w, version: 1)
        return w.take()
    }

    /// A Stable classic group of members a and b (generation 1): a owns t-0..2, b t-3..5.
    static func stableClassicGroup(now: MonotonicInstant, protocolType: String = "consumer",
                                   metadata: [UInt8] = subscription(["t"])) -> GroupStateMachine {
        var m = GroupStateMachine(groupId: "g", config: GroupConfig())
        for id in ["a", "b"] {
            _ = m.join(JoinRequest(memberId: "", clientId: id, clientHost: "/127.0.0.1", sessionTimeoutMs: 10_000, rebalanceTimeoutMs: 30_000,
                                   protocolType: protocolType, protocols: [GroupProtocol(name: "range", metadata: metadata)],
                                   requireKnownMemberId: false),
                       token: id == "a" ? 1 : 2, newMemberId: id, now: now)
        }
        _ = m.expire(now: now.advanced(by: .seconds(3)))
        _ = m.sync(memberId: "a", groupInstanceId: nil, generationId: 1, protocolType: nil, protocolName: nil,
                   assignments: ["a": ClassicConsumerProtocol.encodeAssignment(["t": [0, 1, 2]]),
                                 "b": ClassicConsumerProtocol.encodeAssignment(["t": [3, 4, 5]])],
                   token: 3, now: now.advanced(by: .seconds(3)))
        return m
    }

    /// Every partition of t held (assigned or pending revocation) by at most one member.
    static func expectExclusive(_ g: ConsumerGroup, sourceLocation: SourceLocation = #_sourceLocation) {
        ConsumerGroupStateMachineTests.expectExclusive(g, sourceLocation: sourceLocation)
    }

    static func expectClientsExclusive(_ owned: [String: Set<Int32>], sourceLocation: SourceLocation = #_sourceLocation) {
        var owner: [Int32: String] = [:]
        for (id, ps) in owned.sorted(by: { $0.key < $1.key }) {
            for p in ps {
                #expect(owner[p] == nil, "clients \(owner[p] ?? "") and \(id) both own partition \(p)", sourceLocation: sourceLocation)
                owner[p] = id
            }
        }
    }

    @Test func upgradeKeepsAssignmentsAndHandsPartitionsOverWithoutSharing() throws {
        let clock = ManualClock()
        let classic = Self.stableClassicGroup(now: clock.now())
        #expect(classic.state == .stable)
        var g = try #require(ConsumerGroup.converting(classic, topics: Self.topics), "a stable consumer-protocol group converts")
        #expect(g.groupEpoch == 1 && g.assignmentEpoch == 1 && g.stateName == "Stable", "converted: epoch \(g.groupEpoch), \(g.stateName)")
        #expect(g.members["a"]?.assigned == [Self.tid: [0, 1, 2]] && g.members["b"]?.assigned == [Self.tid: [3, 4, 5]],
                "assignments are kept: \(g.members.mapValues(\.assigned))")
        #expect(g.members["a"]?.classic?.sessionTimeoutMs == 10_000 && g.members["a"]?.subscribedTopicNames == ["t"])
        var a = SimClassic(memberId: "a", generation: 1, owned: [0, 1, 2])
        var b = SimClassic(memberId: "b", generation: 1, owned: [3, 4, 5])
        var c = SimConsumer(memberId: "c", topics: ["t"])
        func clients() -> [String: Set<Int32>] { ["a": a.owned, "b": b.owned, "c": c.owned[Self.tid] ?? []] }

        // A KIP-848 consumer joins: the group epoch moves on; c gets nothing a or b still own.
        let (joined, _) = g.heartbeat(c.request(), topics: Self.topics, now: clock.now(), config: GroupConfig(), newMemberId: "c")
        c.apply(joined)
        #expect(joined.errorCode == 0 && joined.memberEpoch == 2 && (joined.assignment?[Self.tid] ?? []).isEmpty, "c joins: \(joined)")
        Self.expectExclusive(g)
        Self.expectClientsExclusive(clients())

        // The classic members learn of the rebalance from their Heartbeat and rejoin; c heartbeats.
        for _ in 0..<4 {
            for sim in [0, 1] {
                var s = sim == 0 ? a : b
                let hb = g.classicHeartbeat(memberId: s.memberId, instanceId: nil, generationId: s.generation, now: clock.now(), config: GroupConfig())
                if hb == KafkaErrorCode.rebalanceInProgress.rawValue {
                    #expect(s.join(&g, now: clock.now()) == 0)
                    // c heartbeats between the classic member's JoinGroup and its SyncGroup,
                    // while the classic client still owns what it had.
                    if sim == 0 { a = s } else { b = s }
                    let (o, _) = g.heartbeat(c.request(), topics: Self.topics, now: clock.now(), config: GroupConfig(), newMemberId: "c")
                    c.apply(o)
                    Self.expectExclusive(g)
                    Self.expectClientsExclusive(clients())
                    s.sync(&g, now: clock.now())
                } else {
                    #expect(hb == 0, "heartbeat of \(s.memberId): \(hb)")
                }
                if sim == 0 { a = s } else { b = s }
                Self.expectExclusive(g)
                Self.expectClientsExclusive(clients())
            }
            let (o, _) = g.heartbeat(c.request(), topics: Self.topics, now: clock.now(), config: GroupConfig(), newMemberId: "c")
            c.apply(o)
            Self.expectExclusive(g)
            Self.expectClientsExclusive(clients())
        }
        #expect(g.stateName == "Stable", "the mixed group settles: \(g.stateName)")
        #expect(a.owned.count == 2 && b.owned.count == 2 && c.owned[Self.tid]?.count == 2, "owned: \(clients())")
        #expect(a.owned.isSubset(of: [0, 1, 2]) && b.owned.isSubset(of: [3, 4, 5]), "the classic members keep most of what they had")
        #expect(clients().values.reduce(Set<Int32>()) { $0.union($1) } == Set(0..<6), "every partition is owned: \(clients())")
        #expect(a.generation == 2 && b.generation == 2, "classic generations follow the member epoch")
    }

    @Test func conversionIsRefusedWhereKafkaRefusesIt() {
        let clock = ManualClock()
        var rebalancing = GroupStateMachine(groupId: "g", config: GroupConfig())
        _ = rebalancing.join(JoinRequest(memberId: "", clientId: "a", clientHost: "", sessionTimeoutMs: 10_000, rebalanceTimeoutMs: 30_000,
                                         protocolType: "consumer", protocols: [GroupProtocol(name: "range", metadata: Self.subscription(["t"]))],
                                         requireKnownMemberId: false), token: 1, newMemberId: "a", now: clock.now())
        #expect(rebalancing.state == .preparingRebalance)
        #expect(ConsumerGroup.converting(rebalancing, topics: Self.topics) == nil, "a group mid-rebalance is not converted")
        let connect = Self.stableClassicGroup(now: clock.now(), protocolType: "connect")
        #expect(connect.state == .stable)
        #expect(ConsumerGroup.converting(connect, topics: Self.topics) == nil, "protocol type connect is not converted")
        let garbage = Self.stableClassicGroup(now: clock.now(), metadata: [0xFF])
        #expect(ConsumerGroup.converting(garbage, topics: Self.topics) == nil, "a subscription that does not decode is not converted")
        #expect(ConsumerGroup.converting(GroupStateMachine(groupId: "g", config: GroupConfig()), topics: Self.topics) == nil, "empty group")
    }

    @Test func classicMemberJoinsAndLeavesAConsumerGroup() throws {
        let clock = ManualClock()
        var g = ConsumerGroup(groupId: "g")
        var c = SimConsumer(memberId: "c", topics: ["t"])
        c.apply(g.heartbeat(c.request(), topics: Self.topics, now: clock.now(), config: GroupConfig(), newMemberId: "c").0)
        #expect(c.owned[Self.tid] == Set(0..<6))
        // A new classic member: MEMBER_ID_REQUIRED first (JoinGroup v4+), as from a classic group.
        var first = SimClassic(memberId: "").joinRequest()
        first.requireKnownMemberId = true
        let required = g.classicJoin(first, topics: Self.topics, now: clock.now(), config: GroupConfig(), newMemberId: "a")
        #expect(required.errorCode == KafkaErrorCode.memberIdRequired.rawValue && required.memberId == "a", "first join: \(required)")
        #expect(g.members["a"] == nil, "a member id handed out is not a member yet")
        var a = SimClassic(memberId: "a")
        #expect(a.rejoin(&g, now: clock.now()) == 0)
        #expect(g.members["a"]?.classic != nil && g.groupEpoch == 2, "a joined as a classic member at group epoch \(g.groupEpoch)")
        #expect(a.owned.isEmpty && a.generation == 2, "c still owns everything: a gets nothing yet (\(a.owned))")
        #expect(g.classicHeartbeat(memberId: "a", instanceId: nil, generationId: 2, now: clock.now(), config: GroupConfig())
                == KafkaErrorCode.rebalanceInProgress.rawValue, "a waits for partitions c must release")
        #expect(g.classicHeartbeat(memberId: "a", instanceId: nil, generationId: 1, now: clock.now(), config: GroupConfig())
                == KafkaErrorCode.illegalGeneration.rawValue, "another generation than the member epoch")
        #expect(g.classicHeartbeat(memberId: "c", instanceId: nil, generationId: 2, now: clock.now(), config: GroupConfig())
                == KafkaErrorCode.unknownMemberId.rawValue, "a KIP-848 member is not a classic member")
        for _ in 0..<2 { c.apply(g.heartbeat(c.request(), topics: Self.topics, now: clock.now(), config: GroupConfig(), newMemberId: "c").0) }
        #expect(c.owned[Self.tid]?.count == 3, "c revoked half: \(String(describing: c.owned[Self.tid]))")
        #expect(a.rejoin(&g, now: clock.now()) == 0)
        #expect(a.owned.count == 3 && a.owned.isDisjoint(with: c.owned[Self.tid] ?? []), "a gets the other half: \(a.owned)")
        #expect(g.classicHeartbeat(memberId: "a", instanceId: nil, generationId: a.generation, now: clock.now(), config: GroupConfig()) == 0)
        #expect(g.stateName == "Stable")
        // A's session is its JoinGroup's (10 s), not the consumer session (45 s).
        clock.advance(by: .seconds(9))
        _ = g.heartbeat(ConsumerHeartbeat(memberId: "c", memberEpoch: c.epoch), topics: Self.topics, now: clock.now(), config: GroupConfig(),
                        newMemberId: "x")
        #expect(g.expire(now: clock.now().advanced(by: .seconds(1))) == ["a"], "a's classic session of 10 s ran out")
        // Rejoins, then leaves with LeaveGroup: c gets everything back.
        a = SimClassic(memberId: "a")
        #expect(a.rejoin(&g, now: clock.now()) == 0)
        #expect(g.classicLeave([(memberId: "a", groupInstanceId: nil), (memberId: "ghost", groupInstanceId: nil)])
                == [0, KafkaErrorCode.unknownMemberId.rawValue])
        for _ in 0..<2 { c.apply(g.heartbeat(c.request(), topics: Self.topics, now: clock.now(), config: GroupConfig(), newMemberId: "c").0) }
        #expect(c.owned[Self.tid] == Set(0..<6), "c owns all after a left: \(String(describing: c.owned[Self.tid]))")
    }

    @Test func downgradeWhenTheLastConsumerMemberLeaves() throws {
        let clock = ManualClock()
        var g = try #require(ConsumerGroup.converting(Self.stableClassicGroup(now: clock.now()), topics: Self.topics))
        _ = g.heartbeat(SimConsumer(memberId: "c", topics: ["t"]).request(), topics: Self.topics, now: clock.now(), config: GroupConfig(),
                        newMemberId: "c")
        #expect(!g.hasOnlyClassicMembers && g.downgraded() == nil, "a consumer member is left: no downgrade")
        _ = g.heartbeat(ConsumerHeartbeat(memberId: "c", memberEpoch: -1), topics: Self.topics, now: clock.now(), config: GroupConfig(),
                        newMemberId: "x")
        let snapshot = try #require(g.downgraded(), "only classic members remain")
        #expect(snapshot.generationId == 1 && snapshot.protocolType == "consumer" && snapshot.protocolName == "range",
                "the generation the members joined at: \(snapshot.generationId)")
        #expect(snapshot.members.map(\.memberId) == ["a", "b"] && snapshot.members.map(\.sessionTimeoutMs) == [10_000, 10_000])
        let assigned = snapshot.members.map { ClassicConsumerProtocol.assignment($0.assignment)?["t"] ?? [] }
        #expect(assigned == [[0, 1, 2], [3, 4, 5]], "members keep what they hold: \(assigned)")
        let (machine, actions) = GroupStateMachine.downgrading(groupId: "g", config: GroupConfig(), snapshot: snapshot, now: clock.now())
        #expect(machine.state == .preparingRebalance && actions.contains(.persist), "a rebalance starts: \(machine.state)")
        var m = machine
        #expect(m.heartbeat(memberId: "a", groupInstanceId: nil, generationId: snapshot.generationId, now: clock.now())
                == KafkaErrorCode.rebalanceInProgress.rawValue, "members are told to rejoin")
    }

    @Test func downgradeWaitsUntilTheClassicMembersAreReconciled() throws {
        let clock = ManualClock()
        var g = try #require(ConsumerGroup.converting(Self.stableClassicGroup(now: clock.now()), topics: Self.topics))
        var a = SimClassic(memberId: "a", generation: 1, owned: [0, 1, 2])
        var b = SimClassic(memberId: "b", generation: 1, owned: [3, 4, 5])
        _ = g.heartbeat(SimConsumer(memberId: "c", topics: ["t"]).request(), topics: Self.topics, now: clock.now(), config: GroupConfig(),
                        newMemberId: "c")
        for _ in 0..<2 { #expect(a.rejoin(&g, now: clock.now()) == 0) }
        #expect(a.generation == 2 && b.generation == 1, "a reconciled to epoch 2, b not: \(a.generation), \(b.generation)")
        _ = g.heartbeat(ConsumerHeartbeat(memberId: "c", memberEpoch: -1), topics: Self.topics, now: clock.now(), config: GroupConfig(),
                        newMemberId: "x")
        #expect(g.hasOnlyClassicMembers && g.downgraded() == nil, "members at epochs 2 and 1: no downgrade yet")
        var snapshot: GroupSnapshot?
        for _ in 0..<4 where snapshot == nil {
            for sim in [0, 1] where snapshot == nil {
                var s = sim == 0 ? a : b
                if g.classicHeartbeat(memberId: s.memberId, instanceId: nil, generationId: s.generation, now: clock.now(), config: GroupConfig())
                    == KafkaErrorCode.rebalanceInProgress.rawValue {
                    #expect(s.rejoin(&g, now: clock.now()) == 0)
                }
                if sim == 0 { a = s } else { b = s }
                Self.expectClientsExclusive(["a": a.owned, "b": b.owned])
                snapshot = g.downgraded()
            }
        }
        let downgraded = try #require(snapshot, "the members reconcile, then the group may turn classic")
        #expect(a.generation == b.generation && downgraded.generationId == a.generation,
                "one generation for all: a \(a.generation), b \(b.generation), classic \(downgraded.generationId)")
        #expect(a.owned.union(b.owned) == Set(0..<6), "a and b own every partition: \(a.owned), \(b.owned)")
    }

    @Test func mixedGroupRecordRoundTripAndOlderVersionsStillRead() throws {
        let clock = ManualClock()
        var g = try #require(ConsumerGroup.converting(Self.stableClassicGroup(now: clock.now()), topics: Self.topics))
        _ = g.heartbeat(SimConsumer(memberId: "c", topics: ["t"]).request(), topics: Self.topics, now: clock.now(), config: GroupConfig(),
                        newMemberId: "c")
        let record = GroupRecord(groupId: "g", snapshot: .empty, offsets: [:], consumer: g)
        let bytes = record.encoded()
        #expect(Array(bytes[4..<6]) == [0, 3], "a group with classic members is written as version 3")
        let back = try GroupRecord(decoding: bytes, key: "groups/g")
        #expect(back == record, "round trip changed the record")
        #expect(back.consumer?.members["a"]?.classic?.protocols.first?.name == "range" && back.consumer?.members["c"]?.classic == nil)
        // c (last by member id) is not classic: its flag is the last byte. Another flag value,
        // with a checksum that matches, is refused.
        #expect(bytes.last == 0)
        var flag = bytes
        flag[flag.count - 1] = 7
        let crc = CRC32C.checksum(flag[GroupRecord.headerSize...])
        flag.replaceSubrange(10..<14, with: [UInt8(crc >> 24), UInt8((crc >> 16) & 0xFF), UInt8((crc >> 8) & 0xFF), UInt8(crc & 0xFF)])
        #expect(throws: GroupStoreError.self) { try GroupRecord(decoding: flag, key: "groups/g") }
        // Without classic members: version 2, which decodes as before.
        _ = g.heartbeat(ConsumerHeartbeat(memberId: "c", memberEpoch: -1), topics: Self.topics, now: clock.now(), config: GroupConfig(), newMemberId: "x")
        _ = g.classicLeave([(memberId: "a", groupInstanceId: nil), (memberId: "b", groupInstanceId: nil)])
        let v2 = GroupRecord(groupId: "g", snapshot: .empty, offsets: [:], consumer: g).encoded()
        #expect(Array(v2[4..<6]) == [0, 2])
        #expect(try GroupRecord(decoding: v2, key: "groups/g").consumer == g)
    }
}

/// The migration policy and classic members through the coordinator.
struct MixedGroupCoordinatorTests {
    static func config(_ policy: GroupMigrationPolicy) -> GroupConfig {
        var c = GroupConfig()
        c.initialRebalanceDelay = .zero
        c.migrationPolicy = policy
        return c
    }

    static func classicJoin(_ memberId: String = "") -> JoinRequest {
        JoinRequest(memberId: memberId, clientId: "k", clientHost: "/127.0.0.1", sessionTimeoutMs: 10_000, rebalanceTimeoutMs: 30_000,
                    protocolType: "consumer", protocols: [GroupProtocol(name: "range", metadata: MixedGroupTests.subscription(["t"]))],
                    requireKnownMemberId: false)
    }

    static func consumerJoin(_ id: String) -> ConsumerHeartbeat {
        ConsumerHeartbeat(memberId: id, memberEpoch: 0, rebalanceTimeoutMs: 30_000, subscribedTopicNames: ["t"], ownedPartitions: [:])
    }

    /// A stable classic group with one member (generation 1, all of t's 3 partitions).
    static func stableClassic(_ w: GroupWire) async throws -> String {
        guard case let .done(j) = await w.coordinator.join(groupId: "g", request: classicJoin()) else { throw TestFailure("join parked") }
        #expect(j.errorCode == 0 && j.generationId == 1, "classic join: \(j)")
        guard case let .done(s) = await w.coordinator.sync(groupId: "g", memberId: j.memberId, groupInstanceId: nil, generationId: 1,
                                                           protocolType: "consumer", protocolName: "range",
                                                           assignments: [j.memberId: ClassicConsumerProtocol.encodeAssignment(["t": [0, 1, 2]])])
        else { throw TestFailure("sync parked") }
        #expect(s.errorCode == 0)
        return j.memberId
    }

    /// The policies that allow each conversion (Kafka's), spelled out here, not read from the code.
    static let upgrades: Set<GroupMigrationPolicy> = [.bidirectional, .upgrade]
    static let downgrades: Set<GroupMigrationPolicy> = [.bidirectional, .downgrade]

    @Test(arguments: GroupMigrationPolicy.allCases)
    func upgradeFollowsThePolicy(policy: GroupMigrationPolicy) async throws {
        let w = try await GroupWire(config: Self.config(policy))
        let classic = try await Self.stableClassic(w)
        let (o, _) = await w.coordinator.consumerHeartbeat(groupId: "g", request: Self.consumerJoin("c"))
        if Self.upgrades.contains(policy) {
            #expect(o.errorCode == 0 && o.memberEpoch == 2, "\(policy): upgrade: \(o)")
            let c = try await w.coordinator.describeConsumerGroup("g").get()
            #expect(c.members[classic]?.classic != nil && c.members[classic]?.memberEpoch == 1, "\(policy): the classic member is kept")
            // The classic member commits with its member epoch as generation, at any version.
            let ok = await w.coordinator.commit(groupId: "g", memberId: classic, groupInstanceId: nil, generationId: 1,
                                                entries: [OffsetCommitEntry(partition: TopicPartition("t", 0), offset: CommittedOffset(offset: 1, commitTimestampMs: 1), errorCode: 0)],
                                                unknownGroupCode: KafkaErrorCode.unknownMemberId.rawValue, apiVersion: 8)
            guard case .pending = ok else { throw TestFailure("\(policy): commit with the member epoch refused: \(ok)") }
            let stale = await w.coordinator.commit(groupId: "g", memberId: classic, groupInstanceId: nil, generationId: 2,
                                                   entries: [OffsetCommitEntry(partition: TopicPartition("t", 0), offset: CommittedOffset(offset: 1, commitTimestampMs: 1), errorCode: 0)],
                                                   unknownGroupCode: KafkaErrorCode.unknownMemberId.rawValue, apiVersion: 8)
            guard case let .done(r) = stale else { throw TestFailure("\(policy): commit with another generation accepted") }
            #expect(r.first?.errorCode == KafkaErrorCode.illegalGeneration.rawValue, "\(policy): \(r)")
            #expect(await w.coordinator.heartbeat(groupId: "g", memberId: classic, groupInstanceId: nil, generationId: 1)
                    == KafkaErrorCode.rebalanceInProgress.rawValue, "\(policy): the classic member must rejoin")
            // The consumer member leaves: a classic group again only if downgrades are allowed.
            _ = await w.coordinator.consumerHeartbeat(groupId: "g", request: ConsumerHeartbeat(memberId: "c", memberEpoch: -1))
            let (_, listed) = await w.coordinator.listGroups(states: [], types: [])
            #expect(listed.first?.type == (Self.downgrades.contains(policy) ? "classic" : "consumer"), "\(policy): after c left: \(listed)")
        } else {
            #expect(o.errorCode == KafkaErrorCode.groupIdNotFound.rawValue, "\(policy): no upgrade: \(o)")
            #expect(await w.coordinator.group("g")?.state == .stable, "\(policy): the classic group is untouched")
        }
    }

    @Test(arguments: GroupMigrationPolicy.allCases)
    func classicJoinToAConsumerGroupFollowsThePolicy(policy: GroupMigrationPolicy) async throws {
        let w = try await GroupWire(config: Self.config(policy))
        let (c, _) = await w.coordinator.consumerHeartbeat(groupId: "g", request: Self.consumerJoin("c"))
        #expect(c.errorCode == 0)
        guard case let .done(j) = await w.coordinator.join(groupId: "g", request: Self.classicJoin()) else { throw TestFailure("join parked") }
        guard policy != .disabled else {
            #expect(j.errorCode == KafkaErrorCode.inconsistentGroupProtocol.rawValue, "disabled: \(j)")
            return
        }
        #expect(j.errorCode == 0 && j.generationId == 2 && j.protocolName == "range" && j.members.isEmpty, "\(policy): \(j)")
        _ = await w.coordinator.consumerHeartbeat(groupId: "g", request: ConsumerHeartbeat(memberId: "c", memberEpoch: -1))
        // The classic member was waiting for c's partitions: it is not reconciled, so the group
        // stays a consumer group until its rejoin (told by its Heartbeat) reconciles it.
        let (_, waiting) = await w.coordinator.listGroups(states: [], types: [])
        #expect(waiting.first?.type == "consumer", "\(policy): c left, the classic member is not reconciled: \(waiting)")
        #expect(await w.coordinator.heartbeat(groupId: "g", memberId: j.memberId, groupInstanceId: nil, generationId: 2)
                == KafkaErrorCode.rebalanceInProgress.rawValue)
        guard case let .done(again) = await w.coordinator.join(groupId: "g", request: Self.classicJoin(j.memberId)) else { throw TestFailure("join parked") }
        #expect(again.errorCode == 0 && again.generationId == 3, "\(policy): rejoin: \(again)")
        let (_, listed) = await w.coordinator.listGroups(states: [], types: [])
        #expect(listed.first?.type == (Self.downgrades.contains(policy) ? "classic" : "consumer"), "\(policy): after the rejoin: \(listed)")
        if Self.downgrades.contains(policy) {
            #expect(await w.coordinator.group("g")?.state == .preparingRebalance, "\(policy): the classic group rebalances")
        }
    }
}
