import Testing
@testable import KafkaProtocol

struct FrameDecoderTests {
    /// A seeded stream of frames with sizes from 0 up to a few KiB, plus its encoding.
    static func stream(seed: UInt64, count: Int = 300) -> (frames: [[UInt8]], bytes: [UInt8]) {
        var rng = RecordsRNG(seed: seed)
        var frames: [[UInt8]] = []
        var bytes: [UInt8] = []
        for _ in 0..<count {
            let size: Int
            switch rng.next() % 4 {
            case 0: size = 0
            case 1: size = Int(rng.next() % 8)
            case 2: size = Int(rng.next() % 300)
            default: size = Int(rng.next() % 5000)
            }
            let frame = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            frames.append(frame)
            FrameEncoder.append(frame, to: &bytes)
        }
        return (frames, bytes)
    }

    static func drain(_ decoder: inout FrameDecoder, into frames: inout [[UInt8]]) throws {
        while let frame = try decoder.nextFrame() { frames.append(frame) }
    }

    @Test(arguments: [1 as UInt64, 2, 3])
    func sameFramesWhetherFedAllAtOnceByteByByteOrInRandomChunks(seed: UInt64) throws {
        let (expected, bytes) = Self.stream(seed: seed)
        #expect(expected.contains([]))

        var whole = FrameDecoder()
        whole.feed(bytes)
        var wholeFrames: [[UInt8]] = []
        try Self.drain(&whole, into: &wholeFrames)
        #expect(wholeFrames == expected)
        #expect(whole.bufferedByteCount == 0)

        // A small compaction threshold makes the byte-by-byte run compact many times.
        var single = FrameDecoder(compactionThreshold: 16)
        var singleFrames: [[UInt8]] = []
        for byte in bytes {
            single.feed(CollectionOfOne(byte))
            try Self.drain(&single, into: &singleFrames)
        }
        #expect(singleFrames == expected)
        #expect(single.bufferedByteCount == 0)

        var rng = RecordsRNG(seed: seed &* 77)
        var chunked = FrameDecoder(compactionThreshold: 1024)
        var chunkedFrames: [[UInt8]] = []
        var i = 0
        while i < bytes.count {
            let n = min(bytes.count - i, Int(rng.next() % 9000))
            chunked.feed(bytes[i..<(i + n)])
            try Self.drain(&chunked, into: &chunkedFrames)
            i += n
        }
        #expect(chunkedFrames == expected)
        #expect(chunked.bufferedByteCount == 0)
    }

    @Test func partialFrameIsNotConsumed() throws {
        let encoded = FrameEncoder.frame([1, 2, 3, 4, 5])
        var decoder = FrameDecoder()
        decoder.feed(encoded.prefix(2))
        #expect(try decoder.nextFrame() == nil)
        #expect(decoder.bufferedByteCount == 2)
        decoder.feed(encoded[2..<8])
        #expect(try decoder.nextFrame() == nil)
        #expect(try decoder.nextFrame() == nil)
        #expect(decoder.bufferedByteCount == 8)
        decoder.feed(encoded[8...])
        #expect(try decoder.nextFrame() == [1, 2, 3, 4, 5])
        #expect(try decoder.nextFrame() == nil)
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test func docExample() throws {
        var decoder = FrameDecoder()
        decoder.feed([0, 0, 0, 2, 0xAA, 0xBB, 0, 0])
        #expect(try decoder.nextFrame() == [0xAA, 0xBB])
        #expect(try decoder.nextFrame() == nil)
        decoder.feed([0, 0])
        #expect(try decoder.nextFrame() == [])
    }

    @Test func oversizedFrameIsRejectedFromItsPrefixAlone() {
        var decoder = FrameDecoder(maxFrameSize: 100)
        decoder.feed([0, 0, 0, 101])  // no body at all
        #expect(throws: KafkaProtocolError.frameTooLarge(size: 101, limit: 100)) { try decoder.nextFrame() }
        // The decoder stays failed: the stream position is lost.
        decoder.feed([UInt8](repeating: 0, count: 101))
        #expect(throws: KafkaProtocolError.frameTooLarge(size: 101, limit: 100)) { try decoder.nextFrame() }
        #expect(decoder.bufferedByteCount == 4)  // bytes after the failure are not kept

        var huge = FrameDecoder()
        huge.feed([0x7F, 0xFF, 0xFF, 0xFF])
        #expect(throws: KafkaProtocolError.frameTooLarge(size: Int(Int32.max), limit: FrameDecoder.defaultMaxFrameSize)) {
            try huge.nextFrame()
        }
    }

    @Test func frameOfExactlyTheLimitIsAccepted() throws {
        var decoder = FrameDecoder(maxFrameSize: 100)
        let body = [UInt8](repeating: 7, count: 100)
        decoder.feed(FrameEncoder.frame(body))
        #expect(try decoder.nextFrame() == body)
    }

    @Test func negativeSizeIsRejected() {
        var decoder = FrameDecoder()
        decoder.feed([0xFF, 0xFF, 0xFF, 0xFF, 1, 2])
        #expect(throws: KafkaProtocolError.invalidFrameSize(-1)) { try decoder.nextFrame() }
        var other = FrameDecoder()
        other.feed([0x80, 0, 0, 0])
        #expect(throws: KafkaProtocolError.invalidFrameSize(Int32.min)) { try other.nextFrame() }
    }

    @Test func framesAfterAGoodOneStillDecodeWhenTheBadOneArrives() throws {
        var decoder = FrameDecoder(maxFrameSize: 10)
        decoder.feed(FrameEncoder.frame([9, 9]) + [0, 0, 0, 11])
        #expect(try decoder.nextFrame() == [9, 9])
        #expect(throws: KafkaProtocolError.frameTooLarge(size: 11, limit: 10)) { try decoder.nextFrame() }
    }

    @Test func encoderWritesBigEndianSizePrefix() {
        #expect(FrameEncoder.frame([0xAA]) == [0, 0, 0, 1, 0xAA])
        #expect(FrameEncoder.frame([UInt8]()) == [0, 0, 0, 0])
        let big = [UInt8](repeating: 1, count: 0x0102_03)
        #expect(Array(FrameEncoder.frame(big).prefix(4)) == [0, 1, 2, 3])
        var buffer: [UInt8] = [0xEE]
        FrameEncoder.append([5, 6], to: &buffer)
        #expect(buffer == [0xEE, 0, 0, 0, 2, 5, 6])
    }
}
