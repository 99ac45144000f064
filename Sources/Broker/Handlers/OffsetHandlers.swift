import KafkaProtocol

/// Walks a partition's durable batches from `from`, in chunks; `visit` returns false to stop.
func scanLog(_ log: any PartitionLog, from: Int64, _ visit: (LogBatch, RecordBatchHeader) throws -> Bool) async throws {
    var at = max(from, log.startOffset)
    while at < log.endOffset {
        let batches = try await log.read(from: at, maxBytes: 4 << 20)
        guard let last = batches.last else { return }
        for b in batches where b.endOffset > at {
            if try !visit(b, try RecordBatchHeader(parsing: b.bytes)) { return }
        }
        at = last.endOffset
    }
}

/// ListOffsets (API 2), versions 1–10: latest (-1), earliest (-2), max timestamp (-3, v7+),
/// earliest local (-4, v8+) and earliest pending upload (-5, v9+; both are the log start
/// here, as all data is in object storage), or the first offset whose timestamp is at least the
/// given one (found by scanning batch headers, then the records of the matching batch).
public struct ListOffsetsHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.listOffsets
    public let versions: ClosedRange<Int16> = 1...10
    public init(core: BrokerCore) { self.core = core }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .listOffsets(r) = request else { return .close }
        var response = ListOffsetsResponse()
        for t in r.topics {
            var tr = ListOffsetsResponse.ListOffsetsTopicResponse(name: t.name)
            for lp in t.partitions {
                var pr = ListOffsetsResponse.ListOffsetsPartitionResponse(partitionIndex: lp.partitionIndex, timestamp: -1, offset: -1)
                do {
                    guard let p = try await core.partitions.partition(topic: t.name, index: lp.partitionIndex) else {
                        pr.errorCode = KafkaErrorCode.unknownTopicOrPartition.rawValue
                        tr.partitions.append(pr)
                        continue
                    }
                    if lp.currentLeaderEpoch >= 0 && lp.currentLeaderEpoch != p.leaderEpoch {
                        pr.errorCode = (lp.currentLeaderEpoch > p.leaderEpoch ? KafkaErrorCode.unknownLeaderEpoch : .fencedLeaderEpoch).rawValue
                        tr.partitions.append(pr)
                        continue
                    }
                    if context.apiVersion >= 4 { pr.leaderEpoch = p.leaderEpoch }
                    var (offset, timestamp) = try await Self.lookup(p.log, timestamp: lp.timestamp)
                    // read_committed: the latest offset is the last stable offset.
                    if r.isolationLevel == 1 && lp.timestamp == -1 { (offset, timestamp) = (p.lastStableOffset, -1) }
                    pr.offset = offset
                    pr.timestamp = timestamp
                } catch {
                    pr.errorCode = BrokerError.partitionCode(error).rawValue
                    if pr.errorCode == KafkaErrorCode.kafkaStorageError.rawValue {
                        core.logger.warning("list offsets failed", metadata: ["topic": t.name, "partition": "\(lp.partitionIndex)", "error": "\(error)"])
                    }
                }
                tr.partitions.append(pr)
            }
            response.topics.append(tr)
        }
        return .response(.listOffsets(response))
    }

    /// (offset, timestamp) for a ListOffsets query; (-1, -1) when no record matches.
    static func lookup(_ log: any PartitionLog, timestamp: Int64) async throws -> (Int64, Int64) {
        switch timestamp {
        case -1: return (log.endOffset, -1)
        case -2, -4, -5: return (log.startOffset, -1)
        case -3:
            var best: (Int64, Int64) = (-1, -1)
            var bestBatch: LogBatch? = nil
            try await scanLog(log, from: log.startOffset) { b, h in
                if h.maxTimestamp > best.1 {
                    best = (b.baseOffset + Int64(h.lastOffsetDelta), h.maxTimestamp)
                    bestBatch = b
                }
                return true
            }
            if let b = bestBatch, let exact = exactOffset(b, atLeast: best.1) { best.0 = exact.0 }
            return best
        default:
            guard timestamp >= 0 else { return (-1, -1) }
            var found: (Int64, Int64)? = nil
            try await scanLog(log, from: log.startOffset) { b, h in
                guard h.maxTimestamp >= timestamp else { return true }
                found = exactOffset(b, atLeast: timestamp) ?? (b.baseOffset, h.maxTimestamp)
                return false
            }
            return found ?? (-1, -1)
        }
    }

    /// The first record of `batch` whose timestamp is at least `timestamp`, if the records can
    /// be read (gzip and uncompressed); nil otherwise.
    static func exactOffset(_ batch: LogBatch, atLeast timestamp: Int64) -> (Int64, Int64)? {
        var stamped = batch.bytes
        stamped.withUnsafeMutableBytes { $0.storeBytes(of: batch.baseOffset.bigEndian, toByteOffset: 0, as: Int64.self) }
        do {
            let view = try RecordBatch(unverified: stamped)
            for record in try view.records() {
                let ts = view.timestamp(of: record)
                if ts >= timestamp { return (view.offset(of: record), ts) }
            }
        } catch {
            return nil  // snappy/lz4/zstd batches are not decoded here: the batch's own bounds answer
        }
        return nil
    }
}

/// OffsetForLeaderEpoch (API 23), versions 0–4. Each partition has had one leader epoch
/// (its current one), so the end offset of any epoch up to the current is the log end.
public struct OffsetForLeaderEpochHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.offsetForLeaderEpoch
    public let versions: ClosedRange<Int16> = 0...4
    public init(core: BrokerCore) { self.core = core }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .offsetForLeaderEpoch(r) = request else { return .close }
        var response = OffsetForLeaderEpochResponse()
        for t in r.topics {
            var tr = OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult(topic: t.topic)
            for lp in t.partitions {
                var e = OffsetForLeaderEpochResponse.EpochEndOffset(partition: lp.partition, leaderEpoch: -1, endOffset: -1)
                do {
                    if let p = try await core.partitions.partition(topic: t.topic, index: lp.partition) {
                        if lp.currentLeaderEpoch >= 0 && lp.currentLeaderEpoch != p.leaderEpoch {
                            e.errorCode = (lp.currentLeaderEpoch > p.leaderEpoch ? KafkaErrorCode.unknownLeaderEpoch : .fencedLeaderEpoch).rawValue
                        } else if lp.leaderEpoch <= p.leaderEpoch {
                            e.leaderEpoch = p.leaderEpoch
                            e.endOffset = p.log.endOffset
                        }
                    } else {
                        e.errorCode = KafkaErrorCode.unknownTopicOrPartition.rawValue
                    }
                } catch {
                    e.errorCode = BrokerError.partitionCode(error).rawValue
                }
                tr.partitions.append(e)
            }
            response.topics.append(tr)
        }
        return .response(.offsetForLeaderEpoch(response))
    }
}

/// DeleteRecords (API 21), versions 0–2: moves a partition's start offset forward (-1: to the
/// high watermark). Data before it is no longer served and is deleted with its objects.
public struct DeleteRecordsHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.deleteRecords
    public let versions: ClosedRange<Int16> = 0...2
    public init(core: BrokerCore) { self.core = core }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .deleteRecords(r) = request else { return .close }
        var response = DeleteRecordsResponse()
        for t in r.topics {
            var tr = DeleteRecordsResponse.DeleteRecordsTopicResult(name: t.name)
            for dp in t.partitions {
                var pr = DeleteRecordsResponse.DeleteRecordsPartitionResult(partitionIndex: dp.partitionIndex, lowWatermark: -1)
                do {
                    if let p = try await core.partitions.partition(topic: t.name, index: dp.partitionIndex) {
                        let target = dp.offset == -1 ? p.log.endOffset : dp.offset
                        if target < 0 || target > p.log.endOffset {
                            pr.errorCode = KafkaErrorCode.offsetOutOfRange.rawValue
                        } else {
                            try await p.log.trim(to: target)
                            pr.lowWatermark = p.log.startOffset
                        }
                    } else {
                        pr.errorCode = KafkaErrorCode.unknownTopicOrPartition.rawValue
                    }
                } catch {
                    pr.errorCode = BrokerError.partitionCode(error).rawValue
                    if pr.errorCode == KafkaErrorCode.kafkaStorageError.rawValue {
                        core.logger.warning("delete records failed", metadata: ["topic": t.name, "partition": "\(dp.partitionIndex)", "error": "\(error)"])
                    }
                }
                tr.partitions.append(pr)
            }
            response.topics.append(tr)
        }
        return .response(.deleteRecords(response))
    }
}

/// InitProducerId (API 22), versions 0–5. Without a transactional id (idempotent producers):
/// a fresh producer id (unique for the bucket's lifetime) at epoch 0. With one: the transaction
/// coordinator of the id answers (``TransactionCoordinator/initProducerId``): a new producer id
/// on first use, else the epoch bumped (fencing the previous producer; its open transaction is
/// aborted first). PRODUCER_FENCED is answered as INVALID_PRODUCER_EPOCH before v4.
public struct InitProducerIdHandler: ApiHandler {
    public let core: BrokerCore
    public let apiKey = ApiKey.initProducerId
    public let versions: ClosedRange<Int16> = 0...5
    public init(core: BrokerCore) { self.core = core }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .initProducerId(r) = request else { return .close }
        if let tid = r.transactionalId {
            do {
                let (pid, epoch) = try await core.transactions.initProducerId(
                    transactionalId: tid, timeoutMs: r.transactionTimeoutMs,
                    producerId: context.apiVersion >= 3 ? r.producerId : -1, producerEpoch: context.apiVersion >= 3 ? r.producerEpoch : -1)
                return .response(.initProducerId(InitProducerIdResponse(errorCode: 0, producerId: pid, producerEpoch: epoch)))
            } catch {
                let refusal = txnRefusal(error)
                core.logger.debug("InitProducerId refused", metadata: ["transactional.id": tid, "reason": refusal.message])
                return .response(.initProducerId(InitProducerIdResponse(errorCode: refusal.code(version: context.apiVersion, fencedFrom: 4))))
            }
        }
        do {
            let id = try await core.producerIds.next()
            return .response(.initProducerId(InitProducerIdResponse(errorCode: 0, producerId: id, producerEpoch: 0)))
        } catch {
            core.logger.error("producer id allocation failed", metadata: ["error": "\(error)"])
            return .response(.initProducerId(InitProducerIdResponse(errorCode: KafkaErrorCode.coordinatorNotAvailable.rawValue)))
        }
    }
}
