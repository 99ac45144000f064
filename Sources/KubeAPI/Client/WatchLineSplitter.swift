import Foundation

/// Splits a watch stream's bytes into complete lines (one JSON event each), as a pure value:
/// bytes go in with ``feed(_:)``, complete lines come out of ``nextLine()``, and `nil` means
/// "need more bytes" — never "end of stream". A chunk boundary may fall anywhere, including
/// inside a UTF-8 sequence or right before the `\n`; a chunk without a newline only means the
/// line continues in the next one. At the real end of the stream, ``finish()`` returns a
/// trailing line that had no final newline (servers may omit it).
///
/// Bounded: a line longer than `maxLineLength` bytes throws ``KubeAPIError/watchLineTooLong(limit:)``
/// as soon as that many bytes without a newline have arrived, so memory stays bounded.
/// Empty lines (and `\r` before `\n`) are skipped.
///
/// Example: feed `{"a":1}\n{"b"` → `nextLine()` gives `{"a":1}`, then nil; feed `:2}\n` →
/// `{"b":2}`.
public struct WatchLineSplitter: Sendable {
    public let maxLineLength: Int
    private var buffer: [UInt8] = []
    /// Index in `buffer` where the next line starts.
    private var start = 0
    /// Index up to which `buffer[start...]` was searched for a newline without finding one.
    private var scanned = 0

    public init(maxLineLength: Int = 16 << 20) {
        precondition(maxLineLength > 0, "maxLineLength must be positive")
        self.maxLineLength = maxLineLength
    }

    /// Bytes received but not yet returned as lines.
    public var bufferedByteCount: Int { buffer.count - start }

    public mutating func feed(_ bytes: some Sequence<UInt8>) {
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeFirst(start)
            scanned -= start
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next complete line without its terminator, or nil when more bytes are needed.
    public mutating func nextLine() throws(KubeAPIError) -> ArraySlice<UInt8>? {
        while true {
            var i = max(scanned, start)
            while i < buffer.count && buffer[i] != UInt8(ascii: "\n") { i += 1 }
            guard i < buffer.count else {
                scanned = i
                if buffer.count - start > maxLineLength { throw .watchLineTooLong(limit: maxLineLength) }
                return nil
            }
            var line = buffer[start..<i]
            start = i + 1
            scanned = start
            if line.count > maxLineLength { throw .watchLineTooLong(limit: maxLineLength) }
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) { continue }
            return line
        }
    }

    /// At the end of the stream: the final line if it had no newline (nil if nothing but
    /// whitespace is left). Call after ``nextLine()`` has returned nil.
    public mutating func finish() throws(KubeAPIError) -> ArraySlice<UInt8>? {
        var rest = buffer[start...]
        start = buffer.count
        scanned = start
        while let last = rest.last, last == UInt8(ascii: "\r") || last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") {
            rest = rest.dropLast()
        }
        if rest.isEmpty { return nil }
        if rest.count > maxLineLength { throw .watchLineTooLong(limit: maxLineLength) }
        return rest
    }
}

/// Decodes watch lines into typed events: the splitter plus JSON decoding, still a pure value.
public struct WatchEventDecoder<Object: Codable & Sendable & Equatable>: Sendable {
    public var splitter: WatchLineSplitter

    public init(maxLineLength: Int = 16 << 20) { splitter = WatchLineSplitter(maxLineLength: maxLineLength) }

    public mutating func feed(_ bytes: some Sequence<UInt8>) { splitter.feed(bytes) }

    /// The next complete event, or nil when more bytes are needed.
    public mutating func next() throws(KubeAPIError) -> WatchEvent<Object>? {
        guard let line = try splitter.nextLine() else { return nil }
        return try KubeJSON.decode(WatchEvent<Object>.self, from: Data(line))
    }

    /// The event of a final line without a newline, at the end of the stream.
    public mutating func finish() throws(KubeAPIError) -> WatchEvent<Object>? {
        guard let line = try splitter.finish() else { return nil }
        return try KubeJSON.decode(WatchEvent<Object>.self, from: Data(line))
    }
}
