import Bytes
import FloeTestSupport
import KafkaProtocol
import ObjectStore
import StreamStorage
import Support
import Testing
@testable import Broker

/// A consumer-protocol subscription (v1: version, topics, user data, owned partitions).
func subscription(_ topics: [String]) -> [UInt8] {
    var w = ByteWriter()
    w.writeInt16(1)
    w.writeInt32(Int32(topics.count))
    for t in topics {
        w.writeInt16(Int16(t.utf8.count))
        w.writeBytes(Array(t.utf8))
    }
    w.writeInt32(-1)  // user data: null
    w.writeInt32(0)  // owned partitions: none
    return w.take()
}

/// OffsetDelete (API 47) through the coordinator's router, as Kafka's group coordinator answers it.
struct OffsetDeleteTests {
    /// Commits offsets for `t-0`, `t-1` and `u-0` as a standalone consumer (generation -1).
    func commitStandalone(_ wire: GroupWire, group: String = "g") async throws {
        let r = try await wire.call(OffsetCommitRequest(groupId: group, generationIdOrMemberEpoch: -1, memberId: "", topics: [
            .init(name: "t", partitions: [.init(partitionIndex: 0, committedOffset: 10), .init(partitionIndex: 1, committedOffset: 11)]),
            .init(name: "u", partitions: [.init(partitionIndex: 0, committedOffset: 12)]),
        ]), version: 8).commit!
        #expect(r.topics.flatMap(\.partitions).allSatisfy { $0.errorCode == 0 }, "commit: \(r)")
    }

    func delete(_ wire: GroupWire, group: String = "g", _ partitions: [(String, [Int32])]) async throws -> OffsetDeleteResponse {
        let request = OffsetDeleteRequest(groupId: group, topics: partitions.map { t in .init(name: t.0, partitions: t.1.map { .init(partitionIndex: $0) }) })
        return try await requireResponse(wire.call(request, version: 0), as: OffsetDeleteResponse.self)
    }

    func codes(_ r: OffsetDeleteResponse) -> [String: Int16] {
        var out: [String: Int16] = [:]
        for t in r.topics { for p in t.partitions { out["\(t.name)-\(p.partitionIndex)"] = p.errorCode } }
        return out
    }

    func committed(_ wire: GroupWire, group: String = "g") async throws -> [String: Int64] {
        let f = try await wire.call(OffsetFetchRequest(groupId: group, topics: nil), version: 7).fetch!
        var out: [String: Int64] = [:]
        for t in f.topics { for p in t.partitions { out["\(t.name)-\(p.partitionIndex)"] = p.committedOffset } }
        return out
    }

    /// One member joins with `metadata` under protocol type `type`, and the group is Stable.
    func oneMemberGroup(_ wire: GroupWire, type: String = "consumer", metadata: [UInt8]) async throws -> String {
        let join = { (id: String) in
            JoinGroupRequest(groupId: "g", sessionTimeoutMs: 10_000, rebalanceTimeoutMs: 30_000, memberId: id, protocolType: type,
                             protocols: [.init(name: "range", metadata: metadata)])
        }
        let first = try await wire.call(join(""), version: 7).join!
        #expect(first.errorCode == KafkaErrorCode.memberIdRequired.rawValue)
        let pending = try await wire.send(join(first.memberId), version: 7)
        await wire.advance(.seconds(3))
        let joined = try await pending.value().join!
        #expect(joined.errorCode == 0 && joined.leader == first.memberId, "join: \(joined)")
        let sync = try await wire.call(SyncGroupRequest(groupId: "g", generationId: joined.generationId, memberId: first.memberId,
                                                        assignments: [.init(memberId: first.memberId, assignment: [1])]), version: 5).sync!
        #expect(sync.errorCode == 0)
        return first.memberId
    }

    @Test func deletesCommittedOffsetsDurably() async throws {
        let store = MemoryObjectStore(name: "offset-delete")
        let wire = try await GroupWire(store: store)
        try await commitStandalone(wire)
        let r = try await delete(wire, [("t", [0]), ("u", [0, 0])])
        #expect(r.errorCode == 0)
        #expect(codes(r) == ["t-0": 0, "u-0": 0])
        #expect(try await committed(wire) == ["t-1": 11])
        // Deleting an offset that was never committed is a success too (Kafka answers NONE).
        #expect(codes(try await delete(wire, [("t", [2])])) == ["t-2": 0])
        // The group's object no longer holds them: a coordinator reading it afresh agrees.
        let restarted = try await GroupWire(store: store, seed: 9)
        #expect(try await committed(restarted) == ["t-1": 11])
    }

    @Test func unknownGroupsAndPartitions() async throws {
        let wire = try await GroupWire()
        #expect(try await delete(wire, group: "nobody", [("t", [0])]).errorCode == KafkaErrorCode.groupIdNotFound.rawValue)
        #expect(try await delete(wire, group: "", [("t", [0])]).errorCode == KafkaErrorCode.invalidGroupId.rawValue)
        try await commitStandalone(wire)
        let r = try await delete(wire, [("t", [0, 7]), ("missing", [0])])
        #expect(r.errorCode == 0)
        #expect(codes(r) == ["t-0": 0, "t-7": KafkaErrorCode.unknownTopicOrPartition.rawValue,
                             "missing-0": KafkaErrorCode.unknownTopicOrPartition.rawValue])
        #expect(r.topics.map(\.name) == ["t", "missing"], "topics in request order")
        #expect(try await committed(wire) == ["t-1": 11, "u-0": 12])
    }

    /// A live member subscribed to `t`: its partitions are refused with GROUP_SUBSCRIBED_TO_TOPIC;
    /// `u` (not subscribed) can be deleted. Once the member leaves, `t` can be deleted too.
    @Test func refusesTopicsLiveMembersSubscribeTo() async throws {
        let wire = try await GroupWire()
        try await commitStandalone(wire)
        let member = try await oneMemberGroup(wire, metadata: subscription(["t"]))
        let r = try await delete(wire, [("t", [0, 1]), ("u", [0])])
        #expect(r.errorCode == 0)
        let subscribed = KafkaErrorCode.groupSubscribedToTopic.rawValue
        #expect(codes(r) == ["t-0": subscribed, "t-1": subscribed, "u-0": 0])
        #expect(try await committed(wire) == ["t-0": 10, "t-1": 11])

        let left = try await requireResponse(wire.call(LeaveGroupRequest(groupId: "g", members: [.init(memberId: member)]), version: 5),
                                             as: LeaveGroupResponse.self)
        #expect(left.errorCode == 0)
        #expect(codes(try await delete(wire, [("t", [0])])) == ["t-0": 0])
        #expect(try await committed(wire) == ["t-1": 11])
    }

    /// Member metadata that is not a consumer subscription: the subscriptions are unknown, and
    /// a consumer group is then taken as subscribed to every topic (Kafka's rule).
    @Test func unreadableSubscriptionsProtectEveryTopic() async throws {
        let wire = try await GroupWire()
        try await commitStandalone(wire)
        _ = try await oneMemberGroup(wire, metadata: [0, 1, 2])
        let subscribed = KafkaErrorCode.groupSubscribedToTopic.rawValue
        #expect(codes(try await delete(wire, [("u", [0])])) == ["u-0": subscribed])
    }

    /// A group with members that is not a consumer group (e.g. Connect workers): NON_EMPTY_GROUP.
    @Test func nonConsumerGroupWithMembersIsRefused() async throws {
        let wire = try await GroupWire()
        _ = try await oneMemberGroup(wire, type: "connect", metadata: [1])
        #expect(try await delete(wire, [("t", [0])]).errorCode == KafkaErrorCode.nonEmptyGroup.rawValue)
    }

    /// A group placed on another broker: NOT_COORDINATOR, nothing deleted.
    @Test func notCoordinatorForGroupsPlacedElsewhere() async throws {
        let store = MemoryObjectStore(name: "offset-delete-placement")
        let placement = SwitchablePlacement(fallback: 1)
        let one = try await GroupWire(store: store, nodeId: 1, placement: placement, preload: false)
        try await commitStandalone(one)
        let two = try await GroupWire(store: store, seed: 43, nodeId: 2, placement: placement, preload: false)
        #expect(try await delete(two, [("t", [0])]).errorCode == KafkaErrorCode.notCoordinator.rawValue)
        // Moved to broker 2: it reads the group from the bucket and deletes there.
        await one.coordinator.release { _ in true }
        placement.moveAll(to: 2)
        #expect(codes(try await delete(two, [("t", [0])])) == ["t-0": 0])
        #expect(try await committed(two) == ["t-1": 11, "u-0": 12])
    }

    @Test func consumerSubscriptionParsing() {
        #expect(ConsumerSubscription.topics(subscription(["a", "bb"])) == ["a", "bb"])
        #expect(ConsumerSubscription.topics([0, 0, 0, 0, 0, 0]) == [])
        #expect(ConsumerSubscription.topics([0, 1, 2]) == nil, "truncated")
        #expect(ConsumerSubscription.topics([0, 0, 0x7F, 0xFF, 0xFF, 0xFF]) == nil, "count beyond the bytes")
        #expect(ConsumerSubscription.topics([0xFF, 0xFF, 0, 0, 0, 0]) == nil, "negative version")
    }
}

/// DescribeLogDirs, ElectLeaders, DescribeProducers, ListClientMetricsResources and telemetry,
/// called on their handlers over a one-broker harness.
struct AdminHandlerTests {
    @Test func describeLogDirsReportsOwnedPartitionsWithTheirSizes() async throws {
        let h = try await Harness.make()
        try await h.createTopic("t", partitions: 3)
        let batch = try makeBatch(count: 4, valueSize: 50)
        #expect(try await h.produce("t", partition: 0, batch: batch)?.errorCode == 0)
        #expect(try await h.produce("t", partition: 0, batch: batch)?.errorCode == 0)
        // Partition 2 belongs to another (live) broker: not hosted here, so not listed.
        try await h.core.registry.mutate { s in
            s.brokers[7] = BrokerInfo(id: 7, epoch: 1, incarnation: "other", host: "10.0.0.7", port: 9093, objectWAL: false,
                                      fenced: false, draining: false, stoppedCleanly: false)
            s.topics["t"]!.partitions[2].owner = 7
        }
        for version: Int16 in 0...4 {
            let all = try await requireResponse(h.call(DescribeLogDirsHandler(core: h.core), .describeLogDirs(DescribeLogDirsRequest(topics: nil)),
                                                       version: version), as: DescribeLogDirsResponse.self)
            #expect(all.errorCode == 0 && all.results.count == 1)
            let dir = try #require(all.results.first)
            #expect(dir.errorCode == 0 && dir.logDir == "memory://test")
            #expect(dir.totalBytes == -1 && dir.usableBytes == -1, "object storage has no capacity to report")
            #expect(dir.topics.map(\.name) == ["t"])
            let sizes = Dictionary(uniqueKeysWithValues: dir.topics[0].partitions.map { ($0.partitionIndex, $0.partitionSize) })
            #expect(sizes == [0: Int64(2 * batch.count), 1: 0], "version \(version)")
            #expect(dir.topics[0].partitions.allSatisfy { $0.offsetLag == 0 && !$0.isFutureKey })
        }
        let some = try await requireResponse(h.call(DescribeLogDirsHandler(core: h.core), .describeLogDirs(DescribeLogDirsRequest(topics: [
            .init(topic: "t", partitions: [1, 2, 9]), .init(topic: "missing", partitions: [0]),
        ])), version: 4), as: DescribeLogDirsResponse.self)
        #expect(some.results.first?.topics.map { $0.partitions.map(\.partitionIndex) } == [[1]])
    }

    /// A broker core over stream storage (an object-store WAL and manifest in `bucket`), as a
    /// broker (re)started on that bucket builds it.
    static func streamCore(_ bucket: MemoryObjectStore) async throws -> (BrokerCore, StreamLogStorage) {
        let wal = try await ObjectStoreWAL.open(store: bucket, prefix: "wal/node-0/", clock: RealClock(),
                                                config: ObjectStoreWAL.Config(flushInterval: .milliseconds(1)))
        let metadata = BucketMetadataStore(store: bucket, prefix: "streams/manifest/", clock: RealClock())
        let storage = StreamLogStorage(store: try await StreamStore.open(wal: wal, metadata: metadata, objects: bucket, clock: RealClock()))
        let config = BrokerConfig()
        let registry = try await TopicRegistry.load(store: bucket, prefix: "broker/")
        let partitions = PartitionSet(registry: registry, storage: storage, store: bucket, prefix: "broker/", metrics: nil, logger: .discarding)
        let member = ClusterMember(registry: registry, partitions: partitions, store: bucket, prefix: "broker/", node: 0, objectWAL: true,
                                   timing: try ClusterTiming(config), clock: RealClock(), logger: .discarding, recoverWAL: { _ in })
        try await member.join(host: "127.0.0.1", port: 9092, timeout: .seconds(10))
        let core = BrokerCore(config: config, nodeId: 0, clusterId: "test-cluster", registry: registry, partitions: partitions,
                              member: member, metrics: nil, logger: .discarding)
        return (core, storage)
    }

    func logDirSizes(_ core: BrokerCore) async throws -> [Int32: Int64] {
        let handler = DescribeLogDirsHandler(core: core)
        let context = RequestContext(connection: ConnectionInfo(id: 1, peer: "test"),
                                     header: RequestHeader(requestApiKey: ApiKey.describeLogDirs.rawValue, requestApiVersion: 4, correlationId: 1),
                                     apiKey: .describeLogDirs)
        guard case let .response(answer) = await handler.handle(.describeLogDirs(DescribeLogDirsRequest(topics: nil)), context: context) else {
            throw HarnessError.unexpected("DescribeLogDirs did not answer at once")
        }
        let r = try requireResponse(answer, as: DescribeLogDirsResponse.self)
        let topic = try #require(r.results.first?.topics.first)
        return Dictionary(uniqueKeysWithValues: topic.partitions.map { ($0.partitionIndex, $0.partitionSize) })
    }

    /// On stream storage: the size of an open partition counts what is in the WAL; after a
    /// restart the partitions are not opened by DescribeLogDirs, their size is read from the
    /// stream metadata, and it is the same.
    @Test func streamSizesBeforeAndAfterARestart() async throws {
        let bucket = MemoryObjectStore(name: "log-dirs-streams")
        let (core, storage) = try await Self.streamCore(bucket)
        _ = try await core.registry.create(name: "t", partitions: 2, replicationFactor: 1, configs: [:])
        let batch = try makeBatch(count: 5, valueSize: 40)
        let produce = ProduceRequest(acks: -1, timeoutMs: 5000, topicData: [.init(name: "t", partitionData: [.init(index: 0, records: batch[...])])])
        for _ in 0..<3 {
            guard case let .deferred(answer) = await ProduceHandler(core: core).handle(.produce(produce), context: RequestContext(
                connection: ConnectionInfo(id: 1, peer: "test"), header: RequestHeader(requestApiKey: 0, requestApiVersion: 9, correlationId: 1), apiKey: .produce))
            else { throw HarnessError.unexpected("produce was not deferred to durability") }
            let r = try requireResponse(await answer(), as: ProduceResponse.self)
            #expect(r.responses.first?.partitionResponses.first?.errorCode == 0)
        }
        #expect(try await logDirSizes(core) == [0: Int64(3 * batch.count), 1: 0], "open: bytes in the WAL")
        try await core.partitions.closeAll()
        try await storage.close()

        let (restarted, again) = try await Self.streamCore(bucket)
        #expect(await restarted.partitions.openPartitions.isEmpty)
        #expect(try await logDirSizes(restarted) == [0: Int64(3 * batch.count), 1: 0], "not open: bytes in objects")
        #expect(await restarted.partitions.openPartitions.isEmpty, "DescribeLogDirs opened no partition")
        try await again.close()
    }

    @Test func fileBucketsReportTheirFileSystem() {
        let (total, usable) = DescribeLogDirsHandler.capacity(location: "file:///tmp")
        #expect(total > 0 && usable >= 0 && usable <= total, "total \(total) usable \(usable)")
        #expect(DescribeLogDirsHandler.capacity(location: "file:///no/such/dir/here") == (-1, -1))
        #expect(DescribeLogDirsHandler.capacity(location: "s3://b/p at http://x") == (-1, -1))
    }

    func elect(_ h: Harness, type: Int8, _ partitions: [(String, [Int32])]?, version: Int16 = 2) async throws -> ElectLeadersResponse {
        let request = ElectLeadersRequest(electionType: type, topicPartitions: partitions.map { $0.map { .init(topic: $0.0, partitions: $0.1) } },
                                          timeoutMs: 1000)
        return try await requireResponse(h.call(ElectLeadersHandler(core: h.core), .electLeaders(request), version: version), as: ElectLeadersResponse.self)
    }

    func codes(_ r: ElectLeadersResponse) -> [String: Int16] {
        var out: [String: Int16] = [:]
        for t in r.replicaElectionResults { for p in t.partitionResult { out["\(t.topic)-\(p.partitionId)"] = p.errorCode } }
        return out
    }

    @Test func electLeadersIsNeverNeededForOwnedPartitions() async throws {
        let h = try await Harness.make()
        try await h.createTopic("t", partitions: 2)
        let notNeeded = KafkaErrorCode.electionNotNeeded.rawValue, unknown = KafkaErrorCode.unknownTopicOrPartition.rawValue
        for type: Int8 in [0, 1] {
            let r = try await elect(h, type: type, [("t", [0, 1, 5]), ("missing", [0])])
            #expect(r.errorCode == 0)
            #expect(codes(r) == ["t-0": notNeeded, "t-1": notNeeded, "t-5": unknown, "missing-0": unknown], "election type \(type)")
        }
        let v0 = try await elect(h, type: 0, [("t", [0])], version: 0)
        #expect(codes(v0) == ["t-0": notNeeded])
        // All partitions: every topic, without the partitions that need no election.
        #expect(try await elect(h, type: 0, nil).replicaElectionResults == [.init(topic: "t", partitionResult: [])])
        let badType = try await elect(h, type: 3, [("t", [0])])
        #expect(badType.errorCode == KafkaErrorCode.invalidRequest.rawValue && codes(badType) == ["t-0": KafkaErrorCode.invalidRequest.rawValue])

        // The owner of t-1 died (fenced) and the controller has not moved it yet.
        try await h.core.registry.mutate { s in
            s.brokers[7] = BrokerInfo(id: 7, epoch: 1, incarnation: "dead", host: "10.0.0.7", port: 9093, objectWAL: false,
                                      fenced: true, draining: false, stoppedCleanly: false)
            s.topics["t"]!.partitions[1].owner = 7
        }
        #expect(codes(try await elect(h, type: 0, nil)) == ["t-1": KafkaErrorCode.preferredLeaderNotAvailable.rawValue])
        #expect(codes(try await elect(h, type: 1, [("t", [1])])) == ["t-1": KafkaErrorCode.eligibleLeadersNotAvailable.rawValue])
    }

    func describeProducers(_ h: Harness, _ partitions: [Int32]) async throws
        -> [DescribeProducersResponse.PartitionResponse] {
        let request = DescribeProducersRequest(topics: [.init(name: "t", partitionIndexes: partitions)])
        let r = try await requireResponse(h.call(DescribeProducersHandler(core: h.core), .describeProducers(request), version: 0),
                                          as: DescribeProducersResponse.self)
        return try #require(r.topics.first).partitions
    }

    @Test func describeProducersListsIdempotentProducers() async throws {
        let h = try await Harness.make()
        try await h.createTopic("t", partitions: 3)
        let t1: Int64 = 1_700_000_000_000, t2: Int64 = 1_700_000_005_000
        #expect(try await h.produce("t", batch: try makeBatch(count: 3, producerId: 8, epoch: 2, sequence: 0, timestamp: t1))?.errorCode == 0)
        #expect(try await h.produce("t", batch: try makeBatch(count: 2, producerId: 8, epoch: 2, sequence: 3, timestamp: t2))?.errorCode == 0)
        #expect(try await h.produce("t", batch: try makeBatch(count: 1, producerId: 4, epoch: 0, sequence: 0, timestamp: t1))?.errorCode == 0)
        #expect(try await h.produce("t", batch: try makeBatch(count: 1))?.errorCode == 0, "a non-idempotent batch")
        try await h.core.registry.mutate { s in
            s.brokers[7] = BrokerInfo(id: 7, epoch: 1, incarnation: "other", host: "10.0.0.7", port: 9093, objectWAL: false,
                                      fenced: false, draining: false, stoppedCleanly: false)
            s.topics["t"]!.partitions[2].owner = 7
        }
        let parts = try await describeProducers(h, [0, 1, 2, 9])
        #expect(parts.map(\.partitionIndex) == [0, 1, 2, 9])
        #expect(parts[0].errorCode == 0)
        #expect(parts[0].activeProducers == [
            .init(producerId: 4, producerEpoch: 0, lastSequence: 0, lastTimestamp: t1, coordinatorEpoch: -1, currentTxnStartOffset: -1),
            .init(producerId: 8, producerEpoch: 2, lastSequence: 4, lastTimestamp: t2 + 1, coordinatorEpoch: -1, currentTxnStartOffset: -1),
        ])
        #expect(parts[1].errorCode == 0 && parts[1].activeProducers.isEmpty)
        #expect(parts[2].errorCode == KafkaErrorCode.notLeaderOrFollower.rawValue)
        #expect(parts[3].errorCode == KafkaErrorCode.unknownTopicOrPartition.rawValue)
        // A transaction producer 8 has open on the partition (first data at offset 5) is reported
        // from the partition's transaction index until its marker.
        let p0 = try #require(try await h.core.partitions.partition(topic: "t", index: 0))
        p0.state.withLock { $0.txns.data(producerId: 8, baseOffset: 5) }
        let withTxn = try await describeProducers(h, [0])
        #expect(withTxn[0].activeProducers.map { [$0.producerId, Int64($0.coordinatorEpoch), $0.currentTxnStartOffset] } == [[4, -1, -1], [8, -1, 5]])
        p0.state.withLock { $0.txns.marker(producerId: 8, commit: true, offset: 7) }
        let committed = try await describeProducers(h, [0])
        #expect(committed[0].activeProducers.map(\.currentTxnStartOffset) == [-1, -1])
    }

    @Test func clientMetricsResourcesAreNone() async throws {
        let h = try await Harness.make()
        let r = try await requireResponse(h.call(ListClientMetricsResourcesHandler(), .listClientMetricsResources(ListClientMetricsResourcesRequest()),
                                                 version: 0), as: ListClientMetricsResourcesResponse.self)
        #expect(r.errorCode == 0 && r.clientMetricsResources.isEmpty)
    }

    @Test func telemetrySubscriptionsRequestNoMetrics() async throws {
        let h = try await Harness.make()
        let fixed = KafkaUUID(mostSignificantBits: 0x1234_5678_9ABC_4DEF, leastSignificantBits: 0x8123_4567_89AB_CDEF)
        let telemetry = ClientTelemetry(newInstanceId: { fixed })
        let get = GetTelemetrySubscriptionsHandler(telemetry: telemetry)
        let first = try await requireResponse(h.call(get, .getTelemetrySubscriptions(GetTelemetrySubscriptionsRequest(clientInstanceId: .zero)), version: 0),
                                              as: GetTelemetrySubscriptionsResponse.self)
        #expect(first.errorCode == 0 && first.clientInstanceId == fixed, "a client without an id gets a new one")
        #expect(first.requestedMetrics.isEmpty && first.pushIntervalMs == 300_000 && first.telemetryMaxBytes == 1_048_576 && first.deltaTemporality)
        #expect(first.acceptedCompressionTypes == [4, 3, 1, 2])
        #expect(first.subscriptionId == telemetry.subscriptionId(for: fixed))
        let other = KafkaUUID(mostSignificantBits: 1, leastSignificantBits: 2)
        let again = try await requireResponse(h.call(get, .getTelemetrySubscriptions(GetTelemetrySubscriptionsRequest(clientInstanceId: other)), version: 0),
                                              as: GetTelemetrySubscriptionsResponse.self)
        #expect(again.clientInstanceId == other && again.subscriptionId == telemetry.subscriptionId(for: other))
        #expect(again.subscriptionId != first.subscriptionId)

        let push = PushTelemetryHandler(telemetry: telemetry)
        func pushCode(_ r: PushTelemetryRequest) async throws -> Int16 {
            try await requireResponse(h.call(push, .pushTelemetry(r), version: 0), as: PushTelemetryResponse.self).errorCode
        }
        #expect(try await pushCode(PushTelemetryRequest(clientInstanceId: fixed, subscriptionId: first.subscriptionId, metrics: [1, 2])) == 0)
        #expect(try await pushCode(PushTelemetryRequest(clientInstanceId: fixed, subscriptionId: first.subscriptionId &+ 1)) == 117,
                "UNKNOWN_SUBSCRIPTION_ID for a stale subscription")
        #expect(try await pushCode(PushTelemetryRequest(clientInstanceId: .zero, subscriptionId: 0)) == KafkaErrorCode.invalidRequest.rawValue)
        #expect(try await pushCode(PushTelemetryRequest(clientInstanceId: fixed, subscriptionId: first.subscriptionId, compressionType: 9))
                == KafkaErrorCode.unsupportedCompressionType.rawValue)
        #expect(try await pushCode(PushTelemetryRequest(clientInstanceId: fixed, subscriptionId: first.subscriptionId,
                                                        metrics: [UInt8](repeating: 0, count: 1_048_577))) == 118, "TELEMETRY_TOO_LARGE")
    }

    /// Kafka's subscription id for the empty subscription: CRC32C("[]300000") XOR the id's hash.
    @Test func subscriptionIdsFollowKafkasFormula() {
        let telemetry = ClientTelemetry()
        let crc = Int32(bitPattern: CRC32C.checksum(Array("[]300000".utf8)))
        #expect(telemetry.subscriptionId(for: .zero) == crc)
        let id = KafkaUUID(mostSignificantBits: 0x0000_0001_0000_0002, leastSignificantBits: 0)
        #expect(telemetry.subscriptionId(for: id) == crc ^ (1 ^ 2))
        let random = ClientTelemetry.randomInstanceId()
        #expect(random.mostSignificantBits >> 12 & 0xF == 4 && random.leastSignificantBits >> 62 == 2, "a version-4 UUID: \(random)")
    }

    /// ApiVersions advertises each new API at the versions its handler serves.
    @Test func apiVersionsAdvertisesTheAdminApis() async throws {
        let h = try await Harness.make()
        let handlers = Broker.standardHandlers(h.core) + [OffsetDeleteHandler(coordinator: GroupCoordinator(
            nodeId: 0, host: "h", port: 1, store: h.store, prefix: "groups/", clock: ManualClock(), topics: h.core, logger: .discarding))]
        let router = KafkaRouter(handlers: handlers)
        var w = ByteWriter()
        try RequestHeader.encodeRequest(ApiVersionsRequest(clientSoftwareName: "t", clientSoftwareVersion: "1"), version: 3, correlationId: 1,
                                        clientId: "t", into: &w)
        let result = await router.handle(ServerRequest(bytes: Array(w.bytes.dropFirst(4)), connection: ConnectionInfo(id: 1, peer: "p"), seq: 0))
        let bytes = try #require(result.respondBytes)
        let (_, body) = try ResponseHeader.decodeResponse(bytes[...], apiKey: .apiVersions, version: 3)
        let versions = try requireResponse(body, as: ApiVersionsResponse.self)
        var advertised: [Int16: ClosedRange<Int16>] = [:]
        for k in versions.apiKeys { advertised[k.apiKey] = k.minVersion...k.maxVersion }
        let expected: [(ApiKey, ClosedRange<Int16>)] = [
            (.offsetDelete, 0...0), (.describeLogDirs, 0...4), (.electLeaders, 0...2), (.describeProducers, 0...0),
            (.getTelemetrySubscriptions, 0...0), (.pushTelemetry, 0...0), (.listClientMetricsResources, 0...0),
        ]
        for (key, range) in expected { #expect(advertised[key.rawValue] == range, "\(key)") }
    }
}

/// The ACL rules of the admin APIs (Authorization+Admin.swift): allowed requests run unchanged,
/// refused ones get Kafka's error code.
struct AdminApisAccessTests {
    typealias Row = AccessCheckTests.Row
    static let t = AclResource.topic("t"), g = AclResource.group("g"), cluster = AclResource.cluster

    static let rows: [Row] = [
        Row(name: "OffsetDelete", request: .offsetDelete(OffsetDeleteRequest(groupId: "g", topics: [.init(name: "t", partitions: [.init(partitionIndex: 0)])])),
            version: 0, needs: [(.delete, g), (.read, t)], denied: .groupAuthorizationFailed),
        Row(name: "DescribeLogDirs", request: .describeLogDirs(DescribeLogDirsRequest(topics: nil)), version: 4, needs: [(.describe, cluster)],
            denied: .clusterAuthorizationFailed),
        Row(name: "ElectLeaders", request: .electLeaders(ElectLeadersRequest(electionType: 0, topicPartitions: [.init(topic: "t", partitions: [0])])),
            version: 2, needs: [(.alter, cluster)], denied: .clusterAuthorizationFailed),
        Row(name: "ElectLeaders v0", request: .electLeaders(ElectLeadersRequest(topicPartitions: [.init(topic: "t", partitions: [0])])),
            version: 0, needs: [(.alter, cluster)], denied: .clusterAuthorizationFailed),
        Row(name: "DescribeProducers", request: .describeProducers(DescribeProducersRequest(topics: [.init(name: "t", partitionIndexes: [0])])),
            version: 0, needs: [(.read, t)], denied: .topicAuthorizationFailed),
        Row(name: "ListClientMetricsResources", request: .listClientMetricsResources(ListClientMetricsResourcesRequest()), version: 0,
            needs: [(.describeConfigs, cluster)], denied: .clusterAuthorizationFailed),
    ]

    static func empty(for request: AnyRequest) -> AnyResponse? {
        switch request {
        case .offsetDelete: .offsetDelete(OffsetDeleteResponse())
        case .describeProducers: .describeProducers(DescribeProducersResponse())
        default: nil
        }
    }

    static func outcome(_ s: Screening, _ row: Row) -> (unchanged: Bool, codes: [Int16]) {
        switch s {
        case .pass: return (true, [])
        case .close: return (false, [])
        case let .answer(r): return (false, AccessCheckTests.errorCodes(r))
        case let .narrowed(req, complete):
            guard let empty = empty(for: row.request) else { return (false, []) }
            return (req == row.request, AccessCheckTests.errorCodes(complete(empty)))
        }
    }

    @Test(arguments: rows) func grantedRequestsRunUnchanged(_ row: Row) {
        let (unchanged, codes) = Self.outcome(AccessCheckTests.check(AccessCheckTests.grants(row.needs)).screen(row.request, version: row.version), row)
        #expect(unchanged)
        #expect(!codes.contains(row.denied.rawValue))
    }

    @Test(arguments: rows) func deniedRequestsGetTheirCode(_ row: Row) {
        let (unchanged, codes) = Self.outcome(AccessCheckTests.check([]).screen(row.request, version: row.version), row)
        #expect(!unchanged)
        #expect(codes.contains(row.denied.rawValue), "codes \(codes)")
    }

    @Test(arguments: rows) func grantsAreByPrincipal(_ row: Row) {
        let check = AccessCheckTests.check(AccessCheckTests.grants(row.needs, principal: "User:bob"))
        #expect(!Self.outcome(check.screen(row.request, version: row.version), row).unchanged)
    }

    /// DELETE on the group but not READ on the topic: the topic's partitions are refused, the
    /// rest of the request runs.
    @Test func offsetDeleteRefusesUnreadableTopicsOnly() throws {
        let request = OffsetDeleteRequest(groupId: "g", topics: [.init(name: "t", partitions: [.init(partitionIndex: 0)]),
                                                                 .init(name: "u", partitions: [.init(partitionIndex: 1)])])
        let check = AccessCheckTests.check(AccessCheckTests.grants([(.delete, Self.g), (.read, .topic("u"))]))
        guard case let .narrowed(narrowed, complete) = check.screen(.offsetDelete(request), version: 0) else {
            Issue.record("expected a narrowed request")
            return
        }
        #expect(narrowed == .offsetDelete(OffsetDeleteRequest(groupId: "g", topics: [.init(name: "u", partitions: [.init(partitionIndex: 1)])])))
        let answered = complete(.offsetDelete(OffsetDeleteResponse(topics: [.init(name: "u", partitions: [.init(partitionIndex: 1)])])))
        let out = try requireResponse(answered, as: OffsetDeleteResponse.self)
        #expect(out.topics.map(\.name) == ["u", "t"] && out.topics[1].partitions.first?.errorCode == KafkaErrorCode.topicAuthorizationFailed.rawValue)
        // A group-level error is answered alone, as Kafka does.
        let failed = complete(.offsetDelete(OffsetDeleteResponse(errorCode: KafkaErrorCode.groupIdNotFound.rawValue)))
        #expect(try requireResponse(failed, as: OffsetDeleteResponse.self).topics.isEmpty)
    }

    @Test func telemetryNeedsNoAcl() {
        let check = AccessCheckTests.check([])
        for request: AnyRequest in [.getTelemetrySubscriptions(GetTelemetrySubscriptionsRequest()), .pushTelemetry(PushTelemetryRequest())] {
            guard case .pass = check.screen(request, version: 0) else {
                Issue.record("\(request) was screened; Kafka lets every client ask")
                continue
            }
        }
    }
}
