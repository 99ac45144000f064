import Synchronization

/// Whether the broker can make appends durable now, as its storage supervisor last saw it.
/// `/readyz`, `/healthz` and the `floe_broker_storage_*` metrics read it.
///
/// States: `healthy`; `stalled` (an append has waited longer than the stall limit: the WAL is
/// retrying a write); `failed` (the WAL failed: appends fail until the storage is reopened);
/// `recovering` (reopening). An outage starts at the first state that is not `healthy` and ends
/// at the next `healthy`.
///
/// Example: an 8 s object-store outage with `wal.retry.ms` 30 s: healthy → stalled (after
/// `storage.stall.ms`) → healthy once the WAL's retried write lands; one outage of about 8 s,
/// no recovery. A 60 s outage: stalled → failed (after 30 s of retries) → recovering → healthy,
/// one recovery.
public final class StorageHealth: Sendable {
    public enum Condition: Sendable, Equatable {
        case healthy
        case stalled(detail: String)
        case failed(detail: String)
        case recovering(detail: String)
    }

    private struct State {
        var condition = Condition.healthy
        var outageSince: ContinuousClock.Instant? = nil
        var recoveries = 0
        var outages = 0
    }
    private let state = Mutex(State())

    public init() {}

    public var condition: Condition { state.withLock { $0.condition } }
    /// Appends can be made durable (the broker may report ready).
    public var isHealthy: Bool { condition == .healthy }
    /// How long the current outage has lasted; nil when healthy.
    public var outageDuration: Duration? { state.withLock { s in s.outageSince.map { ContinuousClock.now - $0 } } }
    /// Storage reopenings that succeeded since start.
    public var recoveries: Int { state.withLock { $0.recoveries } }
    /// Outages since start (each ends when appends are durable again).
    public var outages: Int { state.withLock { $0.outages } }

    /// One line for `/readyz` and logs: the state and its detail.
    public var summary: String {
        switch condition {
        case .healthy: "storage healthy"
        case let .stalled(d): "storage stalled: \(d)"
        case let .failed(d): "storage failed: \(d)"
        case let .recovering(d): "storage recovering: \(d)"
        }
    }

    /// Records a new condition; returns the previous one.
    @discardableResult
    func set(_ condition: Condition) -> Condition {
        state.withLock { s in
            let old = s.condition
            s.condition = condition
            if condition == .healthy {
                s.outageSince = nil
            } else if s.outageSince == nil {
                s.outageSince = .now
                s.outages += 1
            }
            return old
        }
    }

    func recovered() { state.withLock { $0.recoveries += 1 } }
}
