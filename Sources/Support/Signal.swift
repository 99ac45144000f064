import Synchronization

/// A wake-up flag: `fire()` wakes the current or next `wait`.
public final class Signal: Sendable {
    private struct State {
        var fired = false
        var waiter: CheckedContinuation<Void, Never>? = nil
    }
    private let state = Mutex(State())

    public init() {}

    public func fire() {
        let w = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let w = s.waiter { s.waiter = nil; return w }
            s.fired = true
            return nil
        }
        w?.resume()
    }

    /// Returns when fired, after `duration` on `clock`, or when cancelled.
    public func wait(orSleep duration: Duration, clock: any FloeClock) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do { try await clock.sleep(for: duration) } catch { return }
            }
            group.addTask { await self.waitFired() }
            await group.next()
            group.cancelAll()
            self.fire()  // release waitFired if the sleep won
            await group.waitForAll()
            self.state.withLock { $0.fired = false }
        }
    }

    private func waitFired() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.fired { s.fired = false; return true }
                s.waiter = c
                return false
            }
            if now { c.resume() }
        }
    }
}
