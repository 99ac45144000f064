import Bytes
import Foundation

/// The envelope of every document the broker keeps in the bucket (topic registry, producer
/// state snapshots):
///
/// ```
/// 0  magic   "FLBD" (4 bytes)
/// 4  kind    uint8   (1 registry, 2 producer state, 3 metadata log entry, 4 metadata snapshot,
///                     5 controller lease, 6 transaction state, 7 pending transactional offsets)
/// 5  version uint16  (format version of the payload)
/// 7  length  uint32  (payload bytes)
/// 11 crc     uint32  (CRC32C of the payload)
/// 15 payload (JSON)
/// ```
///
/// Invariant: `decode(encode(x))` returns `x`'s payload; any truncation, bit flip or wrong
/// kind is reported as `BrokerError.corruptDocument` naming the key.
enum DocumentEnvelope {
    static let magic: [UInt8] = Array("FLBD".utf8)
    static let headerSize = 15

    enum Kind: UInt8 {
        case registry = 1
        case producerState = 2
        case metadataLogEntry = 3
        case metadataSnapshot = 4
        case controllerLease = 5
        case transactionState = 6
        case pendingTxnOffsets = 7
    }

    static func encode<T: Encodable>(_ value: T, kind: Kind, version: UInt16) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let payload = Array(try encoder.encode(value))
        var w = ByteWriter(capacity: headerSize + payload.count)
        w.writeBytes(magic[...])
        w.writeInt8(Int8(bitPattern: kind.rawValue))
        w.writeUInt16(version)
        w.writeUInt32(UInt32(payload.count))
        w.writeUInt32(CRC32C.checksum(payload[...]))
        w.writeBytes(payload[...])
        return w.take()
    }

    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], kind: Kind, versions: ClosedRange<UInt16>, key: String) throws -> T {
        guard bytes.count >= headerSize else {
            throw BrokerError.corruptDocument(key: key, reason: "\(bytes.count) bytes is shorter than the \(headerSize)-byte header")
        }
        guard Array(bytes[0..<4]) == magic else { throw BrokerError.corruptDocument(key: key, reason: "bad magic number") }
        var r = ByteReader(bytes[4...])
        do {
            let k = UInt8(bitPattern: try r.readInt8())
            guard k == kind.rawValue else {
                throw BrokerError.corruptDocument(key: key, reason: "document kind \(k), expected \(kind.rawValue)")
            }
            let version = try r.readUInt16()
            guard versions.contains(version) else {
                throw BrokerError.corruptDocument(key: key, reason: "format version \(version) is not one this broker reads (\(versions))")
            }
            let length = Int(try r.readUInt32())
            let crc = try r.readUInt32()
            guard bytes.count == headerSize + length else {
                throw BrokerError.corruptDocument(key: key, reason: "payload length \(length) but \(bytes.count - headerSize) bytes follow the header")
            }
            let payload = bytes[headerSize...]
            guard CRC32C.checksum(payload) == crc else {
                throw BrokerError.corruptDocument(key: key, reason: "CRC32C mismatch")
            }
            do {
                return try JSONDecoder().decode(T.self, from: Data(payload))
            } catch {
                throw BrokerError.corruptDocument(key: key, reason: "payload does not decode: \(error)")
            }
        } catch let error as BrokerError {
            throw error
        } catch {
            throw BrokerError.corruptDocument(key: key, reason: "\(error)")
        }
    }
}
