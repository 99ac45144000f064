import Foundation
import ProtocolGenerator

let usage = """
    usage: floe-protocol-gen [--schemas DIR] [--output DIR] [--test-output DIR] [--check]

    Reads every Kafka message schema (*.json) in the schema directory and writes one Swift file
    per message, plus ApiKey.swift, into the output directory, and RandomMessages.swift into the
    test output directory. Generated files that no schema produces any more are removed.

      --schemas DIR       default: <package root>/../shared/kafka-protocol/messages
      --output DIR        default: <package root>/Sources/KafkaProtocol/Generated
      --test-output DIR   default: <package root>/Tests/KafkaProtocolTests/Generated
      --check             write nothing; exit 1 listing files that differ from a fresh generation
      --help              this text

    The package root is the nearest directory at or above the current one holding Package.swift.
    """

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("floe-protocol-gen: \(message)\n".utf8))
    exit(2)
}

var schemasPath: String?
var outputPath: String?
var testOutputPath: String?
var check = false
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--help", "-h":
        print(usage)
        exit(0)
    case "--check":
        check = true
    case "--schemas", "--output", "--test-output":
        guard let value = arguments.popFirst() else { fail("\(argument) needs a directory") }
        if argument == "--schemas" { schemasPath = value } else if argument == "--output" { outputPath = value } else { testOutputPath = value }
    default:
        fail("unknown argument \(argument)\n\(usage)")
    }
}

func packageRoot() -> URL? {
    var dir = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).standardizedFileURL
    while true {
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) { return dir }
        let parent = dir.deletingLastPathComponent()
        if parent.path == dir.path { return nil }
        dir = parent
    }
}

func resolve(_ given: String?, _ relative: String) -> URL {
    if let given { return URL(fileURLWithPath: given).standardizedFileURL }
    guard let root = packageRoot() else {
        fail("no Package.swift at or above \(FileManager.default.currentDirectoryPath); pass the directories explicitly")
    }
    return root.appendingPathComponent(relative).standardizedFileURL
}

let schemas = resolve(schemasPath, "../shared/kafka-protocol/messages")
let output = resolve(outputPath, "Sources/KafkaProtocol/Generated")
let testOutput = resolve(testOutputPath, "Tests/KafkaProtocolTests/Generated")

let sources: [String: String]
let testSupport: [String: String]
do {
    let parsed = try ProtocolGenerator.loadSchemas(from: schemas)
    sources = try ProtocolGenerator.generate(schemas: parsed)
    testSupport = try ProtocolGenerator.generateTestSupport(schemas: parsed)
} catch {
    fail("\(error)")
}

/// Generated files currently in `dir` (those whose first line is our header).
func existingGenerated(in dir: URL) -> [String: String] {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir.path) else { return [:] }
    var result: [String: String] = [:]
    for name in names where name.hasSuffix(".swift") {
        let url = dir.appendingPathComponent(name)
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { continue }
        if text.hasPrefix(ProtocolGenerator.headerPrefix) { result[name] = text }
    }
    return result
}

var drifted: [String] = []
var written = 0
var removed = 0
for (dir, files) in [(output, sources), (testOutput, testSupport)] {
    let existing = existingGenerated(in: dir)
    for (name, text) in files.sorted(by: { $0.key < $1.key }) where existing[name] != text {
        let url = dir.appendingPathComponent(name)
        if check {
            drifted.append(url.path + (existing[name] == nil ? " (missing)" : " (differs)"))
            continue
        }
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
            written += 1
        } catch {
            fail("cannot write \(url.path): \(error)")
        }
    }
    for name in existing.keys.sorted() where files[name] == nil {
        let url = dir.appendingPathComponent(name)
        if check {
            drifted.append(url.path + " (stale)")
            continue
        }
        do {
            try FileManager.default.removeItem(at: url)
            removed += 1
        } catch {
            fail("cannot remove stale \(url.path): \(error)")
        }
    }
}

if check {
    if drifted.isEmpty {
        print("floe-protocol-gen: \(sources.count + testSupport.count) generated files are up to date")
        exit(0)
    }
    FileHandle.standardError.write(Data(("floe-protocol-gen: generated files out of date (run `swift run floe-protocol-gen`):\n"
        + drifted.map { "  " + $0 }.joined(separator: "\n") + "\n").utf8))
    exit(1)
}
print("floe-protocol-gen: \(sources.count + testSupport.count) files from \(schemas.path): \(written) written, \(removed) stale removed")
