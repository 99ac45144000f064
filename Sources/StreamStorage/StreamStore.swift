import Foundation
import ObjectStore
import Support
import Synchronization

/// Settings of a `StreamStore`.
public struct StreamStoreConfig: Sendable {
    /// Key prefix of data objects (`<dataPrefix><20-digit id>.obj`).
    public var dataPrefix: String = "streams/data/"
    /// Bound of the log cache (recent appends). Entries not yet uploaded are pinned beyond it.
    public var logCacheBytes: Int = 256 << 20
    /// Appends wait while more than this many appended bytes are not yet in objects.
    public var maxPinnedBytes: Int = 256 << 20
    /// The maintenance loop uploads as soon as this many bytes are pinned.
    public var uploadTriggerBytes: Int = 32 << 20
    public var blockBytes: Int = 512 << 10
    public var blockCacheBytes: Int = 128 << 20
    public var readAheadBlocks: Int = 4
    /// How cold (catch-up) reads are kept from slowing appends: dedicated low-priority threads,
    /// bytes in flight, an optional byte-rate budget.
    public var coldReads = ColdReadSettings()
    /// How often `run()` uploads, compacts, applies retention and collects garbage.
    public var maintenanceInterval: Duration = .seconds(1)
    public var compaction = CompactionPolicy()
    /// Retention applied by `run()` to every stream (nil: keep everything).
    public var retention: RetentionPolicy? = nil

    public init() {}
}

/// The stream storage engine: streams of record batches, appended through a WAL, served from
/// a log cache and from data objects, uploaded, compacted, trimmed and recovered.
///
/// Life cycle: `StreamStore.open(...)` recovers the WAL (replaying it into the cache, then
/// uploading it, so everything acknowledged before a crash is in objects when `open`
/// returns); `open(stream:epoch:)` hands out `Stream`s; `run()` is the maintenance service
/// (upload, compaction, retention, garbage collection) and is cancelled for shutdown; `close()`
/// makes everything durable in objects.
///
/// Offsets: per stream they are contiguous, assigned at append. Example: a stream at end
/// offset 100 appends a batch of 5 records; it gets base offset 100 and the end becomes 105
/// once the batch is durable. `read(from: 102)` returns that batch (the one containing 102).
public final class StreamStore: Sendable {
    struct StreamState {
        var epoch: UInt64
        var startOffset: Int64
        /// Next offset to assign.
        var nextOffset: Int64
        /// End of the acknowledged (durable) records; reads stop here.
        var durableEnd: Int64
        var committed: StreamMetadata
        var fenced = false
        var closed = false
    }

    struct Core {
        var cache: LogCache
        var streams: [StreamID: StreamState] = [:]
        var objectSizes: [UInt64: UInt64] = [:]
        /// The manifest version `refresh` last applied.
        var appliedManifestVersion: UInt64 = 0
        var failure: (any Error)? = nil
        var closed = false
        var lastTicket: WALAppendTicket? = nil
        /// The highest WAL position appended or recovered (everything up to it may be trimmed
        /// once nothing is pinned).
        var highestPosition: WALPosition = 0
        var pinnedWaiters: [CheckedContinuation<Void, any Error>] = []
        /// One lane per stream: appends to a stream take its lane, not this lock, while the WAL
        /// record is built (copy and CRC), so streams append in parallel.
        var lanes: [StreamID: AppendLane] = [:]
        /// Appends between taking an offset and entering the cache, each with the highest WAL
        /// position when it started: the WAL is never trimmed past one of them.
        var appendsInFlight: [UInt64: WALPosition] = [:]
        var nextAppendToken: UInt64 = 0

        mutating func lane(_ id: StreamID) -> AppendLane {
            if let lane = lanes[id] { return lane }
            let lane = AppendLane()
            lanes[id] = lane
            return lane
        }

        /// The WAL position everything up to which is in objects (or was never a record).
        var trimmablePosition: WALPosition {
            var through = cache.minPinnedPosition().map { $0 - 1 } ?? highestPosition
            for floor in appendsInFlight.values { through = min(through, floor) }
            return through
        }
    }

    /// Serializes appends to one stream (offset order = WAL order = cache order for it).
    final class AppendLane: Sendable {
        let mutex = Mutex(())
    }

    public let wal: any WriteAheadLog
    let metadata: any StreamMetadataStore
    let objects: any ObjectStore
    let clock: any FloeClock
    let config: StreamStoreConfig
    let logger: Logger
    let reader: ObjectReader
    /// The bucket-wide maintenance's CPU work (building compaction and key-cleaning objects,
    /// decoding compaction inputs) runs here: one thread under `SCHED_IDLE`, so a Produce continuation
    /// woken onto the same CPU preempts it at once instead of waiting for a whole object to be
    /// built (at nice 10 it still waited up to 5 ms: the kernel let the builder finish its
    /// slice). When both CPUs are busy the builds wait; appends then wait on `maxPinnedBytes`,
    /// which frees the CPUs for them (measured: saturation throughput did not drop).
    let background = ColdReadPool.shared(threads: 1, priority: .idle, purpose: "bg")
    /// Uploads build their objects on a thread of their own, also under `SCHED_IDLE`: an upload
    /// frees pinned bytes that appends may be waiting for, so it must never queue behind a
    /// compaction's build or decode on `background` (after a burst that queue is long).
    let uploadBuilder = ColdReadPool.shared(threads: 1, priority: .idle, purpose: "upload")
    let core: Mutex<Core>
    /// Compaction, retention and garbage collection, one at a time.
    let maintainer: Maintainer
    /// Uploads (and the hand-over of a closing stream), one at a time, never behind a long
    /// compaction: the two commit through the manifest's compare-and-swap, which keeps them
    /// consistent, and touch different objects.
    let uploader: Maintainer
    /// Whether this store runs the bucket-wide work (compaction, garbage collection) in `run()`.
    /// Brokers sharing a bucket give it to one of them (the controller); alone, a store does it.
    private let bucketWide = Mutex<@Sendable () -> Bool>({ true })
    let wake = Signal()
    let instruments: Instruments

    private init(wal: any WriteAheadLog, metadata: any StreamMetadataStore, objects: any ObjectStore, clock: any FloeClock,
                 config: StreamStoreConfig, logger: Logger, metrics: MetricsRegistry?) {
        self.instruments = Instruments(metrics)
        self.wal = wal
        self.metadata = metadata
        self.objects = objects
        self.clock = clock
        self.config = config
        self.logger = logger
        self.reader = ObjectReader(store: objects, prefix: config.dataPrefix, capacityBytes: config.blockCacheBytes, readAheadBlocks: config.readAheadBlocks,
                                   settings: config.coldReads, clock: clock)
        self.core = Mutex(Core(cache: LogCache(capacityBytes: config.logCacheBytes)))
        self.maintainer = Maintainer()
        self.uploader = Maintainer()
    }

    /// Decides, at each maintenance round, whether this store compacts and collects garbage
    /// (work over every object of the bucket, which one process among those sharing the
    /// manifest should do). Uploads and retention of its own streams always run.
    public func setBucketWideMaintenance(_ decide: @escaping @Sendable () -> Bool) {
        bucketWide.withLock { $0 = decide }
    }

    var nowMillis: Int64 { Int64(clock.wallTime().timeIntervalSince1970 * 1000) }

    /// Opens the store over an opened WAL and recovers: WAL records beyond each stream's
    /// committed end are replayed in order (a stream stops at its first gap: what follows was
    /// never acknowledged), each recovered stream's epoch is raised by one (fencing a previous
    /// owner's uploads), and the replayed data is uploaded and the WAL trimmed.
    public static func open(wal: any WriteAheadLog, metadata: any StreamMetadataStore, objects: any ObjectStore,
                            clock: any FloeClock, config: StreamStoreConfig = StreamStoreConfig(), logger: Logger = .discarding,
                            metrics: MetricsRegistry? = nil) async throws -> StreamStore {
        let store = StreamStore(wal: wal, metadata: metadata, objects: objects, clock: clock, config: config, logger: logger, metrics: metrics)
        do {
            try await store.recover()
        } catch {
            await wal.abandon()  // release the WAL (and its lock) so recovery can be retried
            throw error
        }
        return store
    }

    private func recover() async throws {
        var perStream: [StreamID: [(WALPosition, WALRecord)]] = [:]
        var order: [StreamID] = []
        for (p, r) in wal.recovered {
            if perStream[r.streamID] == nil { order.append(r.streamID) }
            perStream[r.streamID, default: []].append((p, r))
        }
        // Fence previous owners first, then read the committed ends.
        var before = try await metadata.snapshot()
        for id in order {
            let epoch = (before.streams[id]?.epoch ?? 0) + 1
            _ = try await metadata.openStream(id, epoch: epoch)
        }
        before = try await metadata.snapshot()
        var replayed = 0, dropped = 0
        core.withLock { c in
            c.highestPosition = wal.recovered.last?.0 ?? 0
            for (oid, o) in before.objects { c.objectSizes[oid] = o.size }
            for id in order {
                let meta = before.streams[id]!
                var expected = meta.endOffset
                var st = StreamState(epoch: meta.epoch, startOffset: meta.startOffset, nextOffset: expected, durableEnd: expected, committed: meta)
                st.closed = true
                let records = perStream[id]!
                for (i, (p, r)) in records.enumerated() {
                    if r.batch.endOffset <= expected { continue }
                    guard r.batch.baseOffset == expected else {
                        dropped += records.count - i
                        break
                    }
                    c.cache.insert(id, r.batch, walPosition: p)
                    expected = r.batch.endOffset
                    replayed += 1
                }
                st.nextOffset = expected
                st.durableEnd = expected
                c.streams[id] = st
            }
        }
        logger.info("stream store recovered the WAL", metadata: [
            "wal": wal.name, "wal.records": "\(wal.recovered.count)", "replayed": "\(replayed)", "dropped.after.gap": "\(dropped)"])
        try await uploadNow()
    }

    // MARK: streams

    /// Opens `id` at `epoch` (creating it empty). Fails with `.fenced` if the stream's epoch is
    /// newer. A `Stream` of this store at an older epoch is fenced by this call.
    public func open(_ id: StreamID, epoch: UInt64) async throws -> Stream {
        try checkUsable()
        let meta = try await metadata.openStream(id, epoch: epoch)
        let lane = core.withLock { $0.lane(id) }
        lane.mutex.withLock { _ in core.withLock { c in
            if var st = c.streams[id], !st.fenced, st.durableEnd >= meta.endOffset, st.nextOffset == st.durableEnd {
                st.epoch = epoch
                st.closed = false
                st.committed = meta
                st.startOffset = max(st.startOffset, meta.startOffset)
                c.streams[id] = st
            } else {
                c.cache.remove(id)
                c.streams[id] = StreamState(epoch: epoch, startOffset: meta.startOffset, nextOffset: meta.endOffset,
                                            durableEnd: meta.endOffset, committed: meta)
            }
        } }
        refresh(try await metadata.snapshot())
        return Stream(store: self, id: id, epoch: epoch)
    }

    /// The stream's epoch in metadata (recovery raises it by one), nil if unknown.
    public func currentEpoch(_ id: StreamID) async throws -> UInt64? {
        try await metadata.snapshot().streams[id]?.epoch
    }

    /// Why appends fail, once the WAL has failed (or the store was abandoned): every later
    /// append fails too and the store must be replaced by a reopened one. Nil while usable.
    public var failure: (any Error)? { core.withLock { $0.failure } }

    /// When the oldest append not yet durable was made (nil if none): a WAL that keeps retrying
    /// a write makes this grow, which health checks report as a stall.
    public var oldestPendingAppend: ContinuousClock.Instant? { wal.oldestPendingAppend }

    func checkUsable() throws {
        try core.withLock { c in
            if let f = c.failure { throw f }
            if c.closed { throw StreamStorageError.closed(what: "stream store") }
        }
    }

    func append(_ id: StreamID, epoch: UInt64, bytes: [UInt8], recordCount: Int32) async throws -> Int64 {
        guard recordCount > 0 else { throw StreamStorageError.invalidArgument("record count \(recordCount) for stream \(id)") }
        try await reserve(batchBytes: bytes.count)
        let (base, durable) = try appendReserved(id, epoch: epoch, bytes: bytes, recordCount: recordCount)
        try await durable.wait()
        return base
    }

    /// The WAL room one batch of `batchBytes` takes.
    static func reservationSize(batchBytes: Int) -> Int { WALRecord.headerSize + batchBytes }

    /// Waits for room for one batch of `batchBytes` (log cache pinning and WAL buffer). The
    /// reservation is consumed by `appendReserved` or returned with `unreserve`.
    func reserve(batchBytes: Int) async throws {
        try await waitForPinnedRoom()
        try await wal.reserve(bytes: Self.reservationSize(batchBytes: batchBytes))
    }

    func unreserve(batchBytes: Int) {
        wal.unreserve(bytes: Self.reservationSize(batchBytes: batchBytes))
    }

    /// Assigns the offset and enqueues the batch in the WAL synchronously (room must have been
    /// reserved); the returned `AppendDurability` tells when the batch is durable. Calls are ordered:
    /// offsets follow call order.
    func appendReserved(_ id: StreamID, epoch: UInt64, bytes: [UInt8], recordCount: Int32) throws -> (Int64, AppendDurability) {
        let size = Self.reservationSize(batchBytes: bytes.count)
        guard recordCount > 0 else {
            wal.unreserve(bytes: size)
            throw StreamStorageError.invalidArgument("record count \(recordCount) for stream \(id)")
        }
        let now = nowMillis
        let started = clock.now()
        let (ticket, base, pinned): (WALAppendTicket, Int64, Int)
        do {
            let lane = try core.withLock { c throws -> AppendLane in
                if let f = c.failure { throw f }
                if c.closed { throw StreamStorageError.closed(what: "stream store") }
                guard c.streams[id] != nil else { throw StreamStorageError.unknownStream(stream: id) }
                return c.lane(id)
            }
            (ticket, base, pinned) = try lane.mutex.withLock { _ throws -> (WALAppendTicket, Int64, Int) in
                // 1. Take the offset (short, under the store lock).
                let (batch, token) = try core.withLock { c throws -> (StoredBatch, UInt64) in
                    if let f = c.failure { throw f }
                    if c.closed { throw StreamStorageError.closed(what: "stream store") }
                    guard let st = c.streams[id] else { throw StreamStorageError.unknownStream(stream: id) }
                    if st.fenced || st.epoch != epoch {
                        throw StreamStorageError.fenced(stream: id, epoch: epoch, currentEpoch: max(st.epoch, epoch + (st.fenced ? 1 : 0)))
                    }
                    if st.closed { throw StreamStorageError.closed(what: "stream \(id)") }
                    let token = c.nextAppendToken
                    c.nextAppendToken += 1
                    c.appendsInFlight[token] = c.highestPosition
                    return (StoredBatch(baseOffset: st.nextOffset, recordCount: recordCount, appendTimeMillis: now, bytes: bytes[...]), token)
                }
                // 2. Build and enqueue the WAL record (copy and CRC) under this stream's lane only.
                let ticket: WALAppendTicket
                do {
                    ticket = try wal.append(WALRecord(streamID: id, epoch: epoch, batch: batch))
                } catch {
                    core.withLock { _ = $0.appendsInFlight.removeValue(forKey: token) }
                    throw error
                }
                // 3. Publish: the next offset, the cache entry (short, under the store lock).
                let pinned = core.withLock { c -> Int in
                    c.appendsInFlight[token] = nil
                    if var st = c.streams[id] {
                        st.nextOffset = batch.endOffset
                        c.streams[id] = st
                    }
                    c.cache.insert(id, batch, walPosition: ticket.position)
                    if ticket.position > c.lastTicket?.position ?? 0 { c.lastTicket = ticket }
                    c.highestPosition = max(c.highestPosition, ticket.position)
                    return c.cache.pinnedBytes
                }
                return (ticket, batch.baseOffset, pinned)
            }
        } catch {
            wal.unreserve(bytes: size)
            throw error
        }
        if pinned >= config.uploadTriggerBytes { wake.fire() }
        let byteCount = bytes.count
        let settle: @Sendable (Result<WALPosition, any Error>) -> Result<Void, any Error> = { [self] outcome in
            if case let .failure(error) = outcome {
                core.withLock { c in if c.failure == nil { c.failure = error } }
                return .failure(error)
            }
            core.withLock { c in
                if var st = c.streams[id] {
                    st.durableEnd = max(st.durableEnd, base + Int64(recordCount))
                    c.streams[id] = st
                }
            }
            instruments.appendSeconds?.observe(clock.now().duration(since: started))
            instruments.appendedBytes?.increment(by: byteCount)
            instruments.pinnedBytes?.set(Double(pinned))
            return .success(())
        }
        return (base, AppendDurability(ticket: ticket, settle: settle))
    }

    /// The offset the next append to `id` gets.
    func nextOffset(_ id: StreamID) -> Int64 {
        core.withLock { $0.streams[id]?.nextOffset ?? 0 }
    }

    private func waitForPinnedRoom() async throws {
        // Set only when the append has to wait (the clock is not read on the usual path).
        var waitStarted: MonotonicInstant?
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Void, any Error>) in
            let ready: Result<Void, any Error>? = core.withLock { c in
                if let f = c.failure { return .failure(f) }
                if c.cache.pinnedBytes <= config.maxPinnedBytes { return .success(()) }
                waitStarted = clock.now()
                c.pinnedWaiters.append(cont)
                return nil
            }
            if let ready { cont.resume(with: ready) } else { wake.fire() }
        }
        if let waitStarted {
            instruments.pinnedWaits?.increment()
            instruments.pinnedWaitSeconds?.increment(by: clock.now().duration(since: waitStarted).secondsDouble)
        }
    }

    func read(_ id: StreamID, from requested: Int64, maxBytes: Int) async throws -> [StoredBatch] {
        var offset = requested
        var attempt = 0
        // Key compaction leaves gaps: an offset in a gap reads the next batch kept; an offset in
        // a gap at the end of a range continues at the next range (each range keeps at least one
        // batch, but its last batches may be gone).
        for _ in 0..<64 {
            // A failed store still serves what was acknowledged (cache and objects): reads of a
            // partition keep working while its writes fail, until the broker reopens the storage.
            let snap = try core.withLock { c throws -> (StreamState, [StoredBatch]?, Int64?, UInt64?) in
                guard let st = c.streams[id] else { throw StreamStorageError.unknownStream(stream: id) }
                guard offset >= st.startOffset && offset <= st.durableEnd else {
                    throw StreamStorageError.offsetOutOfRange(stream: id, offset: offset, start: st.startOffset, end: st.durableEnd)
                }
                let cached = c.cache.read(id, from: offset, maxBytes: maxBytes, below: st.durableEnd)
                let objectID = st.committed.range(containing: offset)?.objectID
                return (st, cached, c.cache.firstOffset(id), objectID.flatMap { c.objectSizes[$0] })
            }
            let (st, cached, cacheFirst, size) = snap
            if offset == st.durableEnd { return [] }
            if let cached { return cached }
            guard let range = st.committed.range(containing: offset), let size else {
                throw StreamStorageError.corrupt(what: "stream metadata", key: "stream \(id)",
                                                 detail: "offset \(offset) is neither cached nor in a committed object")
            }
            do {
                let batches = try await reader.read(id, range: range, size: size, from: offset,
                                                    below: min(cacheFirst ?? st.durableEnd, st.durableEnd), maxBytes: maxBytes)
                if batches.isEmpty && offset < range.endOffset {
                    offset = range.endOffset
                    continue
                }
                return batches
            } catch ObjectStoreError.notFound where attempt == 0 {
                // Compacted and deleted meanwhile (maybe by another broker): refresh the ranges
                // from the newest metadata and try once more.
                attempt += 1
                refresh(try await metadata.latest())
            }
        }
        throw StreamStorageError.corrupt(what: "stream metadata", key: "stream \(id)", detail: "no batch found from offset \(requested) (objects vanished or too many empty ranges)")
    }

    func trim(_ id: StreamID, epoch: UInt64, to offset: Int64) async throws {
        let target = try core.withLock { c throws -> Int64 in
            guard var st = c.streams[id] else { throw StreamStorageError.unknownStream(stream: id) }
            if st.fenced || st.epoch != epoch { throw StreamStorageError.fenced(stream: id, epoch: epoch, currentEpoch: st.epoch) }
            let target = min(offset, st.durableEnd)
            if target <= st.startOffset { return target }
            st.startOffset = target
            c.streams[id] = st
            c.cache.trim(id, below: target)
            return target
        }
        try await metadata.trim(id, epoch: epoch, to: target)
        refresh(try await metadata.snapshot())
    }

    func offsets(_ id: StreamID) -> (start: Int64, end: Int64) {
        core.withLock { c in
            guard let st = c.streams[id] else { return (0, 0) }
            return (st.startOffset, st.durableEnd)
        }
    }

    /// Refuses further appends on the stream, waits for the ones in flight (in WAL order, so
    /// waiting for the newest ticket covers them), then uploads everything acknowledged.
    ///
    /// The stream's lane is taken while marking it closed, so no append is half-way (offset taken,
    /// not yet in the cache) when the upload starts; and the appends are marked durable here, not
    /// only when their callers get to await them, so the upload includes every one of them. (A
    /// hand-over that missed either lost acknowledged records: the next owner's epoch then
    /// refused this broker's late upload.)
    func closeStream(_ id: StreamID, epoch: UInt64) async throws {
        let lane = core.withLock { $0.lane(id) }
        let last = lane.mutex.withLock { _ in
            core.withLock { c -> WALAppendTicket? in
                guard var st = c.streams[id], st.epoch == epoch else { return nil }
                st.closed = true
                c.streams[id] = st
                return c.lastTicket
            }
        }
        wal.flush()
        if let last { _ = try await last.wait() }
        core.withLock { c in
            guard var st = c.streams[id], st.epoch == epoch, st.closed else { return }
            st.durableEnd = max(st.durableEnd, st.nextOffset)
            c.streams[id] = st
        }
        try await uploadNow()
    }

    /// Applies metadata to the in-memory views: committed ranges, object sizes, fencing.
    func refresh(_ m: Manifest) {
        instruments.observe(m)
        core.withLock { c in
            // Uploads and compactions refresh concurrently: never go back to an older manifest.
            guard m.version >= c.appliedManifestVersion else { return }
            c.appliedManifestVersion = m.version
            c.objectSizes = m.objects.mapValues(\.size)
            for (id, var st) in c.streams {
                guard let meta = m.streams[id] else { continue }
                if meta.epoch > st.epoch { st.fenced = true }
                st.committed = meta
                st.startOffset = max(st.startOffset, meta.startOffset)
                c.streams[id] = st
            }
        }
    }

    // MARK: maintenance

    /// Uploads every acknowledged record not yet in an object into one data object
    /// (prepare → upload → commit), then trims the WAL.
    public func uploadNow() async throws {
        try await uploader.serialized { try await self.upload() }
    }

    private func upload() async throws {
        let work = core.withLock { c -> [(StreamID, UInt64, [StoredBatch])] in
            var work: [(StreamID, UInt64, [StoredBatch])] = []
            for (id, entries) in c.cache.pending(upTo: .max) {
                guard let st = c.streams[id] else { continue }
                let durable = entries.prefix { $0.batch.endOffset <= st.durableEnd }.map(\.batch)
                if !durable.isEmpty { work.append((id, st.epoch, durable)) }
            }
            return work.sorted { $0.0 < $1.0 }
        }
        if !work.isEmpty {
            let started = clock.now()
            defer { instruments.uploadSeconds?.observe(clock.now().duration(since: started)) }
            let id = try await metadata.prepareObject()
            let blockBytes = config.blockBytes
            // Copying and checksumming tens of MiB: on the idle-priority thread, so the Produce
            // path's threads are not held up behind it (docs/benchmarks.md, "Recycled WAL segments").
            let runs = work.map { CompactionExecutor.Run(stream: $0.0, batches: $0.2) }
            let (bytes, built) = try await uploadBuilder.run { CompactionExecutor.build(objectID: id, runs: runs, blockBytes: blockBytes) }
            let ranges = zip(work, built).map { w, b in CommitRange(streamID: b.0, epoch: w.1, range: b.1) }
            let key = ObjectReader.key(config.dataPrefix, id)
            _ = try await objects.put(key, bytes, condition: .none)
            instruments.uploads?.increment()
            instruments.uploadedBytes?.increment(by: bytes.count)
            // If the commit fails the object is left for garbage collection: the failure may be
            // ambiguous (the commit landed but its answer was lost), so deleting here could lose data.
            let rejected = try await metadata.commitUpload(objectID: id, size: UInt64(bytes.count), ranges: ranges)
            if !rejected.isEmpty {
                logger.warning("upload rejected for fenced streams", metadata: ["streams": "\(rejected)", "object": key])
            }
            let rejectedSet = Set(rejected)
            let waiters = core.withLock { c -> [CheckedContinuation<Void, any Error>] in
                for r in ranges {
                    c.cache.markUploaded(r.streamID, below: r.range.endOffset)
                    if rejectedSet.contains(r.streamID), var st = c.streams[r.streamID] {
                        st.fenced = true
                        c.streams[r.streamID] = st
                    }
                }
                guard c.cache.pinnedBytes <= config.maxPinnedBytes else { return [] }
                defer { c.pinnedWaiters = [] }
                return c.pinnedWaiters
            }
            for w in waiters { w.resume() }
            refresh(try await metadata.snapshot())
        }
        let trimTo = core.withLock { $0.trimmablePosition }
        if trimTo > 0 { try await wal.trim(through: trimTo) }
    }

    /// Plans compaction and carries the jobs out; returns how many jobs committed.
    @discardableResult
    public func compactNow() async throws -> Int {
        try await maintainer.serialized { try await self.compact() }
    }

    private func compact() async throws -> Int {
        let manifest = try await metadata.snapshot()
        let jobs = CompactionPlanner.plan(manifest, policy: config.compaction)
        var done = 0
        for job in jobs {
            let m = try await metadata.snapshot()
            guard job.inputs.allSatisfy({ m.objects[$0] != nil }) else { continue }
            let plan = try await CompactionExecutor.read(job: job, manifest: m, objects: objects, dataPrefix: config.dataPrefix, decodeOn: background)
            instruments.compactionReadBytes?.increment(by: Int(job.inputs.reduce(UInt64(0)) { $0 + (m.objects[$1]?.size ?? 0) }))
            var outputs: [(DataObjectInfo, [(StreamID, ObjectRange)])] = []
            do {
                for group in plan.outputGroups where !group.isEmpty {
                    let id = try await metadata.prepareObject()
                    let blockBytes = config.blockBytes
                    let (bytes, ranges) = try await background.run { CompactionExecutor.build(objectID: id, runs: group, blockBytes: blockBytes) }
                    let key = ObjectReader.key(config.dataPrefix, id)
                    _ = try await objects.put(key, bytes, condition: .none)
                    instruments.compactionWrittenBytes?.increment(by: bytes.count)
                    outputs.append((DataObjectInfo(objectID: id, size: UInt64(bytes.count), streamCount: UInt32(Set(ranges.map(\.0)).count),
                                                   createdMillis: nowMillis, level: job.outputLevel), ranges))
                }
                try await metadata.commitCompaction(inputs: job.inputs, outputs: outputs)
                instruments.compactions?.increment()
                done += 1
            } catch {
                // Outputs are left for garbage collection (their prepares expire); see upload.
                if case StreamStorageError.metadataConflict = error {
                    logger.info("compaction job abandoned after a conflict", metadata: ["inputs": "\(job.inputs)", "error": "\(error)"])
                    continue
                }
                throw error
            }
            refresh(try await metadata.snapshot())
        }
        return done
    }

    // MARK: key compaction

    /// The committed ranges of `id` and where its cleaned prefix ends: the end of the ranges
    /// from the front held by key compaction's outputs (`CompactionPolicy.keyCleanedLevel`), or
    /// the first range's start when none is. Everything committed from there on is "dirty".
    func cleaningState(_ id: StreamID) async throws -> KeyCleaningState {
        let m = try await metadata.snapshot()
        guard let meta = m.streams[id] else { throw StreamStorageError.unknownStream(stream: id) }
        var cleanedEnd = meta.ranges.first?.startOffset ?? meta.startOffset
        for r in meta.ranges {
            guard m.objects[r.objectID]?.level == CompactionPolicy.keyCleanedLevel else { break }
            cleanedEnd = r.endOffset
        }
        return KeyCleaningState(epoch: meta.epoch, startOffset: meta.startOffset, ranges: meta.ranges, cleanedEnd: cleanedEnd)
    }

    /// Key compaction of `id`'s committed prefix: reads every batch of the ranges from the first
    /// through the one ending at `end` (a range boundary, so the WAL's and cache's newer data is
    /// never touched), passes them to `transform`, and, unless it returns them unchanged,
    /// writes its result as one new object (level `keyCleanedLevel`, gaps allowed) and swaps it
    /// in with one fenced `commitRewrite`. Offsets are kept: the result's batches keep their base
    /// offsets and must be increasing, inside the prefix, and non-empty. Replaced objects are
    /// deleted only after the commit and the grace period (a crash mid-way loses nothing).
    /// Returns nil when nothing was written.
    func rewrite(_ id: StreamID, epoch: UInt64, through end: Int64,
                 transform: @Sendable ([StoredBatch]) throws -> [StoredBatch]) async throws -> KeyRewriteOutcome? {
        try await maintainer.serialized { try await self.rewriteSerialized(id, epoch: epoch, through: end, transform: transform) }
    }

    private func rewriteSerialized(_ id: StreamID, epoch: UInt64, through end: Int64,
                                   transform: @Sendable ([StoredBatch]) throws -> [StoredBatch]) async throws -> KeyRewriteOutcome? {
        let m = try await metadata.snapshot()
        guard let meta = m.streams[id] else { throw StreamStorageError.unknownStream(stream: id) }
        guard meta.epoch == epoch else { throw StreamStorageError.fenced(stream: id, epoch: epoch, currentEpoch: meta.epoch) }
        guard let k = meta.ranges.firstIndex(where: { $0.endOffset == end }) else {
            throw StreamStorageError.metadataConflict(detail: "stream \(id): \(end) is not the end of a committed range")
        }
        let replaced = Array(meta.ranges[0...k])
        var input: [StoredBatch] = []
        var readBytes = 0
        for r in replaced {
            guard let size = m.objects[r.objectID]?.size else {
                throw StreamStorageError.metadataConflict(detail: "stream \(id): object \(r.objectID) is not committed")
            }
            var offset = r.startOffset
            while offset < r.endOffset {
                let batches = try await reader.read(id, range: r, size: size, from: offset, below: r.endOffset, maxBytes: 4 << 20)
                guard let last = batches.last else { break }
                for b in batches where b.endOffset > meta.startOffset && b.baseOffset >= offset { input.append(b) }
                readBytes += batches.reduce(0) { $0 + $1.bytes.count }
                offset = last.endOffset
            }
        }
        let output = try transform(input)
        let unchanged = output.count == input.count && zip(output, input).allSatisfy { $0.baseOffset == $1.baseOffset && $0.bytes == $1.bytes }
        if unchanged && replaced.allSatisfy({ m.objects[$0.objectID]?.level == CompactionPolicy.keyCleanedLevel }) {
            return KeyRewriteOutcome(readBytes: readBytes, writtenBytes: 0, committed: false)
        }
        guard let first = output.first else {
            throw StreamStorageError.invalidArgument("key compaction of stream \(id) would leave no batch in \(replaced[0].startOffset)..<\(end)")
        }
        var expected = replaced[0].startOffset
        for b in output {
            guard b.baseOffset >= expected, b.recordCount > 0 else {
                throw StreamStorageError.invalidArgument("key compaction of stream \(id): batch at \(b.baseOffset) overlaps or is out of order")
            }
            expected = b.endOffset
        }
        guard expected <= end else {
            throw StreamStorageError.invalidArgument("key compaction of stream \(id): batch ends at \(expected), beyond \(end)")
        }
        let objectID = try await metadata.prepareObject()
        let blockBytes = config.blockBytes
        // Like upload and compaction objects, built on the idle-priority maintenance thread.
        let bytes = try await background.run {
            var builder = DataObjectBuilder(objectID: objectID, blockBytes: blockBytes,
                                            capacity: DataObjectBuilder.capacity(runs: [output.map(\.bytes.count)], blockBytes: blockBytes),
                                            allowGaps: true)
            builder.add(stream: id, batches: output)
            return builder.finish()
        }
        let range = ObjectRange(objectID: objectID, startOffset: min(replaced[0].startOffset, first.baseOffset), endOffset: end,
                                bytes: UInt64(output.reduce(0) { $0 + $1.bytes.count }),
                                maxAppendTimeMillis: output.map(\.appendTimeMillis).max()!)
        _ = try await objects.put(ObjectReader.key(config.dataPrefix, objectID), bytes, condition: .none)
        // If the commit fails the object is left for garbage collection (its prepare expires).
        try await metadata.commitRewrite(id, epoch: epoch, object: DataObjectInfo(
            objectID: objectID, size: UInt64(bytes.count), streamCount: 1, createdMillis: nowMillis, level: CompactionPolicy.keyCleanedLevel),
            ranges: [range])
        // The cache may still hold the uncleaned batches below `end`: readers go to the new object.
        core.withLock { $0.cache.trim(id, below: end) }
        refresh(try await metadata.snapshot())
        return KeyRewriteOutcome(readBytes: readBytes, writtenBytes: bytes.count, committed: true)
    }

    /// Trims streams by `policy` (whole objects only) and schedules unreferenced objects for deletion.
    public func applyRetention(_ policy: RetentionPolicy) async throws {
        try await maintainer.serialized {
            let m = try await self.metadata.snapshot()
            let now = self.nowMillis
            let owned = self.core.withLock { c in c.streams.filter { !$0.value.fenced && !$0.value.closed }.mapValues(\.epoch) }
            for (id, epoch) in owned.sorted(by: { $0.key < $1.key }) {
                guard let meta = m.streams[id], meta.epoch == epoch,
                      let start = RetentionPlanner.newStartOffset(meta, policy: policy, nowMillis: now) else { continue }
                try await self.trim(id, epoch: epoch, to: start)
            }
        }
    }

    /// Trims one stream by `policy` (whole objects only), as `applyRetention(_:)` does for all.
    func applyRetention(_ id: StreamID, epoch: UInt64, policy: RetentionPolicy) async throws {
        try await maintainer.serialized {
            let m = try await self.metadata.snapshot()
            guard let meta = m.streams[id], meta.epoch == epoch,
                  let start = RetentionPlanner.newStartOffset(meta, policy: policy, nowMillis: self.nowMillis) else { return }
            try await self.trim(id, epoch: epoch, to: start)
        }
    }

    /// Deletes objects whose grace period has passed (uncommitted uploads, replaced or trimmed objects).
    public func collectGarbage() async throws {
        try await maintainer.serialized {
            let manifest = try await self.metadata.snapshot()
            let due = manifest.dueGarbage(nowMillis: self.nowMillis)
            guard !due.isEmpty else { return }
            var deleted: [UInt64] = []
            for id in due {
                let key = ObjectReader.key(self.config.dataPrefix, id)
                do {
                    try await self.objects.delete(key)
                    deleted.append(id)
                    self.instruments.deletedObjects?.increment()
                    self.instruments.deletedBytes?.increment(by: Int(manifest.deletions[id]?.bytes ?? 0))
                } catch ObjectStoreError.notFound {
                    deleted.append(id)
                } catch {
                    self.logger.warning("garbage object not deleted; will retry", metadata: ["key": key, "error": "\(error)"])
                }
            }
            try await self.metadata.forgetGarbage(deleted)
            self.reader.forget(deleted)
            self.refresh(try await self.metadata.snapshot())
        }
    }

    /// The maintenance service, two loops that never wait for each other: uploads every
    /// `maintenanceInterval` or as soon as `uploadTriggerBytes` are pinned; and, every
    /// `maintenanceInterval`, compaction, retention and garbage collection. A compaction job
    /// can take seconds (inputs read and outputs built at idle priority); appends waiting on
    /// `maxPinnedBytes` must not wait for it too. The two commit through the manifest's
    /// compare-and-swap and touch different objects. Cancel the task to stop both. Errors are
    /// logged and retried at the next round.
    public func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.uploadLoop() }
            group.addTask { await self.bucketLoop() }
            await group.waitForAll()
        }
    }

    private func uploadLoop() async {
        while !Task.isCancelled {
            await wake.wait(orSleep: config.maintenanceInterval, clock: clock)
            if Task.isCancelled { break }
            do {
                try await uploadNow()
            } catch {
                logger.warning("stream upload round failed", metadata: ["error": "\(error)"])
            }
            observeMemory()
        }
    }

    private func bucketLoop() async {
        while !Task.isCancelled {
            do { try await clock.sleep(for: config.maintenanceInterval) } catch { break }
            do {
                let shared = bucketWide.withLock { $0 }()
                if shared { try await compactNow() }
                if let retention = config.retention { try await applyRetention(retention) }
                if shared { try await collectGarbage() }
            } catch {
                logger.warning("stream maintenance round failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// The large memory pools, as gauges: the log cache (pinned included) and the block cache.
    func observeMemory() {
        guard let registry = instruments.registry else { return }
        let (cached, pinned) = core.withLock { ($0.cache.totalBytes, $0.cache.pinnedBytes) }
        registry.gauge("floe_stream_log_cache_bytes", help: "Batch bytes held by the log cache, pinned (not yet uploaded) included.")
            .set(Double(cached))
        registry.gauge("floe_stream_pinned_bytes", help: "Appended bytes not yet in data objects.").set(Double(pinned))
        registry.gauge("floe_stream_block_cache_bytes", help: "Block bytes held by the cold-read block cache.").set(Double(reader.cachedBytes))
    }

    /// Stops accepting appends, waits for those in flight, uploads everything, trims and
    /// closes the WAL.
    public func close() async throws {
        let last = core.withLock { c -> WALAppendTicket? in
            c.closed = true
            return c.lastTicket
        }
        wal.flush()
        if let last { _ = try await last.wait() }
        try await uploadNow()
        try await wal.close()
        let waiters = core.withLock { c -> [CheckedContinuation<Void, any Error>] in defer { c.pinnedWaiters = [] }; return c.pinnedWaiters }
        for w in waiters { w.resume(throwing: StreamStorageError.closed(what: "stream store")) }
    }

    /// Simulates a crash: the WAL stops at once and this store fails every later call.
    public func abandon() async {
        let waiters = core.withLock { c -> [CheckedContinuation<Void, any Error>] in
            c.failure = c.failure ?? StreamStorageError.closed(what: "stream store (abandoned)")
            defer { c.pinnedWaiters = [] }
            return c.pinnedWaiters
        }
        for w in waiters { w.resume(throwing: StreamStorageError.closed(what: "stream store (abandoned)")) }
        await wal.abandon()
    }

    /// Block-cache hits and misses, for tests and the benchmark.
    public var blockCacheCounters: (hits: Int, misses: Int) { reader.counters }
    /// `config.coldReads.isolated`, switchable at run time (the benchmark compares both).
    public var coldReadsIsolated: Bool {
        get { reader.isolated }
        set { reader.isolated = newValue }
    }
    /// Replaces `config.coldReads.bytesPerSecond` at run time (nil: unlimited).
    public func setColdReadRate(bytesPerSecond: Int?) { reader.setRate(bytesPerSecond: bytesPerSecond) }
    /// What the cold-read threads' priority setting gave, one entry per started thread.
    public var coldReadThreadPriorities: [String] { reader.pool.appliedPriorities }
}

/// The store's Prometheus instruments (all absent without a registry). Write amplification is
/// (`floe_stream_uploaded_bytes_total` + `floe_stream_compaction_written_bytes_total`) /
/// `floe_stream_appended_bytes_total`; space amplification is (`floe_stream_object_bytes` +
/// `floe_stream_garbage_bytes`) / `floe_stream_live_bytes`.
struct Instruments: Sendable {
    let appendSeconds: Histogram?
    let appendedBytes: Counter?
    let pinnedBytes: Gauge?
    let uploads: Counter?
    let uploadedBytes: Counter?
    let uploadSeconds: Histogram?
    let pinnedWaits: Counter?
    let pinnedWaitSeconds: Counter?
    let compactions: Counter?
    let compactionReadBytes: Counter?
    let compactionWrittenBytes: Counter?
    let deletedObjects: Counter?
    let deletedBytes: Counter?
    let registry: MetricsRegistry?

    /// Gauges of the committed state: live bytes, object bytes and counts by level, garbage.
    func observe(_ m: Manifest) {
        guard let registry else { return }
        var live: UInt64 = 0
        for s in m.streams.values { for r in s.ranges { live += r.bytes } }
        var objectBytes: UInt64 = 0
        var byLevel: [UInt8: Int] = [:]
        for o in m.objects.values {
            objectBytes += o.size
            byLevel[o.level, default: 0] += 1
        }
        registry.gauge("floe_stream_live_bytes", help: "Batch bytes of committed stream ranges (what retention keeps).").set(Double(live))
        registry.gauge("floe_stream_object_bytes", help: "Bytes of committed data objects.").set(Double(objectBytes))
        for level in Set(Array(0...3) + byLevel.keys.map(Int.init)).sorted() {
            registry.gauge("floe_stream_objects", help: "Committed data objects, by compaction level (0: uploads).",
                           labels: ["level": String(level)]).set(Double(byLevel[UInt8(level)] ?? 0))
        }
        registry.gauge("floe_stream_garbage_objects", help: "Unreferenced objects waiting for their grace period to pass.")
            .set(Double(m.deletions.count))
        registry.gauge("floe_stream_garbage_bytes", help: "Bytes of unreferenced objects waiting for their grace period to pass.")
            .set(Double(m.deletions.values.reduce(UInt64(0)) { $0 + $1.bytes }))
    }

    init(_ registry: MetricsRegistry?) {
        self.registry = registry
        compactionReadBytes = registry?.counter("floe_stream_compaction_read_bytes_total", help: "Bytes of objects read by compaction.")
        compactionWrittenBytes = registry?.counter("floe_stream_compaction_written_bytes_total", help: "Bytes of objects written by compaction.")
        deletedObjects = registry?.counter("floe_stream_deleted_objects_total", help: "Data objects deleted after their grace period.")
        deletedBytes = registry?.counter("floe_stream_deleted_bytes_total", help: "Bytes of data objects deleted after their grace period.")
        appendSeconds = registry?.histogram("floe_stream_append_seconds", help: "Time from append to durable in the WAL.",
                                            buckets: Histogram.fineLatencyBuckets)
        appendedBytes = registry?.counter("floe_stream_appended_bytes_total", help: "Batch bytes appended to streams.")
        pinnedBytes = registry?.gauge("floe_stream_pinned_bytes", help: "Appended bytes not yet in data objects.")
        uploads = registry?.counter("floe_stream_uploads_total", help: "Data objects uploaded from the WAL.")
        uploadedBytes = registry?.counter("floe_stream_uploaded_bytes_total", help: "Bytes of data objects uploaded from the WAL.")
        uploadSeconds = registry?.histogram("floe_stream_upload_seconds",
                                            help: "Time to move pinned batches into one data object: prepare, build, write, commit.")
        pinnedWaits = registry?.counter("floe_stream_pinned_waits_total",
                                        help: "Appends that waited because more than max.pinned.bytes were not yet in data objects.")
        pinnedWaitSeconds = registry?.counter("floe_stream_pinned_wait_seconds_total",
                                              help: "Time appends spent waiting for pinned bytes to fall below max.pinned.bytes.")
        compactions = registry?.counter("floe_stream_compactions_total", help: "Compaction jobs committed.")
    }
}

/// How the caller of `Stream.append(reserved:recordCount:)` learns that its batch is durable:
/// by awaiting `wait()`, or through `notify(_:)`, which calls back on the thread that made it
/// durable (no task, no executor hop). Use one of the two, once: each records the append's
/// metrics and advances the stream's durable end.
public struct AppendDurability: Sendable {
    let ticket: WALAppendTicket
    /// The store's bookkeeping for the outcome (durable end, metrics, failure).
    let settle: @Sendable (Result<WALPosition, any Error>) -> Result<Void, any Error>

    /// Returns once the batch (and every batch before it in the stream) is durable; throws if it
    /// can never become durable.
    public func wait() async throws {
        let outcome: Result<WALPosition, any Error>
        do { outcome = .success(try await ticket.wait()) } catch { outcome = .failure(error) }
        try settle(outcome).get()
    }

    /// Calls `done` once with the outcome, at once if it is known. `done` must be short and must
    /// not block (it may run on the WAL's writer thread).
    public func notify(_ done: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        ticket.onCompletion { [settle] outcome in done(settle(outcome)) }
    }
}

/// A handle on one stream at one epoch. Appends under an older epoch than the stream's
/// current one fail with `StreamStorageError.fenced`.
///
/// Invariants: offsets are contiguous; `append` returns only once the batch is durable in the
/// WAL, and acknowledged batches of a stream are durable in offset order; reads return only
/// acknowledged batches, starting with the batch that contains the requested offset.
///
/// Example: start 0, end 0. `append(b1, recordCount: 3)` → 0, `append(b2, recordCount: 2)` → 3;
/// `endOffset == 5`; `read(from: 4, maxBytes: 1)` → [b2]; `trim(to: 3)` → `startOffset == 3`
/// and `read(from: 1, ...)` throws `offsetOutOfRange`.
public final class Stream: Sendable {
    public let id: StreamID
    public let epoch: UInt64
    let store: StreamStore

    init(store: StreamStore, id: StreamID, epoch: UInt64) {
        self.store = store
        self.id = id
        self.epoch = epoch
    }

    /// Appends one record batch (opaque bytes holding `recordCount` records) and returns its
    /// base offset once durable.
    public func append(_ batch: [UInt8], recordCount: Int32) async throws -> Int64 {
        try await store.append(id, epoch: epoch, bytes: batch, recordCount: recordCount)
    }

    /// Waits for room for one batch of `batchBytes` bytes; then `append(reserved:recordCount:)`
    /// (or `unreserve`) must follow. Splitting the wait from the append lets a caller assign
    /// offsets in its own order without waiting inside that order.
    public func reserve(batchBytes: Int) async throws {
        try await store.reserve(batchBytes: batchBytes)
    }

    /// Returns a reservation made with `reserve(batchBytes:)` that will not be used.
    public func unreserve(batchBytes: Int) {
        store.unreserve(batchBytes: batchBytes)
    }

    /// Appends a batch whose room was reserved: the base offset is assigned now, in call order;
    /// the returned `AppendDurability` tells when the batch is durable (and every batch before it).
    ///
    /// Example: `try await s.reserve(batchBytes: b.count)`, then under the caller's lock
    /// `let (base, durable) = try s.append(reserved: b, recordCount: 3)`, then `try await durable.wait()`.
    public func append(reserved batch: [UInt8], recordCount: Int32) throws -> (baseOffset: Int64, durable: AppendDurability) {
        try store.appendReserved(id, epoch: epoch, bytes: batch, recordCount: recordCount)
    }

    /// Applies a retention policy to this stream only (whole objects from the front).
    public func applyRetention(_ policy: RetentionPolicy) async throws {
        try await store.applyRetention(id, epoch: epoch, policy: policy)
    }

    /// The committed ranges and the cleaned prefix, for key compaction.
    public func cleaningState() async throws -> KeyCleaningState {
        try await store.cleaningState(id)
    }

    /// Key compaction of the committed prefix ending at `end` (a range end): see
    /// `StreamStore.rewrite`. Fenced by this handle's epoch.
    public func rewrite(through end: Int64, transform: @escaping @Sendable ([StoredBatch]) throws -> [StoredBatch]) async throws -> KeyRewriteOutcome? {
        try await store.rewrite(id, epoch: epoch, through: end, transform: transform)
    }

    /// The offset the next append gets (appends not yet durable included).
    public var nextOffset: Int64 { store.nextOffset(id) }

    /// Batches from the one containing `offset`, up to about `maxBytes` (at least one batch if
    /// any). Reading at `endOffset` returns `[]`.
    public func read(from offset: Int64, maxBytes: Int) async throws -> [StoredBatch] {
        try await store.read(id, from: offset, maxBytes: maxBytes)
    }

    /// Moves the start offset forward to `offset` (clamped to `endOffset`).
    public func trim(to offset: Int64) async throws {
        try await store.trim(id, epoch: epoch, to: offset)
    }

    public var startOffset: Int64 { store.offsets(id).start }
    public var endOffset: Int64 { store.offsets(id).end }

    /// Makes every appended batch durable in objects; later appends on this handle fail.
    public func close() async throws {
        try await store.closeStream(id, epoch: epoch)
    }
}

/// What key compaction needs to know of a stream: its committed ranges and where the cleaned
/// prefix ends (see `Stream.cleaningState()`).
public struct KeyCleaningState: Sendable, Equatable {
    public var epoch: UInt64
    public var startOffset: Int64
    public var ranges: [ObjectRange]
    /// End of the ranges from the front that key compaction wrote (first range's start if none).
    public var cleanedEnd: Int64
    /// Committed bytes in the cleaned prefix and after it.
    public var cleanBytes: UInt64 { ranges.filter { $0.endOffset <= cleanedEnd }.reduce(0) { $0 + $1.bytes } }
    public var dirtyBytes: UInt64 { ranges.filter { $0.endOffset > cleanedEnd }.reduce(0) { $0 + $1.bytes } }

    public init(epoch: UInt64, startOffset: Int64, ranges: [ObjectRange], cleanedEnd: Int64) {
        self.epoch = epoch
        self.startOffset = startOffset
        self.ranges = ranges
        self.cleanedEnd = cleanedEnd
    }
}

/// The result of one `Stream.rewrite(through:transform:)`.
public struct KeyRewriteOutcome: Sendable, Equatable {
    public var readBytes: Int
    public var writtenBytes: Int
    /// False when the transform changed nothing on an already cleaned prefix (nothing written).
    public var committed: Bool
}

/// Runs operations one at a time (FIFO): one instance for uploads, one for compaction,
/// retention and garbage collection.
actor Maintainer {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func serialized<R: Sendable>(_ body: @Sendable () async throws -> R) async throws -> R {
        if busy {
            await withCheckedContinuation { waiters.append($0) }
        }
        busy = true
        defer {
            if waiters.isEmpty { busy = false } else { waiters.removeFirst().resume() }
        }
        return try await body()
    }
}
