// Shared by the test targets ("Tests that fail loudly" in the style guide; README "Developing"):
// - `requireCase` turns "this value should have that shape" into a test failure that names
//   what was expected and what came, instead of a `guard case` that silently returns;
// - `Peer` describes something a test needs from outside the package (moto's S3 server, the
//   Kafka schemas in ../shared). A missing peer is a visible skip on a developer's machine and a
//   test failure when CI=true.
import Foundation
import Synchronization
import Testing

// MARK: - Shapes

/// The payload `extract` finds in `value`; otherwise records a failure naming `expected` and the
/// value that came, and throws (like `#require`), so the test stops there.
///
///     let spec = try requireCase(decision.action, ".create") { if case .create(let s) = $0 { s } else { nil } }
///
/// or, with an accessor such as `var created: LeaseSpec? { if case .create(let s) = self { s } else { nil } }`,
/// `try requireCase(decision.action, ".create", \.created)`.
public func requireCase<Value, Payload>(
    _ value: Value, _ expected: @autoclosure () -> String, sourceLocation: SourceLocation = #_sourceLocation,
    _ extract: (Value) -> Payload?
) throws -> Payload {
    let payload = extract(value)
    return try #require(payload, "expected \(expected()), got \(brief(value))", sourceLocation: sourceLocation)
}

/// `value` as a `T`; otherwise a failure naming `T` and what came (nil included), and a throw.
public func requireType<T>(_ value: Any?, as type: T.Type = T.self, sourceLocation: SourceLocation = #_sourceLocation) throws -> T {
    let cast = value as? T
    return try #require(cast, "expected \(T.self), got \(value.map { brief($0) } ?? "nil")", sourceLocation: sourceLocation)
}

/// A description of `value` short enough for a failure message (responses can carry records).
public func brief(_ value: Any, limit: Int = 400) -> String {
    let text = String(describing: value)
    return text.count <= limit ? text : String(text.prefix(limit)) + "… (\(text.count) characters)"
}

// MARK: - Peers

/// CI=true (also 1/yes, any case) in the environment: a missing peer fails the test.
public var runningInCI: Bool {
    guard let value = ProcessInfo.processInfo.environment["CI"]?.lowercased() else { return false }
    return ["true", "1", "yes"].contains(value)
}

/// Something a test needs that the package does not provide, found once per test process.
public struct Peer: Sendable, CustomStringConvertible {
    /// What the tests use, e.g. "moto S3 server (FLOE_TEST_S3_ENDPOINT)".
    public let name: String
    /// How to provide it.
    public let remedy: String
    /// The endpoint or path when the peer is here.
    public let value: String?

    public init(name: String, remedy: String, value: String?) {
        self.name = name
        self.remedy = remedy
        self.value = value
    }

    public var isAvailable: Bool { value != nil }
    public var description: String { name }

    /// The line a skipped test reports; `what` names the tests that need the peer.
    public func skipMessage(_ what: String) -> String {
        "SKIPPED: \(what): \(name) is not available (\(remedy)); with CI=true this is a failure"
    }

    /// A trait for tests that need the peer: when it is missing, Swift Testing reports the test
    /// as skipped with `skipMessage(what)` (also printed as a framed SKIPPED line); under CI=true
    /// the test runs, and `require()` in its body fails it.
    public func enabled(for what: String, sourceLocation: SourceLocation = #_sourceLocation) -> ConditionTrait {
        .enabled(if: shouldRun(what, sourceLocation: sourceLocation), Comment(rawValue: skipMessage(what)), sourceLocation: sourceLocation)
    }

    private func shouldRun(_ what: String, sourceLocation: SourceLocation) -> Bool {
        if isAvailable || runningInCI { return true }
        // A suite's condition is evaluated for the suite and again for each of its tests: say it once.
        let message = skipMessage(what)
        if announcedSkips.withLock({ $0.insert(message).inserted }) { announceSkip(message, sourceLocation: sourceLocation) }
        return false
    }

    /// Test arguments that need the peer: all of `cases` when it is here or under CI=true,
    /// otherwise `cases` without `needing` (pair it with a test gated by `enabled(for:)`, so the
    /// skip is reported).
    public func arguments<C: Equatable>(_ cases: [C], needing: [C]) -> [C] {
        isAvailable || runningInCI ? cases : cases.filter { !needing.contains($0) }
    }

    /// The peer's value, or a recorded failure and a throw (in tests gated by `enabled(for:)`,
    /// which run without the peer only under CI=true).
    public func require(sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        try #require(value, "\(name) is required\(runningInCI ? " under CI=true" : "") and is missing: \(remedy)",
                     sourceLocation: sourceLocation)
    }

    /// A peer given by a non-empty environment variable.
    public static func environment(_ variable: String, name: String, remedy: String) -> Peer {
        let value = ProcessInfo.processInfo.environment[variable].flatMap { $0.isEmpty ? nil : $0 }
        return Peer(name: "\(name) (\(variable))", remedy: remedy, value: value)
    }

    /// A peer that is a file or directory.
    public static func path(_ path: String, name: String, remedy: String) -> Peer {
        Peer(name: "\(name) at \(path)", remedy: remedy, value: FileManager.default.fileExists(atPath: path) ? path : nil)
    }
}

/// The skip messages printed so far in this test process.
private let announcedSkips = Mutex<Set<String>>([])

extension Peer {
    /// moto's S3 server; scripts/test starts one and exports its URL.
    public static let motoS3 = Peer.environment(
        "FLOE_TEST_S3_ENDPOINT", name: "moto S3 server",
        remedy: "run scripts/test, or start `moto_server -H 127.0.0.1 -p PORT` and export FLOE_TEST_S3_ENDPOINT=http://127.0.0.1:PORT")
}

/// Prints `message` framed so it stands out in `swift test` output, with where it came from.
public func announceSkip(_ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let rule = String(repeating: "*", count: 72)
    print("\(rule)\n\(message)\n  at \(sourceLocation.fileID):\(sourceLocation.line)\n\(rule)")
}
