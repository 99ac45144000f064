/// Leader election over a lease record, wherever the record lives: the operator's replicas use a
/// Kubernetes `Lease` (ControllerRuntime's `LeaderElector`), brokers an object in the bucket
/// (Broker's `ControllerLease`). This is the pure state machine both share; its owner reads and
/// writes the record (with a compare-and-swap: resourceVersion, ETag) and reports back. Time is
/// passed in.
///
/// Rules (client-go's):
/// 1. No lease: create it holding it (`.create`).
/// 2. We hold it: renew it (`.renew`).
/// 3. Someone else holds it: it is expired only when its version has not changed for the lease's
///    duration **of our own monotonic clock** since we first saw that version; remote timestamps
///    are never compared with local time (clock skew). Then take it over (`.takeOver`, the
///    owner raises its transition count or epoch); else `.wait`.
/// 4. A free lease (released, or held by an earlier incarnation of ourselves) is taken at once.
/// 5. A leader whose last successful write is older than `renewDeadline` has lost the lease
///    (``failed(now:)`` says so); one that sees another holder, or whose conditional write is
///    refused (``conflicted()``), has lost it at once.
/// Two candidates racing cannot both win: the loser's conditional write is refused.
public struct LeaseElector<Version: Equatable & Sendable>: Sendable {
    public struct Timing: Sendable, Equatable {
        public var duration: Duration
        public var renewDeadline: Duration
        public var retry: Duration

        /// Invariant: `retry < renewDeadline < duration`.
        public init(duration: Duration, renewDeadline: Duration, retry: Duration) {
            precondition(retry < renewDeadline && renewDeadline < duration,
                         "lease timing needs retry < renewDeadline < duration")
            self.duration = duration
            self.renewDeadline = renewDeadline
            self.retry = retry
        }
    }

    /// Who holds the lease as read.
    public enum Holder: Sendable, Equatable {
        /// Nobody (released), or an earlier incarnation of ourselves: free at once.
        case free
        case us
        case other
    }

    /// The lease as just read.
    public struct Observation: Sendable {
        public var holder: Holder
        /// Changes at every write (resourceVersion, ETag, or the record itself).
        public var version: Version
        /// The duration the lease states, if it states one; else the elector's own.
        public var duration: Duration?

        public init(holder: Holder, version: Version, duration: Duration? = nil) {
            self.holder = holder
            self.version = version
            self.duration = duration
        }
    }

    public enum Decision: Sendable, Equatable {
        case create
        case renew
        /// Take a free or expired lease; `expired`: its holder stopped renewing (not released).
        case takeOver(expired: Bool)
        case wait
    }

    public let timing: Timing
    public private(set) var isLeader = false
    private var lastWrite: MonotonicInstant?
    private var observed: (version: Version, at: MonotonicInstant)?

    public init(timing: Timing) { self.timing = timing }

    /// Decides what to do with the lease as just read (nil: it does not exist). `lost` is true
    /// when this call ends our leadership (the lease shows another holder).
    public mutating func decide(_ lease: Observation?, now: MonotonicInstant) -> (decision: Decision, lost: Bool) {
        guard let lease else { return (.create, false) }
        if observed?.version != lease.version { observed = (lease.version, now) }
        if lease.holder == .us { return (.renew, false) }
        let lost = conflicted()
        if lease.holder == .free { return (.takeOver(expired: false), lost) }
        let duration = lease.duration ?? timing.duration
        if let seen = observed, now.duration(since: seen.at) >= duration { return (.takeOver(expired: true), lost) }
        return (.wait, lost)
    }

    /// A write (create, renew, take-over) succeeded at `now`; returns true if we just started leading.
    public mutating func written(now: MonotonicInstant) -> Bool {
        lastWrite = now
        observed = nil
        defer { isLeader = true }
        return !isLeader
    }

    /// A read or write failed without telling who holds the lease (transport, server error):
    /// returns true if this ends our leadership (past the renew deadline).
    public mutating func failed(now: MonotonicInstant) -> Bool {
        guard isLeader, let lastWrite, now.duration(since: lastWrite) >= timing.renewDeadline else { return false }
        return conflicted()
    }

    /// Someone else changed the lease (our conditional write was refused, or we saw another
    /// holder): leadership ends now. Returns true if we were leading.
    @discardableResult
    public mutating func conflicted() -> Bool {
        defer {
            isLeader = false
            lastWrite = nil
        }
        return isLeader
    }

    /// Whether we lead at `now`: we did, and our last write is within the renew deadline.
    public func leads(at now: MonotonicInstant) -> Bool {
        guard isLeader, let lastWrite else { return false }
        return now.duration(since: lastWrite) < timing.renewDeadline
    }
}
