import KafkaProtocol

/// Kafka's ACL rules for the admin APIs of `AdminHandlers.swift`, `OffsetDelete.swift` and
/// `TelemetryHandlers.swift` (see the table on ``AccessCheck``):
///
/// | API | needs | refused with |
/// |---|---|---|
/// | OffsetDelete | DELETE group, then READ per topic | GROUP_AUTHORIZATION_FAILED (whole request); TOPIC_AUTHORIZATION_FAILED per partition |
/// | DescribeLogDirs | DESCRIBE cluster | CLUSTER_AUTHORIZATION_FAILED, no log dirs (no error field before v3) |
/// | ElectLeaders | ALTER cluster | CLUSTER_AUTHORIZATION_FAILED on every partition named (and top-level from v1) |
/// | DescribeProducers | READ per topic | TOPIC_AUTHORIZATION_FAILED per partition |
/// | ListClientMetricsResources | DESCRIBE_CONFIGS cluster | CLUSTER_AUTHORIZATION_FAILED |
/// | GetTelemetrySubscriptions, PushTelemetry | nothing (as in Kafka) | — |
extension AccessCheck {
    func offsetDelete(_ r: OffsetDeleteRequest) -> Screening {
        guard group(.delete, r.groupId) else { return .answer(.offsetDelete(OffsetDeleteResponse(errorCode: Self.groupDenied))) }
        let denied = Set(r.topics.map(\.name).filter { !topic(.read, $0) })
        if denied.isEmpty { return .pass }
        var narrowed = r
        narrowed.topics.removeAll { denied.contains($0.name) }
        let refused = r.topics.filter { denied.contains($0.name) }.map { t in
            OffsetDeleteResponse.OffsetDeleteResponseTopic(name: t.name, partitions: t.partitions.map {
                .init(partitionIndex: $0.partitionIndex, errorCode: Self.topicDenied) })
        }
        // The group is still checked (GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP) with what remains, as in Kafka.
        return .narrowed(.offsetDelete(narrowed)) { response in
            guard case var .offsetDelete(out) = response, out.errorCode == 0 else { return response }
            out.topics += refused
            return .offsetDelete(out)
        }
    }

    func describeLogDirs(version: Int16) -> Screening {
        if cluster(.describe) { return .pass }
        return .answer(.describeLogDirs(DescribeLogDirsResponse(errorCode: version >= 3 ? Self.clusterDenied : 0, results: [])))
    }

    func electLeaders(_ r: ElectLeadersRequest, version: Int16) -> Screening {
        if cluster(.alter) { return .pass }
        let results = (r.topicPartitions ?? []).map { t in
            ElectLeadersResponse.ReplicaElectionResult(topic: t.topic, partitionResult: t.partitions.map {
                .init(partitionId: $0, errorCode: Self.clusterDenied, errorMessage: "not authorized to elect leaders") })
        }
        return .answer(.electLeaders(ElectLeadersResponse(errorCode: version >= 1 ? Self.clusterDenied : 0, replicaElectionResults: results)))
    }

    func describeProducers(_ r: DescribeProducersRequest) -> Screening {
        let denied = Set(r.topics.map(\.name).filter { !topic(.read, $0) })
        if denied.isEmpty { return .pass }
        var narrowed = r
        narrowed.topics.removeAll { denied.contains($0.name) }
        let refused = r.topics.filter { denied.contains($0.name) }.map { t in
            DescribeProducersResponse.TopicResponse(name: t.name, partitions: t.partitionIndexes.map {
                .init(partitionIndex: $0, errorCode: Self.topicDenied, errorMessage: "not authorized to read topic \(t.name)") })
        }
        if narrowed.topics.isEmpty { return .answer(.describeProducers(DescribeProducersResponse(topics: refused))) }
        return .narrowed(.describeProducers(narrowed)) { response in
            guard case var .describeProducers(out) = response else { return response }
            out.topics += refused
            return .describeProducers(out)
        }
    }

    func listClientMetricsResources() -> Screening {
        if cluster(.describeConfigs) { return .pass }
        return .answer(.listClientMetricsResources(ListClientMetricsResourcesResponse(errorCode: Self.clusterDenied)))
    }
}
