import Foundation
import Support
import Synchronization

/// Where S3 credentials come from, tried in the order given.
public enum S3CredentialSource: Sendable, Hashable, CustomStringConvertible {
    /// Fixed keys (tests, benchmarks).
    case fixed(S3Credentials)
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN`.
    case environment
    /// The shared credentials file: `path` or `AWS_SHARED_CREDENTIALS_FILE` or
    /// `~/.aws/credentials`; section `profile` or `AWS_PROFILE` or `default`.
    case sharedFile(path: String?, profile: String?)
    /// A directory of files, as a Kubernetes Secret mounts them: `access-key-id`,
    /// `secret-access-key` and optionally `session-token`. Re-read when older than the refresh
    /// interval, so rotated Secrets are picked up.
    case directory(String)
    /// No credentials: requests go unsigned (a public bucket, or a test server that allows
    /// anonymous access). Used alone; `S3ObjectStore` then sends no `Authorization` header.
    case anonymous

    public var description: String {
        switch self {
        case .anonymous: "anonymous (unsigned requests)"
        case .fixed: "fixed credentials"
        case .environment: "environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
        case .sharedFile(let path, let profile): "shared credentials file \(path ?? "(default)") profile \(profile ?? "(default)")"
        case .directory(let path): "credentials directory \(path)"
        }
    }
}

/// Resolves credentials from a chain of sources and caches them for `refreshInterval`.
/// File reads run on a dedicated thread, never on the cooperative pool. Never logs secrets.
public final class S3CredentialsProvider: Sendable {
    public let sources: [S3CredentialSource]
    public let refreshInterval: Duration
    private let environment: [String: String]
    private let clock: any FloeClock
    private let cache = Mutex<(credentials: S3Credentials, loadedAt: MonotonicInstant)?>(nil)
    private let files: BlockingThreadPool

    public init(sources: [S3CredentialSource], environment: [String: String] = ProcessInfo.processInfo.environment,
                clock: any FloeClock = RealClock(), refreshInterval: Duration = .seconds(60)) {
        self.sources = sources
        self.environment = environment
        self.clock = clock
        self.refreshInterval = refreshInterval
        files = BlockingThreadPool(name: "floe-credentials", threads: 1, queueLimit: 64)
    }

    deinit { files.shutdown() }

    /// Current credentials, from the cache or freshly resolved.
    public func credentials() async throws -> S3Credentials {
        let now = clock.now()
        if let cached = cache.withLock({ $0 }), now.duration(since: cached.loadedAt) < refreshInterval {
            return cached.credentials
        }
        let sources = sources
        let environment = environment
        let resolved = try await files.run { try S3CredentialsProvider.resolve(sources, environment: environment) }
        cache.withLock { $0 = (resolved, now) }
        return resolved
    }

    /// Tries each source in order; the error lists why each failed.
    public static func resolve(_ sources: [S3CredentialSource], environment: [String: String]) throws -> S3Credentials {
        var reasons: [String] = []
        for source in sources {
            switch source {
            case .anonymous:
                reasons.append("anonymous access has no credentials")
            case .fixed(let credentials):
                return credentials
            case .environment:
                if let id = environment["AWS_ACCESS_KEY_ID"], !id.isEmpty,
                   let secret = environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty {
                    let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
                    return S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: token)
                }
                reasons.append("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not both set")
            case .sharedFile(let explicitPath, let explicitProfile):
                let path = explicitPath ?? environment["AWS_SHARED_CREDENTIALS_FILE"]
                    ?? (environment["HOME"].map { "\($0)/.aws/credentials" } ?? "~/.aws/credentials")
                let profile = explicitProfile ?? environment["AWS_PROFILE"] ?? "default"
                guard FileManager.default.fileExists(atPath: path) else {
                    reasons.append("\(path) does not exist")
                    continue
                }
                let text: String
                do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
                    throw ObjectStoreError.credentials("cannot read \(path): \(error)")
                }
                let section = parseINI(text)[profile] ?? [:]
                if let id = section["aws_access_key_id"], let secret = section["aws_secret_access_key"] {
                    return S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: section["aws_session_token"])
                }
                reasons.append("\(path) has no aws_access_key_id and aws_secret_access_key in profile [\(profile)]")
            case .directory(let directory):
                func read(_ name: String) throws -> String? {
                    let path = directory + "/" + name
                    guard FileManager.default.fileExists(atPath: path) else { return nil }
                    do {
                        return try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
                    } catch {
                        throw ObjectStoreError.credentials("cannot read \(path): \(error)")
                    }
                }
                if let id = try read("access-key-id"), let secret = try read("secret-access-key") {
                    return S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: try read("session-token"))
                }
                reasons.append("\(directory) lacks access-key-id or secret-access-key")
            }
        }
        throw ObjectStoreError.credentials(reasons.isEmpty ? "no credential source configured" : reasons.joined(separator: "; "))
    }

    /// `[section]` → key → value; `#` and `;` start comments.
    static func parseINI(_ text: String) -> [String: [String: String]] {
        var result: [String: [String: String]] = [:]
        var section = ""
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                section = String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
                if section.hasPrefix("profile ") { section = String(section.dropFirst(8)).trimmingCharacters(in: .whitespaces) }
                continue
            }
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            result[section, default: [:]][key] = value
        }
        return result
    }
}
