import Foundation
import ObjectStore
import StreamStorage
import Support
import Synchronization

/// A partition log on a stream of the stream storage engine.
///
/// Offsets, durability and reads are the stream's; the broker's ordering (sequence checks and
/// offset assignment under the partition lock) uses the stream's synchronous
/// `append(reserved:recordCount:)`, after WAL room was reserved with `reserve(batchSizes:)`.
final class StreamPartitionLog: PartitionLog {
    let stream: StreamStorage.Stream

    init(stream: StreamStorage.Stream) { self.stream = stream }

    var startOffset: Int64 { stream.startOffset }
    var endOffset: Int64 { stream.endOffset }
    var nextOffset: Int64 { stream.nextOffset }

    func reserve(batchSizes: [Int]) async throws {
        var done: [Int] = []
        do {
            for size in batchSizes {
                try await stream.reserve(batchBytes: size)
                done.append(size)
            }
        } catch {
            for size in done { stream.unreserve(batchBytes: size) }
            throw error
        }
    }

    func unreserve(batchSizes: [Int]) {
        for size in batchSizes { stream.unreserve(batchBytes: size) }
    }

    func append(_ batch: ArraySlice<UInt8>, recordCount: Int32) throws -> PendingAppend {
        // The one copy on the produce path: from the request frame into the WAL record.
        let (base, durable) = try stream.append(reserved: Array(batch), recordCount: recordCount)
        return PendingAppend(baseOffset: base, durable: Durability(wait: { try await durable.wait() }, notify: { durable.notify($0) }))
    }

    func read(from offset: Int64, maxBytes: Int) async throws -> [LogBatch] {
        do {
            return try await stream.read(from: offset, maxBytes: maxBytes).map {
                LogBatch(baseOffset: $0.baseOffset, recordCount: $0.recordCount, appendTimeMillis: $0.appendTimeMillis, bytes: $0.bytes)
            }
        } catch let error as StreamStorageError {
            if case let .offsetOutOfRange(_, offset, start, end) = error {
                throw BrokerError.offsetOutOfRange(offset: offset, start: start, end: end)
            }
            throw error
        }
    }

    func trim(to offset: Int64) async throws { try await stream.trim(to: offset) }

    func applyRetention(maxAgeMillis: Int64?, maxBytes: Int64?, nowMillis: Int64) async throws {
        try await stream.applyRetention(RetentionPolicy(maxBytes: maxBytes.map { UInt64($0) }, maxAgeMillis: maxAgeMillis))
    }

    func close() async throws { try await stream.close() }
}

/// Partition logs on a `StreamStore`: each partition's stream is opened at the next epoch,
/// fencing any earlier holder.
///
/// It also supervises the store (in `run()`): a store whose WAL failed (an object store outage
/// longer than the WAL's retries, a full disk) is abandoned and a new one is opened the way a
/// restart would — taking the WAL over again and recovering what it holds — retried with backoff
/// until it succeeds; then `onReopen` hooks run (the partition set drops its partitions, which
/// reopen on the new store at the next request, their producer state rebuilt from durable data).
/// Until then the failed store keeps serving reads of what was acknowledged and refuses
/// appends at once. A WAL fenced by another writer (another broker with this node id) is not
/// taken back: `onUnrecoverable` is called instead.
public final class StreamLogStorage: LogStorage {
    public struct Supervision: Sendable {
        /// How often the store is checked.
        public var interval: Duration = .milliseconds(200)
        /// An append waiting longer than this to become durable makes the storage "stalled".
        public var stallAfter: Duration = .seconds(2)
        /// Pauses between reopening attempts (doubling, jittered by nothing: one broker).
        public var reopenBackoff: Duration = .milliseconds(250)
        public var maxReopenBackoff: Duration = .seconds(2)
        public init() {}
    }

    private let current: Mutex<StreamStore>
    private let reopen: (@Sendable () async throws -> StreamStore)?
    private let supervision: Supervision
    private let logger: Logger
    private let hooks = Mutex<(reopened: [@Sendable () async -> Void], bucketWide: (@Sendable () -> Bool)?)>(([], nil))
    private let unrecoverable = Mutex<(@Sendable (String) -> Void)?>(nil)
    public let health = StorageHealth()

    /// `reopen` opens a fresh store on the same WAL and bucket (nil: a failed store stays failed).
    public init(store: StreamStore, reopen: (@Sendable () async throws -> StreamStore)? = nil,
                supervision: Supervision = Supervision(), logger: Logger = .discarding) {
        self.current = Mutex(store)
        self.reopen = reopen
        self.supervision = supervision
        self.logger = logger
    }

    /// The store in use now (it changes when the storage is reopened).
    public var store: StreamStore { current.withLock { $0 } }

    /// See `StreamStore.setBucketWideMaintenance`; applied to every reopened store too.
    public func setBucketWideMaintenance(_ decide: @escaping @Sendable () -> Bool) {
        hooks.withLock { $0.bucketWide = decide }
        store.setBucketWideMaintenance(decide)
    }

    /// Runs after every successful reopening, in registration order.
    public func onReopen(_ body: @escaping @Sendable () async -> Void) { hooks.withLock { $0.reopened.append(body) } }

    /// Called (once) when the storage cannot be recovered in this process.
    public func onUnrecoverable(_ body: @escaping @Sendable (String) -> Void) { unrecoverable.withLock { $0 = body } }

    public func openLog(stream id: UInt64) async throws -> any PartitionLog {
        let store = self.store
        var epoch = (try await store.currentEpoch(id) ?? 0) + 1
        // Another broker may have raised the epoch since this one last read the metadata.
        for _ in 0..<8 {
            do {
                return StreamPartitionLog(stream: try await store.open(id, epoch: epoch))
            } catch let StreamStorageError.fenced(_, _, current) {
                epoch = current + 1
            }
        }
        throw StreamStorageError.metadataConflict(detail: "stream \(id): its epoch kept moving while opening")
    }

    /// The current store's maintenance, and the supervision described on the type, until cancelled.
    public func run() async throws {
        var maintenance = Self.maintain(store)
        defer { maintenance.cancel() }
        while !Task.isCancelled {
            do { try await Task.sleep(for: supervision.interval) } catch { break }
            let store = self.store
            if let failure = store.failure {
                maintenance.cancel()
                guard let fresh = await recover(from: store, failure: failure) else { break }
                maintenance = Self.maintain(fresh)
            } else if let since = store.oldestPendingAppend, ContinuousClock.now - since >= supervision.stallAfter {
                let waited = (ContinuousClock.now - since).millisecondsClamped
                if case .healthy = health.set(.stalled(detail: "an append has waited \(waited) ms to become durable")) {
                    logger.warning("storage stalled: appends are not becoming durable", metadata: ["waited.ms": "\(waited)", "wal": store.wal.name])
                }
            } else if !health.isHealthy {
                let outage = health.outageDuration?.millisecondsClamped ?? 0
                health.set(.healthy)
                logger.notice("storage healthy again", metadata: ["outage.ms": "\(outage)"])
            }
        }
    }

    private static func maintain(_ store: StreamStore) -> Task<Void, Never> {
        Task { try? await store.run() }
    }

    /// Abandons the failed store and opens a new one, retrying until it works; nil if this
    /// process cannot recover (no way to reopen, fenced by another writer) or was cancelled.
    private func recover(from failed: StreamStore, failure: any Error) async -> StreamStore? {
        let detail = "\(failure)"
        health.set(.failed(detail: detail))
        logger.error("storage failed: appends fail until it is reopened", metadata: ["error": detail, "wal": failed.wal.name])
        await failed.abandon()
        if case StreamStorageError.walFenced = failure {
            giveUp("the WAL \(failed.wal.name) was taken over by another writer (another broker with this node id, or the controller recovering it after declaring this broker dead): \(detail)")
            return nil
        }
        guard let reopen else {
            giveUp("this storage cannot be reopened: \(detail)")
            return nil
        }
        var pause = supervision.reopenBackoff
        var attempt = 0
        while !Task.isCancelled {
            attempt += 1
            health.set(.recovering(detail: "reopening (attempt \(attempt)) after: \(detail)"))
            do {
                let fresh = try await reopen()
                let (reopened, bucketWide) = hooks.withLock { ($0.reopened, $0.bucketWide) }
                if let bucketWide { fresh.setBucketWideMaintenance(bucketWide) }
                current.withLock { $0 = fresh }
                for hook in reopened { await hook() }
                health.recovered()
                logger.notice("storage reopened", metadata: ["attempts": "\(attempt)", "outage.ms": "\(health.outageDuration?.millisecondsClamped ?? 0)"])
                return fresh
            } catch {
                if case StreamStorageError.corrupt = error {
                    giveUp("the WAL cannot be recovered: \(error)")
                    return nil
                }
                health.set(.recovering(detail: "reopening failed (attempt \(attempt)): \(error)"))
                if attempt == 1 || attempt % 10 == 0 {
                    logger.warning("reopening the storage failed; retrying", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                }
            }
            do { try await Task.sleep(for: pause) } catch { return nil }
            pause = min(pause * 2, supervision.maxReopenBackoff)
        }
        return nil
    }

    private func giveUp(_ reason: String) {
        logger.error("storage cannot recover in this process", metadata: ["reason": reason])
        let body = unrecoverable.withLock { b -> (@Sendable (String) -> Void)? in defer { b = nil }; return b }
        body?(reason)
    }

    public func close() async throws { try await store.close() }
    public var cacheCounters: [String: (hits: Int, misses: Int)] { ["block": store.blockCacheCounters] }
    public var storageHealth: StorageHealth? { health }
}
