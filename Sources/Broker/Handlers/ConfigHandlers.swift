import BrokerSettings
import KafkaProtocol

enum ResourceType: Int8 {
    case topic = 2
    case broker = 4
}

/// Broker properties that AlterConfigs may change at run time (stored in the registry): the
/// settings declared `dynamic` in `BrokerSettings`.
let dynamicBrokerKeys: Set<String> = BrokerSettings.dynamicNames

extension BrokerCore {
    /// Validates a broker-level change: alterable key and, for topic-default synonyms, a value
    /// the topic config accepts.
    func brokerConfigProblem(_ key: String, _ value: String) -> String? {
        guard dynamicBrokerKeys.contains(key) else { return "broker configuration \(key) cannot be changed at run time" }
        if let def = TopicConfigs.all.values.first(where: { $0.brokerSynonym == key }), let reason = def.validate(value) {
            return "invalid value \(value) for \(key): \(reason)"
        }
        switch key {
        case "auto.create.topics.enable", "delete.topic.enable":
            return ["true", "false"].contains(value.lowercased()) ? nil : "invalid value \(value) for \(key): must be true or false"
        case "num.partitions", "default.replication.factor":
            return (Int32(value) ?? 0) >= 1 ? nil : "invalid value \(value) for \(key): must be a positive integer"
        default: return nil
        }
    }

    func isThisBroker(_ name: String) -> Bool { name.isEmpty || name == "\(nodeId)" }
}

/// DescribeConfigs (API 32), versions 0–4, for topic and broker resources: every value with
/// its source (topic override, dynamic broker, static broker, default), synonyms when asked
/// (v1+), types and documentation (v3+).
public struct DescribeConfigsHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.describeConfigs
    public let versions: ClosedRange<Int16> = 0...4
    public init(core: BrokerCore) { self.core = core }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .describeConfigs(r) = request else { return .close }
        let version = context.apiVersion
        var response = DescribeConfigsResponse()
        for res in r.resources {
            var result = DescribeConfigsResponse.DescribeConfigsResult(resourceType: res.resourceType, resourceName: res.resourceName)
            let keys = res.configurationKeys.map(Set.init)
            switch ResourceType(rawValue: res.resourceType) {
            case .topic:
                guard let topic = core.registry.topic(named: res.resourceName) else {
                    result.errorCode = KafkaErrorCode.unknownTopicOrPartition.rawValue
                    result.errorMessage = "topic \(res.resourceName) does not exist"
                    break
                }
                let dynamic = core.registry.dynamicBrokerConfigs
                for name in TopicConfigs.all.keys.sorted() where keys?.contains(name) ?? true {
                    let def = TopicConfigs.all[name]!
                    guard let (value, source) = core.config.topicConfig(name, explicit: topic.configs, dynamic: dynamic) else { continue }
                    var entry = DescribeConfigsResponse.DescribeConfigsResourceResult(
                        name: name, value: value, readOnly: false, isDefault: version == 0 && source == .default,
                        configSource: version >= 1 ? source.rawValue : -1, isSensitive: false)
                    if version >= 1 && r.includeSynonyms {
                        var syns: [DescribeConfigsResponse.DescribeConfigsSynonym] = []
                        if let v = topic.configs[name] { syns.append(.init(name: name, value: v, source: ConfigSource.dynamicTopic.rawValue)) }
                        if let s = def.brokerSynonym {
                            if let v = dynamic[s] { syns.append(.init(name: s, value: v, source: ConfigSource.dynamicBroker.rawValue)) }
                            if let src = core.config.sources[s], src != .default, let v = core.config[s] {
                                syns.append(.init(name: s, value: v, source: ConfigSource.staticBroker.rawValue))
                            }
                        }
                        syns.append(.init(name: def.brokerSynonym ?? name, value: def.defaultValue, source: ConfigSource.default.rawValue))
                        entry.synonyms = syns
                    }
                    if version >= 3 {
                        entry.configType = def.type.rawValue
                        if r.includeDocumentation { entry.documentation = def.documentation }
                    }
                    result.configs.append(entry)
                }
            case .broker:
                guard core.isThisBroker(res.resourceName) else {
                    result.errorCode = KafkaErrorCode.invalidRequest.rawValue
                    result.errorMessage = "broker \(res.resourceName) is not this broker (\(core.nodeId))"
                    break
                }
                let dynamic = core.registry.dynamicBrokerConfigs
                for name in core.config.values.keys.sorted() where keys?.contains(name) ?? true {
                    let value = dynamic[name] ?? core.config[name]
                    let source: ConfigSource
                    if dynamic[name] != nil { source = .dynamicBroker } else if core.config.sources[name] == .default { source = .default } else { source = .staticBroker }
                    var entry = DescribeConfigsResponse.DescribeConfigsResourceResult(
                        name: name, value: value, readOnly: !dynamicBrokerKeys.contains(name), isDefault: version == 0 && source == .default,
                        configSource: version >= 1 ? source.rawValue : -1, isSensitive: false)
                    if version >= 3 { entry.configType = ConfigType.string.rawValue }
                    result.configs.append(entry)
                }
            case nil:
                result.errorCode = KafkaErrorCode.invalidRequest.rawValue
                result.errorMessage = "resource type \(res.resourceType) is not served (topics 2 and brokers 4 are)"
            }
            response.results.append(result)
        }
        return .response(.describeConfigs(response))
    }
}

/// AlterConfigs (API 33), versions 0–2: replaces a topic's (or the broker's dynamic) configs
/// with the given set, after validating every value.
public struct AlterConfigsHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.alterConfigs
    public let versions: ClosedRange<Int16> = 0...2
    public init(core: BrokerCore) { self.core = core }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .alterConfigs(r) = request else { return .close }
        var response = AlterConfigsResponse()
        for res in r.resources {
            var result = AlterConfigsResponse.AlterConfigsResourceResponse(resourceType: res.resourceType, resourceName: res.resourceName)
            var configs: [String: String] = [:]
            for c in res.configs { if let v = c.value { configs[c.name] = v } }
            do {
                switch ResourceType(rawValue: res.resourceType) {
                case .topic:
                    try await core.registry.setConfigs(topic: res.resourceName, configs, validateOnly: r.validateOnly)
                case .broker:
                    try await core.replaceDynamicBrokerConfigs(broker: res.resourceName, configs, validateOnly: r.validateOnly)
                case nil:
                    throw TopicError(.invalidRequest, "resource type \(res.resourceType) cannot be altered")
                }
            } catch {
                (result.errorCode, result.errorMessage) = alterConfigsFailure(error, resource: res.resourceName)
            }
            response.responses.append(result)
        }
        return .response(.alterConfigs(response))
    }
}

/// IncrementalAlterConfigs (API 44), versions 0–1: SET, DELETE, APPEND and SUBTRACT on topic
/// configs and dynamic broker configs.
public struct IncrementalAlterConfigsHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.incrementalAlterConfigs
    public let versions: ClosedRange<Int16> = 0...1
    public init(core: BrokerCore) { self.core = core }

    static func apply(_ ops: [IncrementalAlterConfigsRequest.AlterableConfig], to current: [String: String],
                      effective: (String) -> String?) throws -> [String: String] {
        var out = current
        var seen: Set<String> = []
        for op in ops {
            guard seen.insert(op.name).inserted else { throw TopicError(.invalidRequest, "configuration \(op.name) appears more than once") }
            switch op.configOperation {
            case 0:
                guard let v = op.value else { throw TopicError(.invalidConfig, "SET of \(op.name) needs a value") }
                out[op.name] = v
            case 1:
                out[op.name] = nil
            case 2, 3:
                guard TopicConfigs.all[op.name]?.type == .list || op.name == "log.cleanup.policy" else {
                    throw TopicError(.invalidConfig, "APPEND and SUBTRACT apply to list configurations; \(op.name) is not one")
                }
                let base = (out[op.name] ?? effective(op.name) ?? "").split(separator: ",").map { String($0).trimmingSpaces }.filter { !$0.isEmpty }
                let items = (op.value ?? "").split(separator: ",").map { String($0).trimmingSpaces }.filter { !$0.isEmpty }
                var list = base
                if op.configOperation == 2 { for i in items where !list.contains(i) { list.append(i) } } else { list.removeAll { items.contains($0) } }
                out[op.name] = list.joined(separator: ",")
            default:
                throw TopicError(.invalidRequest, "unknown config operation \(op.configOperation) for \(op.name)")
            }
        }
        return out
    }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .incrementalAlterConfigs(r) = request else { return .close }
        var response = IncrementalAlterConfigsResponse()
        for res in r.resources {
            var result = IncrementalAlterConfigsResponse.AlterConfigsResourceResponse(resourceType: res.resourceType, resourceName: res.resourceName)
            do {
                switch ResourceType(rawValue: res.resourceType) {
                case .topic:
                    guard let topic = core.registry.topic(named: res.resourceName) else {
                        throw TopicError(.unknownTopicOrPartition, "topic \(res.resourceName) does not exist")
                    }
                    let effective = core.topicConfigs(topic)
                    let next = try Self.apply(res.configs, to: topic.configs) { effective[$0] }
                    try await core.registry.setConfigs(topic: topic.name, next, validateOnly: r.validateOnly)
                case .broker:
                    let (draining, rest) = try core.drainingChange(res.configs, broker: res.resourceName)
                    let next = try Self.apply(rest, to: core.registry.dynamicBrokerConfigs) { core.config[$0] }
                    if !rest.isEmpty || draining == nil {
                        try await core.replaceDynamicBrokerConfigs(broker: res.resourceName, next, validateOnly: r.validateOnly)
                    }
                    if let (broker, on) = draining, !r.validateOnly { try await core.setDraining(broker, on) }
                case nil:
                    throw TopicError(.invalidRequest, "resource type \(res.resourceType) cannot be altered")
                }
            } catch {
                (result.errorCode, result.errorMessage) = alterConfigsFailure(error, resource: res.resourceName)
            }
            response.responses.append(result)
        }
        return .response(.incrementalAlterConfigs(response))
    }
}

extension BrokerCore {
    /// The per-broker key that marks a broker as draining (IncrementalAlterConfigs on the BROKER
    /// resource named by its id: SET true/false, DELETE = false). A draining broker gets no new
    /// partitions or group coordinators; moving what it has is the operator's job.
    static let drainingKey = "floe.broker.draining"

    /// Splits a draining change off a broker resource's operations: (broker, draining?) and the
    /// remaining operations.
    func drainingChange(_ ops: [IncrementalAlterConfigsRequest.AlterableConfig], broker name: String) throws
        -> ((Int32, Bool)?, [IncrementalAlterConfigsRequest.AlterableConfig]) {
        guard let op = ops.first(where: { $0.name == Self.drainingKey }) else { return (nil, ops) }
        guard let id = Int32(name), registry.state.brokers[id] != nil else {
            throw TopicError(.invalidRequest, "\(Self.drainingKey) needs the resource name of a registered broker id, not '\(name)'")
        }
        let on: Bool
        switch (op.configOperation, op.value?.lowercased()) {
        case (0, "true"): on = true
        case (0, "false"), (1, _): on = false
        default: throw TopicError(.invalidConfig, "\(Self.drainingKey) takes SET true/false or DELETE")
        }
        return ((id, on), ops.filter { $0.name != Self.drainingKey })
    }

    /// Marks a broker as draining or not (on the controller; the request was forwarded there).
    func setDraining(_ broker: Int32, _ on: Bool) async throws {
        guard let c = member.activeController else { throw TopicError(.notController, "this broker is not the controller") }
        try await c.setDraining(broker, on)
    }

    /// Replaces the cluster's dynamic broker configs with `configs` after validating every value.
    /// The resource names the cluster default ("") or any registered broker: dynamic broker
    /// settings apply to every broker of the cluster.
    func replaceDynamicBrokerConfigs(broker name: String, _ configs: [String: String], validateOnly: Bool) async throws {
        guard isThisBroker(name) || Int32(name).map({ registry.state.brokers[$0] != nil }) == true else {
            throw TopicError(.invalidRequest, "broker \(name) is not registered in this cluster")
        }
        for (key, value) in configs {
            if let problem = brokerConfigProblem(key, value) { throw TopicError(.invalidConfig, problem) }
        }
        if !validateOnly { try await registry.setDynamicBrokerConfigs(configs) }
    }
}

/// The error code and message an (incremental) alter-configs result reports for `error`.
func alterConfigsFailure(_ error: any Error, resource: String) -> (Int16, String?) {
    if let e = error as? TopicError { return (e.code.rawValue, e.message) }
    return (KafkaErrorCode.unknownServerError.rawValue, "altering \(resource) failed: \(error)")
}
