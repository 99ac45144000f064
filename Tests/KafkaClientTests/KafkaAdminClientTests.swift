import Broker
import FloeTestSupport
import Foundation
import KafkaClient
import KafkaProtocol
import ObjectStore
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

// Broker has a TopicPartition of its own (consumer groups); these tests mean the client's.
typealias TopicPartition = KafkaClient.TopicPartition

/// Brokers with node ids 1…n in this process, sharing one in-memory bucket (each with its own
/// in-memory log). Broker 1 starts first and becomes the controller.
struct TestCluster {
    let brokers: [TestBroker]
    var bootstrap: [BrokerAddress] { brokers.map { BrokerAddress(host: "127.0.0.1", port: $0.port) } }

    static func start(_ n: Int) async throws -> TestCluster {
        let store = MemoryObjectStore(name: "admin-cluster")
        var brokers: [TestBroker] = []
        for id in 1...n {
            var config = BrokerConfig()
            config.set("listen", "127.0.0.1:0", .flag)
            config.set("node.id", "\(id)", .flag)
            let broker = try await Broker.start(settings: .init(config: config), store: store, storage: MemoryLogStorage())
            brokers.append(TestBroker(broker: broker, task: Task { try await broker.run() }))
        }
        return TestCluster(brokers: brokers)
    }

    /// Stops the brokers, the controller (broker 1) last.
    func stop() async throws {
        for b in brokers.reversed() { try await b.stop() }
    }
}

/// A fake Kafka broker on 127.0.0.1 for one connection: answers ApiVersions with `apis`, and
/// every other request with what `answer` returns for it (nil: close the connection). Records
/// each request's API and version.
final class ScriptedPeer: Sendable {
    let listener: RawListener
    let apis: [ApiKey: ClosedRange<Int16>]
    let answer: @Sendable (AnyRequest, Int) -> (any KafkaMessage)?
    private let seen = Mutex<[(ApiKey, Int16)]>([])

    var port: Int { listener.port }
    var requests: [(api: ApiKey, version: Int16)] { seen.withLock { $0.map { (api: $0.0, version: $0.1) } } }

    /// `answer` gets each request and how many of its API came before it.
    init(apis: [ApiKey: ClosedRange<Int16>], answer: @escaping @Sendable (AnyRequest, Int) -> (any KafkaMessage)?) throws {
        self.listener = try RawListener()
        self.apis = apis
        self.answer = answer
        Thread { [self] in serve() }.start()
    }

    private func serve() {
        let peer = accept(listener.fd, nil, nil)
        guard peer >= 0 else { return }
        defer { close(peer) }
        var decoder = FrameDecoder()
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(peer, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return }
            decoder.feed(chunk[0..<n])
            while let frame = try? decoder.nextFrame() {
                guard let request = try? RequestHeader.decodeRequest(frame[...]) else { return }
                let count = seen.withLock { s in
                    defer { s.append((request.apiKey, request.apiVersion)) }
                    return s.filter { $0.0 == request.apiKey }.count
                }
                let response: (any KafkaMessage)?
                if request.apiKey == .apiVersions {
                    response = ApiVersionsResponse(
                        errorCode: 0,
                        apiKeys: apis.map { .init(apiKey: $0.key.rawValue, minVersion: $0.value.lowerBound, maxVersion: $0.value.upperBound) })
                } else if let body = try? request.decodeBody() {
                    response = answer(body, count)
                } else {
                    response = nil
                }
                guard let response, let bytes = Self.frame(response, api: request.apiKey, version: request.apiVersion,
                                                           correlationId: request.correlationId) else { return }
                _ = bytes.withUnsafeBytes { send(peer, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            }
        }
    }

    static func frame(_ response: any KafkaMessage, api: ApiKey, version: Int16, correlationId: Int32) -> [UInt8]? {
        guard let header = try? ResponseHeader(correlationId: correlationId).encoded(version: api.responseHeaderVersion(apiVersion: version)),
              let body = try? response.encoded(version: version) else { return nil }
        let size = UInt32(header.count + body.count)
        return [UInt8(size >> 24), UInt8(size >> 16 & 0xFF), UInt8(size >> 8 & 0xFF), UInt8(size & 0xFF)] + header + body
    }
}

func adminError(_ error: any Error, sourceLocation: SourceLocation = #_sourceLocation) throws -> KafkaClientError {
    try clientError(error, sourceLocation: sourceLocation)
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes; false then.
func eventually(within timeout: Duration, _ check: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await check() { return true }
        try await Task.sleep(for: .milliseconds(50))
    }
    return try await check()
}

@Suite(.serialized) struct KafkaAdminClientTests {
    @Test func brokerAddressParsing() throws {
        #expect(try BrokerAddress(parsing: "broker-0.floe:9092") == BrokerAddress(host: "broker-0.floe", port: 9092))
        #expect(try BrokerAddress(parsing: "[::1]:9093") == BrokerAddress(host: "::1", port: 9093))
        #expect(BrokerAddress(host: "::1", port: 9093).description == "[::1]:9093")
        for bad in ["broker", ":9092", "h:0", "h:70000", "h:x"] {
            #expect(throws: KafkaClientError.self, "\(bad)") { try BrokerAddress(parsing: bad) }
        }
        #expect(TopicPartition("a", 2) < TopicPartition("a", 10))
        #expect(TopicPartition("a", 10) < TopicPartition("b", 0))
        #expect(TopicPartition("orders", 3).description == "orders-3")
        #expect(KafkaErrorCode.notLeaderOrFollower.name == "NOT_LEADER_OR_FOLLOWER")
        #expect(KafkaErrorCode.unknownServerError.name == "UNKNOWN_SERVER_ERROR")
        for code in [KafkaErrorCode.notController, .requestTimedOut, .leaderNotAvailable, .notLeaderOrFollower, .coordinatorNotAvailable,
                     .brokerNotAvailable, .networkException] {
            #expect(code.isRetriableByAdmin, "\(code.name)")
        }
        #expect(!KafkaErrorCode.unknownServerError.isRetriableByAdmin)
        #expect(!KafkaErrorCode.invalidRequest.isRetriableByAdmin)
    }

    @Test func bootstrapSkipsARefusingAndASilentAddress() async throws {
        let b = try await TestBroker.start()
        let refused: Int
        do { refused = try RawListener().port }  // closed again: nothing listens there
        let silent = try RawListener()  // accepts into its backlog, never answers
        let live = BrokerAddress(host: "127.0.0.1", port: b.port)
        let admin = KafkaAdminClient(
            bootstrap: [BrokerAddress(host: "127.0.0.1", port: refused), BrokerAddress(host: "127.0.0.1", port: silent.port), live],
            requestTimeout: .seconds(2), attempts: 1)
        let start = ContinuousClock.now
        let metadata = try await admin.metadata()
        #expect(ContinuousClock.now - start < .seconds(10))
        #expect(metadata.brokers.map(\.port) == [b.port])
        // The next call starts at the broker that answered: it does not wait out the silent one's
        // 2 s request timeout (the bound is that timeout, not a performance figure).
        #expect(admin.addresses.first == live)
        let again = ContinuousClock.now
        _ = try await admin.describeCluster()
        #expect(ContinuousClock.now - again < .seconds(2))
        admin.close()
        await #expect(throws: KafkaClientError.self) { try await admin.metadata() }
        try await b.stop()
    }

    @Test func everyAddressUnreachableThrowsTheLastConnectionError() async throws {
        let refused: Int
        do { refused = try RawListener().port }
        let admin = KafkaAdminClient(
            bootstrap: [BrokerAddress(host: "127.0.0.1", port: refused)], requestTimeout: .milliseconds(300), attempts: 3,
            retryBackoff: .milliseconds(100))
        let start = ContinuousClock.now
        do {
            _ = try await admin.metadata()
            Issue.record("metadata from a closed port")
        } catch {
            let e = try adminError(error)
            #expect(e.kind == .connectFailed(code: ECONNREFUSED, reason: String(cString: strerror(ECONNREFUSED))))
            #expect(e.description.contains("127.0.0.1:\(refused)"))
        }
        // Three attempts, two backoffs between them.
        #expect(ContinuousClock.now - start >= .milliseconds(200))
        admin.close()
    }

    @Test func metadataDescribeClusterAndCreateTopicTwice() async throws {
        let b = try await TestBroker.start()
        let admin = KafkaAdminClient(bootstrap: [BrokerAddress(host: "127.0.0.1", port: b.port)])
        try await admin.createTopic("orders", partitions: 3, configs: ["retention.ms": "3600000"])
        try await admin.createTopic("orders", partitions: 3)  // TOPIC_ALREADY_EXISTS is success
        try await admin.createTopic("audit", partitions: 1)

        let all = try await admin.metadata()
        #expect(all.brokers == [ClusterBroker(id: 0, host: "127.0.0.1", port: b.port, rack: nil)])
        #expect(all.controllerId == 0)
        #expect(all.partitions.map(\.topicPartition) == [
            TopicPartition("audit", 0), TopicPartition("orders", 0), TopicPartition("orders", 1), TopicPartition("orders", 2),
        ])
        #expect(all.partitions.allSatisfy { $0.leader == 0 && $0.error == nil && $0.leaderEpoch >= 0 })

        let some = try await admin.metadata(topics: ["orders", "missing"])
        #expect(Set(some.partitions.map(\.topic)) == ["orders"])
        #expect(some.topicErrors == ["missing": .unknownTopicOrPartition])

        let cluster = try await admin.describeCluster()
        #expect(cluster.controllerId == 0)
        #expect(!cluster.clusterId.isEmpty)
        #expect(cluster.brokers.map(\.id) == [0])
        #expect(cluster.brokers.map(\.port) == [b.port])
        admin.close()
        try await b.stop()
    }

    @Test func reassignMovesAPartitionAndReportsPerPartitionErrors() async throws {
        let cluster = try await TestCluster.start(2)
        let admin = KafkaAdminClient(bootstrap: cluster.bootstrap)
        let described = try await admin.describeCluster()
        #expect(described.brokers.map(\.id).sorted() == [1, 2])
        #expect(described.controllerId == 1)

        try await admin.createTopic("moves", partitions: 4)
        let before = try await admin.metadata(topics: ["moves"])
        let tp = TopicPartition("moves", 0)
        let owner = try #require(before.partition(tp))
        #expect([1, 2].contains(owner.leader))
        let target: Int32 = owner.leader == 1 ? 2 : 1

        let results = try await admin.reassign([tp: target, TopicPartition("no-such-topic", 0): target, TopicPartition("moves", 99): target])
        #expect(results.count == 3)
        #expect(results[tp] == .some(nil), "\(results)")
        #expect(results[TopicPartition("no-such-topic", 0)] == .some(.unknownTopicOrPartition))
        #expect(results[TopicPartition("moves", 99)] == .some(.unknownTopicOrPartition))

        // The move completes: metadata (from either broker) names the target at a newer epoch.
        let moved = try await eventually(within: .seconds(20)) {
            guard let p = try await admin.metadata(topics: ["moves"]).partition(tp) else { return false }
            return p.leader == target && p.leaderEpoch > owner.leaderEpoch
        }
        #expect(moved, "moves-0 never moved from broker \(owner.leader) to \(target)")
        // Nothing is in progress once it has.
        #expect(try await admin.listReassignments() == [])
        // The other partitions stayed where they were.
        let after = try await admin.metadata(topics: ["moves"])
        for p in before.partitions where p.partition != 0 {
            #expect(after.partition(p.topicPartition)?.leader == p.leader)
        }
        // A broker that is not registered is refused per partition.
        let unknown = try await admin.reassign([TopicPartition("moves", 1): 42])
        #expect(unknown[TopicPartition("moves", 1)] == .some(.invalidReplicaAssignment))
        #expect(try await admin.reassign([:]).isEmpty)
        admin.close()
        try await cluster.stop()
    }

    @Test func brokersListedByMetadataOutliveTheBootstrapAddress() async throws {
        let cluster = try await TestCluster.start(2)
        let viaTwo = cluster.bootstrap[1]
        let admin = KafkaAdminClient(bootstrap: [viaTwo], requestTimeout: .seconds(2), attempts: 2)
        let first = try await admin.metadata()
        #expect(first.brokers.map(\.id).sorted() == [1, 2])
        #expect(Set(admin.addresses) == Set(cluster.bootstrap))
        // The only bootstrap address goes away; broker 1, learned from Metadata, answers.
        try await cluster.brokers[1].stop()
        let described = try await admin.describeCluster()
        #expect(described.brokers.map(\.id) == [1])
        #expect(admin.addresses.first == cluster.bootstrap[0])
        admin.close()
        try await cluster.brokers[0].stop()
    }

    @Test func drainingBrokerGetsNoNewPartitions() async throws {
        let cluster = try await TestCluster.start(2)
        // Bootstrap through broker 2: the change is forwarded to the controller (broker 1).
        let admin = KafkaAdminClient(bootstrap: [cluster.bootstrap[1]], retryBackoff: .seconds(3))
        try await admin.setDraining(broker: 2, true)
        try await admin.createTopic("while-draining", partitions: 4)
        let drained = try await admin.metadata(topics: ["while-draining"])
        #expect(drained.partitions.count == 4)
        #expect(drained.partitions.allSatisfy { $0.leader == 1 }, "\(drained.partitions)")

        try await admin.setDraining(broker: 2, false)
        try await admin.createTopic("after-draining", partitions: 4)
        let placed = try await admin.metadata(topics: ["after-draining"])
        #expect(placed.partitions.contains { $0.leader == 2 }, "\(placed.partitions)")

        // An unknown broker id is refused at once (INVALID_REQUEST is not retried).
        let start = ContinuousClock.now
        do {
            try await admin.setDraining(broker: 42, true)
            Issue.record("draining an unknown broker was accepted")
        } catch {
            let e = try adminError(error)
            let (api, code, resource) = try requireCase(e.kind, ".kafka") {
                if case let .kafka(api, code, _, resource) = $0 { (api, code, resource) } else { nil }
            }
            #expect(api == .incrementalAlterConfigs)
            #expect(code == KafkaErrorCode.invalidRequest.rawValue)
            #expect(resource == "broker 42")
            #expect(e.description.contains("INVALID_REQUEST"))
        }
        // Not retried: a single retry would have slept the 3 s backoff.
        #expect(ContinuousClock.now - start < .seconds(3))
        admin.close()
        try await cluster.stop()
    }

    @Test func retriableErrorIsRetriedAndVersionsAreNegotiated() async throws {
        let peer = try ScriptedPeer(apis: [.describeCluster: 0...0]) { request, count in
            guard case .describeCluster = request else { return nil }
            return DescribeClusterResponse(
                errorCode: count < 2 ? KafkaErrorCode.notController.rawValue : 0, clusterId: "scripted", controllerId: 3,
                brokers: [.init(brokerId: 3, host: "127.0.0.1", port: 1)])
        }
        let admin = KafkaAdminClient(bootstrap: [BrokerAddress(host: "127.0.0.1", port: peer.port)], retryBackoff: .milliseconds(50))
        let cluster = try await admin.describeCluster()
        #expect(cluster.clusterId == "scripted")
        #expect(cluster.controllerId == 3)
        #expect(cluster.brokers == [ClusterBroker(id: 3, host: "127.0.0.1", port: 1)])
        // ApiVersions once, then DescribeCluster three times at the one version the peer serves.
        #expect(peer.requests.map(\.api) == [.apiVersions, .describeCluster, .describeCluster, .describeCluster])
        #expect(peer.requests.dropFirst().allSatisfy { $0.version == 0 })
        // The broker it listed joined the rotation, after the bootstrap address.
        #expect(admin.addresses == [BrokerAddress(host: "127.0.0.1", port: peer.port), BrokerAddress(host: "127.0.0.1", port: 1)])
        admin.close()
    }

    @Test func retriesStopAfterTheAttempts() async throws {
        let peer = try ScriptedPeer(apis: [.describeCluster: 0...1]) { _, _ in
            DescribeClusterResponse(errorCode: KafkaErrorCode.notController.rawValue, errorMessage: "no controller yet")
        }
        let admin = KafkaAdminClient(bootstrap: [BrokerAddress(host: "127.0.0.1", port: peer.port)], attempts: 3,
                                     retryBackoff: .milliseconds(20))
        do {
            _ = try await admin.describeCluster()
            Issue.record("NOT_CONTROLLER every time, yet an answer")
        } catch {
            let e = try adminError(error)
            #expect(e.kind == .kafka(api: .describeCluster, code: KafkaErrorCode.notController.rawValue, message: "no controller yet", resource: nil))
            #expect(e.description.contains("DescribeCluster failed: NOT_CONTROLLER (41): no controller yet"))
        }
        #expect(peer.requests.filter { $0.api == .describeCluster }.count == 3)
        #expect(peer.requests.last?.version == 1)
        admin.close()
    }

    @Test func nonRetriableErrorIsThrownAtOnce() async throws {
        let peer = try ScriptedPeer(apis: [.createTopics: 0...7]) { request, _ in
            guard case let .createTopics(r) = request else { return nil }
            return CreateTopicsResponse(topics: r.topics.map {
                .init(name: $0.name, errorCode: KafkaErrorCode.unknownServerError.rawValue, errorMessage: "disk on fire")
            })
        }
        let admin = KafkaAdminClient(bootstrap: [BrokerAddress(host: "127.0.0.1", port: peer.port)], retryBackoff: .seconds(5))
        let start = ContinuousClock.now
        do {
            try await admin.createTopic("t", partitions: 1)
            Issue.record("UNKNOWN_SERVER_ERROR was taken for success")
        } catch {
            let e = try adminError(error)
            #expect(e.kind == .kafka(api: .createTopics, code: -1, message: "disk on fire", resource: "topic t"))
            #expect(e.description.contains("UNKNOWN_SERVER_ERROR"))
        }
        #expect(ContinuousClock.now - start < .seconds(5))
        #expect(peer.requests.map(\.api) == [.apiVersions, .createTopics])
        #expect(peer.requests.last?.version == 7)
        admin.close()
    }

    @Test func noCommonVersionIsAClearError() async throws {
        let peer = try ScriptedPeer(apis: [.metadata: 0...0]) { _, _ in nil }
        let admin = KafkaAdminClient(bootstrap: [BrokerAddress(host: "127.0.0.1", port: peer.port)])
        do {
            _ = try await admin.metadata()
            Issue.record("Metadata v0 was used")
        } catch {
            let e = try adminError(error)
            #expect(e.kind == .unsupportedVersion(api: .metadata, broker: 0...0, client: 1...MetadataRequest.validVersions.upperBound))
        }
        admin.close()
    }

    @Test func listReassignmentsReadsEveryPartition() async throws {
        let peer = try ScriptedPeer(apis: [.listPartitionReassignments: 0...0]) { _, _ in
            ListPartitionReassignmentsResponse(topics: [
                .init(name: "b", partitions: [.init(partitionIndex: 0, replicas: [1, 2], addingReplicas: [2], removingReplicas: [1])]),
                .init(name: "a", partitions: [
                    .init(partitionIndex: 5, replicas: [3, 1], addingReplicas: [1], removingReplicas: [3]),
                    .init(partitionIndex: 1, replicas: [2, 3], addingReplicas: [3], removingReplicas: [2]),
                ]),
            ])
        }
        let admin = KafkaAdminClient(bootstrap: [BrokerAddress(host: "127.0.0.1", port: peer.port)])
        let list = try await admin.listReassignments()
        #expect(list == [
            PartitionReassignment(topicPartition: TopicPartition("a", 1), replicas: [2, 3], adding: [3], removing: [2]),
            PartitionReassignment(topicPartition: TopicPartition("a", 5), replicas: [3, 1], adding: [1], removing: [3]),
            PartitionReassignment(topicPartition: TopicPartition("b", 0), replicas: [1, 2], adding: [2], removing: [1]),
        ])
        admin.close()
    }
}
