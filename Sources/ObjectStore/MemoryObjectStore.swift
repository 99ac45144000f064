import Synchronization

/// An object store held in memory, with the same semantics as the others (the conformance suite
/// runs against it). For unit tests and as the base of fault-injection runs.
public final class MemoryObjectStore: ObjectStore {
    private struct Entry {
        var bytes: [UInt8]
        var etag: String
    }

    private struct Upload {
        var key: String
        var parts: [Int: Entry] = [:]
    }

    private struct State {
        var objects: [String: Entry] = [:]
        /// Keys in ascending byte order (kept sorted on insert and delete).
        var keys: [String] = []
        var uploads: [String: Upload] = [:]
        var version: UInt64 = 0

        mutating func nextETag() -> String {
            version += 1
            return "\"mem-\(version)\""
        }

        /// Index of the first key not less than `key` in byte order.
        func lowerBound(_ key: String) -> Int {
            var low = 0
            var high = keys.count
            while low < high {
                let mid = (low + high) / 2
                if keys[mid].utf8.lexicographicallyPrecedes(key.utf8) { low = mid + 1 } else { high = mid }
            }
            return low
        }
    }

    public let name: String
    private let state = Mutex(State())

    public init(name: String = "memory") { self.name = name }

    public var location: String { "memory://\(name)" }

    private func context(_ operation: String, _ key: String?) -> ObjectStoreErrorContext {
        ObjectStoreErrorContext(operation: operation, store: location, key: key)
    }

    private func validate(_ operation: String, _ key: String) throws {
        if let problem = ObjectKey.problem(key) { throw ObjectStoreError.invalidRequest(context(operation, key), problem) }
    }

    public func put(_ key: String, _ bytes: [UInt8], condition: WriteCondition) async throws -> String {
        try validate("PUT", key)
        let ctx = context("PUT", key)
        return try state.withLock { s in
            let current = s.objects[key]
            switch condition {
            case .none: break
            case .ifAbsent:
                if current != nil { throw ObjectStoreError.preconditionFailed(ctx, "the object exists") }
            case .ifMatch(let etag):
                guard let current else { throw ObjectStoreError.preconditionFailed(ctx, "the object does not exist") }
                if current.etag != etag { throw ObjectStoreError.preconditionFailed(ctx, "current ETag \(current.etag) is not \(etag)") }
            }
            let etag = s.nextETag()
            if current == nil { s.keys.insert(key, at: s.lowerBound(key)) }
            s.objects[key] = Entry(bytes: bytes, etag: etag)
            return etag
        }
    }

    public func get(_ key: String, range: ByteRange?) async throws -> ObjectData {
        try validate("GET", key)
        let ctx = context("GET", key)
        if let reason = range?.malformedReason { throw ObjectStoreError.invalidRange(ctx, reason) }
        guard let entry = state.withLock({ $0.objects[key] }) else { throw ObjectStoreError.notFound(ctx, "no such key") }
        let size = entry.bytes.count
        let positions: Range<Int>
        if let range {
            guard let resolved = range.resolve(size: size) else {
                throw ObjectStoreError.invalidRange(ctx, "\(range) is outside an object of \(size) bytes")
            }
            positions = resolved
        } else {
            positions = 0..<size
        }
        return ObjectData(bytes: Array(entry.bytes[positions]), etag: entry.etag, objectSize: size, range: positions)
    }

    public func head(_ key: String) async throws -> ObjectInfo {
        try validate("HEAD", key)
        guard let entry = state.withLock({ $0.objects[key] }) else {
            throw ObjectStoreError.notFound(context("HEAD", key), "no such key")
        }
        return ObjectInfo(key: key, size: entry.bytes.count, etag: entry.etag)
    }

    public func delete(_ key: String) async throws {
        try validate("DELETE", key)
        state.withLock { s in
            if s.objects.removeValue(forKey: key) != nil { s.keys.remove(at: s.lowerBound(key)) }
        }
    }

    public func deleteMany(_ keys: [String]) async throws -> [DeleteFailure] {
        var failures: [DeleteFailure] = []
        for key in keys {
            do { try await delete(key) } catch let error as ObjectStoreError { failures.append(DeleteFailure(key: key, error: error)) }
        }
        return failures
    }

    public func list(prefix: String, continuation: String?, limit: Int) async throws -> ListPage {
        guard (1...1000).contains(limit) else {
            throw ObjectStoreError.invalidRequest(context("LIST", prefix), "limit \(limit) is outside 1...1000")
        }
        return state.withLock { s in
            var index = s.lowerBound(prefix)
            if let continuation {
                index = max(index, s.lowerBound(continuation))
                if index < s.keys.count && s.keys[index] == continuation { index += 1 }
            }
            var objects: [ObjectInfo] = []
            while index < s.keys.count && s.keys[index].hasPrefix(prefix) && objects.count < limit {
                let key = s.keys[index]
                let entry = s.objects[key]!
                objects.append(ObjectInfo(key: key, size: entry.bytes.count, etag: entry.etag))
                index += 1
            }
            let more = index < s.keys.count && s.keys[index].hasPrefix(prefix)
            return ListPage(objects: objects, continuation: more ? objects.last?.key : nil)
        }
    }

    public func createMultipartUpload(_ key: String) async throws -> MultipartUpload {
        try validate("CreateMultipartUpload", key)
        return state.withLock { s in
            s.version += 1
            let id = "upload-\(s.version)"
            s.uploads[id] = Upload(key: key)
            return MultipartUpload(key: key, uploadID: id)
        }
    }

    public func uploadPart(_ upload: MultipartUpload, number: Int, _ bytes: [UInt8]) async throws -> UploadedPart {
        let ctx = context("UploadPart", upload.key)
        guard (1...MultipartLimits.maximumPartNumber).contains(number) else {
            throw ObjectStoreError.invalidRequest(ctx, "part number \(number) is outside 1...\(MultipartLimits.maximumPartNumber)")
        }
        return try state.withLock { s in
            guard s.uploads[upload.uploadID]?.key == upload.key else {
                throw ObjectStoreError.notFound(ctx, "no multipart upload \(upload.uploadID)")
            }
            let etag = s.nextETag()
            s.uploads[upload.uploadID]!.parts[number] = Entry(bytes: bytes, etag: etag)
            return UploadedPart(number: number, etag: etag)
        }
    }

    public func completeMultipartUpload(_ upload: MultipartUpload, parts: [UploadedPart]) async throws -> String {
        let ctx = context("CompleteMultipartUpload", upload.key)
        return try state.withLock { s in
            guard let stored = s.uploads[upload.uploadID], stored.key == upload.key else {
                throw ObjectStoreError.notFound(ctx, "no multipart upload \(upload.uploadID)")
            }
            if let problem = MultipartValidation.problem(
                requested: parts, stored: stored.parts.mapValues { (size: $0.bytes.count, etag: $0.etag) }) {
                throw ObjectStoreError.invalidRequest(ctx, problem)
            }
            var bytes: [UInt8] = []
            for part in parts { bytes += stored.parts[part.number]!.bytes }
            let etag = s.nextETag()
            if s.objects[upload.key] == nil { s.keys.insert(upload.key, at: s.lowerBound(upload.key)) }
            s.objects[upload.key] = Entry(bytes: bytes, etag: etag)
            s.uploads.removeValue(forKey: upload.uploadID)
            return etag
        }
    }

    public func abortMultipartUpload(_ upload: MultipartUpload) async throws {
        let ctx = context("AbortMultipartUpload", upload.key)
        try state.withLock { s in
            guard s.uploads.removeValue(forKey: upload.uploadID) != nil else {
                throw ObjectStoreError.notFound(ctx, "no multipart upload \(upload.uploadID)")
            }
        }
    }
}
