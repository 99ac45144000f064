import BrokerSettings
import Testing

/// Strict configuration (issue 13): every value is checked against its declared type and
/// range, the command line holds only options the broker knows, and every refusal is one
/// line naming the setting as the user gave it.
@Suite struct StrictConfigurationTests {
    /// Values the issue found accepted (or silently replaced by defaults), and more.
    @Test(arguments: [
        ("node.id", "-1", "must be between 0 and 2147483647"),
        ("node.id", "../../x", "not an integer"),
        ("node.id", "", "is empty; expected a whole number"),
        ("max.connections", "0", "must be between 1 and 2147483647"),
        ("max.connections", "-5", "must be between 1 and 2147483647"),
        ("socket.request.max.bytes", "0", "must be between 1024 and 2147483647"),
        ("message.max.bytes", "-1", "must be between 1 and 2147483647"),
        ("message.max.bytes", "0", "must be between 1 and 2147483647"),
        ("num.partitions", "0", "must be between 1 and 2147483647"),
        ("num.partitions", "abc", "not an integer"),
        ("num.partitions", "1.5", "not an integer"),
        ("auto.create.topics.enable", "maybe", "must be true or false"),
        ("log.level", "bogus", "must be one of trace, debug, info, notice, warning, error"),
        ("advertise", "host:abc", "the port must be a number 1-65535"),
        ("advertise", "host:0", "the port must be a number 1-65535"),
        ("advertise", "host:70000", "the port must be a number 1-65535"),
        ("advertise", ":9092", "the host is empty; expected HOST[:PORT]"),
        ("advertise", "a:b:9092", "must be HOST[:PORT] with one colon"),
        ("advertise", "h:{node}", "the host may not contain { or } ({node} placeholders are for external.advertise only)"),
        ("external.advertise", "h:{31090+nod}", "has an unknown placeholder {31090+nod}; use {node} or {N+node}"),
        ("external.advertise", "h:{node", "has an unclosed {"),
        ("listen", "foo:9092", "the host must be an IPv4 address (0.0.0.0 for all interfaces), localhost or empty"),
        ("listen", "127.0.0.1", "must be HOST:PORT (HOST may be empty for all interfaces)"),
        ("listen", "127.0.0.1:-1", "the port must be a number 0-65535"),
        ("listen", "", "is empty; expected HOST:PORT"),
        ("listen", "256.0.0.1:9092", "the host must be an IPv4 address (0.0.0.0 for all interfaces), localhost or empty"),
        ("http", "9644", "must be HOST:PORT (HOST may be empty for all interfaces)"),
        ("http", ":99999", "the port must be a number 0-65535"),
        ("external.listen", "0.0.0.0:x", "the port must be a number 0-65535"),
        ("storage", "file://", "the path after file:// is empty; give file:///absolute/path or file://./relative"),
        ("storage", "s3://", "no bucket name after s3://; expected s3://bucket/prefix?endpoint=…"),
        ("storage", "/data", "must start with file://, s3:// or memory://"),
        ("cluster.id", "a\nb", "contains a control character (a line break or tab); a value is one line"),
        ("wal.dir", "/x\t", "contains a control character (a line break or tab); a value is one line"),
    ])
    func badValuesAreRefusedWithTheReason(key: String, value: String, reason: String) throws {
        let setting = try #require(BrokerSettings.named[key])
        #expect(setting.problem(value) == reason)
    }

    /// Values the operator renders and users commonly write still pass.
    @Test(arguments: [
        ("listen", "0.0.0.0:9092"), ("listen", "localhost:0"), ("listen", ":9092"), ("http", ":8080"), ("http", ""),
        ("advertise", "broker-0.floe.svc:9092"), ("advertise", "$(POD_NAME).edge-brokers.floe-test.svc:9092"),
        ("advertise", "10.0.0.7"), ("advertise", ""), ("external.listen", ""), ("external.listen", "0.0.0.0:9094"),
        ("external.advertise", "203.0.113.7:{31090+node}"), ("external.advertise", "broker-{node}.example.com:9094"),
        ("storage", "file://./floe-data"), ("storage", "file:///var/lib/floe"), ("storage", "memory://t"),
        ("storage", "s3://bucket/prefix?endpoint=http://minio:9000&path_style=true"), ("node.id", " 3 "),
        ("message.max.bytes", "1"), ("num.partitions", "12"), ("auto.create.topics.enable", "FALSE"),
    ])
    func goodValuesPass(key: String, value: String) throws {
        let setting = try #require(BrokerSettings.named[key])
        #expect(setting.problem(value) == nil)
    }

    @Test func settingsInConflictNameTheOneTheUserGave() {
        var values = defaults()
        values["message.max.bytes"] = "2000"
        values["socket.request.max.bytes"] = "1024"
        let problems = BrokerSettings.problems(values) { $0 == "socket.request.max.bytes" ? .set : .default }
        #expect(problems.map(\.description) == [
            "invalid --set socket.request.max.bytes=\"1024\": message.max.bytes (2000) exceeds socket.request.max.bytes (1024): "
                + "no request could carry such a batch",
        ])
        values = defaults()
        values["broker.heartbeat.interval.ms"] = "3000"
        let beat = BrokerSettings.problems(values) { $0 == "broker.heartbeat.interval.ms" ? .environment : .default }
        #expect(beat.map(\.description) == [
            "invalid FLOE_BROKER_HEARTBEAT_INTERVAL_MS=\"3000\": broker.heartbeat.interval.ms (3000) must be at most a third of "
                + "broker.session.timeout.ms (6000)",
        ])
        values = defaults()
        values["wal"] = "memory"
        #expect(BrokerSettings.problems(values) { _ in .file("/etc/floe/broker.properties") }.map(\.key) == ["wal"])
        #expect(BrokerSettings.problems(defaults()) { _ in .default }.isEmpty)
    }

    @Test func originsNameTheSettingAsWritten() {
        #expect(SettingOrigin.flag("--node-id").describe("node.id", "-1") == "--node-id \"-1\"")
        #expect(SettingOrigin.set.describe("node.id", "-1") == "--set node.id=\"-1\"")
        #expect(SettingOrigin.environment.describe("node.id", "-1") == "FLOE_NODE_ID=\"-1\"")
        #expect(SettingOrigin.file("/c.properties").describe("node.id", "-1") == "node.id=\"-1\" in /c.properties")
        #expect(SettingText.quoted("a\nb\"c\u{1}") == "\"a\\nb\\\"c\\u{1}\"")
        #expect(SettingText.oneLine(String(repeating: "x", count: 500)).count == 201)
    }

    @Test func typosGetTheNearestName() {
        #expect(BrokerSettings.nearest(to: "num.partition") == "num.partitions")
        #expect(BrokerSettings.nearest(to: "log.levl") == "log.level")
        #expect(BrokerSettings.nearest(to: "no.such.key") == nil)
        #expect(BrokerSettings.nearest(to: "x") == nil)
        #expect(BrokerSettings.unknownSetting("no.such.key", origin: .set, value: "1")
            == "unknown setting no.such.key (--set no.such.key=1); floe-broker --help and docs/broker.md list the settings")
        #expect(BrokerSettings.unknownSetting("num.partition", origin: .flag("--num-partition"), value: "3")
            == "unknown setting --num-partition; did you mean --num-partitions?")
        #expect(BrokerSettings.unknownSetting("log.levl", origin: .file("/c"), value: "info")
            == "unknown setting log.levl in /c; did you mean log.level?")
    }

    @Test func commandLineKeepsHowEachValueWasWritten() throws {
        let line = try BrokerCommandLine.parse([
            "--node-id", "3", "--set", "num.partitions=4", "--listen=127.0.0.1:0", "--set", "log.level=debug", "--config", "/c",
            "--num.partitions", "4", "--http=",
        ])
        #expect(line.values == ["node.id": "3", "num.partitions": "4", "listen": "127.0.0.1:0", "log.level": "debug", "http": ""])
        #expect(line.origins["node.id"] == .flag("--node-id"))
        #expect(line.origins["log.level"] == .set)
        #expect(line.origins["listen"] == .flag("--listen"))
        #expect(line.configPath == "/c")
        #expect(!line.help && !line.version)
        #expect(try BrokerCommandLine.parse(["-h"]).help)
        #expect(try BrokerCommandLine.parse(["--version"]).version)
        // A negative number is a value, not an option (its range is checked later).
        #expect(try BrokerCommandLine.parse(["--node-id", "-1"]).values["node.id"] == "-1")
    }

    @Test(arguments: [
        (["serve"], "unexpected argument \"serve\": floe-broker takes only options (see --help)"),
        (["--listen", "127.0.0.1:9092", "extra"], "unexpected argument \"extra\": floe-broker takes only options (see --help)"),
        (["-x"], "unknown option -x: floe-broker's options are --NAME VALUE (see --help)"),
        (["-node-id", "3"], "unknown option -node-id: floe-broker's options are --NAME VALUE (see --help)"),
        (["--"], "unexpected argument \"--\": floe-broker takes only options (see --help)"),
        (["--node-id"], "option --node-id needs a value (see --help)"),
        (["--node-id", "--listen", ":1"], "option --node-id needs a value (see --help)"),
        (["--set", "no.such.key=1"], "unknown setting no.such.key (--set no.such.key=1); floe-broker --help and docs/broker.md list the settings"),
        (["--no-such-key", "1"], "unknown setting --no-such-key; floe-broker --help and docs/broker.md list the settings"),
        (["--no-such-key"], "unknown setting --no-such-key; floe-broker --help and docs/broker.md list the settings"),
        (["--num-partition", "3"], "unknown setting --num-partition; did you mean --num-partitions?"),
        (["--set", "num.partitions"], "--set expects KEY=VALUE, got \"num.partitions\""),
        (["--set", "=3"], "--set expects KEY=VALUE, got \"=3\" (no key)"),
        (["--config"], "option --config needs a value (see --help)"),
        (["--node-id", "1", "--set", "node.id=2"], "node.id is given twice: --node-id \"1\" and --set node.id=\"2\""),
        (["--config", "/a", "--config", "/b"], "--config is given twice (\"/a\" and \"/b\")"),
    ])
    func commandLineRefusals(arguments: [String], message: String) {
        do {
            let line = try BrokerCommandLine.parse(arguments)
            Issue.record("\(arguments) must be refused, got \(line)")
        } catch {
            #expect(error.message == message)
            #expect(!error.message.contains("\n"))
        }
    }

    @Test func aRepeatedEqualValueIsAccepted() throws {
        let line = try BrokerCommandLine.parse(["--node-id", "1", "--set", "node.id=1"])
        #expect(line.values == ["node.id": "1"])
    }

    private func defaults() -> [String: String] {
        var d: [String: String] = [:]
        for s in BrokerSettings.all { if let v = s.defaultValue { d[s.name] = v } }
        return d
    }
}
