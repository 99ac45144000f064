import Testing
@testable import ProtocolGenerator

@Test func generatorExists() {
    _ = ProtocolGenerator.self
}
