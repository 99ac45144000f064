#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Support

/// Process CPU time and resident memory from /proc/self, exported as Prometheus gauges in the
/// standard `process_*` names.
enum ProcessStats {
    /// (CPU seconds user+system, resident bytes, open file descriptors).
    static func read() -> (cpuSeconds: Double, residentBytes: Double, openFDs: Double) {
        var cpu = 0.0, rss = 0.0, fds = 0.0
        let stat: String
        do {
            stat = try String(contentsOfFile: "/proc/self/stat", encoding: .utf8)
        } catch {
            return (0, 0, 0)  // no /proc (not Linux): the gauges stay at zero
        }
        if let close = stat.lastIndex(of: ")") {
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // fields[0] is state (field 3); utime is field 14, stime 15, rss 24.
            if fields.count > 21 {
                let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
                cpu = ((Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)) / ticks
                rss = (Double(fields[21]) ?? 0) * Double(sysconf(Int32(_SC_PAGESIZE)))
            }
        }
        do {
            fds = Double(try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count)
        } catch {
            fds = 0
        }
        return (cpu, rss, fds)
    }

    static func update(_ metrics: MetricsRegistry) {
        let s = read()
        metrics.gauge("process_cpu_seconds_total", help: "User and system CPU time spent, in seconds").set(s.cpuSeconds)
        metrics.gauge("process_resident_memory_bytes", help: "Resident memory size in bytes").set(s.residentBytes)
        metrics.gauge("process_open_fds", help: "Open file descriptors").set(s.openFDs)
    }
}
