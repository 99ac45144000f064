/// Splits a byte stream into Kafka frames: a 4-byte big-endian size followed by that many bytes.
///
/// A value with no I/O: the connection owner `feed`s whatever bytes arrived and then calls
/// `nextFrame()` until it returns nil ("need more data"). A partial frame is never consumed; it
/// stays buffered until the rest arrives.
///
/// Invariants:
/// - `buffer[readIndex...]` holds exactly the bytes fed and not yet returned as frames.
/// - Consumed bytes are dropped lazily (when the buffer is empty, or when the dead prefix is at
///   least half the buffer and at least `compactionThreshold` bytes), so decoding many small
///   frames costs amortized O(total bytes), not O(n^2) shifting.
/// - A size prefix above `maxFrameSize` or below zero is reported as soon as its 4 bytes are
///   buffered, before any of the body is waited for. After such an error the decoder is failed:
///   every later `nextFrame()` throws the same error (the connection must be closed, since the
///   stream position is lost).
///
/// Example: feeding `[0, 0, 0, 2, 0xAA, 0xBB, 0, 0]` yields the frame `[0xAA, 0xBB]`, then nil
/// (two bytes of the next size prefix are buffered); feeding `[0, 0]` then yields `[]`, an empty
/// frame.
public struct FrameDecoder: Sendable {
    /// The Kafka broker's default `socket.request.max.bytes` (100 MiB).
    public static let defaultMaxFrameSize = 104_857_600
    /// Size of the length prefix in bytes.
    public static let prefixSize = 4

    public let maxFrameSize: Int
    private var buffer: [UInt8] = []
    private var readIndex = 0
    private var failure: KafkaProtocolError?
    private let compactionThreshold: Int

    public init(maxFrameSize: Int = FrameDecoder.defaultMaxFrameSize, compactionThreshold: Int = 64 * 1024) {
        precondition(maxFrameSize >= 0, "maxFrameSize must not be negative")
        self.maxFrameSize = maxFrameSize
        self.compactionThreshold = max(1, compactionThreshold)
    }

    /// Bytes buffered and not yet returned in a frame.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// Appends bytes received from the peer. Ignored once the decoder has failed, so a peer that
    /// keeps sending after a bad size prefix cannot grow the buffer.
    public mutating func feed<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        if failure != nil { return }
        compactIfWorthwhile()
        buffer.append(contentsOf: bytes)
    }

    /// The body of the next complete frame, or nil when more bytes are needed.
    ///
    /// Throws `.frameTooLarge` or `.invalidFrameSize` when the buffered size prefix is out of
    /// bounds; the decoder then stays failed.
    public mutating func nextFrame() throws(KafkaProtocolError) -> [UInt8]? {
        if let failure { throw failure }
        let available = buffer.count - readIndex
        guard available >= Self.prefixSize else { return nil }
        let size = buffer.withUnsafeBytes { raw in
            Int32(bigEndian: raw.loadUnaligned(fromByteOffset: readIndex, as: Int32.self))
        }
        if size < 0 {
            failure = .invalidFrameSize(size)
            throw .invalidFrameSize(size)
        }
        if Int(size) > maxFrameSize {
            failure = .frameTooLarge(size: Int(size), limit: maxFrameSize)
            throw .frameTooLarge(size: Int(size), limit: maxFrameSize)
        }
        let total = Self.prefixSize + Int(size)
        // Nothing is reserved for the announced size: a peer that announces a large frame and
        // sends nothing more costs only the bytes it actually sent.
        guard available >= total else { return nil }
        let start = readIndex + Self.prefixSize
        let frame = Array(buffer[start..<(start + Int(size))])
        readIndex += total
        return frame
    }

    /// Drops the consumed prefix when that is cheap relative to what was consumed.
    private mutating func compactIfWorthwhile() {
        if readIndex == 0 { return }
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            readIndex = 0
        } else if readIndex >= compactionThreshold && readIndex * 2 >= buffer.count {
            buffer.removeSubrange(0..<readIndex)
            readIndex = 0
        }
    }
}

/// Writes size-prefixed frames, the inverse of `FrameDecoder`.
///
/// Example: `FrameEncoder.frame([0xAA])` is `[0, 0, 0, 1, 0xAA]`.
public enum FrameEncoder {
    /// `body` with its 4-byte big-endian size in front.
    public static func frame<C: Collection>(_ body: C) -> [UInt8] where C.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(FrameDecoder.prefixSize + body.count)
        append(body, to: &out)
        return out
    }

    /// Appends `body` with its size prefix to `buffer`.
    public static func append<C: Collection>(_ body: C, to buffer: inout [UInt8]) where C.Element == UInt8 {
        precondition(body.count <= Int(Int32.max), "a Kafka frame holds at most Int32.max bytes")
        let size = UInt32(body.count).bigEndian
        withUnsafeBytes(of: size) { buffer.append(contentsOf: $0) }
        buffer.append(contentsOf: body)
    }
}
