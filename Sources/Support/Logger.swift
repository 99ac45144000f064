import Foundation
import Synchronization

/// A logger is a value passed to the code that logs: a label (the component), a minimum level,
/// metadata attached to every record (`broker.id`, `storage.bucket`), and the sink records go to.
/// Messages are fixed text; variable parts go in metadata. Message and metadata are built only if
/// the record's level is enabled. Never put secrets in messages or metadata.
///
/// Example: `logger.with("storage.bucket", "b").warning("retrying request", metadata: ["attempt": "2"])`
/// writes `2025-01-01T00:00:00.000Z warning objectstore: retrying request attempt=2 storage.bucket=b`.
public struct Logger: Sendable {
    public enum Level: Int, Comparable, Sendable, CaseIterable, CustomStringConvertible {
        case trace, debug, info, notice, warning, error

        public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

        public var description: String {
            switch self {
            case .trace: "trace"
            case .debug: "debug"
            case .info: "info"
            case .notice: "notice"
            case .warning: "warning"
            case .error: "error"
            }
        }

        /// Parses `trace`, `debug`, `info`, `notice`, `warning`, `error`.
        public init?(name: String) {
            guard let level = Level.allCases.first(where: { $0.description == name.lowercased() }) else { return nil }
            self = level
        }
    }

    public var label: String
    public var level: Level
    public var metadata: [String: String]
    public let sink: any LogSink

    public init(label: String, level: Level = .info, metadata: [String: String] = [:],
                sink: any LogSink = StandardErrorLogSink.shared) {
        self.label = label
        self.level = level
        self.metadata = metadata
        self.sink = sink
    }

    /// A logger that drops everything (for code paths that require one in tests).
    public static var discarding: Logger { Logger(label: "discarding", level: .error, sink: DiscardingLogSink()) }

    /// A copy with one more metadata entry.
    public func with(_ key: String, _ value: String) -> Logger {
        var copy = self
        copy.metadata[key] = value
        return copy
    }

    public func isEnabled(_ level: Level) -> Bool { level >= self.level }

    public func log(_ level: Level, _ message: @autoclosure () -> String,
                    metadata extra: @autoclosure () -> [String: String] = [:]) {
        guard isEnabled(level) else { return }
        var merged = metadata
        for (key, value) in extra() { merged[key] = value }
        sink.emit(LogRecord(time: Date(), level: level, label: label, message: message(), metadata: merged))
    }

    public func trace(_ message: @autoclosure () -> String, metadata: @autoclosure () -> [String: String] = [:]) {
        log(.trace, message(), metadata: metadata())
    }
    public func debug(_ message: @autoclosure () -> String, metadata: @autoclosure () -> [String: String] = [:]) {
        log(.debug, message(), metadata: metadata())
    }
    public func info(_ message: @autoclosure () -> String, metadata: @autoclosure () -> [String: String] = [:]) {
        log(.info, message(), metadata: metadata())
    }
    public func notice(_ message: @autoclosure () -> String, metadata: @autoclosure () -> [String: String] = [:]) {
        log(.notice, message(), metadata: metadata())
    }
    public func warning(_ message: @autoclosure () -> String, metadata: @autoclosure () -> [String: String] = [:]) {
        log(.warning, message(), metadata: metadata())
    }
    public func error(_ message: @autoclosure () -> String, metadata: @autoclosure () -> [String: String] = [:]) {
        log(.error, message(), metadata: metadata())
    }
}

/// One log record as handed to a sink.
public struct LogRecord: Sendable {
    public var time: Date
    public var level: Logger.Level
    public var label: String
    public var message: String
    public var metadata: [String: String]

    /// `time level label: message key=value ...` with keys sorted and values quoted when they
    /// contain spaces, quotes or `=`.
    public var formatted: String {
        var line = "\(LogRecord.timestamp(time)) \(level) \(label): \(message)"
        for key in metadata.keys.sorted() {
            line += " \(key)=\(LogRecord.quoteIfNeeded(metadata[key]!))"
        }
        return line
    }

    static func quoteIfNeeded(_ value: String) -> String {
        if value.isEmpty { return "\"\"" }
        guard value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\n" }) else { return value }
        var out = "\""
        for c in value {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out + "\""
    }

    static func timestamp(_ date: Date) -> String {
        let millis = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(millis / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis % 1000), 3))Z"
    }
}

/// Where log records go. Implementations must be safe to call from any thread.
public protocol LogSink: Sendable {
    func emit(_ record: LogRecord)
}

/// Writes one formatted line per record to standard error (one `write` per line, so lines from
/// concurrent tasks never interleave).
public struct StandardErrorLogSink: LogSink {
    public static let shared = StandardErrorLogSink()
    public init() {}
    public func emit(_ record: LogRecord) {
        let line = record.formatted + "\n"
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(2, buffer.baseAddress! + offset, buffer.count - offset)
                if n <= 0 { break }
                offset += n
            }
        }
    }
}

/// Drops every record.
public struct DiscardingLogSink: LogSink {
    public init() {}
    public func emit(_ record: LogRecord) {}
}

/// Keeps records in memory, for tests that check what was logged.
public final class CollectingLogSink: LogSink {
    private let storage = Mutex<[LogRecord]>([])
    public init() {}
    public func emit(_ record: LogRecord) { storage.withLock { $0.append(record) } }
    public var records: [LogRecord] { storage.withLock { $0 } }
}
