import Bytes
import Foundation
import KafkaProtocol
import Support

// floe-bench protocol: CPU cost of the protocol layer on the produce path.
//
// Method: every case builds its input once, then times its operations in `rounds` interleaved
// rounds (A, B, A, B, …) of at least `--seconds` each (default 0.5 s), and reports the median
// and best round of each. Interleaving spreads the noise of a shared machine over all of them. Results
// are fed into a checksum that is printed, so the optimizer cannot drop the work. Ratios are
// computed from medians measured in the same run, side by side.

/// Settings shared by every case.
struct ProtocolBenchmarkSettings: Sendable {
    var secondsPerRound: Double = 0.5
    var rounds = 5
}

/// One reported figure: `value` in `unit`, from the median of the rounds (`best` is the fastest).
struct ProtocolFigure {
    var name: String
    var median: Double
    var best: Double
    var unit: String
}

/// A benchmark case: a name and a function that measures and returns its figures.
struct ProtocolBenchmarkCase: Sendable {
    var name: String
    var run: @Sendable (ProtocolBenchmarkSettings, inout UInt64) throws -> [ProtocolFigure]
}

// MARK: - Cases
//
// The list of protocol benchmark cases, run in order. Each is a `ProtocolBenchmarkCase`; use
// `measureInterleaved` below for timing.
let protocolBenchmarkCases: [ProtocolBenchmarkCase] = [
    ProtocolBenchmarkCase(name: "crc32c", run: benchmarkCRC32C),
    ProtocolBenchmarkCase(name: "record-batch", run: benchmarkRecordBatch),
    ProtocolBenchmarkCase(name: "produce-fetch", run: benchmarkProduceAndFetch),
]

func runProtocolBenchmark(_ arguments: CommandLineArguments) {
    let unknown = arguments.unknown(known: ["seconds", "rounds", "only", "help"])
    if arguments.has("help") || !unknown.isEmpty {
        if !unknown.isEmpty { print("floe-bench protocol: unknown option(s) \(unknown.joined(separator: ", "))") }
        print("""
            USAGE: floe-bench protocol [--seconds S] [--rounds N] [--only crc32c|record-batch]
              --seconds  minimum duration of one timed round (default 0.5)
              --rounds   timed rounds per figure; the median is reported (default 5)
              --only     run one case
            Build with -c release: swift run -c release floe-bench protocol
            """)
        exit(unknown.isEmpty ? 0 : 2)
    }
    var settings = ProtocolBenchmarkSettings()
    if let s = arguments.value("seconds"), let v = Double(s), v > 0 { settings.secondsPerRound = v }
    if let s = arguments.value("rounds"), let v = Int(s), v > 0 { settings.rounds = v }

    print("floe-bench protocol")
    print("method: each figure is the median (and best) of \(settings.rounds) interleaved rounds of >= \(settings.secondsPerRound) s;")
    print("        single thread; inputs built once before timing; ratios from medians of this run.")
    print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores; CRC32C hardware path: \(CRC32C.isHardwareAccelerated ? "SSE4.2 crc32 instruction" : "not available")")
    #if DEBUG
    print("WARNING: debug build; figures are meaningless. Use swift run -c release floe-bench protocol")
    #endif
    var sink: UInt64 = 0
    for benchmark in protocolBenchmarkCases {
        if let only = arguments.value("only"), only != benchmark.name { continue }
        print("\n[\(benchmark.name)]")
        do {
            let figures = try benchmark.run(settings, &sink)
            for f in figures {
                print("  \(pad(f.name, 44)) \(pad(format(f.median), 10, left: true)) \(f.unit)  (best \(format(f.best)))")
            }
        } catch {
            print("  FAILED: \(error)")
            exit(1)
        }
    }
    print("\n(checksum of results, ignore: \(sink))")
}

/// An operation to time: it processes `bytesPerCall` bytes per call and returns a value that is
/// folded into the sink.
struct TimedOperation {
    var name: String
    var bytesPerCall: Int
    var unit: String  // "GB/s" = 1e9 bytes/s, "MiB/s" = 2^20 bytes/s
    var call: () throws -> UInt64
}

/// Times several operations in interleaved rounds (A, B, C, A, B, C, …) so that noise from
/// other processes on the machine falls on all of them alike, and their ratios stay meaningful.
func measureInterleaved(
    _ operations: [TimedOperation], settings: ProtocolBenchmarkSettings, sink: inout UInt64
) throws -> [ProtocolFigure] {
    let clock = ContinuousClock()
    // Warm up, and find for each operation a number of calls that takes about 10 ms.
    var callsPerCheck: [Int] = []
    for op in operations {
        sink &+= try op.call()
        var n = 1
        while true {
            let t = try clock.measure { for _ in 0..<n { sink &+= try op.call() } }
            if seconds(t) > 0.01 || n > 1 << 24 { break }
            n *= 2
        }
        callsPerCheck.append(n)
    }
    var rates = [[Double]](repeating: [], count: operations.count)
    for _ in 0..<settings.rounds {
        for (i, op) in operations.enumerated() {
            var calls = 0
            let start = clock.now
            var elapsed = 0.0
            repeat {
                for _ in 0..<callsPerCheck[i] { sink &+= try op.call() }
                calls += callsPerCheck[i]
                elapsed = seconds(clock.now - start)
            } while elapsed < settings.secondsPerRound
            let divisor = op.unit == "GB/s" ? 1e9 : 1_048_576.0
            rates[i].append(Double(calls) * Double(op.bytesPerCall) / elapsed / divisor)
        }
    }
    return zip(operations, rates).map { op, r in
        let sorted = r.sorted()
        return ProtocolFigure(name: op.name, median: sorted[sorted.count / 2], best: sorted.last!, unit: op.unit)
    }
}

private func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

private func format(_ v: Double) -> String {
    String(format: v >= 100 ? "%.0f" : (v >= 10 ? "%.1f" : "%.2f"), v)
}

private func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - s.count))
    return left ? fill + s : s + fill
}

private func ratioFigure(_ name: String, _ a: ProtocolFigure, _ b: ProtocolFigure) -> ProtocolFigure {
    ProtocolFigure(name: name, median: a.median / b.median, best: a.best / b.best, unit: "x")
}

// MARK: - Cases

/// CRC32C over a 1 MiB buffer: the hardware path against the table path.
func benchmarkCRC32C(_ settings: ProtocolBenchmarkSettings, _ sink: inout UInt64) throws -> [ProtocolFigure] {
    var rng = SystemRandomNumberGenerator()
    let buffer = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    let figures = try measureInterleaved([
        TimedOperation(name: "CRC32C 1 MiB, hardware path", bytesPerCall: buffer.count, unit: "GB/s") {
            UInt64(CRC32C.checksum(buffer))
        },
        TimedOperation(name: "CRC32C 1 MiB, software table path", bytesPerCall: buffer.count, unit: "GB/s") {
            UInt64(CRC32C.softwareChecksum(buffer))
        },
    ], settings: settings, sink: &sink)
    let (hardware, software) = (figures[0], figures[1])
    return [hardware, software, ratioFigure("ratio hardware / software", hardware, software)]
}

/// 1 MiB of 1 KiB records in batches of 16 records (~16.5 KiB each): validate (header parse +
/// CRC32C of every batch, as a broker does on produce), offset rewrite in place, and, for
/// reference, full record decoding.
func benchmarkRecordBatch(_ settings: ProtocolBenchmarkSettings, _ sink: inout UInt64) throws -> [ProtocolFigure] {
    var rng = SystemRandomNumberGenerator()
    var blob: [UInt8] = []
    var batchCount = 0
    var timestamp: Int64 = 1_700_000_000_000
    while blob.count < 1 << 20 {
        var builder = RecordBatchBuilder(baseTimestamp: timestamp)
        builder.producerId = 1000
        builder.producerEpoch = 0
        builder.baseSequence = Int32(batchCount * 16)
        for i in 0..<16 {
            let value = (0..<1024).map { _ in UInt8.random(in: 0...255, using: &rng) }
            builder.append(timestamp: timestamp + Int64(i), key: Array("key-\(i)".utf8), value: value)
        }
        blob += try builder.build()
        batchCount += 1
        timestamp += 16
    }
    print("  input: \(blob.count) bytes, \(batchCount) batches of 16 records with 1 KiB values")

    var next: Int64 = 0
    let batches = try RecordBatchReader.batches(in: blob[...])
    // The rewrite mutates `blob`, so it works on its own copy; the others read `frozen`.
    let frozen = blob
    let figures = try measureInterleaved([
        TimedOperation(name: "validate (header parse + CRC32C)", bytesPerCall: frozen.count, unit: "MiB/s") {
            var reader = RecordBatchReader(frozen)
            var n: UInt64 = 0
            while let batch = try reader.next() { n &+= UInt64(batch.header.crc) }
            return n
        },
        TimedOperation(name: "offset rewrite in place (assignOffsets)", bytesPerCall: frozen.count, unit: "MiB/s") {
            let result = try RecordBatch.assignOffsets(in: &blob, startingAt: next, partitionLeaderEpoch: 3)
            next = result.nextOffset
            return UInt64(result.batchCount)
        },
        TimedOperation(name: "decode all records (uncompressed)", bytesPerCall: frozen.count, unit: "MiB/s") {
            var n: UInt64 = 0
            for batch in batches { n &+= UInt64(try batch.records().count) }
            return n
        },
        TimedOperation(name: "CRC32C alone over the same bytes", bytesPerCall: frozen.count, unit: "MiB/s") {
            UInt64(CRC32C.checksum(frozen))
        },
    ], settings: settings, sink: &sink)
    let (validate, rewrite, decode, crcOnly) = (figures[0], figures[1], figures[2], figures[3])
    // The rewritten blob must still validate.
    _ = try RecordBatchReader.batches(in: blob[...])
    // Offset rewrite touches only the 12 header bytes it writes, so per batch is the honest unit.
    let batchesPerMiB = Double(batchCount) * 1_048_576.0 / Double(blob.count)
    let rewriteBatches = ProtocolFigure(
        name: "offset rewrite, batches per second", median: rewrite.median * batchesPerMiB / 1e6,
        best: rewrite.best * batchesPerMiB / 1e6, unit: "M batches/s")
    return [
        validate, rewrite, rewriteBatches, decode, crcOnly,
        ratioFigure("ratio validate / CRC32C alone", validate, crcOnly),
        ratioFigure("ratio offset rewrite / validate", rewrite, validate),
    ]
}

/// 1 MiB of 1 KiB records in 16-record batches, the input of the produce and fetch cases.
func makeRecordBlob(partitions: Int, bytesPerPartition: Int) throws -> [[UInt8]] {
    var rng = SystemRandomNumberGenerator()
    var blobs: [[UInt8]] = []
    for p in 0..<partitions {
        var blob: [UInt8] = []
        var sequence: Int32 = 0
        while blob.count < bytesPerPartition {
            var builder = RecordBatchBuilder(baseTimestamp: 1_700_000_000_000)
            builder.producerId = Int64(1000 + p)
            builder.producerEpoch = 0
            builder.baseSequence = sequence
            for i in 0..<16 {
                let value = (0..<1024).map { _ in UInt8.random(in: 0...255, using: &rng) }
                builder.append(timestamp: 1_700_000_000_000 + Int64(i), key: Array("key-\(i)".utf8), value: value)
            }
            blob += try builder.build()
            sequence += 16
        }
        blobs.append(blob)
    }
    return blobs
}

/// Produce-request decode (what a broker does on receipt: header, body, then validate every
/// batch's header and CRC32C) and Fetch-response encode (header, body, records copied into the
/// frame), each over 1 MiB of records in 4 partitions, against a plain copy of the same bytes.
func benchmarkProduceAndFetch(_ settings: ProtocolBenchmarkSettings, _ sink: inout UInt64) throws -> [ProtocolFigure] {
    let blobs = try makeRecordBlob(partitions: 4, bytesPerPartition: 256 * 1024)
    let produce = ProduceRequest(
        acks: -1, timeoutMs: 30_000,
        topicData: [.init(name: "bench", partitionData: blobs.enumerated().map { .init(index: Int32($0.offset), records: $0.element[...]) })])
    var writer = ByteWriter(capacity: 1 << 21)
    try RequestHeader.encodeRequest(produce, version: 9, correlationId: 7, clientId: "floe-bench", into: &writer)
    let frame = Array(writer.bytes.dropFirst(4))
    let fetch = FetchResponse(responses: [.init(topic: "bench", partitions: blobs.enumerated().map {
        .init(partitionIndex: Int32($0.offset), highWatermark: 1_000_000, lastStableOffset: 1_000_000, logStartOffset: 0, records: $0.element[...])
    })])
    let recordBytes = blobs.reduce(0) { $0 + $1.count }
    print("  input: Produce v9 frame of \(frame.count) bytes (\(recordBytes) bytes of records, 4 partitions, 1 KiB records);")
    print("         Fetch v12 response around the same record bytes")
    let flat = blobs.flatMap { $0 }
    var out = [UInt8](repeating: 0, count: flat.count)
    let figures = try measureInterleaved([
        TimedOperation(name: "produce decode (header + body, no CRC)", bytesPerCall: recordBytes, unit: "MiB/s") {
            let request = try RequestHeader.decodeRequest(frame[...])
            guard case let .produce(body) = try request.decodeBody() else { return 0 }
            return UInt64(body.topicData[0].partitionData.count)
        },
        TimedOperation(name: "produce decode + validate batches (CRC32C)", bytesPerCall: recordBytes, unit: "MiB/s") {
            let request = try RequestHeader.decodeRequest(frame[...])
            guard case let .produce(body) = try request.decodeBody() else { return 0 }
            var n: UInt64 = 0
            for partition in body.topicData[0].partitionData {
                var reader = RecordBatchReader(partition.records ?? [])
                while let batch = try reader.next() { n &+= UInt64(batch.header.crc) }
            }
            return n
        },
        TimedOperation(name: "fetch response encode (v12, flexible)", bytesPerCall: recordBytes, unit: "MiB/s") {
            var w = ByteWriter(capacity: recordBytes + 4096)
            try ResponseHeader.encodeResponse(fetch, version: 12, correlationId: 9, into: &w)
            return UInt64(w.count)
        },
        TimedOperation(name: "memcpy of the same bytes (baseline)", bytesPerCall: recordBytes, unit: "MiB/s") {
            out.withUnsafeMutableBytes { dst in flat.withUnsafeBytes { src in dst.copyMemory(from: src) } }
            return UInt64(out[out.count / 2])
        },
    ], settings: settings, sink: &sink)
    return figures + [
        ratioFigure("ratio produce decode+validate / memcpy", figures[1], figures[3]),
        ratioFigure("ratio fetch encode / memcpy", figures[2], figures[3]),
    ]
}
