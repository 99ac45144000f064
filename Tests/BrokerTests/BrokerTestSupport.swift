import Bytes
import Foundation
import KafkaProtocol
import ObjectStore
import FloeTestSupport
import Support
import Testing
@testable import Broker

/// `response` as an `M`; otherwise the test fails here, naming `M` and what came instead (no
/// response included), and stops. (A `guard case` whose else branch only returns would let a
/// wrong answer pass.)
extension HandlerResult {
    /// The frame a `.respond` sends (nil for any other result), for `requireCase`.
    var respondBytes: [UInt8]? { if case let .respond(bytes) = self { bytes } else { nil } }
    /// `()` for `.close` (nil for any other result), for `requireCase`.
    var closes: Void? { if case .close = self { () } else { nil } }
}

extension ApiResult {
    /// The completion of a `.deferred` or `.longPoll` answer (nil for any other result), for `requireCase`.
    var deferredAnswer: (@Sendable () async -> AnyResponse?)? {
        switch self {
        case let .deferred(complete), let .longPoll(complete): complete
        default: nil
        }
    }
    /// The completion of a `.longPoll` answer (nil for any other result), for `requireCase`.
    var longPollAnswer: (@Sendable () async -> AnyResponse?)? { if case let .longPoll(complete) = self { complete } else { nil } }
}

func requireResponse<M: KafkaMessage>(_ response: AnyResponse?, as type: M.Type, sourceLocation: SourceLocation = #_sourceLocation) throws -> M {
    try requireType(response?.message, as: M.self, sourceLocation: sourceLocation)
}

/// Deterministic pseudo-random numbers for tests (SplitMix64).
struct TestRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A broker core over an in-memory bucket and memory logs, for handler tests.
struct Harness {
    let store: MemoryObjectStore
    let storage: MemoryLogStorage
    let core: BrokerCore

    static func make(store: MemoryObjectStore = MemoryObjectStore(name: "test"), storage: MemoryLogStorage = MemoryLogStorage(),
                     settings: [String: String] = [:]) async throws -> Harness {
        var config = BrokerConfig()
        for (k, v) in settings { config.set(k, v, .file) }
        let registry = try await TopicRegistry.load(store: store, prefix: "broker/")
        let partitions = PartitionSet(registry: registry, storage: storage, store: store, prefix: "broker/", metrics: nil, logger: .discarding)
        // A cluster of one: this broker wins the lease, becomes the controller and registers.
        let member = ClusterMember(registry: registry, partitions: partitions, store: store, prefix: "broker/", node: 0, objectWAL: false,
                                   timing: try ClusterTiming(config), clock: RealClock(), logger: .discarding, recoverWAL: { _ in })
        try await member.join(host: "127.0.0.1", port: 9092, timeout: .seconds(10))
        let core = BrokerCore(config: config, nodeId: 0, clusterId: "test-cluster", registry: registry, partitions: partitions,
                              member: member, metrics: nil, logger: .discarding)
        core.setAdvertised(host: "127.0.0.1", port: 9092)
        return Harness(store: store, storage: storage, core: core)
    }

    /// The same bucket and logs, as a restarted broker sees them.
    func restarted() async throws -> Harness {
        try await core.partitions.closeAll()
        return try await Harness.make(store: store, storage: storage)
    }

    func context(_ key: ApiKey, _ version: Int16) -> RequestContext {
        RequestContext(connection: ConnectionInfo(id: 1, peer: "test"),
                       header: RequestHeader(requestApiKey: key.rawValue, requestApiVersion: version, correlationId: 1, clientId: "t"),
                       apiKey: key)
    }

    /// Calls the handler and waits for a deferred answer; nil when nothing is sent. The response
    /// is also encoded at `version`, which fails the test if a field is not valid there.
    func call(_ handler: any ApiHandler, _ request: AnyRequest, version: Int16) async throws -> AnyResponse? {
        let result = await handler.handle(request, context: context(handler.apiKey, version))
        let response: AnyResponse?
        switch result {
        case let .response(r): response = r
        case .noResponse: response = nil
        case let .deferred(f), let .longPoll(f): response = await f()
        case .close: throw HarnessError.closed
        }
        if let response {
            var w = ByteWriter()
            try response.encode(to: &w, version: version)
        }
        return response
    }

    /// Starts the handler call; the returned task finishes with the (possibly deferred) response.
    func start(_ handler: any ApiHandler, _ request: AnyRequest, version: Int16) async -> ApiResult {
        await handler.handle(request, context: context(handler.apiKey, version))
    }

    @discardableResult
    func createTopic(_ name: String, partitions: Int32 = 1, configs: [String: String] = [:]) async throws -> TopicRecord {
        try await core.registry.create(name: name, partitions: partitions, replicationFactor: 1, configs: configs)
    }

    func produce(_ topic: String, partition: Int32 = 0, batch: [UInt8], acks: Int16 = -1, version: Int16 = 9) async throws -> ProduceResponse.PartitionProduceResponse? {
        let request = ProduceRequest(acks: acks, timeoutMs: 5000, topicData: [
            .init(name: topic, partitionData: [.init(index: partition, records: batch[...])]),
        ])
        guard let r = try await call(ProduceHandler(core: core), .produce(request), version: version) else { return nil }
        guard case let .produce(p) = r else { throw HarnessError.unexpected("\(r)") }
        return p.responses.first?.partitionResponses.first
    }

    func fetch(_ topic: String, partition: Int32 = 0, offset: Int64, maxWaitMs: Int32 = 0, minBytes: Int32 = 1,
               partitionMaxBytes: Int32 = 1 << 20, maxBytes: Int32 = 50 << 20, version: Int16 = 11) async throws -> FetchResponse.PartitionData {
        let request = FetchRequest(maxWaitMs: maxWaitMs, minBytes: minBytes, maxBytes: maxBytes, topics: [
            .init(topic: topic, partitions: [.init(partition: partition, fetchOffset: offset, partitionMaxBytes: partitionMaxBytes)]),
        ])
        guard case let .fetch(f) = try await call(FetchHandler(core: core), .fetch(request), version: version) else { throw HarnessError.unexpected("fetch") }
        return f.responses[0].partitions[0]
    }
}

enum HarnessError: Error {
    case closed
    case unexpected(String)
}

/// Builds a record batch with `count` records of `size`-byte values.
func makeBatch(count: Int, valueSize: Int = 10, producerId: Int64 = -1, epoch: Int16 = -1, sequence: Int32 = -1,
               timestamp: Int64 = 1_700_000_000_000, seed: UInt64 = 1, compression: CompressionCodec = .none) throws -> [UInt8] {
    var rng = TestRandom(seed: seed)
    var b = RecordBatchBuilder(compression: compression)
    b.producerId = producerId
    b.producerEpoch = epoch
    b.baseSequence = sequence
    for i in 0..<count {
        let value = (0..<valueSize).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        b.append(timestamp: timestamp + Int64(i), key: Array("k\(i)".utf8), value: value)
    }
    return try b.build()
}

/// The records of a fetched `records` blob, with absolute offsets.
func fetchedRecords(_ blob: ArraySlice<UInt8>?) throws -> [(offset: Int64, value: [UInt8])] {
    guard let blob else { return [] }
    var reader = RecordBatchReader(blob, trailingPartialBatch: .allow)
    var out: [(Int64, [UInt8])] = []
    while let batch = try reader.next() {
        for r in try batch.records() { out.append((batch.offset(of: r), Array(r.value ?? []))) }
    }
    return out
}
