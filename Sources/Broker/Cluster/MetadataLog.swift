import Foundation
import ObjectStore
import Support
import Synchronization

/// The cluster metadata log in the bucket, and this broker's replica of the state it builds.
///
/// Layout (see docs/cluster.md):
/// - `<prefix>log/<20-digit offset>`: one `MetadataLogEntry` per object, offsets 1, 2, 3, …,
///   each created with put-if-absent by the active controller, so two writers can never both
///   commit the same offset;
/// - `<prefix>snapshot/<20-digit offset>`: the state after applying every entry up to the offset.
///
/// Replay rule: entries apply in offset order; an entry whose controller epoch is below the
/// highest epoch already applied is skipped (a deposed controller's late write).
///
/// Example: a follower at offset 41 reads `log/…42` and `log/…43`, then gets "not found" for 44:
/// it is caught up. The controller appends by creating `log/…44`; if that fails because 44
/// exists, it catches up first and, if 44 came from a newer controller epoch, steps down.
public final class MetadataLog: Sendable {
    let store: any ObjectStore
    let prefix: String
    let logger: Logger
    /// Take a snapshot after this many entries.
    let snapshotEvery: UInt64
    /// Entries kept behind the newest snapshot for followers that lag.
    let keepBehindSnapshot: UInt64
    private let state = Mutex<(state: ClusterState, offset: UInt64, snapshotOffset: UInt64)>((ClusterState(), 0, 0))
    private let reading = AsyncLock()
    private let observers = Mutex<[@Sendable (ClusterState, ClusterState) -> Void]>([])

    public init(store: any ObjectStore, prefix: String = "cluster/", logger: Logger = .discarding,
                snapshotEvery: UInt64 = 500, keepBehindSnapshot: UInt64 = 200) {
        self.store = store
        self.prefix = prefix
        self.logger = logger
        self.snapshotEvery = snapshotEvery
        self.keepBehindSnapshot = keepBehindSnapshot
    }

    static func number(_ n: UInt64) -> String {
        let digits = String(n)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }
    func entryKey(_ offset: UInt64) -> String { prefix + "log/" + Self.number(offset) }
    func snapshotKey(_ offset: UInt64) -> String { prefix + "snapshot/" + Self.number(offset) }

    /// The state as of the last applied entry.
    public var current: ClusterState { state.withLock { $0.state } }
    /// The offset of the last applied entry (0: none).
    public var offset: UInt64 { state.withLock { $0.offset } }

    /// Calls `observer(old, new)` after every change of the replicated state.
    public func observe(_ observer: @escaping @Sendable (ClusterState, ClusterState) -> Void) {
        observers.withLock { $0.append(observer) }
    }

    private func publish(_ old: ClusterState, _ new: ClusterState) {
        guard old != new else { return }
        for o in observers.withLock({ $0 }) { o(old, new) }
    }

    /// Loads the newest readable snapshot, then every entry after it.
    public func load() async throws {
        try await reading.withLock {
            try await self.loadSnapshot()
            _ = try await self.readForward()
        }
    }

    private func loadSnapshot() async throws {
        let offsets = try await store.listAll(prefix: prefix + "snapshot/").compactMap { UInt64($0.key.dropFirst((prefix + "snapshot/").count)) }
        for o in offsets.sorted(by: >) {
            let key = snapshotKey(o)
            do {
                let data = try await store.get(key)
                let snap = try DocumentEnvelope.decode(MetadataSnapshot.self, from: data.bytes, kind: .metadataSnapshot,
                                                       versions: 1...ClusterState.formatVersion, key: key)
                let (old, new) = state.withLock { s -> (ClusterState, ClusterState) in
                    let old = s.state
                    if snap.offset > s.offset { s = (snap.state, snap.offset, snap.offset) }
                    return (old, s.state)
                }
                publish(old, new)
                return
            } catch let error as BrokerError {
                logger.error("metadata snapshot unreadable; trying an older one", metadata: ["key": key, "error": "\(error)"])
            } catch ObjectStoreError.notFound {
                continue  // deleted after a newer one was written
            }
        }
    }

    /// Reads entries after the current offset until one is missing; returns whether any applied.
    /// `expectedEnd`: the controller's offset, if known; a follower behind a snapshot whose
    /// entries were deleted reloads from the snapshot.
    @discardableResult
    public func catchUp(expectedEnd: UInt64? = nil) async throws -> Bool {
        try await reading.withLock {
            var changed = try await self.readForward()
            if let end = expectedEnd, self.offset < end {
                try await self.loadSnapshot()
                changed = try await self.readForward() || changed
            }
            return changed
        }
    }

    private func readForward() async throws -> Bool {
        var applied = false
        while true {
            let next = offset + 1
            let key = entryKey(next)
            let data: ObjectData
            do {
                data = try await store.get(key)
            } catch ObjectStoreError.notFound {
                return applied
            }
            let entry = try DocumentEnvelope.decode(MetadataLogEntry.self, from: data.bytes, kind: .metadataLogEntry,
                                                    versions: 1...MetadataLogEntry.formatVersion, key: key)
            guard entry.offset == next else {
                throw BrokerError.corruptDocument(key: key, reason: "holds offset \(entry.offset), expected \(next)")
            }
            apply(entry)
            applied = true
        }
    }

    /// Applies an entry at `offset + 1` (read or just written).
    private func apply(_ entry: MetadataLogEntry) {
        let (old, new) = state.withLock { s -> (ClusterState, ClusterState) in
            let old = s.state
            guard entry.offset == s.offset + 1 else { return (old, old) }
            s.offset = entry.offset
            if entry.controllerEpoch >= s.state.controllerEpoch {
                for r in entry.records { r.apply(to: &s.state) }
            } else {
                logger.warning("metadata log entry of a deposed controller ignored", metadata: [
                    "offset": "\(entry.offset)", "entry.epoch": "\(entry.controllerEpoch)", "epoch": "\(s.state.controllerEpoch)"])
            }
            return (old, s.state)
        }
        publish(old, new)
    }

    /// Appends `records` as the controller of `epoch`. Fails with `BrokerError.notController` if
    /// a newer controller has written (this one is deposed and must stop).
    @discardableResult
    public func append(_ records: [MetadataRecord], epoch: UInt64, nowMillis: Int64 = wallMillis()) async throws -> UInt64 {
        guard !records.isEmpty else { return offset }
        for _ in 0..<8 {
            let at = offset + 1
            if current.controllerEpoch > epoch { throw BrokerError.notController(epoch: epoch, current: current.controllerEpoch) }
            let entry = MetadataLogEntry(offset: at, controllerEpoch: epoch, writtenMillis: nowMillis, records: records)
            let bytes = try DocumentEnvelope.encode(entry, kind: .metadataLogEntry, version: MetadataLogEntry.formatVersion)
            do {
                _ = try await store.put(entryKey(at), bytes, condition: .ifAbsent)
            } catch ObjectStoreError.preconditionFailed {
                try await catchUp()
                continue
            }
            try await reading.withLock { self.apply(entry) }
            if at % snapshotEvery == 0 { await writeSnapshot() }
            return at
        }
        throw BrokerError.conflict(key: entryKey(offset + 1), attempts: 8)
    }

    /// Writes a snapshot at the current offset and deletes entries and snapshots it makes
    /// unnecessary (keeping `keepBehindSnapshot` entries for lagging followers).
    func writeSnapshot() async {
        let (snap, previous) = state.withLock { s in (MetadataSnapshot(offset: s.offset, state: s.state), s.snapshotOffset) }
        do {
            let bytes = try DocumentEnvelope.encode(snap, kind: .metadataSnapshot, version: ClusterState.formatVersion)
            _ = try await store.put(snapshotKey(snap.offset), bytes, condition: .ifAbsent)
            state.withLock { $0.snapshotOffset = max($0.snapshotOffset, snap.offset) }
            var doomed: [String] = []
            if snap.offset > keepBehindSnapshot {
                let below = snap.offset - keepBehindSnapshot
                let low = previous > keepBehindSnapshot ? previous - keepBehindSnapshot : 1
                if low < below { doomed += (low..<below).map(entryKey) }
            }
            for info in try await store.listAll(prefix: prefix + "snapshot/") {
                if let o = UInt64(info.key.dropFirst((prefix + "snapshot/").count)), o < snap.offset { doomed.append(info.key) }
            }
            if !doomed.isEmpty { _ = try await store.deleteMany(doomed) }
            logger.info("metadata snapshot written", metadata: ["offset": "\(snap.offset)", "deleted": "\(doomed.count)"])
        } catch ObjectStoreError.preconditionFailed {
            // Another controller wrote this snapshot already.
        } catch {
            logger.warning("metadata snapshot failed; the log keeps growing until the next one", metadata: ["error": "\(error)"])
        }
    }
}
