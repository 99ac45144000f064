import Bytes
import KafkaProtocol

/// Turns request frames into API calls and API results into response frames.
///
/// Rules, as Apache Kafka applies them:
/// - A frame whose header cannot be read (unknown API key, truncated) closes the connection.
/// - ApiVersions is answered here from the registered handlers' version ranges. A version newer
///   than the broker knows gets error 35 (UNSUPPORTED_VERSION) in a version-0 body listing the
///   supported ranges (KIP-511), so the client can retry with a version both sides know.
/// - A request for an API with no handler, or at a version outside its handler's range, gets a
///   response whose top-level error code is UNSUPPORTED_VERSION where the response schema has
///   one at that version; otherwise the connection is closed (as Kafka does for requests it
///   cannot parse).
/// - A body that cannot be decoded closes the connection.
/// - On a SASL listener, a request other than ApiVersions, SaslHandshake and SaslAuthenticate
///   before authentication (or after the session expired) closes the connection (`SaslGate`).
public struct KafkaRouter: RequestHandler {
    public let handlers: [ApiKey: any ApiHandler]
    let log: @Sendable (String, [String: String]) -> Void

    /// The ApiVersions versions this broker serves.
    public static let apiVersionsVersions: ClosedRange<Int16> = 0...4

    /// Answers a raw SASL token frame (after SaslHandshake v0; see `ConnectionSession.State.rawTokens`).
    let rawToken: (@Sendable (ServerRequest) async -> HandlerResult)?

    public init(handlers: [any ApiHandler], rawToken: (@Sendable (ServerRequest) async -> HandlerResult)? = nil,
                log: @escaping @Sendable (String, [String: String]) -> Void = { _, _ in }) {
        self.rawToken = rawToken
        var table: [ApiKey: any ApiHandler] = [:]
        for h in handlers {
            precondition(table[h.apiKey] == nil, "two handlers for \(h.apiKey)")
            precondition(h.apiKey.requestVersions.contains(h.versions.lowerBound) && h.apiKey.requestVersions.contains(h.versions.upperBound),
                         "\(h.apiKey) handler versions \(h.versions) exceed the schema's \(h.apiKey.requestVersions)")
            table[h.apiKey] = h
        }
        self.handlers = table
        self.log = log
    }

    /// The ranges advertised in ApiVersions responses, by API key.
    public var advertised: [ApiVersionsResponse.ApiVersion] {
        var list = handlers.values.map { ApiVersionsResponse.ApiVersion(apiKey: $0.apiKey.rawValue, minVersion: $0.versions.lowerBound, maxVersion: $0.versions.upperBound) }
        list.append(.init(apiKey: ApiKey.apiVersions.rawValue, minVersion: Self.apiVersionsVersions.lowerBound, maxVersion: Self.apiVersionsVersions.upperBound))
        return list.sorted { $0.apiKey < $1.apiKey }
    }

    public func handle(_ request: ServerRequest) async -> HandlerResult {
        let session = request.connection.session.snapshot  // one read of the session per request
        if session.rawTokens {
            // A SaslHandshake v0 client: this frame is a bare SASL token, not a request.
            guard let rawToken else { return .close }
            return await rawToken(request)
        }
        let decoded: DecodedRequest
        do {
            decoded = try RequestHeader.decodeRequest(request.bytes[...])
        } catch {
            log("closing connection: unreadable request header", ["peer": request.connection.peer, "error": "\(error)"])
            return .close
        }
        let context = RequestContext(connection: request.connection, header: decoded.header, apiKey: decoded.apiKey)
        if let refusal = SaslGate.refusal(decoded.apiKey, state: session, now: ContinuousClock.now) {
            log("closing connection: \(refusal)", ["peer": request.connection.peer, "api": decoded.apiKey.name])
            return .close
        }
        if decoded.apiKey == .apiVersions {
            return apiVersions(decoded, context: context)
        }
        guard let handler = handlers[decoded.apiKey], handler.versions.contains(decoded.apiVersion) else {
            return unsupported(context)
        }
        let body: AnyRequest
        do {
            body = try decoded.decodeBody()
        } catch {
            log("closing connection: malformed request body", [
                "peer": request.connection.peer, "api": decoded.apiKey.name, "version": "\(decoded.apiVersion)", "error": "\(error)"])
            return .close
        }
        switch await handler.handle(body, context: context) {
        case let .response(response):
            return encode(response, context: context)
        case .noResponse:
            return .noResponse
        case .close:
            return .close
        case let .deferred(complete):
            return .deferred { await self.encodeLater(complete, context: context) }
        case let .longPoll(complete):
            return .longPoll { await self.encodeLater(complete, context: context) }
        }
    }

    private func encodeLater(_ complete: @Sendable () async -> AnyResponse?, context: RequestContext) async -> [UInt8]? {
        guard let response = await complete() else { return nil }
        switch encode(response, context: context) {
        case let .respond(bytes): return bytes
        default: return nil
        }
    }

    /// Response header and body, without the size prefix (the server adds it).
    func encode(_ response: AnyResponse, context: RequestContext) -> HandlerResult {
        var writer = ByteWriter(capacity: 256)
        do {
            try ResponseHeader(correlationId: context.header.correlationId)
                .encode(to: &writer, version: context.apiKey.responseHeaderVersion(apiVersion: context.apiVersion))
            try response.encode(to: &writer, version: context.apiVersion)
        } catch {
            log("closing connection: response cannot be encoded", [
                "api": context.apiKey.name, "version": "\(context.apiVersion)", "error": "\(error)"])
            return .close
        }
        return .respond(writer.take())
    }

    func apiVersions(_ decoded: DecodedRequest, context: RequestContext) -> HandlerResult {
        guard Self.apiVersionsVersions.contains(decoded.apiVersion) else {
            // KIP-511: answer in version 0 so any client can read it.
            var writer = ByteWriter()
            ResponseHeader(correlationId: decoded.correlationId).encodeV0(to: &writer)
            let body = ApiVersionsResponse(errorCode: KafkaErrorCode.unsupportedVersion.rawValue, apiKeys: advertised)
            do {
                try body.encode(to: &writer, version: 0)
            } catch {
                return .close
            }
            return .respond(writer.take())
        }
        let request: ApiVersionsRequest
        do {
            guard case let .apiVersions(r) = try decoded.decodeBody() else { return .close }
            request = r
        } catch {
            log("closing connection: malformed ApiVersions request", ["peer": context.connection.peer, "error": "\(error)"])
            return .close
        }
        var response = ApiVersionsResponse(apiKeys: advertised)
        if decoded.apiVersion >= 3 && !(Self.isValidSoftwareField(request.clientSoftwareName) && Self.isValidSoftwareField(request.clientSoftwareVersion)) {
            response = ApiVersionsResponse(errorCode: KafkaErrorCode.invalidRequest.rawValue)
        }
        // No tagged fields (features) are sent: librdkafka 2.0.2 misreads a non-empty tagged
        // section in the v3 response.
        return encode(.apiVersions(response), context: context)
    }

    /// Kafka's rule for ClientSoftwareName/Version: `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
    static func isValidSoftwareField(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard let first = bytes.first, let last = bytes.last else { return false }
        func alnum(_ c: UInt8) -> Bool { (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) }
        return alnum(first) && alnum(last) && bytes.allSatisfy { alnum($0) || $0 == 45 || $0 == 46 }
    }

    func unsupported(_ context: RequestContext) -> HandlerResult {
        let code = KafkaErrorCode.unsupportedVersion.rawValue
        guard context.apiKey.responseVersions.contains(context.apiVersion),
              let (response, versions) = AnyResponse.topLevelError(apiKey: context.apiKey, errorCode: code),
              versions.contains(context.apiVersion)
        else {
            log("closing connection: unsupported request", [
                "peer": context.connection.peer, "api": context.apiKey.name, "version": "\(context.apiVersion)"])
            return .close
        }
        return encode(response, context: context)
    }
}

extension ResponseHeader {
    /// Response header v0: just the correlation id.
    func encodeV0(to writer: inout ByteWriter) {
        writer.writeInt32(correlationId)
    }
}
