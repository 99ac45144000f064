import BrokerSettings
import Foundation
import ObjectStore
import StreamStorage
import Support
import Testing

@testable import Broker

/// The broker side of the configuration contract (`BrokerSettings`): defaults, start-up
/// validation, and settings clients can see actually taking effect.
@Suite struct BrokerSettingsContractTests {
    @Test func badValuesAreOneLineErrorsNamingTheKey() throws {
        let cases: [([String: String], String)] = [
            (["node.id": "x"], "invalid node.id=\"x\" in the config file: not an integer"),
            (["group.min.session.timeout.ms": "-5"], "group.min.session.timeout.ms=\"-5\""),
            (["wal": "disk"], "wal=\"disk\""),
            (["wal": "memory", "storage": "file:///data"], "wal=\"memory\""),
            (["offsets.topic.replication.factor": "3"], "offsets.topic.replication.factor=\"3\""),
            (["group.min.session.timeout.ms": "9000", "group.max.session.timeout.ms": "8000"], "group.min.session.timeout.ms=\"9000\""),
            (["no.such.key": "1"], "unknown setting no.such.key in the config file"),
            (["num.partition": "3"], "did you mean num.partitions?"),
        ]
        for (file, named) in cases {
            let config = BrokerConfig.resolve(file: file, environment: [:], flags: [:])
            do {
                try config.validate()
                Issue.record("\(file) must be refused")
            } catch {
                let text = "\(error)"
                #expect(text.contains(named) && !text.contains("\n"), "\(text)")
            }
        }
        try BrokerConfig.resolve(file: ["wal": "memory", "storage": "memory://t"], environment: [:], flags: [:]).validate()
        try BrokerConfig().validate()
        // Kafka's retention in hours or minutes: -1 is no limit, not -3600000 ms (which is refused).
        let forever = BrokerConfig.resolve(file: ["log.retention.hours": "-1"], environment: [:], flags: [:])
        #expect(forever["log.retention.ms"] == "-1")
        try forever.validate()
        #expect(BrokerConfig.resolve(file: ["log.retention.minutes": "2"], environment: [:], flags: [:])["log.retention.ms"] == "120000")
        // Where a value came from is named as the user wrote it.
        let fromFile = BrokerConfig.resolve(file: ["num.partitions": "0"], environment: [:], flags: [:], filePath: "/etc/floe/broker.properties")
        #expect(throws: BrokerError.configuration("invalid num.partitions=\"0\" in /etc/floe/broker.properties: must be between 1 and 2147483647")) {
            try fromFile.validate()
        }
        let fromEnvironment = BrokerConfig.resolve(file: [:], environment: ["FLOE_MAX_CONNECTIONS": "-5", "FLOE_BROKER_BIN": "/x"], flags: [:])
        #expect(throws: BrokerError.configuration("invalid FLOE_MAX_CONNECTIONS=\"-5\": must be between 1 and 2147483647")) {
            try fromEnvironment.validate()
        }
        let fromFlag = BrokerConfig.resolve(file: [:], environment: [:], flags: ["advertise": "host:abc"], flagOrigins: ["advertise": .flag("--advertise")])
        #expect(throws: BrokerError.configuration("invalid --advertise \"host:abc\": the port must be a number 1-65535")) {
            try fromFlag.validate()
        }
    }

    /// The dynamic broker keys are exactly the declared dynamic settings, and every topic
    /// config's broker synonym that the broker declares is one of them.
    @Test func dynamicKeysComeFromTheDeclaration() {
        for def in TopicConfigs.all.values {
            guard let synonym = def.brokerSynonym, BrokerConfig.defaults[synonym] != nil else { continue }
            #expect(dynamicBrokerKeys.contains(synonym), "\(synonym)")
        }
        #expect(dynamicBrokerKeys.contains("auto.create.topics.enable"))
        #expect(!dynamicBrokerKeys.contains("group.min.session.timeout.ms"))
    }

    /// Every log level the contract admits is one the logger knows (else it would silently fall back).
    @Test func declaredLogLevelsAreTheLoggersLevels() throws {
        let setting = try #require(BrokerSettings.named["log.level"])
        guard case .choice(let levels) = setting.type else {
            Issue.record("log.level is not a choice: \(setting.type)")
            return
        }
        #expect(Set(levels) == Set(Logger.Level.allCases.map(\.description)))
    }

    @Test func groupSettingsReachTheCoordinator() async throws {
        var config = BrokerConfig()
        config.set("listen", "127.0.0.1:0", .flag)
        config.set("group.min.session.timeout.ms", "1000", .file)
        config.set("group.max.session.timeout.ms", "20000", .file)
        config.set("group.initial.rebalance.delay.ms", "0", .file)
        config.set("offsets.retention.minutes", "60", .file)
        let broker = try await Broker.start(settings: .init(config: config), store: MemoryObjectStore(name: "g"), storage: MemoryLogStorage())
        let groups = try #require(broker.groups)
        #expect(groups.config.minSessionTimeout == .milliseconds(1000))
        #expect(groups.config.maxSessionTimeout == .milliseconds(20000))
        #expect(groups.config.initialRebalanceDelay == .zero)
        #expect(groups.config.offsetsRetention == .seconds(3600))
        broker.shutdown()
        try await broker.run()
    }
}
