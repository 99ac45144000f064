#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The files of a TLS server (Kafka's `ssl.*` settings).
public struct TLSServerFiles: Sendable, Hashable {
    public var certificateFile: String
    public var keyFile: String
    public var clientCAFile: String?
    public var clientAuth: TLSClientAuth

    public init(certificateFile: String, keyFile: String, clientCAFile: String? = nil, clientAuth: TLSClientAuth = .none) {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.clientCAFile = clientCAFile
        self.clientAuth = clientAuth
    }
}

/// The server context for new connections, rebuilt when its files change.
///
/// `current(nowMilliseconds:)` looks at the files at most once per `checkInterval`: a `stat` of
/// each (following symlinks, so a Kubernetes Secret volume, which swaps its `..data` link, is
/// seen as changed). When the device, inode, size or modification time of one differs from the
/// last look, a new context is built; if that fails (a key that does not match the new
/// certificate, a half-written file) the failure is reported and the previous context stays in
/// use; the next change is tried again. Existing sessions keep the context they were made with.
///
/// Example: the certificate and key are rewritten at t = 100 s; the first connection accepted
/// after the next check gets a context with the new pair.
public final class TLSServerCertificates: Sendable {
    public let files: TLSServerFiles
    public let checkIntervalMilliseconds: UInt64
    private let onReload: @Sendable (Result<Void, TLSError>) -> Void
    private let state: Mutex<State>

    private struct State {
        var context: TLSContext
        var signature: [FileSignature?]
        var lastCheck: UInt64
    }

    struct FileSignature: Hashable {
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var modifiedSeconds: Int
        var modifiedNanoseconds: Int
    }

    /// Builds the first context; throws when the files do not make one (the broker does not start).
    public init(files: TLSServerFiles, checkIntervalMilliseconds: UInt64 = 5_000, nowMilliseconds: UInt64,
                onReload: @escaping @Sendable (Result<Void, TLSError>) -> Void = { _ in }) throws(TLSError) {
        self.files = files
        self.checkIntervalMilliseconds = checkIntervalMilliseconds
        self.onReload = onReload
        let signature = Self.signature(files)
        let context = try Self.build(files)
        state = Mutex(State(context: context, signature: signature, lastCheck: nowMilliseconds))
    }

    /// The context new connections use, after a check of the files if one is due.
    public func current(nowMilliseconds now: UInt64) -> TLSContext {
        let (context, outcome) = state.withLock { s -> (TLSContext, Result<Void, TLSError>?) in
            guard now >= s.lastCheck + checkIntervalMilliseconds else { return (s.context, nil) }
            s.lastCheck = now
            let signature = Self.signature(files)
            guard signature != s.signature else { return (s.context, nil) }
            s.signature = signature
            do throws(TLSError) {
                s.context = try Self.build(files)
                return (s.context, .success(()))
            } catch {
                return (s.context, .failure(error))
            }
        }
        if let outcome { onReload(outcome) }
        return context
    }

    private static func build(_ files: TLSServerFiles) throws(TLSError) -> TLSContext {
        try TLSContext.server(certificateFile: files.certificateFile, keyFile: files.keyFile, clientCAFile: files.clientCAFile,
                              clientAuth: files.clientAuth)
    }

    private static func signature(_ files: TLSServerFiles) -> [FileSignature?] {
        [files.certificateFile, files.keyFile, files.clientCAFile ?? ""].map { path in
            guard !path.isEmpty else { return nil }
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            return FileSignature(device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
                                 modifiedSeconds: Int(info.st_mtim.tv_sec), modifiedNanoseconds: Int(info.st_mtim.tv_nsec))
        }
    }
}
