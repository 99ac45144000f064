import Foundation
import HTTPClient
import Support
import Synchronization
import YAML

/// How the client authenticates, besides TLS client certificates (which live in `tls`).
public enum KubeCredentials: Sendable, Equatable {
    case none
    /// A bearer token given inline (kubeconfig `token`).
    case token(String)
    /// A bearer token read from a file and re-read when it may have rotated (the in-cluster
    /// service-account token, kubeconfig `tokenFile`).
    case tokenFile(String)
}

/// Where and how to reach an API server: its URL, TLS settings and credentials, and the
/// namespace of the selected context. Built from a kubeconfig file, from the in-cluster
/// service-account files, or from a bare URL (`--master`, tests).
///
/// Invariants: TLS verification is on unless the kubeconfig says `insecure-skip-tls-verify:
/// true`; in-cluster configuration without the CA file is an error, never a silent skip.
public struct KubeClientConfig: Sendable, Equatable {
    /// `https://host:port` (no trailing slash).
    public var server: String
    public var tls: TLSOptions
    public var credentials: KubeCredentials
    /// The context's namespace (kubeconfig) or the pod's namespace (in-cluster).
    public var namespace: String?

    public init(server: String, tls: TLSOptions = TLSOptions(), credentials: KubeCredentials = .none, namespace: String? = nil) {
        var server = server
        while server.hasSuffix("/") { server.removeLast() }
        self.server = server
        self.tls = tls
        self.credentials = credentials
        self.namespace = namespace
    }

    public static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// The in-cluster configuration: `KUBERNETES_SERVICE_HOST`/`_PORT` from `environment`, the
    /// token (re-read as it rotates), `ca.crt` (required) and `namespace` from `directory`.
    public static func inCluster(
        environment: [String: String] = ProcessInfo.processInfo.environment, directory: String = serviceAccountDirectory
    ) throws(KubeAPIError) -> KubeClientConfig {
        let source = "in-cluster (\(directory))"
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty,
            let port = environment["KUBERNETES_SERVICE_PORT"], !port.isEmpty
        else {
            throw .configuration(source: source, detail: "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not running in a pod?)")
        }
        let caFile = directory + "/ca.crt"
        let tokenFile = directory + "/token"
        guard FileManager.default.isReadableFile(atPath: caFile) else {
            throw .configuration(source: source, detail: "the cluster CA \(caFile) is missing or unreadable; refusing to connect without verifying the server")
        }
        guard FileManager.default.isReadableFile(atPath: tokenFile) else {
            throw .configuration(source: source, detail: "the service-account token \(tokenFile) is missing or unreadable")
        }
        var namespace: String?
        if let data = FileManager.default.contents(atPath: directory + "/namespace") {
            namespace = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return KubeClientConfig(
            server: "https://\(hostPart):\(port)", tls: TLSOptions(caFile: caFile), credentials: .tokenFile(tokenFile),
            namespace: namespace)
    }

    /// Reads a kubeconfig file and selects `context` (default: its `current-context`).
    public static func kubeconfig(path: String, context: String? = nil) throws(KubeAPIError) -> KubeClientConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .configuration(source: path, detail: "cannot read the kubeconfig file")
        }
        let base = (path as NSString).deletingLastPathComponent
        return try kubeconfig(text: String(decoding: data, as: UTF8.self), source: path, baseDirectory: base, context: context)
    }

    /// Parses kubeconfig text; relative file paths are resolved against `baseDirectory`.
    public static func kubeconfig(text: String, source: String, baseDirectory: String, context wanted: String? = nil)
        throws(KubeAPIError) -> KubeClientConfig
    {
        let root: YAMLNode
        do {
            root = try YAMLNode.parse(text)
        } catch {
            throw .configuration(source: source, detail: "not valid YAML: \(error)")
        }
        func named(_ list: String, _ name: String, _ field: String) throws(KubeAPIError) -> YAMLNode {
            for entry in root[list]?.array ?? [] where entry["name"]?.string == name {
                guard let value = entry[field] else { throw .configuration(source: source, detail: "\(list) entry \(name) has no \(field)") }
                return value
            }
            throw .configuration(source: source, detail: "no \(list) entry named \(name)")
        }
        func file(_ p: String) -> String { p.hasPrefix("/") ? p : baseDirectory + "/" + p }
        func base64(_ text: String, _ field: String) throws(KubeAPIError) -> [UInt8] {
            let cleaned = text.filter { !$0.isWhitespace }
            guard let data = Data(base64Encoded: cleaned) else { throw .configuration(source: source, detail: "\(field) is not base64") }
            return Array(data)
        }
        guard let contextName = wanted ?? root["current-context"]?.string, !contextName.isEmpty else {
            throw .configuration(source: source, detail: "no context given and no current-context set")
        }
        let context = try named("contexts", contextName, "context")
        guard let clusterName = context["cluster"]?.string else {
            throw .configuration(source: source, detail: "context \(contextName) names no cluster")
        }
        let cluster = try named("clusters", clusterName, "cluster")
        guard let server = cluster["server"]?.string, !server.isEmpty else {
            throw .configuration(source: source, detail: "cluster \(clusterName) has no server")
        }
        var tls = TLSOptions()
        if let ca = cluster["certificate-authority"]?.string { tls.caFile = file(ca) }
        if let caData = cluster["certificate-authority-data"]?.string {
            tls.caPEM = try base64(caData, "clusters[\(clusterName)].certificate-authority-data")
        }
        tls.insecureSkipVerify = cluster["insecure-skip-tls-verify"]?.bool ?? false
        var credentials = KubeCredentials.none
        if let userName = context["user"]?.string, !userName.isEmpty {
            let user = try named("users", userName, "user")
            if let cert = user["client-certificate"]?.string { tls.clientCertificateFile = file(cert) }
            if let key = user["client-key"]?.string { tls.clientKeyFile = file(key) }
            if let cert = user["client-certificate-data"]?.string {
                tls.clientCertificatePEM = try base64(cert, "users[\(userName)].client-certificate-data")
            }
            if let key = user["client-key-data"]?.string { tls.clientKeyPEM = try base64(key, "users[\(userName)].client-key-data") }
            if (tls.clientCertificateFile != nil || tls.clientCertificatePEM != nil) != (tls.clientKeyFile != nil || tls.clientKeyPEM != nil) {
                throw .configuration(source: source, detail: "user \(userName) has a client certificate without a key or a key without a certificate")
            }
            if let token = user["token"]?.string, !token.isEmpty {
                credentials = .token(token)
            } else if let tokenFile = user["tokenFile"]?.string, !tokenFile.isEmpty {
                credentials = .tokenFile(file(tokenFile))
            }
            if user["exec"] != nil || user["auth-provider"] != nil {
                if credentials == .none && tls.clientCertificateFile == nil && tls.clientCertificatePEM == nil {
                    throw .configuration(source: source, detail: "user \(userName) uses exec or auth-provider credentials, which this client does not support")
                }
            }
        }
        let namespace = context["namespace"]?.string
        return KubeClientConfig(server: server, tls: tls, credentials: credentials, namespace: namespace)
    }
}

/// Supplies the bearer token, re-reading a token file at most every `refreshInterval` (the
/// kubelet rotates projected service-account tokens well before they expire) and on demand
/// after a 401.
final class TokenProvider: Sendable {
    private struct Cache {
        var token: String?
        var readAt: MonotonicInstant?
    }

    let credentials: KubeCredentials
    let clock: any FloeClock
    let refreshInterval: Duration
    private let cache = Mutex(Cache())

    init(credentials: KubeCredentials, clock: any FloeClock, refreshInterval: Duration = .seconds(60)) {
        self.credentials = credentials
        self.clock = clock
        self.refreshInterval = refreshInterval
    }

    /// The current token, or nil without token credentials.
    func token(forceReload: Bool = false) throws(KubeAPIError) -> String? {
        switch credentials {
        case .none: return nil
        case .token(let t): return t
        case .tokenFile(let path):
            let now = clock.now()
            let cached: String? = cache.withLock { c in
                guard !forceReload, let token = c.token, let readAt = c.readAt, now.duration(since: readAt) < refreshInterval else { return nil }
                return token
            }
            if let cached { return cached }
            guard let data = FileManager.default.contents(atPath: path) else {
                throw .configuration(source: path, detail: "cannot read the bearer token file")
            }
            let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty else { throw .configuration(source: path, detail: "the bearer token file is empty") }
            cache.withLock { $0 = Cache(token: token, readAt: now) }
            return token
        }
    }
}
