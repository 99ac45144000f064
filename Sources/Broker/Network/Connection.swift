#if canImport(Glibc)
import Glibc
#endif
import CFloeShims
import KafkaProtocol
import Support
import TLS

/// A client connection's state, confined to its event loop's thread.
///
/// Requests are numbered in arrival order (`seq`). Responses may complete in any order; they are
/// written strictly in `seq` order: `completed` holds the ones waiting for an earlier response.
/// `inFlight` counts requests received whose response has not yet been queued for writing; when it
/// reaches `maxInFlight` the loop stops reading the socket. `unsentBytes` counts response bytes
/// queued and not yet written; above `maxUnsentBytes` the loop stops reading too (a client that
/// pipelines requests and never reads its responses), until they drain to half of it. Together
/// they bound every buffer here: requests in flight plus `maxUnsentBytes`.
///
/// `requestStartedAt` is when the request now being received began arriving (nil when no
/// partial request is buffered); the loop closes a connection whose request takes longer than
/// the read timeout (slowloris). Example: bytes `[0, 0, 0, 9, 1]` arrive at t = 10 ms: started
/// at 10; the other 8 bytes at t = 20 ms complete the frame: nil again.
///
/// On a TLS listener `tls` transforms the bytes: what is read is fed to it and its plaintext to
/// the decoder; responses (`outbound`, plaintext) are encrypted into `cipher` at most
/// `cipherChunk` at a time, as the socket takes them, so the unsent-bytes bound still holds
/// (a response counts as unsent until encrypted, and at most one chunk of ciphertext waits).
final class Connection {
    let id: UInt64
    let fd: Int32
    let peer: String
    let listener: ListenerName
    let maxInFlight: Int
    let maxUnsentBytes: Int
    let continuation: AsyncStream<ServerRequest>.Continuation
    /// This connection's long polls, cancelled when it closes.
    let longPolls: LongPollGroup
    private let unsentGauge: Gauge
    var decoder: FrameDecoder
    var lastActivity: UInt64
    var closed = false
    /// Set once we have sent FIN: the time after which the socket is closed even if the peer
    /// has not closed its side.
    var lingerDeadline: UInt64?
    /// When the partial request now buffered began arriving (see the type's comment).
    private(set) var requestStartedAt: UInt64?
    private(set) var unsentBytes = 0
    /// Reading stopped because `unsentBytes` passed `maxUnsentBytes`; cleared at half of it.
    private(set) var pausedForUnsent = false
    /// The expected size of the next answer: the largest recent one, halving with each smaller
    /// one (1 MiB, then 100 bytes, gives 512 KiB); before any answer, an eighth of the bound.
    private(set) var responseEstimate: Int
    /// Who the client is; one per connection, given with each of its requests.
    let session: ConnectionSession
    /// When the connection was accepted (for `authentication.timeout.ms`).
    let acceptedAt: UInt64
    /// Set once the TLS handshake and (on SASL listeners) authentication are done: the
    /// authentication timeout no longer applies.
    var authenticationDone = false
    /// The TLS session of a connection on a TLS listener.
    let tls: TLSEngine?
    /// Ciphertext waiting for the socket: `cipher[cipherOffset...]`.
    private var cipher: [UInt8] = []
    private var cipherOffset = 0
    static let cipherChunk = 64 * 1024
    private(set) var reading = true
    private(set) var wantsWritable = false
    private(set) var inFlight = 0
    private var nextSeq: UInt64 = 0
    private var nextToWrite: UInt64 = 0
    private var completed: [UInt64: EventLoop.Outcome] = [:]
    private var outbound: [[UInt8]] = []
    private var outboundOffset = 0
    /// Set when the connection must close once everything before it is written: a handler
    /// asked to close, or the peer sent a frame that cannot be read (recorded as `closeAtSeq`).
    private var closing = false
    private var closeAtSeq: UInt64?

    init(id: UInt64, fd: Int32, peer: String, listener: ListenerName, maxFrameSize: Int, maxInFlight: Int, maxUnsentBytes: Int,
         continuation: AsyncStream<ServerRequest>.Continuation, longPolls: LongPollGroup, unsentGauge: Gauge, now: UInt64,
         session: ConnectionSession = ConnectionSession(), tls: TLSEngine? = nil) {
        self.id = id
        self.session = session
        self.tls = tls
        acceptedAt = now
        self.listener = listener
        self.fd = fd
        self.peer = peer
        self.maxInFlight = max(1, maxInFlight)
        self.maxUnsentBytes = max(1, maxUnsentBytes)
        responseEstimate = max(1, maxUnsentBytes / 8)
        self.continuation = continuation
        self.longPolls = longPolls
        self.unsentGauge = unsentGauge
        decoder = FrameDecoder(maxFrameSize: maxFrameSize)
        lastActivity = now
    }

    /// No request is being handled and nothing waits to be written.
    var isIdle: Bool { inFlight == 0 && outbound.isEmpty && cipherOffset == cipher.count }

    /// The TLS handshake is still going on.
    var isHandshaking: Bool { tls.map { !$0.handshakeDone } ?? false }

    /// Whether another buffered request may be handed over now: under the in-flight limit, not
    /// paused for unsent bytes, and (beyond the first `alwaysInFlight` requests) the answers of
    /// the requests in flight, at the estimated size, still fit under `maxUnsentBytes`. So a
    /// client pipelining Fetches of 2 MiB has 4 in flight (with the default 4 MiB), not 64, while
    /// one pipelining Produce requests (answers of ~100 bytes) keeps all 64. The first few are
    /// always allowed so that a parked long poll never holds up a heartbeat or a commit sent on
    /// the same connection after large Fetch answers.
    var mayDispatch: Bool {
        guard inFlight < maxInFlight, !pausedForUnsent else { return false }
        return inFlight < Self.alwaysInFlight || unsentBytes + (inFlight + 1) * responseEstimate <= maxUnsentBytes
    }

    static let alwaysInFlight = 4

    enum UnsentChange { case unchanged, paused, resumed }

    /// Applies the unsent-bytes bound after the queue grew or drained: pause above
    /// `maxUnsentBytes`, resume at half of it (so a connection near the bound does not flap).
    func refreshUnsentPause() -> UnsentChange {
        if !pausedForUnsent && unsentBytes > maxUnsentBytes {
            pausedForUnsent = true
            return .paused
        }
        if pausedForUnsent && unsentBytes <= maxUnsentBytes / 2 {
            pausedForUnsent = false
            return .resumed
        }
        return .unchanged
    }

    /// Records request-arrival progress after the decoder was fed or drained: a partial request
    /// buffered starts (or, when frames were just taken, restarts) the arrival clock.
    func noteArrival(tookFrames: Bool, now: UInt64) {
        if decoder.bufferedByteCount == 0 {
            requestStartedAt = nil
        } else if tookFrames || requestStartedAt == nil {
            requestStartedAt = now
        }
    }

    /// The connection is gone: its unsent bytes no longer count.
    func dropUnsent() {
        unsentGauge.add(-Double(unsentBytes))
        unsentBytes = 0
        outbound.removeAll()
        outboundOffset = 0
        cipher.removeAll()
        cipherOffset = 0
    }

    func enqueue(_ frame: [UInt8]) {
        inFlight += 1
        nextSeq += 1
        continuation.yield(ServerRequest(bytes: frame, connection: ConnectionInfo(id: id, peer: peer, listener: listener, session: session), seq: nextSeq - 1))
    }

    func complete(seq: UInt64, outcome: EventLoop.Outcome) {
        completed[seq] = outcome
    }

    /// Moves responses that are next in order to the outbound queue.
    func moveCompletedToOutbound() {
        while !closing {
            if let at = closeAtSeq, nextToWrite == at {
                closing = true
                break
            }
            guard let outcome = completed.removeValue(forKey: nextToWrite) else { break }
            nextToWrite += 1
            inFlight -= 1
            switch outcome {
            case let .bytes(body):
                var prefix = [UInt8](repeating: 0, count: 4)
                let size = UInt32(body.count).bigEndian
                withUnsafeBytes(of: size) { for i in 0..<4 { prefix[i] = $0[i] } }
                outbound.append(prefix)
                outbound.append(body)
                unsentBytes += 4 + body.count
                responseEstimate = max(4 + body.count, responseEstimate / 2)
                unsentGauge.add(Double(4 + body.count))
            case .none:
                break
            case .close:
                closing = true
            }
        }
        if closing { completed.removeAll() }
    }

    /// A close is pending: no further request is read or handed over.
    var isClosing: Bool { closing || closeAtSeq != nil }

    /// Everything owed before a close has been written.
    var readyToClose: Bool { closing && outbound.isEmpty && cipherOffset == cipher.count }

    /// The peer sent something unreadable: answer what came before, then close.
    func closeAfterPendingResponses() {
        closeAtSeq = nextSeq
    }

    enum WriteResult { case done, wouldBlock, failed(Int32) }

    /// Writes queued bytes (encrypted first on TLS) until done or the socket would block.
    func writeOutbound() -> WriteResult {
        if let tls { return writeEncrypted(tls) }
        while !outbound.isEmpty {
            let count = min(outbound.count, 64)
            var iovecs = [iovec](repeating: iovec(), count: count)
            // sendmsg with MSG_NOSIGNAL, not writev: a peer that has gone must be EPIPE here, not a
            // SIGPIPE that kills whatever process embeds the broker (tests, benchmarks).
            let written: Int = withIOVecs(count: count, into: &iovecs) { pointer in
                var message = msghdr()
                message.msg_iov = UnsafeMutablePointer(mutating: pointer)
                message.msg_iovlen = count
                return sendmsg(fd, &message, Int32(MSG_NOSIGNAL))
            }
            if written < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return .wouldBlock }
                return .failed(errno)
            }
            consume(written)
        }
        return .done
    }

    /// TLS: sends the pending ciphertext (handshake messages, alerts, encrypted responses),
    /// encrypting the next chunk of responses each time it is all written.
    private func writeEncrypted(_ tls: TLSEngine) -> WriteResult {
        while true {
            if cipherOffset == cipher.count {
                cipher.removeAll(keepingCapacity: cipher.capacity <= 4 * Self.cipherChunk)
                cipherOffset = 0
                if tls.handshakeDone {
                    do throws(TLSError) { try encryptChunk(tls) } catch { return .failed(EPROTO) }
                }
                tls.takeOutput(into: &cipher)
                if cipher.isEmpty { return .done }
            }
            let offset = cipherOffset
            let written = cipher.withUnsafeBytes { raw in
                send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if written < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return .wouldBlock }
                return .failed(errno)
            }
            cipherOffset += written
        }
    }

    /// Encrypts up to `cipherChunk` bytes of the queued responses; they stop counting as unsent.
    private func encryptChunk(_ tls: TLSEngine) throws(TLSError) {
        var budget = Self.cipherChunk
        while budget > 0, !outbound.isEmpty {
            let take = min(budget, outbound[0].count - outboundOffset)
            let start = outboundOffset
            try tls.write(outbound[0][start..<(start + take)])
            budget -= take
            consume(take)
        }
    }

    /// Queues close_notify and sends what the socket takes now (before our FIN).
    func sendCloseNotify() {
        guard let tls, tls.handshakeDone else { return }
        tls.close()
        _ = writeOutbound()
    }

    private func withIOVecs(count: Int, into iovecs: inout [iovec], _ body: (UnsafePointer<iovec>) -> Int) -> Int {
        // Pins each chunk's storage for the duration of the sendmsg call.
        func pin(_ i: Int) -> Int {
            if i == count {
                return iovecs.withUnsafeBufferPointer { body($0.baseAddress!) }
            }
            let skip = i == 0 ? outboundOffset : 0
            return outbound[i].withUnsafeBytes { raw in
                iovecs[i] = iovec(iov_base: UnsafeMutableRawPointer(mutating: raw.baseAddress! + skip), iov_len: raw.count - skip)
                return pin(i + 1)
            }
        }
        return pin(0)
    }

    private func consume(_ written: Int) {
        unsentBytes -= written
        unsentGauge.add(-Double(written))
        var left = written
        while left > 0, !outbound.isEmpty {
            let available = outbound[0].count - outboundOffset
            if left >= available {
                left -= available
                outbound.removeFirst()
                outboundOffset = 0
            } else {
                outboundOffset += left
                left = 0
            }
        }
    }

    func pauseReading(loop: EventLoop) {
        guard reading else { return }
        reading = false
        loop.modify(fd, token: id, events: wantsWritable ? UInt32(FLOE_EV_OUT) : 0)
    }

    func resumeReading(loop: EventLoop) {
        guard !reading else { return }
        reading = true
        // The peer may have been held back by us: its partial request's clock restarts now.
        if requestStartedAt != nil { requestStartedAt = monotonicMilliseconds() }
        loop.modify(fd, token: id, events: UInt32(FLOE_EV_IN) | (wantsWritable ? UInt32(FLOE_EV_OUT) : 0))
    }

    /// Stops reading for good (drain): the request stream ends once queued requests are handled.
    func stopReading(loop: EventLoop) {
        pauseReading(loop: loop)
        continuation.finish()
    }

    /// After our FIN: only watch for the peer's close.
    func lingerForPeerClose(loop: EventLoop) {
        reading = true
        wantsWritable = false
        loop.modify(fd, token: id, events: UInt32(FLOE_EV_IN))
    }

    func setWritable(_ on: Bool, loop: EventLoop) {
        wantsWritable = on
        loop.modify(fd, token: id, events: (reading ? UInt32(FLOE_EV_IN) : 0) | (on ? UInt32(FLOE_EV_OUT) : 0))
    }
}
