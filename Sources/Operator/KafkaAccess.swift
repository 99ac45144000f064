import Foundation
import KafkaClient
import KubeAPI

#if canImport(Glibc)
import Glibc
#endif

/// How the operator reaches a cluster's brokers on the internal listener: TLS verified with the
/// cluster CA (the internal TLS Secret's `ca.crt`) when that listener is TLS, and SASL
/// SCRAM-SHA-512 as `floe-operator` when it uses SASL. `.plaintext` for an unsecured cluster.
public struct KafkaAccess: Sendable, Equatable {
    /// PEM of the CA that signed the brokers' certificates (nil: no TLS).
    public var caPEM: String?
    /// SASL user and password (nil: no SASL).
    public var username: String?
    public var password: String?

    public static let plaintext = KafkaAccess()

    public init(caPEM: String? = nil, username: String? = nil, password: String? = nil) {
        self.caPEM = caPEM
        self.username = username
        self.password = password
    }

    public var usesTLS: Bool { caPEM != nil }
    public var usesSASL: Bool { username != nil }

    /// The SASL mechanism the operator uses (the brokers always enable it when the internal
    /// listener uses SASL: `SecurityPlan.mechanisms`).
    public static let mechanism = "SCRAM-SHA-512"

    /// The access a cluster needs, from its spec and the Secrets' contents (`secrets[name][key]`,
    /// decoded). Throws when a needed Secret or key is missing (the reconciler reports it first).
    public static func forCluster(_ spec: FloeClusterSpec, names: ClusterNames, secrets: [String: [String: String]])
        throws(OperatorError) -> KafkaAccess
    {
        let plan = SecurityPlan(spec)
        var access = KafkaAccess()
        let id = "\(names.namespace)/\(names.cluster)"
        if plan.internalProtocol.usesTLS, let tls = spec.listeners?.tls {
            guard let ca = secrets[tls.secretName]?[SecurityLayout.caKey] else {
                throw .notRenderable(cluster: id, missing: "key \(SecurityLayout.caKey) of Secret \(tls.secretName)")
            }
            access.caPEM = ca
        }
        if plan.internalProtocol.usesSASL {
            guard let password = secrets[names.operatorCredentialsSecret]?[SecurityLayout.operatorUser] else {
                throw .notRenderable(cluster: id, missing: "key \(SecurityLayout.operatorUser) of Secret \(names.operatorCredentialsSecret)")
            }
            access.username = SecurityLayout.operatorUser
            access.password = password
        }
        return access
    }

    /// Reads the Secrets ``forCluster(_:names:secrets:)`` needs through the API server.
    public static func read(_ spec: FloeClusterSpec, names: ClusterNames, client: KubeClient) async throws -> KafkaAccess {
        let plan = SecurityPlan(spec)
        var wanted: [String] = []
        if plan.internalProtocol.usesTLS, let tls = spec.listeners?.tls { wanted.append(tls.secretName) }
        if plan.internalProtocol.usesSASL { wanted.append(names.operatorCredentialsSecret) }
        var secrets: [String: [String: String]] = [:]
        for name in wanted {
            secrets[name] = try SecretData.decode(try await client.get(Secret.self, namespace: names.namespace, name: name))
        }
        return try forCluster(spec, names: names, secrets: secrets)
    }
}

/// The decoded contents of a Secret (`data` is base64; `stringData` as given).
public enum SecretData {
    public static func decode(_ secret: Secret) throws(OperatorError) -> [String: String] {
        var out: [String: String] = [:]
        for (key, value) in secret.data ?? [:] {
            guard let bytes = Data(base64Encoded: value), let text = String(data: bytes, encoding: .utf8) else {
                throw .badManifest(source: "Secret \(secret.metadata.namespace ?? "")/\(secret.metadata.name ?? "")",
                                   detail: "key \(key) is not base64 of UTF-8 text")
            }
            out[key] = text
        }
        for (key, value) in secret.stringData ?? [:] { out[key] = value }
        return out
    }
}

/// Where the operator's admin clients come from: one function, so that the connection security
/// is decided in one place.
public enum OperatorKafka {
    /// An admin client of a cluster reached with `access`: TLS verified against the cluster CA
    /// and SCRAM-SHA-512 as the operator's user where the internal listener asks for them.
    public static func adminClient(
        bootstrap: [BrokerAddress], clientId: String = "floe-operator", requestTimeout: Duration = .seconds(5), attempts: Int = 2,
        access: KafkaAccess
    ) throws(OperatorError) -> KafkaAdminClient {
        let (tls, sasl) = try connectionSecurity(access)
        return KafkaAdminClient(bootstrap: bootstrap, clientId: clientId, requestTimeout: requestTimeout, attempts: attempts, tls: tls, sasl: sasl)
    }

    /// The Kafka client's options for `access`: the CA written to a private file (`caFile`), and
    /// the operator's SCRAM-SHA-512 login. A SASL access without a password is refused rather
    /// than connecting unauthenticated.
    public static func connectionSecurity(_ access: KafkaAccess) throws(OperatorError) -> (tls: KafkaClientTLS?, sasl: KafkaClientSASL?) {
        var tls: KafkaClientTLS? = nil
        if let pem = access.caPEM { tls = KafkaClientTLS(caFile: try caFile(pem)) }
        var sasl: KafkaClientSASL? = nil
        if let user = access.username {
            guard let password = access.password else {
                throw .adminSecurityUnavailable(detail: "the internal listener needs SASL \(KafkaAccess.mechanism) and user \(user) has no password")
            }
            sasl = KafkaClientSASL(mechanism: .scramSHA512, username: user, password: password)
        }
        return (tls, sasl)
    }

    /// Writes a CA bundle where a file-based TLS option can read it: a file named by the
    /// content's hash in a directory only this user may read; written once per content.
    public static func caFile(_ pem: String, directory: String = NSTemporaryDirectory() + "/floe-operator-ca") throws(OperatorError) -> String {
        let path = "\(directory)/\(FNV1a.hex(pem)).pem"
        if FileManager.default.fileExists(atPath: path) { return path }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let temporary = path + ".tmp-\(getpid())"
            try Data(pem.utf8).write(to: URL(fileURLWithPath: temporary))
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: temporary)
            try FileManager.default.moveItem(atPath: temporary, toPath: path)
        } catch {
            if FileManager.default.fileExists(atPath: path) { return path }  // written concurrently
            throw .adminSecurityUnavailable(detail: "cannot write the cluster CA to \(path): \(error)")
        }
        return path
    }
}
