#if canImport(Glibc)
import Glibc
#endif
import Broker
import Bytes
import Dispatch
import Foundation
import KafkaProtocol
import Support
import Synchronization

// floe-bench kafka: a Kafka load generator in the spirit of kafka-producer-perf-test, and
// floe-bench kafka-sink: a broker stand-in that parses requests and discards the records, to
// measure the load generator's own ceiling. See docs/benchmarks.md, "Kafka load".
//
// Client method: every producer owns one TCP connection with two threads. The writer thread
// sends pre-encoded Produce requests (one record batch of --batch-records records for one
// partition each; partitions taken round-robin, each producer starting at its own index; only
// the correlation id is patched per request), keeping at most --in-flight requests unanswered.
// The reader thread reads responses in order, checks every partition error code, and records the
// latency from the request's send to its response's arrival. acks=0 has no responses: requests
// are written as fast as the socket takes them and no latency is measured.

let kafkaUsage = """
    USAGE: floe-bench kafka [options]           produce (default) or --consume against a broker
           floe-bench kafka-sink [options]      a discard sink that answers like a broker

    kafka options:
      --bootstrap HOST:PORT   broker (default 127.0.0.1:9092)
      --topic NAME            topic (default floe-bench); created with CreateTopics if missing
      --partitions N          partitions to produce to (default 1)
      --acks 0|1|-1|all       (default 1)
      --record-size BYTES     value size (default 1024); keys are null
      --batch-records N       records per batch, one batch per request (default 16)
      --producers N           connections, two threads each (default 1)
      --in-flight N           unanswered requests per connection (default 5)
      --duration D            how long to produce: 90s, 2m, 500ms or plain seconds (default 10,
                              or the profile's length with a --rate range), or
      --records N             how many records to produce in total
      --rate R                target rate in total: records/s (2000) or bytes of record values
                              per second (5MiB/s; also B/s, KB/s, KiB/s, MB/s, GB/s, GiB/s), or a
                              range LOW..HIGH (5MiB/s..50MiB/s, 1000..10000) shaped by --profile.
                              Latency counts from each request's scheduled send time, so a
                              saturated broker shows as latency, not as a lower rate
      --profile ramp|step|daily   shape of a --rate range (default ramp):
                              ramp: low, linear up over --ramp, high for --hold, linear down over
                                    --down, then low; the run defaults to ramp+hold+down
                              step: low for --ramp, high for --hold, then low
                              daily: a day per --period (low at midnight, a hump to 0.6 of the
                                    range at noon, a short spike to the high rate at 19:12),
                                    repeating; the run defaults to one period
      --ramp D --hold D --down D   phase lengths of ramp/step (default 60s each)
      --period D              length of one daily cycle (default 10m)
                              With a range, one progress line per second: elapsed, target and
                              achieved MiB/s and records/s, acks, errors, requests behind schedule
      --consume               instead: Fetch every partition from offset 0 to its end
      --fetch-bytes BYTES     per-partition max bytes of a Fetch (default 1048576)

    kafka-sink options:
      --listen HOST:PORT      (default 127.0.0.1:9092)
      --partitions N          partitions reported for every topic (default 16)
      --event-loops N         network threads (default 2)
    """

struct KafkaBenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

// MARK: - A blocking connection

/// A blocking TCP connection to a broker.
///
/// Thread use: `send` is called from one thread at a time and `readFrame` from one thread at a
/// time (possibly a different one); the two sides share only the immutable descriptor, which is
/// why the class is `@unchecked Sendable`.
final class BlockingKafkaConnection: @unchecked Sendable {
    let fd: Int32
    let address: SocketAddress
    private var buffer = [UInt8](repeating: 0, count: 1 << 20)
    private var start = 0
    private var end = 0
    private var correlation: Int32 = 0

    init(_ address: SocketAddress) throws {
        self.address = address
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw KafkaBenchError("socket() failed: \(String(cString: strerror(errno)))") }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = address.port.bigEndian
        guard inet_pton(AF_INET, address.host, &sa.sin_addr) == 1 else {
            close(fd)
            throw KafkaBenchError("invalid IPv4 address \(address.host)")
        }
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw KafkaBenchError("connect to \(address) failed: \(String(cString: strerror(e)))")
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        self.fd = fd
    }

    deinit { close(fd) }

    func send(_ bytes: UnsafeRawBufferPointer) throws {
        var sent = 0
        while sent < bytes.count {
            let n = Glibc.send(fd, bytes.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL))
            if n < 0 {
                if errno == EINTR { continue }
                throw KafkaBenchError("send to \(address) failed: \(String(cString: strerror(errno)))")
            }
            sent += n
        }
    }

    func send(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try send($0) }
    }

    /// Reads one response frame and returns its bytes after the size prefix.
    func readFrame() throws -> ArraySlice<UInt8> {
        try fill(4)
        let size = Int(UInt32(buffer[start]) << 24 | UInt32(buffer[start + 1]) << 16 | UInt32(buffer[start + 2]) << 8
            | UInt32(buffer[start + 3]))
        guard size >= 4 && size <= 256 << 20 else { throw KafkaBenchError("response frame of \(size) bytes from \(address)") }
        try fill(4 + size)
        let frame = buffer[(start + 4)..<(start + 4 + size)]
        start += 4 + size
        return frame
    }

    private func fill(_ n: Int) throws {
        if end - start >= n { return }
        if start > 0 {
            buffer.withUnsafeMutableBytes { raw in
                let base = raw.baseAddress!
                memmove(base, base + start, end - start)
            }
            end -= start
            start = 0
        }
        if buffer.count < n { buffer += [UInt8](repeating: 0, count: n - buffer.count) }
        while end < n {
            let got = buffer.withUnsafeMutableBytes { raw in recv(fd, raw.baseAddress! + end, raw.count - end, 0) }
            if got == 0 { throw KafkaBenchError("\(address) closed the connection") }
            if got < 0 {
                if errno == EINTR { continue }
                throw KafkaBenchError("recv from \(address) failed: \(String(cString: strerror(errno)))")
            }
            end += got
        }
    }

    /// One request, one response (setup requests only; not used while measuring).
    func roundTrip<M: KafkaMessage>(_ request: M, version: Int16) throws -> AnyResponse {
        correlation += 1
        var writer = ByteWriter(capacity: 256)
        try RequestHeader.encodeRequest(request, version: version, correlationId: correlation, clientId: "floe-bench", into: &writer)
        try send(writer.take())
        let frame = try readFrame()
        guard let key = ApiKey(rawValue: M.apiKey) else { throw KafkaBenchError("unknown API key \(M.apiKey)") }
        let (header, body) = try ResponseHeader.decodeResponse(frame, apiKey: key, version: version)
        guard header.correlationId == correlation else {
            throw KafkaBenchError("\(key) answer has correlation id \(header.correlationId), sent \(correlation)")
        }
        return body
    }
}

// MARK: - Setup: versions, metadata, topic

struct BrokerVersions {
    let ranges: [Int16: ClosedRange<Int16>]

    /// The highest version both sides support, capped at `cap`.
    func pick(_ key: ApiKey, cap: Int16, floor: Int16 = 0) throws -> Int16 {
        guard let r = ranges[key.rawValue] else { throw KafkaBenchError("the broker does not advertise \(key)") }
        let v = min(r.upperBound, cap)
        guard v >= max(r.lowerBound, floor) else { throw KafkaBenchError("no usable \(key) version: broker \(r), need \(floor)...\(cap)") }
        return v
    }
}

func apiVersions(_ c: BlockingKafkaConnection) throws -> BrokerVersions {
    guard case let .apiVersions(r) = try c.roundTrip(ApiVersionsRequest(), version: 0) else {
        throw KafkaBenchError("ApiVersions: unexpected answer")
    }
    guard r.errorCode == 0 else { throw KafkaBenchError("ApiVersions v0 answered error \(r.errorCode)") }
    var ranges: [Int16: ClosedRange<Int16>] = [:]
    for k in r.apiKeys where k.minVersion <= k.maxVersion { ranges[k.apiKey] = k.minVersion...k.maxVersion }
    return BrokerVersions(ranges: ranges)
}

struct TopicLayout {
    let partitions: Int
    let leader: SocketAddress
}

/// Finds the topic (creating it with `partitions` partitions when it does not exist) and the
/// address of its leader. Every partition must have the same leader (a single-broker benchmark).
/// A producer uses partitions 0..<partitions of an existing topic that has at least that many;
/// the consumer (`create: false`) reads every partition.
func prepareTopic(_ c: BlockingKafkaConnection, versions: BrokerVersions, topic: String, partitions: Int,
                  create: Bool) throws -> TopicLayout {
    let mv = try versions.pick(.metadata, cap: 9, floor: 1)
    let deadline = monotonicNanos() + 30_000_000_000
    var created = false
    while true {
        let request = MetadataRequest(topics: [.init(name: topic)], allowAutoTopicCreation: false)
        guard case let .metadata(md) = try c.roundTrip(request, version: mv) else { throw KafkaBenchError("Metadata: unexpected answer") }
        guard let t = md.topics.first(where: { $0.name == topic }) else { throw KafkaBenchError("Metadata did not list \(topic)") }
        if t.errorCode == 3 && create && !created {  // UNKNOWN_TOPIC_OR_PARTITION
            let cv = try versions.pick(.createTopics, cap: 5)
            let ct = CreateTopicsRequest(
                topics: [.init(name: topic, numPartitions: Int32(partitions), replicationFactor: 1)], timeoutMs: 30000)
            guard case let .createTopics(r) = try c.roundTrip(ct, version: cv) else { throw KafkaBenchError("CreateTopics: unexpected answer") }
            if let e = r.topics.first, e.errorCode != 0 && e.errorCode != 36 {  // 36: TOPIC_ALREADY_EXISTS
                throw KafkaBenchError("CreateTopics \(topic) (\(partitions) partitions): error \(e.errorCode) \(e.errorMessage ?? "")")
            }
            created = true
            continue
        }
        let ready = t.errorCode == 0 && t.partitions.count >= partitions && t.partitions.allSatisfy { $0.errorCode == 0 && $0.leaderId >= 0 }
        if ready {
            let count = create ? partitions : t.partitions.count
            let leaders = Set(t.partitions.filter { Int($0.partitionIndex) < count }.map(\.leaderId))
            guard leaders.count == 1, let leader = leaders.first,
                  let b = md.brokers.first(where: { $0.nodeId == leader }) else {
                throw KafkaBenchError("\(topic): partitions have leaders \(leaders.sorted()); this benchmark needs one broker leading all")
            }
            let host = b.host == "localhost" ? "127.0.0.1" : b.host
            return TopicLayout(partitions: count, leader: try SocketAddress(parsing: "\(host):\(b.port)"))
        }
        guard monotonicNanos() < deadline else {
            throw KafkaBenchError("\(topic) not ready in 30 s: error \(t.errorCode), \(t.partitions.count) partitions")
        }
        usleep(50_000)  // polling metadata until the new topic has leaders
    }
}

// MARK: - Producer

struct ProducerOptions {
    var topic = "floe-bench"
    var partitions = 1
    var acks: Int16 = 1
    var recordSize = 1024
    var batchRecords = 16
    var producers = 1
    var inFlight = 5
    var durationSeconds: Double? = 10
    var totalRecords: Int?
    /// The target rate over all connections (nil: as fast as the window allows).
    var rateProfile: RateProfile?
}

/// What one producer connection measured.
final class ProducerResult: Sendable {
    let requestsSent = Atomic<Int>(0)
    let requestsAnswered = Atomic<Int>(0)
    let errorResponses = Atomic<Int>(0)
    let firstError = Mutex<String?>(nil)
    let latenciesMicros = Mutex<[UInt32]>([])
    let finishedAt = Atomic<UInt64>(0)
    let writerDone = Atomic<Bool>(false)
    /// Signalled once per request written and once more when the writer stops, so the reader
    /// blocks in `recv` only when a response is due.
    let written = DispatchSemaphore(value: 0)

    func fail(_ message: String) {
        firstError.withLock { if $0 == nil { $0 = message } }
    }
}

/// Send times of requests awaiting their response, in send order (responses come in order).
final class SendTimes: Sendable {
    private let times: Mutex<(ring: [UInt64], head: Int, count: Int)>

    init(capacity: Int) { times = Mutex((ring: [UInt64](repeating: 0, count: capacity), head: 0, count: 0)) }

    func push(_ t: UInt64) {
        times.withLock { s in
            precondition(s.count < s.ring.count, "more requests in flight than the window allows")
            s.ring[(s.head + s.count) % s.ring.count] = t
            s.count += 1
        }
    }

    func pop() -> UInt64? {
        times.withLock { s in
            guard s.count > 0 else { return nil }
            let t = s.ring[s.head]
            s.head = (s.head + 1) % s.ring.count
            s.count -= 1
            return t
        }
    }
}

/// A Produce request frame for one partition, encoded once; `patch` sets the correlation id.
struct ProduceFrame {
    var bytes: [UInt8]
    let records: Int
    static let correlationOffset = 8  // size (4), api key (2), api version (2)

    mutating func patch(correlationId: Int32) {
        let v = UInt32(bitPattern: correlationId)
        bytes[8] = UInt8(v >> 24)
        bytes[9] = UInt8((v >> 16) & 0xFF)
        bytes[10] = UInt8((v >> 8) & 0xFF)
        bytes[11] = UInt8(v & 0xFF)
    }
}

func makeProduceFrames(_ o: ProducerOptions, version: Int16) throws -> [ProduceFrame] {
    // Values are printable bytes from a fixed seed, as kafka-producer-perf-test's random payload.
    var rng = SplitMix64(seed: 0xF10E)
    let value = (0..<o.recordSize).map { _ in UInt8(65 + rng.next() % 26) }
    let now = Int64(Date().timeIntervalSince1970 * 1000)
    var frames: [ProduceFrame] = []
    for p in 0..<o.partitions {
        var builder = RecordBatchBuilder(baseTimestamp: now)
        for _ in 0..<o.batchRecords { builder.append(timestamp: now, key: nil, value: value) }
        let batch = try builder.build()
        let request = ProduceRequest(acks: o.acks, timeoutMs: 30000, topicData: [
            .init(name: o.topic, partitionData: [.init(index: Int32(p), records: batch[...])]),
        ])
        var writer = ByteWriter(capacity: batch.count + 128)
        try RequestHeader.encodeRequest(request, version: version, correlationId: 0, clientId: "floe-bench", into: &writer)
        frames.append(ProduceFrame(bytes: writer.take(), records: o.batchRecords))
    }
    return frames
}

struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Shared stop signal and the request budget of a --records run.
final class RunControl: Sendable {
    let stop = Atomic<Bool>(false)
    /// Requests that may still be sent (a --records run); Int.max for a timed run.
    let budget: Atomic<Int>
    init(budget: Int) { self.budget = Atomic(budget) }

    func takeRequest() -> Bool {
        if stop.load(ordering: .relaxed) { return false }
        if budget.load(ordering: .relaxed) == Int.max { return true }
        return budget.wrappingSubtract(1, ordering: .relaxed).oldValue > 0
    }
}

func startThread(_ name: String, _ group: DispatchGroup, _ body: @escaping @Sendable () -> Void) {
    group.enter()
    let t = Thread {
        body()
        group.leave()
    }
    t.name = name
    t.stackSize = 1 << 20
    t.start()
}

func runProducer(_ o: ProducerOptions, bootstrap: SocketAddress) throws {
    let setup = try BlockingKafkaConnection(bootstrap)
    let versions = try apiVersions(setup)
    let pv = try versions.pick(.produce, cap: 9, floor: 3)
    let layout = try prepareTopic(setup, versions: versions, topic: o.topic, partitions: o.partitions, create: true)
    let frames = try makeProduceFrames(o, version: pv)
    let requestBytes = frames[0].bytes.count
    let budget = o.totalRecords.map { ($0 + o.batchRecords - 1) / o.batchRecords } ?? Int.max
    let control = RunControl(budget: budget)
    let connections = try (0..<o.producers).map { _ in try BlockingKafkaConnection(layout.leader) }
    let results = (0..<o.producers).map { _ in ProducerResult() }

    print("""
        method: \(o.producers) producer connection(s) to \(layout.leader), each a writer thread and a reader thread; \
        Produce v\(pv), acks=\(o.acks), topic \(o.topic) with \(o.partitions) partition(s); every request holds one \
        uncompressed batch of \(o.batchRecords) records of \(o.recordSize) bytes (null keys) for one partition, \
        partitions round-robin; up to \(o.inFlight) requests in flight per connection; \
        \(o.totalRecords.map { "\($0) records" } ?? "\(o.durationSeconds ?? 0) s")\(o.rateProfile.map { " at \($0.describe(recordSize: o.recordSize))" } ?? ""); \
        latency = request \(o.rateProfile == nil ? "written" : "scheduled") → response read.
        """)

    let group = DispatchGroup()
    let started = monotonicNanos()
    for (i, conn) in connections.enumerated() {
        let result = results[i]
        // Created at 0 and filled by signals: libdispatch traps when a semaphore is freed with a
        // value below its initial one, which a stopped run can leave.
        let window = DispatchSemaphore(value: 0)
        for _ in 0..<o.inFlight { window.signal() }
        let times = SendTimes(capacity: o.inFlight + 1)
        let acks = o.acks
        let inFlight = o.inFlight
        let partitions = o.partitions
        let framesCopy = frames
        // With a rate: this connection's n-th request is request n × connections + i of the run,
        // due when the profile's integral reaches that many requests' records (RateSchedule).
        let paced = o.rateProfile != nil
        let scheduleCopy = o.rateProfile.map { RateSchedule(profile: $0, recordsPerRequest: o.batchRecords) }
        let connectionCount = o.producers
        startThread("producer-\(i)-writer", group) {
            var frames = framesCopy
            var correlation: Int32 = 0
            var p = i % partitions
            var n = 0
            var schedule = scheduleCopy
            while control.takeRequest() {
                var due = monotonicNanos()
                if let at = schedule?.dueTime(ofRequest: n * connectionCount + i) {
                    due = started + UInt64(at * 1e9)
                    n += 1
                    while case let now = monotonicNanos(), due > now, !control.stop.load(ordering: .relaxed) {
                        usleep(UInt32(min((due - now) / 1000, 100_000)))
                    }
                }
                if acks != 0 {
                    window.wait()
                    if control.stop.load(ordering: .relaxed) { break }
                }
                correlation &+= 1
                frames[p].patch(correlationId: correlation)
                if acks != 0 { times.push(paced ? due : monotonicNanos()) }
                do {
                    try conn.send(frames[p].bytes)
                } catch {
                    result.fail("\(error)")
                    control.stop.store(true, ordering: .relaxed)
                    break
                }
                result.requestsSent.wrappingAdd(1, ordering: .relaxed)
                result.written.signal()
                p = (p + 1) % partitions
            }
            result.writerDone.store(true, ordering: .sequentiallyConsistent)
            result.written.signal()
            if acks == 0 { result.finishedAt.store(monotonicNanos(), ordering: .relaxed) }
        }
        guard acks != 0 else { continue }
        startThread("producer-\(i)-reader", group) {
            var latencies: [UInt32] = []
            latencies.reserveCapacity(1 << 16)
            var expectedCorrelation: Int32 = 0
            var answered = 0
            while true {
                result.written.wait()
                if result.writerDone.load(ordering: .sequentiallyConsistent)
                    && answered == result.requestsSent.load(ordering: .sequentiallyConsistent) { break }
                let frame: ArraySlice<UInt8>
                do {
                    frame = try conn.readFrame()
                } catch {
                    result.fail("\(error)")
                    control.stop.store(true, ordering: .relaxed)
                    for _ in 0..<inFlight { window.signal() }  // the writer must not wait for answers that never come
                    break
                }
                let now = monotonicNanos()
                guard let sent = times.pop() else {
                    result.fail("a response arrived with no request in flight")
                    control.stop.store(true, ordering: .relaxed)
                    for _ in 0..<inFlight { window.signal() }
                    break
                }
                latencies.append(UInt32(min((now - sent) / 1000, UInt64(UInt32.max))))
                expectedCorrelation &+= 1
                do {
                    let (header, body) = try ResponseHeader.decodeResponse(frame, apiKey: .produce, version: pv)
                    if header.correlationId != expectedCorrelation {
                        result.fail("response correlation id \(header.correlationId), expected \(expectedCorrelation)")
                    }
                    if case let .produce(r) = body {
                        for t in r.responses {
                            for pr in t.partitionResponses where pr.errorCode != 0 {
                                result.errorResponses.wrappingAdd(1, ordering: .relaxed)
                                result.fail("Produce \(t.name)[\(pr.index)]: error \(pr.errorCode) \(pr.errorMessage ?? "")")
                            }
                        }
                    }
                } catch {
                    result.fail("undecodable Produce response: \(error)")
                }
                answered += 1
                result.requestsAnswered.wrappingAdd(1, ordering: .relaxed)
                window.signal()
            }
            result.finishedAt.store(monotonicNanos(), ordering: .relaxed)
            result.latenciesMicros.withLock { $0 = latencies }
        }
    }
    // A shaped rate prints one line per second while it runs.
    var progress = o.rateProfile.flatMap { $0.isShaped ? ProgressLines(profile: $0, options: o, started: started) : nil }
    if let seconds = o.durationSeconds, o.totalRecords == nil {
        // The run's length: the main thread only waits for the clock here (and prints progress).
        let deadline = started + UInt64(seconds * 1e9)
        while monotonicNanos() < deadline && !control.stop.load(ordering: .relaxed) {
            usleep(10_000)
            progress?.printDue(results: results, now: monotonicNanos())
        }
        control.stop.store(true, ordering: .relaxed)
    } else if progress != nil {
        while group.wait(timeout: .now() + .milliseconds(10)) == .timedOut {
            progress?.printDue(results: results, now: monotonicNanos())
        }
    }
    group.wait()
    let finished = results.map { $0.finishedAt.load(ordering: .relaxed) }.max() ?? monotonicNanos()
    let elapsed = Double(finished - started) / 1e9
    let errors = results.compactMap { $0.firstError.withLock { $0 } }
    let requests = results.reduce(0) { $0 + (o.acks == 0 ? $1.requestsSent.load(ordering: .relaxed) : $1.requestsAnswered.load(ordering: .relaxed)) }
    let records = requests * o.batchRecords
    let mib = Double(records * o.recordSize) / 1_048_576
    let wireMiB = Double(requests * requestBytes) / 1_048_576
    var all: [UInt32] = results.flatMap { $0.latenciesMicros.withLock { $0 } }
    all.sort()
    func pct(_ q: Double) -> String {
        guard !all.isEmpty else { return "n/a" }
        let v = all[min(all.count - 1, Int((Double(all.count) * q).rounded(.up)) - 1)]
        return String(format: "%.2f", Double(v) / 1000)
    }
    print(String(format: "produce: %d records in %.2f s: %.0f records/s, %.1f MiB/s of values (%.1f MiB/s on the wire), %d requests",
                 records, elapsed, Double(records) / elapsed, mib / elapsed, wireMiB / elapsed, requests))
    if o.acks != 0 {
        print("latency ms: p50 \(pct(0.50)) p95 \(pct(0.95)) p99 \(pct(0.99)) p99.9 \(pct(0.999)) max \(all.last.map { String(format: "%.2f", Double($0) / 1000) } ?? "n/a")")
    } else {
        print("latency: not measured with acks=0 (no responses)")
    }
    if !errors.isEmpty {
        throw KafkaBenchError("\(errors.count) connection(s) failed; first: \(errors[0])")
    }
}

/// The per-second progress lines of a run with a shaped rate, e.g.
/// `  12 s  target  4.20 MiB/s   4301 rec/s  achieved  4.18 MiB/s   4280 rec/s  acks 267  errors 0  behind 0`:
/// target is the profile's average over that second, achieved counts the records answered
/// (sent, with acks=0) in it, acks the responses in it, errors the failed partition answers so
/// far, behind the requests due by the line's time and not yet sent.
struct ProgressLines {
    let profile: RateProfile
    let options: ProducerOptions
    let started: UInt64
    private var second = 0
    private var lastRequests = 0
    private var lastAnswered = 0

    init(profile: RateProfile, options: ProducerOptions, started: UInt64) {
        self.profile = profile
        self.options = options
        self.started = started
    }

    mutating func printDue(results: [ProducerResult], now: UInt64) {
        guard now >= started + UInt64(second + 1) * 1_000_000_000 else { return }
        second += 1
        let sent = results.reduce(0) { $0 + $1.requestsSent.load(ordering: .relaxed) }
        let answered = results.reduce(0) { $0 + $1.requestsAnswered.load(ordering: .relaxed) }
        let errors = results.reduce(0) { $0 + $1.errorResponses.load(ordering: .relaxed) }
        let requests = options.acks == 0 ? sent : answered
        let t = Double(second)
        let target = profile.records(by: t) - profile.records(by: t - 1)
        let achieved = Double((requests - lastRequests) * options.batchRecords)
        let due = Int(profile.records(by: t) / Double(options.batchRecords)) + 1
        let mib = Double(options.recordSize) / 1_048_576
        print(String(format: "%5d s  target %7.2f MiB/s %8.0f rec/s  achieved %7.2f MiB/s %8.0f rec/s  acks %d  errors %d  behind %d",
                     second, target * mib, target, achieved * mib, achieved, answered - lastAnswered, errors, max(0, due - sent)))
        fflush(nil)  // all output streams: the lines are meant to be watched through a pipe
        lastRequests = requests
        lastAnswered = answered
    }
}

// MARK: - Consumer

func runConsumer(bootstrap: SocketAddress, topic: String, fetchBytes: Int32) throws {
    let setup = try BlockingKafkaConnection(bootstrap)
    let versions = try apiVersions(setup)
    let layout = try prepareTopic(setup, versions: versions, topic: topic, partitions: 0, create: false)
    let c = layout.leader == bootstrap ? setup : try BlockingKafkaConnection(layout.leader)
    let fv = try versions.pick(.fetch, cap: 12, floor: 4)
    print("""
        method: one connection to \(layout.leader); Fetch v\(fv) of all \(layout.partitions) partition(s) of \(topic) from \
        offset 0 until each reaches the high watermark seen in its first answer; at most \(fetchBytes) bytes per \
        partition and one request in flight; batches are counted from their headers, not decompressed.
        """)
    var position = [Int64](repeating: 0, count: layout.partitions)
    var end = [Int64?](repeating: nil, count: layout.partitions)
    var bytes = 0
    var records = 0
    var requests = 0
    let started = monotonicNanos()
    while end.indices.contains(where: { end[$0] == nil || position[$0] < end[$0]! }) {
        let wanted = end.indices.filter { end[$0] == nil || position[$0] < end[$0]! }
        let request = FetchRequest(maxWaitMs: 500, minBytes: 1, maxBytes: 64 << 20, isolationLevel: 0, topics: [
            .init(topic: topic, partitions: wanted.map { .init(partition: Int32($0), fetchOffset: position[$0], partitionMaxBytes: fetchBytes) }),
        ])
        guard case let .fetch(r) = try c.roundTrip(request, version: fv) else { throw KafkaBenchError("Fetch: unexpected answer") }
        requests += 1
        guard r.errorCode == 0 else { throw KafkaBenchError("Fetch: error \(r.errorCode)") }
        for t in r.responses {
            for p in t.partitions {
                let i = Int(p.partitionIndex)
                guard p.errorCode == 0 else { throw KafkaBenchError("Fetch \(topic)[\(i)] at \(position[i]): error \(p.errorCode)") }
                if end[i] == nil { end[i] = p.highWatermark }
                var reader = RecordBatchReader(p.records ?? [], trailingPartialBatch: .allow, verification: .headerOnly)
                while let batch = try reader.next() {
                    let h = batch.header
                    let next = h.baseOffset + Int64(h.lastOffsetDelta) + 1
                    guard next > position[i] else { continue }
                    position[i] = next
                    records += Int(h.lastOffsetDelta) + 1
                    bytes += batch.bytes.count
                }
            }
        }
    }
    let elapsed = Double(monotonicNanos() - started) / 1e9
    print(String(format: "consume: %d records, %.1f MiB of batches in %.2f s: %.0f records/s, %.1f MiB/s, %d Fetch requests",
                 records, Double(bytes) / 1_048_576, elapsed, Double(records) / elapsed,
                 Double(bytes) / 1_048_576 / elapsed, requests))
}

// MARK: - Discard sink

/// A broker stand-in that parses requests and discards the records: it answers ApiVersions,
/// Metadata (any named topic exists with `partitions` partitions, all led by this sink) and
/// Produce (success, fake increasing offsets); any other request closes the connection.
final class DiscardSink: RequestHandler {
    let advertised: SocketAddress
    let partitions: Int32
    let nextOffset = Atomic<Int64>(0)
    static let supported: [(ApiKey, ClosedRange<Int16>)] = [(.produce, 3...11), (.metadata, 1...12), (.apiVersions, 0...3)]

    init(advertised: SocketAddress, partitions: Int32) {
        self.advertised = advertised
        self.partitions = partitions
    }

    func handle(_ request: ServerRequest) async -> HandlerResult {
        do {
            return try answer(request.bytes)
        } catch {
            FileHandle.standardError.write(Data("kafka-sink: \(request.connection.peer): \(error); closing\n".utf8))
            return .close
        }
    }

    private func answer(_ bytes: [UInt8]) throws -> HandlerResult {
        let decoded = try RequestHeader.decodeRequest(bytes[...])
        let version = decoded.apiVersion
        let cid = decoded.correlationId
        guard let range = Self.supported.first(where: { $0.0 == decoded.apiKey })?.1 else { return .close }
        var writer = ByteWriter(capacity: 256)
        if decoded.apiKey == .apiVersions {
            let keys = Self.supported.map { ApiVersionsResponse.ApiVersion(apiKey: $0.0.rawValue, minVersion: $0.1.lowerBound, maxVersion: $0.1.upperBound) }
            let v: Int16 = range.contains(version) ? version : 0
            let response = ApiVersionsResponse(errorCode: range.contains(version) ? 0 : 35, apiKeys: keys)
            try ResponseHeader.encodeResponse(response, version: v, correlationId: cid, into: &writer)
            return .respond(Array(writer.take().dropFirst(4)))
        }
        guard range.contains(version) else { return .close }
        switch try decoded.decodeBody() {
        case let .metadata(m):
            let me = MetadataResponse.MetadataResponseBroker(nodeId: 1, host: advertised.host, port: Int32(advertised.port))
            let topics = (m.topics ?? []).compactMap(\.name).map { name in
                MetadataResponse.MetadataResponseTopic(name: name, partitions: (0..<partitions).map {
                    .init(partitionIndex: $0, leaderId: 1, leaderEpoch: 0, replicaNodes: [1], isrNodes: [1])
                })
            }
            let response = MetadataResponse(brokers: [me], clusterId: "floe-bench-sink", controllerId: 1, topics: topics)
            try ResponseHeader.encodeResponse(response, version: version, correlationId: cid, into: &writer)
        case let .produce(p):
            var responses: [ProduceResponse.TopicProduceResponse] = []
            for t in p.topicData {
                var parts: [ProduceResponse.PartitionProduceResponse] = []
                for pd in t.partitionData {
                    var count: Int64 = 0
                    var reader = RecordBatchReader(pd.records ?? [], verification: .headerOnly)
                    while let batch = try reader.next() {
                        count += Int64(batch.header.lastOffsetDelta) + 1
                    }
                    let base = nextOffset.wrappingAdd(count, ordering: .relaxed).oldValue
                    parts.append(.init(index: pd.index, errorCode: 0, baseOffset: base, logStartOffset: 0))
                }
                responses.append(.init(name: t.name, partitionResponses: parts))
            }
            if p.acks == 0 { return .noResponse }
            try ResponseHeader.encodeResponse(ProduceResponse(responses: responses), version: version, correlationId: cid, into: &writer)
        default:
            return .close
        }
        return .respond(Array(writer.take().dropFirst(4)))
    }
}

func runKafkaSink(_ args: CommandLineArguments) throws {
    let listen = try SocketAddress(parsing: args.value("listen") ?? "127.0.0.1:9092")
    guard listen.port != 0 else { throw KafkaBenchError("--listen needs an explicit port (the sink advertises it)") }
    guard let partitions = Int32(args.value("partitions") ?? "16"), partitions > 0 else {
        throw KafkaBenchError("--partitions must be a positive number")
    }
    guard let loops = Int(args.value("event-loops") ?? "2"), loops > 0 else {
        throw KafkaBenchError("--event-loops must be a positive number")
    }
    let sink = DiscardSink(advertised: listen, partitions: partitions)
    let server = try KafkaServer(configuration: .init(listen: listen, eventLoops: loops), handler: sink)
    // Written unbuffered: the sink usually runs with its output in a file.
    FileHandle.standardOutput.write(Data(
        "kafka-sink: listening on \(listen) (\(partitions) partitions per topic, \(loops) event loops); SIGINT/SIGTERM ends it\n".utf8))
    // No signal handling: a discard sink has nothing to save, and SIGINT/SIGTERM's default
    // action ends it at once.
    let done = DispatchSemaphore(value: 0)
    Task {
        await server.run()
        done.signal()
    }
    done.wait()
    FileHandle.standardOutput.write(Data("kafka-sink: stopped\n".utf8))
}

// MARK: - Entry points

/// `floe-bench kafka` and `floe-bench kafka-sink`.
func runKafkaBenchmark(_ name: String, _ args: CommandLineArguments) {
    if name == "kafka-sink" {
        runKafkaSinkCommand(args)
        return
    }
    if args.has("help") {
        print(kafkaUsage)
        exit(0)
    }
    let known: Set<String> = ["bootstrap", "topic", "partitions", "acks", "record-size", "batch-records", "producers",
                              "in-flight", "duration", "records", "consume", "fetch-bytes", "rate", "profile", "ramp",
                              "hold", "down", "period"]
    let unknown = args.unknown(known: known)
    guard unknown.isEmpty else {
        FileHandle.standardError.write(Data("floe-bench kafka: unknown option --\(unknown[0])\n\(kafkaUsage)\n".utf8))
        exit(2)
    }
    do {
        let bootstrap = try SocketAddress(parsing: args.value("bootstrap") ?? "127.0.0.1:9092")
        func int(_ name: String, _ def: Int) throws -> Int {
            guard let text = args.value(name) else { return def }
            guard let v = Int(text), v > 0 else { throw KafkaBenchError("--\(name) must be a positive number, got \(text)") }
            return v
        }
        let topic = args.value("topic") ?? "floe-bench"
        if args.has("consume") {
            try runConsumer(bootstrap: bootstrap, topic: topic, fetchBytes: Int32(try int("fetch-bytes", 1 << 20)))
            return
        }
        var o = ProducerOptions()
        o.topic = topic
        o.partitions = try int("partitions", 1)
        switch args.value("acks") ?? "1" {
        case "0": o.acks = 0
        case "1": o.acks = 1
        case "-1", "all": o.acks = -1
        case let other: throw KafkaBenchError("--acks must be 0, 1, -1 or all, got \(other)")
        }
        o.recordSize = try int("record-size", 1024)
        o.batchRecords = try int("batch-records", 16)
        o.producers = try int("producers", 1)
        o.inFlight = try int("in-flight", 5)
        o.rateProfile = try RateProfile.parse(
            rate: args.value("rate"), profile: args.value("profile"), ramp: args.value("ramp"), hold: args.value("hold"),
            down: args.value("down"), period: args.value("period"), recordSize: o.recordSize)
        if let r = args.value("records") {
            guard let n = Int(r), n > 0 else { throw KafkaBenchError("--records must be a positive number, got \(r)") }
            o.totalRecords = n
            o.durationSeconds = nil
        } else if let d = args.value("duration") {
            let s = try parseDuration(d, option: "duration")
            guard s > 0 else { throw KafkaBenchError("--duration must be longer than 0, got \(d)") }
            o.durationSeconds = s
        } else if let s = o.rateProfile?.naturalDuration {
            o.durationSeconds = s
        }
        try runProducer(o, bootstrap: bootstrap)
    } catch {
        FileHandle.standardError.write(Data("floe-bench kafka: \(error)\n".utf8))
        exit(1)
    }
}

func runKafkaSinkCommand(_ args: CommandLineArguments) {
    if args.has("help") {
        print(kafkaUsage)
        exit(0)
    }
    let unknown = args.unknown(known: ["listen", "partitions", "event-loops"])
    guard unknown.isEmpty else {
        FileHandle.standardError.write(Data("floe-bench kafka-sink: unknown option --\(unknown[0])\n\(kafkaUsage)\n".utf8))
        exit(2)
    }
    do {
        try runKafkaSink(args)
    } catch {
        FileHandle.standardError.write(Data("floe-bench kafka-sink: \(error)\n".utf8))
        exit(1)
    }
}
