import Support
import Testing

@Suite struct RingBufferTests {
    @Test func keepsTheNewestInOrderAndCountsWhatItDropped() {
        var r = RingBuffer<Int>(capacity: 3)
        #expect(r.isEmpty && r.last == nil && r.elements.isEmpty)
        for i in 1...4 { r.append(i) }
        #expect(r.elements == [2, 3, 4])
        #expect(r.count == 3 && r.dropped == 1 && r.last == 4)
        r.updateLast { $0 = 40 }
        #expect(r.elements == [2, 3, 40])
        #expect(r.suffix { $0 > 2 } == [3, 40])
        #expect(r.suffix { $0 > 100 }.isEmpty)
        #expect(r.suffix { _ in true } == [2, 3, 40])
    }

    /// Seeded random appends against an unbounded array cut to the capacity.
    @Test func matchesAnArrayModelOverRandomAppends() {
        var rng = SplitMix64(seed: 16)
        for capacity in [1, 2, 7, 64] {
            var ring = RingBuffer<UInt64>(capacity: capacity)
            var model: [UInt64] = []
            for n in 0..<500 {
                let v = rng.next()
                ring.append(v)
                model.append(v)
                #expect(ring.elements == Array(model.suffix(capacity)), "capacity \(capacity) after \(n + 1)")
                #expect(ring.count == min(model.count, capacity))
                #expect(ring.dropped == max(0, model.count - capacity))
                #expect(ring.last == v)
            }
        }
    }

    /// On a buffer in time order, `suffix(while:)` is "everything after t", whatever t.
    @Test func suffixIsEverythingAfterATimeInATimeOrderedBuffer() {
        var rng = SplitMix64(seed: 17)
        var ring = RingBuffer<UInt64>(capacity: 50)
        var model: [UInt64] = []
        var t: UInt64 = 0
        for _ in 0..<300 {
            t += 1 + rng.next() % 5
            ring.append(t)
            model.append(t)
            let since = t - min(t, rng.next() % 300)
            #expect(ring.suffix { $0 > since } == model.suffix(50).filter { $0 > since })
        }
    }

    @Test func probeRequestSplitsThePathAndDecodesTheQuery() {
        let r = ProbeServer.Request(target: "/api/clusters/ns%2Fx/series?sinceMs=1700&name=a%20b+c&flag")
        #expect(r.path == "/api/clusters/ns%2Fx/series")
        #expect(r.query == ["sinceMs": "1700", "name": "a b c", "flag": ""])
        #expect(ProbeServer.Request(target: "/metrics") == ProbeServer.Request(path: "/metrics"))
    }
}
