import KafkaClient
import KafkaProtocol
import Testing

@testable import floe_bench

@Suite struct LeaderTableTests {
    let b1 = BrokerAddress(host: "127.0.0.1", port: 19092)
    let b2 = BrokerAddress(host: "127.0.0.1", port: 19093)
    let b3 = BrokerAddress(host: "127.0.0.1", port: 19094)

    func metadata(_ leaders: [(partition: Int32, leader: Int32, epoch: Int32)], topic: String = "t") -> ClusterMetadata {
        ClusterMetadata(
            clusterId: "c", controllerId: 1,
            brokers: [ClusterBroker(id: 1, host: b1.host, port: b1.port), ClusterBroker(id: 2, host: b2.host, port: b2.port)],
            partitions: leaders.map { PartitionInfo(topic: topic, partition: $0.partition, leader: $0.leader, leaderEpoch: $0.epoch) })
    }

    func routed(_ table: LeaderTable, _ partition: Int32) -> Int32? { table.route(partition)?.broker }

    @Test func metadataRoutesEachPartitionToItsLeader() {
        var table = LeaderTable()
        let r1 = table.update(from: metadata([(0, 1, 0), (1, 2, 0)]), topic: "t")
        #expect(r1 == 2)
        #expect(table.route(0)?.address == b1)
        #expect(table.route(1)?.address == b2)
        #expect(table.route(2) == nil)
        // Another topic's partitions are not taken.
        let r2 = table.update(from: metadata([(0, 2, 9)], topic: "other"), topic: "t")
        #expect(r2 == 0)
        #expect(routed(table, 0) == 1)
    }

    @Test func hintWithEndpointRoutesWithoutMetadata() {
        var table = LeaderTable()
        table.update(from: metadata([(3, 1, 4)]), topic: "t")
        let r3 = table.applyHint(partition: 3, leader: 3, epoch: 5, endpoints: [3: b3])
        #expect(r3)
        #expect(table.route(3)?.broker == 3)
        #expect(table.route(3)?.address == b3)
        // A Metadata answer from a broker that has not caught up does not move it back.
        let r4 = table.update(from: metadata([(3, 1, 4)]), topic: "t")
        #expect(r4 == 0)
        #expect(routed(table, 3) == 3)
        // A newer epoch does.
        let r5 = table.update(from: metadata([(3, 2, 6)]), topic: "t")
        #expect(r5 == 1)
        #expect(routed(table, 3) == 2)
    }

    @Test func hintToAKnownBrokerNeedsNoEndpoint() {
        var table = LeaderTable()
        table.update(from: metadata([(0, 1, 0)]), topic: "t")
        let r6 = table.applyHint(partition: 0, leader: 2, epoch: 1, endpoints: [:])
        #expect(r6)
        #expect(table.route(0)?.address == b2)
    }

    @Test func hintToAnUnknownBrokerWithoutEndpointNeedsMetadata() {
        var table = LeaderTable()
        table.update(from: metadata([(0, 1, 0)]), topic: "t")
        let r7 = table.applyHint(partition: 0, leader: 7, epoch: 1, endpoints: [:])
        #expect(!r7)
        #expect(table.route(0) == nil)
        // Metadata that lists broker 7 completes the route.
        var md = metadata([(0, 7, 1)])
        md.brokers.append(ClusterBroker(id: 7, host: "10.0.0.7", port: 9092))
        table.update(from: md, topic: "t")
        #expect(table.route(0)?.address == BrokerAddress(host: "10.0.0.7", port: 9092))
    }

    @Test func noHintOrAStaleHintLeavesTheRoute() {
        var table = LeaderTable()
        table.update(from: metadata([(0, 2, 5)]), topic: "t")
        let r8 = table.applyHint(partition: 0, leader: -1, epoch: -1, endpoints: [:])
        #expect(!r8)
        #expect(routed(table, 0) == 2)
        // An older hint: the newer route stands (and is usable, so no Metadata is needed).
        let r9 = table.applyHint(partition: 0, leader: 1, epoch: 4, endpoints: [:])
        #expect(r9)
        #expect(routed(table, 0) == 2)
    }

    @Test func unknownEpochsReplace() {
        var table = LeaderTable()
        table.update(from: metadata([(0, 1, -1)]), topic: "t")
        let r10 = table.update(from: metadata([(0, 2, -1)]), topic: "t")
        #expect(r10 == 1)
        #expect(routed(table, 0) == 2)
    }

    @Test func partitionWithoutLeaderLosesItsRoute() {
        var table = LeaderTable()
        table.update(from: metadata([(0, 1, 3)]), topic: "t")
        table.update(from: metadata([(0, -1, 4)]), topic: "t")
        #expect(table.route(0) == nil)
        table.update(from: metadata([(0, 2, 4)]), topic: "t")
        #expect(routed(table, 0) == 2)
    }
}

@Suite struct PartitionAnswerTests {
    @Test func movesAreRetriedOtherErrorsAreNot() {
        #expect(PartitionAnswer(errorCode: 0) == .accepted)
        for code in [KafkaErrorCode.notLeaderOrFollower, .leaderNotAvailable, .fencedLeaderEpoch, .unknownLeaderEpoch] {
            #expect(PartitionAnswer(errorCode: code.rawValue) == .moved)
        }
        #expect(PartitionAnswer(errorCode: KafkaErrorCode.unknownTopicOrPartition.rawValue) == .unknownPartition)
        #expect(PartitionAnswer(errorCode: KafkaErrorCode.messageTooLarge.rawValue) == .failed(.messageTooLarge))
        #expect(PartitionAnswer(errorCode: 9999) == .failed(nil))
    }

    @Test func retryDelays() {
        let policy = RetryPolicy()
        #expect((1...5).map { policy.delayMs(beforeResend: $0, hinted: false) } == [50, 100, 200, 400, 800])
        #expect(policy.delayMs(beforeResend: 3, hinted: true) == 0)
        #expect(policy.delayMs(beforeResend: 40, hinted: false) == 1000)
    }
}
