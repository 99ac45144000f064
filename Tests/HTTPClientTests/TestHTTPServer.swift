import Foundation
import Synchronization

/// A tiny blocking HTTP/1.1 server for the client's tests: one thread accepts, one thread per
/// connection, keep-alive, Content-Length bodies only. Routes:
/// - `/echo`: 200, body = request body, `x-method` and `x-path` headers, `x-foo` = request's `foo`.
/// - `/status/N`: status N, body `status N`.
/// - `/bytes/N`: 200 with N bytes of `x`.
/// - `/hang`: never answers; reports the arrival on `arrivals`, waits until the client hangs up.
/// - `/gate`: held until `gateThreshold` `/gate` requests are in flight at once, then answered.
final class TestHTTPServer: @unchecked Sendable {
    // @unchecked Sendable: all mutable state is in `state` (a Mutex) or guarded by `condition`.
    struct State {
        var connectionsAccepted = 0
        var requests = 0
        var gateInFlight = 0
        var gateMaxInFlight = 0
        var gateOpen = false
        var closedHangs = 0
    }

    let port: UInt16
    let state = Mutex(State())
    private let listenFD: Int32
    private let condition = NSCondition()
    let gateThreshold: Int
    let arrivals: AsyncStream<String>
    private let arrivalsContinuation: AsyncStream<String>.Continuation
    let hangups: AsyncStream<Void>
    private let hangupsContinuation: AsyncStream<Void>.Continuation

    private let acceptLoopExited = DispatchSemaphore(value: 0)
    private let stopped = Mutex(false)

    init(gateThreshold: Int = 1) throws {
        self.gateThreshold = gateThreshold
        (arrivals, arrivalsContinuation) = AsyncStream.makeStream(of: String.self)
        (hangups, hangupsContinuation) = AsyncStream.makeStream(of: Void.self)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno)!) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 128) == 0 else { throw POSIXError(.init(rawValue: errno)!) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        port = UInt16(bigEndian: address.sin_port)
        listenFD = fd
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    var baseURL: String { "http://127.0.0.1:\(port)" }

    func stop() {
        // Close the listening socket only after the accept thread has returned: a closed fd
        // number is soon reused by another test's socket, and a late `accept` on it would
        // steal that test's connections.
        guard !stopped.withLock({ stopped in defer { stopped = true }; return stopped }) else { return }
        shutdown(listenFD, Int32(SHUT_RDWR))
        acceptLoopExited.wait()
        close(listenFD)
        condition.lock()
        condition.broadcast()
        condition.unlock()
    }

    private func acceptLoop() {
        defer { acceptLoopExited.signal() }
        while true {
            let client = accept(listenFD, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            var one: Int32 = 1
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            state.withLock { $0.connectionsAccepted += 1 }
            let thread = Thread { [self] in serve(client) }
            thread.start()
        }
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        func fill() -> Bool {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return false }
            buffer.append(contentsOf: chunk[0..<n])
            return true
        }
        while true {
            var headerEnd: Int?
            while headerEnd == nil {
                if let range = findCRLFCRLF(buffer) { headerEnd = range } else if !fill() { return }
            }
            let head = String(decoding: buffer[0..<headerEnd!], as: UTF8.self)
            buffer.removeFirst(headerEnd! + 4)
            var lines = head.components(separatedBy: "\r\n")
            let requestLine = lines.removeFirst().split(separator: " ")
            let method = String(requestLine[0])
            let path = String(requestLine[1])
            var headers: [String: String] = [:]
            for line in lines {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            let length = Int(headers["content-length"] ?? "0") ?? 0
            while buffer.count < length { if !fill() { return } }
            let body = Array(buffer[0..<length])
            buffer.removeFirst(length)
            state.withLock { $0.requests += 1 }
            arrivalsContinuation.yield(path)

            var status = 200
            var responseBody: [UInt8] = []
            var extra: [(String, String)] = []
            if path == "/echo" {
                responseBody = body
                extra = [("x-method", method), ("x-path", path), ("x-foo", headers["foo"] ?? "")]
            } else if path.hasPrefix("/status/") {
                status = Int(path.dropFirst("/status/".count)) ?? 500
                responseBody = Array("status \(status)".utf8)
            } else if path.hasPrefix("/bytes/") {
                responseBody = [UInt8](repeating: UInt8(ascii: "x"), count: Int(path.dropFirst("/bytes/".count)) ?? 0)
            } else if path.hasPrefix("/chunks/") || path == "/trickle" {
                // Chunked transfer encoding: `/chunks/N` sends N chunks `line i\n` and ends;
                // `/trickle` sends one chunk, then holds the response open until the client hangs up.
                let count = path == "/trickle" ? 1 : Int(path.dropFirst("/chunks/".count)) ?? 0
                var out = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n".utf8)
                for i in 0..<count {
                    let line = Array("line \(i)\n".utf8)
                    out += Array((String(line.count, radix: 16) + "\r\n").utf8) + line + Array("\r\n".utf8)
                }
                if path != "/trickle" { out += Array("0\r\n\r\n".utf8) }
                var offset = 0
                while offset < out.count {
                    let n = out[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                    if n <= 0 { return }
                    offset += n
                }
                if path == "/trickle" {
                    while fill() {}
                    state.withLock { $0.closedHangs += 1 }
                    hangupsContinuation.yield(())
                    return
                }
                continue
            } else if path == "/hang" {
                while fill() {}
                state.withLock { $0.closedHangs += 1 }
                hangupsContinuation.yield(())
                return
            } else if path == "/gate" {
                condition.lock()
                state.withLock { s in
                    s.gateInFlight += 1
                    s.gateMaxInFlight = max(s.gateMaxInFlight, s.gateInFlight)
                    if s.gateInFlight >= gateThreshold { s.gateOpen = true }
                }
                condition.broadcast()
                while !state.withLock({ $0.gateOpen }) { condition.wait() }
                state.withLock { $0.gateInFlight -= 1 }
                condition.unlock()
            } else {
                status = 404
            }
            var response = "HTTP/1.1 \(status) X\r\nContent-Length: \(responseBody.count)\r\n"
            for (name, value) in extra { response += "\(name): \(value)\r\n" }
            response += "\r\n"
            var bytes = Array(response.utf8)
            if method != "HEAD" { bytes += responseBody }
            var offset = 0
            while offset < bytes.count {
                let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n <= 0 { return }
                offset += n
            }
        }
    }

    private func findCRLFCRLF(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i
        }
        return nil
    }
}
