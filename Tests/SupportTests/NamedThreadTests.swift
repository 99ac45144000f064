import Foundation
import Synchronization
import Testing
@testable import Support

/// `startNamedThread`: the kernel sees the name (what `perf sched` and `top -H` show).
struct NamedThreadTests {
    @Test func theKernelSeesTheThreadsName() async throws {
        #if os(Linux)
        let seen = Mutex<String?>(nil)
        let done = DispatchSemaphore(value: 0)
        startNamedThread("floe-test-named-thread") {  // longer than 15 bytes: cut to 15
            seen.withLock { $0 = try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8) }
            done.signal()
        }
        done.wait()
        #expect(seen.withLock { $0 } == "floe-test-named\n")
        #endif
    }
}
