#if canImport(Glibc)
import Glibc
#endif

/// Checks of the machine made before the broker creates anything: that a directory it will
/// use (the bucket of `file://` storage, the file WAL's directory) exists or can be created,
/// and that a listen address is free. Each answer is one line in the user's terms, with the
/// system's own reason (`strerror`), never a generic "operation could not be completed".
///
/// Example: `directoryProblem("/data/floe", create: false)` is nil when `/data` is a writable
/// directory, and `"/data is a file, not a directory"` when it is a file.
public enum StartupChecks {
    /// Why `path` cannot serve as a directory the broker writes in, or nil. With `create`, a
    /// missing directory (and its missing parents) is created, and a failure reported.
    public static func directoryProblem(_ path: String, create: Bool) -> String? {
        var info = stat()
        if stat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else { return "\(path) is a file, not a directory" }
            return writableProblem(path)
        }
        let code = errno
        guard code == ENOENT || code == ENOTDIR else { return "\(path): \(errorText(code))" }
        // Missing: the nearest existing ancestor must be a directory this user can write in.
        var ancestor = parent(of: path)
        while true {
            if stat(ancestor, &info) == 0 {
                guard (info.st_mode & S_IFMT) == S_IFDIR else {
                    return "\(path) cannot be created: \(ancestor) is a file, not a directory"
                }
                if let problem = writableProblem(ancestor) { return "\(path) cannot be created: \(problem)" }
                break
            }
            let e = errno
            guard e == ENOENT || e == ENOTDIR, ancestor != "/", ancestor != "." else { return "\(path) cannot be created: \(ancestor): \(errorText(e))" }
            ancestor = parent(of: ancestor)
        }
        guard create else { return nil }
        return makeDirectories(path)
    }

    /// Why nothing can listen on `host:port` now (the port is taken, the address is not this
    /// machine's), or nil. Port 0 always passes. Binds a socket and closes it at once.
    public static func listenProblem(host: String, port: UInt16) -> String? {
        guard port != 0 else { return nil }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return "socket: \(errorText(errno))" }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &sa.sin_addr) == 1 else { return "\(host) is not an IPv4 address" }
        let result = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            let e = errno
            if e == EADDRINUSE { return "port \(port) is already in use on \(host) (another process listens on it)" }
            if e == EADDRNOTAVAIL { return "\(host) is not an address of this machine" }
            if e == EACCES { return "port \(port) is reserved for privileged processes (\(errorText(e)))" }
            return errorText(e)
        }
        return nil
    }

    static func writableProblem(_ path: String) -> String? {
        var fs = statvfs()
        if statvfs(path, &fs) == 0, fs.f_flag & UInt(ST_RDONLY) != 0 { return "\(path) is on a read-only file system" }
        if access(path, W_OK | X_OK) != 0 { return "\(path) is not writable by this user (uid \(getuid())): \(errorText(errno))" }
        return nil
    }

    static func makeDirectories(_ path: String) -> String? {
        if mkdir(path, 0o755) == 0 { return nil }
        var e = errno
        if e == EEXIST { return nil }
        if e == ENOENT {
            let up = parent(of: path)
            if up != path, let problem = makeDirectories(up) { return problem }
            if mkdir(path, 0o755) == 0 { return nil }
            e = errno
            if e == EEXIST { return nil }
        }
        return "cannot create \(path): \(errorText(e))"
    }

    static func parent(of path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        guard let slash = p.lastIndex(of: "/") else { return "." }
        if slash == p.startIndex { return "/" }
        return String(p[..<slash])
    }

    static func errorText(_ code: Int32) -> String { "\(String(cString: strerror(code))) (errno \(code))" }
}
