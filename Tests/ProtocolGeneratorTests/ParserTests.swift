import Foundation
@testable import ProtocolGenerator
import Testing

@Suite struct ParserTests {
    @Test func commentsAreStrippedOutsideStrings() throws {
        let text = """
            // Licensed to the Apache Software Foundation
            {
              "type": "request", // trailing comment
              "name": "ExampleRequest",
              "apiKey": 99,
              "validVersions": "0-11",
              "flexibleVersions": "3+",
              "fields": [
                { "name": "Url", "type": "string", "versions": "0+", "about": "see http://x//y \\" // not a comment" }
              ]
            }
            """
        let schema = try parseSchema(text, fileName: "ExampleRequest.json")
        #expect(schema.name == "ExampleRequest")
        #expect(schema.apiKey == 99)
        #expect(schema.kind == .request)
        #expect(schema.fields[0].about == "see http://x//y \" // not a comment")
    }

    @Test func versionRanges() throws {
        let closed = try #require(VersionRange(parsing: "0-11"))
        #expect(closed.contains(0) && closed.contains(11) && !closed.contains(12))
        let open = try #require(VersionRange(parsing: "3+"))
        #expect(!open.contains(2) && open.contains(3) && open.contains(Int16.max))
        let single = try #require(VersionRange(parsing: "7"))
        #expect(single.contains(7) && !single.contains(6) && !single.contains(8))
        let none = try #require(VersionRange(parsing: "none"))
        #expect(none.isNone && !none.contains(0))
        #expect(VersionRange(parsing: "5-3") == nil)
        #expect(VersionRange(parsing: "-1+") == nil)
        #expect(VersionRange(parsing: "x") == nil)
        #expect(closed.description == "0-11" && open.description == "3+" && none.description == "none")
    }

    @Test func fieldAttributes() throws {
        let text = """
            {
              "type": "header", "name": "H", "validVersions": "0-2", "flexibleVersions": "2+",
              "fields": [
                { "name": "ClientId", "type": "string", "versions": "1+", "nullableVersions": "1+",
                  "ignorable": true, "flexibleVersions": "none" },
                { "name": "Limit", "type": "int32", "versions": "0+", "default": "0x7fffffff" },
                { "name": "Epoch", "type": "int64", "versions": "0+", "default": -1 },
                { "name": "Min", "type": "int32", "versions": "0+", "default": "-2147483648" },
                { "name": "Flag", "type": "bool", "versions": "0+", "default": "true" },
                { "name": "Name", "type": "string", "versions": "0+", "nullableVersions": "0+", "default": "null" },
                { "name": "Ids", "type": "[]uuid", "versions": "2+", "taggedVersions": "2+", "tag": "0" },
                { "name": "Items", "type": "[]Item", "versions": "0+", "fields": [
                  { "name": "Id", "type": "int8", "versions": "0+" }
                ]}
              ]
            }
            """
        let schema = try parseSchema(text, fileName: "H.json")
        #expect(schema.apiKey == nil)
        let f = schema.fields
        #expect(f[0].flexibleVersions == VersionRange.none)
        #expect(f[0].nullableVersions == VersionRange(parsing: "1+"))
        #expect(f[0].ignorable)
        #expect(f[1].defaultValue == .text("2147483647"))
        #expect(f[2].defaultValue == .text("-1"))
        #expect(f[3].defaultValue == .text("-2147483648"))
        #expect(f[4].defaultValue == .text("true"))
        #expect(f[5].defaultValue == .null)
        #expect(f[6].tag == 0 && f[6].type == .array(.uuid))
        #expect(f[7].type == .array(.structure("Item")) && f[7].fields?.count == 1)
    }

    @Test func fieldLevelFlexibleVersionsControlCompactness() throws {
        let text = """
            { "type": "header", "name": "H", "validVersions": "0-2", "flexibleVersions": "2+",
              "fields": [
                { "name": "ClientId", "type": "string", "versions": "1+", "nullableVersions": "1+",
                  "flexibleVersions": "none" },
                { "name": "Other", "type": "string", "versions": "0+" }
              ] }
            """
        let code = try ProtocolGenerator.generate(schemas: [parseSchema(text, fileName: "H.json")])["H.swift"]!
        #expect(code.contains(#"readNullableKafkaString(compact: false, "H.clientId")"#))
        #expect(code.contains(#"readKafkaString(compact: version >= 2, "H.other")"#))
    }

    @Test func badInputNamesTheFile() {
        #expect(throws: SchemaError.invalidValue(file: "B.json", context: "message B", key: "validVersions", value: "x")) {
            _ = try parseSchema(#"{"type":"request","name":"B","validVersions":"x","flexibleVersions":"none","fields":[]}"#, fileName: "B.json")
        }
        #expect(throws: SchemaError.self) {
            _ = try parseSchema("{ not json", fileName: "C.json")
        }
        let undefined = #"{"type":"data","name":"D","validVersions":"0","flexibleVersions":"none","fields":[{"name":"X","type":"[]Missing","versions":"0+"}]}"#
        #expect(throws: SchemaError.unknownStruct(file: "D.json", name: "Missing")) {
            _ = try ProtocolGenerator.generate(schemas: [parseSchema(undefined, fileName: "D.json")])
        }
    }

    @Test func naming() {
        #expect(Naming.identifier("TopicId") == "topicId")
        #expect(Naming.identifier("ThrottleTimeMs") == "throttleTimeMs")
        #expect(Naming.identifier("KRaftVersion") == "kRaftVersion")
        #expect(Naming.identifier("Protocol") == "`protocol`")
        #expect(Naming.identifier("Default") == "`default`")
    }

    @Test func conditionsAreRelativeToReachableVersions() {
        let universe = VersionSet(0...11)
        #expect(Condition(VersionSet(0...11), within: universe) == .always)
        #expect(Condition(VersionSet(3...11), within: universe) == .when("version >= 3"))
        #expect(Condition(VersionSet(0...4), within: universe) == .when("version <= 4"))
        #expect(Condition(VersionSet(3...4), within: universe) == .when("version >= 3 && version <= 4"))
        #expect(Condition(VersionSet([5]), within: universe) == .when("version == 5"))
        #expect(Condition(VersionSet([Int16]()), within: universe) == .never)
        #expect(Condition(VersionSet(3...20), within: VersionSet(3...11)) == .always)
    }
}
