import KafkaProtocol
import Support
import Synchronization

/// What the controller asks of the brokers (in-process for itself, over the Kafka protocol for
/// the others). Implemented by `ClusterMember`.
protocol ClusterActions: Sendable {
    /// Asks `owner` to stop serving the partition and make everything it acknowledged durable in
    /// objects; returns once it has.
    func handOver(owner: BrokerInfo, topic: String, partition: Int32, leaderEpoch: Int32, controllerEpoch: UInt64) async throws
    /// Recovers a dead broker's object-store WAL into objects (fencing it out of its WAL).
    func recoverWAL(of broker: Int32) async throws
    /// Tells brokers the metadata log has new entries.
    func nudge(_ brokers: [BrokerInfo]) async
}

/// The active controller's logic: registrations and sessions, fencing and failover, placement
/// of orphaned partitions, and reassignments. Its state is the metadata log (through the
/// registry); only session times live in memory (a new controller gives every broker a full
/// session before fencing it).
final class ClusterController: Sendable {
    let registry: TopicRegistry
    let epoch: UInt64
    let node: Int32
    let sessionTimeout: Duration
    let clock: any FloeClock
    let actions: any ClusterActions
    let logger: Logger
    private let sessions = Mutex<[Int32: MonotonicInstant]>([:])
    /// Fenced brokers whose WAL this controller recovered.
    private let recovered = Mutex<Set<Int32>>([])
    let wake = Signal()

    init(registry: TopicRegistry, epoch: UInt64, node: Int32, sessionTimeout: Duration, clock: any FloeClock,
         actions: any ClusterActions, logger: Logger) {
        self.registry = registry
        self.epoch = epoch
        self.node = node
        self.sessionTimeout = sessionTimeout
        self.clock = clock
        self.actions = actions
        self.logger = logger
        let now = clock.now()
        sessions.withLock { s in for b in registry.state.brokers.keys { s[b] = now } }
    }

    // MARK: brokers

    /// Registers (or re-registers) a broker; returns its new broker epoch.
    func register(id: Int32, incarnation: String, host: String, port: Int32, external: BrokerEndpoint? = nil,
                  objectWAL: Bool) async throws -> Int64 {
        let log = registry.log
        let epoch = try await registry.mutate { s -> Int64 in
            let at = Int64(log.offset + 1)  // the offset this change is written at (the writer lock is held)
            let draining = s.brokers[id]?.draining ?? false
            s.brokers[id] = BrokerInfo(id: id, epoch: at, incarnation: incarnation, host: host, port: port, objectWAL: objectWAL,
                                       fenced: false, draining: draining, stoppedCleanly: false, external: external)
            return at
        }
        sessions.withLock { $0[id] = clock.now() }
        recovered.withLock { _ = $0.remove(id) }
        logger.info("broker registered", metadata: ["broker": "\(id)", "broker.epoch": "\(epoch)", "address": "\(host):\(port)"])
        wake.fire()
        // The others read the log now, so their Metadata lists the new broker at once (not after
        // their next heartbeat). Not the new broker itself: it is waiting for this answer.
        await actions.nudge(registry.state.liveBrokers.filter { $0.id != id })
        return epoch
    }

    struct HeartbeatAnswer: Sendable {
        var fenced: Bool
        var logEnd: UInt64
    }

    /// A broker's heartbeat. An unknown or stale epoch, or a fenced broker, is told it is fenced
    /// (it registers again).
    func heartbeat(id: Int32, brokerEpoch: Int64, wantShutDown: Bool) async throws -> HeartbeatAnswer {
        let s = registry.state
        guard let b = s.brokers[id], b.epoch == brokerEpoch, !b.fenced else {
            return HeartbeatAnswer(fenced: true, logEnd: registry.log.offset)
        }
        sessions.withLock { $0[id] = clock.now() }
        if wantShutDown {
            try await fence(id, cleanly: true)
            return HeartbeatAnswer(fenced: true, logEnd: registry.log.offset)
        }
        return HeartbeatAnswer(fenced: false, logEnd: registry.log.offset)
    }

    func fence(_ id: Int32, cleanly: Bool) async throws {
        try await registry.mutate { s in
            guard var b = s.brokers[id], !b.fenced else { return }
            b.fenced = true
            b.stoppedCleanly = cleanly
            s.brokers[id] = b
        }
        logger.warning(cleanly ? "broker stopped cleanly; its partitions move" : "broker missed its session timeout; fenced",
                       metadata: ["broker": "\(id)"])
        wake.fire()
    }

    /// Marks a broker as draining (no new placements) or not.
    func setDraining(_ id: Int32, _ draining: Bool) async throws {
        try await registry.mutate { s in
            guard var b = s.brokers[id] else { throw TopicError(.brokerIdNotRegistered, "broker \(id) is not registered") }
            b.draining = draining
            s.brokers[id] = b
        }
    }

    // MARK: the loop

    /// One pass: expire sessions, fail over fenced brokers' partitions, place orphans, execute
    /// reassignments.
    func tick() async throws {
        let now = clock.now()
        let expired = sessions.withLock { s in
            registry.state.liveBrokers.filter { $0.id != node && now.duration(since: s[$0.id] ?? now) >= sessionTimeout }.map(\.id)
        }
        sessions.withLock { $0[node] = now }
        for id in expired { try await fence(id, cleanly: false) }
        try await placePartitions()
        try await executeMoves()
    }

    /// Whether partitions of `owner` can be given to another broker without it: it is gone and
    /// either stopped cleanly or its WAL (in the bucket) has been recovered by us.
    private func releasable(_ owner: BrokerInfo?) async -> Bool {
        guard let owner else { return true }
        guard owner.fenced else { return false }
        if owner.stoppedCleanly { return true }
        guard owner.objectWAL else { return false }  // a file WAL waits for its broker
        if recovered.withLock({ $0.contains(owner.id) }) { return true }
        do {
            try await actions.recoverWAL(of: owner.id)
            recovered.withLock { _ = $0.insert(owner.id) }
            logger.info("recovered the WAL of a fenced broker", metadata: ["broker": "\(owner.id)"])
            return true
        } catch {
            logger.error("could not recover a fenced broker's WAL; its partitions wait", metadata: ["broker": "\(owner.id)", "error": "\(error)"])
            return false
        }
    }

    /// Gives partitions without a usable owner (none, unregistered, or fenced and releasable) to
    /// the least loaded placeable brokers.
    private func placePartitions() async throws {
        let s = registry.state
        guard !s.placeableBrokers.isEmpty else { return }
        var owners: Set<Int32> = []
        for t in s.topics.values { for p in t.partitions { owners.insert(p.owner) } }
        var free: Set<Int32> = []
        for o in owners {
            let b = s.brokers[o]
            if b == nil || o < 0 {
                free.insert(o)
            } else if b!.fenced, await releasable(b) {
                free.insert(o)
            }
        }
        guard !free.isEmpty else { return }
        let freed = free
        let changed = try await registry.mutate { s -> Int in
            var counts = s.ownedCounts
            let placeable = s.placeableBrokers.map(\.id)
            guard !placeable.isEmpty else { return 0 }
            var n = 0
            for name in s.topics.keys.sorted() {
                var t = s.topics[name]!
                for i in t.partitions.indices where freed.contains(t.partitions[i].owner) {
                    counts[t.partitions[i].owner, default: 1] -= 1
                    t.partitions[i].owner = ClusterState.leastLoaded(placeable, &counts)
                    t.partitions[i].leaderEpoch += 1
                    n += 1
                }
                s.topics[name] = t
            }
            return n
        }
        if changed > 0 {
            logger.info("partitions placed on live brokers", metadata: ["partitions": "\(changed)", "from": "\(free.sorted())"])
            await actions.nudge(registry.state.liveBrokers)
        }
    }

    /// Carries out pending reassignments: the old owner hands over (or its WAL is recovered),
    /// then one log entry names the new owners at the next partition epoch.
    private func executeMoves() async throws {
        let s = registry.state
        guard !s.moves.isEmpty else { return }
        struct Work: Sendable { let key: String; let topic: String; let index: Int32; let target: Int32; let owner: BrokerInfo?; let epoch: Int32 }
        var handOvers: [Work] = []
        var direct: [Work] = []
        var cancelled: [String] = []
        for (key, move) in s.moves {
            guard let (topic, index) = ClusterState.splitMoveKey(key), let t = s.topics[topic], Int(index) < t.partitions.count else {
                cancelled.append(key)
                continue
            }
            let p = t.partitions[Int(index)]
            guard let target = s.brokers[move.target], !target.fenced else {
                logger.warning("reassignment cancelled: its target is gone", metadata: ["topic": topic, "partition": "\(index)", "target": "\(move.target)"])
                cancelled.append(key)
                continue
            }
            let owner = s.brokers[p.owner]
            let w = Work(key: key, topic: topic, index: index, target: target.id, owner: owner, epoch: p.leaderEpoch)
            if p.owner == move.target {
                direct.append(w)
            } else if let owner, !owner.fenced {
                handOvers.append(w)
            } else if await releasable(owner) {
                direct.append(w)
            }
        }
        let actions = self.actions, epoch = self.epoch, logger = self.logger
        let started = ContinuousClock.now
        let handedOver = await withTaskGroup(of: Work?.self) { group -> [Work] in
            for w in handOvers {
                group.addTask {
                    do {
                        try await actions.handOver(owner: w.owner!, topic: w.topic, partition: w.index, leaderEpoch: w.epoch, controllerEpoch: epoch)
                        return w
                    } catch {
                        logger.warning("hand-over failed; retrying", metadata: ["topic": w.topic, "partition": "\(w.index)", "owner": "\(w.owner!.id)", "error": "\(error)"])
                        return nil
                    }
                }
            }
            var done: [Work] = []
            for await w in group { if let w { done.append(w) } }
            return done
        }
        let completed = direct + handedOver
        guard !completed.isEmpty || !cancelled.isEmpty else { return }
        let dropped = cancelled
        let handOverEnded = ContinuousClock.now
        try await registry.mutate { s in
            for key in dropped { s.moves[key] = nil }
            for w in completed {
                guard s.moves[w.key]?.target == w.target, var t = s.topics[w.topic], Int(w.index) < t.partitions.count else { continue }
                // The hand-over was of this partition epoch; anything else changed it meanwhile.
                guard t.partitions[Int(w.index)].leaderEpoch == w.epoch else { continue }
                if t.partitions[Int(w.index)].owner != w.target {
                    t.partitions[Int(w.index)].owner = w.target
                    t.partitions[Int(w.index)].leaderEpoch += 1
                    s.topics[w.topic] = t
                }
                s.moves[w.key] = nil
            }
        }
        if !completed.isEmpty {
            logger.info("partitions reassigned", metadata: [
                "moves": "\(completed.count)", "handover.ms": "\((handOverEnded - started).millisecondsClamped)",
                "commit.ms": "\((ContinuousClock.now - handOverEnded).millisecondsClamped)"])
            await actions.nudge(registry.state.liveBrokers)
        }
    }

    // MARK: reassignment requests

    struct MoveRequest: Sendable {
        var topic: String
        var partition: Int32
        /// nil cancels.
        var replicas: [Int32]?
    }

    /// Validates and records reassignments; returns an error code and message per request.
    func requestMoves(_ requests: [MoveRequest]) async throws -> [(KafkaErrorCode, String?)] {
        var seen: Set<String> = []
        var results: [(KafkaErrorCode, String?)] = []
        var accepted: [(String, PendingMove?)] = []
        let s = registry.state
        let now = Int64(clock.wallTime().timeIntervalSince1970 * 1000)
        for r in requests {
            let key = ClusterState.moveKey(r.topic, r.partition)
            guard seen.insert(key).inserted else {
                results.append((.invalidRequest, "partition \(r.topic)-\(r.partition) appears more than once in the request"))
                continue
            }
            guard let t = s.topics[r.topic], r.partition >= 0, Int(r.partition) < t.partitions.count else {
                results.append((.unknownTopicOrPartition, "partition \(r.topic)-\(r.partition) does not exist"))
                continue
            }
            guard let replicas = r.replicas else {
                if s.moves[key] == nil {
                    results.append((.noReassignmentInProgress, "no reassignment of \(r.topic)-\(r.partition) is in progress"))
                } else {
                    accepted.append((key, nil))
                    results.append((.none, nil))
                }
                continue
            }
            if replicas.isEmpty {
                results.append((.invalidReplicaAssignment, "the replica list of \(r.topic)-\(r.partition) is empty"))
                continue
            }
            if Set(replicas).count != replicas.count {
                results.append((.invalidReplicaAssignment, "the replica list \(replicas) of \(r.topic)-\(r.partition) repeats a broker"))
                continue
            }
            if let unknown = replicas.first(where: { s.brokers[$0] == nil }) {
                results.append((.invalidReplicaAssignment, "broker \(unknown) is not registered"))
                continue
            }
            guard let target = replicas.first(where: { s.brokers[$0]?.fenced == false }) else {
                results.append((.invalidReplicaAssignment, "none of the brokers \(replicas) is live"))
                continue
            }
            accepted.append((key, PendingMove(target: target, replicas: replicas, requestedMillis: now)))
            results.append((.none, nil))
        }
        if !accepted.isEmpty {
            let changes = accepted
            try await registry.mutate { s in for (key, move) in changes { s.moves[key] = move } }
            wake.fire()
        }
        return results
    }
}
