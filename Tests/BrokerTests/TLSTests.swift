import Bytes
import Foundation
import KafkaClient
import KafkaProtocol
import ObjectStore
import Synchronization
import TLS
import Testing
@testable import Broker

#if canImport(Glibc)
import Glibc
#endif

/// A CA, a server certificate (localhost, 127.0.0.1) and a client certificate (O=acme, CN=alice),
/// made with the `openssl` CLI in a fresh temporary directory.
struct TestPKI {
    let dir: String
    var ca: String { dir + "/ca.pem" }
    var serverCert: String { dir + "/server.pem" }
    var serverKey: String { dir + "/server.key" }
    var clientCert: String { dir + "/client.pem" }
    var clientKey: String { dir + "/client.key" }

    init() throws {
        dir = NSTemporaryDirectory() + "floe-tls-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try run("""
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=Floe Test CA'
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout client.key -out client.csr -subj '/O=acme/CN=alice'
            printf 'extendedKeyUsage=clientAuth\\n' > client.ext
            openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -set_serial 2001 -days 2 -extfile client.ext -out client.pem
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr -subj '/CN=localhost'
            printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n' > server.ext
            """)
        try issueServer(serial: 1001)
    }

    /// Signs the server key into `server.pem` with `serial`, replacing the file by a rename (as
    /// a Secret update does); with `mismatchedKey`, signs a fresh key that is not server.key.
    func issueServer(serial: Int, mismatchedKey: Bool = false) throws {
        try run("""
            \(mismatchedKey ? "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout other.key -out server.csr -subj '/CN=localhost'" : "openssl req -new -key server.key -out server.csr -subj '/CN=localhost'")
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial \(serial) -days 2 -extfile server.ext -out server.pem.new
            mv server.pem.new server.pem
            """)
    }

    func run(_ script: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-ec", script]
        process.currentDirectoryURL = URL(fileURLWithPath: dir)
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw POSIXError(.EINVAL, userInfo: [NSLocalizedDescriptionKey: "openssl failed: \(text)"])
        }
    }

    func remove() { try? FileManager.default.removeItem(atPath: dir) }
}

/// Answers ApiVersions (v0, empty) and records each request's principal.
final class PrincipalRecorder: RequestHandler {
    let principals = Mutex<[String]>([])
    func handle(_ request: ServerRequest) async -> HandlerResult {
        principals.withLock { $0.append(request.connection.session.principal.description) }
        guard let decoded = try? RequestHeader.decodeRequest(request.bytes[...]) else { return .close }
        var writer = ByteWriter(capacity: 64)
        guard (try? ResponseHeader.encodeResponse(ApiVersionsResponse(), version: 0, correlationId: decoded.header.correlationId,
                                                  into: &writer)) != nil else { return .close }
        return .respond(Array(writer.take().dropFirst(4)))
    }
}

func tlsServerConfiguration(_ pki: TestPKI, auth: TLSClientAuth = .none, checkMilliseconds: UInt64 = 0,
                            onReload: @escaping @Sendable (Result<Void, TLSError>) -> Void = { _ in }) throws -> ServerConfiguration {
    var config = ServerConfiguration(listen: try SocketAddress(parsing: "127.0.0.1:0"))
    config.securityProtocol = .ssl
    config.tls = try TLSServerCertificates(
        files: TLSServerFiles(certificateFile: pki.serverCert, keyFile: pki.serverKey, clientCAFile: pki.ca, clientAuth: auth),
        checkIntervalMilliseconds: checkMilliseconds, nowMilliseconds: monotonicMilliseconds(), onReload: onReload)
    return config
}

func apiVersions(_ c: KafkaConnection) async throws {
    _ = try await c.send(ApiVersionsRequest(), version: 0, timeout: .seconds(30))
}

@Suite(.serialized) struct TLSTests {
    @Test func produceAndLargeFetchThroughTheBrokerOverTLS() async throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        var config = BrokerConfig()
        config.set("listen", "127.0.0.1:0", .flag)
        config.set("security.protocol", "SSL", .flag)
        config.set("ssl.certificate.file", pki.serverCert, .flag)
        config.set("ssl.key.file", pki.serverKey, .flag)
        config.set("message.max.bytes", "2000000", .flag)
        let broker = try await Broker.start(settings: .init(config: config), store: MemoryObjectStore(name: "tls"), storage: MemoryLogStorage())
        let task = Task { try await broker.run() }
        let tls = KafkaClientTLS(caFile: pki.ca)
        let c = try await KafkaConnection.connect(host: "127.0.0.1", port: Int(broker.port), timeout: .seconds(30), tls: tls)
        #expect(c.peerCertificateSerial == "03E9")
        _ = try await c.send(CreateTopicsRequest(topics: [.init(name: "t", numPartitions: 1, replicationFactor: 1)]), version: 4)
        // 6 batches of 1 MiB of distinct bytes: the fetch answer (6 MiB) spans many TLS records
        // and exceeds connection.unsent.max.bytes (4 MiB).
        var values: [[UInt8]] = []
        for i in 0..<6 {
            let value = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i &* 7 &+ $0 >> 9) }
            values.append(value)
            var builder = RecordBatchBuilder()
            builder.append(timestamp: 1_700_000_000_000 + Int64(i), key: nil, value: value)
            let r = try await c.send(
                ProduceRequest(acks: -1, timeoutMs: 5000, topicData: [.init(name: "t", partitionData: [.init(index: 0, records: try builder.build()[...])])]),
                version: 9, expecting: ProduceResponse.self)
            let p = try #require(r.responses.first?.partitionResponses.first)
            #expect(p.errorCode == KafkaErrorCode.none.rawValue, "\(p)")
            #expect(p.baseOffset == Int64(i))
        }
        let fetched = try await c.send(
            FetchRequest(maxWaitMs: 0, minBytes: 1, maxBytes: 16 << 20, topics: [
                .init(topic: "t", partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 16 << 20)]),
            ]), version: 11, expecting: FetchResponse.self)
        let data = try #require(fetched.responses.first?.partitions.first)
        #expect(data.errorCode == KafkaErrorCode.none.rawValue)
        let records = try RecordBatchReader.batches(in: try #require(data.records)).flatMap { try $0.records() }
        #expect(records.count == 6)
        #expect(records.map { Array($0.value ?? []) } == values)

        // A plaintext client is not served on the TLS listener.
        let plain = try await KafkaConnection.connect(host: "127.0.0.1", port: Int(broker.port))
        await #expect(throws: (any Error).self) { try await plain.send(ApiVersionsRequest(), version: 0, timeout: .seconds(30)) }
        c.close()
        broker.shutdown()
        try await task.value
    }

    @Test func tls11IsRefused() async throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        let server = try KafkaServer(configuration: try tlsServerConfiguration(pki), handler: PrincipalRecorder())
        let run = Task { await server.run() }
        // SECLEVEL=0 so that the client really offers TLS 1.1; the refusal must come from the server.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl", "s_client", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-connect", "127.0.0.1:\(server.port)"]
        process.standardInput = FileHandle.nullDevice
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus != 0, "\(text)")
        // The server's alert 70 (protocol_version), not a refusal by the client itself.
        #expect(text.contains("alert protocol version"), "\(text)")
        #expect(text.contains("no peer certificate available"), "\(text)")
        #expect(server.counters.tlsHandshakeFailures.value == 1)
        server.shutdown()
        await run.value
    }

    @Test func requiredClientCertificateRefusesClientsWithoutOneAndNamesThePrincipal() async throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        let recorder = PrincipalRecorder()
        let server = try KafkaServer(configuration: try tlsServerConfiguration(pki, auth: .required), handler: recorder)
        let run = Task { await server.run() }
        // TLS 1.3: the client finishes its side before the server checks; the server's alert
        // then ends the connection, so the first call fails.
        await #expect(throws: (any Error).self) {
            let anonymous = try await KafkaConnection.connect(host: "127.0.0.1", port: Int(server.port), tls: KafkaClientTLS(caFile: pki.ca))
            try await apiVersions(anonymous)
        }
        let alice = try await KafkaConnection.connect(
            host: "127.0.0.1", port: Int(server.port), timeout: .seconds(30),
            tls: KafkaClientTLS(caFile: pki.ca, certificateFile: pki.clientCert, keyFile: pki.clientKey))
        try await apiVersions(alice)
        #expect(recorder.principals.withLock { $0 } == ["User:CN=alice,O=acme"])
        #expect(server.counters.tlsHandshakeFailures.value == 1)
        alice.close()
        server.shutdown()
        await run.value
    }

    @Test func aServerNameTheCertificateDoesNotCarryIsRefusedByTheClient() async throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        let server = try KafkaServer(configuration: try tlsServerConfiguration(pki), handler: PrincipalRecorder())
        let run = Task { await server.run() }
        let error = await #expect(throws: KafkaClientError.self) {
            _ = try await KafkaConnection.connect(host: "127.0.0.1", port: Int(server.port),
                                                  tls: KafkaClientTLS(caFile: pki.ca, serverName: "broker-9.example"))
        }
        if case .tls = error?.kind {} else { Issue.record("expected a TLS error, got \(String(describing: error))") }
        server.shutdown()
        await run.value
    }

    @Test func reloadGivesNewConnectionsTheNewCertificateAndKeepsOldConnections() async throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        let failures = Mutex<[String]>([])
        let config = try tlsServerConfiguration(pki) { outcome in
            if case let .failure(error) = outcome { failures.withLock { $0.append(error.description) } }
        }
        let server = try KafkaServer(configuration: config, handler: PrincipalRecorder())
        let run = Task { await server.run() }
        let tls = KafkaClientTLS(caFile: pki.ca)
        let first = try await KafkaConnection.connect(host: "127.0.0.1", port: Int(server.port), timeout: .seconds(30), tls: tls)
        #expect(first.peerCertificateSerial == "03E9")

        try pki.issueServer(serial: 1002)
        let second = try await KafkaConnection.connect(host: "127.0.0.1", port: Int(server.port), timeout: .seconds(30), tls: tls)
        #expect(second.peerCertificateSerial == "03EA")
        try await apiVersions(first)
        try await apiVersions(second)

        // A certificate whose key is not server.key: reported, and the previous pair stays.
        try pki.issueServer(serial: 1003, mismatchedKey: true)
        let third = try await KafkaConnection.connect(host: "127.0.0.1", port: Int(server.port), timeout: .seconds(30), tls: tls)
        #expect(third.peerCertificateSerial == "03EA")
        #expect(failures.withLock { $0.count } == 1)
        try await apiVersions(first)
        for c in [first, second, third] { c.close() }
        server.shutdown()
        await run.value
    }

    /// A Kubernetes Secret volume: `tls.crt` -> `..data/tls.crt`, `..data` -> a timestamped
    /// directory; an update writes a new directory and renames a new `..data` link over the old.
    @Test func aSwapOfTheSecretVolumeDataLinkIsSeen() throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        try pki.run("""
            mkdir v1 v2 volume
            cp server.pem server.key v1/
            ln -s ../v1 volume/..data
            ln -s ..data/server.pem volume/tls.crt
            ln -s ..data/server.key volume/tls.key
            """)
        let outcomes = Mutex<[String]>([])
        let certificates = try TLSServerCertificates(
            files: TLSServerFiles(certificateFile: pki.dir + "/volume/tls.crt", keyFile: pki.dir + "/volume/tls.key"),
            checkIntervalMilliseconds: 1_000, nowMilliseconds: 0) { outcome in
                outcomes.withLock { $0.append((try? outcome.get()) == nil ? "failed" : "reloaded") }
            }
        let before = certificates.current(nowMilliseconds: 10)
        try pki.issueServer(serial: 1002)
        try pki.run("""
            cp server.pem server.key v2/
            ln -s ../v2 volume/..data_tmp
            mv -T volume/..data_tmp volume/..data
            """)
        #expect(certificates.current(nowMilliseconds: 500) === before, "looked before the check interval passed")
        let after = certificates.current(nowMilliseconds: 1_500)
        #expect(after !== before)
        #expect(outcomes.withLock { $0 } == ["reloaded"])
        #expect(certificates.current(nowMilliseconds: 3_000) === after, "unchanged files: the same context")
    }

    @Test func aClientThatSendsNothingIsClosedAfterTheAuthenticationTimeout() async throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        var config = try tlsServerConfiguration(pki)
        config.authenticationTimeoutMilliseconds = 300
        let server = try KafkaServer(configuration: config, handler: PrincipalRecorder())
        let run = Task { await server.run() }
        let port = server.port
        // Blocking read on its own thread: returns 0 when the server closes (SO_RCVTIMEO 120 s).
        let result = await withCheckedContinuation { (c: CheckedContinuation<Int, Never>) in
            Thread {
                guard let fd = try? TestClient.connect(port: port) else { return c.resume(returning: -2) }
                var byte: UInt8 = 0
                let n = read(fd, &byte, 1)
                close(fd)
                c.resume(returning: n)
            }.start()
        }
        #expect(result == 0)
        #expect(server.counters.authenticationTimeouts.value == 1)
        // A client that completes its handshake is not affected.
        let c = try await KafkaConnection.connect(host: "127.0.0.1", port: Int(port), timeout: .seconds(30), tls: KafkaClientTLS(caFile: pki.ca))
        try await apiVersions(c)
        c.close()
        server.shutdown()
        await run.value
    }
}
