import Foundation
import HTTPClient
import Support
import Testing

struct SplitMix64Bytes {
    static func make(_ count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }
}

@Suite struct HTTPClientTests {
    @Test func getPutHeadDelete() async throws {
        let server = try TestHTTPServer()
        defer { server.stop() }
        let client = try HTTPClient()
        defer { client.shutdown() }

        let get = try await client.execute(HTTPRequest(method: "GET", url: server.baseURL + "/echo", headers: ["Foo": "bar"]))
        #expect(get.status == 200)
        #expect(get.headers["X-Method"] == "GET")
        #expect(get.headers["x-foo"] == "bar")
        #expect(get.body.isEmpty)

        let body = Array("hello, floe".utf8)
        let put = try await client.execute(HTTPRequest(method: "PUT", url: server.baseURL + "/echo", body: body))
        #expect(put.status == 200)
        #expect(put.headers["x-method"] == "PUT")
        #expect(put.body == body)

        let post = try await client.execute(HTTPRequest(method: "POST", url: server.baseURL + "/echo"))
        #expect(post.headers["x-method"] == "POST")
        #expect(post.body.isEmpty)

        let head = try await client.execute(HTTPRequest(method: "HEAD", url: server.baseURL + "/bytes/1234"))
        #expect(head.status == 200)
        #expect(head.headers["content-length"] == "1234")
        #expect(head.body.isEmpty)

        let delete = try await client.execute(HTTPRequest(method: "DELETE", url: server.baseURL + "/echo"))
        #expect(delete.headers["x-method"] == "DELETE")
    }

    @Test func statusCodesAreResponsesNotErrors() async throws {
        let server = try TestHTTPServer()
        defer { server.stop() }
        let client = try HTTPClient()
        defer { client.shutdown() }
        for status in [204, 404, 412, 500, 503] {
            let response = try await client.execute(HTTPRequest(method: "GET", url: server.baseURL + "/status/\(status)"))
            #expect(response.status == status)
        }
    }

    @Test func largeBodiesRoundTrip() async throws {
        let server = try TestHTTPServer()
        defer { server.stop() }
        let client = try HTTPClient()
        defer { client.shutdown() }
        let body = SplitMix64Bytes.make(8 << 20, seed: 7)
        let response = try await client.execute(HTTPRequest(method: "PUT", url: server.baseURL + "/echo", body: body))
        #expect(response.body.count == body.count)
        #expect(response.body == body)
    }

    @Test func sequentialRequestsReuseOneConnection() async throws {
        let server = try TestHTTPServer()
        defer { server.stop() }
        let client = try HTTPClient()
        defer { client.shutdown() }
        for i in 0..<20 {
            let response = try await client.execute(HTTPRequest(method: "PUT", url: server.baseURL + "/echo", body: [UInt8(i)]))
            #expect(response.body == [UInt8(i)])
        }
        #expect(server.state.withLock { $0.connectionsAccepted } == 1)
        #expect(server.state.withLock { $0.requests } == 20)
    }

    @Test func concurrencyIsBoundedAndReached() async throws {
        let limit = 3
        let server = try TestHTTPServer(gateThreshold: limit)
        defer { server.stop() }
        let client = try HTTPClient(configuration: HTTPClientConfiguration(maxConcurrentRequests: limit))
        defer { client.shutdown() }
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<12 {
                group.addTask { try await client.execute(HTTPRequest(method: "GET", url: server.baseURL + "/gate")).status }
            }
            for try await status in group { #expect(status == 200) }
        }
        // The gate held the first requests until `limit` were in flight at once, so the limit
        // was reached; the client never let more than `limit` reach the server.
        #expect(server.state.withLock { $0.gateMaxInFlight } == limit)
        #expect(server.state.withLock { $0.connectionsAccepted } <= limit)
    }

    @Test func timeoutIsTyped() async throws {
        let server = try TestHTTPServer()
        defer { server.stop() }
        let client = try HTTPClient()
        defer { client.shutdown() }
        do {
            _ = try await client.execute(HTTPRequest(method: "GET", url: server.baseURL + "/hang", timeout: .milliseconds(200)))
            Issue.record("a request to /hang returned")
        } catch let error as HTTPClientError {
            guard case .timeout(let method, let url, _) = error else {
                Issue.record("expected a timeout, got \(error)")
                return
            }
            #expect(method == "GET")
            #expect(url.hasSuffix("/hang"))
        }
    }

    @Test func connectionRefusedIsATransportError() async throws {
        // Find a port nobody listens on: open a server, note its port, stop it.
        let server = try TestHTTPServer()
        let url = server.baseURL + "/echo"
        server.stop()
        let client = try HTTPClient()
        defer { client.shutdown() }
        do {
            _ = try await client.execute(HTTPRequest(method: "GET", url: url))
            Issue.record("a request to a closed port returned")
        } catch let error as HTTPClientError {
            guard case .transport(_, let failedURL, let code, _) = error else {
                Issue.record("expected a transport error, got \(error)")
                return
            }
            #expect(failedURL == url)
            #expect(code == 7)  // CURLE_COULDNT_CONNECT
            #expect("\(error)".contains(url))
        }
    }

    @Test func cancellationAbortsTheTransfer() async throws {
        let server = try TestHTTPServer()
        defer { server.stop() }
        let client = try HTTPClient()
        defer { client.shutdown() }
        let task = Task {
            try await client.execute(HTTPRequest(method: "GET", url: server.baseURL + "/hang", timeout: .seconds(60)))
        }
        var arrivals = server.arrivals.makeAsyncIterator()
        #expect(await arrivals.next() == "/hang")
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        // The client hung up: the server saw the connection close.
        var hangups = server.hangups.makeAsyncIterator()
        _ = await hangups.next()
        #expect(server.state.withLock { $0.closedHangs } == 1)
    }

    @Test func responseLimitIsEnforced() async throws {
        let server = try TestHTTPServer()
        defer { server.stop() }
        let client = try HTTPClient(configuration: HTTPClientConfiguration(maxResponseBodyBytes: 1000))
        defer { client.shutdown() }
        let ok = try await client.execute(HTTPRequest(method: "GET", url: server.baseURL + "/bytes/1000"))
        #expect(ok.body.count == 1000)
        await #expect(throws: HTTPClientError.self) {
            _ = try await client.execute(HTTPRequest(method: "GET", url: server.baseURL + "/bytes/1001"))
        }
    }

    @Test func shutdownFailsLaterRequests() async throws {
        let server = try TestHTTPServer()
        defer { server.stop() }
        let client = try HTTPClient()
        client.shutdown()
        do {
            _ = try await client.execute(HTTPRequest(method: "GET", url: server.baseURL + "/echo"))
            Issue.record("a request after shutdown returned")
        } catch let error as HTTPClientError {
            guard case .shutDown = error else {
                Issue.record("expected shutDown, got \(error)")
                return
            }
        }
    }
}

@Suite struct HTTPClientStreamingTests {
    @Test func streamDeliversHeadThenEveryChunkAndEnds() async throws {
        let server = try TestHTTPServer()
        defer { server.stop() }
        let client = try HTTPClient()
        defer { client.shutdown() }
        var status = 0
        var heads = 0
        var body: [UInt8] = []
        for try await part in client.stream(HTTPRequest(method: "GET", url: server.baseURL + "/chunks/50")) {
            switch part {
            case .head(let s, let headers):
                #expect(body.isEmpty, "the head comes before any body")
                status = s
                heads += 1
                #expect(headers["content-type"] == "application/json")
            case .body(let bytes): body += bytes
            }
        }
        #expect(heads == 1)
        #expect(status == 200)
        #expect(String(decoding: body, as: UTF8.self) == (0..<50).map { "line \($0)\n" }.joined())
    }

    @Test func streamYieldsChunksBeforeTheResponseEndsAndAbortsWhenDropped() async throws {
        let server = try TestHTTPServer()
        defer { server.stop() }
        let client = try HTTPClient()
        defer { client.shutdown() }
        var received: [UInt8] = []
        // The server never ends /trickle: seeing its first line proves chunks are delivered live.
        for try await part in client.stream(HTTPRequest(method: "GET", url: server.baseURL + "/trickle")) {
            if case .body(let bytes) = part { received += bytes }
            if received.last == UInt8(ascii: "\n") { break }
        }
        #expect(String(decoding: received, as: UTF8.self) == "line 0\n")
        // Leaving the loop aborted the transfer: the server sees the hang-up.
        var hangups = server.hangups.makeAsyncIterator()
        _ = await hangups.next()
        #expect(server.state.withLock { $0.closedHangs } == 1)
    }

    @Test func streamStatusErrorsAreResponsesAndTransportErrorsAreThrown() async throws {
        let server = try TestHTTPServer()
        defer { server.stop() }
        let client = try HTTPClient()
        defer { client.shutdown() }
        var status = 0
        var body: [UInt8] = []
        for try await part in client.stream(HTTPRequest(method: "GET", url: server.baseURL + "/status/410")) {
            switch part {
            case .head(let s, _): status = s
            case .body(let b): body += b
            }
        }
        #expect(status == 410)
        #expect(String(decoding: body, as: UTF8.self) == "status 410")

        let closed = try TestHTTPServer()
        closed.stop()
        await #expect(throws: HTTPClientError.self) {
            for try await _ in client.stream(HTTPRequest(method: "GET", url: closed.baseURL + "/chunks/1")) {}
        }
    }
}
