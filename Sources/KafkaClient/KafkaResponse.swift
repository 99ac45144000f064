import KafkaProtocol

/// Typed access to response bodies.
///
/// Example: `let m = try KafkaResponse.expect(try await c.send(MetadataRequest(), version: 12), MetadataResponse.self)`.
public enum KafkaResponse {
    /// The body of `response` as `R`; `.unexpectedResponse` (with an empty address) when it is
    /// another API's response.
    public static func expect<R: KafkaMessage>(_ response: AnyResponse, _ type: R.Type) throws(KafkaClientError) -> R {
        guard let body = response.message as? R else {
            throw KafkaClientError(address: "", kind: .unexpectedResponse(expected: "\(R.self)", got: response.apiKey))
        }
        return body
    }
}
