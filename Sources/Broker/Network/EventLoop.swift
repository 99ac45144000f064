#if canImport(Glibc)
import Glibc
#endif
import CFloeShims
import KafkaProtocol
import Synchronization
import TLS

/// One epoll thread owning a set of connections. All connection state is touched only on this
/// thread; other threads talk to it through `post`, a mutex-guarded queue plus an eventfd.
final class EventLoop: @unchecked Sendable {
    // @unchecked Sendable: `connections`, `listener` and the other `var`s are confined to the
    // loop's own thread; only `inbox` (a Mutex) and the immutable fds are shared.

    enum Message: Sendable {
        case adopt(fd: Int32, peer: String)
        case response(connection: UInt64, seq: UInt64, outcome: Outcome)
        case stopAccepting
        case drain
        case stop
    }

    enum Outcome: Sendable {
        case bytes([UInt8])
        case none
        case close
    }

    private let index: Int
    private let epollFD: Int32
    private let wakeFD: Int32
    private let inbox = Mutex<[Message]>([])
    private unowned let server: ServerCore
    private var listener: Int32 = -1
    private var connections: [UInt64: Connection] = [:]
    private var draining = false
    private var stopping = false
    private var stopDeadline: UInt64 = 0
    private var nextLoopForAccept = 0
    /// Connections muted by quota throttling (`ConnectionSession.State.throttledUntil`), not
    /// read from until their instant; the loop wakes in time to read them again.
    private var muted: [UInt64: ContinuousClock.Instant] = [:]

    private static let wakeToken: UInt64 = 0
    private static let listenerToken: UInt64 = 1

    init(index: Int, server: ServerCore) throws(NetworkError) {
        self.index = index
        self.server = server
        epollFD = floe_epoll_create()
        guard epollFD >= 0 else { throw .systemCall("epoll_create1", errno: errno, address: "event loop \(index)") }
        wakeFD = floe_eventfd()
        guard wakeFD >= 0 else { throw .systemCall("eventfd", errno: errno, address: "event loop \(index)") }
        register(wakeFD, token: Self.wakeToken, events: UInt32(FLOE_EV_IN))
    }

    deinit {
        close(epollFD)
        close(wakeFD)
    }

    func setListener(_ fd: Int32) {
        listener = fd
        register(fd, token: Self.listenerToken, events: UInt32(FLOE_EV_IN))
    }

    /// Queues a message for the loop thread and wakes it.
    func post(_ message: Message) {
        inbox.withLock { $0.append(message) }
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    private func register(_ fd: Int32, token: UInt64, events: UInt32) {
        floe_epoll_ctl(epollFD, 0, fd, events, token)
    }

    func modify(_ fd: Int32, token: UInt64, events: UInt32) {
        floe_epoll_ctl(epollFD, 1, fd, events, token)
    }

    /// The thread body: runs until `stop` has been processed and every connection is closed.
    func run() {
        var events = [UInt32](repeating: 0, count: 256)
        var tokens = [UInt64](repeating: 0, count: 256)
        var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = floe_epoll_wait(epollFD, &events, &tokens, 256, waitMilliseconds())
            if n < 0 && errno != EINTR { break }
            for i in 0..<max(0, Int(n)) {
                let token = tokens[i]
                let flags = events[i]
                switch token {
                case Self.wakeToken:
                    var value: UInt64 = 0
                    _ = read(wakeFD, &value, 8)
                case Self.listenerToken:
                    acceptPending()
                default:
                    guard let connection = connections[token] else { continue }
                    if flags & (UInt32(FLOE_EV_ERR) | UInt32(FLOE_EV_HUP)) != 0 && flags & UInt32(FLOE_EV_IN) == 0 {
                        closeConnection(connection, reason: "socket error or hang-up")
                        continue
                    }
                    if flags & UInt32(FLOE_EV_OUT) != 0 { flush(connection) }
                    if flags & UInt32(FLOE_EV_IN) != 0 { readAvailable(connection, into: &readBuffer) }
                }
            }
            processInbox()
            unmuteDue()
            sweepIdle()
            if stopping && (connections.isEmpty || monotonicMilliseconds() >= stopDeadline) {
                for connection in Array(connections.values) { closeConnection(connection, reason: "server stopped") }
                return
            }
        }
    }

    private func processInbox() {
        let messages = inbox.withLock { queue -> [Message] in
            defer { queue.removeAll(keepingCapacity: true) }
            return queue
        }
        for message in messages {
            switch message {
            case let .adopt(fd, peer):
                adopt(fd: fd, peer: peer)
            case let .response(id, seq, outcome):
                guard let connection = connections[id] else { continue }
                connection.complete(seq: seq, outcome: outcome)
                writeCompleted(connection)
            case .stopAccepting:
                if listener >= 0 {
                    floe_epoll_ctl(epollFD, 2, listener, 0, 0)
                    close(listener)
                    listener = -1
                    server.listenerClosed()
                }
            case .drain:
                draining = true
                for connection in connections.values {
                    connection.stopReading(loop: self)
                    connection.session.update { $0.closed = true }  // queued requests no longer wait for a throttle
                }
            case .stop:
                stopping = true
                stopDeadline = monotonicMilliseconds() + 5_000
                for connection in Array(connections.values) where connection.isIdle {
                    finishConnection(connection, reason: "server stopped")
                }
            }
        }
    }

    /// How long epoll may wait: 250 ms, or less when a muted connection is due before.
    private func waitMilliseconds() -> Int32 {
        guard let next = muted.values.min() else { return 250 }
        let left = next - ContinuousClock.now
        if left <= .zero { return 0 }
        return Int32(min(250, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1))
    }

    /// Reads muted connections again once their throttle time has passed.
    private func unmuteDue() {
        guard !muted.isEmpty else { return }
        let now = ContinuousClock.now
        for (id, until) in muted where until <= now {
            muted[id] = nil
            if let connection = connections[id], !draining { dispatchFrames(connection) }
        }
    }

    private func acceptPending() {
        while listener >= 0, let (fd, peer) = Socket.accept(listener) {
            guard server.admitConnection() else {
                server.log("connection refused: connection limit reached", peer)
                close(fd)
                continue
            }
            let target = server.loops[nextLoopForAccept % server.loops.count]
            nextLoopForAccept += 1
            if target === self { adopt(fd: fd, peer: peer) } else { target.post(.adopt(fd: fd, peer: peer)) }
        }
    }

    private func adopt(fd: Int32, peer: String) {
        if draining || stopping {
            close(fd)
            server.connectionClosed()
            return
        }
        let id = server.nextConnectionID()
        let (stream, continuation) = AsyncStream<ServerRequest>.makeStream()
        let longPolls = LongPollGroup()
        let configuration = server.configuration
        let now = monotonicMilliseconds()
        var tls: TLSEngine? = nil
        if let certificates = configuration.tls, configuration.securityProtocol.usesTLS {
            do throws(TLSError) {
                tls = try TLSEngine(context: certificates.current(nowMilliseconds: now))
            } catch {
                server.log("connection refused: \(error)", peer)
                close(fd)
                server.connectionClosed()
                return
            }
        }
        let session = ConnectionSession(securityProtocol: configuration.securityProtocol)
        let connection = Connection(
            id: id, fd: fd, peer: peer, listener: configuration.listener, maxFrameSize: configuration.maxFrameSize,
            maxInFlight: configuration.maxInFlightRequestsPerConnection, maxUnsentBytes: configuration.maxUnsentBytesPerConnection,
            continuation: continuation, longPolls: longPolls, unsentGauge: server.counters.unsentBytes, now: now,
            session: session, tls: tls)
        connections[id] = connection
        register(fd, token: id, events: UInt32(FLOE_EV_IN))
        server.connectionOpened(.init(info: ConnectionInfo(id: id, peer: peer, listener: configuration.listener, session: session),
                                      requests: stream, longPolls: longPolls, loop: self))
    }

    private func readAvailable(_ connection: Connection, into buffer: inout [UInt8]) {
        guard connection.reading else { return }
        let result = buffer.withUnsafeMutableBytes { read(connection.fd, $0.baseAddress, $0.count) }
        if connection.lingerDeadline != nil {
            // Half-closed: discard what the peer still sends until it closes its side.
            if result == 0 || (result < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                closeConnection(connection, reason: "peer closed after our close")
            }
            return
        }
        if result == 0 {
            closeConnection(connection, reason: "peer closed the connection")
            return
        }
        if result < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return }
            closeConnection(connection, reason: "read failed: \(String(cString: strerror(errno)))")
            return
        }
        connection.lastActivity = monotonicMilliseconds()
        guard let tls = connection.tls else {
            connection.decoder.feed(buffer[0..<result])
            dispatchFrames(connection)
            return
        }
        tls.feed(buffer[0..<result])
        var plaintext: [UInt8] = []
        do throws(TLSError) {
            if !tls.handshakeDone, try tls.handshake() { handshakeCompleted(connection, tls) }
            if tls.handshakeDone { try tls.readPlaintext(into: &plaintext) }
        } catch {
            if !tls.handshakeDone { server.counters.tlsHandshakeFailures.increment() }
            _ = connection.writeOutbound()  // the alert, if the socket takes it
            closeConnection(connection, reason: "TLS: \(error)")
            return
        }
        // Handshake messages, session tickets, alerts.
        if tls.pendingOutput > 0 { flush(connection) }
        if connection.closed { return }
        if !plaintext.isEmpty { connection.decoder.feed(plaintext[...]) }
        dispatchFrames(connection)
        if tls.peerClosed, !connection.closed, connection.lingerDeadline == nil, !connection.isClosing {
            // close_notify: no more requests come. Answer what came before, then send our
            // close_notify and FIN, as Kafka does (Python's asyncio SSL waits 30 s for them).
            server.log("peer sent TLS close_notify", connection.peer)
            connection.pauseReading(loop: self)
            connection.closeAfterPendingResponses()
            writeCompleted(connection)
        }
    }

    /// The handshake finished: on SSL listeners a verified client certificate names the principal.
    private func handshakeCompleted(_ connection: Connection, _ tls: TLSEngine) {
        if connection.session.securityProtocol == .ssl, let subject = tls.verifiedPeerSubject {
            connection.session.update { $0.principal = KafkaPrincipal(name: subject) }
        }
        server.log("TLS handshake done (\(tls.protocolVersion)), principal \(connection.session.principal)", connection.peer)
    }

    /// Hands buffered complete frames to the connection's request stream, up to the in-flight
    /// limit and while its unsent responses are under their bound; reads on only if both allow.
    private func dispatchFrames(_ connection: Connection) {
        if connection.closed || connection.lingerDeadline != nil { return }
        if connection.isClosing {
            connection.pauseReading(loop: self)
            return
        }
        // Throttled by a quota (KIP-219): neither read nor handed over until the time is up.
        if let until = connection.session.snapshot.throttledUntil, until > .now {
            connection.pauseReading(loop: self)
            muted[connection.id] = until
            return
        }
        var took = false
        defer { connection.noteArrival(tookFrames: took, now: monotonicMilliseconds()) }
        do {
            while connection.mayDispatch, let frame = try connection.decoder.nextFrame() {
                connection.enqueue(frame)
                took = true
            }
        } catch {
            // Requests before the bad frame still get their responses; then the connection closes.
            server.log("closing connection after pending responses: \(error)", connection.peer)
            connection.pauseReading(loop: self)
            connection.closeAfterPendingResponses()
            writeCompleted(connection)
            return
        }
        if !connection.mayDispatch {
            connection.pauseReading(loop: self)
        } else if !draining {
            connection.resumeReading(loop: self)
        }
    }

    private func writeCompleted(_ connection: Connection) {
        connection.moveCompletedToOutbound()
        flush(connection)
        if connection.closed { return }
        if connection.readyToClose {
            finishConnection(connection, reason: "closed after pending responses")
            return
        }
        if !draining && connection.mayDispatch { dispatchFrames(connection) }
        if stopping && connection.isIdle {
            finishConnection(connection, reason: "server stopped")
        }
    }

    private func flush(_ connection: Connection) {
        switch connection.writeOutbound() {
        case .done:
            if connection.wantsWritable { connection.setWritable(false, loop: self) }
            if connection.readyToClose { finishConnection(connection, reason: "closed after pending responses") }
        case .wouldBlock:
            if !connection.wantsWritable { connection.setWritable(true, loop: self) }
        case let .failed(code):
            closeConnection(connection, reason: "write failed: \(String(cString: strerror(code)))")
            return
        }
        if connection.closed || connection.lingerDeadline != nil { return }
        switch connection.refreshUnsentPause() {
        case .paused:
            server.counters.unsentPauses.increment()
            connection.pauseReading(loop: self)
        case .resumed:
            if !draining { dispatchFrames(connection) }
        case .unchanged:
            break
        }
    }

    private func sweepIdle() {
        let now = monotonicMilliseconds()
        for connection in Array(connections.values) {
            if let deadline = connection.lingerDeadline {
                if now >= deadline { closeConnection(connection, reason: "peer did not close after our close") }
                continue
            }
            if !connection.authenticationDone {
                if !connection.isHandshaking && connection.session.authenticated {
                    connection.authenticationDone = true
                } else {
                    let authLimit = server.configuration.authenticationTimeoutMilliseconds
                    if authLimit > 0, now >= connection.acceptedAt, now - connection.acceptedAt > authLimit {
                        server.counters.authenticationTimeouts.increment()
                        closeConnection(connection, reason: "authentication not done within authentication.timeout.ms")
                        continue
                    }
                }
            }
            let readLimit = server.configuration.requestReadTimeoutMilliseconds
            if readLimit > 0, connection.reading, !connection.isClosing, let started = connection.requestStartedAt,
               now >= started, now - started > readLimit {
                server.counters.requestReadTimeouts.increment()
                closeConnection(connection, reason: "request not received in full within request.read.timeout.ms")
                continue
            }
            let limit = server.configuration.idleTimeoutMilliseconds
            if limit > 0 && connection.isIdle && now - connection.lastActivity > limit {
                finishConnection(connection, reason: "idle for more than \(limit) ms")
            }
        }
    }

    /// Closes after everything queued is written: sends FIN (shutdown for writing), then reads and
    /// discards until the peer closes or a short deadline passes. Closing a socket with unread
    /// input would send a reset, which can destroy responses the peer has not read yet.
    private func finishConnection(_ connection: Connection, reason: String) {
        guard !connection.closed, connection.lingerDeadline == nil else { return }
        connection.lingerDeadline = monotonicMilliseconds() + Self.lingerMilliseconds
        connection.session.update { $0.closed = true }
        connection.sendCloseNotify()
        shutdown(connection.fd, Int32(SHUT_WR))
        // Nothing more is written: long polls still waiting would answer nobody.
        connection.longPolls.cancelAll()
        connection.continuation.finish()
        connection.lingerForPeerClose(loop: self)
        server.log("connection finishing: \(reason)", connection.peer)
    }

    static let lingerMilliseconds: UInt64 = 2_000

    private func closeConnection(_ connection: Connection, reason: String) {
        guard !connection.closed else { return }
        connection.closed = true
        connection.session.update { $0.closed = true }
        floe_epoll_ctl(epollFD, 2, connection.fd, 0, 0)
        close(connection.fd)
        connection.longPolls.cancelAll()
        connection.dropUnsent()
        connection.continuation.finish()
        connections[connection.id] = nil
        muted[connection.id] = nil
        server.connectionClosed()
        server.log("connection closed: \(reason)", connection.peer)
    }
}
