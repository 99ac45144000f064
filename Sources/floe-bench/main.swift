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
      kafka          Kafka produce/consume load against a broker: records/s, MiB/s, latency percentiles
      kafka-sink     a broker stand-in that parses requests and discards records (the load generator's ceiling)
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
case "kafka", "kafka-sink":
    runKafkaBenchmark(name, CommandLineArguments(Array(arguments.dropFirst()), booleanFlags: ["help", "h", "consume"]))
default:
    FileHandle.standardError.write(Data("floe-bench: unknown benchmark \(name)\n\(usage)\n".utf8))
    exit(2)
}
