import Foundation
import Testing

@testable import KubeAPI
import YAML

struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Parses YAML documents with python3's PyYAML (an independent reader) and returns them as
/// JSON text, one document per line.
func parseWithPyYAML(_ yaml: String) throws -> [JSONValue] {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [
        "python3", "-c",
        "import sys, json, yaml\nfor d in yaml.safe_load_all(sys.stdin.read()): print(json.dumps(d, sort_keys=True))",
    ]
    let input = Pipe()
    let output = Pipe()
    let errors = Pipe()
    p.standardInput = input
    p.standardOutput = output
    p.standardError = errors
    try p.run()
    // Write from another thread so a large document cannot deadlock on full pipes.
    let writer = Thread {
        input.fileHandleForWriting.write(Data(yaml.utf8))
        try! input.fileHandleForWriting.close()
    }
    writer.start()
    let out = output.fileHandleForReading.readDataToEndOfFile()
    let err = errors.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else {
        throw KubeAPIError.decode(type: "YAML (PyYAML)", detail: String(decoding: err, as: UTF8.self) + "\n" + yaml)
    }
    return try String(decoding: out, as: UTF8.self).split(separator: "\n").map {
        try KubeJSON.decode(JSONValue.self, from: Data($0.utf8))
    }
}

@Suite struct YAMLEmitterTests {
    @Test func blockStyleLayout() {
        let v: JSONValue = [
            "b": [:], "a": [1, "x: y", ["k": "v", "j": [true]]], "c": ["d": .null, "e": []], "s": "line1\nline2\n",
        ]
        #expect(
            YAMLEmitter.emit(v) == """
                a:
                - 1
                - "x: y"
                - j:
                  - true
                  k: v
                b: {}
                c:
                  d: null
                  e: []
                s: |
                  line1
                  line2

                """)
    }

    @Test func ambiguousScalarsAreQuoted() {
        for s in ["true", "no", "on", "null", "~", "", "1", "0x1F", "1e3", "-1", ".5", "1.0", "012", " x", "x ", "a: b", "#c", "-", "- x", "*a", "&a", "!t", "|", ">", "@x", "%x", "`x", "'x", "\"x", "{}", "[x]", "a #b", "1:30", "2024-01-01"] {
            #expect(!YAMLEmitter.isPlainSafe(s), "\(s) must be quoted")
        }
        for s in ["floe", "floe-operator", "app.kubernetes.io/name", "500m", "1Gi", "/etc/floe", "0.1.0-dev", "RollingUpdate", "a b"] {
            #expect(YAMLEmitter.isPlainSafe(s), "\(s) may be plain")
        }
    }

    /// Random documents emitted by us and read back by PyYAML are the same values.
    @Test func seededRandomDocumentsRoundTripThroughPyYAML() throws {
        var rng = SplitMix64(seed: 0x5EED_0006)
        let alphabet = Array("ab:-#' \"\\\n\t{}[],&*!|>%@`.0123456789eExyz/=é✓\u{85}\u{2028}\u{7F}\u{1}")
        let words = ["true", "False", "null", "~", "yes", "1", "1.5", "-3", "0o7", "012", "", " ", "- ", "x:", "a: b", "1Gi", "floe"]
        func randomString() -> String {
            if rng.next() % 3 == 0 { return words[Int(rng.next() % UInt64(words.count))] }
            let n = Int(rng.next() % 12)
            return String((0..<n).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] })
        }
        func randomValue(depth: Int) -> JSONValue {
            switch rng.next() % (depth > 3 ? 4 : 6) {
            case 0: return .string(randomString())
            case 1: return .int(Int64(bitPattern: rng.next()) >> Int64(rng.next() % 63))
            case 2: return .bool(rng.next() % 2 == 0)
            case 3: return rng.next() % 4 == 0 ? .null : .string(randomString() + "\n" + randomString())
            case 4: return .array((0..<Int(rng.next() % 4)).map { _ in randomValue(depth: depth + 1) })
            default:
                var o: [String: JSONValue] = [:]
                for _ in 0..<Int(rng.next() % 5) { o[randomString()] = randomValue(depth: depth + 1) }
                return .object(o)
            }
        }
        let docs = (0..<300).map { _ in randomValue(depth: 0) }
        let parsed = try parseWithPyYAML(YAMLEmitter.emitDocuments(docs))
        #expect(parsed.count == docs.count)
        for (i, (want, got)) in zip(docs, parsed).enumerated() where want != got {
            Issue.record("document \(i) differs:\n\(YAMLEmitter.emit(want))\nread back as \(got)")
        }
    }
}

@Suite struct YAMLInputTests {
    @Test func scalarsAreTypedLikeKubernetesManifests() throws {
        let node = try YAMLNode.parse("a: 1\nb: \"1\"\nc: true\nd: 'true'\ne: ~\nf: 1.5\ng: 500m\nh: [x, -2]\ni:\n")
        #expect(JSONValue(yaml: node) == ["a": 1, "b": "1", "c": true, "d": "true", "e": .null, "f": .double(1.5), "g": "500m", "h": ["x", -2], "i": .null])
    }

    /// What the emitter writes, the YAML module reads back as the same value.
    @Test func emitterOutputReadsBackThroughTheYAMLModule() throws {
        var rng = SplitMix64(seed: 0xFEED)
        let words = ["true", "no", "null", "~", "1", "-1.5", "", " x", "a: b", "#", "1Gi", "line\nnext\n", "tab\there", "é✓"]
        for _ in 0..<200 {
            var o: [String: JSONValue] = [:]
            for _ in 0..<Int(rng.next() % 6) {
                let w = words[Int(rng.next() % UInt64(words.count))]
                o[w + String(rng.next() % 10)] = rng.next() % 3 == 0 ? .int(Int64(bitPattern: rng.next())) : .array([.string(w), .bool(rng.next() % 2 == 0)])
            }
            let value = JSONValue.object(o)
            #expect(JSONValue(yaml: try YAMLNode.parse(YAMLEmitter.emit(value))) == value)
        }
    }
}
