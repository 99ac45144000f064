import KubeAPI
import Support

/// Informers of one kind over a set of namespaces (one informer each), or over all namespaces
/// (one informer with no namespace), looked up as one cache.
public final class InformerGroup<T: KubeObject>: Sendable {
    public let informers: [Informer<T>]
    /// nil: all namespaces.
    public let namespaces: [String]?

    public init(client: KubeClient, namespaces: [String]?, labelSelector: String? = nil, clock: any FloeClock, resyncPeriod: Duration,
                logger: Logger, handler: @escaping Informer<T>.Handler) {
        self.namespaces = namespaces
        let scopes: [String?] = namespaces.map { $0.map(Optional.some) } ?? [nil]
        informers = scopes.map {
            Informer<T>(client: client, namespace: $0, labelSelector: labelSelector, clock: clock, resyncPeriod: resyncPeriod, logger: logger,
                        handler: handler)
        }
    }

    public var hasSynced: Bool { informers.allSatisfy(\.hasSynced) }

    public func get(namespace: String, name: String) -> T? {
        for informer in informers where informer.namespace == nil || informer.namespace == namespace {
            if let o = informer.get(namespace: namespace, name: name) { return o }
        }
        return nil
    }

    /// Every cached object of every watched namespace.
    public func listAll() -> [T] { informers.flatMap { $0.list() } }

    public func list(namespace: String) -> [T] {
        informers.filter { $0.namespace == nil || $0.namespace == namespace }.flatMap { $0.list() }.filter { $0.metadata.namespace == namespace }
    }

    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            for informer in informers { group.addTask { await informer.run() } }
        }
    }
}
