import Bytes
import KafkaProtocol
import Testing

/// Encodings checked by hand against the Kafka protocol guide.
@Suite struct KnownBytesTests {
    func ascii(_ s: String) -> [UInt8] { Array(s.utf8) }

    @Test func apiVersionsV3RequestFrame() throws {
        let request = ApiVersionsRequest(clientSoftwareName: "floe", clientSoftwareVersion: "1.0")
        var writer = ByteWriter()
        try RequestHeader.encodeRequest(request, version: 3, correlationId: 7, clientId: "cli", into: &writer)
        let header: [UInt8] = [0x00, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x07]
            + [0x00, 0x03] + ascii("cli")  // ClientId: int16 length even in header v2
            + [0x00]  // header tagged fields
        let body: [UInt8] = [0x05] + ascii("floe") + [0x04] + ascii("1.0") + [0x00]
        let frame = writer.take()
        #expect(frame == [0x00, 0x00, 0x00, UInt8(header.count + body.count)] + header + body)

        let decoded = try RequestHeader.decodeRequest(frame[4...])
        #expect(decoded.apiKey == .apiVersions)
        #expect(decoded.headerVersion == 2)
        #expect(decoded.header.clientId == "cli")
        #expect(decoded.correlationId == 7)
        #expect(try decoded.decodeBody() == .apiVersions(request))
    }

    @Test func apiVersionsRequestFromNewerClientStillHasReadableHeader() throws {
        // A client at ApiVersions v9 (unknown here): header v2 is read, the body is refused.
        let frame: [UInt8] = [0x00, 0x12, 0x00, 0x09, 0x00, 0x00, 0x00, 0x01, 0xFF, 0xFF, 0x00, 0x00]
        let decoded = try RequestHeader.decodeRequest(frame[...])
        #expect(decoded.headerVersion == 2)
        #expect(decoded.header.clientId == nil)
        #expect(throws: KafkaProtocolError.unsupportedVersion(message: "ApiVersionsRequest", version: 9)) {
            _ = try decoded.decodeBody()
        }
    }

    @Test func metadataV1Request() throws {
        let request = MetadataRequest(topics: [.init(name: "a"), .init(name: "bc")])
        let bytes = try request.encoded(version: 1)
        #expect(bytes == [0x00, 0x00, 0x00, 0x02, 0x00, 0x01] + ascii("a") + [0x00, 0x02] + ascii("bc"))
        #expect(try MetadataRequest(bytes: bytes, version: 1) == request)

        // Null topics (all topics) is -1 at v1, and not allowed at v0.
        let all = MetadataRequest(topics: nil)
        #expect(try all.encoded(version: 1) == [0xFF, 0xFF, 0xFF, 0xFF])
        #expect(throws: KafkaProtocolError.nullNotAllowed(message: "MetadataRequest", field: "topics", version: 0)) {
            _ = try all.encoded(version: 0)
        }
        // Fields absent at v1 that hold non-default values are refused (not ignorable).
        var later = request
        later.allowAutoTopicCreation = false
        #expect(throws: KafkaProtocolError.fieldNotInVersion(message: "MetadataRequest", field: "allowAutoTopicCreation", version: 1)) {
            _ = try later.encoded(version: 1)
        }
    }

    @Test func requestHeaderV2WithNullClientId() throws {
        let header = RequestHeader(requestApiKey: 3, requestApiVersion: 12, correlationId: 42, clientId: nil)
        let bytes = try header.encoded(version: 2)
        #expect(bytes == [0x00, 0x03, 0x00, 0x0C, 0x00, 0x00, 0x00, 0x2A, 0xFF, 0xFF, 0x00])
        #expect(try RequestHeader(bytes: bytes, version: 2) == header)
        // v0 has no ClientId; it is ignorable, so a value is dropped rather than refused.
        let v0 = try RequestHeader(requestApiKey: 7, requestApiVersion: 0, correlationId: 1, clientId: "x").encoded(version: 0)
        #expect(v0 == [0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01])
    }

    @Test func headerVersionRules() {
        #expect(ApiKey.controlledShutdown.requestHeaderVersion(apiVersion: 0) == 0)
        #expect(ApiKey.controlledShutdown.requestHeaderVersion(apiVersion: 1) == 1)
        #expect(ApiKey.produce.requestHeaderVersion(apiVersion: 8) == 1)
        #expect(ApiKey.produce.requestHeaderVersion(apiVersion: 9) == 2)
        #expect(ApiKey.produce.responseHeaderVersion(apiVersion: 8) == 0)
        #expect(ApiKey.produce.responseHeaderVersion(apiVersion: 9) == 1)
        for version in ApiKey.apiVersions.responseVersions {
            #expect(ApiKey.apiVersions.responseHeaderVersion(apiVersion: version) == 0)
        }
    }

    @Test func apiVersionsResponseHeaderIsNeverFlexible() throws {
        let response = ApiVersionsResponse(
            errorCode: 0, apiKeys: [.init(apiKey: 18, minVersion: 0, maxVersion: 4)], throttleTimeMs: 0)
        var writer = ByteWriter()
        try ResponseHeader.encodeResponse(response, version: 3, correlationId: 7, into: &writer)
        let body: [UInt8] = [0x00, 0x00]  // error code
            + [0x02, 0x00, 0x12, 0x00, 0x00, 0x00, 0x04, 0x00]  // compact array of 1 ApiVersion
            + [0x00, 0x00, 0x00, 0x00]  // throttle
            + [0x00]  // tagged fields
        let expected: [UInt8] = [0x00, 0x00, 0x00, UInt8(4 + body.count), 0x00, 0x00, 0x00, 0x07] + body
        let frame = writer.take()
        #expect(frame == expected)
        let (header, decoded) = try ResponseHeader.decodeResponse(frame[4...], apiKey: .apiVersions, version: 3)
        #expect(header.correlationId == 7)
        #expect(decoded == .apiVersions(response))

        // Any other flexible response gets header v1: a tagged-field byte after the correlation ID.
        var other = ByteWriter()
        try ResponseHeader.encodeResponse(MetadataResponse(), version: 9, correlationId: 7, into: &other)
        #expect(Array(other.take()[4..<9]) == [0x00, 0x00, 0x00, 0x07, 0x00])
    }

    @Test func taggedFieldsKnownAndUnknownKeepTheirOrder() throws {
        // FetchRequest v15 top-level tags: 0 ClusterId, 1 ReplicaState. Unknown tags 2 and 300
        // follow them in ascending order.
        var request = FetchRequest(clusterId: "c", replicaState: .init(replicaId: 5, replicaEpoch: 6))
        request.unknownTaggedFields = [TaggedField(tag: 2, data: [0xAA]), TaggedField(tag: 300, data: [])]
        let bytes = try request.encoded(version: 15)
        let section: [UInt8] = [0x04]
            + [0x00, 0x02, 0x02, 0x63]  // tag 0, size 2, compact "c"
            + [0x01, 0x0D, 0x00, 0x00, 0x00, 0x05]  // tag 1, size 13, ReplicaId int32
            + [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x00]  // ReplicaEpoch int64, tags
            + [0x02, 0x01, 0xAA]  // unknown tag 2
            + [0xAC, 0x02, 0x00]  // unknown tag 300 (two-byte varint), empty
        #expect(Array(bytes.suffix(section.count)) == section)
        let decoded = try FetchRequest(bytes: bytes, version: 15)
        #expect(decoded == request)
        #expect(try decoded.encoded(version: 15) == bytes)
    }

    @Test func tagKnownOnlyFromALaterVersionIsKeptAsUnknown() throws {
        // FetchPartition.ReplicaDirectoryId is tag 0 from v17; v16 differs from v17 only by it.
        let uuid = KafkaUUID(mostSignificantBits: 1, leastSignificantBits: 2)
        let partition = FetchRequest.FetchPartition(partition: 3, replicaDirectoryId: uuid)
        let request = FetchRequest(topics: [.init(partitions: [partition])])
        let v17 = try request.encoded(version: 17)
        #expect(try FetchRequest(bytes: v17, version: 17) == request)

        let asV16 = try FetchRequest(bytes: v17, version: 16)
        let kept = try #require(asV16.topics.first?.partitions.first)
        #expect(kept.replicaDirectoryId == .zero)
        #expect(kept.unknownTaggedFields == [TaggedField(tag: 0, data: uuid.bytes)])
        #expect(try asV16.encoded(version: 16) == v17)
    }

    @Test func taggedFieldAtDefaultIsNotWritten() throws {
        let bytes = try FetchRequest().encoded(version: 15)
        #expect(bytes.last == 0x00)  // empty tagged-field section
    }

    @Test func hugeArrayCountIsRejectedBeforeAllocating() throws {
        // MetadataRequest v1 claiming 2^31-1 topics in a 4-byte body.
        #expect(throws: KafkaProtocolError.bytes(
            .invalidLength(reading: "MetadataRequest.topics (array count)", length: Int(Int32.max), offset: 0),
            message: "MetadataRequest")
        ) {
            _ = try MetadataRequest(bytes: [0x7F, 0xFF, 0xFF, 0xFF], version: 1)
        }
    }

    @Test func nonNullableStringSentAsNullIsRejected() throws {
        // MetadataRequest v1 topic name (non-nullable) with length -1.
        #expect(throws: KafkaProtocolError.self) {
            _ = try MetadataRequest(bytes: [0x00, 0x00, 0x00, 0x01, 0xFF, 0xFF], version: 1)
        }
    }

    @Test func classicStringLongerThanInt16IsRefused() throws {
        let long = String(repeating: "x", count: 40_000)
        let request = MetadataRequest(topics: [.init(name: long)])
        #expect(throws: KafkaProtocolError.stringTooLong(field: "MetadataRequest.MetadataRequestTopic.name", length: 40_000)) {
            _ = try request.encoded(version: 1)
        }
        // Compact strings (v9+) have a varint length and carry it.
        let bytes = try request.encoded(version: 9)
        #expect(try MetadataRequest(bytes: bytes, version: 9) == request)
    }

    @Test func invalidUTF8IsRefused() throws {
        // MetadataRequest v1, one topic whose 2-byte name is not UTF-8.
        #expect(throws: KafkaProtocolError.bytes(.invalidUTF8(offset: 6), message: "MetadataRequest")) {
            _ = try MetadataRequest(bytes: [0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0xC3, 0x28], version: 1)
        }
    }

    @Test func recordsAreZeroCopySlices() throws {
        let partition = ProduceRequest.PartitionProduceData(index: 0, records: [1, 2, 3])
        let request = ProduceRequest(acks: -1, timeoutMs: 1000, topicData: [.init(name: "t", partitionData: [partition])])
        let bytes = try request.encoded(version: 9)
        let decoded = try ProduceRequest(bytes: bytes, version: 9)
        let records = try #require(decoded.topicData.first?.partitionData.first?.records)
        #expect(Array(records) == [1, 2, 3])
        #expect(records.endIndex == bytes.count - 3)  // tagged byte ×3 follow: partition, topic, request
    }

    @Test func apiKeyTable() {
        #expect(ApiKey.allCases.count == 88)
        for key in ApiKey.allCases {
            #expect(key.requestType.apiKey == key.rawValue)
            #expect(key.responseType.apiKey == key.rawValue)
            #expect(key.requestVersions == key.responseVersions, "\(key.name)")
        }
        #expect(ApiKey(rawValue: 18) == .apiVersions)
        #expect(ApiKey.apiVersions.name == "ApiVersions")
        #expect(ApiKey.produce.requestFlexibleVersion == 9)
        #expect(ApiKey.fetch.requestVersions == 0...17)
        #expect(ApiKey.produce.listeners.contains("broker"))
        #expect(!ApiKey.vote.listeners.contains("broker"))
    }

    /// KIP-890's TRANSACTION_ABORTABLE: code 120, not retriable (the producer aborts instead).
    @Test func transactionAbortableCode() {
        #expect(KafkaErrorCode(rawValue: 120) == .transactionAbortable)
        #expect(KafkaErrorCode.transactionAbortable.name == "TRANSACTION_ABORTABLE")
        #expect(!KafkaErrorCode.transactionAbortable.isRetriable)
    }

    @Test func uuidText() {
        #expect(KafkaUUID.zero.description == "AAAAAAAAAAAAAAAAAAAAAA")
        // Kafka's METADATA_TOPIC_ID, Uuid(0, 1).
        #expect(KafkaUUID(mostSignificantBits: 0, leastSignificantBits: 1).description == "AAAAAAAAAAAAAAAAAAAAAQ")
        var rng = SplitMix64(seed: 3)
        for _ in 0..<100 {
            let uuid = KafkaUUID(mostSignificantBits: rng.next(), leastSignificantBits: rng.next())
            #expect(KafkaUUID(base64URL: uuid.description) == uuid)
            #expect(KafkaUUID(bytes: uuid.bytes) == uuid)
        }
        #expect(KafkaUUID(base64URL: "AAAAAAAAAAAAAAAAAAAAAB") == nil)  // non-zero padding bits
        #expect(KafkaUUID(base64URL: "short") == nil)
    }
}
