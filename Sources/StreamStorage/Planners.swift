/// When compaction rewrites objects.
public struct CompactionPolicy: Sendable, Equatable {
    /// Objects smaller than this are merged with their neighbours.
    public var smallObjectBytes: UInt64
    /// A stream with at least this many bytes in one job gets an object of its own.
    public var splitStreamBytes: UInt64
    /// The most input bytes one job reads.
    public var maxJobBytes: UInt64

    public init(smallObjectBytes: UInt64 = 8 << 20, splitStreamBytes: UInt64 = 4 << 20, maxJobBytes: UInt64 = 256 << 20) {
        self.smallObjectBytes = smallObjectBytes
        self.splitStreamBytes = splitStreamBytes
        self.maxJobBytes = maxJobBytes
    }
}

/// One compaction job: read `inputs`, write one object per stream in `ownObjectStreams` and
/// one multi-stream object with `mergedStreams`, then swap them in with one metadata commit.
public struct CompactionJob: Sendable, Equatable {
    public var inputs: [UInt64]
    public var ownObjectStreams: [StreamID]
    public var mergedStreams: [StreamID]
}

/// Plans compaction from metadata alone (a pure function; `CompactionExecutor` carries a
/// plan out).
///
/// Rules: an object is a candidate if it is smaller than `smallObjectBytes`, or if it holds
/// several streams and one of them has at least `splitStreamBytes` in it. Candidates are taken
/// in id order (oldest first) into jobs of at most `maxJobBytes`. A job with a single input is
/// kept only if it splits a stream out. The result of a job is never itself a candidate for
/// the same reason, so repeated planning converges.
///
/// Example (small 8 MiB, split 4 MiB): objects 1 (2 MiB: streams A, B) and 2 (3 MiB: streams
/// A, C) with A holding 4.5 MiB in total form one job: A gets its own object, B and C share one.
public enum CompactionPlanner {
    public static func plan(_ manifest: Manifest, policy: CompactionPolicy) -> [CompactionJob] {
        var perObject: [UInt64: [StreamID: UInt64]] = [:]
        for stream in manifest.streams.values {
            for r in stream.ranges { perObject[r.objectID, default: [:]][stream.streamID, default: 0] += r.bytes }
        }
        func needsSplit(_ id: UInt64) -> Bool {
            guard let streams = perObject[id], streams.count > 1 else { return false }
            return streams.values.contains { $0 >= policy.splitStreamBytes }
        }
        let candidates = manifest.objects.values
            .filter { $0.size < policy.smallObjectBytes || needsSplit($0.objectID) }
            .sorted { $0.objectID < $1.objectID }
        var jobs: [CompactionJob] = []
        var current: [DataObjectInfo] = []
        var currentBytes: UInt64 = 0
        func close() {
            defer { current = []; currentBytes = 0 }
            guard !current.isEmpty else { return }
            var totals: [StreamID: UInt64] = [:]
            for o in current { for (s, b) in perObject[o.objectID] ?? [:] { totals[s, default: 0] += b } }
            let own = totals.filter { $0.value >= policy.splitStreamBytes }.keys.sorted()
            let merged = totals.filter { $0.value < policy.splitStreamBytes }.keys.sorted()
            if current.count == 1 && (own.isEmpty || (own.count == 1 && merged.isEmpty)) { return }
            jobs.append(CompactionJob(inputs: current.map(\.objectID), ownObjectStreams: own, mergedStreams: merged))
        }
        for o in candidates {
            if !current.isEmpty && currentBytes + o.size > policy.maxJobBytes { close() }
            current.append(o)
            currentBytes += o.size
        }
        close()
        return jobs
    }
}

/// How much of a stream retention keeps. `nil` limits are off.
public struct RetentionPolicy: Sendable, Equatable {
    public var maxBytes: UInt64?
    public var maxAgeMillis: Int64?
    public init(maxBytes: UInt64? = nil, maxAgeMillis: Int64? = nil) {
        self.maxBytes = maxBytes
        self.maxAgeMillis = maxAgeMillis
    }
}

/// Plans retention: which start offset to trim a stream to. Whole committed ranges are
/// dropped from the front, oldest first, while the newest append in the range is older than
/// `maxAgeMillis` or the committed bytes exceed `maxBytes`; data is never rewritten.
///
/// Example: ranges `0..<100 (1 MiB, t=10)`, `100..<200 (1 MiB, t=20)`, `200..<250 (1 MiB,
/// t=30)` with `maxBytes` 2 MiB: the first range goes, the new start offset is 100.
public enum RetentionPlanner {
    public static func newStartOffset(_ stream: StreamMetadata, policy: RetentionPolicy, nowMillis: Int64) -> Int64? {
        var total = stream.ranges.reduce(UInt64(0)) { $0 + $1.bytes }
        var newStart: Int64? = nil
        for r in stream.ranges {
            let tooOld = policy.maxAgeMillis.map { r.maxAppendTimeMillis < nowMillis - $0 } ?? false
            let tooBig = policy.maxBytes.map { total > $0 } ?? false
            guard tooOld || tooBig else { break }
            total -= r.bytes
            newStart = r.endOffset
        }
        guard let start = newStart, start > stream.startOffset else { return nil }
        return start
    }
}
