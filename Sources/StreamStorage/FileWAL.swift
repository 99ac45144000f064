import Bytes
import Foundation
import Support
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The local-file WAL: segment files in one directory, written and fsync'ed by one dedicated
/// thread (never the cooperative pool). Appends that arrive while a write + fsync is running
/// are committed together by the next one (group commit).
///
/// Files: `wal-<20-digit first position>.seg` (see `WALSegmentHeader`). A new segment is
/// started when the current one exceeds `segmentBytes`, and always after opening (old segments
/// are never appended to). Recovery cuts a torn record off the end of the newest segment.
///
/// Trimmed segments are recycled, not deleted: up to `spareSegments` of them are renamed to
/// `wal-<first>.spare` and become later segments by getting a new header and name. Writing over
/// blocks a file already owns changes no metadata, so a commit's `fdatasync` needs no journal
/// commit; and nothing is freed, so a file system mounted with online discard (`-o discard`)
/// does not stall every commit behind the discard of a deleted 64 MiB segment. Records in a
/// version 2 segment carry a CRC XOR'ed with the segment's random salt (in its header), so what
/// is left of the file's earlier use ends the segment on recovery instead of being replayed.
///
/// Example: positions 1...3 in `wal-00000000000000000001.seg`, 4... in
/// `wal-00000000000000000004.seg`; `trim(through: 3)` renames the first file to
/// `wal-00000000000000000001.spare`, which the next roll reuses.
public final class FileWAL: WriteAheadLog {
    public struct Config: Sendable {
        public var segmentBytes: Int = 64 << 20
        public var maxBufferedBytes: Int = 32 << 20
        /// Off only for benchmarks that measure the cost of fsync.
        public var fsync: Bool = true
        /// Trimmed segments kept for reuse (each about `segmentBytes` of disk); more are deleted.
        public var spareSegments: Int = 2
        public init(segmentBytes: Int = 64 << 20, maxBufferedBytes: Int = 32 << 20, fsync: Bool = true, spareSegments: Int = 2) {
            self.segmentBytes = segmentBytes
            self.maxBufferedBytes = maxBufferedBytes
            self.fsync = fsync
            self.spareSegments = spareSegments
        }
    }

    private struct Pending {
        var bytes: [UInt8]
        var ticket: WALAppendTicket
        var position: WALPosition
        var appendedAt: ContinuousClock.Instant
    }

    private struct State {
        var pending: [Pending] = []
        var nextPosition: WALPosition = 1
        var failure: StreamStorageError? = nil
        var closing = false
        var trimThrough: WALPosition = 0
        var closeWaiter: CheckedContinuation<Void, Never>? = nil
        var stopped = false
        /// The append time of the oldest record the writer thread is writing now.
        var writingSince: ContinuousClock.Instant? = nil
    }

    public let name: String
    public let recovered: [(WALPosition, WALRecord)]
    private let directory: URL
    private let config: Config
    private let budget: ByteBudget
    private let state: Mutex<State>
    private let wake = DispatchSemaphore(value: 0)
    /// An exclusive `flock` on `<directory>/LOCK`, held until the writer thread stops: a second
    /// writer on the same directory (another process, or a stale instance) cannot open it.
    private let lockFD: Int32
    private let instruments: Instruments

    /// Where an append's time to durable goes: waiting for the commit before it, then its own
    /// write + `fdatasync`.
    private struct Instruments: Sendable {
        let queueSeconds: Histogram?
        let commitSeconds: Histogram?
        let commitRecords: Histogram?

        init(_ registry: MetricsRegistry?) {
            queueSeconds = registry?.histogram("floe_wal_queue_seconds",
                                               help: "File WAL: time the oldest record of a group commit waited for the commit before it.",
                                               buckets: Histogram.subMillisecondBuckets)
            commitSeconds = registry?.histogram("floe_wal_commit_seconds", help: "File WAL: write and fdatasync of one group commit.",
                                                buckets: Histogram.subMillisecondBuckets)
            commitRecords = registry?.histogram("floe_wal_commit_records", help: "File WAL: records made durable by one group commit.",
                                                buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
        }
    }

    /// Opens (creating if needed) the WAL in `directory` and recovers its records.
    public static func open(directory: URL, config: Config = Config(), metrics: MetricsRegistry? = nil) async throws -> FileWAL {
        let dir = directory
        // Recovery is blocking file I/O: run it on a dedicated thread.
        let (recovery, lock): (Recovery, Int32) = try await withCheckedThrowingContinuation { c in
            startNamedThread("floe-wal-recover") {
                do {
                    let lock = try FileWAL.lockDirectory(dir)
                    do {
                        c.resume(returning: (try FileWAL.recover(dir), lock))
                    } catch {
                        Glibc.close(lock)
                        throw error
                    }
                } catch { c.resume(throwing: error) }
            }
        }
        return FileWAL(directory: dir, config: config, recovery: recovery, lock: lock, instruments: Instruments(metrics))
    }

    private init(directory: URL, config: Config, recovery: Recovery, lock: Int32, instruments: Instruments) {
        self.instruments = instruments
        self.directory = directory
        self.lockFD = lock
        self.config = config
        self.name = directory.path
        self.recovered = recovery.records
        self.budget = ByteBudget(limit: config.maxBufferedBytes)
        var s = State()
        s.nextPosition = recovery.nextPosition
        state = Mutex(s)
        startNamedThread("floe-wal-writer") { [self] in self.writerLoop(segments: recovery.segments, spares: recovery.spares) }
    }

    public func reserve(bytes: Int) async throws { try await budget.reserve(bytes) }
    public func unreserve(bytes: Int) { budget.release(bytes) }

    public func append(_ record: WALRecord) throws -> WALAppendTicket {
        var w = ByteWriter(capacity: record.encodedSize)
        record.encode(into: &w)
        let bytes = w.take()
        let ticket = try state.withLock { s throws(StreamStorageError) -> WALAppendTicket in
            if let f = s.failure { throw f }
            if s.closing { throw .closed(what: "WAL \(name)") }
            let ticket = WALAppendTicket(position: s.nextPosition)
            s.pending.append(Pending(bytes: bytes, ticket: ticket, position: s.nextPosition, appendedAt: .now))
            s.nextPosition += 1
            return ticket
        }
        wake.signal()
        return ticket
    }

    /// Nothing to do: the writer thread always commits everything pending.
    public func flush() {}

    public var oldestPendingAppend: ContinuousClock.Instant? {
        state.withLock { s in s.failure != nil ? nil : (s.writingSince ?? s.pending.first?.appendedAt) }
    }

    public func trim(through position: WALPosition) async throws {
        state.withLock { $0.trimThrough = max($0.trimThrough, position) }
        wake.signal()
    }

    public func close() async throws {
        await stopWriterThread()
        budget.fail(StreamStorageError.closed(what: "WAL \(name)"))
    }

    /// Asks the writer thread to finish and waits until it has stopped.
    private func stopWriterThread() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let stopped = state.withLock { s -> Bool in
                s.closing = true
                if s.stopped { return true }
                s.closeWaiter = c
                return false
            }
            if stopped { c.resume() } else { wake.signal() }
        }
    }

    public func abandon() async {
        let dropped = state.withLock { s -> [Pending] in
            s.failure = s.failure ?? .closed(what: "WAL \(name) (abandoned)")
            defer { s.pending = [] }
            return s.pending
        }
        for p in dropped { p.ticket.complete(.failure(StreamStorageError.closed(what: "WAL \(name) (abandoned)"))) }
        await stopWriterThread()
        budget.fail(StreamStorageError.closed(what: "WAL \(name) (abandoned)"))
    }

    // MARK: writer thread

    private struct Segment {
        var fd: Int32
        /// Bytes written so far: the offset of the next write.
        var size: Int
        var crcSalt: UInt32
    }

    private func writerLoop(segments recoveredSegments: [(WALPosition, URL)], spares recoveredSpares: [URL]) {
        var segment: Segment? = nil
        var segments = recoveredSegments
        var spares = recoveredSpares
        var trimmedThrough: WALPosition = 0
        while true {
            wake.wait()
            let (batch, trimTo, closing) = state.withLock { s -> ([Pending], WALPosition, Bool) in
                defer { s.pending = [] }
                s.writingSince = s.pending.first?.appendedAt
                return (s.pending, s.trimThrough, s.closing)
            }
            defer { state.withLock { $0.writingSince = nil } }
            if !batch.isEmpty {
                do {
                    if segment == nil || segment!.size >= config.segmentBytes {
                        if let old = segment { Glibc.close(old.fd) }
                        let first = batch[0].position
                        let url = directory.appendingPathComponent(FileWAL.segmentName(first))
                        segment = try startSegment(url, firstPosition: first, spare: spares.popLast())
                        segments.append((first, url))
                    }
                    var all: [UInt8] = []
                    all.reserveCapacity(batch.reduce(0) { $0 + $1.bytes.count })
                    let salt = segment!.crcSalt
                    for p in batch {
                        let start = all.count
                        all.append(contentsOf: p.bytes)
                        // The stored CRC (bytes 4..<8 of a record, big-endian) carries the segment's salt.
                        for i in 0..<4 { all[start + 4 + i] ^= UInt8(truncatingIfNeeded: salt >> (24 - 8 * i)) }
                    }
                    let started = ContinuousClock.now
                    instruments.queueSeconds?.observe(started - batch[0].appendedAt)
                    try writeAll(segment!.fd, all, at: segment!.size, path: segments.last!.1.path)
                    if config.fsync { try syncData(segment!.fd, path: segments.last!.1.path) }
                    instruments.commitSeconds?.observe(ContinuousClock.now - started)
                    instruments.commitRecords?.observe(Double(batch.count))
                    segment!.size += all.count
                    for p in batch {
                        p.ticket.complete(.success(p.position))
                        budget.release(p.bytes.count)
                    }
                } catch {
                    let failure: StreamStorageError = error
                    let rest = state.withLock { s -> [Pending] in
                        s.failure = failure
                        defer { s.pending = [] }
                        return s.pending
                    }
                    for p in batch + rest {
                        p.ticket.complete(.failure(failure))
                        budget.release(p.bytes.count)
                    }
                    budget.fail(failure)
                }
            }
            if trimTo > trimmedThrough {
                // A segment can go when the next one starts at or before trimTo + 1; never the active one.
                while segments.count > 1 && segments[1].0 <= trimTo + 1 {
                    let (first, url) = segments.removeFirst()
                    if spares.count < config.spareSegments {
                        // No directory fsync: if the rename is lost in a crash, the segment is
                        // replayed idempotently like any other leftover.
                        let spare = directory.appendingPathComponent(FileWAL.spareName(first))
                        if rename(url.path, spare.path) == 0 {
                            spares.append(spare)
                            continue
                        }
                    }
                    if unlink(url.path) != 0 && errno != ENOENT {
                        // Keep going: a leftover segment is replayed idempotently.
                        FileHandle.standardError.write(Data("floe: WAL trim could not delete \(url.path): \(posixErrorText(errno))\n".utf8))
                    }
                }
                trimmedThrough = trimTo
            }
            if closing {
                let (done, waiter) = state.withLock { s -> (Bool, CheckedContinuation<Void, Never>?) in
                    guard s.pending.isEmpty else { return (false, nil) }
                    s.stopped = true
                    defer { s.closeWaiter = nil }
                    return (true, s.closeWaiter)
                }
                if done {
                    if let fd = segment?.fd { Glibc.close(fd) }
                    Glibc.close(lockFD)
                    waiter?.resume()
                    return
                }
                wake.signal()
            }
        }
    }

    /// Starts the segment `url` for positions from `firstPosition`: a spare gets the new header
    /// and is renamed, otherwise a new file is created. Both are durable (file and directory
    /// synced) before anything is written into the segment.
    private func startSegment(_ url: URL, firstPosition: WALPosition, spare: URL?) throws(StreamStorageError) -> Segment {
        let salt = WALSegmentHeader.newSalt()
        let header = WALSegmentHeader.encode(firstPosition: firstPosition, crcSalt: salt)
        let fd: Int32
        if let spare {
            fd = Glibc.open(spare.path, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { throw .io(operation: "open spare WAL segment", key: spare.path, detail: posixErrorText(errno)) }
        } else {
            fd = Glibc.open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw .io(operation: "create WAL segment", key: url.path, detail: posixErrorText(errno)) }
        }
        let path = (spare ?? url).path
        do throws(StreamStorageError) {
            try writeAll(fd, header, at: 0, path: path)
            if config.fsync { try syncData(fd, path: path) }
            if let spare, rename(spare.path, url.path) != 0 {
                throw .io(operation: "rename spare WAL segment to \(url.lastPathComponent)", key: spare.path, detail: posixErrorText(errno))
            }
            if config.fsync {
                let dfd = Glibc.open(directory.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                if dfd >= 0 {
                    defer { Glibc.close(dfd) }
                    if fsync(dfd) != 0 { throw .io(operation: "fsync", key: directory.path, detail: posixErrorText(errno)) }
                }
            }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return Segment(fd: fd, size: header.count, crcSalt: salt)
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8], at offset: Int, path: String) throws(StreamStorageError) {
        var done = 0
        let err: Int32? = bytes.withUnsafeBytes { raw in
            while done < raw.count {
                let n = Glibc.pwrite(fd, raw.baseAddress! + done, raw.count - done, off_t(offset + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                done += n
            }
            return nil
        }
        if let err { throw .io(operation: "write WAL segment", key: path, detail: posixErrorText(err)) }
    }

    /// `fdatasync`: the data and the size, not the timestamps (no journal commit when a
    /// recycled segment is written over).
    private func syncData(_ fd: Int32, path: String) throws(StreamStorageError) {
        if fdatasync(fd) != 0 { throw .io(operation: "fdatasync", key: path, detail: posixErrorText(errno)) }
    }

    // MARK: recovery (blocking; runs on a dedicated thread)

    static func segmentName(_ first: WALPosition) -> String {
        let digits = String(first)
        return "wal-" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".seg"
    }

    /// A trimmed segment kept for reuse, named by the first position it had.
    static func spareName(_ first: WALPosition) -> String {
        String(segmentName(first).dropLast(4)) + ".spare"
    }

    static func listSegments(_ dir: URL, suffix: String = ".seg") throws -> [(WALPosition, URL)] {
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        return names.compactMap { name -> (WALPosition, URL)? in
            guard name.hasPrefix("wal-"), name.hasSuffix(suffix), let p = UInt64(name.dropFirst(4).dropLast(suffix.count)) else { return nil }
            return (p, dir.appendingPathComponent(name))
        }.sorted { $0.0 < $1.0 }
    }

    /// Further attempts at the LOCK file, 50 ms apart, before it counts as held by another process.
    static let lockAttempts = 20

    static func lockDirectory(_ dir: URL) throws -> Int32 {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("LOCK").path
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StreamStorageError.io(operation: "open WAL lock", key: path, detail: posixErrorText(errno)) }
        // Retried for a second: a lock just released can still be held for a moment by a child
        // process being spawned (it shares the open file until its exec closes it), and a
        // restarted broker may start while the old process is exiting.
        for attempt in 0...lockAttempts {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return fd }
            let e = errno
            guard e == EWOULDBLOCK, attempt < lockAttempts else {
                Glibc.close(fd)
                throw StreamStorageError.walFenced(wal: dir.path, epoch: 0, detail: "another process holds its LOCK file \(path) (\(posixErrorText(e)))")
            }
            usleep(50_000)
        }
        return fd
    }

    struct Recovery {
        var records: [(WALPosition, WALRecord)]
        var nextPosition: WALPosition
        var segments: [(WALPosition, URL)]
        var spares: [URL]
    }

    static func recover(_ dir: URL) throws -> Recovery {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let segments = try listSegments(dir)
        var records: [(WALPosition, WALRecord)] = []
        var next: WALPosition? = nil
        var kept: [(WALPosition, URL)] = []
        for (index, (namedFirst, url)) in segments.enumerated() {
            let isLast = index == segments.count - 1
            let data = try [UInt8](Data(contentsOf: url))
            if data.count < WALSegmentHeader.size && isLast && (try? WALSegmentHeader.decode(data[...], key: url.path)) == nil {
                // Torn while being created: nothing in it was acknowledged. Positions go on
                // from its name.
                try FileManager.default.removeItem(at: url)
                next = next ?? namedFirst
                continue
            }
            let header = try WALSegmentHeader.decode(data[...], key: url.path)
            let first = header.firstPosition
            guard first == namedFirst, next == nil || first == next else {
                throw StreamStorageError.corrupt(what: "WAL segment", key: url.path, detail: "starts at position \(first), expected \(next ?? namedFirst)")
            }
            // A version 2 segment ends at its first record that does not verify: after it comes
            // the file's earlier use. The next segment's start (checked above) shows whether
            // anything was lost; only the newest segment can end in a torn write.
            let endsAtFirstBadRecord = isLast || header.version >= 2
            var reader = ByteReader(data[header.size...])
            var position = first
            var goodEnd = header.size
            while !reader.isAtEnd {
                let decoded: WALRecord.Decoded
                if endsAtFirstBadRecord {
                    let attempt = Result { () throws(StreamStorageError) -> WALRecord.Decoded in
                        try WALRecord.decode(&reader, key: url.path, crcSalt: header.crcSalt)
                    }
                    switch attempt {
                    case let .success(d): decoded = d
                    case .failure: decoded = .torn
                    }
                } else {
                    decoded = try WALRecord.decode(&reader, key: url.path)
                }
                guard case let .record(r) = decoded else {
                    guard endsAtFirstBadRecord else {
                        throw StreamStorageError.corrupt(what: "WAL segment", key: url.path, detail: "torn record in a sealed segment at byte \(goodEnd)")
                    }
                    if isLast && truncate(url.path, off_t(goodEnd)) != 0 {
                        throw StreamStorageError.io(operation: "truncate torn WAL tail", key: url.path, detail: posixErrorText(errno))
                    }
                    break
                }
                records.append((position, r))
                position += 1
                goodEnd = reader.offset + header.size
            }
            if isLast && position == first {
                // Started but nothing written in it: the next segment takes its name and
                // positions go on from its first (never back to 1: a recycled file's salt is
                // what tells its old records from new ones, and positions name the files).
                try FileManager.default.removeItem(at: url)
                next = first
                continue
            }
            kept.append((first, url))
            next = position
        }
        let spares = try listSegments(dir, suffix: ".spare").map(\.1)
        return Recovery(records: records, nextPosition: next ?? 1, segments: kept, spares: spares)
    }
}

/// `strerror`'s text with the number: "No space left on device (errno 28)".
func posixErrorText(_ code: Int32) -> String { "\(String(cString: strerror(code))) (errno \(code))" }
