import KafkaProtocol

/// AlterClientQuotas (API 49, v0–v1): runs on the controller (wrapped in `ControllerForwarding`),
/// which writes the changes into the cluster metadata in one log entry; every broker applies
/// them as it reads the log. Per entry, as Kafka's controller: the entity and every op are
/// checked (`ClientQuotaEntity.parse`, `QuotaKey.validate`); an entry with any bad op changes
/// nothing and gets INVALID_REQUEST with Kafka's message; the others apply (set or remove
/// each key; an entity left without keys is removed). `validate_only` checks and changes nothing.
struct AlterClientQuotasHandler: ApiHandler {
    let core: BrokerCore
    let apiKey = ApiKey.alterClientQuotas
    let versions: ClosedRange<Int16> = 0...1

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .alterClientQuotas(r) = request else { return .close }
        var results: [AlterClientQuotasResponse.EntryData] = []
        var changes: [(index: Int, entity: ClientQuotaEntity, ops: [(QuotaKey, Double?)])] = []
        for entry in r.entries {
            let echo = entry.entity.map { AlterClientQuotasResponse.EntityData(entityType: $0.entityType, entityName: $0.entityName) }
            func refuse(_ p: QuotaProblem) { results.append(.init(errorCode: p.code.rawValue, errorMessage: p.message, entity: echo)) }
            let entity: ClientQuotaEntity
            switch ClientQuotaEntity.parse(entry.entity.map { ($0.entityType, $0.entityName) }) {
            case let .success(e): entity = e
            case let .failure(p): refuse(p); continue
            }
            var ops: [(QuotaKey, Double?)] = []
            var problem: QuotaProblem?
            for op in entry.ops {
                switch QuotaKey.validate(key: op.key, value: op.value, remove: op.remove) {
                case let .success(k): ops.append((k, op.remove ? nil : op.value))
                case let .failure(p): problem = problem ?? p
                }
            }
            if let problem { refuse(problem); continue }
            changes.append((results.count, entity, ops))
            results.append(.init(errorCode: 0, errorMessage: nil, entity: echo))
        }
        if !r.validateOnly && !changes.isEmpty {
            let batch = changes
            do {
                try await core.registry.mutate { s in
                    var table = QuotaTable(s.quotaEntries).quotas
                    for c in batch {
                        var values = table[c.entity] ?? [:]
                        for (key, value) in c.ops { values[key.rawValue] = value }
                        table[c.entity] = values.isEmpty ? nil : values
                    }
                    s.quotaEntries = table.map { ClientQuotaEntry(entity: $0.key, values: $0.value) }
                }
                core.logger.info("client quotas altered", metadata: [
                    "entities": batch.map { "\($0.entity)" }.joined(separator: ","), "principal": "\(context.connection.session.principal)"])
            } catch {
                let code: KafkaErrorCode = if case BrokerError.notController = error { .notController } else { .unknownServerError }
                for c in batch { results[c.index].errorCode = code.rawValue; results[c.index].errorMessage = "\(error)" }
            }
        }
        return .response(.alterClientQuotas(AlterClientQuotasResponse(throttleTimeMs: 0, entries: results)))
    }
}

/// DescribeClientQuotas (API 48, v0–v1): the quotas of the entities matching the filter, from
/// this broker's copy of the cluster metadata (`QuotaTable.describe` has Kafka's matching rules).
/// A bad filter gets the top-level error (INVALID_REQUEST, or UNSUPPORTED_VERSION for an
/// unknown entity type) with Kafka's message and no entries.
struct DescribeClientQuotasHandler: ApiHandler {
    let core: BrokerCore
    let apiKey = ApiKey.describeClientQuotas
    let versions: ClosedRange<Int16> = 0...1

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .describeClientQuotas(r) = request else { return .close }
        let table = QuotaTable(core.registry.state.quotaEntries)
        switch table.describe(r.components.map { ($0.entityType, $0.matchType, $0.match) }, strict: r.strict) {
        case let .failure(p):
            return .response(.describeClientQuotas(DescribeClientQuotasResponse(throttleTimeMs: 0, errorCode: p.code.rawValue, errorMessage: p.message,
                                                                                entries: nil)))
        case let .success(entries):
            let out = entries.map { e in
                DescribeClientQuotasResponse.EntryData(
                    entity: e.entity.components.map { .init(entityType: $0.type, entityName: $0.name) },
                    values: e.values.keys.sorted().map { .init(key: $0, value: e.values[$0]!) })
            }
            return .response(.describeClientQuotas(DescribeClientQuotasResponse(throttleTimeMs: 0, errorCode: 0, errorMessage: nil, entries: out)))
        }
    }
}
