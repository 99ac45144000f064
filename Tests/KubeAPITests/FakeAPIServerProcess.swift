import Foundation
import HTTPClient

/// Runs `Tests/FakeKubeAPI/fake_apiserver.py` (the independent Python fake) as a child process
/// for one test: HTTPS with a generated CA and a bearer token. Waits for the port file with a
/// deadline (polling a condition, not sleeping for a fixed time).
final class FakeAPIServerProcess: @unchecked Sendable {
    // @unchecked Sendable: every field is set in init and only read afterwards.
    let process = Process()
    let directory: String
    let port: Int
    let token = "test-token-\(UInt32.random(in: 0...UInt32.max))"
    var url: String { "https://127.0.0.1:\(port)" }
    var caFile: String { directory + "/tls/ca.crt" }

    init(extraArguments: [String] = []) throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("floe-fake-\(getpid())-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory + "/tls", withIntermediateDirectories: true)
        let portFile = directory + "/port"
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", root.appendingPathComponent("Tests/FakeKubeAPI/fake_apiserver.py").path, "--port", "0", "--port-file", portFile,
            "--tls-dir", directory + "/tls", "--token", token, "--bookmark-interval", "0.5",
        ] + extraArguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(30)
        while true {
            if let data = FileManager.default.contents(atPath: portFile),
                let p = Int(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
            {
                port = p
                break
            }
            guard process.isRunning, Date() < deadline else {
                process.terminate()
                throw CocoaError(.fileReadNoSuchFile, userInfo: [NSFilePathErrorKey: portFile])
            }
            usleep(20_000)  // polling the port file until the deadline
        }
    }

    func stop() {
        // SIGKILL: a test double with nothing to save (its SIGTERM path can wait for open
        // watches). Process.waitUntilExit spins a run loop on Linux; poll instead.
        kill(process.processIdentifier, SIGKILL)
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        do { try FileManager.default.removeItem(atPath: directory) } catch { print("cleanup of \(directory) failed: \(error)") }
    }

    /// POST /fake/control (not guarded by the token).
    func control(_ body: String, client: HTTPClient) async throws -> String {
        let r = try await client.execute(
            HTTPRequest(method: "POST", url: url + "/fake/control", headers: ["Content-Type": "application/json"], body: Array(body.utf8)))
        return r.bodyText
    }
}
