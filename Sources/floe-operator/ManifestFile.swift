import Foundation
import KubeAPI
import Operator
import YAML

/// Reads the FloeCluster documents of a manifest file: JSON (one object), or YAML (one or more
/// documents; documents of other kinds, such as a Secret beside the cluster, are skipped).
func readFloeClusters(path: String) throws -> [FloeCluster] {
    let data: Data
    do {
        data = try Data(contentsOf: URL(fileURLWithPath: path))
    } catch {
        throw OperatorError.badManifest(source: path, detail: "cannot read: \(error.localizedDescription)")
    }
    let text = String(decoding: data, as: UTF8.self)
    if text.drop(while: { $0.isWhitespace }).first == "{" {
        return [try FloeClusterManifest.decode(json: data, source: path)]
    }
    let documents: [YAMLNode]
    do {
        documents = try YAMLNode.parseAll(text)
    } catch {
        throw OperatorError.badManifest(source: path, detail: error.description)
    }
    let clusters = documents.map { JSONValue(yaml: $0) }.filter { $0["kind"]?.stringValue == FloeCluster.kind }
    guard !clusters.isEmpty else { throw OperatorError.badManifest(source: path, detail: "no document of kind FloeCluster") }
    var result: [FloeCluster] = []
    for c in clusters { result.append(try FloeClusterManifest.decode(c, source: path)) }
    return result
}
