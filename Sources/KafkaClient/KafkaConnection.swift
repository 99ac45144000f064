import Bytes
import Foundation
import KafkaProtocol
import Synchronization
import TLS

#if canImport(Glibc)
import Glibc
#endif

/// One TCP connection to a Kafka broker, shared by any number of concurrent callers.
///
/// Requests are pipelined: each `send` encodes its frame with a fresh correlation ID, registers
/// a continuation under that ID, and writes the frame; one I/O thread per connection reads
/// size-prefixed response frames and resumes the continuation whose ID the frame carries. The
/// same thread expires calls: it polls until the earliest pending deadline (no timer task per
/// call), and a call due before the thread's planned wake-up wakes it.
///
/// Invariants:
/// - Every registered continuation is resumed exactly once: by its response, by its timeout,
///   by the caller's task being cancelled, or by the connection closing (`close()`, peer EOF,
///   a socket error, a bad frame, an unknown correlation ID, or another call's timeout). All
///   resumes happen after removing the entry from `pending` under the state lock.
/// - Once closed, a connection stays closed; pending calls and every later `send` fail with
///   one `.closed` error naming the first reason (a timed-out call itself gets
///   `.requestTimeout`). `KafkaConnectionPool` replaces closed connections.
/// - Callers never block on socket writes: a write that would block leaves its remainder in the
///   outbound buffer, which the I/O thread flushes when the socket is writable. The buffer
///   holds at most the frames of calls still waiting for their answers.
/// - A call that exceeds its timeout fails with `.requestTimeout` and closes the connection
///   (later answers could no longer be told apart), failing every other pending call. The I/O
///   thread notices within about a millisecond of the deadline.
///
/// Example:
///
///     let c = try await KafkaConnection.connect(host: "127.0.0.1", port: 9092)
///     let r = try await c.send(MetadataRequest(topics: []), version: 12)
///     let metadata = try KafkaResponse.expect(r, MetadataResponse.self)
///
/// A Produce request with `acks == 0` gets no answer from Kafka: `send` returns an empty
/// `.produce(ProduceResponse())` once the frame is handed to the socket.
/// TLS for a Kafka connection: the server's certificate is verified against `caFile` (PEM
/// bundle; nil: the system's trust store) and must name `serverName` (nil: the host connected
/// to; a DNS name is also sent as SNI, an IP address must be in the certificate's IP SANs).
/// `certificateFile` and `keyFile` (PEM) are the client certificate for servers that ask for one.
public struct KafkaClientTLS: Sendable, Hashable {
    public var caFile: String?
    public var certificateFile: String?
    public var keyFile: String?
    public var serverName: String?

    public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil, serverName: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.serverName = serverName
    }
}

public final class KafkaConnection: Sendable {
    private let core: ConnectionCore
    private let renewal = Mutex<ContinuousClock.Instant?>(nil)

    /// When a SASL session with a lifetime (KIP-368) should be replaced by a new login; nil: never.
    public var sessionRenewal: ContinuousClock.Instant? { renewal.withLock { $0 } }
    func setSessionRenewal(_ at: ContinuousClock.Instant?) { renewal.withLock { $0 = at } }

    /// The peer as "host:port".
    public var address: String { core.address }
    public var clientId: String { core.clientId }
    /// The serial number (hex) of the server's certificate on a TLS connection.
    public var peerCertificateSerial: String? { core.peerCertificateSerial }

    private init(core: ConnectionCore) {
        self.core = core
    }

    deinit { core.close(reason: "the KafkaConnection was released") }

    /// Connects (TCP_NODELAY) within `timeout`. `host` may be a name or an IPv4/IPv6 literal;
    /// every address getaddrinfo returns is tried in turn. With `tls`, the TLS handshake is
    /// done within the same `timeout`; with `sasl`, the connection is then authenticated before
    /// it is returned (closed on failure).
    public static func connect(
        host: String, port: Int, clientId: String = "floe", timeout: Duration = .seconds(5), tls: KafkaClientTLS? = nil,
        sasl: KafkaClientSASL? = nil
    ) async throws -> KafkaConnection {
        let connection = try await connectTransport(host: host, port: port, clientId: clientId, timeout: timeout, tls: tls)
        guard let sasl else { return connection }
        do {
            try await connection.authenticate(sasl, timeout: timeout)
        } catch {
            connection.close()
            throw error
        }
        return connection
    }

    /// Connects and, with `tls`, does the TLS handshake: the transport without authentication.
    static func connectTransport(host: String, port: Int, clientId: String, timeout: Duration, tls: KafkaClientTLS?) async throws -> KafkaConnection {
        let address = SocketConnect.address(host: host, port: port)
        let (fd, engine) = try await SocketConnect.onThread { () throws(KafkaClientError) -> (Int32, TLSEngine?) in
            let started = ContinuousClock.now
            let fd = try SocketConnect.connect(host: host, port: port, timeout: timeout)
            guard let tls else { return (fd, nil) }
            let left = timeout - started.duration(to: .now)
            return (fd, try SocketConnect.handshake(fd: fd, address: address, host: host, tls: tls, timeout: left))
        }
        let core = try ConnectionCore(fd: fd, address: address, clientId: clientId, tls: engine)
        core.startIOThread()
        return KafkaConnection(core: core)
    }

    /// Sends `request` at `version` and returns the decoded response body.
    ///
    /// Fails with `KafkaClientError`: `.requestTimeout` when no answer came within `timeout`
    /// (the connection is then closed), `.closed` when the connection is or becomes closed,
    /// `.encode`/`.decode` for codec failures. Throws `CancellationError` when the calling task
    /// is cancelled while waiting (the connection stays open; the late answer is dropped).
    public func send<M: KafkaMessage>(_ request: M, version: Int16, timeout: Duration = .seconds(30)) async throws -> AnyResponse {
        guard let apiKey = ApiKey(rawValue: M.apiKey) else {
            throw KafkaClientError(address: address, kind: .encode(api: nil, version: version, error: .unknownApiKey(M.apiKey)))
        }
        let noAnswer = (request as? ProduceRequest)?.acks == 0
        return try await core.call(apiKey: apiKey, version: version, timeout: timeout, expectsAnswer: !noAnswer) {
            (writer: inout ByteWriter) throws(KafkaProtocolError) in
            try request.encode(to: &writer, version: version)
        }
    }

    /// Sends an already-decoded request (for forwarding) at `version`. `apiKey` must be
    /// `request.apiKey`, else this throws `.apiKeyMismatch`.
    public func send(_ request: AnyRequest, apiKey: ApiKey, version: Int16, timeout: Duration = .seconds(30)) async throws -> AnyResponse {
        guard request.apiKey == apiKey else {
            throw KafkaClientError(address: address, kind: .apiKeyMismatch(given: apiKey, request: request.apiKey))
        }
        var noAnswer = false
        if case let .produce(p) = request, p.acks == 0 { noAnswer = true }
        return try await core.call(apiKey: apiKey, version: version, timeout: timeout, expectsAnswer: !noAnswer) {
            (writer: inout ByteWriter) throws(KafkaProtocolError) in
            try request.encode(to: &writer, version: version)
        }
    }

    /// `send`, then the body as `R` (`.unexpectedResponse` otherwise). Kafka-level error codes
    /// inside the body are the caller's to check.
    public func send<M: KafkaMessage, R: KafkaMessage>(
        _ request: M, version: Int16, expecting type: R.Type, timeout: Duration = .seconds(30)
    ) async throws -> R {
        let response = try await send(request, version: version, timeout: timeout)
        guard let body = response.message as? R else {
            throw KafkaClientError(address: address, kind: .unexpectedResponse(expected: "\(R.self)", got: response.apiKey))
        }
        return body
    }

    public var isClosed: Bool { core.isClosed }

    /// Closes the connection; pending calls fail with `.closed`. Idempotent.
    public func close() { core.close(reason: "closed by the client") }
}

/// The shared state of one connection: the pending calls, the outbound buffer and the socket.
/// Referenced by the `KafkaConnection` and its I/O thread; the socket is
/// closed by the I/O thread when it exits, the wake pipe when the last reference goes.
final class ConnectionCore: Sendable {
    /// Response frames larger than this close the connection (Kafka's socket.request.max.bytes).
    static let maxFrameSize = FrameDecoder.defaultMaxFrameSize

    let address: String
    let clientId: String
    private let fd: Int32
    /// A pipe whose write end wakes the I/O thread out of `poll` (new outbound bytes, close).
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let calls = Mutex(Calls())
    private let output = Mutex(Output())
    /// Whether `output` holds unsent bytes; set and cleared under the `output` lock, read by the
    /// I/O thread without it (a caller holds that lock across its `send` syscall). A stale false
    /// is harmless: the caller that buffered bytes wakes the thread, which reads again.
    private let hasUnsent = Atomic<Bool>(false)

    private struct Pending {
        var apiKey: ApiKey
        var version: Int16
        /// nil once the caller was cancelled: the answer is read and dropped.
        var continuation: CheckedContinuation<[UInt8], any Error>?
        /// When the call times out (nil once cancelled: only the answer is awaited, to drop it).
        var deadline: ContinuousClock.Instant?
        var timeout: Duration
    }

    private struct Calls {
        var nextCorrelationId: Int32 = 1
        var pending: [Int32: Pending] = [:]
        /// Set once, by the first reason the connection closed.
        var closedError: KafkaClientError?
        /// When the I/O thread's `poll` returns at the latest (nil: it waits for events only). A
        /// call due earlier wakes the thread.
        var plannedWake: ContinuousClock.Instant?
    }

    private struct Output {
        /// Bytes accepted but not yet written: `buffer[sent...]`.
        var buffer: [UInt8] = []
        var sent = 0
        /// False once the I/O thread closed the socket; `fd` must not be used after that.
        var socketOpen = true
        /// The TLS session (nil on plaintext): every use of it is under this lock, so records
        /// enter `buffer` in the order they were made.
        var tls: TLSEngine?
        var unsent: Int { buffer.count - sent }
    }

    /// Whether bytes pass through `Output.tls`.
    private let isTLS: Bool
    let peerCertificateSerial: String?

    init(fd: Int32, address: String, clientId: String, tls: TLSEngine? = nil) throws(KafkaClientError) {
        isTLS = tls != nil
        peerCertificateSerial = tls?.peerCertificateSerial
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw KafkaClientError(address: address, kind: .io(operation: "pipe", code: code))
        }
        for end in ends {
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        self.fd = fd
        self.address = address
        self.clientId = clientId
        self.wakeRead = ends[0]
        self.wakeWrite = ends[1]
        output.withLock { $0.tls = tls }
    }

    deinit {
        Glibc.close(wakeRead)
        Glibc.close(wakeWrite)
    }

    var isClosed: Bool { calls.withLock { $0.closedError != nil } }

    func startIOThread() {
        let thread = Thread { [self] in runIO() }
        thread.name = "kafka-conn \(address)"
        thread.start()
    }

    // MARK: Calls

    func call(
        apiKey: ApiKey, version: Int16, timeout: Duration, expectsAnswer: Bool,
        body: (inout ByteWriter) throws(KafkaProtocolError) -> Void
    ) async throws -> AnyResponse {
        let id = try calls.withLock { (c: inout Calls) throws(KafkaClientError) -> Int32 in
            if let error = c.closedError { throw error }
            let id = c.nextCorrelationId
            c.nextCorrelationId = id == Int32.max ? 1 : id + 1
            return id
        }
        var writer = ByteWriter(capacity: 256)
        do {
            let sizeAt = writer.reserveInt32()
            try RequestHeader(requestApiKey: apiKey.rawValue, requestApiVersion: version, correlationId: id, clientId: clientId)
                .encode(to: &writer, version: apiKey.requestHeaderVersion(apiVersion: version))
            try body(&writer)
            writer.patchInt32(at: sizeAt, Int32(writer.count - sizeAt - 4))
        } catch {
            throw KafkaClientError(address: address, kind: .encode(api: apiKey, version: version, error: error))
        }
        let frame = writer.take()

        guard expectsAnswer else {
            if let error = write(frame) { throw error }
            return .produce(ProduceResponse())
        }
        try Task.checkCancellation()
        let answer = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[UInt8], any Error>) in
                let deadline = ContinuousClock.now + timeout
                let (refused, wakeEarlier) = calls.withLock { (c: inout Calls) -> (KafkaClientError?, Bool) in
                    if let error = c.closedError { return (error, false) }
                    c.pending[id] = Pending(apiKey: apiKey, version: version, continuation: continuation, deadline: deadline, timeout: timeout)
                    guard c.plannedWake.map({ deadline < $0 }) ?? true else { return (nil, false) }
                    c.plannedWake = deadline
                    return (nil, true)
                }
                if let refused {
                    continuation.resume(throwing: refused)
                    return
                }
                if wakeEarlier { wake() }  // the I/O thread recomputes its poll timeout
                // A failed write closes the connection, which resumes the continuation.
                _ = write(frame)
            }
        } onCancel: {
            cancelled(id)
        }
        do {
            return try ResponseHeader.decodeResponse(answer[...], apiKey: apiKey, version: version).body
        } catch {
            throw KafkaClientError(address: address, kind: .decode(api: apiKey, version: version, error: error))
        }
    }

    /// Writes what the socket takes now; leaves the rest for the I/O thread. Returns the error
    /// that closed the connection, if writing failed or the socket is gone.
    private func write(_ plaintext: [UInt8]) -> KafkaClientError? {
        var failure: KafkaClientError?
        var wake = false
        output.withLock { out in
            guard out.socketOpen else {
                failure = KafkaClientError(address: address, kind: .closed(reason: "the socket is closed"))
                return
            }
            var frame = plaintext
            if let tls = out.tls {
                frame = []
                do throws(TLSError) {
                    try tls.write(plaintext[...])
                } catch {
                    failure = KafkaClientError(address: address, kind: .tls(reason: error.description))
                    return
                }
                tls.takeOutput(into: &frame)
            }
            if out.unsent > 0 {
                out.buffer.append(contentsOf: frame)  // the I/O thread is already flushing
                return
            }
            var sent = 0
            while sent < frame.count {
                let n = frame.withUnsafeBytes { raw in
                    Glibc.send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                }
                if n > 0 {
                    sent += n
                    continue
                }
                let code = errno
                if n < 0 && code == EINTR { continue }
                if n < 0 && (code == EAGAIN || code == EWOULDBLOCK) { break }
                failure = KafkaClientError(address: address, kind: .io(operation: "send", code: code))
                return
            }
            if sent < frame.count {
                out.buffer.removeAll(keepingCapacity: true)
                out.sent = 0
                out.buffer.append(contentsOf: frame[sent...])
                hasUnsent.store(true, ordering: .releasing)
                wake = true
            }
        }
        if let failure {
            fail(failure)
            return calls.withLock { $0.closedError } ?? KafkaClientError(address: address, kind: .closed(reason: failure.detail))
        }
        if wake { self.wake() }
        return nil
    }

    /// Closes the connection with `reason`; idempotent (the first reason sticks).
    func close(reason: String) {
        fail(KafkaClientError(address: address, kind: .closed(reason: reason)))
    }

    /// Marks the connection closed because of `cause` (unless already closed) and fails every
    /// pending call with the connection's closing error, always a `.closed` whose reason is the
    /// first cause's text.
    private func fail(_ cause: KafkaClientError) {
        let error: KafkaClientError
        if case .closed = cause.kind {
            error = cause
        } else {
            error = KafkaClientError(address: address, kind: .closed(reason: cause.detail))
        }
        let (victims, closing) = calls.withLock { c -> ([Pending], KafkaClientError) in
            if c.closedError == nil { c.closedError = error }
            let victims = Array(c.pending.values)
            c.pending.removeAll()
            return (victims, c.closedError!)
        }
        for victim in victims {
            victim.continuation?.resume(throwing: closing)
        }
        wake()
    }

    /// How long the I/O thread sleeps when no call has a deadline.
    static let idleWake = Duration.seconds(1)

    /// Expires the first pending call whose deadline passed (the connection then closes, failing
    /// the others) and returns true; otherwise records and returns how long `poll` may wait.
    private func expireOrPlanWake(now: ContinuousClock.Instant) -> (expired: Bool, wait: Duration?) {
        let expired = calls.withLock { c -> (id: Int32, call: Pending)? in
            var earliest: (id: Int32, at: ContinuousClock.Instant)?
            for (id, p) in c.pending {
                guard let at = p.deadline else { continue }
                if earliest.map({ at < $0.at }) ?? true { earliest = (id, at) }
            }
            guard let earliest, earliest.at <= now else {
                // Without a deadline, a second: so that a call made meanwhile with a longer
                // timeout (the usual case) need not wake the thread.
                c.plannedWake = earliest?.at ?? now + Self.idleWake
                return nil
            }
            let mine = c.pending.removeValue(forKey: earliest.id)!
            if c.closedError == nil {
                let ms = SocketConnect.milliseconds(mine.timeout)
                c.closedError = KafkaClientError(
                    address: address, kind: .closed(reason: "\(mine.apiKey.name) call \(earliest.id) got no answer within \(ms) ms"))
            }
            return (earliest.id, mine)
        }
        guard let expired else {
            return (false, calls.withLock { $0.plannedWake }.map { $0 - now })
        }
        let ms = SocketConnect.milliseconds(expired.call.timeout)
        expired.call.continuation?.resume(
            throwing: KafkaClientError(
                address: address,
                kind: .requestTimeout(api: expired.call.apiKey, version: expired.call.version, correlationId: expired.id, milliseconds: ms)))
        fail(KafkaClientError(address: address, kind: .closed(reason: "a call timed out")))
        return (true, nil)
    }

    private func cancelled(_ id: Int32) {
        let continuation = calls.withLock { c -> CheckedContinuation<[UInt8], any Error>? in
            guard var entry = c.pending[id], let continuation = entry.continuation else { return nil }
            entry.deadline = nil
            entry.continuation = nil
            c.pending[id] = entry
            return continuation
        }
        continuation?.resume(throwing: CancellationError())
    }

    private func wake() {
        var byte: UInt8 = 1
        _ = Glibc.write(wakeWrite, &byte, 1)  // EAGAIN: a wake-up is already pending
    }

    // MARK: I/O thread

    /// Reads frames and flushes the outbound buffer until the connection closes, then closes the
    /// socket.
    private func runIO() {
        var decoder = FrameDecoder(maxFrameSize: Self.maxFrameSize)
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var scratch = [UInt8](repeating: 0, count: 64)
        loop: while true {
            if isClosed { break }
            let (expired, wait) = expireOrPlanWake(now: .now)
            if expired { break }
            let wantWrite = hasUnsent.load(ordering: .acquiring)
            var fds = [
                pollfd(fd: fd, events: Int16(POLLIN) | (wantWrite ? Int16(POLLOUT) : 0), revents: 0),
                pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
            ]
            // Rounded up, so that the deadline has passed when poll returns for it.
            let timeoutMs = wait.map { Int32(clamping: max(0, SocketConnect.milliseconds($0)) + 1) } ?? -1
            let ready = poll(&fds, 2, timeoutMs)
            if ready < 0 {
                if errno == EINTR { continue }
                fail(KafkaClientError(address: address, kind: .io(operation: "poll", code: errno)))
                break
            }
            if fds[1].revents != 0 {
                while Glibc.read(wakeRead, &scratch, scratch.count) > 0 {}
            }
            if isClosed { break }
            let events = Int32(fds[0].revents)
            if events & Int32(POLLOUT) != 0, let error = flush() {
                fail(error)
                break
            }
            if events & Int32(POLLIN | POLLHUP | POLLERR) != 0 {
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n == 0 {
                    fail(KafkaClientError(address: address, kind: .closed(reason: "the peer closed the connection")))
                    break
                }
                if n < 0 {
                    let code = errno
                    if code == EINTR || code == EAGAIN || code == EWOULDBLOCK { continue }
                    fail(KafkaClientError(address: address, kind: .io(operation: "recv", code: code)))
                    break
                }
                if let error = decrypt(chunk[0..<n], into: &decoder) {
                    fail(error)
                    break
                }
                do {
                    while let frame = try decoder.nextFrame() {
                        if !deliver(frame) { break loop }
                    }
                } catch {
                    fail(KafkaClientError(address: address, kind: .badFrame(error: error)))
                    break
                }
            }
        }
        fail(KafkaClientError(address: address, kind: .closed(reason: "the connection ended")))
        output.withLock { out in
            out.socketOpen = false
            out.buffer = []
            out.sent = 0
            Glibc.close(fd)
        }
    }

    /// Feeds what was received to the decoder, through TLS when the connection uses it. What TLS
    /// has to send back (e.g. a key update) joins the outbound buffer.
    private func decrypt(_ received: ArraySlice<UInt8>, into decoder: inout FrameDecoder) -> KafkaClientError? {
        guard isTLS else {
            decoder.feed(received)
            return nil
        }
        var plaintext: [UInt8] = []
        let error = output.withLock { out -> KafkaClientError? in
            guard let tls = out.tls else { return KafkaClientError(address: address, kind: .closed(reason: "the socket is closed")) }
            tls.feed(received)
            do throws(TLSError) { try tls.readPlaintext(into: &plaintext) } catch {
                return KafkaClientError(address: address, kind: .tls(reason: error.description))
            }
            if tls.pendingOutput > 0 {
                if out.unsent == 0 {
                    out.buffer.removeAll(keepingCapacity: true)
                    out.sent = 0
                }
                tls.takeOutput(into: &out.buffer)
                hasUnsent.store(true, ordering: .releasing)
            }
            if tls.peerClosed { return KafkaClientError(address: address, kind: .closed(reason: "the peer closed the TLS session")) }
            return nil
        }
        if !plaintext.isEmpty { decoder.feed(plaintext[...]) }
        return error
    }

    /// Writes as much of the outbound buffer as the socket takes.
    private func flush() -> KafkaClientError? {
        output.withLock { out -> KafkaClientError? in
            while out.unsent > 0 {
                let sent = out.sent
                let n = out.buffer.withUnsafeBytes { raw in
                    Glibc.send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                }
                if n > 0 {
                    out.sent += n
                    continue
                }
                let code = errno
                if n < 0 && code == EINTR { continue }
                if n < 0 && (code == EAGAIN || code == EWOULDBLOCK) { return nil }
                return KafkaClientError(address: address, kind: .io(operation: "send", code: code))
            }
            out.buffer.removeAll(keepingCapacity: out.buffer.capacity <= 1 << 20)
            out.sent = 0
            hasUnsent.store(false, ordering: .releasing)
            return nil
        }
    }

    /// Hands `frame` to the call waiting for its correlation ID. False (and the connection
    /// closed) when no call is.
    private func deliver(_ frame: [UInt8]) -> Bool {
        guard frame.count >= 4 else {
            fail(KafkaClientError(address: address, kind: .badFrame(error: .invalidFrameSize(Int32(frame.count)))))
            return false
        }
        let id = Int32(bitPattern: UInt32(frame[0]) << 24 | UInt32(frame[1]) << 16 | UInt32(frame[2]) << 8 | UInt32(frame[3]))
        guard let entry = calls.withLock({ $0.pending.removeValue(forKey: id) }) else {
            fail(KafkaClientError(address: address, kind: .unexpectedCorrelationId(id)))
            return false
        }
        entry.continuation?.resume(returning: frame)
        return true
    }
}
