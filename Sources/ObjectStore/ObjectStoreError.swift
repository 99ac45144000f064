/// What an error is about: the operation, the store (bucket or directory), the key and the
/// endpoint, so every message can name them.
public struct ObjectStoreErrorContext: Sendable, Hashable, CustomStringConvertible {
    public var operation: String
    /// `s3://bucket/prefix at http://host:port`, `file:///dir`, `memory://name`.
    public var store: String
    public var key: String?

    public init(operation: String, store: String, key: String? = nil) {
        self.operation = operation
        self.store = store
        self.key = key
    }

    public var description: String {
        if let key { return "\(operation) of key '\(key)' in \(store)" }
        return "\(operation) in \(store)"
    }
}

/// The errors of the ObjectStore module. Each names what failed (operation, key, bucket,
/// endpoint) and carries the server's or the system's detail.
public enum ObjectStoreError: Error, Sendable, CustomStringConvertible {
    /// No object (or multipart upload) with that key.
    case notFound(ObjectStoreErrorContext, String)
    /// A conditional write lost: the object exists (`ifAbsent`), its ETag differs or it is
    /// missing (`ifMatch`), or a concurrent conditional write won (S3 409 ConditionalRequestConflict).
    case preconditionFailed(ObjectStoreErrorContext, String)
    /// The server asked us to slow down (S3 503 SlowDown, 429).
    case throttled(ObjectStoreErrorContext, String)
    /// Credentials are missing, wrong, or lack permission.
    case accessDenied(ObjectStoreErrorContext, String)
    /// The bucket (or local directory) does not exist.
    case bucketMissing(ObjectStoreErrorContext, String)
    /// No answer in time; the operation may or may not have been applied.
    case timeout(ObjectStoreErrorContext, String)
    /// The connection failed; the operation may or may not have been applied.
    case transport(ObjectStoreErrorContext, String)
    /// The server failed (5xx other than throttling); the operation may or may not have been applied.
    case server(ObjectStoreErrorContext, status: Int, String)
    /// The server ignores `If-None-Match` / `If-Match` on PUT, so Floe's fencing cannot work.
    case conditionalWritesUnsupported(ObjectStoreErrorContext, String)
    /// The byte range starts at or past the end of the object, or is malformed.
    case invalidRange(ObjectStoreErrorContext, String)
    /// The request itself is wrong (bad key, bad part list, unexpected 4xx).
    case invalidRequest(ObjectStoreErrorContext, String)
    /// A local file or directory operation failed (errno detail).
    case io(ObjectStoreErrorContext, String)
    /// Stored data failed its checksum or format check, or a response could not be parsed.
    case corrupt(ObjectStoreErrorContext, String)
    /// The endpoint answered, but not as S3 does (a web page, a PUT or GET without an ETag, a
    /// listing that is not `ListBucketResult`): most likely it is not the S3 API at all.
    case notS3(ObjectStoreErrorContext, String)
    /// A multipart upload failed and aborting it failed too (parts may be left behind).
    case multipartAbortFailed(ObjectStoreErrorContext, String)
    /// A storage URL could not be parsed or opened.
    case invalidStorageURL(url: String, reason: String)
    /// No usable credentials were found.
    case credentials(String)

    public var context: ObjectStoreErrorContext? {
        switch self {
        case .notFound(let c, _), .preconditionFailed(let c, _), .throttled(let c, _), .accessDenied(let c, _),
             .bucketMissing(let c, _), .timeout(let c, _), .transport(let c, _), .server(let c, _, _),
             .conditionalWritesUnsupported(let c, _), .invalidRange(let c, _), .invalidRequest(let c, _),
             .io(let c, _), .corrupt(let c, _), .notS3(let c, _), .multipartAbortFailed(let c, _):
            c
        case .invalidStorageURL, .credentials: nil
        }
    }

    /// Worth retrying after a backoff: throttling, timeouts, transport failures, server errors.
    /// Never a failed precondition.
    public var isRetryable: Bool {
        switch self {
        case .throttled, .timeout, .transport, .server: true
        default: false
        }
    }

    /// The request may have been applied although it failed (so a retried conditional write
    /// may see its own earlier success as a failed precondition).
    public var mayHaveBeenApplied: Bool {
        switch self {
        case .timeout, .transport, .server: true
        default: false
        }
    }

    /// A short snake_case name of the case, for metric labels and logs.
    public var kindName: String {
        switch self {
        case .notFound: "not_found"
        case .preconditionFailed: "precondition_failed"
        case .throttled: "throttled"
        case .accessDenied: "access_denied"
        case .bucketMissing: "bucket_missing"
        case .timeout: "timeout"
        case .transport: "transport"
        case .server: "server"
        case .conditionalWritesUnsupported: "conditional_writes_unsupported"
        case .invalidRange: "invalid_range"
        case .invalidRequest: "invalid_request"
        case .io: "io"
        case .corrupt: "corrupt"
        case .notS3: "not_s3"
        case .multipartAbortFailed: "multipart_abort_failed"
        case .invalidStorageURL: "invalid_storage_url"
        case .credentials: "credentials"
        }
    }

    public var description: String {
        switch self {
        case .notFound(let c, let d): "not found: \(c): \(d)"
        case .preconditionFailed(let c, let d): "precondition failed: \(c): \(d)"
        case .throttled(let c, let d): "throttled: \(c): \(d)"
        case .accessDenied(let c, let d): "access denied: \(c): \(d)"
        case .bucketMissing(let c, let d): "bucket missing: \(c): \(d)"
        case .timeout(let c, let d): "timeout: \(c): \(d)"
        case .transport(let c, let d): "transport error: \(c): \(d)"
        case .server(let c, let status, let d): "server error \(status): \(c): \(d)"
        case .conditionalWritesUnsupported(let c, let d): "conditional writes unsupported: \(c): \(d)"
        case .invalidRange(let c, let d): "invalid range: \(c): \(d)"
        case .invalidRequest(let c, let d): "invalid request: \(c): \(d)"
        case .io(let c, let d): "I/O error: \(c): \(d)"
        case .corrupt(let c, let d): "corrupt data: \(c): \(d)"
        case .notS3(let c, let d): "\(c): \(d)"
        case .multipartAbortFailed(let c, let d): "multipart upload failed and could not be aborted: \(c): \(d)"
        case .invalidStorageURL(let url, let reason): "invalid storage URL \(url): \(reason)"
        case .credentials(let d): "no usable S3 credentials: \(d)"
        }
    }
}
