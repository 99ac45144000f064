import CCurl
import Foundation
import Support
import Synchronization

private let curlGlobalInitResult: CURLcode = curl_global_init(Int(CURL_GLOBAL_ALL))

/// An HTTP/1.1 client on libcurl's multi interface, driven by one dedicated thread.
///
/// Invariants:
/// - All libcurl calls except `curl_multi_wakeup` happen on the client's own thread; async
///   callers only enqueue work and suspend, so no cooperative-pool thread ever blocks on I/O.
/// - At most `maxConcurrentRequests` transfers are in flight; at most `maxQueuedRequests` wait.
/// - Connections are kept in the multi handle's cache and reused across requests to the same
///   host (HTTP keep-alive).
/// - Each request completes exactly once: with a response, an ``HTTPClientError``, or
///   `CancellationError` when the calling task is cancelled (the transfer is then aborted).
///
/// Call ``shutdown()`` when done; it fails queued and in-flight requests with
/// ``HTTPClientError/shutDown(method:url:)`` and joins the thread (deinit does the same).
public final class HTTPClient: Sendable {
    public let configuration: HTTPClientConfiguration
    private let engine: Engine

    public init(configuration: HTTPClientConfiguration = HTTPClientConfiguration()) throws {
        precondition(configuration.maxConcurrentRequests > 0 && configuration.maxQueuedRequests >= 0,
                     "HTTPClient needs maxConcurrentRequests > 0")
        if curlGlobalInitResult != CURLE_OK {
            throw HTTPClientError.initialization(reason: String(cString: curl_easy_strerror(curlGlobalInitResult)))
        }
        self.configuration = configuration
        engine = try Engine(configuration: configuration)
        let engine = engine
        startNamedThread("floe-curl") { engine.run() }
    }

    deinit { engine.shutdown() }

    /// Sends `request` and returns the complete response (any status code).
    public func execute(_ request: HTTPRequest) async throws -> HTTPResponse {
        let transfer = Transfer(request: request, id: engine.nextTransferID())
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<HTTPResponse, any Error>) in
                engine.submit(transfer, completion: .response(continuation))
            }
        } onCancel: {
            engine.cancel(transfer)
        }
    }

    /// Sends `request` and streams the response: the sequence yields ``HTTPStreamPart/head(status:headers:)``
    /// once, then the body in ``HTTPStreamPart/body(_:)`` chunks as they arrive, and ends when the
    /// response is complete. Failures to get (the rest of) a response are thrown from the
    /// sequence as ``HTTPClientError``s. Ending the iteration early (or cancelling the iterating
    /// task) aborts the transfer.
    ///
    /// Bounded: at most `bufferedChunks` chunks wait for the consumer; a consumer that falls
    /// further behind fails the stream with ``HTTPClientError/streamBufferFull(method:url:limit:)``
    /// (nothing is dropped silently). `maxResponseBodyBytes` does not apply to streams: a watch
    /// runs for as long as the server keeps it open (set `request.timeout` accordingly).
    public func stream(_ request: HTTPRequest, bufferedChunks: Int = 1024) -> AsyncThrowingStream<HTTPStreamPart, any Error> {
        let (stream, continuation) = AsyncThrowingStream.makeStream(
            of: HTTPStreamPart.self, throwing: (any Error).self, bufferingPolicy: .bufferingOldest(max(2, bufferedChunks)))
        let transfer = Transfer(request: request, id: engine.nextTransferID())
        transfer.streamLimit = max(2, bufferedChunks)
        let engine = engine
        continuation.onTermination = { termination in
            if case .cancelled = termination { engine.cancel(transfer) }
        }
        engine.submit(transfer, completion: .stream(continuation))
        return stream
    }

    /// Fails every queued and in-flight request and stops the client's thread. Idempotent.
    public func shutdown() { engine.shutdown() }

    /// Transfers currently in flight (for tests and metrics).
    public var activeTransferCount: Int { engine.activeCount }
}

/// One request's life on the engine thread.
///
/// `@unchecked Sendable`: `phase` is guarded by its Mutex; every other mutable field is touched
/// only by the engine thread after submission (libcurl callbacks run on that thread too).
final class Transfer: @unchecked Sendable {
    enum Phase {
        case created
        case cancelledEarly
        case submitted(Completion)
        case finished
    }

    /// Where the outcome goes: one complete response, or a stream of parts.
    enum Completion {
        case response(CheckedContinuation<HTTPResponse, any Error>)
        case stream(AsyncThrowingStream<HTTPStreamPart, any Error>.Continuation)

        func resume(with result: Result<HTTPResponse, any Error>) {
            switch self {
            case .response(let c): c.resume(with: result)
            case .stream(let c):
                switch result {
                case .success(let response):
                    // Only reached when the head was not yet delivered (empty body).
                    c.yield(.head(status: response.status, headers: response.headers))
                    c.finish()
                case .failure(let error): c.finish(throwing: error)
                }
            }
        }

        func resume(throwing error: any Error) { resume(with: .failure(error)) }
    }

    let request: HTTPRequest
    let id: UInt64
    let phase = Mutex<Phase>(.created)

    // Engine-thread state.
    var easy: UnsafeMutableRawPointer?
    var headerList: UnsafeMutablePointer<curl_slist>?
    var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
    var uploadOffset = 0
    var responseHeaders = HTTPHeaders()
    var responseBody: [UInt8] = []
    var tooLarge = false
    var maxBody = 0
    // Streaming (engine thread): the sink, whether the head went out, the overflow flag.
    var streamSink: AsyncThrowingStream<HTTPStreamPart, any Error>.Continuation?
    var streamLimit = 0
    var headSent = false
    var streamOverflow = false

    init(request: HTTPRequest, id: UInt64) {
        self.request = request
        self.id = id
    }

    /// Takes the completion out (exactly once) and marks the transfer finished.
    func takeContinuation() -> Completion? {
        phase.withLock { phase in
            guard case .submitted(let completion) = phase else { return nil }
            phase = .finished
            return completion
        }
    }

    /// The streaming sink while the transfer is still submitted (engine thread only).
    var isStreaming: Bool { streamSink != nil }
}

/// The part of the client that owns the multi handle; `run()` is the dedicated thread's body.
///
/// `@unchecked Sendable`: `shared` is guarded by its Mutex; `multi` and `active` are used only on
/// the engine thread (`curl_multi_wakeup`, documented thread-safe, is the one exception).
final class Engine: @unchecked Sendable {
    struct Shared {
        var pending: [Transfer] = []
        var pendingHead = 0
        var cancelled: [Transfer] = []
        var shutDown = false
        var activeCount = 0
        var nextID: UInt64 = 0
        var pendingCount: Int { pending.count - pendingHead }
    }

    let configuration: HTTPClientConfiguration
    private let shared = Mutex(Shared())
    private let multi: UnsafeMutableRawPointer
    private var active: [UInt64: Transfer] = [:]
    private let stopped = DispatchSemaphore(value: 0)
    private let stopOnce = Mutex(false)

    init(configuration: HTTPClientConfiguration) throws {
        self.configuration = configuration
        guard let multi = curl_multi_init() else { throw HTTPClientError.initialization(reason: "curl_multi_init failed") }
        self.multi = multi
        _ = floe_curl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, configuration.maxCachedConnections)
        _ = floe_curl_multi_setopt_long(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, configuration.maxConcurrentRequests)
    }

    var activeCount: Int { shared.withLock { $0.activeCount } }

    func nextTransferID() -> UInt64 {
        shared.withLock { s in
            s.nextID += 1
            return s.nextID
        }
    }

    func submit(_ transfer: Transfer, completion continuation: Transfer.Completion) {
        if case .stream(let sink) = continuation { transfer.streamSink = sink }
        let cancelledEarly = transfer.phase.withLock { phase -> Bool in
            if case .cancelledEarly = phase { return true }
            phase = .submitted(continuation)
            return false
        }
        if cancelledEarly {
            continuation.resume(throwing: CancellationError())
            return
        }
        let method = transfer.request.method
        let url = transfer.request.url
        let rejection: HTTPClientError? = shared.withLock { s in
            if s.shutDown { return .shutDown(method: method, url: url) }
            if s.pendingCount >= configuration.maxQueuedRequests + configuration.maxConcurrentRequests - s.activeCount
                && s.pendingCount >= configuration.maxQueuedRequests {
                return .queueFull(method: method, url: url, limit: configuration.maxQueuedRequests)
            }
            s.pending.append(transfer)
            return nil
        }
        if let rejection {
            transfer.takeContinuation()?.resume(throwing: rejection)
            return
        }
        curl_multi_wakeup(multi)
    }

    func cancel(_ transfer: Transfer) {
        let notify = transfer.phase.withLock { phase -> Bool in
            switch phase {
            case .created:
                phase = .cancelledEarly
                return false
            case .submitted: return true
            case .cancelledEarly, .finished: return false
            }
        }
        guard notify else { return }
        shared.withLock { $0.cancelled.append(transfer) }
        curl_multi_wakeup(multi)
    }

    func shutdown() {
        let first = stopOnce.withLock { done -> Bool in
            if done { return false }
            done = true
            return true
        }
        guard first else { return }
        shared.withLock { $0.shutDown = true }
        curl_multi_wakeup(multi)
        stopped.wait()
    }

    // MARK: engine thread

    func run() {
        while true {
            let (starting, cancelling, shuttingDown): ([Transfer], [Transfer], Bool) = shared.withLock { s in
                var starting: [Transfer] = []
                let room = configuration.maxConcurrentRequests - active.count
                while starting.count < room && s.pendingHead < s.pending.count {
                    starting.append(s.pending[s.pendingHead])
                    s.pendingHead += 1
                }
                if s.pendingHead == s.pending.count {
                    s.pending.removeAll(keepingCapacity: true)
                    s.pendingHead = 0
                }
                s.activeCount = active.count + starting.count
                let cancelling = s.cancelled
                s.cancelled = []
                return (starting, cancelling, s.shutDown)
            }
            if shuttingDown {
                failEverything(starting)
                return
            }
            for transfer in starting { start(transfer) }
            for transfer in cancelling {
                if active[transfer.id] != nil {
                    finish(transfer, result: .failure(CancellationError()))
                } else if let continuation = transfer.takeContinuation() {
                    // Still queued (or already finished, in which case there is nothing to take).
                    continuation.resume(throwing: CancellationError())
                }
            }
            var running: Int32 = 0
            curl_multi_perform(multi, &running)
            var remaining: Int32 = 0
            while let message = curl_multi_info_read(multi, &remaining) {
                guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
                let code = message.pointee.data.result
                var raw: UnsafeMutableRawPointer?
                _ = floe_curl_easy_getinfo_pointer(easy, CURLINFO_PRIVATE, &raw)
                guard let raw else { continue }
                let transfer = Unmanaged<Transfer>.fromOpaque(raw).takeUnretainedValue()
                finish(transfer, result: outcome(of: transfer, code: code))
            }
            shared.withLock { $0.activeCount = active.count }
            curl_multi_poll(multi, nil, 0, 1000, nil)
        }
    }

    private func failEverything(_ starting: [Transfer]) {
        var all = starting
        shared.withLock { s in
            all.append(contentsOf: s.pending[s.pendingHead...])
            s.pending = []
            s.pendingHead = 0
            s.cancelled = []
        }
        for transfer in active.values {
            finish(transfer, result: .failure(HTTPClientError.shutDown(method: transfer.request.method, url: transfer.request.url)))
        }
        for transfer in all {
            transfer.takeContinuation()?.resume(
                throwing: HTTPClientError.shutDown(method: transfer.request.method, url: transfer.request.url))
        }
        shared.withLock { $0.activeCount = 0 }
        curl_multi_cleanup(multi)
        stopped.signal()
    }

    private func start(_ transfer: Transfer) {
        let request = transfer.request
        guard let easy = curl_easy_init() else {
            transfer.takeContinuation()?.resume(
                throwing: HTTPClientError.invalidRequest(method: request.method, url: request.url, reason: "curl_easy_init failed"))
            return
        }
        transfer.easy = easy
        transfer.maxBody = transfer.isStreaming ? Int.max : configuration.maxResponseBodyBytes
        let context = Unmanaged.passUnretained(transfer).toOpaque()
        var ok = true
        func check(_ code: CURLcode) { if code != CURLE_OK { ok = false } }
        check(floe_curl_easy_setopt_string(easy, CURLOPT_URL, request.url))
        check(floe_curl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1))
        check(floe_curl_easy_setopt_pointer(easy, CURLOPT_PRIVATE, context))
        check(floe_curl_easy_setopt_pointer(easy, CURLOPT_ERRORBUFFER, transfer.errorBuffer.withUnsafeMutableBufferPointer { $0.baseAddress }))
        check(floe_curl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, Int(configuration.connectTimeout.nanosecondsClamped / 1_000_000)))
        let timeout = request.timeout ?? configuration.requestTimeout
        check(floe_curl_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, max(1, Int(timeout.nanosecondsClamped / 1_000_000))))
        check(floe_curl_easy_setopt_string(easy, CURLOPT_USERAGENT, configuration.userAgent))
        check(floe_curl_easy_setopt_long(easy, CURLOPT_TCP_NODELAY, 1))
        // Send the path exactly as given: object keys may contain "/../" or "//".
        check(floe_curl_easy_setopt_long(easy, CURLOPT_PATH_AS_IS, 1))
        check(floe_curl_easy_setopt_callback(easy, CURLOPT_WRITEFUNCTION, writeCallback))
        check(floe_curl_easy_setopt_pointer(easy, CURLOPT_WRITEDATA, context))
        check(floe_curl_easy_setopt_callback(easy, CURLOPT_HEADERFUNCTION, headerCallback))
        check(floe_curl_easy_setopt_pointer(easy, CURLOPT_HEADERDATA, context))
        let tls = configuration.tls
        if let caFile = tls.caFile { check(floe_curl_easy_setopt_string(easy, CURLOPT_CAINFO, caFile)) }
        if let caPath = tls.caPath { check(floe_curl_easy_setopt_string(easy, CURLOPT_CAPATH, caPath)) }
        func blob(_ option: CURLoption, _ bytes: [UInt8]) {
            // libcurl copies the blob (CURL_BLOB_COPY) before returning.
            check(bytes.withUnsafeBytes { floe_curl_easy_setopt_blob(easy, option, $0.baseAddress, $0.count) })
        }
        if let pem = tls.caPEM { blob(CURLOPT_CAINFO_BLOB, pem) }
        if let file = tls.clientCertificateFile { check(floe_curl_easy_setopt_string(easy, CURLOPT_SSLCERT, file)) }
        if let file = tls.clientKeyFile { check(floe_curl_easy_setopt_string(easy, CURLOPT_SSLKEY, file)) }
        if let pem = tls.clientCertificatePEM { blob(CURLOPT_SSLCERT_BLOB, pem) }
        if let pem = tls.clientKeyPEM { blob(CURLOPT_SSLKEY_BLOB, pem) }
        if tls.insecureSkipVerify {
            check(floe_curl_easy_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, 0))
            check(floe_curl_easy_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, 0))
        }
        switch request.method {
        case "GET" where request.body.isEmpty:
            check(floe_curl_easy_setopt_long(easy, CURLOPT_HTTPGET, 1))
        case "HEAD":
            check(floe_curl_easy_setopt_long(easy, CURLOPT_NOBODY, 1))
        default:
            check(floe_curl_easy_setopt_string(easy, CURLOPT_CUSTOMREQUEST, request.method))
            if !request.body.isEmpty || request.method == "PUT" || request.method == "POST" {
                check(floe_curl_easy_setopt_long(easy, CURLOPT_UPLOAD, 1))
                check(floe_curl_easy_setopt_off_t(easy, CURLOPT_INFILESIZE_LARGE, curl_off_t(request.body.count)))
                check(floe_curl_easy_setopt_callback(easy, CURLOPT_READFUNCTION, readCallback))
                check(floe_curl_easy_setopt_pointer(easy, CURLOPT_READDATA, context))
                check(floe_curl_easy_setopt_seek_callback(easy, CURLOPT_SEEKFUNCTION, seekCallback))
                check(floe_curl_easy_setopt_pointer(easy, CURLOPT_SEEKDATA, context))
            }
        }
        var list: UnsafeMutablePointer<curl_slist>? = nil
        for field in request.headers {
            list = curl_slist_append(list, "\(field.name): \(field.value)")
        }
        // No "Expect: 100-continue" round trip; libcurl adds it to uploads otherwise.
        list = curl_slist_append(list, "Expect:")
        transfer.headerList = list
        check(floe_curl_easy_setopt_slist(easy, CURLOPT_HTTPHEADER, list))
        guard ok else {
            cleanup(transfer)
            transfer.takeContinuation()?.resume(
                throwing: HTTPClientError.invalidRequest(method: request.method, url: request.url, reason: "libcurl rejected an option"))
            return
        }
        active[transfer.id] = transfer
        curl_multi_add_handle(multi, easy)
    }

    private func outcome(of transfer: Transfer, code: CURLcode) -> Result<HTTPResponse, any Error> {
        let request = transfer.request
        if code == CURLE_OK {
            var status = 0
            if let easy = transfer.easy { _ = floe_curl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status) }
            return .success(HTTPResponse(status: status, headers: transfer.responseHeaders, body: transfer.responseBody))
        }
        if transfer.streamOverflow {
            return .failure(HTTPClientError.streamBufferFull(method: request.method, url: request.url, limit: transfer.streamLimit))
        }
        if transfer.tooLarge {
            return .failure(HTTPClientError.responseTooLarge(method: request.method, url: request.url, limit: transfer.maxBody))
        }
        if code == CURLE_OPERATION_TIMEDOUT {
            return .failure(HTTPClientError.timeout(method: request.method, url: request.url,
                                                    after: request.timeout ?? configuration.requestTimeout))
        }
        let detail = transfer.errorBuffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let message = detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail
        return .failure(HTTPClientError.transport(method: request.method, url: request.url, code: Int(code.rawValue), message: message))
    }

    private func finish(_ transfer: Transfer, result: Result<HTTPResponse, any Error>) {
        active.removeValue(forKey: transfer.id)
        if let easy = transfer.easy { curl_multi_remove_handle(multi, easy) }
        cleanup(transfer)
        guard let continuation = transfer.takeContinuation() else { return }
        if case .stream(let sink) = continuation, transfer.headSent, case .success = result {
            sink.finish()
            return
        }
        continuation.resume(with: result)
    }

    private func cleanup(_ transfer: Transfer) {
        if let easy = transfer.easy { curl_easy_cleanup(easy) }
        transfer.easy = nil
        if let list = transfer.headerList { curl_slist_free_all(list) }
        transfer.headerList = nil
    }
}

// MARK: libcurl callbacks (run on the engine thread, inside curl_multi_perform)

private let writeCallback: floe_curl_data_callback = { buffer, size, count, context in
    let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
    let length = size * count
    if let sink = transfer.streamSink {
        if !transfer.headSent {
            var status = 0
            if let easy = transfer.easy { _ = floe_curl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status) }
            transfer.headSent = true
            if case .dropped = sink.yield(.head(status: status, headers: transfer.responseHeaders)) {
                transfer.streamOverflow = true
                return 0
            }
        }
        guard let buffer, length > 0 else { return length }
        let bytes = buffer.withMemoryRebound(to: UInt8.self, capacity: length) { Array(UnsafeBufferPointer(start: $0, count: length)) }
        switch sink.yield(.body(bytes)) {
        case .enqueued: return length
        case .dropped:
            transfer.streamOverflow = true
            return 0
        case .terminated: return 0
        @unknown default: return 0
        }
    }
    if transfer.responseBody.count + length > transfer.maxBody {
        transfer.tooLarge = true
        return 0
    }
    if let buffer, length > 0 {
        buffer.withMemoryRebound(to: UInt8.self, capacity: length) {
            transfer.responseBody.append(contentsOf: UnsafeBufferPointer(start: $0, count: length))
        }
    }
    return length
}

private let headerCallback: floe_curl_data_callback = { buffer, size, count, context in
    let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
    let length = size * count
    guard let buffer, length > 0 else { return length }
    let line = buffer.withMemoryRebound(to: UInt8.self, capacity: length) {
        String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
    }.trimmingCharacters(in: .whitespacesAndNewlines)
    if line.hasPrefix("HTTP/") {
        // A new status line (after 100 Continue or a redirect): headers start over.
        transfer.responseHeaders = HTTPHeaders()
    } else if let colon = line.firstIndex(of: ":") {
        let name = String(line[..<colon]).trimmingCharacters(in: .whitespaces)
        let value = String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
        transfer.responseHeaders.add(name, value)
        if name.lowercased() == "content-length", let expected = Int(value), expected <= transfer.maxBody,
           transfer.request.method != "HEAD" {
            transfer.responseBody.reserveCapacity(expected)
        }
    }
    return length
}

private let readCallback: floe_curl_data_callback = { buffer, size, count, context in
    let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
    let room = size * count
    let body = transfer.request.body
    let n = min(room, body.count - transfer.uploadOffset)
    guard let buffer, n > 0 else { return 0 }
    body.withUnsafeBytes { source in
        UnsafeMutableRawPointer(buffer).copyMemory(from: source.baseAddress! + transfer.uploadOffset, byteCount: n)
    }
    transfer.uploadOffset += n
    return n
}

private let seekCallback: floe_curl_seek_callback = { context, offset, origin in
    let transfer = Unmanaged<Transfer>.fromOpaque(context!).takeUnretainedValue()
    guard origin == SEEK_SET, offset >= 0, Int(offset) <= transfer.request.body.count else { return 2 }  // CURL_SEEKFUNC_CANTSEEK
    transfer.uploadOffset = Int(offset)
    return 0  // CURL_SEEKFUNC_OK
}
