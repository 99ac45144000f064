import Synchronization

/// A record's position in a write-ahead log. Positions are consecutive in append order and
/// never reused by the same log (they continue after recovery).
public typealias WALPosition = UInt64

/// The write-ahead log contract shared by the object-store WAL and the local-file WAL.
///
/// Invariants:
/// - `append` is synchronous and ordered: records become durable, and their tickets complete,
///   in call order. A ticket that completes successfully means the record, and every record
///   appended before it, is durable.
/// - After a failure (I/O error, or fencing by a newer writer) every pending and later append
///   fails; the log must be reopened (which recovers it).
/// - `recovered` holds the records found when the log was opened that were not trimmed, in
///   position order. Records after a lost one may be among them (they were never
///   acknowledged); the caller replays per stream and stops a stream at its first gap.
/// - `trim(through:)` lets the log delete records at positions up to `position`; deletion may
///   be delayed.
public protocol WriteAheadLog: AnyObject, Sendable {
    /// A human-readable name (directory or bucket prefix) for errors and logs.
    var name: String { get }
    var recovered: [(WALPosition, WALRecord)] { get }
    /// Suspends until the log's buffer has room for `bytes` more bytes (backpressure). The
    /// reservation is consumed by the next `append` of that size.
    func reserve(bytes: Int) async throws
    /// Returns a reservation that will not be used (the append was refused before the log).
    func unreserve(bytes: Int)
    /// Enqueues `record`. The reservation must have been made with `reserve(bytes:)` for
    /// `record`'s size (the header plus payload, `WALRecord.headerSize + payload`).
    func append(_ record: WALRecord) throws -> WALAppendTicket
    func trim(through position: WALPosition) async throws
    /// Starts writing what is buffered now instead of waiting for the size or time trigger.
    func flush()
    /// Waits until everything appended is durable (or failed), then stops background work.
    func close() async throws
    /// Stops at once, as a crash would: pending appends fail, nothing more is written. Returns
    /// when background work has stopped (writes already issued may still land).
    func abandon() async
    /// When the oldest record not yet durable (nor failed) was appended; nil when none is
    /// pending. Health checks use it to tell a stalled log from a quiet one.
    var oldestPendingAppend: ContinuousClock.Instant? { get }
}

extension WriteAheadLog {
    public var oldestPendingAppend: ContinuousClock.Instant? { nil }
}

/// Completes when an appended record is durable (or the log failed).
public final class WALAppendTicket: Sendable {
    public typealias Callback = @Sendable (Result<WALPosition, any Error>) -> Void
    private enum State {
        case pending([CheckedContinuation<WALPosition, any Error>], [Callback])
        case done(Result<WALPosition, any Error>)
    }
    private let state = Mutex(State.pending([], []))
    /// The record's position, assigned at append.
    public let position: WALPosition

    init(position: WALPosition) { self.position = position }

    func complete(_ result: Result<WALPosition, any Error>) {
        let (waiters, callbacks): ([CheckedContinuation<WALPosition, any Error>], [Callback]) = state.withLock { s in
            guard case let .pending(w, c) = s else { return ([], []) }
            s = .done(result)
            return (w, c)
        }
        for w in waiters { w.resume(with: result) }
        for c in callbacks { c(result) }
    }

    /// The record's position once durable.
    public func wait() async throws -> WALPosition {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<WALPosition, any Error>) in
            if let done = outcomeOrEnqueue({ waiters, _ in waiters.append(c) }) { c.resume(with: done) }
        }
    }

    /// Calls `callback` once with the outcome: at once if the record is already durable (or
    /// failed), otherwise on the thread that completes it (the WAL's writer). It must be short
    /// and must not block: the WAL's next commit waits for it.
    public func onCompletion(_ callback: @escaping Callback) {
        if let done = outcomeOrEnqueue({ _, callbacks in callbacks.append(callback) }) { callback(done) }
    }

    /// The outcome if it is known; otherwise nil, after `enqueue` has added the caller.
    private func outcomeOrEnqueue(
        _ enqueue: (inout [CheckedContinuation<WALPosition, any Error>], inout [Callback]) -> Void
    ) -> Result<WALPosition, any Error>? {
        state.withLock { s in
            switch s {
            case let .done(r): return r
            case .pending(var waiters, var callbacks):
                enqueue(&waiters, &callbacks)
                s = .pending(waiters, callbacks)
                return nil
            }
        }
    }
}

/// A byte budget with FIFO waiters: the bound on a log's buffered, not-yet-durable bytes.
/// One reservation larger than the limit is admitted when nothing else is reserved.
final class ByteBudget: Sendable {
    private struct State {
        var used = 0
        var waiters: [(Int, CheckedContinuation<Void, any Error>)] = []
        var failure: (any Error)? = nil
    }
    let limit: Int
    private let state = Mutex(State())

    init(limit: Int) { self.limit = limit }

    func reserve(_ bytes: Int) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            let outcome: Result<Void, any Error>? = state.withLock { s in
                if let f = s.failure { return .failure(f) }
                if s.waiters.isEmpty && (s.used == 0 || s.used + bytes <= limit) {
                    s.used += bytes
                    return .success(())
                }
                s.waiters.append((bytes, c))
                return nil
            }
            if let outcome { c.resume(with: outcome) }
        }
    }

    func release(_ bytes: Int) {
        let ready: [CheckedContinuation<Void, any Error>] = state.withLock { s in
            s.used -= bytes
            var ready: [CheckedContinuation<Void, any Error>] = []
            while let (n, c) = s.waiters.first, s.used == 0 || s.used + n <= limit {
                s.used += n
                s.waiters.removeFirst()
                ready.append(c)
            }
            return ready
        }
        for c in ready { c.resume() }
    }

    /// Fails current and future waiters (the log failed or closed).
    func fail(_ error: any Error) {
        let waiters: [CheckedContinuation<Void, any Error>] = state.withLock { s in
            s.failure = error
            defer { s.waiters = [] }
            return s.waiters.map(\.1)
        }
        for w in waiters { w.resume(throwing: error) }
    }
}
