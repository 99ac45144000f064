import ObjectStore
import Testing
@testable import StreamStorage

/// `Stream.sizeInBytes` (DescribeLogDirs): bytes in objects plus bytes acknowledged and not yet
/// uploaded, the same before and after an upload.
@Test func streamSizeCountsObjectsAndTheUnuploadedTail() async throws {
    let h = Harness(objects: MemoryObjectStore(name: "size"), walKind: .file)
    let store = try await h.open()
    let stream = try await store.open(1, epoch: 1)
    #expect(stream.sizeInBytes == 0)
    for i in 0..<3 { _ = try await stream.append([UInt8](repeating: UInt8(i), count: 100), recordCount: 2) }
    #expect(stream.sizeInBytes == 300, "three 100-byte batches in the WAL")
    try await store.uploadNow()
    #expect(stream.sizeInBytes == 300, "the same batches, now in an object")
    _ = try await stream.append([UInt8](repeating: 9, count: 50), recordCount: 1)
    #expect(stream.sizeInBytes == 350, "objects plus the new batch in the WAL")
    try await store.close()
}
