import Foundation
import KubeAPI
import Operator
import Support

let usage = """
    floe-operator \(FloeVersion.string): runs Floe broker fleets, on Kubernetes or as local processes.

    USAGE: floe-operator <command> [options]

    COMMANDS:
      crd                    print the FloeCluster CustomResourceDefinition (YAML)
      render --file PATH     print the objects rendered for the FloeClusters in a manifest
                             (YAML or JSON) as YAML documents; --namespace NS sets the
                             namespace when the manifest has none (default "default")

    OPTIONS:
      --version              print the version and exit
      -h, --help             print this help and exit
    """

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("floe-operator: \(message)\n".utf8))
    exit(1)
}

let args = CommandLineArguments(Array(CommandLine.arguments.dropFirst()))
if args.has("help") {
    print(usage)
    exit(0)
}
if args.has("version") {
    print("floe-operator \(FloeVersion.string)")
    exit(0)
}

switch args.positionals.first {
case "crd":
    if let bad = args.unknown(known: []).first { fail("crd: unknown option --\(bad)") }
    print(FloeClusterCRD.yaml(), terminator: "")
case "render":
    if let bad = args.unknown(known: ["file", "namespace"]).first { fail("render: unknown option --\(bad)") }
    guard let path = args.value("file") else { fail("render: --file PATH is required") }
    do {
        var docs: [JSONValue] = []
        for var cluster in try readFloeClusters(path: path) {
            if cluster.metadata.namespace == nil { cluster.metadata.namespace = args.value("namespace") ?? "default" }
            // A manifest from a file has no uid yet; the API server assigns one on creation.
            if cluster.metadata.uid == nil { cluster.metadata.uid = "00000000-0000-0000-0000-000000000000" }
            for object in try Render.render(cluster) { docs.append(try object.json()) }
        }
        print(YAMLEmitter.emitDocuments(docs), terminator: "")
    } catch {
        fail("render: \(error)")
    }
case nil:
    fail("the reconcile loop is not implemented yet (issue 6); commands: crd, render. See --help.")
case let other?:
    fail("unknown command \(other); see --help")
}
