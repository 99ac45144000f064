import Testing
@testable import Broker
@testable import KafkaProtocol

/// Kafka's ACL rules for the transaction APIs (Authorization+Transactions.swift), with the
/// helpers of ``AccessCheckTests``.
struct TransactionAccessTests {
    typealias Row = AccessCheckTests.Row
    static let t = AclResource.topic("t"), g = AclResource.group("g"), tx = AclResource.transactionalId("tx"), cluster = AclResource.cluster

    static let rows: [Row] = [
        Row(name: "AddPartitionsToTxn", request: .addPartitionsToTxn(AddPartitionsToTxnRequest(
                v3AndBelowTransactionalId: "tx", v3AndBelowProducerId: 1, v3AndBelowProducerEpoch: 0, v3AndBelowTopics: [.init(name: "t", partitions: [0])])),
            version: 3, needs: [(.write, tx), (.write, t)], denied: .transactionalIdAuthorizationFailed),
        Row(name: "AddPartitionsToTxn v4 (brokers)", request: .addPartitionsToTxn(AddPartitionsToTxnRequest(transactions: [.init(
                transactionalId: "tx", producerId: 1, producerEpoch: 0, verifyOnly: true, topics: [.init(name: "t", partitions: [0])])])),
            version: 4, needs: [(.clusterAction, cluster)], denied: .clusterAuthorizationFailed),
        Row(name: "AddOffsetsToTxn", request: .addOffsetsToTxn(AddOffsetsToTxnRequest(transactionalId: "tx", producerId: 1, producerEpoch: 0, groupId: "g")),
            version: 3, needs: [(.write, tx), (.read, g)], denied: .transactionalIdAuthorizationFailed),
        Row(name: "EndTxn", request: .endTxn(EndTxnRequest(transactionalId: "tx", producerId: 1, producerEpoch: 0, committed: true)),
            version: 3, needs: [(.write, tx)], denied: .transactionalIdAuthorizationFailed),
        Row(name: "TxnOffsetCommit", request: .txnOffsetCommit(TxnOffsetCommitRequest(transactionalId: "tx", groupId: "g", producerId: 1, producerEpoch: 0,
                                                                                      topics: [.init(name: "t", partitions: [.init(partitionIndex: 0, committedOffset: 5)])])),
            version: 3, needs: [(.write, tx), (.read, g), (.read, t)], denied: .transactionalIdAuthorizationFailed),
        Row(name: "WriteTxnMarkers", request: .writeTxnMarkers(WriteTxnMarkersRequest(markers: [.init(producerId: 1, producerEpoch: 0, transactionResult: true,
                                                                                                       topics: [.init(name: "t", partitionIndexes: [0])], coordinatorEpoch: 0)])),
            version: 1, needs: [(.clusterAction, cluster)], denied: .clusterAuthorizationFailed),
        Row(name: "DescribeTransactions", request: .describeTransactions(DescribeTransactionsRequest(transactionalIds: ["tx"])),
            version: 0, needs: [(.describe, tx)], denied: .transactionalIdAuthorizationFailed),
    ]

    /// Every non-zero `errorCode` / `partitionErrorCode` field in a response, at any depth.
    static func errorCodes(_ value: Any) -> [Int16] {
        var out: [Int16] = []
        for child in Mirror(reflecting: value).children {
            if child.label == "errorCode" || child.label == "partitionErrorCode", let code = child.value as? Int16, code != 0 { out.append(code) }
            out += errorCodes(child.value)
        }
        return out
    }

    static func screen(_ bindings: [AclBinding], _ row: Row, superUsers: Set<String> = []) -> (unchanged: Bool, codes: [Int16]) {
        let s = AccessCheckTests.check(bindings, superUsers: superUsers).screen(row.request, version: row.version)
        switch s {
        case .pass: return (true, [])
        case .close: return (false, [])
        case let .answer(r): return (false, Self.errorCodes(r))
        case let .narrowed(req, complete):
            let empty: AnyResponse
            switch row.request {
            case .txnOffsetCommit: empty = .txnOffsetCommit(TxnOffsetCommitResponse(topics: []))
            case .describeTransactions: empty = .describeTransactions(DescribeTransactionsResponse(transactionStates: []))
            default:
                Issue.record("\(row.name) was narrowed, which this test does not expect")
                return (false, [])
            }
            return (req == row.request, Self.errorCodes(complete(empty)))
        }
    }

    @Test(arguments: rows) func grantedRequestsRunUnchanged(_ row: Row) {
        let (unchanged, codes) = Self.screen(AccessCheckTests.grants(row.needs), row)
        #expect(unchanged, "\(row.name) with every grant was changed (codes \(codes))")
    }

    @Test(arguments: rows) func deniedRequestsGetTheirCode(_ row: Row) {
        let (unchanged, codes) = Self.screen([], row)
        #expect(!unchanged)
        #expect(codes.contains(row.denied.rawValue), "\(row.name) without grants answered codes \(codes), expected \(row.denied)")
    }

    @Test(arguments: rows) func superUsersRunUnchanged(_ row: Row) {
        #expect(Self.screen([], row, superUsers: ["User:alice"]).unchanged)
    }

    @Test(arguments: rows) func grantsAreByPrincipal(_ row: Row) {
        #expect(!Self.screen(AccessCheckTests.grants(row.needs, principal: "User:bob"), row).unchanged)
    }

    /// Every grant but one: the answer names the missing one.
    @Test func partialGrantsGetTheMissingResourcesCode() {
        let add = Self.rows[0]
        let (_, topicCodes) = Self.screen(AccessCheckTests.grants([(.write, Self.tx)]), add)
        #expect(topicCodes == [KafkaErrorCode.topicAuthorizationFailed.rawValue], "AddPartitionsToTxn without WRITE topic: \(topicCodes)")
        let offsets = Self.rows[2]
        let (_, groupCodes) = Self.screen(AccessCheckTests.grants([(.write, Self.tx)]), offsets)
        #expect(groupCodes == [KafkaErrorCode.groupAuthorizationFailed.rawValue], "AddOffsetsToTxn without READ group: \(groupCodes)")
        let commit = Self.rows[4]
        let (_, commitCodes) = Self.screen(AccessCheckTests.grants([(.write, Self.tx), (.read, Self.g)]), commit)
        #expect(commitCodes == [KafkaErrorCode.topicAuthorizationFailed.rawValue], "TxnOffsetCommit without READ topic: \(commitCodes)")
    }

    @Test func listTransactionsLeavesOutIdsNotDescribable() {
        let s = AccessCheckTests.check(AccessCheckTests.grants([(.describe, Self.tx)])).screen(.listTransactions(ListTransactionsRequest()), version: 1)
        guard case let .narrowed(_, complete) = s else {
            Issue.record("ListTransactions should be narrowed, was \(s)")
            return
        }
        let all = AnyResponse.listTransactions(ListTransactionsResponse(transactionStates: [
            .init(transactionalId: "tx", producerId: 1, transactionState: "Ongoing"),
            .init(transactionalId: "other", producerId: 2, transactionState: "Empty")]))
        guard case let .listTransactions(out) = complete(all) else {
            Issue.record("ListTransactions answer changed kind")
            return
        }
        #expect(out.transactionStates.map(\.transactionalId) == ["tx"])
    }
}
