import Foundation
import Testing

@testable import KubeAPI

/// Every `null` anywhere in a JSON value, as paths.
func nullPaths(_ v: JSONValue, _ path: String = "") -> [String] {
    switch v {
    case .null: return [path.isEmpty ? "<root>" : path]
    case .array(let a): return a.enumerated().flatMap { nullPaths($1, "\(path)[\($0)]") }
    case .object(let o): return o.flatMap { nullPaths($1, "\(path).\($0)") }
    default: return []
    }
}

@Suite struct NilOmissionTests {
    @Test func sparseObjectsEncodeWithoutNulls() throws {
        let sts = StatefulSet(
            metadata: ObjectMeta(name: "a"),
            spec: StatefulSetSpec(
                selector: LabelSelector(), template: PodTemplateSpec(spec: PodSpec(containers: [Container(name: "c")]))))
        let text = try KubeJSON.string(sts)
        #expect(!text.contains("null"), "\(text)")
        #expect(
            text
                == #"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"a"},"spec":{"selector":{},"template":{"spec":{"containers":[{"name":"c"}]}}}}"#
        )
    }

    @Test func everyTypeWithOnlyRequiredFieldsHasNoNull() throws {
        let values: [any Encodable] = [
            ObjectMeta(), ListMeta(), Status(), Condition(type: "Ready", status: "True", lastTransitionTime: "t", reason: "r", message: "m"),
            ConfigMap(metadata: ObjectMeta()), Secret(metadata: ObjectMeta()), Service(metadata: ObjectMeta(), spec: ServiceSpec()),
            Pod(metadata: ObjectMeta(), status: PodStatus()), Container(name: "x"), EnvVar(name: "X", valueFrom: EnvVarSource()),
            Probe(httpGet: HTTPGetAction(port: .int(1))), Lifecycle(preStop: LifecycleHandler()), SecurityContext(capabilities: Capabilities()),
            Volume(name: "v", emptyDir: EmptyDirVolumeSource()), PodSecurityContext(), Toleration(),
            PodDisruptionBudget(metadata: ObjectMeta(), spec: PodDisruptionBudgetSpec(), status: PodDisruptionBudgetStatus()),
            Lease(metadata: ObjectMeta(), spec: LeaseSpec()), Scale(metadata: ObjectMeta(), spec: ScaleSpec()),
            Event(metadata: ObjectMeta(), involvedObject: ObjectReference(), source: EventSource()),
            StatefulSetStatus(), PersistentVolumeClaim(metadata: ObjectMeta(), spec: PersistentVolumeClaimSpec()),
        ]
        for value in values {
            let json = try JSONValue(encoding: AnyEncodable(value))
            #expect(nullPaths(json).isEmpty, "\(type(of: value)): \(nullPaths(json))")
        }
    }

    @Test func keysAreSorted() throws {
        let meta = ObjectMeta(name: "n", namespace: "ns", labels: ["b": "2", "a": "1"])
        #expect(try KubeJSON.string(meta) == #"{"labels":{"a":"1","b":"2"},"name":"n","namespace":"ns"}"#)
    }

    @Test func slashesAreNotEscaped() throws {
        #expect(try KubeJSON.string(["app.kubernetes.io/name": "floe"]) == #"{"app.kubernetes.io/name":"floe"}"#)
    }
}

struct AnyEncodable: Encodable {
    let value: any Encodable
    init(_ value: any Encodable) { self.value = value }
    func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
}

@Suite struct DecodeTests {
    /// A StatefulSet as an API server returns it: managedFields, status, fields we do not model.
    static let serverStatefulSet = #"""
        {"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"c-broker","namespace":"ns","uid":"u-1",
        "resourceVersion":"42","generation":3,"creationTimestamp":"2024-01-01T00:00:00Z",
        "managedFields":[{"manager":"floe-operator","operation":"Apply","fieldsV1":{"f:spec":{}}}],
        "ownerReferences":[{"apiVersion":"floe.dev/v1alpha1","kind":"FloeCluster","name":"c","uid":"owner","controller":true,"blockOwnerDeletion":true}]},
        "spec":{"replicas":3,"serviceName":"c-brokers","selector":{"matchLabels":{"a":"b"}},"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Retain"},
        "template":{"metadata":{"creationTimestamp":null,"labels":{"a":"b"}},"spec":{"dnsPolicy":"ClusterFirst","containers":[{"name":"broker","image":"floe:1",
        "terminationMessagePath":"/dev/termination-log","ports":[{"name":"kafka","containerPort":9092,"protocol":"TCP"}],
        "readinessProbe":{"httpGet":{"path":"/readyz","port":"http","scheme":"HTTP"},"periodSeconds":5}}]}},
        "updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"partition":0}}},
        "status":{"observedGeneration":3,"replicas":3,"readyReplicas":2,"updatedReplicas":3,"collisionCount":0,"availableReplicas":2}}
        """#

    @Test func unknownFieldsAreTolerated() throws {
        let sts = try KubeJSON.decode(StatefulSet.self, from: Data(Self.serverStatefulSet.utf8))
        #expect(sts.metadata.controllerReference?.uid == "owner")
        #expect(sts.metadata.generation == 3)
        #expect(sts.spec?.template.spec?.containers.first?.readinessProbe?.httpGet?.port == .string("http"))
        #expect(sts.spec?.template.metadata?.creationTimestamp == nil)
        #expect(sts.status?.readyReplicas == 2)
        // Re-encoding drops what we do not model, and never writes null.
        let text = try KubeJSON.string(sts)
        #expect(!text.contains("managedFields") && !text.contains("null") && !text.contains("dnsPolicy"))
    }

    @Test func decodeErrorNamesTheField() {
        #expect(throws: KubeAPIError.decode(type: "Container", detail: "missing field .name")) {
            try KubeJSON.decode(Container.self, from: Data(#"{"image":"x"}"#.utf8))
        }
        #expect(throws: KubeAPIError.decode(type: "ServicePort", detail: "field .port is not Int32")) {
            try KubeJSON.decode(ServicePort.self, from: Data(#"{"port":"abc"}"#.utf8))
        }
    }

    @Test func listsWithNullOrMissingItemsAreEmpty() throws {
        let a = try KubeJSON.decode(KubeList<ConfigMap>.self, from: Data(#"{"kind":"ConfigMapList","metadata":{"resourceVersion":"7"},"items":null}"#.utf8))
        #expect(a.items.isEmpty && a.metadata.resourceVersion == "7")
        let b = try KubeJSON.decode(KubeList<ConfigMap>.self, from: Data(#"{"metadata":{"continue":"tok","remainingItemCount":5}}"#.utf8))
        #expect(b.items.isEmpty && b.metadata.continueToken == "tok" && b.metadata.remainingItemCount == 5)
        #expect(try KubeJSON.string(ListMeta(continueToken: "x")) == #"{"continue":"x"}"#)
    }

    @Test func watchEvents() throws {
        let added = try KubeJSON.decode(
            WatchEvent<ConfigMap>.self, from: Data(#"{"type":"ADDED","object":{"kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"v"}}}"#.utf8))
        var expected = ConfigMap(metadata: ObjectMeta(name: "a"), data: ["k": "v"])
        expected.apiVersion = nil  // absent in the event, as in list items
        #expect(added == .added(expected))
        let bookmark = try KubeJSON.decode(
            WatchEvent<StatefulSet>.self, from: Data(#"{"type":"BOOKMARK","object":{"kind":"StatefulSet","metadata":{"resourceVersion":"12345"}}}"#.utf8))
        #expect(bookmark == .bookmark(resourceVersion: "12345"))
        let gone = try KubeJSON.decode(
            WatchEvent<StatefulSet>.self,
            from: Data(#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}}"#.utf8))
        #expect(gone == .error(Status(status: "Failure", message: "too old resource version: 1 (5)", reason: "Expired", code: 410)))
        #expect(throws: KubeAPIError.self) {
            try KubeJSON.decode(WatchEvent<ConfigMap>.self, from: Data(#"{"type":"WAT","object":{}}"#.utf8))
        }
    }

    @Test func intOrString() throws {
        #expect(try KubeJSON.decode([IntOrString].self, from: Data(#"[1,"25%","http"]"#.utf8)) == [.int(1), .string("25%"), .string("http")])
        #expect(try KubeJSON.string([IntOrString.int(9092), .string("kafka")]) == #"[9092,"kafka"]"#)
    }

    @Test func jsonValueKeepsIntegersAndDoubles() throws {
        let v = try KubeJSON.decode(JSONValue.self, from: Data(#"{"a":1,"b":1.5,"c":true,"d":null,"e":["x",{}],"f":-9007199254740993}"#.utf8))
        #expect(v == ["a": 1, "b": .double(1.5), "c": true, "d": .null, "e": ["x", [:]], "f": .int(-9_007_199_254_740_993)])
        #expect(try KubeJSON.string(v) == #"{"a":1,"b":1.5,"c":true,"d":null,"e":["x",{}],"f":-9007199254740993}"#)
    }

    @Test func labelSelectorQueryString() {
        let s = LabelSelector(
            matchLabels: ["b": "2", "a": "1"],
            matchExpressions: [LabelSelectorRequirement(key: "tier", operator: "In", values: ["x", "y"]), LabelSelectorRequirement(key: "gone", operator: "DoesNotExist")])
        #expect(s.queryString == "a=1,b=2,tier in (x,y),!gone")
    }

    @Test func kubeTime() {
        let d = Date(timeIntervalSince1970: 1_700_000_000)
        #expect(KubeTime.format(d) == "2023-11-14T22:13:20Z")
        #expect(KubeTime.parse("2023-11-14T22:13:20Z") == d)
        #expect(KubeTime.parse("2023-11-14T22:13:20.000000Z") == d)
    }
}
