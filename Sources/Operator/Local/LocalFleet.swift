import Foundation
import KafkaClient
import Support

#if canImport(Glibc)
import Glibc
#endif

/// Brokers as child processes of this one, on loopback, sharing one bucket directory.
///
/// Broker `n` (node id n ≥ 1) listens for Kafka on 127.0.0.1:(kafkaPort + n − 1) and for HTTP
/// (/metrics, /readyz) on 127.0.0.1:(httpPort + n − 1), with its WAL in the bucket (`--wal object`:
/// a broker that dies is recovered by the others) and its log in `<dataDir>/logs/broker-n.log`.
/// Broker 1 therefore answers on the bootstrap address `kafkaPort` for as long as the fleet runs.
public actor LocalFleet: BrokerFleet {
    public struct Options: Sendable {
        public var brokerBinary: String
        public var dataDirectory: String
        public var kafkaPort: Int
        public var httpPort: Int
        public var extraArguments: [String]

        public init(brokerBinary: String, dataDirectory: String, kafkaPort: Int = 9092, httpPort: Int = 9192, extraArguments: [String] = []) {
            self.brokerBinary = brokerBinary
            self.dataDirectory = dataDirectory
            self.kafkaPort = kafkaPort
            self.httpPort = httpPort
            self.extraArguments = extraArguments
        }
    }

    public let options: Options
    let logger: Logger
    var processes: [Int32: Process] = [:]
    /// Brokers being stopped on purpose (not restarted when they exit).
    var stopping: Set<Int32> = []

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    public func member(_ id: Int32) -> FleetMember {
        let http = "http://127.0.0.1:\(options.httpPort + Int(id) - 1)"
        return FleetMember(
            id: id, kafka: BrokerAddress(host: "127.0.0.1", port: options.kafkaPort + Int(id) - 1),
            metricsURL: "\(http)/metrics", readyURL: "\(http)/readyz")
    }

    public func members() async -> [FleetMember] {
        for (id, p) in processes where !p.isRunning && !stopping.contains(id) {
            logger.warning("broker exited; starting it again", metadata: ["node": "\(id)", "status": "\(p.terminationStatus)"])
            processes[id] = nil
            do { try start(id) } catch { logger.error("cannot restart broker", metadata: ["node": "\(id)", "error": "\(error)"]) }
        }
        return processes.keys.sorted().map(member)
    }

    public func grow(to count: Int) async throws {
        guard count >= 1 else { return }
        for id in Int32(1)...Int32(count) where processes[id] == nil { try start(id) }
    }

    public func remove(_ ids: [Int32]) async throws {
        for id in ids.sorted(by: >) { try await stop(id) }
    }

    /// Stops every broker, highest id first, each with SIGTERM (a clean stop: it uploads its WAL
    /// and hands its partitions to the brokers still running), and waits for each.
    public func stopAll() async {
        for id in processes.keys.sorted(by: >) {
            do { try await stop(id) } catch { logger.error("stop failed", metadata: ["node": "\(id)", "error": "\(error)"]) }
        }
    }

    func start(_ id: Int32) throws {
        let logs = URL(fileURLWithPath: options.dataDirectory).appendingPathComponent("logs")
        let bucket = URL(fileURLWithPath: options.dataDirectory).appendingPathComponent("bucket")
        do {
            try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(at: bucket, withIntermediateDirectories: true)
        } catch {
            throw OperatorError.localBroker(id: id, detail: "cannot create \(logs.path): \(error)")
        }
        let logPath = logs.appendingPathComponent("broker-\(id).log").path
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        guard let log = FileHandle(forWritingAtPath: logPath) else { throw OperatorError.localBroker(id: id, detail: "cannot open \(logPath)") }
        log.seekToEndOfFile()
        let m = member(id)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: options.brokerBinary)
        p.arguments = [
            "--node-id", "\(id)", "--listen", "127.0.0.1:\(m.kafka.port)", "--http", "127.0.0.1:\(options.httpPort + Int(id) - 1)",
            "--storage", "file://\(bucket.path)", "--wal", "object",
        ] + options.extraArguments
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        // If this process dies without stopping it, the broker notices and stops (floe-broker main).
        p.environment = ProcessInfo.processInfo.environment.merging(["FLOE_EXIT_WITH_PARENT": "\(getpid())"]) { _, new in new }
        do { try p.run() } catch { throw OperatorError.localBroker(id: id, detail: "cannot start \(options.brokerBinary): \(error)") }
        processes[id] = p
        logger.notice("broker started", metadata: ["node": "\(id)", "pid": "\(p.processIdentifier)", "kafka": "127.0.0.1:\(m.kafka.port)", "log": logPath])
    }

    func stop(_ id: Int32) async throws {
        guard let p = processes[id] else { return }
        stopping.insert(id)
        defer { stopping.remove(id) }
        if p.isRunning { kill(p.processIdentifier, SIGTERM) }
        // A clean stop uploads the WAL first; allow it a minute, then kill.
        let deadline = ContinuousClock.now + .seconds(60)
        while p.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        if p.isRunning {
            logger.error("broker did not stop within 60 s; killing it", metadata: ["node": "\(id)"])
            kill(p.processIdentifier, SIGKILL)
            while p.isRunning { try? await Task.sleep(for: .milliseconds(50)) }
        }
        processes[id] = nil
        logger.notice("broker stopped", metadata: ["node": "\(id)", "status": "\(p.terminationStatus)"])
    }
}
