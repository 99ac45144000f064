/// Recent batches of every stream, so tail reads never touch object storage.
///
/// Entries not yet uploaded into a data object are pinned (the upload reads them from here);
/// uploaded entries are evicted oldest first once `totalBytes` exceeds `capacityBytes`. Pinned
/// bytes are bounded by the store's upload backpressure, not here.
///
/// Invariants: per stream, entries are contiguous in offset order; `totalBytes` is the sum of
/// the cached payload sizes.
///
/// Example: batches 0..<10, 10..<25 cached for stream 1; `read(1, from: 12)` returns the batch
/// 10..<25 (the batch containing offset 12); `read(1, from: 5)` returns the batch 0..<10; after
/// the first batch is uploaded and evicted, `read(1, from: 5)` is a miss (`nil`).
struct LogCache {
    struct Entry {
        var batch: StoredBatch
        var walPosition: UInt64
        var uploaded: Bool
    }

    struct StreamEntries {
        var entries: [Entry] = []
        var head = 0
        var live: ArraySlice<Entry> { entries[head...] }
        var first: Entry? { head < entries.count ? entries[head] : nil }
        mutating func popFront() -> Entry {
            let e = entries[head]
            head += 1
            if head > 64 && head * 2 > entries.count {
                entries.removeFirst(head)
                head = 0
            }
            return e
        }
        /// Index of the first live entry whose end is beyond `offset`.
        func index(after offset: Int64) -> Int {
            var lo = head, hi = entries.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if entries[mid].batch.endOffset <= offset { lo = mid + 1 } else { hi = mid }
            }
            return lo
        }
    }

    let capacityBytes: Int
    private(set) var totalBytes = 0
    private(set) var pinnedBytes = 0
    private var streams: [StreamID: StreamEntries] = [:]
    var streamsForInspection: Dictionary<StreamID, StreamEntries>.Values { streams.values }
    /// Insertion order of entries, for oldest-first eviction: (stream, end offset).
    private var order: [(StreamID, Int64)] = []
    private var orderHead = 0
    private var orderLimit = 1024

    init(capacityBytes: Int) { self.capacityBytes = capacityBytes }

    mutating func insert(_ stream: StreamID, _ batch: StoredBatch, walPosition: UInt64, uploaded: Bool = false) {
        if let last = streams[stream]?.entries.last, streams[stream]!.head < streams[stream]!.entries.count {
            precondition(last.batch.endOffset == batch.baseOffset, "LogCache: stream \(stream) not contiguous: \(last.batch.endOffset) then \(batch.baseOffset)")
        }
        streams[stream, default: StreamEntries()].entries.append(Entry(batch: batch, walPosition: walPosition, uploaded: uploaded))
        order.append((stream, batch.endOffset))
        if order.count - orderHead > orderLimit {
            // Checked rarely: the limit follows the live entry count.
            let live = liveCount
            if order.count - orderHead > 4 * max(live, 256) { rebuildOrder() }
            orderLimit = 4 * max(live, 256)
        }
        totalBytes += batch.bytes.count
        if !uploaded { pinnedBytes += batch.bytes.count }
        evict()
    }

    /// The first offset served from the cache for `stream`, if any.
    func firstOffset(_ stream: StreamID) -> Int64? { streams[stream]?.first?.batch.baseOffset }

    /// Batches from the one containing `offset`, up to `maxBytes` (at least one batch), or
    /// `nil` when `offset` is before the cached range.
    func read(_ stream: StreamID, from offset: Int64, maxBytes: Int, below limit: Int64) -> [StoredBatch]? {
        guard let s = streams[stream], let first = s.first, first.batch.baseOffset <= offset else { return nil }
        var result: [StoredBatch] = []
        var bytes = 0
        var i = s.index(after: offset)
        while i < s.entries.count {
            let b = s.entries[i].batch
            if b.baseOffset >= limit { break }
            if !result.isEmpty && bytes + b.bytes.count > maxBytes { break }
            result.append(b)
            bytes += b.bytes.count
            i += 1
        }
        return result
    }

    /// Entries not yet uploaded with a WAL position at most `position`, per stream.
    func pending(upTo position: UInt64) -> [StreamID: [Entry]] {
        var result: [StreamID: [Entry]] = [:]
        for (id, s) in streams {
            let run = s.live.drop { $0.uploaded }.prefix { !$0.uploaded && $0.walPosition <= position }
            if !run.isEmpty { result[id] = Array(run) }
        }
        return result
    }

    /// Marks `stream`'s entries below `offset` uploaded.
    mutating func markUploaded(_ stream: StreamID, below offset: Int64) {
        guard var s = streams[stream] else { return }
        for i in s.head..<s.entries.count where s.entries[i].batch.endOffset <= offset && !s.entries[i].uploaded {
            s.entries[i].uploaded = true
            pinnedBytes -= s.entries[i].batch.bytes.count
        }
        streams[stream] = s
        evict()
    }

    /// Drops `stream`'s uploaded entries that end at or before `offset`.
    mutating func trim(_ stream: StreamID, below offset: Int64) {
        guard var s = streams[stream] else { return }
        while let f = s.first, f.uploaded, f.batch.endOffset <= offset {
            totalBytes -= s.popFront().batch.bytes.count
        }
        streams[stream] = s
    }

    /// Removes every entry of `stream` (it was closed or handed over); returns pinned entries
    /// that were dropped (should be none when the stream was closed after an upload).
    @discardableResult
    mutating func remove(_ stream: StreamID) -> Int {
        guard let s = streams.removeValue(forKey: stream) else { return 0 }
        var dropped = 0
        for e in s.live {
            totalBytes -= e.batch.bytes.count
            if !e.uploaded { pinnedBytes -= e.batch.bytes.count; dropped += 1 }
        }
        return dropped
    }

    /// Number of cached entries (for bounding the eviction queue).
    var liveCount: Int { streams.values.reduce(0) { $0 + ($1.entries.count - $1.head) } }

    /// Length of the eviction queue, for tests.
    var orderLength: Int { order.count - orderHead }

    /// Rebuilds the eviction queue from live entries: entries removed by trims and stream
    /// removal leave stale queue items that eviction alone never reaches under capacity.
    private mutating func rebuildOrder() {
        var items: [(UInt64, StreamID, Int64)] = []
        for (id, s) in streams { for e in s.live { items.append((e.walPosition, id, e.batch.endOffset)) } }
        items.sort { $0.0 < $1.0 }
        order = items.map { ($0.1, $0.2) }
        orderHead = 0
    }

    private mutating func evict() {
        while totalBytes > capacityBytes && orderHead < order.count {
            let (id, end) = order[orderHead]
            if var s = streams[id], let f = s.first, f.batch.endOffset == end {
                guard f.uploaded else { break }
                totalBytes -= s.popFront().batch.bytes.count
                streams[id] = s
            }
            orderHead += 1
        }
        if orderHead > 1024 && orderHead * 2 > order.count {
            order.removeFirst(orderHead)
            orderHead = 0
        }
    }
}

extension LogCache {
    /// The lowest WAL position among entries not yet uploaded.
    func minPinnedPosition() -> WALPosition? {
        var best: WALPosition? = nil
        for s in streamsForInspection where true {
            if let e = s.live.first(where: { !$0.uploaded }) { best = min(best ?? .max, e.walPosition) }
        }
        return best
    }
}
