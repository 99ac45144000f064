import Foundation
import KafkaClient
import KafkaProtocol
import KubeAPI
import Support

/// What the guard found for a cluster whose StatefulSet is about to lose brokers.
public enum DrainVerdict: Sendable, Equatable {
    /// The leaving brokers own nothing (confirmed through Metadata): the StatefulSet may shrink.
    case drained
    /// Partitions are being moved off; check again shortly. The message says how many are left.
    case draining(String)
    /// The brokers could not be asked; keep every broker and retry.
    case unreachable(String)
}

/// Makes scale-in safe whoever lowered the replica count (the autoscaler, `kubectl scale`, an
/// HPA or KEDA writing the scale subresource): before the StatefulSet loses its highest
/// ordinals, their brokers are drained.
///
/// Each reconcile pass that sees `spec.replicas` below the StatefulSet's replicas calls
/// `drain`, which is idempotent, so an operator restarted mid-way simply carries on (the
/// state is the spec, the StatefulSet and the draining marks in the cluster's metadata):
/// 1. mark every leaving broker draining (IncrementalAlterConfigs `floe.broker.draining=true`):
///    it gets no new partitions and no group coordinators;
/// 2. read Metadata; if no partition is owned by a leaving broker, and that was already so at
///    least `confirmAfter` ago (the same verdict seen twice, as careful decommissioners do:
///    one read can be stale), the answer is `drained`;
/// 3. otherwise plan the drain (`Balancer`, drain moves only: onto the remaining brokers, fewest
///    partitions first) and request the moves (AlterPartitionReassignments); answer `draining`.
/// The reconciler keeps the StatefulSet at its current size until it hears `drained`.
public actor ScaleInGuard {
    let logger: Logger
    /// How long "owns nothing" must hold before it counts.
    public let confirmAfter: Duration
    /// When each cluster's leaving brokers were first seen owning nothing.
    private var emptySince: [String: (leaving: [Int32], at: ContinuousClock.Instant)] = [:]
    private var admins: [String: (bootstrap: [BrokerAddress], access: KafkaAccess, client: KafkaAdminClient)] = [:]

    public init(logger: Logger, confirmAfter: Duration = .seconds(1)) {
        self.logger = logger
        self.confirmAfter = confirmAfter
    }

    /// `leaving`: the node ids (pod ordinals) that go; `bootstrap`: addresses of the cluster's
    /// running brokers; `access`: the operator's TLS and SASL settings for them.
    public func drain(cluster: String, leaving: [Int32], bootstrap: [BrokerAddress], access: KafkaAccess = .plaintext) async -> DrainVerdict {
        guard !bootstrap.isEmpty else { return .unreachable("no running broker to ask") }
        do {
            let admin = try client(cluster, bootstrap, access)
            for id in leaving {
                do {
                    try await admin.setDraining(broker: id, true)
                } catch let e as KafkaClientError where e.isKafkaError(.invalidRequest) {
                    continue  // never registered: owns nothing
                }
            }
            let metadata = try await admin.metadata()
            let leavingSet = Set(leaving)
            let owned = metadata.partitions.filter { leavingSet.contains($0.leader) }
            if owned.isEmpty {
                let now = ContinuousClock.now
                if let seen = emptySince[cluster], seen.leaving == leaving, now - seen.at >= confirmAfter {
                    emptySince[cluster] = nil
                    return .drained
                }
                if emptySince[cluster]?.leaving != leaving { emptySince[cluster] = (leaving, now) }
                return .draining("broker(s) \(leaving.map(String.init).joined(separator: ", ")) own nothing; confirming")
            }
            emptySince[cluster] = nil
            let eligible = metadata.brokers.map(\.id).filter { !leavingSet.contains($0) }
            let placements = metadata.partitions.filter { $0.leader >= 0 }.map {
                PartitionPlacement(key: PartitionKey($0.topic, $0.partition), owner: $0.leader, load: 0)
            }
            var settings = BalancerSettings()
            settings.maxMoves = 0
            let plan = Balancer.plan(eligible: eligible, partitions: placements, settings: settings, now: 0)
            let moves = Dictionary(plan.moves.map { (TopicPartition(topic: $0.key.topic, partition: $0.key.partition), $0.to) }) { a, _ in a }
            if !moves.isEmpty {
                let refused = try await admin.reassign(moves).compactMap { k, e in e.map { "\(k): \($0)" } }
                if !refused.isEmpty { logger.warning("drain moves refused", metadata: ["cluster": cluster, "refused": refused.sorted().joined(separator: ", ")]) }
            }
            return .draining("draining broker(s) \(leaving.map(String.init).joined(separator: ", ")): \(owned.count) partition(s) still to move")
        } catch {
            return .unreachable("\(error)")
        }
    }

    /// Clears the draining mark of brokers that come back (a scale-out reuses the ordinals a
    /// scale-in removed, and a broker keeps its mark across registrations). Best effort.
    public func undrain(cluster: String, brokers: [Int32], bootstrap: [BrokerAddress], access: KafkaAccess = .plaintext) async {
        guard !bootstrap.isEmpty, !brokers.isEmpty else { return }
        let admin: KafkaAdminClient
        do {
            admin = try client(cluster, bootstrap, access)
        } catch {
            logger.warning("cannot clear draining marks", metadata: ["cluster": cluster, "error": "\(error)"])
            return
        }
        for id in brokers {
            do { try await admin.setDraining(broker: id, false) } catch { continue }  // not registered yet: nothing to clear
        }
    }

    private func client(_ cluster: String, _ bootstrap: [BrokerAddress], _ access: KafkaAccess) throws(OperatorError) -> KafkaAdminClient {
        if let cached = admins[cluster], cached.bootstrap == bootstrap, cached.access == access { return cached.client }
        admins[cluster]?.client.close()
        admins[cluster] = nil
        let c = try OperatorKafka.adminClient(bootstrap: bootstrap, access: access)
        admins[cluster] = (bootstrap, access, c)
        return c
    }
}

extension KafkaClientError {
    /// Whether the broker answered with this Kafka error code.
    func isKafkaError(_ code: KafkaErrorCode) -> Bool {
        if case .kafka(_, let c, _, _) = kind { return c == code.rawValue }
        return false
    }
}
