import Foundation
import ObjectStore
import StreamStorage
import Support

/// A partition log on a stream of the stream storage engine.
///
/// Offsets, durability and reads are the stream's; the broker's ordering (sequence checks and
/// offset assignment under the partition lock) uses the stream's synchronous
/// `append(reserved:recordCount:)`, after WAL room was reserved with `reserve(batchSizes:)`.
final class StreamPartitionLog: PartitionLog {
    let stream: StreamStorage.Stream

    init(stream: StreamStorage.Stream) { self.stream = stream }

    var startOffset: Int64 { stream.startOffset }
    var endOffset: Int64 { stream.endOffset }
    var nextOffset: Int64 { stream.nextOffset }

    func reserve(batchSizes: [Int]) async throws {
        var done: [Int] = []
        do {
            for size in batchSizes {
                try await stream.reserve(batchBytes: size)
                done.append(size)
            }
        } catch {
            for size in done { stream.unreserve(batchBytes: size) }
            throw error
        }
    }

    func unreserve(batchSizes: [Int]) {
        for size in batchSizes { stream.unreserve(batchBytes: size) }
    }

    func append(_ batch: ArraySlice<UInt8>, recordCount: Int32) throws -> PendingAppend {
        // The one copy on the produce path: from the request frame into the WAL record.
        let (base, durable) = try stream.append(reserved: Array(batch), recordCount: recordCount)
        return PendingAppend(baseOffset: base, durable: durable)
    }

    func read(from offset: Int64, maxBytes: Int) async throws -> [LogBatch] {
        do {
            return try await stream.read(from: offset, maxBytes: maxBytes).map {
                LogBatch(baseOffset: $0.baseOffset, recordCount: $0.recordCount, appendTimeMillis: $0.appendTimeMillis, bytes: $0.bytes)
            }
        } catch let error as StreamStorageError {
            if case let .offsetOutOfRange(_, offset, start, end) = error {
                throw BrokerError.offsetOutOfRange(offset: offset, start: start, end: end)
            }
            throw error
        }
    }

    func trim(to offset: Int64) async throws { try await stream.trim(to: offset) }

    func applyRetention(maxAgeMillis: Int64?, maxBytes: Int64?, nowMillis: Int64) async throws {
        try await stream.applyRetention(RetentionPolicy(maxBytes: maxBytes.map { UInt64($0) }, maxAgeMillis: maxAgeMillis))
    }

    func close() async throws { try await stream.close() }
}

/// Partition logs on a `StreamStore`: each partition's stream is opened at the next epoch,
/// fencing any earlier holder.
public final class StreamLogStorage: LogStorage {
    public let store: StreamStore

    public init(store: StreamStore) { self.store = store }

    public func openLog(stream id: UInt64) async throws -> any PartitionLog {
        var epoch = (try await store.currentEpoch(id) ?? 0) + 1
        // Another broker may have raised the epoch since this one last read the metadata.
        for _ in 0..<8 {
            do {
                return StreamPartitionLog(stream: try await store.open(id, epoch: epoch))
            } catch let StreamStorageError.fenced(_, _, current) {
                epoch = current + 1
            }
        }
        throw StreamStorageError.metadataConflict(detail: "stream \(id): its epoch kept moving while opening")
    }

    public func run() async throws { try await store.run() }
    public func close() async throws { try await store.close() }
    public var cacheCounters: [String: (hits: Int, misses: Int)] { ["block": store.blockCacheCounters] }
}
