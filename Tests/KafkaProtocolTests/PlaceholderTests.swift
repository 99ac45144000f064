import Testing
@testable import KafkaProtocol

@Test func schemaSourceIsNamed() {
    #expect(KafkaProtocolInfo.schemaSource.contains("1eb7644"))
}
