/// Swift spellings of schema types, defaults and comparisons.
struct SwiftTypes {
    /// The message type name used to qualify nested struct types.
    let messageName: String

    func qualified(_ structName: String) -> String {
        structName == messageName ? messageName : "\(messageName).\(structName)"
    }

    /// The Swift type of a value (not counting the field's own optionality).
    func base(_ type: FieldType) -> String {
        switch type {
        case .bool: return "Bool"
        case .int8: return "Int8"
        case .int16: return "Int16"
        case .uint16: return "UInt16"
        case .int32: return "Int32"
        case .uint32: return "UInt32"
        case .int64: return "Int64"
        case .float64: return "Double"
        case .string: return "String"
        case .bytes: return "[UInt8]"
        case .uuid: return "KafkaUUID"
        case .records: return "ArraySlice<UInt8>"
        case let .structure(name): return qualified(name)
        case let .array(element): return "[\(base(element))]"
        }
    }

    func fieldType(_ facts: FieldFacts) -> String {
        facts.isOptional ? base(facts.field.type) + "?" : base(facts.field.type)
    }

    /// The field's default as a Swift expression.
    ///
    /// An explicit schema default wins. Otherwise a field that is nullable at every version it
    /// exists defaults to nil, and any other field to its type's zero ("" / 0 / false / [] /
    /// zero UUID / a default struct).
    func defaultExpression(_ facts: FieldFacts) -> String {
        let field = facts.field
        switch field.defaultValue {
        case .null:
            return "nil"
        case let .text(text):
            switch field.type {
            case .string: return Naming.stringLiteral(text)
            default: return text
            }
        case nil:
            if facts.isOptional && fullyNullable(field) { return "nil" }
            return zero(field.type)
        }
    }

    func fullyNullable(_ field: FieldSchema) -> Bool {
        guard !field.nullableVersions.isNone else { return false }
        let n = field.nullableVersions
        let v = field.versions
        if n.lowest > v.lowest { return false }
        guard let nh = n.highest else { return true }
        guard let vh = v.highest else { return false }
        return nh >= vh
    }

    func zero(_ type: FieldType) -> String {
        switch type {
        case .bool: return "false"
        case .int8, .int16, .uint16, .int32, .uint32, .int64: return "0"
        case .float64: return "0.0"
        case .string: return "\"\""
        case .bytes, .records, .array: return "[]"
        case .uuid: return "KafkaUUID.zero"
        case let .structure(name): return "\(qualified(name))()"
        }
    }

    /// A Bool expression: does `self.<field>` differ from its default?
    func nonDefaultTest(_ facts: FieldFacts) -> String {
        let name = "self." + Naming.identifier(facts.field.name)
        let def = defaultExpression(facts)
        if def == "[]" && !facts.isOptional { return "!\(name).isEmpty" }
        return "\(name) != \(def)"
    }
}
