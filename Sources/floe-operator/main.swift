import ControllerRuntime
import Foundation
import KubeAPI
import Operator
import Support

let usage = """
    floe-operator \(FloeVersion.string): runs Floe broker fleets, on Kubernetes or as local processes.

    USAGE: floe-operator <command> [options]

    COMMANDS:
      crd                    print the FloeCluster CustomResourceDefinition (YAML)
      render --file PATH     print the objects rendered for the FloeClusters in a manifest
                             (YAML or JSON) as YAML documents; --namespace NS sets the
                             namespace when the manifest has none (default "default")

      run                    run the reconcile loop against a Kubernetes API server:
        --leader-elect                      act only while holding the Lease (two replicas: one acts)
        --leader-election-namespace=NS      namespace of the Lease (default: the client's namespace)
        --leader-election-id=NAME           Lease name (default floe-operator-leader)
        --lease-duration=S --renew-deadline=S --retry-period=S   leader election timing (15, 10, 2)
        --http=[HOST]:PORT                  /metrics, /healthz, /readyz (default :8080; "off" disables)
        --watch-namespaces=a,b              watch only these namespaces (default: all)
        --kubeconfig=PATH | --master=URL    API server (default: in-cluster, then $KUBECONFIG, ~/.kube/config)
        --resync-period=S                   periodic full resync (default 300)
        --kube-api-qps=Q --kube-api-burst=B client-side rate limit (default 20, 40)
        --log-level=LEVEL                   trace, debug, info (default), notice, warning, error

    \(elasticityUsage)

    OPTIONS:
      --version              print the version and exit
      -h, --help             print this help and exit
    """

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("floe-operator: \(message)\n".utf8))
    exit(1)
}

let args = CommandLineArguments(Array(CommandLine.arguments.dropFirst()))
if args.has("help") {
    print(usage)
    exit(0)
}
if args.has("version") {
    print("floe-operator \(FloeVersion.string)")
    exit(0)
}

switch args.positionals.first {
case "crd":
    if let bad = args.unknown(known: []).first { fail("crd: unknown option --\(bad)") }
    print(FloeClusterCRD.yaml(), terminator: "")
case "render":
    if let bad = args.unknown(known: ["file", "namespace"]).first { fail("render: unknown option --\(bad)") }
    guard let path = args.value("file") else { fail("render: --file PATH is required") }
    do {
        var docs: [JSONValue] = []
        for var cluster in try readFloeClusters(path: path) {
            if cluster.metadata.namespace == nil { cluster.metadata.namespace = args.value("namespace") ?? "default" }
            // A manifest from a file has no uid yet; the API server assigns one on creation.
            if cluster.metadata.uid == nil { cluster.metadata.uid = "00000000-0000-0000-0000-000000000000" }
            // No Secrets are read offline: passwords in the users Secret are placeholders.
            for object in try Render.render(cluster, security: .placeholders(for: cluster.spec)) { docs.append(try object.json()) }
        }
        print(YAMLEmitter.emitDocuments(docs), terminator: "")
    } catch {
        fail("render: \(error)")
    }
case "run":
    let known: Set<String> = [
        "leader-elect", "leader-election-namespace", "leader-election-id", "lease-duration", "renew-deadline", "retry-period", "http",
        "watch-namespaces", "kubeconfig", "master", "resync-period", "log-level", "identity", "kube-api-qps", "kube-api-burst",
    ]
    let runArgs = CommandLineArguments(Array(CommandLine.arguments.dropFirst()), booleanFlags: ["help", "version", "h", "leader-elect"])
    if let bad = runArgs.unknown(known: known).first { fail("run: unknown option --\(bad)") }
    func seconds(_ name: String, _ fallback: Duration) -> Duration {
        guard let text = runArgs.value(name) else { return fallback }
        guard let v = Double(text), v > 0 else { fail("run: --\(name) needs a positive number of seconds, got \(text)") }
        return .milliseconds(Int64(v * 1000))
    }
    var options = RunOptions()
    options.leaderElect = runArgs.has("leader-elect")
    options.leaderElectionNamespace = runArgs.value("leader-election-namespace")
    options.leaseName = runArgs.value("leader-election-id") ?? options.leaseName
    options.identity = runArgs.value("identity")
    options.leaseDuration = seconds("lease-duration", options.leaseDuration)
    options.renewDeadline = seconds("renew-deadline", options.renewDeadline)
    options.retryPeriod = seconds("retry-period", options.retryPeriod)
    options.resyncPeriod = seconds("resync-period", options.resyncPeriod)
    if !(options.retryPeriod < options.renewDeadline && options.renewDeadline < options.leaseDuration) {
        fail("run: leader election needs --retry-period < --renew-deadline < --lease-duration")
    }
    let http = runArgs.value("http") ?? ":8080"
    options.httpAddress = http == "off" ? nil : http
    if let list = runArgs.value("watch-namespaces") {
        let namespaces = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        options.watchNamespaces = namespaces.isEmpty ? nil : namespaces
    }
    if let q = runArgs.value("kube-api-qps") {
        guard let v = Double(q), v > 0 else { fail("run: --kube-api-qps needs a positive number, got \(q)") }
        options.qps = v
    }
    if let b = runArgs.value("kube-api-burst") {
        guard let v = Int(b), v >= 1 else { fail("run: --kube-api-burst needs a positive integer, got \(b)") }
        options.burst = v
    }
    options.kubeconfig = runArgs.value("kubeconfig")
    options.master = runArgs.value("master")
    guard let level = Logger.Level(name: runArgs.value("log-level") ?? "info") else { fail("run: unknown --log-level") }
    let runtime = KubernetesRuntime(options: options, logger: Logger(label: "floe-operator", level: level))
    signal(SIGTERM, SIG_IGN)
    signal(SIGINT, SIG_IGN)
    let main = Task { try await runtime.run() }
    let signalSources = [SIGTERM, SIGINT].map { number -> any DispatchSourceSignal in
        let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
        source.setEventHandler {
            runtime.logger.notice("shutting down", metadata: ["signal": number == SIGTERM ? "SIGTERM" : "SIGINT"])
            main.cancel()
        }
        source.resume()
        return source
    }
    // Wait for the runtime (it releases the Lease when cancelled), then use the sources: an
    // optimized build releases a local after its last use, and a released DispatchSource
    // delivers nothing, so without this use the release binary ignored SIGTERM and SIGINT (the
    // debug build keeps locals to the end of the scope, which hid it).
    let outcome = await main.result
    for source in signalSources { source.cancel() }
    switch outcome {
    case .success, .failure(is CancellationError):
        runtime.logger.notice("stopped")
        exit(0)
    case .failure(let error):
        runtime.logger.error("operator stopped with an error", metadata: ["error": "\(error)"])
        exit(1)
    }
case "local":
    runLocal()
case "plan":
    runPlan()
case "simulate":
    runSimulate()
case nil:
    fail("no command given; commands: crd, render, run, local, plan, simulate. See --help.")
case let other?:
    fail("unknown command \(other); see --help")
}
