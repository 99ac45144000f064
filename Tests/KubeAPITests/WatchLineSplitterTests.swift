import Foundation
import KubeAPI
import Support
import Testing

@Suite struct WatchLineSplitterTests {
    /// A watch stream of `count` events with objects of varied sizes (some much larger than a chunk).
    static func stream(count: Int, seed: UInt64) -> (bytes: [UInt8], names: [String]) {
        var rng = SplitMix64(seed: seed)
        var text = ""
        var names: [String] = []
        for i in 0..<count {
            let name = "cm-\(i)"
            let filler = String(repeating: "é", count: Int(rng.next() % 3000))  // multi-byte UTF-8
            names.append(name)
            let type = ["ADDED", "MODIFIED", "DELETED"][Int(rng.next() % 3)]
            text += #"{"type":"\#(type)","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"\#(name)","resourceVersion":"\#(i + 1)"},"data":{"f":"\#(filler)"}}}"#
            text += rng.next() % 4 == 0 ? "\r\n" : "\n"
            if rng.next() % 10 == 0 { text += "\n" }  // blank lines are skipped
        }
        return (Array(text.utf8), names)
    }

    static func decodeAll(_ bytes: [UInt8], chunks: [Int]) throws -> [WatchEvent<ConfigMap>] {
        var decoder = WatchEventDecoder<ConfigMap>()
        var events: [WatchEvent<ConfigMap>] = []
        var offset = 0
        var i = 0
        while offset < bytes.count {
            let n = min(chunks[i % chunks.count], bytes.count - offset)
            decoder.feed(bytes[offset..<(offset + n)])
            offset += n
            i += 1
            while let e = try decoder.next() { events.append(e) }
        }
        if let last = try decoder.finish() { events.append(last) }
        return events
    }

    static func names(_ events: [WatchEvent<ConfigMap>]) -> [String] {
        events.map { e -> String in
            switch e {
            case .added(let o), .modified(let o), .deleted(let o): o.metadata.name ?? "?"
            default: "?"
            }
        }
    }

    @Test func allAtOnceByteByByteAndRandomChunksAgree() throws {
        let (bytes, names) = Self.stream(count: 40, seed: 7)
        let whole = try Self.decodeAll(bytes, chunks: [bytes.count])
        #expect(Self.names(whole) == names)
        #expect(try Self.decodeAll(bytes, chunks: [1]) == whole)
        var rng = SplitMix64(seed: 99)
        for _ in 0..<20 {
            let chunks = (0..<50).map { _ in 1 + Int(rng.next() % 4096) }
            #expect(try Self.decodeAll(bytes, chunks: chunks) == whole)
        }
    }

    @Test func aChunkWithoutNewlineIsNotTheEnd() throws {
        var s = WatchLineSplitter()
        s.feed(Array(#"{"type":"BOOKMARK","object":{"metadata":{"resourceVer"#.utf8))
        #expect(try s.nextLine() == nil)
        s.feed(Array(#"sion":"12"}}}"#.utf8))
        #expect(try s.nextLine() == nil, "still no newline: need more")
        s.feed([UInt8(ascii: "\n")])
        let line = try #require(try s.nextLine())
        let event = try KubeJSON.decode(WatchEvent<ConfigMap>.self, from: Data(line))
        #expect(event == .bookmark(resourceVersion: "12"))
        #expect(try s.finish() == nil)
    }

    @Test func finalLineWithoutNewlineIsDecodedAtTheEnd() throws {
        let (bytes, names) = Self.stream(count: 5, seed: 3)
        var trimmed = bytes
        while trimmed.last == UInt8(ascii: "\n") || trimmed.last == UInt8(ascii: "\r") { trimmed.removeLast() }
        for chunk in [1, 7, 100, trimmed.count] {
            #expect(Self.names(try Self.decodeAll(trimmed, chunks: [chunk])) == names)
        }
    }

    @Test func errorEventCarriesTheStatus() throws {
        var d = WatchEventDecoder<ConfigMap>()
        d.feed(Array(#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 5 (90)","reason":"Expired","code":410}}"#.utf8))
        #expect(try d.next() == nil)
        let e = try #require(try d.finish())
        guard case .error(let status) = e else { Issue.record("not an error event: \(e)"); return }
        #expect(status.code == 410)
        #expect(status.reason == "Expired")
    }

    @Test func lineLengthIsBounded() throws {
        var s = WatchLineSplitter(maxLineLength: 64)
        s.feed(Array(repeating: UInt8(ascii: "x"), count: 40))
        #expect(try s.nextLine() == nil)
        s.feed(Array(repeating: UInt8(ascii: "x"), count: 40))
        #expect(throws: KubeAPIError.watchLineTooLong(limit: 64)) { _ = try s.nextLine() }
        var ok = WatchLineSplitter(maxLineLength: 64)
        ok.feed(Array(repeating: UInt8(ascii: "y"), count: 64) + [10] + Array("z\n".utf8))
        #expect(try ok.nextLine()?.count == 64)
        #expect(try ok.nextLine().map { Array($0) } == [UInt8(ascii: "z")])
        #expect(ok.bufferedByteCount == 0)
    }

    @Test func malformedLineIsADecodeErrorNamingTheType() throws {
        var d = WatchEventDecoder<ConfigMap>()
        d.feed(Array("{not json}\n".utf8))
        #expect(throws: KubeAPIError.self) { _ = try d.next() }
    }
}

@Suite struct TokenBucketTests {
    @Test func burstThenSteadyRate() {
        var b = TokenBucket(qps: 5, burst: 2)
        let t0 = MonotonicInstant(nanoseconds: 1_000_000_000)
        #expect(b.reserve(now: t0) == .zero)
        #expect(b.reserve(now: t0) == .zero)
        #expect(b.reserve(now: t0) == .milliseconds(200))
        #expect(b.reserve(now: t0) == .milliseconds(400))
        // After a long idle period the bucket is full again, never more than `burst`.
        let later = t0.advanced(by: .seconds(10))
        #expect(b.reserve(now: later) == .zero)
        #expect(b.reserve(now: later) == .zero)
        #expect(b.reserve(now: later) == .milliseconds(200))
    }
}

@Suite struct KubeConfigTests {
    static let text = """
        apiVersion: v1
        kind: Config
        current-context: dev
        clusters:
        - name: c1
          cluster:
            server: https://127.0.0.1:6443/
            certificate-authority-data: \(Data("CA PEM".utf8).base64EncodedString())
        - name: c2
          cluster:
            server: https://other:443
            insecure-skip-tls-verify: true
        users:
        - name: u1
          user:
            client-certificate: certs/client.crt
            client-key: /abs/client.key
        - name: u2
          user:
            token: abc123
        - name: u3
          user:
            client-certificate-data: \(Data("CERT".utf8).base64EncodedString())
        contexts:
        - name: dev
          context: {cluster: c1, user: u1, namespace: team-a}
        - name: prod
          context: {cluster: c2, user: u2}
        - name: broken
          context: {cluster: c1, user: u3}
        """

    @Test func currentContextWithClientCertificateFiles() throws {
        let c = try KubeClientConfig.kubeconfig(text: Self.text, source: "test", baseDirectory: "/home/me/.kube")
        #expect(c.server == "https://127.0.0.1:6443")
        #expect(c.tls.caPEM == Array("CA PEM".utf8))
        #expect(c.tls.insecureSkipVerify == false)
        #expect(c.tls.clientCertificateFile == "/home/me/.kube/certs/client.crt")
        #expect(c.tls.clientKeyFile == "/abs/client.key")
        #expect(c.credentials == .none)
        #expect(c.namespace == "team-a")
    }

    @Test func explicitContextWithTokenAndInsecureOnlyWhenSet() throws {
        let c = try KubeClientConfig.kubeconfig(text: Self.text, source: "test", baseDirectory: "/", context: "prod")
        #expect(c.server == "https://other:443")
        #expect(c.tls.insecureSkipVerify == true)
        #expect(c.credentials == .token("abc123"))
        #expect(c.namespace == nil)
    }

    @Test func errorsNameTheProblem() {
        #expect(throws: KubeAPIError.configuration(source: "test", detail: "no contexts entry named nope")) {
            _ = try KubeClientConfig.kubeconfig(text: Self.text, source: "test", baseDirectory: "/", context: "nope")
        }
        #expect(throws: KubeAPIError.self) {
            _ = try KubeClientConfig.kubeconfig(text: Self.text, source: "test", baseDirectory: "/", context: "broken")
        }
    }

    @Test func inClusterRequiresTheCA() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("floe-sa-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }  // test cleanup only
        try "tok".write(toFile: dir + "/token", atomically: true, encoding: .utf8)
        try "ns1\n".write(toFile: dir + "/namespace", atomically: true, encoding: .utf8)
        let env = ["KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"]
        #expect(throws: KubeAPIError.self) { _ = try KubeClientConfig.inCluster(environment: env, directory: dir) }
        try "CA".write(toFile: dir + "/ca.crt", atomically: true, encoding: .utf8)
        let c = try KubeClientConfig.inCluster(environment: env, directory: dir)
        #expect(c.server == "https://10.0.0.1:443")
        #expect(c.tls.caFile == dir + "/ca.crt")
        #expect(c.tls.insecureSkipVerify == false)
        #expect(c.credentials == .tokenFile(dir + "/token"))
        #expect(c.namespace == "ns1")
        #expect(throws: KubeAPIError.self) { _ = try KubeClientConfig.inCluster(environment: [:], directory: dir) }
    }
}
