import Foundation
import KafkaProtocol
import SASL

/// SCRAM credentials in the cluster metadata: read from this broker's copy, changed only by the
/// controller (through `mutate`, so every broker replays the same `.scramUser` records).
extension TopicRegistry {
    /// The credential of `user` for `mechanism`, as this broker's metadata knows it.
    public func scramCredential(user: String, mechanism: ScramMechanism) -> ScramCredential? {
        state.scramUsers?[user]?[mechanism.rawValue]
    }

    /// One change of AlterUserScramCredentials: set (a credential) or delete (nil) one mechanism of one user.
    public struct ScramChange: Sendable {
        public var user: String
        public var mechanism: ScramMechanism
        public var credential: ScramCredential?
        public init(user: String, mechanism: ScramMechanism, credential: ScramCredential?) {
            self.user = user
            self.mechanism = mechanism
            self.credential = credential
        }
    }

    /// Applies the changes in one metadata write. Returns, per change, nil or why it was refused
    /// (a deletion of a credential that does not exist: RESOURCE_NOT_FOUND).
    public func alterScramCredentials(_ changes: [ScramChange]) async throws -> [(KafkaErrorCode, String)?] {
        try await mutate { s in
            var users = s.scramUsers ?? [:]
            var results: [(KafkaErrorCode, String)?] = []
            for change in changes {
                var credentials = users[change.user] ?? [:]
                if let credential = change.credential {
                    credentials[change.mechanism.rawValue] = credential
                    results.append(nil)
                } else if credentials.removeValue(forKey: change.mechanism.rawValue) == nil {
                    results.append((.resourceNotFound, "user \(change.user) has no \(change.mechanism.rawValue) credential"))
                } else {
                    results.append(nil)
                }
                users[change.user] = credentials.isEmpty ? nil : credentials
            }
            s.scramUsers = users.isEmpty ? nil : users
            return results
        }
    }

    /// Makes sure each user has SCRAM-SHA-256 and SCRAM-SHA-512 credentials matching its
    /// password (`sasl.users.file`); only users whose credentials are missing or do not match
    /// are written, with fresh salts. Returns the names written. Controller only.
    public func ensureScramUsers(_ users: [(name: String, password: String)], iterations: Int32 = ScramMechanism.minIterations) async throws -> [String] {
        var changes: [ScramChange] = []
        var written: [String] = []
        for (name, password) in users {
            var changedUser = false
            for mechanism in ScramMechanism.allCases {
                if let existing = scramCredential(user: name, mechanism: mechanism), existing.matches(password: password, mechanism: mechanism) { continue }
                let credential = ScramCredential(mechanism: mechanism, password: password, salt: secureRandomBytes(32), iterations: iterations)
                changes.append(ScramChange(user: name, mechanism: mechanism, credential: credential))
                changedUser = true
            }
            if changedUser { written.append(name) }
        }
        if !changes.isEmpty { _ = try await alterScramCredentials(changes) }
        return written
    }
}

/// The `sasl.users.file` format: one `name:password` per line, split at the first ':'; '#'
/// comments and blank lines ignored.
///
/// Example: "# ops\nadmin:s3cr:et\n" is one user `admin` with password `s3cr:et`.
public enum SaslUsersFile {
    public static func parse(_ text: String, path: String) throws -> [(name: String, password: String)] {
        var users: [(name: String, password: String)] = []
        // `isNewline`: "\r\n" is one Character in Swift, so splitting at "\n" would not split it.
        for (n, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            guard let colon = line.firstIndex(of: ":") else {
                throw BrokerError.configuration("\(path) line \(n + 1): expected name:password")  // the line itself is not shown: it may be a password
            }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces)
            let password = String(line[line.index(after: colon)...])
            guard !name.isEmpty, !password.isEmpty else { throw BrokerError.configuration("\(path) line \(n + 1): empty user name or password") }
            users.append((name, password))
        }
        return users
    }
}
