import CCrypto
import Foundation

/// The SCRAM mechanisms Kafka knows (RFC 5802, RFC 7677), with Kafka's mechanism codes as used by
/// AlterUserScramCredentials and DescribeUserScramCredentials (1: SHA-256, 2: SHA-512).
public enum ScramMechanism: String, Sendable, Hashable, Codable, CaseIterable {
    case sha256 = "SCRAM-SHA-256"
    case sha512 = "SCRAM-SHA-512"

    /// Kafka's lowest and highest iteration counts (ScramMechanism.minIterations/maxIterations).
    public static let minIterations: Int32 = 4096
    public static let maxIterations: Int32 = 16384

    public var kafkaType: Int8 { self == .sha256 ? 1 : 2 }

    public init?(kafkaType: Int8) {
        switch kafkaType {
        case 1: self = .sha256
        case 2: self = .sha512
        default: return nil
        }
    }

    public var digestLength: Int { self == .sha256 ? 32 : 64 }

    private var md: OpaquePointer { self == .sha256 ? EVP_sha256() : EVP_sha512() }

    public func hash(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: digestLength)
        var length: UInt32 = 0
        let ok = bytes.withUnsafeBytes { EVP_Digest($0.baseAddress, $0.count, &out, &length, md, nil) }
        precondition(ok == 1 && Int(length) == digestLength, "EVP_Digest(\(rawValue)) failed")
        return out
    }

    public func hmac(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: digestLength)
        var length: UInt32 = 0
        let result = key.withUnsafeBytes { k in
            message.withUnsafeBytes { m in
                HMAC(md, k.baseAddress, Int32(k.count), m.baseAddress?.assumingMemoryBound(to: UInt8.self), m.count, &out, &length)
            }
        }
        precondition(result != nil && Int(length) == digestLength, "HMAC(\(rawValue)) failed")
        return out
    }

    /// Hi(password, salt, i) of RFC 5802: PBKDF2 with this mechanism's HMAC.
    public func saltedPassword(_ password: String, salt: [UInt8], iterations: Int32) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: digestLength)
        let pass = Array(password.utf8)
        let ok = pass.withUnsafeBytes { p in
            salt.withUnsafeBytes { s in
                PKCS5_PBKDF2_HMAC(p.baseAddress?.assumingMemoryBound(to: CChar.self), Int32(p.count),
                                  s.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(s.count), iterations, md, Int32(digestLength), &out)
            }
        }
        precondition(ok == 1, "PKCS5_PBKDF2_HMAC(\(rawValue)) failed")
        return out
    }

    func clientKey(_ salted: [UInt8]) -> [UInt8] { hmac(key: salted, Array("Client Key".utf8)) }
    func serverKey(_ salted: [UInt8]) -> [UInt8] { hmac(key: salted, Array("Server Key".utf8)) }
}

/// What the server keeps of a SCRAM password (RFC 5802 §3): the salt, the iteration count,
/// StoredKey = H(HMAC(SaltedPassword, "Client Key")) and ServerKey = HMAC(SaltedPassword, "Server Key").
/// The password itself cannot be recovered from it.
public struct ScramCredential: Sendable, Hashable, Codable {
    public var salt: [UInt8]
    public var storedKey: [UInt8]
    public var serverKey: [UInt8]
    public var iterations: Int32

    public init(salt: [UInt8], storedKey: [UInt8], serverKey: [UInt8], iterations: Int32) {
        self.salt = salt
        self.storedKey = storedKey
        self.serverKey = serverKey
        self.iterations = iterations
    }

    /// The credential of `password` with `salt` and `iterations`.
    public init(mechanism: ScramMechanism, password: String, salt: [UInt8], iterations: Int32) {
        let salted = mechanism.saltedPassword(password, salt: salt, iterations: iterations)
        self.init(salt: salt, storedKey: mechanism.hash(mechanism.clientKey(salted)), serverKey: mechanism.serverKey(salted),
                  iterations: iterations)
    }

    /// The credential as AlterUserScramCredentials carries it: SaltedPassword computed by the client.
    public init(mechanism: ScramMechanism, saltedPassword: [UInt8], salt: [UInt8], iterations: Int32) {
        self.init(salt: salt, storedKey: mechanism.hash(mechanism.clientKey(saltedPassword)), serverKey: mechanism.serverKey(saltedPassword),
                  iterations: iterations)
    }

    /// Whether `password` is the one this credential was made from (PLAIN against a SCRAM
    /// credential): recomputes StoredKey with the stored salt and iterations.
    public func matches(password: String, mechanism: ScramMechanism) -> Bool {
        let salted = mechanism.saltedPassword(password, salt: salt, iterations: iterations)
        return constantTimeEqual(mechanism.hash(mechanism.clientKey(salted)), storedKey)
    }
}

/// Why a SASL exchange failed. `message` never contains a password or a proof.
public enum SASLError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The client's message does not follow the mechanism's grammar.
    case malformed(String)
    /// Wrong password, unknown user, a nonce that does not match.
    case authenticationFailed(String)
    /// The server's answer (client side) is wrong: a bad nonce, salt or signature.
    case badServer(String)

    public var description: String {
        switch self {
        case let .malformed(m): return "malformed SASL message: \(m)"
        case let .authenticationFailed(m): return "authentication failed: \(m)"
        case let .badServer(m): return "unexpected server answer: \(m)"
        }
    }
}

/// Random bytes from OpenSSL's CSPRNG.
public func secureRandomBytes(_ count: Int) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: count)
    let ok = RAND_bytes(&out, Int32(count))
    precondition(ok == 1, "RAND_bytes failed")
    return out
}

/// A fresh SCRAM nonce: 24 random bytes in base64 (printable, no ',').
public func makeScramNonce() -> String { Data(secureRandomBytes(24)).base64EncodedString() }

func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for i in a.indices { diff |= a[i] ^ b[i] }
    return diff == 0
}

func xor(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] { zip(a, b).map { $0 ^ $1 } }

/// The `key=value` attributes of one SCRAM message, in order.
struct ScramAttributes {
    var pairs: [(Character, String)] = []

    init(_ text: Substring) throws {
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard part.count >= 2, part[part.index(after: part.startIndex)] == "=" else { throw SASLError.malformed("attribute '\(part.prefix(16))'") }
            pairs.append((part.first!, String(part.dropFirst(2))))
        }
    }

    subscript(_ key: Character) -> String? { pairs.first { $0.0 == key }?.1 }
}

/// SCRAM's saslname escaping: ',' is "=2C" and '=' is "=3D".
func decodeSaslName(_ text: String) throws -> String {
    var out = ""
    var i = text.startIndex
    while i < text.endIndex {
        if text[i] == "=" {
            let code = text[i...].prefix(3)
            if code == "=2C" { out.append(",") } else if code == "=3D" { out.append("=") } else { throw SASLError.malformed("bad escape in user name") }
            i = text.index(i, offsetBy: 3)
        } else {
            out.append(text[i])
            i = text.index(after: i)
        }
    }
    return out
}

func encodeSaslName(_ name: String) -> String {
    name.replacingOccurrences(of: "=", with: "=3D").replacingOccurrences(of: ",", with: "=2C")
}

/// The server side of one SCRAM exchange (RFC 5802 §5), as a state machine fed the client's
/// messages; it does no I/O and looks credentials up through the closure it is given.
///
/// Example (RFC 7677): client-first `n,,n=user,r=rOprNGfwEbeRWgbNEkqO` → server-first
/// `r=rOprNGfwEbeRWgbNEkqO<server nonce>,s=<salt>,i=4096`; client-final `c=biws,r=<both nonces>,p=<proof>`
/// → `.success(user: "user", answer: "v=<server signature>")` when the proof is right.
public struct ScramServerExchange: Sendable {
    public enum Step: Sendable, Equatable {
        /// Send these bytes and wait for the client's next message.
        case challenge([UInt8])
        /// The client proved the password; send `answer` (server-final) and authenticate `user`.
        case success(user: String, answer: [UInt8])
    }

    enum State: Sendable {
        case awaitingClientFirst
        case awaitingClientFinal(user: String, credential: ScramCredential, clientFirstBare: String, serverFirst: String, nonce: String)
        case finished
    }

    public let mechanism: ScramMechanism
    private var state: State = .awaitingClientFirst
    private let serverNonce: String

    /// `serverNonce` is the server's part of the nonce (random per exchange; fixed in tests).
    public init(mechanism: ScramMechanism, serverNonce: String = makeScramNonce()) {
        self.mechanism = mechanism
        self.serverNonce = serverNonce
    }

    /// The user named in the client-first message, once it has been read.
    public var user: String? {
        if case let .awaitingClientFinal(user, _, _, _, _) = state { return user }
        return nil
    }

    /// Feeds the client's next message. Throws `SASLError` on a malformed message, an unknown
    /// user, a wrong nonce or a wrong proof; the exchange is then over.
    public mutating func receive(_ message: [UInt8], credential lookup: (String) -> ScramCredential?) throws -> Step {
        let current = state
        state = .finished
        guard let text = String(validating: message, as: UTF8.self) else { throw SASLError.malformed("not UTF-8") }
        switch current {
        case .awaitingClientFirst:
            // gs2-header: "n,," or "y,," (no channel binding) with an optional "a=authzid".
            let parts = text.split(separator: ",", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, parts[0] == "n" || parts[0] == "y" else {
                throw SASLError.malformed(parts.first == "p" ? "channel binding is not supported" : "bad GS2 header")
            }
            let bare = String(parts[2])
            let attributes = try ScramAttributes(parts[2][...])
            guard let rawName = attributes["n"], let clientNonce = attributes["r"], !clientNonce.isEmpty else {
                throw SASLError.malformed("client-first without n= or r=")
            }
            if attributes.pairs.contains(where: { $0.0 == "m" }) { throw SASLError.malformed("mandatory extension not supported") }
            let user = try decodeSaslName(rawName)
            if !parts[1].isEmpty {
                guard parts[1].hasPrefix("a="), try decodeSaslName(String(parts[1].dropFirst(2))) == user else {
                    throw SASLError.authenticationFailed("authorization id differs from the user name")
                }
            }
            // Kafka's delegation-token extension (tokenauth=true) is not served.
            if attributes["t"] != nil || bare.contains(",tokenauth=") { throw SASLError.authenticationFailed("delegation tokens are not supported") }
            guard let credential = lookup(user) else { throw SASLError.authenticationFailed("unknown user") }
            let nonce = clientNonce + serverNonce
            let serverFirst = "r=\(nonce),s=\(Data(credential.salt).base64EncodedString()),i=\(credential.iterations)"
            state = .awaitingClientFinal(user: user, credential: credential, clientFirstBare: bare, serverFirst: serverFirst, nonce: nonce)
            return .challenge(Array(serverFirst.utf8))
        case let .awaitingClientFinal(user, credential, clientFirstBare, serverFirst, nonce):
            guard let proofRange = text.range(of: ",p=", options: .backwards) else { throw SASLError.malformed("client-final without a proof") }
            let withoutProof = String(text[..<proofRange.lowerBound])
            let attributes = try ScramAttributes(text[...])
            guard let channel = attributes["c"], let gotNonce = attributes["r"], let proofText = attributes["p"],
                  let proof = Data(base64Encoded: proofText).map(Array.init)
            else { throw SASLError.malformed("client-final without c=, r= or a base64 p=") }
            guard gotNonce == nonce else { throw SASLError.authenticationFailed("nonce mismatch") }
            guard let gs2 = Data(base64Encoded: channel).map({ String(decoding: $0, as: UTF8.self) }), gs2.hasPrefix("n,") || gs2.hasPrefix("y,") else {
                throw SASLError.authenticationFailed("channel binding mismatch")
            }
            let authMessage = Array("\(clientFirstBare),\(serverFirst),\(withoutProof)".utf8)
            let clientSignature = mechanism.hmac(key: credential.storedKey, authMessage)
            guard proof.count == mechanism.digestLength,
                  constantTimeEqual(mechanism.hash(xor(proof, clientSignature)), credential.storedKey)
            else { throw SASLError.authenticationFailed("invalid credentials") }
            let serverSignature = mechanism.hmac(key: credential.serverKey, authMessage)
            return .success(user: user, answer: Array("v=\(Data(serverSignature).base64EncodedString())".utf8))
        case .finished:
            throw SASLError.malformed("the exchange is already over")
        }
    }
}

/// The client side of one SCRAM exchange.
public struct ScramClientExchange: Sendable {
    public let mechanism: ScramMechanism
    let user: String
    let password: String
    let clientNonce: String
    private var expectedServerSignature: [UInt8]?

    public init(mechanism: ScramMechanism, user: String, password: String, clientNonce: String = makeScramNonce()) {
        self.mechanism = mechanism
        self.user = user
        self.password = password
        self.clientNonce = clientNonce
    }

    var clientFirstBare: String { "n=\(encodeSaslName(user)),r=\(clientNonce)" }

    /// client-first-message.
    public func firstMessage() -> [UInt8] { Array("n,,\(clientFirstBare)".utf8) }

    /// Reads server-first and returns client-final (with the proof).
    public mutating func finalMessage(serverFirst: [UInt8]) throws -> [UInt8] {
        let text = String(decoding: serverFirst, as: UTF8.self)
        let attributes = try ScramAttributes(text[...])
        guard let nonce = attributes["r"], let saltText = attributes["s"], let salt = Data(base64Encoded: saltText).map(Array.init),
              let iterationsText = attributes["i"], let iterations = Int32(iterationsText), iterations > 0
        else { throw SASLError.badServer("server-first without r=, s= or i=") }
        guard nonce.hasPrefix(clientNonce), nonce.count > clientNonce.count else { throw SASLError.badServer("the server's nonce does not extend ours") }
        let withoutProof = "c=biws,r=\(nonce)"
        let authMessage = Array("\(clientFirstBare),\(text),\(withoutProof)".utf8)
        let salted = mechanism.saltedPassword(password, salt: salt, iterations: iterations)
        let clientKey = mechanism.clientKey(salted)
        let proof = xor(clientKey, mechanism.hmac(key: mechanism.hash(clientKey), authMessage))
        expectedServerSignature = mechanism.hmac(key: mechanism.serverKey(salted), authMessage)
        return Array("\(withoutProof),p=\(Data(proof).base64EncodedString())".utf8)
    }

    /// Checks server-final: the server proved it knows the credential too.
    public func verify(serverFinal: [UInt8]) throws {
        let text = String(decoding: serverFinal, as: UTF8.self)
        let attributes = try ScramAttributes(text[...])
        if let e = attributes["e"] { throw SASLError.authenticationFailed("server says \(e)") }
        guard let v = attributes["v"], let signature = Data(base64Encoded: v).map(Array.init), let expected = expectedServerSignature,
              constantTimeEqual(signature, expected)
        else { throw SASLError.badServer("wrong server signature") }
    }
}

/// SASL PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`.
public enum PlainMechanism {
    public static let name = "PLAIN"

    public static func message(user: String, password: String) -> [UInt8] { [0] + Array(user.utf8) + [0] + Array(password.utf8) }

    /// The user and password of a PLAIN message; an authorization id other than the user is refused (as Kafka does).
    public static func parse(_ message: [UInt8]) throws -> (user: String, password: String) {
        let parts = message.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, let authzid = String(validating: parts[0], as: UTF8.self),
              let user = String(validating: parts[1], as: UTF8.self), let password = String(validating: parts[2], as: UTF8.self),
              !user.isEmpty, !password.isEmpty
        else { throw SASLError.malformed("PLAIN message is not authzid NUL user NUL password") }
        if !authzid.isEmpty && authzid != user { throw SASLError.authenticationFailed("authorization id differs from the user name") }
        return (user, password)
    }
}
