import CFloeShims
import Foundation

/// Starts a thread that names itself `name` (the first 15 bytes: what `top -H`, `perf sched`
/// and `/proc/<pid>/task/*/comm` show) before running `body`. Foundation's `Thread.name` does
/// not reach the kernel on Linux, so without this every thread shows its creator's name.
public func startNamedThread(_ name: String, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread {
        _ = floe_thread_set_name(name)
        body()
    }
    thread.name = name
    thread.start()
}
