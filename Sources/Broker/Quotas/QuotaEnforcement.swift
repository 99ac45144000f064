import KafkaProtocol

/// Enforces client quotas around one API's handler, as Kafka does since KIP-219: the answer is
/// sent at once with `throttle_time_ms`, and the connection is muted for that time (the broker
/// reads none of its next requests; see `ConnectionSession.State.throttledUntil`).
///
/// - Produce: the request's record bytes count against `producer_byte_rate` when it is handled;
///   the answer carries the larger of the byte-rate and request-time throttles.
/// - Fetch (consumers): `max_bytes` is capped at the quota's worth of 10 windows; the answer's
///   record bytes count against `consumer_byte_rate`; over it (or over the request quota), the
///   data is dropped, its bytes taken back, and the answer is empty with the throttle time
///   (Kafka's `getThrottledResponse`), so the consumer fetches the same offsets afterwards.
/// - Every API but the inter-broker and SASL ones: the time spent handling it (not waiting for
///   durability or data) counts against `request_percentage`, its throttle bounded by one window.
///   The connection is muted; only Produce and Fetch answers carry the throttle time.
///
/// The user is the connection's principal name (`ANONYMOUS` before authentication), the client
/// id the request header's (empty when null).
struct QuotaEnforcingHandler: ApiHandler {
    let inner: any ApiHandler
    let quotas: QuotaManager
    var apiKey: ApiKey { inner.apiKey }
    var versions: ClosedRange<Int16> { inner.versions }

    /// APIs exempt from the request quota (Kafka exempts cluster actions and authentication).
    static let exempt: Set<ApiKey> = [
        .saslHandshake, .saslAuthenticate, .brokerRegistration, .brokerHeartbeat, .stopReplica, .updateMetadata, .allocateProducerIds,
    ]

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        let session = context.connection.session
        let user = session.principal.name
        let clientId = context.clientId ?? ""
        var request = request
        var byteThrottle: Int64 = 0
        var consumerFetch = false
        switch request {
        case let .produce(r):
            let bytes = r.topicData.reduce(0) { $0 + $1.partitionData.reduce(0) { $0 + ($1.records?.count ?? 0) } }
            byteThrottle = quotas.record(.produce, user: user, clientId: clientId, value: Double(bytes))
        case var .fetch(r):
            let replica = context.apiVersion >= 15 ? r.replicaState.replicaId : r.replicaId
            if replica < 0 {
                consumerFetch = true
                if let cap = quotas.fetchCap(user: user, clientId: clientId), r.maxBytes <= 0 || Int(r.maxBytes) > cap {
                    r.maxBytes = Int32(cap)
                    r.minBytes = min(r.minBytes, r.maxBytes)
                    request = .fetch(r)
                }
            }
        default:
            break
        }
        let started = ContinuousClock.now
        let result = await inner.handle(request, context: context)
        var requestThrottle: Int64 = 0
        if !Self.exempt.contains(apiKey) {
            let spent = ContinuousClock.now - started
            let nanos = Double(spent.components.seconds) * 1e9 + Double(spent.components.attoseconds) / 1e9
            // Kafka's unit: percent of one thread per second (100 = a whole thread).
            requestThrottle = quotas.record(.request, user: user, clientId: clientId, value: nanos * 100 / 1e9,
                                            maxMillis: quotas.windowMillis)
        }
        let quotas = self.quotas
        if consumerFetch {
            let requestThrottle = requestThrottle
            // The byte-rate throttle is known once the answer is.
            let finish: @Sendable (AnyResponse?) -> AnyResponse? = { response in
                guard case var .fetch(f) = response else { return response }
                let bytes = f.responses.reduce(0) { $0 + $1.partitions.reduce(0) { $0 + ($1.records?.count ?? 0) } }
                let fetchThrottle = quotas.record(.fetch, user: user, clientId: clientId, value: Double(bytes))
                let t = max(fetchThrottle, requestThrottle)
                if t > 0 {
                    // Kafka 4.x (`KafkaApis.handleFetch`): throttled by either quota, the bytes are
                    // taken back and the answer is empty.
                    quotas.unrecord(.fetch, user: user, clientId: clientId, value: Double(bytes))
                    f = FetchResponse(throttleTimeMs: Self.clamp(t), errorCode: 0, sessionId: 0, responses: [])
                }
                Self.mute(session, t)
                return .fetch(f)
            }
            switch result {
            case let .response(r): return .response(finish(r) ?? r)
            case let .deferred(complete): return .deferred { finish(await complete()) }
            case let .longPoll(complete): return .longPoll { finish(await complete()) }
            case .noResponse, .close:
                Self.mute(session, requestThrottle)
                return result
            }
        }
        let t = max(byteThrottle, requestThrottle)  // (a let: captured by the closures below)
        guard t > 0 else { return result }
        Self.mute(session, t)
        guard apiKey == .produce else { return result }
        let stamp: @Sendable (AnyResponse?) -> AnyResponse? = { response in
            guard case var .produce(p) = response else { return response }
            p.throttleTimeMs = Self.clamp(t)
            return .produce(p)
        }
        switch result {
        case let .response(r): return .response(stamp(r) ?? r)
        case let .deferred(complete): return .deferred { stamp(await complete()) }
        case let .longPoll(complete): return .longPoll { stamp(await complete()) }
        case .noResponse, .close: return result
        }
    }

    static func clamp(_ t: Int64) -> Int32 { Int32(clamping: t) }

    /// Mutes the connection for `millis` from now (extending a longer mute, never shortening it).
    static func mute(_ session: ConnectionSession, _ millis: Int64) {
        guard millis > 0 else { return }
        let until = ContinuousClock.now + .milliseconds(millis)
        session.update { s in
            if let current = s.throttledUntil, current >= until { return }
            s.throttledUntil = until
        }
    }
}
