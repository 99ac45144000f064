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

/// A real broker in this process on 127.0.0.1:0, with in-memory bucket and log.
struct TestBroker {
    let broker: Broker
    let task: Task<Void, any Error>
    var port: Int { Int(broker.port) }

    static func start() async throws -> TestBroker {
        let broker = try await Broker.start(
            settings: .init(listen: "127.0.0.1:0"), store: MemoryObjectStore(name: "kafka-client"), storage: MemoryLogStorage())
        let task = Task { try await broker.run() }
        return TestBroker(broker: broker, task: task)
    }

    func stop() async throws {
        broker.shutdown()
        try await task.value
    }
}

/// A listening socket on 127.0.0.1 that the test drives by hand (or not at all).
final class RawListener: Sendable {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, sa, &length) == 0
            }
        }
        guard bound else {
            close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        self.fd = fd
        self.port = Int(UInt16(bigEndian: addr.sin_port))
    }

    deinit { close(fd) }

    /// On a thread of its own: accepts one connection, reads once, writes `reply`, closes it.
    func serveOnce(reply: [UInt8], readFirst: Int) {
        let fd = self.fd
        Thread {
            let peer = accept(fd, nil, nil)
            guard peer >= 0 else { return }
            var got = 0
            var buffer = [UInt8](repeating: 0, count: 4096)
            while got < readFirst {
                let n = buffer.withUnsafeMutableBytes { recv(peer, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                got += n
            }
            _ = reply.withUnsafeBytes { send(peer, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            close(peer)
        }.start()
    }
}

func clientError(_ error: any Error, sourceLocation: SourceLocation = #_sourceLocation) throws -> KafkaClientError {
    try requireType(error, as: KafkaClientError.self, sourceLocation: sourceLocation)
}

@Suite(.serialized) struct KafkaClientTests {
    @Test func apiVersionsMetadataAndCreateTopics() async throws {
        let b = try await TestBroker.start()
        // "localhost" goes through getaddrinfo (it may list ::1 first, which refuses; 127.0.0.1 answers).
        let c = try await KafkaConnection.connect(host: "localhost", port: b.port, clientId: "kafka-client-tests")
        let versions = try KafkaResponse.expect(
            try await c.send(ApiVersionsRequest(clientSoftwareName: "floe-test", clientSoftwareVersion: "1"), version: 3),
            ApiVersionsResponse.self)
        #expect(versions.errorCode == KafkaErrorCode.none.rawValue)
        #expect(versions.apiKeys.contains { $0.apiKey == ApiKey.metadata.rawValue })

        let created = try await c.send(
            CreateTopicsRequest(topics: [.init(name: "orders", numPartitions: 3, replicationFactor: 1)]), version: 4,
            expecting: CreateTopicsResponse.self)
        #expect(created.topics.map(\.name) == ["orders"])
        #expect(created.topics.first?.errorCode == KafkaErrorCode.none.rawValue)

        let metadata = try await c.send(MetadataRequest(topics: nil), version: 12, expecting: MetadataResponse.self)
        #expect(metadata.brokers.map(\.port) == [Int32(b.port)])
        let orders = try #require(metadata.topics.first { $0.name == "orders" })
        #expect(orders.partitions.count == 3)

        // The forwarding path: an already-decoded request.
        let forwarded = try await c.send(.metadata(MetadataRequest(topics: [.init(name: "orders")])), apiKey: .metadata, version: 9)
        let forwardedBody = try KafkaResponse.expect(forwarded, MetadataResponse.self)
        #expect(forwardedBody.topics.map(\.name) == ["orders"])
        #expect(throws: KafkaClientError.self) { try KafkaResponse.expect(forwarded, FetchResponse.self) }
        await #expect(throws: KafkaClientError.self) {
            try await c.send(.metadata(MetadataRequest()), apiKey: .fetch, version: 9)
        }
        c.close()
        #expect(c.isClosed)
        try await b.stop()
    }

    @Test func produceThenFetch() async throws {
        let b = try await TestBroker.start()
        let c = try await KafkaConnection.connect(host: "127.0.0.1", port: b.port)
        _ = try await c.send(CreateTopicsRequest(topics: [.init(name: "t", numPartitions: 1, replicationFactor: 1)]), version: 4)
        var builder = RecordBatchBuilder()
        for i in 0..<5 { builder.append(timestamp: 1_700_000_000_000 + Int64(i), key: nil, value: Array("v\(i)".utf8)) }
        let batch = try builder.build()
        let produced = try await c.send(
            ProduceRequest(acks: -1, timeoutMs: 5000, topicData: [.init(name: "t", partitionData: [.init(index: 0, records: batch[...])])]),
            version: 9, expecting: ProduceResponse.self)
        let partition = try #require(produced.responses.first?.partitionResponses.first)
        #expect(partition.errorCode == KafkaErrorCode.none.rawValue)
        #expect(partition.baseOffset == 0)

        let fetched = try await c.send(
            FetchRequest(maxWaitMs: 0, minBytes: 1, maxBytes: 1 << 20, topics: [
                .init(topic: "t", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)]),
            ]), version: 11, expecting: FetchResponse.self)
        let data = try #require(fetched.responses.first?.partitions.first)
        #expect(data.errorCode == KafkaErrorCode.none.rawValue)
        let records = try RecordBatchReader.batches(in: try #require(data.records)).flatMap { try $0.records() }
        #expect(records.map { Array($0.value ?? []) } == (0..<5).map { Array("v\($0)".utf8) })
        c.close()
        try await b.stop()
    }

    @Test func largeRequestsGoThroughTheOutboundBuffer() async throws {
        let b = try await TestBroker.start()
        let c = try await KafkaConnection.connect(host: "127.0.0.1", port: b.port)
        _ = try await c.send(CreateTopicsRequest(topics: [.init(name: "big", numPartitions: 1, replicationFactor: 1)]), version: 4)
        // 16 batches of 512 KiB (under the broker's 1 MiB message.max.bytes) sent at once: more
        // than a socket buffer takes without blocking, so the I/O thread finishes the writes.
        let value = [UInt8](repeating: 0x5A, count: 512 << 10)
        let offsets = try await withThrowingTaskGroup(of: Int64.self) { group in
            for i in 0..<16 {
                group.addTask {
                    var builder = RecordBatchBuilder()
                    builder.append(timestamp: 1_700_000_000_000 + Int64(i), key: nil, value: value)
                    let batch = try builder.build()
                    let r = try await c.send(
                        ProduceRequest(acks: -1, timeoutMs: 5000, topicData: [.init(name: "big", partitionData: [.init(index: 0, records: batch[...])])]),
                        version: 9, expecting: ProduceResponse.self)
                    let p = try #require(r.responses.first?.partitionResponses.first)
                    #expect(p.errorCode == KafkaErrorCode.none.rawValue, "\(p)")
                    return p.baseOffset
                }
            }
            var out: [Int64] = []
            for try await o in group { out.append(o) }
            return out
        }
        #expect(offsets.sorted() == Array(0..<16))
        #expect(!c.isClosed)
        c.close()
        try await b.stop()
    }

    @Test func oversizedResponseFrameClosesTheConnection() async throws {
        let peer = try RawListener()
        peer.serveOnce(reply: [0x7F, 0, 0, 0, 0, 0, 0, 1], readFirst: 1)  // announces ~2 GiB
        let c = try await KafkaConnection.connect(host: "127.0.0.1", port: peer.port)
        do {
            _ = try await c.send(ApiVersionsRequest(), version: 0, timeout: .seconds(10))
            Issue.record("an oversized frame was accepted")
        } catch {
            let e = try clientError(error)
            let cause = KafkaClientError(
                address: "", kind: .badFrame(error: .frameTooLarge(size: 0x7F00_0000, limit: FrameDecoder.defaultMaxFrameSize)))
            #expect(e.kind == .closed(reason: cause.detail))
            #expect(e.description.contains("127.0.0.1:\(peer.port)"))
        }
        #expect(c.isClosed)
    }

    @Test func fiftyConcurrentCallsShareOneConnection() async throws {
        let b = try await TestBroker.start()
        let c = try await KafkaConnection.connect(host: "127.0.0.1", port: b.port)
        // Each call asks about a topic of its own; the answer names it, so a mixed-up answer shows.
        let names = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
            for i in 0..<50 {
                group.addTask {
                    if i % 5 == 0 {
                        let v = try await c.send(ApiVersionsRequest(), version: 0, expecting: ApiVersionsResponse.self)
                        return (i, v.errorCode == 0 ? "versions-\(i)" : nil)
                    }
                    let m = try await c.send(
                        MetadataRequest(topics: [.init(name: "missing-\(i)")], allowAutoTopicCreation: false), version: 9,
                        expecting: MetadataResponse.self)
                    return (i, m.topics.count == 1 ? m.topics[0].name : nil)
                }
            }
            var out: [Int: String?] = [:]
            for try await (i, name) in group { out[i] = name }
            return out
        }
        #expect(names.count == 50)
        for i in 0..<50 {
            #expect(names[i] == (i % 5 == 0 ? "versions-\(i)" : "missing-\(i)"))
        }
        #expect(!c.isClosed)
        c.close()
        try await b.stop()
    }

    @Test func timeoutAgainstASilentPeerClosesTheConnection() async throws {
        let silent = try RawListener()  // listens, never accepts or reads
        let c = try await KafkaConnection.connect(host: "127.0.0.1", port: silent.port)
        let start = ContinuousClock.now
        let other = Task { try await c.send(ApiVersionsRequest(), version: 0, timeout: .seconds(20)) }
        do {
            _ = try await c.send(ApiVersionsRequest(), version: 3, timeout: .milliseconds(200))
            Issue.record("a silent peer answered")
        } catch {
            let e = try clientError(error)
            #expect(e.kind == .requestTimeout(api: .apiVersions, version: 3, correlationId: e.timeoutCorrelationId, milliseconds: 200))
            #expect(e.description.contains("127.0.0.1:\(silent.port)"))
            #expect(e.description.contains("200 ms"))
        }
        #expect(ContinuousClock.now - start < .seconds(5))
        #expect(c.isClosed)
        // The other pending call failed with the closing reason, not its own 20 s timeout.
        let otherResult = await other.result
        #expect(ContinuousClock.now - start < .seconds(5))
        let otherError = try clientError(try #require(otherResult.failureValue))
        #expect(otherError.isClosed)
        // Later calls fail at once, not after a request timeout.
        let later = ContinuousClock.now
        await #expect(throws: KafkaClientError.self) { try await c.send(ApiVersionsRequest(), version: 0) }
        #expect(ContinuousClock.now - later < .seconds(5))
    }

    @Test func connectRefusedNamesTheAddress() async throws {
        let port: Int
        do {
            let l = try RawListener()
            port = l.port
        }  // closed: nothing listens there now
        do {
            _ = try await KafkaConnection.connect(host: "127.0.0.1", port: port, timeout: .seconds(2))
            Issue.record("connected to a closed port")
        } catch {
            let e = try clientError(error)
            #expect(e.kind == .connectFailed(code: ECONNREFUSED, reason: String(cString: strerror(ECONNREFUSED))))
            #expect(e.description.contains("127.0.0.1:\(port)"))
            #expect(e.description.contains("refused"))
        }
        await #expect(throws: KafkaClientError.self) {
            _ = try await KafkaConnection.connect(host: "no-such-host.invalid", port: 9092, timeout: .seconds(2))
        }
    }

    @Test func peerClosingMidResponseFailsPendingCalls() async throws {
        let peer = try RawListener()
        // A frame that announces 100 bytes, then only 8 of them: correlation id 1 and 4 more bytes.
        peer.serveOnce(reply: [0, 0, 0, 100, 0, 0, 0, 1, 0, 0, 0, 0], readFirst: 1)
        let c = try await KafkaConnection.connect(host: "127.0.0.1", port: peer.port)
        let results = await withTaskGroup(of: Result<AnyResponse, any Error>.self) { group in
            for _ in 0..<3 {
                group.addTask {
                    do { return .success(try await c.send(ApiVersionsRequest(), version: 0, timeout: .seconds(10))) } catch {
                        return .failure(error)
                    }
                }
            }
            var out: [Result<AnyResponse, any Error>] = []
            for await r in group { out.append(r) }
            return out
        }
        #expect(results.count == 3)
        for r in results {
            let e = try clientError(try #require(r.failureValue))
            #expect(e.isClosed, "\(e)")
        }
        #expect(c.isClosed)
    }

    @Test func poolReusesAndReconnects() async throws {
        let b = try await TestBroker.start()
        let pool = KafkaConnectionPool(clientId: "pool-test")
        async let first = pool.connection(host: "127.0.0.1", port: b.port)
        async let second = pool.connection(host: "127.0.0.1", port: b.port)
        let (a, a2) = try await (first, second)
        #expect(a === a2)
        _ = try await a.send(ApiVersionsRequest(), version: 0)
        a.close()
        let fresh = try await pool.connection(host: "127.0.0.1", port: b.port)
        #expect(fresh !== a)
        _ = try await fresh.send(ApiVersionsRequest(), version: 0)
        pool.closeAll()
        #expect(fresh.isClosed)
        try await b.stop()
    }

    @Test func cancellingACallerLeavesTheConnectionUsable() async throws {
        let b = try await TestBroker.start()
        let c = try await KafkaConnection.connect(host: "127.0.0.1", port: b.port)
        _ = try await c.send(CreateTopicsRequest(topics: [.init(name: "w", numPartitions: 1, replicationFactor: 1)]), version: 4)
        // A long-poll fetch that the broker holds for 2 s; cancel its caller.
        let waiting = Task {
            try await c.send(
                FetchRequest(maxWaitMs: 2000, minBytes: 1, maxBytes: 1 << 20, topics: [
                    .init(topic: "w", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)]),
                ]), version: 11)
        }
        try await Task.sleep(for: .milliseconds(100))
        waiting.cancel()
        let result = await waiting.result
        #expect(result.failureValue is CancellationError)
        // The dropped answer arrives later and is discarded; the connection keeps working.
        _ = try await c.send(ApiVersionsRequest(), version: 0, timeout: .seconds(10))
        #expect(!c.isClosed)
        c.close()
        try await b.stop()
    }
}

extension Result {
    var failureValue: Failure? {
        if case let .failure(e) = self { e } else { nil }
    }
}

extension KafkaClientError {
    var isClosed: Bool {
        if case .closed = kind { true } else { false }
    }

    var timeoutCorrelationId: Int32 {
        if case let .requestTimeout(_, _, id, _) = kind { id } else { -1 }
    }
}
