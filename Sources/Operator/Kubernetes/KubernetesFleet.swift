import Foundation
import KafkaClient
import KubeAPI
import Support

/// A FloeCluster's brokers as the elasticity controller sees them: the running pods of its
/// StatefulSet (node id = pod ordinal), reached at their pod IPs. Growing or shrinking writes
/// the FloeCluster's scale subresource; the reconciler does the rest (and, when shrinking,
/// holds the StatefulSet until the leaving brokers own nothing: `ScaleInGuard`).
public struct KubernetesFleet: BrokerFleet {
    let client: KubeClient
    let caches: ClusterCaches
    let names: ClusterNames
    let kafkaPort: Int
    let httpPort: Int
    /// Reach brokers by their DNS names (a TLS internal listener) instead of pod IPs.
    var dnsNames = false

    public func members() async -> [FleetMember] {
        caches.brokerPods(names).compactMap { pod -> FleetMember? in
            guard pod.metadata.deletionTimestamp == nil, pod.status?.phase == "Running", let ip = pod.status?.podIP,
                  let id = Self.ordinal(pod)
            else { return nil }
            return FleetMember(
                id: id, kafka: BrokerAddress(host: dnsNames ? "\(pod.metadata.name ?? "").\(names.headlessService).\(names.namespace).svc" : ip, port: kafkaPort), metricsURL: "http://\(ip):\(httpPort)/metrics",
                readyURL: "http://\(ip):\(httpPort)/readyz")
        }.sorted { $0.id < $1.id }
    }

    public func grow(to count: Int) async throws {
        try await setReplicas(Int32(count), onlyIf: { $0 < Int32(count) })
    }

    public func remove(_ ids: [Int32]) async throws {
        guard let lowest = ids.min() else { return }
        try await setReplicas(lowest, onlyIf: { $0 > lowest })
    }

    private func setReplicas(_ n: Int32, onlyIf: (Int32) -> Bool) async throws {
        var scale = try await client.getScale(FloeCluster.self, namespace: names.namespace, name: names.cluster)
        guard onlyIf(scale.spec?.replicas ?? 0) else { return }
        scale.spec = ScaleSpec(replicas: n)
        _ = try await client.updateScale(FloeCluster.self, scale)
    }

    /// The pod's ordinal: the `apps.kubernetes.io/pod-index` label, else the name's last number.
    static func ordinal(_ pod: Pod) -> Int32? {
        if let index = pod.metadata.labels?["apps.kubernetes.io/pod-index"], let n = Int32(index) { return n }
        return pod.metadata.name?.split(separator: "-").last.flatMap { Int32($0) }
    }
}
