import Foundation
import KafkaClient
import SASL
import Support
import Synchronization

/// The security part of a broker's settings: each listener's protocol, the SASL authenticator's
/// settings, the bootstrap users file and the identity of the broker's own client connections.
struct SecuritySetup: Sendable {
    var internalProtocol: SecurityProtocol
    var externalProtocol: SecurityProtocol
    var authenticator = SaslAuthenticator.Settings()
    /// `sasl.users.file` (nil: none).
    var usersFile: String?
    /// How the broker authenticates to other brokers (nil: the internal listener does not use SASL).
    var interBroker: KafkaClientSASL?

    init(_ config: BrokerConfig) throws {
        internalProtocol = try config.securityProtocol(.internal)
        externalProtocol = try config.securityProtocol(.external)
        authenticator.enabledMechanisms = (config["sasl.enabled.mechanisms"] ?? "").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }.filter { !$0.isEmpty }
        let reauth = try config.int("connections.max.reauth.ms")
        authenticator.reauthentication = reauth > 0 ? .milliseconds(Int64(reauth)) : nil
        authenticator.failureDelay = .milliseconds(Int64(try config.int("connection.failed.authentication.delay.ms")))
        authenticator.maxFailures = try config.int("connection.failed.authentication.max")
        let path = config["sasl.users.file"] ?? ""
        usersFile = path.isEmpty ? nil : path
        if let path = usersFile { _ = try Self.readUsers(path) }  // a bad file fails the start, naming the line
        if internalProtocol.usesSASL {
            let user = config["inter.broker.user"] ?? ""
            guard !user.isEmpty, let path = usersFile else {
                throw BrokerError.configuration("security.protocol=\(internalProtocol.rawValue) needs inter.broker.user, listed in sasl.users.file")
            }
            guard let entry = try Self.readUsers(path).first(where: { $0.name == user }) else {
                throw BrokerError.configuration("inter.broker.user=\(user) is not listed in sasl.users.file \(path)")
            }
            interBroker = KafkaClientSASL(mechanism: .scramSHA512, username: user, password: entry.password)
        }
    }

    static func readUsers(_ path: String) throws -> [(name: String, password: String)] {
        try SaslUsersFile.parse(try readText(path), path: path)
    }

    static func readText(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else { throw BrokerError.configuration("sasl.users.file \(path): cannot be read") }
        guard let text = String(data: data, encoding: .utf8) else { throw BrokerError.configuration("sasl.users.file \(path): not UTF-8") }
        return text
    }
}

/// Keeps the users of `sasl.users.file` in the cluster metadata: on the controller, whenever
/// the file's contents or the controller epoch changed since the last successful pass, every
/// listed user gets SCRAM-SHA-256/512 credentials matching its password (`ensureScramUsers`).
/// Passwords are never logged; only user names.
final class SaslUsersFileWatcher: Sendable {
    let path: String
    let registry: TopicRegistry
    let isController: @Sendable () -> Bool
    let logger: Logger
    let interval: Duration
    private let applied = Mutex<(digest: [UInt8], epoch: UInt64)?>(nil)

    init(path: String, registry: TopicRegistry, isController: @escaping @Sendable () -> Bool, logger: Logger, interval: Duration = .seconds(1)) {
        self.path = path
        self.registry = registry
        self.isController = isController
        self.logger = logger
        self.interval = interval
    }

    /// One pass; does nothing on a broker that is not the controller.
    func applyIfNeeded() async throws {
        guard isController(), let epoch = registry.controllerEpoch else { return }
        let text = try SecuritySetup.readText(path)
        let digest = ScramMechanism.sha256.hash(Array(text.utf8))
        if let last = applied.withLock({ $0 }), last.digest == digest, last.epoch == epoch { return }
        let users = try SaslUsersFile.parse(text, path: path)
        let written = try await registry.ensureScramUsers(users)
        applied.withLock { $0 = (digest, epoch) }
        if !written.isEmpty {
            logger.info("SCRAM credentials written from sasl.users.file", metadata: ["users": written.joined(separator: ","), "file": path])
        }
    }

    /// Passes once per `interval`. The file is read every second, so a failing pass is logged
    /// through a rate limiter (one warning per `repeatWarningEvery`, then a count of the ones
    /// suppressed); recovery is logged once.
    func run(repeatWarningEvery: Duration = .seconds(60)) async {
        let warnings = RateLimitedLogger(logger, limiter: LogRateLimiter(burst: 1, interval: repeatWarningEvery))
        var failing = false
        while !Task.isCancelled {
            do {
                try await applyIfNeeded()
                if failing {
                    warnings.flush(includingOpen: true)
                    logger.info("sasl.users.file applied again", metadata: ["file": path])
                    failing = false
                }
            } catch is CancellationError {
                return
            } catch {
                warnings.warning("sasl.users.file not applied", metadata: ["file": path, "error": "\(error)"])
                failing = true
            }
            do { try await Task.sleep(for: interval) } catch { return }
        }
    }
}
