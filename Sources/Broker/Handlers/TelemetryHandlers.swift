import Bytes
import KafkaProtocol

/// Client telemetry (KIP-714) as Apache Kafka answers it when no client-metrics subscription
/// (ClientMetrics config resource) exists: clients are told that no metric is requested, so
/// they push nothing and only ask again after the push interval.
///
/// Stateless, so any broker of a cluster answers alike: the subscription id is a function of
/// the (empty) metric list, the push interval and the client instance id — Kafka's own formula
/// (`CRC32C("[]" + interval) XOR the instance id's hash`), so a push carrying an id from an
/// earlier subscription (or another instance id) is answered UNKNOWN_SUBSCRIPTION_ID.
///
/// Example: a client sends the zero instance id; the answer carries a fresh random instance
/// id, subscription id `subscriptionId(for: thatId)`, push interval 300000 ms, no metrics.
public struct ClientTelemetry: Sendable {
    /// Kafka's default push interval for clients without a subscription (5 minutes).
    public var pushIntervalMs: Int32 = 300_000
    /// Kafka's `telemetry.max.bytes` default.
    public var telemetryMaxBytes: Int32 = 1_048_576
    /// ZSTD, LZ4, GZIP, SNAPPY (Kafka's ids and order of preference).
    public static let acceptedCompressionTypes: [Int8] = [4, 3, 1, 2]
    /// Draws a new client instance id (random version-4 UUIDs; tests inject a fixed one).
    public var newInstanceId: @Sendable () -> KafkaUUID

    public init(newInstanceId: @escaping @Sendable () -> KafkaUUID = ClientTelemetry.randomInstanceId) {
        self.newInstanceId = newInstanceId
    }

    /// A random version-4 UUID that is not one of Kafka's reserved ids (zero, one).
    public static func randomInstanceId() -> KafkaUUID {
        var rng = SystemRandomNumberGenerator()
        while true {
            let a: UInt64 = rng.next(), b: UInt64 = rng.next()
            let high = (a & ~UInt64(0xF000)) | 0x4000  // version 4
            let low = (b & ~(UInt64(0x3) << 62)) | (UInt64(0x2) << 62)  // RFC 4122 variant
            let id = KafkaUUID(mostSignificantBits: high, leastSignificantBits: low)
            if !isReserved(id) { return id }
        }
    }

    /// Kafka's reserved UUIDs: zero (none) and one (the metadata topic).
    static func isReserved(_ id: KafkaUUID) -> Bool {
        id.mostSignificantBits == 0 && id.leastSignificantBits <= 1
    }

    /// The subscription id of the empty subscription for `clientInstanceId`.
    public func subscriptionId(for clientInstanceId: KafkaUUID) -> Int32 {
        let crc = CRC32C.checksum(Array("[]\(pushIntervalMs)".utf8))
        let hilo = clientInstanceId.mostSignificantBits ^ clientInstanceId.leastSignificantBits
        let hash = Int32(truncatingIfNeeded: hilo >> 32) ^ Int32(truncatingIfNeeded: hilo)
        return Int32(bitPattern: crc) ^ hash
    }
}

/// KIP-714 error codes past those `KafkaErrorCode` lists.
enum TelemetryErrorCode {
    static let unknownSubscriptionId: Int16 = 117
    static let telemetryTooLarge: Int16 = 118
}

/// GetTelemetrySubscriptions v0 (API 71): no metrics requested (see ``ClientTelemetry``). A
/// client sending the zero instance id (its first request) gets a new one.
public struct GetTelemetrySubscriptionsHandler: ApiHandler {
    public let telemetry: ClientTelemetry
    public let apiKey = ApiKey.getTelemetrySubscriptions
    public let versions: ClosedRange<Int16> = 0...0
    public init(telemetry: ClientTelemetry = ClientTelemetry()) { self.telemetry = telemetry }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .getTelemetrySubscriptions(r) = request else { return .close }
        let id = r.clientInstanceId == .zero ? telemetry.newInstanceId() : r.clientInstanceId
        return .response(.getTelemetrySubscriptions(GetTelemetrySubscriptionsResponse(
            errorCode: 0, clientInstanceId: id, subscriptionId: telemetry.subscriptionId(for: id),
            acceptedCompressionTypes: ClientTelemetry.acceptedCompressionTypes, pushIntervalMs: telemetry.pushIntervalMs,
            telemetryMaxBytes: telemetry.telemetryMaxBytes, deltaTemporality: true, requestedMetrics: [])))
    }
}

/// PushTelemetry v0 (API 72): checked as Kafka checks it, then dropped (nothing subscribes to
/// client metrics): a reserved instance id is INVALID_REQUEST, a subscription id other than the
/// current one UNKNOWN_SUBSCRIPTION_ID (the client then asks for its subscription again), a
/// compression type not offered UNSUPPORTED_COMPRESSION_TYPE, more than `telemetryMaxBytes`
/// of metrics TELEMETRY_TOO_LARGE. Kafka's push-rate throttling is not applied: with no metric
/// requested, clients do not push.
public struct PushTelemetryHandler: ApiHandler {
    public let telemetry: ClientTelemetry
    public let apiKey = ApiKey.pushTelemetry
    public let versions: ClosedRange<Int16> = 0...0
    public init(telemetry: ClientTelemetry = ClientTelemetry()) { self.telemetry = telemetry }

    public func handle(_ request: AnyRequest, context: RequestContext) async -> ApiResult {
        guard case let .pushTelemetry(r) = request else { return .close }
        return .response(.pushTelemetry(PushTelemetryResponse(errorCode: code(r))))
    }

    func code(_ r: PushTelemetryRequest) -> Int16 {
        if ClientTelemetry.isReserved(r.clientInstanceId) { return KafkaErrorCode.invalidRequest.rawValue }
        if r.subscriptionId != telemetry.subscriptionId(for: r.clientInstanceId) { return TelemetryErrorCode.unknownSubscriptionId }
        if r.compressionType != 0 && !ClientTelemetry.acceptedCompressionTypes.contains(r.compressionType) {
            return KafkaErrorCode.unsupportedCompressionType.rawValue
        }
        if r.metrics.count > Int(telemetry.telemetryMaxBytes) { return TelemetryErrorCode.telemetryTooLarge }
        return 0
    }
}
