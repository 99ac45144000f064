import Bytes

// Request and response header versions, and helpers that put a header and a body together.
//
// Rules (as Apache Kafka applies them):
// - Request header v2 (flexible: tagged fields; ClientId still an int16-length string) when the
//   request version is flexible, else v1 — except ControlledShutdown v0, which uses v0 (no
//   ClientId).
// - Response header v1 (flexible: tagged fields) when the response version is flexible, else v0
//   — except ApiVersions responses, which always use v0 so that a client that does not yet know
//   the broker's versions can read them (KIP-511).

extension ApiKey {
    /// The request header version for requests of this API at `apiVersion`.
    ///
    /// Defined for any `apiVersion`, including ones above `requestVersions` (a newer client's
    /// ApiVersions request must still be read so the broker can answer UNSUPPORTED_VERSION).
    public func requestHeaderVersion(apiVersion: Int16) -> Int16 {
        if self == .controlledShutdown && apiVersion == 0 { return 0 }
        if let first = requestFlexibleVersion, apiVersion >= first { return 2 }
        return 1
    }

    /// The response header version for responses of this API at `apiVersion`.
    public func responseHeaderVersion(apiVersion: Int16) -> Int16 {
        if self == .apiVersions { return 0 }
        if let first = responseFlexibleVersion, apiVersion >= first { return 1 }
        return 0
    }
}

/// A request whose header has been decoded and whose body has not.
///
/// Invariant: `body` is positioned at the first byte after the header and ends where the frame
/// ends; `header.requestApiKey == apiKey.rawValue`.
public struct DecodedRequest: Sendable {
    public var header: RequestHeader
    public var apiKey: ApiKey
    public var headerVersion: Int16
    public var body: ByteReader

    public var apiVersion: Int16 { header.requestApiVersion }
    public var correlationId: Int32 { header.correlationId }

    /// Decodes the body. Throws `.unsupportedVersion` for versions outside the API's range.
    public func decodeBody() throws(KafkaProtocolError) -> AnyRequest {
        var reader = body
        return try AnyRequest.decode(apiKey: apiKey, version: apiVersion, from: &reader)
    }
}

extension RequestHeader {
    /// Decodes the header of a request frame (the bytes after the 4-byte size prefix).
    ///
    /// The API key and version are read first to choose the header version. An unknown API key
    /// throws `.unknownApiKey`; an unsupported API version is not an error here (see
    /// `DecodedRequest.decodeBody`).
    public static func decodeRequest(_ frame: ArraySlice<UInt8>) throws(KafkaProtocolError) -> DecodedRequest {
        var peek = ByteReader(frame)
        let rawKey: Int16
        let apiVersion: Int16
        do {
            rawKey = try peek.readInt16()
            apiVersion = try peek.readInt16()
        } catch {
            throw .bytes(error, message: "RequestHeader")
        }
        guard let apiKey = ApiKey(rawValue: rawKey) else { throw .unknownApiKey(rawKey) }
        let headerVersion = apiKey.requestHeaderVersion(apiVersion: apiVersion)
        var reader = ByteReader(frame)
        let header = try RequestHeader(from: &reader, version: headerVersion)
        return DecodedRequest(header: header, apiKey: apiKey, headerVersion: headerVersion, body: ByteReader(reader.remainingSlice))
    }

    /// Appends a size-prefixed request frame: int32 size, header, body at `version`.
    public static func encodeRequest<M: KafkaMessage>(
        _ request: M, version: Int16, correlationId: Int32, clientId: String?, into writer: inout ByteWriter
    ) throws(KafkaProtocolError) {
        guard let apiKey = ApiKey(rawValue: M.apiKey) else { throw .unknownApiKey(M.apiKey) }
        let header = RequestHeader(
            requestApiKey: apiKey.rawValue, requestApiVersion: version, correlationId: correlationId, clientId: clientId)
        let sizeAt = writer.reserveInt32()
        try header.encode(to: &writer, version: apiKey.requestHeaderVersion(apiVersion: version))
        try request.encode(to: &writer, version: version)
        writer.patchInt32(at: sizeAt, Int32(writer.count - sizeAt - 4))
    }
}

extension ResponseHeader {
    /// Appends a size-prefixed response frame: int32 size, the header version the API requires
    /// at `version`, then the body.
    ///
    /// Example: an ApiVersions v3 response with correlation ID 7 starts
    /// `[size: 4 bytes] 00 00 00 07` then the body — no tagged-field byte after the correlation ID.
    public static func encodeResponse<M: KafkaMessage>(
        _ response: M, version: Int16, correlationId: Int32, into writer: inout ByteWriter
    ) throws(KafkaProtocolError) {
        guard let apiKey = ApiKey(rawValue: M.apiKey) else { throw .unknownApiKey(M.apiKey) }
        let sizeAt = writer.reserveInt32()
        try ResponseHeader(correlationId: correlationId)
            .encode(to: &writer, version: apiKey.responseHeaderVersion(apiVersion: version))
        try response.encode(to: &writer, version: version)
        writer.patchInt32(at: sizeAt, Int32(writer.count - sizeAt - 4))
    }

    /// Decodes a response frame (after the size prefix) of `apiKey` at `version`: the header,
    /// then the body.
    public static func decodeResponse(
        _ frame: ArraySlice<UInt8>, apiKey: ApiKey, version: Int16
    ) throws(KafkaProtocolError) -> (header: ResponseHeader, body: AnyResponse) {
        var reader = ByteReader(frame)
        let header = try ResponseHeader(from: &reader, version: apiKey.responseHeaderVersion(apiVersion: version))
        let body = try AnyResponse.decode(apiKey: apiKey, version: version, from: &reader)
        return (header, body)
    }
}
