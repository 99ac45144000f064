import Foundation
import HTTPClient
import KafkaClient
import Support
import Synchronization

/// `floe-operator local`: the elasticity loop with brokers as child processes on this machine.
///
/// Starts `minBrokers` brokers on one bucket directory, waits for broker 1, then runs the
/// `ElasticityController` until cancelled, printing its live view; on cancellation it stops the
/// loop and then every broker cleanly (highest id first), so nothing acknowledged is lost.
public struct LocalRuntime: Sendable {
    public struct Options: Sendable {
        public var fleet: LocalFleet.Options
        public var elasticity: ElasticitySettings
        /// Redraw the view in place (a terminal) or print it every `printEvery` ticks (a log).
        public var redraw: Bool
        public var printEvery: Int
        /// How the operator's admin connection reaches the brokers (TLS CA, SASL user).
        public var access: KafkaAccess
        /// Where the console and /healthz listen (`127.0.0.1:8080`); nil = no HTTP.
        public var httpAddress: String?
        /// When the address cannot be used (the default port is taken): warn and run without
        /// the console (true), or fail (false: the address was asked for).
        public var httpOptional: Bool = false

        public init(fleet: LocalFleet.Options, elasticity: ElasticitySettings, redraw: Bool, printEvery: Int = 5, access: KafkaAccess = .plaintext,
                    httpAddress: String? = nil) {
            self.access = access
            self.httpAddress = httpAddress
            self.fleet = fleet
            self.elasticity = elasticity
            self.redraw = redraw
            self.printEvery = printEvery
        }
    }

    public let options: Options
    public let logger: Logger

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    public func run() async throws {
        let fleet = LocalFleet(options: options.fleet, logger: logger)
        let http = try HTTPClient()
        defer { http.shutdown() }
        let start = max(1, options.elasticity.autoscalingEnabled ? options.elasticity.autoscaling.minBrokers : 1)
        let bootstrap = "127.0.0.1:\(options.fleet.kafkaPort)"
        let admin = try OperatorKafka.adminClient(
            bootstrap: [BrokerAddress(host: "127.0.0.1", port: options.fleet.kafkaPort)], clientId: "floe-operator-local",
            requestTimeout: .seconds(10), attempts: 5, access: options.access)
        defer { admin.close() }
        let console = ConsoleStore()
        let recorder = console.register("local", settings: options.elasticity)
        let routes = ConsoleRoutes(store: console, fault: ConsoleRoutes.faultFromEnvironment())
        var server: ProbeServer?
        if let address = options.httpAddress {
            do {
                server = try ProbeServer(listening: address, requestHandler: { request in
                    if request.path == "/healthz" || request.path == "/livez" { return .ok("ok\n") }
                    return routes.handle(request) ?? .notFound
                })
            } catch {
                guard options.httpOptional else { throw error }
                logger.warning("no web console: \(error); --http=HOST:PORT picks another address", metadata: ["http": address])
            }
        }
        defer { server?.stop() }
        if let server { logger.notice("console on http://127.0.0.1:\(server.port)/", metadata: ["http.port": "\(server.port)"]) }
        do {
            try await fleet.grow(to: start)
            try await waitReady(await fleet.member(1), http: http)
            logger.notice("Kafka bootstrap \(bootstrap) is ready; \(start) broker(s), autoscaling between \(options.elasticity.autoscaling.minBrokers) and \(options.elasticity.autoscaling.maxBrokers)")
            let printer = ViewPrinter(redraw: options.redraw, every: options.printEvery)
            let controller = ElasticityController(
                settings: options.elasticity, fleet: fleet, admin: admin, http: http, logger: logger, bootstrap: bootstrap,
                onTick: { view in
                    printer.show(view)
                    recorder.record(view)
                })
            await controller.run()
        } catch {
            logger.error("local runtime failed: \(error)")
            await fleet.stopAll()
            throw error
        }
        logger.notice("stopping the brokers")
        await fleet.stopAll()
        logger.notice("stopped")
    }

    func waitReady(_ member: FleetMember, http: HTTPClient) async throws {
        let deadline = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < deadline {
            if let r = try? await http.execute(HTTPRequest(method: "GET", url: member.readyURL, timeout: .seconds(2))), r.status == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw OperatorError.localBroker(id: member.id, detail: "not ready after 120 s (see its log under \(options.fleet.dataDirectory)/logs)")
    }
}

/// Prints the live view: redrawn in place on a terminal, or every n-th tick as plain text.
final class ViewPrinter: Sendable {
    let redraw: Bool
    let every: Int
    let count = Mutex(0)

    init(redraw: Bool, every: Int) {
        self.redraw = redraw
        self.every = max(1, every)
    }

    func show(_ view: ElasticityView) {
        let n = count.withLock { c in c += 1; return c }
        if redraw {
            FileHandle.standardOutput.write(Data(("\u{1B}[H\u{1B}[2J" + view.rendered()).utf8))
        } else if n % every == 0 {
            FileHandle.standardOutput.write(Data((view.rendered() + "\n").utf8))
        }
    }
}
