/// How many bytes a stream holds, for DescribeLogDirs-style reports.
///
/// The size is the payload bytes of its committed object ranges (whole ranges, as retention
/// deletes them: a range partly below the start offset counts in full, as Kafka counts a
/// segment) plus the acknowledged batches not yet in an object (in the WAL and the log cache).
///
/// Example: ranges of 1,000 and 500 bytes, and 200 bytes appended since the last upload: 1,700.
extension StreamStore {
    func sizeInBytes(_ id: StreamID) -> UInt64 {
        core.withLock { c in
            guard let st = c.streams[id] else { return 0 }
            let committed = st.committed.ranges.reduce(UInt64(0)) { $0 + $1.bytes }
            let uncommittedFrom = max(st.committed.endOffset, st.startOffset)
            guard uncommittedFrom < st.durableEnd,
                  let pending = c.cache.read(id, from: uncommittedFrom, maxBytes: Int.max, below: st.durableEnd) else { return committed }
            return committed + pending.reduce(UInt64(0)) { $0 + UInt64($1.bytes.count) }
        }
    }
}

extension Stream {
    /// The bytes this stream holds: in objects plus acknowledged and not yet uploaded (see
    /// `StreamStore.sizeInBytes`).
    public var sizeInBytes: UInt64 { store.sizeInBytes(id) }
}

extension StreamStore {
    /// The payload bytes of each stream's committed object ranges, from the newest manifest (one
    /// read of the metadata): the size of streams this store has not opened, whose data is all in
    /// objects (a stream's WAL records are uploaded when the WAL is recovered). Unknown streams: 0.
    public func committedSizes(_ ids: [StreamID]) async throws -> [StreamID: UInt64] {
        let manifest = try await metadata.latest()
        var sizes: [StreamID: UInt64] = [:]
        for id in ids { sizes[id] = manifest.streams[id]?.ranges.reduce(UInt64(0)) { $0 + $1.bytes } ?? 0 }
        return sizes
    }
}
