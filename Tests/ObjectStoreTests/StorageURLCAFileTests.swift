import Foundation
import ObjectStore
import Testing

struct StorageURLCAFileTests {
    @Test func aMissingCAFileIsRefusedWhenTheStoreOpens() throws {
        let url = try StorageURL("s3://bucket/p?endpoint=https://127.0.0.1:9&anonymous=true&ca_file=/nonexistent/floe-ca.pem")
        #expect {
            _ = try url.open()
        } throws: { error in
            "\(error)".contains("ca_file /nonexistent/floe-ca.pem does not exist")
        }
    }

    @Test func anExistingCAFileOpens() throws {
        let path = NSTemporaryDirectory() + "floe-ca-\(UUID().uuidString).pem"
        try Data("not checked until a request\n".utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let url = try StorageURL("s3://bucket/p?endpoint=https://127.0.0.1:9&anonymous=true&ca_file=\(path)")
        _ = try url.open()
    }
}
