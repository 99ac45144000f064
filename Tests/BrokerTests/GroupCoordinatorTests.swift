import Bytes
import FloeTestSupport
import Foundation
import KafkaProtocol
import ObjectStore
import Support
import Testing
@testable import Broker

struct StaticTopics: GroupTopicLookup {
    var topics: [String: Int]
    func partitionCount(topic: String) async -> Int? { topics[topic] }
    func topicShapes() async -> [String: TopicShape] {
        Dictionary(uniqueKeysWithValues: topics.map { ($0.key, TopicShape(name: $0.key, id: Self.id(of: $0.key), partitions: $0.value)) })
    }

    /// A topic id derived from the name (FNV-1a), stable across calls.
    static func id(of name: String) -> KafkaUUID {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in name.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return KafkaUUID(mostSignificantBits: h, leastSignificantBits: h &* 31 &+ UInt64(name.utf8.count))
    }
}

/// A coordinator behind a KafkaRouter, spoken to with encoded frames.
struct GroupWire {
    let coordinator: GroupCoordinator
    let router: KafkaRouter
    let clock: ManualClock
    let store: any ObjectStore

    /// `preload`: read every group object up front (``GroupCoordinator/load()``); without it
    /// groups are read on first use.
    init(store: any ObjectStore = MemoryObjectStore(name: "groups-test"), clock: ManualClock = ManualClock(),
         config: GroupConfig = GroupConfig(), seed: UInt64 = 42, nodeId: Int32 = 7, placement: (any GroupPlacement)? = nil,
         preload: Bool = true) async throws {
        self.clock = clock
        self.store = store
        coordinator = GroupCoordinator(nodeId: nodeId, host: "broker.local", port: 9092, store: store, prefix: "groups/", clock: clock,
                                       topics: StaticTopics(topics: ["t": 3, "u": 1]), logger: .discarding, config: config,
                                       placement: placement, seed: seed)
        if preload { try await coordinator.load() }
        router = KafkaRouter(handlers: coordinator.handlers)
    }

    func frame<M: KafkaMessage>(_ m: M, version: Int16, clientId: String = "client") throws -> [UInt8] {
        var w = ByteWriter()
        try RequestHeader.encodeRequest(m, version: version, correlationId: 11, clientId: clientId, into: &w)
        return Array(w.bytes.dropFirst(4))
    }

    /// Sends a frame; returns the response body now, or a closure completing the deferred one.
    func send(_ bytes: [UInt8], apiKey: ApiKey, version: Int16, peer: String = "127.0.0.1:5000") async throws -> Reply {
        let result = await router.handle(ServerRequest(bytes: bytes, connection: ConnectionInfo(id: 1, peer: peer), seq: 0))
        switch result {
        case let .respond(bytes):
            return .now(try Self.decode(bytes, apiKey: apiKey, version: version))
        case let .deferred(complete):
            return .later {
                guard let bytes = await complete() else { throw TestFailure("deferred reply had no bytes") }
                return try Self.decode(bytes, apiKey: apiKey, version: version)
            }
        default:
            throw TestFailure("unexpected result \(result)")
        }
    }

    func send<M: KafkaMessage>(_ m: M, version: Int16, clientId: String = "client") async throws -> Reply {
        try await send(try frame(m, version: version, clientId: clientId), apiKey: ApiKey(rawValue: M.apiKey)!, version: version)
    }

    /// Sends and waits for the reply, deferred or not.
    func call<M: KafkaMessage>(_ m: M, version: Int16) async throws -> AnyResponse {
        try await send(m, version: version).value()
    }

    static func decode(_ bytes: [UInt8], apiKey: ApiKey, version: Int16) throws -> AnyResponse {
        let (header, body) = try ResponseHeader.decodeResponse(bytes[...], apiKey: apiKey, version: version)
        #expect(header.correlationId == 11)
        return body
    }

    enum Reply: Sendable {
        case now(AnyResponse)
        case later(@Sendable () async throws -> AnyResponse)

        func value() async throws -> AnyResponse {
            switch self {
            case let .now(r): return r
            case let .later(f): return try await f()
            }
        }

        var isDeferred: Bool { if case .later = self { true } else { false } }
    }

    /// Moves time on and applies the deadlines that passed.
    func advance(_ d: Duration) async {
        clock.advance(by: d)
        await coordinator.fireDueTimers(now: clock.now())
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

extension AnyResponse {
    var join: JoinGroupResponse? { if case let .joinGroup(r) = self { r } else { nil } }
    var sync: SyncGroupResponse? { if case let .syncGroup(r) = self { r } else { nil } }
    var heartbeat: HeartbeatResponse? { if case let .heartbeat(r) = self { r } else { nil } }
    var commit: OffsetCommitResponse? { if case let .offsetCommit(r) = self { r } else { nil } }
    var fetch: OffsetFetchResponse? { if case let .offsetFetch(r) = self { r } else { nil } }
}

func consumerJoin(_ memberId: String = "", group: String = "g", instance: String? = nil, session: Int32 = 10_000) -> JoinGroupRequest {
    JoinGroupRequest(groupId: group, sessionTimeoutMs: session, rebalanceTimeoutMs: 30_000, memberId: memberId, groupInstanceId: instance,
                     protocolType: "consumer", protocols: [.init(name: "range", metadata: [0, 1, 2])])
}

struct GroupCoordinatorTests {
    /// Two members join at v7 (MEMBER_ID_REQUIRED round trip), sync at v5; returns their ids.
    func formGroup(_ wire: GroupWire, version: Int16 = 7) async throws -> (leader: String, follower: String) {
        let first = try await wire.call(consumerJoin(), version: version).join!
        #expect(first.errorCode == KafkaErrorCode.memberIdRequired.rawValue && first.memberId.hasPrefix("client-"))
        let second = try await wire.call(consumerJoin(), version: version).join!
        let a = first.memberId, b = second.memberId
        let ja = try await wire.send(consumerJoin(a), version: version)
        let jb = try await wire.send(consumerJoin(b), version: version)
        #expect(ja.isDeferred && jb.isDeferred, "joins wait for the rebalance")
        await wire.advance(.seconds(3))
        let ra = try await ja.value().join!, rb = try await jb.value().join!
        #expect(ra.errorCode == 0 && ra.generationId == 1 && ra.leader == a && ra.members.map(\.memberId) == [a, b])
        #expect(ra.members.first?.metadata == [0, 1, 2])
        #expect(rb.errorCode == 0 && rb.leader == a && rb.members.isEmpty)
        if version >= 7 { #expect(ra.protocolType == "consumer" && ra.protocolName == "range") }

        let sb = try await wire.send(SyncGroupRequest(groupId: "g", generationId: 1, memberId: b, protocolType: "consumer", protocolName: "range"),
                                     version: 5)
        #expect(sb.isDeferred)
        let sa = try await wire.call(SyncGroupRequest(groupId: "g", generationId: 1, memberId: a, protocolType: "consumer", protocolName: "range",
                                                      assignments: [.init(memberId: a, assignment: [0xA]), .init(memberId: b, assignment: [0xB])]),
                                     version: 5).sync!
        #expect(sa.errorCode == 0 && sa.assignment == [0xA] && sa.protocolName == "range")
        #expect(try await sb.value().sync!.assignment == [0xB])
        return (a, b)
    }

    @Test func findCoordinatorNamesThisBrokerAtEveryVersion() async throws {
        let wire = try await GroupWire()
        for version: Int16 in 0...3 {
            let r = try await requireResponse(wire.call(FindCoordinatorRequest(key: "g"), version: version), as: FindCoordinatorResponse.self)
            #expect(r.errorCode == 0 && r.nodeId == 7 && r.host == "broker.local" && r.port == 9092)
        }
        for version: Int16 in 4...6 {
            let r = try await requireResponse(wire.call(FindCoordinatorRequest(coordinatorKeys: ["a", "b"]), version: version), as: FindCoordinatorResponse.self)
            #expect(r.coordinators.map(\.key) == ["a", "b"] && r.coordinators.allSatisfy { $0.nodeId == 7 && $0.port == 9092 && $0.errorCode == 0 })
        }
        let share = try await requireResponse(wire.call(FindCoordinatorRequest(keyType: 2, coordinatorKeys: ["s"]), version: 6), as: FindCoordinatorResponse.self)
        #expect(share.coordinators.first?.errorCode == KafkaErrorCode.invalidRequest.rawValue)
    }

    @Test func membersJoinSyncHeartbeatAndRebalanceWhenOneLeaves() async throws {
        let wire = try await GroupWire()
        let (a, b) = try await formGroup(wire)
        let hb = try await wire.call(HeartbeatRequest(groupId: "g", generationId: 1, memberId: b), version: 4).heartbeat!
        #expect(hb.errorCode == 0)
        let stale = try await wire.call(HeartbeatRequest(groupId: "g", generationId: 0, memberId: b), version: 4).heartbeat!
        #expect(stale.errorCode == KafkaErrorCode.illegalGeneration.rawValue)
        let unknown = try await wire.call(HeartbeatRequest(groupId: "g", generationId: 1, memberId: "x"), version: 0).heartbeat!
        #expect(unknown.errorCode == KafkaErrorCode.unknownMemberId.rawValue)

        // b leaves with the v3+ batch form (plus an unknown member).
        let left = try await requireResponse(wire.call(
            LeaveGroupRequest(groupId: "g", members: [.init(memberId: b), .init(memberId: "ghost")]), version: 5), as: LeaveGroupResponse.self)
        #expect(left.errorCode == 0 && left.members.map(\.errorCode) == [0, KafkaErrorCode.unknownMemberId.rawValue])
        let during = try await wire.call(HeartbeatRequest(groupId: "g", generationId: 1, memberId: a), version: 4).heartbeat!
        #expect(during.errorCode == KafkaErrorCode.rebalanceInProgress.rawValue)
        let rejoin = try await wire.call(consumerJoin(a), version: 7).join!
        #expect(rejoin.generationId == 2 && rejoin.members.map(\.memberId) == [a])
        // v0 LeaveGroup: a single member, error at top level.
        let v0 = try await requireResponse(wire.call(LeaveGroupRequest(groupId: "g", memberId: "ghost"), version: 0), as: LeaveGroupResponse.self)
        #expect(v0.errorCode == KafkaErrorCode.unknownMemberId.rawValue)
    }

    @Test func sessionExpiryDrivenByTheRunLoopRebalances() async throws {
        let clock = ManualClock()
        let wire = try await GroupWire(clock: clock)
        let (a, b) = try await formGroup(wire)
        let runner = Task { try await wire.coordinator.run() }
        await clock.waitForSleepers(1)
        // Only a heartbeats; b's 10 s session runs out while the loop sleeps on the clock.
        for _ in 0..<4 {
            clock.advance(by: .seconds(3))
            _ = try await wire.call(HeartbeatRequest(groupId: "g", generationId: 1, memberId: a), version: 4)
            await clock.waitForSleepers(1)
        }
        let group = await wire.coordinator.group("g")
        #expect(group?.members[b] == nil && group?.state == .preparingRebalance)
        await wire.coordinator.shutdown()
        runner.cancel()
        _ = await runner.result
    }

    @Test func offsetCommitAndFetchRoundTripAtSeveralVersions() async throws {
        let wire = try await GroupWire()
        let (a, _) = try await formGroup(wire)
        // v8 commit from a member of generation 1.
        let commit = try await wire.send(OffsetCommitRequest(
            groupId: "g", generationIdOrMemberEpoch: 1, memberId: a,
            topics: [.init(name: "t", partitions: [.init(partitionIndex: 0, committedOffset: 42, committedLeaderEpoch: 3, committedMetadata: "m0"),
                                                   .init(partitionIndex: 5, committedOffset: 1)]),
                     .init(name: "nope", partitions: [.init(partitionIndex: 0, committedOffset: 1)])]), version: 8)
        #expect(commit.isDeferred, "a commit is answered once durable")
        let committed = try await commit.value().commit!
        #expect(committed.topics.map(\.name) == ["t", "nope"])
        #expect(committed.topics[0].partitions.map(\.errorCode) == [0, KafkaErrorCode.unknownTopicOrPartition.rawValue])
        #expect(committed.topics[1].partitions.map(\.errorCode) == [KafkaErrorCode.unknownTopicOrPartition.rawValue])

        // Wrong generation, and a v1 commit from an outsider.
        let stale = try await wire.call(OffsetCommitRequest(groupId: "g", generationIdOrMemberEpoch: 0, memberId: a,
                                                            topics: [.init(name: "t", partitions: [.init(partitionIndex: 1, committedOffset: 9)])]), version: 2).commit!
        #expect(stale.topics[0].partitions[0].errorCode == KafkaErrorCode.illegalGeneration.rawValue)
        let outsider = try await wire.call(OffsetCommitRequest(groupId: "g", generationIdOrMemberEpoch: -1, memberId: "",
                                                               topics: [.init(name: "t", partitions: [.init(partitionIndex: 1, committedOffset: 9)])]), version: 1).commit!
        #expect(outsider.topics[0].partitions[0].errorCode == KafkaErrorCode.unknownMemberId.rawValue)

        // Fetch at v1, v5, v7 (single group) and v8 (batched).
        for version: Int16 in [1, 5, 7] {
            let f = try await wire.call(OffsetFetchRequest(groupId: "g", topics: [.init(name: "t", partitionIndexes: [0, 1])], requireStable: version >= 7),
                                        version: version).fetch!
            #expect(f.errorCode == 0)
            let parts = f.topics[0].partitions
            #expect(parts.map(\.committedOffset) == [42, -1])
            #expect(parts[0].metadata == "m0" && parts[1].metadata == "")
            #expect(parts[0].committedLeaderEpoch == (version >= 5 ? 3 : -1))
        }
        let all = try await wire.call(OffsetFetchRequest(groupId: "g", topics: nil), version: 4).fetch!
        #expect(all.topics.map(\.name) == ["t"] && all.topics[0].partitions.map(\.committedOffset) == [42])
        let batched = try await wire.call(OffsetFetchRequest(groups: [
            .init(groupId: "g", topics: [.init(name: "t", partitionIndexes: [0])]),
            .init(groupId: "other", topics: [.init(name: "t", partitionIndexes: [0])]),
            .init(groupId: "g", topics: nil),
        ]), version: 8).fetch!
        #expect(batched.groups.map(\.groupId) == ["g", "other", "g"])
        #expect(batched.groups[0].topics[0].partitions[0].committedOffset == 42)
        #expect(batched.groups[1].topics[0].partitions[0].committedOffset == -1 && batched.groups[1].errorCode == 0)
        #expect(batched.groups[2].topics[0].partitions[0].committedLeaderEpoch == 3)
        let v0 = try await wire.call(OffsetFetchRequest(groupId: "g", topics: [.init(name: "gone", partitionIndexes: [0])]), version: 0).fetch!
        #expect(v0.topics[0].partitions[0].errorCode == KafkaErrorCode.unknownTopicOrPartition.rawValue)
    }

    @Test func standaloneCommitsAtV0AndV9() async throws {
        let wire = try await GroupWire()
        // v0 has no generation: a standalone consumer's commit creates the (empty) group.
        let v0 = try await wire.call(OffsetCommitRequest(groupId: "solo", topics: [.init(name: "u", partitions: [.init(partitionIndex: 0, committedOffset: 5)])]),
                                     version: 0).commit!
        #expect(v0.topics[0].partitions[0].errorCode == 0)
        let v9 = try await wire.call(OffsetCommitRequest(groupId: "missing", generationIdOrMemberEpoch: 3, memberId: "m",
                                                         topics: [.init(name: "u", partitions: [.init(partitionIndex: 0, committedOffset: 5)])]), version: 9).commit!
        #expect(v9.topics[0].partitions[0].errorCode == KafkaErrorCode.groupIdNotFound.rawValue)
        let big = String(repeating: "x", count: 5000)
        let tooLarge = try await wire.call(OffsetCommitRequest(groupId: "solo", topics: [.init(name: "u", partitions: [.init(partitionIndex: 0, committedOffset: 6, committedMetadata: big)])]),
                                           version: 3).commit!
        #expect(tooLarge.topics[0].partitions[0].errorCode == KafkaErrorCode.offsetMetadataTooLarge.rawValue)
        let fetched = try await wire.call(OffsetFetchRequest(groupId: "solo", topics: [.init(name: "u", partitionIndexes: [0])]), version: 6).fetch!
        #expect(fetched.topics[0].partitions[0].committedOffset == 5)
    }

    @Test func describeListAndDeleteGroups() async throws {
        let wire = try await GroupWire()
        let (a, b) = try await formGroup(wire)
        _ = try await wire.call(OffsetCommitRequest(groupId: "solo", topics: [.init(name: "u", partitions: [.init(partitionIndex: 0, committedOffset: 5)])]), version: 2)

        let d = try await requireResponse(wire.call(DescribeGroupsRequest(groups: ["g", "solo", "none"], includeAuthorizedOperations: true), version: 5), as: DescribeGroupsResponse.self)
        #expect(d.groups.map(\.groupState) == ["Stable", "Empty", "Dead"])
        #expect(d.groups[0].protocolType == "consumer" && d.groups[0].protocolData == "range")
        #expect(d.groups[0].members.map(\.memberId) == [a, b])
        #expect(d.groups[0].members.map(\.memberAssignment) == [[0xA], [0xB]])
        #expect(d.groups[0].members[0].memberMetadata == [0, 1, 2] && d.groups[0].members[0].clientHost == "/127.0.0.1")
        #expect(d.groups[0].members[0].clientId == "client")
        #expect(d.groups[0].authorizedOperations != Int32.min)
        #expect(d.groups.allSatisfy { $0.errorCode == 0 })

        let all = try await requireResponse(wire.call(ListGroupsRequest(), version: 3), as: ListGroupsResponse.self)
        let stable = try await requireResponse(wire.call(ListGroupsRequest(statesFilter: ["stable"]), version: 4), as: ListGroupsResponse.self)
        let typed = try await requireResponse(wire.call(ListGroupsRequest(typesFilter: ["consumer"]), version: 5), as: ListGroupsResponse.self)
        #expect(all.groups.map(\.groupId) == ["g", "solo"] && all.groups.map(\.protocolType) == ["consumer", ""])
        #expect(stable.groups.map(\.groupId) == ["g"] && stable.groups[0].groupState == "Stable")
        #expect(typed.groups.isEmpty, "every group is classic")

        let del = try await requireResponse(wire.call(DeleteGroupsRequest(groupsNames: ["g", "solo", "none"]), version: 2), as: DeleteGroupsResponse.self)
        #expect(del.results.map(\.errorCode) == [KafkaErrorCode.nonEmptyGroup.rawValue, 0, KafkaErrorCode.groupIdNotFound.rawValue])
        await wire.coordinator.flushDirty()  // the background writer's job: g's membership
        #expect(try await wire.store.listAll(prefix: "groups/").map(\.key) == ["groups/g"])
        let after = try await wire.call(OffsetFetchRequest(groupId: "solo", topics: [.init(name: "u", partitionIndexes: [0])]), version: 6).fetch!
        #expect(after.topics[0].partitions[0].committedOffset == -1)
    }

    @Test func offsetsAndGenerationSurviveACoordinatorRestart() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("floe-groups-\(UInt64.random(in: 0 ... .max))").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let clock = ManualClock()
        let (a, b): (String, String)
        do {
            let wire = try await GroupWire(store: try LocalDirectoryObjectStore(root: dir), clock: clock)
            (a, b) = try await formGroup(wire)
            let c = try await wire.call(OffsetCommitRequest(groupId: "g", generationIdOrMemberEpoch: 1, memberId: b,
                                                            topics: [.init(name: "t", partitions: [.init(partitionIndex: 2, committedOffset: 77, committedMetadata: "meta")])]),
                                        version: 7).commit!
            #expect(c.topics[0].partitions[0].errorCode == 0)
            _ = try await wire.call(OffsetCommitRequest(groupId: "weird/group ü", topics: [.init(name: "u", partitions: [.init(partitionIndex: 0, committedOffset: 3)])]), version: 2)
            await wire.coordinator.shutdown()
        }
        // A new coordinator on the same directory: offsets, generation and members are back.
        let wire = try await GroupWire(store: try LocalDirectoryObjectStore(root: dir), clock: clock)
        let f = try await wire.call(OffsetFetchRequest(groupId: "g", topics: [.init(name: "t", partitionIndexes: [2])]), version: 7).fetch!
        #expect(f.topics[0].partitions[0].committedOffset == 77 && f.topics[0].partitions[0].metadata == "meta")
        let w = try await wire.call(OffsetFetchRequest(groupId: "weird/group ü", topics: [.init(name: "u", partitionIndexes: [0])]), version: 2).fetch!
        #expect(w.topics[0].partitions[0].committedOffset == 3)
        let hb = try await wire.call(HeartbeatRequest(groupId: "g", generationId: 1, memberId: a), version: 4).heartbeat!
        #expect(hb.errorCode == 0, "a stable generation resumes without a rebalance")
        let s = try await wire.call(SyncGroupRequest(groupId: "g", generationId: 1, memberId: b), version: 3).sync!
        #expect(s.assignment == [0xB])
        // The next rebalance continues the generation count.
        let joined = try await wire.send(JoinGroupRequest(groupId: "g", sessionTimeoutMs: 10_000, rebalanceTimeoutMs: 30_000, memberId: "",
                                                          protocolType: "consumer", protocols: [.init(name: "range", metadata: [])]), version: 3)
        let ra = try await wire.send(consumerJoin(a), version: 7)
        let rb = try await wire.send(consumerJoin(b), version: 7)
        #expect(try await ra.value().join!.generationId == 2)
        let newcomer = try await joined.value().join!
        let second = try await rb.value().join!
        #expect(second.generationId == 2 && newcomer.generationId == 2, "\(second) \(newcomer)")
    }

    @Test func corruptGroupObjectFailsTheLoadNamingTheKey() async throws {
        let store = MemoryObjectStore(name: "corrupt")
        var bytes = GroupRecord(groupId: "g", snapshot: .empty, offsets: [TopicPartition("t", 0): CommittedOffset(offset: 1, commitTimestampMs: 0)]).encoded()
        bytes[bytes.count - 3] ^= 0xFF
        _ = try await store.put("groups/g", bytes)
        let coordinator = GroupCoordinator(nodeId: 1, host: "h", port: 1, store: store, prefix: "groups/", clock: ManualClock(),
                                           topics: StaticTopics(topics: [:]), logger: .discarding)
        do {
            try await coordinator.load()
            Issue.record("load should fail")
        } catch {
            #expect("\(error)".contains("groups/g") && "\(error)".contains("CRC32C"))
        }
        // Before loading, requests are told to retry.
        let router = KafkaRouter(handlers: coordinator.handlers)
        var w = ByteWriter()
        try RequestHeader.encodeRequest(HeartbeatRequest(groupId: "g", generationId: 1, memberId: "m"), version: 4, correlationId: 1, clientId: "c", into: &w)
        let reply = try await requireCase(router.handle(ServerRequest(bytes: Array(w.bytes.dropFirst(4)), connection: ConnectionInfo(id: 1, peer: "p"), seq: 0)),
                                          "a heartbeat reply", \.respondBytes)
        let hb = try requireResponse(ResponseHeader.decodeResponse(reply[...], apiKey: .heartbeat, version: 4).1, as: HeartbeatResponse.self)
        #expect(hb.errorCode == KafkaErrorCode.coordinatorLoadInProgress.rawValue)
    }

    @Test func offsetsOfAnEmptyGroupExpireAfterTheRetention() async throws {
        let wire = try await GroupWire()
        _ = try await wire.call(OffsetCommitRequest(groupId: "old", topics: [.init(name: "u", partitions: [.init(partitionIndex: 0, committedOffset: 5)])]), version: 2)
        await wire.advance(.seconds(6 * 24 * 3600))
        await wire.coordinator.expireOffsets()
        #expect(await wire.coordinator.group("old") != nil)
        await wire.advance(.seconds(2 * 24 * 3600))
        await wire.coordinator.expireOffsets()
        #expect(await wire.coordinator.group("old") == nil)
        #expect(try await wire.store.listAll(prefix: "groups/").isEmpty)
    }

    @Test func groupRecordRoundTripsAndRejectsDamage() throws {
        let snapshot = GroupSnapshot(protocolType: "consumer", protocolName: "range", generationId: 9, leaderId: "a", members: [
            .init(memberId: "a", groupInstanceId: "i", clientId: "c", clientHost: "/h", sessionTimeoutMs: 10_000, rebalanceTimeoutMs: 30_000,
                  protocols: [GroupProtocol(name: "range", metadata: [1, 2])], assignment: [3]),
        ])
        var rng = SplitMix64(seed: 5)
        var offsets: [TopicPartition: CommittedOffset] = [:]
        for i in 0..<50 {
            offsets[TopicPartition("topic-\(i % 7)", Int32(i))] = CommittedOffset(offset: Int64(bitPattern: rng.next()), leaderEpoch: Int32(i),
                                                                                  metadata: i % 3 == 0 ? nil : "m\(i)", commitTimestampMs: Int64(i))
        }
        let record = GroupRecord(groupId: "g", snapshot: snapshot, offsets: offsets)
        let bytes = record.encoded()
        #expect(try GroupRecord(decoding: bytes, key: "k") == record)
        #expect(Array(bytes.prefix(4)) == Array("FLGR".utf8))
        #expect(throws: GroupStoreError.self) { try GroupRecord(decoding: Array(bytes.dropLast()), key: "k") }
        var version = bytes
        version[5] = 9
        #expect(throws: GroupStoreError.self) { try GroupRecord(decoding: version, key: "k") }
        for _ in 0..<20 {
            var flipped = bytes
            flipped[Int.random(in: 14..<bytes.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
            #expect(throws: GroupStoreError.self) { try GroupRecord(decoding: flipped, key: "k") }
        }
    }
}

struct GroupCoordinatorMemoryTests {
    @Test func aMemberIdThatNeverComesBackLeavesNothingBehind() async throws {
        let wire = try await GroupWire()
        let first = try await wire.call(consumerJoin(group: "brief"), version: 5).join!
        #expect(first.errorCode == KafkaErrorCode.memberIdRequired.rawValue)
        #expect(await wire.coordinator.group("brief")?.pendingMembers.count == 1)
        await wire.advance(.seconds(11))
        #expect(await wire.coordinator.group("brief") == nil)
        #expect(await wire.coordinator.groupCount == 0)
    }

    @Test func theGroupLimitRefusesNewGroups() async throws {
        var config = GroupConfig()
        config.maxGroups = 1
        let wire = try await GroupWire(config: config)
        let one = try await wire.call(OffsetCommitRequest(groupId: "one", topics: [.init(name: "u", partitions: [.init(partitionIndex: 0, committedOffset: 1)])]), version: 2).commit!
        #expect(one.topics[0].partitions[0].errorCode == 0)
        let two = try await wire.call(OffsetCommitRequest(groupId: "two", topics: [.init(name: "u", partitions: [.init(partitionIndex: 0, committedOffset: 1)])]), version: 2).commit!
        #expect(two.topics[0].partitions[0].errorCode == KafkaErrorCode.coordinatorNotAvailable.rawValue)
        let join = try await wire.call(consumerJoin(group: "three"), version: 5).join!
        #expect(join.errorCode == KafkaErrorCode.coordinatorNotAvailable.rawValue)
    }
}

struct GroupCoordinatorStoreFailureTests {
    func commit(_ wire: GroupWire, _ offset: Int64) async throws -> Int16 {
        let r = try await wire.call(OffsetCommitRequest(groupId: "s", topics: [.init(name: "u", partitions: [.init(partitionIndex: 0, committedOffset: offset)])]),
                                    version: 2).commit!
        return r.topics[0].partitions[0].errorCode
    }

    func fetch(_ wire: GroupWire) async throws -> Int64 {
        try await wire.call(OffsetFetchRequest(groupId: "s", topics: [.init(name: "u", partitionIndexes: [0])]), version: 2)
            .fetch!.topics[0].partitions[0].committedOffset
    }

    @Test func failedWritesAreNotAcknowledgedAndOtherWritersAreNotOverwritten() async throws {
        let memory = MemoryObjectStore(name: "faulty")
        let store = FaultInjectingObjectStore(memory)
        let wire = try await GroupWire(store: store)
        #expect(try await commit(wire, 1) == 0)

        // A write that fails before reaching the store: not acknowledged, not visible.
        store.failNext(.put, with: .serverError)
        #expect(try await commit(wire, 2) == KafkaErrorCode.coordinatorNotAvailable.rawValue)
        #expect(try await fetch(wire) == 1)

        // A write applied but reported failed: the next write finds a changed ETag, re-reads the
        // object and adopts it, and answers NOT_COORDINATOR; the retry then succeeds.
        store.failNext(.put, with: .timeout, afterApplying: true)
        #expect(try await commit(wire, 3) == KafkaErrorCode.coordinatorNotAvailable.rawValue)
        #expect(try await commit(wire, 4) == KafkaErrorCode.notCoordinator.rawValue)
        #expect(try await fetch(wire) == 3, "what the bucket holds")
        #expect(try await commit(wire, 4) == 0)

        // Another coordinator writes the group: ours does not overwrite it.
        let foreign = GroupRecord(groupId: "s", snapshot: .empty, offsets: [TopicPartition("u", 0): CommittedOffset(offset: 999, commitTimestampMs: 0)])
        _ = try await memory.put("groups/s", foreign.encoded())
        #expect(try await commit(wire, 5) == KafkaErrorCode.notCoordinator.rawValue)
        let stored = try GroupRecord(decoding: try await memory.get("groups/s").bytes, key: "groups/s")
        #expect(stored.offsets[TopicPartition("u", 0)]?.offset == 999)
        #expect(try await fetch(wire) == 999)
    }
}
