import Support
import Synchronization

/// How ``RetryingObjectStore`` retries.
public struct RetryPolicy: Sendable {
    /// Attempts in total, the first included (1 = no retries).
    public var maxAttempts: Int
    public var backoff: Backoff

    public init(maxAttempts: Int = 5, backoff: Backoff = Backoff(initial: .milliseconds(50), maximum: .seconds(5))) {
        precondition(maxAttempts >= 1, "RetryPolicy needs maxAttempts >= 1")
        self.maxAttempts = maxAttempts
        self.backoff = backoff
    }
}

/// Retries operations that failed with a retryable error (``ObjectStoreError/isRetryable``:
/// throttling, timeouts, transport and 5xx errors) after a backoff with jitter, on the injected
/// clock and random generator. Every other error, and in particular a failed precondition, is
/// returned at once.
///
/// Conditional writes after an ambiguous failure: if an attempt of a conditional put failed in a
/// way that may have applied it (timeout, transport, 5xx) and a later attempt then fails its
/// precondition, the failure may be our own earlier success. The object is then read back: if
/// its content is exactly ours, the put succeeded and its ETag is returned; otherwise the
/// precondition failure stands. A precondition failure is never retried blindly.
public final class RetryingObjectStore: ObjectStore {
    public let base: any ObjectStore
    public let policy: RetryPolicy
    private let clock: any FloeClock
    private let random: Mutex<SplitMix64>
    private let logger: Logger
    private let retries: Counter?

    public init(_ base: any ObjectStore, policy: RetryPolicy = RetryPolicy(), clock: any FloeClock = RealClock(),
                seed: UInt64 = UInt64.random(in: .min ... .max), logger: Logger = .discarding, metrics: MetricsRegistry? = nil) {
        self.base = base
        self.policy = policy
        self.clock = clock
        random = Mutex(SplitMix64(seed: seed))
        self.logger = logger
        retries = metrics?.counter("floe_objectstore_retries_total", help: "Object store operations retried after a retryable error.")
    }

    public var location: String { base.location }

    /// Runs `body` until it succeeds, fails with a non-retryable error, or attempts run out.
    /// `onRetryableError` sees every retryable error before the backoff.
    private func retrying<T>(_ operation: String, key: String?, onRetryableError: (ObjectStoreError) -> Void = { _ in },
                             _ body: () async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            do {
                return try await body()
            } catch let error as ObjectStoreError where error.isRetryable && attempt + 1 < policy.maxAttempts {
                onRetryableError(error)
                let delay = random.withLock { policy.backoff.delay(forAttempt: attempt, using: &$0) }
                retries?.increment()
                logger.warning("retrying object store operation", metadata: [
                    "objectstore.operation": operation, "objectstore.key": key ?? "", "retry.attempt": String(attempt + 1),
                    "retry.delay": "\(delay)", "error": "\(error)",
                ])
                try await clock.sleep(for: delay)
                attempt += 1
            }
        }
    }

    public func put(_ key: String, _ bytes: [UInt8], condition: WriteCondition) async throws -> String {
        var ambiguous = false
        do {
            return try await retrying("PUT", key: key, onRetryableError: { if $0.mayHaveBeenApplied { ambiguous = true } }) {
                try await base.put(key, bytes, condition: condition)
            }
        } catch let error as ObjectStoreError {
            guard case .preconditionFailed = error, ambiguous, condition != .none else { throw error }
            // Our earlier attempt may have been applied: compare what is there with what we wrote.
            let current: ObjectData
            do { current = try await retrying("GET", key: key) { try await base.get(key, range: nil) } } catch ObjectStoreError.notFound {
                throw error
            }
            if current.bytes == bytes {
                logger.info("conditional put had succeeded before a retryable failure", metadata: ["objectstore.key": key])
                return current.etag
            }
            throw error
        }
    }

    public func get(_ key: String, range: ByteRange?) async throws -> ObjectData {
        try await retrying("GET", key: key) { try await base.get(key, range: range) }
    }

    public func head(_ key: String) async throws -> ObjectInfo {
        try await retrying("HEAD", key: key) { try await base.head(key) }
    }

    public func delete(_ key: String) async throws {
        try await retrying("DELETE", key: key) { try await base.delete(key) }
    }

    /// Retries the whole request on retryable errors, then the keys that failed retryably.
    public func deleteMany(_ keys: [String]) async throws -> [DeleteFailure] {
        var remaining = keys
        var permanent: [DeleteFailure] = []
        var attempt = 0
        while true {
            let failures = try await retrying("DeleteObjects", key: remaining.first) { try await base.deleteMany(remaining) }
            permanent += failures.filter { !$0.error.isRetryable }
            let retryable = failures.filter { $0.error.isRetryable }
            if retryable.isEmpty || attempt + 1 >= policy.maxAttempts { return permanent + retryable }
            let delay = random.withLock { policy.backoff.delay(forAttempt: attempt, using: &$0) }
            retries?.increment()
            try await clock.sleep(for: delay)
            remaining = retryable.map(\.key)
            attempt += 1
        }
    }

    public func list(prefix: String, continuation: String?, limit: Int) async throws -> ListPage {
        try await retrying("LIST", key: prefix) { try await base.list(prefix: prefix, continuation: continuation, limit: limit) }
    }

    public func createMultipartUpload(_ key: String) async throws -> MultipartUpload {
        try await retrying("CreateMultipartUpload", key: key) { try await base.createMultipartUpload(key) }
    }

    public func uploadPart(_ upload: MultipartUpload, number: Int, _ bytes: [UInt8]) async throws -> UploadedPart {
        try await retrying("UploadPart", key: upload.key) { try await base.uploadPart(upload, number: number, bytes) }
    }

    /// A retry after an ambiguous failure may find the upload already completed (and gone):
    /// that surfaces as `notFound`; check the object with `head` in that case.
    public func completeMultipartUpload(_ upload: MultipartUpload, parts: [UploadedPart]) async throws -> String {
        try await retrying("CompleteMultipartUpload", key: upload.key) { try await base.completeMultipartUpload(upload, parts: parts) }
    }

    public func abortMultipartUpload(_ upload: MultipartUpload) async throws {
        try await retrying("AbortMultipartUpload", key: upload.key) { try await base.abortMultipartUpload(upload) }
    }
}

/// Counts operations by outcome, bytes moved and latency, as Prometheus metrics:
/// - `floe_objectstore_operations_total{store,operation,outcome}` (outcome `ok` or the error's ``ObjectStoreError/kindName``)
/// - `floe_objectstore_read_bytes_total{store,operation}`, `floe_objectstore_written_bytes_total{store,operation}`
/// - `floe_objectstore_operation_duration_seconds{store,operation}` (histogram)
public final class InstrumentedObjectStore: ObjectStore {
    public let base: any ObjectStore
    private let metrics: MetricsRegistry
    private let clock: any FloeClock
    private let storeLabel: String

    public init(_ base: any ObjectStore, metrics: MetricsRegistry, clock: any FloeClock = RealClock(), storeLabel: String = "default") {
        self.base = base
        self.metrics = metrics
        self.clock = clock
        self.storeLabel = storeLabel
    }

    public var location: String { base.location }

    private func measured<T>(_ operation: String, written: Int = 0, read: (T) -> Int = { _ in 0 },
                             _ body: () async throws -> T) async throws -> T {
        let start = clock.now()
        do {
            let result = try await body()
            record(operation, since: start, outcome: "ok", written: written, read: read(result))
            return result
        } catch {
            record(operation, since: start, outcome: Self.outcome(of: error))
            throw error
        }
    }

    /// `measured` for a synchronous body (a blocking read on the caller's thread).
    private func measuredBlocking<T>(_ operation: String, read: (T) -> Int, _ body: () throws -> T) throws -> T {
        let start = clock.now()
        do {
            let result = try body()
            record(operation, since: start, outcome: "ok", read: read(result))
            return result
        } catch {
            record(operation, since: start, outcome: Self.outcome(of: error))
            throw error
        }
    }

    private static func outcome(of error: any Error) -> String {
        if let error = error as? ObjectStoreError { return error.kindName }
        return error is CancellationError ? "cancelled" : "other"
    }

    private func record(_ operation: String, since start: MonotonicInstant, outcome: String, written: Int = 0, read: Int = 0) {
        let labels = ["store": storeLabel, "operation": operation]
        metrics.counter("floe_objectstore_operations_total", help: "Object store operations by outcome.",
                        labels: labels.merging(["outcome": outcome]) { a, _ in a }).increment()
        metrics.histogram("floe_objectstore_operation_duration_seconds", help: "Object store operation latency.", labels: labels,
                          buckets: Histogram.fineLatencyBuckets)
            .observe(clock.now().duration(since: start))
        if written > 0 {
            metrics.counter("floe_objectstore_written_bytes_total", help: "Bytes written to the object store.", labels: labels)
                .increment(by: written)
        }
        if read > 0 {
            metrics.counter("floe_objectstore_read_bytes_total", help: "Bytes read from the object store.", labels: labels)
                .increment(by: read)
        }
    }

    public func put(_ key: String, _ bytes: [UInt8], condition: WriteCondition) async throws -> String {
        try await measured("put", written: bytes.count) { try await base.put(key, bytes, condition: condition) }
    }

    public func get(_ key: String, range: ByteRange?) async throws -> ObjectData {
        try await measured("get", read: { $0.bytes.count }) { try await base.get(key, range: range) }
    }

    public func head(_ key: String) async throws -> ObjectInfo { try await measured("head") { try await base.head(key) } }
    public func delete(_ key: String) async throws { try await measured("delete") { try await base.delete(key) } }

    public func deleteMany(_ keys: [String]) async throws -> [DeleteFailure] {
        try await measured("delete_many") { try await base.deleteMany(keys) }
    }

    public func list(prefix: String, continuation: String?, limit: Int) async throws -> ListPage {
        try await measured("list") { try await base.list(prefix: prefix, continuation: continuation, limit: limit) }
    }

    public func createMultipartUpload(_ key: String) async throws -> MultipartUpload {
        try await measured("create_multipart_upload") { try await base.createMultipartUpload(key) }
    }

    public func uploadPart(_ upload: MultipartUpload, number: Int, _ bytes: [UInt8]) async throws -> UploadedPart {
        try await measured("upload_part", written: bytes.count) { try await base.uploadPart(upload, number: number, bytes) }
    }

    public func completeMultipartUpload(_ upload: MultipartUpload, parts: [UploadedPart]) async throws -> String {
        try await measured("complete_multipart_upload") { try await base.completeMultipartUpload(upload, parts: parts) }
    }

    public func abortMultipartUpload(_ upload: MultipartUpload) async throws {
        try await measured("abort_multipart_upload") { try await base.abortMultipartUpload(upload) }
    }
}

/// The operations of the contract, for fault plans and scripts.
public enum ObjectStoreOperation: String, Sendable, Hashable, CaseIterable {
    case put, get, head, delete, deleteMany, list, createMultipartUpload, uploadPart, completeMultipartUpload, abortMultipartUpload
}

/// A failure ``FaultInjectingObjectStore`` can inject.
public enum InjectedFault: Sendable, Hashable {
    case timeout, throttled, serverError, transport

    func error(_ ctx: ObjectStoreErrorContext) -> ObjectStoreError {
        switch self {
        case .timeout: .timeout(ctx, "injected timeout")
        case .throttled: .throttled(ctx, "injected SlowDown")
        case .serverError: .server(ctx, status: 500, "injected InternalError")
        case .transport: .transport(ctx, "injected connection reset")
        }
    }
}

/// Random faults, for chaos runs: each affected operation fails with probability `errorRate`
/// (before reaching the store), or is applied and then reported failed with probability
/// `ambiguousErrorRate` (the client's view of a lost response; reported as a timeout, server or
/// transport error, never as throttling), or stalls for `stallDuration`
/// with probability `stallRate`; every operation waits `latency` first. Sleeps use the clock.
public struct FaultPlan: Sendable {
    public var errorRate: Double
    public var ambiguousErrorRate: Double
    public var faults: [InjectedFault]
    public var latency: Duration
    public var stallRate: Double
    public var stallDuration: Duration
    /// The operations affected; all when empty.
    public var operations: Set<ObjectStoreOperation>

    public init(errorRate: Double = 0, ambiguousErrorRate: Double = 0, faults: [InjectedFault] = [.timeout, .throttled, .serverError, .transport],
                latency: Duration = .zero, stallRate: Double = 0, stallDuration: Duration = .seconds(30),
                operations: Set<ObjectStoreOperation> = []) {
        precondition(!faults.isEmpty, "a fault plan needs at least one fault kind")
        self.errorRate = errorRate
        self.ambiguousErrorRate = ambiguousErrorRate
        self.faults = faults
        self.latency = latency
        self.stallRate = stallRate
        self.stallDuration = stallDuration
        self.operations = operations
    }

    public static let none = FaultPlan()
}

/// Injects failures, stalls and latency in front of any store, from a seeded ``FaultPlan``
/// (chaos runs) and from scripted faults that fire on the next calls of an operation (tests).
public final class FaultInjectingObjectStore: ObjectStore {
    private struct Scripted {
        var fault: InjectedFault
        var afterApplying: Bool
    }

    private struct State {
        var plan: FaultPlan
        var random: SplitMix64
        var scripts: [ObjectStoreOperation: [Scripted]] = [:]
        var injected = 0
        var calls: [ObjectStoreOperation: Int] = [:]
    }

    public let base: any ObjectStore
    private let clock: any FloeClock
    private let state: Mutex<State>

    public init(_ base: any ObjectStore, plan: FaultPlan = .none, seed: UInt64 = 1, clock: any FloeClock = RealClock()) {
        self.base = base
        self.clock = clock
        state = Mutex(State(plan: plan, random: SplitMix64(seed: seed)))
    }

    public var location: String { base.location }

    public func setPlan(_ plan: FaultPlan) { state.withLock { $0.plan = plan } }

    /// The next `count` calls of `operation` fail with `fault`; with `afterApplying`, the call
    /// reaches the store first (so the write happens) and the fault is reported afterwards.
    public func failNext(_ operation: ObjectStoreOperation, count: Int = 1, with fault: InjectedFault, afterApplying: Bool = false) {
        state.withLock { s in
            s.scripts[operation, default: []] += Array(repeating: Scripted(fault: fault, afterApplying: afterApplying), count: count)
        }
    }

    /// Faults injected so far.
    public var injectedCount: Int { state.withLock { $0.injected } }

    /// Calls of `operation` that reached this decorator.
    public func callCount(_ operation: ObjectStoreOperation) -> Int { state.withLock { $0.calls[operation] ?? 0 } }

    private enum Decision {
        case pass
        case fail(InjectedFault)
        case failAfter(InjectedFault)
    }

    private func intercept<T>(_ operation: ObjectStoreOperation, key: String?, _ body: () async throws -> T) async throws -> T {
        let (decision, delay): (Decision, Duration) = state.withLock { s in
            s.calls[operation, default: 0] += 1
            if var script = s.scripts[operation], !script.isEmpty {
                let next = script.removeFirst()
                s.scripts[operation] = script
                s.injected += 1
                return (next.afterApplying ? .failAfter(next.fault) : .fail(next.fault), .zero)
            }
            let plan = s.plan
            guard plan.operations.isEmpty || plan.operations.contains(operation) else { return (.pass, .zero) }
            var delay = plan.latency
            if plan.stallRate > 0 && Double.random(in: 0..<1, using: &s.random) < plan.stallRate { delay += plan.stallDuration }
            let roll = Double.random(in: 0..<1, using: &s.random)
            let fault = plan.faults[Int.random(in: 0..<plan.faults.count, using: &s.random)]
            if roll < plan.errorRate {
                s.injected += 1
                return (.fail(fault), delay)
            }
            if roll < plan.errorRate + plan.ambiguousErrorRate {
                // Throttling means the server refused the request, so it is never reported
                // after the operation was applied.
                s.injected += 1
                return (.failAfter(fault == .throttled ? .timeout : fault), delay)
            }
            return (.pass, delay)
        }
        if delay > .zero { try await clock.sleep(for: delay) }
        let ctx = ObjectStoreErrorContext(operation: operation.rawValue, store: location, key: key)
        switch decision {
        case .pass: return try await body()
        case .fail(let fault): throw fault.error(ctx)
        case .failAfter(let fault):
            _ = try await body()
            throw fault.error(ctx)
        }
    }

    public func put(_ key: String, _ bytes: [UInt8], condition: WriteCondition) async throws -> String {
        try await intercept(.put, key: key) { try await base.put(key, bytes, condition: condition) }
    }

    public func get(_ key: String, range: ByteRange?) async throws -> ObjectData {
        try await intercept(.get, key: key) { try await base.get(key, range: range) }
    }

    public func head(_ key: String) async throws -> ObjectInfo { try await intercept(.head, key: key) { try await base.head(key) } }
    public func delete(_ key: String) async throws { try await intercept(.delete, key: key) { try await base.delete(key) } }

    public func deleteMany(_ keys: [String]) async throws -> [DeleteFailure] {
        try await intercept(.deleteMany, key: keys.first) { try await base.deleteMany(keys) }
    }

    public func list(prefix: String, continuation: String?, limit: Int) async throws -> ListPage {
        try await intercept(.list, key: prefix) { try await base.list(prefix: prefix, continuation: continuation, limit: limit) }
    }

    public func createMultipartUpload(_ key: String) async throws -> MultipartUpload {
        try await intercept(.createMultipartUpload, key: key) { try await base.createMultipartUpload(key) }
    }

    public func uploadPart(_ upload: MultipartUpload, number: Int, _ bytes: [UInt8]) async throws -> UploadedPart {
        try await intercept(.uploadPart, key: upload.key) { try await base.uploadPart(upload, number: number, bytes) }
    }

    public func completeMultipartUpload(_ upload: MultipartUpload, parts: [UploadedPart]) async throws -> String {
        try await intercept(.completeMultipartUpload, key: upload.key) { try await base.completeMultipartUpload(upload, parts: parts) }
    }

    public func abortMultipartUpload(_ upload: MultipartUpload) async throws {
        try await intercept(.abortMultipartUpload, key: upload.key) { try await base.abortMultipartUpload(upload) }
    }
}

/// An object store whose GET can also run synchronously on the calling thread, so a dedicated
/// thread at its own priority does the copy itself (cold reads, compaction inputs).
public protocol BlockingRangeReads: ObjectStore {
    /// Whether `getBlocking` works: a decorator has it exactly when its base has.
    var supportsBlockingReads: Bool { get }
    func getBlocking(_ key: String, range: ByteRange?) throws -> ObjectData
}

extension LocalDirectoryObjectStore: BlockingRangeReads {
    public var supportsBlockingReads: Bool { true }
}

/// Blocking reads through the decorator are measured like its other operations.
extension InstrumentedObjectStore: BlockingRangeReads {
    private var blockingBase: (any BlockingRangeReads)? {
        guard let b = base as? any BlockingRangeReads, b.supportsBlockingReads else { return nil }
        return b
    }

    public var supportsBlockingReads: Bool { blockingBase != nil }

    public func getBlocking(_ key: String, range: ByteRange?) throws -> ObjectData {
        guard let b = blockingBase else {
            throw ObjectStoreError.invalidRequest(ObjectStoreErrorContext(operation: "GET", store: location, key: key),
                                                  "\(location) has no blocking reads")
        }
        return try measuredBlocking("get", read: { $0.bytes.count }) { try b.getBlocking(key, range: range) }
    }
}

/// `store` as a store with working blocking reads, or nil.
public func blockingReads(of store: any ObjectStore) -> (any BlockingRangeReads)? {
    guard let b = store as? any BlockingRangeReads, b.supportsBlockingReads else { return nil }
    return b
}
