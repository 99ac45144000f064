import KafkaProtocol
import Synchronization

/// A Kafka admin client: cluster metadata, topic creation, partition reassignment and broker
/// drain, for the operator and tools. Any broker will do: Floe brokers forward metadata changes
/// to the controller.
///
/// Each call sends one request and retries it by these rules:
/// 1. Addresses are tried in rotation (`BrokerRotation`): the bootstrap addresses in order, then
///    the brokers the last Metadata or DescribeCluster answer listed. A call starts at the
///    address that answered last.
/// 2. An address that cannot be reached (refused, reset, no answer within `requestTimeout`, a
///    closed connection) is skipped at once for the next one.
/// 3. An answer with a retriable Kafka error (`KafkaErrorCode.isRetriableByAdmin`: NOT_CONTROLLER,
///    REQUEST_TIMED_OUT, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, COORDINATOR_NOT_AVAILABLE,
///    BROKER_NOT_AVAILABLE, NETWORK_EXCEPTION, …) ends the attempt, and so does a pass over every
///    address without an answer. Up to `attempts` attempts are made, `retryBackoff` apart, each
///    starting at the address after the one that failed last. Then the last error is thrown.
/// 4. Any other error is thrown at once: a non-retriable Kafka error as `KafkaClientError`
///    `.kafka(api:code:message:resource:)` (UNKNOWN_SERVER_ERROR is not retriable), codec
///    failures as `.encode`/`.decode`, no common version as `.unsupportedVersion`.
/// Per-partition errors of `reassign` are returned, never thrown or retried.
///
/// Versions: on each new connection the client asks ApiVersions (v3) once and sends each request
/// at the highest version both the broker and the generated codec support (at least the lowest
/// version whose semantics this client relies on, e.g. Metadata v1 for "all topics" as null).
///
/// Connections come from a `KafkaConnectionPool` (connect on a thread of its own, I/O on the
/// connection's thread); waiting and backoff are `await`s, so no call blocks the cooperative
/// pool.
///
/// Example:
///
///     let admin = KafkaAdminClient(bootstrap: [try BrokerAddress(parsing: "127.0.0.1:9092")])
///     try await admin.createTopic("orders", partitions: 3)
///     let errors = try await admin.reassign([TopicPartition("orders", 0): 2])
///     // errors[TopicPartition("orders", 0)] == .some(nil): accepted
///     admin.close()
public final class KafkaAdminClient: Sendable {
    public let clientId: String
    public let requestTimeout: Duration
    public let attempts: Int
    public let retryBackoff: Duration

    private let pool: KafkaConnectionPool
    private let state: Mutex<State>

    private struct State {
        var rotation: BrokerRotation
        /// ApiVersions answers by address, valid for the connection they were asked on.
        var versions: [String: (connection: KafkaConnection, versions: [Int16: ClosedRange<Int16>])] = [:]
        var closed = false
    }

    /// The key of the broker resource flag that marks a broker as draining (docs/cluster.md, Drain).
    public static let drainingKey = "floe.broker.draining"

    public init(
        bootstrap: [BrokerAddress], clientId: String = "floe-admin", requestTimeout: Duration = .seconds(10), attempts: Int = 5,
        retryBackoff: Duration = .milliseconds(200), tls: KafkaClientTLS? = nil, sasl: KafkaClientSASL? = nil
    ) {
        self.clientId = clientId
        self.requestTimeout = requestTimeout
        self.attempts = max(1, attempts)
        self.retryBackoff = retryBackoff
        self.pool = KafkaConnectionPool(clientId: clientId, connectTimeout: requestTimeout, tls: tls, sasl: sasl)
        self.state = Mutex(State(rotation: BrokerRotation(bootstrap: bootstrap)))
    }

    /// The addresses the client tries, in order from where the next call starts.
    public var addresses: [BrokerAddress] { state.withLock { $0.rotation.round } }

    /// Closes every connection; later calls throw `.closed`. Idempotent.
    public func close() {
        state.withLock {
            $0.closed = true
            $0.versions = [:]
        }
        pool.closeAll()
    }

    // MARK: Calls

    /// The cluster's brokers and the partitions of `topics` (nil: every topic; internal topics
    /// only with `includeInternal`). A topic asked for that does not exist is in `topicErrors`.
    public func metadata(topics: [String]? = nil, includeInternal: Bool = false) async throws -> ClusterMetadata {
        let (r, _) = try await call(MetadataRequest.self, MetadataResponse.self, minVersion: 1) { _ in
            MetadataRequest(topics: topics.map { $0.map { MetadataRequest.MetadataRequestTopic(name: $0) } }, allowAutoTopicCreation: false)
        } errors: { _ in [] }
        let brokers = r.brokers.map { ClusterBroker(id: $0.nodeId, host: $0.host, port: Int($0.port), rack: $0.rack) }
        learned(brokers)
        var partitions: [PartitionInfo] = []
        var topicErrors: [String: KafkaErrorCode] = [:]
        for t in r.topics where includeInternal || !t.isInternal {
            let name = t.name ?? ""
            if t.errorCode != 0 && t.partitions.isEmpty {
                topicErrors[name] = KafkaErrorCode(rawValue: t.errorCode) ?? .unknownServerError
                continue
            }
            for p in t.partitions {
                partitions.append(PartitionInfo(
                    topic: name, partition: p.partitionIndex, leader: p.leaderId, leaderEpoch: p.leaderEpoch,
                    error: p.errorCode == 0 ? nil : KafkaErrorCode(rawValue: p.errorCode) ?? .unknownServerError))
            }
        }
        partitions.sort { $0.topicPartition < $1.topicPartition }
        return ClusterMetadata(clusterId: r.clusterId, controllerId: r.controllerId, brokers: brokers, partitions: partitions,
                               topicErrors: topicErrors)
    }

    /// The cluster id, the controller and the live brokers (DescribeCluster).
    public func describeCluster() async throws -> (clusterId: String, controllerId: Int32, brokers: [ClusterBroker]) {
        let (r, _) = try await call(DescribeClusterRequest.self, DescribeClusterResponse.self) { _ in
            DescribeClusterRequest()
        } errors: { r in
            [(r.errorCode, r.errorMessage, nil)]
        }
        let brokers = r.brokers.map { ClusterBroker(id: $0.brokerId, host: $0.host, port: Int($0.port), rack: $0.rack) }
        learned(brokers)
        return (r.clusterId, r.controllerId, brokers)
    }

    /// Moves each partition to the given broker (replica list [target]); returns the per-partition
    /// error (nil = accepted). The move itself completes later (watch `metadata` or
    /// `listReassignments`).
    ///
    /// Example: `[TopicPartition("orders", 0): 2, TopicPartition("gone", 0): 1]` may return
    /// `[orders-0: nil, gone-0: .unknownTopicOrPartition]`.
    public func reassign(_ moves: [TopicPartition: Int32]) async throws -> [TopicPartition: KafkaErrorCode?] {
        if moves.isEmpty { return [:] }
        let byTopic = Dictionary(grouping: moves.keys, by: \.topic)
        let timeoutMs = Self.milliseconds(requestTimeout)
        let (r, peer) = try await call(AlterPartitionReassignmentsRequest.self, AlterPartitionReassignmentsResponse.self) { _ in
            AlterPartitionReassignmentsRequest(
                timeoutMs: timeoutMs,
                topics: byTopic.keys.sorted().map { topic in
                    .init(name: topic, partitions: byTopic[topic]!.sorted().map { .init(partitionIndex: $0.partition, replicas: [moves[$0]!]) })
                })
        } errors: { r in
            [(r.errorCode, r.errorMessage, nil)]
        }
        var result: [TopicPartition: KafkaErrorCode?] = [:]
        for t in r.responses {
            for p in t.partitions {
                let code: KafkaErrorCode? = p.errorCode == 0 ? nil : KafkaErrorCode(rawValue: p.errorCode) ?? .unknownServerError
                result.updateValue(code, forKey: TopicPartition(t.name, p.partitionIndex))
            }
        }
        let missing = moves.keys.filter { result[$0] == nil }.sorted()
        guard missing.isEmpty else {
            throw KafkaClientError(
                address: peer, kind: .unexpectedAnswer(api: .alterPartitionReassignments, reason: "no result for \(missing.map(\.description))"))
        }
        return result
    }

    /// The reassignments in progress, sorted by topic and partition.
    public func listReassignments() async throws -> [PartitionReassignment] {
        let timeoutMs = Self.milliseconds(requestTimeout)
        let (r, _) = try await call(ListPartitionReassignmentsRequest.self, ListPartitionReassignmentsResponse.self) { _ in
            ListPartitionReassignmentsRequest(timeoutMs: timeoutMs, topics: nil)
        } errors: { r in
            [(r.errorCode, r.errorMessage, nil)]
        }
        return r.topics.flatMap { t in
            t.partitions.map {
                PartitionReassignment(topicPartition: TopicPartition(t.name, $0.partitionIndex), replicas: $0.replicas,
                                      adding: $0.addingReplicas, removing: $0.removingReplicas)
            }
        }.sorted { $0.topicPartition < $1.topicPartition }
    }

    /// Marks `broker` as draining (it gets no new partitions or group coordinators) or not: SET
    /// `floe.broker.draining` on the BROKER resource named by its id. An unregistered broker id
    /// is refused (INVALID_REQUEST).
    public func setDraining(broker: Int32, _ draining: Bool) async throws {
        let resource = IncrementalAlterConfigsRequest.AlterConfigsResource(
            resourceType: Self.brokerResourceType, resourceName: "\(broker)",
            configs: [.init(name: Self.drainingKey, configOperation: 0, value: draining ? "true" : "false")])
        _ = try await call(IncrementalAlterConfigsRequest.self, IncrementalAlterConfigsResponse.self) { _ in
            IncrementalAlterConfigsRequest(resources: [resource])
        } errors: { r in
            r.responses.map { ($0.errorCode, $0.errorMessage, "broker \($0.resourceName)") }
        }
    }

    /// Creates `name` with `partitions` partitions (the broker's default replication factor) and
    /// topic `configs`. A topic that already exists is success (its partitions are not checked).
    public func createTopic(_ name: String, partitions: Int32, configs: [String: String] = [:]) async throws {
        let timeoutMs = Self.milliseconds(requestTimeout)
        let topicConfigs = configs.keys.sorted().map { CreateTopicsRequest.CreatableTopicConfig(name: $0, value: configs[$0]) }
        _ = try await call(CreateTopicsRequest.self, CreateTopicsResponse.self) { version in
            // -1 (the broker's default) needs v4; before, Floe accepts and ignores any factor.
            CreateTopicsRequest(
                topics: [.init(name: name, numPartitions: partitions, replicationFactor: version >= 4 ? -1 : 1, configs: topicConfigs)],
                timeoutMs: timeoutMs)
        } errors: { r in
            r.topics.filter { $0.errorCode != KafkaErrorCode.topicAlreadyExists.rawValue }.map { ($0.errorCode, $0.errorMessage, "topic \($0.name)") }
        }
    }

    // MARK: Retry loop

    static let brokerResourceType: Int8 = 4

    /// A Kafka error found in an answer: code, message and the resource it is about.
    typealias AnswerError = (code: Int16, message: String?, resource: String?)

    private enum Outcome<Response> {
        case answered(Response, peer: String)
        /// Retry after the backoff (a retriable Kafka error).
        case retryLater(KafkaClientError)
        /// Try the next address now (unreachable, timed out).
        case unreachable(KafkaClientError)
    }

    /// Sends the request `build(version)` by the retry rules of the type's documentation and
    /// returns the answer with the peer ("host:port") that gave it. `errors` lists the Kafka errors of an answer (codes
    /// 0 are ignored); the first non-zero one decides.
    private func call<Request: KafkaMessage, Response: KafkaMessage>(
        _ request: Request.Type, _ response: Response.Type, minVersion: Int16 = Request.validVersions.lowerBound,
        build: (Int16) -> Request, errors: (Response) -> [AnswerError]
    ) async throws -> (response: Response, peer: String) {
        let api = ApiKey(rawValue: Request.apiKey)!
        var lastError: KafkaClientError? = nil
        for attempt in 0..<attempts {
            if attempt > 0 { try await Task.sleep(for: retryBackoff) }
            let round = state.withLock { $0.rotation.round }
            if round.isEmpty { throw KafkaClientError(address: "", kind: .invalidAddress(reason: "no bootstrap address given")) }
            addresses: for address in round {
                if state.withLock({ $0.closed }) {
                    throw KafkaClientError(address: "", kind: .closed(reason: "the admin client was closed"))
                }
                switch try await send(api, to: address, minVersion: minVersion, build: build, errors: errors) {
                case let .answered(r, peer):
                    state.withLock { $0.rotation.answered(address) }
                    return (r, peer)
                case let .retryLater(error):
                    lastError = error
                    state.withLock { $0.rotation.failed(address) }
                    break addresses
                case let .unreachable(error):
                    lastError = error
                    state.withLock { $0.rotation.failed(address) }
                }
            }
        }
        throw lastError!
    }

    /// One try at one address.
    private func send<Request: KafkaMessage, Response: KafkaMessage>(
        _ api: ApiKey, to address: BrokerAddress, minVersion: Int16, build: (Int16) -> Request, errors: (Response) -> [AnswerError]
    ) async throws -> Outcome<Response> {
        let answer: Response
        let version: Int16
        let peer: String
        do {
            let connection = try await pool.connection(host: address.host, port: address.port)
            peer = connection.address
            let served = try await versions(on: connection)[api.rawValue]
            let client = minVersion...Request.validVersions.upperBound
            guard let served, served.overlaps(client) else {
                throw KafkaClientError(address: peer, kind: .unsupportedVersion(api: api, broker: served, client: client))
            }
            version = min(served.upperBound, client.upperBound)
            answer = try await connection.send(build(version), version: version, expecting: Response.self, timeout: requestTimeout)
        } catch let error as KafkaClientError where error.isUnreachable {
            return .unreachable(error)
        }
        guard let first = errors(answer).first(where: { $0.code != 0 }) else { return .answered(answer, peer: peer) }
        let error = KafkaClientError(address: peer, kind: .kafka(api: api, code: first.code, message: first.message, resource: first.resource))
        if KafkaErrorCode(rawValue: first.code)?.isRetriableByAdmin == true { return .retryLater(error) }
        throw error
    }

    /// The broker's version ranges by API key, asked once per connection (ApiVersions v3).
    private func versions(on connection: KafkaConnection) async throws -> [Int16: ClosedRange<Int16>] {
        let cached = state.withLock { s in
            s.versions[connection.address].flatMap { $0.connection === connection ? $0.versions : nil }
        }
        if let cached { return cached }
        let r = try await connection.send(
            ApiVersionsRequest(clientSoftwareName: "floe-admin", clientSoftwareVersion: "1"), version: 3,
            expecting: ApiVersionsResponse.self, timeout: requestTimeout)
        guard r.errorCode == 0 else {
            let error = KafkaClientError(address: connection.address, kind: .kafka(api: .apiVersions, code: r.errorCode, message: nil, resource: nil))
            throw error
        }
        var versions: [Int16: ClosedRange<Int16>] = [:]
        for k in r.apiKeys where k.minVersion <= k.maxVersion { versions[k.apiKey] = k.minVersion...k.maxVersion }
        state.withLock { $0.versions[connection.address] = (connection, versions) }
        return versions
    }

    private func learned(_ brokers: [ClusterBroker]) {
        state.withLock { $0.rotation.learned(brokers.map(\.address)) }
    }

    static func milliseconds(_ d: Duration) -> Int32 {
        Int32(clamping: SocketConnect.milliseconds(d))
    }
}

extension KafkaErrorCode {
    /// Whether the admin client retries an answer with this error (on another broker, after a
    /// backoff): Kafka's retriable errors (`isRetriable`), plus BROKER_NOT_AVAILABLE, which a
    /// broker that is starting or stopping may answer.
    public var isRetriableByAdmin: Bool { isRetriable || self == .brokerNotAvailable }
}

extension KafkaClientError {
    /// Whether the error says only that this peer could not be reached or did not answer in time
    /// (the admin client then tries the next address).
    var isUnreachable: Bool {
        switch kind {
        case .resolveFailed, .connectFailed, .connectTimeout, .requestTimeout, .closed, .io: true
        default: false
        }
    }
}
