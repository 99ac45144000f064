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
        let wal: any WriteAheadLog
        switch kind {
        case "memory":
            logger.warning("memory WAL: acknowledged records are NOT durable", metadata: [:])
            return MemoryLogStorage()
        case "file":
            var dir = config["wal.dir"] ?? ""
            if dir.isEmpty {
                if case let .file(path) = url.kind { dir = path + "/.floe-wal/node-\(node)" } else { dir = "./floe-wal/node-\(node)" }
            }
            do {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            } catch {
                throw BrokerError.configuration("cannot create the WAL directory \(dir): \(error.localizedDescription)")
            }
            wal = try await FileWAL.open(directory: URL(fileURLWithPath: dir))
        case "object":
            var walConfig = ObjectStoreWAL.Config()
            walConfig.flushInterval = .milliseconds(Int64(try config.int("wal.flush.interval.ms")))
            wal = try await ObjectStoreWAL.open(store: store, prefix: "wal/node-\(node)/", clock: clock, config: walConfig, logger: logger)
        default:
            throw BrokerError.configuration("unknown --wal \(kind); expected file, object or memory")
        }
        let metadata = BucketMetadataStore(store: store, prefix: "streams/manifest/", clock: clock, logger: logger)
        var streamConfig = StreamStoreConfig()
        streamConfig.dataPrefix = "streams/data/"
        streamConfig.logCacheBytes = try config.int("log.cache.bytes")
        streamConfig.blockCacheBytes = try config.int("block.cache.bytes")
        streamConfig.maxPinnedBytes = try config.int("max.pinned.bytes")
        streamConfig.uploadTriggerBytes = try config.int("upload.trigger.bytes")
        let streams = try await StreamStore.open(wal: wal, metadata: metadata, objects: store, clock: clock, config: streamConfig,
                                                 logger: logger, metrics: metrics)
        logger.info("stream storage open", metadata: ["wal": kind, "wal.name": wal.name, "store": store.location])
        return StreamLogStorage(store: streams)
    }

    static func defaultWAL(_ url: StorageURL) -> String {
        switch url.kind {
        case .file: return "file"
        case .memory: return "memory"
        case .s3: return "object"
        }
    }
}
