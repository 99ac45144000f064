import KafkaProtocol
import Support

/// Runs a metadata-changing API on the controller: on the controller itself the wrapped handler
/// answers; on any other broker the request is forwarded unchanged, and this broker catches up
/// on the metadata log before answering, so a following Metadata request reflects the change.
struct ControllerForwarding: ApiHandler {
    let inner: any ApiHandler
    let member: ClusterMember
    let logger: Logger
    var apiKey: ApiKey { inner.apiKey }
    var versions: ClosedRange<Int16> { inner.versions }

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        if member.isController { return await inner.handle(request, context: context) }
        do {
            return .response(try await member.forward(request, apiKey: apiKey, version: context.apiVersion))
        } catch BrokerError.notController {
            return await inner.handle(request, context: context)  // this broker became the controller meanwhile
        } catch {
            logger.warning("could not forward a request to the controller; closing the connection so the client retries",
                           metadata: ["api": "\(apiKey)", "error": "\(error)"])
            return .close
        }
    }
}

/// BrokerRegistration (API 62), between Floe brokers: served by the active controller.
struct BrokerRegistrationHandler: ApiHandler {
    let member: ClusterMember
    let apiKey = ApiKey.brokerRegistration
    let versions: ClosedRange<Int16> = 0...4

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .brokerRegistration(r) = request else { return .close }
        guard let c = member.activeController else {
            return .response(.brokerRegistration(BrokerRegistrationResponse(errorCode: KafkaErrorCode.notController.rawValue, brokerEpoch: -1)))
        }
        guard let listener = r.listeners.first(where: { $0.name == ListenerName.internal.rawValue }) ?? r.listeners.first else {
            return .response(.brokerRegistration(BrokerRegistrationResponse(errorCode: KafkaErrorCode.invalidRequest.rawValue, brokerEpoch: -1)))
        }
        let external = r.listeners.first { $0.name == ListenerName.external.rawValue }.map { BrokerEndpoint(host: $0.host, port: Int32($0.port)) }
        do {
            let epoch = try await c.register(id: r.brokerId, incarnation: r.incarnationId.description, host: listener.host,
                                             port: Int32(listener.port), external: external,
                                             objectWAL: r.features.contains { $0.name == ClusterMember.objectWALFeature })
            return .response(.brokerRegistration(BrokerRegistrationResponse(errorCode: 0, brokerEpoch: epoch)))
        } catch {
            return .response(.brokerRegistration(BrokerRegistrationResponse(errorCode: KafkaErrorCode.notController.rawValue, brokerEpoch: -1)))
        }
    }
}

/// BrokerHeartbeat (API 63): served by the active controller. The answer carries the
/// controller's metadata log end in tagged field `ClusterMember.logEndTag`.
struct BrokerHeartbeatHandler: ApiHandler {
    let member: ClusterMember
    let apiKey = ApiKey.brokerHeartbeat
    let versions: ClosedRange<Int16> = 0...1

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .brokerHeartbeat(r) = request else { return .close }
        guard let c = member.activeController else {
            return .response(.brokerHeartbeat(BrokerHeartbeatResponse(errorCode: KafkaErrorCode.notController.rawValue, isFenced: false)))
        }
        do {
            let a = try await c.heartbeat(id: r.brokerId, brokerEpoch: r.brokerEpoch, wantShutDown: r.wantShutDown)
            return .response(.brokerHeartbeat(BrokerHeartbeatResponse(
                errorCode: 0, isCaughtUp: UInt64(max(0, r.currentMetadataOffset)) >= a.logEnd, isFenced: a.fenced,
                shouldShutDown: r.wantShutDown && a.fenced,
                unknownTaggedFields: [TaggedField(tag: ClusterMember.logEndTag, data: ClusterMember.encodeOffset(a.logEnd))])))
        } catch {
            return .response(.brokerHeartbeat(BrokerHeartbeatResponse(errorCode: KafkaErrorCode.notController.rawValue, isFenced: false)))
        }
    }
}

/// StopReplica (API 5), from the controller: hand the partitions over (stop serving them and
/// make everything acknowledged durable in objects). A request of a deposed controller (older
/// epoch than the log's) is refused with STALE_CONTROLLER_EPOCH.
struct StopReplicaHandler: ApiHandler {
    let core: BrokerCore
    let apiKey = ApiKey.stopReplica
    let versions: ClosedRange<Int16> = 3...4

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .stopReplica(r) = request else { return .close }
        let known = Int32(truncatingIfNeeded: core.registry.state.controllerEpoch)
        if r.controllerEpoch < known {
            return .response(.stopReplica(StopReplicaResponse(errorCode: KafkaErrorCode.staleControllerEpoch.rawValue)))
        }
        var errors: [StopReplicaResponse.StopReplicaPartitionError] = []
        for t in r.topicStates {
            for p in t.partitionStates {
                var code: Int16 = 0
                do {
                    try await core.partitions.handOver(topic: t.topicName, index: p.partitionIndex, leaderEpoch: p.leaderEpoch)
                } catch {
                    core.logger.error("hand-over failed", metadata: ["topic": t.topicName, "partition": "\(p.partitionIndex)", "error": "\(error)"])
                    code = KafkaErrorCode.kafkaStorageError.rawValue
                }
                errors.append(.init(topicName: t.topicName, partitionIndex: p.partitionIndex, errorCode: code))
            }
        }
        return .response(.stopReplica(StopReplicaResponse(errorCode: 0, partitionErrors: errors)))
    }
}

/// UpdateMetadata (API 6), from the controller: a nudge to read the metadata log now.
struct UpdateMetadataHandler: ApiHandler {
    let member: ClusterMember
    let apiKey = ApiKey.updateMetadata
    let versions: ClosedRange<Int16> = 0...8

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case .updateMetadata = request else { return .close }
        member.metadataChanged()
        return .response(.updateMetadata(UpdateMetadataResponse(errorCode: 0)))
    }
}

/// AllocateProducerIds (API 67): the controller hands out producer-id blocks, never reused.
struct AllocateProducerIdsHandler: ApiHandler {
    let core: BrokerCore
    let member: ClusterMember
    let apiKey = ApiKey.allocateProducerIds
    let versions: ClosedRange<Int16> = 0...0

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case .allocateProducerIds = request else { return .close }
        guard member.isController else {
            return .response(.allocateProducerIds(AllocateProducerIdsResponse(errorCode: KafkaErrorCode.notController.rawValue)))
        }
        do {
            let first = try await core.registry.reserveProducerIDs(ProducerIdAllocator.blockSize)
            return .response(.allocateProducerIds(AllocateProducerIdsResponse(errorCode: 0, producerIdStart: first,
                                                                              producerIdLen: Int32(ProducerIdAllocator.blockSize))))
        } catch {
            return .response(.allocateProducerIds(AllocateProducerIdsResponse(errorCode: KafkaErrorCode.notController.rawValue)))
        }
    }
}

/// AlterPartitionReassignments (API 45): forwarded to the controller, which validates and
/// records each move; the move itself runs in the controller's loop.
struct AlterPartitionReassignmentsHandler: ApiHandler {
    let member: ClusterMember
    let apiKey = ApiKey.alterPartitionReassignments
    let versions: ClosedRange<Int16> = 0...0

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .alterPartitionReassignments(r) = request else { return .close }
        guard let c = member.activeController else {
            return .response(.alterPartitionReassignments(AlterPartitionReassignmentsResponse(
                errorCode: KafkaErrorCode.notController.rawValue, errorMessage: "this broker is not the controller")))
        }
        var requests: [ClusterController.MoveRequest] = []
        for t in r.topics { for p in t.partitions { requests.append(.init(topic: t.name, partition: p.partitionIndex, replicas: p.replicas)) } }
        do {
            let results = try await c.requestMoves(requests)
            var response = AlterPartitionReassignmentsResponse()
            var i = 0
            for t in r.topics {
                var tr = AlterPartitionReassignmentsResponse.ReassignableTopicResponse(name: t.name)
                for p in t.partitions {
                    let (code, message) = results[i]
                    i += 1
                    tr.partitions.append(.init(partitionIndex: p.partitionIndex, errorCode: code.rawValue, errorMessage: message))
                }
                response.responses.append(tr)
            }
            return .response(.alterPartitionReassignments(response))
        } catch {
            return .response(.alterPartitionReassignments(AlterPartitionReassignmentsResponse(
                errorCode: KafkaErrorCode.notController.rawValue, errorMessage: "\(error)")))
        }
    }
}

/// ListPartitionReassignments (API 46): from this broker's copy of the metadata.
struct ListPartitionReassignmentsHandler: ApiHandler {
    let core: BrokerCore
    let apiKey = ApiKey.listPartitionReassignments
    let versions: ClosedRange<Int16> = 0...0

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .listPartitionReassignments(r) = request else { return .close }
        let s = core.registry.state
        var byTopic: [String: [ListPartitionReassignmentsResponse.OngoingPartitionReassignment]] = [:]
        let wanted: Set<String>? = r.topics.map { Set($0.flatMap { t in t.partitionIndexes.map { ClusterState.moveKey(t.name, $0) } }) }
        for (key, move) in s.moves {
            if let wanted, !wanted.contains(key) { continue }
            guard let (topic, index) = ClusterState.splitMoveKey(key), let t = s.topics[topic], Int(index) < t.partitions.count else { continue }
            let owner = t.partitions[Int(index)].owner
            byTopic[topic, default: []].append(.init(partitionIndex: index, replicas: [owner] + move.replicas.filter { $0 != owner },
                                                     addingReplicas: [move.target].filter { $0 != owner },
                                                     removingReplicas: [owner].filter { $0 != move.target }))
        }
        let topics = byTopic.keys.sorted().map { ListPartitionReassignmentsResponse.OngoingTopicReassignment(
            name: $0, partitions: byTopic[$0]!.sorted { $0.partitionIndex < $1.partitionIndex }) }
        return .response(.listPartitionReassignments(ListPartitionReassignmentsResponse(topics: topics)))
    }
}

/// Group coordinators placed by rendezvous hashing over the brokers that may take work (live,
/// not draining): every broker computes the same answer from the same metadata, and a broker
/// joining or leaving moves only the groups it gains or loses.
struct ClusterGroupPlacement: GroupPlacement {
    let registry: TopicRegistry

    func coordinator(for groupId: String) -> (nodeId: Int32, host: String, port: Int32)? {
        let s = registry.state
        var candidates = s.placeableBrokers
        if candidates.isEmpty { candidates = s.liveBrokers }
        guard let best = candidates.max(by: { Self.score(groupId, $0.id) < Self.score(groupId, $1.id) }) else { return nil }
        return (best.id, best.host, best.port)
    }

    func address(of node: Int32, on listener: ListenerName) -> (host: String, port: Int32)? {
        registry.state.brokers[node]?.address(on: listener)
    }

    /// FNV-1a of the group id and the broker id, then a 64-bit mix.
    static func score(_ group: String, _ broker: Int32) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in group.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        for i in 0..<4 { h = (h ^ UInt64(UInt8(truncatingIfNeeded: broker >> (8 * Int32(i))))) &* 0x100_0000_01b3 }
        h ^= h >> 33
        h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        return h
    }
}
