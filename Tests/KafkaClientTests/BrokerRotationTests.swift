import Testing

@testable import KafkaClient

@Suite struct BrokerRotationTests {
    let a = BrokerAddress(host: "a", port: 1)
    let b = BrokerAddress(host: "b", port: 1)
    let c = BrokerAddress(host: "c", port: 1)

    @Test func failuresMoveOnAndAnswersStay() {
        var r = BrokerRotation(bootstrap: [a, b, a])
        #expect(r.round == [a, b])
        r.failed(a)
        #expect(r.round == [b, a])
        r.answered(b)
        #expect(r.round == [b, a])
        r.failed(b)
        #expect(r.round == [a, b])
    }

    @Test func learnedBrokersFollowTheBootstrapAndReplaceEarlierOnes() {
        var r = BrokerRotation(bootstrap: [a, b])
        r.failed(a)
        r.learned([b, c])
        #expect(r.addresses == [a, b, c])
        #expect(r.round == [b, c, a])  // still on b
        r.answered(c)
        r.learned([b])  // c left the cluster: the cursor falls back to the first address
        #expect(r.addresses == [a, b])
        #expect(r.round == [a, b])
        r.learned([])
        #expect(r.addresses == [a, b])  // bootstrap addresses are never dropped
    }

    @Test func noAddresses() {
        var r = BrokerRotation(bootstrap: [])
        #expect(r.round.isEmpty)
        r.failed(a)
        r.learned([a])
        #expect(r.round == [a])
    }
}
