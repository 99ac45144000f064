import KafkaClient
import Support
import TLS

/// The TLS side of the broker's configuration (docs/security.md, "TLS").
extension BrokerConfig {
    /// The security protocol of a listener: `security.protocol` (internal) or
    /// `external.security.protocol`.
    public func securityProtocol(_ listener: ListenerName) throws -> SecurityProtocol {
        let key = listener == .internal ? "security.protocol" : "external.security.protocol"
        let text = (self[key] ?? "PLAINTEXT").trimmingSpaces
        guard let value = SecurityProtocol(rawValue: text) else {
            throw BrokerError.invalidConfig(name: key, value: text, reason: "must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
        }
        return value
    }

    /// `ssl.certificate.file`, `ssl.key.file`, `ssl.client.ca.file` and `ssl.client.auth`.
    public func tlsServerFiles() throws -> TLSServerFiles {
        func file(_ key: String) throws -> String {
            let path = (self[key] ?? "").trimmingSpaces
            guard !path.isEmpty else { throw BrokerError.invalidConfig(name: key, value: "(unset)", reason: "a TLS listener needs it") }
            return path
        }
        let authText = (self["ssl.client.auth"] ?? "none").trimmingSpaces
        guard let auth = TLSClientAuth(rawValue: authText) else {
            throw BrokerError.invalidConfig(name: "ssl.client.auth", value: authText, reason: "must be none, requested or required")
        }
        let ca = (self["ssl.client.ca.file"] ?? "").trimmingSpaces
        return TLSServerFiles(certificateFile: try file("ssl.certificate.file"), keyFile: try file("ssl.key.file"),
                              clientCAFile: ca.isEmpty ? nil : ca, clientAuth: auth)
    }

    /// TLS of the broker's own client connections (to the controller and other brokers) when the
    /// internal listener uses it: brokers are verified against `inter.broker.ssl.ca.file` (the
    /// system trust store when unset); when the listeners ask for client certificates the
    /// broker presents its own (`ssl.certificate.file`, which then needs the clientAuth usage).
    public func interBrokerTLS() throws -> KafkaClientTLS? {
        guard try securityProtocol(.internal).usesTLS else { return nil }
        let ca = (self["inter.broker.ssl.ca.file"] ?? "").trimmingSpaces
        var tls = KafkaClientTLS(caFile: ca.isEmpty ? nil : ca)
        if (self["ssl.client.auth"] ?? "none").trimmingSpaces != "none" {
            tls.certificateFile = self["ssl.certificate.file"]
            tls.keyFile = self["ssl.key.file"]
        }
        return tls
    }
}

extension Broker {
    /// How often the certificate files are looked at for a change.
    static let certificateCheckMilliseconds: UInt64 = 5_000

    /// The server certificates of the TLS listeners (nil when neither uses TLS); throws when the
    /// files do not make a context, so a broker with a broken pair does not start.
    static func tlsCertificates(_ config: BrokerConfig, logger: Logger) throws -> TLSServerCertificates? {
        let external = try !(config["external.listen"] ?? "").isEmpty && config.securityProtocol(.external).usesTLS
        guard try config.securityProtocol(.internal).usesTLS || external else { return nil }
        let files = try config.tlsServerFiles()
        do throws(TLSError) {
            return try TLSServerCertificates(files: files, checkIntervalMilliseconds: certificateCheckMilliseconds,
                                             nowMilliseconds: monotonicMilliseconds()) { outcome in
                switch outcome {
                case .success:
                    logger.info("TLS certificates reloaded", metadata: ["file": files.certificateFile])
                case let .failure(error):
                    logger.error("TLS certificates changed but cannot be used; keeping the previous ones",
                                 metadata: ["file": files.certificateFile, "error": error.description])
                }
            }
        } catch {
            throw BrokerError.invalidConfig(name: "ssl.certificate.file", value: files.certificateFile, reason: error.description)
        }
    }
}
