import Foundation
import KubeAPI
import Support
import Synchronization

/// What an informer tells its handler. `resync` repeats every cached object periodically, so a
/// missed event is corrected within one resync period.
public enum InformerEvent<T: Sendable>: Sendable {
    case added(T)
    case updated(old: T, new: T)
    case deleted(T)
    case resync(T)

    public var object: T {
        switch self {
        case .added(let o), .deleted(let o), .resync(let o), .updated(_, let o): o
        }
    }
}

/// The errors of the ControllerRuntime module.
public enum ControllerRuntimeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The lease `namespace/name` was renewed last at an instant older than the renew deadline:
    /// this replica must stop acting.
    case leadershipLost(lease: String, identity: String)
    /// A watch ended with an ERROR event other than 410.
    case watchError(resource: String, code: Int, reason: String, message: String)

    public var description: String {
        switch self {
        case .leadershipLost(let lease, let identity): "leadership of lease \(lease) lost by \(identity)"
        case .watchError(let r, let code, let reason, let message): "watch of \(r) failed: \(code) \(reason): \(message)"
        }
    }
}

/// Keeps a local cache of one kind (in one namespace or all) in step with the API server:
/// list, then watch from the list's resourceVersion; bookmarks advance the resourceVersion;
/// a broken or ended watch reconnects (without limit, with backoff when it keeps failing);
/// `410 Gone` (an ERROR event or an expired list) relists from scratch and reports the
/// differences as events; every `resyncPeriod` all cached objects are handed out again.
///
/// Invariant: handlers see events in resourceVersion order for each object, and the cache is
/// updated before the handler is called.
public final class Informer<T: KubeObject>: Sendable {
    public typealias Handler = @Sendable (InformerEvent<T>) -> Void

    private struct State {
        var cache: [ObjectName: T] = [:]
        var synced = false
        var resourceVersion: String?
        var relists = 0
        var watchesStarted = 0
    }

    let client: KubeClient
    public let namespace: String?
    public let labelSelector: String?
    let clock: any FloeClock
    let resyncPeriod: Duration
    let backoff: Backoff
    let logger: Logger
    let handler: Handler
    private let state = Mutex(State())

    public init(client: KubeClient, namespace: String?, labelSelector: String? = nil, clock: any FloeClock, resyncPeriod: Duration,
                backoff: Backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(30)), logger: Logger, handler: @escaping Handler) {
        self.client = client
        self.namespace = namespace
        self.labelSelector = labelSelector
        self.clock = clock
        self.resyncPeriod = resyncPeriod
        self.backoff = backoff
        self.logger = logger.with("informer.resource", KubeClient.resourceName(T.self)).with("informer.namespace", namespace ?? "*")
        self.handler = handler
    }

    public var hasSynced: Bool { state.withLock { $0.synced } }
    public var resourceVersion: String? { state.withLock { $0.resourceVersion } }
    /// Full lists done (the first one included): grows by one per 410 recovery.
    public var listCount: Int { state.withLock { $0.relists } }
    public var watchCount: Int { state.withLock { $0.watchesStarted } }

    public func get(namespace: String, name: String) -> T? {
        state.withLock { $0.cache[ObjectName(namespace: namespace, name: name)] }
    }

    public func list() -> [T] { state.withLock { Array($0.cache.values) } }

    static func key(_ o: T) -> ObjectName { ObjectName(namespace: o.metadata.namespace ?? "", name: o.metadata.name ?? "") }

    /// Runs until the task is cancelled.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.listAndWatchForever() }
            group.addTask { await self.resyncForever() }
            await group.next()
            group.cancelAll()
        }
    }

    private func resyncForever() async {
        while !Task.isCancelled {
            do { try await clock.sleep(for: resyncPeriod) } catch { return }
            let objects = state.withLock { $0.synced ? Array($0.cache.values) : [] }
            for o in objects { handler(.resync(o)) }
        }
    }

    private func listAndWatchForever() async {
        var rng = SplitMix64(seed: UInt64(truncatingIfNeeded: clock.now().nanoseconds))
        var failures = 0
        func pause() async -> Bool {
            let delay = backoff.delay(forAttempt: failures, using: &rng)
            failures += 1
            do { try await clock.sleep(for: delay) } catch { return false }
            return true
        }
        while !Task.isCancelled {
            if state.withLock({ $0.resourceVersion }) == nil {
                do {
                    try await relist()
                    failures = 0
                } catch is CancellationError {
                    return
                } catch {
                    logger.warning("list failed; retrying", metadata: ["error": "\(error)"])
                    if await !pause() { return }
                    continue
                }
            }
            var received = 0
            do {
                let rv = state.withLock { s -> String? in
                    s.watchesStarted += 1
                    return s.resourceVersion
                }
                let timeout = 240 + Int(rng.next() % 120)
                let watch = try await client.watch(T.self, namespace: namespace, labelSelector: labelSelector, resourceVersion: rv, timeoutSeconds: timeout)
                for try await event in watch {
                    received += 1
                    if try apply(event) == false { break }  // 410: relist
                }
                if received > 0 { failures = 0 }
                if received == 0, await !pause() { return }
            } catch is CancellationError {
                return
            } catch let error as KubeAPIError where error.isExpired {
                state.withLock { $0.resourceVersion = nil }
            } catch {
                if Task.isCancelled { return }
                logger.info("watch ended with an error; reconnecting", metadata: ["error": "\(error)", "events": "\(received)"])
                if await !pause() { return }
            }
        }
    }

    /// Applies one watch event to the cache and calls the handler. Returns false on 410 Expired
    /// (the resourceVersion is cleared: the caller relists).
    private func apply(_ event: WatchEvent<T>) throws -> Bool {
        switch event {
        case .added(let o), .modified(let o):
            let old = state.withLock { s -> T? in
                let old = s.cache.updateValue(o, forKey: Self.key(o))
                if let rv = o.metadata.resourceVersion { s.resourceVersion = rv }
                return old
            }
            handler(old.map { .updated(old: $0, new: o) } ?? .added(o))
        case .deleted(let o):
            let old = state.withLock { s -> T? in
                if let rv = o.metadata.resourceVersion { s.resourceVersion = rv }
                return s.cache.removeValue(forKey: Self.key(o))
            }
            handler(.deleted(old ?? o))
        case .bookmark(let rv):
            state.withLock { $0.resourceVersion = rv }
        case .error(let status):
            if status.code == 410 {
                logger.info("watch resourceVersion expired; relisting", metadata: ["message": status.message ?? ""])
                state.withLock { $0.resourceVersion = nil }
                return false
            }
            throw ControllerRuntimeError.watchError(
                resource: KubeClient.resourceName(T.self), code: Int(status.code ?? 0), reason: status.reason ?? "", message: status.message ?? "")
        }
        return true
    }

    /// Lists everything, replaces the cache and reports the differences.
    private func relist() async throws {
        let list = try await client.list(T.self, namespace: namespace, labelSelector: labelSelector)
        var fresh: [ObjectName: T] = [:]
        for o in list.items { fresh[Self.key(o)] = o }
        let old = state.withLock { s -> [ObjectName: T] in
            let old = s.cache
            s.cache = fresh
            s.resourceVersion = list.metadata.resourceVersion ?? "0"
            s.synced = true
            s.relists += 1
            return old
        }
        for (key, o) in fresh.sorted(by: { $0.key < $1.key }) {
            if let previous = old[key] {
                if previous.metadata.resourceVersion != o.metadata.resourceVersion { handler(.updated(old: previous, new: o)) }
            } else {
                handler(.added(o))
            }
        }
        for (key, o) in old.sorted(by: { $0.key < $1.key }) where fresh[key] == nil { handler(.deleted(o)) }
    }
}
