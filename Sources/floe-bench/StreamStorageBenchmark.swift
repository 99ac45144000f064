import Foundation
import ObjectStore
import StreamStorage
import Support
import Synchronization

// floe-bench streams: the stream storage engine's append and read paths.
//
//   floe-bench streams [--storage URL] [--seconds N] [--streams N] [--wal file,object]
//                      [--sizes 1024,16384] [--flush-interval-ms N] [--catchup-mib N]
//                      [--catchup-isolation off,on,on@N] [--repeats N] [--cold-priority nice:10|idle|normal]
//
// For each WAL kind and batch size, `--streams` appenders (one per stream, each waiting for its
// append to complete before the next, as a producer with one request in flight per partition)
// run for `--seconds`; the maintenance service uploads and compacts meanwhile. Then stream 0 is
// filled with `--catchup-mib` MiB and uploaded; the other appenders run again alone (baseline)
// and then while a catch-up reader reads stream 0 from its start, over and over until the
// appenders stop (objects through a 16 MiB block cache with read-ahead; the log cache is 4 MiB).
// The comparison is repeated `--repeats` times; each repetition runs the appenders alone and
// with the reader under every `--catchup-isolation` setting (off: object GETs and block decoding
// where they ran before, on the store's pool and the caller's task; on: on the cold-read threads
// at `--cold-priority`; on@N: the same plus a read budget of N MiB/s), in an order rotated between
// repetitions, and the ratio of each
// reader-on p99 to the same repetition's alone p99 is reported as a median over repetitions.
// The tail read reads the newest 256 KiB of stream 1 from the log cache 200 times, right after
// the first phase; batches are returned as slices of the cached buffers, so this measures the
// lookup path, not a memory copy.

private final class LatencyLog: Sendable {
    private let samples = Mutex<[Double]>([])
    func add(_ seconds: Double) { samples.withLock { $0.append(seconds) } }
    func percentile(_ p: Double) -> Double {
        let sorted = samples.withLock { $0.sorted() }
        guard !sorted.isEmpty else { return .nan }
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }
    var count: Int { samples.withLock { $0.count } }
}

private struct Comparison {
    var alone: [Double] = []
    var during: [CatchUpMode: [Double]] = [:]
    var readRate: [CatchUpMode: [Double]] = [:]
}

/// A catch-up read setting compared by the benchmark: `off`, `on`, or `on@N` (on, with a read
/// budget of N MiB/s).
private struct CatchUpMode: Hashable, CustomStringConvertible {
    var isolated: Bool
    var mibPerSecond: Int?

    init?(_ text: String) {
        if text == "off" { isolated = false; mibPerSecond = nil; return }
        if text == "on" { isolated = true; mibPerSecond = nil; return }
        guard text.hasPrefix("on@"), let n = Int(text.dropFirst(3)), n > 0 else { return nil }
        isolated = true
        mibPerSecond = n
    }

    var description: String { isolated ? (mibPerSecond.map { "on@\($0)" } ?? "on") : "off" }
}

private struct AppendResult {
    var mibPerSecond: Double
    var p50: Double
    var p99: Double
    var appends: Int
}

private func ms(_ s: Double) -> String { String(format: "%.2f ms", s * 1000) }
private func mib(_ v: Double) -> String { String(format: "%.1f MiB/s", v) }

private func openStore(storage: any ObjectStore, wal kind: String, walDirectory: URL, flushInterval: Duration, prefix: String,
                       coldReads: ColdReadSettings) async throws -> StreamStore {
    let wal: any WriteAheadLog
    if kind == "file" {
        wal = try await FileWAL.open(directory: walDirectory)
    } else {
        wal = try await ObjectStoreWAL.open(store: storage, prefix: prefix + "wal/", clock: RealClock(),
                                            config: ObjectStoreWAL.Config(flushInterval: flushInterval, flushBytes: 4 << 20, maxInFlight: 4))
    }
    var config = StreamStoreConfig()
    config.dataPrefix = prefix + "data/"
    config.maintenanceInterval = .milliseconds(500)
    config.uploadTriggerBytes = 16 << 20
    config.logCacheBytes = 4 << 20  // small, so the catch-up read comes from objects
    config.blockCacheBytes = 16 << 20  // below the catch-up size, so every pass reads objects
    config.coldReads = coldReads
    let metadata = BucketMetadataStore(store: storage, prefix: prefix + "manifest/", clock: RealClock())
    return try await StreamStore.open(wal: wal, metadata: metadata, objects: storage, clock: RealClock(), config: config)
}

/// Runs appenders for `seconds`; returns throughput and latency.
private func appendPhase(_ streams: [StreamStorage.Stream], size: Int, seconds: Double) async throws -> AppendResult {
    let log = LatencyLog()
    let payload = [UInt8](repeating: 0x5A, count: size)
    let clock = ContinuousClock()
    let start = clock.now
    let deadline = start.advanced(by: .milliseconds(Int64(seconds * 1000)))
    try await withThrowingTaskGroup(of: Void.self) { group in
        for s in streams {
            group.addTask {
                while clock.now < deadline {
                    let t0 = clock.now
                    _ = try await s.append(payload, recordCount: 10)
                    log.add((clock.now - t0).secondsDouble)
                }
            }
        }
        try await group.waitForAll()
    }
    let elapsed = (clock.now - start).secondsDouble
    return AppendResult(mibPerSecond: Double(log.count * size) / elapsed / 1_048_576, p50: log.percentile(0.5), p99: log.percentile(0.99), appends: log.count)
}

private func catchUpRead(_ stream: StreamStorage.Stream, from: Int64, to end: Int64, until stop: StopFlag? = nil) async throws -> (Double, Int) {
    let clock = ContinuousClock()
    let t0 = clock.now
    var bytes = 0
    repeat {
        var offset = from
        while offset < end {
            let batches = try await stream.read(from: offset, maxBytes: 1 << 20)
            guard let last = batches.last else { break }
            bytes += batches.reduce(0) { $0 + $1.bytes.count }
            offset = last.endOffset
        }
    } while stop.map { !$0.flag.withLock { $0 } } ?? false
    return (Double(bytes) / (clock.now - t0).secondsDouble / 1_048_576, bytes)
}

private final class StopFlag: Sendable {
    let flag = Mutex(false)
}

private func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

private func parsePriority(_ text: String) -> ColdReadPriority? {
    if text == "normal" { return .normal }
    if text == "idle" { return .idle }
    if text.hasPrefix("nice:"), let n = Int32(text.dropFirst(5)) { return .nice(n) }
    return nil
}

/// This process's threads grouped by nice value, with their names (Linux /proc), e.g.
/// "nice 0: 14 threads (floe-filewal, ...); nice 10: 2 threads (floe-cold-rd-0, floe-cold-rd-1)".
private func threadPrioritySummary() -> String {
    guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task") else { return "unavailable" }
    var byNice: [Int: [String]] = [:]
    for tid in tasks {
        guard let stat = try? String(contentsOfFile: "/proc/self/task/\(tid)/stat", encoding: .utf8),
              let comm = try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { continue }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 16, let nice = Int(fields[16]) else { continue }
        byNice[nice, default: []].append(comm.trimmingCharacters(in: .whitespacesAndNewlines))
    }
    return byNice.keys.sorted().map { nice in
        let names = Dictionary(grouping: byNice[nice]!, by: { $0 }).map { $0.value.count > 1 ? "\($0.key) ×\($0.value.count)" : $0.key }.sorted()
        return "nice \(nice): \(byNice[nice]!.count) threads (\(names.joined(separator: ", ")))"
    }.joined(separator: "; ")
}

func runStreamStorageBenchmark(_ arguments: CommandLineArguments) {
    let storageURL = arguments.value("storage") ?? "memory://bench"
    let seconds = Double(arguments.value("seconds") ?? "3") ?? 3
    let streamCount = Int(arguments.value("streams") ?? "8") ?? 8
    let walKinds = (arguments.value("wal") ?? "file,object").split(separator: ",").map(String.init)
    let sizes = (arguments.value("sizes") ?? "1024,16384").split(separator: ",").compactMap { Int($0) }
    let flushMs = Int64(arguments.value("flush-interval-ms") ?? "10") ?? 10
    let catchUpMiB = Int(arguments.value("catchup-mib") ?? "64") ?? 64
    var isolationModes: [CatchUpMode] = []
    for text in (arguments.value("catchup-isolation") ?? "off,on").split(separator: ",") {
        guard let mode = CatchUpMode(String(text)) else {
            print("streams benchmark: --catchup-isolation takes off, on or on@N (MiB/s), got \(text)")
            return
        }
        isolationModes.append(mode)
    }
    let repeats = max(1, Int(arguments.value("repeats") ?? "3") ?? 3)
    let priorityText = arguments.value("cold-priority") ?? "nice:10"
    guard let priority = parsePriority(priorityText) else {
        print("streams benchmark: --cold-priority must be nice:N, idle or normal, got \(priorityText)")
        return
    }
    var coldReads = ColdReadSettings()
    coldReads.priority = priority
    print("""
        stream storage benchmark
          storage \(storageURL), \(streamCount) streams with one append in flight each, \(seconds) s per phase,
          object-store WAL flush interval \(flushMs) ms (or 4 MiB), file WAL fsync on every group commit,
          catch-up read of \(catchUpMiB) MiB; catch-up isolation \(isolationModes.map(\.description).joined(separator: ", ")) \
        (cold-read threads: \(coldReads.threads) at \(priority), \(coldReads.maxInFlightBytes >> 20) MiB in flight), \(repeats) repetitions.
        """)
    let done = DispatchSemaphore(value: 0)
    Task {
        do {
            let storage = try StorageURL(storageURL).open()
            // One object-store write of a typical WAL flush, for the latency reference.
            var putTimes: [Double] = []
            let clock = ContinuousClock()
            for i in 0..<20 {
                let t0 = clock.now
                _ = try await storage.put("bench-streams/put-probe-\(i)", [UInt8](repeating: 1, count: 64 * 1024), condition: .ifAbsent)
                putTimes.append((clock.now - t0).secondsDouble)
                try await storage.delete("bench-streams/put-probe-\(i)")
            }
            putTimes.sort()
            let putP50 = putTimes[putTimes.count / 2]
            print("  one 64 KiB put-if-absent on this storage: p50 \(ms(putP50)), max \(ms(putTimes.last!))")
            for kind in walKinds {
                for size in sizes {
                    let prefix = "bench-streams/\(kind)-\(size)-\(UInt32.random(in: 0...UInt32.max))/"
                    let walDir = FileManager.default.temporaryDirectory.appendingPathComponent("floe-bench-wal-\(UUID().uuidString)")
                    defer { try? FileManager.default.removeItem(at: walDir) }
                    let store = try await openStore(storage: storage, wal: kind, walDirectory: walDir, flushInterval: .milliseconds(flushMs), prefix: prefix,
                                                    coldReads: coldReads)
                    var handles: [StreamStorage.Stream] = []
                    for s in 0..<streamCount { handles.append(try await store.open(StreamID(s), epoch: 1)) }
                    let hs = handles
                    let result: (AppendResult, Comparison, Double) = try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask { try await store.run() }
                        let all = try await appendPhase(hs, size: size, seconds: seconds)
                        // Tail reads: the newest 256 KiB of stream 1, still in the log cache, 200 times.
                        let tailFrom = max(hs[1].startOffset, hs[1].endOffset - Int64((256 << 10) / size * 10))
                        let tailEnd = hs[1].endOffset
                        let tailClock = ContinuousClock()
                        let tailT0 = tailClock.now
                        var tailBytes = 0
                        for _ in 0..<200 { tailBytes += try await catchUpRead(hs[1], from: tailFrom, to: tailEnd).1 }
                        let tailRate = Double(tailBytes) / (tailClock.now - tailT0).secondsDouble / 1_048_576
                        // Prefill stream 0 for the catch-up read: 64 KiB batches, 32 in flight.
                        let prefill = [UInt8](repeating: 0x33, count: 64 * 1024)
                        let batches = catchUpMiB * 16
                        try await withThrowingTaskGroup(of: Void.self) { fill in
                            for i in 0..<batches {
                                if i >= 32 { try await fill.next() }
                                fill.addTask { _ = try await hs[0].append(prefill, recordCount: 10) }
                            }
                            try await fill.waitForAll()
                        }
                        try await store.uploadNow()
                        // The catch-up comparison, repeated: the appenders of streams 1... alone, and
                        // while stream 0 is read from its start under each isolation setting.
                        var comparison = Comparison()
                        let phases: [CatchUpMode?] = [nil] + isolationModes.map { Optional($0) }
                        for r in 0..<repeats {
                            for k in 0..<phases.count {
                                let phase = phases[(k + r) % phases.count]
                                guard let mode = phase else {
                                    comparison.alone.append(try await appendPhase(Array(hs.dropFirst()), size: size, seconds: seconds).p99)
                                    continue
                                }
                                store.coldReadsIsolated = mode.isolated
                                store.setColdReadRate(bytesPerSecond: mode.mibPerSecond.map { $0 << 20 })
                                let reader = hs[0]
                                let from = reader.startOffset, end = reader.endOffset
                                let stop = StopFlag()
                                async let catchUp = catchUpRead(reader, from: from, to: end, until: stop)
                                let during = try await appendPhase(Array(hs.dropFirst()), size: size, seconds: seconds)
                                stop.flag.withLock { $0 = true }
                                let (rate, _) = try await catchUp
                                comparison.during[mode, default: []].append(during.p99)
                                comparison.readRate[mode, default: []].append(rate)
                            }
                        }
                        group.cancelAll()
                        return (all, comparison, tailRate)
                    }
                    try await store.close()
                    let (all, comparison, tailRate) = result
                    print("""
                          \(kind) WAL, \(size / 1024) KiB batches: append \(mib(all.mibPerSecond)) (\(all.appends) appends), \
                        latency p50 \(ms(all.p50)) p99 \(ms(all.p99)); tail read \(mib(tailRate))
                            \(streamCount - 1) appenders' p99 alone: \(comparison.alone.map { ms($0) }.joined(separator: ", "))
                        """)
                    for mode in isolationModes {
                        let during = comparison.during[mode] ?? []
                        let ratios = zip(during, comparison.alone).map { $0 / $1 }
                        print("""
                                catch-up isolation \(mode): p99 \(during.map { ms($0) }.joined(separator: ", ")); \
                            ratio to alone \(ratios.map { String(format: "%.2f", $0) }.joined(separator: ", ")) \
                            → median \(String(format: "%.2f", median(ratios))); catch-up read median \(mib(median(comparison.readRate[mode] ?? [])))
                            """)
                    }
                    if kind == "object" {
                        let reference = Double(flushMs) / 1000 + putP50
                        print("    object WAL append p50 / (flush interval + one put p50 = \(ms(reference))): \(String(format: "%.2f", all.p50 / reference)), p99 ratio \(String(format: "%.2f", all.p99 / reference))")
                    }
                }
            }
            print("  threads by nice value at the end: \(threadPrioritySummary())")
        } catch {
            print("streams benchmark failed: \(error)")
        }
        done.signal()
    }
    done.wait()
}
