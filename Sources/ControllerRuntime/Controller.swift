import Support

/// What a reconcile pass asks for next.
public enum ReconcileResult: Sendable, Equatable {
    /// The object is as wanted; wait for the next event or resync.
    case done
    /// Look again after this delay (waiting for something that raises no event).
    case requeueAfter(Duration)
}

/// A level-triggered reconciler: given only a key, it reads the current state and drives the
/// world toward it. It must be idempotent; an error requeues the key with per-key backoff.
public protocol Reconciler: Sendable {
    func reconcile(_ key: ObjectName) async throws -> ReconcileResult
}

/// Runs `workers` reconcile loops over a ``WorkQueue``: a key is never reconciled by two
/// workers at once; success resets the key's backoff (and honours `requeueAfter`); failure
/// requeues it with exponential backoff. Stops (after the passes in progress) when cancelled.
public struct Controller<R: Reconciler>: Sendable {
    public let name: String
    public let queue: WorkQueue<ObjectName>
    public let reconciler: R
    public let workers: Int
    public let logger: Logger
    let passes: Counter
    let failures: Counter
    let latency: Histogram

    public init(name: String, queue: WorkQueue<ObjectName>, reconciler: R, workers: Int = 2, logger: Logger, metrics: MetricsRegistry) {
        self.name = name
        self.queue = queue
        self.reconciler = reconciler
        self.workers = workers
        self.logger = logger
        passes = metrics.counter("floe_reconcile_total", help: "Reconcile passes.", labels: ["controller": name])
        failures = metrics.counter("floe_reconcile_errors_total", help: "Reconcile passes that failed.", labels: ["controller": name])
        latency = metrics.histogram("floe_reconcile_duration_seconds", help: "Duration of reconcile passes.", labels: ["controller": name])
    }

    public func run(clock: any FloeClock) async {
        await withTaskCancellationHandler {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<max(1, workers) {
                    group.addTask { await worker(clock: clock) }
                }
            }
        } onCancel: {
            queue.shutDown()
        }
    }

    private func worker(clock: any FloeClock) async {
        while let key = await queue.next() {
            let start = clock.now()
            do {
                let result = try await reconciler.reconcile(key)
                queue.forget(key)
                if case .requeueAfter(let d) = result { queue.add(key, after: d) }
            } catch is CancellationError {
                queue.done(key)
                return
            } catch {
                failures.increment()
                let delay = queue.addRateLimited(key)
                logger.warning("reconcile failed; requeued", metadata: ["reconcile.key": key.description, "error": "\(error)", "retry.in": "\(delay)"])
            }
            passes.increment()
            latency.observe(clock.now().duration(since: start))
            queue.done(key)
        }
    }
}
