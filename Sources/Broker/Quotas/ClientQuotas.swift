import KafkaProtocol

/// The name of one component of a quota entity: a user or client id, or that type's default
/// entity (a null name on the wire, `<default>` in Kafka's tools).
public enum QuotaEntityName: Codable, Sendable, Hashable, Comparable {
    case named(String)
    case defaultEntity

    /// The wire form: nil is the default entity.
    public init(wire: String?) { self = wire.map { .named($0) } ?? .defaultEntity }
    public var wire: String? { if case let .named(n) = self { n } else { nil } }

    public static func < (a: QuotaEntityName, b: QuotaEntityName) -> Bool {
        switch (a, b) {
        case (.defaultEntity, .named): true
        case let (.named(x), .named(y)): x < y
        default: false
        }
    }
}

/// A client quota entity (Kafka's `ClientQuotaEntity` restricted to users and client ids):
/// `/users/alice`, `/users/<default>/clients/app`, `/clients/<default>`, …
///
/// Invariant: at least one of `user` and `clientId` is set.
public struct ClientQuotaEntity: Codable, Sendable, Hashable, Comparable, CustomStringConvertible {
    public var user: QuotaEntityName?
    public var clientId: QuotaEntityName?

    public init(user: QuotaEntityName? = nil, clientId: QuotaEntityName? = nil) {
        self.user = user
        self.clientId = clientId
    }

    public static let userType = "user"
    public static let clientIdType = "client-id"
    public static let ipType = "ip"

    public var description: String {
        var parts: [String] = []
        if let user { parts.append("/users/" + (user.wire ?? "<default>")) }
        if let clientId { parts.append("/clients/" + (clientId.wire ?? "<default>")) }
        return parts.joined()
    }

    /// (type, name) pairs as Kafka's responses list them: user first.
    public var components: [(type: String, name: String?)] {
        var out: [(String, String?)] = []
        if let user { out.append((Self.userType, user.wire)) }
        if let clientId { out.append((Self.clientIdType, clientId.wire)) }
        return out
    }

    public static func < (a: ClientQuotaEntity, b: ClientQuotaEntity) -> Bool {
        func key(_ n: QuotaEntityName?) -> (Int, QuotaEntityName) { n.map { (1, $0) } ?? (0, .defaultEntity) }
        let (au, bu) = (key(a.user), key(b.user))
        if au.0 != bu.0 { return au.0 < bu.0 }
        if au.1 != bu.1 { return au.1 < bu.1 }
        let (ac, bc) = (key(a.clientId), key(b.clientId))
        if ac.0 != bc.0 { return ac.0 < bc.0 }
        return ac.1 < bc.1
    }

    /// The entity of a request's (type, name) components, or Kafka's INVALID_REQUEST message.
    /// Kafka's rules: not empty, each type once, names not empty, `ip` not combined with the
    /// others (and Floe does not enforce IP quotas: refused with a message saying so).
    public static func parse(_ components: [(type: String, name: String?)]) -> Result<ClientQuotaEntity, QuotaProblem> {
        guard !components.isEmpty else { return .failure(QuotaProblem(.invalidRequest, "Invalid empty client quota entity")) }
        var entity = ClientQuotaEntity()
        var seen: Set<String> = []
        for (type, name) in components {
            guard seen.insert(type).inserted else {
                return .failure(QuotaProblem(.invalidRequest, "Duplicate \(type) entity type in the client quota entity"))
            }
            if let name, name.isEmpty { return .failure(QuotaProblem(.invalidRequest, "Empty \(type) not supported")) }
            switch type {
            case userType: entity.user = QuotaEntityName(wire: name)
            case clientIdType: entity.clientId = QuotaEntityName(wire: name)
            case ipType:
                return .failure(QuotaProblem(.invalidRequest, "IP quotas (connection_creation_rate) are not supported by this broker"))
            default: return .failure(QuotaProblem(.invalidRequest, "Unhandled client quota entity type: \(type)"))
            }
        }
        return .success(entity)
    }
}

/// A refused quota operation: Kafka's error code and message.
public struct QuotaProblem: Error, Sendable, Equatable {
    public var code: KafkaErrorCode
    public var message: String
    public init(_ code: KafkaErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }
}

/// The quota keys of user and client-id entities (Kafka's `QuotaConfigs`).
public enum QuotaKey: String, Sendable, CaseIterable, Codable {
    /// Bytes per second a client may produce (a LONG in Kafka: whole numbers only).
    case producerByteRate = "producer_byte_rate"
    /// Bytes per second a client may fetch (LONG).
    case consumerByteRate = "consumer_byte_rate"
    /// Percentage of one request-handling thread's time per second (DOUBLE): 100 is one thread.
    case requestPercentage = "request_percentage"
    /// Partition mutations per second for CreateTopics/CreatePartitions/DeleteTopics (DOUBLE).
    /// Accepted and stored; not enforced (see docs/quotas.md).
    case controllerMutationRate = "controller_mutation_rate"

    var isLong: Bool { self == .producerByteRate || self == .consumerByteRate }

    /// Kafka's checks of a value set for this key (`validateQuotaKeyValue`), plus: finite and
    /// positive (a zero or negative rate cannot be met, and Kafka's throttle divides by it).
    static func validate(key: String, value: Double, remove: Bool) -> Result<QuotaKey, QuotaProblem> {
        guard let k = QuotaKey(rawValue: key) else {
            return .failure(QuotaProblem(.invalidRequest, "Invalid configuration key \(key)"))
        }
        if remove { return .success(k) }
        guard value.isFinite else { return .failure(QuotaProblem(.invalidRequest, "Proposed value for \(key) must be a finite number, not \(value)")) }
        if k.isLong {
            if value > Double(Int64.max) { return .failure(QuotaProblem(.invalidRequest, "Proposed value for \(key) is too large for a LONG.")) }
            if value.rounded(.towardZero) != value {
                return .failure(QuotaProblem(.invalidRequest, "Proposed value for \(key) must be an integer, not \(value)"))
            }
        }
        guard value > 0 else { return .failure(QuotaProblem(.invalidRequest, "Proposed value for \(key) must be positive, not \(value)")) }
        return .success(k)
    }
}

/// One entity's quotas as stored in the cluster metadata.
public struct ClientQuotaEntry: Codable, Sendable, Equatable {
    public var entity: ClientQuotaEntity
    /// By key name (`producer_byte_rate`); never empty in the stored state (an entity whose last
    /// quota is removed is removed).
    public var values: [String: Double]
}

/// The quotas of the cluster, resolved for clients as Kafka's default quota callback does.
///
/// For each quota type (key), the entity that applies to user `u` with client id `c` is the
/// first that has a value for that key in this order:
/// `/users/u/clients/c`, `/users/u/clients/<default>`, `/users/u`, `/users/<default>/clients/c`,
/// `/users/<default>/clients/<default>`, `/users/<default>`, `/clients/c`, `/clients/<default>`.
/// The rate is measured per *metric entity* (Kafka's metric tags): shared by everything the
/// quota covers. A `/users/u` quota is shared by every client id of `u`; a `/users/<default>`
/// one is measured per user; `/clients/<default>` per client id.
///
/// Example: with `/users/<default>` = 1 MiB/s and `/clients/app` = 5 MiB/s, user alice with
/// client id app gets 1 MiB/s measured over all of alice's clients (user quotas win), and an
/// unauthenticated client (user ANONYMOUS) gets the same (the user default applies to it too).
public struct QuotaTable: Sendable, Equatable {
    public private(set) var quotas: [ClientQuotaEntity: [String: Double]] = [:]

    public init(_ entries: [ClientQuotaEntry] = []) {
        for e in entries { quotas[e.entity] = e.values }
    }

    /// Whose rate is measured together: Kafka's (user, client-id) metric tags ("" = any).
    public struct MetricEntity: Sendable, Hashable {
        public var user: String
        public var clientId: String
    }

    public struct Resolved: Sendable, Equatable {
        public var metric: MetricEntity
        /// nil: no quota applies (unlimited).
        public var limit: Double?
        /// The entity whose value applies (nil: none).
        public var entity: ClientQuotaEntity?
    }

    func value(_ e: ClientQuotaEntity, _ key: QuotaKey) -> Double? { quotas[e]?[key.rawValue] }

    /// The quota of `key` for user `user` with client id `clientId`, and whose rate it limits.
    public func resolve(user: String, clientId: String, key: QuotaKey) -> Resolved {
        let u = QuotaEntityName.named(user), c = QuotaEntityName.named(clientId), d = QuotaEntityName.defaultEntity
        let order: [(ClientQuotaEntity, MetricEntity)] = [
            (ClientQuotaEntity(user: u, clientId: c), MetricEntity(user: user, clientId: clientId)),
            (ClientQuotaEntity(user: u, clientId: d), MetricEntity(user: user, clientId: clientId)),
            (ClientQuotaEntity(user: u), MetricEntity(user: user, clientId: "")),
            (ClientQuotaEntity(user: d, clientId: c), MetricEntity(user: user, clientId: clientId)),
            (ClientQuotaEntity(user: d, clientId: d), MetricEntity(user: user, clientId: clientId)),
            (ClientQuotaEntity(user: d), MetricEntity(user: user, clientId: "")),
            (ClientQuotaEntity(clientId: c), MetricEntity(user: "", clientId: clientId)),
            (ClientQuotaEntity(clientId: d), MetricEntity(user: "", clientId: clientId)),
        ]
        for (entity, metric) in order {
            if let v = value(entity, key) { return Resolved(metric: metric, limit: v, entity: entity) }
        }
        return Resolved(metric: MetricEntity(user: "", clientId: clientId), limit: nil, entity: nil)
    }

    /// Whether any quota of `key` exists (else nothing is measured for it).
    public func hasAny(_ key: QuotaKey) -> Bool { quotas.values.contains { $0[key.rawValue] != nil } }

    /// DescribeClientQuotas' filter (Kafka's `ClientQuotasImage.describe`): components
    /// `(entityType, matchType, match)` with match type 0 exact name, 1 the default entity,
    /// 2 any entity of that type. Non-strict: entities that have at least the components named;
    /// strict: exactly them. Returns the matching entities, sorted, or Kafka's error.
    public func describe(_ components: [(type: String, matchType: Int8, match: String?)], strict: Bool) -> Result<[ClientQuotaEntry], QuotaProblem> {
        var exact: [String: QuotaEntityName] = [:]
        var any: Set<String> = []
        for (type, matchType, match) in components {
            if type.isEmpty { return .failure(QuotaProblem(.invalidRequest, "Invalid empty entity type.")) }
            if exact[type] != nil || any.contains(type) {
                return .failure(QuotaProblem(.invalidRequest, "Entity type \(type) cannot appear more than once in the filter."))
            }
            guard [ClientQuotaEntity.userType, ClientQuotaEntity.clientIdType, ClientQuotaEntity.ipType].contains(type) else {
                return .failure(QuotaProblem(.unsupportedVersion, "Unsupported entity type \(type)"))
            }
            switch matchType {
            case 0:
                guard let match else { return .failure(QuotaProblem(.invalidRequest, "Request specified MATCH_TYPE_EXACT, but set match string to null.")) }
                exact[type] = .named(match)
            case 1:
                if match != nil { return .failure(QuotaProblem(.invalidRequest, "Request specified MATCH_TYPE_DEFAULT, but also specified a match string.")) }
                exact[type] = .defaultEntity
            case 2:
                if match != nil { return .failure(QuotaProblem(.invalidRequest, "Request specified MATCH_TYPE_SPECIFIED, but also specified a match string.")) }
                any.insert(type)
            default:
                return .failure(QuotaProblem(.invalidRequest, "Unknown match type \(matchType)"))
            }
        }
        let ip = ClientQuotaEntity.ipType
        if exact[ip] != nil || any.contains(ip) {
            if exact.count + any.count > 1 {
                return .failure(QuotaProblem(.invalidRequest,
                                             "Invalid entity filter component combination. IP filter component should not be used with user or clientId filter component."))
            }
            return .success([])  // no IP quotas are stored
        }
        var out: [ClientQuotaEntry] = []
        for (entity, values) in quotas {
            let parts: [String: QuotaEntityName] = Dictionary(uniqueKeysWithValues: entity.components.map { ($0.type, QuotaEntityName(wire: $0.name)) })
            if strict && parts.count != exact.count + any.count { continue }
            if exact.contains(where: { parts[$0.key] != $0.value }) { continue }
            if any.contains(where: { parts[$0] == nil }) { continue }
            out.append(ClientQuotaEntry(entity: entity, values: values))
        }
        return .success(out.sorted { $0.entity < $1.entity })
    }
}

extension ClusterState {
    /// The client quotas (absent in snapshots written before quotas existed).
    public var quotaEntries: [ClientQuotaEntry] {
        get { clientQuotas ?? [] }
        set { clientQuotas = newValue.isEmpty ? nil : newValue.sorted { $0.entity < $1.entity } }
    }

    /// Sets (nil or empty: removes) one entity's quotas.
    mutating func setQuotas(_ entity: ClientQuotaEntity, _ values: [String: Double]?) {
        var entries = quotaEntries.filter { $0.entity != entity }
        if let values, !values.isEmpty { entries.append(ClientQuotaEntry(entity: entity, values: values)) }
        quotaEntries = entries
    }
}
