import Dispatch
import KafkaProtocol
import Synchronization

/// Produce (API 0), versions 0–11, RecordBatch v2 only: a legacy message set (magic 0 or 1)
/// gets INVALID_RECORD (v8+, with a message saying so) or UNSUPPORTED_FOR_MESSAGE_FORMAT.
/// Versions 0–2 are advertised because librdkafka before 2.10 enables gzip and snappy only
/// when the broker lists Produce v0 (its "broker supports compression" feature check).
///
/// Per partition, in request order: the records are split into batches (zero-copy views of the
/// request frame) and each is checked — magic 2 (older formats get INVALID_RECORD with a clear
/// message), structure and CRC32C (CORRUPT_MESSAGE), `max.message.bytes` (MESSAGE_TOO_LARGE),
/// no control batches, transactional batches only with a transactional id (and a transaction's
/// first batch to a partition only after AddPartitionsToTxn: INVALID_TXN_STATE otherwise, as in
/// Kafka 4) — then the partition runs
/// the idempotent-producer sequence check and assigns offsets synchronously. The answer waits
/// for WAL durability in a `.deferred` result, so pipelined requests overlap their waits.
/// acks=1 and acks=all both mean "durable in the WAL" (there are no followers); acks=0 sends
/// no response, and closes the connection instead when a partition had an error. From v10 a
/// NOT_LEADER_OR_FOLLOWER answer carries the partition's current owner (KIP-951).
public struct ProduceHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.produce
    public let versions: ClosedRange<Int16> = 0...11
    public init(core: BrokerCore) { self.core = core }

    enum Slot: Sendable {
        case done(ProduceResponse.PartitionProduceResponse)
        case pending(index: Int32, partition: Partition, base: Int64, durable: Durability)
        case duplicate(index: Int32, partition: Partition, base: Int64, last: Int64)
    }

    static func error(_ index: Int32, _ code: KafkaErrorCode, _ message: String?) -> ProduceResponse.PartitionProduceResponse {
        ProduceResponse.PartitionProduceResponse(index: index, errorCode: code.rawValue, baseOffset: -1, errorMessage: message)
    }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .produce(r) = request else { return .close }
        let acks = r.acks
        var collected: [(String, [Slot])] = []
        for t in r.topicData {
            var slots: [Slot] = []
            let topic = core.registry.topic(named: t.name)
            let maxBytes = topic.map {
                Int(core.config.topicConfig("max.message.bytes", explicit: $0.configs, dynamic: core.registry.dynamicBrokerConfigs)?.value ?? "") ?? 1_048_588
            } ?? 0
            // Key compaction needs a key on every record (Kafka refuses keyless records).
            let compacted = topic.map {
                PartitionSet.isCompacted(["cleanup.policy": core.config.topicConfig("cleanup.policy", explicit: $0.configs,
                                                                                    dynamic: core.registry.dynamicBrokerConfigs)?.value ?? "delete"])
            } ?? false
            for p in t.partitionData {
                if acks != 0 && acks != 1 && acks != -1 {
                    slots.append(.done(Self.error(p.index, .invalidRequiredAcks, "acks must be 0, 1 or -1 (all), not \(acks)")))
                    continue
                }
                guard topic != nil else {
                    slots.append(.done(Self.error(p.index, .unknownTopicOrPartition, "topic \(t.name) does not exist")))
                    continue
                }
                let partition: Partition
                do {
                    guard let opened = try await core.partitions.partition(topic: t.name, index: p.index) else {
                        slots.append(.done(Self.error(p.index, .unknownTopicOrPartition, "partition \(t.name)-\(p.index) does not exist")))
                        continue
                    }
                    partition = opened
                } catch {
                    let code = BrokerError.partitionCode(error)
                    if code == .kafkaStorageError {
                        core.logger.error("partition cannot be opened", metadata: ["topic": t.name, "partition": "\(p.index)", "error": "\(error)"])
                    }
                    slots.append(.done(Self.error(p.index, code, "partition \(t.name)-\(p.index): \(error)")))
                    continue
                }
                switch Self.batches(p.records, maxBytes: maxBytes, name: "\(t.name)-\(p.index)", compacted: compacted, transactional: r.transactionalId != nil) {
                case let .failure(e):
                    let code = e.code == .invalidRecord && context.apiVersion < 8 && e.legacy ? KafkaErrorCode.unsupportedForMessageFormat : e.code
                    slots.append(.done(Self.error(p.index, code, e.message)))
                case let .success(batches):
                    // Kafka 4: a transaction's first batch to a partition must follow AddPartitionsToTxn.
                    if let tid = r.transactionalId, let first = batches.first, first.isTransactional,
                       !partition.hasOngoingTransaction(first.header.producerId),
                       let code = await core.transactions.verifyProduce(transactionalId: tid, producerId: first.header.producerId,
                                                                        producerEpoch: first.header.producerEpoch, partition: TxnPartition(t.name, p.index),
                                                                        produceVersion: context.apiVersion) {
                        slots.append(.done(Self.error(p.index, code, "producer \(first.header.producerId) has not added \(t.name)-\(p.index) to its open transaction")))
                        continue
                    }
                    let sizes = batches.map(\.bytes.count)
                    do {
                        try await partition.log.reserve(batchSizes: sizes)
                    } catch {
                        slots.append(.done(Self.error(p.index, BrokerError.partitionCode(error), "storage of \(t.name)-\(p.index) refused the write: \(error)")))
                        continue
                    }
                    switch partition.append(batches) {
                    case let .rejected(code, message):
                        partition.log.unreserve(batchSizes: sizes)
                        slots.append(.done(Self.error(p.index, code, message)))
                    case let .storageFailed(message, code, unused):
                        partition.log.unreserve(batchSizes: unused)
                        if code == .kafkaStorageError {
                            core.logger.error("append failed", metadata: ["topic": t.name, "partition": "\(p.index)", "error": message])
                        }
                        slots.append(.done(Self.error(p.index, code, message)))
                    case let .duplicate(base, last):
                        partition.log.unreserve(batchSizes: sizes)
                        slots.append(.duplicate(index: p.index, partition: partition, base: base, last: last))
                    case let .appended(base, durable, _):
                        slots.append(.pending(index: p.index, partition: partition, base: base, durable: durable))
                    }
                }
            }
            collected.append((t.name, slots))
        }
        // The request's timeout bounds the wait for durability (as Kafka's bounds the wait for
        // replication): past it the partition answers REQUEST_TIMED_OUT, retriable, and the
        // batch may still become durable; an idempotent producer's retry of it is then
        // recognized as a duplicate. Below 100 ms it is raised to 100 ms (one WAL flush).
        let timeout = Duration.milliseconds(Int64(max(r.timeoutMs, 100)))
        let topics = collected
        let finish: @Sendable () async -> AnyResponse = {
            var response = ProduceResponse()
            for (name, slots) in topics {
                var tr = ProduceResponse.TopicProduceResponse(name: name)
                for slot in slots {
                    switch slot {
                    case let .done(pr):
                        tr.partitionResponses.append(pr)
                    case let .pending(index, partition, base, durable):
                        switch await DurabilityWait.wait(durable, timeout: timeout, then: { partition.notifyAppended() }) {
                        case .durable:
                            tr.partitionResponses.append(.init(index: index, errorCode: 0, baseOffset: base, logAppendTimeMs: -1,
                                                               logStartOffset: partition.log.startOffset))
                        case let .failed(error):
                            tr.partitionResponses.append(Self.error(index, BrokerError.partitionCode(error), "write to \(name)-\(index) was not made durable: \(error)"))
                        case .timedOut:
                            tr.partitionResponses.append(Self.error(index, .requestTimedOut,
                                                                    "write to \(name)-\(index) not durable within the request's timeout of \(r.timeoutMs) ms; it may still become durable"))
                        }
                    case let .duplicate(index, partition, base, last):
                        if await partition.waitDurable(beyond: last, timeout: timeout) {
                            tr.partitionResponses.append(.init(index: index, errorCode: 0, baseOffset: base, logAppendTimeMs: -1,
                                                               logStartOffset: partition.log.startOffset))
                        } else {
                            tr.partitionResponses.append(Self.error(index, .requestTimedOut, "the original of this duplicate batch is not durable yet"))
                        }
                    }
                }
                response.responses.append(tr)
            }
            if context.apiVersion >= 10 { Self.addLeaderHints(&response, core: core, listener: context.connection.listener) }
            if context.apiVersion < 8 {
                for i in response.responses.indices {
                    for j in response.responses[i].partitionResponses.indices { response.responses[i].partitionResponses[j].errorMessage = nil }
                }
            }
            return .produce(response)
        }
        let waits = topics.contains { $0.1.contains { if case .done = $0 { return false } else { return true } } }
        if acks == 0 {
            // As Kafka does: with acks=0 an error can only be signalled by closing the connection,
            // which makes the producer refresh its metadata and notice.
            // Transactional producers use acks=all: acks=0 with a transactional id is refused the same way.
            let failed = r.transactionalId != nil || topics.contains { $0.1.contains { if case let .done(pr) = $0 { return pr.errorCode != 0 } else { return false } } }
            if failed { return .close }
            guard waits else { return .noResponse }
            return .deferred {
                _ = await finish()  // durability still notifies fetchers; nothing is sent
                return nil
            }
        }
        if !waits { return .response(await finish()) }
        return .deferred { await finish() }
    }

    /// KIP-951: partitions answered NOT_LEADER_OR_FOLLOWER name their current owner and epoch,
    /// and the response lists those owners' endpoints, so the producer retries there at once.
    static func addLeaderHints(_ response: inout ProduceResponse, core: BrokerCore, listener: ListenerName) {
        var endpoints: [Int32: ProduceResponse.NodeEndpoint] = [:]
        for i in response.responses.indices {
            let name = response.responses[i].name
            for j in response.responses[i].partitionResponses.indices {
                let pr = response.responses[i].partitionResponses[j]
                guard pr.errorCode == KafkaErrorCode.notLeaderOrFollower.rawValue,
                      let hint = core.leaderHint(topic: name, partition: pr.index, listener: listener) else { continue }
                response.responses[i].partitionResponses[j].currentLeader = .init(leaderId: hint.id, leaderEpoch: hint.epoch)
                endpoints[hint.id] = .init(nodeId: hint.id, host: hint.host, port: hint.port, rack: nil)
            }
        }
        response.nodeEndpoints = endpoints.keys.sorted().map { endpoints[$0]! }
    }

    struct BatchProblem: Error {
        let code: KafkaErrorCode
        let message: String
        var legacy = false
    }

    /// The batches of a partition's `records`, each validated, or the first problem.
    static func batches(_ records: ArraySlice<UInt8>?, maxBytes: Int, name: String, compacted: Bool = false, transactional: Bool = false) -> Result<[RecordBatch], BatchProblem> {
        guard let records, !records.isEmpty else {
            return .failure(BatchProblem(code: .invalidRecord, message: "no records for \(name)"))
        }
        var reader = RecordBatchReader(records, trailingPartialBatch: .reject, verification: .full)
        var out: [RecordBatch] = []
        do {
            while let batch = try reader.next() {
                if batch.bytes.count > maxBytes {
                    return .failure(BatchProblem(code: .messageTooLarge,
                                                 message: "record batch of \(batch.bytes.count) bytes exceeds max.message.bytes \(maxBytes) of \(name)"))
                }
                if batch.isControlBatch {
                    return .failure(BatchProblem(code: .invalidRecord, message: "control batches are written by the transaction coordinator, not by producers (\(name))"))
                }
                if batch.isTransactional && !transactional {
                    return .failure(BatchProblem(code: .invalidRecord, message: "transactional batch in a Produce request without a transactional id (\(name))"))
                }
                if batch.isTransactional && batch.header.producerId < 0 {
                    return .failure(BatchProblem(code: .invalidRecord, message: "transactional batch without a producer id (\(name))"))
                }
                if batch.header.recordCount <= 0 {
                    return .failure(BatchProblem(code: .invalidRecord, message: "record batch with \(batch.header.recordCount) records for \(name)"))
                }
                if compacted, let problem = keylessProblem(batch, name: name) { return .failure(problem) }
                out.append(batch)
            }
        } catch {
            switch error {
            case .unsupportedMagic:
                return .failure(BatchProblem(code: .invalidRecord, message: "\(error) (\(name)); use a client that writes the Kafka 0.11+ message format", legacy: true))
            default:
                return .failure(BatchProblem(code: .corruptMessage, message: "\(error) (\(name))"))
            }
        }
        return .success(out)
    }
}

extension ProduceHandler {
    /// INVALID_RECORD for a batch with a record without a key, as Kafka answers for a topic with
    /// `cleanup.policy=compact` (key compaction keeps the newest record per key).
    static func keylessProblem(_ batch: RecordBatch, name: String) -> BatchProblem? {
        let records: [Record]
        do {
            records = try batch.records()
        } catch {
            return BatchProblem(code: .corruptMessage, message: "\(error) (\(name))")
        }
        guard records.contains(where: { $0.key == nil }) else { return nil }
        return BatchProblem(code: .invalidRecord, message: "Compacted topic cannot accept message without key in topic partition \(name).")
    }
}

/// Waits for an append's durability up to a deadline, without giving up on the append: when
/// the deadline wins, the wait goes on in the background and `then` still runs once the batch
/// is durable (fetchers are woken, the stream's durable end advances).
///
/// No task and no timer of its own per wait: the durability callback comes straight from the
/// thread that made the batch durable, and the deadline is an entry in `DeadlineTimer.shared`
/// (a per-request task and Dispatch timer cost about 0.1 ms of produce p99 with a fast WAL,
/// docs/benchmarks.md "Where the rest of the durable path goes").
enum DurabilityWait {
    enum Outcome: Sendable {
        case durable
        case failed(any Error)
        case timedOut
    }

    private final class Race: Sendable {
        private let state = Mutex<(waiter: CheckedContinuation<Outcome, Never>?, done: Bool)>((nil, false))

        func install(_ c: CheckedContinuation<Outcome, Never>) { state.withLock { $0.waiter = c } }

        func finish(_ outcome: Outcome) {
            let waiter = state.withLock { s -> CheckedContinuation<Outcome, Never>? in
                guard !s.done else { return nil }
                s.done = true
                defer { s.waiter = nil }
                return s.waiter
            }
            waiter?.resume(returning: outcome)
        }
    }

    static func wait(_ durable: Durability, timeout: Duration, deadlines: DeadlineTimer = .shared,
                     then: @escaping @Sendable () -> Void) async -> Outcome {
        let race = Race()
        return await withCheckedContinuation { (c: CheckedContinuation<Outcome, Never>) in
            race.install(c)
            let deadline = deadlines.add(after: dispatchInterval(timeout)) { race.finish(.timedOut) }
            durable.notify { result in
                deadlines.cancel(deadline)
                switch result {
                case .success:
                    then()
                    race.finish(.durable)
                case let .failure(error):
                    race.finish(.failed(error))
                }
            }
        }
    }

    /// `duration` for Dispatch, at least 0 and at most about 292 years.
    static func dispatchInterval(_ duration: Duration) -> DispatchTimeInterval {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return .nanoseconds(0) }
        guard seconds < Int64.max / 1_000_000_000 - 1 else { return .never }
        return .nanoseconds(Int(seconds * 1_000_000_000 + attoseconds / 1_000_000_000))
    }
}

/// Many deadlines on one Dispatch timer, armed only for the earliest of them: adding a deadline
/// later than the armed one (the usual case: equal timeouts, later requests) and cancelling one
/// take a lock and a dictionary update, with no timer call and no thread woken. When the timer
/// fires it runs what is due and re-arms for the earliest left; with no deadline left it stays
/// unarmed, so an idle broker is not woken.
final class DeadlineTimer: Sendable {
    static let shared = DeadlineTimer()

    private struct Entry {
        let deadline: DispatchTime
        let fire: @Sendable () -> Void
    }

    /// The timer lives in the state: it is only scheduled under the lock.
    private struct State {
        let timer: any DispatchSourceTimer
        var lastToken: UInt64 = 0
        var entries: [UInt64: Entry] = [:]
        /// When the timer is armed to fire (nil: not armed).
        var armedFor: DispatchTime? = nil
    }

    private let state: Mutex<State>

    init() {
        state = Mutex(State(timer: DispatchSource.makeTimerSource(queue: DispatchQueue(label: "floe-deadlines"))))
        state.withLock { s in
            s.timer.setEventHandler { [weak self] in self?.fireDue() }
            s.timer.activate()
        }
    }

    deinit { state.withLock { $0.timer.cancel() } }

    /// The number of deadlines neither fired nor cancelled (for tests).
    var pending: Int { state.withLock { $0.entries.count } }

    /// Runs `fire` once `interval` has passed, unless `cancel` is called first with the token.
    func add(after interval: DispatchTimeInterval, _ fire: @escaping @Sendable () -> Void) -> UInt64 {
        let deadline = DispatchTime.now() + interval
        return state.withLock { s in
            s.lastToken += 1
            s.entries[s.lastToken] = Entry(deadline: deadline, fire: fire)
            if s.armedFor.map({ deadline < $0 }) ?? true {
                // Under the lock, so that a concurrent re-arm cannot move the timer past this one.
                s.armedFor = deadline
                s.timer.schedule(deadline: deadline, leeway: .milliseconds(5))
            }
            return s.lastToken
        }
    }

    func cancel(_ token: UInt64) {
        _ = state.withLock { $0.entries.removeValue(forKey: token) }
    }

    private func fireDue() {
        let now = DispatchTime.now()
        let due: [@Sendable () -> Void] = state.withLock { s in
            var due: [@Sendable () -> Void] = []
            var earliest: DispatchTime? = nil
            for (token, entry) in s.entries {
                if entry.deadline <= now {
                    due.append(entry.fire)
                    s.entries[token] = nil
                } else if earliest.map({ entry.deadline < $0 }) ?? true {
                    earliest = entry.deadline
                }
            }
            s.armedFor = earliest
            if let earliest { s.timer.schedule(deadline: earliest, leeway: .milliseconds(5)) }
            return due
        }
        for fire in due { fire() }
    }
}
