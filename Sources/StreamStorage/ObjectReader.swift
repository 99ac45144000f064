import ObjectStore
import Support
import Synchronization

/// Reads data objects by range through a block cache, with read-ahead for sequential readers.
///
/// A read fetches the object's footer and index once (cached), then only the blocks it needs.
/// When a stream's read continues where its previous read ended (a consumer catching up), the
/// next `readAheadBlocks` blocks of that stream in the same object are fetched with the same
/// ranged GET and cached, so the following reads are served from memory.
///
/// Cold-read work (the ranged GETs the cache misses, with their read-ahead, and the decoding
/// and CRC check of the blocks) is kept off the append path as `ColdReadSettings` says: on the
/// dedicated low-priority threads of a `ColdReadPool`, within a window of bytes in flight and,
/// optionally, a byte-rate budget. Cache hits are served on the caller's task (a lookup).
///
/// Invariants: the cache holds at most `capacityBytes` of block payload (least recently used
/// blocks go first); every block is CRC-checked when fetched; at most
/// `settings.maxInFlightBytes` of object data are being fetched at once (or one larger fetch).
///
/// Example: stream 7 holds blocks 0..<100, 100..<200, 200..<300 in object 12. A read at 0 misses
/// and fetches block 0; the next read at 100 is sequential, so blocks 1...3 come in one GET.
final class ObjectReader: Sendable {
    struct BlockKey: Hashable {
        var objectID: UInt64
        var position: UInt64
    }

    private struct Cached {
        var batches: [StoredBatch]
        var bytes: Int
        var tick: UInt64
    }

    private struct State {
        var blocks: [BlockKey: Cached] = [:]
        var indexes: [UInt64: [DataBlockEntry]] = [:]
        var bytes = 0
        var tick: UInt64 = 0
        /// Per stream, the offset where its last object read ended.
        var lastEnd: [StreamID: Int64] = [:]
        var hits = 0
        var misses = 0
    }

    let store: any ObjectStore
    let prefix: String
    let capacityBytes: Int
    let readAheadBlocks: Int
    let settings: ColdReadSettings
    let pool: ColdReadPool
    private let window: ByteWindow
    private let clock: any FloeClock
    private let rate: Mutex<RateBudget?>
    private let isolation: Mutex<Bool>
    private let state = Mutex(State())

    init(store: any ObjectStore, prefix: String, capacityBytes: Int, readAheadBlocks: Int,
         settings: ColdReadSettings = ColdReadSettings(), clock: any FloeClock = RealClock()) {
        self.store = store
        self.prefix = prefix
        self.capacityBytes = capacityBytes
        self.readAheadBlocks = max(0, readAheadBlocks)
        self.settings = settings
        self.pool = ColdReadPool.shared(threads: settings.threads, priority: settings.priority)
        self.window = ByteWindow(capacity: settings.maxInFlightBytes)
        self.clock = clock
        self.rate = Mutex(settings.bytesPerSecond.map { RateBudget(bytesPerSecond: $0, burstBytes: settings.burstBytes, clock: clock) })
        self.isolation = Mutex(settings.isolated)
    }

    /// Whether cold-read work runs on the pool's threads (see `ColdReadSettings.isolated`).
    var isolated: Bool {
        get { isolation.withLock { $0 } }
        set { isolation.withLock { $0 = newValue } }
    }

    /// Replaces the byte-rate budget (nil: unlimited); the burst stays `settings.burstBytes`.
    func setRate(bytesPerSecond: Int?) {
        let budget = bytesPerSecond.map { RateBudget(bytesPerSecond: $0, burstBytes: settings.burstBytes, clock: clock) }
        rate.withLock { $0 = budget }
    }

    /// Object bytes being fetched right now.
    var inFlightBytes: Int { window.inFlight }

    /// One ranged GET of `bytes` bytes and its decoding, within the byte window and rate budget,
    /// on the cold-read threads when isolated.
    private func coldGet<T: Sendable>(_ key: String, _ range: ByteRange, bytes: Int,
                                      _ decode: @escaping @Sendable ([UInt8]) throws -> T) async throws -> T {
        await window.acquire(bytes)
        defer { window.release(bytes) }
        if let budget = rate.withLock({ $0 }) { try await budget.take(bytes) }
        guard isolated else { return try decode(try await store.get(key, range: range).bytes) }
        return try await pool.fetch(key, range: range, from: store, decode)
    }

    static func key(_ prefix: String, _ id: UInt64) -> String {
        let digits = String(id)
        return prefix + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".obj"
    }

    var counters: (hits: Int, misses: Int) { state.withLock { ($0.hits, $0.misses) } }
    /// Block payload bytes cached now (at most `capacityBytes`).
    var cachedBytes: Int { state.withLock { $0.bytes } }

    func index(_ id: UInt64, size: UInt64) async throws -> [DataBlockEntry] {
        if let cached = state.withLock({ $0.indexes[id] }) { return cached }
        let key = Self.key(prefix, id)
        let tailLength = Int(min(size, 64 * 1024))
        enum Tail: Sendable {
            case index([DataBlockEntry])
            case elsewhere(Range<Int>, crc: UInt32)
        }
        let tail = try await coldGet(key, .suffix(tailLength), bytes: tailLength) { tail throws -> Tail in
            let footer = try DataObjectFormat.decodeFooter(tail.suffix(DataObjectFormat.footerSize), key: key)
            let indexStart = Int(footer.position), indexEnd = indexStart + Int(footer.length)
            guard indexEnd <= Int(size) - DataObjectFormat.footerSize else {
                throw StreamStorageError.corrupt(what: "data object footer", key: key,
                                                 detail: "index \(indexStart)..<\(indexEnd) runs past the footer of an object of \(size) bytes")
            }
            let tailStart = Int(size) - tail.count
            if indexStart >= tailStart {
                return .index(try DataObjectFormat.decodeIndex(tail[(indexStart - tailStart)..<(indexEnd - tailStart)], crc: footer.crc, key: key))
            }
            return .elsewhere(indexStart..<indexEnd, crc: footer.crc)
        }
        let index: [DataBlockEntry]
        switch tail {
        case .index(let decoded):
            index = decoded
        case .elsewhere(let range, let crc):
            index = try await coldGet(key, .bytes(range), bytes: range.count) { bytes in
                try DataObjectFormat.decodeIndex(bytes[...], crc: crc, key: key)
            }
        }
        state.withLock { s in
            if s.indexes.count > 4096 { s.indexes.removeAll(keepingCapacity: true) }
            s.indexes[id] = index
        }
        return index
    }

    /// Batches of `stream` from object `range.objectID`, starting with the batch that holds
    /// `offset`, stopping at `range.endOffset`, `limit`, or after `maxBytes` (at least one batch).
    func read(_ stream: StreamID, range: ObjectRange, size: UInt64, from offset: Int64, below limit: Int64, maxBytes: Int) async throws -> [StoredBatch] {
        let index = try await index(range.objectID, size: size)
        let blocks = index.filter { $0.streamID == stream && $0.endOffset > offset && $0.startOffset < min(range.endOffset, limit) }
            .sorted { $0.startOffset < $1.startOffset }
        guard !blocks.isEmpty else {
            // Key compaction may have removed the range's last batches: an offset in that
            // trailing gap has nothing here (the caller continues at the range's end).
            if index.contains(where: { $0.streamID == stream && $0.startOffset >= range.startOffset && $0.endOffset <= range.endOffset && $0.endOffset <= offset }),
               offset < range.endOffset {
                return []
            }
            throw StreamStorageError.corrupt(what: "data object index", key: Self.key(prefix, range.objectID),
                                             detail: "no block of stream \(stream) holds offset \(offset)")
        }
        let sequential = state.withLock { $0.lastEnd[stream] == offset }
        var result: [StoredBatch] = []
        var bytes = 0
        var i = 0
        outer: while i < blocks.count {
            var batches: [StoredBatch]
            if let hit = lookup(BlockKey(objectID: range.objectID, position: blocks[i].position)) {
                batches = hit
            } else {
                // Fetch this block plus read-ahead blocks that are adjacent in the object.
                var j = i + 1
                let wanted = sequential ? readAheadBlocks : 0
                while j < blocks.count && j - i <= wanted && blocks[j].position == blocks[j - 1].position + UInt64(blocks[j - 1].length) { j += 1 }
                let fetched = try await fetch(range.objectID, blocks[i..<j])
                batches = fetched
            }
            for b in batches where b.endOffset > offset && b.baseOffset < min(range.endOffset, limit) {
                if !result.isEmpty && bytes + b.bytes.count > maxBytes { break outer }
                result.append(b)
                bytes += b.bytes.count
            }
            i += 1
        }
        if let last = result.last { state.withLock { $0.lastEnd[stream] = last.endOffset } }
        return result
    }

    private func lookup(_ key: BlockKey) -> [StoredBatch]? {
        state.withLock { s in
            guard var c = s.blocks[key] else { s.misses += 1; return nil }
            s.hits += 1
            s.tick += 1
            c.tick = s.tick
            s.blocks[key] = c
            return c.batches
        }
    }

    /// Fetches adjacent blocks with one ranged GET, caches them, returns the first's batches.
    private func fetch(_ id: UInt64, _ blocks: ArraySlice<DataBlockEntry>) async throws -> [StoredBatch] {
        let key = Self.key(prefix, id)
        let start = Int(blocks.first!.position)
        let end = Int(blocks.last!.position) + Int(blocks.last!.length)
        let decoded = try await coldGet(key, .bytes(start..<end), bytes: end - start) { data throws -> [(BlockKey, [StoredBatch], Int)] in
            guard data.count == end - start else {
                throw StreamStorageError.corrupt(what: "data object", key: key, detail: "range \(start)..<\(end) returned \(data.count) bytes")
            }
            var decoded: [(BlockKey, [StoredBatch], Int)] = []
            for b in blocks {
                let s = Int(b.position) - start
                let slice = data[s..<(s + Int(b.length))]
                // Copy the block out of the shared buffer so evicting one block frees its memory.
                let own = Array(slice)
                decoded.append((BlockKey(objectID: id, position: b.position), try DataObjectFormat.decodeBlock(own[...], entry: b, key: key), own.count))
            }
            return decoded
        }
        state.withLock { s in
            for (k, batches, n) in decoded {
                s.tick += 1
                if let old = s.blocks[k] { s.bytes -= old.bytes }
                s.blocks[k] = Cached(batches: batches, bytes: n, tick: s.tick)
                s.bytes += n
            }
            while s.bytes > capacityBytes, let victim = s.blocks.min(by: { $0.value.tick < $1.value.tick }) {
                s.bytes -= victim.value.bytes
                s.blocks[victim.key] = nil
            }
        }
        return decoded[0].1
    }

    /// Drops cached data of deleted objects.
    func forget(_ ids: [UInt64]) {
        let set = Set(ids)
        state.withLock { s in
            for id in ids { s.indexes[id] = nil }
            for k in s.blocks.keys where set.contains(k.objectID) {
                s.bytes -= s.blocks[k]!.bytes
                s.blocks[k] = nil
            }
        }
    }
}
