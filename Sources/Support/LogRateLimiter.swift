import Synchronization

/// Lets at most `burst` log records with the same key through per `interval`; the others are
/// counted, and once the interval has ended one summary ("suppressed similar messages" with the
/// count) is due for the key. A flood of identical lines (a client sending malformed requests
/// in a loop) then costs at most `burst + 1` lines per interval instead of one line per input.
///
/// The key is the record's fixed message text (metadata such as the peer is not part of it).
/// The table of keys is bounded by `maxKeys`: when it is full, keys whose interval has ended
/// are evicted (their summaries are returned by `flush()` first), and a new key beyond the
/// bound shares one overflow entry.
///
/// Example (burst 2, interval 10 s): records with key "k" at t = 0, 1, 2, 3 s are let through,
/// let through, suppressed, suppressed; at t = 12 s `admit("k")` lets the record through and
/// reports 2 suppressed, so the caller first writes "suppressed similar messages suppressed=2".
public final class LogRateLimiter: Sendable {
    public struct Decision: Sendable, Equatable {
        /// Whether the record itself is written.
        public var emit: Bool
        /// Records of this key suppressed in the interval that just ended, to report first (0: none).
        public var suppressedBefore: Int

        public init(emit: Bool, suppressedBefore: Int) {
            self.emit = emit
            self.suppressedBefore = suppressedBefore
        }
    }

    struct Window {
        var start: MonotonicInstant
        var admitted: Int
        var suppressed: Int
    }

    public let burst: Int
    public let interval: Duration
    public let maxKeys: Int
    private let clock: any FloeClock
    private let windows = Mutex<[String: Window]>([:])
    static let overflowKey = "(other messages)"

    public init(burst: Int = 10, interval: Duration = .seconds(10), maxKeys: Int = 256, clock: any FloeClock = RealClock()) {
        self.burst = max(1, burst)
        self.interval = interval
        self.maxKeys = max(1, maxKeys)
        self.clock = clock
    }

    /// Decides for one record with `key`.
    public func admit(_ key: String) -> Decision {
        let now = clock.now()
        return windows.withLock { table in
            var key = key
            if table[key] == nil && table.count >= maxKeys {
                evictEnded(&table, now: now)
                if table.count >= maxKeys { key = Self.overflowKey }
            }
            guard var w = table[key] else {
                table[key] = Window(start: now, admitted: 1, suppressed: 0)
                return Decision(emit: true, suppressedBefore: 0)
            }
            var before = 0
            if now >= w.start.advanced(by: interval) {
                before = w.suppressed
                w = Window(start: now, admitted: 0, suppressed: 0)
            }
            let emit = w.admitted < burst
            if emit { w.admitted += 1 } else { w.suppressed += 1 }
            table[key] = w
            return Decision(emit: emit, suppressedBefore: before)
        }
    }

    /// The summaries due now (keys whose interval has ended with records suppressed), each
    /// reported once; call it periodically so the last burst of a flood is summarised too.
    /// `includingOpen` also reports intervals still running (at shutdown).
    public func flush(includingOpen: Bool = false) -> [(key: String, suppressed: Int)] {
        let now = clock.now()
        return windows.withLock { table in
            var due: [(key: String, suppressed: Int)] = []
            for (key, w) in table where w.suppressed > 0 && (includingOpen || now >= w.start.advanced(by: interval)) {
                due.append((key, w.suppressed))
                table[key] = Window(start: now, admitted: 0, suppressed: 0)
            }
            return due.sorted { $0.key < $1.key }
        }
    }

    /// Removes keys whose interval has ended and that have nothing left to report.
    private func evictEnded(_ table: inout [String: Window], now: MonotonicInstant) {
        for (key, w) in table where w.suppressed == 0 && now >= w.start.advanced(by: interval) {
            table[key] = nil
        }
    }
}

/// A logger whose records pass through a `LogRateLimiter` keyed by message text; suppressed
/// records are summarised by one line `suppressed similar messages` with metadata
/// `suppressed=K` and `message=<the suppressed message>`.
///
/// Example: `let log = RateLimitedLogger(logger, limiter: LogRateLimiter(burst: 10, interval: .seconds(10)))`,
/// then `log.info("closing connection: malformed request body", metadata: ["peer": p])` writes at
/// most 10 such lines per 10 s plus one summary.
public struct RateLimitedLogger: Sendable {
    public let logger: Logger
    public let limiter: LogRateLimiter

    public init(_ logger: Logger, limiter: LogRateLimiter = LogRateLimiter()) {
        self.logger = logger
        self.limiter = limiter
    }

    public func log(_ level: Logger.Level, _ message: String, metadata: [String: String] = [:]) {
        guard logger.isEnabled(level) else { return }
        let decision = limiter.admit(message)
        if decision.suppressedBefore > 0 { summary(level, message, decision.suppressedBefore) }
        if decision.emit { logger.log(level, message, metadata: metadata) }
    }

    public func debug(_ message: String, metadata: [String: String] = [:]) { log(.debug, message, metadata: metadata) }
    public func info(_ message: String, metadata: [String: String] = [:]) { log(.info, message, metadata: metadata) }
    public func warning(_ message: String, metadata: [String: String] = [:]) { log(.warning, message, metadata: metadata) }

    /// Writes the summaries that are due (see `LogRateLimiter.flush`), at `level`.
    public func flush(level: Logger.Level = .info, includingOpen: Bool = false) {
        for (key, count) in limiter.flush(includingOpen: includingOpen) { summary(level, key, count) }
    }

    private func summary(_ level: Logger.Level, _ message: String, _ count: Int) {
        logger.log(max(level, .info), "suppressed similar messages", metadata: ["suppressed": "\(count)", "message": message])
    }
}
