import Foundation
import KafkaClient
import KafkaProtocol
import ObjectStore
import Support
import Synchronization

/// Timing of the cluster protocol.
public struct ClusterTiming: Sendable {
    /// A broker that has not heartbeated for this long is fenced (Kafka's
    /// `broker.session.timeout.ms`).
    public var sessionTimeout: Duration = .seconds(6)
    public var heartbeatInterval: Duration = .milliseconds(500)
    public var lease = ControllerLease.Timing(duration: .seconds(6), renewDeadline: .seconds(4), retry: .milliseconds(500))
    /// How often a broker reads the log even without a hint (the heartbeat answer carries the
    /// controller's log end, so this is only a fallback).
    public var followInterval: Duration = .seconds(30)
    /// How often the controller looks at sessions, orphans and reassignments (it also wakes on
    /// every registration and reassignment request).
    public var controllerInterval: Duration = .milliseconds(250)
    public init() {}

    /// From `broker.session.timeout.ms` (also the lease duration; the leader must renew within
    /// two thirds of it) and `broker.heartbeat.interval.ms` (also the election's retry period).
    public init(_ config: BrokerConfig) throws {
        let session = try config.int("broker.session.timeout.ms"), beat = try config.int("broker.heartbeat.interval.ms")
        guard beat * 3 <= session else {
            throw BrokerError.invalidConfig(name: "broker.heartbeat.interval.ms", value: String(beat),
                                            reason: "must be at most a third of broker.session.timeout.ms (\(session))")
        }
        sessionTimeout = .milliseconds(Int64(session))
        heartbeatInterval = .milliseconds(Int64(beat))
        lease = ControllerLease.Timing(duration: .milliseconds(Int64(session)), renewDeadline: .milliseconds(Int64(session * 2 / 3)),
                                       retry: .milliseconds(Int64(beat)))
    }
}

/// This broker's membership in the cluster: controller election through the bucket, the
/// controller role when it wins, registration and heartbeats, following the metadata log, and
/// handing partitions over when they move away.
///
/// The controller's log end travels in the heartbeat answer as a tagged field
/// (`ClusterMember.logEndTag`); a broker that is behind reads the log at once.
public final class ClusterMember: ClusterActions, Sendable {
    /// Tagged field of BrokerHeartbeatResponse carrying the controller's metadata log end (int64).
    static let logEndTag: UInt32 = 0x464C
    /// Feature name in BrokerRegistration telling the controller the broker's WAL is in the bucket.
    static let objectWALFeature = "floe.wal.object"

    let registry: TopicRegistry
    let partitions: PartitionSet
    let node: Int32
    let incarnation: String
    let objectWAL: Bool
    let timing: ClusterTiming
    let clock: any FloeClock
    let logger: Logger
    let lease: ControllerLease
    let pool: KafkaConnectionPool
    /// TLS of the connections to the controller and other brokers (nil: plaintext).
    let interBrokerTLS: KafkaClientTLS?
    let recoverWALBody: @Sendable (Int32) async throws -> Void
    private let address = Mutex<(host: String, port: Int32)>(("", 0))
    /// The external listener's advertised address, if the broker has one.
    private let externalAddress = Mutex<BrokerEndpoint?>(nil)
    private let controller = Mutex<ClusterController?>(nil)
    private let brokerEpoch = Mutex<Int64?>(nil)
    private let leaseHolder = Mutex<LeaseDocument?>(nil)
    private let placementHooks = Mutex<[@Sendable () async -> Void]>([])
    private let followWake = Signal()
    private let hint = Mutex<UInt64>(0)
    private let stopping = Atomic<Bool>(false)
    /// When this broker last read the lease, and whether its last heartbeat failed: a follower
    /// whose heartbeats succeed reads the lease only every half lease (the bucket's request bill).
    private let leaseRead = Mutex<(at: MonotonicInstant?, heartbeatFailing: Bool)>((nil, true))

    init(registry: TopicRegistry, partitions: PartitionSet, store: any ObjectStore, prefix: String, node: Int32, objectWAL: Bool,
         timing: ClusterTiming, clock: any FloeClock, logger: Logger, recoverWAL: @escaping @Sendable (Int32) async throws -> Void,
         sasl: KafkaClientSASL? = nil, interBrokerTLS: KafkaClientTLS? = nil) {
        self.interBrokerTLS = interBrokerTLS
        self.registry = registry
        self.partitions = partitions
        self.node = node
        self.incarnation = KafkaUUID.random().description
        self.objectWAL = objectWAL
        self.timing = timing
        self.clock = clock
        self.logger = logger
        self.recoverWALBody = recoverWAL
        self.pool = KafkaConnectionPool(clientId: "floe-broker-\(node)", connectTimeout: .seconds(2), tls: interBrokerTLS, sasl: sasl)
        self.lease = ControllerLease(store: store, key: prefix + "cluster/controller", node: node, incarnation: incarnation,
                                     host: "", port: 0, timing: timing.lease, clock: clock)
        registry.log.observe { [weak partitionsRef = partitions] old, new in
            partitionsRef?.ownershipChanged(from: old, to: new)
        }
    }

    public var isController: Bool { controller.withLock { $0 != nil } }
    public var epoch: Int64? { brokerEpoch.withLock { $0 } }
    var activeController: ClusterController? { controller.withLock { $0 } }

    /// Called whenever ownership may have changed (group coordinators re-check their groups).
    public func onPlacementChange(_ hook: @escaping @Sendable () async -> Void) { placementHooks.withLock { $0.append(hook) } }

    // MARK: joining

    /// Refuses to start if a live broker already has this node id; then takes part in the
    /// election once and registers (waiting for a controller up to `timeout`).
    func join(host: String, port: Int32, external: BrokerEndpoint? = nil, timeout: Duration) async throws {
        address.withLock { $0 = (host, port) }
        externalAddress.withLock { $0 = external }
        lease.setAddress(host: host, port: port)
        try await refuseDuplicate(host: host, port: port)
        let deadline = clock.now().advanced(by: timeout)
        var lastError: any Error = BrokerError.controllerUnavailable("no controller elected yet")
        while clock.now() < deadline {
            do {
                try await electionRound()
                try await registerWithController()
                if !registry.state.clusterID.isEmpty { return }
            } catch let e as BrokerError {
                if case .registrationRefused = e { throw e }
                lastError = e
            } catch {
                lastError = error
            }
            try await clock.sleep(for: .milliseconds(200))
        }
        throw BrokerError.controllerUnavailable("could not register within \(timeout): \(lastError)")
    }

    /// A broker registered with this node id, not fenced, from another process, that still
    /// answers at its address: starting would take its identity (and its WAL). Refuse.
    private func refuseDuplicate(host: String, port: Int32) async throws {
        try await registry.log.catchUp()
        guard let b = registry.state.brokers[node], !b.fenced, b.incarnation != incarnation else { return }
        if b.host == host && b.port == port { return }  // our own address: the old process is gone (we bound it)
        try await Self.refuseIfAnswering(b, node: node, tls: interBrokerTLS)
    }

    /// The same check before anything is opened (`floe-broker` runs it before its WAL, whose
    /// takeover would fence the live broker): reads the metadata log of the bucket.
    public static func refuseLiveDuplicate(store: any ObjectStore, prefix: String, node: Int32, tls: KafkaClientTLS? = nil) async throws {
        let log = MetadataLog(store: store, prefix: prefix + "cluster/")
        try await log.load()
        guard let b = log.current.brokers[node], !b.fenced else { return }
        try await refuseIfAnswering(b, node: node, tls: tls)
    }

    static func refuseIfAnswering(_ b: BrokerInfo, node: Int32, tls: KafkaClientTLS? = nil) async throws {
        do {
            let c = try await KafkaConnection.connect(host: b.host, port: Int(b.port), clientId: "floe-duplicate-check", timeout: .seconds(1), tls: tls)
            defer { c.close() }
            _ = try await c.send(ApiVersionsRequest(clientSoftwareName: "floe", clientSoftwareVersion: "1"), version: 3, timeout: .seconds(2))
        } catch {
            return  // nothing answers there: that broker is gone
        }
        throw BrokerError.registrationRefused(
            "node.id \(node) is in use by a live broker at \(b.host):\(b.port) (broker epoch \(b.epoch)); stop it or choose another node.id")
    }

    /// The leader renews every third of the lease; a follower reads the lease every half lease,
    /// or every retry period while its heartbeats fail (the controller may be gone).
    private func electionIfDue() async throws {
        let now = clock.now()
        let due = leaseRead.withLock { r -> Bool in
            guard let at = r.at else { return true }
            let every = isController ? timing.lease.duration / 3 : (r.heartbeatFailing ? timing.lease.retry : timing.lease.duration / 2)
            return now.duration(since: at) >= every
        }
        guard due else { return }
        leaseRead.withLock { $0.at = now }
        try await electionRound()
    }

    /// One round of the election; becoming controller writes the epoch record.
    private func electionRound() async throws {
        switch try await lease.tick() {
        case let .leading(epoch, acquired, expiredHolder):
            if acquired || activeController == nil {
                do {
                    try await registry.becomeController(epoch: epoch, node: node)
                } catch {
                    await lease.release()
                    throw error
                }
                let c = ClusterController(registry: registry, epoch: epoch, node: node, sessionTimeout: timing.sessionTimeout,
                                          clock: clock, actions: self, logger: logger)
                controller.withLock { $0 = c }
                leaseHolder.withLock { $0 = nil }
                logger.info("this broker is the controller", metadata: ["controller.epoch": "\(epoch)", "node.id": "\(node)"])
                if let gone = expiredHolder {
                    // The previous controller stopped renewing for a whole lease: it is dead or cut
                    // off from the bucket. Fence it now rather than after another session timeout.
                    try await c.fence(gone, cleanly: false)
                }
                // The controller's work (WAL recovery may take seconds) runs in its own loop, never
                // here: the lease must keep being renewed meanwhile.
                c.wake.fire()
            }
        case let .following(holder, lost):
            leaseHolder.withLock { $0 = holder }
            if lost || (activeController != nil) {
                controller.withLock { $0 = nil }
                registry.resignController()
                logger.warning("this broker lost the controller lease", metadata: ["holder": "\(holder?.holder ?? -1)"])
            }
        }
        if activeController != nil, lease.leaderEpoch == nil {
            controller.withLock { $0 = nil }
            registry.resignController()
        }
    }

    /// Where the controller is: itself, or the lease holder's address.
    func controllerAddress() -> (node: Int32, host: String, port: Int32)? {
        if isController { return (node, address.withLock { $0.host }, address.withLock { $0.port }) }
        guard let h = leaseHolder.withLock({ $0 }), h.holder >= 0, !h.host.isEmpty else { return nil }
        return (h.holder, h.host, h.port)
    }

    private func registerWithController() async throws {
        let (host, port) = address.withLock { ($0.host, $0.port) }
        let external = externalAddress.withLock { $0 }
        let epoch: Int64
        if let c = activeController {
            epoch = try await c.register(id: node, incarnation: incarnation, host: host, port: port, external: external, objectWAL: objectWAL)
        } else {
            var listeners: [BrokerRegistrationRequest.Listener] = [
                .init(name: ListenerName.internal.rawValue, host: host, port: UInt16(port), securityProtocol: 0)]
            if let external {
                listeners.append(.init(name: ListenerName.external.rawValue, host: external.host, port: UInt16(external.port), securityProtocol: 0))
            }
            var request = BrokerRegistrationRequest(brokerId: node, clusterId: registry.state.clusterID,
                                                    incarnationId: KafkaUUID(base64URL: incarnation) ?? .zero,
                                                    listeners: listeners,
                                                    features: objectWAL ? [.init(name: Self.objectWALFeature, minSupportedVersion: 1, maxSupportedVersion: 1)] : [],
                                                    rack: nil)
            request.logDirs = []
            let response = try await callController(request, version: 0)
            guard case let .brokerRegistration(r) = response else { throw BrokerError.controllerUnavailable("unexpected answer \(response)") }
            if r.errorCode == KafkaErrorCode.duplicateBrokerRegistration.rawValue {
                throw BrokerError.registrationRefused("the controller reports node.id \(node) as registered by a live broker")
            }
            guard r.errorCode == 0 else { throw BrokerError.controllerUnavailable("registration answered error \(r.errorCode)") }
            epoch = r.brokerEpoch
        }
        brokerEpoch.withLock { $0 = epoch }
        try await registry.log.catchUp()
        logger.info("registered with the controller", metadata: ["broker.epoch": "\(epoch)"])
    }

    /// Sends a request to the controller (never to itself).
    func callController<M: KafkaMessage>(_ request: M, version: Int16) async throws -> AnyResponse {
        guard let c = controllerAddress(), c.node != node || !isController else {
            throw BrokerError.controllerUnavailable("no controller known")
        }
        let conn = try await pool.connection(host: c.host, port: Int(c.port))
        return try await conn.send(request, version: version, timeout: .seconds(10))
    }

    /// Forwards a client's request to the controller and catches up on the log afterwards, so
    /// this broker's answers reflect the change. Waits up to `wait` for a controller.
    func forward(_ request: AnyRequest, apiKey: ApiKey, version: Int16, wait: Duration = .seconds(10)) async throws -> AnyResponse {
        let deadline = clock.now().advanced(by: wait)
        var lastError: any Error = BrokerError.controllerUnavailable("no controller known")
        while clock.now() < deadline {
            if let c = controllerAddress(), c.node != node {
                do {
                    let conn = try await pool.connection(host: c.host, port: Int(c.port))
                    let response = try await conn.send(request, apiKey: apiKey, version: version, timeout: .seconds(30))
                    try await registry.log.catchUp()
                    return response
                } catch {
                    lastError = error
                }
            }
            if isController { throw BrokerError.notController(epoch: 0, current: 0) }  // the caller runs it locally
            try await clock.sleep(for: .milliseconds(100))
        }
        throw lastError
    }

    // MARK: running

    /// Election, controller duties, heartbeats and log following, until cancelled.
    func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.loop(self.timing.lease.retry, "controller election") { try await self.electionIfDue() } }
            group.addTask { await self.controllerLoop() }
            group.addTask { await self.loop(self.timing.heartbeatInterval, "heartbeat") { try await self.heartbeat(wantShutDown: false) } }
            group.addTask { await self.followLoop() }
            await group.waitForAll()
        }
    }

    private func loop(_ interval: Duration, _ what: String, _ body: @Sendable () async throws -> Void) async {
        while !Task.isCancelled {
            do {
                try await body()
            } catch is CancellationError {
                return
            } catch {
                logger.debug("\(what) failed; retrying", metadata: ["error": "\(error)"])
            }
            do { try await clock.sleep(for: interval) } catch { return }
        }
    }

    private func controllerLoop() async {
        let idle = Signal()
        while !Task.isCancelled {
            if let c = activeController {
                do {
                    try await c.tick()
                } catch {
                    logger.warning("controller pass failed", metadata: ["error": "\(error)"])
                }
                await c.wake.wait(orSleep: timing.controllerInterval, clock: clock)
            } else {
                await idle.wait(orSleep: timing.controllerInterval, clock: clock)
            }
        }
    }

    private func followLoop() async {
        while !Task.isCancelled {
            await followWake.wait(orSleep: timing.followInterval, clock: clock)
            if Task.isCancelled { return }
            do {
                let end = hint.withLock { $0 }
                try await registry.log.catchUp(expectedEnd: end > registry.log.offset ? end : nil)
            } catch {
                logger.warning("could not read the metadata log", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Heartbeats the controller; re-registers when told it is fenced; reads the log when behind.
    func heartbeat(wantShutDown: Bool) async throws {
        do {
            try await heartbeatOnce(wantShutDown: wantShutDown)
            leaseRead.withLock { $0.heartbeatFailing = false }
        } catch {
            leaseRead.withLock { $0.heartbeatFailing = true }
            throw error
        }
    }

    private func heartbeatOnce(wantShutDown: Bool) async throws {
        guard let epoch = brokerEpoch.withLock({ $0 }) else {
            try await registerWithController()
            return
        }
        var fenced: Bool
        var logEnd: UInt64
        if let c = activeController {
            let a = try await c.heartbeat(id: node, brokerEpoch: epoch, wantShutDown: wantShutDown)
            (fenced, logEnd) = (a.fenced, a.logEnd)
        } else {
            let response = try await callController(BrokerHeartbeatRequest(brokerId: node, brokerEpoch: epoch,
                                                                           currentMetadataOffset: Int64(registry.log.offset),
                                                                           wantFence: false, wantShutDown: wantShutDown), version: 0)
            guard case let .brokerHeartbeat(r) = response else { throw BrokerError.controllerUnavailable("unexpected answer \(response)") }
            fenced = r.isFenced
            logEnd = r.unknownTaggedFields.first { $0.tag == Self.logEndTag }.map { Self.decodeOffset($0.data) } ?? 0
        }
        if logEnd > registry.log.offset {
            hint.withLock { $0 = max($0, logEnd) }
            followWake.fire()
        }
        if fenced && !wantShutDown && !stopping.load(ordering: .relaxed) {
            if objectWAL {
                // The controller recovered this broker's WAL (fencing its writes) and moved its
                // partitions: nothing it holds is needed, and its storage cannot write any more.
                logger.error("this broker was fenced and its WAL recovered by the controller; exiting so it restarts with a fresh WAL",
                             metadata: ["broker.epoch": "\(epoch)"])
                Foundation.exit(75)
            }
            logger.warning("the controller fenced this broker; registering again", metadata: ["broker.epoch": "\(epoch)"])
            brokerEpoch.withLock { $0 = nil }
            try await registerWithController()
        }
    }

    static func encodeOffset(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * UInt64($0))) } }
    static func decodeOffset(_ b: [UInt8]) -> UInt64 { b.count == 8 ? b.reduce(0) { $0 << 8 | UInt64($1) } : 0 }

    /// A clean stop: tell the controller (it moves the partitions at once: everything this broker
    /// acknowledged is already in objects) and release the lease.
    func leave() async {
        stopping.store(true, ordering: .relaxed)
        do {
            try await heartbeat(wantShutDown: true)
        } catch {
            logger.warning("could not tell the controller about the shutdown; it fences this broker at its session timeout",
                           metadata: ["error": "\(error)"])
        }
        if isController {
            controller.withLock { $0 = nil }
            registry.resignController()
            await lease.release()
        }
        pool.closeAll()
    }

    /// A nudge from the controller: read the log now.
    func metadataChanged() {
        followWake.fire()
    }

    func notifyPlacement() async {
        for hook in placementHooks.withLock({ $0 }) { await hook() }
    }

    // MARK: ClusterActions (used by the controller on this broker)

    func handOver(owner: BrokerInfo, topic: String, partition: Int32, leaderEpoch: Int32, controllerEpoch: UInt64) async throws {
        if owner.id == node {
            try await partitions.handOver(topic: topic, index: partition, leaderEpoch: leaderEpoch)
            return
        }
        let request = StopReplicaRequest(controllerId: node, controllerEpoch: Int32(truncatingIfNeeded: controllerEpoch), brokerEpoch: owner.epoch,
                                         deletePartitions: false,
                                         topicStates: [.init(topicName: topic, partitionStates: [.init(partitionIndex: partition, leaderEpoch: leaderEpoch, deletePartition: false)])])
        let conn = try await pool.connection(host: owner.host, port: Int(owner.port))
        let response = try await conn.send(request, version: 3, timeout: .seconds(30))
        guard case let .stopReplica(r) = response else { throw BrokerError.storage("unexpected StopReplica answer \(response)") }
        if r.errorCode != 0 { throw BrokerError.storage("StopReplica answered error \(r.errorCode)") }
        if let e = r.partitionErrors.first(where: { $0.errorCode != 0 }) {
            throw BrokerError.storage("StopReplica of \(e.topicName)-\(e.partitionIndex) answered error \(e.errorCode)")
        }
    }

    func recoverWAL(of broker: Int32) async throws { try await recoverWALBody(broker) }

    func nudge(_ brokers: [BrokerInfo]) async {
        followWake.fire()
        await withTaskGroup(of: Void.self) { group in
            for b in brokers where b.id != node {
                group.addTask {
                    do {
                        let conn = try await self.pool.connection(host: b.host, port: Int(b.port))
                        _ = try await conn.send(UpdateMetadataRequest(controllerId: self.node, brokerEpoch: b.epoch), version: 7, timeout: .seconds(2))
                    } catch {
                        self.logger.debug("metadata nudge failed", metadata: ["broker": "\(b.id)", "error": "\(error)"])
                    }
                }
            }
        }
    }
}
