import Bytes
import ObjectStore
import Support
import Synchronization

/// The object-store WAL: each flush writes one object `<prefix><20-digit sequence>` holding the
/// pending records of every stream, created with put-if-absent. Flushes happen when the buffer
/// reaches `flushBytes` or every `flushInterval`, whichever comes first; at most `maxInFlight`
/// objects are being written at once and appends complete in sequence order.
///
/// Takeover and fencing (see docs/stream-storage.md): `open` lists the prefix, puts a hole
/// marker (put-if-absent) into every missing sequence number between the lowest and highest
/// found, then a takeover fence at the next free number with an epoch above every epoch seen.
/// A previous writer's write into any of those numbers now fails, so it can never acknowledge
/// an object the new writer did not see. Objects after a takeover fence with a lower epoch are
/// ignored. The new writer starts writing `maxWindow` numbers after its fence, beyond anything
/// the previous writer could still have in flight.
///
/// Example: objects 3, 4, 6 exist (5 was in flight when the writer died). The new writer puts a
/// hole marker at 5 (if the old write lands first, its put fails and it reads object 5 instead),
/// a fence at 7, recovers 3, 4, (5), 6, and writes its own objects from 7 + 16.
public final class ObjectStoreWAL: WriteAheadLog {
    /// The most objects a writer may have in flight; a new writer skips this many numbers.
    public static let maxWindow: UInt64 = 16

    public struct Config: Sendable {
        public var flushInterval: Duration
        public var flushBytes: Int
        public var maxInFlight: Int
        public var maxBufferedBytes: Int
        /// Attempts per object write at least (transient errors are retried with backoff on the clock).
        public var attempts: Int
        public var backoff: Duration
        /// Keep retrying a failed object write for this long after its first attempt (beyond
        /// `attempts`), so that a storage outage shorter than this delays acknowledgements
        /// instead of failing the log. Zero: `attempts` alone decides.
        public var retryFor: Duration
        /// The longest pause between two attempts.
        public var maxBackoff: Duration
        /// When an attempt has not answered after this long, start another one of the same
        /// object beside it (a hedge: the writes are put-if-absent of identical bytes, so
        /// whichever lands first wins and the other finds our own object). Nil: no hedging.
        public var hedgeAfter: Duration?
        public init(flushInterval: Duration = .milliseconds(20), flushBytes: Int = 4 << 20, maxInFlight: Int = 4,
                    maxBufferedBytes: Int = 64 << 20, attempts: Int = 5, backoff: Duration = .milliseconds(20),
                    retryFor: Duration = .zero, maxBackoff: Duration = .seconds(1), hedgeAfter: Duration? = nil) {
            self.flushInterval = flushInterval
            self.flushBytes = flushBytes
            self.maxInFlight = max(1, min(maxInFlight, Int(ObjectStoreWAL.maxWindow)))
            self.maxBufferedBytes = maxBufferedBytes
            self.attempts = max(1, attempts)
            self.backoff = backoff
            self.retryFor = retryFor
            self.maxBackoff = maxBackoff
            self.hedgeAfter = hedgeAfter
        }
    }

    struct Pending {
        var record: WALRecord
        var size: Int
        var ticket: WALAppendTicket
        var position: WALPosition
        var appendedAt: ContinuousClock.Instant
    }

    struct Job {
        var seq: UInt64
        var entries: [Pending]
    }

    private struct State {
        var buffer: [Pending] = []
        var bufferBytes = 0
        var nextPosition: WALPosition
        var nextSeq: UInt64
        var nextAckSeq: UInt64
        var sealed: [Job] = []
        var finished: [UInt64: (Job, Result<Void, StreamStorageError>)] = [:]
        var idle: [CheckedContinuation<Job?, Never>] = []
        var failure: StreamStorageError? = nil
        var closing = false
        /// Objects that exist and may be deleted once trimmed: (sequence, last position).
        var live: [(UInt64, WALPosition)] = []
        var ackedPosition: WALPosition = 0
        /// Jobs handed to an uploader and not finished: sequence → their oldest append time.
        var writing: [UInt64: ContinuousClock.Instant] = [:]
    }

    public let name: String
    public let recovered: [(WALPosition, WALRecord)]
    public let epoch: UInt64
    public let fenceSequence: UInt64
    let store: any ObjectStore
    let prefix: String
    let config: Config
    let clock: any FloeClock
    let nonce: UInt64
    let logger: Logger
    private let budget: ByteBudget
    private let state: Mutex<State>
    private let tasks = Mutex<[Task<Void, Never>]>([])

    static func key(_ prefix: String, _ seq: UInt64) -> String {
        let digits = String(seq)
        return prefix + String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    /// Takes over the WAL under `prefix` (fencing any previous writer), recovers its records
    /// and starts the flusher. `prefix` should end with "/".
    public static func open(store: any ObjectStore, prefix: String, clock: any FloeClock, config: Config = Config(),
                            nonce: UInt64 = UInt64.random(in: 1...UInt64.max), logger: Logger = .discarding) async throws -> ObjectStoreWAL {
        for _ in 0..<16 {
            if let wal = try await attemptTakeover(store: store, prefix: prefix, clock: clock, config: config, nonce: nonce, logger: logger) {
                wal.start()
                return wal
            }
        }
        throw StreamStorageError.walFenced(wal: prefix, epoch: 0, detail: "takeover kept losing to concurrent writers")
    }

    private static func attemptTakeover(store: any ObjectStore, prefix: String, clock: any FloeClock, config: Config,
                                        nonce: UInt64, logger: Logger) async throws -> ObjectStoreWAL? {
        var objects: [UInt64: (WALObjectHeader, [WALRecord])] = [:]
        func fetch(_ seq: UInt64) async throws {
            let key = key(prefix, seq)
            let data = try await store.get(key)
            objects[seq] = try WALObjectHeader.decodeObject(data.bytes[...], key: key)
        }
        // Read every object, 16 at a time (S3 serves parallel GETs; recovery time is what a
        // failover waits for).
        let listed = try await store.listAll(prefix: prefix).compactMap { UInt64($0.key.dropFirst(prefix.count)) }
        for chunk in stride(from: 0, to: listed.count, by: 16).map({ Array(listed[$0..<min($0 + 16, listed.count)]) }) {
            let fetched = try await withThrowingTaskGroup(of: (UInt64, (WALObjectHeader, [WALRecord]))?.self) { group in
                for seq in chunk {
                    group.addTask {
                        let key = key(prefix, seq)
                        do {
                            let data = try await store.get(key)
                            return (seq, try WALObjectHeader.decodeObject(data.bytes[...], key: key))
                        } catch ObjectStoreError.notFound {
                            return nil  // trimmed by the writer since the listing: its records are in objects
                        }
                    }
                }
                var out: [(UInt64, (WALObjectHeader, [WALRecord]))] = []
                for try await r in group { if let r { out.append(r) } }
                return out
            }
            for (seq, o) in fetched { objects[seq] = o }
        }
        let newEpoch = (objects.values.map(\.0.epoch).max() ?? 0) + 1
        var nextPosition = objects.values.map { $0.0.firstPosition + UInt64($0.0.recordCount) }.max() ?? 1
        nextPosition = max(nextPosition, 1)
        func marker(_ kind: WALObjectHeader.Kind, _ seq: UInt64) -> [UInt8] {
            WALObjectHeader.encodeObject(header: WALObjectHeader(kind: kind, epoch: newEpoch, writerNonce: nonce, sequence: seq,
                                                                 firstPosition: kind == .holeMarker ? 0 : nextPosition, recordCount: 0), records: [])
        }
        // Only numbers within one window below the highest object can be writes of the previous
        // writer still in flight (it completes in sequence order, at most `maxWindow` ahead);
        // older gaps are objects it trimmed, which it never writes again.
        if let low = objects.keys.min(), let high = objects.keys.max() {
            for seq in max(low, high >= maxWindow ? high - maxWindow : 0)...high where objects[seq] == nil {
                do {
                    _ = try await store.put(key(prefix, seq), marker(.holeMarker, seq), condition: .ifAbsent)
                    objects[seq] = (WALObjectHeader(kind: .holeMarker, epoch: newEpoch, writerNonce: nonce, sequence: seq, firstPosition: 0, recordCount: 0), [])
                } catch ObjectStoreError.preconditionFailed {
                    try await fetch(seq)  // the old writer's object landed first
                }
            }
        }
        var fenceSeq = (objects.keys.max() ?? 0) + (objects.isEmpty ? 0 : 1)
        while true {
            do {
                _ = try await store.put(key(prefix, fenceSeq), marker(.takeoverFence, fenceSeq), condition: .ifAbsent)
                break
            } catch ObjectStoreError.preconditionFailed {
                try await fetch(fenceSeq)
                if let (h, _) = objects[fenceSeq], h.kind != .data, h.epoch >= newEpoch { return nil }  // a competing takeover
                fenceSeq += 1
            }
        }
        // Valid records: in sequence order, skipping hole markers and objects whose epoch is
        // below a fence or data object seen earlier.
        var records: [(WALPosition, WALRecord)] = []
        var maxEpoch: UInt64 = 0
        var live: [(UInt64, WALPosition)] = []
        for seq in objects.keys.sorted() where seq < fenceSeq {
            let (h, rs) = objects[seq]!
            // Hole markers and fences are never deleted: a deposed writer that resumes must keep
            // finding every number it could still write taken (see docs/stream-storage.md).
            if h.kind == .data { live.append((seq, h.recordCount == 0 ? 0 : h.firstPosition + UInt64(h.recordCount) - 1)) }
            if h.kind == .holeMarker || h.epoch < maxEpoch { continue }
            maxEpoch = h.epoch
            for (i, r) in rs.enumerated() { records.append((h.firstPosition + UInt64(i), r)) }
            nextPosition = max(nextPosition, h.firstPosition + UInt64(h.recordCount))
        }
        // Markers and fences of takeovers before the previous one fence writers that are long gone
        // (the previous takeover's fence stops them first); delete them so they do not pile up.
        let stale = objects.filter { $0.key < fenceSeq && $0.value.0.kind != .data && $0.value.0.epoch + 1 < newEpoch }.map { key(prefix, $0.key) }
        if !stale.isEmpty {
            do { _ = try await store.deleteMany(stale) } catch {
                logger.warning("could not delete old WAL markers", metadata: ["wal.prefix": prefix, "count": "\(stale.count)", "error": "\(error)"])
            }
        }
        logger.info("object-store WAL taken over", metadata: [
            "wal.prefix": prefix, "wal.epoch": "\(newEpoch)", "wal.fence": "\(fenceSeq)", "wal.recovered": "\(records.count)"])
        return ObjectStoreWAL(store: store, prefix: prefix, clock: clock, config: config, nonce: nonce, logger: logger,
                              epoch: newEpoch, fenceSequence: fenceSeq, recovered: records, nextPosition: nextPosition, live: live)
    }

    private init(store: any ObjectStore, prefix: String, clock: any FloeClock, config: Config, nonce: UInt64, logger: Logger,
                 epoch: UInt64, fenceSequence: UInt64, recovered: [(WALPosition, WALRecord)], nextPosition: WALPosition,
                 live: [(UInt64, WALPosition)]) {
        self.store = store
        self.prefix = prefix
        self.name = prefix
        self.clock = clock
        self.config = config
        self.nonce = nonce
        self.logger = logger
        self.epoch = epoch
        self.fenceSequence = fenceSequence
        self.recovered = recovered
        self.budget = ByteBudget(limit: config.maxBufferedBytes)
        let first = fenceSequence + ObjectStoreWAL.maxWindow
        var s = State(nextPosition: nextPosition, nextSeq: first, nextAckSeq: first)
        s.live = live
        s.ackedPosition = nextPosition - 1
        state = Mutex(s)
    }

    /// Starts the uploaders and the flush timer; both are awaited by `close()`.
    private func start() {
        let uploaders = Task {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<config.maxInFlight { group.addTask { await self.uploaderLoop() } }
            }
        }
        let timer = Task {
            while !Task.isCancelled {
                do { try await clock.sleep(for: config.flushInterval) } catch { return }
                seal(onlyIfFull: false)
            }
        }
        tasks.withLock { $0 = [uploaders, timer] }
    }

    public func reserve(bytes: Int) async throws { try await budget.reserve(bytes) }
    public func unreserve(bytes: Int) { budget.release(bytes) }

    public func append(_ record: WALRecord) throws -> WALAppendTicket {
        let size = record.encodedSize
        let ticket = try state.withLock { s throws(StreamStorageError) -> WALAppendTicket in
            if let f = s.failure { throw f }
            if s.closing { throw .closed(what: "WAL \(name)") }
            let ticket = WALAppendTicket(position: s.nextPosition)
            s.buffer.append(Pending(record: record, size: size, ticket: ticket, position: s.nextPosition, appendedAt: .now))
            s.nextPosition += 1
            s.bufferBytes += size
            return ticket
        }
        seal(onlyIfFull: true)
        return ticket
    }

    public func flush() { seal(onlyIfFull: false) }

    public var oldestPendingAppend: ContinuousClock.Instant? {
        state.withLock { s in
            guard s.failure == nil else { return nil }
            var times = Array(s.writing.values)
            for (_, (job, _)) in s.finished { if let t = job.entries.first?.appendedAt { times.append(t) } }
            if let t = s.sealed.first?.entries.first?.appendedAt { times.append(t) }
            if let t = s.buffer.first?.appendedAt { times.append(t) }
            return times.min()
        }
    }

    /// Moves the buffer into a numbered job and hands jobs to idle uploaders.
    func seal(onlyIfFull: Bool) {
        let handoffs = state.withLock { s -> [(CheckedContinuation<Job?, Never>, Job?)] in
            if !s.buffer.isEmpty && (!onlyIfFull || s.bufferBytes >= config.flushBytes) {
                s.sealed.append(Job(seq: s.nextSeq, entries: s.buffer))
                s.nextSeq += 1
                s.buffer = []
                s.bufferBytes = 0
            }
            return dispatch(&s)
        }
        for (c, job) in handoffs { c.resume(returning: job) }
    }

    /// Pairs idle uploaders with jobs inside the window; on close, releases them once drained.
    private func dispatch(_ s: inout State) -> [(CheckedContinuation<Job?, Never>, Job?)] {
        var out: [(CheckedContinuation<Job?, Never>, Job?)] = []
        while !s.idle.isEmpty, let job = s.sealed.first, job.seq < s.nextAckSeq + UInt64(config.maxInFlight) {
            s.sealed.removeFirst()
            s.writing[job.seq] = job.entries.first?.appendedAt
            out.append((s.idle.removeFirst(), job))
        }
        if s.closing && s.buffer.isEmpty && s.sealed.isEmpty {
            out += s.idle.map { ($0, nil) }
            s.idle = []
        }
        return out
    }

    private func nextJob() async -> Job? {
        await withCheckedContinuation { (c: CheckedContinuation<Job?, Never>) in
            let handoffs = state.withLock { s -> [(CheckedContinuation<Job?, Never>, Job?)] in
                s.idle.append(c)
                return dispatch(&s)
            }
            for (c, job) in handoffs { c.resume(returning: job) }
        }
    }

    private func uploaderLoop() async {
        while let job = await nextJob() {
            let result = await write(job)
            finish(job, result)
        }
    }

    private func write(_ job: Job) async -> Result<Void, StreamStorageError> {
        let key = Self.key(prefix, job.seq)
        let header = WALObjectHeader(kind: .data, epoch: epoch, writerNonce: nonce, sequence: job.seq,
                                     firstPosition: job.entries[0].position, recordCount: UInt32(job.entries.count))
        let bytes = WALObjectHeader.encodeObject(header: header, records: job.entries.map(\.record))
        let outcome = await HedgedWrite.run(clock: clock, attempts: config.attempts, retryFor: config.retryFor, backoff: config.backoff,
                                            maxBackoff: config.maxBackoff, hedgeAfter: config.hedgeAfter) { attempt in
            await self.attemptWrite(key: key, bytes: bytes, attempt: attempt)
        }
        switch outcome {
        case .success: return .success(())
        case let .failure(error): return .failure(error)
        }
    }

    /// One attempt at writing a WAL object: done, fenced (final), or a transient error.
    private func attemptWrite(key: String, bytes: [UInt8], attempt: Int) async -> HedgedWrite.AttemptResult {
        let detail: String
        do {
            _ = try await store.put(key, bytes, condition: .ifAbsent)
            return .done
        } catch ObjectStoreError.preconditionFailed {
            // Either our own earlier attempt (or a hedge) landed, or we were fenced.
            do {
                let existing = try await store.get(key)
                let (h, _) = try WALObjectHeader.decodeObject(existing.bytes[...], key: key)
                if h.writerNonce == nonce && h.epoch == epoch && h.kind == .data { return .done }
                return .final(.walFenced(wal: prefix, epoch: epoch, detail: "object \(key) was written by epoch \(h.epoch) (\(h.kind))"))
            } catch {
                detail = "\(error)"
            }
        } catch {
            detail = "\(error)"
        }
        logger.warning("WAL object write failed", metadata: ["wal.key": key, "attempt": "\(attempt + 1)", "error": detail])
        return .retry(.io(operation: "put WAL object", key: key, detail: detail))
    }

    private func finish(_ job: Job, _ result: Result<Void, StreamStorageError>) {
        var complete: [(Pending, Result<WALPosition, any Error>)] = []
        let handoffs = state.withLock { s -> [(CheckedContinuation<Job?, Never>, Job?)] in
            s.writing[job.seq] = nil
            if let f = s.failure {
                complete += job.entries.map { ($0, .failure(f)) }
                return dispatch(&s)
            }
            s.finished[job.seq] = (job, result)
            while let (done, r) = s.finished.removeValue(forKey: s.nextAckSeq) {
                switch r {
                case .success:
                    complete += done.entries.map { ($0, .success($0.position)) }
                    s.live.append((done.seq, done.entries.last!.position))
                    s.ackedPosition = done.entries.last!.position
                    s.nextAckSeq += 1
                case let .failure(error):
                    s.failure = error
                    logger.error("WAL failed; pending appends fail", metadata: ["wal.prefix": prefix, "error": "\(error)"])
                    complete += done.entries.map { ($0, .failure(error)) }
                    for (_, (j, _)) in s.finished { complete += j.entries.map { ($0, .failure(error)) } }
                    for j in s.sealed { complete += j.entries.map { ($0, .failure(error)) } }
                    complete += s.buffer.map { ($0, .failure(error)) }
                    s.finished = [:]
                    s.sealed = []
                    s.buffer = []
                    s.closing = true
                }
                if s.failure != nil { break }
            }
            return dispatch(&s)
        }
        for (p, r) in complete {
            p.ticket.complete(r)
            budget.release(p.size)
        }
        if case let .failure(e) = result, state.withLock({ $0.failure }) != nil { budget.fail(e) }
        for (c, job) in handoffs { c.resume(returning: job) }
    }

    /// Deletes objects whose records are all at or below `position`, oldest first. This
    /// writer's takeover fence is never deleted, so a later takeover still sees its epoch.
    public func trim(through position: WALPosition) async throws {
        let doomed = state.withLock { s -> [UInt64] in
            let limit = min(position, s.ackedPosition)
            var out: [UInt64] = []
            while let (seq, last) = s.live.first, last <= limit {
                out.append(seq)
                s.live.removeFirst()
            }
            return out
        }
        for seq in doomed {
            let key = Self.key(prefix, seq)
            do {
                try await store.delete(key)
            } catch ObjectStoreError.notFound {
                continue
            } catch {
                // Leftover WAL objects are replayed idempotently; put the rest back for the next trim.
                logger.warning("WAL trim could not delete an object", metadata: ["wal.key": key, "error": "\(error)"])
                throw StreamStorageError.io(operation: "delete WAL object", key: key, detail: "\(error)")
            }
        }
    }

    public func abandon() async {
        let failure = StreamStorageError.closed(what: "WAL \(name) (abandoned)")
        let (dropped, handoffs) = state.withLock { s -> ([Pending], [(CheckedContinuation<Job?, Never>, Job?)]) in
            s.failure = s.failure ?? failure
            var dropped = s.buffer
            for j in s.sealed { dropped += j.entries }
            for (_, (j, _)) in s.finished { dropped += j.entries }
            s.buffer = []
            s.sealed = []
            s.finished = [:]
            s.closing = true
            return (dropped, dispatch(&s))
        }
        for p in dropped { p.ticket.complete(.failure(failure)) }
        for (c, job) in handoffs { c.resume(returning: job) }
        let running = tasks.withLock { t -> [Task<Void, Never>] in defer { t = [] }; return t }
        for t in running { t.cancel() }
        for t in running { await t.value }
        budget.fail(failure)
    }

    /// Flushes what is buffered, waits for every write to finish, and stops the flusher.
    public func close() async throws {
        let handoffs = state.withLock { s -> [(CheckedContinuation<Job?, Never>, Job?)] in
            if !s.buffer.isEmpty {
                s.sealed.append(Job(seq: s.nextSeq, entries: s.buffer))
                s.nextSeq += 1
                s.buffer = []
                s.bufferBytes = 0
            }
            s.closing = true
            return dispatch(&s)
        }
        for (c, job) in handoffs { c.resume(returning: job) }
        let running = tasks.withLock { t -> [Task<Void, Never>] in defer { t = [] }; return t }
        if running.count == 2 {
            await running[0].value
            running[1].cancel()
            await running[1].value
        }
        budget.fail(StreamStorageError.closed(what: "WAL \(name)"))
        if let f = state.withLock({ $0.failure }), case .walFenced = f { throw f }
    }
}
