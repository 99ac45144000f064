import Foundation
import KafkaProtocol
import StreamStorage

// Admin APIs that tools call and that have little to do in a broker whose data lives in a
// bucket: DescribeLogDirs, ElectLeaders, DescribeProducers, ListClientMetricsResources.

/// A partition log that can tell how many bytes it holds.
protocol PartitionLogSize {
    var sizeInBytes: Int64 { get async }
}

extension StreamPartitionLog: PartitionLogSize {
    /// Bytes in objects plus acknowledged bytes not yet uploaded (see `Stream.sizeInBytes`).
    var sizeInBytes: Int64 { get async { Int64(clamping: stream.sizeInBytes) } }
}

extension MemoryPartitionLog: PartitionLogSize {
    /// The bytes of the durable batches it holds.
    var sizeInBytes: Int64 {
        get async {
            do {
                return try await read(from: startOffset, maxBytes: Int.max).reduce(Int64(0)) { $0 + Int64($1.bytes.count) }
            } catch {
                return 0  // trimmed concurrently: nothing to count at the old start
            }
        }
    }
}

/// DescribeLogDirs v0–v4 (API 35). The bucket is this broker's one log directory: its path is
/// the store's location (`file:///…`, or `s3://bucket/prefix at endpoint`; never credentials),
/// and it lists the partitions this broker owns (all, or those asked for) with their size in
/// bytes: data in objects plus data acknowledged and not yet uploaded (in the WAL; partitions
/// not open yet are measured from the stream metadata, not opened). Offset lag
/// is 0 and no partition is a future replica: there is no replica to catch up. Total and
/// usable bytes (v4+) are the file system's for a `file://` bucket and -1 for object storage,
/// which has no capacity to report. Partitions owned elsewhere, or of unknown topics, are left
/// out, as Kafka leaves out partitions a broker does not host.
public struct DescribeLogDirsHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.describeLogDirs
    public let versions: ClosedRange<Int16> = 0...4
    public init(core: BrokerCore) { self.core = core }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .describeLogDirs(r) = request else { return .close }
        let state = core.registry.state
        var wanted: [(topic: TopicRecord, partitions: [Int32])] = []
        if let topics = r.topics {
            var byName: [String: [Int32]] = [:]
            var order: [String] = []
            for t in topics {
                if byName[t.topic] == nil { order.append(t.topic) }
                byName[t.topic, default: []] += t.partitions
            }
            for name in order {
                guard let topic = state.topics[name] else { continue }
                wanted.append((topic, Array(Set(byName[name]!)).sorted()))
            }
        } else {
            for name in state.topics.keys.sorted() {
                let topic = state.topics[name]!
                wanted.append((topic, topic.partitions.map(\.index)))
            }
        }
        // Partitions owned here; those not open yet are measured from the stream metadata
        // rather than opened (opening writes the stream's new epoch and replays its producers).
        var owned: [(topic: String, index: Int32, stream: UInt64)] = []
        for (topic, indexes) in wanted {
            for index in indexes where index >= 0 && Int(index) < topic.partitions.count && topic.partitions[Int(index)].owner == core.nodeId {
                owned.append((topic.name, index, topic.partitions[Int(index)].stream))
            }
        }
        var open: [UInt64: Partition] = [:]
        for p in await core.partitions.openPartitions { open[p.stream] = p }
        var committed: [UInt64: UInt64] = [:]
        if let streams = core.partitions.storage as? StreamLogStorage {
            let closed = owned.map(\.stream).filter { open[$0] == nil }
            if !closed.isEmpty {
                do {
                    committed = try await streams.store.committedSizes(closed)
                } catch {
                    core.logger.warning("describe log dirs: stream metadata unreadable; sizes of partitions not open are 0",
                                        metadata: ["error": "\(error)"])
                }
            }
        }
        var topics: [DescribeLogDirsResponse.DescribeLogDirsTopic] = []
        for p in owned {
            guard let size = await size(topic: p.topic, index: p.index, stream: p.stream, open: open[p.stream], committed: committed) else { continue }
            let partition = DescribeLogDirsResponse.DescribeLogDirsPartition(partitionIndex: p.index, partitionSize: size, offsetLag: 0, isFutureKey: false)
            if topics.last?.name == p.topic {
                topics[topics.count - 1].partitions.append(partition)
            } else {
                topics.append(.init(name: p.topic, partitions: [partition]))
            }
        }
        let location = core.partitions.store.location
        let (total, usable) = Self.capacity(location: location)
        let result = DescribeLogDirsResponse.DescribeLogDirsResult(errorCode: 0, logDir: location, topics: topics,
                                                                   totalBytes: total, usableBytes: usable)
        return .response(.describeLogDirs(DescribeLogDirsResponse(errorCode: 0, results: [result])))
    }

    /// The size of an owned partition: from its log when open, from the stream metadata when not
    /// (stream storage), else by opening it (memory storage); nil when it moved away meanwhile.
    func size(topic: String, index: Int32, stream: UInt64, open: Partition?, committed: [UInt64: UInt64]) async -> Int64? {
        if let open { return await (open.log as? any PartitionLogSize)?.sizeInBytes ?? 0 }
        if let bytes = committed[stream] { return Int64(clamping: bytes) }
        do {
            guard let p = try await core.partitions.partition(topic: topic, index: index) else { return nil }
            return await (p.log as? any PartitionLogSize)?.sizeInBytes ?? 0
        } catch let error as BrokerError {
            if case .notLeader = error { return nil }  // moved away meanwhile: no longer hosted here
            core.logger.warning("describe log dirs: partition size unavailable", metadata: ["topic": topic, "partition": "\(index)", "error": "\(error)"])
            return 0
        } catch {
            core.logger.warning("describe log dirs: partition size unavailable", metadata: ["topic": topic, "partition": "\(index)", "error": "\(error)"])
            return 0
        }
    }

    /// (total, usable) bytes of the file system holding a `file://` bucket; (-1, -1) otherwise
    /// or when it cannot be read.
    static func capacity(location: String) -> (Int64, Int64) {
        guard location.hasPrefix("file://") else { return (-1, -1) }
        let path = String(location.dropFirst("file://".count))
        let attributes: [FileAttributeKey: Any]
        do {
            attributes = try FileManager.default.attributesOfFileSystem(forPath: path)
        } catch {
            return (-1, -1)  // the capacity is optional in the answer: unknown rather than an error
        }
        guard let total = (attributes[.systemSize] as? NSNumber)?.int64Value,
              let free = (attributes[.systemFreeSize] as? NSNumber)?.int64Value else { return (-1, -1) }
        return (total, free)
    }
}

/// ElectLeaders v0–v2 (API 43). A partition has one replica, its owner, which is both its
/// leader and its preferred leader; the controller moves it when its broker dies. So an
/// election is never needed, and Kafka's controller answers exactly that:
/// - a partition whose owner is a live broker: ELECTION_NOT_NEEDED, for preferred and unclean
///   elections alike (Kafka: the preferred replica already leads / a leader exists);
/// - a partition without a live owner (its broker died and the controller has not moved it yet):
///   PREFERRED_LEADER_NOT_AVAILABLE (preferred) or ELIGIBLE_LEADERS_NOT_AVAILABLE (unclean);
/// - an unknown topic or partition: UNKNOWN_TOPIC_OR_PARTITION.
/// With no partitions named (null), every partition is considered: every topic is listed, with
/// only its partitions that need an election, as Kafka's controller answers. An unknown election
/// type is INVALID_REQUEST for the whole request. Version 0 has no election type (preferred) and
/// no top-level error code.
public struct ElectLeadersHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.electLeaders
    public let versions: ClosedRange<Int16> = 0...2
    public init(core: BrokerCore) { self.core = core }

    static let notNeededMessage = "Leader election not needed for topic partition."

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .electLeaders(r) = request else { return .close }
        let electionType = context.apiVersion >= 1 ? r.electionType : 0
        guard electionType == 0 || electionType == 1 else {
            // Kafka's controller refuses the whole request (InvalidRequestException).
            let message = "Unknown election type \(electionType)"
            return .response(.electLeaders(ElectLeadersResponse(
                errorCode: KafkaErrorCode.invalidRequest.rawValue,
                replicaElectionResults: (r.topicPartitions ?? []).map { t in
                    .init(topic: t.topic, partitionResult: t.partitions.map {
                        .init(partitionId: $0, errorCode: KafkaErrorCode.invalidRequest.rawValue, errorMessage: message) })
                })))
        }
        let state = core.registry.state
        var results: [ElectLeadersResponse.ReplicaElectionResult] = []
        if let requested = r.topicPartitions {
            for t in requested {
                results.append(.init(topic: t.topic, partitionResult: t.partitions.map {
                    Self.result(state, topic: t.topic, partition: $0, electionType: electionType)
                }))
            }
        } else {
            for name in state.topics.keys.sorted() {
                let partitions = state.topics[name]!.partitions.map { Self.result(state, topic: name, partition: $0.index, electionType: electionType) }
                    .filter { $0.errorCode != KafkaErrorCode.electionNotNeeded.rawValue }
                results.append(.init(topic: name, partitionResult: partitions))
            }
        }
        return .response(.electLeaders(ElectLeadersResponse(errorCode: 0, replicaElectionResults: results)))
    }

    /// The answer for one partition (election type 0 preferred, 1 unclean).
    static func result(_ state: ClusterState, topic: String, partition: Int32, electionType: Int8) -> ElectLeadersResponse.PartitionResult {
        guard let t = state.topics[topic] else {
            return .init(partitionId: partition, errorCode: KafkaErrorCode.unknownTopicOrPartition.rawValue, errorMessage: "No such topic as \(topic)")
        }
        guard partition >= 0, Int(partition) < t.partitions.count else {
            return .init(partitionId: partition, errorCode: KafkaErrorCode.unknownTopicOrPartition.rawValue,
                         errorMessage: "No such partition as \(topic)-\(partition)")
        }
        let owner = t.partitions[Int(partition)].owner
        if let broker = state.brokers[owner], !broker.fenced {
            return .init(partitionId: partition, errorCode: KafkaErrorCode.electionNotNeeded.rawValue, errorMessage: notNeededMessage)
        }
        if electionType == 0 {
            return .init(partitionId: partition, errorCode: KafkaErrorCode.preferredLeaderNotAvailable.rawValue,
                         errorMessage: "the owner of \(topic)-\(partition) (broker \(owner)) is not alive; the controller moves the partition")
        }
        return .init(partitionId: partition, errorCode: KafkaErrorCode.eligibleLeadersNotAvailable.rawValue,
                     errorMessage: "the owner of \(topic)-\(partition) (broker \(owner)) is not alive; the controller moves the partition")
    }
}

/// DescribeProducers v0 (API 61): per partition, the producers the partition's
/// idempotent-producer state holds (``ProducerStateTable``), ordered by producer id: id, epoch,
/// the last sequence written, and the max timestamp of its last batch (read from the log; -1
/// if that batch is no longer there), and the first offset of the transaction it has open on
/// the partition (the partition's ``TransactionIndex``; -1 if none). The coordinator epoch is
/// -1: markers carry coordinator epoch 0 and coordinators are fenced by their conditional
/// writes (docs/transactions.md), so there is no epoch to report. Partitions owned by another broker get NOT_LEADER_OR_FOLLOWER,
/// unknown ones UNKNOWN_TOPIC_OR_PARTITION, as Kafka answers.
public struct DescribeProducersHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.describeProducers
    public let versions: ClosedRange<Int16> = 0...0
    public init(core: BrokerCore) {
        self.core = core
    }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .describeProducers(r) = request else { return .close }
        var topics: [DescribeProducersResponse.TopicResponse] = []
        for t in r.topics {
            var partitions: [DescribeProducersResponse.PartitionResponse] = []
            for index in t.partitionIndexes { partitions.append(await describe(topic: t.name, index: index)) }
            topics.append(.init(name: t.name, partitions: partitions))
        }
        return .response(.describeProducers(DescribeProducersResponse(topics: topics)))
    }

    func describe(topic: String, index: Int32) async -> DescribeProducersResponse.PartitionResponse {
        let partition: Partition
        do {
            guard let p = try await core.partitions.partition(topic: topic, index: index) else {
                return .init(partitionIndex: index, errorCode: KafkaErrorCode.unknownTopicOrPartition.rawValue,
                             errorMessage: "This server does not host this topic-partition.")
            }
            partition = p
        } catch {
            let code = BrokerError.partitionCode(error)
            return .init(partitionIndex: index, errorCode: code.rawValue, errorMessage: "\(error)")
        }
        var producers: [DescribeProducersResponse.ProducerState] = []
        let open = partition.transactionIndex.ongoing
        for (pid, entry) in partition.producerTable.producers.sorted(by: { $0.key < $1.key }) {
            producers.append(.init(
                producerId: pid, producerEpoch: Int32(entry.epoch), lastSequence: entry.batches.last?.lastSequence ?? -1,
                lastTimestamp: await Self.lastTimestamp(partition.log, entry), coordinatorEpoch: -1,
                currentTxnStartOffset: open[pid] ?? -1))
        }
        return .init(partitionIndex: index, errorCode: 0, activeProducers: producers)
    }

    /// The max timestamp of the producer's last batch, or -1 if it cannot be read (trimmed).
    static func lastTimestamp(_ log: any PartitionLog, _ entry: ProducerEntry) async -> Int64 {
        guard let last = entry.batches.last, last.lastOffset >= log.startOffset, last.lastOffset < log.endOffset else { return -1 }
        do {
            guard let batch = try await log.read(from: last.lastOffset, maxBytes: 1).first, batch.baseOffset <= last.lastOffset else { return -1 }
            let header = try RecordBatchHeader(parsing: batch.bytes)
            return header.maxTimestamp >= 0 ? header.maxTimestamp : batch.appendTimeMillis
        } catch {
            return -1
        }
    }
}

/// ListClientMetricsResources v0 (API 74): the client-metrics configuration resources
/// (KIP-714). None can exist (the broker has no ClientMetrics configs, and answers telemetry
/// requests with no subscriptions), so the list is always empty.
public struct ListClientMetricsResourcesHandler: ApiHandler {
    public let apiKey = ApiKey.listClientMetricsResources
    public let versions: ClosedRange<Int16> = 0...0
    public init() {}

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case .listClientMetricsResources = request else { return .close }
        return .response(.listClientMetricsResources(ListClientMetricsResourcesResponse(errorCode: 0, clientMetricsResources: [])))
    }
}
