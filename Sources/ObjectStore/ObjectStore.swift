/// The one storage contract every part of Floe uses: a flat namespace of immutable-per-version
/// objects addressed by key, as offered by S3-compatible servers and emulated by the local
/// directory and in-memory stores.
///
/// Semantics every implementation keeps (the conformance suite checks them):
/// - Whole-object writes are atomic: a reader sees the old or the new object, never a mix.
/// - `put(_:_:condition: .ifAbsent)` succeeds for exactly one of any number of concurrent
///   writers of a key that does not exist; the others throw ``ObjectStoreError/preconditionFailed(_:_:)``.
/// - `put(_:_:condition: .ifMatch(etag))` replaces the object only if its current ETag is `etag`;
///   otherwise, and when the key does not exist, it throws `preconditionFailed`.
/// - ETags are opaque strings; a new one is returned by every successful write and identifies
///   that version (different versions of one key never share an ETag unless S3 content hashing
///   makes them equal, in which case the content is equal too).
/// - `delete` of a missing key succeeds (deletes are idempotent).
/// - `list` returns keys with the prefix in ascending byte order, at most `limit` per page, and
///   a continuation token when more remain.
/// - Errors are ``ObjectStoreError`` values naming the operation, bucket, key and endpoint;
///   cancellation surfaces as `CancellationError`.
public protocol ObjectStore: Sendable {
    /// Where the objects live, for messages: `s3://bucket/prefix at http://host:9000`,
    /// `file:///var/lib/floe`, `memory://name`.
    var location: String { get }

    /// Writes the whole object and returns its new ETag.
    func put(_ key: String, _ bytes: [UInt8], condition: WriteCondition) async throws -> String
    /// Reads the whole object, or the bytes of `range` (see ``ByteRange`` for edge cases).
    func get(_ key: String, range: ByteRange?) async throws -> ObjectData
    /// Size and ETag of an object.
    func head(_ key: String) async throws -> ObjectInfo
    /// Removes an object; succeeds if it does not exist.
    func delete(_ key: String) async throws
    /// Removes many objects (any number; implementations batch). Returns the keys that could not
    /// be deleted with the reason; an empty array means all are gone.
    func deleteMany(_ keys: [String]) async throws -> [DeleteFailure]
    /// One page of the keys starting with `prefix`, after the position `continuation` (a token
    /// from the previous page, or nil for the first), at most `limit` (1...1000) objects.
    func list(prefix: String, continuation: String?, limit: Int) async throws -> ListPage

    /// Starts a multipart upload of `key`; the object appears only on completion.
    func createMultipartUpload(_ key: String) async throws -> MultipartUpload
    /// Uploads part `number` (1...10000). All parts but the last must be at least
    /// ``MultipartLimits/minimumPartSize`` bytes (checked on completion).
    func uploadPart(_ upload: MultipartUpload, number: Int, _ bytes: [UInt8]) async throws -> UploadedPart
    /// Assembles the parts, in ascending part-number order, into the object; returns its ETag.
    func completeMultipartUpload(_ upload: MultipartUpload, parts: [UploadedPart]) async throws -> String
    /// Discards an upload and its parts.
    func abortMultipartUpload(_ upload: MultipartUpload) async throws
}

/// The precondition of a write.
public enum WriteCondition: Sendable, Hashable, CustomStringConvertible {
    /// Unconditional.
    case none
    /// Only if no object has the key (S3 `If-None-Match: *`).
    case ifAbsent
    /// Only if the current object's ETag equals this one (S3 `If-Match`).
    case ifMatch(String)

    public var description: String {
        switch self {
        case .none: "unconditional"
        case .ifAbsent: "if absent"
        case .ifMatch(let etag): "if ETag is \(etag)"
        }
    }
}

/// A byte range of an object, as in HTTP `Range: bytes=...`, resolved against the object's size:
///
/// | case | object of 10 bytes | object of 0 bytes |
/// |---|---|---|
/// | `.bytes(2..<5)` | bytes 2, 3, 4 | invalid range |
/// | `.bytes(8..<100)` | bytes 8, 9 (end clamped) | invalid range |
/// | `.bytes(10..<11)` | invalid range (starts at the end) | invalid range |
/// | `.from(7)` | bytes 7, 8, 9 | invalid range |
/// | `.suffix(3)` | bytes 7, 8, 9 | empty |
/// | `.suffix(100)` | all 10 bytes | empty |
///
/// An empty `.bytes` range and `.suffix(0)` are rejected before any request is made.
public enum ByteRange: Sendable, Hashable, CustomStringConvertible {
    case bytes(Range<Int>)
    case from(Int)
    case suffix(Int)

    /// The `Range` header value (`bytes=2-4`, `bytes=7-`, `bytes=-3`).
    public var headerValue: String {
        switch self {
        case .bytes(let r): "bytes=\(r.lowerBound)-\(r.upperBound - 1)"
        case .from(let start): "bytes=\(start)-"
        case .suffix(let n): "bytes=-\(n)"
        }
    }

    public var description: String { headerValue }

    /// Why the range can never be satisfied whatever the object, or nil.
    public var malformedReason: String? {
        switch self {
        case .bytes(let r): r.lowerBound < 0 || r.isEmpty ? "range \(r) is empty or negative" : nil
        case .from(let start): start < 0 ? "range start \(start) is negative" : nil
        case .suffix(let n): n <= 0 ? "suffix length \(n) must be positive" : nil
        }
    }

    /// The byte positions to return for an object of `size` bytes, or nil if the range is not
    /// satisfiable (starts at or past the end).
    public func resolve(size: Int) -> Range<Int>? {
        switch self {
        case .bytes(let r): r.lowerBound < size ? r.lowerBound..<min(r.upperBound, size) : nil
        case .from(let start): start < size ? start..<size : nil
        case .suffix(let n): max(0, size - n)..<size
        }
    }
}

/// An object's identity and size.
public struct ObjectInfo: Sendable, Hashable {
    public var key: String
    public var size: Int
    public var etag: String

    public init(key: String, size: Int, etag: String) {
        self.key = key
        self.size = size
        self.etag = etag
    }
}

/// The result of a read: the bytes of `range` of an object of `objectSize` bytes whose current
/// ETag is `etag`. For a whole-object read `range == 0..<objectSize`.
public struct ObjectData: Sendable {
    public var bytes: [UInt8]
    public var etag: String
    public var objectSize: Int
    public var range: Range<Int>

    public init(bytes: [UInt8], etag: String, objectSize: Int, range: Range<Int>) {
        self.bytes = bytes
        self.etag = etag
        self.objectSize = objectSize
        self.range = range
    }
}

/// One page of a listing.
public struct ListPage: Sendable {
    public var objects: [ObjectInfo]
    /// Pass to the next `list` call; nil when this is the last page.
    public var continuation: String?

    public init(objects: [ObjectInfo], continuation: String?) {
        self.objects = objects
        self.continuation = continuation
    }
}

/// A multipart upload in progress.
public struct MultipartUpload: Sendable, Hashable {
    public var key: String
    public var uploadID: String

    public init(key: String, uploadID: String) {
        self.key = key
        self.uploadID = uploadID
    }
}

/// A part that was uploaded: its number and the ETag the store returned for it.
public struct UploadedPart: Sendable, Hashable {
    public var number: Int
    public var etag: String

    public init(number: Int, etag: String) {
        self.number = number
        self.etag = etag
    }
}

/// A key `deleteMany` could not delete, and why.
public struct DeleteFailure: Sendable {
    public var key: String
    public var error: ObjectStoreError

    public init(key: String, error: ObjectStoreError) {
        self.key = key
        self.error = error
    }
}

/// S3's multipart limits, which every store enforces alike.
public enum MultipartLimits {
    public static let minimumPartSize = 5 << 20
    public static let maximumPartNumber = 10_000
}

/// Key rules shared by all stores: 1 to 1024 bytes of UTF-8, no NUL.
public enum ObjectKey {
    public static let maximumLength = 1024

    /// Why `key` is not a valid object key, or nil.
    public static func problem(_ key: String) -> String? {
        let length = key.utf8.count
        if length == 0 { return "the key is empty" }
        if length > maximumLength { return "the key is \(length) bytes; at most \(maximumLength) are allowed" }
        if key.utf8.contains(0) { return "the key contains a NUL byte" }
        return nil
    }

    /// `name` as one key segment: bytes other than `A-Z a-z 0-9 . _ -` percent-encoded
    /// (uppercase hex), so any group or transactional id is a single, listable segment.
    /// Example: `escaped("tx/1")` is `tx%2F1`.
    public static func escaped(_ name: String) -> String {
        var out = ""
        for byte in name.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                out.append(Character(UnicodeScalar(byte)))
            default:
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }

    /// The name `segment` was made from by ``escaped(_:)``, or nil if it is not such a segment
    /// (a bad escape, invalid UTF-8, or not the canonical encoding).
    public static func unescaped(_ segment: Substring) -> String? {
        var bytes: [UInt8] = []
        var rest = segment.utf8[...]
        while let byte = rest.first {
            rest = rest.dropFirst()
            guard byte == UInt8(ascii: "%") else { bytes.append(byte); continue }
            guard rest.count >= 2, let value = UInt8(String(decoding: rest.prefix(2), as: UTF8.self), radix: 16) else { return nil }
            bytes.append(value)
            rest = rest.dropFirst(2)
        }
        guard let name = String(validating: bytes, as: UTF8.self), escaped(name)[...] == segment else { return nil }
        return name
    }
}

extension ObjectStore {
    /// `deleteMany` for stores without a batch delete: one `delete` per key, failures collected.
    public func deleteOneByOne(_ keys: [String]) async throws -> [DeleteFailure] {
        var failures: [DeleteFailure] = []
        for key in keys {
            do { try await delete(key) } catch let error as ObjectStoreError { failures.append(DeleteFailure(key: key, error: error)) }
        }
        return failures
    }

    /// Unconditional whole-object write.
    public func put(_ key: String, _ bytes: [UInt8]) async throws -> String {
        try await put(key, bytes, condition: .none)
    }

    /// Whole-object read.
    public func get(_ key: String) async throws -> ObjectData { try await get(key, range: nil) }

    /// Every object with the prefix, following continuations (`pageSize` per request).
    public func listAll(prefix: String, pageSize: Int = 1000) async throws -> [ObjectInfo] {
        var all: [ObjectInfo] = []
        var continuation: String?
        repeat {
            let page = try await list(prefix: prefix, continuation: continuation, limit: pageSize)
            all += page.objects
            continuation = page.continuation
        } while continuation != nil
        return all
    }

    /// Uploads `bytes` as a multipart object in parts of `partSize` bytes (the last may be
    /// smaller), aborting the upload if any step fails. Returns the object's ETag.
    public func putMultipart(_ key: String, _ bytes: [UInt8], partSize: Int = 8 << 20) async throws -> String {
        precondition(partSize >= MultipartLimits.minimumPartSize, "part size \(partSize) is below S3's minimum")
        let upload = try await createMultipartUpload(key)
        do {
            var parts: [UploadedPart] = []
            var offset = 0
            var number = 1
            repeat {
                let end = min(bytes.count, offset + partSize)
                parts.append(try await uploadPart(upload, number: number, Array(bytes[offset..<end])))
                offset = end
                number += 1
            } while offset < bytes.count
            return try await completeMultipartUpload(upload, parts: parts)
        } catch {
            do { try await abortMultipartUpload(upload) } catch let abortError {
                throw ObjectStoreError.multipartAbortFailed(
                    ObjectStoreErrorContext(operation: "AbortMultipartUpload", store: location, key: key),
                    "after \(error): \(abortError)")
            }
            throw error
        }
    }
}

/// Shared validation of a multipart completion request against the parts actually uploaded.
enum MultipartValidation {
    /// Why `requested` cannot complete an upload whose stored parts are `stored` (number → size,
    /// ETag), or nil.
    static func problem(requested: [UploadedPart], stored: [Int: (size: Int, etag: String)]) -> String? {
        if requested.isEmpty { return "no parts given" }
        for (index, part) in requested.enumerated() {
            if index > 0 && requested[index - 1].number >= part.number {
                return "part numbers must be strictly ascending (\(requested[index - 1].number) then \(part.number))"
            }
            guard let stored = stored[part.number] else { return "part \(part.number) was not uploaded" }
            if stored.etag != part.etag { return "part \(part.number) has ETag \(stored.etag), not \(part.etag)" }
            if index < requested.count - 1 && stored.size < MultipartLimits.minimumPartSize {
                return "part \(part.number) is \(stored.size) bytes; all parts but the last must be at least \(MultipartLimits.minimumPartSize)"
            }
        }
        return nil
    }
}
