import Foundation
import HTTPClient
import Support

/// Where a Floe executable keeps its data, as one URL (the `--storage` flag of every executable):
///
/// - `file:///var/lib/floe`: a ``LocalDirectoryObjectStore`` (created if missing).
/// - `memory://name`: a ``MemoryObjectStore`` (tests; gone when the process exits).
/// - `s3://bucket/prefix?endpoint=...&region=...&path_style=true`: an ``S3ObjectStore`` wrapped
///   in a ``RetryingObjectStore``. Query parameters (all optional):
///   `endpoint` (`http(s)://host[:port]`, default AWS for the region), `region` (default
///   `us-east-1`), `path_style` (`true`/`false`, default false), `anonymous` (`true`: unsigned
///   requests, no credentials; exclusive with the credential parameters), `credentials_dir` (a mounted
///   Secret with `access-key-id`, `secret-access-key`, optional `session-token`; when set it is
///   the only source), `credentials_file` and `profile` (shared credentials file), `retries`
///   (attempts in total, default 5), `timeout` and `connect_timeout` (seconds per attempt, defaults 10 and 3),
///   `max_connections` (requests in flight, default 64), `ca_file`, `ca_path` (TLS trust),
///   `check_conditional_writes` (`true`/`false`, default true).
///
/// Without `credentials_dir`, credentials come from the environment (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), then the shared credentials file. Secrets never
/// appear in the URL.
public struct StorageURL: Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        case file(path: String)
        case memory(name: String)
        case s3(S3Configuration, retries: Int)
    }

    public let text: String
    public let kind: Kind

    static let s3Parameters: Set<String> = [
        "endpoint", "region", "path_style", "anonymous", "credentials_dir", "credentials_file", "profile", "retries", "timeout",
        "connect_timeout", "max_connections", "ca_file", "ca_path", "check_conditional_writes",
    ]

    public var description: String { text }

    public init(_ text: String) throws {
        self.text = text
        func invalid(_ reason: String) -> ObjectStoreError { .invalidStorageURL(url: text, reason: reason) }
        guard let schemeEnd = text.range(of: "://") else {
            throw invalid("expected file:///path, s3://bucket/prefix?... or memory://name")
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        let rest = String(text[schemeEnd.upperBound...])
        let (body, queryText) = rest.firstIndex(of: "?").map { (String(rest[..<$0]), String(rest[rest.index(after: $0)...])) } ?? (rest, "")
        var parameters: [String: String] = [:]
        if !queryText.isEmpty {
            for pair in queryText.split(separator: "&", omittingEmptySubsequences: true) {
                let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard let name = parts[0].removingPercentEncoding, let value = (parts.count > 1 ? parts[1] : "").removingPercentEncoding else {
                    throw invalid("parameter '\(pair)' has invalid percent-encoding")
                }
                if parameters[name] != nil { throw invalid("parameter '\(name)' is given twice") }
                parameters[name] = value
            }
        }
        switch scheme {
        case "file":
            if !parameters.isEmpty { throw invalid("file URLs take no parameters (got \(parameters.keys.sorted().joined(separator: ", ")))") }
            var path = body
            if path.hasPrefix("localhost/") { path.removeFirst("localhost".count) }
            guard path.hasPrefix("/") else { throw invalid("the path must be absolute: file:///var/lib/floe") }
            guard let decoded = path.removingPercentEncoding else { throw invalid("the path has invalid percent-encoding") }
            kind = .file(path: decoded)
        case "memory":
            if !parameters.isEmpty { throw invalid("memory URLs take no parameters") }
            kind = .memory(name: body.isEmpty ? "memory" : body)
        case "s3":
            let unknown = Set(parameters.keys).subtracting(StorageURL.s3Parameters)
            if !unknown.isEmpty {
                throw invalid("unknown parameter(s) \(unknown.sorted().joined(separator: ", ")); known: \(StorageURL.s3Parameters.sorted().joined(separator: ", "))")
            }
            let slash = body.firstIndex(of: "/")
            let bucket = String(slash.map { body[..<$0] } ?? Substring(body))
            guard !bucket.isEmpty else { throw invalid("no bucket: s3://bucket/prefix") }
            let prefix = slash.map { String(body[body.index(after: $0)...]) } ?? ""
            func bool(_ name: String, _ fallback: Bool) throws -> Bool {
                guard let value = parameters[name] else { return fallback }
                switch value.lowercased() {
                case "true", "1", "yes": return true
                case "false", "0", "no": return false
                default: throw invalid("\(name) must be true or false, got '\(value)'")
                }
            }
            func positive(_ name: String, _ fallback: Double) throws -> Double {
                guard let value = parameters[name] else { return fallback }
                guard let number = Double(value), number > 0 else { throw invalid("\(name) must be a positive number, got '\(value)'") }
                return number
            }
            if let endpoint = parameters["endpoint"], !(endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://")) {
                throw invalid("endpoint must start with http:// or https://, got '\(endpoint)'")
            }
            var sources: [S3CredentialSource]
            if try bool("anonymous", false) {
                for other in ["credentials_dir", "credentials_file", "profile"] where parameters[other] != nil {
                    throw invalid("anonymous=true excludes \(other)")
                }
                sources = [.anonymous]
            } else if let directory = parameters["credentials_dir"] {
                sources = [.directory(directory)]
            } else {
                sources = [.environment, .sharedFile(path: parameters["credentials_file"], profile: parameters["profile"])]
            }
            var http = HTTPClientConfiguration()
            http.requestTimeout = .milliseconds(Int64(try positive("timeout", 10) * 1000))
            http.connectTimeout = .milliseconds(Int64(try positive("connect_timeout", 3) * 1000))
            let connections = Int(try positive("max_connections", 64))
            http.maxConcurrentRequests = connections
            http.maxCachedConnections = connections
            http.tls = TLSOptions(caFile: parameters["ca_file"], caPath: parameters["ca_path"])
            let retries = Int(try positive("retries", 5))
            let configuration = S3Configuration(
                bucket: bucket, prefix: prefix, endpoint: parameters["endpoint"], region: parameters["region"] ?? "us-east-1",
                pathStyle: try bool("path_style", false), credentials: sources,
                checkConditionalWrites: try bool("check_conditional_writes", true), http: http)
            kind = .s3(configuration, retries: retries)
        default:
            throw invalid("unknown scheme '\(scheme)'; expected file, s3 or memory")
        }
    }

    /// Opens the store the URL names: S3 behind retries, and everything instrumented when a
    /// metrics registry is given.
    public func open(clock: any FloeClock = RealClock(), logger: Logger = .discarding, metrics: MetricsRegistry? = nil,
                     environment: [String: String] = ProcessInfo.processInfo.environment) throws -> any ObjectStore {
        var store: any ObjectStore
        switch kind {
        case .file(let path): store = try LocalDirectoryObjectStore(root: path)
        case .memory(let name): store = MemoryObjectStore(name: name)
        case .s3(let configuration, let retries):
            // A CA bundle that is missing would only show as TLS failures on every request.
            if let caFile = configuration.http.tls.caFile, !FileManager.default.isReadableFile(atPath: caFile) {
                throw ObjectStoreError.invalidStorageURL(url: text, reason: "ca_file \(caFile) does not exist or is not readable")
            }
            let s3 = try S3ObjectStore(configuration: configuration, clock: clock, environment: environment)
            store = RetryingObjectStore(s3, policy: RetryPolicy(maxAttempts: retries), clock: clock, logger: logger, metrics: metrics)
        }
        if let metrics { store = InstrumentedObjectStore(store, metrics: metrics, clock: clock) }
        return store
    }
}
