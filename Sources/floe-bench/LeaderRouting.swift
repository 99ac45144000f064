import KafkaClient
import KafkaProtocol

// Routing of the benchmark's requests in a cluster: each partition's Produce and Fetch requests
// go to its leader (its owner on Floe, docs/cluster.md), found in a Metadata answer and corrected
// by the KIP-951 leader hints of NOT_LEADER_OR_FOLLOWER answers. Pure values here; the shell
// (`LeaderDirectory` in KafkaBenchmark.swift) asks Metadata and sends.

/// Which broker leads each partition of one topic, and where each broker listens.
///
/// Invariant: a partition's leader only moves forward in leader epoch. A Metadata answer or a
/// hint with an older epoch than the one known (from a broker that has not caught up, or a late
/// answer) is ignored; epoch -1 (unknown: Metadata before v7, a hint without an epoch) replaces
/// anything, as there is nothing to compare.
///
/// Example: Metadata lists partition 3 led by broker 1 at epoch 4. A Produce to broker 1 is
/// answered NOT_LEADER_OR_FOLLOWER with `currentLeader` (2, 5) and broker 2's endpoint:
/// `applyHint(partition: 3, leader: 2, epoch: 5, endpoints: [2: b2])` returns true and
/// `route(3)` is now broker 2 at b2. A later Metadata answer still saying (1, 4) leaves it there.
struct LeaderTable: Sendable, Equatable {
    struct Leader: Sendable, Equatable {
        var broker: Int32
        var epoch: Int32
    }

    /// Partition → leader; a partition without a leader (-1 in Metadata) has no entry.
    private(set) var leaders: [Int32: Leader] = [:]
    /// Broker id → address, from Metadata and hints' endpoints.
    private(set) var brokers: [Int32: BrokerAddress] = [:]

    /// Whether `new` may replace `old` (see the invariant).
    static func supersedes(_ new: Leader, _ old: Leader?) -> Bool {
        guard let old else { return true }
        return new.epoch < 0 || old.epoch < 0 || new.epoch >= old.epoch
    }

    /// Takes `topic`'s partitions and the brokers from a Metadata answer; returns how many
    /// partitions changed leader. A partition the answer gives no leader (-1) loses its route,
    /// unless a newer epoch is known.
    @discardableResult
    mutating func update(from metadata: ClusterMetadata, topic: String) -> Int {
        for b in metadata.brokers { brokers[b.id] = b.address }
        var changed = 0
        for p in metadata.partitions where p.topic == topic {
            let new = Leader(broker: p.leader, epoch: p.leaderEpoch)
            let old = leaders[p.partition]
            guard Self.supersedes(new, old) else { continue }
            if p.leader < 0 {
                if old != nil && (old!.epoch < 0 || p.leaderEpoch < 0 || p.leaderEpoch > old!.epoch) {
                    leaders[p.partition] = nil
                    changed += 1
                }
                continue
            }
            if old?.broker != new.broker { changed += 1 }
            leaders[p.partition] = new
        }
        return changed
    }

    /// Applies a leader hint (`leader` -1: the answer had none) with the endpoints the answer
    /// listed. Returns true when the table now routes `partition` to the hinted leader (or to a
    /// leader of a newer epoch) at a known address, so a resend needs no Metadata request.
    mutating func applyHint(partition: Int32, leader: Int32, epoch: Int32, endpoints: [Int32: BrokerAddress]) -> Bool {
        for (id, address) in endpoints { brokers[id] = address }
        guard leader >= 0 else { return false }
        let new = Leader(broker: leader, epoch: epoch)
        if Self.supersedes(new, leaders[partition]) { leaders[partition] = new }
        return route(partition) != nil
    }

    /// The leader of `partition` and its address; nil when either is unknown.
    func route(_ partition: Int32) -> (broker: Int32, address: BrokerAddress)? {
        guard let leader = leaders[partition], let address = brokers[leader.broker] else { return nil }
        return (leader.broker, address)
    }
}

/// What an answer's partition error code means for a request.
enum PartitionAnswer: Equatable {
    case accepted
    /// The partition is led elsewhere or its leader is changing: resend to the current leader
    /// (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH).
    case moved
    /// UNKNOWN_TOPIC_OR_PARTITION: in a cluster, a broker that has not yet caught up on the
    /// metadata log (a topic just created) answers this; resent after a Metadata refresh.
    case unknownPartition
    /// Any other error: counted as an error, not resent.
    case failed(KafkaErrorCode?)

    init(errorCode: Int16) {
        if errorCode == 0 {
            self = .accepted
            return
        }
        let code = KafkaErrorCode(rawValue: errorCode)
        switch code {
        case .notLeaderOrFollower, .leaderNotAvailable, .fencedLeaderEpoch, .unknownLeaderEpoch: self = .moved
        case .unknownTopicOrPartition: self = .unknownPartition
        default: self = .failed(code)
        }
    }
}

/// How a request is retried when its partition moved or its connection was lost: at most
/// `attempts` sends in all; a resend to a hinted leader goes at once, one after a Metadata
/// refresh (or to the broker that just refused) waits `baseDelay` × 2^(resends − 1), capped at
/// `maxDelay`: 50, 100, 200, 400 ms by default (the broker holds a request during a hand-over
/// for up to 2 s and answers with the new owner, so the short waits rarely happen).
struct RetryPolicy: Sendable {
    var attempts = 5
    var baseDelayMs = 50
    var maxDelayMs = 1000

    /// The wait before resend number `resend` (1 for the first resend).
    func delayMs(beforeResend resend: Int, hinted: Bool) -> Int {
        if hinted { return 0 }
        return min(maxDelayMs, baseDelayMs << min(max(resend - 1, 0), 20))
    }
}
