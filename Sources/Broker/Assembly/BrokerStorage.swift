import Foundation
import ObjectStore
import StreamStorage
import Support

/// Chooses and opens the partition storage for a broker from its settings.
///
/// Layout in the bucket: `streams/manifest/` (stream metadata, numbered manifests),
/// `streams/data/` (data objects), `wal/node-<id>/` (object-store WAL); the file WAL lives in
/// the directory `wal.dir` (default: `<bucket directory>/.floe-wal/node-<id>` for `file://`
/// storage, `./floe-wal/node-<id>` otherwise).
public enum BrokerStorage {
    /// `walKind`: `file`, `object`, `memory` (no durability; tests), or empty for the default
    /// (file for `file://` storage, object for `s3://`, memory for `memory://`).
    public static func open(store: any ObjectStore, url: StorageURL, walKind: String, config: BrokerConfig,
                            metrics: MetricsRegistry, logger: Logger, clock: any FloeClock = RealClock()) async throws -> any LogStorage {
        let kind = walKind.isEmpty ? Self.defaultWAL(url) : walKind
        let node = config["node.id"] ?? "0"
        let openWAL: @Sendable () async throws -> any WriteAheadLog
        switch kind {
        case "memory":
            logger.warning("memory WAL: acknowledged records are NOT durable", metadata: [:])
            return MemoryLogStorage()
        case "file":
            let dir = walDirectory(url: url, config: config)
            if let problem = StartupChecks.directoryProblem(dir, create: true) {
                throw BrokerError.configuration("cannot use the WAL directory \(dir) (wal.dir): \(problem)")
            }
            openWAL = {
                do {
                    return try await FileWAL.open(directory: URL(fileURLWithPath: dir), metrics: metrics)
                } catch StreamStorageError.walFenced(_, _, let detail) where detail.contains("LOCK") {
                    // FileWAL's lock is held: another process writes this WAL.
                    throw BrokerError.configuration(
                        "another floe-broker with node id \(node) holds the WAL directory \(dir) (its LOCK file is locked); "
                            + "stop it first, or give this broker another --node-id or --wal-dir")
                }
            }
        case "object":
            let walConfig = try objectWALConfig(config)
            openWAL = { try await ObjectStoreWAL.open(store: store, prefix: "wal/node-\(node)/", clock: clock, config: walConfig, logger: logger) }
        default:
            throw BrokerError.configuration("unknown --wal \(kind); expected file, object or memory")
        }
        let metadata = try metadataStore(store: store, config: config, clock: clock, logger: logger)
        let streamConfig = try streamConfig(config)
        let openStore: @Sendable () async throws -> StreamStore = {
            let wal = try await openWAL()
            return try await StreamStore.open(wal: wal, metadata: metadata, objects: store, clock: clock, config: streamConfig,
                                              logger: logger, metrics: metrics)
        }
        let streams = try await openStore()
        logger.info("stream storage open", metadata: ["wal": kind, "wal.name": streams.wal.name, "store": store.location])
        var supervision = StreamLogStorage.Supervision()
        supervision.stallAfter = .milliseconds(Int64(try config.int("storage.stall.ms")))
        return StreamLogStorage(store: streams, reopen: openStore, supervision: supervision, logger: logger)
    }

    /// The object WAL's settings: flush interval, retries of a failed object write, hedging.
    static func objectWALConfig(_ config: BrokerConfig) throws -> ObjectStoreWAL.Config {
        var walConfig = ObjectStoreWAL.Config()
        walConfig.flushInterval = .milliseconds(Int64(try config.int("wal.flush.interval.ms")))
        walConfig.retryFor = .milliseconds(Int64(try config.int("wal.retry.ms")))
        let hedge = try config.int("wal.hedge.ms")
        walConfig.hedgeAfter = hedge > 0 ? .milliseconds(Int64(hedge)) : nil
        return walConfig
    }

    /// The file WAL's directory: `wal.dir`, else `<bucket dir>/.floe-wal/node-<id>` for
    /// `file://` storage and `./floe-wal/node-<id>` otherwise.
    public static func walDirectory(url: StorageURL, config: BrokerConfig) -> String {
        let dir = config["wal.dir"] ?? ""
        if !dir.isEmpty { return dir }
        let node = config["node.id"] ?? "0"
        if case let .file(path) = url.kind { return path + "/.floe-wal/node-\(node)" }
        return "./floe-wal/node-\(node)"
    }

    /// The WAL kind `open` uses for these settings.
    public static func resolvedWALKind(url: StorageURL, walKind: String) -> String { walKind.isEmpty ? defaultWAL(url) : walKind }

    /// Recovers broker `node`'s object-store WAL into objects: takes it over (fencing that
    /// broker's further WAL writes), replays it into its streams (raising their epochs, which
    /// fences that broker's uploads) and uploads. The controller does this before moving the
    /// partitions of a broker that died.
    public static func walRecoverer(store: any ObjectStore, config: BrokerConfig, logger: Logger,
                                    clock: any FloeClock = RealClock()) -> @Sendable (Int32) async throws -> Void {
        { node in
            let wal = try await ObjectStoreWAL.open(store: store, prefix: "wal/node-\(node)/", clock: clock, config: try objectWALConfig(config), logger: logger)
            var streamConfig = try streamConfig(config)
            streamConfig.logCacheBytes = 16 << 20
            streamConfig.blockCacheBytes = 0
            let streams = try await StreamStore.open(wal: wal, metadata: try metadataStore(store: store, config: config, clock: clock, logger: logger),
                                                     objects: store, clock: clock, config: streamConfig, logger: logger, metrics: nil)
            try await streams.close()
        }
    }

    static func metadataStore(store: any ObjectStore, config: BrokerConfig, clock: any FloeClock, logger: Logger) throws -> BucketMetadataStore {
        let graceMillis = try config.int("object.grace.ms")
        guard graceMillis >= 0 else {
            throw BrokerError.invalidConfig(name: "object.grace.ms", value: String(graceMillis), reason: "must be 0 or more")
        }
        return BucketMetadataStore(store: store, prefix: "streams/manifest/", clock: clock, graceMillis: Int64(graceMillis), logger: logger)
    }

    static func streamConfig(_ config: BrokerConfig) throws -> StreamStoreConfig {
        var streamConfig = StreamStoreConfig()
        streamConfig.dataPrefix = "streams/data/"
        streamConfig.logCacheBytes = try config.int("log.cache.bytes")
        streamConfig.blockCacheBytes = try config.int("block.cache.bytes")
        streamConfig.maxPinnedBytes = try config.int("max.pinned.bytes")
        streamConfig.uploadTriggerBytes = try config.int("upload.trigger.bytes")
        streamConfig.compaction = try compactionPolicy(config)
        return streamConfig
    }

    /// `compaction.max.job.bytes` also bounds compaction's memory: a job holds its inputs and
    /// one output at a time.
    static func compactionPolicy(_ config: BrokerConfig) throws -> CompactionPolicy {
        let job = try config.int("compaction.max.job.bytes"), split = try config.int("compaction.split.stream.bytes")
        let level = try config.int("compaction.max.level")
        guard job > 0 else { throw BrokerError.invalidConfig(name: "compaction.max.job.bytes", value: String(job), reason: "must be positive") }
        guard split > 0 else {
            throw BrokerError.invalidConfig(name: "compaction.split.stream.bytes", value: String(split), reason: "must be positive")
        }
        guard (0...10).contains(level) else {
            throw BrokerError.invalidConfig(name: "compaction.max.level", value: String(level), reason: "must be 0 (compaction off) to 10")
        }
        return CompactionPolicy(splitStreamBytes: UInt64(split), maxJobBytes: UInt64(job), maxLevel: UInt8(level))
    }

    static func defaultWAL(_ url: StorageURL) -> String {
        switch url.kind {
        case .file: return "file"
        case .memory: return "memory"
        case .s3: return "object"
        }
    }
}
