import Foundation
import TLS

#if canImport(Glibc)
import Glibc
#endif

/// Blocking socket helpers for `KafkaConnection`; called on dedicated threads only.
enum SocketConnect {
    /// "host:port", with brackets around IPv6 literals.
    static func address(host: String, port: Int) -> String {
        // A Character, not a String: Foundation's substring search costs a CFString per call.
        host.contains(":" as Character) ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Resolves `host` with getaddrinfo and tries each address in turn within one overall
    /// `timeout`. Returns a connected, non-blocking socket with TCP_NODELAY and close-on-exec.
    static func connect(host: String, port: Int, timeout: Duration) throws(KafkaClientError) -> Int32 {
        let address = address(host: host, port: port)
        guard (0...65535).contains(port) else {
            throw KafkaClientError(address: address, kind: .resolveFailed(reason: "port \(port) out of range"))
        }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0 else {
            throw KafkaClientError(address: address, kind: .resolveFailed(reason: String(cString: gai_strerror(rc))))
        }
        defer { freeaddrinfo(list) }

        let deadline = ContinuousClock.now + timeout
        var lastError = KafkaClientError(address: address, kind: .resolveFailed(reason: "no addresses"))
        var node = list
        while let ai = node {
            node = ai.pointee.ai_next
            let remaining = ContinuousClock.now.duration(to: deadline)
            if remaining <= .zero {
                return try fail(address, .connectTimeout(milliseconds: milliseconds(timeout)))
            }
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), ai.pointee.ai_protocol)
            if fd < 0 {
                lastError = KafkaClientError(address: address, kind: .io(operation: "socket", code: errno))
                continue
            }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            var result = Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen)
            var code: Int32 = result == 0 ? 0 : errno
            if result != 0 && code == EINPROGRESS {
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                repeat {
                    let left = max(0, milliseconds(ContinuousClock.now.duration(to: deadline)))
                    result = poll(&pfd, 1, Int32(clamping: left))
                } while result < 0 && errno == EINTR
                if result == 0 {
                    close(fd)
                    return try fail(address, .connectTimeout(milliseconds: milliseconds(timeout)))
                }
                var soError: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                if result < 0 {
                    code = errno
                } else if getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length) != 0 {
                    code = errno
                } else {
                    code = soError
                }
            }
            if code != 0 {
                close(fd)
                lastError = KafkaClientError(address: address, kind: .connectFailed(code: code, reason: errnoText(code)))
                continue
            }
            var one: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            return fd
        }
        throw lastError
    }

    /// Runs the TLS handshake of a client session on the connected non-blocking socket `fd`
    /// within `timeout`; closes `fd` when it fails.
    static func handshake(fd: Int32, address: String, host: String, tls: KafkaClientTLS, timeout: Duration) throws(KafkaClientError) -> TLSEngine {
        let deadline = ContinuousClock.now + timeout
        func failed(_ kind: KafkaClientError.Kind) -> KafkaClientError {
            close(fd)
            return KafkaClientError(address: address, kind: kind)
        }
        let engine: TLSEngine
        do throws(TLSError) {
            let context = try TLSContext.client(caFile: tls.caFile, certificateFile: tls.certificateFile, keyFile: tls.keyFile)
            engine = try TLSEngine(context: context, serverName: tls.serverName ?? host)
        } catch {
            throw failed(.tls(reason: error.description))
        }
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        var out: [UInt8] = []
        while true {
            let done: Bool
            do throws(TLSError) { done = try engine.handshake() } catch { throw failed(.tls(reason: error.description)) }
            engine.takeOutput(into: &out)
            var sent = 0
            while sent < out.count {
                let n = out.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
                if n > 0 { sent += n; continue }
                if n < 0 && errno == EINTR { continue }
                guard n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) else { throw failed(.io(operation: "send", code: errno)) }
                guard wait(fd, for: Int16(POLLOUT), until: deadline) else { throw failed(.connectTimeout(milliseconds: milliseconds(timeout))) }
            }
            out.removeAll(keepingCapacity: true)
            if done { return engine }
            guard wait(fd, for: Int16(POLLIN), until: deadline) else { throw failed(.connectTimeout(milliseconds: milliseconds(timeout))) }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { throw failed(.tls(reason: "the server closed the connection during the handshake")) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK { continue }
                throw failed(.io(operation: "recv", code: errno))
            }
            engine.feed(buffer[0..<n])
        }
    }

    /// Polls `fd` for `events` until `deadline`; false when it passed.
    private static func wait(_ fd: Int32, for events: Int16, until deadline: ContinuousClock.Instant) -> Bool {
        var pfd = pollfd(fd: fd, events: events, revents: 0)
        while true {
            let left = milliseconds(ContinuousClock.now.duration(to: deadline))
            if left <= 0 { return false }
            let rc = poll(&pfd, 1, Int32(clamping: left))
            if rc > 0 { return true }
            if rc == 0 { return false }
            if errno != EINTR { return true }  // the next send or recv reports the error
        }
    }

    private static func fail(_ address: String, _ kind: KafkaClientError.Kind) throws(KafkaClientError) -> Int32 {
        throw KafkaClientError(address: address, kind: kind)
    }

    static func milliseconds(_ d: Duration) -> Int64 {
        let (seconds, attoseconds) = d.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// Runs `work` on a thread of its own and returns its result (for getaddrinfo and connect,
    /// which block).
    static func onThread<T: Sendable>(_ work: @escaping @Sendable () throws(KafkaClientError) -> T) async throws(KafkaClientError) -> T {
        let result: Result<T, KafkaClientError> = await withCheckedContinuation { continuation in
            let thread = Thread {
                do throws(KafkaClientError) {
                    continuation.resume(returning: .success(try work()))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
            thread.name = "kafka-connect"
            thread.start()
        }
        return try result.get()
    }
}
