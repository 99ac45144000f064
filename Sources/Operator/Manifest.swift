import Foundation
import KubeAPI

/// Reading FloeCluster manifests given by users (`floe-operator render --file`).
public enum FloeClusterManifest {
    /// Decodes a FloeCluster from JSON text, checking `apiVersion` and `kind`.
    public static func decode(json data: Data, source: String) throws(OperatorError) -> FloeCluster {
        let value: JSONValue
        do {
            value = try KubeJSON.decode(JSONValue.self, from: data)
        } catch {
            throw .badManifest(source: source, detail: error.description)
        }
        return try decode(value, source: source)
    }

    public static func decode(_ value: JSONValue, source: String) throws(OperatorError) -> FloeCluster {
        let apiVersion = value["apiVersion"]?.stringValue ?? "<missing>"
        let kind = value["kind"]?.stringValue ?? "<missing>"
        guard apiVersion == FloeCluster.apiVersion, kind == FloeCluster.kind else {
            throw .badManifest(
                source: source, detail: "apiVersion \(apiVersion) kind \(kind), expected \(FloeCluster.apiVersion) \(FloeCluster.kind)")
        }
        do {
            return try value.decode(as: FloeCluster.self)
        } catch {
            throw .badManifest(source: source, detail: error.description)
        }
    }
}
