import Foundation
import Support

// floe-bench: the benchmark commands documented in docs/benchmarks.md. Each prints its method,
// its figures and the ratio it is judged by.

let usage = """
    USAGE: floe-bench <benchmark> [options]

    BENCHMARKS:
      protocol       CRC32C, record batch, Produce-request decode and Fetch-response encode throughput
      objectstore    PUT/GET throughput and latency against a storage URL
      streams        stream storage: append throughput/latency per WAL kind, tail and catch-up reads
    """

let arguments = Array(CommandLine.arguments.dropFirst())
guard let name = arguments.first, name != "--help", name != "-h" else {
    print(usage)
    exit(arguments.isEmpty ? 2 : 0)
}
let rest = CommandLineArguments(Array(arguments.dropFirst()))
switch name {
case "protocol":
    runProtocolBenchmark(rest)
case "objectstore":
    runObjectStoreBenchmark(rest)
case "streams": runStreamStorageBenchmark(rest)
default:
    FileHandle.standardError.write(Data("floe-bench: unknown benchmark \(name)\n\(usage)\n".utf8))
    exit(2)
}
