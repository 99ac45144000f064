import Foundation
import Support

let usage = """
    floe-operator \(FloeVersion.string): runs Floe broker fleets, on Kubernetes or as local processes.

    USAGE: floe-operator [options]

    OPTIONS:
      --version              print the version and exit
      -h, --help             print this help and exit
    """

let args = CommandLineArguments(Array(CommandLine.arguments.dropFirst()))
if args.has("help") {
    print(usage)
    exit(0)
}
if args.has("version") {
    print("floe-operator \(FloeVersion.string)")
    exit(0)
}
FileHandle.standardError.write(Data("floe-operator: reconcile loops are not implemented yet (issue 6); see README.md\n".utf8))
exit(1)
