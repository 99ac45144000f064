import BrokerSettings
import Testing

@Suite struct TLSSettingsTests {
    private func values(_ overrides: [String: String]) -> [String: String] {
        var v = Dictionary(uniqueKeysWithValues: BrokerSettings.all.compactMap { s in s.defaultValue.map { (s.name, $0) } })
        for (k, value) in overrides { v[k] = value }
        return v
    }

    @Test func aTLSListenerNeedsACertificateAndKey() {
        let problems = BrokerSettings.problems(values(["security.protocol": "SSL"])) { _ in .set }
        #expect(problems.map(\.reason) == ["an SSL listener needs ssl.certificate.file", "an SSL listener needs ssl.key.file"])
        let complete = values(["security.protocol": "SASL_SSL", "ssl.certificate.file": "/c.pem", "ssl.key.file": "/k.pem"])
        #expect(BrokerSettings.problems(complete) { _ in .set }.isEmpty)
    }

    @Test func theExternalProtocolCountsOnlyWithAnExternalListener() {
        #expect(BrokerSettings.problems(values(["external.security.protocol": "SSL"])) { _ in .set }.isEmpty)
        let problems = BrokerSettings.problems(values(["external.security.protocol": "SSL", "external.listen": "0.0.0.0:9094"])) { _ in .set }
        #expect(problems.map(\.key) == ["external.security.protocol", "external.security.protocol"])
    }

    @Test func clientCertificatesNeedTheirCA() {
        let problems = BrokerSettings.problems(values(["ssl.client.auth": "required"])) { _ in .set }
        #expect(problems.map(\.key) == ["ssl.client.auth"])
        #expect(BrokerSettings.problems(values(["ssl.client.auth": "maybe"])) { _ in .set }.map(\.key) == ["ssl.client.auth"])
    }
}
