import Foundation
import Support

let usage = """
    floe-broker \(FloeVersion.string): a Kafka-compatible broker whose state lives in object storage.

    USAGE: floe-broker [options]

    OPTIONS:
      --listen HOST:PORT     Kafka listener (default 127.0.0.1:9092)
      --storage URL          bucket: file:///path or s3://bucket/prefix?endpoint=...
      --node-id N            broker id
      --http HOST:PORT       metrics and probes
      --version              print the version and exit
      -h, --help             print this help and exit

    STATUS: the broker does not serve Kafka clients yet (see README.md, "Status").
    """

let args = CommandLineArguments(Array(CommandLine.arguments.dropFirst()))
if args.has("help") {
    print(usage)
    exit(0)
}
if args.has("version") {
    print("floe-broker \(FloeVersion.string)")
    exit(0)
}
let unknown = args.unknown(known: ["listen", "storage", "node-id", "http"])
if !unknown.isEmpty {
    FileHandle.standardError.write(Data("floe-broker: unknown option --\(unknown[0]) (see --help)\n".utf8))
    exit(2)
}
FileHandle.standardError.write(Data("floe-broker: the Kafka listener is not implemented yet (issue 5); see README.md\n".utf8))
exit(1)
