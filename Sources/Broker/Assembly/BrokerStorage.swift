import ObjectStore
import Support

/// Chooses the partition storage for a broker from its settings.
public enum BrokerStorage {
    /// `walKind`: `file` (local-file WAL under the bucket directory), `object` (object-store WAL),
    /// `memory` (no durability; tests), or empty for the default (file for `file://` storage,
    /// object otherwise).
    public static func open(store: any ObjectStore, url: StorageURL, walKind: String, config: BrokerConfig,
                            metrics: MetricsRegistry, logger: Logger) async throws -> any LogStorage {
        let kind = walKind.isEmpty ? Self.defaultWAL(url) : walKind
        switch kind {
        case "memory":
            logger.warning("memory WAL: acknowledged records are NOT durable", metadata: [:])
            return MemoryLogStorage()
        case "file", "object":
            throw BrokerError.configuration("the \(kind) WAL needs the stream storage engine, which this build does not include yet; use --wal memory")
        default:
            throw BrokerError.configuration("unknown --wal \(kind); expected file, object or memory")
        }
    }

    static func defaultWAL(_ url: StorageURL) -> String {
        switch url.kind {
        case .file: return "file"
        case .memory: return "memory"
        case .s3: return "object"
        }
    }
}
