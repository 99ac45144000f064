import CFloeShims
import Foundation
import Dispatch
import Synchronization

/// A fixed set of dedicated threads for blocking system calls (file I/O, fsync), so that they
/// never occupy the cooperative thread pool that runs async tasks.
///
/// Invariants: at most `threadCount` jobs run at once; at most `queueLimit` jobs wait in the
/// queue, further submitters suspend (without blocking a thread) until a slot frees; jobs start
/// in submission order. After ``shutdown()`` new submissions throw ``SupportError/shutDown(component:)``;
/// queued jobs still run.
public final class BlockingThreadPool: Sendable {
    private struct Job {
        let work: @Sendable () -> Void
    }

    private struct State {
        /// Releases a job as it is taken: a run job's closure (and what it captured, such as the
        /// bytes of an object being written) must not outlive the job.
        var queue = FIFOQueue<Job>()
        var spaceWaiters: [CheckedContinuation<Void, Never>] = []
        var shutDown = false
        var queued: Int { queue.count }
    }

    public let name: String
    public let threadCount: Int
    public let queueLimit: Int
    /// Whether the threads run under `SCHED_IDLE` (see `init`).
    public let idlePriority: Bool
    private let state = Mutex(State())
    /// How many of the threads did switch to `SCHED_IDLE` (for tests and startup checks).
    private let idleApplied = Atomic<Int>(0)
    private let available = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    /// With `idlePriority` each thread switches itself to `SCHED_IDLE` (Linux): it runs only when
    /// no normal thread wants the CPU, so bulk work (checksumming and copying tens of MiB) never
    /// delays a woken request thread. Jobs there must not hold anything a normal thread waits for
    /// (a lock, a file lock) while they run: on a saturated machine they can wait long for a CPU.
    public init(name: String, threads: Int, queueLimit: Int = 1024, idlePriority: Bool = false) {
        precondition(threads > 0 && queueLimit > 0, "BlockingThreadPool \(name) needs threads > 0 and queueLimit > 0")
        self.name = name
        self.threadCount = threads
        self.queueLimit = queueLimit
        self.idlePriority = idlePriority
        for index in 0..<threads {
            startNamedThread("\(name)-\(index)") { [self] in self.workerLoop() }
        }
    }

    /// Runs `work` on one of the pool's threads and returns its result.
    public func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        while true {
            let admitted: Bool = try state.withLock { s in
                if s.shutDown { throw SupportError.shutDown(component: "thread pool \(name)") }
                return s.queued < queueLimit
            }
            if admitted { break }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s -> Bool in
                    if s.queued < queueLimit || s.shutDown { return true }
                    s.spaceWaiters.append(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let job = Job {
                do { continuation.resume(returning: try work()) } catch { continuation.resume(throwing: error) }
            }
            let accepted = state.withLock { s -> Bool in
                if s.shutDown { return false }
                s.queue.append(job)
                return true
            }
            if accepted {
                available.signal()
            } else {
                continuation.resume(throwing: SupportError.shutDown(component: "thread pool \(name)"))
            }
        }
    }

    /// Stops accepting work, lets queued jobs finish, and waits for the threads to exit.
    public func shutdown() {
        let waiters: [CheckedContinuation<Void, Never>]? = state.withLock { s in
            if s.shutDown { return nil }
            s.shutDown = true
            defer { s.spaceWaiters = [] }
            return s.spaceWaiters
        }
        guard let waiters else { return }
        for waiter in waiters { waiter.resume() }
        for _ in 0..<threadCount { available.signal() }
        for _ in 0..<threadCount { finished.wait() }
    }

    /// The number of the pool's threads running under `SCHED_IDLE` once they have started.
    public var threadsAtIdlePriority: Int { idleApplied.load(ordering: .acquiring) }

    private func workerLoop() {
        if idlePriority, floe_thread_set_policy(Int32(FLOE_SCHED_IDLE)) == 0 {
            idleApplied.add(1, ordering: .releasing)
        }
        while true {
            available.wait()
            let (job, waiter): (Job?, CheckedContinuation<Void, Never>?) = state.withLock { s in
                guard let job = s.queue.popFirst() else { return (nil, nil) }
                let waiter = s.spaceWaiters.isEmpty ? nil : s.spaceWaiters.removeFirst()
                return (job, waiter)
            }
            waiter?.resume()
            if let job {
                job.work()
            } else if state.withLock({ $0.shutDown }) {
                finished.signal()
                return
            }
        }
    }
}
