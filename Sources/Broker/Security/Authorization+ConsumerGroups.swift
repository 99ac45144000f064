import KafkaProtocol

// KIP-848 consumer group APIs (Kafka's KafkaApis.handleConsumerGroupHeartbeat / Describe).
extension AccessCheck {
    /// ConsumerGroupHeartbeat: READ on the group (GROUP_AUTHORIZATION_FAILED), then DESCRIBE on
    /// every subscribed topic name (TOPIC_AUTHORIZATION_FAILED if any is refused).
    func consumerGroupHeartbeat(_ r: ConsumerGroupHeartbeatRequest, version: Int16) -> Screening {
        guard group(.read, r.groupId) else { return Self.refuse(.consumerGroupHeartbeat, Self.groupDenied, version: version) }
        if let names = r.subscribedTopicNames, names.contains(where: { !topic(.describe, $0) }) {
            return Self.refuse(.consumerGroupHeartbeat, Self.topicDenied, version: version)
        }
        return .pass
    }

    /// ConsumerGroupDescribe: DESCRIBE on each group; refused groups get
    /// GROUP_AUTHORIZATION_FAILED in their entry.
    func consumerGroupDescribe(_ r: ConsumerGroupDescribeRequest) -> Screening {
        let denied = Set(r.groupIds.filter { !group(.describe, $0) })
        if denied.isEmpty && !r.includeAuthorizedOperations { return .pass }
        var narrowed = r
        narrowed.groupIds.removeAll { denied.contains($0) }
        let refused = r.groupIds.filter { denied.contains($0) }.map {
            ConsumerGroupDescribeResponse.DescribedGroup(errorCode: Self.groupDenied, groupId: $0)
        }
        if narrowed.groupIds.isEmpty { return .answer(.consumerGroupDescribe(ConsumerGroupDescribeResponse(groups: refused))) }
        return .narrowed(.consumerGroupDescribe(narrowed)) { [self] response in
            guard case var .consumerGroupDescribe(out) = response else { return response }
            if r.includeAuthorizedOperations {
                for i in out.groups.indices where out.groups[i].errorCode == 0 {
                    out.groups[i].authorizedOperations = authorizer.authorizedOperations(
                        principal, host: host, .group(out.groups[i].groupId), candidates: Authorizer.groupOperations)
                }
            }
            out.groups += refused
            return .consumerGroupDescribe(out)
        }
    }
}
