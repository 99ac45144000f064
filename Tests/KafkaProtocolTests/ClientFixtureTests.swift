import Bytes
import Foundation
import Testing
@testable import KafkaProtocol

/// Requests captured byte for byte from real clients (kcat and confluent-kafka on librdkafka
/// 2.0.2 and 2.16.0, kafka-python 3.0.12, aiokafka 0.14.0) by scripts/capture-fixtures.
/// Expected values come from decoders that are not Floe's (tshark, kafka-python); see
/// docs/fixtures.md.
struct ClientFixtureTests {
    struct Manifest: Decodable {
        struct File: Decodable {
            let file: String
            let client: String
            let apiKey: Int16
            let apiName: String
            let apiVersion: Int16
            let requestHeaderVersion: Int16
            let correlationId: Int32
            let clientId: String?
            let byteLength: Int
            let expected: [String: JSONValue]
        }
        struct Records: Decodable {
            struct Batch: Decodable {
                let batchLength: Int32
                let magic: Int8
                let crc: UInt32
                let codec: Int16
                let lastOffsetDelta: Int32
                let producerId: Int64
                let producerEpoch: Int16
                let baseSequence: Int32
                let recordCount: Int32
            }
            struct ExpectedRecord: Decodable {
                let key: String?
                let value: String?
                let headers: [[String]]
            }
            let file: String
            let topic: String
            let codec: String
            let batches: [Batch]
            let records: [ExpectedRecord]
        }
        let files: [File]
        let records: [Records]
    }

    static let fixtures: URL = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/clients")

    static func manifest() throws -> Manifest {
        try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: fixtures.appendingPathComponent("manifest.json")))
    }

    static func bytes(_ file: String) throws -> [UInt8] {
        Array(try Data(contentsOf: fixtures.appendingPathComponent(file)))
    }

    @Test func manifestCoversEveryClientAndTheNamedApis() throws {
        let m = try Self.manifest()
        #expect(m.files.count >= 100)
        let clients = Set(m.files.map(\.client))
        for prefix in ["kcat-librdkafka-2.0.2", "kcat-librdkafka-2.16", "confluent-kafka-python-1.7.0-librdkafka-2.0.2",
                       "confluent-kafka-python-2.16", "kafka-python-3.0", "aiokafka-0.14"] {
            #expect(clients.contains { $0.hasPrefix(prefix) }, "no fixtures from \(prefix)")
        }
        for client in clients {
            let apis = Set(m.files.filter { $0.client == client }.map(\.apiName))
            for api in ["ApiVersions", "Metadata", "Produce", "Fetch", "JoinGroup"] {
                #expect(apis.contains(api), "\(client) has no \(api) fixture")
            }
        }
    }

    @Test func everyCapturedRequestDecodesToTheExpectedValuesAndReencodesIdentically() throws {
        let m = try Self.manifest()
        for entry in m.files {
            let bytes = try Self.bytes(entry.file)
            #expect(bytes.count == entry.byteLength, "\(entry.file)")
            let request = try RequestHeader.decodeRequest(bytes[...])
            #expect(request.apiKey.rawValue == entry.apiKey, "\(entry.file)")
            #expect(request.apiVersion == entry.apiVersion, "\(entry.file)")
            #expect(request.headerVersion == entry.requestHeaderVersion, "\(entry.file)")
            #expect(request.correlationId == entry.correlationId, "\(entry.file)")
            #expect(request.header.clientId == entry.clientId, "\(entry.file)")

            let body = try request.decodeBody()
            var writer = ByteWriter()
            try request.header.encode(to: &writer, version: request.headerVersion)
            try body.encode(to: &writer, version: request.apiVersion)
            #expect(writer.bytes == bytes, "\(entry.file): decode → encode is not byte-identical")

            for (path, expected) in entry.expected {
                let actual = try lookup(path, in: body.message)
                #expect(matches(actual, expected), "\(entry.file): \(path) is \(String(describing: actual)), expected \(expected)")
            }
        }
    }

    @Test func producedRecordBatchesMatchWhatTheClientsSent() throws {
        let m = try Self.manifest()
        #expect(Set(m.records.map(\.codec)).isSuperset(of: ["none", "gzip", "snappy", "lz4", "zstd"]))
        for expected in m.records {
            let request = try RequestHeader.decodeRequest(try Self.bytes(expected.file)[...])
            guard case let .produce(produce) = try request.decodeBody() else {
                Issue.record("\(expected.file) is not a Produce request")
                continue
            }
            let partition = try #require(produce.topicData.first { $0.name == expected.topic }?.partitionData.first)
            let records = try #require(partition.records, "\(expected.file): null records")
            var reader = RecordBatchReader(records)
            var decoded: [Record] = []
            var batchIndex = 0
            while let batch = try reader.next() {
                let want = expected.batches[batchIndex]
                #expect(batch.header.batchLength == want.batchLength)
                #expect(batch.header.magic == want.magic)
                #expect(batch.header.crc == want.crc)
                #expect(batch.header.lastOffsetDelta == want.lastOffsetDelta)
                #expect(batch.header.producerId == want.producerId)
                #expect(batch.header.producerEpoch == want.producerEpoch)
                #expect(batch.header.baseSequence == want.baseSequence)
                #expect(batch.header.recordCount == want.recordCount)
                let codec = try batch.compression()
                #expect(codec.rawValue == want.codec, "\(expected.file)")
                if codec.isSupportedForRecordDecoding {
                    decoded += try batch.records()
                } else {
                    #expect(throws: KafkaProtocolError.self) { try batch.records() }
                }
                batchIndex += 1
            }
            #expect(batchIndex == expected.batches.count, "\(expected.file)")
            guard expected.codec == "none" || expected.codec == "gzip" else { continue }
            #expect(decoded.count == expected.records.count, "\(expected.file)")
            for (record, want) in zip(decoded, expected.records) {
                #expect(record.key.map { String(decoding: $0, as: UTF8.self) } == want.key)
                #expect(record.value.map { String(decoding: $0, as: UTF8.self) } == want.value)
                #expect(record.headers.map { [$0.key, String(decoding: $0.value ?? [], as: UTF8.self)] } == want.headers)
            }
        }
    }
}

/// A JSON value from the manifest.
enum JSONValue: Decodable, CustomStringConvertible {
    case null, bool(Bool), number(Double), string(String), object([String: JSONValue]), array([JSONValue])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    var description: String {
        switch self {
        case .null: "null"
        case let .bool(b): "\(b)"
        case let .number(n): "\(n)"
        case let .string(s): "\"\(s)\""
        case let .object(o): "\(o)"
        case let .array(a): "\(a)"
        }
    }
}

struct PathError: Error, CustomStringConvertible {
    let description: String
}

/// Follows a manifest path such as `topicData[0].partitionData[0].index` through a decoded
/// message's stored properties (test-only reflection; the codecs themselves use none).
func lookup(_ path: String, in root: Any) throws -> Any? {
    var current: Any? = root
    for component in path.split(separator: ".") {
        var name = Substring(component)
        var indices: [Int] = []
        while let open = name.lastIndex(of: "["), name.hasSuffix("]") {
            indices.insert(Int(name[name.index(after: open)..<name.index(before: name.endIndex)])!, at: 0)
            name = name[..<open]
        }
        guard let value = unwrap(current) else { throw PathError(description: "\(path): nil before \(name)") }
        guard let child = Mirror(reflecting: value).children.first(where: { $0.label == String(name) }) else {
            throw PathError(description: "\(path): no field \(name) in \(type(of: value))")
        }
        current = child.value
        for index in indices {
            guard let array = unwrap(current) else { throw PathError(description: "\(path): nil array") }
            let elements = Array(Mirror(reflecting: array).children)
            guard index < elements.count else { throw PathError(description: "\(path): index \(index) out of \(elements.count)") }
            current = elements[index].value
        }
    }
    return unwrap(current)
}

func unwrap(_ value: Any?) -> Any? {
    guard let value else { return nil }
    let mirror = Mirror(reflecting: value)
    if mirror.displayStyle == .optional {
        return mirror.children.first.flatMap { unwrap($0.value) }
    }
    return value
}

func matches(_ actual: Any?, _ expected: JSONValue) -> Bool {
    switch expected {
    case .null:
        // kafka-python reads the all-zero topic id as None.
        if let uuid = actual as? KafkaUUID { return uuid == .zero }
        return actual == nil
    case let .bool(b):
        return (actual as? Bool) == b
    case let .string(s):
        if let uuid = actual as? KafkaUUID {
            // kafka-python prints UUIDs in the hyphenated hex form.
            let hex = uuid.bytes.map { String(format: "%02x", $0) }.joined()
            return s.replacingOccurrences(of: "-", with: "") == hex
        }
        return (actual as? String) == s
    case let .number(n):
        switch actual {
        case let v as Int8: return Double(v) == n
        case let v as Int16: return Double(v) == n
        case let v as UInt16: return Double(v) == n
        case let v as Int32: return Double(v) == n
        case let v as UInt32: return Double(v) == n
        case let v as Int64: return Double(v) == n
        case let v as Double: return v == n
        default: return false
        }
    case let .object(o):
        if case let .number(length)? = o["byteLength"] {
            if let slice = actual as? ArraySlice<UInt8> { return Double(slice.count) == length }
            if let bytes = actual as? [UInt8] { return Double(bytes.count) == length }
            return false
        }
        if case let .string(hex)? = o["hex"], let bytes = actual as? [UInt8] {
            return bytes.map { String(format: "%02x", $0) }.joined() == hex.lowercased()
        }
        return false
    case let .array(items):
        guard let actual else { return false }
        let elements = Mirror(reflecting: actual).children.map(\.value)
        return elements.count == items.count && zip(elements, items).allSatisfy { matches(unwrap($0), $1) }
    }
}
