import Bytes
import KafkaProtocol

/// What the coordinator makes of an OffsetDelete.
public enum OffsetDeleteOutcome: Sendable, Equatable {
    /// The whole request fails with this code (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP,
    /// NOT_COORDINATOR, ...).
    case groupError(Int16)
    /// Answered now: nothing had to be written.
    case done([PartitionResult])
    /// The partitions' results, once the group's object without the deleted offsets is written
    /// (complete with ``GroupCoordinator/waitDurable(_:groupId:)``: its `.commit` reply carries
    /// the write's code for each deleted partition).
    case pending(RequestToken, [PartitionResult])
}

extension GroupCoordinator {
    /// Deletes committed offsets of a group, as Kafka's group coordinator does for OffsetDelete:
    ///
    /// - no such group (or Dead): GROUP_ID_NOT_FOUND; an empty or unstorable group id:
    ///   INVALID_GROUP_ID; a group placed on another broker: NOT_COORDINATOR;
    /// - a group with members that does not use the `consumer` protocol type: NON_EMPTY_GROUP
    ///   (its subscriptions cannot be known);
    /// - otherwise per partition: GROUP_SUBSCRIBED_TO_TOPIC when a member subscribes to the
    ///   topic (``subscribedTopics(of:)``), else success, whether or not an offset was committed.
    ///
    /// The offsets are removed through the group's usual single writer: queued behind commits
    /// that arrived before (so a deletion is never undone by an earlier commit), written to the
    /// group's object, and acknowledged once durable.
    public func deleteOffsets(groupId: String, partitions: [TopicPartition]) async -> OffsetDeleteOutcome {
        if groupId.isEmpty || groupKeyProblem(groupId) != nil { return .groupError(KafkaErrorCode.invalidGroupId.rawValue) }
        if let code = await resident(groupId) { return .groupError(code) }
        guard let entry = groups[groupId], entry.machine.state != .dead else { return .groupError(KafkaErrorCode.groupIdNotFound.rawValue) }
        let live = liveSubscriptions(entry)
        if live.hasMembers && !live.usesConsumerProtocol { return .groupError(KafkaErrorCode.nonEmptyGroup.rawValue) }
        let usesConsumerProtocol = live.usesConsumerProtocol
        let subscribed = live.topics
        var queuedPartitions = Set<TopicPartition>()
        for commit in entry.queued { for e in commit.entries where e.errorCode == 0 { queuedPartitions.insert(e.partition) } }
        var results: [PartitionResult] = []
        var deletions: [TopicPartition] = []
        for p in partitions {
            // Unknown subscriptions (metadata that does not parse, no protocol chosen yet) count
            // as subscribed to everything for a consumer group, as in Kafka.
            if subscribed.map({ $0.contains(p.topic) }) ?? usesConsumerProtocol {
                results.append(PartitionResult(topic: p.topic, partition: p.partition, errorCode: KafkaErrorCode.groupSubscribedToTopic.rawValue))
                continue
            }
            results.append(PartitionResult(topic: p.topic, partition: p.partition, errorCode: 0))
            if entry.offsets[p] != nil || queuedPartitions.contains(p), !deletions.contains(p) { deletions.append(p) }
        }
        guard !deletions.isEmpty else { return .done(results) }
        let token = newToken()
        groups[groupId]!.queued.append(PendingCommit(token: token, entries: [], deletions: deletions))
        return .pending(token, results)
    }

    /// What OffsetDelete needs to know of a group's live members: whether it has any, whether
    /// they speak the consumer protocol, and the topics they subscribe to (nil: unknown). A
    /// KIP-848 consumer group with members subscribes to its members' topic names and to the
    /// topics its target assignment was computed from (regex subscriptions resolved); only Dead
    /// refuses OffsetDelete for it, as in Kafka.
    func liveSubscriptions(_ entry: Entry) -> (hasMembers: Bool, usesConsumerProtocol: Bool, topics: Set<String>?) {
        if let consumer = entry.consumer, !consumer.members.isEmpty {
            var topics = Set(consumer.subscribedTopics.keys)
            for member in consumer.members.values { topics.formUnion(member.subscribedTopicNames) }
            return (true, true, topics)
        }
        let machine = entry.machine
        return (machine.state != .empty, machine.protocolType == "consumer", Self.subscribedTopics(of: machine))
    }

    /// The topics the members of a classic group subscribe to: empty for a group without
    /// members, nil when unknown (another protocol type, no protocol chosen yet, or member
    /// metadata that is not a consumer-protocol subscription). Kafka reads the subscriptions at
    /// each generation; here they are read from the members' metadata for the chosen protocol.
    static func subscribedTopics(of machine: GroupStateMachine) -> Set<String>? {
        guard machine.protocolType == "consumer" else { return nil }
        if machine.members.isEmpty { return [] }
        guard let protocolName = machine.protocolName else { return nil }
        var topics = Set<String>()
        for member in machine.members.values {
            guard let subscription = ConsumerSubscription.topics(member.metadata(for: protocolName)) else { return nil }
            topics.formUnion(subscription)
        }
        return topics
    }
}

/// The topics of a consumer-protocol subscription (the metadata a consumer sends in JoinGroup
/// for each assignor): version int16, then topics as an int32 count of int16-length strings. Every
/// version starts with this v0 prefix, which is all that is read (as Kafka's coordinator does).
///
/// Example: `00 01 | 00 00 00 01 | 00 01 "t"` (version 1, one topic "t", nothing after) → ["t"].
enum ConsumerSubscription {
    static func topics(_ metadata: [UInt8]) -> [String]? {
        var reader = ByteReader(metadata)
        do {
            let version = try reader.readInt16()
            guard version >= 0 else { return nil }
            let count = try reader.readInt32()
            guard count >= 0, Int(count) <= metadata.count else { return nil }
            var topics: [String] = []
            for _ in 0..<count {
                let length = try reader.readInt16()
                guard length >= 0 else { return nil }
                let bytes = try reader.readBytes(Int(length))
                guard let name = String(validating: bytes, as: UTF8.self) else { return nil }
                topics.append(name)
            }
            return topics
        } catch {
            return nil  // not a consumer subscription: the caller treats the topics as unknown
        }
    }
}

/// OffsetDelete v0 (API 47): removes committed offsets of a group for partitions of topics its
/// members do not subscribe to (``GroupCoordinator/deleteOffsets(groupId:partitions:)``).
/// Partitions of unknown topics, or beyond a topic's partition count, get
/// UNKNOWN_TOPIC_OR_PARTITION without reaching the coordinator (Kafka's `KafkaApis`). A group
/// error, or a failed write of the group's object, answers the top-level error code alone.
public struct OffsetDeleteHandler: ApiHandler {
    let coordinator: GroupCoordinator
    public var apiKey: ApiKey { .offsetDelete }
    public var versions: ClosedRange<Int16> { 0...0 }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .offsetDelete(r) = request else { return .close }
        var unknown: [PartitionResult] = []
        var valid: [TopicPartition] = []
        for t in r.topics {
            let count = await coordinator.topics.partitionCount(topic: t.name)
            for p in t.partitions {
                if let count, p.partitionIndex >= 0, Int(p.partitionIndex) < count {
                    valid.append(TopicPartition(t.name, p.partitionIndex))
                } else {
                    unknown.append(PartitionResult(topic: t.name, partition: p.partitionIndex, errorCode: KafkaErrorCode.unknownTopicOrPartition.rawValue))
                }
            }
        }
        let order = r.topics.map(\.name)
        switch await coordinator.deleteOffsets(groupId: r.groupId, partitions: valid) {
        case let .groupError(code):
            return .response(.offsetDelete(OffsetDeleteResponse(errorCode: code)))
        case let .done(results):
            return .response(.offsetDelete(Self.response(unknown + results, order: order)))
        case let .pending(token, results):
            let coordinator = self.coordinator
            let groupId = r.groupId
            let unknown = unknown
            return .deferred {
                let written: Int16
                switch await coordinator.waitDurable(token, groupId: groupId) {
                case let .commit(deleted): written = deleted.first { $0.errorCode != 0 }?.errorCode ?? 0
                case let .unavailable(code): written = code
                default: written = KafkaErrorCode.unknownServerError.rawValue
                }
                if written != 0 { return .offsetDelete(OffsetDeleteResponse(errorCode: written)) }
                return .offsetDelete(Self.response(unknown + results, order: order))
            }
        }
    }

    /// Results grouped by topic, topics in request order.
    static func response(_ results: [PartitionResult], order: [String]) -> OffsetDeleteResponse {
        var byTopic: [String: [OffsetDeleteResponse.OffsetDeleteResponsePartition]] = [:]
        for r in results { byTopic[r.topic, default: []].append(.init(partitionIndex: r.partition, errorCode: r.errorCode)) }
        var seen = Set<String>()
        var topics: [OffsetDeleteResponse.OffsetDeleteResponseTopic] = []
        for name in order where seen.insert(name).inserted {
            guard let partitions = byTopic[name] else { continue }
            topics.append(.init(name: name, partitions: partitions.sorted { $0.partitionIndex < $1.partitionIndex }))
        }
        return OffsetDeleteResponse(errorCode: 0, topics: topics)
    }
}
