import BrokerSettings
import Testing

@Suite struct BrokerSettingsTests {
    @Test func everyDefaultIsValidAndNamesAreUnique() {
        #expect(Set(BrokerSettings.all.map(\.name)).count == BrokerSettings.all.count)
        for s in BrokerSettings.all {
            if let d = s.defaultValue { #expect(s.problem(d) == nil, "default of \(s.name) is invalid: \(d)") }
            if s.dynamic { #expect(s.access == .user, "\(s.name) is dynamic, so a user must be able to set it") }
        }
    }

    @Test func problemsNameTheKeyOnOneLine() throws {
        #expect(BrokerSettings.problem("node.id", "x") == "node.id=x: not an integer")
        #expect(BrokerSettings.problem("nope", "1") == "nope: unknown setting")
        #expect(BrokerSettings.problem("auto.create.topics.enable", "TRUE") == nil)
        #expect(BrokerSettings.problem("auto.create.topics.enable", "yes") != nil)
        #expect(BrokerSettings.problem("wal", "memory") == nil)
        #expect(BrokerSettings.problem("wal", "disk") != nil)
        #expect(BrokerSettings.problem("http", ":9644") == nil)
        #expect(BrokerSettings.problem("listen", "0.0.0.0:9092") == nil)
        #expect(BrokerSettings.problem("listen", "0.0.0.0") != nil)
        #expect(BrokerSettings.problem("storage", "s3://b/p?endpoint=http://x:9000") == nil)
        #expect(BrokerSettings.problem("storage", "/data") != nil)
        #expect(BrokerSettings.problem("log.cleanup.policy", "compact,delete") == nil)
        #expect(BrokerSettings.problem("log.cleanup.policy", "shred") != nil)
        #expect(BrokerSettings.problem("offsets.topic.replication.factor", "1") == nil)
        let fixed = try #require(BrokerSettings.problem("offsets.topic.replication.factor", "3"))
        #expect(fixed.contains("fixed"))
        #expect(BrokerSettings.problem("event.loops", "0") == "event.loops=0: must be between 1 and 256")
        for s in BrokerSettings.all { #expect(!(BrokerSettings.problem(s.name, "\u{1}bad\nvalue") ?? "").contains("\n\n")) }
    }

    @Test func flagsAndEnvironmentNames() throws {
        let s = try #require(BrokerSettings.named["node.id"])
        #expect(s.flag == "--node-id")
        #expect(s.environmentVariable == "FLOE_NODE_ID")
        #expect(s.access == .operator)
        #expect(BrokerSettings.named["group.min.session.timeout.ms"]?.access == .user)
    }

    @Test func propertiesRoundTrip() throws {
        let entries = [
            "storage": "s3://b/p?endpoint=http://minio:9000&path_style=true", "a b": "x=y", "k:1": " leading", "multi": "l1\nl2\tt",
            "back\\slash": "c:\\dir\\", "hash#key": "#value!", "empty": "",
        ]
        let text = PropertiesFile.encode(entries, header: "written by a test")
        #expect(text.hasPrefix("# written by a test\n"))
        #expect(try PropertiesFile.decode(text) == entries)
    }

    @Test func propertiesReadsWhatKafkaUsersWrite() throws {
        let text = """
            # comment
            ! also a comment
            num.partitions = 4
            listen: 127.0.0.1:1000
              log.retention.hours=1   
            long.value=a\\
              b
            storage=file\\:///data
            """
        let parsed = try PropertiesFile.decode(text)
        #expect(parsed == ["num.partitions": "4", "listen": "127.0.0.1:1000", "log.retention.hours": "1", "long.value": "ab",
                           "storage": "file:///data"])
        #expect(throws: PropertiesFile.DecodeError.self) { try PropertiesFile.decode("novalue") }
        do {
            _ = try PropertiesFile.decode("a=1\n=2\n")
            Issue.record("an empty key must be refused")
        } catch {
            #expect(error.line == 2)
        }
    }
}
