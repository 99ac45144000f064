import KafkaProtocol

/// A member as an assignor sees it: its id and the ids of the (existing) topics it subscribes to.
public struct AssignorMember: Sendable, Equatable {
    public var memberId: String
    public var instanceId: String?
    public var topics: Set<KafkaUUID>

    public init(memberId: String, instanceId: String? = nil, topics: Set<KafkaUUID>) {
        self.memberId = memberId
        self.instanceId = instanceId
        self.topics = topics
    }
}

/// The `range` server-side assignor: for each topic, its partitions are split into contiguous
/// ranges over the members subscribed to it, in member-id order; the first
/// `partitions % members` members get one more. Members with the same subscriptions thus get
/// the same partition numbers of every topic (co-partitioning).
///
/// Example: 7 partitions over members a, b, c → a: 0–2, b: 3–4, c: 5–6.
public enum RangeAssignor {
    public static func assign(members: [AssignorMember], topics: [TopicShape]) -> [String: ConsumerAssignment] {
        var out: [String: ConsumerAssignment] = [:]
        for m in members { out[m.memberId] = [:] }
        for topic in topics.sorted(by: { $0.name < $1.name }) {
            let subscribers = members.filter { $0.topics.contains(topic.id) }.map(\.memberId).sorted()
            guard !subscribers.isEmpty, topic.partitions > 0 else { continue }
            let per = topic.partitions / subscribers.count, extra = topic.partitions % subscribers.count
            var start = 0
            for (i, id) in subscribers.enumerated() {
                let count = per + (i < extra ? 1 : 0)
                if count > 0 { out[id]![topic.id] = Set((start..<start + count).map { Int32($0) }) }
                start += count
            }
        }
        return out
    }
}

/// The `uniform` server-side assignor (Kafka's default): balanced and sticky.
///
/// 1. Every member keeps the partitions of its previous target that still exist and that it
///    still subscribes to (each partition kept by one member at most).
/// 2. Partitions nobody kept go, in (topic name, partition) order, to the least-loaded member
///    subscribed to their topic (ties: member id).
/// 3. While some partition's owner has at least two more partitions than another member
///    subscribed to its topic, it moves to the least-loaded such member.
///
/// With identical subscriptions the loads then differ by at most one, and a member joining or
/// leaving moves only the partitions that must move.
public enum UniformAssignor {
    public static func assign(members: [AssignorMember], topics: [TopicShape],
                              previous: [String: ConsumerAssignment]) -> [String: ConsumerAssignment] {
        var out: [String: ConsumerAssignment] = [:]
        var load: [String: Int] = [:]
        for m in members { out[m.memberId] = [:]; load[m.memberId] = 0 }
        let ordered = members.sorted { $0.memberId < $1.memberId }
        let shapes = Dictionary(topics.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var eligible: [KafkaUUID: [String]] = [:]
        for t in topics { eligible[t.id] = ordered.filter { $0.topics.contains(t.id) }.map(\.memberId) }
        var owner: [KafkaUUID: [Int32: String]] = [:]

        func give(_ t: KafkaUUID, _ p: Int32, to id: String) {
            out[id]![t, default: []].insert(p)
            owner[t, default: [:]][p] = id
            load[id]! += 1
        }
        func take(_ t: KafkaUUID, _ p: Int32, from id: String) {
            out[id]![t]!.remove(p)
            if out[id]![t]!.isEmpty { out[id]![t] = nil }
            owner[t]![p] = nil
            load[id]! -= 1
        }
        func leastLoaded(_ t: KafkaUUID) -> String? {
            eligible[t]?.min { (load[$0]!, $0) < (load[$1]!, $1) }
        }

        // 1. Stickiness.
        for m in ordered {
            guard let before = previous[m.memberId] else { continue }
            for (t, ps) in before.sorted(by: { (shapes[$0.key]?.name ?? "") < (shapes[$1.key]?.name ?? "") }) {
                guard m.topics.contains(t), let shape = shapes[t] else { continue }
                for p in ps.sorted() where p >= 0 && Int(p) < shape.partitions && owner[t]?[p] == nil { give(t, p, to: m.memberId) }
            }
        }
        // 2. Unassigned partitions.
        for t in topics.sorted(by: { $0.name < $1.name }) {
            for p in 0..<Int32(clamping: t.partitions) where owner[t.id]?[p] == nil {
                if let id = leastLoaded(t.id) { give(t.id, p, to: id) }
            }
        }
        // 3. Balance: move from the most loaded members while a move narrows the gap.
        var stuck: Set<String> = []
        while let a = ordered.map(\.memberId).filter({ !stuck.contains($0) }).max(by: { (load[$0]!, $1) < (load[$1]!, $0) }) {
            var moved = false
            let mine = out[a]!.flatMap { t, ps in ps.map { (t, $0) } }
                .sorted { ((shapes[$0.0]?.name ?? ""), $0.1) > ((shapes[$1.0]?.name ?? ""), $1.1) }
            for (t, p) in mine {
                if let b = leastLoaded(t), load[b]! + 1 < load[a]! {
                    take(t, p, from: a)
                    give(t, p, to: b)
                    moved = true
                    break
                }
            }
            if moved { stuck = [] } else { stuck.insert(a) }
        }
        return out
    }
}
