import KafkaProtocol
import ObjectStore
import Support
import Synchronization

/// Everything the request handlers share: identity, settings, registry, partitions, producer
/// ids, metrics. Handlers hold it and never reach the network server.
public final class BrokerCore: Sendable {
    public let config: BrokerConfig
    public let nodeId: Int32
    public let clusterId: String
    public let registry: TopicRegistry
    public let partitions: PartitionSet
    public let producerIds: ProducerIdAllocator
    public let metrics: MetricsRegistry?
    public let logger: Logger
    /// This broker's membership in the cluster (controller calls go through it).
    public let member: ClusterMember
    /// Fetches waiting for data (bounded by `max.parked.fetches` and
    /// `max.parked.fetches.per.connection`); a shutdown answers them at once.
    let parked: ParkedFetches
    /// The transaction coordinator of the transactional ids placed on this broker.
    public let transactions: TransactionCoordinator
    /// Writes transaction markers (locally or on the partition's owner).
    let txnMarkers: BrokerTxnMarkers
    private let advertised = Mutex<(host: String, port: Int32)>(("127.0.0.1", 9092))

    public init(config: BrokerConfig, nodeId: Int32, clusterId: String, registry: TopicRegistry, partitions: PartitionSet,
                member: ClusterMember, metrics: MetricsRegistry?, logger: Logger) {
        self.member = member
        self.config = config
        self.nodeId = nodeId
        self.clusterId = clusterId
        self.registry = registry
        self.partitions = partitions
        self.producerIds = ProducerIdAllocator(registry: registry, member: member)
        self.metrics = metrics
        self.logger = logger
        let markers = BrokerTxnMarkers(partitions: partitions, registry: registry, member: member, logger: logger)
        txnMarkers = markers
        let ids = producerIds
        transactions = TransactionCoordinator(
            nodeId: nodeId, store: partitions.store, prefix: partitions.prefix + "transactions/", placement: ClusterGroupPlacement(registry: registry),
            maxTimeoutMs: Int32(clamping: Int(config["transaction.max.timeout.ms"] ?? "") ?? 900_000),
            expirationMs: Int64(config["transactional.id.expiration.ms"] ?? "") ?? 604_800_000,
            producerIds: { try await ids.next() }, markers: markers, logger: logger)
        // Validated at start-up (BrokerConfig.validate); the declared defaults otherwise.
        parked = ParkedFetches(maxTotal: Int(config["max.parked.fetches"] ?? "") ?? 10_000,
                               maxPerConnection: Int(config["max.parked.fetches.per.connection"] ?? "") ?? 16)
    }

    /// The host and port clients are told to connect to (Metadata, DescribeCluster).
    public var advertisedAddress: (host: String, port: Int32) { advertised.withLock { $0 } }
    public func setAdvertised(host: String, port: Int32) { advertised.withLock { $0 = (host, port) } }

    /// The brokers clients connected on `listener` are told about, with their addresses on that
    /// listener: live ones from the metadata, or this one while the metadata has none (joining).
    func liveBrokers(on listener: ListenerName) -> [(id: Int32, host: String, port: Int32)] {
        let live = registry.state.liveBrokers
        if !live.isEmpty { return live.map { b in let a = b.address(on: listener); return (b.id, a.host, a.port) } }
        let (host, port) = advertisedAddress
        return [(nodeId, host, port)]
    }

    /// The address of broker `id` on `listener`, if it is registered.
    func address(of id: Int32, on listener: ListenerName) -> (host: String, port: Int32)? {
        registry.state.brokers[id]?.address(on: listener)
    }

    /// Where a partition lives now, for the leader hints of Produce and Fetch answers that say
    /// NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH (KIP-951): the owner, its partition epoch
    /// and its address, so a client can go there without a Metadata round trip. Nil when the
    /// owner is unknown or fenced.
    func leaderHint(topic: String, partition: Int32, listener: ListenerName) -> (id: Int32, epoch: Int32, host: String, port: Int32)? {
        let state = registry.state
        guard let t = state.topics[topic], partition >= 0, Int(partition) < t.partitions.count else { return nil }
        let p = t.partitions[Int(partition)]
        guard let owner = state.brokers[p.owner], !owner.fenced else { return nil }
        let a = owner.address(on: listener)
        return (owner.id, p.leaderEpoch, a.host, a.port)
    }

    /// The broker properties with dynamic overrides applied.
    public func brokerProperty(_ key: String) -> String? {
        registry.dynamicBrokerConfigs[key] ?? config[key]
    }

    var autoCreateTopics: Bool { brokerProperty("auto.create.topics.enable")?.lowercased() == "true" }
    var defaultPartitions: Int32 { Int32(brokerProperty("num.partitions") ?? "1") ?? 1 }
    var defaultReplicationFactor: Int16 { Int16(brokerProperty("default.replication.factor") ?? "1") ?? 1 }

    /// Effective configs of a topic.
    func topicConfigs(_ topic: TopicRecord) -> [String: String] {
        config.effectiveTopicConfigs(topic.configs, dynamic: registry.dynamicBrokerConfigs)
    }

    /// Creates a topic with the broker defaults (auto-creation); an existing topic is returned.
    /// Off the controller, a CreateTopics request goes to the controller.
    func autoCreate(_ name: String) async throws -> TopicRecord? {
        if let t = registry.topic(named: name) { return t }
        if !member.isController {
            let request = CreateTopicsRequest(topics: [.init(name: name, numPartitions: -1, replicationFactor: -1)], timeoutMs: 30_000)
            _ = try await member.forward(.createTopics(request), apiKey: .createTopics, version: 5)
            return registry.topic(named: name)
        }
        do {
            let t = try await registry.create(name: name, partitions: defaultPartitions, replicationFactor: defaultReplicationFactor, configs: [:])
            logger.info("topic auto-created", metadata: ["topic": name, "partitions": "\(t.partitions.count)"])
            return t
        } catch let e as TopicError where e.code == .topicAlreadyExists {
            return registry.topic(named: name)
        }
    }
}

/// Hands out producer ids for InitProducerId: unique for the life of the bucket, reserved from
/// the registry in blocks so a restart never reuses one.
public final class ProducerIdAllocator: Sendable {
    static let blockSize: Int64 = 1000
    let registry: TopicRegistry
    let member: ClusterMember
    private let state = Mutex<(next: Int64, end: Int64)>((0, 0))
    private let refill = AsyncLock()

    init(registry: TopicRegistry, member: ClusterMember) {
        self.registry = registry
        self.member = member
    }

    /// A block of `blockSize` ids: from the registry on the controller, else by AllocateProducerIds.
    func reserveBlock() async throws -> Int64 {
        if member.isController { return try await registry.reserveProducerIDs(Self.blockSize) }
        let response = try await member.callController(AllocateProducerIdsRequest(brokerId: member.node, brokerEpoch: member.epoch ?? -1), version: 0)
        guard case let .allocateProducerIds(r) = response, r.errorCode == 0, Int64(r.producerIdLen) == Self.blockSize else {
            throw BrokerError.controllerUnavailable("AllocateProducerIds answered \(response)")
        }
        return r.producerIdStart
    }

    public func next() async throws -> Int64 {
        while true {
            if let id = state.withLock({ s -> Int64? in
                guard s.next < s.end else { return nil }
                defer { s.next += 1 }
                return s.next
            }) { return id }
            try await refill.withLock {
                let empty = state.withLock { $0.next >= $0.end }
                guard empty else { return }
                let first = try await reserveBlock()
                state.withLock { $0 = (first, first + Self.blockSize) }
            }
        }
    }
}

/// The long-poll Fetches waiting for data. A shutdown wakes every one of them (and any parked
/// later) so each answers at once with what it has, instead of holding the broker's exit for up
/// to its max wait (a client may ask for 2^31-1 ms).
///
/// Admission is bounded: at most `maxTotal` long polls over all connections and
/// `maxPerConnection` per connection hold an `Admission`; a Fetch refused one is answered at
/// once with what it has (as if its max wait had passed). Example: with `maxPerConnection` 2, a
/// connection's third pipelined empty Fetch with max wait 500 ms is answered empty at once while
/// the first two wait. (Closing a connection cancels its long polls: see `HandlerResult.longPoll`.)
final class ParkedFetches: Sendable {
    struct State {
        var stopping = false
        var signals: [ObjectIdentifier: AppendSignal] = [:]
        var total = 0
        var perConnection: [UInt64: Int] = [:]
        var refused = 0
    }
    let maxTotal: Int
    let maxPerConnection: Int
    private let state = Mutex(State())

    init(maxTotal: Int = 10_000, maxPerConnection: Int = 16) {
        self.maxTotal = max(0, maxTotal)
        self.maxPerConnection = max(0, maxPerConnection)
    }

    /// The right of one Fetch to wait: released by `release()` when the long poll ends (or, as
    /// a backstop, when the value is freed), once.
    final class Admission: Sendable {
        let owner: ParkedFetches
        let connection: UInt64
        private let released = Atomic<Bool>(false)
        init(owner: ParkedFetches, connection: UInt64) {
            self.owner = owner
            self.connection = connection
        }
        func release() {
            if !released.exchange(true, ordering: .relaxed) { owner.release(connection) }
        }
        deinit { release() }
    }

    /// An admission for a Fetch of `connection` that would wait, or nil when a bound is reached
    /// (counted in `refused`).
    func admit(connection: UInt64) -> Admission? {
        let admitted = state.withLock { s -> Bool in
            let mine = s.perConnection[connection, default: 0]
            guard s.total < maxTotal, mine < maxPerConnection else {
                s.refused += 1
                return false
            }
            s.total += 1
            s.perConnection[connection] = mine + 1
            return true
        }
        return admitted ? Admission(owner: self, connection: connection) : nil
    }

    private func release(_ connection: UInt64) {
        state.withLock { s in
            s.total -= 1
            let left = s.perConnection[connection, default: 1] - 1
            s.perConnection[connection] = left > 0 ? left : nil
        }
    }

    /// Registers a waiting Fetch's signal; fires it at once when the broker is stopping.
    func park(_ signal: AppendSignal) {
        let stopping = state.withLock { s -> Bool in
            if !s.stopping { s.signals[ObjectIdentifier(signal)] = signal }
            return s.stopping
        }
        if stopping { signal.fire() }
    }

    func unpark(_ signal: AppendSignal) { state.withLock { _ = $0.signals.removeValue(forKey: ObjectIdentifier(signal)) } }

    /// Wakes every parked Fetch; from now on none waits.
    func stopAll() {
        let all = state.withLock { s -> [AppendSignal] in
            s.stopping = true
            defer { s.signals = [:] }
            return Array(s.signals.values)
        }
        for signal in all { signal.fire() }
    }

    var stopping: Bool { state.withLock { $0.stopping } }
    /// Fetches waiting on a signal right now.
    var count: Int { state.withLock { $0.signals.count } }
    /// Long polls admitted and not yet answered.
    var admitted: Int { state.withLock { $0.total } }
    /// Fetches answered at once because a bound was reached, since start.
    var refused: Int { state.withLock { $0.refused } }
}
