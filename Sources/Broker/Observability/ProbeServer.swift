#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Support
import Synchronization

/// A tiny HTTP/1.1 server for `/metrics`, `/healthz`, `/readyz` and `/drain`: one dedicated
/// thread, one request per connection (`Connection: close`), requests up to 8 KiB, a 2-second
/// read timeout. Enough for Prometheus scrapes and kubelet probes; not a general web server.
public final class ProbeServer: Sendable {
    public struct Response: Sendable {
        public var status: Int
        public var contentType: String
        public var body: String
        public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String) {
            self.status = status
            self.contentType = contentType
            self.body = body
        }
    }

    /// Answers `GET path`; runs on the server thread (may block briefly).
    public typealias Route = @Sendable (_ method: String, _ path: String) -> Response

    public let port: UInt16
    private let fd: Int32
    private let route: Route
    private let stopped = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)

    /// Binds `address` at once (a taken port throws, naming it).
    public init(address: SocketAddress, route: @escaping Route) throws(NetworkError) {
        (fd, port) = try Socket.listen(address, backlog: 64)
        self.route = route
    }

    public func start() {
        startNamedThread("floe-http") { [self] in
            serve()
            done.signal()
        }
    }

    public func stop() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        done.wait()
        close(fd)
    }

    private func serve() {
        while !stopped.load(ordering: .relaxed) {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let n = poll(&p, 1, 200)
            guard n > 0 else { continue }
            while let (client, _) = Socket.accept(fd) {
                handle(client)
            }
        }
    }

    private func handle(_ client: Int32) {
        defer { close(client) }
        // Blocking with a timeout: a slow client cannot hold the thread for long.
        let flags = fcntl(client, F_GETFL)
        _ = fcntl(client, F_SETFL, flags & ~O_NONBLOCK)
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 8192)
        var used = 0
        while used < buffer.count {
            let n = buffer.withUnsafeMutableBytes { read(client, $0.baseAddress! + used, $0.count - used) }
            if n <= 0 { break }
            used += n
            if buffer[..<used].containsHeaderEnd { break }
        }
        let text = String(decoding: buffer[..<used], as: UTF8.self)
        let line = text.split(separator: "\r\n", maxSplits: 1).first.map(String.init) ?? ""
        let parts = line.split(separator: " ")
        let response: Response
        if parts.count >= 2 {
            var path = String(parts[1])
            if let q = path.firstIndex(of: "?") { path = String(path[..<q]) }
            response = route(String(parts[0]), path)
        } else {
            response = Response(status: 400, body: "bad request\n")
        }
        let reason = [200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"][response.status] ?? "Status"
        let body = Array(response.body.utf8)
        let head = "HTTP/1.1 \(response.status) \(reason)\r\nContent-Type: \(response.contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        let out = Array(head.utf8) + body
        var sent = 0
        while sent < out.count {
            let n = out.withUnsafeBytes { send(client, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }
}

extension ArraySlice<UInt8> {
    var containsHeaderEnd: Bool {
        guard count >= 4 else { return false }
        var i = startIndex
        while i + 3 < endIndex {
            if self[i] == 13 && self[i + 1] == 10 && self[i + 2] == 13 && self[i + 3] == 10 { return true }
            i += 1
        }
        return false
    }
}
