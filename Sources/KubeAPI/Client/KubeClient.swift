import Foundation
import HTTPClient
import Support

/// `propagationPolicy` of a delete.
public enum DeletePropagation: String, Sendable {
    case background = "Background"
    case foreground = "Foreground"
    case orphan = "Orphan"
}

/// A REST client for the Kubernetes API over ``HTTPClient`` (libcurl), for the kinds of this
/// module (and any other ``KubeObject``, such as the operator's FloeCluster).
///
/// - Every request waits for the client-side ``RateLimiter`` (token bucket, QPS/burst).
/// - Bodies are encoded with ``KubeJSON``: nil fields are omitted, never sent as `null`.
/// - Errors are ``KubeAPIError`` values naming the verb, resource, namespace/name and HTTP
///   status; a 409 is ``KubeAPIError/conflict(verb:resource:namespace:name:reason:message:)``,
///   a 410 ``KubeAPIError/expired(verb:resource:namespace:message:)``. Cancellation surfaces
///   as `CancellationError`.
/// - Bearer tokens from a file are re-read every minute and once more after a 401.
public final class KubeClient: Sendable {
    public let config: KubeClientConfig
    public let userAgent: String
    private let http: HTTPClient
    private let limiter: RateLimiter
    private let tokens: TokenProvider
    private let requestTimeout: Duration

    public init(config: KubeClientConfig, userAgent: String, clock: any FloeClock = RealClock(), qps: Double = 20,
                burst: Int = 40, requestTimeout: Duration = .seconds(30)) throws {
        self.config = config
        self.userAgent = userAgent
        http = try HTTPClient(
            configuration: HTTPClientConfiguration(
                maxConcurrentRequests: 32, maxQueuedRequests: 1024, connectTimeout: .seconds(10), requestTimeout: requestTimeout,
                maxResponseBodyBytes: 256 << 20, tls: config.tls, userAgent: userAgent))
        limiter = RateLimiter(qps: qps, burst: burst, clock: clock)
        tokens = TokenProvider(credentials: config.credentials, clock: clock)
        self.requestTimeout = requestTimeout
    }

    public func shutdown() { http.shutdown() }

    // MARK: paths

    /// `statefulsets.apps`, `configmaps`, `floeclusters.floe.dev` (as Kubernetes names them in errors).
    public static func resourceName<T: KubeObject>(_ type: T.Type) -> String {
        T.group.isEmpty ? T.resource : "\(T.resource).\(T.group)"
    }

    public func path<T: KubeObject>(_ type: T.Type, namespace: String?, name: String? = nil, subresource: String? = nil) -> String {
        var p = T.group.isEmpty ? "/api/\(T.apiVersion)" : "/apis/\(T.apiVersion)"
        if let namespace { p += "/namespaces/\(Self.escapePath(namespace))" }
        p += "/\(T.resource)"
        if let name { p += "/\(Self.escapePath(name))" }
        if let subresource { p += "/\(subresource)" }
        return p
    }

    static func escapePath(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/?#"))) ?? s
    }

    static func query(_ items: [(String, String?)]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let parts = items.compactMap { key, value -> String? in
            guard let value else { return nil }
            return "\(key)=\(value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value)"
        }
        return parts.isEmpty ? "" : "?" + parts.joined(separator: "&")
    }

    // MARK: verbs

    public func get<T: KubeObject>(_ type: T.Type, namespace: String?, name: String) async throws -> T {
        let r = try await send("get", T.self, namespace: namespace, name: name, method: "GET", path: path(T.self, namespace: namespace, name: name))
        return try KubeJSON.decode(T.self, from: Data(r.body))
    }

    /// One page of a list. `limit` bounds the page; pass the previous page's
    /// `metadata.continueToken` as `continueToken` for the next.
    public func listPage<T: KubeObject>(
        _ type: T.Type, namespace: String?, labelSelector: String? = nil, limit: Int? = nil, continueToken: String? = nil
    ) async throws -> KubeList<T> {
        let q = Self.query([("labelSelector", labelSelector), ("limit", limit.map(String.init)), ("continue", continueToken)])
        let r = try await send("list", T.self, namespace: namespace, name: nil, method: "GET", path: path(T.self, namespace: namespace) + q)
        return try KubeJSON.decode(KubeList<T>.self, from: Data(r.body))
    }

    /// Every item, fetched page by page (`limit` items each). The list's resourceVersion is the
    /// first page's: the continued pages are served from that snapshot. An expired continue
    /// token throws ``KubeAPIError/expired(verb:resource:namespace:message:)``: list again.
    public func list<T: KubeObject>(_ type: T.Type, namespace: String?, labelSelector: String? = nil, pageSize: Int = 500)
        async throws -> KubeList<T>
    {
        var page = try await listPage(T.self, namespace: namespace, labelSelector: labelSelector, limit: pageSize)
        var all = page
        while let token = page.metadata.continueToken, !token.isEmpty {
            page = try await listPage(T.self, namespace: namespace, labelSelector: labelSelector, limit: pageSize, continueToken: token)
            all.items += page.items
        }
        all.metadata.continueToken = nil
        all.metadata.remainingItemCount = nil
        return all
    }

    /// A watch from `resourceVersion` with bookmarks, ending after `timeoutSeconds` (server side)
    /// or when the connection drops. Iterate the result; it yields decoded events (including
    /// `.error` events such as 410 Expired, which the caller must answer with a relist).
    public func watch<T: KubeObject>(
        _ type: T.Type, namespace: String?, labelSelector: String? = nil, resourceVersion: String?, timeoutSeconds: Int = 300,
        maxLineLength: Int = 16 << 20
    ) async throws -> KubeWatch<T> {
        let q = Self.query([
            ("watch", "true"), ("allowWatchBookmarks", "true"), ("labelSelector", labelSelector), ("resourceVersion", resourceVersion),
            ("timeoutSeconds", String(timeoutSeconds)),
        ])
        try await limiter.wait()
        let request = try makeRequest(method: "GET", path: path(T.self, namespace: namespace) + q, body: [], contentType: nil,
                                      timeout: .seconds(timeoutSeconds + 30))
        return KubeWatch(
            parts: http.stream(request), decoder: WatchEventDecoder(maxLineLength: maxLineLength), resource: Self.resourceName(T.self),
            namespace: namespace)
    }

    /// Creates `object` (POST); 409 AlreadyExists is a conflict.
    public func create<T: KubeObject>(_ object: T) async throws -> T {
        let ns = object.metadata.namespace
        let r = try await send("create", T.self, namespace: ns, name: object.metadata.name, method: "POST", path: path(T.self, namespace: ns),
                               body: Array(try KubeJSON.encode(object)), contentType: "application/json")
        return try KubeJSON.decode(T.self, from: Data(r.body))
    }

    /// Replaces `object` (PUT) with optimistic concurrency: its `metadata.resourceVersion` must
    /// be current, else ``KubeAPIError/conflict(verb:resource:namespace:name:reason:message:)``.
    public func update<T: KubeObject>(_ object: T, subresource: String? = nil) async throws -> T {
        let ns = object.metadata.namespace
        let name = object.metadata.name ?? ""
        let verb = subresource.map { "update \($0)" } ?? "update"
        let r = try await send(verb, T.self, namespace: ns, name: name, method: "PUT",
                               path: path(T.self, namespace: ns, name: name, subresource: subresource),
                               body: Array(try KubeJSON.encode(object)), contentType: "application/json")
        return try KubeJSON.decode(T.self, from: Data(r.body))
    }

    /// Writes `object.status` through the status subresource (PUT, optimistic concurrency).
    public func updateStatus<T: KubeObject>(_ object: T) async throws -> T { try await update(object, subresource: "status") }

    /// An RFC 7386 JSON merge patch (`null` in `patch` deletes a field: build it explicitly).
    public func mergePatch<T: KubeObject>(_ type: T.Type, namespace: String?, name: String, patch: JSONValue, subresource: String? = nil)
        async throws -> T
    {
        let r = try await send(subresource.map { "patch \($0)" } ?? "patch", T.self, namespace: namespace, name: name, method: "PATCH",
                               path: path(T.self, namespace: namespace, name: name, subresource: subresource),
                               body: Array(try KubeJSON.encode(patch)), contentType: "application/merge-patch+json")
        return try KubeJSON.decode(T.self, from: Data(r.body))
    }

    /// Server-side apply: sends the fields this manager wants (JSON is valid YAML, so the body
    /// is JSON under `application/apply-patch+yaml`). Fields the manager applied before and
    /// omits now are removed. With `force`, fields owned by other managers are taken over;
    /// without it, such a difference is a conflict.
    public func apply<T: KubeObject>(_ object: T, fieldManager: String, force: Bool = true, subresource: String? = nil) async throws -> T {
        let ns = object.metadata.namespace
        let name = object.metadata.name ?? ""
        let q = Self.query([("fieldManager", fieldManager), ("force", force ? "true" : nil)])
        let r = try await send(subresource.map { "apply \($0)" } ?? "apply", T.self, namespace: ns, name: name, method: "PATCH",
                               path: path(T.self, namespace: ns, name: name, subresource: subresource) + q,
                               body: Array(try KubeJSON.encode(object)), contentType: "application/apply-patch+yaml")
        return try KubeJSON.decode(T.self, from: Data(r.body))
    }

    /// Reads the scale subresource.
    public func getScale<T: KubeObject>(_ type: T.Type, namespace: String, name: String) async throws -> Scale {
        let r = try await send("get scale", T.self, namespace: namespace, name: name, method: "GET",
                               path: path(T.self, namespace: namespace, name: name, subresource: "scale"))
        return try KubeJSON.decode(Scale.self, from: Data(r.body))
    }

    /// Writes the scale subresource (PUT; `scale.metadata.resourceVersion` is a precondition when set).
    public func updateScale<T: KubeObject>(_ type: T.Type, _ scale: Scale) async throws -> Scale {
        let ns = scale.metadata.namespace ?? ""
        let name = scale.metadata.name ?? ""
        let r = try await send("update scale", T.self, namespace: ns, name: name, method: "PUT",
                               path: path(T.self, namespace: ns, name: name, subresource: "scale"),
                               body: Array(try KubeJSON.encode(scale)), contentType: "application/json")
        return try KubeJSON.decode(Scale.self, from: Data(r.body))
    }

    /// Deletes an object; with `uid`, only that incarnation (precondition). A 404 is an error
    /// (``KubeAPIError/isNotFound``): callers that do not care check for it.
    public func delete<T: KubeObject>(_ type: T.Type, namespace: String?, name: String, uid: String? = nil,
                                      propagation: DeletePropagation = .background) async throws {
        var options: JSONValue = ["apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": .string(propagation.rawValue)]
        if let uid, case .object(var o) = options {
            o["preconditions"] = ["uid": .string(uid)]
            options = .object(o)
        }
        _ = try await send("delete", T.self, namespace: namespace, name: name, method: "DELETE",
                           path: path(T.self, namespace: namespace, name: name), body: Array(try KubeJSON.encode(options)),
                           contentType: "application/json")
    }

    // MARK: transport

    private func makeRequest(method: String, path: String, body: [UInt8], contentType: String?, timeout: Duration?, reloadToken: Bool = false)
        throws -> HTTPRequest
    {
        var headers = HTTPHeaders()
        headers.add("Accept", "application/json")
        if let contentType { headers.add("Content-Type", contentType) }
        if let token = try tokens.token(forceReload: reloadToken) { headers.add("Authorization", "Bearer \(token)") }
        return HTTPRequest(method: method, url: config.server + path, headers: headers, body: body, timeout: timeout)
    }

    private func send<T: KubeObject>(
        _ verb: String, _ type: T.Type, namespace: String?, name: String?, method: String, path: String, body: [UInt8] = [],
        contentType: String? = nil
    ) async throws -> HTTPResponse {
        let resource = Self.resourceName(T.self)
        var reloaded = false
        while true {
            try await limiter.wait()
            let request = try makeRequest(method: method, path: path, body: body, contentType: contentType, timeout: nil, reloadToken: reloaded)
            let response: HTTPResponse
            do {
                response = try await http.execute(request)
            } catch let error as HTTPClientError {
                throw KubeAPIError.transport(verb: verb, resource: resource, namespace: namespace, name: name, detail: error.description)
            }
            if response.status == 401, !reloaded, case .tokenFile = config.credentials {
                reloaded = true  // the token may have rotated: read it again and retry once
                continue
            }
            if (200..<300).contains(response.status) { return response }
            throw Self.error(verb: verb, resource: resource, namespace: namespace, name: name, status: response.status, body: response.body)
        }
    }

    static func error(verb: String, resource: String, namespace: String?, name: String?, status: Int, body: [UInt8]) -> KubeAPIError {
        let decoded: Status? = {
            do { return try KubeJSON.decode(Status.self, from: Data(body)) } catch { return nil }  // a non-Status body: use the text
        }()
        let reason = decoded?.reason ?? "HTTP\(status)"
        let message = decoded?.message ?? String(decoding: body.prefix(512), as: UTF8.self)
        switch status {
        case 409: return .conflict(verb: verb, resource: resource, namespace: namespace, name: name, reason: reason, message: message)
        case 410: return .expired(verb: verb, resource: resource, namespace: namespace, message: message)
        default: return .api(verb: verb, resource: resource, namespace: namespace, name: name, status: status, reason: reason, message: message)
        }
    }
}

/// A watch stream as an async sequence of decoded events; no task of its own: iterating pulls
/// bytes from the HTTP stream through a ``WatchEventDecoder``. A non-200 answer throws a
/// ``KubeAPIError``; the stream ends when the server ends it (timeout) or throws when the
/// connection breaks. A final line without newline is still decoded at the end.
public struct KubeWatch<Object: Codable & Sendable & Equatable>: AsyncSequence, Sendable {
    public typealias Element = WatchEvent<Object>
    let parts: AsyncThrowingStream<HTTPStreamPart, any Error>
    let decoder: WatchEventDecoder<Object>
    let resource: String
    let namespace: String?

    public struct AsyncIterator: AsyncIteratorProtocol {
        var parts: AsyncThrowingStream<HTTPStreamPart, any Error>.AsyncIterator
        var decoder: WatchEventDecoder<Object>
        let resource: String
        let namespace: String?
        var status = 0
        var errorBody: [UInt8] = []
        var ended = false

        public mutating func next() async throws -> WatchEvent<Object>? {
            while true {
                if status == 200, let event = try decoder.next() { return event }
                if ended { return status == 200 ? try decoder.finish() : nil }
                let part: HTTPStreamPart?
                do {
                    part = try await parts.next()
                } catch let error as HTTPClientError {
                    throw KubeAPIError.transport(verb: "watch", resource: resource, namespace: namespace, name: nil, detail: error.description)
                }
                switch part {
                case .head(let s, _)?: status = s
                case .body(let bytes)?:
                    if status == 200 { decoder.feed(bytes) } else if errorBody.count < 65536 { errorBody += bytes }
                case nil:
                    ended = true
                    if status != 200 {
                        throw KubeClient.error(verb: "watch", resource: resource, namespace: namespace, name: nil, status: status, body: errorBody)
                    }
                    if status == 0 {
                        throw KubeAPIError.transport(verb: "watch", resource: resource, namespace: namespace, name: nil, detail: "stream ended without a response")
                    }
                }
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(parts: parts.makeAsyncIterator(), decoder: decoder, resource: resource, namespace: namespace)
    }
}
