import Foundation
import Support

/// The console's HTTP routes, served on the operator's HTTP port next to /metrics and probes.
/// Read-only: every route is a GET of a page or a JSON document; there are no actions.
///
/// - `/` and `/clusters/NAME`: the page (one HTML document with its CSS and JavaScript inline).
/// - `/api/clusters`: the clusters; `/api/clusters/NAME`: one cluster now;
///   `/api/clusters/NAME/series?sinceMs=T`: its time series after T.
///
/// `fault` is a test switch: while it returns a message, every `/api/` route answers 503 with it
/// (how the page is shown to say "the API fails" rather than keep old numbers on screen).
public struct ConsoleRoutes: Sendable {
    public let store: ConsoleStore
    let fault: @Sendable () -> String?

    public init(store: ConsoleStore, fault: @escaping @Sendable () -> String? = { nil }) {
        self.store = store
        self.fault = fault
    }

    /// The fault switch from the environment: while the file named by `FLOE_CONSOLE_FAULT_FILE`
    /// exists, the API fails (tests only; unset in any real deployment).
    public static func faultFromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> @Sendable () -> String? {
        guard let path = environment["FLOE_CONSOLE_FAULT_FILE"], !path.isEmpty else { return { nil } }
        return { FileManager.default.fileExists(atPath: path) ? "injected fault (FLOE_CONSOLE_FAULT_FILE \(path) exists)" : nil }
    }

    /// The answer for a console path, or nil when the path is not the console's.
    public func handle(_ request: ProbeServer.Request) -> ProbeServer.Response? {
        let path = request.path
        if path == "/" || path == "/clusters" || path.hasPrefix("/clusters/") {
            return .ok(ConsolePage.html, contentType: "text/html; charset=utf-8")
        }
        guard path == "/api" || path.hasPrefix("/api/") else { return nil }
        if let message = fault() { return Self.json(ConsoleAPI.Failure(error: message), status: 503) }
        if path == "/api/clusters" {
            return Self.json(ConsoleAPI.ClusterList(clusters: store.all.map(\.summary)))
        }
        let prefix = "/api/clusters/"
        guard path.hasPrefix(prefix) else { return Self.json(ConsoleAPI.Failure(error: "no such API: \(path)"), status: 404) }
        var name = String(path.dropFirst(prefix.count))
        let wantsSeries = name.hasSuffix("/series")
        if wantsSeries { name.removeLast("/series".count) }
        name = name.removingPercentEncoding ?? name
        guard let recorder = store.recorder(name) else {
            return Self.json(ConsoleAPI.Failure(error: "no cluster \(name) (clusters: \(store.all.map(\.name).joined(separator: ", ")))"), status: 404)
        }
        if wantsSeries {
            var since: Int64?
            if let text = request.query["sinceMs"] {
                guard let t = Int64(text) else { return Self.json(ConsoleAPI.Failure(error: "sinceMs must be milliseconds, got \(text)"), status: 400) }
                since = t
            }
            return Self.json(recorder.series(sinceMs: since))
        }
        return Self.json(recorder.snapshot())
    }

    static func json(_ value: some Encodable, status: Int = 200) -> ProbeServer.Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        do {
            let data = try encoder.encode(value)
            return ProbeServer.Response(status: status, contentType: "application/json", body: String(decoding: data, as: UTF8.self))
        } catch {
            return ProbeServer.Response(status: 500, contentType: "application/json", body: "{\"error\":\"cannot encode the answer\"}")
        }
    }
}
