import FloeTestSupport
import Foundation
import ObjectStore
import Support
import Testing

/// The stores the conformance suite runs against.
enum StoreKind: String, CaseIterable, Sendable, CustomStringConvertible {
    case memory, local, s3
    var description: String { rawValue }

    /// The kinds to run: s3 needs moto (FLOE_TEST_S3_ENDPOINT); without it the s3 cases are left
    /// out and `ConformanceTests.s3CasesRunAgainstMoto` reports the skip, except under CI=true,
    /// where they run and fail.
    static let underTest = Peer.motoS3.arguments(allCases, needing: [.s3])
}

/// A store under test and how to clean up after it.
struct StoreUnderTest {
    let store: any ObjectStore
    /// A second handle on the same data (a second local-directory instance; the same store otherwise).
    let twin: any ObjectStore
    let cleanup: () -> Void
}

enum Harness {
    static let bucket = "floe-conformance"

    static func s3Configuration(endpoint: String, prefix: String) -> S3Configuration {
        S3Configuration(bucket: bucket, prefix: prefix, endpoint: endpoint, region: "us-east-1", pathStyle: true,
                        credentials: [.fixed(S3Credentials(accessKeyID: "floe-test", secretAccessKey: "floe-test-secret"))])
    }

    /// A fresh, empty store of `kind`; for s3 without moto (only under CI=true, see
    /// `StoreKind.underTest`) a recorded failure and a throw.
    static func make(_ kind: StoreKind) async throws -> StoreUnderTest {
        switch kind {
        case .memory:
            let store = MemoryObjectStore()
            return StoreUnderTest(store: store, twin: store, cleanup: {})
        case .local:
            let root = FileManager.default.temporaryDirectory.path + "/floe-objectstore-test-" + UUID().uuidString
            let store = try LocalDirectoryObjectStore(root: root)
            let twin = try LocalDirectoryObjectStore(root: root)
            return StoreUnderTest(store: store, twin: twin, cleanup: {
                do { try FileManager.default.removeItem(atPath: root) } catch { Issue.record("cannot remove \(root): \(error)") }
            })
        case .s3:
            let endpoint = try Peer.motoS3.require()
            let prefix = "run-\(UUID().uuidString.prefix(8))/"
            let store = try S3ObjectStore(configuration: s3Configuration(endpoint: endpoint, prefix: prefix))
            try await store.createBucket()
            return StoreUnderTest(store: store, twin: store, cleanup: {})
        }
    }
}

/// Seeded random bytes.
func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix64(seed: seed)
    var out = [UInt8]()
    out.reserveCapacity(count)
    while out.count < count {
        var word = rng.next()
        for _ in 0..<min(8, count - out.count) {
            out.append(UInt8(truncatingIfNeeded: word))
            word >>= 8
        }
    }
    return out
}

/// Runs `body` and returns the ObjectStoreError it throws (recording an issue if it does not).
func expectObjectStoreError<T>(_ body: () async throws -> T, sourceLocation: SourceLocation = #_sourceLocation) async -> ObjectStoreError? {
    do {
        _ = try await body()
        Issue.record("expected an ObjectStoreError, the call succeeded", sourceLocation: sourceLocation)
    } catch let error as ObjectStoreError {
        return error
    } catch {
        Issue.record("expected an ObjectStoreError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

func byteOrderSorted(_ keys: [String]) -> [String] { keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) } }
