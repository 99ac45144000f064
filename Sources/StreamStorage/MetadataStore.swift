import ObjectStore
import Support

/// Where stream metadata lives. On a single node it is `BucketMetadataStore` (a manifest in the
/// bucket, changed only by conditional writes); the cluster controller implements the same
/// operations on its metadata log.
///
/// Invariants: every operation is atomic and linearizable; operations naming a stream and an
/// epoch fail with `StreamStorageError.fenced` if the stream's epoch is newer.
public protocol StreamMetadataStore: Sendable {
    /// The current state (all streams, objects, pending deletions).
    func snapshot() async throws -> Manifest
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
    /// Moves a stream's start offset forward.
    func trim(_ id: StreamID, epoch: UInt64, to offset: Int64) async throws
    /// Forgets objects the caller deleted (they were listed by `Manifest.dueGarbage`).
    func forgetGarbage(_ ids: [UInt64]) async throws
}

/// Stream metadata persisted in the bucket as numbered manifest objects
/// `<prefix><20-digit version>`, each created with put-if-absent (SlateDB-style). A change is a
/// read-modify-write: apply it to the newest manifest and create the next number; if another
/// writer created that number first, reload and apply again (the change re-validates epochs and
/// offsets against the newer state).
///
/// Example: versions 41 and 42 exist; a commit writes 43 with put-if-absent. If 43 appeared
/// meanwhile, the store loads 43, re-applies the commit, and tries 44. Versions older than the
/// two newest are deleted after each successful write.
public actor BucketMetadataStore: StreamMetadataStore {
    let store: any ObjectStore
    let prefix: String
    let clock: any FloeClock
    let graceMillis: Int64
    let logger: Logger
    private var current: Manifest? = nil

    public init(store: any ObjectStore, prefix: String, clock: any FloeClock, graceMillis: Int64 = 10 * 60_000, logger: Logger = .discarding) {
        self.store = store
        self.prefix = prefix
        self.clock = clock
        self.graceMillis = graceMillis
        self.logger = logger
    }

    func key(_ version: UInt64) -> String {
        let digits = String(version)
        return prefix + String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    var nowMillis: Int64 { Int64(clock.wallTime().timeIntervalSince1970 * 1000) }

    /// Loads the newest manifest from the bucket (an empty one if there is none).
    func loadLatest() async throws -> Manifest {
        let versions = try await store.listAll(prefix: prefix).compactMap { UInt64($0.key.dropFirst(prefix.count)) }
        guard let latest = versions.max() else { return Manifest() }
        let k = key(latest)
        let data = try await store.get(k)
        let m = try Manifest.decode(data.bytes[...], key: k)
        guard m.version == latest else {
            throw StreamStorageError.corrupt(what: "stream manifest", key: k, detail: "holds version \(m.version)")
        }
        return m
    }

    private func update<R: Sendable>(_ change: (inout Manifest, Int64) throws -> R) async throws -> R {
        if current == nil { current = try await loadLatest() }
        for _ in 0..<32 {
            let base = current!
            var next = base
            let result = try change(&next, nowMillis)
            if next == base { return result }
            next.version = base.version + 1
            do {
                _ = try await store.put(key(next.version), next.encode(), condition: .ifAbsent)
            } catch ObjectStoreError.preconditionFailed {
                current = try await loadLatest()
                continue
            }
            current = next
            if next.version >= 3 {
                let old = key(next.version - 2)
                do { try await store.delete(old) } catch ObjectStoreError.notFound {} catch {
                    logger.warning("could not delete an old stream manifest", metadata: ["key": old, "error": "\(error)"])
                }
            }
            return result
        }
        throw StreamStorageError.metadataConflict(detail: "manifest under \(prefix) kept changing; gave up after 32 attempts")
    }

    /// Forgets the cached manifest so the next operation reads the bucket.
    public func invalidate() { current = nil }

    public func snapshot() async throws -> Manifest {
        if current == nil { current = try await loadLatest() }
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

    public func trim(_ id: StreamID, epoch: UInt64, to offset: Int64) async throws {
        let grace = graceMillis
        try await update { m, now in try m.trim(id, epoch: epoch, to: offset, nowMillis: now, graceMillis: grace) }
    }

    public func forgetGarbage(_ ids: [UInt64]) async throws {
        try await update { m, _ in m.forget(ids) }
    }
}
