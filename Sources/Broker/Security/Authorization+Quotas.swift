import KafkaProtocol

extension AccessCheck {
    /// Client quotas (Kafka's rules): AlterClientQuotas needs ALTER_CONFIGS on the cluster (each
    /// entry refused with CLUSTER_AUTHORIZATION_FAILED, as the controller's error response does);
    /// DescribeClientQuotas needs DESCRIBE_CONFIGS on the cluster (top-level error, no entries).
    func clientQuotas(_ request: AnyRequest) -> Screening {
        switch request {
        case let .alterClientQuotas(r):
            if cluster(.alterConfigs) { return .pass }
            return .answer(.alterClientQuotas(AlterClientQuotasResponse(throttleTimeMs: 0, entries: r.entries.map { e in
                .init(errorCode: Self.clusterDenied, errorMessage: "not authorized to alter client quotas",
                      entity: e.entity.map { .init(entityType: $0.entityType, entityName: $0.entityName) })
            })))
        case .describeClientQuotas:
            if cluster(.describeConfigs) { return .pass }
            return .answer(.describeClientQuotas(DescribeClientQuotasResponse(throttleTimeMs: 0, errorCode: Self.clusterDenied,
                                                                              errorMessage: "not authorized to describe client quotas", entries: nil)))
        default:
            return .pass
        }
    }
}
