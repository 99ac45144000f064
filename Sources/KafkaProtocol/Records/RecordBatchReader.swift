/// Walks the batches of a `records` blob (a Produce request's or Fetch response's `records`
/// field, or a stored run of batches), yielding zero-copy `RecordBatch` views.
///
/// A blob may end with a partial batch: Kafka truncates Fetch responses at `max_bytes`, so a
/// consumer-side reader should pass `trailingPartialBatch: .allow`, and the partial bytes are
/// then left in `partialBatch`. A broker reading a Produce request uses `.reject` (the default),
/// where a partial batch throws.
///
/// Invariant: batches are returned in order and `byteOffset` is the position (relative to the
/// blob's start) of the next unread byte; after `next()` returns nil, either
/// `byteOffset == blob.count` or `partialBatch` holds `blob[byteOffset...]`.
///
/// Example, listing the records of a captured Produce request's `records` field:
/// ```
/// var reader = RecordBatchReader(records)
/// while let batch = try reader.next() {
///     for record in try batch.records() {
///         print(batch.offset(of: record), record.key, record.value)
///     }
/// }
/// ```
public struct RecordBatchReader: Sendable {
    public enum TrailingPartialBatch: Sendable {
        /// A partial batch at the end throws `.invalidRecordBatch`.
        case reject
        /// A partial batch at the end ends iteration and is kept in `partialBatch`.
        case allow
    }

    /// How much each batch is checked before it is returned.
    public enum Verification: Sendable {
        /// `RecordBatch(validating:)`: structure, counts and CRC.
        case full
        /// `RecordBatch(unverified:)`: header and length only.
        case headerOnly
    }

    public let blob: ArraySlice<UInt8>
    public let trailingPartialBatch: TrailingPartialBatch
    public let verification: Verification
    private var position: Int
    /// The bytes of an incomplete final batch, when allowed and present.
    public private(set) var partialBatch: ArraySlice<UInt8>?

    public init(
        _ blob: ArraySlice<UInt8>, trailingPartialBatch: TrailingPartialBatch = .reject,
        verification: Verification = .full
    ) {
        self.blob = blob
        self.trailingPartialBatch = trailingPartialBatch
        self.verification = verification
        position = blob.startIndex
    }

    public init(_ blob: [UInt8], trailingPartialBatch: TrailingPartialBatch = .reject, verification: Verification = .full) {
        self.init(blob[...], trailingPartialBatch: trailingPartialBatch, verification: verification)
    }

    /// Bytes of the blob consumed so far.
    public var byteOffset: Int { position - blob.startIndex }

    /// The next whole batch, or nil at the end of the blob (or at a permitted partial batch).
    /// Errors carry byte offsets relative to the blob's start.
    public mutating func next() throws(KafkaProtocolError) -> RecordBatch? {
        let remaining = blob.endIndex - position
        if remaining == 0 || partialBatch != nil { return nil }
        let rest = blob[position...]
        if remaining > RecordBatchHeader.magicOffset {
            let magic = Int8(bitPattern: rest[position + RecordBatchHeader.magicOffset])
            if magic == 0 || magic == 1 {
                throw .unsupportedMagic(magic, baseOffset: RecordBatchHeader.loadInt64(rest, at: 0))
            }
        }
        guard remaining >= RecordBatchHeader.logOverhead else {
            return try partial(rest, "\(remaining) trailing bytes cannot hold a batch's offset and length")
        }
        let length = Int(RecordBatchHeader.loadInt32(rest, at: 8))
        let minimumLength = RecordBatchHeader.size - RecordBatchHeader.logOverhead
        guard length >= minimumLength else {
            throw .invalidRecordBatch(
                reason: "batchLength \(length) is below the minimum of \(minimumLength)", offset: byteOffset + 8)
        }
        let total = RecordBatchHeader.logOverhead + length
        guard total <= remaining else {
            return try partial(rest, "batch announces \(total) bytes but only \(remaining) remain")
        }
        let bytes = rest.prefix(total)
        let batch: RecordBatch
        do {
            switch verification {
            case .full: batch = try RecordBatch(validating: bytes)
            case .headerOnly: batch = try RecordBatch(unverified: bytes)
            }
        } catch {
            throw error.shifted(by: byteOffset)
        }
        position += total
        return batch
    }

    private mutating func partial(_ rest: ArraySlice<UInt8>, _ reason: String) throws(KafkaProtocolError) -> RecordBatch? {
        switch trailingPartialBatch {
        case .reject:
            throw .invalidRecordBatch(reason: "truncated batch: \(reason)", offset: byteOffset)
        case .allow:
            partialBatch = rest
            return nil
        }
    }

    /// Every batch of `blob`, checked as `verification` says; a partial trailing batch throws.
    public static func batches(in blob: ArraySlice<UInt8>, verification: Verification = .full) throws(KafkaProtocolError) -> [RecordBatch] {
        var reader = RecordBatchReader(blob, verification: verification)
        var batches: [RecordBatch] = []
        while let batch = try reader.next() { batches.append(batch) }
        return batches
    }
}

extension KafkaProtocolError {
    /// The same error with its byte offset moved by `delta` (for errors found inside a batch
    /// that sits at `delta` in a larger blob).
    func shifted(by delta: Int) -> KafkaProtocolError {
        if case let .invalidRecordBatch(reason, offset) = self {
            return .invalidRecordBatch(reason: reason, offset: offset + delta)
        }
        return self
    }
}
