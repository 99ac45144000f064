import FloeTestSupport
import ObjectStore
import Support
import Testing
@testable import Broker

/// The controller lease in the bucket: two brokers' `ControllerLease`s over one in-memory bucket,
/// each with its own manual clock (expiry is measured on the reader's clock only).
@Suite struct ControllerLeaseTests {
    let timing = ControllerLease.Timing(duration: .seconds(6), renewDeadline: .seconds(4), retry: .milliseconds(500))

    func lease(_ store: MemoryObjectStore, node: Int32, incarnation: String, clock: ManualClock) -> ControllerLease {
        ControllerLease(store: store, key: "cluster/controller", node: node, incarnation: incarnation, host: "h\(node)", port: 9092,
                        timing: timing, clock: clock)
    }

    @Test func anExpiredLeaseIsTakenAtTheNextEpochAndTheOldHolderLearnsItLost() async throws {
        let store = MemoryObjectStore()
        let clockA = ManualClock(), clockB = ManualClock()
        let a = lease(store, node: 1, incarnation: "a", clock: clockA)
        let b = lease(store, node: 2, incarnation: "b", clock: clockB)

        #expect(try await a.tick() == .leading(epoch: 1, acquired: true))
        #expect(a.leaderEpoch == 1)
        let first = try await b.tick()
        #expect(first == .following(try await a.read()?.0, lostLeadership: false))

        // A renews in time: B's observation starts again at every new version.
        clockB.advance(by: .seconds(5))
        clockA.advance(by: .seconds(2))
        #expect(try await a.tick() == .leading(epoch: 1, acquired: false))
        clockB.advance(by: .seconds(5))
        let stillFollowing = try await b.tick()
        #expect(stillFollowing != .leading(epoch: 2, acquired: true, expiredHolder: 1))

        // A stops renewing: after a whole duration of B's clock, B takes the lease at epoch 2.
        clockB.advance(by: .seconds(6))
        #expect(try await b.tick() == .leading(epoch: 2, acquired: true, expiredHolder: 1))
        #expect(b.leaderEpoch == 2)

        // A's next renewal is refused by the ETag: it has lost, and says so once.
        let aAfter = try await a.tick()
        #expect(aAfter == .following(try await b.read()?.0, lostLeadership: true))
        #expect(a.leaderEpoch == nil)
    }

    @Test func aReleasedLeaseAndOneOfAnEarlierIncarnationAreFreeAtOnce() async throws {
        let store = MemoryObjectStore()
        let clock = ManualClock()
        let a = lease(store, node: 1, incarnation: "a", clock: clock)
        #expect(try await a.tick() == .leading(epoch: 1, acquired: true))

        // Node 1 restarted (a new incarnation): the old process is gone, no need to wait.
        let a2 = lease(store, node: 1, incarnation: "a2", clock: clock)
        #expect(try await a2.tick() == .leading(epoch: 2, acquired: true))

        // A clean stop releases: node 2 takes over without waiting, and nobody expired.
        await a2.release()
        #expect(a2.leaderEpoch == nil)
        let b = lease(store, node: 2, incarnation: "b", clock: clock)
        #expect(try await b.tick() == .leading(epoch: 3, acquired: true))
    }

    @Test func aLeaderPastItsRenewDeadlineNoLongerClaimsTheEpoch() async throws {
        let store = MemoryObjectStore()
        let clock = ManualClock()
        let a = lease(store, node: 1, incarnation: "a", clock: clock)
        #expect(try await a.tick() == .leading(epoch: 1, acquired: true))
        clock.advance(by: .seconds(3))
        #expect(a.leaderEpoch == 1)
        clock.advance(by: .seconds(1))
        #expect(a.leaderEpoch == nil, "4 s without a renewal is the renew deadline")
    }
}
