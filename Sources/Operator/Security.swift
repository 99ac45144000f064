import KubeAPI

/// The broker settings the operator renders for security (issue 14's contract), spelled once.
/// `RenderSecurityTests.renderedSecurityKeysAreDeclaredBrokerSettings` checks that each is a
/// setting `BrokerSettings` declares and that every rendered value is one it accepts.
public enum SecuritySettings {
    public static let securityProtocol = "security.protocol"
    public static let externalSecurityProtocol = "external.security.protocol"
    public static let certificateFile = "ssl.certificate.file"
    public static let keyFile = "ssl.key.file"
    public static let clientCAFile = "ssl.client.ca.file"
    public static let clientAuth = "ssl.client.auth"
    public static let interBrokerCAFile = "inter.broker.ssl.ca.file"
    public static let enabledMechanisms = "sasl.enabled.mechanisms"
    public static let usersFile = "sasl.users.file"
    public static let interBrokerUser = "inter.broker.user"
    public static let authorizer = "authorizer"
    public static let superUsers = "super.users"

    /// Keys a `spec.config` may not set because the spec's security fields render them.
    public static let rendered: Set<String> = [
        securityProtocol, externalSecurityProtocol, certificateFile, keyFile, clientCAFile, clientAuth, interBrokerCAFile,
        enabledMechanisms, usersFile, interBrokerUser, authorizer, superUsers,
    ]
}

/// Where the broker pods find their security material (Secret volumes, read-only), and the
/// names of the users the operator adds for itself.
public enum SecurityLayout {
    public static let tlsDir = "/var/run/secrets/floe/tls"
    public static let clientCADir = "/var/run/secrets/floe/client-ca"
    public static let usersDir = "/var/run/secrets/floe/users"
    public static let storageCADir = "/var/run/secrets/floe/s3-ca"
    /// The key of the rendered users Secret that holds the users file.
    public static let usersKey = "users.txt"
    public static let caKey = "ca.crt"
    public static let certificateKey = "tls.crt"
    public static let privateKeyKey = "tls.key"
    /// The operator's own admin user (SCRAM-SHA-512 on the internal listener).
    public static let operatorUser = "floe-operator"
    /// The user the brokers authenticate as to each other (`inter.broker.user`).
    public static let brokerUser = "floe-broker"
    /// Pod template annotation: HMAC-SHA256 of the users file keyed with the operator's password,
    /// so pods roll when a password changes without the annotation revealing anything about it.
    public static let usersHashAnnotation = "floe.dev/users-hash"
    /// Secret volumes: readable by the owner and the pod's fsGroup only.
    public static let secretMode: Int32 = 0o440
}

/// A listener's security as the broker sees it: Kafka's security protocol and, for `tls`
/// authentication, the client-certificate requirement.
public enum ListenerProtocol: String, Sendable, Equatable {
    case plaintext = "PLAINTEXT"
    case ssl = "SSL"
    case saslPlaintext = "SASL_PLAINTEXT"
    case saslSSL = "SASL_SSL"

    /// `tls` set → SSL; a SASL mechanism → SASL_*; `tls` authentication → SSL (with
    /// `ssl.client.auth=required`, see ``SecurityPlan``).
    public init(tls: ListenerTLSSpec?, authentication: ListenerAuthenticationSpec?) {
        let sasl = authentication.map { $0.type != "tls" } ?? false
        switch (tls != nil, sasl) {
        case (false, false): self = .plaintext
        case (true, false): self = .ssl
        case (false, true): self = .saslPlaintext
        case (true, true): self = .saslSSL
        }
    }

    public var usesTLS: Bool { self == .ssl || self == .saslSSL }
    public var usesSASL: Bool { self == .saslPlaintext || self == .saslSSL }
}

/// The SASL mechanism names (Kafka's spelling) of the authentication types.
public enum SASLMechanismName {
    public static let all = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

    public static func of(_ type: String) -> String? {
        switch type {
        case "plain": "PLAIN"
        case "scram-sha-256": "SCRAM-SHA-256"
        case "scram-sha-512": "SCRAM-SHA-512"
        default: nil
        }
    }
}

/// Passwords the renderer needs when a listener uses SASL, read from Secrets by the reconciler
/// (the renderer itself stays pure): each `spec.users` entry's password by user name, and the
/// operator-generated passwords of `<cluster>-operator-credentials`.
public struct SecurityMaterial: Sendable, Equatable {
    public var userPasswords: [String: String]
    public var operatorPassword: String
    public var brokerPassword: String

    public init(userPasswords: [String: String], operatorPassword: String, brokerPassword: String) {
        self.userPasswords = userPasswords
        self.operatorPassword = operatorPassword
        self.brokerPassword = brokerPassword
    }

    /// Stand-ins for `floe-operator render`, which reads no Secrets: each password reads
    /// `<from Secret NAME key KEY>`.
    public static func placeholders(for spec: FloeClusterSpec) -> SecurityMaterial {
        var passwords: [String: String] = [:]
        for u in spec.users ?? [] { passwords[u.name] = "<from Secret \(u.passwordSecret.name) key \(u.passwordSecret.key)>" }
        return SecurityMaterial(userPasswords: passwords, operatorPassword: "<generated>", brokerPassword: "<generated>")
    }

    /// The broker's `sasl.users.file`: `name:password` per line, sorted by name, the operator's
    /// and the brokers' own users included.
    public func usersFile() -> String {
        var all = userPasswords
        all[SecurityLayout.operatorUser] = operatorPassword
        all[SecurityLayout.brokerUser] = brokerPassword
        var text = "# Written by floe-operator from spec.users; one name:password per line.\n"
        for (name, password) in all.sorted(by: { $0.key < $1.key }) { text += "\(name):\(password)\n" }
        return text
    }
}

/// The security a cluster spec asks for, worked out once for rendering, validation and the
/// operator's own connection.
///
/// Example: internal `{tls: {secretName: t}, authentication: {type: scram-sha-512}}` and
/// `authorization: {type: acl}` give `security.protocol=SASL_SSL`, `ssl.certificate.file`,
/// `ssl.key.file`, `inter.broker.ssl.ca.file`, `sasl.users.file`, `inter.broker.user=floe-broker`,
/// `sasl.enabled.mechanisms=SCRAM-SHA-512`, `authorizer=acl` and
/// `super.users=User:floe-broker;User:floe-operator`.
public struct SecurityPlan: Sendable, Equatable {
    public let internalProtocol: ListenerProtocol
    public let externalProtocol: ListenerProtocol?
    /// The TLS Secret (the same for both listeners; validation insists).
    public let tls: ListenerTLSSpec?
    /// `none`, `requested` or `required` (`tls` authentication on a listener forces `required`).
    public let clientAuth: String
    public let clientCASecret: String?
    /// Enabled SASL mechanisms, in Kafka's order (empty: no SASL listener).
    public let mechanisms: [String]
    public let aclAuthorizer: Bool
    public let superUsers: [String]

    public init(_ spec: FloeClusterSpec) {
        let l = spec.listeners
        let e = l?.external
        internalProtocol = ListenerProtocol(tls: l?.tls, authentication: l?.authentication)
        externalProtocol = e.map { ListenerProtocol(tls: $0.tls, authentication: $0.authentication) }
        tls = l?.tls ?? e?.tls
        let tlsAuth = l?.authentication?.type == "tls" || e?.authentication?.type == "tls"
        clientAuth = tlsAuth ? "required" : (l?.tls?.clientAuth ?? e?.tls?.clientAuth ?? "none")
        clientCASecret = l?.tls?.caSecretName ?? e?.tls?.caSecretName
        var wanted = Set([l?.authentication?.type, e?.authentication?.type].compactMap { $0.flatMap(SASLMechanismName.of) })
        // The brokers (inter.broker.user) and the operator authenticate with SCRAM-SHA-512.
        if internalProtocol.usesSASL { wanted.insert("SCRAM-SHA-512") }
        mechanisms = SASLMechanismName.all.filter(wanted.contains)
        aclAuthorizer = spec.authorization?.type == "acl"
        superUsers = ["User:\(SecurityLayout.brokerUser)", "User:\(SecurityLayout.operatorUser)"] + (spec.authorization?.superUsers ?? [])
    }

    public var usesTLS: Bool { internalProtocol.usesTLS || (externalProtocol?.usesTLS ?? false) }
    public var usesSASL: Bool { internalProtocol.usesSASL || (externalProtocol?.usesSASL ?? false) }

    /// The security settings of the broker's properties file (nothing for a plaintext cluster).
    public func properties() -> [String: String] {
        var p: [String: String] = [:]
        if internalProtocol != .plaintext { p[SecuritySettings.securityProtocol] = internalProtocol.rawValue }
        if let ext = externalProtocol, ext != .plaintext { p[SecuritySettings.externalSecurityProtocol] = ext.rawValue }
        if usesTLS {
            p[SecuritySettings.certificateFile] = "\(SecurityLayout.tlsDir)/\(SecurityLayout.certificateKey)"
            p[SecuritySettings.keyFile] = "\(SecurityLayout.tlsDir)/\(SecurityLayout.privateKeyKey)"
            if clientAuth != "none" {
                p[SecuritySettings.clientAuth] = clientAuth
                p[SecuritySettings.clientCAFile] = "\(SecurityLayout.clientCADir)/\(SecurityLayout.caKey)"
            }
        }
        if internalProtocol.usesTLS { p[SecuritySettings.interBrokerCAFile] = "\(SecurityLayout.tlsDir)/\(SecurityLayout.caKey)" }
        if usesSASL {
            p[SecuritySettings.usersFile] = "\(SecurityLayout.usersDir)/\(SecurityLayout.usersKey)"
            p[SecuritySettings.enabledMechanisms] = mechanisms.joined(separator: ",")
        }
        if internalProtocol.usesSASL { p[SecuritySettings.interBrokerUser] = SecurityLayout.brokerUser }
        if aclAuthorizer {
            p[SecuritySettings.authorizer] = "acl"
            p[SecuritySettings.superUsers] = superUsers.joined(separator: ";")
        }
        return p
    }

    /// The Secrets the spec names, each with the keys it must hold (checked by the reconciler
    /// before rendering, so a missing Secret is a clear Degraded message, not a pod stuck in
    /// ContainerCreating).
    public static func requiredSecretKeys(_ spec: FloeClusterSpec) -> [(secret: String, key: String, field: String)] {
        var out: [(String, String, String)] = []
        if let t = spec.listeners?.tls {
            out += [(t.secretName, SecurityLayout.certificateKey, "spec.listeners.tls.secretName"),
                    (t.secretName, SecurityLayout.privateKeyKey, "spec.listeners.tls.secretName"),
                    (t.secretName, SecurityLayout.caKey, "spec.listeners.tls.secretName (the CA that signed tls.crt)")]
            if let ca = t.caSecretName { out.append((ca, SecurityLayout.caKey, "spec.listeners.tls.caSecretName")) }
        }
        if let t = spec.listeners?.external?.tls {
            out += [(t.secretName, SecurityLayout.certificateKey, "spec.listeners.external.tls.secretName"),
                    (t.secretName, SecurityLayout.privateKeyKey, "spec.listeners.external.tls.secretName")]
            if let ca = t.caSecretName { out.append((ca, SecurityLayout.caKey, "spec.listeners.external.tls.caSecretName")) }
        }
        if let ca = spec.storage.caSecretName { out.append((ca, SecurityLayout.caKey, "spec.storage.caSecretName")) }
        return out
    }
}

extension ClusterNames {
    /// The rendered Secret holding the broker's users file.
    public var usersSecret: String { "\(cluster)-users" }
    /// The operator-generated Secret with the passwords of its own and the brokers' users.
    public var operatorCredentialsSecret: String { "\(cluster)-operator-credentials" }
}
