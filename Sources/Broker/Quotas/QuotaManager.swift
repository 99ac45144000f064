import Support
import Synchronization

/// This broker's enforcement of the cluster's client quotas (Kafka's `ClientQuotaManager`s for
/// produce, fetch and request time). Quotas come from the cluster metadata (`follow`), so a
/// change made on the controller applies on every broker as it reads the log, without restart.
/// Rates are per broker, as in Kafka: a client's quota applies to its traffic on each broker.
///
/// A Produce records its bytes when handled, a Fetch the bytes of its answer, every request
/// the time spent handling it; a record that puts the entity's rate over its quota returns
/// the throttle time (`QuotaRate.throttleMillis`). Nothing is measured for a quota type no
/// entity has.
public final class QuotaManager: Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        case produce, fetch, request
        var key: QuotaKey {
            switch self {
            case .produce: .producerByteRate
            case .fetch: .consumerByteRate
            case .request: .requestPercentage
            }
        }
    }

    struct SensorKey: Hashable {
        var kind: Kind
        var entity: QuotaTable.MetricEntity
    }

    struct Sensor {
        var rate: QuotaRate
        var lastUsed: Int64
    }

    struct State {
        var table = QuotaTable()
        var sensors: [SensorKey: Sensor] = [:]
        var enabled: Set<Kind> = []
    }

    public let samples: Int
    public let windowMillis: Int64
    let clock: any FloeClock
    private let state = Mutex(State())
    private let throttleTime: [Kind: Counter]
    private let throttled: [Kind: Counter]
    /// Sensors beyond this many are pruned of the idle ones.
    static let maxSensors = 10_000

    public init(samples: Int = 11, windowMillis: Int64 = 1000, clock: any FloeClock = RealClock(), metrics: MetricsRegistry? = nil) {
        self.samples = max(2, samples)
        self.windowMillis = max(1, windowMillis)
        self.clock = clock
        var time: [Kind: Counter] = [:], count: [Kind: Counter] = [:]
        for k in Kind.allCases {
            time[k] = metrics?.counter("floe_broker_quota_throttle_time_ms_total", help: "Throttle time given to clients over their quota, by quota type",
                                       labels: ["quota": k.rawValue]) ?? Counter()
            count[k] = metrics?.counter("floe_broker_quota_throttled_total", help: "Responses throttled because the client was over its quota, by quota type",
                                        labels: ["quota": k.rawValue]) ?? Counter()
        }
        throttleTime = time
        throttled = count
    }

    /// Applies the quotas of the cluster metadata now and after every change of them.
    public func follow(_ log: MetadataLog) {
        log.observe { [weak self] old, new in
            if old.clientQuotas != new.clientQuotas { self?.update(new.quotaEntries) }
        }
        update(log.current.quotaEntries)
    }

    public func update(_ entries: [ClientQuotaEntry]) {
        let table = QuotaTable(entries)
        state.withLock { s in
            s.table = table
            s.enabled = Set(Kind.allCases.filter { table.hasAny($0.key) })
            // Measurements of quota types that no longer exist restart from zero when one returns.
            s.sensors = s.sensors.filter { s.enabled.contains($0.key.kind) }
        }
    }

    var nowMillis: Int64 { Int64(clock.now().nanoseconds / 1_000_000) }

    /// The quota of `kind` that applies to the client, if any.
    public func limit(_ kind: Kind, user: String, clientId: String) -> Double? {
        state.withLock { s in s.enabled.contains(kind) ? s.table.resolve(user: user, clientId: clientId, key: kind.key).limit : nil }
    }

    /// Records `value` (bytes, or percent of a thread-second) for the client and returns the
    /// throttle time in ms. `maxMillis` bounds the throttle (request quotas: one window).
    public func record(_ kind: Kind, user: String, clientId: String, value: Double, maxMillis: Int64? = nil) -> Int64 {
        let now = nowMillis
        let t: Int64 = state.withLock { s in
            guard s.enabled.contains(kind) else { return 0 }
            let resolved = s.table.resolve(user: user, clientId: clientId, key: kind.key)
            guard let limit = resolved.limit else { return 0 }
            let key = SensorKey(kind: kind, entity: resolved.metric)
            var sensor = s.sensors[key] ?? Sensor(rate: QuotaRate(samples: samples, windowMillis: windowMillis), lastUsed: now)
            sensor.rate.record(value, now: now)
            sensor.lastUsed = now
            let t = sensor.rate.throttleMillis(limit: limit, now: now, maxMillis: maxMillis)
            s.sensors[key] = sensor
            if s.sensors.count > Self.maxSensors {
                let idle = Int64(samples) * windowMillis
                s.sensors = s.sensors.filter { now - $0.value.lastUsed < idle }
            }
            return t
        }
        if t > 0 {
            throttleTime[kind]?.increment(by: Double(t))
            throttled[kind]?.increment()
        }
        return t
    }

    /// Takes back `value` recorded earlier (Kafka's `unrecordQuotaSensor`: a Fetch answered
    /// empty because of a throttle did not send its bytes).
    public func unrecord(_ kind: Kind, user: String, clientId: String, value: Double) {
        let now = nowMillis
        state.withLock { s in
            guard s.enabled.contains(kind) else { return }
            let key = SensorKey(kind: kind, entity: s.table.resolve(user: user, clientId: clientId, key: kind.key).metric)
            s.sensors[key]?.rate.record(-value, now: now)
        }
    }

    /// The most a Fetch may return to the client: its quota's worth of `samples - 1` windows
    /// (Kafka's `getMaxValueInQuotaWindow`), so one answer never exceeds what the quota allows
    /// to be caught up on; nil without a quota.
    public func fetchCap(user: String, clientId: String) -> Int? {
        guard let limit = limit(.fetch, user: user, clientId: clientId) else { return nil }
        let cap = limit * Double(samples - 1) * Double(windowMillis) / 1000
        return cap >= Double(Int32.max) ? nil : max(1, Int(cap))
    }
}
