import Support
import Synchronization

/// A reconcile request: just the namespace and name of the primary object (level-triggered:
/// the reconciler reads the current state itself, never an event).
public struct ObjectName: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var namespace: String
    public var name: String

    public init(namespace: String, name: String) {
        self.namespace = namespace
        self.name = name
    }

    public var description: String { "\(namespace)/\(name)" }
    public static func < (a: ObjectName, b: ObjectName) -> Bool { (a.namespace, a.name) < (b.namespace, b.name) }
}

/// The work queue's rules as a pure value; time is passed in.
///
/// Invariants (as in client-go's workqueue):
/// - A key is at most once in the ready queue (adds while queued are deduplicated).
/// - A key being processed is never handed out twice: an add while processing marks it dirty,
///   and it is queued again when ``done(_:)`` is called.
/// - Delayed adds (`addAfter`) keep the earliest deadline per key.
/// - Per-key failures grow the backoff exponentially (``Backoff`` ceiling, no jitter) until
///   ``forget(_:)`` (a success) resets them.
/// - Bounded: at most `capacity` distinct keys are tracked (queued, delayed or dirty); adds
///   beyond it are refused (`false`) and counted, never buffered.
public struct WorkQueueState<Key: Hashable & Sendable>: Sendable {
    public let capacity: Int
    public let backoff: Backoff
    private(set) var queue: [Key] = []
    private var queued: Set<Key> = []
    private var processing: Set<Key> = []
    private var dirty: Set<Key> = []
    private(set) var delayed: [Key: MonotonicInstant] = [:]
    private var failures: [Key: Int] = [:]
    public private(set) var refused = 0
    public private(set) var shuttingDown = false

    public init(capacity: Int = 10_000, backoff: Backoff = Backoff(initial: .milliseconds(5), maximum: .seconds(300), jitter: .none)) {
        self.capacity = capacity
        self.backoff = backoff
    }

    public enum Next: Sendable, Equatable where Key: Equatable {
        case key(Key)
        /// Nothing ready; wake at this instant (nil: only an add can wake).
        case wait(until: MonotonicInstant?)
        case shutDown
    }

    var trackedCount: Int { queued.union(dirty).union(delayed.keys).count }

    /// Queues `key` now. Returns false when refused (capacity) or shutting down.
    @discardableResult
    public mutating func add(_ key: Key) -> Bool {
        if shuttingDown { return false }
        delayed[key] = nil
        if processing.contains(key) {
            if !dirty.contains(key) && trackedCount >= capacity { refused += 1; return false }
            dirty.insert(key)
            return true
        }
        if queued.contains(key) { return true }
        if trackedCount >= capacity { refused += 1; return false }
        queued.insert(key)
        queue.append(key)
        return true
    }

    /// Queues `key` at `deadline` (earliest deadline wins; an immediate add wins over both).
    @discardableResult
    public mutating func add(_ key: Key, at deadline: MonotonicInstant, now: MonotonicInstant) -> Bool {
        if deadline <= now { return add(key) }
        if shuttingDown { return false }
        if queued.contains(key) || dirty.contains(key) { return true }
        if let existing = delayed[key] {
            delayed[key] = min(existing, deadline)
            return true
        }
        if trackedCount >= capacity { refused += 1; return false }
        delayed[key] = deadline
        return true
    }

    /// Queues `key` after its per-key backoff and counts one more failure. Returns the delay.
    public mutating func addRateLimited(_ key: Key, now: MonotonicInstant) -> Duration {
        let attempt = failures[key, default: 0]
        failures[key] = attempt + 1
        let delay = backoff.ceiling(forAttempt: attempt)
        add(key, at: now.advanced(by: delay), now: now)
        return delay
    }

    /// A success: the key's backoff starts over.
    public mutating func forget(_ key: Key) { failures[key] = nil }

    public func failureCount(_ key: Key) -> Int { failures[key, default: 0] }

    /// The next key to process (moved to "processing"), or when to look again.
    public mutating func next(now: MonotonicInstant) -> Next {
        for (key, deadline) in delayed where deadline <= now {
            delayed[key] = nil
            add(key)
        }
        if !queue.isEmpty {
            let key = queue.removeFirst()
            queued.remove(key)
            processing.insert(key)
            return .key(key)
        }
        if shuttingDown { return .shutDown }
        return .wait(until: delayed.values.min())
    }

    /// Processing of `key` finished; if it was added meanwhile, it is queued again.
    public mutating func done(_ key: Key) {
        processing.remove(key)
        if dirty.remove(key) != nil {
            queued.insert(key)
            queue.append(key)
        }
    }

    /// No more adds; ``next(now:)`` drains what is queued, then says `.shutDown`.
    public mutating func shutDown() {
        shuttingDown = true
        delayed.removeAll()
    }

    public var readyCount: Int { queue.count }
    public var delayedCount: Int { delayed.count }
}

/// The work queue shared by event handlers (adds) and reconcile workers (``next()``/``done(_:)``).
/// Workers wait without polling: a waiter is woken by an add, by a delayed key's deadline on the
/// injected clock, or by shutdown.
public final class WorkQueue<Key: Hashable & Sendable>: Sendable {
    private struct Shared: Sendable {
        var state: WorkQueueState<Key>
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter: UInt64 = 0
        var generation: UInt64 = 0
    }

    private let shared: Mutex<Shared>
    private let clock: any FloeClock

    public init(clock: any FloeClock, capacity: Int = 10_000,
                backoff: Backoff = Backoff(initial: .milliseconds(5), maximum: .seconds(300), jitter: .none)) {
        self.clock = clock
        shared = Mutex(Shared(state: WorkQueueState(capacity: capacity, backoff: backoff)))
    }

    private func mutate<R>(_ body: (inout WorkQueueState<Key>) -> R) -> R {
        let (result, wake) = shared.withLock { s -> (R, [CheckedContinuation<Void, Never>]) in
            let r = body(&s.state)
            s.generation &+= 1
            let w = Array(s.waiters.values)
            s.waiters.removeAll()
            return (r, w)
        }
        for c in wake { c.resume() }
        return result
    }

    @discardableResult public func add(_ key: Key) -> Bool { mutate { $0.add(key) } }

    @discardableResult public func add(_ key: Key, after delay: Duration) -> Bool {
        let now = clock.now()
        return mutate { $0.add(key, at: now.advanced(by: delay), now: now) }
    }

    @discardableResult public func addRateLimited(_ key: Key) -> Duration {
        let now = clock.now()
        return mutate { $0.addRateLimited(key, now: now) }
    }

    public func forget(_ key: Key) { mutate { $0.forget(key) } }
    public func done(_ key: Key) { mutate { $0.done(key) } }
    public func shutDown() { mutate { $0.shutDown() } }
    public var readyCount: Int { shared.withLock { $0.state.readyCount } }
    public var refusedCount: Int { shared.withLock { $0.state.refused } }
    public func failureCount(_ key: Key) -> Int { shared.withLock { $0.state.failureCount(key) } }

    /// The next key to reconcile, or nil once shut down and drained (or when the task is cancelled).
    public func next() async -> Key? {
        while !Task.isCancelled {
            let now = clock.now()
            let (decision, generation) = shared.withLock { s in (s.state.next(now: now), s.generation) }
            switch decision {
            case .key(let k): return k
            case .shutDown: return nil
            case .wait(let until):
                await waitForChange(since: generation, until: until, now: now)
            }
        }
        return nil
    }

    /// Suspends until the state changes (after `generation`), the deadline passes, or cancellation.
    private func waitForChange(since generation: UInt64, until deadline: MonotonicInstant?, now: MonotonicInstant) async {
        await withTaskGroup(of: Void.self) { group in
            if let deadline {
                let clock = clock
                group.addTask {
                    do { try await clock.sleep(for: deadline.duration(since: now)) } catch {}  // cancelled: the other child finished
                }
            }
            group.addTask { await self.waitForSignal(since: generation) }
            await group.next()
            group.cancelAll()
            // Wake our own signal waiter if the deadline won.
            self.wakeAll()
        }
    }

    private func wakeAll() {
        let wake = shared.withLock { s -> [CheckedContinuation<Void, Never>] in
            let w = Array(s.waiters.values)
            s.waiters.removeAll()
            return w
        }
        for c in wake { c.resume() }
    }

    private func waitForSignal(since generation: UInt64) async {
        let id = shared.withLock { s -> UInt64 in
            s.nextWaiter += 1
            return s.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let resumeNow = shared.withLock { s -> Bool in
                    if s.generation != generation || Task.isCancelled { return true }
                    s.waiters[id] = c
                    return false
                }
                if resumeNow { c.resume() }
            }
        } onCancel: {
            let c = shared.withLock { $0.waiters.removeValue(forKey: id) }
            c?.resume()
        }
    }
}
