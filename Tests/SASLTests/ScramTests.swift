import Foundation
import SASL
import Testing

@Suite struct ScramTests {
    // RFC 7677 §3: user "user", password "pencil".
    static let salt = Array(Data(base64Encoded: "W22ZaJ0SNY7soEsUEjb6gQ==")!)
    static let credential = ScramCredential(mechanism: .sha256, password: "pencil", salt: salt, iterations: 4096)

    @Test func rfc7677ExampleServerSide() throws {
        var server = ScramServerExchange(mechanism: .sha256, serverNonce: "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
        let first = try server.receive(Array("n,,n=user,r=rOprNGfwEbeRWgbNEkqO".utf8)) { $0 == "user" ? Self.credential : nil }
        #expect(first == .challenge(Array("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".utf8)))
        let final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        let done = try server.receive(Array(final.utf8)) { _ in Self.credential }
        #expect(done == .success(user: "user", answer: Array("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".utf8)))
    }

    @Test func rfc7677ExampleClientSide() throws {
        var client = ScramClientExchange(mechanism: .sha256, user: "user", password: "pencil", clientNonce: "rOprNGfwEbeRWgbNEkqO")
        #expect(String(decoding: client.firstMessage(), as: UTF8.self) == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
        let final = try client.finalMessage(serverFirst: Array("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".utf8))
        #expect(String(decoding: final, as: UTF8.self)
            == "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
        try client.verify(serverFinal: Array("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".utf8))
        #expect(throws: SASLError.self) { try client.verify(serverFinal: Array("v=AAAA".utf8)) }
    }

    /// Client and server of this module agree, for both mechanisms, and a wrong password fails.
    @Test(arguments: ScramMechanism.allCases) func roundTrip(mechanism: ScramMechanism) throws {
        let credential = ScramCredential(mechanism: mechanism, password: "s3cret", salt: secureRandomBytes(16), iterations: 4096)
        for (password, ok) in [("s3cret", true), ("wrong", false)] {
            var client = ScramClientExchange(mechanism: mechanism, user: "al,i=ce", password: password)
            var server = ScramServerExchange(mechanism: mechanism)
            let lookup: (String) -> ScramCredential? = { $0 == "al,i=ce" ? credential : nil }
            let first = try server.receive(client.firstMessage(), credential: lookup)
            guard case let .challenge(serverFirst) = first else { Issue.record("expected a challenge, got \(first)"); continue }
            let final = try client.finalMessage(serverFirst: serverFirst)
            if ok {
                let step = try server.receive(final, credential: lookup)
                guard case let .success(user, answer) = step else { Issue.record("expected success, got \(step)"); continue }
                #expect(user == "al,i=ce")
                try client.verify(serverFinal: answer)
            } else {
                #expect(throws: SASLError.authenticationFailed("invalid credentials")) { try server.receive(final, credential: lookup) }
            }
        }
    }

    @Test func unknownUserFailsAtFirstMessage() {
        var server = ScramServerExchange(mechanism: .sha512)
        #expect(throws: SASLError.authenticationFailed("unknown user")) {
            try server.receive(Array("n,,n=nobody,r=abc".utf8)) { _ in nil }
        }
    }

    @Test func replayedOrMismatchedNonceFails() throws {
        // A client-final carrying another exchange's nonce (a replay) is refused even with a proof valid for that exchange.
        var server = ScramServerExchange(mechanism: .sha256, serverNonce: "fresh-server-nonce")
        _ = try server.receive(Array("n,,n=user,r=rOprNGfwEbeRWgbNEkqO".utf8)) { _ in Self.credential }
        let replay = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        #expect(throws: SASLError.authenticationFailed("nonce mismatch")) { try server.receive(Array(replay.utf8)) { _ in Self.credential } }
        // The exchange is over after a failure.
        #expect(throws: SASLError.self) { try server.receive(Array(replay.utf8)) { _ in Self.credential } }
    }

    @Test func malformedMessagesAreRefused() {
        for message in ["", "n,", "p=tls-unique,,n=user,r=x", "n,,r=x", "n,,n=user", "n,,n=us=er,r=x", "n,,m=ext,n=user,r=x"] {
            var server = ScramServerExchange(mechanism: .sha256)
            #expect(throws: SASLError.self, "\(message)") { try server.receive(Array(message.utf8)) { _ in Self.credential } }
        }
    }

    @Test func plainAgainstScramCredential() throws {
        #expect(Self.credential.matches(password: "pencil", mechanism: .sha256))
        #expect(!Self.credential.matches(password: "pencil2", mechanism: .sha256))
        let (user, password) = try PlainMechanism.parse(PlainMechanism.message(user: "bob", password: "pw"))
        #expect(user == "bob" && password == "pw")
        #expect(throws: SASLError.self) { try PlainMechanism.parse(Array("mallory\0bob\0pw".utf8)) }
        #expect(throws: SASLError.self) { try PlainMechanism.parse(Array("bob\0pw".utf8)) }
    }

    /// AlterUserScramCredentials sends SaltedPassword; the credential made from it equals the one made from the password.
    @Test func credentialFromSaltedPassword() {
        let salted = ScramMechanism.sha256.saltedPassword("pencil", salt: Self.salt, iterations: 4096)
        #expect(ScramCredential(mechanism: .sha256, saltedPassword: salted, salt: Self.salt, iterations: 4096) == Self.credential)
    }
}
