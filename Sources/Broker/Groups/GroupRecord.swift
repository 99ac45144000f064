import Bytes
import KafkaProtocol

/// A topic partition, as offsets are keyed.
public struct TopicPartition: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public static func < (a: Self, b: Self) -> Bool { (a.topic, a.partition) < (b.topic, b.partition) }
    public var description: String { "\(topic)-\(partition)" }
}

/// One committed offset.
public struct CommittedOffset: Sendable, Hashable {
    public var offset: Int64
    /// -1 when the client did not send one (before OffsetCommit v6).
    public var leaderEpoch: Int32
    public var metadata: String?
    /// Wall-clock milliseconds since 1970 of the commit (drives offset retention).
    public var commitTimestampMs: Int64

    public init(offset: Int64, leaderEpoch: Int32 = -1, metadata: String? = nil, commitTimestampMs: Int64) {
        self.offset = offset
        self.leaderEpoch = leaderEpoch
        self.metadata = metadata
        self.commitTimestampMs = commitTimestampMs
    }
}

/// Everything the bucket holds about one group: its resumable membership and its offsets.
///
/// Encoding (all integers big-endian; strings are a 4-byte length then UTF-8, length -1 for
/// nil; byte arrays likewise):
///
/// ```
/// magic "FLGR" (4) | version u16 = 1, 2 or 3 | body length u32 | CRC32C(body) u32 | body
/// body: groupId str | protocolType str? | protocolName str? | generationId i32 | leaderId str?
///       | member count i32 | members | offset count i32 | offsets (sorted by topic, partition)
///       | versions 2 and 3: consumer group (KIP-848)
/// member: memberId str | groupInstanceId str? | clientId str | clientHost str
///       | sessionTimeoutMs i32 | rebalanceTimeoutMs i32 | protocol count i32
///       | (name str, metadata bytes)* | assignment bytes
/// offset: topic str | partition i32 | offset i64 | leaderEpoch i32 | metadata str?
///       | commitTimestampMs i64
/// ```
///
/// consumer group (version 2; a group without one is written as version 1, so brokers that
/// only read version 1 keep reading classic groups):
///
/// ```
/// groupEpoch i32 | assignmentEpoch i32 | topic count i32 | (name str, id 16 bytes, partitions i32)*
///       | member count i32 | members (sorted by member id)
/// member: memberId str | instanceId str? | rackId str? | clientId str | clientHost str
///       | rebalanceTimeoutMs i32 | topic name count i32 | name str* | regex str? | serverAssignor str?
///       | memberEpoch i32 | previousMemberEpoch i32 | state u8 | assigned | pendingRevocation
///       | target (its target assignment) | version 3 only: classic
/// classic (version 3; a mixed group's classic members, MixedGroups.swift): present u8 (0 or 1)
///       | if 1: sessionTimeoutMs i32 | protocol count i32 | (name str, metadata bytes)*
/// assignment: topic count i32 | (topic id 16 bytes, partition count i32, partition i32*)*
/// ```
///
/// A consumer group is written as version 3 only while it has classic members, so brokers
/// that read only versions 1 and 2 keep reading every other group.
///
/// Session deadlines are not stored: a coordinator reading the group gives every member a new
/// session.
///
/// A reader rejects another magic, an unknown version, a length that disagrees with the object,
/// a checksum mismatch and trailing bytes, naming the object key.
public struct GroupRecord: Sendable, Equatable {
    public static let magic: [UInt8] = Array("FLGR".utf8)
    public static let version: UInt16 = 3
    static let headerSize = 14

    public var groupId: String
    public var snapshot: GroupSnapshot
    public var offsets: [TopicPartition: CommittedOffset]
    /// The KIP-848 consumer group, if the group is one.
    public var consumer: ConsumerGroup?

    public init(groupId: String, snapshot: GroupSnapshot, offsets: [TopicPartition: CommittedOffset], consumer: ConsumerGroup? = nil) {
        self.groupId = groupId
        self.snapshot = snapshot
        self.offsets = offsets
        self.consumer = consumer.map {
            var c = $0
            for id in c.members.keys { c.members[id]!.sessionDeadline = nil; c.members[id]!.revocationDeadline = nil }
            return c
        }
    }

    public func encoded() -> [UInt8] {
        var body = ByteWriter(capacity: 256 + offsets.count * 48)
        body.writeLengthString(groupId)
        body.writeLengthString(snapshot.protocolType)
        body.writeLengthString(snapshot.protocolName)
        body.writeInt32(snapshot.generationId)
        body.writeLengthString(snapshot.leaderId)
        body.writeInt32(Int32(snapshot.members.count))
        for m in snapshot.members {
            body.writeLengthString(m.memberId)
            body.writeLengthString(m.groupInstanceId)
            body.writeLengthString(m.clientId)
            body.writeLengthString(m.clientHost)
            body.writeInt32(m.sessionTimeoutMs)
            body.writeInt32(m.rebalanceTimeoutMs)
            body.writeInt32(Int32(m.protocols.count))
            for p in m.protocols {
                body.writeLengthString(p.name)
                body.writeLengthBytes(p.metadata)
            }
            body.writeLengthBytes(m.assignment)
        }
        body.writeInt32(Int32(offsets.count))
        for key in offsets.keys.sorted() {
            let o = offsets[key]!
            body.writeLengthString(key.topic)
            body.writeInt32(key.partition)
            body.writeInt64(o.offset)
            body.writeInt32(o.leaderEpoch)
            body.writeLengthString(o.metadata)
            body.writeInt64(o.commitTimestampMs)
        }
        let version: UInt16 = consumer == nil ? 1 : consumer!.members.values.contains { $0.classic != nil } ? 3 : 2
        if let consumer { Self.write(consumer, to: &body, version: version) }
        let payload = body.take()
        var out = ByteWriter(capacity: Self.headerSize + payload.count)
        out.writeBytes(Self.magic)
        out.writeUInt16(version)
        out.writeUInt32(UInt32(payload.count))
        out.writeUInt32(CRC32C.checksum(payload))
        out.writeBytes(payload)
        return out.take()
    }

    /// Decodes an object written by ``encoded()``; `key` names the object in errors.
    public init(decoding bytes: [UInt8], key: String) throws(GroupStoreError) {
        func corrupt(_ reason: String) -> GroupStoreError { .corrupt(key: key, reason: reason) }
        guard bytes.count >= Self.headerSize else { throw corrupt("\(bytes.count) bytes is shorter than the \(Self.headerSize)-byte header") }
        guard Array(bytes[0..<4]) == Self.magic else { throw corrupt("bad magic \(bytes[0..<4].map { String($0, radix: 16) })") }
        var reader = ByteReader(bytes)
        do {
            try reader.skip(4)
            let version = try reader.readUInt16()
            guard (1...Self.version).contains(version) else { throw corrupt("unknown format version \(version)") }
            let length = Int(try reader.readUInt32())
            guard length == bytes.count - Self.headerSize else {
                throw corrupt("body length \(length) but the object holds \(bytes.count - Self.headerSize) body bytes")
            }
            let crc = try reader.readUInt32()
            let actual = CRC32C.checksum(bytes[Self.headerSize...])
            guard crc == actual else { throw corrupt("CRC32C \(actual) does not match the stored \(crc)") }

            groupId = try reader.readLengthString() ?? ""
            let protocolType = try reader.readLengthString()
            let protocolName = try reader.readLengthString()
            let generationId = try reader.readInt32()
            let leaderId = try reader.readLengthString()
            var members: [GroupSnapshot.Member] = []
            for _ in 0..<(try reader.readCount("member count")) {
                let memberId = try reader.readLengthString() ?? ""
                let instanceId = try reader.readLengthString()
                let clientId = try reader.readLengthString() ?? ""
                let clientHost = try reader.readLengthString() ?? ""
                let session = try reader.readInt32()
                let rebalance = try reader.readInt32()
                var protocols: [GroupProtocol] = []
                for _ in 0..<(try reader.readCount("protocol count")) {
                    protocols.append(GroupProtocol(name: try reader.readLengthString() ?? "", metadata: try reader.readLengthBytes()))
                }
                members.append(.init(memberId: memberId, groupInstanceId: instanceId, clientId: clientId, clientHost: clientHost,
                                     sessionTimeoutMs: session, rebalanceTimeoutMs: rebalance, protocols: protocols,
                                     assignment: try reader.readLengthBytes()))
            }
            snapshot = GroupSnapshot(protocolType: protocolType, protocolName: protocolName, generationId: generationId,
                                     leaderId: leaderId, members: members)
            offsets = [:]
            for _ in 0..<(try reader.readCount("offset count")) {
                let topic = try reader.readLengthString() ?? ""
                let partition = try reader.readInt32()
                offsets[TopicPartition(topic, partition)] = CommittedOffset(
                    offset: try reader.readInt64(), leaderEpoch: try reader.readInt32(),
                    metadata: try reader.readLengthString(), commitTimestampMs: try reader.readInt64())
            }
            consumer = version >= 2 ? try Self.readConsumer(&reader, groupId: groupId, version: version) : nil
            guard reader.isAtEnd else { throw corrupt("\(reader.remaining) trailing bytes") }
        } catch let GroupStoreError.corrupt(inner, reason) {
            throw .corrupt(key: inner.isEmpty ? key : inner, reason: reason)
        } catch let error as GroupStoreError {
            throw error
        } catch {
            throw corrupt("truncated: \(error)")
        }
    }
}

extension GroupRecord {
    static func write(_ c: ConsumerGroup, to body: inout ByteWriter, version: UInt16) {
        func assignment(_ a: ConsumerAssignment) {
            let topics = a.filter { !$0.value.isEmpty }.sorted { $0.key.bytes.lexicographicallyPrecedes($1.key.bytes) }
            body.writeInt32(Int32(topics.count))
            for (id, ps) in topics {
                body.writeBytes(id.bytes)
                body.writeInt32(Int32(ps.count))
                for p in ps.sorted() { body.writeInt32(p) }
            }
        }
        body.writeInt32(c.groupEpoch)
        body.writeInt32(c.assignmentEpoch)
        body.writeInt32(Int32(c.subscribedTopics.count))
        for t in c.subscribedTopics.values.sorted(by: { $0.name < $1.name }) {
            body.writeLengthString(t.name)
            body.writeBytes(t.id.bytes)
            body.writeInt32(Int32(clamping: t.partitions))
        }
        body.writeInt32(Int32(c.members.count))
        for m in c.members.values.sorted(by: { $0.memberId < $1.memberId }) {
            body.writeLengthString(m.memberId)
            body.writeLengthString(m.instanceId)
            body.writeLengthString(m.rackId)
            body.writeLengthString(m.clientId)
            body.writeLengthString(m.clientHost)
            body.writeInt32(m.rebalanceTimeoutMs)
            body.writeInt32(Int32(m.subscribedTopicNames.count))
            for n in m.subscribedTopicNames { body.writeLengthString(n) }
            body.writeLengthString(m.subscribedTopicRegex)
            body.writeLengthString(m.serverAssignor)
            body.writeInt32(m.memberEpoch)
            body.writeInt32(m.previousMemberEpoch)
            body.writeUInt8(m.state.rawValue)
            assignment(m.assigned)
            assignment(m.pendingRevocation)
            assignment(c.target[m.memberId] ?? [:])
            guard version >= 3 else { continue }
            body.writeUInt8(m.classic == nil ? 0 : 1)
            if let classic = m.classic {
                body.writeInt32(classic.sessionTimeoutMs)
                body.writeInt32(Int32(classic.protocols.count))
                for p in classic.protocols {
                    body.writeLengthString(p.name)
                    body.writeLengthBytes(p.metadata)
                }
            }
        }
    }

    static func readConsumer(_ reader: inout ByteReader, groupId: String, version: UInt16) throws -> ConsumerGroup {
        func uuid() throws -> KafkaUUID {
            guard let id = KafkaUUID(bytes: try reader.readBytes(16)) else { throw GroupStoreError.corrupt(key: "", reason: "bad topic id") }
            return id
        }
        func assignment() throws -> ConsumerAssignment {
            var a: ConsumerAssignment = [:]
            for _ in 0..<(try reader.readCount("assignment topic count")) {
                let id = try uuid()
                var ps: Set<Int32> = []
                for _ in 0..<(try reader.readCount("assignment partition count")) { ps.insert(try reader.readInt32()) }
                a[id] = ps
            }
            return a
        }
        var c = ConsumerGroup(groupId: groupId)
        c.groupEpoch = try reader.readInt32()
        c.assignmentEpoch = try reader.readInt32()
        for _ in 0..<(try reader.readCount("subscribed topic count")) {
            let name = try reader.readLengthString() ?? ""
            let id = try uuid()
            c.subscribedTopics[name] = TopicShape(name: name, id: id, partitions: Int(try reader.readInt32()))
        }
        for _ in 0..<(try reader.readCount("consumer member count")) {
            var m = ConsumerMember(memberId: try reader.readLengthString() ?? "")
            m.instanceId = try reader.readLengthString()
            m.rackId = try reader.readLengthString()
            m.clientId = try reader.readLengthString() ?? ""
            m.clientHost = try reader.readLengthString() ?? ""
            m.rebalanceTimeoutMs = try reader.readInt32()
            var names: [String] = []
            for _ in 0..<(try reader.readCount("subscribed name count")) { names.append(try reader.readLengthString() ?? "") }
            m.subscribedTopicNames = names
            m.subscribedTopicRegex = try reader.readLengthString()
            m.serverAssignor = try reader.readLengthString()
            m.memberEpoch = try reader.readInt32()
            m.previousMemberEpoch = try reader.readInt32()
            let state = try reader.readUInt8()
            guard let s = ConsumerMemberState(rawValue: state) else {
                throw GroupStoreError.corrupt(key: "", reason: "unknown consumer member state \(state)")
            }
            m.state = s
            m.assigned = try assignment()
            m.pendingRevocation = try assignment()
            c.target[m.memberId] = try assignment()
            if version >= 3 {
                switch try reader.readUInt8() {
                case 0: break
                case 1:
                    let session = try reader.readInt32()
                    var protocols: [GroupProtocol] = []
                    for _ in 0..<(try reader.readCount("classic protocol count")) {
                        protocols.append(GroupProtocol(name: try reader.readLengthString() ?? "", metadata: try reader.readLengthBytes()))
                    }
                    m.classic = ClassicMemberInfo(sessionTimeoutMs: session, protocols: protocols)
                case let flag:
                    throw GroupStoreError.corrupt(key: "", reason: "classic member flag \(flag) is neither 0 nor 1")
                }
            }
            c.members[m.memberId] = m
        }
        return c
    }
}

/// Errors of the group coordinator's storage.
public enum GroupStoreError: Error, Sendable, CustomStringConvertible {
    /// A group object failed its format or checksum check.
    case corrupt(key: String, reason: String)
    /// A group object names another group than its key says.
    case mismatchedGroup(key: String, expected: String, found: String)

    public var description: String {
        switch self {
        case .corrupt(let key, let reason): "corrupt group object '\(key)': \(reason)"
        case .mismatchedGroup(let key, let expected, let found): "group object '\(key)' holds group '\(found)', whose key is '\(expected)'"
        }
    }
}

extension ByteWriter {
    mutating func writeLengthString(_ s: String?) {
        guard let s else { writeInt32(-1); return }
        writeInt32(Int32(s.utf8.count))
        writeString(s)
    }

    mutating func writeLengthBytes(_ b: [UInt8]) {
        writeInt32(Int32(b.count))
        writeBytes(b)
    }
}

extension ByteReader {
    mutating func readLengthString() throws -> String? {
        let n = try readInt32()
        if n == -1 { return nil }
        guard n >= 0 else { throw GroupStoreError.corrupt(key: "", reason: "negative string length \(n)") }
        return try readString(Int(n))
    }

    mutating func readLengthBytes() throws -> [UInt8] {
        let n = try readInt32()
        guard n >= 0 else { throw GroupStoreError.corrupt(key: "", reason: "negative byte length \(n)") }
        return try readBytes(Int(n))
    }

    mutating func readCount(_ what: String) throws -> Int {
        let n = try readInt32()
        guard n >= 0, Int(n) <= remaining else { throw GroupStoreError.corrupt(key: "", reason: "\(what) \(n) exceeds the \(remaining) bytes left") }
        return Int(n)
    }
}
