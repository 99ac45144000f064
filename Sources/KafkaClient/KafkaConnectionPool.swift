import Synchronization

/// Connections by "host:port", one per peer, reconnecting a closed one on next use (and, with
/// SASL, one whose session is ending: `KafkaConnection.sessionEnding`).
///
/// Invariants: at most one connect per address is in flight (concurrent callers share it); a
/// failed connect is not remembered (the next call tries again); `closeAll()` closes every
/// connection, and a connect still in flight then is closed when it completes (its callers get
/// `.closed`).
public final class KafkaConnectionPool: Sendable {
    public let clientId: String
    public let connectTimeout: Duration
    /// SASL authentication done on each new connection (nil: none).
    public let sasl: KafkaClientSASL?
    /// TLS for every connection (nil: plaintext).
    public let tls: KafkaClientTLS?

    private enum Entry {
        case connecting(generation: UInt64, Task<KafkaConnection, any Error>)
        case ready(KafkaConnection)
    }

    private struct State {
        var entries: [String: Entry] = [:]
        var nextGeneration: UInt64 = 0
    }

    private let state = Mutex(State())

    public init(clientId: String = "floe", connectTimeout: Duration = .seconds(5), tls: KafkaClientTLS? = nil, sasl: KafkaClientSASL? = nil) {
        self.sasl = sasl
        self.clientId = clientId
        self.tls = tls
        self.connectTimeout = connectTimeout
    }

    deinit { closeAll() }

    /// The open connection to `host:port`, connecting when there is none or it closed.
    public func connection(host: String, port: Int) async throws -> KafkaConnection {
        let key = SocketConnect.address(host: host, port: port)
        let lookup = state.withLock { s -> Entry in
            switch s.entries[key] {
            case let .ready(connection) where !connection.isClosed && !connection.sessionEnding():
                return .ready(connection)
            case let .connecting(generation, task):
                return .connecting(generation: generation, task)
            default:
                s.nextGeneration += 1
                let clientId = self.clientId
                let timeout = connectTimeout
                let tls = self.tls
                let sasl = self.sasl
                let task = Task {
                    try await KafkaConnection.connect(host: host, port: port, clientId: clientId, timeout: timeout, tls: tls, sasl: sasl)
                }
                s.entries[key] = .connecting(generation: s.nextGeneration, task)
                return .connecting(generation: s.nextGeneration, task)
            }
        }
        let generation: UInt64
        let connecting: Task<KafkaConnection, any Error>
        switch lookup {
        case let .ready(connection): return connection
        case let .connecting(g, task): (generation, connecting) = (g, task)
        }
        let connection: KafkaConnection
        do {
            connection = try await connecting.value
        } catch {
            state.withLock { s in
                if case let .connecting(g, _) = s.entries[key], g == generation { s.entries[key] = nil }
            }
            throw error
        }
        let kept = state.withLock { s -> Bool in
            switch s.entries[key] {
            case let .connecting(g, _) where g == generation:
                s.entries[key] = .ready(connection)
                return true
            case let .ready(other):
                return other === connection
            default:
                return false
            }
        }
        guard kept else {
            connection.close()
            throw KafkaClientError(address: key, kind: .closed(reason: "the pool was closed while connecting"))
        }
        return connection
    }

    /// Closes every connection; later calls to `connection` connect afresh.
    public func closeAll() {
        let entries = state.withLock { s -> [String: Entry] in
            let all = s.entries
            s.entries = [:]
            return all
        }
        for case let .ready(connection) in entries.values {
            connection.close()
        }
    }
}
