#if canImport(Glibc)
import Glibc
#endif
import CFloeShims

/// Errors of the network server. Each names the address or the system call that failed.
public enum NetworkError: Error, Equatable, CustomStringConvertible {
    case invalidAddress(String)
    case systemCall(String, errno: Int32, address: String)

    public var description: String {
        switch self {
        case let .invalidAddress(a):
            return "invalid listen address '\(a)': expected HOST:PORT with an IPv4 host, e.g. 127.0.0.1:9092"
        case let .systemCall(call, code, address):
            let reason = String(cString: strerror(code))
            if call == "bind" && code == EADDRINUSE {
                return "cannot listen on \(address): address already in use (another process holds the port)"
            }
            return "\(call) failed for \(address): \(reason) (errno \(code))"
        }
    }
}

/// An IPv4 address and port, parsed from `HOST:PORT`.
public struct SocketAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT`; `localhost` means 127.0.0.1.
    public init(parsing text: String) throws(NetworkError) {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else {
            throw .invalidAddress(text)
        }
        var host = String(text[..<colon])
        if host == "localhost" { host = "127.0.0.1" }
        if host.isEmpty { host = "0.0.0.0" }
        var probe = in_addr()
        guard inet_pton(AF_INET, host, &probe) == 1 else { throw .invalidAddress(text) }
        self.host = host
        self.port = port
    }

    public var description: String { "\(host):\(port)" }

    func sockaddr() -> sockaddr_in {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        _ = inet_pton(AF_INET, host, &sa.sin_addr)
        return sa
    }
}

/// Low-level socket calls, kept in one place.
enum Socket {
    static func listen(_ address: SocketAddress, backlog: Int32) throws(NetworkError) -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .systemCall("socket", errno: errno, address: address.description) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var sa = address.sockaddr()
        let bound = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            let code = errno
            close(fd)
            throw .systemCall("bind", errno: code, address: address.description)
        }
        guard Glibc.listen(fd, backlog) == 0 else {
            let code = errno
            close(fd)
            throw .systemCall("listen", errno: code, address: address.description)
        }
        var bound_sa = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound_sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return (fd, UInt16(bigEndian: bound_sa.sin_port))
    }

    /// Accepts one pending connection; nil when none is pending.
    static func accept(_ listener: Int32) -> (fd: Int32, peer: String)? {
        var sa = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = withUnsafeMutablePointer(to: &sa) {
            floe_accept_nonblocking(listener, $0, &len)
        }
        guard fd >= 0 else { return nil }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        inet_ntop(AF_INET, &sa.sin_addr, &text, socklen_t(INET_ADDRSTRLEN))
        let host = text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return (fd, "\(host):\(UInt16(bigEndian: sa.sin_port))")
    }
}
