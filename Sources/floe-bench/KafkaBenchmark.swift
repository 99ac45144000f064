#if canImport(Glibc)
import Glibc
#endif
import Broker
import Bytes
import Dispatch
import Foundation
import KafkaClient
import KafkaProtocol
import Support
import Synchronization

// floe-bench kafka: a Kafka load generator in the spirit of kafka-producer-perf-test, and
// floe-bench kafka-sink: a broker stand-in that parses requests and discards the records, to
// measure the load generator's own ceiling. See docs/benchmarks.md, "Kafka load".
//
// Client method: every producer has its own KafkaConnectionPool, so one connection per broker
// that leads one of its partitions (KafkaClient: pipelined, one I/O thread per connection). A
// producer task paces requests by the schedule (one record batch of --batch-records records for
// one partition each; partitions taken round-robin, each producer starting at its own index; the
// Produce request of each partition is built once and encoded per send) through --in-flight
// workers per broker, each holding one slot of its broker connection's window (at most
// --in-flight unanswered requests per connection). A worker sends its request to the partition's
// leader, checks the partition's error code, follows a move (leader hint, else Metadata) and
// records the latency from the request's due (or send) time to the accepting answer. acks=0 has
// no responses: one worker sends the requests one after the other and no latency is measured.

let kafkaUsage = """
    USAGE: floe-bench kafka [options]           produce (default) or --consume against a broker
           floe-bench kafka-sink [options]      a discard sink that answers like a broker

    kafka options:
      --bootstrap HOST:PORT   a broker of the cluster (default 127.0.0.1:9092); each partition's
                              requests go to its leader, and follow it when it moves
      --topic NAME            topic (default floe-bench); created with CreateTopics if missing
      --partitions N          partitions to produce to (default 1)
      --acks 0|1|-1|all       (default 1)
      --record-size BYTES     value size (default 1024); keys are null
      --batch-records N       records per batch, one batch per request (default 16)
      --producers N           producers, each with its own connection per leader (default 1)
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

/// Runs `body` on the cooperative pool and blocks the calling thread (the main thread, never a
/// cooperative one) until it has finished; its result or error is returned through the box.
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let done = DispatchSemaphore(value: 0)
    let outcome = Mutex<Result<T, any Error>?>(nil)
    Task {
        let r: Result<T, any Error>
        do { r = .success(try await body()) } catch { r = .failure(error) }
        outcome.withLock { $0 = r }
        done.signal()
    }
    done.wait()
    return try outcome.withLock { $0! }.get()
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

/// The bootstrap broker's versions (ApiVersions v3); every broker of a cluster is taken to serve
/// the same.
func apiVersions(_ c: KafkaConnection) async throws -> BrokerVersions {
    let r = try await c.send(
        ApiVersionsRequest(clientSoftwareName: "floe-bench", clientSoftwareVersion: "1"), version: 3,
        expecting: ApiVersionsResponse.self)
    guard r.errorCode == 0 else { throw KafkaBenchError("ApiVersions v3 to \(c.address) answered error \(r.errorCode)") }
    var ranges: [Int16: ClosedRange<Int16>] = [:]
    for k in r.apiKeys where k.minVersion <= k.maxVersion { ranges[k.apiKey] = k.minVersion...k.maxVersion }
    return BrokerVersions(ranges: ranges)
}

/// Finds the topic (creating it with `partitions` partitions when it does not exist) and waits
/// (up to 30 s) until every partition used has a leader. A producer uses partitions
/// 0..<partitions of an existing topic that has at least that many; the consumer
/// (`create: false`) reads every partition. Returns the partition count used and the answer.
func prepareTopic(_ admin: KafkaAdminClient, topic: String, partitions: Int, create: Bool) async throws
    -> (partitions: Int, metadata: ClusterMetadata)
{
    let deadline = monotonicNanos() + 30_000_000_000
    var created = false
    while true {
        let md = try await admin.metadata(topics: [topic])
        let topicError = md.topicErrors[topic]
        if topicError == .unknownTopicOrPartition {
            guard create else { throw KafkaBenchError("topic \(topic) does not exist") }
            if !created {
                try await admin.createTopic(topic, partitions: Int32(partitions))
                created = true
                continue
            }
        }
        let listed = md.partitions.filter { $0.topic == topic }
        let count = create ? partitions : listed.count
        let used = listed.filter { Int($0.partition) < count }
        if topicError == nil && listed.count >= partitions && used.allSatisfy({ $0.error == nil && $0.leader >= 0 }) {
            return (count, md)
        }
        guard monotonicNanos() < deadline else {
            throw KafkaBenchError(
                "\(topic) not ready in 30 s: \(topicError.map { "error \($0.name), " } ?? "")\(listed.count) partitions, "
                    + "\(used.filter { $0.leader < 0 }.count) without a leader")
        }
        try await Task.sleep(for: .milliseconds(50))  // polling metadata until the new topic has leaders
    }
}

/// The shell around `LeaderTable`: the routes every producer and the consumer share, refreshed
/// from Metadata through the admin client. Lookups take the lock briefly; a refresh awaits
/// Metadata without holding it.
final class LeaderDirectory: Sendable {
    let topic: String
    private let admin: KafkaAdminClient
    private let table: Mutex<LeaderTable>

    init(topic: String, admin: KafkaAdminClient, metadata: ClusterMetadata) {
        self.topic = topic
        self.admin = admin
        var t = LeaderTable()
        t.update(from: metadata, topic: topic)
        table = Mutex(t)
    }

    func route(_ partition: Int32) -> (broker: Int32, address: BrokerAddress)? {
        table.withLock { $0.route(partition) }
    }

    func applyHint(partition: Int32, leader: Int32, epoch: Int32, endpoints: [Int32: BrokerAddress]) -> Bool {
        table.withLock { $0.applyHint(partition: partition, leader: leader, epoch: epoch, endpoints: endpoints) }
    }

    /// Asks Metadata for the topic and takes the answer; an unreachable cluster is thrown.
    func refresh() async throws {
        let md = try await admin.metadata(topics: [topic])
        table.withLock { _ = $0.update(from: md, topic: topic) }
    }

    /// The distinct leaders of `partitions` as "id at host:port", for the method line.
    func describe(_ partitions: Range<Int32>) -> String {
        let routes = partitions.compactMap { route($0) }
        let byBroker = Dictionary(grouping: routes, by: \.broker)
        return byBroker.keys.sorted().map { "broker \($0) at \(byBroker[$0]![0].address)" }.joined(separator: ", ")
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

/// What one producer measured.
final class ProducerResult: Sendable {
    let requestsSent = Atomic<Int>(0)
    let requestsAnswered = Atomic<Int>(0)
    /// Requests that failed after their retries (or at once, for an error other than a move).
    let errorResponses = Atomic<Int>(0)
    /// Requests resent because their partition moved (a moved answer: `PartitionAnswer.moved`).
    let retriedMoved = Atomic<Int>(0)
    /// Requests resent because the broker did not know the partition yet (`.unknownPartition`).
    let retriedUnknown = Atomic<Int>(0)
    /// Requests resent because their connection was lost (closed, timed out, refused).
    let retriedConnection = Atomic<Int>(0)
    /// Resends that went straight to a hinted leader, and resends after a Metadata refresh.
    let resendsHinted = Atomic<Int>(0)
    let resendsRefreshed = Atomic<Int>(0)
    let firstError = Mutex<String?>(nil)
    let latenciesMicros = Mutex<[UInt32]>([])
    let finishedAt = Atomic<UInt64>(0)

    func fail(_ message: String) {
        firstError.withLock { if $0 == nil { $0 = message } }
    }
}

/// The Produce request of each partition, built once: one batch of --batch-records records.
func makeProduceRequests(_ o: ProducerOptions) throws -> [ProduceRequest] {
    // Values are printable bytes from a fixed seed, as kafka-producer-perf-test's random payload.
    var rng = SplitMix64(seed: 0xF10E)
    let value = (0..<o.recordSize).map { _ in UInt8(65 + rng.next() % 26) }
    let now = Int64(Date().timeIntervalSince1970 * 1000)
    var builder = RecordBatchBuilder(baseTimestamp: now)
    for _ in 0..<o.batchRecords { builder.append(timestamp: now, key: nil, value: value) }
    let batch = try builder.build()
    return (0..<o.partitions).map { p in
        ProduceRequest(acks: o.acks, timeoutMs: 30000, topicData: [
            .init(name: o.topic, partitionData: [.init(index: Int32(p), records: batch[...])]),
        ])
    }
}

/// The size of one Produce request frame on the wire (size prefix included).
func produceFrameSize(_ request: ProduceRequest, version: Int16) throws -> Int {
    var writer = ByteWriter(capacity: 1024)
    try RequestHeader.encodeRequest(request, version: version, correlationId: 0, clientId: "floe-bench", into: &writer)
    return writer.count
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

    /// Sleeps until `due` (monotonic ns) in steps of at most 100 ms, returning early on stop.
    func sleep(until due: UInt64) async {
        while case let now = monotonicNanos(), due > now, !stop.load(ordering: .relaxed) {
            do {
                try await Task.sleep(for: .nanoseconds(min(due - now, 100_000_000)), tolerance: .zero)
            } catch {
                return
            }
        }
    }
}

/// A producer's requests in order: request n of producer i is request n × producers + i of the
/// run, for partition (i + n) mod partitions, due (with a rate) when the profile's integral
/// reaches that many requests' records (RateSchedule). Claimed under a lock by the workers.
final class RequestClaims: Sendable {
    private struct State {
        var n = 0
        var schedule: RateSchedule?
    }
    private let state: Mutex<State>
    let producer: Int
    let producers: Int
    let partitions: Int

    init(producer: Int, producers: Int, partitions: Int, schedule: RateSchedule?) {
        self.producer = producer
        self.producers = producers
        self.partitions = partitions
        state = Mutex(State(schedule: schedule))
    }

    /// The next request's partition and due time in seconds from the start (nil: unpaced).
    func next() -> (partition: Int32, due: Double?) {
        state.withLock { s in
            let n = s.n
            s.n += 1
            let due = s.schedule?.dueTime(ofRequest: n * producers + producer)
            return (Int32((producer + n) % partitions), due)
        }
    }
}

/// At most `size` unanswered requests per broker connection: an async counting semaphore per
/// broker id, waiters resumed in arrival order. Waiters are the producer's workers, so at most
/// that many are queued.
final class BrokerWindows: Sendable {
    private struct Window {
        var used = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let windows = Mutex<[Int32: Window]>([:])
    let size: Int

    init(size: Int) { self.size = size }

    func acquire(_ broker: Int32) async {
        let taken = windows.withLock { w -> Bool in
            if w[broker, default: Window()].used < size {
                w[broker, default: Window()].used += 1
                return true
            }
            return false
        }
        if taken { return }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = windows.withLock { w -> Bool in
                if w[broker, default: Window()].used < size {  // released meanwhile
                    w[broker, default: Window()].used += 1
                    return true
                }
                w[broker, default: Window()].waiters.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    /// Frees a slot: hands it to the first waiter, if any (its `used` count stays).
    func release(_ broker: Int32) {
        let next = windows.withLock { w -> CheckedContinuation<Void, Never>? in
            if w[broker, default: Window()].waiters.isEmpty {
                w[broker, default: Window()].used -= 1
                return nil
            }
            return w[broker, default: Window()].waiters.removeFirst()
        }
        next?.resume()
    }
}

/// One producer: its own connections (one per leader, from its own pool), its requests paced by
/// the schedule and sent through `send(partition:)`, which follows the partition's leader.
struct Producer: Sendable {
    let index: Int
    let options: ProducerOptions
    let version: Int16
    let requests: [ProduceRequest]
    let directory: LeaderDirectory
    let pool: KafkaConnectionPool
    let control: RunControl
    let result: ProducerResult
    let policy: RetryPolicy

    /// Sends until the run stops, then waits for every answer. `inFlight` × `brokers` workers
    /// (one with acks=0) each claim the next request (`RequestClaims`), wait for its due time
    /// with a rate, take a slot of its leader's window (`BrokerWindows`: at most `inFlight`
    /// unanswered requests per connection; a resent request keeps its slot on the broker it was
    /// first sent to), send it and wait for the answer. A worker per window slot (rather than a
    /// task per request) keeps one thread hand-over per request: the answer resumes the worker,
    /// which sends the next.
    func run(started: UInt64, producers: Int, brokers: Int) async {
        let o = options
        let paced = o.rateProfile != nil
        let claims = RequestClaims(producer: index, producers: producers, partitions: o.partitions,
                                   schedule: o.rateProfile.map { RateSchedule(profile: $0, recordsPerRequest: o.batchRecords) })
        let windows = BrokerWindows(size: o.inFlight)
        let workers = o.acks == 0 ? 1 : o.inFlight * max(1, brokers)
        let latencies = await withTaskGroup(of: [UInt32].self) { group in
            for _ in 0..<workers {
                group.addTask {
                    var mine: [UInt32] = []
                    mine.reserveCapacity(1 << 14)
                    while control.takeRequest() {
                        let (partition, dueAt) = claims.next()
                        var due = monotonicNanos()
                        if let at = dueAt {
                            due = started + UInt64(at * 1e9)
                            await control.sleep(until: due)
                        }
                        if o.acks == 0 {
                            _ = await send(partition: partition, from: due)
                            result.requestsSent.wrappingAdd(1, ordering: .relaxed)
                            continue
                        }
                        let broker = directory.route(partition)?.broker ?? -1
                        await windows.acquire(broker)
                        if control.stop.load(ordering: .relaxed) {
                            windows.release(broker)
                            break
                        }
                        let sentAt = paced ? due : monotonicNanos()
                        result.requestsSent.wrappingAdd(1, ordering: .relaxed)
                        let latency = await send(partition: partition, from: sentAt)
                        windows.release(broker)
                        if let latency { mine.append(latency) }
                    }
                    return mine
                }
            }
            var all: [UInt32] = []
            for await part in group { all += part }
            return all
        }
        result.finishedAt.store(monotonicNanos(), ordering: .relaxed)
        result.latenciesMicros.withLock { $0 = latencies }
    }

    /// Sends `partition`'s request to its leader, following moves (a leader hint, else a
    /// Metadata refresh) for up to `policy.attempts` sends. Returns the latency from `start`
    /// to the accepting answer (nil with acks=0, or when the request failed: then it is counted
    /// as an error; a lost connection after every attempt also stops the run).
    func send(partition: Int32, from start: UInt64) async -> UInt32? {
        let request = requests[Int(partition)]
        var name: String { "Produce \(options.topic)[\(partition)]" }  // for failures only
        var resends = 0
        var hinted = false
        var movedOnce = false
        var lostOnce = false
        var unknownOnce = false
        var lastFailure = ""
        var connectionLost = false
        for attempt in 0..<policy.attempts {
            if attempt > 0 {
                resends += 1
                if hinted { result.resendsHinted.wrappingAdd(1, ordering: .relaxed) }
                let delay = policy.delayMs(beforeResend: resends, hinted: hinted)
                if !hinted {
                    if delay > 0 {
                        do { try await Task.sleep(for: .milliseconds(delay)) } catch { return failed("\(name): cancelled") }
                    }
                    do {
                        try await directory.refresh()
                        result.resendsRefreshed.wrappingAdd(1, ordering: .relaxed)
                    } catch {
                        lastFailure = "Metadata refresh: \(error)"
                    }
                }
                hinted = false
            }
            guard let route = directory.route(partition) else {
                lastFailure = "\(name): no leader known"
                continue
            }
            let answer: ProduceResponse
            do {
                let connection = try await pool.connection(host: route.address.host, port: route.address.port)
                answer = try await connection.send(request, version: version, expecting: ProduceResponse.self)
            } catch let error as KafkaClientError where error.isConnectionLoss {
                lastFailure = "\(name) to broker \(route.broker): \(error)"
                connectionLost = true
                if !lostOnce {
                    lostOnce = true
                    result.retriedConnection.wrappingAdd(1, ordering: .relaxed)
                }
                continue
            } catch {
                return failed("\(name) to broker \(route.broker): \(error)")
            }
            connectionLost = false
            if options.acks == 0 { return nil }
            guard let pr = answer.responses.first(where: { $0.name == options.topic })?.partitionResponses.first(where: { $0.index == partition }) else {
                return failed("\(name): broker \(route.broker) answered without the partition")
            }
            switch PartitionAnswer(errorCode: pr.errorCode) {
            case .accepted:
                result.requestsAnswered.wrappingAdd(1, ordering: .relaxed)
                let now = monotonicNanos()
                return UInt32(min((now &- start) / 1000, UInt64(UInt32.max)))
            case .moved:
                if !movedOnce {
                    movedOnce = true
                    result.retriedMoved.wrappingAdd(1, ordering: .relaxed)
                }
                lastFailure = "\(name) at broker \(route.broker): \(codeText(pr.errorCode)) \(pr.errorMessage ?? "")"
                var endpoints: [Int32: BrokerAddress] = [:]
                for e in answer.nodeEndpoints { endpoints[e.nodeId] = BrokerAddress(host: e.host, port: Int(e.port)) }
                let leader = pr.currentLeader
                hinted = leader.leaderId != route.broker
                    && directory.applyHint(partition: partition, leader: leader.leaderId, epoch: leader.leaderEpoch, endpoints: endpoints)
            case .unknownPartition:
                if !unknownOnce {
                    unknownOnce = true
                    result.retriedUnknown.wrappingAdd(1, ordering: .relaxed)
                }
                lastFailure = "\(name) at broker \(route.broker): \(codeText(pr.errorCode)) \(pr.errorMessage ?? "")"
            case .failed:
                return failed("\(name) at broker \(route.broker): \(codeText(pr.errorCode)) \(pr.errorMessage ?? "")")
            }
        }
        if connectionLost { control.stop.store(true, ordering: .relaxed) }
        return failed("\(lastFailure) (after \(policy.attempts) attempts)")
    }

    private func failed(_ message: String) -> UInt32? {
        result.errorResponses.wrappingAdd(1, ordering: .relaxed)
        result.fail(message)
        return nil
    }
}

func codeText(_ code: Int16) -> String {
    "\(KafkaErrorCode(rawValue: code)?.name ?? "error") (\(code))"
}

extension KafkaClientError {
    /// The request may not have reached a live leader: retried after a Metadata refresh.
    var isConnectionLoss: Bool {
        switch kind {
        case .resolveFailed, .connectFailed, .connectTimeout, .requestTimeout, .closed, .io: true
        default: false
        }
    }
}

/// Connects, picks versions, prepares the topic and builds the producers.
func prepareProducers(_ o: ProducerOptions, bootstrap: BrokerAddress, control: RunControl) async throws
    -> (producers: [Producer], version: Int16, frameBytes: Int, leaders: String, brokers: Int)
{
    let admin = KafkaAdminClient(bootstrap: [bootstrap], clientId: "floe-bench")
    let setup = KafkaConnectionPool(clientId: "floe-bench")
    defer { setup.closeAll() }
    let versions = try await apiVersions(try await setup.connection(host: bootstrap.host, port: bootstrap.port))
    // v10+ answers NOT_LEADER_OR_FOLLOWER with the new leader (KIP-951).
    let pv = try versions.pick(.produce, cap: 11, floor: 3)
    let (count, md) = try await prepareTopic(admin, topic: o.topic, partitions: o.partitions, create: true)
    let directory = LeaderDirectory(topic: o.topic, admin: admin, metadata: md)
    let requests = try makeProduceRequests(o)
    let producers = (0..<o.producers).map { i in
        Producer(index: i, options: o, version: pv, requests: requests, directory: directory,
                 pool: KafkaConnectionPool(clientId: "floe-bench"), control: control, result: ProducerResult(), policy: RetryPolicy())
    }
    return (producers, pv, try produceFrameSize(requests[0], version: pv), directory.describe(0..<Int32(count)), md.brokers.count)
}

func runProducer(_ o: ProducerOptions, bootstrap: BrokerAddress) throws {
    let budget = o.totalRecords.map { ($0 + o.batchRecords - 1) / o.batchRecords } ?? Int.max
    let control = RunControl(budget: budget)
    let (producers, pv, requestBytes, leaders, brokerCount) = try runBlocking { try await prepareProducers(o, bootstrap: bootstrap, control: control) }
    let results = producers.map(\.result)

    print("""
        method: \(o.producers) producer(s), each with one connection per partition leader (KafkaConnection: pipelined, \
        one I/O thread per connection; leaders: \(leaders)); Produce v\(pv), acks=\(o.acks), topic \(o.topic) with \
        \(o.partitions) partition(s); every request holds one uncompressed batch of \(o.batchRecords) records of \
        \(o.recordSize) bytes (null keys) for one partition, partitions round-robin; up to \(o.inFlight) requests in \
        flight per connection; a request whose partition moved (or whose connection was lost) is resent to the new \
        leader (leader hint, else Metadata), up to 5 sends; \
        \(o.totalRecords.map { "\($0) records" } ?? "\(o.durationSeconds ?? 0) s")\(o.rateProfile.map { " at \($0.describe(recordSize: o.recordSize))" } ?? ""); \
        latency = request \(o.rateProfile == nil ? "sent" : "scheduled") → response read.
        """)

    let done = DispatchSemaphore(value: 0)
    let started = monotonicNanos()
    Task {
        await withTaskGroup(of: Void.self) { group in
            for producer in producers {
                group.addTask { await producer.run(started: started, producers: o.producers, brokers: brokerCount) }
            }
        }
        done.signal()
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
        while done.wait(timeout: .now() + .milliseconds(10)) == .timedOut {
            progress?.printDue(results: results, now: monotonicNanos())
        }
        done.signal()
    }
    done.wait()
    for p in producers { p.pool.closeAll() }
    let finished = results.map { $0.finishedAt.load(ordering: .relaxed) }.max() ?? monotonicNanos()
    let elapsed = Double(finished - started) / 1e9
    let errors = results.compactMap { $0.firstError.withLock { $0 } }
    let errorCount = results.reduce(0) { $0 + $1.errorResponses.load(ordering: .relaxed) }
    // Accepted requests (sent ones with acks=0); failed requests are only in `errors`.
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
    func sum(_ counter: (ProducerResult) -> Int) -> Int { results.reduce(0) { $0 + counter($1) } }
    print(String(format: "produce: %d records in %.2f s: %.0f records/s, %.1f MiB/s of values (%.1f MiB/s on the wire), %d requests",
                 records, elapsed, Double(records) / elapsed, mib / elapsed, wireMiB / elapsed, requests))
    if o.acks != 0 {
        print("latency ms: p50 \(pct(0.50)) p95 \(pct(0.95)) p99 \(pct(0.99)) p99.9 \(pct(0.999)) max \(all.last.map { String(format: "%.2f", Double($0) / 1000) } ?? "n/a")")
    } else {
        print("latency: not measured with acks=0 (no responses)")
    }
    print("""
        retried because moved: \(sum { $0.retriedMoved.load(ordering: .relaxed) }) request(s); because the broker did not know \
        the partition yet: \(sum { $0.retriedUnknown.load(ordering: .relaxed) }); after a lost connection: \
        \(sum { $0.retriedConnection.load(ordering: .relaxed) }); \
        resends: \(sum { $0.resendsHinted.load(ordering: .relaxed) }) to a hinted leader, \(sum { $0.resendsRefreshed.load(ordering: .relaxed) }) after a Metadata refresh; \
        errors: \(errorCount) request(s)
        """)
    if !errors.isEmpty {
        throw KafkaBenchError("\(errorCount) request(s) failed; first: \(errors[0])")
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

/// `floe-bench kafka --consume`: reads every partition from offset 0 to the high watermark of
/// its first answer. Each round sends one Fetch per leader (the partitions it leads that are
/// not done yet) concurrently and waits for all of them; a partition answered as moved (or whose
/// leader's connection was lost) is routed by the leader hint, else by a Metadata refresh, and
/// fetched again in the next round; 5 rounds in a row without progress for it are an error.
func runConsumer(bootstrap: BrokerAddress, topic: String, fetchBytes: Int32) async throws {
    let admin = KafkaAdminClient(bootstrap: [bootstrap], clientId: "floe-bench")
    let pool = KafkaConnectionPool(clientId: "floe-bench")
    defer {
        pool.closeAll()
        admin.close()
    }
    let versions = try await apiVersions(try await pool.connection(host: bootstrap.host, port: bootstrap.port))
    let (count, md) = try await prepareTopic(admin, topic: topic, partitions: 0, create: false)
    let directory = LeaderDirectory(topic: topic, admin: admin, metadata: md)
    // v12: topics by name (v13+ by id), and NOT_LEADER_OR_FOLLOWER answers carry the leader.
    let fv = try versions.pick(.fetch, cap: 12, floor: 4)
    let policy = RetryPolicy()
    print("""
        method: one connection per partition leader (\(directory.describe(0..<Int32(count)))); Fetch v\(fv) of all \
        \(count) partition(s) of \(topic) from offset 0 until each reaches the high watermark seen in its first \
        answer; at most \(fetchBytes) bytes per partition and one request in flight per leader, a round of requests \
        to every leader at a time; a partition that moved is fetched again from its new leader; batches are \
        counted from their headers, not decompressed.
        """)
    var position = [Int64](repeating: 0, count: count)
    var end = [Int64?](repeating: nil, count: count)
    var failures = [Int](repeating: 0, count: count)
    var bytes = 0
    var records = 0
    var requests = 0
    var retriedMoved = 0
    var retriedConnection = 0
    var retriedUnknown = 0
    var lastFailure = ""
    let started = monotonicNanos()
    while case let wanted = (0..<count).filter({ end[$0] == nil || position[$0] < end[$0]! }), !wanted.isEmpty {
        var byLeader: [Int32: (address: BrokerAddress, partitions: [Int])] = [:]
        var unrouted: [Int] = []
        for i in wanted {
            if let r = directory.route(Int32(i)) {
                byLeader[r.broker, default: (r.address, [])].partitions.append(i)
            } else {
                unrouted.append(i)
            }
        }
        let offsets = position
        let answers = await withTaskGroup(of: (Int32, [Int], Result<FetchResponse, any Error>).self) { group in
            for (broker, route) in byLeader {
                group.addTask {
                    let request = FetchRequest(maxWaitMs: 500, minBytes: 1, maxBytes: 64 << 20, isolationLevel: 0, topics: [
                        .init(topic: topic, partitions: route.partitions.map {
                            .init(partition: Int32($0), fetchOffset: offsets[$0], partitionMaxBytes: fetchBytes)
                        }),
                    ])
                    do {
                        let c = try await pool.connection(host: route.address.host, port: route.address.port)
                        return (broker, route.partitions, .success(try await c.send(request, version: fv, expecting: FetchResponse.self)))
                    } catch {
                        return (broker, route.partitions, .failure(error))
                    }
                }
            }
            var all: [(Int32, [Int], Result<FetchResponse, any Error>)] = []
            for await a in group { all.append(a) }
            return all
        }
        var retry = unrouted
        if !unrouted.isEmpty { lastFailure = "no leader known for partition(s) \(unrouted)" }
        var hintedAll = unrouted.isEmpty
        for (broker, partitions, outcome) in answers {
            requests += 1
            let r: FetchResponse
            switch outcome {
            case let .success(answer): r = answer
            case let .failure(error as KafkaClientError) where error.isConnectionLoss:
                retriedConnection += partitions.count
                retry += partitions
                hintedAll = false
                lastFailure = "Fetch to broker \(broker): \(error)"
                continue
            case let .failure(error):
                throw KafkaBenchError("Fetch \(topic) to broker \(broker): \(error)")
            }
            guard r.errorCode == 0 else { throw KafkaBenchError("Fetch to broker \(broker): \(codeText(r.errorCode))") }
            for t in r.responses where t.topic == topic {
                for p in t.partitions {
                    let i = Int(p.partitionIndex)
                    guard i >= 0 && i < count else { continue }
                    switch PartitionAnswer(errorCode: p.errorCode) {
                    case .accepted:
                        failures[i] = 0
                    case .moved:
                        retriedMoved += 1
                        retry.append(i)
                        lastFailure = "Fetch \(topic)[\(i)] at \(position[i]) from broker \(broker): \(codeText(p.errorCode))"
                        let leader = p.currentLeader
                        var endpoints: [Int32: BrokerAddress] = [:]
                        for e in r.nodeEndpoints { endpoints[e.nodeId] = BrokerAddress(host: e.host, port: Int(e.port)) }
                        if leader.leaderId == broker
                            || !directory.applyHint(partition: Int32(i), leader: leader.leaderId, epoch: leader.leaderEpoch, endpoints: endpoints)
                        {
                            hintedAll = false
                        }
                        continue
                    case .unknownPartition:
                        retriedUnknown += 1
                        retry.append(i)
                        hintedAll = false
                        lastFailure = "Fetch \(topic)[\(i)] at \(position[i]) from broker \(broker): \(codeText(p.errorCode))"
                        continue
                    case .failed:
                        throw KafkaBenchError("Fetch \(topic)[\(i)] at \(position[i]) from broker \(broker): \(codeText(p.errorCode))")
                    }
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
        guard !retry.isEmpty else { continue }
        var worst = 0
        for i in retry {
            failures[i] += 1
            worst = max(worst, failures[i])
        }
        if worst >= policy.attempts { throw KafkaBenchError("\(lastFailure) (after \(policy.attempts) attempts)") }
        if !hintedAll {
            try await Task.sleep(for: .milliseconds(policy.delayMs(beforeResend: worst, hinted: false)))
            do { try await directory.refresh() } catch { lastFailure += "; Metadata refresh: \(error)" }
        }
    }
    let elapsed = Double(monotonicNanos() - started) / 1e9
    print(String(format: "consume: %d records, %.1f MiB of batches in %.2f s: %.0f records/s, %.1f MiB/s, %d Fetch requests",
                 records, Double(bytes) / 1_048_576, elapsed, Double(records) / elapsed,
                 Double(bytes) / 1_048_576 / elapsed, requests))
    print(
        "retried because moved: \(retriedMoved) partition fetch(es); because the broker did not know the partition yet: "
            + "\(retriedUnknown); after a lost connection: \(retriedConnection)")
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
        let bootstrap = try BrokerAddress(parsing: args.value("bootstrap") ?? "127.0.0.1:9092")
        func int(_ name: String, _ def: Int) throws -> Int {
            guard let text = args.value(name) else { return def }
            guard let v = Int(text), v > 0 else { throw KafkaBenchError("--\(name) must be a positive number, got \(text)") }
            return v
        }
        let topic = args.value("topic") ?? "floe-bench"
        if args.has("consume") {
            let fetchBytes = Int32(try int("fetch-bytes", 1 << 20))
            try runBlocking { try await runConsumer(bootstrap: bootstrap, topic: topic, fetchBytes: fetchBytes) }
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
