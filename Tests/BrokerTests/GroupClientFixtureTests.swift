import Bytes
import Foundation
import KafkaProtocol
import ObjectStore
import Support
import Testing
@testable import Broker

/// Replays the consumer-group requests real clients sent (captured in the KafkaProtocolTests
/// fixtures) through KafkaRouter into the coordinator. Frames are sent as captured where they
/// carry no broker-assigned state (FindCoordinator, the first JoinGroup, OffsetFetch); frames
/// carrying the capture broker's member id and generation are decoded, given ours, and
/// re-encoded with the client's own header and version.
struct GroupClientFixtureTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("KafkaProtocolTests/Fixtures/clients")

    struct Capture {
        var file: String
        var apiName: String
        var version: Int16
    }

    static func captures() throws -> [String: [Capture]] {
        let data = try Data(contentsOf: fixtures.appendingPathComponent("manifest.json"))
        guard let manifest = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let files = manifest["files"] as? [[String: Any]] else { throw TestFailure("manifest.json has no files list") }
        var byClient: [String: [Capture]] = [:]
        for f in files {
            guard let file = f["file"] as? String, let client = f["client"] as? String, let api = f["apiName"] as? String,
                  let version = f["apiVersion"] as? Int else { throw TestFailure("manifest entry without file/client/apiName/apiVersion: \(f)") }
            byClient[client, default: []].append(Capture(file: file, apiName: api, version: Int16(version)))
        }
        return byClient
    }

    static func bytes(_ file: String) throws -> [UInt8] {
        Array(try Data(contentsOf: fixtures.appendingPathComponent(file)))
    }

    /// The captured request decoded, and a function re-encoding a modified body with its header.
    static func decoded(_ frame: [UInt8]) throws -> (DecodedRequest, AnyRequest) {
        let d = try RequestHeader.decodeRequest(frame[...])
        return (d, try d.decodeBody())
    }

    static func reencode<M: KafkaMessage>(_ body: M, like d: DecodedRequest) throws -> [UInt8] {
        var w = ByteWriter()
        try RequestHeader.encodeRequest(body, version: d.apiVersion, correlationId: d.correlationId, clientId: d.header.clientId, into: &w)
        return Array(w.bytes.dropFirst(4))
    }

    @Test(arguments: ["kcat-librdkafka-2.0.2", "kcat-librdkafka-2.16.0", "confluent-kafka-python-1.7.0-librdkafka-2.0.2",
                      "confluent-kafka-python-2.16.1-librdkafka-2.16.0", "kafka-python-3.0.12", "aiokafka-0.14.0"])
    func clientGroupSessionIsDecodedAndAnswered(client: String) async throws {
        let all = try Self.captures()
        let captures = try #require(all[client], "no captures for \(client)")
        func capture(_ api: String) -> Capture? { captures.first { $0.apiName == api } }

        // Topics named in the client's commit exist, with plenty of partitions.
        var topicNames: [String] = []
        if let c = capture("OffsetCommit"), case let .offsetCommit(r) = try Self.decoded(try Self.bytes(c.file)).1 {
            topicNames = r.topics.map(\.name)
        }
        let clock = ManualClock()
        let coordinator = GroupCoordinator(nodeId: 3, host: "floe", port: 9092, store: MemoryObjectStore(name: client), prefix: "groups/",
                                           clock: clock, topics: StaticTopics(topics: Dictionary(uniqueKeysWithValues: topicNames.map { ($0, 8) })),
                                           logger: .discarding, seed: 1)
        try await coordinator.load()
        let router = KafkaRouter(handlers: coordinator.handlers)
        let connection = ConnectionInfo(id: 9, peer: "10.0.0.5:40000")
        func send(_ frame: [UInt8], _ c: Capture) async throws -> AnyResponse {
            let apiKey = try RequestHeader.decodeRequest(frame[...]).apiKey
            switch await router.handle(ServerRequest(bytes: frame, connection: connection, seq: 0)) {
            case let .respond(bytes):
                return try ResponseHeader.decodeResponse(bytes[...], apiKey: apiKey, version: c.version).1
            case let .deferred(complete):
                // Only a JoinGroup of a new group waits here (the initial rebalance delay); a
                // commit completes once written.
                async let reply = complete()
                await Task.yield()
                if apiKey == .joinGroup {
                    clock.advance(by: .seconds(3))
                    await coordinator.fireDueTimers(now: clock.now())
                }
                guard let bytes = await reply else { throw TestFailure("\(c.file): deferred reply without bytes") }
                return try ResponseHeader.decodeResponse(bytes[...], apiKey: apiKey, version: c.version).1
            default:
                throw TestFailure("\(c.file): the router did not answer")
            }
        }

        if let c = capture("FindCoordinator") {
            guard case let .findCoordinator(r) = try await send(try Self.bytes(c.file), c) else { throw TestFailure("\(c.file): wrong body") }
            if c.version >= 4 {
                #expect(r.coordinators.count == 1 && r.coordinators[0].nodeId == 3 && r.coordinators[0].host == "floe")
            } else {
                #expect(r.errorCode == 0 && r.nodeId == 3 && r.host == "floe" && r.port == 9092)
            }
        }

        let joinCapture = try #require(capture("JoinGroup"))
        let joinFrame = try Self.bytes(joinCapture.file)
        let (joinHeader, joinBody) = try Self.decoded(joinFrame)
        guard case var .joinGroup(joinRequest) = joinBody else { throw TestFailure("not a JoinGroup") }
        var memberId = ""
        guard case let .joinGroup(first) = try await send(joinFrame, joinCapture) else { throw TestFailure("wrong body") }
        if first.errorCode == KafkaErrorCode.memberIdRequired.rawValue {
            #expect(joinCapture.version >= 4)
            memberId = first.memberId
            joinRequest.memberId = memberId
            guard case let .joinGroup(second) = try await send(try Self.reencode(joinRequest, like: joinHeader), joinCapture) else {
                throw TestFailure("wrong body")
            }
            #expect(second.errorCode == 0 && second.memberId == memberId)
            #expect(second.generationId == 1 && second.leader == memberId)
            #expect(second.members.map(\.metadata) == [joinRequest.protocols[0].metadata])
            #expect(second.protocolName == joinRequest.protocols[0].name)
        } else {
            #expect(first.errorCode == 0)
            memberId = first.memberId
        }
        #expect(memberId.hasPrefix(joinHeader.header.clientId ?? ""))
        let groupId = joinRequest.groupId

        if let c = capture("SyncGroup") {
            let (h, body) = try Self.decoded(try Self.bytes(c.file))
            guard case var .syncGroup(r) = body else { throw TestFailure("not a SyncGroup") }
            let assignment = r.assignments.first?.assignment ?? []
            r.memberId = memberId
            r.generationId = 1
            r.assignments = r.assignments.map { .init(memberId: memberId, assignment: $0.assignment) }
            guard case let .syncGroup(s) = try await send(try Self.reencode(r, like: h), c) else { throw TestFailure("wrong body") }
            #expect(s.errorCode == 0 && s.assignment == assignment)
        }
        if let c = capture("Heartbeat") {
            let (h, body) = try Self.decoded(try Self.bytes(c.file))
            guard case var .heartbeat(r) = body else { throw TestFailure("not a Heartbeat") }
            #expect(r.groupId == groupId)
            r.memberId = memberId
            r.generationId = 1
            guard case let .heartbeat(hb) = try await send(try Self.reencode(r, like: h), c) else { throw TestFailure("wrong body") }
            #expect(hb.errorCode == 0)
        }
        var committed: [TopicPartition: Int64] = [:]
        if let c = capture("OffsetCommit") {
            let (h, body) = try Self.decoded(try Self.bytes(c.file))
            guard case var .offsetCommit(r) = body else { throw TestFailure("not an OffsetCommit") }
            r.memberId = memberId
            r.generationIdOrMemberEpoch = 1
            for t in r.topics { for p in t.partitions { committed[TopicPartition(t.name, p.partitionIndex)] = p.committedOffset } }
            guard case let .offsetCommit(oc) = try await send(try Self.reencode(r, like: h), c) else { throw TestFailure("wrong body") }
            #expect(oc.topics.flatMap(\.partitions).allSatisfy { $0.errorCode == 0 })
            #expect(!committed.isEmpty)
        }
        if let c = capture("OffsetFetch") {
            // Sent as captured: it names the group and the partitions.
            guard case let .offsetFetch(f) = try await send(try Self.bytes(c.file), c) else { throw TestFailure("wrong body") }
            var fetched: [TopicPartition: Int64] = [:]
            if c.version >= 8 {
                for g in f.groups { for t in g.topics { for p in t.partitions { fetched[TopicPartition(t.name, p.partitionIndex)] = p.committedOffset } } }
            } else {
                for t in f.topics { for p in t.partitions { fetched[TopicPartition(t.name, p.partitionIndex)] = p.committedOffset } }
            }
            #expect(!fetched.isEmpty)
            for (tp, offset) in fetched { #expect(offset == committed[tp] ?? -1, "\(c.file): \(tp)") }
        }
        if let c = capture("LeaveGroup") {
            let (h, body) = try Self.decoded(try Self.bytes(c.file))
            guard case var .leaveGroup(r) = body else { throw TestFailure("not a LeaveGroup") }
            if c.version >= 3 {
                r.members = r.members.map { .init(memberId: memberId, groupInstanceId: $0.groupInstanceId, reason: $0.reason) }
            } else {
                r.memberId = memberId
            }
            guard case let .leaveGroup(l) = try await send(try Self.reencode(r, like: h), c) else { throw TestFailure("wrong body") }
            #expect(l.errorCode == 0 && l.members.allSatisfy { $0.errorCode == 0 })
            #expect(await coordinator.group(groupId)?.state == .empty)
        }
    }
}
