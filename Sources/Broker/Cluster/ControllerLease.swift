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

/// Controller election through the bucket: Support's ``LeaseElector`` (the rules, shared with
/// the operator's Kubernetes election) over an object written only with conditional writes.
///
/// The lease's version is the object's ETag. No object: create it (put-if-absent) at epoch 1. We
/// hold it: renew with if-match on the ETag we wrote last, without reading first (one request).
/// Another holder: wait until the object has not changed for its duration of our own clock, then
/// take it with if-match at epoch + 1. A released lease (holder -1) is free at once, and so is
/// one held by an earlier process with our own node id (that process is gone: this one already
/// took over its WAL). A leader that has not renewed for `renewDeadline`, or whose conditional
/// write is refused, has lost the lease and must stop writing; the epoch record it wrote into the
/// metadata log fences it anyway.
public final class ControllerLease: Sendable {
    public typealias Timing = LeaseElector<String>.Timing

    public enum Outcome: Sendable, Equatable {
        /// We hold the lease at this epoch (newly or still). `expiredHolder`: the broker whose
        /// expired lease we just took (it stopped renewing for a whole lease duration).
        case leading(epoch: UInt64, acquired: Bool, expiredHolder: Int32? = nil)
        /// Someone else holds it (nil: nobody could be read).
        case following(LeaseDocument?, lostLeadership: Bool)
    }

    struct State {
        var elector: LeaseElector<String>
        /// The lease as we last wrote it, while we hold it.
        var held: (doc: LeaseDocument, etag: String)?
    }

    let store: any ObjectStore
    let key: String
    let node: Int32
    let incarnation: String
    let timing: Timing
    let clock: any FloeClock
    private let address: Mutex<(String, Int32)>
    private let state: Mutex<State>

    public init(store: any ObjectStore, key: String, node: Int32, incarnation: String, host: String, port: Int32,
                timing: Timing = Timing(duration: .seconds(6), renewDeadline: .seconds(4), retry: .milliseconds(500)),
                clock: any FloeClock = RealClock()) {
        self.store = store
        self.key = key
        self.node = node
        self.incarnation = incarnation
        self.timing = timing
        self.clock = clock
        self.address = Mutex((host, port))
        self.state = Mutex(State(elector: LeaseElector(timing: timing)))
    }

    /// The address written into the lease (where other brokers reach the controller).
    public func setAddress(host: String, port: Int32) { address.withLock { $0 = (host, port) } }

    /// The epoch we hold the lease at, if we still hold it within the renew deadline.
    public var leaderEpoch: UInt64? {
        state.withLock { s in s.elector.leads(at: clock.now()) ? s.held?.doc.epoch : nil }
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

    /// Writes `doc` under `condition` and records the outcome in the elector; returns whether it
    /// landed (false: someone else changed the lease).
    private func write(_ doc: LeaseDocument, condition: WriteCondition, at now: MonotonicInstant) async throws -> Bool {
        let bytes = try DocumentEnvelope.encode(doc, kind: .controllerLease, version: LeaseDocument.formatVersion)
        let tag: String
        do {
            tag = try await store.put(key, bytes, condition: condition)
        } catch ObjectStoreError.preconditionFailed {
            state.withLock { s in
                s.elector.conflicted()
                s.held = nil
            }
            return false
        } catch {
            recordFailure()
            throw error
        }
        state.withLock { s in
            s.held = (doc, tag)
            _ = s.elector.written(now: now)
        }
        return true
    }

    /// One round of the election: read, decide, write. Errors of the store are thrown (a leader
    /// that keeps failing loses the lease at its renew deadline).
    public func tick() async throws -> Outcome {
        let wasLeading = state.withLock { $0.elector.isLeader }
        if let held = state.withLock({ $0.held }) {
            let doc = document(epoch: held.doc.epoch)
            if try await write(doc, condition: .ifMatch(held.etag), at: clock.now()) {
                return .leading(epoch: doc.epoch, acquired: !wasLeading)
            }
        }
        let read: (LeaseDocument, String)?
        do {
            read = try await self.read()
        } catch {
            recordFailure()
            throw error
        }
        let now = clock.now()
        let observation = read.map { doc, etag in
            LeaseElector<String>.Observation(
                holder: doc.holder == -1 || (doc.holder == node && doc.incarnation != incarnation) ? .free
                    : doc.holder == node ? .us : .other,
                version: etag, duration: doc.durationMillis > 0 ? .milliseconds(doc.durationMillis) : nil)
        }
        let (decision, lostNow) = state.withLock { $0.elector.decide(observation, now: now) }
        let lost = lostNow || (wasLeading && !state.withLock { $0.elector.isLeader })
        if lostNow { state.withLock { $0.held = nil } }
        switch decision {
        case .create:
            let doc = document(epoch: 1)
            if try await write(doc, condition: .ifAbsent, at: now) { return .leading(epoch: 1, acquired: true) }
        case .renew:
            let (current, etag) = read!
            let doc = document(epoch: current.epoch)
            if try await write(doc, condition: .ifMatch(etag), at: now) {
                return .leading(epoch: doc.epoch, acquired: !wasLeading)
            }
        case .takeOver(let expired):
            let (current, etag) = read!
            let doc = document(epoch: current.epoch + 1)
            if try await write(doc, condition: .ifMatch(etag), at: now) {
                let gone = expired && current.holder >= 0 && current.holder != node ? current.holder : nil
                return .leading(epoch: doc.epoch, acquired: true, expiredHolder: gone)
            }
        case .wait:
            break
        }
        return .following(read?.0, lostLeadership: lost)
    }

    /// A read or write failed without telling who holds the lease: past the renew deadline,
    /// leadership (and the lease we hold) ends.
    private func recordFailure() {
        state.withLock { s in
            if s.elector.failed(now: clock.now()) { s.held = nil }
        }
    }

    /// Releases a held lease (clean shutdown), so another broker takes over at once.
    public func release() async {
        let held = state.withLock { s -> (doc: LeaseDocument, etag: String)? in
            defer {
                s.held = nil
                s.elector.conflicted()
            }
            return s.held
        }
        guard let held else { return }
        var doc = held.doc
        doc.holder = -1
        let bytes = try? DocumentEnvelope.encode(doc, kind: .controllerLease, version: LeaseDocument.formatVersion)
        if let bytes { _ = try? await store.put(key, bytes, condition: .ifMatch(held.etag)) }
    }
}
