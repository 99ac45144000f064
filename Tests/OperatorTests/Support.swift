import Foundation
import KubeAPI
import Operator

/// The repository root, found from this file's path (tests read and, when asked, rewrite
/// files under it).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()
let goldenDirectory = repositoryRoot.appendingPathComponent("Tests/OperatorTests/Golden")
let updateGolden = ProcessInfo.processInfo.environment["FLOE_UPDATE_GOLDEN"] == "1"

let sampleNames = ["minimal", "s3-minio", "autoscaling", "file-wal", "external"]

/// A sample cluster as the API server would hand it to us: namespace, uid, generation set.
func sampleCluster(_ name: String) throws -> FloeCluster {
    let url = goldenDirectory.appendingPathComponent("\(name).input.json")
    var cluster = try FloeClusterManifest.decode(json: Data(contentsOf: url), source: url.path)
    cluster.metadata.namespace = "floe-test"
    cluster.metadata.uid = "6a1f0e2c-0000-4000-8000-\(String(repeating: "0", count: 12 - name.count))\(name.count)"
    cluster.metadata.generation = 1
    return cluster
}

/// Compares `actual` with the checked-in file, or rewrites it when FLOE_UPDATE_GOLDEN=1.
/// Returns a description of the difference, nil when equal.
func compareWithFile(_ actual: String, _ url: URL) throws -> String? {
    if updateGolden {
        try actual.write(to: url, atomically: true, encoding: .utf8)
        return nil
    }
    guard FileManager.default.fileExists(atPath: url.path) else {
        return "\(url.path) does not exist; run with FLOE_UPDATE_GOLDEN=1 to create it"
    }
    let expected = try String(contentsOf: url, encoding: .utf8)
    if expected == actual { return nil }
    let a = expected.split(separator: "\n", omittingEmptySubsequences: false)
    let b = actual.split(separator: "\n", omittingEmptySubsequences: false)
    let line = zip(a, b).enumerated().first { $1.0 != $1.1 }?.offset ?? min(a.count, b.count)
    return """
        \(url.path) differs at line \(line + 1) (rerun with FLOE_UPDATE_GOLDEN=1 if the change is intended):
          file:     \(line < a.count ? String(a[line]) : "<end>")
          rendered: \(line < b.count ? String(b[line]) : "<end>")
        """
}

func renderYAML(_ cluster: FloeCluster) throws -> String {
    YAMLEmitter.emitDocuments(try Render.render(cluster).map { try $0.json() })
}

extension ManagedObject {
    var statefulSet: StatefulSet? {
        if case .statefulSet(let s) = self { return s }
        return nil
    }
    var configMap: ConfigMap? {
        if case .configMap(let c) = self { return c }
        return nil
    }
    var service: Service? {
        if case .service(let s) = self { return s }
        return nil
    }
    var podDisruptionBudget: PodDisruptionBudget? {
        if case .podDisruptionBudget(let p) = self { return p }
        return nil
    }
}
