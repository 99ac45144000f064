import Foundation
import StreamStorage
import Support
import Synchronization

/// Key compaction of partitions whose topic has `cleanup.policy` with `compact`: decides when a
/// partition is cleaned and how far, runs `KeyCleaner` over the cleanable prefix through
/// `Stream.rewrite`, and keeps the metrics. Run by the partition's owner only (`PartitionSet`
/// cleans its open partitions; the rewrite is fenced by the stream's epoch, so an owner that
/// lost the partition mid-clean commits nothing).
///
/// The cleanable prefix ends at the end of the longest run of committed ranges from the front
/// whose newest append is at least `min.compaction.lag.ms` old: data still in the WAL and the
/// log cache (not yet in objects) is never cleaned. A partition is cleaned when
/// - dirty bytes (committed after the cleaned prefix, within the cleanable prefix) are at least
///   `min.cleanable.dirty.ratio` of clean + dirty bytes, or
/// - a dirty range's newest append is older than `max.compaction.lag.ms`, or
/// - a tombstone kept by an earlier cleaning reached its delete horizon, or
/// - the partition was not yet looked at by this broker and has a cleaned prefix (to learn its
///   tombstones' horizons; this writes nothing when nothing is due).
///
/// Convergence: a cleaning with no dirty data and no tombstone due gets the prefix back
/// unchanged, and `Stream.rewrite` then writes nothing.
public final class KeyCompactor: Sendable {
    public struct TopicSettings: Sendable, Equatable {
        public var deleteRetentionMillis: Int64 = 86_400_000
        public var minCompactionLagMillis: Int64 = 0
        public var maxCompactionLagMillis: Int64 = .max
        public var minCleanableDirtyRatio: Double = 0.5
        public init() {}

        /// From a topic's effective configs (Kafka's names and defaults).
        public init(configs: [String: String]) {
            deleteRetentionMillis = Int64(configs["delete.retention.ms"] ?? "") ?? 86_400_000
            minCompactionLagMillis = Int64(configs["min.compaction.lag.ms"] ?? "") ?? 0
            maxCompactionLagMillis = Int64(configs["max.compaction.lag.ms"] ?? "") ?? .max
            minCleanableDirtyRatio = Double(configs["min.cleanable.dirty.ratio"] ?? "") ?? 0.5
        }
    }

    struct PartitionState {
        var epoch: UInt64
        var nextDeleteHorizon: Int64?
        var lastCleanedOffset: Int64?
    }

    /// What one call to `clean` decided and did.
    public struct Outcome: Sendable, Equatable {
        public var cleanedThrough: Int64?
        public var readBytes = 0
        public var writtenBytes = 0
        public var recordsRemoved = 0
    }

    private let states = Mutex<[StreamID: PartitionState]>([:])
    private let metrics: MetricsRegistry?
    private let readBytes: Counter?
    private let writtenBytes: Counter?
    private let recordsRemoved: Counter?
    private let cleanings: Counter?

    public init(metrics: MetricsRegistry?) {
        self.metrics = metrics
        readBytes = metrics?.counter("floe_cleaner_read_bytes_total", help: "Bytes of batches read by key compaction.")
        writtenBytes = metrics?.counter("floe_cleaner_written_bytes_total", help: "Bytes of objects written by key compaction.")
        recordsRemoved = metrics?.counter("floe_cleaner_records_removed_total",
                                          help: "Records removed by key compaction (superseded, expired tombstones, keyless).")
        cleanings = metrics?.counter("floe_cleaner_cleanings_total", help: "Key compaction rewrites committed.")
    }

    /// The offset below which `state`'s committed data may be cleaned now (a range end), or nil.
    static func cleanableEnd(_ state: KeyCleaningState, settings: TopicSettings, nowMillis: Int64) -> Int64? {
        var end: Int64? = nil
        for r in state.ranges {
            guard r.maxAppendTimeMillis <= nowMillis - settings.minCompactionLagMillis else { break }
            end = r.endOffset
        }
        return end
    }

    /// Where to clean through now (nil: nothing to do), by the rules on the type.
    static func plan(_ state: KeyCleaningState, settings: TopicSettings, nowMillis: Int64,
                     horizonDue: Bool, firstLook: Bool) -> Int64? {
        guard let cleanable = cleanableEnd(state, settings: settings, nowMillis: nowMillis) else { return nil }
        let dirty = state.ranges.filter { $0.endOffset > state.cleanedEnd && $0.endOffset <= cleanable }
        let dirtyBytes = dirty.reduce(UInt64(0)) { $0 + $1.bytes }
        if !dirty.isEmpty {
            let total = Double(state.cleanBytes + dirtyBytes)
            let ratio = total > 0 ? Double(dirtyBytes) / total : 1
            let lagPassed = settings.maxCompactionLagMillis != .max
                && dirty.contains { $0.maxAppendTimeMillis <= nowMillis - settings.maxCompactionLagMillis }
            if ratio >= settings.minCleanableDirtyRatio || lagPassed { return cleanable }
        }
        let hasCleaned = state.ranges.first.map { $0.endOffset <= state.cleanedEnd } ?? false
        if hasCleaned && (horizonDue || firstLook) { return state.cleanedEnd }
        return nil
    }

    /// Cleans `stream` if its settings say so; see the type.
    @discardableResult
    public func clean(_ stream: StreamStorage.Stream, topic: String, partition: Int32, settings: TopicSettings,
                      nowMillis: Int64) async throws -> Outcome {
        let state = try await stream.cleaningState()
        let known = states.withLock { $0[stream.id].flatMap { $0.epoch == stream.epoch ? $0 : nil } }
        let horizonDue = known?.nextDeleteHorizon.map { $0 <= nowMillis } ?? false
        guard let end = Self.plan(state, settings: settings, nowMillis: nowMillis, horizonDue: horizonDue, firstLook: known == nil) else {
            if known == nil { states.withLock { $0[stream.id] = PartitionState(epoch: stream.epoch) } }
            return Outcome()
        }
        let result = Mutex<KeyCleaner.Result?>(nil)
        let retention = settings.deleteRetentionMillis
        let rewrite = try await stream.rewrite(through: end) { batches in
            let r = try KeyCleaner.clean(batches, nowMillis: nowMillis, deleteRetentionMillis: retention)
            result.withLock { $0 = r }
            return r.batches
        }
        let cleaned = result.withLock { $0 }
        var outcome = Outcome(cleanedThrough: end)
        outcome.readBytes = rewrite?.readBytes ?? 0
        outcome.writtenBytes = rewrite?.writtenBytes ?? 0
        outcome.recordsRemoved = rewrite?.committed == true ? cleaned?.recordsRemoved ?? 0 : 0
        readBytes?.increment(by: outcome.readBytes)
        writtenBytes?.increment(by: outcome.writtenBytes)
        recordsRemoved?.increment(by: outcome.recordsRemoved)
        if rewrite?.committed == true { cleanings?.increment() }
        metrics?.gauge("floe_cleaner_last_cleaned_offset", help: "End of the cleaned prefix of a compacted partition.",
                       labels: ["topic": topic, "partition": String(partition)]).set(Double(end))
        states.withLock {
            $0[stream.id] = PartitionState(epoch: stream.epoch, nextDeleteHorizon: cleaned?.nextDeleteHorizon, lastCleanedOffset: end)
        }
        return outcome
    }

    /// Forgets a partition (closed or moved away).
    public func forget(_ stream: StreamID) { states.withLock { _ = $0.removeValue(forKey: stream) } }
}

extension PartitionSet {
    /// Key compaction of each open (owned) partition whose topic's `cleanup.policy` has
    /// `compact` (see `KeyCompactor`). A partition that fails is logged and retried next round.
    public func cleanKeys(with keyCompactor: KeyCompactor, nowMillis: Int64, brokerConfig: BrokerConfig) async {
        for p in await openPartitions {
            guard let topic = registry.topic(named: p.topic), let log = p.log as? StreamPartitionLog,
                  Int(p.index) < topic.partitions.count else { continue }
            // Only the owner cleans (a partition being handed over is left to the next owner;
            // a stale owner's commit would be refused by the stream's epoch anyway).
            let record = topic.partitions[Int(p.index)]
            guard record.owner == node, !isLeaving(record) else { continue }
            let configs = brokerConfig.effectiveTopicConfigs(topic.configs, dynamic: registry.dynamicBrokerConfigs)
            guard Self.isCompacted(configs) else { continue }
            do {
                let o = try await keyCompactor.clean(log.stream, topic: p.topic, partition: p.index,
                                                     settings: KeyCompactor.TopicSettings(configs: configs), nowMillis: nowMillis)
                if o.writtenBytes > 0 {
                    logger.info("key compaction cleaned a partition", metadata: [
                        "topic": p.topic, "partition": "\(p.index)", "through": "\(o.cleanedThrough ?? -1)",
                        "read.bytes": "\(o.readBytes)", "written.bytes": "\(o.writtenBytes)", "records.removed": "\(o.recordsRemoved)"])
                }
            } catch {
                logger.warning("key compaction failed; retrying next round",
                               metadata: ["topic": p.topic, "partition": "\(p.index)", "error": "\(error)"])
            }
        }
    }

    /// Whether effective topic configs ask for key compaction (`compact` or `compact,delete`).
    static func isCompacted(_ configs: [String: String]) -> Bool {
        (configs["cleanup.policy"] ?? "delete").split(separator: ",").contains { $0.filter { $0 != " " } == "compact" }
    }
}
