import Foundation
import ObjectStore
import Support
import Synchronization
import Testing
@testable import Broker
@testable import KafkaProtocol

/// Kafka's sampled rate and throttle formula (`QuotaRate`), driven by explicit times.
struct QuotaRateTests {
    @Test func aFreshRateIsMeasuredOverAtLeastTenWindows() {
        var r = QuotaRate()
        r.record(5000, now: 0)
        #expect(r.measure(now: 0) == 500, "5000 bytes over the minimum 10 s window")
        #expect(r.throttleMillis(limit: 1000, now: 0) == 0)
        r.record(12_000, now: 500)
        // The window is the elapsed 0.5 s plus the ten windows not yet full: 10.5 s.
        #expect(r.windowSize(now: 500) == 10_500)
        #expect(abs(r.measure(now: 500) - 17_000 / 10.5) < 1e-9)
        #expect(r.throttleMillis(limit: 1000, now: 500) == 6500, "(1619 - 1000) / 1000 × 10 500 ms")
        #expect(r.throttleMillis(limit: 1000, now: 500, maxMillis: 1000) == 1000, "request quotas bound the throttle to one window")
    }

    @Test func pastTenWindowsTheWindowIsTheElapsedTime() {
        var r = QuotaRate()
        r.record(1000, now: 0)
        r.record(1000, now: 10_500)
        #expect(r.windowSize(now: 10_500) == 10_500)
        #expect(abs(r.measure(now: 10_500) - 2000 / 10.5) < 1e-9)
    }

    @Test func samplesOlderThanElevenWindowsNoLongerCount() {
        var r = QuotaRate()
        for s in 0..<11 { r.record(1000, now: Int64(s) * 1000) }
        #expect(abs(r.measure(now: 10_999) - 11_000 / 10.999) < 1e-6, "11 samples over 10.999 s")
        // At 11 s the first sample (t = 0) has expired and is reused for the new record.
        r.record(1000, now: 11_000)
        #expect(abs(r.measure(now: 11_000) - 11_000 / 10.0) < 1e-6, "samples 1…11 over the minimum 10 s")
        #expect(r.measure(now: 40_000) == 0, "everything expired")
    }

    @Test func undoingARecordTakesItBack() {
        var r = QuotaRate()
        r.record(4000, now: 0)
        r.record(20_000, now: 100)
        #expect(r.throttleMillis(limit: 1000, now: 100) > 0)
        r.record(-20_000, now: 100)
        #expect(abs(r.measure(now: 100) - 4000 / 10.1) < 1e-9)
    }
}

struct QuotaTableTests {
    static let keys: [QuotaKey] = [.producerByteRate]

    func table(_ entities: [ClientQuotaEntity]) -> QuotaTable {
        // Each entity's limit is its position + 1, so the answer names the entity that applied.
        QuotaTable(entities.enumerated().map { ClientQuotaEntry(entity: $0.element, values: ["producer_byte_rate": Double($0.offset + 1)]) })
    }

    @Test func precedenceIsKafkas() {
        let u = QuotaEntityName.named("alice"), c = QuotaEntityName.named("app"), d = QuotaEntityName.defaultEntity
        // From the most to the least specific; removing the first each time exposes the next.
        var order: [(ClientQuotaEntity, QuotaTable.MetricEntity)] = [
            (.init(user: u, clientId: c), .init(user: "alice", clientId: "app")),
            (.init(user: u, clientId: d), .init(user: "alice", clientId: "app")),
            (.init(user: u), .init(user: "alice", clientId: "")),
            (.init(user: d, clientId: c), .init(user: "alice", clientId: "app")),
            (.init(user: d, clientId: d), .init(user: "alice", clientId: "app")),
            (.init(user: d), .init(user: "alice", clientId: "")),
            (.init(clientId: c), .init(user: "", clientId: "app")),
            (.init(clientId: d), .init(user: "", clientId: "app")),
        ]
        // Unrelated entities never apply.
        let others: [ClientQuotaEntity] = [.init(user: .named("bob")), .init(clientId: .named("other")), .init(user: .named("bob"), clientId: c)]
        while let (entity, metric) = order.first {
            let t = table(others + order.map(\.0))
            let r = t.resolve(user: "alice", clientId: "app", key: .producerByteRate)
            #expect(r.entity == entity, "with \(order.count) levels left the most specific, \(entity), applies; got \(String(describing: r.entity))")
            #expect(r.metric == metric, "metric entity of \(entity)")
            #expect(r.limit == Double(others.count + 1))
            order.removeFirst()
        }
        let none = table(others).resolve(user: "alice", clientId: "app", key: .producerByteRate)
        #expect(none.limit == nil && none.entity == nil)
        // Another key's quota does not count for this one.
        let otherKey = QuotaTable([ClientQuotaEntry(entity: .init(user: u), values: ["consumer_byte_rate": 5])])
        #expect(otherKey.resolve(user: "alice", clientId: "app", key: .producerByteRate).limit == nil)
        #expect(otherKey.resolve(user: "alice", clientId: "app", key: .consumerByteRate).limit == 5)
    }

    @Test func keysAndValuesAreValidatedAsKafkaDoes() {
        #expect(QuotaKey.validate(key: "producer_byte_rate", value: 1_048_576, remove: false) == .success(.producerByteRate))
        #expect(QuotaKey.validate(key: "request_percentage", value: 12.5, remove: false) == .success(.requestPercentage))
        #expect(QuotaKey.validate(key: "controller_mutation_rate", value: 0.5, remove: false) == .success(.controllerMutationRate))
        #expect(QuotaKey.validate(key: "bogus", value: 1, remove: true)
                == .failure(QuotaProblem(.invalidRequest, "Invalid configuration key bogus")))
        #expect(QuotaKey.validate(key: "consumer_byte_rate", value: 1.5, remove: false)
                == .failure(QuotaProblem(.invalidRequest, "Proposed value for consumer_byte_rate must be an integer, not 1.5")))
        #expect(QuotaKey.validate(key: "consumer_byte_rate", value: 1e30, remove: false)
                == .failure(QuotaProblem(.invalidRequest, "Proposed value for consumer_byte_rate is too large for a LONG.")))
        for bad in [0, -1, Double.nan, Double.infinity] {
            guard case let .failure(p) = QuotaKey.validate(key: "request_percentage", value: bad, remove: false) else {
                Issue.record("request_percentage = \(bad) was accepted")
                continue
            }
            #expect(p.code == .invalidRequest)
        }
        #expect(QuotaKey.validate(key: "consumer_byte_rate", value: -1, remove: true) == .success(.consumerByteRate), "a removal ignores the value")
    }

    @Test func entitiesAreValidatedAsKafkaDoes() {
        #expect(ClientQuotaEntity.parse([("user", nil), ("client-id", "c")]) == .success(.init(user: .defaultEntity, clientId: .named("c"))))
        func code(_ c: [(type: String, name: String?)]) -> String? {
            if case let .failure(p) = ClientQuotaEntity.parse(c) { return "\(p.code): \(p.message)" }
            return nil
        }
        #expect(code([]) == "invalidRequest: Invalid empty client quota entity")
        #expect(code([("user", "a"), ("user", "b")]) == "invalidRequest: Duplicate user entity type in the client quota entity")
        #expect(code([("user", "")]) == "invalidRequest: Empty user not supported")
        #expect(code([("topic", "t")]) == "invalidRequest: Unhandled client quota entity type: topic")
        #expect(code([("ip", "1.2.3.4")])?.hasPrefix("invalidRequest: IP quotas") == true)
    }

    @Test func describeFiltersMatchAsKafkasDo() throws {
        let entities: [ClientQuotaEntity] = [
            .init(user: .named("alice")), .init(user: .defaultEntity), .init(user: .named("alice"), clientId: .named("app")),
            .init(clientId: .named("app")), .init(clientId: .defaultEntity),
        ]
        let t = table(entities)
        func names(_ c: [(type: String, matchType: Int8, match: String?)], strict: Bool) throws -> [String] {
            try t.describe(c, strict: strict).get().map(\.entity.description)
        }
        #expect(try names([], strict: false) == ["/clients/<default>", "/clients/app", "/users/<default>", "/users/alice", "/users/alice/clients/app"])
        #expect(try names([], strict: true) == [])
        #expect(try names([("user", 0, "alice")], strict: false) == ["/users/alice", "/users/alice/clients/app"])
        #expect(try names([("user", 0, "alice")], strict: true) == ["/users/alice"])
        #expect(try names([("user", 1, nil)], strict: false) == ["/users/<default>"])
        #expect(try names([("user", 2, nil)], strict: true) == ["/users/<default>", "/users/alice"])
        #expect(try names([("client-id", 0, "app")], strict: false) == ["/clients/app", "/users/alice/clients/app"])
        #expect(try names([("client-id", 2, nil), ("user", 2, nil)], strict: true) == ["/users/alice/clients/app"])
        #expect(try names([("ip", 2, nil)], strict: false) == [])
        func problem(_ c: [(type: String, matchType: Int8, match: String?)]) -> QuotaProblem? {
            if case let .failure(p) = t.describe(c, strict: false) { return p }
            return nil
        }
        #expect(problem([("user", 0, nil)]) == QuotaProblem(.invalidRequest, "Request specified MATCH_TYPE_EXACT, but set match string to null."))
        #expect(problem([("user", 1, "x")]) == QuotaProblem(.invalidRequest, "Request specified MATCH_TYPE_DEFAULT, but also specified a match string."))
        #expect(problem([("user", 2, "x")]) == QuotaProblem(.invalidRequest, "Request specified MATCH_TYPE_SPECIFIED, but also specified a match string."))
        #expect(problem([("user", 3, nil)]) == QuotaProblem(.invalidRequest, "Unknown match type 3"))
        #expect(problem([("user", 2, nil), ("user", 1, nil)]) == QuotaProblem(.invalidRequest, "Entity type user cannot appear more than once in the filter."))
        #expect(problem([("topic", 2, nil)]) == QuotaProblem(.unsupportedVersion, "Unsupported entity type topic"))
        #expect(problem([("", 2, nil)])?.code == .invalidRequest)
        #expect(problem([("ip", 2, nil), ("user", 2, nil)])?.code == .invalidRequest)
    }

    @Test func quotasAreMetadataRecordsAndOlderSnapshotsRead() throws {
        var old = ClusterState()
        old.clusterID = "c"
        let encodedOld = try JSONEncoder().encode(old)
        #expect(!String(decoding: encodedOld, as: UTF8.self).contains("clientQuotas"))
        #expect(try JSONDecoder().decode(ClusterState.self, from: encodedOld).quotaEntries == [])
        var new = old
        let alice = ClientQuotaEntity(user: .named("alice")), anyClient = ClientQuotaEntity(user: .defaultEntity, clientId: .defaultEntity)
        new.setQuotas(alice, ["producer_byte_rate": 1024])
        new.setQuotas(anyClient, ["request_percentage": 50])
        #expect(try JSONDecoder().decode(ClusterState.self, from: JSONEncoder().encode(new)) == new)
        let records = MetadataRecord.diff(from: old, to: new)
        #expect(records == [.clientQuota(entity: anyClient, values: ["request_percentage": 50]),
                            .clientQuota(entity: alice, values: ["producer_byte_rate": 1024])])
        var replayed = old
        for r in records { r.apply(to: &replayed) }
        #expect(replayed == new)
        #expect(MetadataRecord.diff(from: new, to: old) == [.clientQuota(entity: anyClient, values: nil), .clientQuota(entity: alice, values: nil)])
        // A log entry carrying the record survives the envelope.
        let entry = MetadataLogEntry(offset: 1, controllerEpoch: 1, writtenMillis: 0, records: records)
        let bytes = try DocumentEnvelope.encode(entry, kind: .metadataLogEntry, version: MetadataLogEntry.formatVersion)
        #expect(try DocumentEnvelope.decode(MetadataLogEntry.self, from: bytes, kind: .metadataLogEntry, versions: 1...1, key: "k") == entry)
    }
}

struct QuotaManagerTests {
    static func manager(_ quotas: [ClientQuotaEntity: [String: Double]]) -> (QuotaManager, ManualClock) {
        let clock = ManualClock()
        let m = QuotaManager(clock: clock)
        m.update(quotas.map { ClientQuotaEntry(entity: $0.key, values: $0.value) })
        return (m, clock)
    }

    @Test func produceOverItsQuotaIsThrottledAndOthersAreNot() {
        let (m, clock) = Self.manager([.init(clientId: .named("p")): ["producer_byte_rate": 1000]])
        #expect(m.record(.produce, user: "ANONYMOUS", clientId: "p", value: 9000) == 0)
        #expect(m.record(.produce, user: "ANONYMOUS", clientId: "p", value: 2000) == 1000, "11 000 over 10 s: 10 % over, 1 s")
        #expect(m.record(.produce, user: "ANONYMOUS", clientId: "other", value: 1_000_000) == 0, "no quota applies to another client id")
        #expect(m.record(.fetch, user: "ANONYMOUS", clientId: "p", value: 1_000_000) == 0, "no fetch quota exists")
        clock.advance(by: .seconds(30))
        #expect(m.record(.produce, user: "ANONYMOUS", clientId: "p", value: 1000) == 0, "the old samples expired")
        // Removing the quota lifts the throttle at once.
        m.update([])
        #expect(m.record(.produce, user: "ANONYMOUS", clientId: "p", value: 1_000_000) == 0)
    }

    @Test func aUserQuotaIsSharedByItsClientsAndAUserDefaultIsPerUser() {
        let (m, _) = Self.manager([.init(user: .named("alice")): ["producer_byte_rate": 1000], .init(user: .defaultEntity): ["producer_byte_rate": 1000]])
        #expect(m.record(.produce, user: "alice", clientId: "a", value: 6000) == 0)
        #expect(m.record(.produce, user: "alice", clientId: "b", value: 6000) > 0, "alice's clients share her quota")
        #expect(m.record(.produce, user: "bob", clientId: "a", value: 6000) == 0)
        #expect(m.record(.produce, user: "carol", clientId: "a", value: 6000) == 0, "the default user quota is measured per user")
    }

    @Test func aThrottledFetchIsTakenBackAndFetchesAreCapped() {
        let (m, _) = Self.manager([.init(clientId: .defaultEntity): ["consumer_byte_rate": 1000]])
        #expect(m.fetchCap(user: "u", clientId: "c") == 10_000, "a quota's worth of ten windows")
        #expect(m.fetchCap(user: "u", clientId: "c") != nil)
        #expect(m.record(.fetch, user: "u", clientId: "c", value: 9000) == 0)
        #expect(m.record(.fetch, user: "u", clientId: "c", value: 3000) == 2000)
        m.unrecord(.fetch, user: "u", clientId: "c", value: 3000)
        // The 3000 bytes were not sent, so they do not count: 1000 more still fit.
        #expect(m.record(.fetch, user: "u", clientId: "c", value: 1000) == 0)
    }

    @Test func requestTimeThrottlesAreBoundedByOneWindow() {
        let (m, _) = Self.manager([.init(user: .defaultEntity): ["request_percentage": 1]])
        // 500 % of a thread-second recorded at once: far over, bounded to 1 s.
        #expect(m.record(.request, user: "u", clientId: "c", value: 500, maxMillis: m.windowMillis) == 1000)
    }

    /// A Produce handler that answers at once (the inner handler of the enforcement wrapper).
    struct FakeProduce: ApiHandler {
        let apiKey = ApiKey.produce
        let versions: ClosedRange<Int16> = 0...11
        func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult { .deferred { .produce(ProduceResponse()) } }
    }

    struct FakeFetch: ApiHandler {
        let apiKey = ApiKey.fetch
        let versions: ClosedRange<Int16> = 4...17
        func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
            guard case let .fetch(r) = request else { return .close }
            // Answers max_bytes bytes of "records", so the test sees the cap.
            let records = [UInt8](repeating: 0, count: Int(r.maxBytes))[...]
            return .response(.fetch(FetchResponse(sessionId: 0, responses: [.init(topic: "t", partitions: [.init(partitionIndex: 0, records: records)])])))
        }
    }

    static func context(_ key: ApiKey, version: Int16, session: ConnectionSession) -> RequestContext {
        RequestContext(connection: ConnectionInfo(id: 1, peer: "test", session: session),
                       header: RequestHeader(requestApiKey: key.rawValue, requestApiVersion: version, correlationId: 1, clientId: "p"), apiKey: key)
    }

    @Test func aThrottledProduceAnswersWithTheThrottleAndMutesTheConnection() async throws {
        let (m, _) = Self.manager([.init(clientId: .named("p")): ["producer_byte_rate": 1000]])
        let h = QuotaEnforcingHandler(inner: FakeProduce(), quotas: m)
        let session = ConnectionSession()
        func produce(_ bytes: Int) async throws -> ProduceResponse {
            let request = ProduceRequest(acks: -1, topicData: [.init(name: "t", partitionData: [.init(index: 0, records: [UInt8](repeating: 1, count: bytes)[...])])])
            guard case let .deferred(f) = await h.handle(.produce(request), context: Self.context(.produce, version: 9, session: session)) else {
                throw HarnessError.closed
            }
            return try requireResponse(await f(), as: ProduceResponse.self)
        }
        #expect(try await produce(5000).throttleTimeMs == 0)
        #expect(session.snapshot.throttledUntil == nil)
        let before = ContinuousClock.now
        #expect(try await produce(10_000).throttleTimeMs == 5000, "15 000 over 10 s is 50 % over: 5 s")
        let until = try #require(session.snapshot.throttledUntil, "the connection is muted")
        #expect(until >= before + .milliseconds(5000) && until <= ContinuousClock.now + .milliseconds(5000))
    }

    @Test func aFetchOverItsQuotaIsAnsweredEmptyWithTheThrottle() async throws {
        let (m, _) = Self.manager([.init(clientId: .named("p")): ["consumer_byte_rate": 1000]])
        let h = QuotaEnforcingHandler(inner: FakeFetch(), quotas: m)
        let session = ConnectionSession()
        func fetch(_ maxBytes: Int32) async throws -> FetchResponse {
            let request = FetchRequest(replicaId: -1, maxBytes: maxBytes, topics: [])
            guard case let .response(r) = await h.handle(.fetch(request), context: Self.context(.fetch, version: 12, session: session)) else {
                throw HarnessError.closed
            }
            return try requireResponse(r, as: FetchResponse.self)
        }
        let first = try await fetch(50_000_000)
        #expect(first.responses.first?.partitions.first?.records?.count == 10_000, "max_bytes capped at the quota's ten windows")
        #expect(first.throttleTimeMs == 0)
        let second = try await fetch(2000)
        #expect(second.responses.isEmpty, "an answer over the quota carries no data")
        #expect(second.throttleTimeMs == 2000, "12 000 over 10 s: 20 % over, 2 s")
        #expect(session.snapshot.throttledUntil != nil)
        // The dropped 2000 bytes do not count: once the rate is back under the quota data flows.
        m.update([ClientQuotaEntry(entity: .init(clientId: .named("p")), values: ["consumer_byte_rate": 1001])])
        #expect(try await fetch(10).throttleTimeMs == 0)
    }

    @Test func aFetchOverTheRequestQuotaAloneIsAnsweredEmptyToo() async throws {
        // Any handling time is over a quota this small: throttled, bounded to one window.
        let (m, _) = Self.manager([.init(clientId: .named("p")): ["request_percentage": 1e-9]])
        let h = QuotaEnforcingHandler(inner: FakeFetch(), quotas: m)
        let request = FetchRequest(replicaId: -1, maxBytes: 100, topics: [])
        guard case let .response(r) = await h.handle(.fetch(request), context: Self.context(.fetch, version: 12, session: ConnectionSession())) else {
            throw HarnessError.closed
        }
        let f = try requireResponse(r, as: FetchResponse.self)
        #expect(f.responses.isEmpty && f.throttleTimeMs == 1000, "got \(f.responses.count) topics, throttle \(f.throttleTimeMs)")
    }
}

struct ClientQuotaHandlerTests {
    static func entity(_ parts: [(String, String?)]) -> [AlterClientQuotasRequest.EntityData] {
        parts.map { .init(entityType: $0.0, entityName: $0.1) }
    }

    @Test func alterThroughTheMetadataLogThenDescribe() async throws {
        let h = try await Harness.make()
        let alter = AlterClientQuotasRequest(entries: [
            .init(entity: Self.entity([("user", "alice")]), ops: [.init(key: "producer_byte_rate", value: 1_048_576), .init(key: "request_percentage", value: 25)]),
            .init(entity: Self.entity([("client-id", nil)]), ops: [.init(key: "consumer_byte_rate", value: 2_097_152)]),
            .init(entity: Self.entity([("user", "bob")]), ops: [.init(key: "producer_byte_rate", value: 5), .init(key: "bogus", value: 1)]),
            .init(entity: Self.entity([("user", "carol")]), ops: [.init(key: "consumer_byte_rate", value: 0.5)]),
        ])
        let altered = try requireResponse(try await h.call(AlterClientQuotasHandler(core: h.core), .alterClientQuotas(alter), version: 1),
                                          as: AlterClientQuotasResponse.self)
        #expect(altered.entries.map(\.errorCode) == [0, 0, KafkaErrorCode.invalidRequest.rawValue, KafkaErrorCode.invalidRequest.rawValue])
        #expect(altered.entries[2].errorMessage == "Invalid configuration key bogus")
        #expect(altered.entries[3].errorMessage == "Proposed value for consumer_byte_rate must be an integer, not 0.5")
        #expect(altered.entries[1].entity == [.init(entityType: "client-id", entityName: nil)], "the entity is echoed")
        #expect(h.core.registry.state.quotaEntries.map(\.entity.description) == ["/clients/<default>", "/users/alice"], "bob's entry changed nothing")

        let describe = DescribeClientQuotasRequest(components: [.init(entityType: "user", matchType: 2, match: nil)], strict: false)
        let described = try requireResponse(try await h.call(DescribeClientQuotasHandler(core: h.core), .describeClientQuotas(describe), version: 1),
                                            as: DescribeClientQuotasResponse.self)
        #expect(described.errorCode == 0)
        #expect(described.entries == [.init(entity: [.init(entityType: "user", entityName: "alice")],
                                            values: [.init(key: "producer_byte_rate", value: 1_048_576), .init(key: "request_percentage", value: 25)])])

        // validate_only changes nothing; removing the last key removes the entity.
        let check = AlterClientQuotasRequest(entries: [.init(entity: Self.entity([("user", "dave")]), ops: [.init(key: "producer_byte_rate", value: 7)])],
                                             validateOnly: true)
        let checked = try requireResponse(try await h.call(AlterClientQuotasHandler(core: h.core), .alterClientQuotas(check), version: 0),
                                          as: AlterClientQuotasResponse.self)
        #expect(checked.entries.map(\.errorCode) == [0])
        let remove = AlterClientQuotasRequest(entries: [.init(entity: Self.entity([("client-id", nil)]), ops: [.init(key: "consumer_byte_rate", value: 0, remove: true)])])
        _ = try await h.call(AlterClientQuotasHandler(core: h.core), .alterClientQuotas(remove), version: 1)
        #expect(h.core.registry.state.quotaEntries.map(\.entity.description) == ["/users/alice"])

        // A restarted broker replays them from the bucket.
        let again = try await h.restarted()
        #expect(again.core.registry.state.quotaEntries.map(\.entity.description) == ["/users/alice"])

        let bad = DescribeClientQuotasRequest(components: [.init(entityType: "user", matchType: 0, match: nil)])
        let refused = try requireResponse(try await again.call(DescribeClientQuotasHandler(core: again.core), .describeClientQuotas(bad), version: 0),
                                          as: DescribeClientQuotasResponse.self)
        #expect(refused.errorCode == KafkaErrorCode.invalidRequest.rawValue && refused.entries == nil)
    }

    @Test func followersApplyChangesFromTheLog() async throws {
        let store = MemoryObjectStore(name: "q")
        let writer = MetadataLog(store: store, prefix: "c/")
        let follower = MetadataLog(store: store, prefix: "c/")
        let m = QuotaManager(clock: ManualClock())
        m.follow(follower)
        try await writer.append([.clientQuota(entity: .init(clientId: .named("p")), values: ["producer_byte_rate": 100])], epoch: 1)
        #expect(m.limit(.produce, user: "u", clientId: "p") == nil, "not read yet")
        try await follower.catchUp()
        #expect(m.limit(.produce, user: "u", clientId: "p") == 100)
        try await writer.append([.clientQuota(entity: .init(clientId: .named("p")), values: nil)], epoch: 1)
        try await follower.catchUp()
        #expect(m.limit(.produce, user: "u", clientId: "p") == nil)
    }

    @Test func unauthorizedPrincipalsAreRefusedWithKafkasCodes() throws {
        let alter = AnyRequest.alterClientQuotas(AlterClientQuotasRequest(entries: [
            .init(entity: Self.entity([("user", "x")]), ops: [.init(key: "producer_byte_rate", value: 1)])]))
        let describe = AnyRequest.describeClientQuotas(DescribeClientQuotasRequest())
        let denied = KafkaErrorCode.clusterAuthorizationFailed.rawValue
        guard case let .answer(.alterClientQuotas(a)) = AccessCheckTests.check([]).screen(alter, version: 1) else {
            Issue.record("AlterClientQuotas without ALTER_CONFIGS on the cluster was not refused")
            return
        }
        #expect(a.entries.map(\.errorCode) == [denied])
        guard case let .answer(.describeClientQuotas(d)) = AccessCheckTests.check([]).screen(describe, version: 1) else {
            Issue.record("DescribeClientQuotas without DESCRIBE_CONFIGS on the cluster was not refused")
            return
        }
        #expect(d.errorCode == denied && d.entries == nil)
        // The right operation on the cluster lets each through; the other does not.
        let cluster = AccessCheckTests.cluster
        #expect(isPass(AccessCheckTests.check(AccessCheckTests.grants([(.alterConfigs, cluster)])).screen(alter, version: 1)))
        #expect(isPass(AccessCheckTests.check(AccessCheckTests.grants([(.describeConfigs, cluster)])).screen(describe, version: 1)))
        #expect(!isPass(AccessCheckTests.check(AccessCheckTests.grants([(.describeConfigs, cluster)])).screen(alter, version: 1)))
        #expect(isPass(AccessCheckTests.check(AccessCheckTests.grants([(.alterConfigs, cluster)])).screen(describe, version: 1)),
                "ALTER_CONFIGS implies DESCRIBE_CONFIGS")
    }

    func isPass(_ s: Screening) -> Bool { if case .pass = s { true } else { false } }
}

/// Echoes; the first request of a connection mutes it (as a throttled Produce does) and every
/// request notes when it was handled.
final class MutingEcho: RequestHandler, Sendable {
    let muteFor: Duration
    let seen = Mutex<[(seq: UInt64, at: ContinuousClock.Instant, mutedUntil: ContinuousClock.Instant?)]>([])
    init(muteFor: Duration) { self.muteFor = muteFor }

    func handle(_ request: ServerRequest) async -> HandlerResult {
        let now = ContinuousClock.now
        var until: ContinuousClock.Instant? = nil
        if request.seq == 0 {
            until = now + muteFor
            request.connection.session.update { $0.throttledUntil = until }
        }
        seen.withLock { $0.append((request.seq, now, until)) }
        return .respond(request.bytes)
    }
}

struct QuotaMuteTests {
    @Test(.timeLimit(.minutes(1))) func aLongThrottleDoesNotHoldUpShutdown() async throws {
        let handler = MutingEcho(muteFor: .seconds(3600))
        try await withServer(handler: handler) { server in
            // The second request waits behind an hour's throttle; the client reads the first
            // answer and goes away.
            let got = try await TestClient.exchange(port: server.port, send: [[0x02, 0], [0x02, 1]], expect: 1).get()
            #expect(got == [[0x02, 0]])
        }
        // withServer returned: the server shut down (within the time limit) although the
        // connection's throttle had an hour to run.
        #expect(handler.seen.withLock { $0.count } <= 2)
    }

    @Test func aMutedConnectionsNextRequestsWaitForTheThrottle() async throws {
        let handler = MutingEcho(muteFor: .milliseconds(300))
        try await withServer(handler: handler) { server in
            let frames: [[UInt8]] = (0..<3).map { [0x02, UInt8($0)] }
            let got = try await TestClient.exchange(port: server.port, send: frames, expect: frames.count).get()
            #expect(got == frames, "every request is answered, in order")
        }
        let seen = handler.seen.withLock { $0 }
        try #require(seen.count == 3, "handled \(seen.count) requests, sent 3")
        let until = try #require(seen[0].mutedUntil)
        for later in seen.dropFirst() {
            #expect(later.at >= until, "request \(later.seq) was handled \(until - later.at) before the connection's throttle ended")
        }
    }
}
