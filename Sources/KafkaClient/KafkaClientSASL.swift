import KafkaProtocol
import SASL

/// SASL authentication a client performs on every new connection (issue 14's contract):
/// SaslHandshake v1 with the mechanism, then SaslAuthenticate rounds (PLAIN: one; SCRAM:
/// client-first and client-final, and the server's signature is checked).
///
/// `description` never shows the password.
///
/// Example: `KafkaClientSASL(mechanism: .scramSHA512, username: "floe-operator", password: secret)`
/// passed to `KafkaConnectionPool(sasl:)` or `KafkaAdminClient(sasl:)`.
public struct KafkaClientSASL: Sendable, Hashable, CustomStringConvertible {
    public enum Mechanism: String, Sendable, Hashable, CaseIterable {
        case plain = "PLAIN"
        case scramSHA256 = "SCRAM-SHA-256"
        case scramSHA512 = "SCRAM-SHA-512"
    }

    public var mechanism: Mechanism
    public var username: String
    public var password: String

    public init(mechanism: Mechanism, username: String, password: String) {
        self.mechanism = mechanism
        self.username = username
        self.password = password
    }

    public var description: String { "\(mechanism.rawValue) as \(username)" }
}

extension KafkaConnection {
    /// Authenticates this connection. Throws `KafkaClientError` with `.kafka(api: .saslHandshake
    /// or .saslAuthenticate, code:, message:)` when the broker refuses (33: mechanism not enabled,
    /// 58: wrong credentials), `.unexpectedAnswer` when the server's SCRAM answer is wrong.
    ///
    /// When the broker announces a session lifetime (KIP-368, `connections.max.reauth.ms`),
    /// `sessionRenewal` is set to 85% of it from the start of the login: from then on
    /// `KafkaConnectionPool` hands out a fresh, freshly logged-in connection instead (callers
    /// still holding this one finish with it; it closes when released).
    public func authenticate(_ sasl: KafkaClientSASL, timeout: Duration = .seconds(10)) async throws {
        let started = ContinuousClock.now
        let handshake = try await send(SaslHandshakeRequest(mechanism: sasl.mechanism.rawValue), version: 1,
                                       expecting: SaslHandshakeResponse.self, timeout: timeout)
        guard handshake.errorCode == 0 else {
            throw KafkaClientError(address: address, kind: .kafka(
                api: .saslHandshake, code: handshake.errorCode, message: "mechanisms offered: \(handshake.mechanisms.joined(separator: ","))",
                resource: sasl.mechanism.rawValue))
        }
        var lifetimeMs: Int64 = 0
        func round(_ bytes: [UInt8]) async throws -> [UInt8] {
            let r = try await send(SaslAuthenticateRequest(authBytes: bytes), version: 1, expecting: SaslAuthenticateResponse.self, timeout: timeout)
            guard r.errorCode == 0 else {
                throw KafkaClientError(address: address, kind: .kafka(api: .saslAuthenticate, code: r.errorCode, message: r.errorMessage,
                                                                      resource: sasl.username))
            }
            lifetimeMs = r.sessionLifetimeMs
            return r.authBytes
        }
        let scram: ScramMechanism
        switch sasl.mechanism {
        case .plain:
            _ = try await round(PlainMechanism.message(user: sasl.username, password: sasl.password))
            noteSessionLifetime(lifetimeMs, loginStarted: started)
            return
        case .scramSHA256: scram = .sha256
        case .scramSHA512: scram = .sha512
        }
        var exchange = ScramClientExchange(mechanism: scram, user: sasl.username, password: sasl.password)
        let serverFirst = try await round(exchange.firstMessage())
        do {
            let final = try exchange.finalMessage(serverFirst: serverFirst)
            let serverFinal = try await round(final)
            try exchange.verify(serverFinal: serverFinal)
        } catch let e as SASLError {
            throw KafkaClientError(address: address, kind: .unexpectedAnswer(api: .saslAuthenticate, reason: "\(e)"))
        }
        noteSessionLifetime(lifetimeMs, loginStarted: started)
    }

    private func noteSessionLifetime(_ milliseconds: Int64, loginStarted: ContinuousClock.Instant) {
        setSessionRenewal(milliseconds > 0 ? loginStarted + .milliseconds(milliseconds * 85 / 100) : nil)
    }

    /// Whether the SASL session is (nearly) over at `now`: past `sessionRenewal`.
    public func sessionEnding(at now: ContinuousClock.Instant = .now) -> Bool {
        guard let renewal = sessionRenewal else { return false }
        return now >= renewal
    }
}
