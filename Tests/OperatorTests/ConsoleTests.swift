import Foundation
import Synchronization
import Support
import Testing

@testable import Operator

/// The console's recorder (bounded history, gone brokers) and its `/api` JSON and routes.
@Suite struct ConsoleTests {
    static let MiB = 1024.0 * 1024.0
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func settings(schedules: [ScheduleSpec] = []) throws -> ElasticitySettings {
        var schedule = ScheduleSpec(name: "festival", start: "0 20 * * fri", timeZone: "Europe/Paris", durationMinutes: 60)
        schedule.minBrokers = 3
        let spec = AutoscalingSpec(
            enabled: true, minBrokers: 1, maxBrokers: 4, targets: .init(bytesInPerSecond: Int64(2 * Self.MiB)), tolerancePercent: 10,
            scaleUp: .init(stabilizationWindowSeconds: 10, maxStepBrokers: 4), scaleDown: .init(stabilizationWindowSeconds: 60, maxStepBrokers: 1),
            schedules: schedules.isEmpty ? [schedule] : schedules)
        return ElasticitySettings(autoscaling: AutoscalerSettings(spec), balancer: BalancerSettings(maxMoves: 7, moveCooldown: 30), tick: 1,
                                  loadWindow: 6, prescale: try PrescalePolicy(spec))
    }

    /// Brokers 1…n, broker k carrying k MiB/s in and 2k MiB/s out.
    func view(brokers n: Int32, desired: Int, at time: Date) -> ElasticityView {
        var v = ElasticityView()
        v.bootstrap = "127.0.0.1:9092"
        v.desired = desired
        v.updated = time
        v.brokers = (1...n).map { k in
            ElasticityView.Broker(
                id: k, state: k == n && n > 1 ? "starting" : "ready",
                load: BrokerLoad(bytesInPerSecond: Double(k) * Self.MiB, bytesOutPerSecond: Double(2 * k) * Self.MiB, cpuPercent: 12.5),
                partitions: Int(k) + 3)
        }
        return v
    }

    func json(_ response: ProbeServer.Response?) throws -> [String: Any] {
        let r = try #require(response)
        #expect(r.contentType == "application/json")
        return try #require(try JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any], "\(r.body)")
    }

    @Test func seriesKeepsOneSamplePerIntervalAndOnlyTheLastHistory() throws {
        let r = ConsoleRecorder(name: "local", settings: try settings(), history: 10, sampleInterval: 1)
        // 25 s of ticks every 0.5 s: one sample per second is kept, and only the last 10.
        for i in 0..<50 { r.record(view(brokers: 2, desired: 2, at: t0), now: t0.addingTimeInterval(Double(i) * 0.5)) }
        let all = r.series(sinceMs: nil).samples
        #expect(all.count == 10)
        #expect(all.last?.timeMs == ConsoleAPI.ms(t0.addingTimeInterval(24.5)) || all.last?.timeMs == ConsoleAPI.ms(t0.addingTimeInterval(24)))
        #expect(zip(all, all.dropFirst()).allSatisfy { $1.timeMs - $0.timeMs >= 1000 })
        #expect(all.first!.bytesInPerSecond == 3 * Self.MiB)
        #expect(all.first!.bytesOutPerSecond == 6 * Self.MiB)
        #expect(all.first!.readyBrokers == 1 && all.first!.brokers == 2 && all.first!.desiredBrokers == 2)
        // sinceMs: only what is newer.
        let cut = all[6].timeMs
        let newer = r.series(sinceMs: cut).samples
        #expect(newer.map(\.timeMs) == all.suffix(3).map(\.timeMs))
        #expect(r.series(sinceMs: all.last!.timeMs).samples.isEmpty)
    }

    @Test func clusterJSONCarriesBrokersDecisionsMovesPlanSettingsAndSchedules() throws {
        let store = ConsoleStore()
        let recorder = store.register("local", settings: try settings())
        var v = view(brokers: 3, desired: 3, at: t0)
        v.phase = .scalingOut(target: 3)
        v.decisions = [ScalingRecord(time: t0, from: 1, to: 3, reason: "bytesIn 6.0 MiB/s total … → 3", dryRun: false)]
        v.moves = [
            MoveRecord(partition: PartitionKey("orders", 4), from: 1, to: 3, why: "scale-out", load: 0.5 * Self.MiB, started: t0, seconds: 0.25, outcome: .done),
            MoveRecord(partition: PartitionKey("orders", 5), from: 1, to: 2, why: "scale-out", load: 0.5 * Self.MiB, started: t0, seconds: nil, outcome: .moving),
        ]
        v.plan = Balancer.plan(
            eligible: [1, 2], partitions: [PartitionPlacement(key: PartitionKey("t", 0), owner: 1, load: 4 * Self.MiB),
                                           PartitionPlacement(key: PartitionKey("t", 1), owner: 1, load: 4 * Self.MiB)],
            settings: BalancerSettings(), now: 0)
        recorder.record(v, now: t0.addingTimeInterval(1))
        let routes = ConsoleRoutes(store: store)
        let c = try json(routes.handle(ProbeServer.Request(path: "/api/clusters/local")))
        #expect(c["name"] as? String == "local")
        #expect(c["phase"] as? String == "scaling out to 3")
        #expect(c["desiredBrokers"] as? Int == 3)
        #expect(c["readyBrokers"] as? Int == 2)
        #expect(c["bytesInPerSecond"] as? Double == 6 * Self.MiB)
        let brokers = try #require(c["brokers"] as? [[String: Any]])
        #expect(brokers.map { $0["id"] as? Int } == [1, 2, 3])
        #expect(brokers.map { $0["state"] as? String } == ["ready", "ready", "starting"])
        #expect(brokers.map { $0["partitions"] as? Int } == [4, 5, 6])
        #expect(brokers[1]["bytesOutPerSecond"] as? Double == 4 * Self.MiB)
        #expect(brokers[1]["cpuPercent"] as? Double == 12.5)
        let decisions = try #require(c["decisions"] as? [[String: Any]])
        #expect(decisions.count == 1)
        #expect(decisions[0]["from"] as? Int == 1 && decisions[0]["to"] as? Int == 3)
        #expect(decisions[0]["timeMs"] as? Int64 == ConsoleAPI.ms(t0))
        #expect((decisions[0]["reason"] as? String)?.hasPrefix("bytesIn") == true)
        let moves = try #require(c["moves"] as? [[String: Any]])
        #expect(moves.map { $0["partition"] as? String } == ["orders-4", "orders-5"])
        #expect(moves.map { $0["outcome"] as? String } == ["done", "moving"])
        #expect(moves[0]["seconds"] as? Double == 0.25 && moves[0]["why"] as? String == "scale-out" && moves[0]["to"] as? Int == 3)
        #expect(moves[1]["seconds"] == nil)
        let plan = try #require(c["plan"] as? [String: Any])
        #expect(plan["balanced"] as? Bool == false)
        #expect((plan["moves"] as? [[String: Any]])?.first?["to"] as? Int == 2)
        let a = try #require(c["autoscaler"] as? [String: Any])
        #expect(a["minBrokers"] as? Int == 1 && a["maxBrokers"] as? Int == 4)
        #expect(a["targetBytesInPerSecond"] as? Double == 2 * Self.MiB)
        #expect(a["tolerancePercent"] as? Double == 10)
        #expect(a["scaleUpWindowSeconds"] as? Double == 10 && a["scaleDownWindowSeconds"] as? Double == 60)
        let b = try #require(c["balancer"] as? [String: Any])
        #expect(b["maxMovesPerRound"] as? Int == 7 && b["moveCooldownSeconds"] as? Double == 30)
        let s = try #require(c["schedules"] as? [String: Any])
        let configured = try #require(s["configured"] as? [[String: Any]])
        #expect(configured.first?["name"] as? String == "festival")
        #expect(configured.first?["timeZone"] as? String == "Europe/Paris")
        #expect(configured.first?["floorBrokers"] as? Int == 3)

        let list = try json(routes.handle(ProbeServer.Request(path: "/api/clusters")))
        #expect((list["clusters"] as? [[String: Any]])?.map { $0["name"] as? String } == ["local"])
    }

    @Test func aBrokerThatLeftIsShownAsGoneForAWhile() throws {
        let r = ConsoleRecorder(name: "local", settings: try settings(), goneFor: 60)
        r.record(view(brokers: 3, desired: 3, at: t0), now: t0)
        r.record(view(brokers: 2, desired: 2, at: t0), now: t0.addingTimeInterval(2))
        let rows = r.snapshot(now: t0.addingTimeInterval(3)).brokers
        #expect(rows.map(\.id) == [1, 2, 3])
        #expect(rows.last?.state == "gone")
        #expect(rows.last?.goneMs == ConsoleAPI.ms(t0.addingTimeInterval(2)))
        // After goneFor it is forgotten (bounded).
        r.record(view(brokers: 2, desired: 2, at: t0), now: t0.addingTimeInterval(70))
        #expect(r.snapshot().brokers.map(\.id) == [1, 2])
        // And a broker that comes back is no longer gone.
        r.record(view(brokers: 3, desired: 3, at: t0), now: t0.addingTimeInterval(71))
        r.record(view(brokers: 2, desired: 2, at: t0), now: t0.addingTimeInterval(72))
        r.record(view(brokers: 3, desired: 3, at: t0), now: t0.addingTimeInterval(73))
        #expect(r.snapshot().brokers.map(\.state) == ["ready", "ready", "starting"])
    }

    @Test func routesAnswerErrorsAsJSONAndTheFaultSwitchFailsEveryAPIRoute() throws {
        let store = ConsoleStore()
        store.register("local", settings: try settings())
        let fault = Locked<String?>(nil)
        let routes = ConsoleRoutes(store: store, fault: { fault.withLock { $0 } })
        #expect(routes.handle(ProbeServer.Request(path: "/metrics")) == nil)
        #expect(routes.handle(ProbeServer.Request(path: "/api/clusters/nope"))?.status == 404)
        #expect(try json(routes.handle(ProbeServer.Request(path: "/api/clusters/nope")))["error"] as? String == "no cluster nope (clusters: local)")
        #expect(routes.handle(ProbeServer.Request(path: "/api/clusters/local/series", query: ["sinceMs": "soon"]))?.status == 400)
        #expect(routes.handle(ProbeServer.Request(path: "/api/clusters/local/series", query: ["sinceMs": "5"]))?.status == 200)
        fault.withLock { $0 = "injected" }
        for path in ["/api/clusters", "/api/clusters/local", "/api/clusters/local/series"] {
            let r = try #require(routes.handle(ProbeServer.Request(path: path)))
            #expect(r.status == 503, "\(path)")
            #expect(try json(r)["error"] as? String == "injected")
        }
        // The page itself is still served (it is what tells the person the API fails).
        #expect(routes.handle(ProbeServer.Request(path: "/clusters/local"))?.status == 200)
    }

    @Test func thePageIsSelfContained() throws {
        let routes = ConsoleRoutes(store: ConsoleStore())
        for path in ["/", "/clusters/local", "/clusters/ns/name"] {
            let r = try #require(routes.handle(ProbeServer.Request(path: path)))
            #expect(r.status == 200 && r.contentType.hasPrefix("text/html"))
        }
        let html = ConsolePage.html
        // No external resource: no script/style/img from elsewhere, no absolute URL except the SVG namespace.
        #expect(!html.contains("src="))
        #expect(!html.contains("<link"))
        let urls = html.components(separatedBy: "http").dropFirst().map { "http" + $0.prefix(40) }
        #expect(urls.allSatisfy { $0.hasPrefix("http://www.w3.org/2000/svg") }, "\(urls)")
        #expect(html.utf8.count < 64 * 1024)
    }

    @Test func faultSwitchFromTheEnvironmentFollowsTheFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("console-fault-\(UUID().uuidString)").path
        let fault = ConsoleRoutes.faultFromEnvironment(["FLOE_CONSOLE_FAULT_FILE": path])
        #expect(fault() == nil)
        #expect(FileManager.default.createFile(atPath: path, contents: Data()))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(fault()?.contains(path) == true)
        #expect(ConsoleRoutes.faultFromEnvironment([:])() == nil)
    }
}

/// A Mutex in a class, so closures can share it.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}
