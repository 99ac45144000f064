import BrokerSettings
import Foundation
import KafkaClient
import KubeAPI
import Testing

@testable import Operator

/// Samples whose listeners use SASL: rendered with ``fixedMaterial(_:)`` (the reconciler reads
/// the real passwords from Secrets).
let securedSampleNames = ["secured"]

/// Fixed passwords for rendering in tests: `pw-<user>` and fixed operator/broker passwords.
func fixedMaterial(_ spec: FloeClusterSpec, operatorPassword: String = "operator-secret", brokerPassword: String = "broker-secret")
    -> SecurityMaterial
{
    var passwords: [String: String] = [:]
    for u in spec.users ?? [] { passwords[u.name] = "pw-\(u.name)" }
    return SecurityMaterial(userPasswords: passwords, operatorPassword: operatorPassword, brokerPassword: brokerPassword)
}

func properties(_ objects: [ManagedObject]) throws -> [String: String] {
    try PropertiesFile.decode(try #require(objects.compactMap(\.configMap).first?.data?[Render.propertiesFile]))
}

func podTemplate(_ objects: [ManagedObject]) throws -> PodTemplateSpec {
    try #require(objects.compactMap(\.statefulSet).first?.spec?.template)
}

extension ManagedObject {
    var secret: Secret? {
        if case .secret(let s) = self { return s }
        return nil
    }
}

@Suite struct RenderSecurityTests {
    @Test(arguments: securedSampleNames) func renderedObjectsMatchGoldenFile(name: String) throws {
        let cluster = try sampleCluster(name)
        let yaml = YAMLEmitter.emitDocuments(try Render.render(cluster, security: fixedMaterial(cluster.spec)).map { try $0.json() })
        let problem = try compareWithFile(yaml, goldenDirectory.appendingPathComponent("\(name).rendered.yaml"))
        #expect(problem == nil, "\(problem ?? "")")
    }

    @Test(arguments: securedSampleNames) func securedSamplesAreValidAndDeterministic(name: String) throws {
        let cluster = try sampleCluster(name)
        #expect(FloeClusterValidation.problems(cluster) == [])
        let a = try Render.render(cluster, security: fixedMaterial(cluster.spec))
        let b = try Render.render(cluster, security: fixedMaterial(cluster.spec))
        #expect(a == b)
    }

    @Test func tlsAndScramRenderTheContractSettings() throws {
        let cluster = try sampleCluster("secured")
        let p = try properties(try Render.render(cluster, security: fixedMaterial(cluster.spec)))
        #expect(p["security.protocol"] == "SASL_SSL")
        #expect(p["external.security.protocol"] == "SASL_SSL")
        #expect(p["ssl.certificate.file"] == "/var/run/secrets/floe/tls/tls.crt")
        #expect(p["ssl.key.file"] == "/var/run/secrets/floe/tls/tls.key")
        #expect(p["inter.broker.ssl.ca.file"] == "/var/run/secrets/floe/tls/ca.crt")
        #expect(p["ssl.client.auth"] == nil, "no client certificates asked for")
        #expect(p["ssl.client.ca.file"] == nil)
        #expect(p["sasl.users.file"] == "/var/run/secrets/floe/users/users.txt")
        #expect(p["sasl.enabled.mechanisms"] == "SCRAM-SHA-256,SCRAM-SHA-512")
        #expect(p["inter.broker.user"] == "floe-broker")
        #expect(p["authorizer"] == "acl")
        #expect(p["super.users"] == "User:floe-broker;User:floe-operator;User:admin")
        #expect(p["storage"] == "s3://floe-data/secured?ca_file=/var/run/secrets/floe/s3-ca/ca.crt&endpoint=https://s3.storage.example.internal:9000&path_style=true&region=us-east-1")
    }

    /// Every combination of TLS and authentication gives Kafka's security protocol.
    @Test func listenerProtocols() {
        let tls = ListenerTLSSpec(secretName: "t", caSecretName: "ca")
        #expect(ListenerProtocol(tls: nil, authentication: nil) == .plaintext)
        #expect(ListenerProtocol(tls: tls, authentication: nil) == .ssl)
        #expect(ListenerProtocol(tls: nil, authentication: ListenerAuthenticationSpec(type: "plain")) == .saslPlaintext)
        #expect(ListenerProtocol(tls: tls, authentication: ListenerAuthenticationSpec(type: "scram-sha-256")) == .saslSSL)
        #expect(ListenerProtocol(tls: tls, authentication: ListenerAuthenticationSpec(type: "tls")) == .ssl)
    }

    @Test func mutualTLSOnTheExternalListenerRequiresClientCertificates() throws {
        var cluster = try sampleCluster("external")
        let tls = ListenerTLSSpec(secretName: "edge-tls", caSecretName: "clients-ca", clientAuth: "required")
        cluster.spec.listeners?.tls = tls
        cluster.spec.listeners?.authentication = ListenerAuthenticationSpec(type: "scram-sha-512")
        cluster.spec.listeners?.external?.tls = tls
        cluster.spec.listeners?.external?.authentication = ListenerAuthenticationSpec(type: "tls")
        #expect(FloeClusterValidation.problems(cluster) == [])
        let objects = try Render.render(cluster, security: fixedMaterial(cluster.spec))
        let p = try properties(objects)
        #expect(p["security.protocol"] == "SASL_SSL")
        #expect(p["external.security.protocol"] == "SSL")
        #expect(p["ssl.client.auth"] == "required")
        #expect(p["ssl.client.ca.file"] == "/var/run/secrets/floe/client-ca/ca.crt")
        #expect(p["sasl.enabled.mechanisms"] == "SCRAM-SHA-512")
        let volumes = try #require(podTemplate(objects).spec?.volumes)
        #expect(volumes.first { $0.name == "client-ca" }?.secret?.secretName == "clients-ca")
    }

    @Test func tlsOnlyNeedsNoUsersAndNoPasswords() throws {
        var cluster = try sampleCluster("minimal")
        cluster.spec.listeners = ListenersSpec(tls: ListenerTLSSpec(secretName: "local-tls"))
        let objects = try Render.render(cluster)  // no SecurityMaterial: nothing uses SASL
        let p = try properties(objects)
        #expect(p["security.protocol"] == "SSL")
        #expect(p["sasl.users.file"] == nil)
        #expect(objects.compactMap(\.secret).isEmpty)
        let template = try podTemplate(objects)
        #expect(template.metadata?.annotations?[SecurityLayout.usersHashAnnotation] == nil)
        #expect(template.spec?.volumes?.map(\.name) == ["config", "tmp", "tls"])
    }

    @Test func secretsAreMountedReadOnly() throws {
        let cluster = try sampleCluster("secured")
        let objects = try Render.render(cluster, security: fixedMaterial(cluster.spec))
        let template = try podTemplate(objects)
        let volumes = try #require(template.spec?.volumes)
        let bySecret = Dictionary(uniqueKeysWithValues: volumes.compactMap { v in v.secret.map { (v.name, $0) } })
        #expect(bySecret["tls"]?.secretName == "secured-tls")
        #expect(bySecret["users"]?.secretName == "secured-users")
        #expect(bySecret["s3-ca"]?.secretName == "storage-ca")
        #expect(bySecret.count == 3)
        for source in bySecret.values { #expect(source.defaultMode == 0o440) }
        let mounts = try #require(template.spec?.containers.first?.volumeMounts)
        for name in bySecret.keys {
            let mount = try #require(mounts.first { $0.name == name }, "\(name) is mounted")
            #expect(mount.readOnly == true)
            #expect(mount.mountPath.hasPrefix("/var/run/secrets/floe/"))
        }
    }

    @Test func theUsersSecretHoldsEveryUserAndTheOperatorsOwn() throws {
        let cluster = try sampleCluster("secured")
        let objects = try Render.render(cluster, security: fixedMaterial(cluster.spec))
        let secret = try #require(objects.compactMap(\.secret).first)
        #expect(secret.metadata.name == "secured-users")
        #expect(secret.metadata.ownerReferences?.first?.uid == cluster.metadata.uid)
        #expect(secret.metadata.annotations?[Render.hashAnnotation] != nil)
        let encoded = try #require(secret.data?[SecurityLayout.usersKey])
        let text = try #require(Data(base64Encoded: encoded).flatMap { String(data: $0, encoding: .utf8) })
        let lines = text.split(separator: "\n").filter { !$0.hasPrefix("#") }
        #expect(lines == ["analytics:pw-analytics", "floe-broker:broker-secret", "floe-operator:operator-secret", "orders-app:pw-orders-app"])
        // Passwords stay out of everything else.
        for object in objects where object.secret == nil {
            let json = try KubeJSON.string(object.json())
            #expect(!json.contains("pw-orders-app") && !json.contains("operator-secret"), "\(object.key)")
        }
    }

    /// Pods roll (their template changes) when a user's password changes, and not when only the
    /// TLS Secret's content does: the template names that Secret and nothing of its content.
    @Test func usersRollPodsCertificatesDoNot() throws {
        let cluster = try sampleCluster("secured")
        let material = fixedMaterial(cluster.spec)
        let before = try podTemplate(try Render.render(cluster, security: material))
        let hash = try #require(before.metadata?.annotations?[SecurityLayout.usersHashAnnotation])
        #expect(hash.count == 64)

        var changed = material
        changed.userPasswords["orders-app"] = "rotated"
        let after = try podTemplate(try Render.render(cluster, security: changed))
        #expect(after.metadata?.annotations?[SecurityLayout.usersHashAnnotation] != hash)
        #expect(after != before)

        var added = cluster
        added.spec.users?.append(UserSpec(name: "billing", passwordSecret: SecretKeyReference(name: "billing", key: "pw")))
        let grown = try podTemplate(try Render.render(added, security: fixedMaterial(added.spec)))
        #expect(grown.metadata?.annotations?[SecurityLayout.usersHashAnnotation] != hash)

        // Everything the template knows of TLS is the Secret's name: a rotated certificate (same
        // Secret, new content) renders the very same template.
        #expect(Set(before.metadata?.annotations?.keys ?? [:].keys) == [Render.configHashAnnotation, SecurityLayout.usersHashAnnotation])
        #expect(try podTemplate(try Render.render(cluster, security: material)) == before)
    }

    /// The annotation is keyed with the operator's secret: the same users file under another
    /// key hashes differently, so the annotation cannot be checked against guessed passwords.
    @Test func theUsersHashIsKeyed() throws {
        let cluster = try sampleCluster("secured")
        let a = try podTemplate(try Render.render(cluster, security: fixedMaterial(cluster.spec)))
        let b = try podTemplate(try Render.render(cluster, security: fixedMaterial(cluster.spec, operatorPassword: "another")))
        #expect(a.metadata?.annotations?[SecurityLayout.usersHashAnnotation] != b.metadata?.annotations?[SecurityLayout.usersHashAnnotation])
        #expect(HMACSHA256.hex(key: "key", "The quick brown fox jumps over the lazy dog")
                == "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8")
    }

    @Test func saslWithoutPasswordsIsNotRendered() throws {
        let cluster = try sampleCluster("secured")
        #expect(throws: OperatorError.self) { try Render.render(cluster) }
    }

    @Test func offlineRenderShowsWherePasswordsComeFrom() throws {
        let cluster = try sampleCluster("secured")
        let users = SecurityMaterial.placeholders(for: cluster.spec).usersFile()
        #expect(users.contains("orders-app:<from Secret orders-app-kafka key password>\n"))
        #expect(users.contains("floe-operator:<generated>\n"))
    }

    /// The contract: every key rendered for security is a declared broker setting with a valid
    /// value (the broker refuses unknown settings at start).
    @Test func renderedSecurityKeysAreDeclaredBrokerSettings() throws {
        let cluster = try sampleCluster("secured")
        var mtls = try sampleCluster("external")
        let tls = ListenerTLSSpec(secretName: "edge-tls", caSecretName: "clients-ca", clientAuth: "required")
        mtls.spec.listeners?.tls = tls
        mtls.spec.listeners?.authentication = ListenerAuthenticationSpec(type: "scram-sha-512")
        mtls.spec.listeners?.external?.tls = tls
        mtls.spec.listeners?.external?.authentication = ListenerAuthenticationSpec(type: "tls")
        var rendered = try properties(try Render.render(cluster, security: fixedMaterial(cluster.spec)))
        rendered.merge(try properties(try Render.render(mtls, security: fixedMaterial(mtls.spec)))) { a, _ in a }
        #expect(Set(rendered.keys).isSuperset(of: SecuritySettings.rendered))
        for (key, value) in rendered.sorted(by: { $0.key < $1.key }) {
            #expect(BrokerSettings.problem(key, value) == nil, "\(key)=\(value)")
        }
    }
}

@Suite struct SecurityValidationTests {
    /// Each mutation of the valid secured sample yields exactly one problem naming the field.
    @Test func eachSecurityRuleReportsItsField() throws {
        let base = try sampleCluster("secured")
        let cases: [(String, (inout FloeCluster) -> Void)] = [
            ("spec.listeners.tls.secretName is empty", { $0.spec.listeners?.tls?.secretName = ""; $0.spec.listeners?.external?.tls = nil }),
            ("spec.listeners.external.tls.secretName is empty", { $0.spec.listeners?.external?.tls?.secretName = ""; $0.spec.listeners?.tls = nil }),
            ("spec.listeners.tls.clientAuth required needs spec.listeners.tls.caSecretName", {
                $0.spec.listeners?.external?.tls = nil; $0.spec.listeners?.tls?.clientAuth = "required" }),
            ("spec.listeners.tls.clientAuth \"always\" is not none, requested or required", {
                $0.spec.listeners?.tls?.clientAuth = "always"; $0.spec.listeners?.external?.tls = nil }),
            ("authentication.type \"kerberos\"", { $0.spec.listeners?.external?.authentication?.type = "kerberos" }),
            ("spec.listeners.authentication.type tls is not supported on the internal listener", {
                $0.spec.listeners?.authentication?.type = "tls"; $0.spec.authorization = nil; $0.spec.users = nil
                $0.spec.listeners?.external?.authentication = nil }),
            ("spec.listeners.external.authentication.type tls needs spec.listeners.external.tls (", {
                $0.spec.listeners?.external?.tls = nil; $0.spec.listeners?.external?.authentication?.type = "tls" }),
            ("spec.listeners.external.authentication.type tls needs spec.listeners.external.tls.caSecretName", {
                $0.spec.listeners?.external?.authentication?.type = "tls"; $0.spec.listeners?.tls = nil
                $0.spec.authorization = nil }),
            ("the broker serves one certificate on all TLS listeners", { $0.spec.listeners?.external?.tls?.secretName = "other-tls" }),
            ("differ in caSecretName or clientAuth", {
                $0.spec.listeners?.external?.tls = ListenerTLSSpec(secretName: "secured-tls", caSecretName: "ca", clientAuth: "requested") }),
            ("makes client certificates required on every TLS listener", {
                let t = ListenerTLSSpec(secretName: "secured-tls", caSecretName: "ca", clientAuth: "requested")
                $0.spec.listeners?.tls = t; $0.spec.listeners?.external?.tls = t
                $0.spec.listeners?.external?.authentication?.type = "tls" }),
            ("spec.users[1].name \"orders-app\" is listed twice", { $0.spec.users?[1].name = "orders-app" }),
            ("spec.users[0].name \"floe-operator\" is reserved", { $0.spec.users?[0].name = "floe-operator" }),
            ("spec.users[0].name \"a:b\" must be", { $0.spec.users?[0].name = "a:b" }),
            ("spec.users[0].passwordSecret.key is empty", { $0.spec.users?[0].passwordSecret.key = "" }),
            ("spec.users is set but no listener uses SASL", {
                $0.spec.listeners?.authentication = nil; $0.spec.listeners?.external?.authentication = nil; $0.spec.authorization = nil }),
            ("spec.authorization.type \"rbac\"", { $0.spec.authorization?.type = "rbac" }),
            ("spec.authorization.type acl needs SASL authentication on the internal listener", {
                $0.spec.listeners?.authentication = nil }),
            ("spec.authorization.superUsers[0] \"admin\" must be a principal", { $0.spec.authorization?.superUsers = ["admin"] }),
            ("spec.storage.caSecretName needs an https:// spec.storage.endpoint", { $0.spec.storage.endpoint = "http://minio:9000" }),
            ("spec.config key \"security.protocol\" is set by the operator", { $0.spec.config = ["security.protocol": "PLAINTEXT"] }),
            ("spec.config key \"super.users\" is set by the operator", { $0.spec.config = ["super.users": "User:x"] }),
        ]
        for (expected, mutate) in cases {
            var cluster = base
            mutate(&cluster)
            let problems = FloeClusterValidation.problems(cluster)
            #expect(problems.count == 1, "\(expected): \(problems)")
            #expect(problems.first?.contains(expected) == true, "\(expected): \(problems)")
        }
    }

    @Test func theCRDDescribesTheSecurityFields() throws {
        let yaml = FloeClusterCRD.yaml()
        for field in ["caSecretName:", "clientAuth:", "authentication:", "passwordSecret:", "superUsers:", "- scram-sha-512"] {
            #expect(yaml.contains(field), "\(field)")
        }
    }
}

@Suite struct KafkaAccessTests {
    @Test func accessFollowsTheInternalListener() throws {
        let cluster = try sampleCluster("secured")
        let names = ClusterNames(cluster: "secured", namespace: "floe-test")
        let secrets = ["secured-tls": ["ca.crt": "PEM", "tls.crt": "C", "tls.key": "K"],
                       "secured-operator-credentials": ["floe-operator": "op", "floe-broker": "br"]]
        let access = try KafkaAccess.forCluster(cluster.spec, names: names, secrets: secrets)
        #expect(access == KafkaAccess(caPEM: "PEM", username: "floe-operator", password: "op"))
        #expect(throws: OperatorError.self) { try KafkaAccess.forCluster(cluster.spec, names: names, secrets: ["secured-tls": ["ca.crt": "PEM"]]) }
        let plain = try sampleCluster("external")
        #expect(try KafkaAccess.forCluster(plain.spec, names: names, secrets: [:]) == .plaintext)
    }

    @Test func secretDataIsDecoded() throws {
        let s = Secret(metadata: ObjectMeta(name: "x"), data: ["a": Data("hello".utf8).base64EncodedString()], stringData: ["b": "world"])
        #expect(try SecretData.decode(s) == ["a": "hello", "b": "world"])
        #expect(throws: OperatorError.self) { try SecretData.decode(Secret(metadata: ObjectMeta(name: "x"), data: ["a": "%%%"])) }
    }

    @Test func plaintextAdminClientsNeedNothing() throws {
        let client = try OperatorKafka.adminClient(bootstrap: [BrokerAddress(host: "127.0.0.1", port: 9)], access: .plaintext)
        client.close()
    }

    /// A secured access gives the client the cluster CA (in a private file) and the operator's
    /// SCRAM-SHA-512 login; a plaintext one neither.
    @Test func securedAdminClients() throws {
        let pem = "-----BEGIN CERTIFICATE-----\n\(UUID().uuidString)\n"
        let access = KafkaAccess(caPEM: pem, username: "floe-operator", password: "op")
        let (tls, sasl) = try OperatorKafka.connectionSecurity(access)
        let caFile = try #require(tls?.caFile)
        #expect(try String(contentsOfFile: caFile, encoding: .utf8) == pem)
        #expect(sasl == KafkaClientSASL(mechanism: .scramSHA512, username: "floe-operator", password: "op"))
        let plain = try OperatorKafka.connectionSecurity(.plaintext)
        #expect(plain.tls == nil && plain.sasl == nil)
        #expect(throws: OperatorError.self) { try OperatorKafka.connectionSecurity(KafkaAccess(username: "floe-operator")) }
        let client = try OperatorKafka.adminClient(bootstrap: [BrokerAddress(host: "127.0.0.1", port: 9)], access: access)
        client.close()
    }

    @Test func theCAFileIsWrittenOnceAndPrivately() throws {
        let dir = NSTemporaryDirectory() + "/floe-ca-test-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = try OperatorKafka.caFile("PEM-A", directory: dir)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "PEM-A")
        #expect(try OperatorKafka.caFile("PEM-A", directory: dir) == path)
        #expect(try OperatorKafka.caFile("PEM-B", directory: dir) != path)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
    }

    @Test func tlsBootstrapUsesTheNamesTheCertificatesCover() {
        let pod = Pod(metadata: ObjectMeta(name: "secured-broker-0"), status: PodStatus(phase: "Running", podIP: "10.0.0.7"))
        let names = ClusterNames(cluster: "secured", namespace: "apps")
        #expect(ClusterReconciler.brokerAddresses([pod], port: 9092) == [BrokerAddress(host: "10.0.0.7", port: 9092)])
        #expect(ClusterReconciler.brokerAddresses([pod], port: 9092, dnsNames: names)
                == [BrokerAddress(host: "secured-broker-0.secured-brokers.apps.svc", port: 9092)])
    }
}
