import KafkaProtocol

/// Kafka's ACL rules for the transaction APIs (`KafkaApis`):
///
/// | API | needs | refused with |
/// |---|---|---|
/// | AddPartitionsToTxn v0–3 | WRITE transactional id; WRITE each topic | TRANSACTIONAL_ID_AUTHORIZATION_FAILED on every partition; TOPIC_AUTHORIZATION_FAILED on denied topics, OPERATION_NOT_ATTEMPTED on the rest |
/// | AddPartitionsToTxn v4+ (brokers) | CLUSTER_ACTION cluster | CLUSTER_AUTHORIZATION_FAILED |
/// | AddOffsetsToTxn | WRITE transactional id; READ group | TRANSACTIONAL_ID_AUTHORIZATION_FAILED / GROUP_AUTHORIZATION_FAILED |
/// | EndTxn | WRITE transactional id | TRANSACTIONAL_ID_AUTHORIZATION_FAILED |
/// | TxnOffsetCommit | WRITE transactional id; READ group; READ each topic | per partition: TRANSACTIONAL_ID_… / GROUP_… / TOPIC_AUTHORIZATION_FAILED |
/// | WriteTxnMarkers | CLUSTER_ACTION cluster | CLUSTER_AUTHORIZATION_FAILED per partition |
/// | DescribeTransactions | DESCRIBE transactional id | TRANSACTIONAL_ID_AUTHORIZATION_FAILED per id |
/// | ListTransactions | DESCRIBE transactional id | ids not allowed are left out |
extension AccessCheck {
    func txn(_ op: AclOperation, _ id: String) -> Bool { allowed(op, .transactionalId(id)) }

    func screenTransactions(_ request: AnyRequest, version: Int16) -> Screening {
        switch request {
        case let .addPartitionsToTxn(r):
            // v4+ is sent by brokers (verification, KIP-890): CLUSTER_ACTION, as Kafka requires.
            guard version <= 3 else {
                return cluster(.clusterAction) ? .pass : .answer(.addPartitionsToTxn(AddPartitionsToTxnResponse(errorCode: Self.clusterDenied)))
            }
            func answer(_ code: (String) -> Int16) -> Screening {
                var out = AddPartitionsToTxnResponse()
                out.resultsByTopicV3AndBelow = r.v3AndBelowTopics.map { t in
                    .init(name: t.name, resultsByPartition: t.partitions.map { .init(partitionIndex: $0, partitionErrorCode: code(t.name)) })
                }
                return .answer(.addPartitionsToTxn(out))
            }
            guard txn(.write, r.v3AndBelowTransactionalId) else { return answer { _ in Self.txnDenied } }
            let denied = Set(r.v3AndBelowTopics.map(\.name).filter { !topic(.write, $0) })
            if denied.isEmpty { return .pass }
            return answer { denied.contains($0) ? Self.topicDenied : KafkaErrorCode.operationNotAttempted.rawValue }
        case let .addOffsetsToTxn(r):
            guard txn(.write, r.transactionalId) else { return .answer(.addOffsetsToTxn(AddOffsetsToTxnResponse(errorCode: Self.txnDenied))) }
            guard group(.read, r.groupId) else { return .answer(.addOffsetsToTxn(AddOffsetsToTxnResponse(errorCode: Self.groupDenied))) }
            return .pass
        case let .endTxn(r):
            guard txn(.write, r.transactionalId) else {
                return .answer(.endTxn(EndTxnResponse(errorCode: Self.txnDenied, producerId: -1, producerEpoch: -1)))
            }
            return .pass
        case let .txnOffsetCommit(r):
            func answer(_ code: (String) -> Int16) -> TxnOffsetCommitResponse {
                TxnOffsetCommitResponse(topics: r.topics.map { t in
                    .init(name: t.name, partitions: t.partitions.map { .init(partitionIndex: $0.partitionIndex, errorCode: code(t.name)) })
                })
            }
            guard txn(.write, r.transactionalId) else { return .answer(.txnOffsetCommit(answer { _ in Self.txnDenied })) }
            guard group(.read, r.groupId) else { return .answer(.txnOffsetCommit(answer { _ in Self.groupDenied })) }
            let denied = Set(r.topics.map(\.name).filter { !topic(.read, $0) })
            if denied.isEmpty { return .pass }
            var narrowed = r
            narrowed.topics.removeAll { denied.contains($0.name) }
            let refused = answer { _ in Self.topicDenied }.topics.filter { denied.contains($0.name) }
            if narrowed.topics.isEmpty { return .answer(.txnOffsetCommit(TxnOffsetCommitResponse(topics: refused))) }
            return .narrowed(.txnOffsetCommit(narrowed)) { response in
                guard case var .txnOffsetCommit(out) = response else { return response }
                out.topics += refused
                return .txnOffsetCommit(out)
            }
        case let .writeTxnMarkers(r):
            if cluster(.clusterAction) { return .pass }
            return .answer(.writeTxnMarkers(WriteTxnMarkersResponse(markers: r.markers.map { m in
                .init(producerId: m.producerId, topics: m.topics.map { t in
                    .init(name: t.name, partitions: t.partitionIndexes.map { .init(partitionIndex: $0, errorCode: Self.clusterDenied) })
                })
            })))
        case let .describeTransactions(r):
            let denied = Set(r.transactionalIds.filter { !txn(.describe, $0) })
            if denied.isEmpty { return .pass }
            var narrowed = r
            narrowed.transactionalIds.removeAll { denied.contains($0) }
            let refused = r.transactionalIds.filter { denied.contains($0) }.map {
                DescribeTransactionsResponse.TransactionState(errorCode: Self.txnDenied, transactionalId: $0, transactionState: "",
                                                              transactionTimeoutMs: 0, transactionStartTimeMs: -1, producerId: -1,
                                                              producerEpoch: -1, topics: [])
            }
            if narrowed.transactionalIds.isEmpty {
                return .answer(.describeTransactions(DescribeTransactionsResponse(transactionStates: refused)))
            }
            return .narrowed(.describeTransactions(narrowed)) { response in
                guard case var .describeTransactions(out) = response else { return response }
                out.transactionStates += refused
                return .describeTransactions(out)
            }
        case .listTransactions:
            return .narrowed(request) { [self] response in
                guard case var .listTransactions(out) = response else { return response }
                out.transactionStates.removeAll { !txn(.describe, $0.transactionalId) }
                return .listTransactions(out)
            }
        default:
            return .pass
        }
    }
}
