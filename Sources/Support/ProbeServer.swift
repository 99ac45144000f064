import Foundation
import Synchronization

/// A tiny HTTP/1.1 server for `/metrics`, `/healthz` and `/readyz`: one dedicated thread
/// accepts and answers one short GET at a time (`Connection: close`), so it never touches the
/// cooperative pool. Requests larger than 8 KiB or slower than 5 s are dropped. Not for traffic.
///
/// Example: `ProbeServer(address: ":8080") { path in path == "/healthz" ? .ok("ok\n") : .notFound }`.
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

        public static func ok(_ body: String, contentType: String = "text/plain; charset=utf-8") -> Response {
            Response(status: 200, contentType: contentType, body: body)
        }
        public static let notFound = Response(status: 404, body: "not found\n")
    }

    /// A GET or HEAD request: the path without its query, and the query's `name=value` pairs
    /// (percent-decoded; a name without `=` maps to "").
    public struct Request: Sendable, Equatable {
        public var path: String
        public var query: [String: String]

        public init(path: String, query: [String: String] = [:]) {
            self.path = path
            self.query = query
        }

        /// Splits `/api/x?since=5&a=b%20c` into its path and query.
        public init(target: String) {
            guard let q = target.firstIndex(of: "?") else {
                self.init(path: target)
                return
            }
            var query: [String: String] = [:]
            for pair in target[target.index(after: q)...].split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let decode = { (s: Substring) in s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s) }
                query[decode(parts[0])] = parts.count > 1 ? decode(parts[1]) : ""
            }
            self.init(path: String(target[..<q]), query: query)
        }
    }

    public let port: UInt16
    private let fd: Int32
    private let stopped = Mutex(false)
    private let exited = DispatchSemaphore(value: 0)

    /// Listens on `address` (`:8080`, `127.0.0.1:0`, `0.0.0.0:9000`; an empty host means all
    /// interfaces) and serves `handler(path)` for GET requests.
    public convenience init(address: String, handler: @escaping @Sendable (String) -> Response) throws(SupportError) {
        try self.init(listening: address, requestHandler: { handler($0.path) })
    }

    /// As `init(address:handler:)`, with the query of the request passed to the handler too.
    /// (Another first label, so a trailing closure picks one initializer unambiguously.)
    public init(listening address: String, requestHandler handler: @escaping @Sendable (Request) -> Response) throws(SupportError) {
        guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]) else {
            throw .invalidAddress(address)
        }
        let host = String(address[..<colon])
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw .listenFailed(address: address, errno: errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        sin.sin_addr.s_addr = host.isEmpty || host == "0.0.0.0" ? INADDR_ANY : inet_addr(host)
        let bound = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 64) == 0 else {
            let e = errno
            close(fd)
            throw .listenFailed(address: address, errno: e)
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        self.port = UInt16(bigEndian: sin.sin_port)
        self.fd = fd
        startNamedThread("floe-probes") { [self] in
            acceptLoop(handler: handler)
            exited.signal()
        }
    }

    /// Stops accepting and joins the thread. Idempotent.
    public func stop() {
        let first = stopped.withLock { s -> Bool in
            defer { s = true }
            return !s
        }
        guard first else { return }
        shutdown(fd, Int32(SHUT_RDWR))
        exited.wait()
        close(fd)
    }

    private func acceptLoop(handler: @Sendable (Request) -> Response) {
        while !stopped.withLock({ $0 }) {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            Self.serve(client, handler: handler)
            close(client)
        }
    }

    private static func serve(_ client: Int32, handler: @Sendable (Request) -> Response) {
        var request: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 2048)
        while request.count < 8192 {
            let n = chunk.withUnsafeMutableBytes { read(client, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            request += chunk[0..<n]
            if String(decoding: request, as: UTF8.self).contains("\r\n\r\n") { break }
        }
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self).split(separator: " ")
        let response: Response
        if line.count >= 2, line[0] == "GET" || line[0] == "HEAD" {
            response = handler(Request(target: String(line[1])))
        } else {
            response = Response(status: 405, body: "method not allowed\n")
        }
        let reason = [200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error", 405: "Method Not Allowed", 503: "Service Unavailable"][response.status] ?? "Status"
        let body = Array(response.body.utf8)
        var out = Array("HTTP/1.1 \(response.status) \(reason)\r\nContent-Type: \(response.contentType)\r\nContent-Length: \(body.count)\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n".utf8)
        if line.first != "HEAD" { out += body }
        var offset = 0
        while offset < out.count {
            let n = out[offset...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }
}
