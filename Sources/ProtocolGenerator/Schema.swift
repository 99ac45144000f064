import Foundation

/// Errors raised while reading schema files. Each names the file and what was wrong.
public enum SchemaError: Error, CustomStringConvertible, Equatable {
    case unreadable(file: String, reason: String)
    case invalidJSON(file: String, reason: String)
    case missingKey(file: String, context: String, key: String)
    case invalidValue(file: String, context: String, key: String, value: String)
    case unknownStruct(file: String, name: String)

    public var description: String {
        switch self {
        case let .unreadable(file, reason): return "\(file): cannot read: \(reason)"
        case let .invalidJSON(file, reason): return "\(file): invalid JSON after removing comments: \(reason)"
        case let .missingKey(file, context, key): return "\(file): \(context) has no \"\(key)\""
        case let .invalidValue(file, context, key, value): return "\(file): \(context) has invalid \"\(key)\": \(value)"
        case let .unknownStruct(file, name): return "\(file): struct type \(name) is used but never defined"
        }
    }
}

/// A set of versions as written in a schema: "0+", "3-5", "7", or "none".
///
/// Invariant: `none` contains nothing; otherwise `lowest...(highest ?? Int16.max)`.
/// Example: `VersionRange(parsing: "0-11")` contains 0 through 11; `"3+"` contains 3 and up.
public struct VersionRange: Equatable, Sendable, CustomStringConvertible {
    public var lowest: Int16
    /// nil for open-ended ranges ("3+").
    public var highest: Int16?
    public var isNone: Bool

    public static let none = VersionRange(lowest: 0, highest: nil, isNone: true)

    public init(lowest: Int16, highest: Int16?, isNone: Bool = false) {
        self.lowest = lowest
        self.highest = highest
        self.isNone = isNone
    }

    /// Parses "none", "N", "N+", "N-M"; nil for anything else.
    public init?(parsing text: String) {
        let t = text.trimmingCharacters(in: .whitespaces)
        if t == "none" { self = .none; return }
        if t.hasSuffix("+") {
            guard let low = Int16(t.dropLast()), low >= 0 else { return nil }
            self.init(lowest: low, highest: nil)
            return
        }
        let parts = t.split(separator: "-", omittingEmptySubsequences: false)
        if parts.count == 1, let v = Int16(parts[0]), v >= 0 {
            self.init(lowest: v, highest: v)
            return
        }
        if parts.count == 2, let low = Int16(parts[0]), let high = Int16(parts[1]), low >= 0, high >= low {
            self.init(lowest: low, highest: high)
            return
        }
        return nil
    }

    public func contains(_ version: Int16) -> Bool {
        if isNone { return false }
        return version >= lowest && version <= (highest ?? Int16.max)
    }

    public var description: String {
        if isNone { return "none" }
        guard let highest else { return "\(lowest)+" }
        return highest == lowest ? "\(lowest)" : "\(lowest)-\(highest)"
    }
}

/// A field type from a schema.
public indirect enum FieldType: Equatable, Sendable {
    case bool, int8, int16, uint16, int32, uint32, int64, float64, string, bytes, uuid, records
    case structure(String)
    case array(FieldType)

    /// Parses "int32", "[]string", "[]TopicData", "LeaderIdAndEpoch".
    public init(parsing text: String) {
        if text.hasPrefix("[]") {
            self = .array(FieldType(parsing: String(text.dropFirst(2))))
            return
        }
        switch text {
        case "bool": self = .bool
        case "int8": self = .int8
        case "int16": self = .int16
        case "uint16": self = .uint16
        case "int32": self = .int32
        case "uint32": self = .uint32
        case "int64": self = .int64
        case "float64": self = .float64
        case "string": self = .string
        case "bytes": self = .bytes
        case "uuid": self = .uuid
        case "records": self = .records
        default: self = .structure(text)
        }
    }

    public var isStruct: Bool { if case .structure = self { return true } else { return false } }
    public var isArray: Bool { if case .array = self { return true } else { return false } }
}

/// The default value given in a schema, kept as text (numbers are normalised to decimal text).
public enum DefaultValue: Equatable, Sendable {
    case null
    case text(String)
}

/// One field of a message or struct.
public struct FieldSchema: Equatable, Sendable {
    public var name: String
    public var type: FieldType
    public var versions: VersionRange
    public var nullableVersions: VersionRange
    public var taggedVersions: VersionRange
    public var tag: UInt32?
    /// A field-level override of the message's flexible versions (RequestHeader.ClientId: none).
    public var flexibleVersions: VersionRange?
    public var ignorable: Bool
    public var defaultValue: DefaultValue?
    public var about: String
    /// Present when this field defines its struct inline.
    public var fields: [FieldSchema]?
}

/// A struct defined inline by a field or listed in `commonStructs`.
public struct StructSchema: Equatable, Sendable {
    public var name: String
    public var fields: [FieldSchema]
}

/// One schema file.
public struct MessageSchema: Equatable, Sendable {
    public enum Kind: String, Sendable { case request, response, header, data }
    public var fileName: String
    public var name: String
    public var kind: Kind
    public var apiKey: Int16?
    public var validVersions: VersionRange
    public var flexibleVersions: VersionRange
    public var fields: [FieldSchema]
    public var commonStructs: [StructSchema]
    public var about: String?
    /// For requests: the listeners serving the API ("broker", "controller", "zkBroker").
    public var listeners: [String]
}

/// Removes `//` comments (outside strings) so JSONSerialization accepts Kafka's schema files.
/// Line structure is kept, so parse errors still point at the right line.
public func stripJSONComments(_ text: String) -> String {
    var out: [UInt8] = []
    let bytes = Array(text.utf8)
    out.reserveCapacity(bytes.count)
    var i = 0
    var inString = false
    while i < bytes.count {
        let c = bytes[i]
        if inString {
            out.append(c)
            if c == UInt8(ascii: "\\"), i + 1 < bytes.count {
                out.append(bytes[i + 1])
                i += 2
                continue
            }
            if c == UInt8(ascii: "\"") { inString = false }
            i += 1
            continue
        }
        if c == UInt8(ascii: "\"") {
            inString = true
            out.append(c)
            i += 1
            continue
        }
        if c == UInt8(ascii: "/"), i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "/") {
            while i < bytes.count && bytes[i] != UInt8(ascii: "\n") { i += 1 }
            continue
        }
        out.append(c)
        i += 1
    }
    return String(decoding: out, as: UTF8.self)
}

/// Parses one schema file's text. `fileName` is used in errors and the generated header.
public func parseSchema(_ text: String, fileName: String) throws(SchemaError) -> MessageSchema {
    let stripped = stripJSONComments(text)
    let object: Any
    do {
        object = try JSONSerialization.jsonObject(with: Data(stripped.utf8))
    } catch {
        throw .invalidJSON(file: fileName, reason: "\(error)")
    }
    guard let root = object as? [String: Any] else {
        throw .invalidJSON(file: fileName, reason: "top level is not an object")
    }
    let p = SchemaParser(file: fileName)
    let name = try p.string(root, "name", context: "the schema")
    let context = "message \(name)"
    let kindText = try p.string(root, "type", context: context)
    guard let kind = MessageSchema.Kind(rawValue: kindText) else {
        throw .invalidValue(file: fileName, context: context, key: "type", value: kindText)
    }
    var apiKey: Int16?
    if root["apiKey"] != nil {
        guard let n = root["apiKey"] as? NSNumber, let v = Int16(exactly: n.int64Value) else {
            throw .invalidValue(file: fileName, context: context, key: "apiKey", value: "\(root["apiKey"]!)")
        }
        apiKey = v
    }
    let valid = try p.versionRange(root, "validVersions", context: context, required: true)
    let flexible = try p.versionRange(root, "flexibleVersions", context: context, required: true)
    guard !valid.isNone, valid.highest != nil else {
        throw .invalidValue(file: fileName, context: context, key: "validVersions", value: valid.description)
    }
    let fields = try p.fields(root, context: context)
    var common: [StructSchema] = []
    if let list = root["commonStructs"] as? [[String: Any]] {
        for entry in list {
            let structName = try p.string(entry, "name", context: "a common struct of \(name)")
            common.append(StructSchema(name: structName, fields: try p.fields(entry, context: "common struct \(structName)")))
        }
    }
    return MessageSchema(
        fileName: fileName, name: name, kind: kind, apiKey: apiKey, validVersions: valid,
        flexibleVersions: flexible, fields: fields, commonStructs: common, about: root["about"] as? String,
        listeners: root["listeners"] as? [String] ?? [])
}

struct SchemaParser {
    let file: String

    func string(_ object: [String: Any], _ key: String, context: String) throws(SchemaError) -> String {
        guard let value = object[key] else { throw .missingKey(file: file, context: context, key: key) }
        guard let s = value as? String else {
            throw .invalidValue(file: file, context: context, key: key, value: "\(value)")
        }
        return s
    }

    func versionRange(_ object: [String: Any], _ key: String, context: String, required: Bool) throws(SchemaError) -> VersionRange {
        guard let value = object[key] else {
            if required { throw .missingKey(file: file, context: context, key: key) }
            return .none
        }
        guard let s = value as? String, let range = VersionRange(parsing: s) else {
            throw .invalidValue(file: file, context: context, key: key, value: "\(value)")
        }
        return range
    }

    func fields(_ object: [String: Any], context: String) throws(SchemaError) -> [FieldSchema] {
        guard let list = object["fields"] else { throw .missingKey(file: file, context: context, key: "fields") }
        guard let entries = list as? [[String: Any]] else {
            throw .invalidValue(file: file, context: context, key: "fields", value: "not a list of objects")
        }
        var result: [FieldSchema] = []
        for entry in entries { result.append(try field(entry, parent: context)) }
        return result
    }

    func field(_ object: [String: Any], parent: String) throws(SchemaError) -> FieldSchema {
        let name = try string(object, "name", context: "a field of \(parent)")
        let context = "field \(name) of \(parent)"
        let type = FieldType(parsing: try string(object, "type", context: context))
        let versions = try versionRange(object, "versions", context: context, required: true)
        let nullable = try versionRange(object, "nullableVersions", context: context, required: false)
        let tagged = try versionRange(object, "taggedVersions", context: context, required: false)
        var flexible: VersionRange?
        if object["flexibleVersions"] != nil {
            flexible = try versionRange(object, "flexibleVersions", context: context, required: true)
        }
        var tag: UInt32?
        if let raw = object["tag"] {
            // Written as a number, or (BrokerHeartbeatRequest) as a numeric string.
            if let text = raw as? String, let v = UInt32(text) {
                tag = v
            } else if let n = raw as? NSNumber, !(raw is String), let v = UInt32(exactly: n.int64Value) {
                tag = v
            } else {
                throw .invalidValue(file: file, context: context, key: "tag", value: "\(raw)")
            }
        }
        if (tag == nil) != tagged.isNone {
            throw .invalidValue(file: file, context: context, key: "tag", value: "tag and taggedVersions must be given together")
        }
        var ignorable = false
        if let raw = object["ignorable"] {
            guard let b = raw as? Bool else { throw .invalidValue(file: file, context: context, key: "ignorable", value: "\(raw)") }
            ignorable = b
        }
        var nested: [FieldSchema]?
        if object["fields"] != nil { nested = try fields(object, context: context) }
        return FieldSchema(
            name: name, type: type, versions: versions, nullableVersions: nullable, taggedVersions: tagged,
            tag: tag, flexibleVersions: flexible, ignorable: ignorable,
            defaultValue: try defaultValue(object["default"], type: type, context: context),
            about: object["about"] as? String ?? "", fields: nested)
    }

    /// Normalises a "default": numbers (decimal, negative, 0x hex, leading-0 octal) become
    /// decimal text; booleans "true"/"false"; "null" becomes `.null`; strings stay as written.
    func defaultValue(_ raw: Any?, type: FieldType, context: String) throws(SchemaError) -> DefaultValue? {
        guard let raw else { return nil }
        let invalid = SchemaError.invalidValue(file: file, context: context, key: "default", value: "\(raw)")
        if let s = raw as? String, s == "null" {
            switch type {
            case .string, .bytes, .records, .array, .structure, .uuid: return .null
            default: throw invalid
            }
        }
        switch type {
        case .bool:
            if let s = raw as? String, s == "true" || s == "false" { return .text(s) }
            if let b = raw as? Bool { return .text(b ? "true" : "false") }
            throw invalid
        case .int8, .int16, .uint16, .int32, .uint32, .int64:
            let value: Int64
            if let s = raw as? String {
                guard let v = parseInteger(s) else { throw invalid }
                value = v
            } else if let n = raw as? NSNumber {
                value = n.int64Value
            } else {
                throw invalid
            }
            guard fits(value, type) else { throw invalid }
            return .text(String(value))
        case .float64:
            if let s = raw as? String, let d = Double(s) { return .text(String(d)) }
            if let n = raw as? NSNumber { return .text(String(n.doubleValue)) }
            throw invalid
        case .string:
            guard let s = raw as? String else { throw invalid }
            return .text(s)
        default:
            throw invalid
        }
    }

    func fits(_ v: Int64, _ type: FieldType) -> Bool {
        switch type {
        case .int8: return Int8(exactly: v) != nil
        case .int16: return Int16(exactly: v) != nil
        case .uint16: return UInt16(exactly: v) != nil
        case .int32: return Int32(exactly: v) != nil
        case .uint32: return UInt32(exactly: v) != nil
        default: return true
        }
    }
}

/// Parses decimal, negative, `0x` hex and leading-zero octal integers as schemas write them.
func parseInteger(_ text: String) -> Int64? {
    var s = Substring(text.trimmingCharacters(in: .whitespaces))
    var negative = false
    if s.hasPrefix("-") { negative = true; s = s.dropFirst() }
    let magnitude: Int64?
    if s.hasPrefix("0x") || s.hasPrefix("0X") {
        magnitude = Int64(s.dropFirst(2), radix: 16)
    } else if s.count > 1 && s.hasPrefix("0") {
        magnitude = Int64(s.dropFirst(), radix: 8)
    } else {
        magnitude = Int64(s)
    }
    guard let m = magnitude else {
        // -9223372036854775808 overflows the magnitude; accept it exactly.
        if negative && s == "9223372036854775808" { return Int64.min }
        return nil
    }
    return negative ? -m : m
}
