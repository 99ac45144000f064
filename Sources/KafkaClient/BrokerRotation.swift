/// The addresses an admin client tries, in order, and where the next call starts: the
/// bootstrap addresses as given, then the brokers the last Metadata (or DescribeCluster)
/// answer listed that are not among them.
///
/// Invariants: the bootstrap addresses are never dropped (a cluster that lost every listed
/// broker is still found through them); `cursor` indexes `addresses`; the cursor stays on an
/// address that answers and moves past one that failed.
///
/// Example: bootstrap [a, b], a fails: `failed(a)` moves the cursor to b, so `round` is [b, a];
/// `learned([b, c])` makes `addresses` [a, b, c] with the cursor still on b ([b, c, a]).
struct BrokerRotation: Sendable, Equatable {
    private(set) var addresses: [BrokerAddress]
    private let bootstrapCount: Int
    private(set) var cursor = 0

    init(bootstrap: [BrokerAddress]) {
        var unique: [BrokerAddress] = []
        for a in bootstrap where !unique.contains(a) { unique.append(a) }
        addresses = unique
        bootstrapCount = unique.count
    }

    /// Every address once, starting at the cursor.
    var round: [BrokerAddress] {
        Array(addresses[cursor...] + addresses[..<cursor])
    }

    /// `address` failed (unreachable, timed out, or a retriable error): the next call starts
    /// after it.
    mutating func failed(_ address: BrokerAddress) {
        guard let i = addresses.firstIndex(of: address) else { return }
        cursor = (i + 1) % addresses.count
    }

    /// `address` answered: the next call starts there.
    mutating func answered(_ address: BrokerAddress) {
        if let i = addresses.firstIndex(of: address) { cursor = i }
    }

    /// The brokers a Metadata answer listed replace the previously learned ones.
    mutating func learned(_ brokers: [BrokerAddress]) {
        let current = addresses.isEmpty ? nil : addresses[cursor]
        var next = Array(addresses[..<bootstrapCount])
        for b in brokers where !next.contains(b) { next.append(b) }
        addresses = next
        cursor = current.flatMap { next.firstIndex(of: $0) } ?? 0
    }
}
