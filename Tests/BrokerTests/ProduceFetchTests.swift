import Bytes
import FloeTestSupport
import KafkaProtocol
import ObjectStore
import Testing
@testable import Broker

@Suite struct ProduceFetchTests {
    @Test func producedRecordsComeBackWithAssignedOffsets() async throws {
        let h = try await Harness.make()
        try await h.createTopic("t")
        let b1 = try makeBatch(count: 3, seed: 1)
        let b2 = try makeBatch(count: 2, seed: 2)
        let r1 = try #require(try await h.produce("t", batch: b1))
        let r2 = try #require(try await h.produce("t", batch: b2, acks: 1))
        #expect(r1.errorCode == 0 && r1.baseOffset == 0)
        #expect(r2.errorCode == 0 && r2.baseOffset == 3)
        let f = try await h.fetch("t", offset: 0)
        #expect(f.errorCode == 0 && f.highWatermark == 5 && f.logStartOffset == 0)
        let records = try fetchedRecords(f.records)
        #expect(records.map(\.offset) == [0, 1, 2, 3, 4])
        // Offsets are stamped into the copy sent; the CRC still verifies (RecordBatchReader checks it).
        let sentValues = try RecordBatch(validating: b2[...]).records().map { Array($0.value ?? []) }
        #expect(records[3...].map(\.value) == sentValues)
    }

    @Test func acksZeroSendsNothingButAppends() async throws {
        let h = try await Harness.make()
        try await h.createTopic("t")
        let r = try await h.produce("t", batch: try makeBatch(count: 4), acks: 0)
        #expect(r == nil)
        #expect(try await h.fetch("t", offset: 0).highWatermark == 4)
    }

    @Test func invalidAcksAndUnknownTopicsAreErrors() async throws {
        let h = try await Harness.make()
        try await h.createTopic("t")
        #expect(try await h.produce("t", batch: try makeBatch(count: 1), acks: 2)?.errorCode == KafkaErrorCode.invalidRequiredAcks.rawValue)
        #expect(try await h.produce("nope", batch: try makeBatch(count: 1))?.errorCode == KafkaErrorCode.unknownTopicOrPartition.rawValue)
        #expect(try await h.produce("t", partition: 3, batch: try makeBatch(count: 1))?.errorCode == KafkaErrorCode.unknownTopicOrPartition.rawValue)
    }

    @Test func corruptAndLegacyBatchesAreRefusedWithClearErrors() async throws {
        let h = try await Harness.make()
        try await h.createTopic("t", configs: ["max.message.bytes": "200"])
        var corrupt = try makeBatch(count: 2)
        corrupt[corrupt.count - 1] ^= 0xFF
        let c = try #require(try await h.produce("t", batch: corrupt))
        #expect(c.errorCode == KafkaErrorCode.corruptMessage.rawValue)
        #expect(c.errorMessage?.contains("CRC") == true)
        var legacy = try makeBatch(count: 1)
        legacy[RecordBatchHeader.magicOffset] = 1
        let l = try #require(try await h.produce("t", batch: legacy))
        #expect(l.errorCode == KafkaErrorCode.invalidRecord.rawValue)
        #expect(l.errorMessage?.contains("magic 1") == true)
        let big = try #require(try await h.produce("t", batch: try makeBatch(count: 10, valueSize: 100)))
        #expect(big.errorCode == KafkaErrorCode.messageTooLarge.rawValue)
        #expect(try await h.fetch("t", offset: 0).highWatermark == 0)
    }

    @Test func produceAnswersOnlyOnceDurable() async throws {
        let h = try await Harness.make()
        let topic = try await h.createTopic("t")
        _ = try await h.core.partitions.partition(topic: "t", index: 0)
        let log = try #require(h.storage.log(topic.partitions[0].stream))
        log.holdDurability()
        let request = ProduceRequest(acks: -1, timeoutMs: 5000, topicData: [.init(name: "t", partitionData: [.init(index: 0, records: try makeBatch(count: 2)[...])])])
        let complete = try await requireCase(h.start(ProduceHandler(core: h.core), .produce(request), version: 9),
                                             "a deferred answer (produce with pending durability)", \.deferredAnswer)
        // Not durable: the fetch sees nothing yet, though the offset is assigned.
        #expect(try await h.fetch("t", offset: 0).highWatermark == 0)
        #expect(log.nextOffset == 2)
        log.releaseDurability()
        let p = try await requireResponse(complete(), as: ProduceResponse.self)
        #expect(p.responses[0].partitionResponses[0].baseOffset == 0)
        #expect(try await h.fetch("t", offset: 0).highWatermark == 2)
    }

    @Test func idempotentDuplicatesOutOfOrderAndFencing() async throws {
        let h = try await Harness.make()
        try await h.createTopic("t")
        let pid: Int64 = 7
        let first = try makeBatch(count: 3, producerId: pid, epoch: 0, sequence: 0)
        let second = try makeBatch(count: 2, producerId: pid, epoch: 0, sequence: 3)
        #expect(try await h.produce("t", batch: first)?.baseOffset == 0)
        #expect(try await h.produce("t", batch: second)?.baseOffset == 3)
        // A retry of the first batch gets its original offset and appends nothing.
        let dup = try #require(try await h.produce("t", batch: first))
        #expect(dup.errorCode == 0 && dup.baseOffset == 0)
        #expect(try await h.fetch("t", offset: 0).highWatermark == 5)
        // A gap is out of order.
        let gap = try makeBatch(count: 1, producerId: pid, epoch: 0, sequence: 9)
        #expect(try await h.produce("t", batch: gap)?.errorCode == KafkaErrorCode.outOfOrderSequenceNumber.rawValue)
        // A newer epoch must start at 0; then the old epoch is fenced.
        #expect(try await h.produce("t", batch: try makeBatch(count: 1, producerId: pid, epoch: 1, sequence: 4))?.errorCode
                == KafkaErrorCode.outOfOrderSequenceNumber.rawValue)
        #expect(try await h.produce("t", batch: try makeBatch(count: 1, producerId: pid, epoch: 1, sequence: 0))?.baseOffset == 5)
        #expect(try await h.produce("t", batch: try makeBatch(count: 1, producerId: pid, epoch: 0, sequence: 5))?.errorCode
                == KafkaErrorCode.invalidProducerEpoch.rawValue)
    }

    @Test func producerStateSurvivesRestartThroughSnapshotAndLogReplay() async throws {
        let h = try await Harness.make()
        try await h.createTopic("t")
        let a = try makeBatch(count: 2, producerId: 11, epoch: 0, sequence: 0)
        let b = try makeBatch(count: 2, producerId: 11, epoch: 0, sequence: 2)
        #expect(try await h.produce("t", batch: a)?.baseOffset == 0)
        try await h.core.partitions.snapshotProducers()   // snapshot covers a
        #expect(try await h.produce("t", batch: b)?.baseOffset == 2)   // only in the log
        let h2 = try await h.restarted()
        #expect(try await h2.produce("t", batch: a)?.baseOffset == 0)   // from the snapshot
        #expect(try await h2.produce("t", batch: b)?.baseOffset == 2)   // replayed from the log
        let c = try makeBatch(count: 1, producerId: 11, epoch: 0, sequence: 5)
        #expect(try await h2.produce("t", batch: c)?.errorCode == KafkaErrorCode.outOfOrderSequenceNumber.rawValue)
        #expect(try await h2.fetch("t", offset: 0).highWatermark == 4)
    }

    @Test func fetchLongPollWakesOnProduce() async throws {
        let h = try await Harness.make()
        try await h.createTopic("t")
        let request = FetchRequest(maxWaitMs: 60_000, minBytes: 1, maxBytes: 1 << 20, topics: [
            .init(topic: "t", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)]),
        ])
        let complete = try await requireCase(h.start(FetchHandler(core: h.core), .fetch(request), version: 11),
                                             "a deferred answer (an empty fetch with max wait)", \.deferredAnswer)
        async let answer = complete()
        // The wait is 60 s: the answer arriving proves the produce woke it.
        #expect(try await h.produce("t", batch: try makeBatch(count: 2))?.errorCode == 0)
        let f = try await requireResponse(answer, as: FetchResponse.self)
        #expect(try fetchedRecords(f.responses[0].partitions[0].records).count == 2)
    }

    @Test func fetchHonoursMaxBytesButReturnsOneOversizedBatch() async throws {
        let h = try await Harness.make()
        try await h.createTopic("t", partitions: 2)
        for _ in 0..<4 { _ = try await h.produce("t", batch: try makeBatch(count: 5, valueSize: 200)) }
        let size = try makeBatch(count: 5, valueSize: 200).count
        // Smaller than one batch: still one batch.
        let one = try await h.fetch("t", offset: 0, partitionMaxBytes: 10)
        #expect(one.records?.count == size)
        // Two and a half batches: two.
        let two = try await h.fetch("t", offset: 0, partitionMaxBytes: Int32(size * 5 / 2))
        #expect(two.records?.count == 2 * size)
        // Offset in the middle of a batch returns that batch.
        let mid = try await h.fetch("t", offset: 7, partitionMaxBytes: 10)
        #expect(try fetchedRecords(mid.records).first?.offset == 5)
        // Out of range.
        #expect(try await h.fetch("t", offset: 21).errorCode == KafkaErrorCode.offsetOutOfRange.rawValue)
        #expect(try await h.fetch("t", offset: 20).records?.count == 0)
        // Response limit: the second partition gets nothing once the first filled the response.
        _ = try await h.produce("t", partition: 1, batch: try makeBatch(count: 5, valueSize: 200))
        let req = FetchRequest(maxWaitMs: 0, minBytes: 1, maxBytes: Int32(size), topics: [
            .init(topic: "t", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20),
                                           .init(partition: 1, fetchOffset: 0, partitionMaxBytes: 1 << 20)]),
        ])
        let f = try await requireResponse(h.call(FetchHandler(core: h.core), .fetch(req), version: 11), as: FetchResponse.self)
        #expect(f.responses[0].partitions[0].records?.count == size)
        #expect(f.responses[0].partitions[1].records?.count == 0)
    }

    @Test func fetchByTopicIdFromVersion13() async throws {
        let h = try await Harness.make()
        let t = try await h.createTopic("t")
        _ = try await h.produce("t", batch: try makeBatch(count: 1))
        let req = FetchRequest(maxWaitMs: 0, minBytes: 1, maxBytes: 1 << 20, topics: [
            .init(topicId: t.topicID, partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)]),
            .init(topicId: KafkaUUID(mostSignificantBits: 1, leastSignificantBits: 2), partitions: [.init(partition: 0, fetchOffset: 0)]),
        ])
        let f = try await requireResponse(h.call(FetchHandler(core: h.core), .fetch(req), version: 13), as: FetchResponse.self)
        #expect(f.responses[0].topicId == t.topicID)
        #expect(try fetchedRecords(f.responses[0].partitions[0].records).count == 1)
        #expect(f.responses[1].partitions[0].errorCode == KafkaErrorCode.unknownTopicId.rawValue)
    }

    @Test func listOffsetsEarliestLatestTimestampAndMax() async throws {
        let h = try await Harness.make()
        try await h.createTopic("t")
        _ = try await h.produce("t", batch: try makeBatch(count: 3, timestamp: 1000))   // 1000…1002 at 0…2
        _ = try await h.produce("t", batch: try makeBatch(count: 3, timestamp: 5000))   // 5000…5002 at 3…5
        _ = try await h.produce("t", batch: try makeBatch(count: 2, timestamp: 2000))   // 2000…2001 at 6…7
        func query(_ ts: Int64) async throws -> (Int64, Int64) {
            let req = ListOffsetsRequest(replicaId: -1, topics: [.init(name: "t", partitions: [.init(partitionIndex: 0, timestamp: ts)])])
            let r = try await requireResponse(h.call(ListOffsetsHandler(core: h.core), .listOffsets(req), version: 7), as: ListOffsetsResponse.self)
            let p = r.topics[0].partitions[0]
            return (p.offset, p.timestamp)
        }
        #expect(try await query(-1).0 == 8)
        #expect(try await query(-2).0 == 0)
        #expect(try await query(1001) == (1, 1001))
        #expect(try await query(4000) == (3, 5000))
        #expect(try await query(-3) == (5, 5002))
        #expect(try await query(9000) == (-1, -1))
        try await h.core.partitions.partition(topic: "t", index: 0)!.log.trim(to: 3)
        #expect(try await query(-2).0 == 3)
    }

    @Test func deleteRecordsMovesTheStartOffset() async throws {
        let h = try await Harness.make()
        try await h.createTopic("t")
        _ = try await h.produce("t", batch: try makeBatch(count: 3))
        _ = try await h.produce("t", batch: try makeBatch(count: 3))
        let req = DeleteRecordsRequest(topics: [.init(name: "t", partitions: [.init(partitionIndex: 0, offset: 3), .init(partitionIndex: 5, offset: 1)])])
        let r = try await requireResponse(h.call(DeleteRecordsHandler(core: h.core), .deleteRecords(req), version: 2), as: DeleteRecordsResponse.self)
        #expect(r.topics[0].partitions[0].lowWatermark == 3)
        #expect(r.topics[0].partitions[1].errorCode == KafkaErrorCode.unknownTopicOrPartition.rawValue)
        #expect(try await h.fetch("t", offset: 0).errorCode == KafkaErrorCode.offsetOutOfRange.rawValue)
        #expect(try fetchedRecords(try await h.fetch("t", offset: 3).records).first?.offset == 3)
    }

    @Test func initProducerIdIsUniqueAcrossRestarts() async throws {
        let h = try await Harness.make()
        var ids: Set<Int64> = []
        for v: Int16 in [0, 1, 2, 3, 4, 5] {
            let r = try await requireResponse(h.call(InitProducerIdHandler(core: h.core), .initProducerId(InitProducerIdRequest()), version: v), as: InitProducerIdResponse.self)
            #expect(r.errorCode == 0 && r.producerEpoch == 0)
            ids.insert(r.producerId)
        }
        let h2 = try await h.restarted()
        let r = try await requireResponse(h2.call(InitProducerIdHandler(core: h2.core), .initProducerId(InitProducerIdRequest()), version: 0), as: InitProducerIdResponse.self)
        #expect(!ids.contains(r.producerId))
        #expect(ids.count == 6)
        // A transactional id: a new producer id at epoch 0, then the epoch bumped on each init.
        let t = try await requireResponse(h2.call(InitProducerIdHandler(core: h2.core), .initProducerId(InitProducerIdRequest(transactionalId: "tx", transactionTimeoutMs: 60_000)), version: 4), as: InitProducerIdResponse.self)
        #expect(t.errorCode == 0 && t.producerEpoch == 0 && !ids.contains(t.producerId) && t.producerId != r.producerId)
        let t2 = try await requireResponse(h2.call(InitProducerIdHandler(core: h2.core), .initProducerId(InitProducerIdRequest(transactionalId: "tx", transactionTimeoutMs: 60_000)), version: 4), as: InitProducerIdResponse.self)
        #expect(t2.errorCode == 0 && t2.producerId == t.producerId && t2.producerEpoch == 1)
        let bad = try await requireResponse(h2.call(InitProducerIdHandler(core: h2.core), .initProducerId(InitProducerIdRequest(transactionalId: "tx", transactionTimeoutMs: 900_001)), version: 4), as: InitProducerIdResponse.self)
        #expect(bad.errorCode == KafkaErrorCode.invalidTransactionTimeout.rawValue)
    }

    @Test func retentionBySizeDropsOldBatches() async throws {
        let h = try await Harness.make()
        let one = try makeBatch(count: 1, valueSize: 100).count
        try await h.createTopic("t", configs: ["retention.bytes": "\(one * 3)"])
        for _ in 0..<10 { _ = try await h.produce("t", batch: try makeBatch(count: 1, valueSize: 100)) }
        try await h.core.partitions.applyRetention(nowMillis: wallMillis(), brokerConfig: h.core.config)
        let log = try #require(try await h.core.partitions.partition(topic: "t", index: 0)).log
        #expect(log.startOffset == 7)
        #expect(log.endOffset == 10)
    }

    /// KIP-951: a partition owned by another broker answers NOT_LEADER_OR_FOLLOWER with its owner
    /// and epoch (Produce v10+, Fetch v12+) and the owner's endpoint (Produce v10+, Fetch v16+),
    /// encoded on the wire; older versions carry no hint.
    @Test func notLeaderAnswersNameTheCurrentOwner() async throws {
        let h = try await Harness.make()
        try await h.createTopic("t")
        try await h.core.registry.mutate { s in
            s.brokers[7] = BrokerInfo(id: 7, epoch: 1, incarnation: "other", host: "10.0.0.7", port: 9093, objectWAL: false,
                                      fenced: false, draining: false, stoppedCleanly: false)
            s.topics["t"]!.partitions[0].owner = 7
            s.topics["t"]!.partitions[0].leaderEpoch = 3
        }
        let produce = ProduceRequest(acks: -1, timeoutMs: 5000, topicData: [
            .init(name: "t", partitionData: [.init(index: 0, records: try makeBatch(count: 1)[...])]),
        ])
        let p10 = try await requireResponse(h.call(ProduceHandler(core: h.core), .produce(produce), version: 10), as: ProduceResponse.self)
        let pr = try #require(p10.responses.first?.partitionResponses.first)
        #expect(pr.errorCode == KafkaErrorCode.notLeaderOrFollower.rawValue)
        #expect(pr.currentLeader == .init(leaderId: 7, leaderEpoch: 3))
        #expect(p10.nodeEndpoints == [.init(nodeId: 7, host: "10.0.0.7", port: 9093, rack: nil)])
        var w = ByteWriter()
        try p10.encode(to: &w, version: 10)
        var r = ByteReader(w.take())
        let decoded = try ProduceResponse(from: &r, version: 10)
        #expect(decoded.nodeEndpoints == p10.nodeEndpoints && decoded.responses[0].partitionResponses[0].currentLeader == pr.currentLeader)
        let p9 = try await requireResponse(h.call(ProduceHandler(core: h.core), .produce(produce), version: 9), as: ProduceResponse.self)
        #expect(p9.nodeEndpoints.isEmpty && p9.responses[0].partitionResponses[0].currentLeader == .init())

        let f12 = try await h.fetch("t", offset: 0, version: 12)
        #expect(f12.errorCode == KafkaErrorCode.notLeaderOrFollower.rawValue)
        #expect(f12.currentLeader == .init(leaderId: 7, leaderEpoch: 3))
        let request = FetchRequest(maxWaitMs: 0, minBytes: 1, maxBytes: 1 << 20, topics: [
            .init(topicId: try #require(h.core.registry.topic(named: "t")).topicID, partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)]),
        ])
        let f16 = try await requireResponse(h.call(FetchHandler(core: h.core), .fetch(request), version: 16), as: FetchResponse.self)
        #expect(f16.nodeEndpoints.map(\.nodeId) == [7] && f16.responses[0].partitions[0].currentLeader.leaderId == 7)
        let f11 = try await h.fetch("t", offset: 0, version: 11)
        #expect(f11.errorCode == KafkaErrorCode.notLeaderOrFollower.rawValue && f11.currentLeader == .init())
    }

    /// A produce that arrives while its partition is handed over is held until the move
    /// commits, and its NOT_LEADER_OR_FOLLOWER answer then names the new owner (an answer given
    /// at once would name this broker, still the owner in the metadata).
    @Test func produceDuringHandOverWaitsAndNamesTheNewOwner() async throws {
        let h = try await Harness.make()
        try await h.createTopic("t")
        #expect(try await h.produce("t", batch: try makeBatch(count: 1), version: 10)?.errorCode == 0)
        let epoch = try #require(h.core.registry.topic(named: "t")).partitions[0].leaderEpoch
        try await h.core.partitions.handOver(topic: "t", index: 0, leaderEpoch: epoch)
        let batch = try makeBatch(count: 1)
        let held = Task { try await h.produce("t", batch: batch, version: 10) }
        let deadline = ContinuousClock.now + .seconds(10)
        while h.core.partitions.heldRequests == 0 && ContinuousClock.now < deadline { await Task.yield() }
        #expect(h.core.partitions.heldRequests == 1)
        try await h.core.registry.mutate { s in
            s.brokers[7] = BrokerInfo(id: 7, epoch: 1, incarnation: "other", host: "10.0.0.7", port: 9093, objectWAL: false,
                                      fenced: false, draining: false, stoppedCleanly: false)
            s.topics["t"]!.partitions[0].owner = 7
            s.topics["t"]!.partitions[0].leaderEpoch = epoch + 1
        }
        let answer = try #require(try await held.value)
        #expect(answer.errorCode == KafkaErrorCode.notLeaderOrFollower.rawValue)
        #expect(answer.currentLeader == .init(leaderId: 7, leaderEpoch: epoch + 1))
        #expect(h.core.partitions.heldRequests == 0)
    }

    /// DescribeTopicPartitions: all topics by name when none is named, unknown ones flagged, at
    /// most `responsePartitionLimit` partitions per answer, and a cursor that resumes exactly
    /// where the previous answer stopped.
    @Test func describeTopicPartitionsPagesWithACursor() async throws {
        let h = try await Harness.make()
        try await h.createTopic("b", partitions: 3)
        try await h.createTopic("a", partitions: 2)
        let handler = DescribeTopicPartitionsHandler(core: h.core)
        var seen: [String] = []
        var cursor: DescribeTopicPartitionsRequest.Cursor? = nil
        var pages = 0
        repeat {
            let request = DescribeTopicPartitionsRequest(topics: [], responsePartitionLimit: 2, cursor: cursor)
            let r = try await requireResponse(h.call(handler, .describeTopicPartitions(request), version: 0), as: DescribeTopicPartitionsResponse.self)
            for t in r.topics {
                #expect(t.errorCode == 0 && t.topicId != .zero)
                for p in t.partitions {
                    #expect(p.leaderId == 0 && p.replicaNodes == [0] && p.isrNodes == [0])
                    seen.append("\(t.name ?? "?")-\(p.partitionIndex)")
                }
            }
            #expect(r.topics.flatMap(\.partitions).count <= 2)
            cursor = r.nextCursor.map { .init(topicName: $0.topicName, partitionIndex: $0.partitionIndex) }
            pages += 1
        } while cursor != nil && pages < 10
        #expect(seen == ["a-0", "a-1", "b-0", "b-1", "b-2"])
        #expect(pages == 3)

        let unknown = try await requireResponse(
            h.call(handler, .describeTopicPartitions(DescribeTopicPartitionsRequest(topics: [.init(name: "zz")], responsePartitionLimit: 100)), version: 0),
            as: DescribeTopicPartitionsResponse.self)
        #expect(unknown.topics.map(\.errorCode) == [KafkaErrorCode.unknownTopicOrPartition.rawValue])
    }
}
