import Foundation
import KubeAPI
import Support
import Synchronization

/// What identifies one kind of occurrence: the same values recurring are one Event whose
/// `count` grows (client-go's `getEventKey`, without the host, which we do not report).
public struct EventKey: Hashable, Sendable, CustomStringConvertible {
    public var component: String
    public var apiVersion: String
    public var kind: String
    public var namespace: String
    public var name: String
    public var uid: String
    public var type: String
    public var reason: String
    public var message: String

    public init(component: String, involvedObject: ObjectReference, type: String, reason: String, message: String) {
        self.component = component
        apiVersion = involvedObject.apiVersion ?? ""
        kind = involvedObject.kind ?? ""
        namespace = involvedObject.namespace ?? ""
        name = involvedObject.name ?? ""
        uid = involvedObject.uid ?? ""
        self.type = type
        self.reason = reason
        self.message = message
    }

    public var description: String { "\(kind) \(namespace)/\(name) \(type) \(reason)" }
}

/// The write an occurrence needs.
public enum EventWrite: Sendable, Equatable {
    /// A new Event object carrying `message`, with `count: 1`.
    case create(message: String)
    /// The stored Event `namespace/name` again: set its `count`, `lastTimestamp` and `message`.
    case patch(namespace: String, name: String, count: Int32, message: String)
}

/// Decides, for each occurrence, whether to create an Event or count it on the one already
/// written: client-go's `EventCorrelator` (its aggregator and its logger; not its spam
/// filter), as a pure value. The shell (``EventRecorder``) does the writes and reports back.
///
/// Rules, with `window` (10 minutes) and `maxSimilar` (10) as in client-go:
/// 1. An occurrence whose ``EventKey`` was written less than `window` ago (by the last write)
///    patches that Event: `count + 1`. Older, evicted, or never seen: a new Event.
/// 2. Similar occurrences — same object, component, type and reason, different messages — are
///    remembered per object and reason (the distinct messages of the last `window`). When a new
///    message would make `maxSimilar` distinct ones, the occurrence is recorded as one combined
///    Event, message `(combined from similar events): <latest message>`, keyed without the
///    message: every later new message counts on that Event instead of creating one more.
///    (A crash-looping pod whose message names its restart count yields ten Events, then one
///    growing count.)
/// 3. Memory is bounded: at most `capacity` keys of each kind, the least recently used evicted
///    first (an evicted key just starts a new Event).
///
/// Worked example (window 10 min): `SyncFailed "x"` at 0:00 → create; at 0:01 → patch count 2;
/// at 0:05 → patch count 3; at 0:16 (11 minutes after the last) → create (a new series).
public struct EventCorrelator: Sendable {
    public let capacity: Int
    public let window: Duration
    public let maxSimilar: Int

    struct Written {
        var namespace: String
        var name: String
        var count: Int32
        var last: MonotonicInstant
        var used: UInt64
    }

    struct Similar {
        /// Distinct messages, oldest first; at most `maxSimilar - 1` are kept.
        var messages: [String]
        var last: MonotonicInstant
        var used: UInt64
    }

    private var written: [EventKey: Written] = [:]
    private var similar: [EventKey: Similar] = [:]
    private var tick: UInt64 = 0

    static let combinedPrefix = "(combined from similar events): "

    public init(capacity: Int = 512, window: Duration = .seconds(600), maxSimilar: Int = 10) {
        precondition(capacity > 0 && maxSimilar > 1, "EventCorrelator needs capacity > 0 and maxSimilar > 1")
        self.capacity = capacity
        self.window = window
        self.maxSimilar = maxSimilar
    }

    /// The number of keys remembered (written Events, similar-message groups).
    public var counts: (written: Int, similar: Int) { (written.count, similar.count) }

    /// Decides how to record `key` observed at `now`. Returns the key to report the write
    /// under (``recorded(_:namespace:name:count:now:)``; the combined key when rule 2 applies)
    /// and the write.
    public mutating func correlate(_ key: EventKey, now: MonotonicInstant) -> (key: EventKey, write: EventWrite) {
        tick &+= 1
        var group = key
        group.message = ""
        var record = similar[group].flatMap { now.duration(since: $0.last) <= window ? $0 : nil }
            ?? Similar(messages: [], last: now, used: tick)
        record.last = now
        record.used = tick
        var target = key
        var message = key.message
        if !record.messages.contains(key.message) {
            record.messages.append(key.message)
            if record.messages.count >= maxSimilar {
                record.messages.removeFirst()  // bounded: the oldest message is forgotten
                target = group
                target.message = Self.combinedPrefix
                message = Self.combinedPrefix + key.message
            }
        }
        if similar[group] == nil { Self.evict(&similar, capacity: capacity) }
        similar[group] = record

        if var entry = written[target], now.duration(since: entry.last) <= window {
            entry.used = tick
            written[target] = entry
            return (target, .patch(namespace: entry.namespace, name: entry.name, count: entry.count &+ 1, message: message))
        }
        return (target, .create(message: message))
    }

    /// The Event `namespace/name` now holds `count` for `key` (after a create or a patch).
    public mutating func recorded(_ key: EventKey, namespace: String, name: String, count: Int32, now: MonotonicInstant) {
        tick &+= 1
        if written[key] == nil { Self.evict(&written, capacity: capacity) }
        written[key] = Written(namespace: namespace, name: name, count: count, last: now, used: tick)
    }

    /// The Event written for `key` is gone (a patch answered 404): the next one is new.
    public mutating func forget(_ key: EventKey) {
        written[key] = nil
    }

    /// Makes room for one more entry: drops the least recently used when full. O(capacity),
    /// paid only on inserting a new key into a full map (a few hundred entries).
    private static func evict<V>(_ map: inout [EventKey: V], capacity: Int) where V: LeastRecentlyUsed {
        guard map.count >= capacity, let oldest = map.min(by: { $0.value.used < $1.value.used })?.key else { return }
        map[oldest] = nil
    }
}

protocol LeastRecentlyUsed { var used: UInt64 { get } }
extension EventCorrelator.Written: LeastRecentlyUsed {}
extension EventCorrelator.Similar: LeastRecentlyUsed {}

/// Where an ``EventRecorder`` writes: ``KubeClient`` in production, an in-memory fake in tests.
public protocol EventSink: Sendable {
    func createEvent(_ event: Event) async throws -> Event
    /// A JSON merge patch of the Event `namespace/name`; a missing Event is a 404
    /// (``KubeAPIError/isNotFound``).
    func patchEvent(namespace: String, name: String, patch: JSONValue) async throws -> Event
}

extension KubeClient: EventSink {
    public func createEvent(_ event: Event) async throws -> Event { try await create(event) }

    public func patchEvent(namespace: String, name: String, patch: JSONValue) async throws -> Event {
        try await mergePatch(Event.self, namespace: namespace, name: name, patch: patch)
    }
}

/// Records core/v1 Events on objects, counting repeats on one Event (``EventCorrelator``)
/// instead of creating an object each time. Failing to record is logged, never thrown: an Event
/// is a report, not part of reconciling.
///
/// - A repeat within the window is a merge patch of `count`, `lastTimestamp` and `message`;
///   a 404 (the Event expired, by default after an hour, or was deleted) creates a new one.
/// - Memory only: a restarted operator starts new Events (as client-go does).
/// - Two records of the same key at once (the work queue never runs one key twice at once, so
///   not for one reconciled object) may both patch with the same count: one count is lost.
public final class EventRecorder: Sendable {
    public let component: String
    let sink: any EventSink
    let clock: any FloeClock
    let logger: Logger
    private let state: Mutex<(correlator: EventCorrelator, sequence: UInt16)>

    public init(sink: any EventSink, component: String, clock: any FloeClock, logger: Logger,
                correlator: EventCorrelator = EventCorrelator()) {
        self.sink = sink
        self.component = component
        self.clock = clock
        self.logger = logger
        state = Mutex((correlator, 0))
    }

    /// Records `type` (`Normal` or `Warning`), `reason` and `message` on `object`. Returns the
    /// Event as stored, nil when writing failed (logged).
    @discardableResult
    public func record(_ object: ObjectReference, type: String, reason: String, message: String) async -> Event? {
        let key = EventKey(component: component, involvedObject: object, type: type, reason: reason, message: message)
        let now = clock.now()
        let stamp = KubeTime.format(clock.wallTime())
        let (target, write) = state.withLock { $0.correlator.correlate(key, now: now) }
        do {
            switch write {
            case .patch(let namespace, let name, let count, let text):
                do {
                    let patch: JSONValue = ["count": .int(Int64(count)), "lastTimestamp": .string(stamp), "message": .string(text)]
                    let stored = try await sink.patchEvent(namespace: namespace, name: name, patch: patch)
                    state.withLock { $0.correlator.recorded(target, namespace: namespace, name: name, count: count, now: now) }
                    return stored
                } catch let e as KubeAPIError where e.isNotFound {
                    state.withLock { $0.correlator.forget(target) }
                    return try await create(object, key: key, target: target, message: text, stamp: stamp, now: now)
                }
            case .create(let text):
                return try await create(object, key: key, target: target, message: text, stamp: stamp, now: now)
            }
        } catch is CancellationError {
            return nil
        } catch {
            logger.warning("recording an event failed", metadata: ["error": "\(error)", "event.reason": reason, "event.object": key.description])
            return nil
        }
    }

    private func create(_ object: ObjectReference, key: EventKey, target: EventKey, message: String, stamp: String, now: MonotonicInstant)
        async throws -> Event
    {
        let namespace = object.namespace ?? "default"
        let event = Event(
            metadata: ObjectMeta(name: eventName(object.name ?? "object"), namespace: namespace), involvedObject: object,
            reason: key.reason, message: message, type: key.type, source: EventSource(component: component), firstTimestamp: stamp,
            lastTimestamp: stamp, count: 1, reportingComponent: component)
        let stored = try await sink.createEvent(event)
        let name = stored.metadata.name ?? event.metadata.name ?? ""
        state.withLock { $0.correlator.recorded(target, namespace: namespace, name: name, count: 1, now: now) }
        return stored
    }

    /// `OBJECT.<wall-clock nanoseconds in hex><sequence>` (client-go uses `OBJECT.<nanos in hex>`;
    /// the sequence keeps two Events of one instant apart).
    private func eventName(_ object: String) -> String {
        let sequence = state.withLock { s -> UInt16 in
            s.sequence &+= 1
            return s.sequence
        }
        let nanos = UInt64(max(0, clock.wallTime().timeIntervalSince1970 * 1e9))
        let suffix = String(sequence, radix: 16)
        return "\(object).\(String(nanos, radix: 16))\(String(repeating: "0", count: 4 - suffix.count))\(suffix)"
    }
}
