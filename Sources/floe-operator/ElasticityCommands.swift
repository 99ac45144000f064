import Foundation
import HTTPClient
import KafkaClient
import Operator
import Support
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

let elasticityUsage = """
      local                  run a Floe cluster on this machine: brokers as child processes on one
                             bucket directory, autoscaled and balanced; prints a live view; Ctrl-C
                             stops everything cleanly
        --data-dir=DIR                      bucket, logs (default ./floe-data)
        --port=P                            broker n listens on 127.0.0.1:P+n-1 (default 9092: the
                                            bootstrap); its HTTP (/metrics, /readyz) on P+100+n-1
        --min-brokers=N --max-brokers=N     autoscaling bounds (default 1, 4)
        --target-bytes-in=RATE              per-broker bytes in target (default 2MiB/s)
        --target-bytes-out=RATE             per-broker bytes out target (default: not used)
        --tolerance=PCT                     (default 10)
        --scale-up-window=S --scale-down-window=S   stabilization (default 10, 60)
        --scale-up-step=N --scale-down-step=N       most brokers per step (default 4, 1)
        --balance-interval=S --move-cooldown=S --max-moves=N --band=PCT   balancer (30, 30, 10, 20)
        --tick=S --window=S                 decide every S s; rates over the last S s (default 2, 10)
        --no-autoscaling --dry-run          keep the broker count / decide without acting
        --schedule='NAME|CRON|MINUTES|FLOOR[|TZ[|LEAD_S]]'   known peaks (';' between several): FLOOR is
                                            brokers (8) or expected bytes in (400MiB/s); TZ default UTC,
                                            lead default 300 s
        --predictive[=MARGIN_PCT]           predictive floor from the daily curve (margin default 20)
        --lookahead=MIN                     predictive lookahead (default 60)
        --broker-bin=PATH                   floe-broker (default: next to this binary, or $FLOE_BROKER_BIN)
        --admin-user=NAME --admin-password-file=PATH   the operator's SASL (SCRAM-SHA-512) user on the brokers
        --tls-ca-file=PATH                  verify the brokers' TLS certificates with this CA bundle
        --broker-config=PATH                a properties file every broker also reads (e.g. its
                                            security.protocol, ssl.* and sasl.users.file settings)
        --view=auto|redraw|log              live view redrawn in place (auto: on a terminal) or printed
        --http=HOST:PORT                    web console (docs/console.md) and /healthz (default
                                            127.0.0.1:8080, skipped with a warning when taken; "off")
        --log-level=LEVEL

      plan                   print the balancer's plan for a running cluster, without moving anything
        --bootstrap=HOST:PORT               (default 127.0.0.1:9092)
        --http-port-offset=N                broker /metrics at its Kafka port + N (default 100, as local)
        --sample-seconds=S                  measure rates over S seconds (default 10)
        --drain=ID,ID                       plan as if these brokers were draining
        --band=PCT --max-moves=N            (default 20, 10)

      simulate               replay a load trace through the autoscaler; print brokers over time and
                             broker-hours against a cluster sized statically for the peak
        --trace=festival|festival-week|PATH.csv
                                            a synthetic day with a 20:00 peak; a week of daily curves
                                            with one 10x hour (compares reactive, + schedule,
                                            + predictive, + both); or seconds,bytes_in rows
        --low=RATE --high=RATE              festival trace range (default 20MiB/s, 400MiB/s)
        --daily=RATE --festival=RATE        festival-week: the evening rush and the festival hour
                                            (default 100MiB/s, 1000MiB/s; low 10MiB/s)
        --start=ISO8601                     wall-clock time of the trace's start (festival-week:
                                            2026-11-23T00:00:00Z, a Monday: the festival is Friday 20:00)
        --schedule=... --predictive[=PCT] --lookahead=MIN   as for local; --compare runs all four
                                            strategies on any trace
        --strategy=reactive|schedule|predictive|both   one of them, with brokers over time
        --target-bytes-in=RATE              per-broker target (default 50MiB/s)
        --min-brokers=N --max-brokers=N --tolerance=PCT --scale-up-window=S --scale-down-window=S
        --scale-up-step=N --scale-down-step=N   as for local (defaults: the CRD's)
        --ready-delay=S                     a new broker carries load after S s (default 30)
        --noise=PCT                         uniform noise on the load (default 0)
    """

/// Reads an option with a parser, failing with a message naming the option.
func option<T>(_ args: CommandLineArguments, _ name: String, _ command: String, _ parse: (String) -> T?) -> T? {
    guard let text = args.value(name) else { return nil }
    guard let v = parse(text) else { fail("\(command): --\(name) has a bad value \"\(text)\"") }
    return v
}

func positive(_ s: String) -> Double? { Double(s).flatMap { $0 >= 0 ? $0 : nil } }
func count(_ s: String) -> Int32? { Int32(s).flatMap { $0 >= 1 ? $0 : nil } }

/// The autoscaling spec from command-line options, over the given defaults.
func autoscalingSpec(_ args: CommandLineArguments, _ command: String, min: Int32, max: Int32, targetIn: String, upWindow: Int32, downWindow: Int32) -> AutoscalingSpec {
    let targetInBytes = option(args, "target-bytes-in", command, ByteRate.parse) ?? ByteRate.parse(targetIn)!
    let spec = AutoscalingSpec(
        enabled: !args.has("no-autoscaling"),
        minBrokers: option(args, "min-brokers", command, count) ?? min,
        maxBrokers: option(args, "max-brokers", command, count) ?? max,
        targets: AutoscalingTargets(
            bytesInPerSecond: Int64(targetInBytes),
            bytesOutPerSecond: option(args, "target-bytes-out", command, ByteRate.parse).map { Int64($0) }),
        tolerancePercent: option(args, "tolerance", command) { Int32($0).flatMap { (0...100).contains($0) ? $0 : nil } } ?? 10,
        scaleUp: ScalingBehavior(
            stabilizationWindowSeconds: option(args, "scale-up-window", command) { Int32($0) } ?? upWindow,
            maxStepBrokers: option(args, "scale-up-step", command, count) ?? FloeDefaults.scaleUpMaxStep),
        scaleDown: ScalingBehavior(
            stabilizationWindowSeconds: option(args, "scale-down-window", command) { Int32($0) } ?? downWindow,
            maxStepBrokers: option(args, "scale-down-step", command, count) ?? FloeDefaults.scaleDownMaxStep),
        dryRun: args.has("dry-run"),
        schedules: args.value("schedule").map { scheduleSpecs($0, command) },
        predictive: predictiveSpec(args, command))
    let problems = FloeClusterValidation.autoscalingProblems(spec, replicas: nil)
    if !problems.isEmpty { fail("\(command): " + problems.joined(separator: "; ")) }
    return spec
}

/// `NAME|CRON|MINUTES|FLOOR[|TZ[|LEAD]]`, several separated by `;`. FLOOR is a broker count or a rate.
func scheduleSpecs(_ text: String, _ command: String) -> [ScheduleSpec] {
    text.split(separator: ";").map { item in
        let f = item.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard f.count >= 4, f.count <= 6, let minutes = Int32(f[2]) else {
            fail("\(command): --schedule \"\(item)\" must be NAME|CRON|MINUTES|FLOOR[|TZ[|LEAD_SECONDS]]")
        }
        var spec = ScheduleSpec(name: f[0], start: f[1], timeZone: f.count > 4 && !f[4].isEmpty ? f[4] : nil, durationMinutes: minutes)
        if let n = Int32(f[3]) {
            spec.minBrokers = n
        } else if let rate = ByteRate.parse(f[3]) {
            spec.expectedBytesInPerSecond = Int64(rate)
        } else {
            fail("\(command): --schedule \"\(item)\": floor \"\(f[3])\" is neither a broker count nor a rate")
        }
        if f.count > 5 {
            guard let lead = Int32(f[5]) else { fail("\(command): --schedule \"\(item)\": lead \"\(f[5])\" is not seconds") }
            spec.leadTimeSeconds = lead
        }
        return spec
    }
}

/// `--predictive[=MARGIN]` and `--lookahead=MIN`.
func predictiveSpec(_ args: CommandLineArguments, _ command: String) -> PredictiveSpec? {
    guard args.has("predictive") || args.value("predictive") != nil else { return nil }
    return PredictiveSpec(
        enabled: true, lookaheadMinutes: option(args, "lookahead", command) { Int32($0) },
        marginPercent: option(args, "predictive", command) { Int32($0) })
}

func runLocal() -> Never {
    let command = "local"
    let args = CommandLineArguments(Array(CommandLine.arguments.dropFirst()), booleanFlags: ["help", "version", "h", "no-autoscaling", "dry-run"])
    let known: Set<String> = [
        "data-dir", "port", "min-brokers", "max-brokers", "target-bytes-in", "target-bytes-out", "tolerance", "scale-up-window",
        "scale-down-window", "scale-up-step", "scale-down-step", "balance-interval", "move-cooldown", "max-moves", "band", "tick", "window",
        "no-autoscaling", "dry-run", "broker-bin", "view", "log-level", "schedule", "predictive", "lookahead", "http",
        "admin-user", "admin-password-file", "tls-ca-file", "broker-config",
    ]
    if let bad = args.unknown(known: known).first { fail("local: unknown option --\(bad)") }
    var access = KafkaAccess.plaintext
    if let user = args.value("admin-user") {
        guard let path = args.value("admin-password-file") else { fail("local: --admin-user needs --admin-password-file=PATH") }
        do {
            access.password = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .newlines)
        } catch {
            fail("local: cannot read --admin-password-file \(path): \(error)")
        }
        access.username = user
    }
    if let path = args.value("tls-ca-file") {
        do { access.caPEM = try String(contentsOfFile: path, encoding: .utf8) } catch { fail("local: cannot read --tls-ca-file \(path): \(error)") }
    }
    let spec = autoscalingSpec(args, command, min: 1, max: 4, targetIn: "2MiB/s", upWindow: 10, downWindow: 60)
    var balancer = BalancerSettings(
        BalancingSpec(
            maxMovesPerRound: option(args, "max-moves", command, count) ?? 10,
            tolerancePercent: option(args, "band", command) { Int32($0).flatMap { (1...100).contains($0) ? $0 : nil } } ?? 20,
            moveCooldownSeconds: option(args, "move-cooldown", command) { Int32($0) } ?? 30),
        targets: spec.targets)
    balancer.dryRun = args.has("dry-run")
    let settings = ElasticitySettings(
        autoscaling: AutoscalerSettings(spec), autoscalingEnabled: spec.isEnabled, balancer: balancer,
        balancingInterval: option(args, "balance-interval", command, positive) ?? 30,
        tick: option(args, "tick", command, positive) ?? 2, loadWindow: option(args, "window", command, positive) ?? 10,
        prescale: prescalePolicy(spec, command))
    let port = option(args, "port", command) { Int($0).flatMap { (1...65000).contains($0) ? $0 : nil } } ?? 9092
    let dataDir = URL(fileURLWithPath: args.value("data-dir") ?? "floe-data").standardizedFileURL.path
    let brokerBin = args.value("broker-bin") ?? ProcessInfo.processInfo.environment["FLOE_BROKER_BIN"] ?? siblingBinary("floe-broker")
    guard FileManager.default.isExecutableFile(atPath: brokerBin) else {
        fail("local: no floe-broker at \(brokerBin); build it (swift build -c release) or pass --broker-bin")
    }
    let view = args.value("view") ?? "auto"
    guard ["auto", "redraw", "log"].contains(view) else { fail("local: --view must be auto, redraw or log") }
    let redraw = view == "redraw" || (view == "auto" && isatty(STDOUT_FILENO) == 1)
    guard let level = Logger.Level(name: args.value("log-level") ?? "notice") else { fail("local: unknown --log-level") }
    let logger = Logger(label: "floe-operator", level: level)
    let http = args.value("http") ?? "127.0.0.1:8080"
    var options = LocalRuntime.Options(
        fleet: .init(brokerBinary: brokerBin, dataDirectory: dataDir, kafkaPort: port, httpPort: port + 100,
                     extraArguments: args.value("broker-config").map { ["--config=\($0)"] } ?? []),
        elasticity: settings, redraw: redraw, access: access, httpAddress: http == "off" ? nil : http)
    // The default port may be taken (another run, another tool): the cluster runs without its console.
    options.httpOptional = args.value("http") == nil
    let runtime = LocalRuntime(options: options, logger: logger)
    runUntilSignal(logger: logger) { try await runtime.run() }
}

func prescalePolicy(_ spec: AutoscalingSpec, _ command: String) -> PrescalePolicy {
    do throws(OperatorError) { return try PrescalePolicy(spec) } catch { fail("\(command): \(error)") }
}

/// A binary in the same directory as this one.
func siblingBinary(_ name: String) -> String {
    URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent(name).path
}

func runPlan() -> Never {
    let command = "plan"
    let args = CommandLineArguments(Array(CommandLine.arguments.dropFirst()))
    if let bad = args.unknown(known: ["bootstrap", "http-port-offset", "sample-seconds", "drain", "band", "max-moves"]).first {
        fail("plan: unknown option --\(bad)")
    }
    let bootstrapText = args.value("bootstrap") ?? "127.0.0.1:9092"
    guard let bootstrap = try? BrokerAddress(parsing: bootstrapText) else { fail("plan: --bootstrap must be HOST:PORT, got \(bootstrapText)") }
    let offset = option(args, "http-port-offset", command) { Int($0) } ?? 100
    let sample = option(args, "sample-seconds", command, positive) ?? 10
    let drain = Set((args.value("drain") ?? "").split(separator: ",").compactMap { Int32($0) })
    let settings = BalancerSettings(
        BalancingSpec(
            maxMovesPerRound: option(args, "max-moves", command, count) ?? 10,
            tolerancePercent: option(args, "band", command) { Int32($0) } ?? 20, moveCooldownSeconds: 0),
        targets: nil)
    runUntilSignal(logger: Logger(label: "floe-operator", level: .warning)) {
        let admin = KafkaAdminClient(bootstrap: [bootstrap], clientId: "floe-operator-plan")
        defer { admin.close() }
        let http = try HTTPClient()
        defer { http.shutdown() }
        let metadata = try await admin.metadata()
        var tracker = LoadTracker(windowSeconds: sample * 2, minimumSpanSeconds: sample / 2)
        for (i, time) in [0.0, sample].enumerated() {
            if i > 0 { try await Task.sleep(for: .milliseconds(Int64(sample * 1000))) }
            for b in metadata.brokers {
                let url = "http://\(b.host):\(b.port + offset)/metrics"
                let r = try? await http.execute(HTTPRequest(method: "GET", url: url, timeout: .seconds(5)))
                tracker.record(broker: b.id, at: time, r.flatMap { $0.status == 200 ? BrokerScrape.parse($0.bodyText) : nil })
            }
        }
        let unknown = metadata.brokers.map(\.id).filter { tracker.load(of: $0) == nil }
        if !unknown.isEmpty { print("warning: no metrics from broker(s) \(unknown); their partitions count as idle in this plan") }
        let loads = tracker.partitionLoads()
        let placements = metadata.partitions.filter { $0.leader >= 0 }.map {
            PartitionPlacement(key: PartitionKey($0.topic, $0.partition), owner: $0.leader, load: loads[PartitionKey($0.topic, $0.partition)]?.weight ?? 0)
        }
        let eligible = metadata.brokers.map(\.id).filter { !drain.contains($0) }
        print(Balancer.plan(eligible: eligible, partitions: placements, settings: settings, now: 0).rendered(), terminator: "")
    }
}

func runSimulate() -> Never {
    let command = "simulate"
    let args = CommandLineArguments(Array(CommandLine.arguments.dropFirst()), booleanFlags: ["help", "version", "h", "compare"])
    let known: Set<String> = [
        "trace", "low", "high", "target-bytes-in", "min-brokers", "max-brokers", "tolerance", "scale-up-window", "scale-down-window",
        "scale-up-step", "scale-down-step", "ready-delay", "noise", "daily", "festival", "start", "schedule", "predictive", "lookahead", "compare", "strategy",
    ]
    if let bad = args.unknown(known: known).first { fail("simulate: unknown option --\(bad)") }
    let traceName = args.value("trace") ?? "festival"
    let week = traceName == "festival-week"
    let daily = option(args, "daily", command, ByteRate.parse) ?? 100 * 1024 * 1024
    let festival = option(args, "festival", command, ByteRate.parse) ?? 10 * daily
    var spec = autoscalingSpec(
        args, command, min: FloeDefaults.minBrokers, max: week ? 30 : FloeDefaults.maxBrokers, targetIn: "50MiB/s",
        upWindow: FloeDefaults.scaleUpWindowSeconds, downWindow: FloeDefaults.scaleDownWindowSeconds)
    let trace: LoadTrace
    if traceName == "festival" {
        trace = LoadTrace.festivalDay(
            low: option(args, "low", command, ByteRate.parse) ?? 20 * 1024 * 1024, high: option(args, "high", command, ByteRate.parse) ?? 400 * 1024 * 1024)
    } else if week {
        trace = LoadTrace.festivalWeek(low: option(args, "low", command, ByteRate.parse) ?? 10 * 1024 * 1024, daily: daily, festival: festival)
    } else {
        do { trace = try LoadTrace.csv(String(contentsOfFile: traceName, encoding: .utf8)) } catch { fail("simulate: \(traceName): \(error)") }
    }
    let startText = args.value("start") ?? (week ? "2026-11-23T00:00:00Z" : "2026-11-27T00:00:00Z")
    guard let start = ISO8601DateFormatter().date(from: startText) else { fail("simulate: --start \"\(startText)\" is not ISO 8601 (2026-11-23T00:00:00Z)") }
    let settings = AutoscalerSettings(spec)
    let readyDelay = option(args, "ready-delay", command, positive) ?? 30
    let noise = (option(args, "noise", command, positive) ?? 0) / 100

    if let strategy = args.value("strategy") {
        // One strategy of the comparison, with its brokers over time.
        switch strategy {
        case "reactive": spec.schedules = nil; spec.predictive = nil
        case "schedule": spec.predictive = nil
        case "predictive": spec.schedules = nil
        case "both": break
        default: fail("simulate: --strategy must be reactive, schedule, predictive or both")
        }
        if week && strategy != "reactive" && strategy != "predictive" && spec.schedules == nil {
            spec.schedules = [ScheduleSpec(name: "black-friday", start: "0 20 27 11 *", durationMinutes: 60, expectedBytesInPerSecond: Int64(festival))]
        }
        if (strategy == "predictive" || strategy == "both") && spec.predictive == nil { spec.predictive = PredictiveSpec(enabled: true) }
    } else if week || args.has("compare") {
        // Four strategies on the same trace: the schedule defaults to the festival hour of the week trace.
        if spec.schedules == nil && week {
            spec.schedules = [ScheduleSpec(name: "black-friday", start: "0 20 27 11 *", durationMinutes: 60, expectedBytesInPerSecond: Int64(festival))]
        }
        if spec.predictive == nil { spec.predictive = PredictiveSpec(enabled: true) }
        var scheduleOnly = spec, predictiveOnly = spec
        scheduleOnly.predictive = nil
        predictiveOnly.schedules = nil
        let strategies: [(String, PrescalePolicy)] = [
            ("reactive only", .none), ("reactive + schedule", prescalePolicy(scheduleOnly, command)),
            ("reactive + predictive", prescalePolicy(predictiveOnly, command)), ("reactive + both", prescalePolicy(spec, command)),
        ]
        print(String(format: "trace %@: %.1f days from %@, peak %@; target %@ per broker, brokers %d-%d, new broker ready after %.0f s",
                     traceName as NSString, trace.duration / 86_400, startText as NSString, ByteRate.format(trace.points.map(\.bytesIn).max() ?? 0) as NSString,
                     ByteRate.format(settings.bytesInPerSecond ?? 0) as NSString, settings.minBrokers, settings.maxBrokers, readyDelay))
        for s in spec.schedules ?? [] {
            print("schedule \(s.name): \(s.start) \(s.timeZone ?? "UTC"), \(s.durationMinutes) min, floor "
                  + (s.minBrokers.map { "\($0) brokers" } ?? ByteRate.format(Double(s.expectedBytesInPerSecond ?? 0))))
        }
        if let p = spec.predictive {
            print("predictive: \(p.historyDays ?? FloeDefaults.predictiveHistoryDays) days of 5-minute peaks, lookahead \(p.lookaheadMinutes ?? FloeDefaults.predictiveLookaheadMinutes) min, margin \(p.marginPercent ?? FloeDefaults.predictiveMarginPercent)% (history starts empty)")
        }
        print("strategy                broker-hours  under-provisioned  worst backlog  decisions  floor decisions  flaps")
        for (name, policy) in strategies {
            let r = Simulation.run(trace: trace, settings: settings, initial: settings.minBrokers, readyDelay: readyDelay, noise: noise, prescale: policy, start: start)
            let padded = name.padding(toLength: 22, withPad: " ", startingAt: 0)
            print(padded + String(format: "  %12.1f  %13.1f min  %9.2f GiB  %9d  %15d  %5d", r.brokerHours, r.underProvisionedMinutes,
                                  r.worstBacklogBytes / (1024 * 1024 * 1024), r.decisions.count, r.floorDecisions, r.flaps))
        }
        exit(0)
    }
    let result = Simulation.run(
        trace: trace, settings: settings, initial: settings.minBrokers, readyDelay: readyDelay, noise: noise,
        prescale: prescalePolicy(spec, command), start: start)
    print("time      brokers  load")
    for (t, n) in result.brokersOverTime where args.value("strategy") == nil || !week || abs(t.truncatingRemainder(dividingBy: 86_400) - 72_000) < 7200 {
        print(String(format: "%@  %7d  %@", clock(t) as NSString, n, ByteRate.format(trace.bytesIn(at: (trace.points.first?.time ?? 0) + t)) as NSString))
    }
    print(String(format: "decisions %d, flaps %d, load above target %.1f min (above target + tolerance %.1f min), worst backlog %.2f GiB",
                 result.decisions.count, result.flaps, result.underProvisionedMinutes, result.beyondToleranceMinutes,
                 result.worstBacklogBytes / (1024 * 1024 * 1024)))
    print(String(format: "broker-hours %.1f elastic vs %.1f static (%d brokers sized for the peak): %.0f%% saved",
                 result.brokerHours, result.staticBrokerHours, result.staticBrokers, result.saving * 100))
    exit(0)
}

func clock(_ seconds: Double) -> String {
    let s = Int(seconds)
    return String(format: "%02d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
}

/// Runs `body` until it ends or SIGTERM/SIGINT cancels it, then exits (0 on success or cancellation).
func runUntilSignal(logger: Logger, _ body: @escaping @Sendable () async throws -> Void) -> Never {
    signal(SIGTERM, SIG_IGN)
    signal(SIGINT, SIG_IGN)
    let main = Task { try await body() }
    let signalSources = [SIGTERM, SIGINT].map { number -> any DispatchSourceSignal in
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler {
            logger.notice("shutting down", metadata: ["signal": number == SIGTERM ? "SIGTERM" : "SIGINT"])
            main.cancel()
        }
        source.resume()
        return source
    }
    let semaphore = DispatchSemaphore(value: 0)
    let outcome = Mutex<Result<Void, any Error>?>(nil)
    Task {
        let r = await main.result
        outcome.withLock { $0 = r }
        semaphore.signal()
    }
    semaphore.wait()
    // Use the sources after the wait: an optimized build releases a local after its last use, and
    // a released DispatchSource delivers nothing (the release binary then ignored SIGTERM).
    for source in signalSources { source.cancel() }
    switch outcome.withLock({ $0 }) {
    case .success?, .failure(is CancellationError)?:
        exit(0)
    case .failure(let error)?:
        logger.error("stopped with an error", metadata: ["error": "\(error)"])
        exit(1)
    case nil:
        exit(1)
    }
}
