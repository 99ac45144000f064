import Testing
@testable import Bytes

struct ReaderWriterTests {
    @Test func integersRoundTripBigEndian() throws {
        var w = ByteWriter()
        w.writeInt16(42)
        w.writeInt32(-2)
        w.writeInt64(Int64.min)
        w.writeUInt16(0xBEEF)
        w.writeFloat64(1.5)
        w.writeBool(true)
        #expect(Array(w.bytes.prefix(6)) == [0x00, 0x2A, 0xFF, 0xFF, 0xFF, 0xFE])
        var r = ByteReader(w.bytes)
        #expect(try r.readInt16() == 42)
        #expect(try r.readInt32() == -2)
        #expect(try r.readInt64() == Int64.min)
        #expect(try r.readUInt16() == 0xBEEF)
        #expect(try r.readFloat64() == 1.5)
        #expect(try r.readBool() == true)
        #expect(r.isAtEnd)
    }

    @Test func varintsMatchKnownEncodings() throws {
        var w = ByteWriter()
        w.writeUnsignedVarint(300)
        #expect(w.bytes == [0xAC, 0x02])
        w = ByteWriter()
        w.writeVarint(-1)
        w.writeVarint(1)
        w.writeVarint(Int32.min)
        #expect(w.bytes == [0x01, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F])
        var r = ByteReader(w.bytes)
        #expect(try r.readVarint() == -1)
        #expect(try r.readVarint() == 1)
        #expect(try r.readVarint() == Int32.min)
    }

    @Test func seededVarintRoundTrips() throws {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<10_000 {
            let a = Int32(truncatingIfNeeded: rng.next() >> (rng.next() % 64))
            let b = Int64(bitPattern: rng.next() >> (rng.next() % 64))
            var w = ByteWriter()
            w.writeVarint(a)
            w.writeVarlong(b)
            #expect(w.count == ByteWriter.varintSize(a) + ByteWriter.varlongSize(b))
            var r = ByteReader(w.bytes)
            #expect(try r.readVarint() == a)
            #expect(try r.readVarlong() == b)
        }
    }

    @Test func truncationAndOverlongVarintsAreErrors() {
        var r = ByteReader([0x00])
        #expect(throws: BytesError.truncated(reading: "int32", needed: 4, available: 1, offset: 0)) { try r.readInt32() }
        var v = ByteReader([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
        #expect(throws: BytesError.malformedVarint(offset: 0)) { try v.readUnsignedVarint() }
        var s = ByteReader([0xC3, 0x28])
        #expect(throws: BytesError.invalidUTF8(offset: 0)) { try s.readString(2) }
    }

    @Test func slicesShareStorageAndRespectBounds() throws {
        var r = ByteReader([1, 2, 3, 4, 5])
        _ = try r.readUInt8()
        var sub = try r.subReader(3)
        #expect(Array(sub.remainingSlice) == [2, 3, 4])
        #expect(try sub.readUInt8() == 2)
        #expect(r.remaining == 1)
        #expect(throws: BytesError.self) { try sub.readInt32() }
    }
}
