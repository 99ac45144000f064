import KafkaClient

/// A broker the fleet runs, as the elasticity controller sees it.
public struct FleetMember: Sendable, Equatable {
    /// The broker's node id.
    public var id: Int32
    /// Where Kafka clients (and the admin client) reach it.
    public var kafka: BrokerAddress
    /// Its `/metrics` (Prometheus text).
    public var metricsURL: String
    /// Its `/readyz`.
    public var readyURL: String

    public init(id: Int32, kafka: BrokerAddress, metricsURL: String, readyURL: String) {
        self.id = id
        self.kafka = kafka
        self.metricsURL = metricsURL
        self.readyURL = readyURL
    }
}

/// Where brokers come from: child processes on this machine (`LocalFleet`), or pods of a
/// StatefulSet. Node ids are 1…count, and scaling in always removes the highest ids (the
/// StatefulSet's order), so the fleet is described by its count.
public protocol BrokerFleet: Sendable {
    /// The brokers that run now (started; maybe not ready yet), by id.
    func members() async -> [FleetMember]
    /// Starts brokers until ids 1…count all run. Returns once they are started, not ready.
    func grow(to count: Int) async throws
    /// Stops brokers `ids` (the caller has drained them: they own nothing) and waits until they are gone.
    func remove(_ ids: [Int32]) async throws
}
