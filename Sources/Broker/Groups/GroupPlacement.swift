/// Which broker coordinates a consumer group. The cluster's metadata decides; the group
/// coordinator asks on every request and answers NOT_COORDINATOR for groups placed elsewhere.
///
/// Answers must be cheap (called per request, off the network) and may change at any time;
/// after a change, call ``GroupCoordinator/placementChanged()`` so groups that moved away are
/// written and dropped from memory. A coordinator that misses a change is still fenced: its
/// writes are conditional on the ETag it last saw, so they fail once the new coordinator wrote.
public protocol GroupPlacement: Sendable {
    /// The broker coordinating `groupId` (node id, host, port), or nil if none is available now.
    func coordinator(for groupId: String) -> (nodeId: Int32, host: String, port: Int32)?
    /// Broker `node`'s address for clients of `listener`; nil: the address `coordinator(for:)`
    /// gave is the one to use.
    func address(of node: Int32, on listener: ListenerName) -> (host: String, port: Int32)?
}

extension GroupPlacement {
    public func address(of node: Int32, on listener: ListenerName) -> (host: String, port: Int32)? { nil }
}

/// One broker coordinates every group: the single-node placement (today's behaviour).
public struct SingleBrokerPlacement: GroupPlacement {
    public let nodeId: Int32
    public let host: String
    public let port: Int32

    public init(nodeId: Int32, host: String, port: Int32) {
        self.nodeId = nodeId
        self.host = host
        self.port = port
    }

    public func coordinator(for groupId: String) -> (nodeId: Int32, host: String, port: Int32)? {
        (nodeId, host, port)
    }
}
