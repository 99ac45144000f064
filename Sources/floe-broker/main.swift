#if canImport(Glibc)
import Glibc
#endif
import Broker
import BrokerSettings
import CFloeShims
import Dispatch
import Foundation
import ObjectStore
import Support
import Synchronization

let usage = """
    floe-broker \(FloeVersion.string): a Kafka-compatible broker whose state lives in object storage.

    USAGE: floe-broker [options]

    With no options it serves on 127.0.0.1:9092 with the local-file WAL and ./floe-data as the bucket.

    OPTIONS (each also FLOE_<NAME> in the environment and <name> in the --config file;
    precedence: flag > environment > file > default):
      --listen HOST:PORT       Kafka listener (default 127.0.0.1:9092)
      --advertise HOST[:PORT]  address given to clients (default: the listen address)
      --storage URL            bucket: file:///path (default file://./floe-data),
                               s3://bucket/prefix?endpoint=...&region=...&path_style=true&anonymous=true,
                               memory://name (tests)
      --wal file|object        write-ahead log kind (default: file for file:// storage, object for s3://;
                               memory only with memory:// storage)
      --node-id N              broker id (default 0)
      --http HOST:PORT         /metrics, /healthz, /readyz, GET /drain (default: off)
      --config FILE            Java-style properties file (broker settings and Kafka broker properties)
      --log-level LEVEL        trace, debug, info, notice, warning, error (default info)
      --set KEY=VALUE          any other setting (e.g. --set num.partitions=3); may repeat;
                               every setting is also a flag: --num-partitions 3
      --version                print the version and exit
      -h, --help               print this help and exit

    Configuration is strict: an unknown setting, a value of the wrong type or out of range, or a
    word that is not an option stops the broker with one line naming it (exit status 2), before
    anything is created. See docs/broker.md for every setting.
    """

/// The executable's flow, outside top-level code so that nothing here is main-actor isolated
/// (signal handlers run on a dispatch queue).
enum BrokerMain {
    static func run() async -> Never {
        // Freed upload, compaction and fetch buffers go back to the system instead of glibc's
        // heaps: measured peak RSS 766 → 441 MiB under produce + catch-up (docs/benchmarks.md).
        _ = floe_malloc_configure(128 << 10, Int32(max(2, ProcessInfo.processInfo.activeProcessorCount)))
        let line: BrokerCommandLine
        do {
            line = try BrokerCommandLine.parse(Array(CommandLine.arguments.dropFirst()))
        } catch {
            fail(error.message, code: 2)
        }
        if line.help {
            print(usage)
            exit(0)
        }
        if line.version {
            print("floe-broker \(FloeVersion.string)")
            exit(0)
        }

        // Nothing is created until every setting is valid: read, merge and check them all first.
        var fileValues: [String: String] = [:]
        let environment = ProcessInfo.processInfo.environment
        let pathMap = PathMap(environment["FLOE_TEST_PATH_MAP"] ?? "")
        var configPath: String?
        if let configured = line.configPath ?? environment["FLOE_CONFIG"] {
            let path = pathMap.apply(configured)
            configPath = path
            let text: String
            switch readTextFile(path) {
            case .success(let t): text = t
            case .failure(let reason): fail("cannot read the config file \(path) (\(line.configPath != nil ? "--config" : "FLOE_CONFIG")): \(reason.text)", code: 2)
            }
            do {
                fileValues = try BrokerConfig.parseProperties(text, path: path)
            } catch {
                fail("\(error)", code: 2)
            }
        }
        var config = BrokerConfig.resolve(file: fileValues, environment: environment, flags: line.values, filePath: configPath,
                                          flagOrigins: line.origins)
        if !pathMap.isEmpty {
            // Tests only (the fake kubelet): container paths live under a temporary directory.
            if let dir = config["wal.dir"], !dir.isEmpty { config.set("wal.dir", pathMap.apply(dir), config.sources["wal.dir"] ?? .flag) }
            if let storage = config["storage"], storage.hasPrefix("file:///") {
                let mapped = "file://" + pathMap.apply(String(storage.dropFirst("file://".count)))
                config.set("storage", mapped, config.sources["storage"] ?? .flag)
            }
            for key in ["ssl.certificate.file", "ssl.key.file", "ssl.client.ca.file", "inter.broker.ssl.ca.file", "sasl.users.file"] {
                if let path = config[key], !path.isEmpty { config.set(key, pathMap.apply(path), config.sources[key] ?? .flag) }
            }
            if let storage = config["storage"], let mapped = pathMap.applyToQueryParameter("ca_file", in: storage) {
                config.set("storage", mapped, config.sources["storage"] ?? .flag)
            }
        }
        do {
            try config.validate()
        } catch {
            fail("\(error)", code: 2)
        }
        let level = Logger.Level(name: config["log.level"] ?? "info") ?? .info
        let logger = Logger(label: "floe-broker", level: level, sink: StandardErrorLogSink.shared)

        let storageText = config["storage"] ?? "file://./floe-data"
        let storageURL: StorageURL
        do {
            storageURL = try StorageURL(normalizingRelativeFile(storageText))
        } catch ObjectStoreError.invalidStorageURL(_, let reason) {
            fail("invalid \(config.origin("storage").describe("storage", storageText)): \(reason)", code: 2)
        } catch {
            fail("invalid \(config.origin("storage").describe("storage", storageText)): \(error)", code: 2)
        }
        // Directories that will be created must be creatable, and ports free, before anything is.
        if case let .file(path) = storageURL.kind, let problem = StartupChecks.directoryProblem(path, create: false) {
            fail("invalid \(config.origin("storage").describe("storage", storageText)): \(problem)", code: 2)
        }
        if BrokerStorage.resolvedWALKind(url: storageURL, walKind: config["wal"] ?? "") == "file" {
            let dir = BrokerStorage.walDirectory(url: storageURL, config: config)
            if let problem = StartupChecks.directoryProblem(dir, create: false) {
                let named = (config["wal.dir"] ?? "").isEmpty ? "the WAL directory \(dir) (wal.dir's default)"
                    : config.origin("wal.dir").describe("wal.dir", config["wal.dir"] ?? "")
                fail("invalid \(named): \(problem)", code: 2)
            }
        }
        for key in ["listen", "external.listen", "http"] {
            // validate() checked the syntax, so a parse failure cannot happen here.
            guard let text = config[key], !text.isEmpty, let address = try? SocketAddress(parsing: text) else { continue }
            if let problem = StartupChecks.listenProblem(host: address.host, port: address.port) {
                fail("cannot listen on \(config.origin(key).describe(key, text)): \(problem)")
            }
        }
        let metrics = MetricsRegistry()

        // Signals are watched before the broker starts: its port is open (and a supervisor may
        // send SIGTERM) before `Broker.start` returns. A signal that arrives during start-up is
        // remembered and stops the broker gracefully as soon as it exists.
        let stopper = Stopper()
        let signals = DispatchQueue(label: "floe-broker.signals")
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            let source = DispatchSource.makeSignalSource(signal: sig, queue: signals)
            source.setEventHandler {
                logger.notice("signal received; shutting down gracefully", metadata: ["signal": sig == SIGTERM ? "SIGTERM" : "SIGINT"])
                stopper.stop()
            }
            source.resume()
            sources.append(source)
        }

        let broker: Broker
        do {
            let store = try storageURL.open(logger: logger, metrics: metrics)
            // Before the WAL: opening it would fence a live broker that has this node id.
            try await ClusterMember.refuseLiveDuplicate(store: store, prefix: Broker.Settings().prefix, node: Int32(try config.int("node.id")),
                                                  tls: try config.interBrokerTLS())
            let storage = try await BrokerStorage.open(store: store, url: storageURL, walKind: config["wal"] ?? "", config: config,
                                                       metrics: metrics, logger: logger)
            var settings = Broker.Settings(config: config)
            settings.objectWAL = BrokerStorage.resolvedWALKind(url: storageURL, walKind: config["wal"] ?? "") == "object"
            settings.recoverWAL = BrokerStorage.walRecoverer(store: store, config: config, logger: logger)
            settings.onStorageUnrecoverable = { reason in fail("storage cannot recover without a restart: \(reason)", code: 3) }
            broker = try await Broker.start(settings: settings, store: store, storage: storage, metrics: metrics, logger: logger)
        } catch {
            fail("cannot start: \(error)")
        }
        stopper.started(broker)

        // A broker started by `floe-operator local` stops cleanly if that process dies without
        // stopping it (SIGKILL, a crash): otherwise it would hold its port and the next run's
        // broker could not start. The parent sets FLOE_EXIT_WITH_PARENT to its pid.
        var orphanWatch: DispatchSourceTimer?
        if let text = ProcessInfo.processInfo.environment["FLOE_EXIT_WITH_PARENT"], let parent = Int32(text) {
            let timer = DispatchSource.makeTimerSource(queue: signals)
            timer.schedule(deadline: .now() + 1, repeating: 1)
            timer.setEventHandler {
                guard getppid() != parent else { return }
                logger.notice("the process that started this broker is gone; shutting down gracefully", metadata: ["parent": "\(parent)"])
                timer.cancel()
                broker.shutdown()
            }
            timer.resume()
            orphanWatch = timer
        }

        do {
            try await broker.run()
        } catch {
            fail("stopped with an error: \(error)")
        }
        orphanWatch?.cancel()
        // The sources must live until here: an optimized build releases a local after its last
        // use, and a released source delivers nothing (the signal stays ignored). Cancelling
        // them is that last use.
        for source in sources { source.cancel() }
        exit(0)
    }
}

/// Prints `floe-broker: MESSAGE` as one line on stderr (line breaks in a server's or the
/// system's text are escaped) and exits with `code`: 2 for a wrong command line or setting,
/// 1 for a failure to start or run.
/// Stops the broker on a signal, also one that came while it was starting.
final class Stopper: Sendable {
    private let state = Mutex<(broker: Broker?, requested: Bool)>((nil, false))

    func stop() {
        let broker = state.withLock { s in
            s.requested = true
            return s.broker
        }
        broker?.shutdown()
    }

    func started(_ broker: Broker) {
        let requested = state.withLock { s in
            s.broker = broker
            return s.requested
        }
        if requested { broker.shutdown() }
    }
}

func fail(_ message: String, code: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("floe-broker: \(oneLine(message))\n".utf8))
    exit(code)
}

/// `text` on one line: runs of blanks and line breaks become one space, cut at 2,000 characters.
func oneLine(_ text: String) -> String {
    var out = ""
    var pendingSpace = false
    for c in text {
        if c.isWhitespace || c.isNewline {
            pendingSpace = !out.isEmpty
            continue
        }
        if pendingSpace { out.append(" ") }
        pendingSpace = false
        out.append(c)
        if out.count >= 2_000 {
            out += " …"
            break
        }
    }
    return out
}

struct FileReadFailure: Error { let text: String }

/// The file's text, or the system's reason it cannot be read ("No such file or directory").
func readTextFile(_ path: String) -> Result<String, FileReadFailure> {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return .failure(FileReadFailure(text: String(cString: strerror(errno)))) }
    defer { close(fd) }
    var info = stat()
    if fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR { return .failure(FileReadFailure(text: "it is a directory, not a file")) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            return .failure(FileReadFailure(text: String(cString: strerror(errno))))
        }
        if n == 0 { break }
        bytes += chunk[0..<n]
        if bytes.count > 16 << 20 { return .failure(FileReadFailure(text: "larger than 16 MiB; not a properties file")) }
    }
    guard let text = String(validating: bytes, as: UTF8.self) else { return .failure(FileReadFailure(text: "not UTF-8 text")) }
    return .success(text)
}

/// `FLOE_TEST_PATH_MAP=/etc/floe=/tmp/pod-0/etc/floe,/var/lib/floe/wal=/tmp/pod-0/wal`: container
/// paths and where they are on this machine, for the fake API server's kubelet simulation
/// (docs/fake-apiserver.md), which runs pods as plain processes. Applied to the `--config` path,
/// `wal.dir`, a `file://` storage path, the TLS and SASL files (`ssl.*.file`,
/// `inter.broker.ssl.ca.file`, `sasl.users.file`) and the storage URL's `ca_file`; the longest
/// matching prefix wins. Not a setting: production never sets it.
struct PathMap {
    let entries: [(from: String, to: String)]

    init(_ text: String) {
        entries = text.split(separator: ",").compactMap { item in
            guard let eq = item.firstIndex(of: "=") else { return nil }
            return (String(item[..<eq]), String(item[item.index(after: eq)...]))
        }.sorted { $0.from.count > $1.from.count }
    }

    var isEmpty: Bool { entries.isEmpty }

    func apply(_ path: String) -> String {
        for (from, to) in entries where path == from || path.hasPrefix(from.hasSuffix("/") ? from : from + "/") {
            return to + path.dropFirst(from.count)
        }
        return path
    }

    /// `url` with the path in its query parameter `name` mapped (nil: no such parameter).
    /// Example: `s3://b/p?ca_file=/var/run/secrets/floe/s3-ca/ca.crt&region=x`.
    func applyToQueryParameter(_ name: String, in url: String) -> String? {
        guard let q = url.firstIndex(of: "?") else { return nil }
        var changed = false
        let items = url[url.index(after: q)...].split(separator: "&", omittingEmptySubsequences: false).map { item -> String in
            guard item.hasPrefix(name + "=") else { return String(item) }
            changed = true
            return name + "=" + apply(String(item.dropFirst(name.count + 1)))
        }
        return changed ? String(url[...q]) + items.joined(separator: "&") : nil
    }
}

/// `file://./x` and `file://x` name a directory relative to the working directory.
func normalizingRelativeFile(_ text: String) -> String {
    guard text.hasPrefix("file://"), !text.hasPrefix("file:///") else { return text }
    let rest = String(text.dropFirst("file://".count))
    let path = URL(fileURLWithPath: rest, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)).standardizedFileURL.path
    return "file://" + path
}

await BrokerMain.run()
