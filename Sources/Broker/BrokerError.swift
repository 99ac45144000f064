#if canImport(Glibc)
import Glibc
#endif
import KafkaProtocol
import StreamStorage

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
    /// A metadata change needs the active controller and this broker is not it (or was deposed).
    case notController(epoch: UInt64, current: UInt64)
    /// The partition is owned by another broker, or is being handed over.
    case notLeader(topic: String, partition: Int32, owner: Int32)
    /// No controller answers (election in progress, or the controller is unreachable).
    case controllerUnavailable(String)
    /// The cluster refused this broker's registration.
    case registrationRefused(String)

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
        case let .notController(epoch, current):
            return "this broker is not the active controller (its epoch \(epoch), the cluster's \(current))"
        case let .notLeader(topic, partition, owner):
            return "partition \(topic)-\(partition) is not served by this broker (owner \(owner))"
        case let .controllerUnavailable(text):
            return "no controller available: \(text)"
        case let .registrationRefused(text):
            return "broker registration refused: \(text)"
        }
    }
}

/// Milliseconds since the Unix epoch (wall clock).
public func wallMillis() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

extension BrokerError {
    /// The Kafka error code a partition-level failure becomes: ownership problems tell the client
    /// to refresh its metadata and retry elsewhere; anything else is a storage error.
    static func partitionCode(_ error: any Error) -> KafkaErrorCode {
        if let e = error as? BrokerError {
            switch e {
            case .notLeader: return .notLeaderOrFollower
            case .offsetOutOfRange: return .offsetOutOfRange
            default: return .kafkaStorageError
            }
        }
        if let e = error as? StreamStorageError {
            switch e {
            case .fenced, .closed: return .notLeaderOrFollower
            default: return .kafkaStorageError
            }
        }
        return .kafkaStorageError
    }
}
