import Bytes
import CZlib

/// Gzip (RFC 1952) through the system zlib, as Kafka's `compression.type=gzip` uses it.
///
/// Decompression is streaming into a buffer that grows geometrically up to `maxSize`; output
/// beyond that throws `.decompressedSizeExceeded`, so a small hostile input cannot make the
/// process allocate without bound. Concatenated gzip members are accepted (Java's
/// GZIPInputStream reads them too); anything after the last member must itself be a member.
public enum Gzip {
    /// zlib's window bits plus 16: the gzip wrapper instead of the zlib one.
    static let gzipWindowBits: Int32 = 15 + 16

    /// The bytes that `data`, a gzip stream, decompresses to.
    public static func decompress<C: ContiguousBytes>(
        _ data: C, maxSize: Int = Compression.defaultMaxDecompressedSize
    ) throws(KafkaProtocolError) -> [UInt8] {
        let result: Result<[UInt8], KafkaProtocolError> = data.withUnsafeBytes { input in
            Result { () throws(KafkaProtocolError) in try inflateGzip(input, maxSize: maxSize) }
        }
        return try result.get()
    }

    /// `data` compressed into one gzip member at zlib's default level.
    public static func compress<C: ContiguousBytes>(_ data: C, level: Int32 = Z_DEFAULT_COMPRESSION) throws(KafkaProtocolError) -> [UInt8] {
        let result: Result<[UInt8], KafkaProtocolError> = data.withUnsafeBytes { input in
            Result { () throws(KafkaProtocolError) in try deflateGzip(input, level: level) }
        }
        return try result.get()
    }

    private static func zlibFailure(_ what: String, _ code: Int32, _ stream: UnsafeMutablePointer<z_stream>) -> KafkaProtocolError {
        let detail = stream.pointee.msg.map { String(cString: $0) } ?? "zlib code \(code)"
        return .compression(codec: "gzip", reason: "\(what): \(detail)")
    }

    private static func inflateGzip(_ input: UnsafeRawBufferPointer, maxSize: Int) throws(KafkaProtocolError) -> [UInt8] {
        guard input.count <= Int(UInt32.max) else {
            throw .compression(codec: "gzip", reason: "compressed input of \(input.count) bytes is too large")
        }
        guard input.count > 0 else {
            throw .compression(codec: "gzip", reason: "empty input: a gzip stream has at least a header and a trailer")
        }
        // Heap-allocated: zlib keeps a pointer back to the z_stream and rejects one that moved.
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        defer { stream.deinitialize(count: 1); stream.deallocate() }
        let initCode = inflateInit2_(stream, gzipWindowBits, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard initCode == Z_OK else { throw zlibFailure("inflateInit2", initCode, stream) }
        defer { inflateEnd(stream) }

        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: UInt8.self).baseAddress)
        stream.pointee.avail_in = UInt32(input.count)

        // One byte beyond the limit is allowed into the buffer, so overflow is observable.
        let ceiling = maxSize < Int.max ? maxSize + 1 : maxSize
        var output = [UInt8](repeating: 0, count: min(ceiling, max(4096, input.count * 4)))
        var produced = 0
        while true {
            if produced == output.count {
                if output.count >= ceiling {
                    throw .decompressedSizeExceeded(codec: "gzip", limit: maxSize)
                }
                output.append(contentsOf: repeatElement(0, count: min(ceiling, output.count * 2) - output.count))
            }
            let code: Int32 = output.withUnsafeMutableBufferPointer { out in
                stream.pointee.next_out = out.baseAddress! + produced
                let room = min(out.count - produced, Int(UInt32.max))
                stream.pointee.avail_out = UInt32(room)
                let code = inflate(stream, Z_NO_FLUSH)
                produced += room - Int(stream.pointee.avail_out)
                return code
            }
            if produced > maxSize {
                throw .decompressedSizeExceeded(codec: "gzip", limit: maxSize)
            }
            switch code {
            case Z_STREAM_END:
                if stream.pointee.avail_in == 0 {
                    output.removeSubrange(produced...)
                    return output
                }
                // Another gzip member follows.
                let reset = inflateReset(stream)
                guard reset == Z_OK else { throw zlibFailure("inflateReset", reset, stream) }
            case Z_OK:
                continue
            case Z_BUF_ERROR:
                // No progress: either the output is full (grown at the top of the loop) or the
                // input ended inside the stream.
                if stream.pointee.avail_in == 0 && produced < output.count {
                    throw .compression(
                        codec: "gzip",
                        reason: "input of \(input.count) bytes ends before the end of the gzip stream (truncated)")
                }
            default:
                let consumed = input.count - Int(stream.pointee.avail_in)
                throw zlibFailure("corrupt gzip data near input byte \(consumed) of \(input.count)", code, stream)
            }
        }
    }

    private static func deflateGzip(_ input: UnsafeRawBufferPointer, level: Int32) throws(KafkaProtocolError) -> [UInt8] {
        guard input.count <= Int(UInt32.max) else {
            throw .compression(codec: "gzip", reason: "input of \(input.count) bytes is too large to compress in one batch")
        }
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        defer { stream.deinitialize(count: 1); stream.deallocate() }
        let initCode = deflateInit2_(
            stream, level, Z_DEFLATED, gzipWindowBits, 8, Z_DEFAULT_STRATEGY, zlibVersion(),
            Int32(MemoryLayout<z_stream>.size))
        guard initCode == Z_OK else { throw zlibFailure("deflateInit2", initCode, stream) }
        defer { deflateEnd(stream) }

        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: UInt8.self).baseAddress)
        stream.pointee.avail_in = UInt32(input.count)
        // deflateBound is an upper bound for a single deflate(Z_FINISH) call.
        let bound = Int(deflateBound(stream, UInt(input.count)))
        var output = [UInt8](repeating: 0, count: bound)
        let (code, produced): (Int32, Int) = output.withUnsafeMutableBufferPointer { out in
            stream.pointee.next_out = out.baseAddress!
            stream.pointee.avail_out = UInt32(out.count)
            let code = deflate(stream, Z_FINISH)
            return (code, out.count - Int(stream.pointee.avail_out))
        }
        guard code == Z_STREAM_END else { throw zlibFailure("deflate", code, stream) }
        output.removeSubrange(produced...)
        return output
    }
}
