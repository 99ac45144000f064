import KafkaProtocol

/// Fetch (API 1), versions 4–17, sessionless (every response carries session id 0, which
/// KIP-227 defines as "no session": clients keep sending full requests).
///
/// Per partition: batches from the one containing the fetch offset, up to the partition's max
/// bytes and what is left of the response's max bytes; the first partition with data returns at
/// least one whole batch even when it is larger (as Kafka does, so a consumer can always make
/// progress). Base offsets and the leader epoch are stamped into the outgoing copy. The
/// request waits (long poll) until `min_bytes` are available or `max_wait_ms` passes; a
/// produce to a watched partition wakes it. Waiting Fetches are bounded (`ParkedFetches`) and
/// cancelled when their connection closes (`.longPoll`). read_committed (isolation level 1) stops
/// at the last stable offset (the first offset of the oldest open transaction) and lists the
/// aborted transactions overlapping the returned batches, so the consumer drops their records.
public struct FetchHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.fetch
    public let versions: ClosedRange<Int16> = 4...17
    public init(core: BrokerCore) { self.core = core }

    struct Collected: Sendable {
        var response: FetchResponse
        var bytes: Int
        var partitions: [Partition]
        var hasError: Bool
    }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .fetch(r) = request else { return .close }
        let version = context.apiVersion
        if r.sessionId != 0 {
            var response = FetchResponse(errorCode: KafkaErrorCode.fetchSessionIdNotFound.rawValue, sessionId: 0)
            response.responses = []
            return .response(.fetch(response))
        }
        let first = await collect(r, version: version, listener: context.connection.listener)
        let minBytes = max(Int(r.minBytes), 1)
        if first.bytes >= minBytes || r.maxWaitMs <= 0 || first.hasError || first.partitions.isEmpty {
            return .response(.fetch(first.response))
        }
        // Bounded per connection and in total: beyond the bound, answer now with what there is.
        guard let admission = core.parked.admit(connection: context.connection.id) else {
            core.metrics?.counter("floe_broker_parked_fetches_refused_total",
                                  help: "Fetches answered at once because max.parked.fetches or its per-connection bound was reached")
                .increment()
            return .response(.fetch(first.response))
        }
        let deadline = ContinuousClock.now + .milliseconds(Int64(r.maxWaitMs))
        let parts = first.partitions
        // A long poll only waits: the server cancels it when the connection closes, and a
        // cancelled wait answers at once (nobody reads the answer).
        return .longPoll {
            defer { admission.release() }
            while true {
                // The connection closed: nobody will read an answer, so none is read from storage.
                if Task.isCancelled { return nil }
                let signal = AppendSignal()
                for p in parts { p.watch(signal) }
                let c = await collect(r, version: version, listener: context.connection.listener)
                let left = deadline - ContinuousClock.now
                if c.bytes >= minBytes || left <= .zero || c.hasError || core.parked.stopping {
                    for p in parts { p.unwatch(signal) }
                    return .fetch(c.response)
                }
                core.parked.park(signal)
                await signal.wait(timeout: left)
                core.parked.unpark(signal)
                for p in parts { p.unwatch(signal) }
            }
        }
    }

    func collect(_ r: FetchRequest, version: Int16, listener: ListenerName) async -> Collected {
        var response = FetchResponse(sessionId: 0)
        var remaining = Int(r.maxBytes <= 0 ? Int32.max : r.maxBytes)
        var total = 0
        var opened: [Partition] = []
        var hasError = false
        for t in r.topics {
            let record: TopicRecord?
            if version >= 13 { record = core.registry.topic(id: t.topicId) } else { record = core.registry.topic(named: t.topic) }
            var tr = FetchResponse.FetchableTopicResponse(topic: version >= 13 ? "" : t.topic, topicId: version >= 13 ? t.topicId : .zero)
            for fp in t.partitions {
                var pd = FetchResponse.PartitionData(partitionIndex: fp.partition, highWatermark: -1, lastStableOffset: -1, logStartOffset: -1,
                                                     abortedTransactions: nil, preferredReadReplica: -1, records: [])
                func fail(_ code: KafkaErrorCode) {
                    pd.errorCode = code.rawValue
                    hasError = true
                }
                guard let record else {
                    fail(version >= 13 ? .unknownTopicId : .unknownTopicOrPartition)
                    tr.partitions.append(pd)
                    continue
                }
                let partition: Partition
                do {
                    guard let p = try await core.partitions.partition(topic: record.name, index: fp.partition) else {
                        fail(.unknownTopicOrPartition)
                        tr.partitions.append(pd)
                        continue
                    }
                    partition = p
                } catch {
                    let code = BrokerError.partitionCode(error)
                    if code == .kafkaStorageError {
                        core.logger.error("partition cannot be opened", metadata: ["topic": record.name, "partition": "\(fp.partition)", "error": "\(error)"])
                    }
                    fail(code)
                    tr.partitions.append(pd)
                    continue
                }
                opened.append(partition)
                if fp.currentLeaderEpoch >= 0 && fp.currentLeaderEpoch != partition.leaderEpoch {
                    fail(fp.currentLeaderEpoch > partition.leaderEpoch ? .unknownLeaderEpoch : .fencedLeaderEpoch)
                    tr.partitions.append(pd)
                    continue
                }
                let log = partition.log
                let start = log.startOffset, hw = log.endOffset
                let lso = min(partition.lastStableOffset, hw)
                // read_committed reads up to the last stable offset only.
                let upper = r.isolationLevel == 1 ? lso : hw
                pd.highWatermark = hw
                pd.lastStableOffset = lso
                pd.logStartOffset = start
                if r.isolationLevel == 1 { pd.abortedTransactions = [] }
                if fp.fetchOffset < start || fp.fetchOffset > hw {
                    fail(.offsetOutOfRange)
                    tr.partitions.append(pd)
                    continue
                }
                let limit = min(Int(max(fp.partitionMaxBytes, 0)), remaining)
                if fp.fetchOffset < upper && (limit > 0 || total == 0) {
                    do {
                        var batches = try await log.read(from: fp.fetchOffset, maxBytes: max(limit, 1))
                        if upper < hw { batches.removeAll { $0.baseOffset >= upper } }
                        // Only the first partition with data may exceed the limits (one batch).
                        if total > 0, let b = batches.first, b.bytes.count > limit { batches = [] }
                        var size = 0
                        var kept: [LogBatch] = []
                        for b in batches {
                            if !kept.isEmpty && size + b.bytes.count > limit { break }
                            kept.append(b)
                            size += b.bytes.count
                        }
                        if r.isolationLevel == 1, let last = kept.last {
                            pd.abortedTransactions = partition.abortedTransactions(from: fp.fetchOffset, to: last.endOffset).map {
                                .init(producerId: $0.producerId, firstOffset: $0.firstOffset)
                            }
                        }
                        let records = Self.stamp(kept, leaderEpoch: partition.leaderEpoch)
                        pd.records = records[...]
                        total += records.count
                        remaining = max(0, remaining - records.count)
                        partition.counters.bytesOut.increment(by: records.count)
                        partition.counters.recordsOut.increment(by: kept.reduce(0) { $0 + Int($1.recordCount) })
                    } catch let e as BrokerError {
                        if case .offsetOutOfRange = e { fail(.offsetOutOfRange) } else { fail(.kafkaStorageError) }
                    } catch {
                        core.logger.warning("fetch read failed", metadata: ["topic": record.name, "partition": "\(fp.partition)", "error": "\(error)"])
                        fail(.kafkaStorageError)
                    }
                }
                tr.partitions.append(pd)
            }
            response.responses.append(tr)
        }
        if version >= 12 { Self.addLeaderHints(&response, version: version, core: core, listener: listener) }
        return Collected(response: response, bytes: total, partitions: opened, hasError: hasError)
    }

    /// KIP-951: partitions answered NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH name their
    /// current owner and epoch (v12+), and from v16 the response lists those owners' endpoints.
    static func addLeaderHints(_ response: inout FetchResponse, version: Int16, core: BrokerCore, listener: ListenerName) {
        let moved: Set<Int16> = [KafkaErrorCode.notLeaderOrFollower.rawValue, KafkaErrorCode.fencedLeaderEpoch.rawValue]
        var endpoints: [Int32: FetchResponse.NodeEndpoint] = [:]
        for i in response.responses.indices {
            let t = response.responses[i]
            guard let name = version >= 13 ? core.registry.topic(id: t.topicId)?.name : t.topic else { continue }
            for j in t.partitions.indices where moved.contains(t.partitions[j].errorCode) {
                guard let hint = core.leaderHint(topic: name, partition: t.partitions[j].partitionIndex, listener: listener) else { continue }
                response.responses[i].partitions[j].currentLeader = .init(leaderId: hint.id, leaderEpoch: hint.epoch)
                endpoints[hint.id] = .init(nodeId: hint.id, host: hint.host, port: hint.port, rack: nil)
            }
        }
        if version >= 16 { response.nodeEndpoints = endpoints.keys.sorted().map { endpoints[$0]! } }
    }

    /// Concatenates the batches, writing each one's base offset and the partition leader epoch
    /// into the copy (both lie outside the CRC, so the batch stays valid).
    static func stamp(_ batches: [LogBatch], leaderEpoch: Int32) -> [UInt8] {
        let size = batches.reduce(0) { $0 + $1.bytes.count }
        var out = [UInt8](repeating: 0, count: size)
        out.withUnsafeMutableBytes { raw in
            var at = 0
            for b in batches {
                b.bytes.withUnsafeBytes { src in
                    raw.baseAddress!.advanced(by: at).copyMemory(from: src.baseAddress!, byteCount: src.count)
                }
                if b.bytes.count >= RecordBatchHeader.size {
                    raw.storeBytes(of: b.baseOffset.bigEndian, toByteOffset: at, as: Int64.self)
                    raw.storeBytes(of: leaderEpoch.bigEndian, toByteOffset: at + RecordBatchHeader.partitionLeaderEpochOffset, as: Int32.self)
                }
                at += b.bytes.count
            }
        }
        return out
    }
}
