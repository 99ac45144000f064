import Foundation
import KafkaClient
import KafkaProtocol
import ObjectStore
import StreamStorage
import Support
import Synchronization
import Testing
@testable import Broker

#if canImport(Glibc)
import Glibc
#endif

/// A connection to a test broker on 127.0.0.1 through the project's Kafka client.
func connectE2E(port: UInt16) async throws -> KafkaConnection {
    try await KafkaConnection.connect(host: "127.0.0.1", port: Int(port), clientId: "e2e")
}

/// A broker on real storage (local-directory bucket, file WAL) in a temporary directory.
struct LiveBroker {
    let broker: Broker
    let task: Task<Void, any Error>
    let root: String

    static func start(root: String) async throws -> LiveBroker {
        let store = try LocalDirectoryObjectStore(root: root)
        let url = try StorageURL("file://" + root)
        var config = BrokerConfig()
        config.set("listen", "127.0.0.1:0", .flag)
        let metrics = MetricsRegistry()
        let storage = try await BrokerStorage.open(store: store, url: url, walKind: "file", config: config, metrics: metrics, logger: .discarding)
        let broker = try await Broker.start(settings: .init(config: config), store: store, storage: storage, metrics: metrics)
        let task = Task { try await broker.run() }
        return LiveBroker(broker: broker, task: task, root: root)
    }

    func stop() async throws {
        broker.shutdown()
        try await task.value
    }
}

@Suite(.serialized) struct BrokerEndToEndTests {
    static func tempRoot() -> String {
        let path = NSTemporaryDirectory() + "floe-broker-e2e-\(UInt64.random(in: 1...UInt64.max))"
        return path
    }

    func produce(_ c: KafkaConnection, _ topic: String, _ batch: [UInt8], acks: Int16, version: Int16 = 9) async throws -> ProduceResponse.PartitionProduceResponse {
        let p = try await c.send(ProduceRequest(acks: acks, timeoutMs: 5000, topicData: [.init(name: topic, partitionData: [.init(index: 0, records: batch[...])])]),
                                 version: version, expecting: ProduceResponse.self)
        return try #require(p.responses.first?.partitionResponses.first)
    }

    /// A fetch of partition 0; the call's own timeout outlasts the broker's `maxWaitMs` wait.
    func fetch(_ c: KafkaConnection, _ topic: String, offset: Int64, maxWaitMs: Int32 = 0) async throws -> FetchResponse.PartitionData {
        let f = try await c.send(FetchRequest(maxWaitMs: maxWaitMs, minBytes: 1, maxBytes: 1 << 20, topics: [
            .init(topic: topic, partitions: [.init(partition: 0, fetchOffset: offset, partitionMaxBytes: 1 << 20)])]),
                                 version: 11, expecting: FetchResponse.self, timeout: .milliseconds(Int(maxWaitMs)) + .seconds(30))
        return try #require(f.responses.first?.partitions.first)
    }

    /// SIGTERM (shutdown) must not wait out a long poll: a Fetch parked with the largest max
    /// wait a client can ask for answers at once, empty, and the broker stops.
    @Test func shutdownAnswersParkedFetchesAtOnce() async throws {
        let root = Self.tempRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }  // cleanup of a temporary directory
        let live = try await LiveBroker.start(root: root)
        let c = try await connectE2E(port: live.broker.port)
        let ct = try await c.send(CreateTopicsRequest(topics: [.init(name: "parked", numPartitions: 1, replicationFactor: 1)]), version: 7,
                                  expecting: CreateTopicsResponse.self)
        #expect(ct.topics.first?.errorCode == 0)
        let parked = Task { try await fetch(c, "parked", offset: 0, maxWaitMs: Int32.max) }
        // Wait until the Fetch is parked (the broker counts them), not for a fixed time.
        var spins = 0
        while live.broker.core.parked.count == 0 {
            try await Task.sleep(for: .milliseconds(5))
            spins += 1
            try #require(spins < 2_000, "the Fetch never parked")
        }
        // A hang here (the old behaviour: shutdown waited for the long poll) fails after 60 s
        // instead of blocking the suite (the stuck stop is left behind); this is a bound on a
        // hang, not a timing check.
        let stopped = Atomic<Bool>(false)
        let stopping = Task {
            try await live.stop()
            stopped.store(true, ordering: .relaxed)
        }
        var waited = 0
        while !stopped.load(ordering: .relaxed) && waited < 12_000 {
            try await Task.sleep(for: .milliseconds(5))
            waited += 1
        }
        let didStop = stopped.load(ordering: .relaxed)
        try #require(didStop, "the broker did not stop within 60 s with a Fetch parked")
        try await stopping.value
        let answer = try await parked.value
        #expect(answer.errorCode == 0)
        #expect(try fetchedRecords(answer.records).isEmpty)
        c.close()
    }

    @Test func clientsProduceFetchAdministerAndRestart() async throws {
        let root = Self.tempRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }  // cleanup of a temporary directory
        let live = try await LiveBroker.start(root: root)
        let port = live.broker.port
        let c = try await connectE2E(port: port)

        // ApiVersions v3 lists what is served.
        let av = try await c.send(ApiVersionsRequest(clientSoftwareName: "e2e", clientSoftwareVersion: "1"), version: 3, expecting: ApiVersionsResponse.self)
        #expect(av.errorCode == 0)
        #expect(av.apiKeys.first { $0.apiKey == ApiKey.produce.rawValue }?.maxVersion == 11)
        #expect(av.apiKeys.contains { $0.apiKey == ApiKey.joinGroup.rawValue })

        // Topic admin and configs.
        let ct = try await c.send(CreateTopicsRequest(topics: [
            .init(name: "e2e", numPartitions: 1, replicationFactor: 3, configs: [.init(name: "retention.ms", value: "86400000")])]), version: 7, expecting: CreateTopicsResponse.self)
        #expect(ct.topics[0].errorCode == 0)
        let dc = try await c.send(DescribeConfigsRequest(resources: [.init(resourceType: 2, resourceName: "e2e", configurationKeys: ["retention.ms"])]), version: 4, expecting: DescribeConfigsResponse.self)
        #expect(dc.results[0].configs.first?.value == "86400000")

        // acks=1, acks=all, acks=0.
        #expect(try await produce(c, "e2e", try makeBatch(count: 3, seed: 1), acks: 1).baseOffset == 0)
        #expect(try await produce(c, "e2e", try makeBatch(count: 3, seed: 2), acks: -1).baseOffset == 3)
        // KafkaConnection returns at once for acks=0 and waits for no answer under its
        // correlation ID.
        _ = try await c.send(ProduceRequest(acks: 0, timeoutMs: 5000, topicData: [.init(name: "e2e", partitionData: [.init(index: 0, records: try makeBatch(count: 2, seed: 3)[...])])]), version: 9)
        // The next answer on the connection is the ListOffsets one: acks=0 got none. A
        // ProduceResponse here (the answer acks=0 must not get) would carry a correlation ID no
        // call waits for; KafkaConnection then closes the connection and this call fails.
        let lo = try await c.send(ListOffsetsRequest(replicaId: -1, topics: [.init(name: "e2e", partitions: [.init(partitionIndex: 0, timestamp: -1)])]), version: 7, expecting: ListOffsetsResponse.self)
        // The acks=0 batch is appended in order; it may still be on its way to durability.
        #expect(lo.topics[0].partitions[0].offset >= 6)

        // Idempotent producer: duplicate and out of order.
        let ip = try await c.send(InitProducerIdRequest(), version: 4, expecting: InitProducerIdResponse.self)
        let pid = ip.producerId
        let first = try makeBatch(count: 2, producerId: pid, epoch: 0, sequence: 0, seed: 4)
        let base = try await produce(c, "e2e", first, acks: -1).baseOffset
        #expect(base == 8)
        let dup = try await produce(c, "e2e", first, acks: -1)
        #expect(dup.errorCode == 0 && dup.baseOffset == base)
        #expect(try await produce(c, "e2e", try makeBatch(count: 1, producerId: pid, epoch: 0, sequence: 5), acks: -1).errorCode
                == KafkaErrorCode.outOfOrderSequenceNumber.rawValue)

        // Long poll: a fetch at the end waits (60 s) until a produce on another connection wakes it.
        let consumer = try await connectE2E(port: port)
        async let waiting = fetch(consumer, "e2e", offset: 10, maxWaitMs: 60_000)
        let producer = try await connectE2E(port: port)
        #expect(try await produce(producer, "e2e", try makeBatch(count: 4, seed: 5), acks: 1).baseOffset == 10)
        let woken = try await waiting
        #expect(try fetchedRecords(woken.records).map(\.offset) == [10, 11, 12, 13])

        let all = try fetchedRecords(try await fetch(c, "e2e", offset: 0).records)
        #expect(all.map(\.offset) == Array(0..<14))
        try await live.stop()

        // Restart over the same bucket and WAL directory.
        let again = try await LiveBroker.start(root: root)
        let c2 = try await connectE2E(port: again.broker.port)
        let md = try await c2.send(MetadataRequest(topics: nil), version: 12, expecting: MetadataResponse.self)
        #expect(md.topics.map(\.name) == ["e2e"])
        // A fetch may answer with fewer batches than there are (after a restart the first ones
        // can come from an object and the rest from the WAL); read on as a consumer does.
        var after: [(offset: Int64, value: [UInt8])] = []
        for _ in 0..<20 where after.count < all.count {
            let more = try fetchedRecords(try await fetch(c2, "e2e", offset: Int64(after.count)).records)
            if more.isEmpty { break }
            after += more
        }
        #expect(after.map(\.offset) == all.map(\.offset))
        #expect(after.map(\.value) == all.map(\.value))
        // Producer state carried over: the old batch is still a duplicate, and the next sequence appends.
        #expect(try await produce(c2, "e2e", first, acks: -1).baseOffset == base)
        #expect(try await produce(c2, "e2e", try makeBatch(count: 1, producerId: pid, epoch: 0, sequence: 2), acks: -1).baseOffset == 14)
        let ip2 = try await c2.send(InitProducerIdRequest(), version: 0, expecting: InitProducerIdResponse.self)
        #expect(ip2.producerId != pid)
        try await again.stop()
        // The connections stay open through both shutdowns (this also keeps them alive that long).
        for connection in [c, consumer, producer, c2] { connection.close() }
    }

    @Test func startupErrorsNameWhatFailed() async throws {
        let root = Self.tempRoot()
        defer { try? FileManager.default.removeItem(atPath: root) }  // cleanup of a temporary directory
        let live = try await LiveBroker.start(root: root)
        var config = BrokerConfig()
        config.set("listen", "127.0.0.1:\(live.broker.port)", .flag)
        do {
            _ = try await Broker.start(settings: .init(config: config), store: MemoryObjectStore(name: "x"), storage: MemoryLogStorage())
            Issue.record("a taken port must fail")
        } catch {
            #expect("\(error)".contains("127.0.0.1:\(live.broker.port)"))
        }
        try await live.stop()
    }

    @Test func probesAndMetrics() async throws {
        var config = BrokerConfig()
        config.set("listen", "127.0.0.1:0", .flag)
        config.set("http", "127.0.0.1:0", .flag)
        let broker = try await Broker.start(settings: .init(config: config), store: MemoryObjectStore(name: "m"), storage: MemoryLogStorage())
        let task = Task { try await broker.run() }
        let httpPort = try #require(broker.httpPort)
        let c = try await connectE2E(port: broker.port)
        _ = try await c.send(CreateTopicsRequest(topics: [.init(name: "m", numPartitions: 1, replicationFactor: 1)]), version: 4)
        _ = try await produce(c, "m", try makeBatch(count: 5), acks: 1)
        /// A plain HTTP GET on the probe port (HTTP, not Kafka: a raw socket is enough).
        func get(_ path: String) async throws -> String {
            try await withCheckedThrowingContinuation { cont in
                Thread {
                    cont.resume(with: Result {
                        let fd = try TestClient.connect(port: httpPort)
                        defer { close(fd) }
                        let req = Array("GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
                        _ = req.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
                        var out: [UInt8] = []
                        var chunk = [UInt8](repeating: 0, count: 65536)
                        while true {
                            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                            if n <= 0 { break }
                            out += chunk[0..<n]
                        }
                        return String(decoding: out, as: UTF8.self)
                    })
                }.start()
            }
        }
        let metrics = try await get("/metrics")
        #expect(metrics.contains("floe_broker_partition_records_in_total{partition=\"0\",topic=\"m\"} 5"))
        #expect(metrics.contains("floe_broker_requests_total{api=\"Produce\"} 1"))
        #expect(metrics.contains("process_resident_memory_bytes"))
        #expect(metrics.contains("floe_broker_connections 1"))
        #expect(try await get("/healthz").hasPrefix("HTTP/1.1 200"))
        #expect(try await get("/readyz").hasPrefix("HTTP/1.1 200"))
        #expect(try await get("/drain").hasPrefix("HTTP/1.1 200"))
        #expect(try await get("/readyz").hasPrefix("HTTP/1.1 503"))
        #expect(try await get("/nope").hasPrefix("HTTP/1.1 404"))
        broker.shutdown()
        try await task.value
        c.close()  // after the metrics were read: `floe_broker_connections 1` counts this connection
    }

    /// An external listener: clients that connect there are given the external addresses (in
    /// Metadata, DescribeCluster, FindCoordinator), clients of the internal listener the
    /// internal ones; `{node}` and `{N+node}` in `external.advertise` are expanded.
    @Test func externalListenerAdvertisesExternalAddresses() async throws {
        var config = BrokerConfig()
        config.set("listen", "127.0.0.1:0", .flag)
        config.set("advertise", "broker-7.internal:9092", .flag)
        config.set("node.id", "7", .flag)
        config.set("external.listen", "127.0.0.1:0", .flag)
        config.set("external.advertise", "ext-{node}.example.com:{31090+node}", .flag)
        let broker = try await Broker.start(settings: .init(config: config), store: MemoryObjectStore(name: "ext"), storage: MemoryLogStorage())
        let task = Task { try await broker.run() }
        let externalPort = try #require(broker.externalPort)
        let inside = try await connectE2E(port: broker.port)
        let outside = try await connectE2E(port: externalPort)

        let metaIn = try await inside.send(MetadataRequest(topics: []), version: 12, expecting: MetadataResponse.self)
        #expect(metaIn.brokers.map { "\($0.nodeId) \($0.host):\($0.port)" } == ["7 broker-7.internal:9092"])
        let metaOut = try await outside.send(MetadataRequest(topics: []), version: 12, expecting: MetadataResponse.self)
        #expect(metaOut.brokers.map { "\($0.nodeId) \($0.host):\($0.port)" } == ["7 ext-7.example.com:31097"])

        let cluster = try await outside.send(DescribeClusterRequest(), version: 1, expecting: DescribeClusterResponse.self)
        #expect(cluster.brokers.map { "\($0.host):\($0.port)" } == ["ext-7.example.com:31097"])
        let coordinator = try await outside.send(FindCoordinatorRequest(key: "g", keyType: 0), version: 3, expecting: FindCoordinatorResponse.self)
        #expect("\(coordinator.host):\(coordinator.port)" == "ext-7.example.com:31097")
        let coordinatorIn = try await inside.send(FindCoordinatorRequest(key: "g", keyType: 0), version: 3, expecting: FindCoordinatorResponse.self)
        #expect("\(coordinatorIn.host):\(coordinatorIn.port)" == "broker-7.internal:9092")
        broker.shutdown()
        try await task.value
        inside.close()
        outside.close()
    }

    @Test func externalAdvertiseTemplates() throws {
        let listen = try SocketAddress(parsing: "0.0.0.0:9094")
        #expect(try Broker.externalEndpoint("h-{node}:{31090+node}", listen: listen, boundPort: 9094, node: 2) == BrokerEndpoint(host: "h-2", port: 31092))
        #expect(try Broker.externalEndpoint("203.0.113.7", listen: listen, boundPort: 9094, node: 2) == BrokerEndpoint(host: "203.0.113.7", port: 9094))
        #expect(throws: BrokerError.self) { try Broker.externalEndpoint("h:{x}", listen: listen, boundPort: 9094, node: 2) }
        #expect(throws: BrokerError.self) { try Broker.externalEndpoint("h:{70000+node}", listen: listen, boundPort: 9094, node: 2) }
        #expect(throws: BrokerError.self) { try Broker.externalEndpoint("h:{node", listen: listen, boundPort: 9094, node: 2) }
    }
}
