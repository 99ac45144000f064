import ControllerRuntime
import FloeTestSupport
import Foundation
import KubeAPI
import Support
import Synchronization
import Testing

extension EventWrite {
    var patched: (name: String, count: Int32, message: String)? {
        if case .patch(_, let name, let count, let message) = self { (name, count, message) } else { nil }
    }
    var createdMessage: String? { if case .create(let message) = self { message } else { nil } }
}

@Suite struct EventCorrelatorTests {
    let t0 = MonotonicInstant(nanoseconds: 1_000_000_000)
    let cluster = ObjectReference(apiVersion: "floe.dev/v1alpha1", kind: "FloeCluster", name: "demo", namespace: "apps", uid: "u-1")

    func key(_ reason: String = "SyncFailed", _ message: String = "apply failed", type: String = "Warning", uid: String = "u-1") -> EventKey {
        var object = cluster
        object.uid = uid
        return EventKey(component: "floe-operator", involvedObject: object, type: type, reason: reason, message: message)
    }

    @Test func aRepeatWithinTheWindowCountsOnTheEventWrittenLast() throws {
        var c = EventCorrelator()
        let first = c.correlate(key(), now: t0)
        #expect(first.write == .create(message: "apply failed"))
        #expect(first.key == key())
        c.recorded(first.key, namespace: "apps", name: "demo.1", count: 1, now: t0)
        var now = t0
        for count in Int32(2)...4 {
            now = now.advanced(by: .seconds(540))  // 9 minutes after the last write: still inside
            let again = c.correlate(key(), now: now)
            #expect(again.write == .patch(namespace: "apps", name: "demo.1", count: count, message: "apply failed"))
            c.recorded(again.key, namespace: "apps", name: "demo.1", count: count, now: now)
        }
        // More than the window after the last write: a new series.
        let later = c.correlate(key(), now: now.advanced(by: .seconds(601)))
        #expect(later.write == .create(message: "apply failed"))
    }

    @Test func everyPartOfTheKeyMatters() {
        var c = EventCorrelator()
        let base = c.correlate(key(), now: t0)
        c.recorded(base.key, namespace: "apps", name: "demo.1", count: 1, now: t0)
        for other in [key(uid: "u-2"), key(type: "Normal"), key("OwnershipConflict"), key("SyncFailed", "another error")] {
            #expect(c.correlate(other, now: t0).write.createdMessage != nil, "\(other)")
        }
        #expect(c.correlate(key(), now: t0).write.patched?.count == 2)
    }

    @Test func aWriteThatNeverHappenedIsNotCountedAndAForgottenEventStartsOver() {
        var c = EventCorrelator()
        let first = c.correlate(key(), now: t0)
        c.recorded(first.key, namespace: "apps", name: "demo.1", count: 1, now: t0)
        // The patch to count 2 failed (not reported): the next occurrence asks for 2 again.
        #expect(c.correlate(key(), now: t0).write.patched?.count == 2)
        #expect(c.correlate(key(), now: t0).write.patched?.count == 2)
        c.forget(first.key)  // the Event was gone (404)
        #expect(c.correlate(key(), now: t0).write == .create(message: "apply failed"))
    }

    @Test func tenDifferentMessagesOfOneReasonBecomeOneCombinedEvent() throws {
        var c = EventCorrelator(maxSimilar: 10)
        for i in 1...9 {
            let r = c.correlate(key("CrashLoopBackOff", "after \(i) restarts"), now: t0)
            #expect(r.write == .create(message: "after \(i) restarts"))
            c.recorded(r.key, namespace: "apps", name: "demo.\(i)", count: 1, now: t0)
        }
        let tenth = c.correlate(key("CrashLoopBackOff", "after 10 restarts"), now: t0)
        #expect(tenth.write == .create(message: "(combined from similar events): after 10 restarts"))
        #expect(tenth.key.message == "(combined from similar events): " && tenth.key.reason == "CrashLoopBackOff")
        c.recorded(tenth.key, namespace: "apps", name: "demo.10", count: 1, now: t0)
        let eleventh = c.correlate(key("CrashLoopBackOff", "after 11 restarts"), now: t0.advanced(by: .seconds(30)))
        #expect(eleventh.write == .patch(namespace: "apps", name: "demo.10", count: 2, message: "(combined from similar events): after 11 restarts"))
        #expect(eleventh.key == tenth.key)
        // A message still remembered is its own Event's repeat.
        let repeatNine = c.correlate(key("CrashLoopBackOff", "after 9 restarts"), now: t0.advanced(by: .seconds(30)))
        #expect(repeatNine.write.patched?.name == "demo.9")
        // Another reason is counted apart.
        #expect(c.correlate(key("ImagePullBackOff", "after 12 restarts"), now: t0).write.createdMessage == "after 12 restarts")
        // Once the window has passed without similar events, messages are distinct again.
        let fresh = c.correlate(key("CrashLoopBackOff", "after 40 restarts"), now: t0.advanced(by: .seconds(30 + 601)))
        #expect(fresh.write == .create(message: "after 40 restarts"))
    }

    @Test func memoryIsBoundedByEvictingTheLeastRecentlyUsed() {
        var c = EventCorrelator(capacity: 3)
        for reason in ["A", "B", "C"] {
            let r = c.correlate(key(reason), now: t0)
            c.recorded(r.key, namespace: "apps", name: reason, count: 1, now: t0)
        }
        #expect(c.correlate(key("A"), now: t0).write.patched?.name == "A")  // A is now the most recent
        let d = c.correlate(key("D"), now: t0)
        c.recorded(d.key, namespace: "apps", name: "D", count: 1, now: t0)  // evicts B
        #expect(c.counts.written == 3 && c.counts.similar == 3)
        #expect(c.correlate(key("A"), now: t0).write.patched?.name == "A")
        #expect(c.correlate(key("C"), now: t0).write.patched?.name == "C")
        #expect(c.correlate(key("B"), now: t0).write.createdMessage != nil)
        for i in 0..<100 { _ = c.correlate(key("R\(i)"), now: t0) }
        #expect(c.counts.similar == 3)
    }
}

/// Events in memory, with the API server's answers: 409 for a taken name, 404 for a missing
/// Event, and injectable failures.
final class FakeEventSink: EventSink {
    struct State {
        var events: [String: Event] = [:]
        var creates = 0
        var patches = 0
        var failNext: KubeAPIError?
    }
    let state = Mutex(State())  // the only mutable state; every access holds the lock

    var events: [Event] { state.withLock { Array($0.events.values) }.sorted { ($0.metadata.name ?? "") < ($1.metadata.name ?? "") } }

    func delete(_ name: String) { state.withLock { $0.events[name] = nil } }

    func createEvent(_ event: Event) async throws -> Event {
        try state.withLock { s in
            s.creates += 1
            if let e = s.failNext.take() { throw e }
            let name = event.metadata.name ?? ""
            if s.events[name] != nil {
                throw KubeAPIError.conflict(verb: "create", resource: "events", namespace: event.metadata.namespace, name: name,
                                            reason: "AlreadyExists", message: "events \"\(name)\" already exists")
            }
            s.events[name] = event
            return event
        }
    }

    func patchEvent(namespace: String, name: String, patch: JSONValue) async throws -> Event {
        try state.withLock { s in
            s.patches += 1
            if let e = s.failNext.take() { throw e }
            guard var event = s.events[name], event.metadata.namespace == namespace else {
                throw KubeAPIError.api(verb: "patch", resource: "events", namespace: namespace, name: name, status: 404, reason: "NotFound",
                                       message: "events \"\(name)\" not found")
            }
            guard case .object(let fields) = patch else { throw KubeAPIError.encode(type: "patch", detail: "not an object") }
            for (field, value) in fields {
                switch (field, value) {
                case ("count", .int(let n)): event.count = Int32(n)
                case ("lastTimestamp", .string(let t)): event.lastTimestamp = t
                case ("message", .string(let m)): event.message = m
                default: throw KubeAPIError.encode(type: "patch", detail: "unexpected field \(field)")
                }
            }
            s.events[name] = event
            return event
        }
    }
}

@Suite struct EventRecorderTests {
    let cluster = ObjectReference(apiVersion: "floe.dev/v1alpha1", kind: "FloeCluster", name: "demo", namespace: "apps", uid: "u-1")

    @Test func theSameFailureOverSeveralPassesIsOneEventWhoseCountGrows() async throws {
        let clock = ManualClock()
        let sink = FakeEventSink()
        let recorder = EventRecorder(sink: sink, component: "floe-operator", clock: clock, logger: .discarding)
        let first = try #require(await recorder.record(cluster, type: "Warning", reason: "SyncFailed", message: "apply failed: HTTP 500"))
        for _ in 2...5 {
            clock.advance(by: .seconds(30))
            await recorder.record(cluster, type: "Warning", reason: "SyncFailed", message: "apply failed: HTTP 500")
        }
        let events = sink.events
        #expect(events.count == 1)
        let event = try #require(events.first)
        #expect(event.metadata.name == first.metadata.name)
        #expect(event.count == 5)
        #expect(event.type == "Warning" && event.reason == "SyncFailed" && event.message == "apply failed: HTTP 500")
        #expect(event.involvedObject == cluster && event.metadata.namespace == "apps")
        #expect(event.source?.component == "floe-operator" && event.reportingComponent == "floe-operator")
        #expect(event.firstTimestamp == KubeTime.format(Date(timeIntervalSince1970: 1_700_000_000)))
        #expect(event.lastTimestamp == KubeTime.format(Date(timeIntervalSince1970: 1_700_000_120)))
        #expect(sink.state.withLock { ($0.creates, $0.patches) } == (1, 4))

        // Another reason on the same object is another Event; a later pass of the first still counts on its own.
        await recorder.record(cluster, type: "Normal", reason: "Updated", message: "Updated StatefulSet demo-broker")
        await recorder.record(cluster, type: "Warning", reason: "SyncFailed", message: "apply failed: HTTP 500")
        #expect(sink.events.map(\.count) == [6, 1] || sink.events.map(\.count) == [1, 6])
        #expect(sink.events.count == 2)
    }

    @Test func aDeletedEventIsCreatedAgainAndAFailedWriteIsRetriedWithTheSameCount() async throws {
        let clock = ManualClock()
        let sink = FakeEventSink()
        let recorder = EventRecorder(sink: sink, component: "floe-operator", clock: clock, logger: .discarding)
        let first = try #require(await recorder.record(cluster, type: "Warning", reason: "SyncFailed", message: "m"))
        sink.state.withLock {
            $0.failNext = .transport(verb: "patch", resource: "events", namespace: "apps", name: first.metadata.name, detail: "connection refused")
        }
        #expect(await recorder.record(cluster, type: "Warning", reason: "SyncFailed", message: "m") == nil)  // logged, not thrown
        #expect(await recorder.record(cluster, type: "Warning", reason: "SyncFailed", message: "m")?.count == 2)

        sink.delete(try #require(first.metadata.name))  // expired (the API server's event TTL)
        clock.advance(by: .seconds(1))
        let fresh = try #require(await recorder.record(cluster, type: "Warning", reason: "SyncFailed", message: "m"))
        #expect(fresh.count == 1 && fresh.metadata.name != first.metadata.name)
        #expect(await recorder.record(cluster, type: "Warning", reason: "SyncFailed", message: "m")?.count == 2)
        #expect(sink.events.count == 1)
    }

    @Test func aRepeatAfterTheWindowStartsANewEvent() async throws {
        let clock = ManualClock()
        let sink = FakeEventSink()
        let recorder = EventRecorder(sink: sink, component: "floe-operator", clock: clock, logger: .discarding)
        await recorder.record(cluster, type: "Warning", reason: "SyncFailed", message: "m")
        await recorder.record(cluster, type: "Warning", reason: "SyncFailed", message: "m")
        clock.advance(by: .seconds(601))
        let later = try #require(await recorder.record(cluster, type: "Warning", reason: "SyncFailed", message: "m"))
        #expect(later.count == 1)
        #expect(sink.events.compactMap(\.count).sorted() == [1, 2])
        // Names are unique even at one instant (the manual clock does not move here).
        await recorder.record(cluster, type: "Normal", reason: "Created", message: "a")
        await recorder.record(cluster, type: "Normal", reason: "Created", message: "b")
        #expect(sink.events.count == 4)
    }
}
