import Foundation
import ObjectStore
import Support
import Synchronization

// floe-bench objectstore --storage URL [--sizes 64k,1m,8m] [--concurrency 1,8,32]
//                        [--count N | --duration SECONDS]
//
// For every size and concurrency: PUT objects of that size with that many concurrent workers,
// then GET them back, then delete them. Reports throughput (MiB/s, ops/s) and p50/p99 latency
// per operation. Object contents are random (seeded) and every GET is checked for its length.

private let objectStoreUsage = """
    USAGE: floe-bench objectstore --storage URL [--sizes 64k,1m,8m] [--concurrency 1,8,32]
                                  [--count N | --duration SECONDS]
      --storage      file:///dir, memory://name or s3://bucket/prefix?endpoint=...&path_style=true
      --sizes        object sizes (k, m suffixes: KiB, MiB)
      --concurrency  concurrent operations
      --count        objects per (size, concurrency) cell (default: 256 MiB worth, 16..400)
      --duration     seconds per phase instead of a fixed count
    """

func runObjectStoreBenchmark(_ arguments: CommandLineArguments) {
    let unknown = arguments.unknown(known: ["storage", "sizes", "concurrency", "count", "duration", "help"])
    if arguments.has("help") || !unknown.isEmpty || arguments.value("storage") == nil {
        if !unknown.isEmpty { FileHandle.standardError.write(Data("unknown option(s): \(unknown.joined(separator: ", "))\n".utf8)) }
        print(objectStoreUsage)
        exit(arguments.has("help") ? 0 : 2)
    }
    // main.swift is synchronous: run the async benchmark and block this thread (not a
    // cooperative one) until it has finished; the task is awaited through the semaphore.
    let done = DispatchSemaphore(value: 0)
    let failure = LockedBox<String?>(nil)
    Task {
        do { try await objectStoreBenchmark(arguments) } catch {
            failure.withLock { $0 = "\(error)" }
        }
        done.signal()
    }
    done.wait()
    if let message = failure.withLock({ $0 }) {
        FileHandle.standardError.write(Data("floe-bench objectstore: \(message)\n".utf8))
        exit(1)
    }
}

private func parseSize(_ text: Substring) -> Int? {
    let lower = text.lowercased()
    if lower.hasSuffix("k"), let n = Int(lower.dropLast()) { return n << 10 }
    if lower.hasSuffix("m"), let n = Int(lower.dropLast()) { return n << 20 }
    return Int(lower)
}

private func sizeLabel(_ size: Int) -> String {
    size >= 1 << 20 && size % (1 << 20) == 0 ? "\(size >> 20) MiB" : "\(size >> 10) KiB"
}

private struct PhaseResult {
    var operations: Int
    var bytes: Int
    var seconds: Double
    var latencies: [Double]

    func percentile(_ p: Double) -> Double {
        guard !latencies.isEmpty else { return 0 }
        let sorted = latencies.sorted()
        return sorted[min(sorted.count - 1, Int((p * Double(sorted.count)).rounded(.up)) - 1)]
    }
}

private func objectStoreBenchmark(_ arguments: CommandLineArguments) async throws {
    let url = try StorageURL(arguments.value("storage")!)
    let sizes = try (arguments.value("sizes") ?? "64k,1m,8m").split(separator: ",").map { text -> Int in
        guard let size = parseSize(text), size > 0 else { throw ObjectStoreError.invalidStorageURL(url: String(text), reason: "not a size") }
        return size
    }
    let concurrencies = (arguments.value("concurrency") ?? "1,8,32").split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
    let fixedCount = arguments.value("count").flatMap { Int($0) }
    let duration = arguments.value("duration").flatMap { Double($0) }

    if case .s3(let configuration, _) = url.kind {
        try await S3ObjectStore(configuration: configuration).createBucket()
    }
    let store = try url.open()
    let clock = RealClock()
    print("objectstore benchmark: \(store.location)")
    print("method: per cell, PUT then GET of random objects by N concurrent tasks; latency per operation; "
        + (duration.map { "\($0) s per phase" } ?? "fixed object count per cell"))
    print("| op  | size    | conc | ops  | MiB/s   | ops/s   | p50 ms  | p99 ms  |")
    print("|-----|---------|------|------|---------|---------|---------|---------|")
    let runID = UInt64(clock.wallTime().timeIntervalSince1970)
    for size in sizes {
        let payload = randomPayload(size, seed: UInt64(size))
        for concurrency in concurrencies {
            let count = fixedCount ?? max(16, min(400, (256 << 20) / size))
            let prefix = "bench-\(runID)/\(size)-\(concurrency)/"
            let written = LockedBox<[String]>([])
            let put = try await runPhase(concurrency: concurrency, count: count, duration: duration, clock: clock) { index in
                let key = prefix + String(index)
                _ = try await store.put(key, payload)
                written.withLock { $0.append(key) }
                return size
            }
            let keys = written.withLock { $0 }
            let get = try await runPhase(concurrency: concurrency, count: count, duration: duration, clock: clock) { index in
                let data = try await store.get(keys[index % keys.count])
                guard data.bytes.count == size else {
                    throw ObjectStoreError.corrupt(ObjectStoreErrorContext(operation: "GET", store: store.location, key: keys[index % keys.count]),
                                                   "read \(data.bytes.count) bytes, wrote \(size)")
                }
                return size
            }
            for (name, result) in [("PUT", put), ("GET", get)] {
                let mib = Double(result.bytes) / Double(1 << 20) / result.seconds
                print("| \(name) | \(sizeLabel(size).padding(toLength: 7, withPad: " ", startingAt: 0)) | \(String(concurrency).leftPad(4)) | "
                    + "\(String(result.operations).leftPad(4)) | \(format(mib).leftPad(7)) | \(format(Double(result.operations) / result.seconds).leftPad(7)) | "
                    + "\(format(result.percentile(0.5) * 1000).leftPad(7)) | \(format(result.percentile(0.99) * 1000).leftPad(7)) |")
            }
            var remaining = keys[...]
            while !remaining.isEmpty {
                let batch = Array(remaining.prefix(1000))
                remaining = remaining.dropFirst(batch.count)
                let failures = try await store.deleteMany(batch)
                if let first = failures.first { throw first.error }
            }
        }
    }
}

/// Runs `operation(index)` with `concurrency` tasks until `count` operations (or `duration`
/// seconds) are done; returns the totals and every latency.
private func runPhase(concurrency: Int, count: Int, duration: Double?, clock: RealClock,
                      _ operation: @escaping @Sendable (Int) async throws -> Int) async throws -> PhaseResult {
    let next = LockedBox(0)
    let start = clock.now()
    let deadline = duration.map { start.advanced(by: .milliseconds(Int64($0 * 1000))) }
    let perWorker = try await withThrowingTaskGroup(of: (Int, Int, [Double]).self) { group in
        for _ in 0..<concurrency {
            group.addTask {
                var operations = 0
                var bytes = 0
                var latencies: [Double] = []
                while true {
                    let index: Int? = next.withLock { n in
                        if deadline == nil && n >= count { return nil }
                        n += 1
                        return n - 1
                    }
                    guard let index else { break }
                    if let deadline, clock.now() >= deadline { break }
                    let began = clock.now()
                    bytes += try await operation(index)
                    latencies.append(clock.now().duration(since: began).secondsDouble)
                    operations += 1
                }
                return (operations, bytes, latencies)
            }
        }
        var all: [(Int, Int, [Double])] = []
        for try await result in group { all.append(result) }
        return all
    }
    let seconds = clock.now().duration(since: start).secondsDouble
    return PhaseResult(operations: perWorker.map(\.0).reduce(0, +), bytes: perWorker.map(\.1).reduce(0, +), seconds: seconds,
                       latencies: perWorker.flatMap(\.2))
}

private func randomPayload(_ count: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix64(seed: seed)
    return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        for i in 0..<count { buffer[i] = UInt8(truncatingIfNeeded: rng.next()) }
        initialized = count
    }
}

private func format(_ value: Double) -> String { String(format: value >= 100 ? "%.0f" : "%.2f", value) }

extension String {
    fileprivate func leftPad(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}

/// A Mutex in a class, shareable by the benchmark's tasks.
private final class LockedBox<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}
