import Foundation
import ObjectStore
import Support
import Synchronization

/// The controller lease object (`<prefix>cluster/controller`), written only with conditional
/// writes: create-if-absent to take a free lease, if-match to renew it or take an expired one.
public struct LeaseDocument: Codable, Sendable, Equatable {
    static let formatVersion: UInt16 = 1
    /// The holding broker (-1: released).
    public var holder: Int32
    public var incarnation: String
    /// Raised by one at every change of holder; the controller epoch of the metadata log.
    public var epoch: UInt64
    public var host: String
    public var port: Int32
    public var durationMillis: Int64
    /// Wall-clock time of the last renewal; for people only (expiry uses the reader's own clock).
    public var renewedMillis: Int64
}

/// Controller election through the bucket.
///
/// Rules (the same as Kubernetes' client-go election, over an object instead of a Lease):
/// 1. No lease object: create it (put-if-absent) holding it at epoch 1.
/// 2. We hold it: renew (put if-match) every `renewInterval`.
/// 3. Another holder: the lease is expired only when the object has not changed for
///    `duration` **of our own monotonic clock** since we first saw that version (remote clocks
///    are never compared with ours); then take it (if-match, epoch + 1). A released lease
///    (holder -1) is free at once, and so is one held by an earlier process with our own node id
///    (that process is gone: this one already took over its WAL).
/// 4. A leader that has not renewed successfully for `renewDeadline` has lost the lease and
///    must stop writing; the epoch record it wrote into the metadata log fences it anyway.
/// Two candidates racing for the lease cannot both win: the loser's conditional write fails.
public final class ControllerLease: Sendable {
    public struct Timing: Sendable {
        public var duration: Duration
        public var renewDeadline: Duration
        public var retry: Duration
        public init(duration: Duration = .seconds(6), renewDeadline: Duration = .seconds(4), retry: Duration = .milliseconds(500)) {
            precondition(retry < renewDeadline && renewDeadline < duration, "lease timing needs retry < renewDeadline < duration")
            self.duration = duration
            self.renewDeadline = renewDeadline
            self.retry = retry
        }
    }

    public enum Outcome: Sendable, Equatable {
        /// We hold the lease at this epoch (newly or still). `expiredHolder`: the broker whose
        /// expired lease we just took (it stopped renewing for a whole lease duration).
        case leading(epoch: UInt64, acquired: Bool, expiredHolder: Int32? = nil)
        /// Someone else holds it (nil: nobody could be read).
        case following(LeaseDocument?, lostLeadership: Bool)
    }

    struct State {
        var held: (doc: LeaseDocument, etag: String, renewedAt: MonotonicInstant)?
        var observed: (etag: String, at: MonotonicInstant)?
    }

    let store: any ObjectStore
    let key: String
    let node: Int32
    let incarnation: String
    let timing: Timing
    let clock: any FloeClock
    private let address: Mutex<(String, Int32)>
    private let state = Mutex(State())

    public init(store: any ObjectStore, key: String, node: Int32, incarnation: String, host: String, port: Int32,
                timing: Timing = Timing(), clock: any FloeClock = RealClock()) {
        self.store = store
        self.key = key
        self.node = node
        self.incarnation = incarnation
        self.timing = timing
        self.clock = clock
        self.address = Mutex((host, port))
    }

    /// The address written into the lease (where other brokers reach the controller).
    public func setAddress(host: String, port: Int32) { address.withLock { $0 = (host, port) } }

    /// The epoch we hold the lease at, if we still hold it within the renew deadline.
    public var leaderEpoch: UInt64? {
        state.withLock { s in
            guard let h = s.held, clock.now().duration(since: h.renewedAt) < timing.renewDeadline else { return nil }
            return h.doc.epoch
        }
    }

    func document(epoch: UInt64) -> LeaseDocument {
        let (host, port) = address.withLock { $0 }
        return LeaseDocument(holder: node, incarnation: incarnation, epoch: epoch, host: host, port: port,
                             durationMillis: timing.duration.millisecondsClamped,
                             renewedMillis: Int64(clock.wallTime().timeIntervalSince1970 * 1000))
    }

    /// Reads the lease (nil if absent).
    public func read() async throws -> (LeaseDocument, String)? {
        do {
            let data = try await store.get(key)
            let doc = try DocumentEnvelope.decode(LeaseDocument.self, from: data.bytes, kind: .controllerLease,
                                                  versions: 1...LeaseDocument.formatVersion, key: key)
            return (doc, data.etag)
        } catch ObjectStoreError.notFound {
            return nil
        }
    }

    private func write(_ doc: LeaseDocument, condition: WriteCondition) async throws -> String? {
        let bytes = try DocumentEnvelope.encode(doc, kind: .controllerLease, version: LeaseDocument.formatVersion)
        do {
            return try await store.put(key, bytes, condition: condition)
        } catch ObjectStoreError.preconditionFailed {
            return nil
        }
    }

    /// One round of the election: read, decide, write. Errors of the store are thrown (a leader
    /// that keeps failing loses the lease at its renew deadline).
    public func tick() async throws -> Outcome {
        let wasLeading = leaderEpoch != nil
        // A holder renews with the ETag it wrote last, without reading first (one request).
        if let held = state.withLock({ $0.held }) {
            let doc = document(epoch: held.doc.epoch)
            let now = clock.now()
            if let tag = try await write(doc, condition: .ifMatch(held.etag)) {
                state.withLock { $0.held = (doc, tag, now) }
                return .leading(epoch: doc.epoch, acquired: !wasLeading)
            }
        }
        guard let (current, etag) = try await read() else {
            let doc = document(epoch: 1)
            if let tag = try await write(doc, condition: .ifAbsent) {
                state.withLock { $0.held = (doc, tag, clock.now()) }
                return .leading(epoch: 1, acquired: true)
            }
            return .following(nil, lostLeadership: lose(wasLeading))
        }
        let now = clock.now()
        if current.holder == node && current.incarnation == incarnation {
            let doc = document(epoch: current.epoch)
            if let tag = try await write(doc, condition: .ifMatch(etag)) {
                state.withLock { $0.held = (doc, tag, now) }
                return .leading(epoch: doc.epoch, acquired: !wasLeading)
            }
            return .following(current, lostLeadership: lose(wasLeading))
        }
        let lost = lose(wasLeading)
        let expired = state.withLock { s -> Bool in
            if s.observed?.etag != etag { s.observed = (etag, now) }
            return now.duration(since: s.observed!.at) >= timing.duration
        }
        if current.holder == -1 || current.holder == node || expired {
            let doc = document(epoch: current.epoch + 1)
            if let tag = try await write(doc, condition: .ifMatch(etag)) {
                state.withLock { $0.held = (doc, tag, now) }
                let gone = expired && current.holder >= 0 && current.holder != node ? current.holder : nil
                return .leading(epoch: doc.epoch, acquired: true, expiredHolder: gone)
            }
        }
        return .following(current, lostLeadership: lost)
    }

    private func lose(_ wasLeading: Bool) -> Bool {
        state.withLock { $0.held = nil }
        return wasLeading
    }

    /// Releases a held lease (clean shutdown), so another broker takes over at once.
    public func release() async {
        guard let held = state.withLock({ $0.held }) else { return }
        state.withLock { $0.held = nil }
        var doc = held.doc
        doc.holder = -1
        _ = try? await write(doc, condition: .ifMatch(held.etag))
    }
}
