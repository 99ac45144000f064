import CFloeShims
import Dispatch
import Foundation
import ObjectStore
import Support
import Synchronization

/// CPU priority of the threads that serve cold (catch-up) reads.
public enum ColdReadPriority: Sendable, Hashable, CustomStringConvertible {
    /// The process's own priority (no change).
    case normal
    /// A higher nice value (Linux: 1...19; 10 gives a thread about a tenth of the CPU share of a
    /// nice-0 thread when both want the CPU).
    case nice(Int32)
    /// `SCHED_IDLE`: runs only when no normal thread wants the CPU (may starve on a busy machine).
    case idle

    public var description: String {
        switch self {
        case .normal: "normal"
        case .nice(let n): "nice \(n)"
        case .idle: "SCHED_IDLE"
        }
    }
}

/// How cold reads (reads of data objects: a consumer catching up from the start of a stream)
/// are kept from slowing the append path.
///
/// When `isolated`, every object range GET the block cache misses (with its read-ahead), and the
/// decoding and CRC check of the blocks, run on `threads` dedicated threads at `priority`; the
/// cooperative pool only waits. A local-directory store's GET (a `pread` from the page cache)
/// runs on those threads too; an S3 GET is received by the HTTP client's thread and only decoded
/// there. At most `maxInFlightBytes` of object data are being fetched at once (a single larger
/// fetch is admitted when nothing else is in flight), and, when `bytesPerSecond` is set, fetches
/// draw from a token bucket of that rate holding at most `burstBytes`.
///
/// When not `isolated` (the behaviour before this existed), the GET runs wherever the store runs
/// it and blocks are decoded on the caller's task; the byte window and rate budget still apply.
///
/// Why both a lower priority and a budget: a thread's nice value only orders the threads of one
/// scheduling group (a process under autogroup, a container's cgroup). The CPU time a catch-up
/// reader uses is still charged to the whole group, so on a machine whose CPUs are contended by
/// other processes (or a container at its CPU quota) an unbudgeted reader delays the append path
/// whatever its priority; measured in docs/benchmarks.md. The default budget, 128 MiB/s per CPU,
/// caps catch-up reading at a few percent of each CPU.
public struct ColdReadSettings: Sendable {
    public var isolated: Bool = true
    public var threads: Int = 2
    public var priority: ColdReadPriority = .nice(10)
    public var maxInFlightBytes: Int = 16 << 20
    /// Read-side byte-rate budget for object fetches (cache misses and their read-ahead), shared
    /// by every reader of the store; nil: unlimited.
    public var bytesPerSecond: Int? = ProcessInfo.processInfo.activeProcessorCount * (128 << 20)
    public var burstBytes: Int = 8 << 20

    public init() {}
}

/// A token bucket in bytes (pure: the caller supplies the time).
///
/// Invariants: tokens never exceed `burst`; a reservation is always granted and may leave the
/// bucket in debt, and the returned wait is how long until the debt is repaid at `rate`, so
/// callers are served in reservation order and the long-run rate never exceeds `rate`.
///
/// Example: rate 1000 B/s, burst 1000, full at t=0. reserve(1000) → wait 0 (tokens 0);
/// reserve(500) at t=0 → wait 0.5 s (tokens -500); at t=1 s the bucket holds 500 again.
struct TokenBucket: Sendable {
    let rate: Double
    let burst: Double
    private(set) var tokens: Double
    private var last: MonotonicInstant

    init(bytesPerSecond: Int, burstBytes: Int, now: MonotonicInstant) {
        precondition(bytesPerSecond > 0, "TokenBucket needs a positive rate, got \(bytesPerSecond)")
        rate = Double(bytesPerSecond)
        burst = Double(max(1, burstBytes))
        tokens = burst
        last = now
    }

    /// Takes `bytes` and returns how long the caller must wait before using them.
    mutating func reserve(_ bytes: Int, now: MonotonicInstant) -> Duration {
        if now > last {
            tokens = min(burst, tokens + now.duration(since: last).secondsDouble * rate)
            last = now
        }
        tokens -= Double(bytes)
        if tokens >= 0 { return .zero }
        return .nanoseconds(Int64((-tokens / rate * 1e9).rounded(.up)))
    }
}

/// Bounds the bytes of object data being fetched at once. A request larger than the whole window
/// is admitted when nothing else is in flight, so it cannot wait forever.
final class ByteWindow: Sendable {
    private struct State {
        var inFlight = 0
        var waiters: [(bytes: Int, continuation: CheckedContinuation<Void, Never>)] = []
    }

    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) { self.capacity = max(1, capacity) }

    var inFlight: Int { state.withLock { $0.inFlight } }
    var waiterCount: Int { state.withLock { $0.waiters.count } }

    func acquire(_ bytes: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let admitted = state.withLock { s -> Bool in
                if s.waiters.isEmpty && (s.inFlight == 0 || s.inFlight + bytes <= capacity) {
                    s.inFlight += bytes
                    return true
                }
                s.waiters.append((bytes, continuation))
                return false
            }
            if admitted { continuation.resume() }
        }
    }

    func release(_ bytes: Int) {
        let ready: [CheckedContinuation<Void, Never>] = state.withLock { s in
            s.inFlight -= bytes
            var ready: [CheckedContinuation<Void, Never>] = []
            // First come, first served: admit waiters in order while they fit.
            while let first = s.waiters.first, s.inFlight == 0 || s.inFlight + first.bytes <= capacity {
                s.waiters.removeFirst()
                s.inFlight += first.bytes
                ready.append(first.continuation)
            }
            return ready
        }
        for c in ready { c.resume() }
    }
}

/// The token bucket driven by a clock: `take` sleeps (on the clock) for the reservation's wait.
final class RateBudget: Sendable {
    private let bucket: Mutex<TokenBucket>
    private let clock: any FloeClock

    init(bytesPerSecond: Int, burstBytes: Int, clock: any FloeClock) {
        self.clock = clock
        bucket = Mutex(TokenBucket(bytesPerSecond: bytesPerSecond, burstBytes: burstBytes, now: clock.now()))
    }

    func take(_ bytes: Int) async throws {
        let now = clock.now()
        let wait = bucket.withLock { $0.reserve(bytes, now: now) }
        if wait > .zero { try await clock.sleep(for: wait) }
    }
}

/// A small fixed set of dedicated threads for cold-read work, at a lower CPU priority, shared by
/// every reader in the process with the same thread count and priority (a broker has one).
///
/// Callers are resumed by a separate completion thread that keeps the process's normal priority:
/// a thread the Swift runtime or Dispatch creates while a continuation is resumed inherits the
/// nice value of the thread that resumed it, and must not inherit the cold readers' priority.
///
/// Invariants: at most `threadCount` jobs run at once, in submission order; the threads start on
/// first use and live as long as the process; a job's result is delivered exactly once.
final class ColdReadPool: Sendable {
    private struct Key: Hashable {
        var threads: Int
        var priority: ColdReadPriority
        var purpose: String
    }

    private static let pools = Mutex<[Key: ColdReadPool]>([:])

    /// The process-wide pool with these settings. `purpose` names the threads
    /// (`floe-<purpose>-<n>`) and keeps pools for different work apart: `cold-rd` for cold
    /// reads, `bg` for the maintenance service's CPU work (building and decoding data objects,
    /// `SCHED_IDLE`).
    static func shared(threads: Int, priority: ColdReadPriority, purpose: String = "cold-rd") -> ColdReadPool {
        let key = Key(threads: max(1, threads), priority: priority, purpose: purpose)
        return pools.withLock { p in
            if let pool = p[key] { return pool }
            let pool = ColdReadPool(threads: key.threads, priority: priority, purpose: purpose)
            p[key] = pool
            return pool
        }
    }

    private struct State {
        var jobs = FIFOQueue<@Sendable () -> Void>()
        var completions = FIFOQueue<@Sendable () -> Void>()
        var started = false
        var jobsRun = 0
        /// Per started worker: the priority it asked for and what it got ("nice 10", or the error).
        var applied: [String] = []
    }

    let threadCount: Int
    let priority: ColdReadPriority
    let purpose: String
    private let state = Mutex(State())
    private let jobsReady = DispatchSemaphore(value: 0)
    private let completionsReady = DispatchSemaphore(value: 0)

    static let threadMarker = "floe.coldRead"

    private init(threads: Int, priority: ColdReadPriority, purpose: String) {
        threadCount = threads
        self.priority = priority
        self.purpose = purpose
    }

    /// True on one of the cold-read threads.
    static var currentThreadIsColdReader: Bool { Thread.current.threadDictionary[threadMarker] != nil }

    /// The calling thread's nice value (Linux), or nil where it cannot be read.
    static func currentThreadNice() -> Int32? {
        var nice: Int32 = 0
        return floe_thread_get_nice(&nice) == 0 ? nice : nil
    }

    /// Jobs completed so far.
    var jobsRun: Int { state.withLock { $0.jobsRun } }
    /// What each started thread's priority setting gave.
    var appliedPriorities: [String] { state.withLock { $0.applied } }

    /// Runs `work` on a cold-read thread and returns its result.
    func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        startIfNeeded()
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let job: @Sendable () -> Void = { [self] in
                let result = Result { try work() }
                complete { continuation.resume(with: result) }
            }
            state.withLock { $0.jobs.append(job) }
            jobsReady.signal()
        }
    }

    /// Reads `key` from `store` and decodes it on one of the pool's threads: with a store that
    /// has blocking reads (a local directory) the read runs on that thread too, at its priority;
    /// otherwise the store's own GET fetches it first.
    func fetch<T: Sendable>(_ key: String, range: ByteRange? = nil, from store: any ObjectStore,
                            _ decode: @escaping @Sendable ([UInt8]) throws -> T) async throws -> T {
        if let blocking = blockingReads(of: store) {
            return try await run { try decode(try blocking.getBlocking(key, range: range).bytes) }
        }
        let data = try await store.get(key, range: range).bytes
        return try await run { try decode(data) }
    }

    private func complete(_ resume: @escaping @Sendable () -> Void) {
        state.withLock { s in
            s.completions.append(resume)
            s.jobsRun += 1
        }
        completionsReady.signal()
    }

    private func startIfNeeded() {
        let start = state.withLock { s -> Bool in
            if s.started { return false }
            s.started = true
            return true
        }
        guard start else { return }
        // Started from the caller's thread, which runs at normal priority; each worker lowers
        // its own priority and nothing else.
        startNamedThread("floe-\(purpose)-done") { [self] in completionLoop() }
        for index in 0..<threadCount {
            startNamedThread("floe-\(purpose)-\(index)") { [self] in workerLoop() }
        }
    }

    private func applyPriority() -> String {
        switch priority {
        case .normal:
            return "normal"
        case .nice(let n):
            if floe_thread_set_nice(n) != 0 { return "nice \(n) failed: errno \(errno)" }
            return "nice \(Self.currentThreadNice().map(String.init) ?? "?")"
        case .idle:
            if floe_thread_set_policy(Int32(FLOE_SCHED_IDLE)) != 0 { return "SCHED_IDLE failed: errno \(errno)" }
            return floe_thread_get_policy() == Int32(FLOE_SCHED_IDLE) ? "SCHED_IDLE" : "SCHED_IDLE not applied"
        }
    }

    private func workerLoop() {
        Thread.current.threadDictionary[Self.threadMarker] = true
        let outcome = applyPriority()
        state.withLock { $0.applied.append(outcome) }
        while true {
            jobsReady.wait()
            // One signal per appended job, so the queue is never empty here.
            state.withLock { $0.jobs.popFirst() }?()
        }
    }

    private func completionLoop() {
        while true {
            completionsReady.wait()
            state.withLock { $0.completions.popFirst() }?()
        }
    }
}
