import Bytes
import Foundation
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
/// Example: positions 1...3 in `wal-00000000000000000001.seg`, 4... in
/// `wal-00000000000000000004.seg`; `trim(through: 3)` deletes the first file.
public final class FileWAL: WriteAheadLog {
    public struct Config: Sendable {
        public var segmentBytes: Int = 64 << 20
        public var maxBufferedBytes: Int = 32 << 20
        /// Off only for benchmarks that measure the cost of fsync.
        public var fsync: Bool = true
        public init(segmentBytes: Int = 64 << 20, maxBufferedBytes: Int = 32 << 20, fsync: Bool = true) {
            self.segmentBytes = segmentBytes
            self.maxBufferedBytes = maxBufferedBytes
            self.fsync = fsync
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

    /// Opens (creating if needed) the WAL in `directory` and recovers its records.
    public static func open(directory: URL, config: Config = Config()) async throws -> FileWAL {
        let dir = directory
        // Recovery is blocking file I/O: run it on a dedicated thread.
        let (records, next, segments, lock): ([(WALPosition, WALRecord)], WALPosition, [(WALPosition, URL)], Int32) = try await withCheckedThrowingContinuation { c in
            let thread = Thread {
                do {
                    let lock = try FileWAL.lockDirectory(dir)
                    do {
                        let (r, n, s) = try FileWAL.recover(dir)
                        c.resume(returning: (r, n, s, lock))
                    } catch {
                        Glibc.close(lock)
                        throw error
                    }
                } catch { c.resume(throwing: error) }
            }
            thread.name = "floe-wal-recover"
            thread.start()
        }
        return FileWAL(directory: dir, config: config, recovered: records, nextPosition: next, segments: segments, lock: lock)
    }

    private init(directory: URL, config: Config, recovered: [(WALPosition, WALRecord)], nextPosition: WALPosition, segments: [(WALPosition, URL)], lock: Int32) {
        self.directory = directory
        self.lockFD = lock
        self.config = config
        self.name = directory.path
        self.recovered = recovered
        self.budget = ByteBudget(limit: config.maxBufferedBytes)
        var s = State()
        s.nextPosition = nextPosition
        state = Mutex(s)
        let thread = Thread { [self] in self.writerLoop(segments: segments) }
        thread.name = "floe-wal-writer"
        thread.start()
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
        var size: Int
        var firstPosition: WALPosition
    }

    private func writerLoop(segments recoveredSegments: [(WALPosition, URL)]) {
        var segment: Segment? = nil
        var segments = recoveredSegments
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
                        segment = try openSegment(url, firstPosition: first)
                        segments.append((first, url))
                    }
                    var all: [UInt8] = []
                    all.reserveCapacity(batch.reduce(0) { $0 + $1.bytes.count })
                    for p in batch { all.append(contentsOf: p.bytes) }
                    try writeAll(segment!.fd, all, path: segments.last!.1.path)
                    if config.fsync { try syncFile(segment!.fd, path: segments.last!.1.path) }
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
                    let url = segments.removeFirst().1
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

    private func openSegment(_ url: URL, firstPosition: WALPosition) throws(StreamStorageError) -> Segment {
        let fd = Glibc.open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io(operation: "create WAL segment", key: url.path, detail: posixErrorText(errno)) }
        let header = WALSegmentHeader.encode(firstPosition: firstPosition)
        try writeAll(fd, header, path: url.path)
        if config.fsync {
            try syncFile(fd, path: url.path)
            let dfd = Glibc.open(directory.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if dfd >= 0 {
                defer { Glibc.close(dfd) }
                try syncFile(dfd, path: directory.path)
            }
        }
        return Segment(fd: fd, size: header.count, firstPosition: firstPosition)
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(StreamStorageError) {
        var done = 0
        let err: Int32? = bytes.withUnsafeBytes { raw in
            while done < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)
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

    private func syncFile(_ fd: Int32, path: String) throws(StreamStorageError) {
        if fsync(fd) != 0 { throw .io(operation: "fsync", key: path, detail: posixErrorText(errno)) }
    }

    // MARK: recovery (blocking; runs on a dedicated thread)

    static func segmentName(_ first: WALPosition) -> String {
        let digits = String(first)
        return "wal-" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".seg"
    }

    static func listSegments(_ dir: URL) throws -> [(WALPosition, URL)] {
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        return names.compactMap { name -> (WALPosition, URL)? in
            guard name.hasPrefix("wal-"), name.hasSuffix(".seg"), let p = UInt64(name.dropFirst(4).dropLast(4)) else { return nil }
            return (p, dir.appendingPathComponent(name))
        }.sorted { $0.0 < $1.0 }
    }

    static func lockDirectory(_ dir: URL) throws -> Int32 {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("LOCK").path
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StreamStorageError.io(operation: "open WAL lock", key: path, detail: posixErrorText(errno)) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let e = errno
            Glibc.close(fd)
            throw StreamStorageError.walFenced(wal: dir.path, epoch: 0, detail: "another process holds its LOCK file \(path) (\(posixErrorText(e)))")
        }
        return fd
    }

    static func recover(_ dir: URL) throws -> ([(WALPosition, WALRecord)], WALPosition, [(WALPosition, URL)]) {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let segments = try listSegments(dir)
        var records: [(WALPosition, WALRecord)] = []
        var next: WALPosition = 1
        var kept: [(WALPosition, URL)] = []
        for (index, (namedFirst, url)) in segments.enumerated() {
            let isLast = index == segments.count - 1
            let data = try [UInt8](Data(contentsOf: url))
            if data.count < WALSegmentHeader.size && isLast {
                // Torn while being created: nothing in it was acknowledged.
                try FileManager.default.removeItem(at: url)
                continue
            }
            let first = try WALSegmentHeader.decode(data[...], key: url.path)
            kept.append((first, url))
            guard first == namedFirst, records.isEmpty || first == next else {
                throw StreamStorageError.corrupt(what: "WAL segment", key: url.path, detail: "starts at position \(first), expected \(next)")
            }
            var reader = ByteReader(data[WALSegmentHeader.size...])
            var position = first
            var goodEnd = WALSegmentHeader.size
            while !reader.isAtEnd {
                let decoded: WALRecord.Decoded
                if isLast {
                    // A bad CRC at the tail of the newest segment is a torn write.
                    let attempt = Result { () throws(StreamStorageError) -> WALRecord.Decoded in try WALRecord.decode(&reader, key: url.path) }
                    switch attempt {
                    case let .success(d): decoded = d
                    case .failure: decoded = .torn
                    }
                } else {
                    decoded = try WALRecord.decode(&reader, key: url.path)
                }
                guard case let .record(r) = decoded else {
                    guard isLast else {
                        throw StreamStorageError.corrupt(what: "WAL segment", key: url.path, detail: "torn record in a sealed segment at byte \(goodEnd)")
                    }
                    guard truncate(url.path, off_t(goodEnd)) == 0 else {
                        throw StreamStorageError.io(operation: "truncate torn WAL tail", key: url.path, detail: posixErrorText(errno))
                    }
                    break
                }
                records.append((position, r))
                position += 1
                goodEnd = reader.offset + WALSegmentHeader.size
            }
            next = position
        }
        return (records, next, kept)
    }
}

/// `strerror`'s text with the number: "No space left on device (errno 28)".
func posixErrorText(_ code: Int32) -> String { "\(String(cString: strerror(code))) (errno \(code))" }
