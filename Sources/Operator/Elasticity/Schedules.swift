import Foundation

/// A five-field cron expression: `minute hour day-of-month month day-of-week`.
///
/// Each field is `*`, a number, a range `a-b`, a step `*/n` or `a-b/n` or `a/n` (from `a` to the
/// field's end), or a comma-separated list of those. Months may be written `jan`…`dec` and days
/// of the week `sun`…`sat`; day of week 0 and 7 are both Sunday. As in Vixie cron, when both
/// day-of-month and day-of-week are restricted (neither is `*`), a day matches if either does.
///
/// Example: `30 19 * 11 fri` is 19:30 on every Friday in November; `0 8-18/2 * * 1-5` is every
/// second hour from 08:00 to 18:00 on weekdays.
public struct CronExpression: Sendable, Equatable, CustomStringConvertible {
    public let description: String
    let minutes: [Int]
    let hours: [Int]
    let daysOfMonth: Set<Int>
    let months: Set<Int>
    let daysOfWeek: Set<Int>
    let dayOfMonthRestricted: Bool
    let dayOfWeekRestricted: Bool

    /// Parses `text`; the error names the field and what is wrong with it.
    public init(_ text: String) throws(OperatorError) {
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard fields.count == 5 else {
            throw .invalidSchedule(detail: "cron \"\(text)\" has \(fields.count) fields; expected 5 (minute hour day-of-month month day-of-week)")
        }
        let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
        func field(_ i: Int, _ name: String, _ range: ClosedRange<Int>, names: [String] = [], nameBase: Int = 0) throws(OperatorError) -> Set<Int> {
            do throws(FieldError) {
                return try Self.parseField(fields[i], range: range, names: names, nameBase: nameBase)
            } catch {
                throw .invalidSchedule(detail: "cron \"\(text)\": \(name) field \"\(fields[i])\" \(error.detail)")
            }
        }
        description = fields.joined(separator: " ")
        minutes = try field(0, "minute", 0...59).sorted()
        hours = try field(1, "hour", 0...23).sorted()
        daysOfMonth = try field(2, "day-of-month", 1...31)
        months = try field(3, "month", 1...12, names: monthNames, nameBase: 1)
        daysOfWeek = Set(try field(4, "day-of-week", 0...7, names: dayNames).map { $0 % 7 })
        dayOfMonthRestricted = !fields[2].hasPrefix("*")
        dayOfWeekRestricted = !fields[4].hasPrefix("*")
    }

    struct FieldError: Error { var detail: String }

    static func parseField(_ text: String, range: ClosedRange<Int>, names: [String], nameBase: Int) throws(FieldError) -> Set<Int> {
        func number(_ s: Substring) throws(FieldError) -> Int {
            if let v = Int(s) {
                guard range.contains(v) else { throw FieldError(detail: "has \(v), outside \(range.lowerBound)-\(range.upperBound)") }
                return v
            }
            if let i = names.firstIndex(of: s.lowercased()) { return i + nameBase }
            throw FieldError(detail: "has \"\(s)\", not a number" + (names.isEmpty ? "" : " or a name (\(names.first!)…\(names.last!))"))
        }
        var values = Set<Int>()
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard !item.isEmpty else { throw FieldError(detail: "has an empty list item") }
            let parts = item.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count <= 2 else { throw FieldError(detail: "has more than one / in \"\(item)\"") }
            var step = 1
            if parts.count == 2 {
                guard let s = Int(parts[1]), s >= 1 else { throw FieldError(detail: "has step \"\(parts[1])\"; a step is a positive number") }
                step = s
            }
            let base = parts[0]
            var lo: Int, hi: Int
            if base == "*" {
                (lo, hi) = (range.lowerBound, range.upperBound)
            } else if let dash = base.firstIndex(of: "-") {
                lo = try number(base[..<dash])
                hi = try number(base[base.index(after: dash)...])
                guard lo <= hi else { throw FieldError(detail: "has range \(base) running backwards") }
            } else {
                lo = try number(base)
                hi = parts.count == 2 ? range.upperBound : lo
            }
            values.formUnion(stride(from: lo, through: hi, by: step))
        }
        return values
    }

    /// Whether a local calendar day matches (month, and day-of-month / day-of-week as cron ORs them).
    func matches(day: CivilDay) -> Bool {
        guard months.contains(day.month) else { return false }
        let dom = daysOfMonth.contains(day.day)
        let dow = daysOfWeek.contains(day.weekday)
        switch (dayOfMonthRestricted, dayOfWeekRestricted) {
        case (true, true): return dom || dow
        case (true, false): return dom
        case (false, true): return dow
        case (false, false): return true
        }
    }

    /// The instants at which the expression fires in `timeZone` within `from...through`, in order.
    ///
    /// Daylight saving: a wall time skipped by a spring-forward change fires once, at the end of
    /// the gap (02:30 on 2026-03-29 in Europe/Berlin fires at 03:00 CEST); a wall time repeated by
    /// a fall-back change fires once, at its first occurrence (02:30 CEST on 2026-10-25).
    public func firings(from: Date, through: Date, in timeZone: TimeZone) -> [Date] {
        guard from <= through else { return [] }
        // Local days from the one before `from` to the one after `through` (offsets are under a day).
        let first = CivilDay(daysSinceEpoch: Int((from.timeIntervalSince1970 / 86_400).rounded(.down)) - 1)
        let last = Int((through.timeIntervalSince1970 / 86_400).rounded(.down)) + 1
        var result = Set<Date>()
        var d = first.daysSinceEpoch
        while d <= last {
            let day = CivilDay(daysSinceEpoch: d)
            d += 1
            guard matches(day: day) else { continue }
            for h in hours {
                for m in minutes {
                    let t = Self.instant(day: day, hour: h, minute: m, in: timeZone)
                    if t >= from && t <= through { result.insert(t) }
                }
            }
        }
        return result.sorted()
    }

    /// The instant of a local wall time: the first one when it occurs twice, the end of the gap
    /// when it is skipped.
    static func instant(day: CivilDay, hour: Int, minute: Int, in tz: TimeZone) -> Date {
        let naive = Double(day.daysSinceEpoch) * 86_400 + Double(hour * 3600 + minute * 60)
        let offsets = Set([-86_400.0, 0, 86_400].map { tz.secondsFromGMT(for: Date(timeIntervalSince1970: naive + $0)) })
        let valid = offsets.map { naive - Double($0) }.filter { tz.secondsFromGMT(for: Date(timeIntervalSince1970: $0)) == Int(naive - $0) }
        if let earliest = valid.min() { return Date(timeIntervalSince1970: earliest) }
        // Skipped: the gap lies between the wall time read with the later offset and with the
        // earlier one; search for the transition (to the second).
        let before = tz.secondsFromGMT(for: Date(timeIntervalSince1970: naive - 86_400))
        let after = tz.secondsFromGMT(for: Date(timeIntervalSince1970: naive + 86_400))
        var lo = naive - Double(max(before, after)), hi = naive - Double(min(before, after))
        while hi - lo > 1 {
            let mid = ((lo + hi) / 2).rounded(.down)
            if tz.secondsFromGMT(for: Date(timeIntervalSince1970: mid)) == before { lo = mid } else { hi = mid }
        }
        return Date(timeIntervalSince1970: hi)
    }
}

/// A day of the proleptic Gregorian calendar, without a time zone.
struct CivilDay: Equatable {
    var year: Int, month: Int, day: Int
    var daysSinceEpoch: Int

    /// From days since 1970-01-01 (Howard Hinnant's civil-from-days).
    init(daysSinceEpoch z0: Int) {
        daysSinceEpoch = z0
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        day = doy - (153 * mp + 2) / 5 + 1
        month = mp < 10 ? mp + 3 : mp - 9
        year = yoe + era * 400 + (month <= 2 ? 1 : 0)
    }

    /// 0 = Sunday.
    var weekday: Int { ((daysSinceEpoch % 7) + 7 + 4) % 7 }
}

/// One schedule with its defaults resolved and its floor in brokers.
public struct ScheduleSettings: Sendable, Equatable {
    public var name: String
    public var cron: CronExpression
    public var timeZone: TimeZone
    public var duration: TimeInterval
    public var leadTime: TimeInterval
    /// Brokers to keep while the window is open (and `leadTime` before), at most maxBrokers.
    public var floor: Int
    /// Where the floor comes from: `minBrokers 8` or `expected 400.0 MiB/s at 50.0 MiB/s per broker`.
    public var floorSource: String

    public init(name: String, cron: CronExpression, timeZone: TimeZone, duration: TimeInterval, leadTime: TimeInterval, floor: Int,
                floorSource: String) {
        self.name = name
        self.cron = cron
        self.timeZone = timeZone
        self.duration = duration
        self.leadTime = leadTime
        self.floor = floor
        self.floorSource = floorSource
    }
}

/// The predictive floor's settings.
public struct PredictiveSettings: Sendable, Equatable {
    /// Days of per-slot history kept and consulted.
    public var historyDays: Int
    /// The prediction covers the next `lookahead` seconds: the floor rises that long before a peak.
    public var lookahead: TimeInterval
    /// Headroom over the predicted peak (0.2 = 20 %).
    public var margin: Double

    public init(historyDays: Int = Int(FloeDefaults.predictiveHistoryDays), lookahead: TimeInterval = Double(FloeDefaults.predictiveLookaheadMinutes) * 60,
                margin: Double = Double(FloeDefaults.predictiveMarginPercent) / 100) {
        self.historyDays = historyDays
        self.lookahead = lookahead
        self.margin = margin
    }
}

/// Schedules and the predictive floor of one cluster: `spec.autoscaling.schedules` and
/// `spec.autoscaling.predictive`, resolved against the autoscaler's per-broker bytes-in target.
public struct PrescalePolicy: Sendable, Equatable {
    public var schedules: [ScheduleSettings]
    public var predictive: PredictiveSettings?
    /// Per-broker bytes-in target (converts expected bytes in to brokers); nil = not set.
    public var bytesInTarget: Double?
    public var maxBrokers: Int

    public static let none = PrescalePolicy(schedules: [], predictive: nil, bytesInTarget: nil, maxBrokers: Int(FloeDefaults.maxBrokers))

    public init(schedules: [ScheduleSettings], predictive: PredictiveSettings?, bytesInTarget: Double?, maxBrokers: Int) {
        self.schedules = schedules
        self.predictive = predictive
        self.bytesInTarget = bytesInTarget
        self.maxBrokers = maxBrokers
    }

    /// Resolves the spec; throws on what validation reports (a bad cron, an unknown time zone, a
    /// bytes floor without a bytes-in target).
    public init(_ spec: AutoscalingSpec) throws(OperatorError) {
        let target = spec.targets?.bytesInPerSecond.map(Double.init)
        maxBrokers = Int(spec.resolvedMax)
        bytesInTarget = target
        var list: [ScheduleSettings] = []
        for s in spec.schedules ?? [] {
            let cron: CronExpression
            do throws(OperatorError) { cron = try CronExpression(s.start) } catch { throw .invalidSchedule(detail: "schedule \(s.name): \(error)") }
            let zoneName = s.timeZone ?? "UTC"
            guard let zone = TimeZone(identifier: zoneName) else { throw .invalidSchedule(detail: "schedule \(s.name): unknown time zone \"\(zoneName)\"") }
            var floor = Int(s.minBrokers ?? 0)
            var source = s.minBrokers.map { "minBrokers \($0)" } ?? ""
            if let expected = s.expectedBytesInPerSecond {
                guard let target else {
                    throw .invalidSchedule(detail: "schedule \(s.name): expectedBytesInPerSecond needs spec.autoscaling.targets.bytesInPerSecond")
                }
                let brokers = Int((Double(expected) / target).rounded(.up))
                if brokers > floor {
                    floor = brokers
                    source = "expected \(ByteRate.format(Double(expected))) at \(ByteRate.format(target)) per broker"
                }
            }
            list.append(ScheduleSettings(
                name: s.name, cron: cron, timeZone: zone, duration: Double(s.durationMinutes) * 60,
                leadTime: Double(s.leadTimeSeconds ?? FloeDefaults.scheduleLeadTimeSeconds), floor: min(floor, maxBrokers), floorSource: source))
        }
        schedules = list
        if let p = spec.predictive, p.enabled ?? false {
            guard target != nil else { throw .invalidSchedule(detail: "spec.autoscaling.predictive needs spec.autoscaling.targets.bytesInPerSecond") }
            predictive = PredictiveSettings(
                historyDays: Int(p.historyDays ?? FloeDefaults.predictiveHistoryDays),
                lookahead: Double(p.lookaheadMinutes ?? FloeDefaults.predictiveLookaheadMinutes) * 60,
                margin: Double(p.marginPercent ?? FloeDefaults.predictiveMarginPercent) / 100)
        } else {
            predictive = nil
        }
    }

    public var isEmpty: Bool { schedules.isEmpty && predictive == nil }
}

/// A minimum broker count from outside the reactive policy, with why.
///
/// Example: `CapacityFloor(brokers: 8, source: "schedule black-friday", detail: "window 20:00-21:00 Europe/Berlin")`
/// is written in decisions as `schedule black-friday floor 8 (window …)`.
public struct CapacityFloor: Sendable, Equatable {
    public var brokers: Int
    /// `schedule NAME` or `predictive`.
    public var source: String
    public var detail: String

    public init(brokers: Int, source: String, detail: String) {
        self.brokers = brokers
        self.source = source
        self.detail = detail
    }

    /// `schedule black-friday floor 8`.
    public var label: String { "\(source) floor \(brokers)" }
}

/// One occurrence of a schedule: the floor holds from `raiseAt` (start − lead time) until `end`.
public struct ScheduleWindow: Sendable, Equatable {
    public var name: String
    public var raiseAt: Date
    public var start: Date
    public var end: Date
    public var floor: Int

    public func isActive(at now: Date) -> Bool { now >= raiseAt && now < end }
}

/// What the prescaler says at one instant: the open windows, the next one, the floors, the prediction.
public struct PrescaleState: Sendable, Equatable {
    public var active: [ScheduleWindow] = []
    public var next: ScheduleWindow?
    /// Every floor in force (one per active window, and the predictive one); the autoscaler uses the highest.
    public var floors: [CapacityFloor] = []
    /// The predicted peak bytes in per second over the lookahead (already including the margin), when predictive is on and has history.
    public var predictedBytesIn: Double?

    public var highest: CapacityFloor? { floors.max { $0.brokers < $1.brokers } }
}

/// Schedules and prediction over time: the stateful part (a cache of upcoming windows, the load
/// history). Pure: the caller passes wall-clock time.
///
/// Rules:
/// 1. Each schedule fires at its cron times in its time zone; the window is [start, start +
///    duration) and its floor holds from start − lead time. Overlapping windows: the highest floor.
/// 2. Predictive (opt-in): the history keeps the peak cluster bytes in per 5-minute slot for
///    `historyDays` days. For the next `lookahead`, each past day's peak over the same slots is
///    taken; with 4 or more days of data the single highest day is left out (a one-off peak —
///    a festival — is not repeated every day; that is a schedule's job), the highest of the rest
///    × (1 + margin) is the prediction, ⌈prediction / bytes-in target⌉ brokers the floor.
///
/// Example: target 50 MiB/s, margin 20 %, every day at 20:00 the load rose to 100 MiB/s: from
/// 19:00 (lookahead 60 min) the floor is ⌈120 / 50⌉ = 3 brokers, already there at 20:00.
public struct Prescaler: Sendable {
    public let policy: PrescalePolicy
    public private(set) var history: LoadHistory
    private var cache: (from: Date, to: Date, windows: [ScheduleWindow])?
    /// The last predictive floor, reused while the prediction is unchanged (formatting its detail every tick is not free).
    private var lastPredictive: (peak: Double, days: Int, floor: CapacityFloor)?

    public init(policy: PrescalePolicy, history: LoadHistory? = nil) {
        self.policy = policy
        let days = policy.predictive?.historyDays ?? Int(FloeDefaults.predictiveHistoryDays)
        self.history = history.map { $0.resized(days: days) } ?? LoadHistory(days: days)
    }

    /// Records the cluster's measured bytes in (only kept when predictive is on).
    public mutating func observe(bytesIn: Double, at now: Date) {
        guard policy.predictive != nil else { return }
        history.record(bytesIn: bytesIn, at: now)
    }

    public mutating func evaluate(at now: Date) -> PrescaleState {
        var state = PrescaleState()
        if !policy.schedules.isEmpty {
            let windows = self.windows(around: now)
            // One window per schedule (a schedule firing every minute for an hour overlaps itself: the one ending last).
            var latest: [String: ScheduleWindow] = [:]
            for w in windows where w.isActive(at: now) && (latest[w.name].map { w.end > $0.end } ?? true) { latest[w.name] = w }
            state.active = latest.values.sorted { ($0.raiseAt, $0.name) < ($1.raiseAt, $1.name) }
            state.next = windows.first { $0.raiseAt > now }
            for w in state.active {
                let s = policy.schedules.first { $0.name == w.name }!
                state.floors.append(CapacityFloor(
                    brokers: w.floor, source: "schedule \(w.name)",
                    detail: "\(s.floorSource); window \(Self.local(w.start, s.timeZone))-\(Self.local(w.end, s.timeZone)) \(s.timeZone.identifier), raised \(Int(s.leadTime)) s ahead"))
            }
        }
        if let p = policy.predictive, let target = policy.bytesInTarget,
            let peak = history.predictPeak(from: now, lookahead: p.lookahead, days: p.historyDays)
        {
            let predicted = peak.bytesIn * (1 + p.margin)
            state.predictedBytesIn = predicted
            let brokers = min(policy.maxBrokers, Int((predicted / target).rounded(.up)))
            if brokers >= 1 {
                if let last = lastPredictive, last.peak == peak.bytesIn, last.days == peak.days {
                    state.floors.append(last.floor)
                } else {
                    let floor = CapacityFloor(
                        brokers: brokers, source: "predictive",
                        detail: "\(ByteRate.format(peak.bytesIn)) expected within \(Int(p.lookahead / 60)) min from \(peak.days) day(s) of history, "
                            + "+\(Int((p.margin * 100).rounded()))% → \(ByteRate.format(predicted)) at \(ByteRate.format(target)) per broker")
                    lastPredictive = (peak.bytesIn, peak.days, floor)
                    state.floors.append(floor)
                }
            }
        }
        return state
    }

    /// Windows whose floor may hold at `now` or that come within a day; cached until `now` leaves the covered range.
    mutating func windows(around now: Date) -> [ScheduleWindow] {
        let span = policy.schedules.map(\.duration).max() ?? 0
        let lead = policy.schedules.map(\.leadTime).max() ?? 0
        if let c = cache, now.addingTimeInterval(-span) >= c.from, now.addingTimeInterval(lead + 3600) <= c.to { return c.windows }
        let from = now.addingTimeInterval(-span - 3600), to = now.addingTimeInterval(lead + 86_400)
        var all: [ScheduleWindow] = []
        for s in policy.schedules {
            for start in s.cron.firings(from: from, through: to, in: s.timeZone) {
                all.append(ScheduleWindow(
                    name: s.name, raiseAt: start.addingTimeInterval(-s.leadTime), start: start, end: start.addingTimeInterval(s.duration), floor: s.floor))
            }
        }
        all.sort { ($0.raiseAt, $0.name) < ($1.raiseAt, $1.name) }
        cache = (from, to, all)
        return all
    }

    static func local(_ date: Date, _ zone: TimeZone) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = zone
        f.dateFormat = "yyyy-MM-dd HH:mm"
        return f.string(from: date)
    }
}

/// Peak cluster bytes in per 5-minute slot over the last `days` days: a ring of
/// `days × 288` slots (8 KiB for 7 days), bounded whatever runs.
///
/// Invariant: slot `i` of the ring holds the bucket `b` with `b mod capacity == i` and
/// `newest − capacity < b ≤ newest`; a bucket with no observation is unknown (nil), never 0.
///
/// Example: an observation of 3 MiB/s at 12:07:30 UTC goes to the bucket starting 12:05:00;
/// later observations of that bucket keep the maximum.
public struct LoadHistory: Sendable, Equatable {
    public static let bucketSeconds: Int64 = 300
    public static let bucketsPerDay: Int64 = 288
    public let days: Int
    /// The newest bucket (unix seconds / 300), nil before the first observation.
    public private(set) var newest: Int64?
    private var slots: [Double?]

    public init(days: Int) {
        self.days = max(1, days)
        slots = Array(repeating: nil, count: self.days * Int(Self.bucketsPerDay))
    }

    var capacity: Int64 { Int64(slots.count) }

    static func bucket(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 / Double(bucketSeconds)).rounded(.down)) }

    public mutating func record(bytesIn: Double, at date: Date) {
        guard bytesIn.isFinite, bytesIn >= 0 else { return }
        let b = Self.bucket(date)
        if let n = newest, b <= n - capacity { return }  // older than what is kept
        advance(to: b)
        let i = index(b)
        slots[i] = max(slots[i] ?? 0, bytesIn)
    }

    /// Makes `b` the newest bucket (when it is newer), forgetting the slots that fall out.
    private mutating func advance(to b: Int64) {
        guard let n = newest else {
            newest = b
            return
        }
        guard b > n else { return }
        if b - n >= capacity {
            for i in slots.indices { slots[i] = nil }
        } else {
            for clear in (n + 1)...b { slots[index(clear)] = nil }
        }
        newest = b
    }

    private func index(_ bucket: Int64) -> Int { Int(((bucket % capacity) + capacity) % capacity) }

    /// The bucket's peak, nil when unknown or not kept.
    public func value(bucket b: Int64) -> Double? {
        guard let n = newest, b <= n, b > n - capacity else { return nil }
        return slots[index(b)]
    }

    /// The peak expected in [from, from + lookahead) by time of day: per past day (1…days), the
    /// maximum over the same slots; with 4 or more days, the highest day is dropped; the maximum
    /// of the rest. Nil when no past day has data for those slots.
    public func predictPeak(from: Date, lookahead: TimeInterval, days: Int) -> (bytesIn: Double, days: Int)? {
        let first = Self.bucket(from)
        let last = Self.bucket(from.addingTimeInterval(max(lookahead, 1) - 1))
        var perDay: [Double] = []
        for k in 1...Int64(max(1, min(days, self.days))) {
            var peak: Double?
            for b in first...last {
                if let v = value(bucket: b - k * Self.bucketsPerDay) { peak = max(peak ?? 0, v) }
            }
            if let peak { perDay.append(peak) }
        }
        guard !perDay.isEmpty else { return nil }
        let daysWithData = perDay.count
        perDay.sort()
        if perDay.count >= 4 { perDay.removeLast() }
        return (perDay.last!, daysWithData)
    }

    /// The same history with room for `days` days (the newest slots kept).
    func resized(days newDays: Int) -> LoadHistory {
        guard newDays != days, let n = newest else { return newDays == days ? self : LoadHistory(days: newDays) }
        var copy = LoadHistory(days: newDays)
        for b in (n - min(capacity, copy.capacity) + 1)...n {
            if let v = value(bucket: b) { copy.record(bytesIn: v, at: Date(timeIntervalSince1970: Double(b * Self.bucketSeconds))) }
        }
        copy.advance(to: n)
        return copy
    }

    /// The compact form kept in `status.autoscaling.loadHistory`: base64 of little-endian UInt32
    /// KiB/s per bucket, oldest first, 0xFFFFFFFF for unknown.
    public var status: LoadHistoryStatus? {
        guard let n = newest else { return nil }
        var bytes = [UInt8]()
        bytes.reserveCapacity(slots.count * 4)
        for b in (n - capacity + 1)...n {
            let v: UInt32 = value(bucket: b).map { UInt32(min(($0 / 1024).rounded(), Double(UInt32.max - 1))) } ?? .max
            withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
        }
        return LoadHistoryStatus(
            bucketSeconds: Int32(Self.bucketSeconds), newestBucketStart: n * Self.bucketSeconds, kibPerSecond: Data(bytes).base64EncodedString())
    }

    /// Reads the compact form; throws naming what is wrong.
    public init(_ status: LoadHistoryStatus, days: Int) throws(OperatorError) {
        guard Int64(status.bucketSeconds) == Self.bucketSeconds else {
            throw .invalidSchedule(detail: "status.autoscaling.loadHistory.bucketSeconds \(status.bucketSeconds) is not \(Self.bucketSeconds)")
        }
        guard let data = Data(base64Encoded: status.kibPerSecond), data.count % 4 == 0 else {
            throw .invalidSchedule(detail: "status.autoscaling.loadHistory.kibPerSecond is not base64 of 4-byte values")
        }
        self.init(days: days)
        let n = status.newestBucketStart / Self.bucketSeconds
        let count = Int64(data.count / 4)
        let bytes = [UInt8](data)
        for i in 0..<count {
            let o = Int(i) * 4
            let v = UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24
            guard v != .max else { continue }
            let b = n - count + 1 + i
            record(bytesIn: Double(v) * 1024, at: Date(timeIntervalSince1970: Double(b * Self.bucketSeconds)))
        }
        advance(to: n)
    }
}
