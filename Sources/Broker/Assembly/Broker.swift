import Foundation
import KafkaProtocol
import ObjectStore
import Support
import Synchronization

/// A single Floe broker: registry, partitions over a `LogStorage`, the Kafka handlers (plus any
/// extra ones, e.g. the group coordinator's), the network server and the probe/metrics server.
///
/// Life cycle:
/// 1. `Broker.start(...)` loads the registry, binds the Kafka port (and the HTTP port) — a taken
///    port or an unreadable bucket fails here, before anything is served;
/// 2. `run()` serves and runs the maintenance loops (producer snapshots, retention) until
///    `shutdown()`;
/// 3. `shutdown()` (SIGTERM): stop accepting, finish requests in flight, then every partition is
///    made durable, producer state is snapshotted and the storage is closed; `run()` returns.
///
/// Example (tests): `let b = try await Broker.start(settings: .init(listen: "127.0.0.1:0"), store: MemoryObjectStore(name: "t"), storage: MemoryLogStorage())`,
/// then `b.port` is the bound port.
public final class Broker: Sendable {
    public struct Settings: Sendable {
        public var config: BrokerConfig
        /// Where the bucket documents (registry, producer state) live inside the store.
        public var prefix: String = "broker/"
        /// Serve the consumer-group APIs (the group coordinator keeps its state under `<prefix>groups/`).
        public var groups = true
        /// Whether this broker's WAL is in the bucket (then the controller can recover it after a
        /// crash and move its partitions; a file WAL's partitions wait for their broker).
        public var objectWAL = false
        /// Recovers another broker's object-store WAL (used by the controller after fencing it).
        public var recoverWAL: @Sendable (Int32) async throws -> Void = { node in
            throw BrokerError.storage("this broker's storage cannot recover the WAL of broker \(node)")
        }
        /// How long `start` waits to join the cluster (a controller elected, this broker registered).
        public var joinTimeout: Duration = .seconds(60)
        /// Called when the storage failed in a way this process cannot recover from (its WAL
        /// was taken over by another writer, or cannot be read): the executable exits so that a
        /// restart recovers it. Meanwhile `/healthz` and `/readyz` answer 503.
        public var onStorageUnrecoverable: @Sendable (String) -> Void = { _ in }
        public init(config: BrokerConfig = BrokerConfig()) { self.config = config }
        public init(listen: String) {
            var c = BrokerConfig()
            c.set("listen", listen, .flag)
            self.config = c
        }
    }

    public let core: BrokerCore
    public let server: KafkaServer
    /// The external listener's server, if `external.listen` is set.
    public let externalServer: KafkaServer?
    public let storage: any LogStorage
    public let metrics: MetricsRegistry
    let probe: ProbeServer?
    /// The consumer-group coordinator (nil when `Settings.groups` is false).
    public let groups: GroupCoordinator?
    let logger: Logger
    /// The logger of per-connection events (malformed requests, connection errors), rate-limited.
    let limitedLogger: RateLimitedLogger
    /// Keeps `sasl.users.file`'s users in the cluster metadata (nil: no file).
    let usersWatcher: SaslUsersFileWatcher?
    let ready = Atomic<Bool>(false)
    let draining = Atomic<Bool>(false)
    let startedAt: ContinuousClock.Instant
    private let drainLock = AsyncLock()

    /// The Kafka port actually bound.
    public var port: UInt16 { server.port }
    /// The external Kafka port actually bound, if any.
    public var externalPort: UInt16? { externalServer?.port }
    /// The HTTP port actually bound, if any.
    public var httpPort: UInt16? { probe?.port }

    private init(core: BrokerCore, server: KafkaServer, externalServer: KafkaServer?, storage: any LogStorage, metrics: MetricsRegistry,
                 probe: ProbeServer?, groups: GroupCoordinator?, logger: Logger, limitedLogger: RateLimitedLogger,
                 startedAt: ContinuousClock.Instant, usersWatcher: SaslUsersFileWatcher? = nil) {
        self.usersWatcher = usersWatcher
        self.limitedLogger = limitedLogger
        self.groups = groups
        self.core = core
        self.server = server
        self.externalServer = externalServer
        self.storage = storage
        self.metrics = metrics
        self.probe = probe
        self.logger = logger
        self.startedAt = startedAt
    }

    /// Loads state and binds the ports. `extraHandlers` receives the core and returns handlers
    /// for more APIs (they must not repeat an API served here).
    public static func start(settings: Settings, store: any ObjectStore, storage: any LogStorage,
                             metrics: MetricsRegistry = MetricsRegistry(), logger: Logger = .discarding,
                             extraHandlers: @Sendable (BrokerCore) -> [any ApiHandler] = { _ in [] }) async throws -> Broker {
        let startedAt = ContinuousClock.now
        let config = settings.config
        let nodeId = Int32(try config.int("node.id"))
        let listen = try SocketAddress(parsing: config["listen"] ?? "127.0.0.1:9092")
        let security = try SecuritySetup(config)
        let registry = try await TopicRegistry.load(store: store, prefix: settings.prefix, logger: logger)
        let partitions = PartitionSet(registry: registry, storage: storage, store: store, prefix: settings.prefix, metrics: metrics,
                                      logger: logger, node: nodeId)
        // The server binds first (its port may be 0); the router, which needs the advertised
        // address for the group coordinator, is installed right after, before `run()` serves.
        let routerBox = RouterBox()
        var serverConfig = ServerConfiguration(listen: listen)
        serverConfig.eventLoops = try config.int("event.loops")
        serverConfig.maxFrameSize = try config.int("socket.request.max.bytes")
        serverConfig.maxConnections = try config.int("max.connections")
        serverConfig.idleTimeoutMilliseconds = UInt64(max(0, try config.int("connections.max.idle.ms")))
        serverConfig.maxUnsentBytesPerConnection = try config.int("connection.unsent.max.bytes")
        serverConfig.requestReadTimeoutMilliseconds = UInt64(max(0, try config.int("request.read.timeout.ms")))
        serverConfig.authenticationTimeoutMilliseconds = UInt64(max(0, try config.int("authentication.timeout.ms")))
        serverConfig.securityProtocol = security.internalProtocol
        serverConfig.tls = try Self.tlsCertificates(config, logger: logger)
        // Connection events and malformed requests come at the rate clients choose: rate-limited.
        let limitedLogger = RateLimitedLogger(logger, limiter: LogRateLimiter(burst: 10, interval: .seconds(10)))
        let server = try KafkaServer(configuration: serverConfig, handler: routerBox, counters: ServerCounters(metrics: metrics)) { message, peer in
            limitedLogger.debug(message, metadata: ["peer": peer])
        }
        // Advertised address: --advertise HOST[:PORT], else the listen host (0.0.0.0 → hostname) and bound port.
        var host = listen.host
        var port = Int32(server.port)
        if let adv = config["advertise"], !adv.isEmpty {
            if let colon = adv.lastIndex(of: ":"), let p = Int32(adv[adv.index(after: colon)...]) {
                host = String(adv[..<colon])
                port = p
            } else {
                host = adv
            }
        } else if host == "0.0.0.0" {
            host = ProcessInfo.processInfo.hostName
        }
        // The external listener: same handlers, but its clients are given external addresses.
        var externalServer: KafkaServer? = nil
        var external: BrokerEndpoint? = nil
        if let listenText = config["external.listen"], !listenText.isEmpty {
            var externalConfig = serverConfig
            externalConfig.listen = try SocketAddress(parsing: listenText)
            externalConfig.listener = .external
            externalConfig.securityProtocol = security.externalProtocol
            let ext = try KafkaServer(configuration: externalConfig, handler: routerBox,
                                      counters: ServerCounters(metrics: metrics, listener: .external)) { message, peer in
                limitedLogger.debug(message, metadata: ["peer": peer, "listener": "external"])
            }
            externalServer = ext
            do {
                external = try Self.externalEndpoint(config["external.advertise"] ?? "", listen: externalConfig.listen,
                                                     boundPort: Int32(ext.port), node: nodeId)
            } catch {
                ext.shutdown()
                server.shutdown()
                throw error
            }
        }
        let member = ClusterMember(registry: registry, partitions: partitions, store: store, prefix: settings.prefix, node: nodeId,
                                   objectWAL: settings.objectWAL, timing: try ClusterTiming(config), clock: RealClock(), logger: logger,
                                   recoverWAL: settings.recoverWAL, sasl: security.interBroker, interBrokerTLS: try config.interBrokerTLS())
        // Compaction and garbage collection work on every object in the bucket: the controller
        // alone does them, so brokers do not rewrite the same objects in competition.
        if let streams = storage as? StreamLogStorage {
            streams.setBucketWideMaintenance { [weak member] in member?.isController ?? false }
            streams.onReopen { await partitions.dropAll() }
            let unrecoverable = settings.onStorageUnrecoverable
            streams.onUnrecoverable { reason in unrecoverable(reason) }
        }
        // Requests that arrive while joining wait: `run()` serves them.
        do {
            try await member.join(host: host, port: port, external: external, timeout: settings.joinTimeout)
        } catch {
            server.shutdown()
            externalServer?.shutdown()
            throw error
        }
        // Users of sasl.users.file: written now when this broker is the controller (so they can
        // log in as soon as `start` returns), and kept in step by `run()`.
        var usersWatcher: SaslUsersFileWatcher? = nil
        if let path = security.usersFile {
            let watcher = SaslUsersFileWatcher(path: path, registry: registry, isController: { [weak member] in member?.isController ?? false },
                                               logger: logger)
            do {
                try await watcher.applyIfNeeded()
            } catch {
                server.shutdown()
                externalServer?.shutdown()
                throw error
            }
            usersWatcher = watcher
        }
        var clusterId = config["cluster.id"] ?? ""
        if clusterId.isEmpty { clusterId = registry.clusterID }
        let core = BrokerCore(config: config, nodeId: nodeId, clusterId: clusterId, registry: registry, partitions: partitions,
                              member: member, metrics: metrics, logger: logger)
        core.setAdvertised(host: host, port: port)

        var groups: GroupCoordinator? = nil
        if settings.groups {
            let coordinator = GroupCoordinator(nodeId: nodeId, host: host, port: port, store: store, prefix: settings.prefix + "groups/",
                                               clock: RealClock(), topics: core, logger: logger, config: try config.groupConfig(),
                                               placement: ClusterGroupPlacement(registry: registry))
            member.onPlacementChange { await coordinator.placementChanged() }
            core.txnMarkers.attach(offsets: TxnOffsetStore(store: store, prefix: settings.prefix + "txn-offsets/", groups: coordinator, logger: logger),
                                   placement: coordinator.placement)
            // Groups are read from the bucket on first use, not all at start.
            groups = coordinator
        }
        let authenticator = SaslAuthenticator(settings: security.authenticator, credential: { user, mechanism in
            registry.scramCredential(user: user, mechanism: mechanism)
        }, metrics: metrics, logger: logger)
        // OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT while a transaction holds offsets.
        let groupHandlers: [any ApiHandler] = (groups?.handlers ?? []).map { h in
            guard h.apiKey == .offsetFetch, let offsets = core.txnMarkers.offsets else { return h }
            return StableOffsetFetchHandler(inner: h, offsets: offsets)
        }
        var handlers: [any ApiHandler] = Self.standardHandlers(core) + Self.clusterHandlers(core) + groupHandlers + extraHandlers(core)
            + Self.transactionHandlers(core, groups: groups, unstableVersions: try config.bool("unstable.api.versions.enable"))
            + authenticator.handlers
        let authorizer = try Self.authorizer(config)
        authorizer.follow(registry.log)
        let quotas = try Self.quotaManager(config, metrics: metrics)
        quotas.follow(registry.log)
        handlers = handlers.map {
            InstrumentedHandler(QuotaEnforcingHandler(inner: AuthorizingHandler(inner: $0, authorizer: authorizer, core: core), quotas: quotas), metrics: metrics)
        }
        routerBox.install(KafkaRouter(handlers: handlers, rawToken: { await authenticator.rawToken($0) }) { message, fields in
            limitedLogger.info(message, metadata: fields)
        })

        var probe: ProbeServer? = nil
        let brokerBox = Mutex<Broker?>(nil)
        if let http = config["http"], !http.isEmpty {
            let address = try SocketAddress(parsing: http)
            probe = try ProbeServer(address: address) { method, path in
                guard let broker = brokerBox.withLock({ $0 }) else { return .init(status: 503, body: "starting\n") }
                return broker.route(method: method, path: path)
            }
        }
        let broker = Broker(core: core, server: server, externalServer: externalServer, storage: storage, metrics: metrics, probe: probe,
                            groups: groups, logger: logger, limitedLogger: limitedLogger, startedAt: startedAt, usersWatcher: usersWatcher)
        brokerBox.withLock { $0 = broker }
        probe?.start()
        return broker
    }

    /// Every API this module serves. Metadata changes run on the controller (forwarded there).
    public static func standardHandlers(_ core: BrokerCore) -> [any ApiHandler] {
        let forwarded: [any ApiHandler] = [
            CreateTopicsHandler(core: core), DeleteTopicsHandler(core: core), CreatePartitionsHandler(core: core),
            AlterConfigsHandler(core: core), IncrementalAlterConfigsHandler(core: core),
            AlterPartitionReassignmentsHandler(member: core.member), AlterUserScramCredentialsHandler(core: core),
            CreateAclsHandler(core: core), DeleteAclsHandler(core: core),
            AlterClientQuotasHandler(core: core),
        ]
        return adminHandlers(core) + [
            ProduceHandler(core: core), FetchHandler(core: core), ListOffsetsHandler(core: core), MetadataHandler(core: core),
            DescribeConfigsHandler(core: core), DescribeClusterHandler(core: core), DescribeTopicPartitionsHandler(core: core), InitProducerIdHandler(core: core),
            OffsetForLeaderEpochHandler(core: core), DeleteRecordsHandler(core: core), ListPartitionReassignmentsHandler(core: core),
            DescribeUserScramCredentialsHandler(core: core), DescribeAclsHandler(core: core),
            DescribeClientQuotasHandler(core: core),
        ] + forwarded.map { ControllerForwarding(inner: $0, member: core.member, logger: core.logger) }
    }

    /// Client quota enforcement with the settings `quota.window.num` and `quota.window.size.seconds`.
    static func quotaManager(_ config: BrokerConfig, metrics: MetricsRegistry?) throws -> QuotaManager {
        QuotaManager(samples: try config.int("quota.window.num"), windowMillis: Int64(try config.int("quota.window.size.seconds")) * 1000,
                     metrics: metrics)
    }

    /// The authorizer the settings `authorizer`, `super.users` and `allow.everyone.if.no.acl.found` ask for.
    static func authorizer(_ config: BrokerConfig) throws -> BrokerAuthorizer {
        let enabled = (config["authorizer"] ?? "") == "acl"
        return BrokerAuthorizer(settings: AuthorizerSettings(
            enabled: enabled, superUsers: AuthorizerSettings.parseSuperUsers(config["super.users"] ?? ""),
            allowEveryoneIfNoAclFound: try config.bool("allow.everyone.if.no.acl.found")))
    }

    /// The transaction APIs (docs/transactions.md); TxnOffsetCommit only with a group coordinator.
    /// `unstableVersions` (`unstable.api.versions.enable`) adds EndTxn v5 (KIP-890 part 2).
    static func transactionHandlers(_ core: BrokerCore, groups: GroupCoordinator?, unstableVersions: Bool) -> [any ApiHandler] {
        var handlers: [any ApiHandler] = [
            AddPartitionsToTxnHandler(core: core), AddOffsetsToTxnHandler(core: core), EndTxnHandler(core: core, unstableVersions: unstableVersions),
            WriteTxnMarkersHandler(markers: core.txnMarkers), DescribeTransactionsHandler(core: core), ListTransactionsHandler(core: core),
        ]
        if let groups, let offsets = core.txnMarkers.offsets {
            handlers.append(TxnOffsetCommitHandler(groups: groups, offsets: offsets, core: core))
        }
        return handlers
    }

    /// The APIs brokers use among themselves (registration, heartbeats, hand-overs, nudges).
    static func clusterHandlers(_ core: BrokerCore) -> [any ApiHandler] {
        [
            BrokerRegistrationHandler(member: core.member), BrokerHeartbeatHandler(member: core.member), StopReplicaHandler(core: core),
            UpdateMetadataHandler(member: core.member), AllocateProducerIdsHandler(core: core, member: core.member),
        ]
    }

    /// The admin APIs tools call that have little to do here (AdminHandlers.swift, TelemetryHandlers.swift).
    static func adminHandlers(_ core: BrokerCore) -> [any ApiHandler] {
        let telemetry = ClientTelemetry()
        return [
            DescribeLogDirsHandler(core: core), ElectLeadersHandler(core: core), DescribeProducersHandler(core: core),
            ListClientMetricsResourcesHandler(), GetTelemetrySubscriptionsHandler(telemetry: telemetry), PushTelemetryHandler(telemetry: telemetry),
        ]
    }

    /// Serves until `shutdown()`, then makes everything durable and returns.
    public func run() async throws {
        ready.store(true, ordering: .relaxed)
        let took = ContinuousClock.now - startedAt
        logger.info("broker serving", metadata: [
            "listen": core.config["listen"] ?? "", "port": "\(port)", "advertised": "\(core.advertisedAddress.host):\(core.advertisedAddress.port)",
            "node.id": "\(core.nodeId)", "cluster.id": core.clusterId, "http": probe.map { "\($0.port)" } ?? "off",
            "start.ms": String(format: "%.1f", took.secondsDouble * 1000)])
        let snapshotEvery = Duration.milliseconds(Int64(max(100, try core.config.int("producer.snapshot.interval.ms"))))
        let retentionEvery = Duration.milliseconds(Int64(max(100, try core.config.int("retention.check.interval.ms"))))
        let cleanerEnabled = (try? core.config.bool("log.cleaner.enable")) ?? true
        let storage = self.storage
        let core = self.core
        let groups = self.groups
        let logger = self.logger
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    try await storage.run()
                } catch is CancellationError {
                } catch {
                    logger.error("storage maintenance stopped", metadata: ["error": "\(error)"])
                }
            }
            if let coordinator = groups {
                group.addTask {
                    do {
                        try await coordinator.run()
                    } catch is CancellationError {
                    } catch {
                        logger.error("group coordinator stopped", metadata: ["error": "\(error)"])
                    }
                }
            }
            group.addTask { await core.member.run() }
            let txnEvery = Duration.milliseconds(Int64(max(100, try core.config.int("transaction.abort.timed.out.transaction.cleanup.interval.ms"))))
            group.addTask { await core.transactions.run(interval: txnEvery, rescanEvery: 3) }
            if let watcher = self.usersWatcher { group.addTask { await watcher.run() } }
            let limitedLogger = self.limitedLogger
            group.addTask {
                // Summaries of suppressed log lines, once their interval has ended.
                await Self.every(.seconds(5), logger, "log summary") { limitedLogger.flush() }
            }
            group.addTask { await Self.every(snapshotEvery, logger, "producer snapshot") { try await core.partitions.snapshotProducers() } }
            group.addTask {
                await Self.every(retentionEvery, logger, "retention") {
                    try await core.partitions.applyRetention(nowMillis: wallMillis(), brokerConfig: core.config)
                }
            }
            if cleanerEnabled {
                let keyCompactor = KeyCompactor(metrics: core.metrics)
                group.addTask {
                    // log.cleaner.backoff.ms is dynamic (AlterConfigs on the broker): read each round.
                    while !Task.isCancelled {
                        let every = max(10, Int64(core.brokerProperty("log.cleaner.backoff.ms") ?? "") ?? 15_000)
                        do { try await Task.sleep(for: .milliseconds(every)) } catch { return }
                        await core.partitions.cleanKeys(with: keyCompactor, nowMillis: wallMillis(), brokerConfig: core.config)
                    }
                }
            }
            if let externalServer { group.addTask { await externalServer.run() } }
            await server.run()
            externalServer?.shutdown()
            if let coordinator = groups { await coordinator.shutdown() }
            group.cancelAll()
            while let _ = try await group.next() {}
        }
        ready.store(false, ordering: .relaxed)
        limitedLogger.flush(includingOpen: true)
        logger.info("broker stopped serving; making data durable", metadata: [:])
        try await core.partitions.closeAll()
        await core.member.leave()
        try await storage.close()
        probe?.stop()
        logger.info("broker stopped", metadata: [:])
    }

    static func every(_ interval: Duration, _ logger: Logger, _ what: String, _ body: @Sendable () async throws -> Void) async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: interval)
            } catch {
                return  // cancelled: shutting down
            }
            do {
                try await body()
            } catch {
                logger.warning("\(what) failed; retrying at the next interval", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Starts a graceful shutdown: stop accepting, finish in-flight requests; `run()` then makes
    /// data durable and returns.
    public func shutdown() {
        ready.store(false, ordering: .relaxed)
        // Long polls answer now (with what they have): in-flight requests are waited for.
        core.parked.stopAll()
        server.shutdown()
        externalServer?.shutdown()
    }

    /// The external listener's advertised address: `external.advertise` (HOST[:PORT], with
    /// `{node}` → the node id and `{N+node}` → N plus it), else the listen host and bound port.
    static func externalEndpoint(_ template: String, listen: SocketAddress, boundPort: Int32, node: Int32) throws -> BrokerEndpoint {
        guard !template.isEmpty else {
            let host = listen.host == "0.0.0.0" ? ProcessInfo.processInfo.hostName : listen.host
            return BrokerEndpoint(host: host, port: boundPort)
        }
        let text = try expandNode(template, node: node)
        guard let colon = text.lastIndex(of: ":") else { return BrokerEndpoint(host: text, port: boundPort) }
        guard let port = Int32(text[text.index(after: colon)...]), (1...65535).contains(port), colon != text.startIndex else {
            throw BrokerError.invalidConfig(name: "external.advertise", value: template,
                                            reason: "expected HOST[:PORT] with a port in 1-65535, got \"\(text)\"")
        }
        return BrokerEndpoint(host: String(text[..<colon]), port: port)
    }

    /// Replaces `{node}` by `node` and `{N+node}` by N + node in `template`.
    static func expandNode(_ template: String, node: Int32) throws -> String {
        var out = ""
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{") {
            out += rest[..<open]
            guard let close = rest[open...].firstIndex(of: "}") else {
                throw BrokerError.invalidConfig(name: "external.advertise", value: template, reason: "unclosed {")
            }
            let inner = rest[rest.index(after: open)..<close]
            if inner == "node" {
                out += String(node)
            } else if inner.hasSuffix("+node"), let base = Int64(inner.dropLast(5)) {
                out += String(base + Int64(node))
            } else {
                throw BrokerError.invalidConfig(name: "external.advertise", value: template,
                                                reason: "unknown placeholder {\(inner)}; use {node} or {N+node}")
            }
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }

    /// The operator's preStop hook: stop reporting ready and make everything appended durable
    /// in objects and snapshots, while still serving.
    public func drain() async throws {
        try await drainLock.withLock {
            draining.store(true, ordering: .relaxed)
            ready.store(false, ordering: .relaxed)
            try await core.partitions.snapshotProducers()
        }
    }

    func route(method: String, path: String) -> ProbeServer.Response {
        switch path {
        case "/metrics":
            updateGauges()
            return .init(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: metrics.render())
        case "/healthz":
            if let problem = livenessProblem { return .init(status: 503, body: "unhealthy: \(problem)\n") }
            return .init(status: 200, body: "ok\n")
        case "/readyz":
            if !ready.load(ordering: .relaxed) { return .init(status: 503, body: "not ready: \(draining.load(ordering: .relaxed) ? "draining" : "starting or stopping")\n") }
            if let health = storage.storageHealth, !health.isHealthy { return .init(status: 503, body: "not ready: \(health.summary)\n") }
            return .init(status: 200, body: "ready\n")
        case "/drain":
            let done = DispatchSemaphore(value: 0)
            let outcome = Mutex<String?>(nil)
            Task {
                do { try await self.drain() } catch { outcome.withLock { $0 = "\(error)" } }
                done.signal()
            }
            done.wait()
            if let failure = outcome.withLock({ $0 }) { return .init(status: 503, body: "drain failed: \(failure)\n") }
            return .init(status: 200, body: "drained\n")
        default:
            return .init(status: 404, body: "not found: \(path)\n")
        }
    }

    /// Why `/healthz` should fail: storage down for longer than `storage.outage.max.ms` (a
    /// liveness probe then restarts the broker), or failed beyond what this process can recover.
    var livenessProblem: String? {
        guard let health = storage.storageHealth, let outage = health.outageDuration else { return nil }
        let limit = (try? core.config.int("storage.outage.max.ms")) ?? 0
        guard limit > 0, outage >= .milliseconds(Int64(limit)) else { return nil }
        return "\(health.summary) for \(outage.millisecondsClamped) ms (storage.outage.max.ms is \(limit))"
    }

    /// Ready for clients: started, not draining, and able to make appends durable.
    var isReady: Bool { ready.load(ordering: .relaxed) && (storage.storageHealth?.isHealthy ?? true) }

    func updateGauges() {
        ProcessStats.update(metrics)
        metrics.gauge("floe_broker_connections", help: "Open client connections").set(Double(server.openConnections))
        metrics.gauge("floe_broker_ready", help: "1 when the broker reports ready (started, not draining, storage healthy)").set(isReady ? 1 : 0)
        if let health = storage.storageHealth {
            metrics.gauge("floe_broker_storage_ready", help: "1 when appends can be made durable (0: the WAL is stalled, failed or being reopened)")
                .set(health.isHealthy ? 1 : 0)
            metrics.gauge("floe_broker_storage_outage_seconds", help: "How long the current storage outage has lasted (0 when healthy)")
                .set(health.outageDuration?.secondsDouble ?? 0)
            metrics.gauge("floe_broker_storage_outages", help: "Storage outages since start (stalled or failed appends)").set(Double(health.outages))
            metrics.gauge("floe_broker_storage_recoveries", help: "Times the storage was reopened after its WAL failed, since start")
                .set(Double(health.recoveries))
        }
        metrics.gauge("floe_broker_parked_fetches", help: "Long-poll Fetches waiting for data").set(Double(core.parked.admitted))
        for (name, c) in storage.cacheCounters {
            metrics.gauge("floe_broker_cache_hits", help: "Cache hits, by cache", labels: ["cache": name]).set(Double(c.hits))
            metrics.gauge("floe_broker_cache_misses", help: "Cache misses, by cache", labels: ["cache": name]).set(Double(c.misses))
            let total = c.hits + c.misses
            metrics.gauge("floe_broker_cache_hit_ratio", help: "Cache hit ratio since start, by cache", labels: ["cache": name])
                .set(total == 0 ? 0 : Double(c.hits) / Double(total))
        }
    }
}

/// The router, installed after the server has bound its port.
final class RouterBox: RequestHandler {
    private let router = Mutex<KafkaRouter?>(nil)

    func install(_ r: KafkaRouter) { router.withLock { $0 = r } }

    func handle(_ request: ServerRequest) async -> HandlerResult {
        guard let r = router.withLock({ $0 }) else { return .close }
        return await r.handle(request)
    }
}

extension BrokerCore: GroupTopicLookup {
    public func partitionCount(topic: String) async -> Int? { registry.topic(named: topic)?.partitions.count }
    public func topicShapes() async -> [String: TopicShape] {
        var out: [String: TopicShape] = [:]
        for (name, t) in registry.state.topics { out[name] = TopicShape(name: name, id: t.topicID, partitions: t.partitions.count) }
        return out
    }
}
