/// When compaction rewrites objects.
///
/// The shape compaction drives the bucket towards (its fixpoint): every stream's data sits in
/// objects of its own of at least `splitStreamBytes`, except the tail of streams too slow to
/// fill one, which shares mixed objects; no byte is rewritten more than `maxLevel` times.
public struct CompactionPolicy: Sendable, Equatable {
    /// A stream with at least this many live bytes in one job gets an object of its own, and a
    /// single-stream object at least this big is final (never rewritten).
    public var splitStreamBytes: UInt64
    /// The most input bytes one job reads.
    public var maxJobBytes: UInt64
    /// An object written by a job is one level above its inputs (uploads are level 0); objects
    /// at this level are final. Every byte is therefore rewritten at most `maxLevel` times.
    public var maxLevel: UInt8
    /// Inputs a merge at level 1 or above needs (level 0 merges need 2), so each level merges
    /// several objects into one instead of rewriting a pair over and over.
    public var minMergeInputs: Int

    public init(splitStreamBytes: UInt64 = 4 << 20, maxJobBytes: UInt64 = 64 << 20, maxLevel: UInt8 = 3, minMergeInputs: Int = 4) {
        self.splitStreamBytes = splitStreamBytes
        self.maxJobBytes = maxJobBytes
        self.maxLevel = maxLevel
        self.minMergeInputs = max(2, minMergeInputs)
    }

    /// The level of key compaction's outputs (`StreamStore.rewrite`): above every `maxLevel`,
    /// so object compaction never takes them as inputs, and it marks the stream's cleaned
    /// prefix in the manifest (the ranges from the start held by such objects).
    public static let keyCleanedLevel: UInt8 = 200

    /// Compaction off: nothing is ever a candidate.
    public static let disabled = CompactionPolicy(maxLevel: 0)
}

/// One compaction job: read `inputs`, write one object per stream in `ownObjectStreams` and
/// one multi-stream object with `mergedStreams`, all at `outputLevel`, then swap them in with
/// one metadata commit.
public struct CompactionJob: Sendable, Equatable {
    public var inputs: [UInt64]
    public var ownObjectStreams: [StreamID]
    public var mergedStreams: [StreamID]
    public var outputLevel: UInt8
}

/// Plans compaction from metadata alone (a pure function; `CompactionExecutor` carries a
/// plan out).
///
/// An object is *final* if it is at `maxLevel`, or holds one stream and is at least
/// `splitStreamBytes` big; every other object is a candidate. Candidates are grouped by level
/// and taken in id order (oldest first) into jobs of at most `maxJobBytes`. In a job, streams
/// with at least `splitStreamBytes` live bytes get their own object (final by size), the rest
/// share one object; outputs are one level above the inputs. A job is kept only if it splits a
/// multi-stream object or merges enough inputs (2 at level 0, `minMergeInputs` above).
///
/// Why repeated planning converges: a job's inputs are all at level L < `maxLevel` and its
/// outputs at L + 1, so the sum over live bytes of (`maxLevel` − level) falls with every job and
/// never rises except by new uploads; each byte is written at most `maxLevel` times by
/// compaction (write amplification ≤ 1 + `maxLevel`, plus object overhead). Once data stops
/// arriving, at most about `maxLevel` + 1 rounds of planning find work
/// (`CompactionConvergenceTests` checks both on random manifests).
///
/// Example (split 4 MiB): level-0 objects 1 (2 MiB: streams A, B) and 2 (3 MiB: streams A, C)
/// with A holding 4.5 MiB in total form one job: A gets its own level-1 object (final), B and C
/// share one level-1 object, which waits for three more level-1 candidates before it is merged.
public enum CompactionPlanner {
    public static func plan(_ manifest: Manifest, policy: CompactionPolicy) -> [CompactionJob] {
        var perObject: [UInt64: [StreamID: UInt64]] = [:]
        for stream in manifest.streams.values {
            for r in stream.ranges { perObject[r.objectID, default: [:]][stream.streamID, default: 0] += r.bytes }
        }
        func isFinal(_ o: DataObjectInfo) -> Bool {
            o.level >= policy.maxLevel || (o.streamCount <= 1 && o.size >= policy.splitStreamBytes)
        }
        let candidates = manifest.objects.values.filter { !isFinal($0) }
            .sorted { ($0.level, $0.objectID) < ($1.level, $1.objectID) }
        var jobs: [CompactionJob] = []
        var current: [DataObjectInfo] = []
        var currentBytes: UInt64 = 0
        func close() {
            defer { current = []; currentBytes = 0 }
            guard let level = current.first?.level else { return }
            var totals: [StreamID: UInt64] = [:]
            var splits = false
            for o in current {
                let streams = perObject[o.objectID] ?? [:]
                for (s, b) in streams { totals[s, default: 0] += b }
                if streams.count > 1 && streams.values.contains(where: { $0 >= policy.splitStreamBytes }) { splits = true }
            }
            let own = totals.filter { $0.value >= policy.splitStreamBytes }.keys.sorted()
            let merged = totals.filter { $0.value < policy.splitStreamBytes }.keys.sorted()
            let mergesEnough = current.count >= (level == 0 ? 2 : policy.minMergeInputs)
            guard splits || (mergesEnough && !totals.isEmpty) else { return }
            jobs.append(CompactionJob(inputs: current.map(\.objectID), ownObjectStreams: own, mergedStreams: merged, outputLevel: level + 1))
        }
        for o in candidates {
            if let first = current.first, first.level != o.level || currentBytes + o.size > policy.maxJobBytes { close() }
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
