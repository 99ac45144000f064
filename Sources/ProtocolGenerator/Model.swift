/// A message resolved for emission: every struct it uses, with the versions each can occur at.
struct MessageModel {
    let schema: MessageSchema
    /// The message's valid versions.
    let valid: VersionSet
    /// Valid versions that are flexible.
    let flexible: VersionSet
    /// The message itself first, then nested structs in definition order.
    let structs: [StructModel]

    var name: String { schema.name }

    init(_ schema: MessageSchema) throws(SchemaError) {
        self.schema = schema
        let validRange = schema.validVersions
        valid = VersionSet(validRange.lowest...(validRange.highest ?? validRange.lowest))
        flexible = VersionSet(range: schema.flexibleVersions, within: valid)

        // Collect struct definitions: inline ones (a field with "fields") and commonStructs.
        var definitions: [String: [FieldSchema]] = [:]
        var order: [String] = []
        func collect(_ fields: [FieldSchema]) {
            for field in fields {
                guard let nested = field.fields else { continue }
                let typeName = Self.structName(of: field.type) ?? field.name
                if definitions[typeName] == nil { order.append(typeName) }
                definitions[typeName] = nested
                collect(nested)
            }
        }
        collect(schema.fields)
        for common in schema.commonStructs {
            if definitions[common.name] == nil { order.append(common.name) }
            definitions[common.name] = common.fields
            collect(common.fields)
        }

        // Reachable versions of each struct: where a field of that type is present.
        var reachable: [String: VersionSet] = [:]
        var pending: [(fields: [FieldSchema], at: VersionSet)] = [(schema.fields, valid)]
        while let (fields, at) = pending.popLast() {
            for field in fields {
                guard let typeName = Self.structName(of: field.type) else { continue }
                guard let nested = definitions[typeName] else {
                    throw .unknownStruct(file: schema.fileName, name: typeName)
                }
                let present = VersionSet(range: field.versions, within: at)
                let before = reachable[typeName] ?? VersionSet([])
                let after = before.union(present)
                if after != before || reachable[typeName] == nil {
                    reachable[typeName] = after
                    pending.append((nested, after))
                }
            }
        }

        var models = [StructModel(swiftName: schema.name, path: schema.name, fields: schema.fields, reachable: valid, isMessage: true)]
        for name in order {
            models.append(StructModel(
                swiftName: name, path: "\(schema.name).\(name)", fields: definitions[name]!,
                reachable: reachable[name] ?? VersionSet([]), isMessage: false))
        }
        structs = models
    }

    static func structName(of type: FieldType) -> String? {
        switch type {
        case let .structure(name): return name
        case let .array(element): return structName(of: element)
        default: return nil
        }
    }
}

struct StructModel {
    /// The Swift type name (nested in the message type unless `isMessage`).
    let swiftName: String
    /// "ProduceRequest.TopicProduceData", for error messages and extensions.
    let path: String
    let fields: [FieldSchema]
    /// Versions at which this struct can be read or written (empty if never used).
    let reachable: VersionSet
    let isMessage: Bool
}

/// Per-field version facts within the struct's reachable versions.
struct FieldFacts {
    let field: FieldSchema
    /// Versions at which the field exists (regular or tagged).
    let present: VersionSet
    /// Versions at which the field is written in the tagged section.
    let tagged: VersionSet
    /// Versions at which the field is written in line.
    let regular: VersionSet
    /// Versions at which the field uses compact encodings.
    let compact: VersionSet
    /// Versions at which the field may be null.
    let nullable: VersionSet
    /// Whether the Swift type is Optional.
    let isOptional: Bool

    init(_ field: FieldSchema, reachable: VersionSet, flexible: VersionSet) {
        self.field = field
        present = VersionSet(range: field.versions, within: reachable)
        tagged = field.tag == nil ? VersionSet([]) : VersionSet(range: field.taggedVersions, within: present).intersection(flexible)
        regular = present.subtracting(tagged)
        if let override = field.flexibleVersions {
            compact = VersionSet(range: override, within: flexible)
        } else {
            compact = flexible
        }
        nullable = VersionSet(range: field.nullableVersions, within: present)
        switch field.type {
        case .string, .bytes, .records, .array, .structure, .uuid:
            isOptional = !field.nullableVersions.isNone
        default:
            isOptional = false
        }
    }
}
