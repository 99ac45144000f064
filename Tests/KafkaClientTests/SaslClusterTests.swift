import Broker
import FloeTestSupport
import Foundation
import KafkaClient
import KafkaProtocol
import ObjectStore
import SASL
import Support
import Testing

/// SASL_PLAINTEXT brokers sharing one bucket: brokers authenticate to each other as
/// `inter.broker.user`, users made through one broker log in on another and after a restart
/// (their credentials are in the bucket's metadata), and KafkaClientSASL logs in or fails with
/// Kafka's error.
@Suite struct SaslClusterTests {
    static let admin = KafkaClientSASL(mechanism: .scramSHA512, username: "admin", password: "admin-secret")

    static func usersFile() throws -> String {
        let path = NSTemporaryDirectory() + "floe-sasl-users-\(UUID().uuidString)"
        try "# bootstrap\nadmin:admin-secret\n".write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func start(node: Int, store: MemoryObjectStore, users: String, extra: [String: String] = [:],
                      logger: Logger = .discarding) async throws -> TestBroker {
        var config = BrokerConfig()
        config.set("listen", "127.0.0.1:0", .flag)
        config.set("node.id", "\(node)", .flag)
        config.set("security.protocol", "SASL_PLAINTEXT", .flag)
        config.set("sasl.users.file", users, .flag)
        config.set("inter.broker.user", "admin", .flag)
        config.set("connection.failed.authentication.delay.ms", "0", .flag)
        for (k, v) in extra { config.set(k, v, .flag) }
        let broker = try await Broker.start(settings: .init(config: config), store: store, storage: MemoryLogStorage(), logger: logger)
        return TestBroker(broker: broker, task: Task { try await broker.run() })
    }

    func connect(_ b: TestBroker, _ sasl: KafkaClientSASL?) async throws -> KafkaConnection {
        try await KafkaConnection.connect(host: "127.0.0.1", port: b.port, timeout: .seconds(30), sasl: sasl)  // generous: many tests run at once
    }

    func metadata(_ c: KafkaConnection) async throws -> MetadataResponse {
        try await c.send(MetadataRequest(topics: []), version: 12, expecting: MetadataResponse.self)
    }

    @Test func usersAreClusterMetadata() async throws {
        let users = try Self.usersFile()
        defer { try? FileManager.default.removeItem(atPath: users) }
        let store = MemoryObjectStore(name: "sasl-cluster")
        let first = try await Self.start(node: 1, store: store, users: users)

        // Before authenticating, only ApiVersions and the SASL APIs are served.
        let anonymous = try await connect(first, nil)
        _ = try await anonymous.send(ApiVersionsRequest(), version: 0, expecting: ApiVersionsResponse.self)
        await #expect(throws: KafkaClientError.self) { _ = try await metadata(anonymous) }

        // The bootstrap admin creates dave (SCRAM-SHA-256) through broker 1.
        let admin = try await connect(first, Self.admin)
        let salt = secureRandomBytes(16)
        let salted = ScramMechanism.sha256.saltedPassword("dave-pw", salt: salt, iterations: 4096)
        let alter = try await admin.send(AlterUserScramCredentialsRequest(
            deletions: [.init(name: "nobody", mechanism: 2)],
            upsertions: [.init(name: "dave", mechanism: 1, iterations: 4096, salt: salt, saltedPassword: salted),
                         .init(name: "eve", mechanism: 1, iterations: 100, salt: salt, saltedPassword: salted),
                         .init(name: "frank", mechanism: 9, iterations: 4096, salt: salt, saltedPassword: salted)]),
            version: 0, expecting: AlterUserScramCredentialsResponse.self)
        let codes = Dictionary(uniqueKeysWithValues: alter.results.map { ($0.user, $0.errorCode) })
        #expect(codes == ["nobody": KafkaErrorCode.resourceNotFound.rawValue, "dave": 0,
                          "eve": KafkaErrorCode.unacceptableCredential.rawValue, "frank": KafkaErrorCode.unsupportedSaslMechanism.rawValue])

        // A second broker on the same bucket joins (authenticating as inter.broker.user) and accepts dave.
        let second = try await Self.start(node: 2, store: store, users: users)
        for mechanism in [KafkaClientSASL.Mechanism.scramSHA256, .plain] {
            let dave = try await connect(second, KafkaClientSASL(mechanism: mechanism, username: "dave", password: "dave-pw"))
            #expect(try await metadata(dave).brokers.count == 2)
            dave.close()
        }
        let described = try await connect(second, Self.admin).send(
            DescribeUserScramCredentialsRequest(users: nil), version: 0, expecting: DescribeUserScramCredentialsResponse.self)
        #expect(described.results.map(\.user) == ["admin", "dave"])
        #expect(described.results.last?.credentialInfos == [.init(mechanism: 1, iterations: 4096)])

        // Wrong password, unknown user, a mechanism dave has no credential for: Kafka's error 58.
        for sasl in [KafkaClientSASL(mechanism: .scramSHA256, username: "dave", password: "nope"),
                     KafkaClientSASL(mechanism: .scramSHA512, username: "dave", password: "dave-pw"),
                     KafkaClientSASL(mechanism: .plain, username: "zed", password: "dave-pw")] {
            do {
                _ = try await connect(second, sasl)
                Issue.record("\(sasl) logged in")
            } catch let e as KafkaClientError {
                guard case let .kafka(api, code, _, _) = e.kind else { Issue.record("unexpected \(e)"); continue }
                #expect(api == .saslAuthenticate && code == KafkaErrorCode.saslAuthenticationFailed.rawValue, "\(sasl)")
            }
        }

        // Restart both on the same bucket: dave (not in the users file) still logs in.
        try await second.stop()
        try await first.stop()
        let again = try await Self.start(node: 1, store: store, users: users)
        let dave = try await connect(again, KafkaClientSASL(mechanism: .scramSHA256, username: "dave", password: "dave-pw"))
        #expect(try await metadata(dave).brokers.contains { $0.nodeId == 1 })
        dave.close()
        try await again.stop()
    }

    @Test func usersFileChangesAreApplied() async throws {
        let users = try Self.usersFile()
        defer { try? FileManager.default.removeItem(atPath: users) }
        let broker = try await Self.start(node: 1, store: MemoryObjectStore(name: "sasl-file"), users: users)
        try "admin:admin-secret\ngrace:grace-pw\n".write(toFile: users, atomically: true, encoding: .utf8)
        // The watcher re-reads the file about every second; wait (bounded, generously: many tests run at once) for grace to exist.
        var loggedIn = false
        for _ in 0..<300 where !loggedIn {
            do {
                let c = try await connect(broker, KafkaClientSASL(mechanism: .scramSHA512, username: "grace", password: "grace-pw"))
                c.close()
                loggedIn = true
            } catch {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(loggedIn, "grace could not log in within 30 s of being added to sasl.users.file")
        try await broker.stop()
    }

    /// The watcher reads the file every second; a bad file is warned about once (not once a
    /// second), and its repair is logged once.
    @Test func aBadUsersFileIsWarnedAboutOnceNotEverySecond() async throws {
        let users = try Self.usersFile()
        defer { try? FileManager.default.removeItem(atPath: users) }
        let sink = CollectingLogSink()
        let broker = try await Self.start(node: 1, store: MemoryObjectStore(name: "sasl-bad-file"), users: users,
                                          logger: Logger(label: "broker", level: .info, sink: sink))
        func count(_ message: String) -> Int { sink.records.filter { $0.message == message }.count }
        try "admin:admin-secret\nno password on this line\n".write(toFile: users, atomically: true, encoding: .utf8)
        var seen = false
        for _ in 0..<300 where !seen {  // bounded: 30 s
            seen = count("sasl.users.file not applied") > 0
            if !seen { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(seen, "no warning within 30 s of the users file becoming unparsable")
        // At least three more passes over the same bad file (one a second) log nothing more.
        try await Task.sleep(for: .milliseconds(3500))
        #expect(count("sasl.users.file not applied") == 1, "warnings: \(sink.records.filter { $0.level == .warning }.map(\.formatted))")
        try "admin:admin-secret\n".write(toFile: users, atomically: true, encoding: .utf8)
        var repaired = false
        for _ in 0..<300 where !repaired {
            repaired = count("sasl.users.file applied again") == 1
            if !repaired { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(repaired, "the repaired file was not reported within 30 s")
        #expect(count("suppressed similar messages") == 1, "the suppressed warnings were not counted once")
        try await broker.stop()
    }

    /// KIP-368 on the client side: the announced lifetime sets when the pool replaces the connection.
    @Test func sessionLifetimeIsNoted() async throws {
        let users = try Self.usersFile()
        defer { try? FileManager.default.removeItem(atPath: users) }
        let broker = try await Self.start(node: 1, store: MemoryObjectStore(name: "sasl-reauth"), users: users,
                                          extra: ["connections.max.reauth.ms": "60000"])
        let before = ContinuousClock.now
        let c = try await connect(broker, Self.admin)
        let renewal = try #require(c.sessionRenewal, "no session lifetime noted")
        #expect(renewal >= before + .seconds(51) && renewal <= ContinuousClock.now + .seconds(51))
        #expect(!c.sessionEnding(at: renewal - .milliseconds(1)) && c.sessionEnding(at: renewal))
        c.close()
        // Without a lifetime, nothing is noted.
        let plainUsers = try Self.usersFile()
        defer { try? FileManager.default.removeItem(atPath: plainUsers) }
        let other = try await Self.start(node: 1, store: MemoryObjectStore(name: "sasl-no-reauth"), users: plainUsers)
        let d = try await connect(other, Self.admin)
        #expect(d.sessionRenewal == nil && !d.sessionEnding(at: .now + .seconds(3600)))
        d.close()
        try await other.stop()
        try await broker.stop()
    }
}
