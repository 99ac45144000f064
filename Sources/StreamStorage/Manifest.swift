import Bytes

/// A committed range of one stream held by one data object.
///
/// Example: `(object 12, start 100, end 160)` says object 12 holds the stream's batches
/// covering offsets 100..<160.
public struct ObjectRange: Sendable, Equatable {
    public var objectID: UInt64
    public var startOffset: Int64
    public var endOffset: Int64
    /// Payload bytes of the range (for size-based retention).
    public var bytes: UInt64
    /// Newest append time in the range (for time-based retention).
    public var maxAppendTimeMillis: Int64

    public init(objectID: UInt64, startOffset: Int64, endOffset: Int64, bytes: UInt64, maxAppendTimeMillis: Int64) {
        self.objectID = objectID
        self.startOffset = startOffset
        self.endOffset = endOffset
        self.bytes = bytes
        self.maxAppendTimeMillis = maxAppendTimeMillis
    }
}

/// The committed state of one stream.
///
/// Invariants: `ranges` are sorted and contiguous (`ranges[i].endOffset ==
/// ranges[i+1].startOffset`); if non-empty, `ranges.last.endOffset == endOffset` and
/// `ranges.first.startOffset <= startOffset < ranges.first.endOffset`. `startOffset` may exceed
/// `endOffset` when the stream was trimmed past data still in the WAL (not yet committed).
///
/// Example: ranges `[(obj 3, 0..<50), (obj 9, 50..<80)]`, `startOffset 20`, `endOffset 80`: a
/// read at 30 goes to object 3; `trim(to: 60)` drops object 3's range and keeps object 9's.
public struct StreamMetadata: Sendable, Equatable {
    public var streamID: StreamID
    public var epoch: UInt64
    public var startOffset: Int64
    public var endOffset: Int64
    public var ranges: [ObjectRange]

    public init(streamID: StreamID, epoch: UInt64, startOffset: Int64 = 0, endOffset: Int64 = 0, ranges: [ObjectRange] = []) {
        self.streamID = streamID
        self.epoch = epoch
        self.startOffset = startOffset
        self.endOffset = endOffset
        self.ranges = ranges
    }

    /// The range holding `offset`, if committed.
    public func range(containing offset: Int64) -> ObjectRange? {
        var lo = 0, hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[mid].endOffset <= offset { lo = mid + 1 } else { hi = mid }
        }
        guard lo < ranges.count, ranges[lo].startOffset <= offset else { return nil }
        return ranges[lo]
    }
}

/// A data object known to the metadata.
public struct DataObjectInfo: Sendable, Equatable {
    public var objectID: UInt64
    public var size: UInt64
    /// Number of streams with data in the object (1 for a per-stream object).
    public var streamCount: UInt32
    public var createdMillis: Int64
    /// How many times the object's bytes have been rewritten: 0 for an upload from the WAL,
    /// one more than its inputs for a compaction output (see `CompactionPolicy.maxLevel`).
    public var level: UInt8

    public init(objectID: UInt64, size: UInt64, streamCount: UInt32, createdMillis: Int64, level: UInt8 = 0) {
        self.objectID = objectID
        self.size = size
        self.streamCount = streamCount
        self.createdMillis = createdMillis
        self.level = level
    }
}

/// An object no metadata references any more, deleted once its grace period has passed (so
/// readers that looked it up just before it was replaced can still finish).
public struct PendingDeletion: Sendable, Equatable {
    public var deadlineMillis: Int64
    public var bytes: UInt64
    public init(deadlineMillis: Int64, bytes: UInt64) {
        self.deadlineMillis = deadlineMillis
        self.bytes = bytes
    }
}

/// A range to register by an upload commit.
public struct CommitRange: Sendable, Equatable {
    public var streamID: StreamID
    public var epoch: UInt64
    public var range: ObjectRange
    public init(streamID: StreamID, epoch: UInt64, range: ObjectRange) {
        self.streamID = streamID
        self.epoch = epoch
        self.range = range
    }
}

/// All stream metadata of one store, persisted as numbered manifest objects.
///
/// Invariants: every object id referenced by a stream range is in `objects`; `prepared` and
/// `deletions` never hold an id that is in `objects`; `nextObjectID` exceeds every id ever
/// handed out.
public struct Manifest: Sendable, Equatable {
    public var version: UInt64 = 0
    public var nextObjectID: UInt64 = 1
    public var streams: [StreamID: StreamMetadata] = [:]
    public var objects: [UInt64: DataObjectInfo] = [:]
    /// Objects being uploaded, with the wall time (ms) after which they are garbage.
    public var prepared: [UInt64: Int64] = [:]
    /// Objects no longer referenced, with the wall time (ms) after which they are deleted and
    /// their size (the space the grace period costs).
    public var deletions: [UInt64: PendingDeletion] = [:]

    public init() {}

    static let formatVersion: UInt8 = 2
    /// Version 1 had no object level; its objects decode at level 0.
    static let readableVersions: ClosedRange<UInt8> = 1...2

    // MARK: mutations (pure; the store persists the result)

    mutating func openStream(_ id: StreamID, epoch: UInt64) throws(StreamStorageError) -> StreamMetadata {
        if var stream = streams[id] {
            guard epoch >= stream.epoch else { throw .fenced(stream: id, epoch: epoch, currentEpoch: stream.epoch) }
            stream.epoch = epoch
            streams[id] = stream
            return stream
        }
        let stream = StreamMetadata(streamID: id, epoch: epoch)
        streams[id] = stream
        return stream
    }

    mutating func prepare(deadlineMillis: Int64) -> UInt64 {
        let id = nextObjectID
        nextObjectID += 1
        prepared[id] = deadlineMillis
        return id
    }

    /// Registers an uploaded object. Ranges of streams whose epoch moved on are rejected
    /// (returned) and not registered; a range that does not continue its stream throws.
    /// Committing an object that is already committed is a no-op (idempotent retry).
    mutating func commitUpload(objectID: UInt64, size: UInt64, ranges: [CommitRange], nowMillis: Int64, graceMillis: Int64) throws(StreamStorageError) -> [StreamID] {
        if objects[objectID] != nil { return [] }
        guard prepared[objectID] != nil else {
            throw .metadataConflict(detail: "object \(objectID) is not prepared (expired or never prepared)")
        }
        var rejected: [StreamID] = []
        var accepted: [CommitRange] = []
        for c in ranges {
            guard let stream = streams[c.streamID] else { throw .unknownStream(stream: c.streamID) }
            if c.epoch != stream.epoch { rejected.append(c.streamID); continue }
            guard c.range.startOffset == stream.endOffset, c.range.endOffset > c.range.startOffset else {
                throw .nonContiguous(stream: c.streamID, expected: stream.endOffset, got: c.range.startOffset)
            }
            accepted.append(c)
        }
        prepared[objectID] = nil
        if accepted.isEmpty {
            deletions[objectID] = PendingDeletion(deadlineMillis: nowMillis + graceMillis, bytes: size)
            return rejected
        }
        objects[objectID] = DataObjectInfo(objectID: objectID, size: size, streamCount: UInt32(Set(accepted.map(\.streamID)).count), createdMillis: nowMillis)
        for c in accepted {
            var stream = streams[c.streamID]!
            stream.ranges.append(c.range)
            stream.endOffset = c.range.endOffset
            dropBelowStart(&stream)
            streams[c.streamID] = stream
        }
        collectUnreferenced(nowMillis: nowMillis, graceMillis: graceMillis)
        return rejected
    }

    /// Replaces `inputs` by `outputs` (each `(object, size, ranges)`). Throws a conflict, leaving
    /// the manifest unchanged, if an input is gone or the result would not cover every stream.
    mutating func commitCompaction(inputs: [UInt64], outputs: [(DataObjectInfo, [(StreamID, ObjectRange)])], nowMillis: Int64, graceMillis: Int64) throws(StreamStorageError) {
        for id in inputs where objects[id] == nil {
            throw .metadataConflict(detail: "compaction input object \(id) is no longer committed")
        }
        for (info, _) in outputs where prepared[info.objectID] == nil {
            throw .metadataConflict(detail: "compaction output object \(info.objectID) is not prepared")
        }
        let inputSet = Set(inputs)
        var byStream: [StreamID: [ObjectRange]] = [:]
        for (_, ranges) in outputs { for (s, r) in ranges { byStream[s, default: []].append(r) } }
        var updated = streams
        for (id, var stream) in streams {
            let touched = stream.ranges.contains { inputSet.contains($0.objectID) } || byStream[id] != nil
            if !touched { continue }
            var ranges = stream.ranges.filter { !inputSet.contains($0.objectID) } + (byStream[id] ?? [])
            ranges.sort { $0.startOffset < $1.startOffset }
            ranges.removeAll { $0.endOffset <= stream.startOffset }
            if !ranges.isEmpty {
                for i in 1..<max(1, ranges.count) where ranges[i - 1].endOffset != ranges[i].startOffset {
                    throw .metadataConflict(detail: "compaction leaves stream \(id) non-contiguous at \(ranges[i - 1].endOffset)/\(ranges[i].startOffset)")
                }
                guard ranges.last!.endOffset == stream.endOffset, ranges.first!.startOffset <= stream.startOffset else {
                    throw .metadataConflict(detail: "compaction changes stream \(id)'s covered range")
                }
            } else if stream.startOffset < stream.endOffset {
                throw .metadataConflict(detail: "compaction drops live data of stream \(id)")
            }
            stream.ranges = ranges
            updated[id] = stream
        }
        streams = updated
        for (info, _) in outputs {
            prepared[info.objectID] = nil
            objects[info.objectID] = info
        }
        for id in inputs {
            deletions[id] = PendingDeletion(deadlineMillis: nowMillis + graceMillis, bytes: objects[id]?.size ?? 0)
            objects[id] = nil
        }
        collectUnreferenced(nowMillis: nowMillis, graceMillis: graceMillis)
    }

    /// Key compaction's commit: replaces stream `id`'s ranges from its first one through the
    /// one ending at `ranges.last.endOffset` by `ranges`, all in the prepared object `info` (its
    /// level is `CompactionPolicy.keyCleanedLevel`). Fenced by `epoch` (only the partition's
    /// owner rewrites it). The new ranges must cover exactly what they replace, so offsets, the
    /// stream's start and its end are unchanged. Replaced objects left without ranges are
    /// scheduled for deletion. Idempotent: a retry of a commit that landed is a no-op. Throws a
    /// conflict (changing nothing) if the stream's ranges changed meanwhile (a retention trim,
    /// an object compaction that moved the boundary): the caller retries at its next round.
    mutating func commitRewrite(_ id: StreamID, epoch: UInt64, object info: DataObjectInfo, ranges new: [ObjectRange],
                                nowMillis: Int64, graceMillis: Int64) throws(StreamStorageError) {
        guard var stream = streams[id] else { throw .unknownStream(stream: id) }
        guard epoch == stream.epoch else { throw .fenced(stream: id, epoch: epoch, currentEpoch: stream.epoch) }
        if objects[info.objectID] != nil { return }
        guard prepared[info.objectID] != nil else {
            throw .metadataConflict(detail: "key compaction output object \(info.objectID) is not prepared")
        }
        guard let first = new.first, let last = new.last, new.allSatisfy({ $0.objectID == info.objectID }) else {
            throw .invalidArgument("key compaction of stream \(id) commits no ranges of object \(info.objectID)")
        }
        for i in 1..<max(1, new.count) where new[i - 1].endOffset != new[i].startOffset {
            throw .invalidArgument("key compaction of stream \(id) leaves a hole at \(new[i - 1].endOffset)")
        }
        guard let old = stream.ranges.first, old.startOffset == first.startOffset,
              let k = stream.ranges.firstIndex(where: { $0.endOffset == last.endOffset }) else {
            throw .metadataConflict(detail: "key compaction of stream \(id) no longer matches its ranges (\(first.startOffset)..<\(last.endOffset))")
        }
        stream.ranges.replaceSubrange(0...k, with: new)
        streams[id] = stream
        prepared[info.objectID] = nil
        objects[info.objectID] = info
        collectUnreferenced(nowMillis: nowMillis, graceMillis: graceMillis)
    }

    /// Moves a stream's start forward (never backward). Objects left without live ranges are
    /// scheduled for deletion.
    mutating func trim(_ id: StreamID, epoch: UInt64, to offset: Int64, nowMillis: Int64, graceMillis: Int64) throws(StreamStorageError) {
        guard var stream = streams[id] else { throw .unknownStream(stream: id) }
        guard epoch == stream.epoch else { throw .fenced(stream: id, epoch: epoch, currentEpoch: stream.epoch) }
        if offset <= stream.startOffset { return }
        stream.startOffset = offset
        dropBelowStart(&stream)
        streams[id] = stream
        collectUnreferenced(nowMillis: nowMillis, graceMillis: graceMillis)
    }

    /// The objects due for deletion: expired prepares and deletions whose grace has passed.
    /// The caller deletes them, then calls `forget(_:)`, so a failed delete is retried later.
    public func dueGarbage(nowMillis: Int64) -> [UInt64] {
        var due: [UInt64] = []
        for (id, deadline) in prepared where deadline <= nowMillis { due.append(id) }
        for (id, d) in deletions where d.deadlineMillis <= nowMillis { due.append(id) }
        return due.sorted()
    }

    /// Drops deleted objects from `prepared` and `deletions`.
    mutating func forget(_ ids: [UInt64]) {
        for id in ids {
            prepared[id] = nil
            deletions[id] = nil
        }
    }

    private func dropBelowStart(_ stream: inout StreamMetadata) {
        let start = stream.startOffset
        stream.ranges.removeAll { $0.endOffset <= start }
    }

    private mutating func collectUnreferenced(nowMillis: Int64, graceMillis: Int64) {
        var referenced = Set<UInt64>()
        for stream in streams.values { for r in stream.ranges { referenced.insert(r.objectID) } }
        for (id, info) in objects where !referenced.contains(id) {
            objects[id] = nil
            deletions[id] = PendingDeletion(deadlineMillis: nowMillis + graceMillis, bytes: info.size)
        }
    }

    // MARK: codec

    /// Byte layout (big-endian):
    /// ```
    /// u32 magic "FLSM", u8 version (2; 1 is still read), u64 manifest version, u64 next object id
    /// u32 stream count, per stream:
    ///     u64 id, u64 epoch, i64 start, i64 end, u32 range count,
    ///     per range: u64 object, i64 start, i64 end, u64 bytes, i64 max append time
    /// u32 object count, per object: u64 id, u64 size, u32 stream count, u8 level (not in
    ///     version 1), i64 created ms
    /// u32 prepared count, per entry: u64 id, i64 deadline ms
    /// u32 deletion count, per entry: u64 id, i64 deadline ms, u64 bytes (not in version 1)
    /// u32 CRC32C of all preceding bytes
    /// ```
    /// Entries are written in ascending id order, so equal manifests encode to equal bytes.
    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 256 + streams.count * 64)
        w.writeUInt32(Magic.manifest)
        w.writeUInt8(Self.formatVersion)
        w.writeUInt64(version)
        w.writeUInt64(nextObjectID)
        w.writeUInt32(UInt32(streams.count))
        for (_, s) in streams.sorted(by: { $0.key < $1.key }) {
            w.writeUInt64(s.streamID)
            w.writeUInt64(s.epoch)
            w.writeInt64(s.startOffset)
            w.writeInt64(s.endOffset)
            w.writeUInt32(UInt32(s.ranges.count))
            for r in s.ranges {
                w.writeUInt64(r.objectID)
                w.writeInt64(r.startOffset)
                w.writeInt64(r.endOffset)
                w.writeUInt64(r.bytes)
                w.writeInt64(r.maxAppendTimeMillis)
            }
        }
        w.writeUInt32(UInt32(objects.count))
        for (_, o) in objects.sorted(by: { $0.key < $1.key }) {
            w.writeUInt64(o.objectID)
            w.writeUInt64(o.size)
            w.writeUInt32(o.streamCount)
            w.writeUInt8(o.level)
            w.writeInt64(o.createdMillis)
        }
        w.writeUInt32(UInt32(prepared.count))
        for (id, deadline) in prepared.sorted(by: { $0.key < $1.key }) {
            w.writeUInt64(id)
            w.writeInt64(deadline)
        }
        w.writeUInt32(UInt32(deletions.count))
        for (id, d) in deletions.sorted(by: { $0.key < $1.key }) {
            w.writeUInt64(id)
            w.writeInt64(d.deadlineMillis)
            w.writeUInt64(d.bytes)
        }
        w.writeUInt32(CRC32C.checksum(w.bytes))
        return w.take()
    }

    public static func decode(_ bytes: ArraySlice<UInt8>, key: String) throws(StreamStorageError) -> Manifest {
        guard bytes.count >= 4 + 1 + 16 + 16 + 4 else {
            throw .corrupt(what: "stream manifest", key: key, detail: "only \(bytes.count) bytes")
        }
        var tail = ByteReader(bytes.suffix(4))
        let stored = try decoding("stream manifest crc", key) { () throws(BytesError) in try tail.readUInt32() }
        let computed = CRC32C.checksum(bytes.dropLast(4))
        guard stored == computed else {
            throw .corrupt(what: "stream manifest", key: key, detail: "CRC32C mismatch: stored \(stored), computed \(computed)")
        }
        var r = ByteReader(bytes.dropLast(4))
        let (magic, formatVersion) = try decoding("stream manifest header", key) { () throws(BytesError) in (try r.readUInt32(), try r.readUInt8()) }
        guard magic == Magic.manifest else { throw .corrupt(what: "stream manifest", key: key, detail: "bad magic \(magic)") }
        guard Self.readableVersions.contains(formatVersion) else {
            throw .corrupt(what: "stream manifest", key: key, detail: "unsupported version \(formatVersion)")
        }
        let m = try decoding("stream manifest", key) { () throws(BytesError) -> Manifest in
            var m = Manifest()
            m.version = try r.readUInt64()
            m.nextObjectID = try r.readUInt64()
            for _ in 0..<Int(try r.readUInt32()) {
                var s = StreamMetadata(streamID: try r.readUInt64(), epoch: try r.readUInt64(), startOffset: try r.readInt64(), endOffset: try r.readInt64())
                for _ in 0..<Int(try r.readUInt32()) {
                    s.ranges.append(ObjectRange(objectID: try r.readUInt64(), startOffset: try r.readInt64(), endOffset: try r.readInt64(),
                                                bytes: try r.readUInt64(), maxAppendTimeMillis: try r.readInt64()))
                }
                m.streams[s.streamID] = s
            }
            for _ in 0..<Int(try r.readUInt32()) {
                let (id, size, streamCount) = (try r.readUInt64(), try r.readUInt64(), try r.readUInt32())
                let level = formatVersion >= 2 ? try r.readUInt8() : 0
                let o = DataObjectInfo(objectID: id, size: size, streamCount: streamCount, createdMillis: try r.readInt64(), level: level)
                m.objects[o.objectID] = o
            }
            for _ in 0..<Int(try r.readUInt32()) { m.prepared[try r.readUInt64()] = try r.readInt64() }
            for _ in 0..<Int(try r.readUInt32()) {
                let (id, deadline) = (try r.readUInt64(), try r.readInt64())
                m.deletions[id] = PendingDeletion(deadlineMillis: deadline, bytes: formatVersion >= 2 ? try r.readUInt64() : 0)
            }
            return m
        }
        guard r.isAtEnd else { throw .corrupt(what: "stream manifest", key: key, detail: "\(r.remaining) trailing bytes") }
        return m
    }
}
