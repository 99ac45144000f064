/// A bounded buffer that keeps the newest `capacity` elements: appending to a full buffer
/// drops the oldest. Memory never grows past `capacity` slots, whatever runs for how long.
///
/// Invariant: `elements` is in append order, oldest first; `count ≤ capacity`;
/// `dropped` counts every element ever pushed out.
///
/// Example: capacity 3, append 1, 2, 3, 4 → `elements == [2, 3, 4]`, `dropped == 1`.
public struct RingBuffer<Element> {
    public let capacity: Int
    private var slots: [Element] = []
    /// Index in `slots` of the oldest element once the buffer has wrapped (0 before).
    private var head = 0
    public private(set) var dropped = 0

    public init(capacity: Int) {
        precondition(capacity > 0, "RingBuffer capacity must be positive, got \(capacity)")
        self.capacity = capacity
        slots.reserveCapacity(min(capacity, 1024))
    }

    public var count: Int { slots.count }
    public var isEmpty: Bool { slots.isEmpty }

    public mutating func append(_ element: Element) {
        if slots.count < capacity {
            slots.append(element)
        } else {
            slots[head] = element
            head = (head + 1) % capacity
            dropped += 1
        }
    }

    /// The elements, oldest first.
    public var elements: [Element] { Array(slots[head...] + slots[..<head]) }

    /// The newest element.
    public var last: Element? { slots.isEmpty ? nil : slots[(head + slots.count - 1) % slots.count] }

    /// The newest elements that satisfy `isIncluded`, scanning back from the newest and stopping
    /// at the first that does not (for "everything after time t" on a buffer in time order).
    public func suffix(while isIncluded: (Element) -> Bool) -> [Element] {
        var out: [Element] = []
        var i = slots.count
        while i > 0 {
            let e = slots[(head + i - 1) % slots.count]
            guard isIncluded(e) else { break }
            out.append(e)
            i -= 1
        }
        return out.reversed()
    }

    /// Replaces the newest element (an update of the entry last appended).
    public mutating func updateLast(_ body: (inout Element) -> Void) {
        guard !slots.isEmpty else { return }
        body(&slots[(head + slots.count - 1) % slots.count])
    }
}

extension RingBuffer: Sendable where Element: Sendable {}
