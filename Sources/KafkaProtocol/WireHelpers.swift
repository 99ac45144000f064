import Bytes

// Encodings shared by the generated codecs. "Compact" forms are used at flexible versions:
// an unsigned varint of length + 1 (0 = null) instead of an int16/int32 length (−1 = null).
// Every length read is checked against the remaining input before anything is allocated.

extension ByteReader {
    /// A string length: compact → uvarint − 1, classic → int16. −1 means null.
    @inline(__always)
    mutating func readStringLength(compact: Bool) throws(BytesError) -> Int {
        if compact { return Int(try readUnsignedVarint()) - 1 }
        return Int(try readInt16())
    }

    /// A bytes or array length: compact → uvarint − 1, classic → int32. −1 means null.
    @inline(__always)
    mutating func readBytesLength(compact: Bool) throws(BytesError) -> Int {
        if compact { return Int(try readUnsignedVarint()) - 1 }
        return Int(try readInt32())
    }

    mutating func readKafkaString(compact: Bool, _ field: StaticString) throws(BytesError) -> String {
        let start = offset
        let length = try readStringLength(compact: compact)
        if length < 0 { throw .invalidLength(reading: "\(field) (non-nullable string)", length: length, offset: start) }
        return try readString(length)
    }

    mutating func readNullableKafkaString(compact: Bool, _ field: StaticString) throws(BytesError) -> String? {
        let start = offset
        let length = try readStringLength(compact: compact)
        if length == -1 { return nil }
        if length < 0 { throw .invalidLength(reading: "\(field) (string)", length: length, offset: start) }
        return try readString(length)
    }

    mutating func readKafkaBytes(compact: Bool, _ field: StaticString) throws(BytesError) -> [UInt8] {
        let start = offset
        let length = try readBytesLength(compact: compact)
        if length < 0 { throw .invalidLength(reading: "\(field) (non-nullable bytes)", length: length, offset: start) }
        return try readBytes(length, "\(field)")
    }

    mutating func readNullableKafkaBytes(compact: Bool, _ field: StaticString) throws(BytesError) -> [UInt8]? {
        guard let slice = try readNullableRecords(compact: compact, field) else { return nil }
        return Array(slice)
    }

    /// Records (or bytes) as a zero-copy slice of the input.
    mutating func readRecords(compact: Bool, _ field: StaticString) throws(BytesError) -> ArraySlice<UInt8> {
        let start = offset
        let length = try readBytesLength(compact: compact)
        if length < 0 { throw .invalidLength(reading: "\(field) (non-nullable records)", length: length, offset: start) }
        return try readSlice(length, "\(field)")
    }

    mutating func readNullableRecords(compact: Bool, _ field: StaticString) throws(BytesError) -> ArraySlice<UInt8>? {
        let start = offset
        let length = try readBytesLength(compact: compact)
        if length == -1 { return nil }
        if length < 0 { throw .invalidLength(reading: "\(field) (bytes)", length: length, offset: start) }
        return try readSlice(length, "\(field)")
    }

    /// An array element count. Like Apache Kafka, a count larger than the remaining bytes is
    /// rejected before anything is allocated.
    mutating func readArrayCount(compact: Bool, _ field: StaticString) throws(BytesError) -> Int {
        let start = offset
        let count = try readBytesLength(compact: compact)
        if count < 0 || count > remaining {
            throw .invalidLength(reading: "\(field) (array count)", length: count, offset: start)
        }
        return count
    }

    mutating func readNullableArrayCount(compact: Bool, _ field: StaticString) throws(BytesError) -> Int? {
        let start = offset
        let count = try readBytesLength(compact: compact)
        if count == -1 { return nil }
        if count < 0 || count > remaining {
            throw .invalidLength(reading: "\(field) (array count)", length: count, offset: start)
        }
        return count
    }

    mutating func readKafkaUUID() throws(BytesError) -> KafkaUUID {
        let high = try readUInt64()
        let low = try readUInt64()
        return KafkaUUID(mostSignificantBits: high, leastSignificantBits: low)
    }

    /// A nullable struct's marker byte: negative means null.
    mutating func readStructIsPresent() throws(BytesError) -> Bool {
        try readInt8() >= 0
    }

    /// A tagged-field section none of whose tags this struct knows.
    mutating func readUnknownTaggedFields(into fields: inout [TaggedField]) throws(BytesError) {
        let count = try readUnsignedVarint()
        var index: UInt32 = 0
        while index < count {
            let tag = try readUnsignedVarint()
            let size = Int(try readUnsignedVarint())
            let data = try readBytes(size, "tagged field \(tag)")
            fields.append(TaggedField(tag: tag, data: data))
            index += 1
        }
    }
}

extension ByteWriter {
    @inline(__always)
    mutating func writeStringLength(_ length: Int, compact: Bool) {
        if compact { writeUnsignedVarint(UInt32(length + 1)) } else { writeInt16(Int16(length)) }
    }

    @inline(__always)
    mutating func writeBytesLength(_ length: Int, compact: Bool) {
        if compact { writeUnsignedVarint(UInt32(length + 1)) } else { writeInt32(Int32(length)) }
    }

    mutating func writeKafkaString(_ value: String, compact: Bool, _ field: StaticString) throws(KafkaProtocolError) {
        let length = value.utf8.count
        if length > Int(Int16.max) && !compact {
            throw .stringTooLong(field: "\(field)", length: length)
        }
        writeStringLength(length, compact: compact)
        writeString(value)
    }

    mutating func writeNullStringLength(compact: Bool) {
        if compact { writeUnsignedVarint(0) } else { writeInt16(-1) }
    }

    mutating func writeKafkaBytes<C: Collection>(_ value: C, compact: Bool) where C.Element == UInt8 {
        writeBytesLength(value.count, compact: compact)
        writeBytes(value)
    }

    /// Null bytes, records or array.
    mutating func writeNullLength(compact: Bool) {
        if compact { writeUnsignedVarint(0) } else { writeInt32(-1) }
    }

    mutating func writeKafkaUUID(_ value: KafkaUUID) {
        writeUInt64(value.mostSignificantBits)
        writeUInt64(value.leastSignificantBits)
    }

    /// Writes the unknown tagged fields from `index` on whose tag is below `tag` (all of the
    /// remaining ones when `tag` is nil), advancing `index`.
    mutating func writeUnknownTaggedFields(_ fields: [TaggedField], below tag: UInt32?, index: inout Int) {
        while index < fields.count {
            let field = fields[index]
            if let tag, field.tag >= tag { return }
            writeTaggedField(tag: field.tag, data: field.data)
            index += 1
        }
    }

    mutating func writeTaggedField(tag: UInt32, data: [UInt8]) {
        writeUnsignedVarint(tag)
        writeUnsignedVarint(UInt32(data.count))
        writeBytes(data)
    }

    /// A tagged-field section holding only unknown fields.
    mutating func writeOnlyUnknownTaggedFields(_ fields: [TaggedField]) {
        writeUnsignedVarint(UInt32(fields.count))
        for field in fields { writeTaggedField(tag: field.tag, data: field.data) }
    }
}
