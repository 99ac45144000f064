/// An ordered list of header fields; lookups by name ignore ASCII case. Several fields may
/// share a name (they are kept in order).
public struct HTTPHeaders: Sendable, Sequence, ExpressibleByDictionaryLiteral, CustomStringConvertible {
    public private(set) var fields: [(name: String, value: String)] = []

    public init() {}
    public init(_ fields: [(String, String)]) { self.fields = fields.map { (name: $0.0, value: $0.1) } }
    public init(dictionaryLiteral elements: (String, String)...) { self.init(elements) }

    public mutating func add(_ name: String, _ value: String) { fields.append((name, value)) }

    /// Replaces every field named `name` (any case) by one with `value`, or removes them if nil.
    public mutating func set(_ name: String, _ value: String?) {
        fields.removeAll { $0.name.lowercased() == name.lowercased() }
        if let value { fields.append((name, value)) }
    }

    /// The first value of the field named `name` (any case).
    public subscript(name: String) -> String? {
        let lower = name.lowercased()
        return fields.first { $0.name.lowercased() == lower }?.value
    }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }

    public var description: String { fields.map { "\($0.name): \($0.value)" }.joined(separator: ", ") }
}

/// One HTTP request: method, absolute URL (already percent-encoded), headers and a body held in
/// memory. `timeout` overrides the client's default total time for this request.
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: HTTPHeaders
    public var body: [UInt8]
    public var timeout: Duration?

    public init(method: String, url: String, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = [],
                timeout: Duration? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
    }
}

/// A complete response. Any status code is a response (the caller decides what 4xx/5xx mean);
/// only failures to get a response are ``HTTPClientError``s.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The body decoded as UTF-8 (invalid sequences replaced), for error messages and XML.
    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// One part of a streamed response (``HTTPClient/stream(_:bufferedChunks:)``): the head comes
/// first and exactly once, then zero or more body chunks in order.
public enum HTTPStreamPart: Sendable {
    case head(status: Int, headers: HTTPHeaders)
    case body([UInt8])
}

/// TLS settings. Peer verification is on unless ``insecureSkipVerify`` is set explicitly (for
/// test servers with self-signed certificates only; it is never turned off implicitly).
public struct TLSOptions: Sendable, Hashable {
    /// A PEM bundle of CA certificates to trust instead of the system's.
    public var caFile: String?
    /// A directory of hashed CA certificates (OpenSSL `c_rehash` layout).
    public var caPath: String?
    /// PEM CA certificates given in memory (kubeconfig `certificate-authority-data`).
    public var caPEM: [UInt8]?
    /// Client certificate and key for mutual TLS, as files or in-memory PEM (one of each kind).
    public var clientCertificateFile: String?
    public var clientKeyFile: String?
    public var clientCertificatePEM: [UInt8]?
    public var clientKeyPEM: [UInt8]?
    public var insecureSkipVerify: Bool

    public init(caFile: String? = nil, caPath: String? = nil, caPEM: [UInt8]? = nil, clientCertificateFile: String? = nil,
                clientKeyFile: String? = nil, clientCertificatePEM: [UInt8]? = nil, clientKeyPEM: [UInt8]? = nil,
                insecureSkipVerify: Bool = false) {
        self.caFile = caFile
        self.caPath = caPath
        self.caPEM = caPEM
        self.clientCertificateFile = clientCertificateFile
        self.clientKeyFile = clientKeyFile
        self.clientCertificatePEM = clientCertificatePEM
        self.clientKeyPEM = clientKeyPEM
        self.insecureSkipVerify = insecureSkipVerify
    }
}

/// Limits and defaults of an ``HTTPClient``.
public struct HTTPClientConfiguration: Sendable {
    /// Transfers in flight at once; further requests wait in a queue.
    public var maxConcurrentRequests: Int
    /// Requests allowed to wait; beyond it `execute` throws ``HTTPClientError/queueFull(method:url:limit:)``.
    public var maxQueuedRequests: Int
    /// Idle connections kept for reuse (libcurl's connection cache of the multi handle).
    public var maxCachedConnections: Int
    public var connectTimeout: Duration
    /// Total time allowed for one request, connection included, unless the request sets its own.
    public var requestTimeout: Duration
    /// A response body larger than this fails with ``HTTPClientError/responseTooLarge(method:url:limit:)``.
    public var maxResponseBodyBytes: Int
    public var tls: TLSOptions
    public var userAgent: String

    public init(maxConcurrentRequests: Int = 64, maxQueuedRequests: Int = 4096, maxCachedConnections: Int = 64,
                connectTimeout: Duration = .seconds(5), requestTimeout: Duration = .seconds(60),
                maxResponseBodyBytes: Int = 1 << 30, tls: TLSOptions = TLSOptions(), userAgent: String = "floe") {
        self.maxConcurrentRequests = maxConcurrentRequests
        self.maxQueuedRequests = maxQueuedRequests
        self.maxCachedConnections = maxCachedConnections
        self.connectTimeout = connectTimeout
        self.requestTimeout = requestTimeout
        self.maxResponseBodyBytes = maxResponseBodyBytes
        self.tls = tls
        self.userAgent = userAgent
    }
}

/// The errors of the HTTPClient module: every failure to obtain a response. Each names the
/// method and URL.
public enum HTTPClientError: Error, CustomStringConvertible {
    /// No complete response within the time allowed.
    case timeout(method: String, url: String, after: Duration)
    /// Connection refused, reset, DNS or TLS failure and the like; `code` is libcurl's.
    case transport(method: String, url: String, code: Int, message: String)
    /// The client's waiting queue is full.
    case queueFull(method: String, url: String, limit: Int)
    /// The client was shut down before the request completed.
    case shutDown(method: String, url: String)
    /// The response body exceeded the configured limit.
    case responseTooLarge(method: String, url: String, limit: Int)
    /// A streamed response's consumer fell more than `limit` chunks behind; the transfer was aborted.
    case streamBufferFull(method: String, url: String, limit: Int)
    /// The request could not be set up (malformed URL, unusable option).
    case invalidRequest(method: String, url: String, reason: String)
    /// libcurl could not be initialised.
    case initialization(reason: String)

    public var description: String {
        switch self {
        case .timeout(let m, let u, let after): "HTTP \(m) \(u): timed out after \(after)"
        case .transport(let m, let u, let code, let message): "HTTP \(m) \(u): transport error (curl \(code)): \(message)"
        case .queueFull(let m, let u, let limit): "HTTP \(m) \(u): request queue full (\(limit) waiting)"
        case .shutDown(let m, let u): "HTTP \(m) \(u): client shut down"
        case .responseTooLarge(let m, let u, let limit): "HTTP \(m) \(u): response body larger than \(limit) bytes"
        case .streamBufferFull(let m, let u, let limit): "HTTP \(m) \(u): stream consumer more than \(limit) chunks behind; aborted"
        case .invalidRequest(let m, let u, let reason): "HTTP \(m) \(u): invalid request: \(reason)"
        case .initialization(let reason): "HTTP client: cannot initialise libcurl: \(reason)"
        }
    }
}
