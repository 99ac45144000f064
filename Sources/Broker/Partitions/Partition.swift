import KafkaProtocol
import Support
import Synchronization

/// Wakes a waiting long-poll Fetch (or a duplicate produce waiting for the original's
/// durability) when any partition it watches gets new durable data.
final class AppendSignal: Sendable {
    private let state = Mutex<(fired: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    func fire() {
        let w = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.fired = true
            defer { s.waiter = nil }
            return s.waiter
        }
        w?.resume()
    }

    /// Returns once fired (or at once if fired already), when `timeout` passes, or on cancellation.
    func wait(timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                        let now = self.state.withLock { s -> Bool in
                            if s.fired { return true }
                            s.waiter = c
                            return false
                        }
                        if now { c.resume() }
                    }
                } onCancel: {
                    self.fire()
                }
            }
            group.addTask {
                do { try await Task.sleep(for: timeout) } catch { /* cancelled: the signal fired first */ }
            }
            await group.next()
            group.cancelAll()
        }
    }
}

/// Per-partition counters exported as metrics.
struct PartitionCounters: Sendable {
    let bytesIn: Counter
    let recordsIn: Counter
    let bytesOut: Counter
    let recordsOut: Counter

    init(metrics: MetricsRegistry?, topic: String, partition: Int32) {
        let labels = ["topic": topic, "partition": "\(partition)"]
        if let metrics {
            bytesIn = metrics.counter("floe_broker_partition_bytes_in_total", help: "Record batch bytes appended", labels: labels)
            recordsIn = metrics.counter("floe_broker_partition_records_in_total", help: "Records appended", labels: labels)
            bytesOut = metrics.counter("floe_broker_partition_bytes_out_total", help: "Record batch bytes served by Fetch", labels: labels)
            recordsOut = metrics.counter("floe_broker_partition_records_out_total", help: "Records served by Fetch", labels: labels)
        } else {
            bytesIn = Counter(); recordsIn = Counter(); bytesOut = Counter(); recordsOut = Counter()
        }
    }
}

/// The outcome of appending one Produce request's records to a partition.
enum AppendOutcome: Sendable {
    /// Appended: the first batch's base offset; `durable` completes when all are durable.
    case appended(baseOffset: Int64, durable: Durability, lastOffset: Int64)
    /// A retry of batches already appended.
    case duplicate(baseOffset: Int64, lastOffset: Int64)
    case rejected(KafkaErrorCode, String)
    /// The log failed while appending; `unused` are the sizes of the batches whose reservation
    /// the caller still holds (the failing batch's was returned by the log).
    case storageFailed(String, code: KafkaErrorCode, unused: [Int])
}

/// One partition served by this broker: its log, its idempotent-producer state, and the
/// long-poll waiters.
///
/// Invariant: `append` runs sequence checks and offset assignment under one lock, so batches
/// are checked and assigned in the order the calls happen, whichever connection they come from.
public final class Partition: Sendable {
    public let topic: String
    public let index: Int32
    public let stream: UInt64
    public let leaderEpoch: Int32
    public let log: any PartitionLog
    let counters: PartitionCounters

    struct State {
        var producers: ProducerStateTable
        /// Open and aborted transactions (read_committed, LSO).
        var txns: TransactionIndex
        /// Producer state changed since the last snapshot.
        var dirty = false
        var waiters: [ObjectIdentifier: AppendSignal] = [:]
    }
    let state: Mutex<State>

    init(topic: String, index: Int32, stream: UInt64, leaderEpoch: Int32, log: any PartitionLog,
         producers: ProducerStateTable, txns: TransactionIndex = TransactionIndex(), counters: PartitionCounters) {
        self.topic = topic
        self.index = index
        self.stream = stream
        self.leaderEpoch = leaderEpoch
        self.log = log
        self.counters = counters
        self.state = Mutex(State(producers: producers, txns: txns))
    }

    /// Validated batches of one Produce request for this partition: all are checked first, then
    /// all are appended in order (or none is, unless the storage fails midway). WAL room for every batch must have been reserved
    /// with `log.reserve(batchSizes:)`; on any outcome but `.appended` the caller returns it.
    func append(_ batches: [RecordBatch]) -> AppendOutcome {
        var bytes = 0, records = 0
        let outcome: AppendOutcome = state.withLock { s in
            // Check: the first batch against the producer table, later ones chained to it.
            var previous: (pid: Int64, epoch: Int16, last: Int32)? = nil
            for (i, batch) in batches.enumerated() {
                let h = batch.header
                let lastSeq = ProducerStateTable.lastSequence(first: h.baseSequence, count: max(h.recordCount, 1))
                if i > 0, let p = previous, h.producerId >= 0 {
                    guard p.pid == h.producerId, p.epoch == h.producerEpoch, h.baseSequence == (p.last == Int32.max ? 0 : p.last + 1) else {
                        return .rejected(.outOfOrderSequenceNumber, "batch \(i) of the request does not follow batch \(i - 1) in sequence")
                    }
                } else {
                    switch s.producers.check(producerId: h.producerId, epoch: h.producerEpoch, firstSequence: h.baseSequence, lastSequence: lastSeq) {
                    case let .reject(code, message):
                        return .rejected(code, message)
                    case let .duplicate(base, lastOffset):
                        if batches.count == 1 { return .duplicate(baseOffset: base, lastOffset: lastOffset) }
                        return .rejected(.duplicateSequenceNumber, "batch with sequences \(h.baseSequence)…\(lastSeq) of producer \(h.producerId) is a duplicate")
                    case .append:
                        break
                    }
                }
                previous = (h.producerId, h.producerEpoch, lastSeq)
            }
            // Append.
            var first: Int64? = nil
            var last: Int64 = -1
            var pending: PendingAppend? = nil
            for (i, batch) in batches.enumerated() {
                let h = batch.header
                let p: PendingAppend
                do {
                    p = try log.append(batch.bytes, recordCount: h.recordCount)
                } catch {
                    return .storageFailed("append to \(topic)-\(index) failed: \(error)", code: BrokerError.partitionCode(error), unused: batches[(i + 1)...].map(\.bytes.count))
                }
                let lastOffset = p.baseOffset + Int64(h.lastOffsetDelta)
                if h.producerId >= 0 {
                    s.producers.record(producerId: h.producerId, epoch: h.producerEpoch, firstSequence: h.baseSequence,
                                       lastSequence: ProducerStateTable.lastSequence(first: h.baseSequence, count: max(h.recordCount, 1)),
                                       baseOffset: p.baseOffset, lastOffset: lastOffset)
                    if h.attributes.isTransactional { s.txns.data(producerId: h.producerId, baseOffset: p.baseOffset) }
                    s.dirty = true
                }
                if first == nil { first = p.baseOffset }
                last = lastOffset
                pending = p
                bytes += batch.bytes.count
                records += Int(h.recordCount)
            }
            guard let first, let pending else { return .rejected(.corruptMessage, "no record batch for \(topic)-\(index)") }
            return .appended(baseOffset: first, durable: pending.durable, lastOffset: last)
        }
        if case .appended = outcome {
            counters.bytesIn.increment(by: bytes)
            counters.recordsIn.increment(by: records)
        }
        return outcome
    }

    /// Wakes every waiter; called when durable data was added.
    func notifyAppended() {
        let ws = state.withLock { s -> [AppendSignal] in
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for w in ws { w.fire() }
    }

    func watch(_ signal: AppendSignal) {
        state.withLock { $0.waiters[ObjectIdentifier(signal)] = signal }
    }

    func unwatch(_ signal: AppendSignal) {
        _ = state.withLock { $0.waiters.removeValue(forKey: ObjectIdentifier(signal)) }
    }

    /// Waits until `log.endOffset > offset` or `timeout` passes; returns whether it did.
    func waitDurable(beyond offset: Int64, timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while log.endOffset <= offset {
            let left = deadline - ContinuousClock.now
            if left <= .zero { return false }
            let signal = AppendSignal()
            watch(signal)
            if log.endOffset > offset {
                unwatch(signal)
                break
            }
            await signal.wait(timeout: left)
            unwatch(signal)
        }
        return true
    }

    /// The producer state as of the durable end, if it changed since the last call.
    func takeSnapshotIfDirty() -> ProducerSnapshot? {
        state.withLock { s in
            guard s.dirty else { return nil }
            let end = log.endOffset
            // Only durable batches go into a snapshot; if appends are pending, state stays dirty.
            if log.nextOffset == end { s.dirty = false }
            s.txns.settle(below: end)
            s.txns.forget(below: log.startOffset)
            return ProducerSnapshot(stream: stream, offset: end, table: s.producers.truncated(below: end), txns: s.txns.truncated(below: end))
        }
    }

    /// The producer state as of the durable end, whether or not it changed (hand-over: the next
    /// owner then replays nothing).
    func takeSnapshot() -> ProducerSnapshot {
        state.withLock { s in
            let end = log.endOffset
            s.dirty = false
            s.txns.settle(below: end)
            return ProducerSnapshot(stream: stream, offset: end, table: s.producers.truncated(below: end), txns: s.txns.truncated(below: end))
        }
    }

    var producerTable: ProducerStateTable { state.withLock { $0.producers } }

    // MARK: transactions

    var transactionIndex: TransactionIndex { state.withLock { $0.txns } }

    /// Whether `producerId` has an open transaction in this partition.
    func hasOngoingTransaction(_ producerId: Int64) -> Bool { state.withLock { $0.txns.isOngoing(producerId) } }

    /// The last stable offset: no read_committed consumer reads at or beyond it.
    var lastStableOffset: Int64 {
        state.withLock { $0.txns.lastStableOffset(highWatermark: log.endOffset) }
    }

    func abortedTransactions(from: Int64, to: Int64) -> [AbortedTxn] {
        state.withLock { $0.txns.abortedTransactions(from: from, to: to) }
    }

    /// Appends a COMMIT or ABORT marker of `producerId` (a control batch), closing its open
    /// transaction here. A marker of an epoch older than the producer's current one is refused
    /// (INVALID_PRODUCER_EPOCH: a newer producer or coordinator decision superseded it); a newer
    /// epoch fences the producer's older batches. Room must have been reserved for `batch`.
    func appendMarker(_ batch: [UInt8], producerId: Int64, producerEpoch: Int16, commit: Bool) -> AppendOutcome {
        state.withLock { s in
            if let entry = s.producers.producers[producerId], producerEpoch < entry.epoch {
                return .rejected(.invalidProducerEpoch, "marker of producer \(producerId) epoch \(producerEpoch) is older than epoch \(entry.epoch) in \(topic)-\(index)")
            }
            let p: PendingAppend
            do {
                p = try log.append(batch[...], recordCount: 1)
            } catch {
                return .storageFailed("marker append to \(topic)-\(index) failed: \(error)", code: BrokerError.partitionCode(error), unused: [])
            }
            if (s.producers.producers[producerId]?.epoch ?? -1) < producerEpoch {
                s.producers.producers[producerId] = ProducerEntry(epoch: producerEpoch, batches: [])
            }
            s.txns.marker(producerId: producerId, commit: commit, offset: p.baseOffset)
            s.dirty = true
            return .appended(baseOffset: p.baseOffset, durable: p.durable, lastOffset: p.baseOffset)
        }
    }
}
