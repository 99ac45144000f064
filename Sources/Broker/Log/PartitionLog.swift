import Synchronization

/// One stored record batch as a partition log returns it.
///
/// Invariant: `bytes` is one RecordBatch v2 exactly as the producer sent it, except that the
/// first 8 bytes (`baseOffset`) may still hold the producer's value (0); `baseOffset` here is the
/// authoritative offset, and the fetch path stamps it into the outgoing copy.
public struct LogBatch: Sendable, Equatable {
    public var baseOffset: Int64
    public var recordCount: Int32
    /// Wall-clock milliseconds at append (time retention, ListOffsets by timestamp fallback).
    public var appendTimeMillis: Int64
    public var bytes: ArraySlice<UInt8>

    public init(baseOffset: Int64, recordCount: Int32, appendTimeMillis: Int64, bytes: ArraySlice<UInt8>) {
        self.baseOffset = baseOffset
        self.recordCount = recordCount
        self.appendTimeMillis = appendTimeMillis
        self.bytes = bytes
    }

    /// The offset after this batch's last record.
    public var endOffset: Int64 { baseOffset + Int64(recordCount) }
}

/// How an append becomes durable, told either way: `wait()` returns once the batch (and every
/// batch appended before it to the same log) is durable and throws if it never can be;
/// `notify(_:)` calls back with the same outcome, on whichever thread learns it. Use one of the
/// two, once.
public struct Durability: Sendable {
    public typealias Callback = @Sendable (Result<Void, any Error>) -> Void
    private let waitBody: @Sendable () async throws -> Void
    private let notifyBody: @Sendable (@escaping Callback) -> Void

    public init(wait: @escaping @Sendable () async throws -> Void, notify: @escaping @Sendable (@escaping Callback) -> Void) {
        waitBody = wait
        notifyBody = notify
    }

    /// From a wait alone: `notify` runs the wait in a task of its own.
    public init(wait: @escaping @Sendable () async throws -> Void) {
        self.init(wait: wait, notify: { done in
            Task {
                do {
                    try await wait()
                    done(.success(()))
                } catch {
                    done(.failure(error))
                }
            }
        })
    }

    public func wait() async throws { try await waitBody() }
    public func notify(_ done: @escaping Callback) { notifyBody(done) }
}

/// An append whose offset is known and whose durability may still be pending.
public struct PendingAppend: Sendable {
    public let baseOffset: Int64
    public let durable: Durability

    public init(baseOffset: Int64, durable: Durability) {
        self.baseOffset = baseOffset
        self.durable = durable
    }

    public init(baseOffset: Int64, durable: @escaping @Sendable () async throws -> Void) {
        self.init(baseOffset: baseOffset, durable: Durability(wait: durable))
    }
}

/// What the broker needs from a partition's storage (a stream in the stream storage engine, or
/// memory in unit tests).
///
/// Invariants:
/// - `append` is synchronous and assigns offsets in call order: contiguous, starting at
///   `nextOffset`. Durability completes in the same order.
/// - `endOffset` (the high watermark) is the end of the durable batches: reads never return a
///   batch at or beyond it. `startOffset <= endOffset <= nextOffset`.
/// - `read(from:)` returns batches starting with the one containing `from`, at least one batch
///   when `from < endOffset`, and stops once about `maxBytes` are collected. It throws
///   `BrokerError.offsetOutOfRange` outside `startOffset...endOffset`.
///
/// Example: empty log; `append(b, recordCount: 3)` gives base offset 0; once durable,
/// `endOffset == 3`; `append(c, recordCount: 2)` gives 3; `read(from: 4, maxBytes: 1)` → [c].
public protocol PartitionLog: AnyObject, Sendable {
    var startOffset: Int64 { get }
    var endOffset: Int64 { get }
    var nextOffset: Int64 { get }
    /// Waits for storage room for batches of these sizes (backpressure); each reserved batch is
    /// then appended or returned with `unreserve`. Called before the ordered `append`.
    func reserve(batchSizes: [Int]) async throws
    func unreserve(batchSizes: [Int])
    /// Assigns the batch's offset now (call order) and enqueues it. On a throw, the batch's
    /// reservation has been returned.
    func append(_ batch: ArraySlice<UInt8>, recordCount: Int32) throws -> PendingAppend
    func read(from offset: Int64, maxBytes: Int) async throws -> [LogBatch]
    /// Moves the start offset forward (clamped to `endOffset`); never backwards.
    func trim(to offset: Int64) async throws
    /// Applies retention (whole batches or objects from the front, never live data in place).
    func applyRetention(maxAgeMillis: Int64?, maxBytes: Int64?, nowMillis: Int64) async throws
    /// Makes everything appended durable; later appends fail.
    func close() async throws
}

/// Opens partition logs by stream id; owns the storage engine's lifecycle.
public protocol LogStorage: Sendable {
    /// Opens (creating empty) the stream `stream` for this broker, fencing any earlier holder.
    func openLog(stream: UInt64) async throws -> any PartitionLog
    /// Background maintenance (upload, compaction, GC) until cancelled.
    func run() async throws
    /// Makes everything durable and stops.
    func close() async throws
    /// Cache hit/miss counters for metrics (name → (hits, misses)).
    var cacheCounters: [String: (hits: Int, misses: Int)] { get }
    /// Whether appends can be made durable now (nil: storage that cannot fail, e.g. memory).
    var storageHealth: StorageHealth? { get }
}

extension LogStorage {
    public var storageHealth: StorageHealth? { nil }
}

/// A partition log in memory, for unit tests and the `memory` storage kind.
///
/// Durability can be held back (`holdDurability`) so tests can observe pending appends; by
/// default every append is durable at once.
public final class MemoryPartitionLog: PartitionLog {
    struct State {
        var batches: [LogBatch] = []
        var start: Int64 = 0
        var next: Int64 = 0
        var durableEnd: Int64 = 0
        var hold = false
        var waiters: [(Int64, CheckedContinuation<Void, any Error>)] = []
        var closed = false
    }
    private let state = Mutex(State())
    private let now: @Sendable () -> Int64

    public init(now: @escaping @Sendable () -> Int64 = { wallMillis() }) { self.now = now }

    public func reserve(batchSizes: [Int]) async throws {}
    public func unreserve(batchSizes: [Int]) {}

    public var startOffset: Int64 { state.withLock { $0.start } }
    public var endOffset: Int64 { state.withLock { $0.durableEnd } }
    public var nextOffset: Int64 { state.withLock { $0.next } }

    public func append(_ batch: ArraySlice<UInt8>, recordCount: Int32) throws -> PendingAppend {
        let time = now()
        let base: Int64 = try state.withLock { s in
            if s.closed { throw BrokerError.storage("memory log is closed") }
            let base = s.next
            s.batches.append(LogBatch(baseOffset: base, recordCount: recordCount, appendTimeMillis: time, bytes: ArraySlice(Array(batch))))
            s.next += Int64(recordCount)
            if !s.hold { s.durableEnd = s.next }
            return base
        }
        let end = base + Int64(recordCount)
        return PendingAppend(baseOffset: base) { [self] in
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                let ready = state.withLock { s -> Bool in
                    if s.durableEnd >= end { return true }
                    s.waiters.append((end, c))
                    return false
                }
                if ready { c.resume() }
            }
        }
    }

    /// Holds durability back: appends get offsets but `endOffset` does not move.
    public func holdDurability() { state.withLock { $0.hold = true } }

    /// Makes every append durable and releases the hold.
    public func releaseDurability() {
        let ready = state.withLock { s -> [CheckedContinuation<Void, any Error>] in
            s.hold = false
            s.durableEnd = s.next
            let r = s.waiters.map(\.1)
            s.waiters = []
            return r
        }
        for c in ready { c.resume() }
    }

    public func read(from offset: Int64, maxBytes: Int) async throws -> [LogBatch] {
        try state.withLock { s in
            guard offset >= s.start && offset <= s.durableEnd else {
                throw BrokerError.offsetOutOfRange(offset: offset, start: s.start, end: s.durableEnd)
            }
            var out: [LogBatch] = []
            var size = 0
            // Binary search for the batch containing `offset`.
            var lo = 0, hi = s.batches.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if s.batches[mid].endOffset <= offset { lo = mid + 1 } else { hi = mid }
            }
            var i = lo
            while i < s.batches.count, s.batches[i].baseOffset < s.durableEnd {
                let b = s.batches[i]
                if !out.isEmpty && size + b.bytes.count > maxBytes { break }
                out.append(b)
                size += b.bytes.count
                i += 1
            }
            return out
        }
    }

    public func trim(to offset: Int64) async throws {
        state.withLock { s in
            let target = min(offset, s.durableEnd)
            guard target > s.start else { return }
            s.start = target
            s.batches.removeAll { $0.endOffset <= target }
        }
    }

    public func applyRetention(maxAgeMillis: Int64?, maxBytes: Int64?, nowMillis: Int64) async throws {
        state.withLock { s in
            var total = s.batches.reduce(Int64(0)) { $0 + Int64($1.bytes.count) }
            var drop = 0
            // Keep at least the newest batch's data alive only by the rules; like Kafka, the
            // active segment (here: the last batch) is never deleted.
            while drop < s.batches.count - 1 {
                let b = s.batches[drop]
                let tooOld = maxAgeMillis.map { b.appendTimeMillis < nowMillis - $0 } ?? false
                let tooBig = maxBytes.map { total > $0 } ?? false
                guard tooOld || tooBig else { break }
                total -= Int64(b.bytes.count)
                drop += 1
            }
            if drop > 0 {
                s.start = s.batches[drop].baseOffset
                s.batches.removeFirst(drop)
            }
        }
    }

    public func close() async throws {
        state.withLock { $0.closed = true }
    }

    /// Accepts appends again after `close()` (a broker restart over the same memory).
    public func reopen() { state.withLock { $0.closed = false } }
}

/// Memory logs by stream id (unit tests; `memory://` storage).
public final class MemoryLogStorage: LogStorage {
    private let logs = Mutex<[UInt64: MemoryPartitionLog]>([:])
    public init() {}
    public func openLog(stream: UInt64) async throws -> any PartitionLog {
        logs.withLock { l in
            if let log = l[stream] {
                log.reopen()
                return log
            }
            let log = MemoryPartitionLog()
            l[stream] = log
            return log
        }
    }
    public func log(_ stream: UInt64) -> MemoryPartitionLog? { logs.withLock { $0[stream] } }
    public func run() async throws {
        while !Task.isCancelled { try await Task.sleep(for: .seconds(3600)) }
    }
    public func close() async throws {}
    public var cacheCounters: [String: (hits: Int, misses: Int)] { [:] }
}
