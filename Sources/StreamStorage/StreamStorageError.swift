/// The one error enum of the StreamStorage module. Every case names what failed and with which
/// input (stream, epoch, offset, object key).
public enum StreamStorageError: Error, Equatable, CustomStringConvertible {
    /// A persistent structure failed validation: bad magic, unknown version, CRC mismatch or
    /// truncation. `what` names the structure, `key` the object key or file path.
    case corrupt(what: String, key: String, detail: String)
    /// The stream is owned at a newer epoch; the caller's epoch is stale.
    case fenced(stream: UInt64, epoch: UInt64, currentEpoch: UInt64)
    /// The write-ahead log was taken over by a writer at a newer epoch.
    case walFenced(wal: String, epoch: UInt64, detail: String)
    /// The write-ahead log failed earlier and accepts no more appends until recovered.
    case walFailed(wal: String, detail: String)
    /// A read asked for an offset outside `[start, end)` (reading at `end` returns nothing).
    case offsetOutOfRange(stream: UInt64, offset: Int64, start: Int64, end: Int64)
    /// Data would not continue a stream contiguously.
    case nonContiguous(stream: UInt64, expected: Int64, got: Int64)
    /// A metadata change was rejected: the state it was planned against changed.
    case metadataConflict(detail: String)
    /// The stream is unknown to the metadata store.
    case unknownStream(stream: UInt64)
    /// The component was closed.
    case closed(what: String)
    /// An object-store or file operation failed.
    case io(operation: String, key: String, detail: String)
    /// A configuration or argument was invalid.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .corrupt(what, key, detail): return "corrupt \(what) at \(key): \(detail)"
        case let .fenced(stream, epoch, current):
            return "stream \(stream) is fenced: epoch \(epoch) is older than the current epoch \(current)"
        case let .walFenced(wal, epoch, detail): return "WAL \(wal) at epoch \(epoch) was fenced: \(detail)"
        case let .walFailed(wal, detail): return "WAL \(wal) failed: \(detail)"
        case let .offsetOutOfRange(stream, offset, start, end):
            return "offset \(offset) of stream \(stream) is out of range [\(start), \(end))"
        case let .nonContiguous(stream, expected, got):
            return "stream \(stream) is not contiguous: expected offset \(expected), got \(got)"
        case let .metadataConflict(detail): return "stream metadata conflict: \(detail)"
        case let .unknownStream(stream): return "unknown stream \(stream)"
        case let .closed(what): return "\(what) is closed"
        case let .io(operation, key, detail): return "\(operation) \(key) failed: \(detail)"
        case let .invalidArgument(text): return "invalid argument: \(text)"
        }
    }
}
