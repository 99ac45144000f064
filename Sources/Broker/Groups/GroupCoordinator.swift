import KafkaProtocol
import ObjectStore
import Support

/// What the coordinator needs to know about topics: the partition count of a topic, or nil if
/// it does not exist. The broker plugs its topic registry in.
public protocol GroupTopicLookup: Sendable {
    func partitionCount(topic: String) async -> Int?
    /// Every topic by name, with its id and partition count (KIP-848 consumer groups assign by
    /// topic id and follow topics created or grown while the group runs).
    func topicShapes() async -> [String: TopicShape]
}

/// The outcome of a request whose reply may be deferred: available now, or to be awaited with
/// the coordinator's `wait` methods.
public enum Ticket<Value: Sendable>: Sendable {
    case done(Value)
    case pending(RequestToken)
}

/// A deferred reply, as delivered to the waiting handler.
public enum GroupReply: Sendable {
    case join(JoinOutcome)
    case sync(SyncOutcome)
    case commit([PartitionResult])
    case delete(Int16)
    /// A consumer group's membership change is durable (0) or could not be written (the code).
    case membership(Int16)
    /// The coordinator shut down (or cannot answer): reply with this error code.
    case unavailable(Int16)
}

/// A per-partition result of OffsetCommit.
public struct PartitionResult: Sendable, Equatable {
    public var topic: String
    public var partition: Int32
    public var errorCode: Int16
}

/// One partition of an OffsetCommit as handed to the coordinator; `errorCode` is non-zero when
/// the handler already rejected it (unknown topic, metadata too large).
public struct OffsetCommitEntry: Sendable {
    public var partition: TopicPartition
    public var offset: CommittedOffset
    public var errorCode: Int16
}

/// A group as DescribeGroups reports it.
public struct GroupDescription: Sendable, Equatable {
    public struct Member: Sendable, Equatable {
        public var memberId: String
        public var groupInstanceId: String?
        public var clientId: String
        public var clientHost: String
        public var metadata: [UInt8]
        public var assignment: [UInt8]
    }
    public var groupId: String
    public var state: GroupState
    public var protocolType: String
    public var protocolName: String
    public var members: [Member]
}

/// The consumer-group coordinator of a broker: serves the groups that ``GroupPlacement`` places
/// on this broker, their committed offsets, and their durable copy in the bucket.
///
/// - Group logic is ``GroupStateMachine``; this actor performs its actions: it completes the
///   deferred JoinGroup/SyncGroup replies and writes groups to the store.
/// - Each group is one object, `prefix + percent-encoded group id`, holding a ``GroupRecord``
///   (membership of the last completed generation and all committed offsets). It is replaced
///   with `If-Match` on the ETag last read or written (`If-None-Match` when new), so a write
///   from a stale coordinator fails instead of overwriting newer state.
/// - An OffsetCommit (or OffsetDelete, `OffsetDelete.swift`) is acknowledged only after the
///   object holding it is written. Commits and deletions that arrive while a group's write is
///   in flight are coalesced, in arrival order, into its next write (one writer per group;
///   groups are written concurrently).
/// - Membership changes are written in the background (``run()``); losing one only makes
///   members rejoin after a restart.
/// - A group is read from its object on first use (absent: a new empty group); concurrent
///   first uses share one read. Until it is read, requests for it wait; if the read fails they
///   get COORDINATOR_LOAD_IN_PROGRESS. ``run()`` drives timers (sessions, rebalance timeouts,
///   offset retention) and background writes until cancelled or ``shutdown()``.
/// - Requests for a group placed on another broker get NOT_COORDINATOR. ``release(where:)``
///   (and ``placementChanged()``) writes a group's pending state, answers its parked
///   JoinGroup/SyncGroup with NOT_COORDINATOR and forgets it; its next use reads the object
///   again. A conditional write that finds the object changed by another writer (a newer
///   coordinator) drops the group the same way: this broker is no longer its coordinator.
///
/// Memory is bounded by `config.maxGroups` new groups (groups read from the bucket are not
/// refused), `maxMembersPerGroup` members each, and the
/// offsets committed (one per partition per group, expired after `offsetsRetention` once the
/// group is empty).
public actor GroupCoordinator {
    public nonisolated let nodeId: Int32
    public nonisolated let host: String
    public nonisolated let port: Int32
    public nonisolated let config: GroupConfig
    nonisolated let store: any ObjectStore
    nonisolated let prefix: String
    nonisolated let clock: any FloeClock
    nonisolated let topics: any GroupTopicLookup
    nonisolated let logger: Logger
    public nonisolated let placement: any GroupPlacement

    /// Offsets to write (an OffsetCommit) or to remove (an OffsetDelete), acknowledged together
    /// once the group's object holding the change is written.
    struct PendingCommit {
        var token: RequestToken
        var entries: [OffsetCommitEntry]
        /// Committed offsets to remove, applied after `entries` (OffsetDelete).
        var deletions: [TopicPartition] = []

        /// The reply: each partition with its own error, or `code` (the write's outcome).
        func results(_ code: Int16) -> [PartitionResult] {
            entries.map { PartitionResult(topic: $0.partition.topic, partition: $0.partition.partition,
                                          errorCode: $0.errorCode != 0 ? $0.errorCode : code) }
                + deletions.map { PartitionResult(topic: $0.topic, partition: $0.partition, errorCode: code) }
        }
    }

    struct Entry {
        var machine: GroupStateMachine
        var offsets: [TopicPartition: CommittedOffset] = [:]
        /// ETag of the group's object; nil when there is none.
        var etag: String?
        var writing = false
        var queued: [PendingCommit] = []
        var metadataDirty = false
        var deleteWaiters: [RequestToken] = []
        /// Distinguishes this residence of the group from a later one (after a release and a
        /// re-read), so a release that waited does not drop its successor.
        var incarnation: UInt64 = 0
        /// Being released: requests get NOT_COORDINATOR, pending work is written.
        var releasing = false
        /// Fenced by another writer: dropped once the running write loop ends.
        var fenced = false
        /// Released waiting for the running write loop to end.
        var writerWaiters: [CheckedContinuation<Void, Never>] = []
        /// Set when the group is a KIP-848 consumer group (then `machine` stays Empty).
        var consumer: ConsumerGroup?
        /// Consumer group heartbeats answered once the membership change they made is written.
        var membershipWaiters: [RequestToken] = []
    }

    var groups: [String: Entry] = [:]
    /// Reads of group objects in flight, shared by concurrent first uses of a group.
    var loads: [String: Task<Int16, Never>] = [:]
    var nextIncarnation: UInt64 = 0
    var deadlines: [String: MonotonicInstant] = [:]
    var dirty: Set<String> = []
    var loaded = false
    var stopped = false
    var nextToken: RequestToken = 0
    var waiters: [RequestToken: CheckedContinuation<GroupReply, Never>] = [:]
    var early: [RequestToken: GroupReply] = [:]
    var random: SplitMix64
    nonisolated let persistSignal: AsyncStream<Void>
    nonisolated let persistContinuation: AsyncStream<Void>.Continuation

    /// - Parameters:
    ///   - nodeId, host, port: this broker, as FindCoordinator names it.
    ///   - store, prefix: where group objects live; the prefix must hold nothing else
    ///     (for example `groups/`).
    ///   - placement: which broker coordinates each group; nil: this one, for every group
    ///     (``SingleBrokerPlacement``).
    ///   - seed: seeds member-id generation (tests pass a fixed one).
    public init(nodeId: Int32, host: String, port: Int32, store: any ObjectStore, prefix: String,
                clock: any FloeClock, topics: any GroupTopicLookup, logger: Logger,
                config: GroupConfig = GroupConfig(), placement: (any GroupPlacement)? = nil,
                seed: UInt64 = UInt64.random(in: .min ... .max)) {
        self.placement = placement ?? SingleBrokerPlacement(nodeId: nodeId, host: host, port: port)
        self.nodeId = nodeId
        self.host = host
        self.port = port
        self.store = store
        self.prefix = prefix
        self.clock = clock
        self.topics = topics
        self.logger = logger
        self.config = config
        self.random = SplitMix64(seed: seed)
        (persistSignal, persistContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// The Kafka APIs of the group coordinator, for the broker's router.
    public nonisolated var handlers: [any ApiHandler] {
        [OffsetDeleteHandler(coordinator: self),
         FindCoordinatorHandler(coordinator: self), JoinGroupHandler(coordinator: self), SyncGroupHandler(coordinator: self),
         HeartbeatHandler(coordinator: self), LeaveGroupHandler(coordinator: self), OffsetCommitHandler(coordinator: self),
         OffsetFetchHandler(coordinator: self), ListGroupsHandler(coordinator: self), DescribeGroupsHandler(coordinator: self),
         DeleteGroupsHandler(coordinator: self), ConsumerGroupHeartbeatHandler(coordinator: self),
         ConsumerGroupDescribeHandler(coordinator: self)]
    }

    // MARK: Lifecycle

    /// Reads every group object under the prefix and keeps those placed on this broker that are
    /// not in memory yet. Not needed (groups are read on first use); kept for tools and tests
    /// that want every error up front. Idempotent; throws the store's error or a
    /// ``GroupStoreError`` naming the object that cannot be read.
    public func load() async throws {
        if loaded { return }
        let objects = try await store.listAll(prefix: prefix)
        var restored: [String: (GroupRecord, String)] = [:]
        for info in objects {
            let data = try await store.get(info.key)
            let record = try GroupRecord(decoding: data.bytes, key: info.key)
            guard groupKey(record.groupId) == info.key else {
                throw GroupStoreError.mismatchedGroup(key: info.key, expected: groupKey(record.groupId), found: record.groupId)
            }
            restored[record.groupId] = (record, data.etag)
        }
        if loaded { return }
        for (id, (record, etag)) in restored where groups[id] == nil && loads[id] == nil && isCoordinator(of: id) {
            install(record, etag: etag)
        }
        loaded = true
        logger.info("group coordinator loaded", metadata: ["groups": "\(groups.count)", "store": store.location])
    }

    /// Runs the timers and background writes until cancelled or shut down. Groups are read
    /// from the bucket on first use, not here.
    public func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.timerLoop() }
            group.addTask { await self.persistLoop() }
        }
    }

    /// Stops serving: writes pending membership changes, answers every waiting request with
    /// NOT_COORDINATOR, and makes ``run()`` return.
    public func shutdown() async {
        stopped = true
        persistContinuation.finish()
        for id in groups.keys.sorted() where groups[id]?.metadataDirty == true || groups[id]?.queued.isEmpty == false {
            await flush(id)
        }
        let pending = waiters
        waiters = [:]
        for (_, continuation) in pending { continuation.resume(returning: .unavailable(KafkaErrorCode.notCoordinator.rawValue)) }
    }

    func timerLoop() async {
        var nextRetentionCheck = clock.now().advanced(by: config.offsetsRetentionCheckInterval)
        while !stopped && !Task.isCancelled {
            let now = clock.now()
            fireDueTimers(now: now)
            if now >= nextRetentionCheck {
                nextRetentionCheck = now.advanced(by: config.offsetsRetentionCheckInterval)
                await expireOffsets()
            }
            var wait = config.timerResolution
            if let next = deadlines.values.min() { wait = min(wait, next.duration(since: now)) }
            do {
                try await clock.sleep(for: max(wait, .milliseconds(1)))
            } catch {
                return
            }
        }
    }

    func persistLoop() async {
        for await _ in persistSignal {
            await flushDirty()
            if stopped { return }
        }
    }

    /// Writes every group whose membership changed (the background writer; public for tests
    /// and for a broker that wants to persist before stopping).
    public func flushDirty() async {
        let ids = dirty.sorted()
        dirty = []
        for id in ids { await flush(id) }
    }

    /// Applies every deadline that has passed at `now` (called by the timer loop).
    public func fireDueTimers(now: MonotonicInstant) {
        for (id, deadline) in deadlines where deadline <= now {
            guard groups[id] != nil else { deadlines[id] = nil; continue }
            let actions = groups[id]!.machine.expire(now: now)
            perform(actions, groupId: id)
            expireConsumerMembers(id, now: now)
            dropIfUnused(id)  // e.g. a member id handed out with MEMBER_ID_REQUIRED that never came back
        }
    }

    /// Expires offsets of empty groups older than the retention, deleting groups left with none.
    public func expireOffsets() async {
        let nowMs = Int64(clock.wallTime().timeIntervalSince1970 * 1000)
        let retentionMs = config.offsetsRetention.nanosecondsClamped / 1_000_000
        var touched: [String] = []
        for (id, entry) in groups where entry.machine.state == .empty && entry.machine.isEmpty && !entry.writing
            && entry.consumer?.members.isEmpty != false {
            let kept = entry.offsets.filter { $0.value.commitTimestampMs + retentionMs > nowMs }
            if kept.count == entry.offsets.count && !(kept.isEmpty && entry.etag != nil) { continue }
            groups[id]!.offsets = kept
            if kept.isEmpty {
                _ = groups[id]!.machine.markDead()
            } else {
                groups[id]!.metadataDirty = true
            }
            touched.append(id)
        }
        for id in touched {
            logger.info("expiring committed offsets of an empty group", metadata: ["group.id": id])
            await flush(id)
        }
    }

    // MARK: Placement and residency

    /// Whether the placement names this broker as the coordinator of `groupId`.
    public nonisolated func isCoordinator(of groupId: String) -> Bool {
        placement.coordinator(for: groupId)?.nodeId == nodeId
    }

    /// Makes a group this broker coordinates resident: returns nil when the request may go on
    /// (the group is in memory, or has no object and is not), or the error code to answer.
    /// Empty and unstorable group ids are left to the caller (INVALID_GROUP_ID or "no group").
    func resident(_ groupId: String) async -> Int16? {
        if stopped { return KafkaErrorCode.notCoordinator.rawValue }
        if groupId.isEmpty || groupKeyProblem(groupId) != nil { return nil }
        guard isCoordinator(of: groupId) else { return KafkaErrorCode.notCoordinator.rawValue }
        if let entry = groups[groupId] { return entry.releasing ? KafkaErrorCode.notCoordinator.rawValue : nil }
        let read: Task<Int16, Never>
        if let running = loads[groupId] {
            read = running
        } else {
            read = Task { await self.readGroup(groupId) }
            loads[groupId] = read
        }
        let code = await read.value
        if code != 0 { return code }
        // The placement may have changed, or a release begun, while the object was read.
        if stopped || !isCoordinator(of: groupId) || groups[groupId]?.releasing == true {
            return KafkaErrorCode.notCoordinator.rawValue
        }
        return nil
    }

    /// Reads one group's object and keeps it (the shared body of ``resident(_:)``). Returns 0,
    /// or COORDINATOR_LOAD_IN_PROGRESS when the object cannot be read or decoded.
    func readGroup(_ groupId: String) async -> Int16 {
        defer { loads[groupId] = nil }
        let key = groupKey(groupId)
        let found: (GroupRecord, String)?
        do {
            let data = try await store.get(key)
            let record = try GroupRecord(decoding: data.bytes, key: key)
            guard record.groupId == groupId else {
                throw GroupStoreError.mismatchedGroup(key: key, expected: key, found: record.groupId)
            }
            found = (record, data.etag)
        } catch ObjectStoreError.notFound {
            found = nil
        } catch {
            logger.error("cannot read group object", metadata: ["group.id": groupId, "key": key, "store": store.location, "error": "\(error)"])
            return KafkaErrorCode.coordinatorLoadInProgress.rawValue
        }
        if let (record, etag) = found, !stopped, groups[groupId] == nil, isCoordinator(of: groupId) {
            install(record, etag: etag)
        }
        return 0
    }

    /// Keeps a group read from the bucket.
    func install(_ record: GroupRecord, etag: String) {
        let machine = GroupStateMachine(groupId: record.groupId, config: config, restoring: record.snapshot, now: clock.now())
        nextIncarnation += 1
        var consumer = record.consumer
        consumer?.restartSessions(now: clock.now(), config: config)
        groups[record.groupId] = Entry(machine: machine, offsets: record.offsets, etag: etag, incarnation: nextIncarnation, consumer: consumer)
        deadlines[record.groupId] = nextDeadline(record.groupId)
    }

    /// Gives up every group in memory for which `shouldRelease` is true: writes its pending
    /// commits and membership (the usual write path; a failure is logged and answered to the
    /// commits it carried), answers its parked JoinGroup/SyncGroup, queued commits and
    /// deletions with NOT_COORDINATOR, and forgets it. A later use reads its object again.
    /// Requests for a group being released get NOT_COORDINATOR.
    public func release(where shouldRelease: (String) -> Bool) async {
        let chosen = groups.filter { shouldRelease($0.key) }.map { ($0.key, $0.value.incarnation) }.sorted { $0.0 < $1.0 }
        for (id, _) in chosen { groups[id]?.releasing = true }
        for (id, incarnation) in chosen { await releaseGroup(id, incarnation: incarnation) }
    }

    /// Releases every group in memory that the placement no longer puts on this broker.
    public func placementChanged() async {
        await release { !isCoordinator(of: $0) }
    }

    func releaseGroup(_ groupId: String, incarnation: UInt64) async {
        // Let the running write loop end, then write whatever it left.
        while let entry = groups[groupId], entry.incarnation == incarnation, entry.writing {
            await withCheckedContinuation { groups[groupId]!.writerWaiters.append($0) }
        }
        guard groups[groupId]?.incarnation == incarnation else { return }
        await flush(groupId)  // returns at once when nothing is pending
        guard groups[groupId]?.incarnation == incarnation else { return }
        forget(groupId, errorCode: KafkaErrorCode.notCoordinator.rawValue)
        logger.info("released group", metadata: ["group.id": groupId])
    }

    /// Drops a group from memory, answering everything that waits on it with `errorCode`.
    func forget(_ groupId: String, errorCode: Int16) {
        guard let entry = groups.removeValue(forKey: groupId) else { return }
        deadlines[groupId] = nil
        dirty.remove(groupId)
        for action in entry.machine.abandon(errorCode: errorCode) {
            switch action {
            case let .completeJoin(token, outcome): resolve(token, .join(outcome))
            case let .completeSync(token, outcome): resolve(token, .sync(outcome))
            case .persist: break
            }
        }
        for commit in entry.queued { resolve(commit.token, .commit(commit.results(errorCode))) }
        for token in entry.deleteWaiters { resolve(token, .delete(errorCode)) }
        for token in entry.membershipWaiters { resolve(token, .membership(errorCode)) }
        for waiter in entry.writerWaiters { waiter.resume() }
    }

    // MARK: Replies

    func newToken() -> RequestToken {
        nextToken += 1
        return nextToken
    }

    func perform(_ actions: [GroupAction], groupId: String) {
        for action in actions {
            switch action {
            case let .completeJoin(token, outcome): resolve(token, .join(outcome))
            case let .completeSync(token, outcome): resolve(token, .sync(outcome))
            case .persist:
                groups[groupId]?.metadataDirty = true
                dirty.insert(groupId)
                persistContinuation.yield()
            }
        }
        deadlines[groupId] = nextDeadline(groupId)
    }

    func resolve(_ token: RequestToken, _ reply: GroupReply) {
        if let continuation = waiters.removeValue(forKey: token) {
            continuation.resume(returning: reply)
        } else {
            early[token] = reply
        }
    }

    /// Waits for the deferred reply of `token`.
    public func wait(_ token: RequestToken) async -> GroupReply {
        if let reply = early.removeValue(forKey: token) { return reply }
        if stopped { return .unavailable(KafkaErrorCode.notCoordinator.rawValue) }
        return await withCheckedContinuation { waiters[token] = $0 }
    }

    /// Makes the commits (or the deletion) queued on a group durable, then returns the reply.
    public func waitDurable(_ token: RequestToken, groupId: String) async -> GroupReply {
        await flush(groupId)
        return await wait(token)
    }

    /// The code for a request that cannot be served at all right now, or nil.
    func unavailableCode() -> Int16? {
        if stopped { return KafkaErrorCode.notCoordinator.rawValue }
        return nil
    }

    /// The group's entry, created if absent and allowed by the group limit.
    func ensureGroup(_ groupId: String) -> Bool {
        if groups[groupId] != nil { return true }
        guard groups.count < config.maxGroups else {
            logger.warning("group limit reached; refusing a new group", metadata: ["group.id": groupId, "limit": "\(config.maxGroups)"])
            return false
        }
        nextIncarnation += 1
        groups[groupId] = Entry(machine: GroupStateMachine(groupId: groupId, config: config), incarnation: nextIncarnation)
        return true
    }

    /// Forgets a group that was created by a request but holds nothing.
    func dropIfUnused(_ groupId: String) {
        guard let e = groups[groupId], e.machine.isEmpty, e.machine.state == .empty, e.machine.generationId == 0,
              e.consumer == nil || (e.consumer!.members.isEmpty && e.consumer!.groupEpoch == 0),
              e.offsets.isEmpty, e.etag == nil, !e.writing, e.queued.isEmpty else { return }
        groups[groupId] = nil
        deadlines[groupId] = nil
        dirty.remove(groupId)
    }

    /// `clientId-uuid` (or `instanceId-uuid` for static members), as Kafka forms member ids.
    func makeMemberId(base: String) -> String {
        let a = random.next(), b = random.next()
        func hex(_ v: UInt64, _ digits: Int) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: max(0, digits - s.count)) + s
        }
        let uuid = "\(hex(a >> 32, 8))-\(hex((a >> 16) & 0xFFFF, 4))-\(hex(a & 0xFFFF, 4))-\(hex(b >> 48, 4))-\(hex(b & 0xFFFF_FFFF_FFFF, 12))"
        return "\(base)-\(uuid)"
    }

    // MARK: Group membership APIs

    public func join(groupId: String, request: JoinRequest) async -> Ticket<JoinOutcome> {
        if groupId.isEmpty || groupKeyProblem(groupId) != nil {
            return .done(.error(KafkaErrorCode.invalidGroupId.rawValue, memberId: request.memberId))
        }
        // Read the topics first (a classic member of a consumer group needs them): after
        // `resident` nothing awaits, so the group cannot change under us.
        let shapes = await topics.topicShapes()
        if let code = await resident(groupId) { return .done(.error(code, memberId: request.memberId)) }
        if let outcome = classicJoinToConsumerGroup(groupId, request: request, topics: shapes) { return .done(outcome) }
        guard ensureGroup(groupId) else { return .done(.error(KafkaErrorCode.coordinatorNotAvailable.rawValue, memberId: request.memberId)) }
        let token = newToken()
        var memberId = makeMemberId(base: request.groupInstanceId ?? request.clientId)
        while groups[groupId]!.machine.members[memberId] != nil || groups[groupId]!.machine.pendingMembers[memberId] != nil {
            // Ids restored from the bucket were drawn by an earlier process.
            memberId = makeMemberId(base: request.groupInstanceId ?? request.clientId)
        }
        let actions = groups[groupId]!.machine.join(request, token: token, newMemberId: memberId, now: clock.now())
        perform(actions, groupId: groupId)
        dropIfUnused(groupId)
        if case let .join(outcome)? = early.removeValue(forKey: token) { return .done(outcome) }
        return .pending(token)
    }

    public func sync(groupId: String, memberId: String, groupInstanceId: String?, generationId: Int32,
                     protocolType: String?, protocolName: String?, assignments: [String: [UInt8]]) async -> Ticket<SyncOutcome> {
        if groupId.isEmpty { return .done(.error(KafkaErrorCode.invalidGroupId.rawValue)) }
        if let code = await resident(groupId) { return .done(.error(code)) }
        guard groups[groupId] != nil else { return .done(.error(KafkaErrorCode.unknownMemberId.rawValue)) }
        if groups[groupId]!.consumer != nil {
            let outcome = groups[groupId]!.consumer!.classicSync(memberId: memberId, instanceId: groupInstanceId, generationId: generationId,
                                                                 protocolType: protocolType, protocolName: protocolName,
                                                                 now: clock.now(), config: config)
            deadlines[groupId] = nextDeadline(groupId)
            return .done(outcome)
        }
        let token = newToken()
        let actions = groups[groupId]!.machine.sync(
            memberId: memberId, groupInstanceId: groupInstanceId, generationId: generationId, protocolType: protocolType,
            protocolName: protocolName, assignments: assignments, token: token, now: clock.now())
        perform(actions, groupId: groupId)
        if case let .sync(outcome)? = early.removeValue(forKey: token) { return .done(outcome) }
        return .pending(token)
    }

    public func heartbeat(groupId: String, memberId: String, groupInstanceId: String?, generationId: Int32) async -> Int16 {
        if groupId.isEmpty { return KafkaErrorCode.invalidGroupId.rawValue }
        if let code = await resident(groupId) { return code }
        guard groups[groupId] != nil else { return KafkaErrorCode.unknownMemberId.rawValue }
        if groups[groupId]!.consumer != nil {
            let code = groups[groupId]!.consumer!.classicHeartbeat(memberId: memberId, instanceId: groupInstanceId,
                                                                   generationId: generationId, now: clock.now(), config: config)
            deadlines[groupId] = nextDeadline(groupId)
            return code
        }
        let code = groups[groupId]!.machine.heartbeat(memberId: memberId, groupInstanceId: groupInstanceId,
                                                      generationId: generationId, now: clock.now())
        deadlines[groupId] = nextDeadline(groupId)
        return code
    }

    /// Returns a group-level error code (0 if none) and one code per identity.
    public func leave(groupId: String, members identities: [(memberId: String, groupInstanceId: String?)]) async -> (Int16, [Int16]) {
        if groupId.isEmpty { return (KafkaErrorCode.invalidGroupId.rawValue, []) }
        if let code = await resident(groupId) { return (code, []) }
        guard groups[groupId] != nil else { return (0, identities.map { _ in KafkaErrorCode.unknownMemberId.rawValue }) }
        if groups[groupId]!.consumer != nil {
            let codes = groups[groupId]!.consumer!.classicLeave(identities)
            if codes.contains(0) {
                markDirty(groupId)
                downgradeIfOnlyClassicMembers(groupId)
            }
            deadlines[groupId] = nextDeadline(groupId)
            return (0, codes)
        }
        let (codes, actions) = groups[groupId]!.machine.leave(identities, now: clock.now())
        perform(actions, groupId: groupId)
        dropIfUnused(groupId)
        return (0, codes)
    }

    // MARK: Offsets

    /// Validates and queues a commit. `unknownGroupCode` is the answer when the group does not
    /// exist and the commit is not a standalone one (UNKNOWN_MEMBER_ID, or GROUP_ID_NOT_FOUND
    /// from v9). A pending ticket is completed by ``waitDurable(_:groupId:)``.
    public func commit(groupId: String, memberId: String, groupInstanceId: String?, generationId: Int32,
                       entries: [OffsetCommitEntry], unknownGroupCode: Int16, apiVersion: Int16 = 9) async -> Ticket<[PartitionResult]> {
        func all(_ code: Int16) -> Ticket<[PartitionResult]> {
            .done(entries.map { PartitionResult(topic: $0.partition.topic, partition: $0.partition.partition, errorCode: code) })
        }
        if groupId.isEmpty || groupKeyProblem(groupId) != nil { return all(KafkaErrorCode.invalidGroupId.rawValue) }
        if let code = await resident(groupId) { return all(code) }
        let standalone = generationId < 0 && memberId.isEmpty && groupInstanceId == nil
        if groups[groupId] == nil {
            guard standalone else { return all(unknownGroupCode) }
            guard ensureGroup(groupId) else { return all(KafkaErrorCode.coordinatorNotAvailable.rawValue) }
        }
        let code = groups[groupId]!.consumer != nil
            ? validateConsumerCommit(groupId, memberId: memberId, memberEpoch: generationId, apiVersion: apiVersion)
            : groups[groupId]!.machine.validateCommit(memberId: memberId, groupInstanceId: groupInstanceId,
                                                      generationId: generationId, now: clock.now())
        deadlines[groupId] = nextDeadline(groupId)
        if code != 0 {
            dropIfUnused(groupId)
            return all(code)
        }
        if !entries.contains(where: { $0.errorCode == 0 }) {
            dropIfUnused(groupId)
            return .done(entries.map { PartitionResult(topic: $0.partition.topic, partition: $0.partition.partition, errorCode: $0.errorCode) })
        }
        let token = newToken()
        groups[groupId]!.queued.append(PendingCommit(token: token, entries: entries))
        return .pending(token)
    }

    /// Committed offsets of a group: of the given partitions (nil: all it has). Returns nil
    /// with an error code when the coordinator cannot answer.
    public func committedOffsets(groupId: String, partitions: [TopicPartition]?, memberId: String? = nil,
                                 memberEpoch: Int32 = -1) async -> Result<[TopicPartition: CommittedOffset], GroupUnavailable> {
        if let code = await resident(groupId) { return .failure(GroupUnavailable(errorCode: code)) }
        if let code = consumerFetchRefusal(groupId, memberId: memberId, memberEpoch: memberEpoch) {
            return .failure(GroupUnavailable(errorCode: code))
        }
        guard let entry = groups[groupId] else { return .success([:]) }
        guard let partitions else { return .success(entry.offsets) }
        var found: [TopicPartition: CommittedOffset] = [:]
        for p in partitions { found[p] = entry.offsets[p] }
        return .success(found)
    }

    // MARK: Admin

    /// The groups this broker coordinates: those in memory and those with an object in the
    /// bucket (listed, and read on first listing so their state is known).
    public func listGroups(states: [String], types: [String]) async -> (Int16, [ListedGroup]) {
        if let code = unavailableCode() { return (code, []) }
        let wanted = Set(states.map { $0.lowercased() })
        let wantedTypes = Set(types.map { $0.lowercased() })
        let stored: [ObjectInfo]
        do {
            stored = try await store.listAll(prefix: prefix)
        } catch {
            logger.error("cannot list group objects", metadata: ["prefix": prefix, "store": store.location, "error": "\(error)"])
            return (KafkaErrorCode.coordinatorNotAvailable.rawValue, [])
        }
        for info in stored {
            guard let id = groupId(ofKey: info.key), isCoordinator(of: id), groups[id] == nil else { continue }
            if let code = await resident(id), code != KafkaErrorCode.notCoordinator.rawValue { return (code, []) }
        }
        let list = groups.values.filter { !$0.releasing && isCoordinator(of: $0.machine.groupId) && $0.machine.state != .dead }
            .map { e in
                if let c = e.consumer { return ListedGroup(groupId: c.groupId, protocolType: "consumer", state: c.stateName, type: "consumer") }
                return ListedGroup(groupId: e.machine.groupId, protocolType: e.machine.protocolType ?? "", state: e.machine.state.rawValue, type: "classic")
            }
            .filter { wanted.isEmpty || wanted.contains($0.state.lowercased()) }
            .filter { wantedTypes.isEmpty || wantedTypes.contains($0.type) }
            .sorted { $0.groupId < $1.groupId }
        return (0, list)
    }

    public func describe(groupId: String) async -> Result<GroupDescription, GroupUnavailable> {
        if let code = await resident(groupId) { return .failure(GroupUnavailable(errorCode: code)) }
        guard let m = groups[groupId]?.machine, groups[groupId]?.consumer == nil else {
            return .success(GroupDescription(groupId: groupId, state: .dead, protocolType: "", protocolName: "", members: []))
        }
        let stable = m.state == .stable
        let members = m.memberOrder.compactMap { m.members[$0] }.map {
            GroupDescription.Member(memberId: $0.memberId, groupInstanceId: $0.groupInstanceId, clientId: $0.clientId,
                                    clientHost: $0.clientHost, metadata: stable ? $0.metadata(for: m.protocolName) : [],
                                    assignment: stable ? $0.assignment : [])
        }
        return .success(GroupDescription(groupId: groupId, state: m.state, protocolType: m.protocolType ?? "",
                                         protocolName: stable ? (m.protocolName ?? "") : "", members: members))
    }

    /// Starts deleting a group: GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, or pending until its object
    /// is deleted (complete it with ``waitDurable(_:groupId:)``).
    public func delete(groupId: String) async -> Ticket<Int16> {
        if groupId.isEmpty { return .done(KafkaErrorCode.invalidGroupId.rawValue) }
        if let code = await resident(groupId) { return .done(code) }
        guard let entry = groups[groupId], entry.machine.state != .dead else { return .done(KafkaErrorCode.groupIdNotFound.rawValue) }
        guard entry.machine.isEmpty, entry.machine.state == .empty, entry.consumer?.members.isEmpty != false else {
            return .done(KafkaErrorCode.nonEmptyGroup.rawValue)
        }
        if entry.etag == nil && !entry.writing && entry.queued.isEmpty {
            groups[groupId] = nil
            deadlines[groupId] = nil
            dirty.remove(groupId)
            return .done(0)
        }
        _ = groups[groupId]!.machine.markDead()
        let token = newToken()
        groups[groupId]!.deleteWaiters.append(token)
        return .pending(token)
    }

    // MARK: Persistence

    /// The object key of a group: the prefix and the group id, with bytes other than
    /// `A-Z a-z 0-9 . _ -` percent-encoded.
    public nonisolated func groupKey(_ groupId: String) -> String {
        prefix + ObjectKey.escaped(groupId)
    }

    /// The group id of an object key made by ``groupKey(_:)``, or nil if the key is not one.
    public nonisolated func groupId(ofKey key: String) -> String? {
        guard key.hasPrefix(prefix) else { return nil }
        return ObjectKey.unescaped(key.dropFirst(prefix.count))
    }

    nonisolated func groupKeyProblem(_ groupId: String) -> String? {
        ObjectKey.problem(groupKey(groupId))
    }

    /// The single writer of one group: writes queued commits and membership changes (or deletes
    /// the group's object when it is Dead) until nothing is left, then returns. Concurrent
    /// callers return at once; their work is picked up by the running loop. A group fenced by
    /// another writer is forgotten (everything waiting on it gets NOT_COORDINATOR).
    func flush(_ groupId: String) async {
        guard let first = groups[groupId], !first.writing else { return }
        groups[groupId]!.writing = true
        let key = groupKey(groupId)
        defer {
            if groups[groupId]?.fenced == true {
                forget(groupId, errorCode: KafkaErrorCode.notCoordinator.rawValue)
            } else if let waiting = groups[groupId]?.writerWaiters {
                groups[groupId]!.writing = false
                groups[groupId]!.writerWaiters = []
                for waiter in waiting { waiter.resume() }
            }
        }
        while let entry = groups[groupId], !entry.fenced, !entry.queued.isEmpty || entry.metadataDirty || entry.machine.state == .dead {
            if entry.queued.isEmpty && !entry.metadataDirty {
                // Dead, with every commit written: delete the object (on failure the group is
                // Empty again and the loop ends).
                await deleteObject(groupId, key: key)
                continue
            }
            let batch = entry.queued
            let membership = entry.membershipWaiters
            groups[groupId]!.queued = []
            groups[groupId]!.membershipWaiters = []
            groups[groupId]!.metadataDirty = false
            var offsets = entry.offsets
            for commit in batch {
                for e in commit.entries where e.errorCode == 0 { offsets[e.partition] = e.offset }
                for p in commit.deletions { offsets[p] = nil }
            }
            let bytes = GroupRecord(groupId: groupId, snapshot: entry.machine.durableView, offsets: offsets, consumer: entry.consumer).encoded()
            let code = await write(groupId, key: key, bytes: bytes, etag: entry.etag)
            if code == 0 { groups[groupId]?.offsets = offsets }
            for token in membership { resolve(token, .membership(code)) }
            for commit in batch {
                resolve(commit.token, .commit(commit.results(code)))
            }
        }
    }

    /// One conditional write; returns 0 or the error code to answer the commits it carried.
    func write(_ groupId: String, key: String, bytes: [UInt8], etag: String?) async -> Int16 {
        do {
            let newTag = try await store.put(key, bytes, condition: etag.map { .ifMatch($0) } ?? .ifAbsent)
            groups[groupId]?.etag = newTag
            return 0
        } catch ObjectStoreError.preconditionFailed {
            // Our earlier write may have been applied although it failed (then the bucket holds
            // exactly these bytes). Otherwise another coordinator wrote or deleted the group:
            // this broker is fenced, and forgets the group when the write loop ends; its next
            // use (if it is placed here again) reads what the bucket holds.
            do {
                let current = try await store.get(key)
                if current.bytes == bytes {
                    groups[groupId]?.etag = current.etag
                    return 0
                }
                logger.warning("group object changed by another writer; giving the group up",
                               metadata: ["group.id": groupId, "key": key, "store": store.location])
            } catch ObjectStoreError.notFound {
                logger.warning("group object deleted by another writer; giving the group up",
                               metadata: ["group.id": groupId, "key": key, "store": store.location])
            } catch {
                logger.error("cannot re-read group object after a conflicting write; giving the group up",
                             metadata: ["group.id": groupId, "key": key, "error": "\(error)"])
            }
            groups[groupId]?.fenced = true
            return KafkaErrorCode.notCoordinator.rawValue
        } catch {
            logger.warning("writing group object failed", metadata: ["group.id": groupId, "key": key, "error": "\(error)"])
            return KafkaErrorCode.coordinatorNotAvailable.rawValue
        }
    }

    /// Deletes the object of a Dead group. Deletes are not conditional in the store, so the
    /// ETag is checked first: a group another coordinator has written since is given up, not
    /// deleted (a write racing this check can still be lost).
    func deleteObject(_ groupId: String, key: String) async {
        do {
            if let etag = groups[groupId]?.etag {
                let current: String?
                do {
                    current = try await store.head(key).etag
                } catch ObjectStoreError.notFound {
                    current = nil
                }
                if let current, current != etag {
                    logger.warning("group object changed by another writer; giving the group up",
                                   metadata: ["group.id": groupId, "key": key, "store": store.location])
                    groups[groupId]?.fenced = true
                    return
                }
            }
            try await store.delete(key)
            let waiting = groups[groupId]?.deleteWaiters ?? []
            groups[groupId]?.deleteWaiters = []
            for token in waiting { resolve(token, .delete(0)) }
            forget(groupId, errorCode: KafkaErrorCode.notCoordinator.rawValue)
        } catch {
            logger.warning("deleting group object failed", metadata: ["group.id": groupId, "key": key, "error": "\(error)"])
            let waiting = groups[groupId]?.deleteWaiters ?? []
            groups[groupId]?.deleteWaiters = []
            groups[groupId]?.machine.reviveFromDead()
            for token in waiting { resolve(token, .delete(KafkaErrorCode.coordinatorNotAvailable.rawValue)) }
        }
    }

    // MARK: Inspection (tests, metrics)

    /// The state machine of a group, if the coordinator holds it.
    public func group(_ groupId: String) -> GroupStateMachine? { groups[groupId]?.machine }
    public var groupCount: Int { groups.count }
}

/// The coordinator cannot answer (loading, or shut down); carries the error code to return.
public struct GroupUnavailable: Error, Sendable {
    public var errorCode: Int16
}
