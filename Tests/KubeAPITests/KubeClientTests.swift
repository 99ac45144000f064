import Foundation
import HTTPClient
import KubeAPI
import Support
import Testing

/// The REST client against the independent Python fake API server (HTTPS, bearer token).
@Suite(.serialized) struct KubeClientTests {
    static func client(_ server: FakeAPIServerProcess, token: String? = nil, ca: Bool = true) throws -> KubeClient {
        try KubeClient(
            config: KubeClientConfig(
                server: server.url, tls: TLSOptions(caFile: ca ? server.caFile : nil), credentials: .token(token ?? server.token)),
            userAgent: "floe-kubeapi-tests/1")
    }

    static func configMap(_ name: String, _ data: [String: String]? = ["k": "v"]) -> ConfigMap {
        ConfigMap(metadata: ObjectMeta(name: name, namespace: "default", labels: ["set": "a"]), data: data)
    }

    @Test func crudConflictsPatchApplyAndDelete() async throws {
        let server = try FakeAPIServerProcess()
        defer { server.stop() }
        let kube = try Self.client(server)
        defer { kube.shutdown() }

        let created = try await kube.create(Self.configMap("one"))
        #expect(created.metadata.uid != nil)
        let rv1 = try #require(created.metadata.resourceVersion)
        await #expect { _ = try await kube.create(Self.configMap("one")) } throws: { ($0 as? KubeAPIError)?.isConflict == true }

        var changed = created
        changed.data = ["k": "w"]
        let updated = try await kube.update(changed)
        #expect(updated.data == ["k": "w"])
        #expect(updated.metadata.resourceVersion != rv1)
        // Updating from the stale copy is a typed conflict naming the object.
        do {
            _ = try await kube.update(changed)
            Issue.record("a stale update must fail")
        } catch let error as KubeAPIError {
            guard case .conflict(let verb, let resource, let ns, let name, _, _) = error else { Issue.record("\(error)"); return }
            #expect(verb == "update" && resource == "configmaps" && ns == "default" && name == "one")
        }

        let patched = try await kube.mergePatch(ConfigMap.self, namespace: "default", name: "one", patch: ["data": ["extra": "1"]])
        #expect(patched.data == ["k": "w", "extra": "1"])

        // Server-side apply: creates, then an apply without a field removes the field it owned.
        let applied = try await kube.apply(Self.configMap("two", ["a": "1", "b": "2"]), fieldManager: "floe-test")
        #expect(applied.data == ["a": "1", "b": "2"])
        let reapplied = try await kube.apply(Self.configMap("two", ["a": "1"]), fieldManager: "floe-test")
        #expect(reapplied.data == ["a": "1"])
        #expect(reapplied.metadata.labels == ["set": "a"])

        try await kube.delete(ConfigMap.self, namespace: "default", name: "one", uid: created.metadata.uid)
        do {
            _ = try await kube.get(ConfigMap.self, namespace: "default", name: "one")
            Issue.record("deleted object still readable")
        } catch let error as KubeAPIError {
            #expect(error.isNotFound)
            #expect(error.description.contains("configmaps in namespace default named one"))
        }
    }

    @Test func listPaginatesAndWatchResumesAndReportsExpiry() async throws {
        let server = try FakeAPIServerProcess()
        defer { server.stop() }
        let kube = try Self.client(server)
        defer { kube.shutdown() }
        for i in 0..<7 { _ = try await kube.create(Self.configMap("cm-\(i)")) }
        let first = try await kube.listPage(ConfigMap.self, namespace: "default", labelSelector: "set=a", limit: 3)
        #expect(first.items.count == 3)
        #expect(first.metadata.continueToken?.isEmpty == false)
        let all = try await kube.list(ConfigMap.self, namespace: "default", labelSelector: "set=a", pageSize: 3)
        #expect(all.items.compactMap(\.metadata.name).sorted() == (0..<7).map { "cm-\($0)" })
        let rv = try #require(all.metadata.resourceVersion)

        // A watch from the list's resourceVersion sees later writes, in order.
        let watch = try await kube.watch(ConfigMap.self, namespace: "default", resourceVersion: rv, timeoutSeconds: 30)
        _ = try await kube.create(Self.configMap("later"))
        try await kube.delete(ConfigMap.self, namespace: "default", name: "cm-0")
        var seen: [String] = []
        for try await event in watch {
            switch event {
            case .added(let o): seen.append("ADDED \(o.metadata.name ?? "")")
            case .deleted(let o): seen.append("DELETED \(o.metadata.name ?? "")")
            case .modified, .bookmark: continue
            case .error(let s): Issue.record("unexpected error event \(s)")
            }
            if seen.count == 2 { break }
        }
        #expect(seen == ["ADDED later", "DELETED cm-0"])

        // After compaction, watching from the old resourceVersion yields a 410 error event.
        let http = try HTTPClient(configuration: HTTPClientConfiguration(tls: TLSOptions(caFile: server.caFile)))
        defer { http.shutdown() }
        _ = try await server.control(#"{"action":"compact"}"#, client: http)
        var expired = false
        for try await event in try await kube.watch(ConfigMap.self, namespace: "default", resourceVersion: rv, timeoutSeconds: 30) {
            if case .error(let s) = event, s.code == 410 { expired = true }
        }
        #expect(expired)
    }

    @Test func authenticationAndTLSFailuresAreTyped() async throws {
        let server = try FakeAPIServerProcess()
        defer { server.stop() }
        let wrongToken = try Self.client(server, token: "wrong")
        defer { wrongToken.shutdown() }
        await #expect { _ = try await wrongToken.get(ConfigMap.self, namespace: "default", name: "x") } throws: {
            ($0 as? KubeAPIError)?.httpStatus == 401
        }
        // Without the CA the self-signed server cannot be verified: a transport error, never a skip.
        let noCA = try Self.client(server, ca: false)
        defer { noCA.shutdown() }
        await #expect { _ = try await noCA.get(ConfigMap.self, namespace: "default", name: "x") } throws: {
            if case .transport = $0 as? KubeAPIError { return true }
            return false
        }
    }

    @Test func scaleSubresourceAndStatus() async throws {
        let server = try FakeAPIServerProcess()
        defer { server.stop() }
        let kube = try Self.client(server)
        defer { kube.shutdown() }
        let sts = StatefulSet(
            metadata: ObjectMeta(name: "s", namespace: "default"),
            spec: StatefulSetSpec(
                replicas: 1, serviceName: "s", selector: LabelSelector(matchLabels: ["a": "b"]),
                template: PodTemplateSpec(metadata: ObjectMeta(labels: ["a": "b"]), spec: PodSpec(containers: [Container(name: "c", image: "i")]))))
        _ = try await kube.create(sts)
        var scale = try await kube.getScale(StatefulSet.self, namespace: "default", name: "s")
        #expect(scale.spec?.replicas == 1)
        scale.spec = ScaleSpec(replicas: 4)
        _ = try await kube.updateScale(StatefulSet.self, scale)
        let after = try await kube.get(StatefulSet.self, namespace: "default", name: "s")
        #expect(after.spec?.replicas == 4)
        #expect(after.metadata.generation == 2)
    }
}
