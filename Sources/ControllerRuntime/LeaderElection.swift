import Foundation
import KubeAPI
import Support

/// Timing of leader election (client-go's defaults: 15 s / 10 s / 2 s).
/// Invariant: `retryPeriod < renewDeadline < leaseDuration`.
public struct LeaderElectionConfig: Sendable, Equatable {
    public var namespace: String
    public var leaseName: String
    public var identity: String
    public var leaseDuration: Duration
    public var renewDeadline: Duration
    public var retryPeriod: Duration

    public init(namespace: String, leaseName: String, identity: String, leaseDuration: Duration = .seconds(15),
                renewDeadline: Duration = .seconds(10), retryPeriod: Duration = .seconds(2)) {
        precondition(retryPeriod < renewDeadline && renewDeadline < leaseDuration,
                     "leader election needs retryPeriod < renewDeadline < leaseDuration")
        self.namespace = namespace
        self.leaseName = leaseName
        self.identity = identity
        self.leaseDuration = leaseDuration
        self.renewDeadline = renewDeadline
        self.retryPeriod = retryPeriod
    }
}

/// Leader election on a `coordination.k8s.io/v1` Lease as a state machine that returns
/// actions; the owner does the reads and writes and reports back. Time is passed in.
///
/// Rules:
/// 1. No lease: create it holding it (`.create`).
/// 2. We hold it: renew (`.update` with a new renewTime) every retry period.
/// 3. Someone else holds it: it is expired only when its record (holder, renewTime,
///    transitions) has not changed for `leaseDurationSeconds` **of our own clock** since we
///    first saw that record — remote timestamps are never compared with local time (clock
///    skew). Then take it over (`.update`, transitions + 1); else `.wait`.
/// 4. An empty holder (released lease) is free: take it at once.
/// 5. A leader whose last successful renew is older than `renewDeadline` has lost leadership
///    (``writeFailed(now:)`` says so), and so has one that observes another holder.
/// 6. On shutdown a leader releases: holder cleared, duration 1 s (``release(wall:)``).
/// Writes carry the observed resourceVersion, so two candidates racing for a lease cannot
/// both win: the loser gets a 409 and follows rule 3.
public struct LeaderElector: Sendable {
    public enum Action: Sendable, Equatable {
        case create(LeaseSpec)
        case update(LeaseSpec)
        case wait(Duration)
    }

    public enum Transition: Sendable, Equatable {
        case startedLeading
        case stoppedLeading
    }

    public let config: LeaderElectionConfig
    public private(set) var isLeader = false
    private var lastRenew: MonotonicInstant?
    private var observedRecord: LeaseSpec?
    private var observedAt: MonotonicInstant?
    private var pendingAcquire = false

    public init(config: LeaderElectionConfig) { self.config = config }

    static func microTime(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: date)
    }

    /// Decides what to do given the lease as just read (nil: it does not exist).
    /// Returns `.stoppedLeading` in `transition` when the lease shows another holder while we lead.
    public mutating func decide(lease: LeaseSpec?, now: MonotonicInstant, wall: Date) -> (action: Action, transition: Transition?) {
        let seconds = Int32(config.leaseDuration.components.seconds)
        let stamp = Self.microTime(wall)
        guard let lease else {
            pendingAcquire = true
            return (.create(LeaseSpec(holderIdentity: config.identity, leaseDurationSeconds: seconds, acquireTime: stamp, renewTime: stamp, leaseTransitions: 0)), nil)
        }
        if lease != observedRecord {
            observedRecord = lease
            observedAt = now
        }
        let holder = lease.holderIdentity ?? ""
        if holder == config.identity {
            var renewed = lease
            renewed.renewTime = stamp
            renewed.leaseDurationSeconds = seconds
            pendingAcquire = !isLeader
            return (.update(renewed), nil)
        }
        var transition: Transition?
        if isLeader {
            isLeader = false
            lastRenew = nil
            transition = .stoppedLeading
        }
        let duration = lease.leaseDurationSeconds.map { Duration.seconds(Int64($0)) } ?? config.leaseDuration
        let expired = holder.isEmpty || (observedAt.map { now.duration(since: $0) >= duration } ?? false)
        if expired {
            pendingAcquire = true
            return (.update(LeaseSpec(holderIdentity: config.identity, leaseDurationSeconds: seconds, acquireTime: stamp, renewTime: stamp,
                                      leaseTransitions: (lease.leaseTransitions ?? 0) + 1)), transition)
        }
        return (.wait(config.retryPeriod), transition)
    }

    /// The write of `.create`/`.update` succeeded: we hold the lease as of `now`.
    public mutating func writeSucceeded(_ written: LeaseSpec, now: MonotonicInstant) -> Transition? {
        observedRecord = written
        observedAt = now
        lastRenew = now
        pendingAcquire = false
        if !isLeader {
            isLeader = true
            return .startedLeading
        }
        return nil
    }

    /// A read or write failed (conflict, transport). A leader past its renew deadline stops.
    public mutating func writeFailed(now: MonotonicInstant) -> Transition? {
        pendingAcquire = false
        guard isLeader, let lastRenew else { return nil }
        if now.duration(since: lastRenew) >= config.renewDeadline {
            isLeader = false
            self.lastRenew = nil
            return .stoppedLeading
        }
        return nil
    }

    /// When to act next: a leader renews every retry period; a follower retries as often.
    public var nextDelay: Duration { config.retryPeriod }

    /// The lease to write on shutdown if we lead (holder cleared so a standby takes over at
    /// once), or nil. Leadership ends here either way.
    public mutating func release(current: LeaseSpec?, wall: Date) -> LeaseSpec? {
        defer {
            isLeader = false
            lastRenew = nil
        }
        guard isLeader, var spec = current, spec.holderIdentity == config.identity else { return nil }
        spec.holderIdentity = nil
        spec.leaseDurationSeconds = 1
        spec.renewTime = Self.microTime(wall)
        return spec
    }
}

/// Runs a ``LeaderElector`` against the API server: acquires the lease, then runs `leading`
/// while renewing; returns when `leading` returns, throws ``ControllerRuntimeError/leadershipLost(lease:identity:)``
/// when a renew fails past the deadline (the caller should exit), and releases the lease when
/// cancelled (graceful shutdown).
public struct LeaderElection: Sendable {
    public let client: KubeClient
    public let config: LeaderElectionConfig
    public let clock: any FloeClock
    public let logger: Logger
    /// Called with true when this replica starts leading, false when it stops.
    public let onChange: @Sendable (Bool) -> Void

    public init(client: KubeClient, config: LeaderElectionConfig, clock: any FloeClock, logger: Logger,
                onChange: @escaping @Sendable (Bool) -> Void = { _ in }) {
        self.client = client
        self.config = config
        self.clock = clock
        self.logger = logger.with("lease", "\(config.namespace)/\(config.leaseName)").with("identity", config.identity)
        self.onChange = onChange
    }

    final class Box: @unchecked Sendable {
        // @unchecked Sendable: only touched by the one renew loop, and after it finished.
        var elector: LeaderElector
        var lease: Lease?
        init(_ e: LeaderElector) { elector = e }
    }

    /// One step: read, decide, write. Returns the transition, if any.
    func step(_ box: Box) async throws -> LeaderElector.Transition? {
        let current: Lease?
        do {
            current = try await client.get(Lease.self, namespace: config.namespace, name: config.leaseName)
        } catch let e as KubeAPIError where e.isNotFound {
            current = nil
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            logger.warning("reading the lease failed", metadata: ["error": "\(error)"])
            return box.elector.writeFailed(now: clock.now())
        }
        box.lease = current
        let (action, transition) = box.elector.decide(lease: current.map { $0.spec ?? LeaseSpec() }, now: clock.now(), wall: clock.wallTime())
        if transition == .stoppedLeading { return transition }
        do {
            switch action {
            case .wait: return nil
            case .create(let spec):
                let created = try await client.create(Lease(metadata: ObjectMeta(name: config.leaseName, namespace: config.namespace), spec: spec))
                box.lease = created
                return box.elector.writeSucceeded(spec, now: clock.now())
            case .update(let spec):
                var lease = current!
                lease.spec = spec
                box.lease = try await client.update(lease)
                return box.elector.writeSucceeded(spec, now: clock.now())
            }
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            logger.info("writing the lease failed", metadata: ["error": "\(error)"])
            return box.elector.writeFailed(now: clock.now())
        }
    }

    public func run(leading: @escaping @Sendable () async throws -> Void) async throws {
        let box = Box(LeaderElector(config: config))
        defer { if box.elector.isLeader { onChange(false) } }
        // Acquire.
        while true {
            try Task.checkCancellation()
            if try await step(box) == .startedLeading { break }
            try await clock.sleep(for: config.retryPeriod)
        }
        logger.notice("started leading")
        onChange(true)
        enum Outcome { case leadingReturned, lost }
        let outcome: Outcome
        do {
            outcome = try await withThrowingTaskGroup(of: Outcome.self) { group in
                group.addTask {
                    try await leading()
                    return .leadingReturned
                }
                group.addTask {
                    while true {
                        try await clock.sleep(for: config.retryPeriod)
                        if try await step(box) == .stoppedLeading { return .lost }
                    }
                }
                let first = try await group.next()!
                group.cancelAll()
                return first
            }
        } catch {
            await release(box)
            throw error
        }
        switch outcome {
        case .leadingReturned:
            await release(box)
        case .lost:
            logger.error("lost leadership")
            onChange(false)
            throw ControllerRuntimeError.leadershipLost(lease: "\(config.namespace)/\(config.leaseName)", identity: config.identity)
        }
    }

    /// Releases the lease if we hold it, in a fresh task so that it runs even when the caller
    /// was cancelled (shutdown); awaited, not fired and forgotten.
    private func release(_ box: Box) async {
        guard let current = box.lease, let spec = box.elector.release(current: current.spec, wall: clock.wallTime()) else { return }
        let client = client
        let logger = logger
        await Task {
            var lease = current
            lease.spec = spec
            do {
                _ = try await client.update(lease)
                logger.notice("released the lease")
            } catch {
                logger.warning("releasing the lease failed; it expires on its own", metadata: ["error": "\(error)"])
            }
        }.value
    }
}
