import KafkaProtocol
import Support

/// Wraps an `ApiHandler` with per-API request counts, error-free latency histograms (from the
/// call to the response being ready, deferred waits included) and in-flight gauges.
struct InstrumentedHandler: ApiHandler {
    let base: any ApiHandler
    let requests: Counter
    let latency: Histogram
    var apiKey: ApiKey { base.apiKey }
    var versions: ClosedRange<Int16> { base.versions }

    init(_ base: any ApiHandler, metrics: MetricsRegistry) {
        self.base = base
        let labels = ["api": base.apiKey.name]
        requests = metrics.counter("floe_broker_requests_total", help: "Kafka requests handled, by API", labels: labels)
        latency = metrics.histogram("floe_broker_request_duration_seconds", help: "Time from request decoded to response ready, by API",
                                    labels: labels, buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
    }

    func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        requests.increment()
        let start = ContinuousClock.now
        let result = await base.handle(request, context: context)
        switch result {
        case let .deferred(complete):
            let latency = self.latency
            return .deferred {
                let r = await complete()
                latency.observe(ContinuousClock.now - start)
                return r
            }
        case let .longPoll(complete):
            let latency = self.latency
            return .longPoll {
                let r = await complete()
                latency.observe(ContinuousClock.now - start)
                return r
            }
        default:
            latency.observe(ContinuousClock.now - start)
            return result
        }
    }
}
