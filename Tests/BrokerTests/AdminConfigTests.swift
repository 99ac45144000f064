import Bytes
import KafkaProtocol
import ObjectStore
import Testing
@testable import Broker

@Suite struct AdminConfigTests {
    @Test func createTopicsValidatesAndValidateOnlyCreatesNothing() async throws {
        let h = try await Harness.make()
        let handler = CreateTopicsHandler(core: h.core)
        let req = CreateTopicsRequest(topics: [
            .init(name: "ok", numPartitions: 3, replicationFactor: 3, configs: [.init(name: "retention.ms", value: "1000")]),
            .init(name: "bad name!", numPartitions: 1, replicationFactor: 1),
            .init(name: "badcfg", numPartitions: 1, replicationFactor: 1, configs: [.init(name: "retention.ms", value: "soon")]),
            .init(name: "unknowncfg", numPartitions: 1, replicationFactor: 1, configs: [.init(name: "no.such", value: "1")]),
            .init(name: "zero", numPartitions: 0, replicationFactor: 1),
            .init(name: "defaults", numPartitions: -1, replicationFactor: -1),
        ], validateOnly: true)
        let r = try await requireResponse(h.call(handler, .createTopics(req), version: 7), as: CreateTopicsResponse.self)
        #expect(r.topics.map(\.errorCode) == [0, KafkaErrorCode.invalidTopicException.rawValue, KafkaErrorCode.invalidConfig.rawValue,
                                               KafkaErrorCode.invalidConfig.rawValue, KafkaErrorCode.invalidPartitions.rawValue, 0])
        #expect(r.topics[2].errorMessage?.contains("retention.ms") == true)
        #expect(r.topics[0].numPartitions == 3 && r.topics[0].replicationFactor == 3)
        #expect(r.topics[0].configs?.first { $0.name == "retention.ms" }?.value == "1000")
        #expect(h.core.registry.topics.isEmpty)
        var real = req
        real.validateOnly = false
        let r2 = try await requireResponse(h.call(handler, .createTopics(real), version: 7), as: CreateTopicsResponse.self)
        #expect(r2.topics[0].topicId != .zero)
        #expect(h.core.registry.topics.map(\.name) == ["defaults", "ok"])
        let r3 = try await requireResponse(h.call(handler, .createTopics(real), version: 2), as: CreateTopicsResponse.self)
        #expect(r3.topics[0].errorCode == KafkaErrorCode.topicAlreadyExists.rawValue)
    }

    @Test func deleteTopicsAndCreatePartitions() async throws {
        let h = try await Harness.make()
        let t = try await h.createTopic("t", partitions: 2)
        _ = try await h.produce("t", batch: try makeBatch(count: 2))
        let cp = try await requireResponse(h.call(CreatePartitionsHandler(core: h.core), .createPartitions(CreatePartitionsRequest(topics: [
            .init(name: "t", count: 4), .init(name: "t2", count: 4),
        ])), version: 3), as: CreatePartitionsResponse.self)
        #expect(cp.results.map(\.errorCode) == [0, KafkaErrorCode.unknownTopicOrPartition.rawValue])
        let grown = try #require(h.core.registry.topic(named: "t"))
        #expect(grown.partitions.count == 4)
        #expect(Set(grown.partitions.map(\.stream)).count == 4)
        let shrink = try await requireResponse(h.call(CreatePartitionsHandler(core: h.core), .createPartitions(CreatePartitionsRequest(topics: [
            .init(name: "t", count: 2)])), version: 1), as: CreatePartitionsResponse.self)
        #expect(shrink.results[0].errorCode == KafkaErrorCode.invalidPartitions.rawValue)
        // Delete by id (v6) and by name; a recreated topic is empty with fresh streams.
        let d = try await requireResponse(h.call(DeleteTopicsHandler(core: h.core), .deleteTopics(DeleteTopicsRequest(topics: [
            .init(name: nil, topicId: t.topicID), .init(name: "missing", topicId: .zero)])), version: 6), as: DeleteTopicsResponse.self)
        #expect(d.responses.map(\.errorCode) == [0, KafkaErrorCode.unknownTopicOrPartition.rawValue])
        #expect(d.responses[0].name == "t")
        #expect(h.core.registry.topic(named: "t") == nil)
        let again = try await h.createTopic("t")
        #expect(!grown.partitions.map(\.stream).contains(again.partitions[0].stream))
        #expect(try await h.fetch("t", offset: 0).highWatermark == 0)
    }

    @Test func metadataAutoCreatesOnlyWhenAllowed() async throws {
        let h = try await Harness.make()
        let handler = MetadataHandler(core: h.core)
        let m = try await requireResponse(h.call(handler, .metadata(MetadataRequest(topics: [.init(name: "auto")], allowAutoTopicCreation: true)), version: 12), as: MetadataResponse.self)
        #expect(m.topics[0].errorCode == 0 && m.topics[0].partitions.count == 1 && m.topics[0].topicId != .zero)
        #expect(m.brokers.map(\.nodeId) == [0] && m.controllerId == 0 && m.clusterId == "test-cluster")
        let m2 = try await requireResponse(h.call(handler, .metadata(MetadataRequest(topics: [.init(name: "noauto")], allowAutoTopicCreation: false)), version: 9), as: MetadataResponse.self)
        #expect(m2.topics[0].errorCode == KafkaErrorCode.unknownTopicOrPartition.rawValue)
        let off = try await Harness.make(settings: ["auto.create.topics.enable": "false"])
        let m3 = try await requireResponse(off.call(MetadataHandler(core: off.core), .metadata(MetadataRequest(topics: [.init(name: "x")])), version: 1), as: MetadataResponse.self)
        #expect(m3.topics[0].errorCode == KafkaErrorCode.unknownTopicOrPartition.rawValue)
        // All topics: v0 empty list, v1+ null.
        let all0 = try await requireResponse(h.call(handler, .metadata(MetadataRequest(topics: [])), version: 0), as: MetadataResponse.self)
        #expect(all0.topics.map(\.name) == ["auto"])
        let all1 = try await requireResponse(h.call(handler, .metadata(MetadataRequest(topics: nil)), version: 1), as: MetadataResponse.self)
        #expect(all1.topics.map(\.name) == ["auto"])
        let none = try await requireResponse(h.call(handler, .metadata(MetadataRequest(topics: [])), version: 1), as: MetadataResponse.self)
        #expect(none.topics.isEmpty)
    }

    @Test func describeConfigsReportsValuesAndSources() async throws {
        let h = try await Harness.make(settings: ["log.retention.bytes": "5000"])
        try await h.createTopic("t", configs: ["retention.ms": "60000"])
        let req = DescribeConfigsRequest(resources: [
            .init(resourceType: 2, resourceName: "t", configurationKeys: ["retention.ms", "retention.bytes", "cleanup.policy"]),
            .init(resourceType: 2, resourceName: "missing"),
            .init(resourceType: 4, resourceName: "0", configurationKeys: ["num.partitions", "listen"]),
        ], includeSynonyms: true, includeDocumentation: true)
        let r = try await requireResponse(h.call(DescribeConfigsHandler(core: h.core), .describeConfigs(req), version: 4), as: DescribeConfigsResponse.self)
        let topic = Dictionary(uniqueKeysWithValues: r.results[0].configs.map { ($0.name, $0) })
        #expect(topic["retention.ms"]?.value == "60000" && topic["retention.ms"]?.configSource == ConfigSource.dynamicTopic.rawValue)
        #expect(topic["retention.bytes"]?.value == "5000" && topic["retention.bytes"]?.configSource == ConfigSource.staticBroker.rawValue)
        #expect(topic["retention.bytes"]?.synonyms.map(\.name) == ["log.retention.bytes", "log.retention.bytes"])
        #expect(topic["cleanup.policy"]?.value == "delete" && topic["cleanup.policy"]?.configSource == ConfigSource.default.rawValue)
        #expect(topic["cleanup.policy"]?.configType == ConfigType.list.rawValue)
        #expect(r.results[1].errorCode == KafkaErrorCode.unknownTopicOrPartition.rawValue)
        let broker = Dictionary(uniqueKeysWithValues: r.results[2].configs.map { ($0.name, $0) })
        #expect(broker["num.partitions"]?.value == "1" && broker["num.partitions"]?.readOnly == false)
        #expect(broker["listen"]?.readOnly == true)
        // Version 0 has isDefault instead of sources.
        let v0 = try await requireResponse(h.call(DescribeConfigsHandler(core: h.core), .describeConfigs(req), version: 0), as: DescribeConfigsResponse.self)
        #expect(v0.results[0].configs.first { $0.name == "cleanup.policy" }?.isDefault == true)
    }

    @Test func alterAndIncrementalAlterConfigs() async throws {
        let h = try await Harness.make()
        try await h.createTopic("t", configs: ["retention.ms": "1000", "cleanup.policy": "delete"])
        // AlterConfigs replaces the whole set.
        let a = try await requireResponse(h.call(AlterConfigsHandler(core: h.core), .alterConfigs(AlterConfigsRequest(resources: [
            .init(resourceType: 2, resourceName: "t", configs: [.init(name: "retention.bytes", value: "100")]),
            .init(resourceType: 2, resourceName: "t", configs: [.init(name: "retention.bytes", value: "-7")]),
        ])), version: 1), as: AlterConfigsResponse.self)
        #expect(a.responses.map(\.errorCode) == [0, KafkaErrorCode.invalidConfig.rawValue])
        #expect(h.core.registry.topic(named: "t")?.configs == ["retention.bytes": "100"])
        // Incremental: SET, APPEND to a list, then SUBTRACT and DELETE.
        let inc = IncrementalAlterConfigsHandler(core: h.core)
        let i1 = try await requireResponse(h.call(inc, .incrementalAlterConfigs(IncrementalAlterConfigsRequest(resources: [
            .init(resourceType: 2, resourceName: "t", configs: [
                .init(name: "retention.ms", configOperation: 0, value: "5000"),
                .init(name: "cleanup.policy", configOperation: 2, value: "compact"),
            ]),
        ])), version: 1), as: IncrementalAlterConfigsResponse.self)
        #expect(i1.responses[0].errorCode == 0)
        #expect(h.core.registry.topic(named: "t")?.configs == ["retention.bytes": "100", "retention.ms": "5000", "cleanup.policy": "delete,compact"])
        let i2 = try await requireResponse(h.call(inc, .incrementalAlterConfigs(IncrementalAlterConfigsRequest(resources: [
            .init(resourceType: 2, resourceName: "t", configs: [
                .init(name: "cleanup.policy", configOperation: 3, value: "delete"),
                .init(name: "retention.bytes", configOperation: 1, value: nil),
            ]),
            .init(resourceType: 2, resourceName: "t", configs: [.init(name: "retention.ms", configOperation: 2, value: "1")]),
            .init(resourceType: 4, resourceName: "0", configs: [.init(name: "num.partitions", configOperation: 0, value: "3")]),
            .init(resourceType: 4, resourceName: "0", configs: [.init(name: "listen", configOperation: 0, value: "1.2.3.4:1")]),
        ])), version: 0), as: IncrementalAlterConfigsResponse.self)
        #expect(i2.responses.map(\.errorCode) == [0, KafkaErrorCode.invalidConfig.rawValue, 0, KafkaErrorCode.invalidConfig.rawValue])
        #expect(h.core.registry.topic(named: "t")?.configs == ["retention.ms": "5000", "cleanup.policy": "compact"])
        #expect(h.core.defaultPartitions == 3)
        // The dynamic broker config persists.
        let h2 = try await h.restarted()
        #expect(h2.core.defaultPartitions == 3)
        #expect(h2.core.registry.topic(named: "t")?.configs["cleanup.policy"] == "compact")
    }

    @Test func metadataLogFencesADeposedControllerAndNeverReusesStreams() async throws {
        let store = MemoryObjectStore(name: "reg")
        let a = try await TopicRegistry.load(store: store, prefix: "broker/")
        try await a.becomeController(epoch: 1, node: 1)
        try await a.create(name: "one", partitions: 2, replicationFactor: 1, configs: [:])
        // b wins the lease at epoch 2: its epoch record deposes a.
        let b = try await TopicRegistry.load(store: store, prefix: "broker/")
        try await b.becomeController(epoch: 2, node: 2)
        await #expect(throws: BrokerError.self) { try await a.create(name: "two", partitions: 1, replicationFactor: 1, configs: [:]) }
        #expect(a.controllerEpoch == nil)
        try await b.create(name: "two", partitions: 1, replicationFactor: 1, configs: [:])
        // A late write of the deposed controller that lands after b's entries is ignored by replay.
        let late = MetadataLogEntry(offset: b.log.offset + 1, controllerEpoch: 1, writtenMillis: 0,
                                    records: [.deleteTopic("one"), .nextStream(1)])
        _ = try await store.put(b.log.entryKey(late.offset), DocumentEnvelope.encode(late, kind: .metadataLogEntry, version: 1), condition: .ifAbsent)
        let c = try await TopicRegistry.load(store: store, prefix: "broker/")
        #expect(c.topics.map(\.name) == ["one", "two"])
        #expect(c.log.offset == late.offset)
        let streams = c.topics.flatMap { $0.partitions.map(\.stream) }
        #expect(Set(streams).count == 3)
        #expect(c.state.nextStream == 4)
        // Changes are validated against the newest state.
        await #expect(throws: TopicError.self) { try await b.create(name: "two", partitions: 1, replicationFactor: 1, configs: [:]) }
    }

    @Test func snapshotsBoundReplayAndLaggingFollowersReload() async throws {
        let store = MemoryObjectStore(name: "snap")
        let log = MetadataLog(store: store, prefix: "c/", snapshotEvery: 10, keepBehindSnapshot: 3)
        let follower = MetadataLog(store: store, prefix: "c/", snapshotEvery: 10, keepBehindSnapshot: 3)
        try await follower.load()
        for i in 0..<25 { try await log.append([.nextStream(UInt64(i + 2))], epoch: 1) }
        // Snapshots at 10 and 20; entries below 20 - 3 are gone, and so is the snapshot at 10.
        let keys = try await store.listAll(prefix: "c/").map(\.key)
        #expect(keys.filter { $0.hasPrefix("c/snapshot/") } == ["c/snapshot/00000000000000000020"])
        #expect(!keys.contains("c/log/00000000000000000016") && keys.contains("c/log/00000000000000000017"))
        // A fresh reader replays the snapshot and 5 entries.
        let fresh = MetadataLog(store: store, prefix: "c/")
        try await fresh.load()
        #expect(fresh.offset == 25 && fresh.current.nextStream == 26)
        // A follower left at offset 0 finds entry 1 gone; told the end, it reloads from the snapshot.
        try await follower.catchUp()
        #expect(follower.offset == 0)
        try await follower.catchUp(expectedEnd: 25)
        #expect(follower.offset == 25 && follower.current == log.current)
    }

    @Test func preClusterRegistryIsImportedByTheFirstController() async throws {
        let store = MemoryObjectStore(name: "legacy")
        var doc = RegistryDocument()
        doc.nextStream = 3
        doc.clusterID = "old-cluster"
        doc.topics["t"] = TopicRecord(name: "t", id: KafkaUUID.random().hex, partitions: [
            PartitionRecord(index: 0, stream: 1, leaderEpoch: 0, owner: -1), PartitionRecord(index: 1, stream: 2, leaderEpoch: 0, owner: -1)],
            configs: [:], requestedReplicationFactor: 1, createdMillis: 0)
        _ = try await store.put("broker/registry", DocumentEnvelope.encode(doc, kind: .registry, version: 1), condition: .ifAbsent)
        let r = try await TopicRegistry.load(store: store, prefix: "broker/")
        try await r.becomeController(epoch: 1, node: 0)
        #expect(r.clusterID == "old-cluster" && r.state.nextStream == 3 && r.topic(named: "t")?.partitions.count == 2)
    }

    @Test func corruptMetadataIsReportedWithItsKey() async throws {
        let store = MemoryObjectStore(name: "bad")
        let r = try await TopicRegistry.load(store: store, prefix: "broker/")
        try await r.becomeController(epoch: 1, node: 0)
        try await r.create(name: "one", partitions: 1, replicationFactor: 1, configs: [:])
        let key = r.log.entryKey(2)
        var bytes = try await store.get(key, range: nil).bytes
        bytes[bytes.count - 2] ^= 0x20
        _ = try await store.put(key, bytes, condition: .none)
        do {
            _ = try await TopicRegistry.load(store: store, prefix: "broker/")
            Issue.record("a corrupt metadata log must not load")
        } catch let e as BrokerError {
            #expect("\(e)".contains(key) && "\(e)".contains("CRC32C"))
        }
    }

    @Test func configLayersFollowPrecedence() throws {
        let file = try BrokerConfig.parseProperties("""
            # comment
            num.partitions = 4
            listen: 127.0.0.1:1000
            log.retention.hours=1
            long.value=a\\
              b
            """, path: "test.properties")
        #expect(file["long.value"] == "ab")
        let c = BrokerConfig.resolve(file: file, environment: ["FLOE_NUM_PARTITIONS": "5", "FLOE_NODE_ID": "3", "PATH": "/bin", "FLOE_BOOTSTRAP": "x"],
                                     flags: ["node.id": "7"])
        #expect(c["num.partitions"] == "5" && c.sources["num.partitions"] == .environment)
        #expect(c["node.id"] == "7" && c.sources["node.id"] == .flag)
        #expect(c["listen"] == "127.0.0.1:1000" && c.sources["listen"] == .file)
        #expect(c["log.retention.ms"] == "3600000")
        #expect(c.unknownKeys == ["long.value"])
        #expect(throws: BrokerError.self) { try BrokerConfig.parseProperties("novalue", path: "x") }
    }

    @Test func topicConfigValidation() {
        #expect(TopicConfigs.validate(["retention.ms": "-1", "cleanup.policy": "compact,delete", "min.cleanable.dirty.ratio": "0.2"]) == nil)
        #expect(TopicConfigs.validate(["retention.ms": "-2"])?.name == "retention.ms")
        #expect(TopicConfigs.validate(["cleanup.policy": "shred"])?.name == "cleanup.policy")
        #expect(TopicConfigs.validate(["max.message.bytes": "99999999999"])?.name == "max.message.bytes")
        #expect(TopicConfigs.validate(["compression.type": "zstd", "message.timestamp.type": "LogAppendTime"]) == nil)
    }

    /// Every handler answers at every version it advertises with a response that encodes at that
    /// version (fields that do not exist at a version must stay at their defaults).
    @Test func everyAdvertisedVersionEncodes() async throws {
        let h = try await Harness.make()
        try await h.createTopic("t", partitions: 2)
        _ = try await h.produce("t", batch: try makeBatch(count: 3))
        let t = try #require(h.core.registry.topic(named: "t"))
        func requests(_ version: Int16) throws -> [AnyRequest] { [
            .produce(ProduceRequest(acks: -1, timeoutMs: 1000, topicData: [.init(name: "t", partitionData: [.init(index: 0, records: try makeBatch(count: 1)[...]), .init(index: 9, records: nil)])])),
            .fetch(FetchRequest(maxWaitMs: 0, minBytes: 1, maxBytes: 1 << 20, topics: [.init(topic: "t", topicId: t.topicID, partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)])])),
            .listOffsets(ListOffsetsRequest(replicaId: -1, topics: [.init(name: "t", partitions: [.init(partitionIndex: 0, timestamp: -1), .init(partitionIndex: 7, timestamp: -2)])])),
            .metadata(MetadataRequest(topics: version == 0 ? [] : nil, includeTopicAuthorizedOperations: version >= 8)),
            .createTopics(CreateTopicsRequest(topics: [.init(name: "c\(version)", numPartitions: 1, replicationFactor: 1)], validateOnly: version >= 1)),
            .deleteTopics(version >= 6 ? DeleteTopicsRequest(topics: [.init(name: "nope", topicId: .zero)]) : DeleteTopicsRequest(topicNames: ["nope"])),
            .createPartitions(CreatePartitionsRequest(topics: [.init(name: "nope", count: 3)])),
            .describeConfigs(DescribeConfigsRequest(resources: [.init(resourceType: 2, resourceName: "t"), .init(resourceType: 4, resourceName: "0")], includeSynonyms: version >= 1)),
            .alterConfigs(AlterConfigsRequest(resources: [.init(resourceType: 2, resourceName: "t", configs: [.init(name: "retention.ms", value: "1")])], validateOnly: true)),
            .incrementalAlterConfigs(IncrementalAlterConfigsRequest(resources: [.init(resourceType: 2, resourceName: "t", configs: [.init(name: "retention.ms", configOperation: 0, value: "1")])], validateOnly: true)),
            .describeCluster(DescribeClusterRequest()),
            .initProducerId(InitProducerIdRequest()),
            .offsetForLeaderEpoch(OffsetForLeaderEpochRequest(topics: [.init(topic: "t", partitions: [.init(partition: 0, leaderEpoch: 0)])])),
            .deleteRecords(DeleteRecordsRequest(topics: [.init(name: "t", partitions: [.init(partitionIndex: 1, offset: 0)])])),
            .alterPartitionReassignments(AlterPartitionReassignmentsRequest(topics: [.init(name: "t", partitions: [
                .init(partitionIndex: 0, replicas: [0]), .init(partitionIndex: 1, replicas: nil), .init(partitionIndex: 5, replicas: [0])])])),
            .listPartitionReassignments(ListPartitionReassignmentsRequest(topics: nil)),
            .brokerRegistration(BrokerRegistrationRequest(brokerId: 0, clusterId: "x", incarnationId: .zero,
                                                          listeners: [.init(name: "PLAINTEXT", host: "127.0.0.1", port: 9092, securityProtocol: 0)])),
            .brokerHeartbeat(BrokerHeartbeatRequest(brokerId: 5, brokerEpoch: 1, currentMetadataOffset: 0)),
            .stopReplica(StopReplicaRequest(controllerId: 0, controllerEpoch: 0, brokerEpoch: 1, topicStates: [.init(topicName: "nope", partitionStates: [.init(partitionIndex: 0)])])),
            .updateMetadata(UpdateMetadataRequest(controllerId: 0)),
            .allocateProducerIds(AllocateProducerIdsRequest(brokerId: 0, brokerEpoch: 1)),
            .describeTopicPartitions(DescribeTopicPartitionsRequest(topics: [.init(name: "t"), .init(name: "nope")], responsePartitionLimit: 10)),
            .describeLogDirs(DescribeLogDirsRequest(topics: version == 0 ? [.init(topic: "t", partitions: [0, 1])] : nil)),
            .electLeaders(ElectLeadersRequest(electionType: version >= 1 ? 1 : 0, topicPartitions: [.init(topic: "t", partitions: [0, 7])])),
            .describeProducers(DescribeProducersRequest(topics: [.init(name: "t", partitionIndexes: [0, 9])])),
            .listClientMetricsResources(ListClientMetricsResourcesRequest()),
            .getTelemetrySubscriptions(GetTelemetrySubscriptionsRequest(clientInstanceId: .zero)),
            .pushTelemetry(PushTelemetryRequest(clientInstanceId: KafkaUUID(mostSignificantBits: 5, leastSignificantBits: 6), subscriptionId: 1)),
            .alterUserScramCredentials(AlterUserScramCredentialsRequest(
                deletions: [.init(name: "nobody", mechanism: 1)],
                upsertions: [.init(name: "u", mechanism: 2, iterations: 4096, salt: [1, 2, 3], saltedPassword: Array(repeating: 7, count: 64))])),
            .describeUserScramCredentials(DescribeUserScramCredentialsRequest(users: [.init(name: "u"), .init(name: "x")])),
            .createAcls(CreateAclsRequest(creations: [.init(resourceType: 2, resourceName: "t", resourcePatternType: 3, principal: "User:a", host: "*",
                                                            operation: 3, permissionType: 3)])),
            .describeAcls(DescribeAclsRequest(resourceTypeFilter: 1, patternTypeFilter: 3, operation: 1, permissionType: 1)),
            .deleteAcls(DeleteAclsRequest(filters: [.init(resourceTypeFilter: 2, resourceNameFilter: "t", patternTypeFilter: 3, operation: 1, permissionType: 1)])),
            .alterClientQuotas(AlterClientQuotasRequest(entries: [.init(entity: [.init(entityType: "user", entityName: nil)],
                                                                        ops: [.init(key: "producer_byte_rate", value: 1024)])])),
            .describeClientQuotas(DescribeClientQuotasRequest(components: [.init(entityType: "user", matchType: 2)], strict: false)),
        ] }
        let handlers = Broker.standardHandlers(h.core) + Broker.clusterHandlers(h.core)
        for handler in handlers {
            for version in handler.versions {
                let request = try #require(try requests(version).first { $0.apiKey == handler.apiKey }, "no sample request for \(handler.apiKey)")
                // Encode then decode the request at this version first, as a client would send it.
                var w = ByteWriter()
                try request.encode(to: &w, version: version)
                var r = ByteReader(w.take())
                let decoded = try AnyRequest.decode(apiKey: handler.apiKey, version: version, from: &r)
                _ = try await h.call(handler, decoded, version: version)
            }
        }
    }
}
