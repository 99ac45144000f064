/// A first-in, first-out queue for worker threads: `append` at the back, `popFirst` at the front
/// in amortized O(1).
///
/// Invariant: an element is released the moment it is popped. Its slot is cleared at once, not
/// at the next compaction, so a popped job's closure (and whatever it captured, such as the bytes
/// of an object being written) never outlives the job.
///
/// Example: append a, b, c; `popFirst()` → a, then b; `count == 1`.
public struct FIFOQueue<Element> {
    private var slots: [Element?] = []
    private var head = 0

    public init() {}

    public var count: Int { slots.count - head }
    public var isEmpty: Bool { count == 0 }

    public mutating func append(_ element: Element) {
        slots.append(element)
    }

    public mutating func popFirst() -> Element? {
        guard head < slots.count else { return nil }
        let element = slots[head].take()
        head += 1
        if head > 64 && head * 2 > slots.count {
            slots.removeFirst(head)
            head = 0
        }
        return element
    }
}

extension FIFOQueue: Sendable where Element: Sendable {}
