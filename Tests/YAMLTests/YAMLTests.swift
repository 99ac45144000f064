import Testing
@testable import YAML

struct YAMLTests {
    @Test func kubeconfigShapeParses() throws {
        let text = """
            apiVersion: v1
            kind: Config
            current-context: dev
            clusters:
            - name: dev
              cluster:
                server: https://127.0.0.1:6443
                insecure-skip-tls-verify: true
                certificate-authority-data: "LS0t"
            users:
            - name: me
              user: {token: abc, exec: null}
            """
        let node = try YAMLNode.parse(text)
        #expect(node["current-context"]?.string == "dev")
        let cluster = node["clusters"]?.array?.first?["cluster"]
        #expect(cluster?["server"]?.string == "https://127.0.0.1:6443")
        #expect(cluster?["insecure-skip-tls-verify"]?.bool == true)
        #expect(cluster?["certificate-authority-data"]?.bool == nil)
        #expect(node["users"]?.array?.first?["user"]?["token"]?.string == "abc")
        #expect(node["users"]?.array?.first?["user"]?["exec"] == .null)
    }

    @Test func quotedScalarsAreNotBooleans() throws {
        let node = try YAMLNode.parse("a: 'true'\nb: true\nc: \"42\"\nd: 42")
        #expect(node["a"]?.bool == nil)
        #expect(node["a"]?.string == "true")
        #expect(node["b"]?.bool == true)
        #expect(node["c"]?.int == nil)
        #expect(node["d"]?.int == 42)
    }

    @Test func multipleDocuments() throws {
        let docs = try YAMLNode.parseAll("a: 1\n---\nb: 2\n")
        #expect(docs.count == 2)
        #expect(docs[1]["b"]?.int == 2)
        #expect(throws: YAMLError.multipleDocuments(count: 2)) { try YAMLNode.parse("a: 1\n---\nb: 2\n") }
    }

    @Test func errorsNameTheLine() {
        #expect(throws: YAMLError.duplicateKey("a", line: 2)) { try YAMLNode.parse("a: 1\na: 2\n") }
        #expect { try YAMLNode.parse("a: [1, 2\nb: 3") } throws: { error in
            guard case let .parser(_, line, _) = error as? YAMLError else { return false }
            return line >= 2
        }
        #expect(throws: YAMLError.unsupportedAlias(line: 2)) { try YAMLNode.parse("a: &x 1\nb: *x\n") }
    }

    @Test func emptyInputIsNull() throws {
        #expect(try YAMLNode.parse("") == .null)
        #expect(try YAMLNode.parse("~") == .null)
    }
}
