#if canImport(Glibc)
import Glibc
#endif
import KafkaProtocol

/// Every error the broker module raises. Each case names what failed and with which input.
public enum BrokerError: Error, CustomStringConvertible, Equatable {
    /// A read outside a partition's offsets.
    case offsetOutOfRange(offset: Int64, start: Int64, end: Int64)
    /// The storage below a partition failed.
    case storage(String)
    /// A persisted broker document (registry, producer state) is unreadable.
    case corruptDocument(key: String, reason: String)
    /// A conditional write kept conflicting with another writer.
    case conflict(key: String, attempts: Int)
    /// A configuration value is invalid.
    case invalidConfig(name: String, value: String, reason: String)
    /// A configuration source (file, flag, environment) could not be used.
    case configuration(String)

    public var description: String {
        switch self {
        case let .offsetOutOfRange(offset, start, end):
            return "offset \(offset) is outside the partition's range \(start)..<\(end)"
        case let .storage(text):
            return "storage failed: \(text)"
        case let .corruptDocument(key, reason):
            return "broker document \(key) is corrupt: \(reason)"
        case let .conflict(key, attempts):
            return "conditional write of \(key) conflicted \(attempts) times"
        case let .invalidConfig(name, value, reason):
            return "invalid value \(value) for configuration \(name): \(reason)"
        case let .configuration(text):
            return text
        }
    }
}

/// Milliseconds since the Unix epoch (wall clock).
public func wallMillis() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}
