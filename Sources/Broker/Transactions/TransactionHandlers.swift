import KafkaProtocol

extension TxnRefusal {
    /// The code a client of `version` understands: PRODUCER_FENCED exists only from
    /// `fencedFrom` (older clients get INVALID_PRODUCER_EPOCH, as Kafka maps it).
    func code(version: Int16, fencedFrom: Int16) -> Int16 {
        if code == .producerFenced && version < fencedFrom { return KafkaErrorCode.invalidProducerEpoch.rawValue }
        return code.rawValue
    }
}

func txnRefusal(_ error: any Error) -> TxnRefusal {
    if let r = error as? TxnRefusal { return r }
    return TxnRefusal(.unknownServerError, "\(error)")
}

/// AddPartitionsToTxn (API 24), versions 0–5. v0–3 (clients): adds partitions to the open
/// transaction; partitions of unknown topics get UNKNOWN_TOPIC_OR_PARTITION and the others
/// OPERATION_NOT_ATTEMPTED, as Kafka answers. v4+ (brokers, KIP-890): batched by transactional
/// id; `verifyOnly` asks whether each partition is in the id's open transaction at that
/// producer epoch (a partition owner verifying a transactional Produce), answering per partition
/// (``TransactionCoordinator/verify``). A partition not in the transaction is
/// TRANSACTION_ABORTABLE from v5 (the version that adds the code), INVALID_TXN_STATE in v4.
public struct AddPartitionsToTxnHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.addPartitionsToTxn
    public let versions: ClosedRange<Int16> = 0...5

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .addPartitionsToTxn(r) = request else { return .close }
        if context.apiVersion >= 4 { return .response(.addPartitionsToTxn(await batched(r, version: context.apiVersion))) }
        var unknown: Set<TxnPartition> = []
        var all: [TxnPartition] = []
        for t in r.v3AndBelowTopics {
            let record = core.registry.topic(named: t.name)
            for p in t.partitions {
                let tp = TxnPartition(t.name, p)
                all.append(tp)
                if record == nil || p < 0 || Int(p) >= record!.partitions.count { unknown.insert(tp) }
            }
        }
        func answer(_ code: (TxnPartition) -> Int16) -> ApiResult {
            var byTopic: [String: [AddPartitionsToTxnResponse.AddPartitionsToTxnPartitionResult]] = [:]
            var order: [String] = []
            for tp in all {
                if byTopic[tp.topic] == nil { order.append(tp.topic) }
                byTopic[tp.topic, default: []].append(.init(partitionIndex: tp.partition, partitionErrorCode: code(tp)))
            }
            var response = AddPartitionsToTxnResponse()
            response.resultsByTopicV3AndBelow = order.map { .init(name: $0, resultsByPartition: byTopic[$0]!) }
            return .response(.addPartitionsToTxn(response))
        }
        if !unknown.isEmpty {
            return answer { unknown.contains($0) ? KafkaErrorCode.unknownTopicOrPartition.rawValue : KafkaErrorCode.operationNotAttempted.rawValue }
        }
        do {
            try await core.transactions.addPartitions(transactionalId: r.v3AndBelowTransactionalId, producerId: r.v3AndBelowProducerId,
                                                      producerEpoch: r.v3AndBelowProducerEpoch, partitions: all)
            return answer { _ in 0 }
        } catch {
            let code = txnRefusal(error).code(version: context.apiVersion, fencedFrom: 2)
            return answer { _ in code }
        }
    }
}

extension AddPartitionsToTxnHandler {
    func batched(_ r: AddPartitionsToTxnRequest, version: Int16) async -> AddPartitionsToTxnResponse {
        var response = AddPartitionsToTxnResponse()
        for txn in r.transactions {
            var topics: [AddPartitionsToTxnResponse.AddPartitionsToTxnTopicResult] = []
            if txn.verifyOnly {
                for t in txn.topics {
                    var results: [AddPartitionsToTxnResponse.AddPartitionsToTxnPartitionResult] = []
                    for p in t.partitions {
                        var code = await core.transactions.verify(transactionalId: txn.transactionalId, producerId: txn.producerId,
                                                                  producerEpoch: txn.producerEpoch, partition: TxnPartition(t.name, p))
                        if code == .transactionAbortable && version < 5 { code = .invalidTxnState }
                        results.append(.init(partitionIndex: p, partitionErrorCode: code?.rawValue ?? 0))
                    }
                    topics.append(.init(name: t.name, resultsByPartition: results))
                }
            } else {
                let all = txn.topics.flatMap { t in t.partitions.map { TxnPartition(t.name, $0) } }
                var code: Int16 = 0
                do {
                    try await core.transactions.addPartitions(transactionalId: txn.transactionalId, producerId: txn.producerId,
                                                              producerEpoch: txn.producerEpoch, partitions: all)
                } catch {
                    code = txnRefusal(error).code.rawValue
                }
                topics = txn.topics.map { t in .init(name: t.name, resultsByPartition: t.partitions.map { .init(partitionIndex: $0, partitionErrorCode: code) }) }
            }
            response.resultsByTransaction.append(.init(transactionalId: txn.transactionalId, topicResults: topics))
        }
        return response
    }
}

/// AddOffsetsToTxn (API 25), versions 0–4: the transaction will commit offsets of a group.
public struct AddOffsetsToTxnHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.addOffsetsToTxn
    public let versions: ClosedRange<Int16> = 0...4

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .addOffsetsToTxn(r) = request else { return .close }
        do {
            try await core.transactions.addOffsets(transactionalId: r.transactionalId, producerId: r.producerId,
                                                   producerEpoch: r.producerEpoch, groupId: r.groupId)
            return .response(.addOffsetsToTxn(AddOffsetsToTxnResponse(errorCode: 0)))
        } catch {
            return .response(.addOffsetsToTxn(AddOffsetsToTxnResponse(errorCode: txnRefusal(error).code(version: context.apiVersion, fencedFrom: 2))))
        }
    }
}

/// EndTxn (API 26): commits or aborts the open transaction. The answer comes once every marker
/// is written and the transaction is complete.
///
/// Versions 0–4; 0–5 with `unstable.api.versions.enable` (Kafka's schema marks v5 unstable, and
/// Kafka advertises it only with that setting or transaction version 2). v5 (KIP-890 part 2):
/// every end bumps the producer epoch (``TxnRules/endBumpingEpoch``) and the answer carries the
/// producer id and epoch to continue with; v0–4 keep the epoch and answer -1, -1.
public struct EndTxnHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.endTxn
    public let versions: ClosedRange<Int16>

    /// `unstableVersions`: the broker setting `unstable.api.versions.enable`.
    public init(core: BrokerCore, unstableVersions: Bool) {
        self.core = core
        self.versions = unstableVersions ? 0...5 : 0...4
    }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .endTxn(r) = request else { return .close }
        do {
            let (producerId, producerEpoch) = try await core.transactions.endTxn(
                transactionalId: r.transactionalId, producerId: r.producerId, producerEpoch: r.producerEpoch, commit: r.committed,
                bumpEpoch: context.apiVersion >= 5)
            // Below v5 these fields are not in the response.
            return .response(.endTxn(EndTxnResponse(errorCode: 0, producerId: producerId, producerEpoch: producerEpoch)))
        } catch {
            let refusal = txnRefusal(error)
            core.logger.debug("EndTxn refused", metadata: ["transactional.id": r.transactionalId, "reason": refusal.message])
            return .response(.endTxn(EndTxnResponse(errorCode: refusal.code(version: context.apiVersion, fencedFrom: 2), producerId: -1, producerEpoch: -1)))
        }
    }
}

/// TxnOffsetCommit (API 28), versions 0–4, on the group's coordinator: the offsets are kept
/// pending (in the bucket) until the transaction ends — applied to the group on commit,
/// dropped on abort. A named member and generation are checked as OffsetCommit checks them.
public struct TxnOffsetCommitHandler: ApiHandler {
    let groups: GroupCoordinator
    let offsets: TxnOffsetStore
    let core: BrokerCore
    public let apiKey = ApiKey.txnOffsetCommit
    public let versions: ClosedRange<Int16> = 0...4

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .txnOffsetCommit(r) = request else { return .close }
        func answer(_ code: (String, Int32) -> Int16) -> ApiResult {
            var response = TxnOffsetCommitResponse(topics: [])
            response.topics = r.topics.map { t in
                .init(name: t.name, partitions: t.partitions.map { .init(partitionIndex: $0.partitionIndex, errorCode: code(t.name, $0.partitionIndex)) })
            }
            return .response(.txnOffsetCommit(response))
        }
        guard groups.isCoordinator(of: r.groupId) else { return answer { _, _ in KafkaErrorCode.notCoordinator.rawValue } }
        let version = context.apiVersion
        let check = await groups.validateTransactionalCommit(groupId: r.groupId, memberId: version >= 3 ? r.memberId : "",
                                                             groupInstanceId: version >= 3 ? r.groupInstanceId : nil,
                                                             generationId: version >= 3 ? r.generationId : -1)
        if check != 0 { return answer { _, _ in check } }
        var entries: [PendingTxnOffsets.Offset] = []
        var unknown: Set<TopicPartition> = []
        for t in r.topics {
            let record = core.registry.topic(named: t.name)
            for p in t.partitions {
                if record == nil || p.partitionIndex < 0 || Int(p.partitionIndex) >= record!.partitions.count {
                    unknown.insert(TopicPartition(t.name, p.partitionIndex))
                    continue
                }
                entries.append(.init(topic: t.name, partition: p.partitionIndex, offset: p.committedOffset,
                                     leaderEpoch: version >= 2 ? p.committedLeaderEpoch : -1, metadata: p.committedMetadata))
            }
        }
        do {
            if !entries.isEmpty {
                try await offsets.add(group: r.groupId, producerId: r.producerId, producerEpoch: r.producerEpoch, offsets: entries)
            }
            return answer { unknown.contains(TopicPartition($0, $1)) ? KafkaErrorCode.unknownTopicOrPartition.rawValue : 0 }
        } catch {
            let refusal = txnRefusal(error)
            core.logger.warning("transactional offset commit failed", metadata: ["group.id": r.groupId, "error": refusal.message])
            let code = refusal.code == .unknownServerError ? KafkaErrorCode.coordinatorNotAvailable.rawValue : refusal.code.rawValue
            return answer { _, _ in code }
        }
    }
}

/// DescribeTransactions (API 65), version 0: the state of each named transactional id this
/// broker coordinates (NOT_COORDINATOR otherwise, TRANSACTIONAL_ID_NOT_FOUND when unknown).
public struct DescribeTransactionsHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.describeTransactions
    public let versions: ClosedRange<Int16> = 0...0

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .describeTransactions(r) = request else { return .close }
        var response = DescribeTransactionsResponse(transactionStates: [])
        for id in r.transactionalIds {
            var state = DescribeTransactionsResponse.TransactionState(errorCode: 0, transactionalId: id, transactionState: "",
                                                                      transactionTimeoutMs: 0, transactionStartTimeMs: -1,
                                                                      producerId: -1, producerEpoch: -1, topics: [])
            do {
                if let m = try await core.transactions.describe(transactionalId: id) {
                    state.transactionState = m.state.rawValue
                    state.transactionTimeoutMs = m.timeoutMs
                    state.transactionStartTimeMs = m.startMs
                    state.producerId = m.producerId
                    state.producerEpoch = m.producerEpoch
                    var byTopic: [String: [Int32]] = [:]
                    for p in m.partitions { byTopic[p.topic, default: []].append(p.partition) }
                    state.topics = byTopic.keys.sorted().map { .init(topic: $0, partitions: byTopic[$0]!.sorted()) }
                } else {
                    state.errorCode = KafkaErrorCode.transactionalIdNotFound.rawValue
                }
            } catch {
                state.errorCode = txnRefusal(error).code.rawValue
            }
            response.transactionStates.append(state)
        }
        return .response(.describeTransactions(response))
    }
}

/// ListTransactions (API 66), versions 0–1: the transactional ids this broker coordinates,
/// filtered by state names, producer ids and (v1) running longer than `durationFilter` ms.
/// Unknown state names are echoed in `unknownStateFilters`.
public struct ListTransactionsHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.listTransactions
    public let versions: ClosedRange<Int16> = 0...1

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .listTransactions(r) = request else { return .close }
        var response = ListTransactionsResponse(errorCode: 0, unknownStateFilters: [], transactionStates: [])
        let known = Set(TxnState.allCases.map(\.rawValue))
        response.unknownStateFilters = r.stateFilters.filter { !known.contains($0) }
        let states = Set(r.stateFilters.filter { known.contains($0) })
        let pids = Set(r.producerIdFilters)
        do {
            let now = wallMillis()
            for m in try await core.transactions.list() {
                if !r.stateFilters.isEmpty && !states.contains(m.state.rawValue) { continue }
                if !pids.isEmpty && !pids.contains(m.producerId) { continue }
                if context.apiVersion >= 1 && r.durationFilter >= 0 && (m.startMs < 0 || now - m.startMs < r.durationFilter) { continue }
                response.transactionStates.append(.init(transactionalId: m.transactionalId, producerId: m.producerId,
                                                        transactionState: m.state.rawValue))
            }
        } catch {
            response.errorCode = KafkaErrorCode.coordinatorNotAvailable.rawValue
        }
        return .response(.listTransactions(response))
    }
}
