import Bytes
import FloeTestSupport
import Testing
@testable import Broker
@testable import KafkaProtocol

/// A handler that answers Metadata with an empty cluster.
struct EmptyMetadata: ApiHandler {
    var apiKey: ApiKey { .metadata }
    var versions: ClosedRange<Int16> { 0...12 }
    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        .response(.metadata(MetadataResponse(clusterId: "c", controllerId: 1)))
    }
}

struct KafkaRouterTests {
    let router = KafkaRouter(handlers: [EmptyMetadata()])
    let connection = ConnectionInfo(id: 1, peer: "test")

    func frame<M: KafkaMessage>(_ m: M, version: Int16, correlationId: Int32 = 7) throws -> [UInt8] {
        var w = ByteWriter()
        try RequestHeader.encodeRequest(m, version: version, correlationId: correlationId, clientId: "t", into: &w)
        return Array(w.bytes.dropFirst(4))
    }

    func respond(_ bytes: [UInt8]) async -> HandlerResult {
        await router.handle(ServerRequest(bytes: bytes, connection: connection, seq: 0))
    }

    @Test func apiVersionsListsHandlersAndItself() async throws {
        for version: Int16 in 0...4 {
            let request = ApiVersionsRequest(clientSoftwareName: "floe-test", clientSoftwareVersion: "1.0")
            let bytes = try await requireCase(respond(try frame(request, version: version)), "a response at v\(version)", \.respondBytes)
            let (header, body) = try ResponseHeader.decodeResponse(bytes[...], apiKey: .apiVersions, version: version)
            #expect(header.correlationId == 7)
            let r = try requireResponse(body, as: ApiVersionsResponse.self)
            #expect(r.errorCode == 0)
            #expect(r.apiKeys.map(\.apiKey) == [3, 18])
            #expect(r.apiKeys.first { $0.apiKey == 3 }?.maxVersion == 12)
            #expect(r.supportedFeatures.isEmpty && r.finalizedFeatures.isEmpty)
        }
    }

    @Test func newerApiVersionsGetsError35InAVersion0Body() async throws {
        // A v9 request from a newer client: header v2, a body the broker cannot know.
        var w = ByteWriter()
        w.writeInt16(18); w.writeInt16(9); w.writeInt32(42); w.writeInt16(1); w.writeString("x"); w.writeUInt8(0)
        w.writeBytes([0xFF, 0xFE])
        let bytes = try await requireCase(respond(w.bytes), "a response", \.respondBytes)
        var reader = ByteReader(bytes)
        #expect(try reader.readInt32() == 42)
        let body = try ApiVersionsResponse(from: &reader, version: 0)
        #expect(body.errorCode == 35)
        #expect(body.apiKeys.contains { $0.apiKey == 18 && $0.maxVersion == 4 })
        #expect(reader.isAtEnd)
    }

    @Test func invalidClientSoftwareNameIsInvalidRequest() async throws {
        let request = ApiVersionsRequest(clientSoftwareName: "-bad name", clientSoftwareVersion: "1")
        let bytes = try await requireCase(respond(try frame(request, version: 3)), "a response", \.respondBytes)
        let (_, body) = try ResponseHeader.decodeResponse(bytes[...], apiKey: .apiVersions, version: 3)
        let r = try requireResponse(body, as: ApiVersionsResponse.self)
        #expect(r.errorCode == KafkaErrorCode.invalidRequest.rawValue)
    }

    @Test func unservedApiWithTopLevelErrorCodeGetsUnsupportedVersion() async throws {
        let bytes = try await requireCase(respond(try frame(FindCoordinatorRequest(key: "g"), version: 2)), "an error response", \.respondBytes)
        let (_, body) = try ResponseHeader.decodeResponse(bytes[...], apiKey: .findCoordinator, version: 2)
        let r = try requireResponse(body, as: FindCoordinatorResponse.self)
        #expect(r.errorCode == 35)
    }

    @Test func unservedApiWithoutTopLevelErrorClosesAndBadBodiesClose() async throws {
        try await requireCase(respond(try frame(ProduceRequest(acks: 1, timeoutMs: 1), version: 7)), "close for an unserved API", \.closes)
        var truncated = try frame(MetadataRequest(topics: [.init(name: "a")]), version: 4)
        truncated.removeLast(3)
        try await requireCase(respond(truncated), "close for a truncated body", \.closes)
        try await requireCase(respond([0x7F, 0x7F, 0, 0]), "close for an unknown key", \.closes)
    }

    @Test func handlerResponsesUseTheFlexibleHeader() async throws {
        let bytes = try await requireCase(respond(try frame(MetadataRequest(), version: 9)), "a response", \.respondBytes)
        let (header, body) = try ResponseHeader.decodeResponse(bytes[...], apiKey: .metadata, version: 9)
        #expect(header.correlationId == 7)
        let r = try requireResponse(body, as: MetadataResponse.self)
        #expect(r.clusterId == "c")
        #expect(bytes[4] == 0, "response header v1 carries an empty tagged-field section")
    }
}
