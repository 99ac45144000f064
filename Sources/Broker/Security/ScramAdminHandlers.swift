import KafkaProtocol
import SASL

/// AlterUserScramCredentials (API 51): runs on the controller (wrapped in `ControllerForwarding`),
/// which writes the credentials into the cluster metadata. Kafka's checks, per user: a name,
/// a known mechanism, 4096–16384 iterations, a salt and a SaltedPassword of the hash's length,
/// and each (user, mechanism) at most once in the request; a user with any refused change
/// gets no change at all. Only StoredKey and ServerKey are kept (derived from SaltedPassword).
struct AlterUserScramCredentialsHandler: ApiHandler {
    let core: BrokerCore
    let apiKey = ApiKey.alterUserScramCredentials
    let versions: ClosedRange<Int16> = 0...0

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .alterUserScramCredentials(r) = request else { return .close }
        var order: [String] = []
        var problems: [String: (KafkaErrorCode, String)] = [:]
        var seen: Set<String> = []
        var changes: [String: [TopicRegistry.ScramChange]] = [:]
        func note(_ user: String) { if !order.contains(user) { order.append(user) } }
        func refuse(_ user: String, _ code: KafkaErrorCode, _ message: String) { if problems[user] == nil { problems[user] = (code, message) } }
        func check(_ user: String, _ mechanismCode: Int8) -> ScramMechanism? {
            note(user)
            if user.isEmpty { refuse(user, .unacceptableCredential, "Username must not be empty"); return nil }
            guard let m = ScramMechanism(kafkaType: mechanismCode) else {
                refuse(user, .unsupportedSaslMechanism, "Unknown SCRAM mechanism"); return nil
            }
            if !seen.insert(user + "\u{0}" + m.rawValue).inserted {
                refuse(user, .duplicateResource, "A user credential cannot be altered twice in the same request"); return nil
            }
            return m
        }
        for d in r.deletions {
            guard let m = check(d.name, d.mechanism) else { continue }
            changes[d.name, default: []].append(.init(user: d.name, mechanism: m, credential: nil))
        }
        for u in r.upsertions {
            guard let m = check(u.name, u.mechanism) else { continue }
            guard (ScramMechanism.minIterations...ScramMechanism.maxIterations).contains(u.iterations) else {
                refuse(u.name, .unacceptableCredential,
                       "Iterations must be between \(ScramMechanism.minIterations) and \(ScramMechanism.maxIterations)")
                continue
            }
            guard !u.salt.isEmpty, u.saltedPassword.count == m.digestLength else {
                refuse(u.name, .unacceptableCredential, "Salt and salted password must be given, the salted password of the hash's length")
                continue
            }
            let credential = ScramCredential(mechanism: m, saltedPassword: u.saltedPassword, salt: u.salt, iterations: u.iterations)
            changes[u.name, default: []].append(.init(user: u.name, mechanism: m, credential: credential))
        }
        let accepted = order.filter { problems[$0] == nil }
        let batch = accepted.flatMap { changes[$0] ?? [] }
        if !batch.isEmpty {
            do {
                let outcomes = try await core.registry.alterScramCredentials(batch)
                for (change, outcome) in zip(batch, outcomes) {
                    if let (code, message) = outcome { refuse(change.user, code, message) }
                }
            } catch {
                for user in accepted { refuse(user, .notController, "\(error)") }
            }
        }
        if !batch.isEmpty {
            core.logger.info("SCRAM credentials changed", metadata: [
                "users": accepted.joined(separator: ","), "principal": context.connection.session.principal.description])
        }
        let results = order.map { user in
            AlterUserScramCredentialsResponse.AlterUserScramCredentialsResult(
                user: user, errorCode: problems[user]?.0.rawValue ?? 0, errorMessage: problems[user]?.1)
        }
        return .response(.alterUserScramCredentials(AlterUserScramCredentialsResponse(throttleTimeMs: 0, results: results)))
    }
}

/// DescribeUserScramCredentials (API 50): the mechanisms and iteration counts of users (never
/// salts or keys), from this broker's copy of the metadata. No users: every user; a named
/// user without credentials gets RESOURCE_NOT_FOUND; a name asked twice, DUPLICATE_RESOURCE.
struct DescribeUserScramCredentialsHandler: ApiHandler {
    let core: BrokerCore
    let apiKey = ApiKey.describeUserScramCredentials
    let versions: ClosedRange<Int16> = 0...0

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .describeUserScramCredentials(r) = request else { return .close }
        let users = core.registry.state.scramUsers ?? [:]
        let names = r.users.map { $0.map(\.name) } ?? users.keys.sorted()
        var counts: [String: Int] = [:]
        for n in names { counts[n, default: 0] += 1 }
        var results: [DescribeUserScramCredentialsResponse.DescribeUserScramCredentialsResult] = []
        var done: Set<String> = []
        for name in names where done.insert(name).inserted {
            if counts[name, default: 0] > 1 {
                results.append(.init(user: name, errorCode: KafkaErrorCode.duplicateResource.rawValue,
                                     errorMessage: "Cannot describe SCRAM credentials for the same user twice in a single request", credentialInfos: []))
                continue
            }
            guard let credentials = users[name], !credentials.isEmpty else {
                results.append(.init(user: name, errorCode: KafkaErrorCode.resourceNotFound.rawValue,
                                     errorMessage: "Attempt to describe a user credential that does not exist", credentialInfos: []))
                continue
            }
            let infos = ScramMechanism.allCases.compactMap { m in
                credentials[m.rawValue].map { DescribeUserScramCredentialsResponse.CredentialInfo(mechanism: m.kafkaType, iterations: $0.iterations) }
            }
            results.append(.init(user: name, errorCode: 0, errorMessage: nil, credentialInfos: infos))
        }
        return .response(.describeUserScramCredentials(DescribeUserScramCredentialsResponse(throttleTimeMs: 0, errorCode: 0, errorMessage: nil,
                                                                                           results: results)))
    }
}
