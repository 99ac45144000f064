import Bytes
import Foundation
import FloeTestSupport
import KafkaClient
import KafkaProtocol
import SASL
import Support
import Synchronization
import Testing
@testable import Broker

/// The SASL handlers and the gate, driven through the router with one SASL_PLAINTEXT session.
@Suite struct SaslAuthenticatorTests {
    static let salt: [UInt8] = Array(0..<16)
    static let alice256 = ScramCredential(mechanism: .sha256, password: "alice-secret", salt: salt, iterations: 4096)
    static let alice512 = ScramCredential(mechanism: .sha512, password: "alice-secret", salt: salt, iterations: 4096)
    static let bob512 = ScramCredential(mechanism: .sha512, password: "bob-secret", salt: salt, iterations: 4096)
    static let bob256 = ScramCredential(mechanism: .sha256, password: "bob-secret", salt: salt, iterations: 4096)

    /// A router with the SASL handlers and a Metadata handler that answers (to tell served from closed).
    struct Fixture {
        let authenticator: SaslAuthenticator
        let router: KafkaRouter
        let metrics = MetricsRegistry()
        let session = ConnectionSession(securityProtocol: .saslPlaintext)
        var connection: ConnectionInfo { ConnectionInfo(id: 7, peer: "test", session: session) }

        init(settings: SaslAuthenticator.Settings = Fixture.defaults, now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }) {
            let metrics = self.metrics
            authenticator = SaslAuthenticator(settings: settings, credential: { user, m in
                switch (user, m) {
                case ("alice", .sha256): SaslAuthenticatorTests.alice256
                case ("alice", .sha512): SaslAuthenticatorTests.alice512
                case ("bob", .sha512): SaslAuthenticatorTests.bob512
                case ("bob", .sha256): SaslAuthenticatorTests.bob256
                default: nil
                }
            }, metrics: metrics, now: now)
            let authenticator = self.authenticator
            router = KafkaRouter(handlers: authenticator.handlers + [AnswerMetadata()], rawToken: { await authenticator.rawToken($0) })
        }

        static var defaults: SaslAuthenticator.Settings {
            var s = SaslAuthenticator.Settings()
            s.failureDelay = .zero
            return s
        }

        func send<M: KafkaMessage>(_ request: M, version: Int16) async -> HandlerResult {
            var w = ByteWriter()
            let header = RequestHeader(requestApiKey: M.apiKey, requestApiVersion: version, correlationId: 3, clientId: "t")
            let api = ApiKey(rawValue: M.apiKey)!
            try! header.encode(to: &w, version: api.requestHeaderVersion(apiVersion: version))
            try! request.encode(to: &w, version: version)
            return await router.handle(ServerRequest(bytes: w.take(), connection: connection, seq: 0))
        }

        /// A bare frame (a SASL token after SaslHandshake v0).
        func raw(_ bytes: [UInt8]) async -> HandlerResult {
            await router.handle(ServerRequest(bytes: bytes, connection: connection, seq: 0))
        }

        func call<M: KafkaMessage, R: KafkaMessage>(_ request: M, version: Int16, _ type: R.Type,
                                                    sourceLocation: SourceLocation = #_sourceLocation) async throws -> R {
            let bytes = try requireCase(await send(request, version: version), "a response", sourceLocation: sourceLocation) { $0.respondBytes }
            var reader = ByteReader(bytes)
            let api = ApiKey(rawValue: M.apiKey)!
            _ = try ResponseHeader(from: &reader, version: api.responseHeaderVersion(apiVersion: version))
            return try R(from: &reader, version: version)
        }

        /// SCRAM login; returns the final SaslAuthenticate response.
        func scram(_ mechanism: ScramMechanism, user: String, password: String) async throws -> SaslAuthenticateResponse {
            let h = try await call(SaslHandshakeRequest(mechanism: mechanism.rawValue), version: 1, SaslHandshakeResponse.self)
            #expect(h.errorCode == 0)
            var client = ScramClientExchange(mechanism: mechanism, user: user, password: password)
            let first = try await call(SaslAuthenticateRequest(authBytes: client.firstMessage()), version: 2, SaslAuthenticateResponse.self)
            if first.errorCode != 0 { return first }
            let final = try await call(SaslAuthenticateRequest(authBytes: client.finalMessage(serverFirst: first.authBytes)), version: 2,
                                       SaslAuthenticateResponse.self)
            if final.errorCode == 0 { try client.verify(serverFinal: final.authBytes) }
            return final
        }

        func plain(user: String, password: String) async throws -> SaslAuthenticateResponse {
            let h = try await call(SaslHandshakeRequest(mechanism: "PLAIN"), version: 1, SaslHandshakeResponse.self)
            #expect(h.errorCode == 0)
            return try await call(SaslAuthenticateRequest(authBytes: PlainMechanism.message(user: user, password: password)), version: 1,
                                  SaslAuthenticateResponse.self)
        }

        func metadataServed() async -> Bool { await send(MetadataRequest(topics: []), version: 12).respondBytes != nil }
    }

    struct AnswerMetadata: ApiHandler {
        let apiKey = ApiKey.metadata
        let versions: ClosedRange<Int16> = 0...12
        func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult { .response(.metadata(MetadataResponse())) }
    }

    @Test func requestsBeforeAuthenticationCloseTheConnection() async throws {
        let f = Fixture()
        // ApiVersions is allowed; Metadata is not.
        _ = try await f.call(ApiVersionsRequest(), version: 0, ApiVersionsResponse.self)
        _ = try requireCase(await f.send(MetadataRequest(topics: []), version: 12), "close") { $0.closes }
        #expect(f.session.principal == .anonymous)
    }

    @Test(arguments: ScramMechanism.allCases) func scramLogin(mechanism: ScramMechanism) async throws {
        let f = Fixture()
        let r = try await f.scram(mechanism, user: "alice", password: "alice-secret")
        #expect(r.errorCode == 0)
        #expect(f.session.principal == KafkaPrincipal(name: "alice"))
        #expect(await f.metadataServed())
        #expect(f.metrics.render().contains("floe_broker_sasl_authentications_total{mechanism=\"\(mechanism.rawValue)\",result=\"success\"} 1"))
    }

    @Test func wrongPasswordAndUnknownUserFailAlike() async throws {
        for (user, password) in [("alice", "nope"), ("mallory", "x")] {
            let f = Fixture()
            let r = try await f.scram(.sha512, user: user, password: password)
            #expect(r.errorCode == KafkaErrorCode.saslAuthenticationFailed.rawValue)
            #expect(r.errorMessage == "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512")
            #expect(r.errorMessage?.contains(password) == false)
            #expect(!f.session.authenticated)
            _ = try requireCase(await f.send(MetadataRequest(topics: []), version: 12), "close after a failed login") { $0.closes }
        }
    }

    @Test func plainChecksThePasswordAgainstTheScramCredential() async throws {
        let good = Fixture()
        #expect(try await good.plain(user: "bob", password: "bob-secret").errorCode == 0)
        #expect(good.session.principal == KafkaPrincipal(name: "bob"))
        let bad = Fixture()
        #expect(try await bad.plain(user: "bob", password: "alice-secret").errorCode == KafkaErrorCode.saslAuthenticationFailed.rawValue)
        #expect(!bad.session.authenticated)
    }

    @Test func disabledMechanismIsRefused() async throws {
        var settings = Fixture.defaults
        settings.enabledMechanisms = ["SCRAM-SHA-512"]
        let f = Fixture(settings: settings)
        let h = try await f.call(SaslHandshakeRequest(mechanism: "PLAIN"), version: 1, SaslHandshakeResponse.self)
        #expect(h.errorCode == KafkaErrorCode.unsupportedSaslMechanism.rawValue)
        #expect(h.mechanisms == ["SCRAM-SHA-512"])
        // SaslAuthenticate without a handshake.
        let a = try await f.call(SaslAuthenticateRequest(authBytes: [1]), version: 1, SaslAuthenticateResponse.self)
        #expect(a.errorCode == KafkaErrorCode.illegalSaslState.rawValue)
    }

    /// The SaslHandshake v0 flow: the tokens travel as bare frames, the answers too; then the
    /// connection is an ordinary authenticated one. A wrong token closes the connection.
    @Test func v0HandshakeCarriesRawTokens() async throws {
        let f = Fixture()
        let h = try await f.call(SaslHandshakeRequest(mechanism: "SCRAM-SHA-256"), version: 0, SaslHandshakeResponse.self)
        #expect(h.errorCode == 0)
        var client = ScramClientExchange(mechanism: .sha256, user: "alice", password: "alice-secret")
        let serverFirst = try requireCase(await f.raw(client.firstMessage()), "server-first") { $0.respondBytes }
        let serverFinal = try requireCase(await f.raw(try client.finalMessage(serverFirst: serverFirst)), "server-final") { $0.respondBytes }
        try client.verify(serverFinal: serverFinal)
        #expect(f.session.principal == KafkaPrincipal(name: "alice") && !f.session.snapshot.rawTokens)
        #expect(await f.metadataServed())  // Kafka requests again after the exchange

        let plain = Fixture()
        #expect(try await plain.call(SaslHandshakeRequest(mechanism: "PLAIN"), version: 0, SaslHandshakeResponse.self).errorCode == 0)
        #expect(try requireCase(await plain.raw(PlainMechanism.message(user: "bob", password: "bob-secret")), "empty answer") { $0.respondBytes } == [])
        #expect(plain.session.principal == KafkaPrincipal(name: "bob"))

        let bad = Fixture()
        #expect(try await bad.call(SaslHandshakeRequest(mechanism: "PLAIN"), version: 0, SaslHandshakeResponse.self).errorCode == 0)
        _ = try requireCase(await bad.raw(PlainMechanism.message(user: "bob", password: "nope")), "close") { $0.closes }
        #expect(!bad.session.authenticated)
    }

    @Test func repeatedFailuresCloseTheConnection() async throws {
        let f = Fixture()  // maxFailures 3
        for _ in 0..<3 {
            #expect(try await f.plain(user: "alice", password: "guess").errorCode == KafkaErrorCode.saslAuthenticationFailed.rawValue)
        }
        _ = try requireCase(await f.send(SaslHandshakeRequest(mechanism: "PLAIN"), version: 1), "close after three failures") { $0.closes }
        #expect(f.metrics.render().contains("floe_broker_sasl_authentications_total{mechanism=\"PLAIN\",result=\"failure\"} 3"))
    }

    @Test func failureAnswerIsDelayed() async throws {
        var settings = Fixture.defaults
        settings.failureDelay = .milliseconds(1)
        let f = Fixture(settings: settings)
        _ = try await f.call(SaslHandshakeRequest(mechanism: "PLAIN"), version: 1, SaslHandshakeResponse.self)
        let context = RequestContext(connection: f.connection,
                                     header: RequestHeader(requestApiKey: 36, requestApiVersion: 1, correlationId: 1, clientId: "t"),
                                     apiKey: .saslAuthenticate)
        let result = await f.authenticator.authenticate(SaslAuthenticateRequest(authBytes: PlainMechanism.message(user: "alice", password: "x")),
                                                        context: context)
        let answer = try requireCase(result, "a deferred (delayed) answer") { $0.deferredAnswer }
        let response = try requireResponse(await answer(), as: SaslAuthenticateResponse.self)
        #expect(response.errorCode == KafkaErrorCode.saslAuthenticationFailed.rawValue)
    }

    /// KIP-368: the session lifetime is announced, the session expires, the client re-authenticates
    /// on the same connection (same user only).
    @Test func reauthentication() async throws {
        let base = ContinuousClock.now
        let offset = Mutex<Duration>(.zero)
        var settings = Fixture.defaults
        settings.reauthentication = .seconds(60)
        let f = Fixture(settings: settings, now: { base + offset.withLock { $0 } })
        let r = try await f.scram(.sha256, user: "alice", password: "alice-secret")
        #expect(r.sessionLifetimeMs == 60_000)
        let expiry = try #require(f.session.snapshot.sessionExpiry)
        #expect(expiry == base + .seconds(60))
        #expect(SaslGate.refusal(.metadata, session: f.session, now: base + .seconds(59)) == nil)
        #expect(SaslGate.refusal(.metadata, session: f.session, now: base + .seconds(60)) != nil)
        #expect(SaslGate.refusal(.saslHandshake, session: f.session, now: base + .seconds(61)) == nil)
        // Re-authentication later: a new expiry.
        offset.withLock { $0 = .seconds(50) }
        #expect(try await f.scram(.sha256, user: "alice", password: "alice-secret").errorCode == 0)
        #expect(f.session.snapshot.sessionExpiry == base + .seconds(110))
        #expect(f.metrics.render().contains("floe_broker_sasl_reauthentications_total{mechanism=\"SCRAM-SHA-256\"} 1"))
        // Another mechanism, or another user, is refused.
        let other = try await f.call(SaslHandshakeRequest(mechanism: "SCRAM-SHA-512"), version: 1, SaslHandshakeResponse.self)
        #expect(other.errorCode == KafkaErrorCode.illegalSaslState.rawValue)
        let asBob = try await f.scram(.sha256, user: "bob", password: "bob-secret")
        #expect(asBob.errorCode == KafkaErrorCode.saslAuthenticationFailed.rawValue)
        #expect(!f.session.authenticated)
        // Past expiry, a non-SASL request closes the connection (real clock: the session was reset).
        _ = try requireCase(await f.send(MetadataRequest(topics: []), version: 12), "close") { $0.closes }
    }

    @Test func plaintextListenersAreUnaffected() async throws {
        let session = ConnectionSession(securityProtocol: .plaintext)
        #expect(SaslGate.refusal(.produce, session: session, now: .now) == nil)
        let f = Fixture()
        let h = f.authenticator.handshake(SaslHandshakeRequest(mechanism: "PLAIN"), connection: ConnectionInfo(id: 1, peer: "p", session: session))
        guard case let .response(.saslHandshake(r)) = h else { Issue.record("expected a SaslHandshake response, got \(h)"); return }
        #expect(r.errorCode == KafkaErrorCode.illegalSaslState.rawValue)
    }
}

/// SCRAM credentials as cluster metadata: replayed from records, and absent from old snapshots.
@Suite struct ScramMetadataTests {
    @Test func recordsReplayTheCredentials() throws {
        var old = ClusterState()
        old.scramUsers = ["alice": ["SCRAM-SHA-256": SaslAuthenticatorTests.alice256]]
        var new = old
        new.scramUsers = ["bob": ["SCRAM-SHA-512": SaslAuthenticatorTests.bob512]]
        let records = MetadataRecord.diff(from: old, to: new)
        #expect(records == [.scramUser(name: "alice", credentials: nil), .scramUser(name: "bob", credentials: new.scramUsers!["bob"])])
        var replayed = old
        for r in records { r.apply(to: &replayed) }
        #expect(replayed == new)
        // Removing the last user leaves no field at all (as a state that never had users).
        var empty = new
        MetadataRecord.scramUser(name: "bob", credentials: nil).apply(to: &empty)
        #expect(empty.scramUsers == nil)
    }

    @Test func snapshotsWrittenBeforeSaslDecode() throws {
        var state = ClusterState()
        state.clusterID = "c"
        var json = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(state)) as? [String: Any])
        json["scramUsers"] = nil
        let decoded = try JSONDecoder().decode(ClusterState.self, from: JSONSerialization.data(withJSONObject: json))
        #expect(decoded.scramUsers == nil && decoded.clusterID == "c")
    }

    @Test func credentialsAreWrittenByTheControllerAndNeverHoldThePassword() async throws {
        let h = try await Harness.make()
        let written = try await h.core.registry.ensureScramUsers([("zoe", "zoe-password")])
        #expect(written == ["zoe"])
        // Same password again: nothing to write.
        #expect(try await h.core.registry.ensureScramUsers([("zoe", "zoe-password")]).isEmpty)
        let credential = try #require(h.core.registry.scramCredential(user: "zoe", mechanism: .sha512))
        #expect(credential.matches(password: "zoe-password", mechanism: .sha512))
        let snapshot = String(decoding: try JSONEncoder().encode(h.core.registry.state), as: UTF8.self)
        #expect(!snapshot.contains("zoe-password"))
        // A changed password is rewritten; the old one no longer matches.
        #expect(try await h.core.registry.ensureScramUsers([("zoe", "new-password")]) == ["zoe"])
        #expect(!(h.core.registry.scramCredential(user: "zoe", mechanism: .sha256)?.matches(password: "zoe-password", mechanism: .sha256) ?? true))
        // The credentials are in the bucket: a restarted broker has them.
        let again = try await h.restarted()
        #expect(again.core.registry.scramCredential(user: "zoe", mechanism: .sha256)?.matches(password: "new-password", mechanism: .sha256) == true)
    }

    @Test func usersFileFormat() throws {
        let users = try SaslUsersFile.parse("# comment\n\nadmin:s3cr:et\r\n bob :pw\n", path: "/u")
        #expect(users.map(\.name) == ["admin", "bob"] && users.map(\.password) == ["s3cr:et", "pw"])
        #expect(throws: BrokerError.configuration("/u line 2: expected name:password")) { try SaslUsersFile.parse("a:b\nnocolon-secret\n", path: "/u") }
    }
}

/// Security settings refused at start, each naming the setting.
@Suite struct SecuritySetupTests {
    func setup(_ settings: [String: String]) throws -> SecuritySetup {
        var config = BrokerConfig()
        for (k, v) in settings { config.set(k, v, .file) }
        return try SecuritySetup(config)
    }

    @Test func refusals() throws {
        let path = NSTemporaryDirectory() + "floe-sasl-setup-\(UUID().uuidString)"
        try "admin:pw\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let cases: [([String: String], String)] = [
            (["security.protocol": "SASL_PLAINTEXT"], "needs inter.broker.user"),
            (["security.protocol": "SASL_PLAINTEXT", "sasl.users.file": path, "inter.broker.user": "bob"], "inter.broker.user=bob is not listed"),
            (["sasl.users.file": path + ".missing"], "cannot be read"),
            (["security.protocol": "TLS"], "security.protocol"),
        ]
        for (settings, message) in cases {
            #expect(throws: BrokerError.self, "\(settings)") { _ = try setup(settings) }
            do { _ = try setup(settings) } catch { #expect("\(error)".contains(message), "\(error)") }
        }
        let ok = try setup(["security.protocol": "SASL_PLAINTEXT", "sasl.users.file": path, "inter.broker.user": "admin",
                            "connections.max.reauth.ms": "60000", "sasl.enabled.mechanisms": "SCRAM-SHA-512"])
        #expect(ok.internalProtocol == .saslPlaintext && ok.externalProtocol == .plaintext)
        #expect(ok.interBroker == KafkaClientSASL(mechanism: .scramSHA512, username: "admin", password: "pw"))
        #expect(ok.authenticator.reauthentication == .seconds(60) && ok.authenticator.enabledMechanisms == ["SCRAM-SHA-512"])
        // The password is not in the description of the client option.
        #expect(!"\(ok.interBroker!)".contains("pw"))
    }
}
