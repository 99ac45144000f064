import KafkaProtocol

/// CreateTopics (API 19), versions 0–7. `validate_only` checks without creating; a requested
/// replication factor is accepted and noted (each partition has one replica: durability comes
/// from object storage); -1 partitions or replication factor take the broker defaults; manual
/// replica assignments must name only this broker.
public struct CreateTopicsHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.createTopics
    public let versions: ClosedRange<Int16> = 0...7
    public init(core: BrokerCore) { self.core = core }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .createTopics(r) = request else { return .close }
        var response = CreateTopicsResponse()
        var seen: [String: Int] = [:]
        for t in r.topics { seen[t.name, default: 0] += 1 }
        for t in r.topics {
            var result = CreateTopicsResponse.CreatableTopicResult(name: t.name)
            func fail(_ code: KafkaErrorCode, _ message: String) {
                result.errorCode = code.rawValue
                result.errorMessage = message
            }
            var configs: [String: String] = [:]
            for c in t.configs { if let v = c.value { configs[c.name] = v } }
            var partitions = t.numPartitions == -1 ? core.defaultPartitions : t.numPartitions
            let rf = t.replicationFactor == -1 ? core.defaultReplicationFactor : t.replicationFactor
            if !t.assignments.isEmpty {
                partitions = Int32(t.assignments.count)
            }
            if seen[t.name, default: 0] > 1 {
                fail(.invalidRequest, "topic \(t.name) appears more than once in the request")
            } else if t.numPartitions != -1 && !t.assignments.isEmpty {
                fail(.invalidRequest, "both numPartitions and replica assignments were given for \(t.name)")
            } else if let bad = t.assignments.first(where: { $0.brokerIds.contains { $0 != core.nodeId } || $0.brokerIds.isEmpty }) {
                fail(.invalidReplicaAssignment, "assignment of partition \(bad.partitionIndex) names brokers \(bad.brokerIds); only broker \(core.nodeId) exists")
            } else {
                do {
                    let record = try await core.registry.create(
                        name: t.name, partitions: partitions, replicationFactor: rf, configs: configs, validateOnly: r.validateOnly)
                    result.topicId = context.apiVersion >= 7 ? record.topicID : .zero
                    if context.apiVersion >= 5 {
                        result.numPartitions = partitions
                        result.replicationFactor = rf
                        result.configs = core.topicConfigs(record).sorted { $0.key < $1.key }.map { name, value in
                            let src = core.config.topicConfig(name, explicit: configs, dynamic: core.registry.dynamicBrokerConfigs)?.source ?? .default
                            return .init(name: name, value: value, readOnly: false, configSource: src.rawValue, isSensitive: false)
                        }
                    }
                    if !r.validateOnly {
                        core.logger.info("topic created", metadata: [
                            "topic": t.name, "partitions": "\(partitions)", "replication.factor.requested": "\(rf)"])
                    }
                } catch let e as TopicError {
                    fail(e.code, e.message)
                } catch {
                    fail(.unknownServerError, "creating \(t.name) failed: \(error)")
                }
            }
            if context.apiVersion < 1 { result.errorMessage = nil }
            response.topics.append(result)
        }
        return .response(.createTopics(response))
    }
}

/// DeleteTopics (API 20), versions 0–6 (by name, or by topic id from v6).
public struct DeleteTopicsHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.deleteTopics
    public let versions: ClosedRange<Int16> = 0...6
    public init(core: BrokerCore) { self.core = core }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .deleteTopics(r) = request else { return .close }
        var targets: [(name: String?, id: KafkaUUID)] = r.topicNames.map { ($0, .zero) }
        targets += r.topics.map { ($0.name, $0.topicId) }
        var response = DeleteTopicsResponse()
        let enabled = core.brokerProperty("delete.topic.enable")?.lowercased() != "false"
        for target in targets {
            var result = DeleteTopicsResponse.DeletableTopicResult(name: target.name, topicId: target.id)
            let record: TopicRecord?
            if let name = target.name { record = core.registry.topic(named: name) } else { record = core.registry.topic(id: target.id) }
            if !enabled {
                result.errorCode = KafkaErrorCode.topicDeletionDisabled.rawValue
                result.errorMessage = "delete.topic.enable is false"
            } else if let record {
                result.name = record.name
                if context.apiVersion >= 6 { result.topicId = record.topicID }
                do {
                    try await core.registry.delete(name: record.name)
                    try await core.partitions.drop(record)
                    core.logger.info("topic deleted", metadata: ["topic": record.name])
                } catch let e as TopicError {
                    result.errorCode = e.code.rawValue
                    result.errorMessage = e.message
                } catch {
                    result.errorCode = KafkaErrorCode.unknownServerError.rawValue
                    result.errorMessage = "deleting \(record.name) failed: \(error)"
                }
            } else {
                result.errorCode = (target.name == nil ? KafkaErrorCode.unknownTopicId : .unknownTopicOrPartition).rawValue
                result.errorMessage = "topic \(target.name ?? target.id.description) does not exist"
            }
            if context.apiVersion < 5 { result.errorMessage = nil }
            response.responses.append(result)
        }
        return .response(.deleteTopics(response))
    }
}

/// CreatePartitions (API 37), versions 0–3: grows a topic; new partitions get fresh streams.
public struct CreatePartitionsHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.createPartitions
    public let versions: ClosedRange<Int16> = 0...3
    public init(core: BrokerCore) { self.core = core }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .createPartitions(r) = request else { return .close }
        var response = CreatePartitionsResponse()
        for t in r.topics {
            var result = CreatePartitionsResponse.CreatePartitionsTopicResult(name: t.name)
            if let a = t.assignments, a.contains(where: { $0.brokerIds.contains { $0 != core.nodeId } }) {
                result.errorCode = KafkaErrorCode.invalidReplicaAssignment.rawValue
                result.errorMessage = "assignments may only name broker \(core.nodeId)"
            } else {
                do {
                    try await core.registry.createPartitions(name: t.name, count: t.count, validateOnly: r.validateOnly)
                } catch let e as TopicError {
                    result.errorCode = e.code.rawValue
                    result.errorMessage = e.message
                } catch {
                    result.errorCode = KafkaErrorCode.unknownServerError.rawValue
                    result.errorMessage = "growing \(t.name) failed: \(error)"
                }
            }
            response.results.append(result)
        }
        return .response(.createPartitions(response))
    }
}
