import FloeTestSupport
import KafkaProtocol
import ObjectStore
import Support
import Synchronization
import Testing
@testable import Broker

/// A placement the test moves groups with: group id → node (unlisted groups: `fallback`);
/// nodes 1 and 2 are `b1:9001` and `b2:9002`, and a node of nil means "none available".
final class SwitchablePlacement: GroupPlacement {
    let state: Mutex<(owners: [String: Int32?], fallback: Int32?)>

    init(fallback: Int32?, owners: [String: Int32?] = [:]) {
        state = Mutex((owners, fallback))
    }

    func move(_ groupId: String, to node: Int32?) { state.withLock { $0.owners[groupId] = .some(node) } }
    func moveAll(to node: Int32?) { state.withLock { $0 = ([:], node) } }

    func coordinator(for groupId: String) -> (nodeId: Int32, host: String, port: Int32)? {
        let node = state.withLock { $0.owners[groupId] ?? $0.fallback }
        return node.map { ($0, "b\($0)", 9000 + $0) }
    }
}

struct GroupPlacementTests {
    func commit(_ wire: GroupWire, group: String, _ offset: Int64, member: String = "", generation: Int32 = -1) async throws -> Int16 {
        let r = try await wire.call(OffsetCommitRequest(groupId: group, generationIdOrMemberEpoch: generation, memberId: member,
                                                        topics: [.init(name: "t", partitions: [.init(partitionIndex: 0, committedOffset: offset)])]),
                                    version: 8).commit!
        return r.topics[0].partitions[0].errorCode
    }

    struct Fetched: Equatable {
        var offset: Int64
        var errorCode: Int16
        init(_ offset: Int64, _ errorCode: Int16) {
            self.offset = offset
            self.errorCode = errorCode
        }
    }

    /// The committed offset of `t-0` and the group-level error code (OffsetFetch v5).
    func fetch(_ wire: GroupWire, group: String) async throws -> Fetched {
        let f = try await wire.call(OffsetFetchRequest(groupId: group, topics: [.init(name: "t", partitionIndexes: [0])]), version: 5).fetch!
        return Fetched(f.topics.first?.partitions.first?.committedOffset ?? -1, f.errorCode)
    }

    func listed(_ wire: GroupWire) async throws -> [String] {
        try await requireResponse(wire.call(ListGroupsRequest(), version: 3), as: ListGroupsResponse.self).groups.map(\.groupId)
    }

    @Test func aGroupMovesToAnotherBrokerWithItsOffsetsAndMembers() async throws {
        let store = MemoryObjectStore(name: "two-brokers")
        let placement = SwitchablePlacement(fallback: 1)
        let clock = ManualClock()
        let one = try await GroupWire(store: store, clock: clock, nodeId: 1, placement: placement, preload: false)
        let two = try await GroupWire(store: store, clock: clock, seed: 43, nodeId: 2, placement: placement, preload: false)

        // On node 1: a stable group of two commits an offset; a newcomer's join is parked.
        let (a, b) = try await GroupCoordinatorTests().formGroup(one)
        #expect(try await commit(one, group: "g", 42, member: a, generation: 1) == 0)
        let newcomer = try await one.call(consumerJoin(), version: 7).join!
        #expect(newcomer.errorCode == KafkaErrorCode.memberIdRequired.rawValue)
        let parked = try await one.send(consumerJoin(newcomer.memberId), version: 7)
        #expect(parked.isDeferred)
        #expect(try await fetch(two, group: "g").errorCode == KafkaErrorCode.notCoordinator.rawValue)
        #expect(try await listed(one) == ["g"])
        #expect(try await listed(two).isEmpty)

        // The group moves to node 2; node 1 writes what it holds, answers the parked join, forgets.
        placement.moveAll(to: 2)
        await one.coordinator.placementChanged()
        #expect(try await parked.value().join!.errorCode == KafkaErrorCode.notCoordinator.rawValue)
        #expect(await one.coordinator.groupCount == 0)

        // Node 2 reads the group on first use: offsets and the stable generation are there.
        #expect(try await fetch(two, group: "g") == Fetched(42, 0))
        let hb = try await two.call(HeartbeatRequest(groupId: "g", generationId: 1, memberId: b), version: 4).heartbeat!
        #expect(hb.errorCode == 0, "members of the stable generation go on without rejoining")
        #expect(try await listed(two) == ["g"])
        #expect(try await listed(one).isEmpty)

        // Node 1 sends every group API back to FindCoordinator.
        let notCoordinator = KafkaErrorCode.notCoordinator.rawValue
        #expect(try await fetch(one, group: "g").errorCode == notCoordinator)
        #expect(try await commit(one, group: "g", 43, member: a, generation: 1) == notCoordinator)
        #expect(try await one.call(HeartbeatRequest(groupId: "g", generationId: 1, memberId: a), version: 4).heartbeat!.errorCode == notCoordinator)
        #expect(try await one.call(consumerJoin(a), version: 7).join!.errorCode == notCoordinator)
        #expect(try await one.call(SyncGroupRequest(groupId: "g", generationId: 1, memberId: a), version: 3).sync!.errorCode == notCoordinator)
        let left = try await requireResponse(one.call(LeaveGroupRequest(groupId: "g", members: [.init(memberId: a)]), version: 5), as: LeaveGroupResponse.self)
        #expect(left.errorCode == notCoordinator)
        let described = try await requireResponse(one.call(DescribeGroupsRequest(groups: ["g"]), version: 5), as: DescribeGroupsResponse.self)
        #expect(described.groups.map(\.errorCode) == [notCoordinator])
        let deleted = try await requireResponse(one.call(DeleteGroupsRequest(groupsNames: ["g"]), version: 2), as: DeleteGroupsResponse.self)
        #expect(deleted.results.map(\.errorCode) == [notCoordinator])
        let batched = try await one.call(OffsetFetchRequest(groups: [.init(groupId: "g", topics: nil)]), version: 8).fetch!
        #expect(batched.groups.map(\.errorCode) == [notCoordinator])
        #expect(await one.coordinator.groupCount == 0, "refusals do not read the group")

        // Node 2 commits; the group comes back to node 1, which reads the newest object.
        #expect(try await commit(two, group: "g", 50, member: b, generation: 1) == 0)
        placement.moveAll(to: 1)
        await two.coordinator.placementChanged()
        #expect(try await fetch(one, group: "g") == Fetched(50, 0))
    }

    @Test func aStaleCoordinatorsWriteIsRefused() async throws {
        let store = MemoryObjectStore(name: "stale")
        // Node 1 has not heard that the group moved; node 2 has.
        let oneThinks = SwitchablePlacement(fallback: 1), twoThinks = SwitchablePlacement(fallback: 2)
        let one = try await GroupWire(store: store, nodeId: 1, placement: oneThinks, preload: false)
        let two = try await GroupWire(store: store, nodeId: 2, placement: twoThinks, preload: false)
        #expect(try await commit(one, group: "s", 1) == 0)
        #expect(try await fetch(two, group: "s") == Fetched(1, 0))
        #expect(try await commit(two, group: "s", 5) == 0)

        // Node 1's conditional write fails: not acknowledged, the bucket keeps node 2's offset,
        // and node 1 drops the group.
        #expect(try await commit(one, group: "s", 9) == KafkaErrorCode.notCoordinator.rawValue)
        let stored = try GroupRecord(decoding: try await store.get("groups/s").bytes, key: "groups/s")
        #expect(stored.offsets[TopicPartition("t", 0)]?.offset == 5)
        #expect(await one.coordinator.group("s") == nil)
        // Its next use reads the bucket again.
        #expect(try await fetch(one, group: "s") == Fetched(5, 0))
    }

    @Test func aStaleCoordinatorDoesNotDeleteAMovedGroup() async throws {
        let store = MemoryObjectStore(name: "stale-delete")
        let one = try await GroupWire(store: store, nodeId: 1, placement: SwitchablePlacement(fallback: 1), preload: false)
        let two = try await GroupWire(store: store, nodeId: 2, placement: SwitchablePlacement(fallback: 2), preload: false)
        #expect(try await commit(one, group: "s", 1) == 0)
        #expect(try await commit(two, group: "s", 2) == 0)
        let deleted = try await requireResponse(one.call(DeleteGroupsRequest(groupsNames: ["s"]), version: 2), as: DeleteGroupsResponse.self)
        #expect(deleted.results.map(\.errorCode) == [KafkaErrorCode.notCoordinator.rawValue])
        #expect(try await fetch(two, group: "s") == Fetched(2, 0))
        #expect(try await store.listAll(prefix: "groups/").map(\.key) == ["groups/s"])
    }

    @Test func findCoordinatorAnswersFromThePlacement() async throws {
        let placement = SwitchablePlacement(fallback: nil, owners: ["a": 1, "b": 2])
        let wire = try await GroupWire(nodeId: 1, placement: placement, preload: false)
        let a = try await requireResponse(wire.call(FindCoordinatorRequest(key: "a"), version: 3), as: FindCoordinatorResponse.self)
        #expect(a.errorCode == 0 && a.nodeId == 1 && a.host == "b1" && a.port == 9001)
        let b = try await requireResponse(wire.call(FindCoordinatorRequest(key: "b"), version: 3), as: FindCoordinatorResponse.self)
        #expect(b.errorCode == 0 && b.nodeId == 2 && b.host == "b2" && b.port == 9002)
        let c = try await requireResponse(wire.call(FindCoordinatorRequest(key: "c"), version: 3), as: FindCoordinatorResponse.self)
        #expect(c.errorCode == KafkaErrorCode.coordinatorNotAvailable.rawValue && c.nodeId == -1)

        let batch = try await requireResponse(wire.call(FindCoordinatorRequest(coordinatorKeys: ["a", "b", "c"]), version: 4), as: FindCoordinatorResponse.self)
        #expect(batch.coordinators.map(\.key) == ["a", "b", "c"])
        #expect(batch.coordinators.map(\.nodeId) == [1, 2, -1])
        #expect(batch.coordinators.map(\.port) == [9001, 9002, -1])
        #expect(batch.coordinators.map(\.errorCode) == [0, 0, KafkaErrorCode.coordinatorNotAvailable.rawValue])

        // Transactional ids are placed by the same placement (the transaction coordinator uses it).
        let txn = try await requireResponse(wire.call(FindCoordinatorRequest(keyType: 1, coordinatorKeys: ["b", "c"]), version: 4), as: FindCoordinatorResponse.self)
        #expect(txn.coordinators.map(\.nodeId) == [2, -1])
        #expect(txn.coordinators.map(\.errorCode) == [0, KafkaErrorCode.coordinatorNotAvailable.rawValue])

        placement.move("c", to: 2)
        let moved = try await requireResponse(wire.call(FindCoordinatorRequest(key: "c"), version: 3), as: FindCoordinatorResponse.self)
        #expect(moved.errorCode == 0 && moved.nodeId == 2)
    }

    @Test func onlyTheTouchedGroupIsRead() async throws {
        let memory = MemoryObjectStore(name: "many-groups")
        for i in 0..<200 {
            let record = GroupRecord(groupId: "g\(i)", snapshot: .empty,
                                     offsets: [TopicPartition("t", 0): CommittedOffset(offset: Int64(i), commitTimestampMs: 0)])
            _ = try await memory.put("groups/g\(i)", record.encoded())
        }
        let store = FaultInjectingObjectStore(memory)
        let wire = try await GroupWire(store: store, preload: false)
        #expect(store.callCount(.get) == 0 && store.callCount(.list) == 0, "nothing is read at start")

        // Concurrent first uses of one group share one read.
        let answers = try await withThrowingTaskGroup(of: Fetched.self) { group in
            for _ in 0..<8 { group.addTask { try await self.fetch(wire, group: "g17") } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(answers.count == 8 && answers.allSatisfy { $0 == Fetched(17, 0) })
        #expect(store.callCount(.get) == 1)
        #expect(await wire.coordinator.groupCount == 1)

        #expect(try await commit(wire, group: "g17", 18) == 0)
        #expect(store.callCount(.get) == 1, "a resident group is not read again")
    }

    @Test func releaseWritesPendingStateAndTheNextUseReadsTheBucket() async throws {
        let memory = MemoryObjectStore(name: "release")
        let store = FaultInjectingObjectStore(memory)
        let wire = try await GroupWire(store: store, preload: false)
        let (a, _) = try await GroupCoordinatorTests().formGroup(wire)
        #expect(try await commit(wire, group: "g", 3, member: a, generation: 1) == 0)
        #expect(try await commit(wire, group: "other", 4) == 0)
        // The membership of g is only dirty (the background writer has not run).
        await wire.coordinator.release { $0 == "g" }
        #expect(await wire.coordinator.group("g") == nil)
        #expect(await wire.coordinator.group("other") != nil)
        let stored = try GroupRecord(decoding: try await memory.get("groups/g").bytes, key: "groups/g")
        #expect(stored.snapshot.generationId == 1 && stored.snapshot.members.count == 2)

        let reads = store.callCount(.get)
        #expect(try await fetch(wire, group: "g") == Fetched(3, 0))
        #expect(store.callCount(.get) == reads + 1)
        #expect(await wire.coordinator.group("g")?.state == .stable)
    }
}
