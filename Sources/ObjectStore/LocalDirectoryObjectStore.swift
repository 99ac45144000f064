import Bytes
import CFloeShims
import Foundation
import Support
import Synchronization

/// An object store in a local directory, with the semantics of the S3 store (the conformance
/// suite runs against both). The single-machine default: `file:///var/lib/floe`.
///
/// Layout under `root`:
/// - Key `a/b/c` is the file `a/b/c@`: each `/`-separated segment is percent-escaped (bytes
///   outside `A-Z a-z 0-9 - _ .`, a leading `.`, and `%` itself; the empty segment is `%`),
///   directories are the escaped segments and an object file has a trailing `@`, so the keys
///   `a` and `a/b` can coexist (`a@` and `a/b@`).
/// - Every object file starts with a 32-byte header: magic `FLOB`, version 1 (UInt16 BE),
///   2 reserved bytes, CRC32C of the content (UInt32 BE), 4 reserved bytes, and a 16-byte
///   random version id whose hex form is the ETag. Whole-object reads verify the CRC.
/// - `.floe-tmp/` holds files being written, `.floe-locks/` the lock stripes, `.floe-uploads/`
///   multipart uploads in progress. Names starting with `.` are never keys.
///
/// Writes are atomic and durable: the new version is written to a temporary file, fsynced,
/// renamed over the key's path, and the directory fsynced. Every mutation of a key holds an
/// exclusive `flock` on one of 64 lock stripes (chosen by the key's CRC32C), so conditional
/// writes are linearizable across threads and processes sharing the directory: of many
/// concurrent `ifAbsent` writers exactly one wins. Readers take no lock (rename is atomic).
/// All blocking file I/O runs on a dedicated ``BlockingThreadPool``; the body of a large PUT
/// (at least `bulkBytes`: uploads and compaction outputs) is checksummed and written to its
/// temporary file on a second pool whose threads run under `SCHED_IDLE`, and only the commit
/// (lock, rename, directory fsync) runs on the first, so copying tens of MiB never delays a
/// request thread and no lock is held at idle priority.
public final class LocalDirectoryObjectStore: ObjectStore {
    public let root: String
    private let pool: BlockingThreadPool
    /// Stages large PUT bodies (`bulkBytes` or more) at `SCHED_IDLE`.
    let bulk: BlockingThreadPool
    /// A PUT body this large is staged on `bulk`. Smaller writes (manifests, leases, metadata)
    /// stay at normal priority from start to end.
    static let bulkBytes = 1 << 20
    /// Stagings and commits that ran under `SCHED_IDLE` (what the tests check: a large body is
    /// staged there, no commit ever runs there).
    let idleStages = Atomic<Int>(0)
    let idleCommits = Atomic<Int>(0)
    static let headerSize = 32
    static let lockStripes: UInt32 = 64

    /// Opens (and, if `create`, creates) the store at the absolute directory `root`.
    public init(root: String, create: Bool = true, ioThreads: Int = 8) throws {
        var normalized = root
        while normalized.count > 1 && normalized.hasSuffix("/") { normalized.removeLast() }
        self.root = normalized
        let ctx = ObjectStoreErrorContext(operation: "open", store: "file://\(normalized)")
        guard normalized.hasPrefix("/") else { throw ObjectStoreError.invalidRequest(ctx, "the directory must be an absolute path") }
        var info = stat()
        if stat(normalized, &info) != 0 {
            if errno == ENOENT && create {
                try LocalFS.makeDirectories(normalized, ctx: ctx)
            } else if errno == ENOENT {
                throw ObjectStoreError.bucketMissing(ctx, LocalFS.describe("stat", normalized))
            } else {
                throw ObjectStoreError.io(ctx, LocalFS.describe("stat", normalized))
            }
        } else if (info.st_mode & S_IFMT) != S_IFDIR {
            // Not "bucket missing": the path exists, it is just not a directory.
            throw ObjectStoreError.invalidStorageURL(url: "file://\(normalized)", reason: "\(normalized) is a file, not a directory")
        }
        for internalDirectory in [".floe-tmp", ".floe-locks", ".floe-uploads"] {
            try LocalFS.makeDirectories(normalized + "/" + internalDirectory, ctx: ctx)
        }
        pool = BlockingThreadPool(name: "floe-localstore", threads: ioThreads)
        bulk = BlockingThreadPool(name: "floe-lsbulk", threads: 2, idlePriority: true)
    }

    deinit {
        pool.shutdown()
        bulk.shutdown()
    }

    public var location: String { "file://\(root)" }

    private func context(_ operation: String, _ key: String?) -> ObjectStoreErrorContext {
        ObjectStoreErrorContext(operation: operation, store: location, key: key)
    }

    private func onPool<T: Sendable>(_ ctx: ObjectStoreErrorContext, _ pool: BlockingThreadPool? = nil,
                                     _ work: @escaping @Sendable () throws -> T) async throws -> T {
        do {
            return try await (pool ?? self.pool).run(work)
        } catch let error as SupportError {
            throw ObjectStoreError.io(ctx, "\(error)")
        }
    }

    // MARK: paths

    /// The file path of `key`, or an error if a segment is too long for the file system.
    func path(of key: String, ctx: ObjectStoreErrorContext) throws -> String {
        if let problem = ObjectKey.problem(key) { throw ObjectStoreError.invalidRequest(ctx, problem) }
        let segments = key.split(separator: "/", omittingEmptySubsequences: false)
        var path = root
        for (index, segment) in segments.enumerated() {
            var name = LocalKeyEscaping.escape(Substring(segment))
            if index == segments.count - 1 { name += "@" }
            if name.utf8.count > 255 {
                throw ObjectStoreError.invalidRequest(ctx, "segment '\(segment)' is too long for a file name once escaped")
            }
            path += "/" + name
        }
        return path
    }

    private func temporaryPath() -> String {
        var rng = SystemRandomNumberGenerator()
        return root + "/.floe-tmp/" + LocalFS.hex(LocalFS.randomBytes(12, using: &rng)) + ".tmp"
    }

    private func lockPath(for key: String) -> String {
        let stripe = key.utf8CString.withUnsafeBytes { CRC32C.update(0, UnsafeRawBufferPointer(rebasing: $0.dropLast())) }
            % LocalDirectoryObjectStore.lockStripes
        return root + "/.floe-locks/stripe-\(stripe)"
    }

    // MARK: contract

    public func put(_ key: String, _ bytes: [UInt8], condition: WriteCondition) async throws -> String {
        let ctx = context("PUT", key)
        let path = try path(of: key, ctx: ctx)
        let temp = temporaryPath()
        guard bytes.count >= Self.bulkBytes else {
            return try await onPool(ctx) { [self] in
                let version = try Self.stage(temp, bytes, ctx: ctx)
                try commitOrDiscard(temp: temp, to: path, key: key, condition: condition, ctx: ctx)
                return LocalObjectHeader.etag(version)
            }
        }
        let version = try await onPool(ctx, bulk) { [self] in
            if Self.atIdlePriority { idleStages.add(1, ordering: .relaxed) }
            return try Self.stage(temp, bytes, ctx: ctx)
        }
        do {
            try await onPool(ctx) { [self] in try commitOrDiscard(temp: temp, to: path, key: key, condition: condition, ctx: ctx) }
        } catch {
            _ = unlink(temp)  // the commit never ran (the pool shut down); after a failed commit it is gone already
            throw error
        }
        return LocalObjectHeader.etag(version)
    }

    /// Writes `bytes` with a new header (checksum, random version id) to the fresh file `temp`
    /// and fsyncs it; returns the version id.
    private static func stage(_ temp: String, _ bytes: [UInt8], ctx: ObjectStoreErrorContext) throws -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        let version = LocalFS.randomBytes(16, using: &rng)
        let crc = bytes.withUnsafeBytes { CRC32C.update(0, $0) }
        try LocalFS.writeNewFile(temp, header: LocalObjectHeader(crc: crc, version: version).encoded(), body: bytes, ctx: ctx)
        return version
    }

    private static var atIdlePriority: Bool { floe_thread_get_policy() == Int32(FLOE_SCHED_IDLE) }

    /// `commit`, removing `temp` when it fails.
    private func commitOrDiscard(temp: String, to path: String, key: String, condition: WriteCondition, ctx: ObjectStoreErrorContext) throws {
        if Self.atIdlePriority { idleCommits.add(1, ordering: .relaxed) }
        do {
            try commit(temp: temp, to: path, key: key, condition: condition, ctx: ctx)
        } catch {
            _ = unlink(temp)
            throw error
        }
    }

    /// Renames `temp` over `path` under the key's lock, if `condition` holds.
    private func commit(temp: String, to path: String, key: String, condition: WriteCondition, ctx: ObjectStoreErrorContext) throws {
        try LocalFS.withExclusiveLock(lockPath(for: key), ctx: ctx) {
            switch condition {
            case .none: break
            case .ifAbsent:
                if try LocalFS.readHeader(path, ctx: ctx) != nil { throw ObjectStoreError.preconditionFailed(ctx, "the object exists") }
            case .ifMatch(let expected):
                guard let current = try LocalFS.readHeader(path, ctx: ctx) else {
                    throw ObjectStoreError.preconditionFailed(ctx, "the object does not exist")
                }
                let etag = LocalObjectHeader.etag(current.header.version)
                if etag != expected { throw ObjectStoreError.preconditionFailed(ctx, "current ETag \(etag) is not \(expected)") }
            }
            let directory = String(path[..<path.lastIndex(of: "/")!])
            // A concurrent delete of a sibling may remove an empty parent between mkdir and
            // rename; make the directories again and retry a few times.
            var attempts = 0
            while true {
                try LocalFS.makeDirectories(directory, ctx: ctx)
                if rename(temp, path) == 0 { break }
                if errno == ENOENT && attempts < 5 {
                    attempts += 1
                    continue
                }
                throw ObjectStoreError.io(ctx, LocalFS.describe("rename", "\(temp) -> \(path)"))
            }
            try LocalFS.fsyncDirectory(directory, ctx: ctx)
        }
    }

    public func get(_ key: String, range: ByteRange?) async throws -> ObjectData {
        let ctx = context("GET", key)
        let path = try path(of: key, ctx: ctx)
        if let reason = range?.malformedReason { throw ObjectStoreError.invalidRange(ctx, reason) }
        return try await onPool(ctx) { try Self.readObject(path: path, range: range, ctx: ctx) }
    }

    /// `get` run synchronously on the calling thread, for callers that do their blocking reads
    /// on dedicated threads of their own (the stream storage's catch-up readers, at lower CPU
    /// priority). Same results and errors as `get`.
    public func getBlocking(_ key: String, range: ByteRange?) throws -> ObjectData {
        let ctx = context("GET", key)
        let path = try path(of: key, ctx: ctx)
        if let reason = range?.malformedReason { throw ObjectStoreError.invalidRange(ctx, reason) }
        return try Self.readObject(path: path, range: range, ctx: ctx)
    }

    private static func readObject(path: String, range: ByteRange?, ctx: ObjectStoreErrorContext) throws -> ObjectData {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT || errno == ENOTDIR { throw ObjectStoreError.notFound(ctx, "no such key (\(path))") }
            throw ObjectStoreError.io(ctx, LocalFS.describe("open", path))
        }
        defer { close(fd) }
        let (header, size) = try LocalFS.readHeader(fd: fd, path: path, ctx: ctx)
        let positions: Range<Int>
        if let range {
            guard let resolved = range.resolve(size: size) else {
                throw ObjectStoreError.invalidRange(ctx, "\(range) is outside an object of \(size) bytes")
            }
            positions = resolved
        } else {
            positions = 0..<size
        }
        let bytes = try LocalFS.pread(fd, count: positions.count, offset: LocalDirectoryObjectStore.headerSize + positions.lowerBound,
                                      path: path, ctx: ctx)
        if positions.count == size {
            let crc = bytes.withUnsafeBytes { CRC32C.update(0, $0) }
            if crc != header.crc {
                throw ObjectStoreError.corrupt(ctx, "\(path): content CRC32C \(crc) does not match the header's \(header.crc)")
            }
        }
        return ObjectData(bytes: bytes, etag: LocalObjectHeader.etag(header.version), objectSize: size, range: positions)
    }

    public func head(_ key: String) async throws -> ObjectInfo {
        let ctx = context("HEAD", key)
        let path = try path(of: key, ctx: ctx)
        return try await onPool(ctx) {
            guard let current = try LocalFS.readHeader(path, ctx: ctx) else { throw ObjectStoreError.notFound(ctx, "no such key (\(path))") }
            return ObjectInfo(key: key, size: current.size, etag: LocalObjectHeader.etag(current.header.version))
        }
    }

    public func delete(_ key: String) async throws {
        let ctx = context("DELETE", key)
        let path = try path(of: key, ctx: ctx)
        try await onPool(ctx) { [self] in try deleteSync(key: key, path: path, ctx: ctx) }
    }

    private func deleteSync(key: String, path: String, ctx: ObjectStoreErrorContext) throws {
        try LocalFS.withExclusiveLock(lockPath(for: key), ctx: ctx) {
            if unlink(path) != 0 {
                if errno == ENOENT || errno == ENOTDIR { return }
                throw ObjectStoreError.io(ctx, LocalFS.describe("unlink", path))
            }
            var directory = String(path[..<path.lastIndex(of: "/")!])
            try LocalFS.fsyncDirectory(directory, ctx: ctx)
            // Remove parents left empty; rmdir fails harmlessly on a non-empty directory.
            while directory.count > root.count {
                if rmdir(directory) != 0 {
                    if errno == ENOTEMPTY || errno == EEXIST || errno == ENOENT || errno == EBUSY { break }
                    throw ObjectStoreError.io(ctx, LocalFS.describe("rmdir", directory))
                }
                directory = String(directory[..<directory.lastIndex(of: "/")!])
            }
        }
    }

    public func deleteMany(_ keys: [String]) async throws -> [DeleteFailure] {
        try await deleteOneByOne(keys)
    }

    public func list(prefix: String, continuation: String?, limit: Int) async throws -> ListPage {
        let ctx = context("LIST", prefix)
        guard (1...1000).contains(limit) else { throw ObjectStoreError.invalidRequest(ctx, "limit \(limit) is outside 1...1000") }
        return try await onPool(ctx) { [self] in
            var lister = LocalLister(root: root, prefix: prefix, startAfter: continuation, limit: limit, ctx: ctx)
            return try lister.run()
        }
    }

    // MARK: multipart

    private func uploadDirectory(_ id: String) -> String { root + "/.floe-uploads/" + id }

    private func checkUpload(_ upload: MultipartUpload, ctx: ObjectStoreErrorContext) throws -> String {
        guard upload.uploadID.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }), !upload.uploadID.isEmpty else {
            throw ObjectStoreError.notFound(ctx, "no multipart upload \(upload.uploadID)")
        }
        let directory = uploadDirectory(upload.uploadID)
        let keyPath = directory + "/key"
        let fd = open(keyPath, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { throw ObjectStoreError.notFound(ctx, "no multipart upload \(upload.uploadID)") }
            throw ObjectStoreError.io(ctx, LocalFS.describe("open", keyPath))
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw ObjectStoreError.io(ctx, LocalFS.describe("fstat", keyPath)) }
        let stored = try LocalFS.pread(fd, count: Int(info.st_size), offset: 0, path: keyPath, ctx: ctx)
        guard stored == Array(upload.key.utf8) else {
            throw ObjectStoreError.notFound(ctx, "multipart upload \(upload.uploadID) is for another key")
        }
        return directory
    }

    public func createMultipartUpload(_ key: String) async throws -> MultipartUpload {
        let ctx = context("CreateMultipartUpload", key)
        _ = try path(of: key, ctx: ctx)
        var rng = SystemRandomNumberGenerator()
        let id = LocalFS.hex(LocalFS.randomBytes(16, using: &rng))
        let directory = uploadDirectory(id)
        let temp = temporaryPath()
        try await onPool(ctx) {
            try LocalFS.makeDirectories(directory, ctx: ctx)
            try LocalFS.writeNewFile(temp, header: [], body: Array(key.utf8), ctx: ctx)
            if rename(temp, directory + "/key") != 0 { throw ObjectStoreError.io(ctx, LocalFS.describe("rename", temp)) }
        }
        return MultipartUpload(key: key, uploadID: id)
    }

    public func uploadPart(_ upload: MultipartUpload, number: Int, _ bytes: [UInt8]) async throws -> UploadedPart {
        let ctx = context("UploadPart", upload.key)
        guard (1...MultipartLimits.maximumPartNumber).contains(number) else {
            throw ObjectStoreError.invalidRequest(ctx, "part number \(number) is outside 1...\(MultipartLimits.maximumPartNumber)")
        }
        let temp = temporaryPath()
        return try await onPool(ctx) { [self] in
            let directory = try checkUpload(upload, ctx: ctx)
            var rng = SystemRandomNumberGenerator()
            let version = LocalFS.randomBytes(16, using: &rng)
            let crc = bytes.withUnsafeBytes { CRC32C.update(0, $0) }
            try LocalFS.writeNewFile(temp, header: LocalObjectHeader(crc: crc, version: version).encoded(), body: bytes, ctx: ctx)
            let partPath = directory + "/part-\(number)"
            if rename(temp, partPath) != 0 {
                let detail = LocalFS.describe("rename", "\(temp) -> \(partPath)")
                _ = unlink(temp)
                throw ObjectStoreError.io(ctx, detail)
            }
            return UploadedPart(number: number, etag: LocalObjectHeader.etag(version))
        }
    }

    public func completeMultipartUpload(_ upload: MultipartUpload, parts: [UploadedPart]) async throws -> String {
        let ctx = context("CompleteMultipartUpload", upload.key)
        let path = try path(of: upload.key, ctx: ctx)
        let temp = temporaryPath()
        return try await onPool(ctx) { [self] in
            let directory = try checkUpload(upload, ctx: ctx)
            var stored: [Int: (size: Int, etag: String)] = [:]
            for part in parts {
                if let current = try LocalFS.readHeader(directory + "/part-\(part.number)", ctx: ctx) {
                    stored[part.number] = (current.size, LocalObjectHeader.etag(current.header.version))
                }
            }
            if let problem = MultipartValidation.problem(requested: parts, stored: stored) {
                throw ObjectStoreError.invalidRequest(ctx, problem)
            }
            var rng = SystemRandomNumberGenerator()
            let version = LocalFS.randomBytes(16, using: &rng)
            try LocalFS.concatenate(parts.map { directory + "/part-\($0.number)" }, into: temp, version: version, ctx: ctx)
            try commitOrDiscard(temp: temp, to: path, key: upload.key, condition: .none, ctx: ctx)
            try LocalFS.removeTree(directory, ctx: ctx)
            return LocalObjectHeader.etag(version)
        }
    }

    public func abortMultipartUpload(_ upload: MultipartUpload) async throws {
        let ctx = context("AbortMultipartUpload", upload.key)
        try await onPool(ctx) { [self] in
            let directory = try checkUpload(upload, ctx: ctx)
            try LocalFS.removeTree(directory, ctx: ctx)
        }
    }
}

/// The fixed header of a local object file (see ``LocalDirectoryObjectStore``).
struct LocalObjectHeader {
    static let magic: [UInt8] = Array("FLOB".utf8)
    static let version: UInt16 = 1
    var crc: UInt32
    var version: [UInt8]

    func encoded() -> [UInt8] {
        var out = LocalObjectHeader.magic
        out += [UInt8(LocalObjectHeader.version >> 8), UInt8(LocalObjectHeader.version & 0xff), 0, 0]
        out += [UInt8(crc >> 24), UInt8((crc >> 16) & 0xff), UInt8((crc >> 8) & 0xff), UInt8(crc & 0xff)]
        out += [0, 0, 0, 0]
        out += version
        return out
    }

    static func decode(_ bytes: [UInt8]) -> LocalObjectHeader? {
        guard bytes.count == LocalDirectoryObjectStore.headerSize, Array(bytes[0..<4]) == magic,
              UInt16(bytes[4]) << 8 | UInt16(bytes[5]) == LocalObjectHeader.version else { return nil }
        let crc = UInt32(bytes[8]) << 24 | UInt32(bytes[9]) << 16 | UInt32(bytes[10]) << 8 | UInt32(bytes[11])
        return LocalObjectHeader(crc: crc, version: Array(bytes[16..<32]))
    }

    static func etag(_ version: [UInt8]) -> String { "\"" + LocalFS.hex(version) + "\"" }
}

/// The escaping of key segments into file names (see ``LocalDirectoryObjectStore``).
enum LocalKeyEscaping {
    static func isSafe(_ byte: UInt8) -> Bool {
        (byte >= 65 && byte <= 90) || (byte >= 97 && byte <= 122) || (byte >= 48 && byte <= 57) || byte == 45 || byte == 95 || byte == 46
    }

    static func escape(_ segment: Substring) -> String {
        if segment.isEmpty { return "%" }
        var out = ""
        for (index, byte) in segment.utf8.enumerated() {
            if isSafe(byte) && !(index == 0 && byte == 46) {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }

    /// The segment a file or directory name stands for, or nil if the name is not one we made.
    static func unescape(_ name: Substring) -> String? {
        if name == "%" { return "" }
        var bytes: [UInt8] = []
        var iterator = Array(name.utf8)[...]
        while let byte = iterator.popFirst() {
            if byte == 37 {
                guard iterator.count >= 2, let value = UInt8(String(decoding: iterator.prefix(2), as: UTF8.self), radix: 16) else { return nil }
                bytes.append(value)
                iterator = iterator.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}

extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

/// Byte-order comparison of keys (S3 lists in UTF-8 byte order, not Unicode collation).
@inline(__always) func keyLess(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }

/// A depth-first walk producing one page of keys in byte order.
struct LocalLister {
    let root: String
    let prefix: String
    let startAfter: String?
    let limit: Int
    let ctx: ObjectStoreErrorContext
    var objects: [ObjectInfo] = []
    var more = false

    init(root: String, prefix: String, startAfter: String?, limit: Int, ctx: ObjectStoreErrorContext) {
        self.root = root
        self.prefix = prefix
        self.startAfter = startAfter
        self.limit = limit
        self.ctx = ctx
    }

    mutating func run() throws -> ListPage {
        // Start in the deepest directory the prefix names entirely ("a/b/c" starts in a/b/).
        var directory = root
        var keyPrefix = ""
        if let slash = prefix.lastIndex(of: "/") {
            for segment in prefix[..<slash].split(separator: "/", omittingEmptySubsequences: false) {
                directory += "/" + LocalKeyEscaping.escape(segment)
                keyPrefix += segment + "/"
            }
        }
        _ = try visit(directory, keyPrefix: keyPrefix, isRoot: keyPrefix.isEmpty)
        return ListPage(objects: objects, continuation: more ? objects.last?.key : nil)
    }

    /// Returns true when the page is full and one more key was seen.
    private mutating func visit(_ directory: String, keyPrefix: String, isRoot: Bool) throws -> Bool {
        guard let names = try LocalFS.directoryEntries(directory, ctx: ctx) else { return false }
        var entries: [(key: String, name: String, isFile: Bool)] = []
        for name in names {
            if isRoot && name.hasPrefix(".") { continue }
            let isFile = name.hasSuffix("@")
            guard let segment = LocalKeyEscaping.unescape(isFile ? Substring(name.dropLast()) : Substring(name)) else { continue }
            entries.append((keyPrefix + segment + (isFile ? "" : "/"), name, isFile))
        }
        entries.sort { keyLess($0.key, $1.key) }
        for entry in entries {
            if entry.isFile {
                guard entry.key.hasPrefix(prefix) else { continue }
                if let startAfter, !keyLess(startAfter, entry.key) { continue }
                guard let current = try LocalFS.readHeader(directory + "/" + entry.name, ctx: ctx) else { continue }
                if objects.count == limit {
                    more = true
                    return true
                }
                objects.append(ObjectInfo(key: entry.key, size: current.size, etag: LocalObjectHeader.etag(current.header.version)))
            } else {
                let subtree = entry.key
                guard subtree.hasPrefix(prefix) || prefix.hasPrefix(subtree) else { continue }
                if let startAfter, !startAfter.hasPrefix(subtree), keyLess(subtree, startAfter) { continue }
                if try visit(directory + "/" + entry.name, keyPrefix: subtree, isRoot: false) { return true }
            }
        }
        return false
    }
}

/// Blocking file-system helpers; every failure becomes an ``ObjectStoreError`` naming the path.
enum LocalFS {
    static func describe(_ call: String, _ path: String) -> String {
        let code = errno
        return "\(call)(\(path)): \(String(cString: strerror(code))) (errno \(code))"
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func randomBytes(_ count: Int, using rng: inout some RandomNumberGenerator) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    static func makeDirectories(_ path: String, ctx: ObjectStoreErrorContext) throws {
        if mkdir(path, 0o755) == 0 || errno == EEXIST { return }
        if errno == ENOENT, let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            try makeDirectories(String(path[..<slash]), ctx: ctx)
            if mkdir(path, 0o755) == 0 || errno == EEXIST { return }
        }
        throw ObjectStoreError.io(ctx, describe("mkdir", path))
    }

    static func fsyncDirectory(_ path: String, ctx: ObjectStoreErrorContext) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw ObjectStoreError.io(ctx, describe("open", path)) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw ObjectStoreError.io(ctx, describe("fsync", path)) }
    }

    static func withExclusiveLock<T>(_ lockPath: String, ctx: ObjectStoreErrorContext, _ body: () throws -> T) throws -> T {
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ObjectStoreError.io(ctx, describe("open", lockPath)) }
        defer { close(fd) }  // closing the descriptor releases the lock
        while flock(fd, LOCK_EX) != 0 {
            if errno != EINTR { throw ObjectStoreError.io(ctx, describe("flock", lockPath)) }
        }
        return try body()
    }

    /// Creates `path` (which must not exist), writes `header` then `body`, fsyncs and closes.
    static func writeNewFile(_ path: String, header: [UInt8], body: [UInt8], ctx: ObjectStoreErrorContext) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ObjectStoreError.io(ctx, describe("open", path)) }
        var ok = false
        defer {
            close(fd)
            if !ok { _ = unlink(path) }
        }
        try writeAll(fd, header, path: path, ctx: ctx)
        try writePaced(fd, body, from: header.count, path: path, ctx: ctx)
        guard fsync(fd) == 0 else { throw ObjectStoreError.io(ctx, describe("fsync", path)) }
        ok = true
    }

    /// Bytes written before writeback of them starts (see `writePaced`): 256 KiB, or
    /// `FLOE_LOCAL_WRITEBACK_BYTES` from the environment (0 turns pacing off; for benchmarks).
    static let writebackChunk: Int = {
        guard let text = ProcessInfo.processInfo.environment["FLOE_LOCAL_WRITEBACK_BYTES"], let n = Int(text), n >= 0 else { return 256 << 10 }
        return n
    }()

    /// Writes `bytes` at file offset `start` in chunks (256 KiB by default), starting writeback of each chunk as it
    /// is written and waiting for the one before: at most two chunks are dirty at a time, so the
    /// closing fsync has little left to flush and other files' fsyncs (the file WAL's, on the
    /// same disk) do not queue behind tens of MiB of this object. Measured: produce p99 at a
    /// fixed rate with 32 MiB uploads (docs/benchmarks.md, "Storage that settles").
    static func writePaced(_ fd: Int32, _ bytes: [UInt8], from start: Int, path: String, ctx: ObjectStoreErrorContext) throws {
        let chunk = writebackChunk
        guard chunk > 0, bytes.count > chunk else { return try writeAll(fd, bytes, path: path, ctx: ctx) }
        try bytes.withUnsafeBytes { buffer in
            var offset = 0
            var previous: (start: Int64, length: Int64)? = nil
            while offset < buffer.count {
                let begin = offset
                let end = min(offset + chunk, buffer.count)
                while offset < end {
                    let n = write(fd, buffer.baseAddress! + offset, end - offset)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw ObjectStoreError.io(ctx, describe("write", path))
                    }
                    offset += n
                }
                // Advisory: a failure here only loses the pacing; the fsync still decides durability.
                let this = (start: Int64(start + begin), length: Int64(end - begin))
                _ = floe_writeback_start(fd, this.start, this.length)
                if let previous { _ = floe_writeback_wait(fd, previous.start, previous.length) }
                previous = this
            }
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String, ctx: ObjectStoreErrorContext) throws {
        try bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw ObjectStoreError.io(ctx, describe("write", path))
                }
                offset += n
            }
        }
    }

    static func pread(_ fd: Int32, count: Int, offset: Int, path: String, ctx: ObjectStoreErrorContext) throws -> [UInt8] {
        try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var done = 0
            while done < count {
                let n = Glibc.pread(fd, buffer.baseAddress! + done, count - done, off_t(offset + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw ObjectStoreError.io(ctx, describe("pread", path))
                }
                if n == 0 { throw ObjectStoreError.corrupt(ctx, "\(path) ended after \(offset + done) bytes") }
                done += n
            }
            initialized = count
        }
    }

    /// The header and content size of an open object file.
    static func readHeader(fd: Int32, path: String, ctx: ObjectStoreErrorContext) throws -> (header: LocalObjectHeader, size: Int) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw ObjectStoreError.io(ctx, describe("fstat", path)) }
        let total = Int(info.st_size)
        guard total >= LocalDirectoryObjectStore.headerSize else {
            throw ObjectStoreError.corrupt(ctx, "\(path) is \(total) bytes, shorter than the object header")
        }
        let bytes = try pread(fd, count: LocalDirectoryObjectStore.headerSize, offset: 0, path: path, ctx: ctx)
        guard let header = LocalObjectHeader.decode(bytes) else {
            throw ObjectStoreError.corrupt(ctx, "\(path) does not start with a Floe object header (magic FLOB, version 1)")
        }
        return (header, total - LocalDirectoryObjectStore.headerSize)
    }

    /// The header and content size of the object file at `path`, or nil if there is none.
    static func readHeader(_ path: String, ctx: ObjectStoreErrorContext) throws -> (header: LocalObjectHeader, size: Int)? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw ObjectStoreError.io(ctx, describe("open", path))
        }
        defer { close(fd) }
        return try readHeader(fd: fd, path: path, ctx: ctx)
    }

    /// The entry names of a directory (without `.` and `..`), or nil if it does not exist.
    static func directoryEntries(_ path: String, ctx: ObjectStoreErrorContext) throws -> [String]? {
        guard let dir = opendir(path) else {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw ObjectStoreError.io(ctx, describe("opendir", path))
        }
        defer { closedir(dir) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw ObjectStoreError.io(ctx, describe("readdir", path)) }
                break
            }
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Writes the contents of the object files `parts` (headers stripped) into the new file
    /// `path` behind a header with `version` and the CRC32C of the whole, and fsyncs it.
    static func concatenate(_ parts: [String], into path: String, version: [UInt8], ctx: ObjectStoreErrorContext) throws {
        let out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard out >= 0 else { throw ObjectStoreError.io(ctx, describe("open", path)) }
        var ok = false
        defer {
            close(out)
            if !ok { _ = unlink(path) }
        }
        try writeAll(out, [UInt8](repeating: 0, count: LocalDirectoryObjectStore.headerSize), path: path, ctx: ctx)
        var crc: UInt32 = 0
        for part in parts {
            let fd = open(part, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw ObjectStoreError.io(ctx, describe("open", part)) }
            defer { close(fd) }
            let (header, size) = try readHeader(fd: fd, path: part, ctx: ctx)
            var offset = 0
            var partCRC: UInt32 = 0
            while offset < size {
                let chunk = try pread(fd, count: min(1 << 20, size - offset), offset: LocalDirectoryObjectStore.headerSize + offset,
                                      path: part, ctx: ctx)
                chunk.withUnsafeBytes {
                    crc = CRC32C.update(crc, $0)
                    partCRC = CRC32C.update(partCRC, $0)
                }
                try writeAll(out, chunk, path: path, ctx: ctx)
                offset += chunk.count
            }
            if partCRC != header.crc { throw ObjectStoreError.corrupt(ctx, "\(part): content CRC32C does not match its header") }
        }
        let header = LocalObjectHeader(crc: crc, version: version).encoded()
        let written = header.withUnsafeBytes { Glibc.pwrite(out, $0.baseAddress, $0.count, 0) }
        guard written == header.count else { throw ObjectStoreError.io(ctx, describe("pwrite", path)) }
        guard fsync(out) == 0 else { throw ObjectStoreError.io(ctx, describe("fsync", path)) }
        ok = true
    }

    /// Removes a directory of plain files (a multipart upload's).
    static func removeTree(_ directory: String, ctx: ObjectStoreErrorContext) throws {
        for name in try directoryEntries(directory, ctx: ctx) ?? [] {
            let path = directory + "/" + name
            if unlink(path) != 0 && errno != ENOENT { throw ObjectStoreError.io(ctx, describe("unlink", path)) }
        }
        if rmdir(directory) != 0 && errno != ENOENT { throw ObjectStoreError.io(ctx, describe("rmdir", directory)) }
    }
}
