import KafkaClient
import KafkaProtocol
import Support
import Synchronization

/// The broker's ``TxnMarkerSink``: markers for partitions this broker owns are appended here
/// (and made durable); those owned by another broker are sent to it with WriteTxnMarkers
/// (API 27), as Kafka's coordinator does. Group offsets go to the group's coordinator the
/// same way, as a WriteTxnMarkers "topic" named `__floe_group:<group id>`: a broker-to-broker
/// convention, never seen by clients. Its partition index is how many epochs the marker is
/// ahead of the transaction's offsets: 0, or 1 after EndTxn v5's bump (``MarkerPlan/offsetsEpoch``).
public final class BrokerTxnMarkers: TxnMarkerSink {
    static let groupTopicPrefix = "__floe_group:"

    let partitions: PartitionSet
    let registry: TopicRegistry
    let member: ClusterMember
    let logger: Logger
    /// Set once the group coordinator exists (it is built after the broker core).
    private let offsetsBox = Mutex<TxnOffsetStore?>(nil)
    private let groupPlacement = Mutex<(any GroupPlacement)?>(nil)

    init(partitions: PartitionSet, registry: TopicRegistry, member: ClusterMember, logger: Logger) {
        self.partitions = partitions
        self.registry = registry
        self.member = member
        self.logger = logger
    }

    func attach(offsets: TxnOffsetStore, placement: any GroupPlacement) {
        offsetsBox.withLock { $0 = offsets }
        groupPlacement.withLock { $0 = placement }
    }

    var offsets: TxnOffsetStore? { offsetsBox.withLock { $0 } }

    public func write(_ plan: MarkerPlan, transactionalId: String) async throws {
        var remote: [Int32: [WriteTxnMarkersRequest.WritableTxnMarkerTopic]] = [:]
        func addRemote(_ owner: Int32, _ topic: String, _ partition: Int32) {
            var topics = remote[owner, default: []]
            if let i = topics.firstIndex(where: { $0.name == topic }) {
                topics[i].partitionIndexes.append(partition)
            } else {
                topics.append(.init(name: topic, partitionIndexes: [partition]))
            }
            remote[owner] = topics
        }
        for p in plan.partitions {
            do {
                let code = try await writeLocal(topic: p.topic, partition: p.partition, plan)
                if let code { throw TxnRefusal(code, "marker for \(p.topic)-\(p.partition) refused") }
            } catch let BrokerError.notLeader(_, _, owner) where owner >= 0 && owner != partitions.node {
                addRemote(owner, p.topic, p.partition)
            }
        }
        let placement = groupPlacement.withLock { $0 }
        for g in plan.groups {
            guard let owner = placement?.coordinator(for: g)?.nodeId else {
                throw TxnRefusal(.coordinatorNotAvailable, "no coordinator for group \(g)")
            }
            if owner == partitions.node {
                try await completeGroup(g, plan)
            } else {
                addRemote(owner, Self.groupTopicPrefix + g, plan.transactionEpoch == nil ? 0 : 1)
            }
        }
        for (owner, topics) in remote {
            try await sendRemote(owner: owner, topics: topics, plan)
        }
    }

    func completeGroup(_ group: String, _ plan: MarkerPlan) async throws {
        guard let offsets else { throw TxnRefusal(.coordinatorNotAvailable, "this broker has no group coordinator") }
        try await offsets.complete(group: group, producerId: plan.producerId, producerEpoch: plan.offsetsEpoch, commit: plan.commit)
    }

    /// Appends the marker to a partition this broker owns and waits for its durability. Returns
    /// an error code when the partition refused it; a marker older than the producer's epoch
    /// there is superseded and counts as written.
    func writeLocal(topic: String, partition index: Int32, _ plan: MarkerPlan) async throws -> KafkaErrorCode? {
        guard let p = try await partitions.partition(topic: topic, index: index) else {
            // The topic or partition was deleted: nothing is left to mark.
            return nil
        }
        let batch = try TransactionIndex.markerBatch(producerId: plan.producerId, producerEpoch: plan.producerEpoch, commit: plan.commit,
                                                     coordinatorEpoch: 0, timestamp: wallMillis())
        try await p.log.reserve(batchSizes: [batch.count])
        switch p.appendMarker(batch, producerId: plan.producerId, producerEpoch: plan.producerEpoch, commit: plan.commit) {
        case let .appended(_, durable, _):
            try await durable.wait()
            p.notifyAppended()
            return nil
        case let .rejected(code, message):
            p.log.unreserve(batchSizes: [batch.count])
            if code == .invalidProducerEpoch {
                logger.warning("transaction marker superseded by a newer producer epoch", metadata: ["topic": topic, "partition": "\(index)", "reason": message])
                return nil
            }
            return code
        case let .storageFailed(message, code, _):
            logger.warning("transaction marker not appended", metadata: ["topic": topic, "partition": "\(index)", "error": message])
            return code
        case .duplicate:
            return nil
        }
    }

    /// AddPartitionsToTxn v4 with verifyOnly to the coordinator broker `node`.
    public func verifyRemote(transactionalId: String, producerId: Int64, producerEpoch: Int16, partition: TxnPartition, node: Int32?) async -> KafkaErrorCode? {
        guard let node, let b = registry.state.brokers[node], !b.fenced else { return .coordinatorNotAvailable }
        let request = AddPartitionsToTxnRequest(transactions: [.init(transactionalId: transactionalId, producerId: producerId, producerEpoch: producerEpoch,
                                                                     verifyOnly: true, topics: [.init(name: partition.topic, partitions: [partition.partition])])])
        do {
            let conn = try await member.pool.connection(host: b.host, port: Int(b.port))
            // v5: the coordinator may answer TRANSACTION_ABORTABLE (verifyProduce maps it per Produce version).
            let response = try await conn.send(request, version: 5, timeout: .seconds(10))
            guard case let .addPartitionsToTxn(r) = response else { return .coordinatorNotAvailable }
            if r.errorCode != 0 { return KafkaErrorCode(rawValue: r.errorCode) ?? .unknownServerError }
            let code = r.resultsByTransaction.first?.topicResults.first?.resultsByPartition.first?.partitionErrorCode ?? KafkaErrorCode.coordinatorNotAvailable.rawValue
            return code == 0 ? nil : (KafkaErrorCode(rawValue: code) ?? .unknownServerError)
        } catch {
            logger.debug("transaction verification with the coordinator failed", metadata: ["transactional.id": transactionalId, "broker": "\(node)", "error": "\(error)"])
            return .coordinatorNotAvailable
        }
    }

    func sendRemote(owner: Int32, topics: [WriteTxnMarkersRequest.WritableTxnMarkerTopic], _ plan: MarkerPlan) async throws {
        guard let b = registry.state.brokers[owner], !b.fenced else {
            throw TxnRefusal(.coordinatorNotAvailable, "broker \(owner) owning transaction partitions is not available")
        }
        let request = WriteTxnMarkersRequest(markers: [.init(producerId: plan.producerId, producerEpoch: plan.producerEpoch,
                                                              transactionResult: plan.commit, topics: topics, coordinatorEpoch: 0)])
        let conn = try await member.pool.connection(host: b.host, port: Int(b.port))
        let response = try await conn.send(request, version: 1, timeout: .seconds(30))
        guard case let .writeTxnMarkers(r) = response else { throw TxnRefusal(.unknownServerError, "unexpected answer to WriteTxnMarkers: \(response)") }
        for m in r.markers {
            for t in m.topics {
                for p in t.partitions where p.errorCode != 0 {
                    throw TxnRefusal(KafkaErrorCode(rawValue: p.errorCode) ?? .unknownServerError,
                                     "broker \(owner) refused the marker for \(t.name)-\(p.partitionIndex) with error \(p.errorCode)")
                }
            }
        }
    }
}

/// WriteTxnMarkers (API 27), versions 0–1: the markers a transaction coordinator on another
/// broker sends for partitions (and groups) this broker serves.
public struct WriteTxnMarkersHandler: ApiHandler {
    let markers: BrokerTxnMarkers
    public let apiKey = ApiKey.writeTxnMarkers
    public let versions: ClosedRange<Int16> = 0...1

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .writeTxnMarkers(r) = request else { return .close }
        var response = WriteTxnMarkersResponse(markers: [])
        for m in r.markers {
            let plan = MarkerPlan(producerId: m.producerId, producerEpoch: m.producerEpoch, commit: m.transactionResult, partitions: [], groups: [])
            var result = WriteTxnMarkersResponse.WritableTxnMarkerResult(producerId: m.producerId, topics: [])
            for t in m.topics {
                var tr = WriteTxnMarkersResponse.WritableTxnMarkerTopicResult(name: t.name, partitions: [])
                for index in t.partitionIndexes {
                    var code: Int16 = 0
                    do {
                        if t.name.hasPrefix(BrokerTxnMarkers.groupTopicPrefix) {
                            var groupPlan = plan
                            if index == 1 && m.producerEpoch > 0 { groupPlan.transactionEpoch = m.producerEpoch - 1 }
                            try await markers.completeGroup(String(t.name.dropFirst(BrokerTxnMarkers.groupTopicPrefix.count)), groupPlan)
                        } else if let c = try await markers.writeLocal(topic: t.name, partition: index, plan) {
                            code = c.rawValue
                        }
                    } catch let r as TxnRefusal {
                        code = r.code.rawValue
                    } catch {
                        code = BrokerError.partitionCode(error).rawValue
                    }
                    tr.partitions.append(.init(partitionIndex: index, errorCode: code))
                }
                result.topics.append(tr)
            }
            response.markers.append(result)
        }
        return .response(.writeTxnMarkers(response))
    }
}
