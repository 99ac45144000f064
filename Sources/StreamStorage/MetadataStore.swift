import ObjectStore
import Support

/// Where stream metadata lives. On a single node it is `BucketMetadataStore` (a manifest in the
/// bucket, changed only by conditional writes); the cluster controller implements the same
/// operations on its metadata log.
///
/// Invariants: every operation is atomic and linearizable; operations naming a stream and an
/// epoch fail with `StreamStorageError.fenced` if the stream's epoch is newer.
public protocol StreamMetadataStore: Sendable {
    /// The current state (all streams, objects, pending deletions), possibly as last seen.
    func snapshot() async throws -> Manifest
    /// The newest state in the store (other writers' changes included).
    func latest() async throws -> Manifest
    /// Registers the stream at `epoch` (creating it empty) or raises its epoch; fails if
    /// `epoch` is older than the stream's.
    func openStream(_ id: StreamID, epoch: UInt64) async throws -> StreamMetadata
    /// Allocates a unique object id, garbage after `graceMillis` unless committed.
    func prepareObject() async throws -> UInt64
    /// The linearization point of an upload: registers `ranges` of object `objectID`. Ranges of
    /// streams whose epoch moved on are rejected and returned. Idempotent for a committed id.
    func commitUpload(objectID: UInt64, size: UInt64, ranges: [CommitRange]) async throws -> [StreamID]
    /// Swaps compaction inputs for outputs atomically, or fails leaving everything unchanged.
    func commitCompaction(inputs: [UInt64], outputs: [(DataObjectInfo, [(StreamID, ObjectRange)])]) async throws
    /// Key compaction's commit (see `Manifest.commitRewrite`): replaces the stream's ranges from
    /// its first through `ranges.last.endOffset` by `ranges` of the new object `info`.
    func commitRewrite(_ id: StreamID, epoch: UInt64, object info: DataObjectInfo, ranges: [ObjectRange]) async throws
    /// Moves a stream's start offset forward.
    func trim(_ id: StreamID, epoch: UInt64, to offset: Int64) async throws
    /// Forgets objects the caller deleted (they were listed by `Manifest.dueGarbage`).
    func forgetGarbage(_ ids: [UInt64]) async throws
}

/// Stream metadata persisted in the bucket as one manifest object `<prefix>current`, changed
/// only by compare-and-swap on its ETag (put if-match; put-if-absent for the first). A change is
/// a read-modify-write: apply it to the cached manifest and write it if the object is still the
/// one read; if another writer (another broker) changed it meanwhile, reload and apply again
/// (the change re-validates epochs and offsets against the newer state).
///
/// Why not numbered versions: with old versions deleted, a writer holding a stale copy could
/// create a deleted number again and fork the history (seen with two brokers on one bucket).
/// Buckets written as numbered versions (`<prefix><20 digits>`) are read once and migrated.
///
/// Example: a commit reads the manifest (version 42, ETag e1), applies itself and writes version
/// 43 if-match e1. If another broker wrote meanwhile, the write fails; the store reloads (version
/// 43 of the other broker), re-applies the commit and writes version 44.
public actor BucketMetadataStore: StreamMetadataStore {
    let store: any ObjectStore
    let prefix: String
    let clock: any FloeClock
    let graceMillis: Int64
    let logger: Logger
    private var current: Manifest? = nil
    /// ETag of `current` in the store; nil: the single object does not exist yet.
    private var etag: String? = nil
    /// Numbered versions found at load (pre-migration), deleted after the first write.
    private var legacyKeys: [String] = []

    public init(store: any ObjectStore, prefix: String, clock: any FloeClock, graceMillis: Int64 = 10 * 60_000, logger: Logger = .discarding) {
        self.store = store
        self.prefix = prefix
        self.clock = clock
        self.graceMillis = graceMillis
        self.logger = logger
    }

    var currentKey: String { prefix + "current" }

    func key(_ version: UInt64) -> String {
        let digits = String(version)
        return prefix + String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    var nowMillis: Int64 { Int64(clock.wallTime().timeIntervalSince1970 * 1000) }

    /// Loads the manifest from the bucket (an empty one if there is none) into the cache.
    func loadLatest() async throws {
        do {
            let data = try await store.get(currentKey)
            current = try Manifest.decode(data.bytes[...], key: currentKey)
            etag = data.etag
            return
        } catch ObjectStoreError.notFound {}
        let numbered = try await store.listAll(prefix: prefix).filter { UInt64($0.key.dropFirst(prefix.count)) != nil }
        legacyKeys = numbered.map(\.key)
        etag = nil
        guard let latest = numbered.compactMap({ UInt64($0.key.dropFirst(prefix.count)) }).max() else {
            current = Manifest()
            return
        }
        let k = key(latest)
        let m = try Manifest.decode(try await store.get(k).bytes[...], key: k)
        guard m.version == latest else {
            throw StreamStorageError.corrupt(what: "stream manifest", key: k, detail: "holds version \(m.version)")
        }
        current = m
    }

    private func update<R: Sendable>(_ change: (inout Manifest, Int64) throws -> R) async throws -> R {
        if current == nil { try await loadLatest() }
        var fresh = false
        for _ in 0..<32 {
            let base = current!
            var next = base
            let result: R
            do {
                result = try change(&next, nowMillis)
            } catch let error as StreamStorageError where !fresh {
                // Other brokers write this manifest too: a change refused by a cached copy is
                // re-checked against the newest version before the refusal stands.
                _ = error
                try await loadLatest()
                fresh = true
                continue
            }
            if next == base { return result }
            next.version = base.version + 1
            do {
                etag = try await store.put(currentKey, next.encode(), condition: etag.map { .ifMatch($0) } ?? .ifAbsent)
            } catch ObjectStoreError.preconditionFailed {
                try await loadLatest()
                fresh = true
                continue
            }
            current = next
            if !legacyKeys.isEmpty {
                let old = legacyKeys
                legacyKeys = []
                do { _ = try await store.deleteMany(old) } catch {
                    logger.warning("could not delete pre-migration stream manifests", metadata: ["count": "\(old.count)", "error": "\(error)"])
                }
            }
            return result
        }
        throw StreamStorageError.metadataConflict(detail: "manifest under \(prefix) kept changing; gave up after 32 attempts")
    }

    /// Forgets the cached manifest so the next operation reads the bucket.
    public func invalidate() { current = nil }

    public func snapshot() async throws -> Manifest {
        if current == nil { try await loadLatest() }
        return current!
    }

    public func latest() async throws -> Manifest {
        try await loadLatest()
        return current!
    }

    public func openStream(_ id: StreamID, epoch: UInt64) async throws -> StreamMetadata {
        try await update { m, _ in try m.openStream(id, epoch: epoch) }
    }

    public func prepareObject() async throws -> UInt64 {
        let grace = graceMillis
        return try await update { m, now in m.prepare(deadlineMillis: now + grace) }
    }

    public func commitUpload(objectID: UInt64, size: UInt64, ranges: [CommitRange]) async throws -> [StreamID] {
        let grace = graceMillis
        return try await update { m, now in
            try m.commitUpload(objectID: objectID, size: size, ranges: ranges, nowMillis: now, graceMillis: grace)
        }
    }

    public func commitCompaction(inputs: [UInt64], outputs: [(DataObjectInfo, [(StreamID, ObjectRange)])]) async throws {
        let grace = graceMillis
        try await update { m, now in
            // A retry of a commit that landed: every output is already committed.
            if !outputs.isEmpty && outputs.allSatisfy({ m.objects[$0.0.objectID] != nil }) { return }
            try m.commitCompaction(inputs: inputs, outputs: outputs, nowMillis: now, graceMillis: grace)
        }
    }

    public func commitRewrite(_ id: StreamID, epoch: UInt64, object info: DataObjectInfo, ranges: [ObjectRange]) async throws {
        let grace = graceMillis
        try await update { m, now in
            try m.commitRewrite(id, epoch: epoch, object: info, ranges: ranges, nowMillis: now, graceMillis: grace)
        }
    }

    public func trim(_ id: StreamID, epoch: UInt64, to offset: Int64) async throws {
        let grace = graceMillis
        try await update { m, now in try m.trim(id, epoch: epoch, to: offset, nowMillis: now, graceMillis: grace) }
    }

    public func forgetGarbage(_ ids: [UInt64]) async throws {
        try await update { m, _ in m.forget(ids) }
    }
}
