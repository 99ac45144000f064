import Foundation
import HTTPClient
import Support
import Synchronization

/// Settings of an ``S3ObjectStore``; ``StorageURL`` builds them from `s3://` URLs.
public struct S3Configuration: Sendable {
    public var bucket: String
    /// Prepended to every key; empty or ending in `/`.
    public var prefix: String
    /// `scheme://host[:port]`; default `https://s3.<region>.amazonaws.com`.
    public var endpoint: String
    public var region: String
    /// `endpoint/bucket/key` (MinIO, Ceph, moto) instead of `bucket.host/key` (AWS default).
    public var pathStyle: Bool
    public var credentials: [S3CredentialSource]
    /// Probe once, before the first conditional write, that the server honours
    /// `If-None-Match` and `If-Match`; fail with ``ObjectStoreError/conditionalWritesUnsupported(_:_:)`` if not.
    public var checkConditionalWrites: Bool
    public var http: HTTPClientConfiguration

    public init(bucket: String, prefix: String = "", endpoint: String? = nil, region: String = "us-east-1",
                pathStyle: Bool = false, credentials: [S3CredentialSource] = [.environment, .sharedFile(path: nil, profile: nil)],
                checkConditionalWrites: Bool = true, http: HTTPClientConfiguration = HTTPClientConfiguration()) {
        self.bucket = bucket
        self.prefix = prefix.isEmpty || prefix.hasSuffix("/") ? prefix : prefix + "/"
        var endpoint = endpoint ?? "https://s3.\(region).amazonaws.com"
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        self.endpoint = endpoint
        self.region = region
        self.pathStyle = pathStyle
        self.credentials = credentials
        self.checkConditionalWrites = checkConditionalWrites
        self.http = http
    }
}

/// The S3 store: path-style or virtual-hosted requests signed with SigV4, over ``HTTPClient``.
///
/// Conditional writes use `If-None-Match: *` and `If-Match: <etag>`; 412 PreconditionFailed and
/// 409 ConditionalRequestConflict become ``ObjectStoreError/preconditionFailed(_:_:)``, and so
/// does 404 on an `If-Match` write (the object is gone). Unless disabled, the first conditional
/// write is preceded by a probe on a scratch key under the prefix (`.floe-probe/...`) that checks
/// the server rejects both conditions when they do not hold; a server that ignores them makes
/// every conditional write fail with ``ObjectStoreError/conditionalWritesUnsupported(_:_:)``.
///
/// This type does not retry: wrap it in ``RetryingObjectStore`` (``StorageURL/open(clock:logger:metrics:)``
/// does) for backoff with jitter on throttling, timeouts and 5xx.
public final class S3ObjectStore: ObjectStore {
    public let configuration: S3Configuration
    private let http: HTTPClient
    private let signer: SigV4Signer
    private let credentials: S3CredentialsProvider
    private let clock: any FloeClock
    private let scheme: String
    private let hostPort: String
    private let probe = Mutex<ProbeState>(.unknown)
    /// Computes the SigV4 payload hash (SHA-256 of the whole body) of large bodies at
    /// `SCHED_IDLE`: tens of milliseconds of CPU for an upload, which would otherwise hold one of
    /// the cooperative threads that answer requests.
    private let hashing = BlockingThreadPool(name: "floe-s3hash", threads: 1, idlePriority: true)
    /// Bodies of this size or more (uploads, compaction outputs, multipart parts) are hashed on
    /// `hashing`; smaller ones (the object WAL's objects, at most `flushBytes` plus one batch;
    /// manifests, leases) on the caller, so that nothing on the produce path waits for an idle CPU.
    static let idleHashBytes = 8 << 20
    /// Bodies hashed on `hashing` so far (for tests).
    let idleHashes = Atomic<Int>(0)

    private enum ProbeState {
        case unknown
        case probing([CheckedContinuation<Void, any Error>])
        case supported
        case unsupported(String)
    }

    public init(configuration: S3Configuration, clock: any FloeClock = RealClock(),
                environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        let ctx = ObjectStoreErrorContext(operation: "open", store: "s3://\(configuration.bucket) at \(configuration.endpoint)")
        guard let schemeEnd = configuration.endpoint.range(of: "://") else {
            throw ObjectStoreError.invalidRequest(ctx, "endpoint \(configuration.endpoint) has no scheme (http:// or https://)")
        }
        scheme = String(configuration.endpoint[..<schemeEnd.lowerBound]).lowercased()
        guard scheme == "http" || scheme == "https" else {
            throw ObjectStoreError.invalidRequest(ctx, "endpoint scheme \(scheme) is not http or https")
        }
        let rest = configuration.endpoint[schemeEnd.upperBound...]
        guard !rest.isEmpty, !rest.contains("/") else {
            throw ObjectStoreError.invalidRequest(ctx, "endpoint \(configuration.endpoint) must be scheme://host[:port] without a path")
        }
        hostPort = String(rest)
        guard !configuration.bucket.isEmpty else { throw ObjectStoreError.invalidRequest(ctx, "the bucket name is empty") }
        self.configuration = configuration
        self.clock = clock
        signer = SigV4Signer(region: configuration.region, service: "s3")
        credentials = S3CredentialsProvider(sources: configuration.credentials, environment: environment, clock: clock)
        do { http = try HTTPClient(configuration: configuration.http) } catch {
            throw ObjectStoreError.transport(ctx, "\(error)")
        }
    }

    deinit {
        http.shutdown()
        hashing.shutdown()
    }

    public var location: String {
        "s3://\(configuration.bucket)/\(configuration.prefix) at \(configuration.endpoint)"
    }

    private func context(_ operation: String, _ key: String?) -> ObjectStoreErrorContext {
        ObjectStoreErrorContext(operation: operation, store: location, key: key)
    }

    // MARK: requests

    /// The host and unencoded path of `objectKey` (nil: the bucket itself).
    private func target(_ objectKey: String?) -> (host: String, path: String) {
        if configuration.pathStyle {
            return (hostPort, "/\(configuration.bucket)" + (objectKey.map { "/" + $0 } ?? ""))
        }
        return ("\(configuration.bucket).\(hostPort)", "/" + (objectKey ?? ""))
    }

    /// Signs and sends one request; returns any response (callers map statuses).
    private func send(_ method: String, objectKey: String?, query: [(String, String)] = [], headers extra: [(String, String)] = [],
                      body: [UInt8] = [], ctx: ObjectStoreErrorContext) async throws -> HTTPResponse {
        let (host, path) = target(objectKey)
        let amzDate = SigV4Signer.amzDate(clock.wallTime())
        let payloadHash = try await self.payloadHash(body, ctx: ctx)
        var signed: [(String, String)] = [("host", host), ("x-amz-date", amzDate), ("x-amz-content-sha256", payloadHash)]
        var headers: HTTPHeaders
        if configuration.credentials == [.anonymous] {
            signed += extra
            headers = HTTPHeaders(signed)
        } else {
            let creds = try await credentials.credentials()
            if let token = creds.sessionToken { signed.append(("x-amz-security-token", token)) }
            signed += extra
            let request = SigV4Signer.Request(method: method, path: path, query: query, headers: signed, payloadHash: payloadHash)
            let authorization = signer.authorization(request, amzDate: amzDate, credentials: creds)
            headers = HTTPHeaders(signed)
            headers.add("Authorization", authorization)
        }
        let queryString = SigV4Signer.canonicalQuery(query)
        let url = "\(scheme)://\(host)\(SigV4Signer.uriEncode(path, keepSlash: true))" + (queryString.isEmpty ? "" : "?" + queryString)
        do {
            return try await http.execute(HTTPRequest(method: method, url: url, headers: headers, body: body))
        } catch let error as HTTPClientError {
            switch error {
            case .timeout(_, _, let after): throw ObjectStoreError.timeout(ctx, "no response within \(after) from \(configuration.endpoint)")
            case .shutDown: throw ObjectStoreError.transport(ctx, "the HTTP client is shut down")
            default: throw ObjectStoreError.transport(ctx, "\(error)")
            }
        }
    }

    /// The hex SHA-256 of `body` for the `x-amz-content-sha256` header and the signature.
    private func payloadHash(_ body: [UInt8], ctx: ObjectStoreErrorContext) async throws -> String {
        guard body.count >= Self.idleHashBytes else { return Digest.hex(Digest.sha256(body)) }
        do {
            return try await hashing.run { [self] in
                idleHashes.add(1, ordering: .relaxed)
                return Digest.hex(Digest.sha256(body))
            }
        } catch let error as SupportError {
            throw ObjectStoreError.transport(ctx, "\(error)")
        }
    }

    /// The typed error for a non-success response.
    private func failure(_ response: HTTPResponse, ctx: ObjectStoreErrorContext, condition: WriteCondition = .none) -> ObjectStoreError {
        var code = ""
        var message = ""
        var isS3Document = true
        if !response.body.isEmpty {
            // The error document is optional (HEAD has none); a body that is not S3's error XML
            // still leaves the status code to classify the failure, and its text goes in the detail.
            do {
                let xml = try XMLElement.parse(response.body)
                // S3's error document is <Error>; a few compatible servers wrap it in <ErrorResponse>.
                if let error = xml.name == "Error" ? xml : xml.name == "ErrorResponse" ? xml.child("Error") : nil {
                    code = error.value("Code") ?? ""
                    message = error.value("Message") ?? ""
                } else {
                    message = notS3(response, "its \(response.status) answer is <\(xml.name)>, not S3's <Error> document")
                    isS3Document = false
                }
            } catch {
                // Not S3's error document: most likely the endpoint is not S3 at all (a web
                // server, a proxy's error page). Say so, with what it returned, on one line.
                message = notS3(response, "its \(response.status) answer is not S3's XML error document")
                isS3Document = false
            }
        }
        let requestID = response.headers["x-amz-request-id"].map { ", request id \($0)" } ?? ""
        let detail = "HTTP \(response.status)\(code.isEmpty ? "" : " \(code)")\(message.isEmpty ? "" : ": \(message)")\(requestID); endpoint \(configuration.endpoint)"
        switch response.status {
        case 412: return .preconditionFailed(ctx, detail)
        case 409 where code == "ConditionalRequestConflict": return .preconditionFailed(ctx, detail)
        // S3 answers a missing key with an XML document (HEAD: with none); a web page is not
        // "no such key", so that a wrong endpoint is not taken for an empty bucket.
        case 404 where !isS3Document: return .notS3(ctx, message)
        case 404 where code == "NoSuchBucket": return .bucketMissing(ctx, detail)
        case 404 where condition != .none: return .preconditionFailed(ctx, "the object does not exist (\(detail))")
        case 404: return .notFound(ctx, detail)
        case 416: return .invalidRange(ctx, detail)
        case 401, 403: return .accessDenied(ctx, detail)
        case 429: return .throttled(ctx, detail)
        case 503 where code == "SlowDown" || code.isEmpty: return .throttled(ctx, detail)
        case 501 where condition != .none:
            return .conditionalWritesUnsupported(ctx, "the server does not implement conditional PUT (\(detail))")
        case 400 where code == "RequestTimeout": return .timeout(ctx, detail)
        case 500...599: return .server(ctx, status: response.status, detail)
        default: return .invalidRequest(ctx, detail)
        }
    }

    /// "ENDPOINT did not answer like S3: WHAT (HTTP 200, text/html: <html>hello…)", on one line:
    /// the message for answers only a server that is not S3 (or not the S3 API) gives.
    func notS3(_ response: HTTPResponse, _ what: String) -> String {
        let type = response.headers["Content-Type"] ?? "no Content-Type"
        var text = ""
        for c in response.bodyText.prefix(160) { text.append(c.isNewline || c == "\t" ? " " : c) }
        while text.contains("  ") { text = text.replacingOccurrences(of: "  ", with: " ") }
        let body = response.body.isEmpty ? "empty body" : "\(type): \(text.trimmingCharacters(in: .whitespaces))\(response.body.count > 160 ? "…" : "")"
        return "\(configuration.endpoint) did not answer like S3: \(what) (HTTP \(response.status), \(body)); is the endpoint an S3 API?"
    }

    private func parseXML(_ response: HTTPResponse, ctx: ObjectStoreErrorContext) throws -> XMLElement {
        do { return try XMLElement.parse(response.body) } catch {
            throw ObjectStoreError.notS3(ctx, notS3(response, "its answer is not XML (\(error))"))
        }
    }

    private func objectKey(_ key: String, ctx: ObjectStoreErrorContext) throws -> String {
        if let problem = ObjectKey.problem(key) { throw ObjectStoreError.invalidRequest(ctx, problem) }
        return configuration.prefix + key
    }

    // MARK: contract

    public func put(_ key: String, _ bytes: [UInt8], condition: WriteCondition) async throws -> String {
        let ctx = context("PUT", key)
        let full = try objectKey(key, ctx: ctx)
        if condition != .none && configuration.checkConditionalWrites { try await ensureConditionalWritesSupported() }
        return try await rawPut(full, bytes, condition: condition, ctx: ctx)
    }

    private func rawPut(_ full: String, _ bytes: [UInt8], condition: WriteCondition, ctx: ObjectStoreErrorContext) async throws -> String {
        var headers: [(String, String)] = []
        switch condition {
        case .none: break
        case .ifAbsent: headers.append(("if-none-match", "*"))
        case .ifMatch(let etag): headers.append(("if-match", etag))
        }
        let response = try await send("PUT", objectKey: full, headers: headers, body: bytes, ctx: ctx)
        guard response.status == 200 else { throw failure(response, ctx: ctx, condition: condition) }
        guard let etag = response.headers["ETag"] else {
            throw ObjectStoreError.notS3(ctx, notS3(response, "it answered a PUT with 200 but no ETag header"))
        }
        return etag
    }

    public func get(_ key: String, range: ByteRange?) async throws -> ObjectData {
        let ctx = context("GET", key)
        let full = try objectKey(key, ctx: ctx)
        if let reason = range?.malformedReason { throw ObjectStoreError.invalidRange(ctx, reason) }
        let response = try await send("GET", objectKey: full, headers: range.map { [("range", $0.headerValue)] } ?? [], ctx: ctx)
        let etag = response.headers["ETag"] ?? ""
        if (response.status == 200 || response.status == 206) && etag.isEmpty {
            // S3 sends every object with its ETag; a page without one is not an object.
            throw ObjectStoreError.notS3(ctx, notS3(response, "it answered a GET with \(response.status) but no ETag header"))
        }
        switch response.status {
        case 206:
            guard let contentRange = response.headers["Content-Range"], let parsed = S3ObjectStore.parseContentRange(contentRange),
                  parsed.range.count == response.body.count else {
                throw ObjectStoreError.corrupt(ctx, "206 with Content-Range '\(response.headers["Content-Range"] ?? "")' and \(response.body.count) bytes")
            }
            return ObjectData(bytes: response.body, etag: etag, objectSize: parsed.size, range: parsed.range)
        case 200:
            // A full object: either no range was asked, or the server chose to send it all
            // (an empty object with a suffix range); cut the range here.
            let size = response.body.count
            guard let range else { return ObjectData(bytes: response.body, etag: etag, objectSize: size, range: 0..<size) }
            guard let positions = range.resolve(size: size) else {
                throw ObjectStoreError.invalidRange(ctx, "\(range) is outside an object of \(size) bytes")
            }
            return ObjectData(bytes: Array(response.body[positions]), etag: etag, objectSize: size, range: positions)
        default:
            throw failure(response, ctx: ctx)
        }
    }

    /// `bytes 7-9/10` → (7..<10, 10).
    static func parseContentRange(_ value: String) -> (range: Range<Int>, size: Int)? {
        guard value.hasPrefix("bytes ") else { return nil }
        let parts = value.dropFirst(6).split(separator: "/")
        guard parts.count == 2, let size = Int(parts[1]) else { return nil }
        let bounds = parts[0].split(separator: "-")
        guard bounds.count == 2, let first = Int(bounds[0]), let last = Int(bounds[1]), first <= last else { return nil }
        return (first..<(last + 1), size)
    }

    public func head(_ key: String) async throws -> ObjectInfo {
        let ctx = context("HEAD", key)
        let full = try objectKey(key, ctx: ctx)
        let response = try await send("HEAD", objectKey: full, ctx: ctx)
        guard response.status == 200 else { throw failure(response, ctx: ctx) }
        guard let length = response.headers["Content-Length"].flatMap({ Int($0) }), let etag = response.headers["ETag"] else {
            throw ObjectStoreError.corrupt(ctx, "HEAD response from \(configuration.endpoint) lacks Content-Length or ETag")
        }
        return ObjectInfo(key: key, size: length, etag: etag)
    }

    public func delete(_ key: String) async throws {
        let ctx = context("DELETE", key)
        let full = try objectKey(key, ctx: ctx)
        let response = try await send("DELETE", objectKey: full, ctx: ctx)
        guard response.status == 204 || response.status == 200 else { throw failure(response, ctx: ctx) }
    }

    public func deleteMany(_ keys: [String]) async throws -> [DeleteFailure] {
        var failures: [DeleteFailure] = []
        var start = 0
        while start < keys.count {
            let batch = Array(keys[start..<min(keys.count, start + 1000)])
            start += batch.count
            let ctx = context("DeleteObjects", batch.first)
            var body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete><Quiet>true</Quiet>"
            var valid: [String: String] = [:]
            for key in batch {
                if let problem = ObjectKey.problem(key) {
                    failures.append(DeleteFailure(key: key, error: .invalidRequest(context("DELETE", key), problem)))
                    continue
                }
                let full = configuration.prefix + key
                valid[full] = key
                body += "<Object><Key>\(xmlEscape(full))</Key></Object>"
            }
            body += "</Delete>"
            if valid.isEmpty { continue }
            let bytes = Array(body.utf8)
            let response = try await send("POST", objectKey: nil, query: [("delete", "")],
                                          headers: [("content-md5", Digest.base64(Digest.md5(bytes))), ("content-type", "application/xml")],
                                          body: bytes, ctx: ctx)
            guard response.status == 200 else { throw failure(response, ctx: ctx) }
            let xml = try parseXML(response, ctx: ctx)
            if xml.name == "Error" { throw failure(HTTPResponse(status: 500, headers: response.headers, body: response.body), ctx: ctx) }
            for error in xml.children("Error") {
                let full = error.value("Key") ?? ""
                let key = valid[full] ?? full
                let code = error.value("Code") ?? "unknown"
                let detail = "\(code): \(error.value("Message") ?? ""); endpoint \(configuration.endpoint)"
                let keyContext = context("DELETE", key)
                let mapped: ObjectStoreError = code == "AccessDenied" ? .accessDenied(keyContext, detail)
                    : code == "SlowDown" ? .throttled(keyContext, detail)
                    : code == "InternalError" ? .server(keyContext, status: 500, detail) : .invalidRequest(keyContext, detail)
                failures.append(DeleteFailure(key: key, error: mapped))
            }
        }
        return failures
    }

    public func list(prefix: String, continuation: String?, limit: Int) async throws -> ListPage {
        let ctx = context("LIST", prefix)
        guard (1...1000).contains(limit) else { throw ObjectStoreError.invalidRequest(ctx, "limit \(limit) is outside 1...1000") }
        var query: [(String, String)] = [("list-type", "2"), ("prefix", configuration.prefix + prefix), ("max-keys", String(limit))]
        if let continuation { query.append(("continuation-token", continuation)) }
        let response = try await send("GET", objectKey: nil, query: query, ctx: ctx)
        guard response.status == 200 else { throw failure(response, ctx: ctx) }
        let xml = try parseXML(response, ctx: ctx)
        guard xml.name == "ListBucketResult" else {
            throw ObjectStoreError.notS3(ctx, notS3(response, "it answered a LIST with <\(xml.name)>, not <ListBucketResult>"))
        }
        var objects: [ObjectInfo] = []
        for entry in xml.children("Contents") {
            guard let full = entry.value("Key"), full.hasPrefix(configuration.prefix),
                  let size = entry.value("Size").flatMap({ Int($0) }) else {
                throw ObjectStoreError.corrupt(ctx, "a listed entry lacks Key or Size, or is outside the prefix")
            }
            objects.append(ObjectInfo(key: String(full.dropFirst(configuration.prefix.count)), size: size, etag: entry.value("ETag") ?? ""))
        }
        let truncated = xml.value("IsTruncated") == "true"
        let next = xml.value("NextContinuationToken")
        if truncated && next == nil { throw ObjectStoreError.corrupt(ctx, "a truncated listing without NextContinuationToken") }
        return ListPage(objects: objects, continuation: truncated ? next : nil)
    }

    // MARK: multipart

    public func createMultipartUpload(_ key: String) async throws -> MultipartUpload {
        let ctx = context("CreateMultipartUpload", key)
        let full = try objectKey(key, ctx: ctx)
        let response = try await send("POST", objectKey: full, query: [("uploads", "")], ctx: ctx)
        guard response.status == 200 else { throw failure(response, ctx: ctx) }
        guard let id = try parseXML(response, ctx: ctx).value("UploadId"), !id.isEmpty else {
            throw ObjectStoreError.corrupt(ctx, "CreateMultipartUpload response has no UploadId")
        }
        return MultipartUpload(key: key, uploadID: id)
    }

    public func uploadPart(_ upload: MultipartUpload, number: Int, _ bytes: [UInt8]) async throws -> UploadedPart {
        let ctx = context("UploadPart", upload.key)
        let full = try objectKey(upload.key, ctx: ctx)
        guard (1...MultipartLimits.maximumPartNumber).contains(number) else {
            throw ObjectStoreError.invalidRequest(ctx, "part number \(number) is outside 1...\(MultipartLimits.maximumPartNumber)")
        }
        let response = try await send("PUT", objectKey: full, query: [("partNumber", String(number)), ("uploadId", upload.uploadID)],
                                      body: bytes, ctx: ctx)
        guard response.status == 200 else { throw failure(response, ctx: ctx) }
        guard let etag = response.headers["ETag"] else { throw ObjectStoreError.corrupt(ctx, "UploadPart response has no ETag") }
        return UploadedPart(number: number, etag: etag)
    }

    public func completeMultipartUpload(_ upload: MultipartUpload, parts: [UploadedPart]) async throws -> String {
        let ctx = context("CompleteMultipartUpload", upload.key)
        let full = try objectKey(upload.key, ctx: ctx)
        var body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CompleteMultipartUpload>"
        for part in parts { body += "<Part><PartNumber>\(part.number)</PartNumber><ETag>\(xmlEscape(part.etag))</ETag></Part>" }
        body += "</CompleteMultipartUpload>"
        let response = try await send("POST", objectKey: full, query: [("uploadId", upload.uploadID)],
                                      headers: [("content-type", "application/xml")], body: Array(body.utf8), ctx: ctx)
        guard response.status == 200 else { throw failure(response, ctx: ctx) }
        // S3 may report a failure inside a 200 response.
        let xml = try parseXML(response, ctx: ctx)
        if xml.name == "Error" {
            let status = xml.value("Code") == "InternalError" ? 500 : 400
            throw failure(HTTPResponse(status: status, headers: response.headers, body: response.body), ctx: ctx)
        }
        guard let etag = xml.value("ETag") else { throw ObjectStoreError.corrupt(ctx, "CompleteMultipartUpload response has no ETag") }
        return etag
    }

    public func abortMultipartUpload(_ upload: MultipartUpload) async throws {
        let ctx = context("AbortMultipartUpload", upload.key)
        let full = try objectKey(upload.key, ctx: ctx)
        let response = try await send("DELETE", objectKey: full, query: [("uploadId", upload.uploadID)], ctx: ctx)
        guard response.status == 204 || response.status == 200 else { throw failure(response, ctx: ctx) }
    }

    // MARK: bucket administration (tests and benchmarks)

    /// Creates the bucket; succeeds if it already exists and is ours.
    public func createBucket() async throws {
        let ctx = context("CreateBucket", nil)
        var body: [UInt8] = []
        if configuration.region != "us-east-1" {
            body = Array(("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                + "<LocationConstraint>\(configuration.region)</LocationConstraint></CreateBucketConfiguration>").utf8)
        }
        let response = try await send("PUT", objectKey: nil, body: body, ctx: ctx)
        if response.status == 200 { return }
        let error = failure(response, ctx: ctx)
        if response.status == 409, response.bodyText.contains("BucketAlreadyOwnedByYou") { return }
        throw error
    }

    // MARK: conditional-write probe

    /// Checks once that the server enforces `If-None-Match: *` and `If-Match`.
    public func ensureConditionalWritesSupported() async throws {
        enum Next { case done, fail(String), wait, run }
        let next: Next = probe.withLock { state in
            switch state {
            case .supported: return .done
            case .unsupported(let reason): return .fail(reason)
            case .probing: return .wait
            case .unknown:
                state = .probing([])
                return .run
            }
        }
        let ctx = context("PUT (conditional-write check)", nil)
        switch next {
        case .done: return
        case .fail(let reason): throw ObjectStoreError.conditionalWritesUnsupported(ctx, reason)
        case .wait:
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let immediate: Result<Void, any Error>? = probe.withLock { state in
                    switch state {
                    case .probing(var waiters):
                        waiters.append(continuation)
                        state = .probing(waiters)
                        return nil
                    case .supported: return .success(())
                    case .unsupported(let reason): return .failure(ObjectStoreError.conditionalWritesUnsupported(ctx, reason))
                    case .unknown: return .failure(ObjectStoreError.transport(ctx, "the conditional-write check failed; retry"))
                    }
                }
                if let immediate { continuation.resume(with: immediate) }
            }
        case .run:
            let outcome: Result<String?, any Error>
            do { outcome = .success(try await runProbe()) } catch { outcome = .failure(error) }
            let waiters: [CheckedContinuation<Void, any Error>] = probe.withLock { state in
                guard case .probing(let waiters) = state else { return [] }
                switch outcome {
                case .success(nil): state = .supported
                case .success(let reason?): state = .unsupported(reason)
                case .failure: state = .unknown
                }
                return waiters
            }
            let result: Result<Void, any Error>
            switch outcome {
            case .success(nil): result = .success(())
            case .success(let reason?): result = .failure(ObjectStoreError.conditionalWritesUnsupported(ctx, reason))
            case .failure(let error): result = .failure(error)
            }
            for waiter in waiters { waiter.resume(with: result) }
            try result.get()
        }
    }

    /// nil if both conditions are enforced, else why not.
    private func runProbe() async throws -> String? {
        var rng = SystemRandomNumberGenerator()
        let key = configuration.prefix + ".floe-probe/" + LocalFS.hex(LocalFS.randomBytes(8, using: &rng))
        let ctx = context("PUT (conditional-write check)", key)
        _ = try await rawPut(key, Array("probe".utf8), condition: .none, ctx: ctx)
        var reason: String?
        do {
            _ = try await rawPut(key, Array("again".utf8), condition: .ifAbsent, ctx: ctx)
            reason = "\(configuration.endpoint) accepted 'If-None-Match: *' on an existing object; it ignores conditional writes"
        } catch ObjectStoreError.preconditionFailed {}
        if reason == nil {
            do {
                _ = try await rawPut(key, Array("again".utf8), condition: .ifMatch("\"00000000000000000000000000000000\""), ctx: ctx)
                reason = "\(configuration.endpoint) accepted 'If-Match' with a wrong ETag; it ignores conditional writes"
            } catch ObjectStoreError.preconditionFailed {}
        }
        let response = try await send("DELETE", objectKey: key, ctx: ctx)
        guard response.status == 204 || response.status == 200 else { throw failure(response, ctx: ctx) }
        return reason
    }
}
