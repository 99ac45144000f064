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

/// Leader election on a `coordination.k8s.io/v1` Lease: Support's ``LeaseElector`` (the rules,
/// shared with the brokers' election through the bucket) with Kubernetes' record. It returns
/// actions; the owner does the reads and writes and reports back. Time is passed in.
///
/// The lease's version is its spec (holder, renewTime, transitions); a take-over raises
/// `leaseTransitions`; an empty holder is a released lease, free at once. On shutdown a leader
/// releases: holder cleared, duration 1 s (``release(current:wall:)``). Writes carry the observed
/// resourceVersion, so two candidates racing for a lease cannot both win: the loser gets a 409.
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
    private var elector: LeaseElector<LeaseSpec>
    public var isLeader: Bool { elector.isLeader }

    public init(config: LeaderElectionConfig) {
        self.config = config
        elector = LeaseElector(timing: .init(duration: config.leaseDuration, renewDeadline: config.renewDeadline, retry: config.retryPeriod))
    }

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
        let observation = lease.map { l -> LeaseElector<LeaseSpec>.Observation in
            let holder = l.holderIdentity ?? ""
            return .init(holder: holder.isEmpty ? .free : holder == config.identity ? .us : .other, version: l,
                         duration: l.leaseDurationSeconds.map { Duration.seconds(Int64($0)) })
        }
        let (decision, lost) = elector.decide(observation, now: now)
        let transition: Transition? = lost ? .stoppedLeading : nil
        switch decision {
        case .create:
            return (.create(LeaseSpec(holderIdentity: config.identity, leaseDurationSeconds: seconds, acquireTime: stamp, renewTime: stamp,
                                      leaseTransitions: 0)), transition)
        case .renew:
            var renewed = lease!
            renewed.renewTime = stamp
            renewed.leaseDurationSeconds = seconds
            return (.update(renewed), transition)
        case .takeOver:
            return (.update(LeaseSpec(holderIdentity: config.identity, leaseDurationSeconds: seconds, acquireTime: stamp, renewTime: stamp,
                                      leaseTransitions: (lease!.leaseTransitions ?? 0) + 1)), transition)
        case .wait:
            return (.wait(config.retryPeriod), transition)
        }
    }

    /// The write of `.create`/`.update` succeeded: we hold the lease as of `now`.
    public mutating func writeSucceeded(_ written: LeaseSpec, now: MonotonicInstant) -> Transition? {
        elector.written(now: now) ? .startedLeading : nil
    }

    /// A read or write failed (conflict, transport). A leader past its renew deadline stops.
    public mutating func writeFailed(now: MonotonicInstant) -> Transition? {
        elector.failed(now: now) ? .stoppedLeading : nil
    }

    /// When to act next: a leader renews every retry period; a follower retries as often.
    public var nextDelay: Duration { config.retryPeriod }

    /// The lease to write on shutdown if we lead (holder cleared so a standby takes over at
    /// once), or nil. Leadership ends here either way.
    public mutating func release(current: LeaseSpec?, wall: Date) -> LeaseSpec? {
        let wasLeader = elector.conflicted()
        guard wasLeader, var spec = current, spec.holderIdentity == config.identity else { return nil }
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

    /// One step: read, decide, write. Returns the transition, if any. A leader first renews the
    /// Lease it wrote last, with that object's resourceVersion and without reading it (one
    /// request a period instead of two); a conflict means someone else wrote it, so it reads and
    /// decides as a follower would.
    func step(_ box: Box) async throws -> LeaderElector.Transition? {
        if box.elector.isLeader, let held = box.lease, let spec = held.spec, spec.holderIdentity == config.identity,
            case .update(let renewed) = box.elector.decide(lease: spec, now: clock.now(), wall: clock.wallTime()).action
        {
            var lease = held
            lease.spec = renewed
            do {
                box.lease = try await client.update(lease)
                return box.elector.writeSucceeded(renewed, now: clock.now())
            } catch is CancellationError {
                throw CancellationError()
            } catch let e as KubeAPIError where e.isConflict {
                logger.info("the lease changed since our last renewal; reading it")
            } catch {
                logger.info("renewing the lease failed", metadata: ["error": "\(error)"])
                return box.elector.writeFailed(now: clock.now())
            }
        }
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
