import FloeTestSupport
import Foundation
@testable import ObjectStore
import Support
import Testing

@Suite struct FaultInjectionAndRetryTests {
    /// Drives the manual clock until `task` finishes: waits for the retry loop to sleep, then
    /// advances by the largest possible backoff, as many times as needed.
    func drive<T: Sendable>(_ clock: ManualClock, sleeps: Int, _ task: Task<T, any Error>) async throws -> T {
        for _ in 0..<sleeps {
            await clock.waitForSleepers(1)
            clock.advance(by: .seconds(10))
        }
        return try await task.value
    }

    @Test func transientErrorsAreRetriedUntilSuccess() async throws {
        let clock = ManualClock()
        let memory = MemoryObjectStore()
        let faults = FaultInjectingObjectStore(memory, clock: clock)
        let metrics = MetricsRegistry()
        let store = RetryingObjectStore(faults, policy: RetryPolicy(maxAttempts: 5), clock: clock, seed: 1, metrics: metrics)
        faults.failNext(.put, count: 1, with: .throttled)
        faults.failNext(.put, count: 1, with: .serverError)
        faults.failNext(.put, count: 1, with: .transport)
        let put = Task { try await store.put("k", [1, 2, 3]) }
        let etag = try await drive(clock, sleeps: 3, put)
        #expect(faults.callCount(.put) == 4)
        #expect(try await memory.get("k").etag == etag)

        faults.failNext(.get, count: 2, with: .timeout)
        let get = Task { try await store.get("k") }
        #expect(try await drive(clock, sleeps: 2, get).bytes == [1, 2, 3])
        #expect(metrics.counter("floe_objectstore_retries_total", help: "").value == 5)
    }

    @Test func attemptsAreBounded() async throws {
        let clock = ManualClock()
        let faults = FaultInjectingObjectStore(MemoryObjectStore(), clock: clock)
        let store = RetryingObjectStore(faults, policy: RetryPolicy(maxAttempts: 3), clock: clock, seed: 2)
        faults.failNext(.head, count: 10, with: .throttled)
        let head = Task { try await store.head("k") }
        do {
            _ = try await drive(clock, sleeps: 2, head)
            Issue.record("head should fail after 3 attempts")
        } catch ObjectStoreError.throttled {
            #expect(faults.callCount(.head) == 3)
        }
    }

    @Test func preconditionFailuresAreNeverRetried() async throws {
        let clock = ManualClock()
        let memory = MemoryObjectStore()
        _ = try await memory.put("lease", Array("holder-a".utf8))
        let faults = FaultInjectingObjectStore(memory, clock: clock)
        let store = RetryingObjectStore(faults, clock: clock, seed: 3)
        guard case .preconditionFailed? = await expectObjectStoreError({ try await store.put("lease", Array("holder-b".utf8), condition: .ifAbsent) }) else {
            Issue.record("expected preconditionFailed")
            return
        }
        #expect(faults.callCount(.put) == 1)
        #expect(clock.sleeperCount == 0)
        guard case .notFound? = await expectObjectStoreError({ try await store.get("missing") }) else {
            Issue.record("expected notFound")
            return
        }
        #expect(faults.callCount(.get) == 1)
    }

    @Test func anAmbiguousFailureFollowedByPreconditionFailureIsResolvedByReadingBack() async throws {
        let clock = ManualClock()
        let memory = MemoryObjectStore()
        let faults = FaultInjectingObjectStore(memory, clock: clock)
        let store = RetryingObjectStore(faults, clock: clock, seed: 4)
        // The first attempt is applied, but the client sees a timeout; the retry then finds the
        // key taken, by our own write.
        faults.failNext(.put, count: 1, with: .timeout, afterApplying: true)
        let put = Task { try await store.put("meta/00000001", Array("record-1".utf8), condition: .ifAbsent) }
        let etag = try await drive(clock, sleeps: 1, put)
        #expect(faults.callCount(.put) == 2)
        #expect(try await memory.head("meta/00000001").etag == etag)
    }

    @Test func anAmbiguousFailureDoesNotHideARealLoss() async throws {
        let clock = ManualClock()
        let memory = MemoryObjectStore()
        _ = try await memory.put("meta/00000001", Array("someone-else".utf8))
        let faults = FaultInjectingObjectStore(memory, clock: clock)
        let store = RetryingObjectStore(faults, clock: clock, seed: 5)
        // The first attempt never reached the store; the retry loses to the other writer.
        faults.failNext(.put, count: 1, with: .timeout, afterApplying: false)
        let put = Task { try await store.put("meta/00000001", Array("mine".utf8), condition: .ifAbsent) }
        do {
            _ = try await drive(clock, sleeps: 1, put)
            Issue.record("the put should have lost")
        } catch ObjectStoreError.preconditionFailed {
            #expect(try await memory.get("meta/00000001").bytes == Array("someone-else".utf8))
        }
    }

    @Test func seededChaosRunKeepsEveryWrite() async throws {
        // Real clock with millisecond backoffs: the sleeps are the retry policy, not synchronization.
        let memory = MemoryObjectStore()
        let faults = FaultInjectingObjectStore(memory, plan: FaultPlan(errorRate: 0.25, ambiguousErrorRate: 0.1), seed: 42)
        let store = RetryingObjectStore(
            faults, policy: RetryPolicy(maxAttempts: 30, backoff: Backoff(initial: .microseconds(100), maximum: .milliseconds(2))), seed: 7)
        for i in 0..<150 {
            let body = randomBytes(64 + i, seed: UInt64(i))
            _ = try await store.put("chaos/\(i)", body, condition: .ifAbsent)
            #expect(try await store.get("chaos/\(i)").bytes == body)
        }
        #expect(try await store.listAll(prefix: "chaos/", pageSize: 50).count == 150)
        #expect(faults.injectedCount > 50)
    }

    @Test func stallsAndLatencyUseTheClock() async throws {
        let clock = ManualClock()
        let faults = FaultInjectingObjectStore(MemoryObjectStore(), plan: FaultPlan(latency: .milliseconds(5), stallRate: 1, stallDuration: .seconds(30)),
                                               clock: clock)
        let put = Task { try await faults.put("k", [1]) }
        await clock.waitForSleepers(1)
        #expect(clock.nextDeadline == clock.now().advanced(by: .milliseconds(30_005)))
        clock.advance(by: .milliseconds(30_005))
        _ = try await put.value
    }

    @Test func instrumentationCountsOutcomesBytesAndLatency() async throws {
        let clock = ManualClock()
        let metrics = MetricsRegistry()
        let store = InstrumentedObjectStore(MemoryObjectStore(), metrics: metrics, clock: clock, storeLabel: "test")
        _ = try await store.put("a", [UInt8](repeating: 1, count: 100))
        _ = try await store.get("a", range: .bytes(0..<10))
        _ = await expectObjectStoreError { try await store.get("missing") }
        let text = metrics.render()
        #expect(text.contains("floe_objectstore_operations_total{operation=\"put\",outcome=\"ok\",store=\"test\"} 1"))
        #expect(text.contains("floe_objectstore_operations_total{operation=\"get\",outcome=\"not_found\",store=\"test\"} 1"))
        #expect(text.contains("floe_objectstore_written_bytes_total{operation=\"put\",store=\"test\"} 100"))
        #expect(text.contains("floe_objectstore_read_bytes_total{operation=\"get\",store=\"test\"} 10"))
        #expect(text.contains("floe_objectstore_operation_duration_seconds_count{operation=\"get\",store=\"test\"} 2"))
    }
}

@Suite struct StorageURLTests {
    @Test func parsesS3URLsWithEveryParameter() throws {
        let url = try StorageURL("s3://my-bucket/floe/cluster-1?endpoint=http://127.0.0.1:9000&region=eu-west-1&path_style=true"
            + "&credentials_dir=/etc/floe/s3&retries=7&timeout=12.5&connect_timeout=2&max_connections=16&ca_file=/etc/ca.pem"
            + "&check_conditional_writes=false")
        guard case .s3(let c, let retries) = url.kind else {
            Issue.record("expected s3, got \(url.kind)")
            return
        }
        #expect(c.bucket == "my-bucket" && c.prefix == "floe/cluster-1/" && c.endpoint == "http://127.0.0.1:9000")
        #expect(c.region == "eu-west-1" && c.pathStyle && !c.checkConditionalWrites && retries == 7)
        #expect(c.credentials == [.directory("/etc/floe/s3")])
        #expect(c.http.requestTimeout == .milliseconds(12_500) && c.http.connectTimeout == .seconds(2))
        #expect(c.http.maxConcurrentRequests == 16 && c.http.tls.caFile == "/etc/ca.pem")
    }

    @Test func anonymousMeansUnsignedRequests() throws {
        let url = try StorageURL("s3://public-bucket?anonymous=true&endpoint=http://127.0.0.1:9000&path_style=true")
        guard case .s3(let c, _) = url.kind else {
            Issue.record("expected s3, got \(url.kind)")
            return
        }
        #expect(c.credentials == [.anonymous])
    }

    @Test func defaults() throws {
        let s3 = try StorageURL("s3://b").kind
        guard case .s3(let c, let retries) = s3 else {
            Issue.record("expected s3, got \(s3)")
            return
        }
        #expect(c.prefix == "" && c.endpoint == "https://s3.us-east-1.amazonaws.com" && !c.pathStyle && retries == 5)
        #expect(c.credentials == [.environment, .sharedFile(path: nil, profile: nil)])
        let file = try StorageURL("file:///var/lib/floe").kind
        guard case .file(let path) = file else {
            Issue.record("expected file, got \(file)")
            return
        }
        #expect(path == "/var/lib/floe")
        let memory = try StorageURL("memory://t").kind
        guard case .memory(let name) = memory else {
            Issue.record("expected memory, got \(memory)")
            return
        }
        #expect(name == "t")
    }

    @Test(arguments: [
        ("var/lib/floe", "expected file:///path"),
        ("file://relative/path", "absolute"),
        ("s3:///prefix", "no bucket"),
        ("s3://b?endpont=http://x", "unknown parameter(s) endpont"),
        ("s3://b?path_style=maybe", "path_style must be true or false"),
        ("s3://b?retries=0", "retries must be a positive number"),
        ("s3://b?endpoint=127.0.0.1:9000", "endpoint must start with http:// or https://"),
        ("s3://b?region=a&region=b", "given twice"),
        ("ftp://x", "unknown scheme 'ftp'"),
        ("file:///x?y=1", "take no parameters"),
        ("s3://b?anonymous=true&credentials_dir=/x", "anonymous=true excludes credentials_dir"),
    ])
    func rejectsBadURLsClearly(text: String, reason: String) {
        do {
            _ = try StorageURL(text)
            Issue.record("\(text) should be rejected")
        } catch let error as ObjectStoreError {
            #expect("\(error)".contains(reason), "\(error)")
            #expect("\(error)".contains(text))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func opensLocalAndMemoryStores() async throws {
        let root = FileManager.default.temporaryDirectory.path + "/floe-url-test-" + UUID().uuidString
        defer { _ = try? FileManager.default.removeItem(atPath: root) }
        let metrics = MetricsRegistry()
        let store = try StorageURL("file://" + root).open(metrics: metrics)
        _ = try await store.put("x", [1])
        #expect(store.location == "file://" + root)
        #expect(metrics.render().contains("outcome=\"ok\""))
        #expect(try StorageURL("memory://m").open().location == "memory://m")
    }
}

@Suite struct CredentialsTests {
    @Test func environmentThenSharedFileThenDirectory() throws {
        let environment = ["AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "token"]
        #expect(try S3CredentialsProvider.resolve([.environment], environment: environment)
            == S3Credentials(accessKeyID: "AKID", secretAccessKey: "secret", sessionToken: "token"))

        let directory = FileManager.default.temporaryDirectory.path + "/floe-creds-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { _ = try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/credentials"
        try "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n\n# comment\n[profile other]\naws_access_key_id=O\naws_secret_access_key=OS\naws_session_token=OT\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        #expect(try S3CredentialsProvider.resolve([.environment, .sharedFile(path: file, profile: nil)], environment: [:]).accessKeyID == "D")
        #expect(try S3CredentialsProvider.resolve([.sharedFile(path: nil, profile: nil)],
                                                  environment: ["AWS_SHARED_CREDENTIALS_FILE": file, "AWS_PROFILE": "other"])
            == S3Credentials(accessKeyID: "O", secretAccessKey: "OS", sessionToken: "OT"))

        let secret = directory + "/secret"
        try FileManager.default.createDirectory(atPath: secret, withIntermediateDirectories: true)
        try "K8SKEY\n".write(toFile: secret + "/access-key-id", atomically: true, encoding: .utf8)
        try "K8SSECRET\n".write(toFile: secret + "/secret-access-key", atomically: true, encoding: .utf8)
        #expect(try S3CredentialsProvider.resolve([.directory(secret)], environment: [:])
            == S3Credentials(accessKeyID: "K8SKEY", secretAccessKey: "K8SSECRET"))
    }

    @Test func missingCredentialsSayWhatWasTried() {
        do {
            _ = try S3CredentialsProvider.resolve([.environment, .directory("/nonexistent/floe")], environment: [:])
            Issue.record("should fail")
        } catch {
            #expect("\(error)".contains("AWS_ACCESS_KEY_ID") && "\(error)".contains("/nonexistent/floe"))
        }
    }
}

@Suite struct LocalDirectoryTests {
    @Test func corruptionIsDetectedOnWholeReads() async throws {
        let root = FileManager.default.temporaryDirectory.path + "/floe-corrupt-" + UUID().uuidString
        defer { _ = try? FileManager.default.removeItem(atPath: root) }
        let store = try LocalDirectoryObjectStore(root: root)
        _ = try await store.put("a/b", Array("hello world".utf8))
        let path = root + "/a/b@"
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: 32 + 3)
        try handle.write(contentsOf: Data("X".utf8))
        try handle.close()
        guard case .corrupt? = await expectObjectStoreError({ try await store.get("a/b") }) else {
            Issue.record("a flipped byte should be detected")
            return
        }
        // Range reads cannot check the whole-object CRC and return the stored bytes.
        #expect(try await store.get("a/b", range: .bytes(0..<5)).bytes == Array("helXo".utf8))
    }

    /// A large body (an upload, a compaction output) is checksummed and written at SCHED_IDLE, so
    /// copying it never delays a request thread; the commit (a lock stripe, rename, directory
    /// fsync) never runs there, so no lock is held at idle priority. Small writes stay normal.
    @Test func largeBodiesAreStagedAtIdlePriorityAndNeverCommittedThere() async throws {
        #if os(Linux)
        let root = FileManager.default.temporaryDirectory.path + "/floe-bulk-" + UUID().uuidString
        defer { _ = try? FileManager.default.removeItem(atPath: root) }
        let store = try LocalDirectoryObjectStore(root: root)
        let large = (0..<(LocalDirectoryObjectStore.bulkBytes + 7)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        _ = try await store.put("big", large)
        _ = try await store.put("small", [1, 2, 3])
        #expect(store.idleStages.load(ordering: .relaxed) == 1)
        #expect(store.idleCommits.load(ordering: .relaxed) == 0)
        #expect(try await store.get("big").bytes == large)
        #expect(try await store.get("small").bytes == [1, 2, 3])
        // A refused conditional write of a large body leaves no staged file behind.
        guard case .preconditionFailed? = await expectObjectStoreError({ try await store.put("big", large, condition: .ifAbsent) }) else {
            Issue.record("ifAbsent over an existing key must be refused")
            return
        }
        #expect(store.idleStages.load(ordering: .relaxed) == 2)
        #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/.floe-tmp").isEmpty)
        #expect(try await store.get("big").bytes == large)
        #endif
    }

    /// On S3 the SigV4 payload hash of a large body (an upload, a compaction output) is computed
    /// at SCHED_IDLE, off the cooperative threads; small bodies (object-WAL objects, manifests)
    /// are hashed by the caller. Against moto: the signed PUTs are accepted and read back.
    @Test(Peer.motoS3.enabled(for: "largeS3BodiesAreHashedAtIdlePriority"))
    func largeS3BodiesAreHashedAtIdlePriority() async throws {
        let endpoint = try Peer.motoS3.require()
        let prefix = "idle-hash-\(UUID().uuidString.prefix(8))/"
        let store = try S3ObjectStore(configuration: Harness.s3Configuration(endpoint: endpoint, prefix: prefix))
        try await store.createBucket()
        let large = randomBytes(S3ObjectStore.idleHashBytes, seed: 9)
        let walSized = randomBytes(4 << 20, seed: 10)
        _ = try await store.put("big", large)
        _ = try await store.put("wal-sized", walSized)
        _ = try await store.put("small", [1, 2, 3])
        #expect(store.idleHashes.load(ordering: .relaxed) == 1)
        #expect(try await store.get("big").bytes == large)
        #expect(try await store.get("wal-sized").bytes == walSized)
        try await store.delete("big")
        try await store.delete("wal-sized")
        try await store.delete("small")
    }

    @Test func deletesRemoveEmptyDirectoriesAndLeaveNoTemporaryFiles() async throws {
        let root = FileManager.default.temporaryDirectory.path + "/floe-dirs-" + UUID().uuidString
        defer { _ = try? FileManager.default.removeItem(atPath: root) }
        let store = try LocalDirectoryObjectStore(root: root)
        _ = try await store.put("x/y/z", [1])
        _ = await expectObjectStoreError { try await store.put("x/y/z", [2], condition: .ifAbsent) }
        try await store.delete("x/y/z")
        #expect(!FileManager.default.fileExists(atPath: root + "/x"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: root + "/.floe-tmp").isEmpty)
    }
}
