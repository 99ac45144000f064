import FloeTestSupport
import Foundation
import ObjectStore
import Support
import Synchronization
import Testing

/// One suite, three stores: every check runs against the in-memory store, the local directory
/// and moto's S3 server (when FLOE_TEST_S3_ENDPOINT is set; scripts/test sets it). Without moto
/// the s3 cases are left out and reported skipped (`s3CasesRunAgainstMoto`); under CI=true they
/// run and fail.
@Suite struct ConformanceTests {
    @Test(Peer.motoS3.enabled(for: "the s3 cases of ConformanceTests"))
    func s3CasesRunAgainstMoto() throws {
        #expect(StoreKind.underTest.contains(.s3))
        _ = try Peer.motoS3.require()
    }

    @Test(arguments: StoreKind.underTest)
    func putGetHeadDeleteRoundTrip(kind: StoreKind) async throws {
        let sut = try await Harness.make(kind)
        defer { sut.cleanup() }
        let store = sut.store
        let body = randomBytes(100_000, seed: 1)
        let etag = try await store.put("dir/object-1", body)
        #expect(!etag.isEmpty)
        let got = try await store.get("dir/object-1")
        #expect(got.bytes == body)
        #expect(got.etag == etag)
        #expect(got.objectSize == body.count && got.range == 0..<body.count)
        let info = try await store.head("dir/object-1")
        #expect(info == ObjectInfo(key: "dir/object-1", size: body.count, etag: etag))

        // Overwrite with different content: new ETag, new content.
        let etag2 = try await store.put("dir/object-1", Array("small".utf8))
        #expect(etag2 != etag)
        #expect(try await store.get("dir/object-1").bytes == Array("small".utf8))

        // Empty objects are objects.
        _ = try await store.put("empty", [])
        #expect(try await store.get("empty").bytes.isEmpty)
        #expect(try await store.head("empty").size == 0)

        try await store.delete("dir/object-1")
        let error = await expectObjectStoreError { try await store.get("dir/object-1") }
        guard case .notFound(let context, _)? = error else {
            Issue.record("expected notFound, got \(String(describing: error))")
            return
        }
        #expect(context.key == "dir/object-1")
        // The message names the key and the store (bucket and endpoint for S3).
        let message = "\(error!)"
        #expect(message.contains("dir/object-1") && message.contains(store.location))
        if kind == .s3 { #expect(message.contains(Harness.bucket) && message.contains("http://")) }
        guard case .notFound? = await expectObjectStoreError({ try await store.head("dir/object-1") }) else {
            Issue.record("head of a deleted key should be notFound")
            return
        }
        // Deletes are idempotent.
        try await store.delete("dir/object-1")
        try await store.delete("never-existed")
    }

    @Test(arguments: StoreKind.underTest)
    func rangesAtTheEdges(kind: StoreKind) async throws {
        let sut = try await Harness.make(kind)
        defer { sut.cleanup() }
        let store = sut.store
        let ten = Array("0123456789".utf8)
        _ = try await store.put("ten", ten)
        let cases: [(ByteRange, Range<Int>)] = [
            (.bytes(0..<1), 0..<1), (.bytes(9..<10), 9..<10), (.bytes(8..<100), 8..<10), (.bytes(2..<5), 2..<5),
            (.from(0), 0..<10), (.from(3), 3..<10), (.from(9), 9..<10),
            (.suffix(1), 9..<10), (.suffix(3), 7..<10), (.suffix(10), 0..<10), (.suffix(100), 0..<10),
        ]
        for (range, expected) in cases {
            let data = try await store.get("ten", range: range)
            #expect(data.bytes == Array(ten[expected]), "\(range)")
            #expect(data.range == expected, "\(range)")
            #expect(data.objectSize == 10, "\(range)")
        }
        for range in [ByteRange.bytes(10..<11), .bytes(10..<20), .from(10), .from(11)] {
            guard case .invalidRange? = await expectObjectStoreError({ try await store.get("ten", range: range) }) else {
                Issue.record("\(range) on 10 bytes should be invalidRange")
                continue
            }
        }
        for range in [ByteRange.suffix(0), .bytes(3..<3)] {
            guard case .invalidRange? = await expectObjectStoreError({ try await store.get("ten", range: range) }) else {
                Issue.record("\(range) is malformed and should be invalidRange")
                continue
            }
        }
        _ = try await store.put("zero", [])
        let emptySuffix = try await store.get("zero", range: .suffix(5))
        #expect(emptySuffix.bytes.isEmpty && emptySuffix.objectSize == 0)
        guard case .invalidRange? = await expectObjectStoreError({ try await store.get("zero", range: .bytes(0..<1)) }) else {
            Issue.record("a range on an empty object should be invalidRange")
            return
        }
        guard case .notFound? = await expectObjectStoreError({ try await store.get("missing", range: .bytes(0..<1)) }) else {
            Issue.record("a range read of a missing key should be notFound")
            return
        }

        // Random ranges of a larger object, seeded.
        let big = randomBytes(1 << 20, seed: 2)
        _ = try await store.put("big", big)
        var rng = SplitMix64(seed: 3)
        for _ in 0..<20 {
            let start = Int.random(in: 0..<big.count, using: &rng)
            let length = Int.random(in: 1...(200_000), using: &rng)
            let data = try await store.get("big", range: .bytes(start..<(start + length)))
            #expect(data.bytes == Array(big[start..<min(big.count, start + length)]))
        }
    }

    @Test(arguments: StoreKind.underTest)
    func listingInKeyOrderAcrossManyPages(kind: StoreKind) async throws {
        let sut = try await Harness.make(kind)
        defer { sut.cleanup() }
        let store = sut.store
        var keys: [String] = []
        for i in 0..<150 { keys.append("stream/\(i % 7)/object-\(String(i).leftPadded(5))") }
        // Keys whose byte order crosses the directory structure of the local store.
        keys += ["a", "a-b", "a/b", "a/b/c", "a0", "a/", "b", "stream", "stream-x", "stream/"]
        for (i, key) in keys.enumerated() { _ = try await store.put(key, [UInt8(i & 0xff)]) }

        let all = try await store.listAll(prefix: "", pageSize: 7)
        #expect(all.map(\.key) == byteOrderSorted(keys))
        #expect(all.allSatisfy { $0.size == 1 })

        // Page by page: no page exceeds the limit, only the last has no continuation.
        var pages = 0
        var continuation: String?
        var seen: [String] = []
        repeat {
            let page = try await store.list(prefix: "stream/", continuation: continuation, limit: 11)
            #expect(page.objects.count <= 11)
            if page.continuation != nil { #expect(page.objects.count == 11) }
            seen += page.objects.map(\.key)
            continuation = page.continuation
            pages += 1
        } while continuation != nil
        let expected = byteOrderSorted(keys.filter { $0.hasPrefix("stream/") })
        #expect(seen == expected)
        #expect(pages == (expected.count + 10) / 11)

        #expect(try await store.listAll(prefix: "stream/3/").map(\.key) == byteOrderSorted(keys.filter { $0.hasPrefix("stream/3/") }))
        #expect(try await store.listAll(prefix: "a").map(\.key) == byteOrderSorted(keys.filter { $0.hasPrefix("a") }))
        #expect(try await store.listAll(prefix: "a/b").map(\.key) == ["a/b", "a/b/c"])
        #expect(try await store.listAll(prefix: "nothing-here/").isEmpty)
        let exact = try await store.list(prefix: "b", continuation: nil, limit: 1)
        #expect(exact.objects.map(\.key) == ["b"] && exact.continuation == nil)
    }

    @Test(arguments: StoreKind.underTest)
    func unusualKeysRoundTrip(kind: StoreKind) async throws {
        let sut = try await Harness.make(kind)
        defer { sut.cleanup() }
        let store = sut.store
        let keys = ["with space", "per%cent", "at@sign", ".hidden", "dots/../x", "double//slash", "ünïcødé/ключ", "plus+equals=",
                    "tilde~", String(repeating: "k", count: 200)]
        for (i, key) in keys.enumerated() { _ = try await store.put(key, [UInt8(i)]) }
        for (i, key) in keys.enumerated() { #expect(try await store.get(key).bytes == [UInt8(i)], "\(key)") }
        #expect(try await store.listAll(prefix: "").map(\.key) == byteOrderSorted(keys))
        guard case .invalidRequest? = await expectObjectStoreError({ try await store.put("", [1]) }) else {
            Issue.record("an empty key should be rejected")
            return
        }
    }

    @Test(arguments: StoreKind.underTest)
    func deleteManyRemovesEverything(kind: StoreKind) async throws {
        let sut = try await Harness.make(kind)
        defer { sut.cleanup() }
        let store = sut.store
        let keys = (0..<40).map { "batch/\($0)" }
        for key in keys { _ = try await store.put(key, [1, 2, 3]) }
        let failures = try await store.deleteMany(keys + ["batch/not-there"])
        #expect(failures.isEmpty, "\(failures.map { "\($0.key): \($0.error)" })")
        #expect(try await store.listAll(prefix: "batch/").isEmpty)
    }

    @Test(arguments: StoreKind.underTest)
    func multipartUploads(kind: StoreKind) async throws {
        let sut = try await Harness.make(kind)
        defer { sut.cleanup() }
        let store = sut.store
        let first = randomBytes(MultipartLimits.minimumPartSize, seed: 10)
        let second = randomBytes(1024, seed: 11)
        let upload = try await store.createMultipartUpload("large/object")
        // Parts may arrive in any order; completion orders them by number.
        let p2 = try await store.uploadPart(upload, number: 2, second)
        let p1 = try await store.uploadPart(upload, number: 1, first)
        let etag = try await store.completeMultipartUpload(upload, parts: [p1, p2])
        let got = try await store.get("large/object")
        #expect(got.bytes == first + second)
        #expect(got.etag == etag)
        #expect(try await store.head("large/object").size == first.count + second.count)
        #expect(try await store.get("large/object", range: .bytes((first.count - 2)..<(first.count + 2))).bytes
            == Array(first.suffix(2) + second.prefix(2)))

        // All parts but the last must be at least 5 MiB.
        let small = try await store.createMultipartUpload("large/too-small")
        let s1 = try await store.uploadPart(small, number: 1, [1, 2, 3])
        let s2 = try await store.uploadPart(small, number: 2, [4, 5, 6])
        guard case .invalidRequest? = await expectObjectStoreError({ try await store.completeMultipartUpload(small, parts: [s1, s2]) }) else {
            Issue.record("a too-small part should fail completion")
            return
        }
        try await store.abortMultipartUpload(small)
        // An aborted upload is gone. (Moto 5.2.1 answers 500 to UploadPart and
        // CompleteMultipartUpload on an aborted upload where AWS answers 404 NoSuchUpload, so
        // the check uses a second abort, which both answer with NoSuchUpload.)
        guard case .notFound? = await expectObjectStoreError({ try await store.abortMultipartUpload(small) }) else {
            Issue.record("aborting an aborted upload should be notFound")
            return
        }
        guard case .notFound? = await expectObjectStoreError({ try await store.head("large/too-small") }) else {
            Issue.record("an aborted upload leaves no object")
            return
        }

        // The helper that splits a buffer into parts.
        let whole = randomBytes(MultipartLimits.minimumPartSize * 2 + 17, seed: 12)
        _ = try await store.putMultipart("large/helper", whole, partSize: MultipartLimits.minimumPartSize)
        #expect(try await store.get("large/helper").bytes == whole)
    }

    @Test(arguments: StoreKind.underTest)
    func conditionalWrites(kind: StoreKind) async throws {
        let sut = try await Harness.make(kind)
        defer { sut.cleanup() }
        let store = sut.store
        let v1 = try await store.put("meta/lease", Array("v1".utf8), condition: .ifAbsent)
        guard case .preconditionFailed? = await expectObjectStoreError({ try await store.put("meta/lease", Array("v2".utf8), condition: .ifAbsent) }) else {
            Issue.record("ifAbsent on an existing key should fail its precondition")
            return
        }
        let v2 = try await store.put("meta/lease", Array("v2".utf8), condition: .ifMatch(v1))
        #expect(v2 != v1)
        guard case .preconditionFailed? = await expectObjectStoreError({ try await store.put("meta/lease", Array("v3".utf8), condition: .ifMatch(v1)) }) else {
            Issue.record("ifMatch with a stale ETag should fail its precondition")
            return
        }
        guard case .preconditionFailed? = await expectObjectStoreError({ try await store.put("meta/absent", Array("x".utf8), condition: .ifMatch(v2)) }) else {
            Issue.record("ifMatch on a missing key should fail its precondition")
            return
        }
        #expect(try await store.get("meta/lease").bytes == Array("v2".utf8))
        // After a delete the key can be created again.
        try await store.delete("meta/lease")
        _ = try await store.put("meta/lease", Array("v4".utf8), condition: .ifAbsent)
    }

    @Test(arguments: StoreKind.underTest)
    func createOnlyUnderContentionHasExactlyOneWinner(kind: StoreKind) async throws {
        let sut = try await Harness.make(kind)
        defer { sut.cleanup() }
        let writers = 24
        for round in 0..<3 {
            let key = "contended/\(round)"
            let outcomes = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
                for writer in 0..<writers {
                    // Alternate between two handles on the same data (two local-store instances
                    // contend through the file system's locks, not shared memory).
                    let store = writer % 2 == 0 ? sut.store : sut.twin
                    group.addTask {
                        do {
                            _ = try await store.put(key, Array("writer-\(writer)".utf8), condition: .ifAbsent)
                            return (writer, true)
                        } catch ObjectStoreError.preconditionFailed {
                            return (writer, false)
                        }
                    }
                }
                var all: [(Int, Bool)] = []
                for try await outcome in group { all.append(outcome) }
                return all
            }
            let winners = outcomes.filter(\.1).map(\.0)
            #expect(winners.count == 1, "round \(round): winners \(winners)")
            #expect(outcomes.count == writers)
            if let winner = winners.first {
                #expect(try await sut.store.get(key).bytes == Array("writer-\(winner)".utf8))
            }
        }
    }

    @Test(arguments: StoreKind.underTest)
    func compareAndSwapCounterLosesNoIncrement(kind: StoreKind) async throws {
        let sut = try await Harness.make(kind)
        defer { sut.cleanup() }
        _ = try await sut.store.put("counter", Array("0".utf8), condition: .ifAbsent)
        let workers = 6
        let increments = 4
        let conflicts = try await withThrowingTaskGroup(of: Int.self) { group in
            for worker in 0..<workers {
                let store = worker % 2 == 0 ? sut.store : sut.twin
                group.addTask {
                    var conflicts = 0
                    for _ in 0..<increments {
                        while true {
                            let current = try await store.get("counter")
                            let value = Int(String(decoding: current.bytes, as: UTF8.self))!
                            do {
                                _ = try await store.put("counter", Array(String(value + 1).utf8), condition: .ifMatch(current.etag))
                                break
                            } catch ObjectStoreError.preconditionFailed {
                                conflicts += 1
                            }
                        }
                    }
                    return conflicts
                }
            }
            return try await group.reduce(0, +)
        }
        let final = Int(String(decoding: try await sut.store.get("counter").bytes, as: UTF8.self))
        #expect(final == workers * increments, "lost increments; \(conflicts) conflicts were retried")
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
