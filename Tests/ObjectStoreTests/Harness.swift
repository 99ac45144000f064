import Foundation
import ObjectStore
import Support
import Testing

/// The stores the conformance suite runs against.
enum StoreKind: String, CaseIterable, Sendable, CustomStringConvertible {
    case memory, local, s3
    var description: String { rawValue }
}

/// A store under test and how to clean up after it.
struct StoreUnderTest {
    let store: any ObjectStore
    /// A second handle on the same data (a second local-directory instance; the same store otherwise).
    let twin: any ObjectStore
    let cleanup: () -> Void
}

enum Harness {
    static let skipMessage = "SKIPPED: S3 conformance against moto: FLOE_TEST_S3_ENDPOINT not set; run scripts/test"
    static let bucket = "floe-conformance"

    /// The S3 endpoint from FLOE_TEST_S3_ENDPOINT; records a failure under CI when it is missing,
    /// prints a loud skip line otherwise.
    static func s3Endpoint() -> String? {
        let environment = ProcessInfo.processInfo.environment
        if let endpoint = environment["FLOE_TEST_S3_ENDPOINT"], !endpoint.isEmpty { return endpoint }
        if environment["CI"] != nil {
            Issue.record("FLOE_TEST_S3_ENDPOINT is not set under CI: the S3 conformance suite must run against moto (scripts/test starts it)")
        } else {
            print("\n**********\n\(skipMessage)\n**********\n")
        }
        return nil
    }

    static func s3Configuration(endpoint: String, prefix: String) -> S3Configuration {
        S3Configuration(bucket: bucket, prefix: prefix, endpoint: endpoint, region: "us-east-1", pathStyle: true,
                        credentials: [.fixed(S3Credentials(accessKeyID: "floe-test", secretAccessKey: "floe-test-secret"))])
    }

    /// A fresh, empty store of `kind`, or nil when S3 is not available here.
    static func make(_ kind: StoreKind) async throws -> StoreUnderTest? {
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
            guard let endpoint = s3Endpoint() else { return nil }
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
