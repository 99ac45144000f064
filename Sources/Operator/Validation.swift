import Foundation
import BrokerSettings
import KubeAPI

/// Checks a FloeCluster beyond what a manifest parser can: the same cross-field rules the CRD
/// gives the API server (so a cluster that reached us without them — an older CRD, the local
/// runtime, `floe-operator render` — is judged the same), plus rules only the operator knows
/// (name lengths of rendered objects, the broker's configuration contract in `BrokerSettings`).
///
/// Returns human-readable problems, each naming the field; empty means valid. An invalid
/// cluster is not rendered: its status gets `Degraded` with these problems in the message.
public enum FloeClusterValidation {
    /// Cluster names longer than this make rendered names (`NAME-bootstrap`, pod names with
    /// a revision hash label) exceed Kubernetes' 63-character label limit.
    public static let maxNameLength = 45

    /// Why a `spec.config` entry cannot be rendered, or nil: the key must be a declared broker
    /// setting (`BrokerSettings`) that users may set, with a value of its type. Operator-owned
    /// settings (storage, WAL, listeners, node id) come from the spec's own fields.
    public static func configProblem(_ key: String, _ value: String) -> String? {
        guard let setting = BrokerSettings.named[key] else {
            return "spec.config key \"\(key)\" is not a broker setting (docs/broker.md lists them)"
        }
        switch setting.access {
        case .operator:
            return "spec.config key \"\(key)\" is set by the operator and cannot be overridden"
        case .readOnly:
            return "spec.config key \"\(key)\" is read-only in Floe: \(setting.summary)"
        case .user:
            return setting.problem(value).map { "spec.config key \"\(key)\" value \"\(value)\": \($0)" }
        }
    }

    public static func problems(_ cluster: FloeCluster) -> [String] {
        var problems: [String] = []
        let spec = cluster.spec

        if let name = cluster.metadata.name {
            if name.count > maxNameLength {
                problems.append("metadata.name \"\(name)\" is longer than \(maxNameLength) characters")
            }
            if !isDNSLabel(name) {
                problems.append("metadata.name \"\(name)\" must be lower-case letters, digits and '-', starting with a letter")
            }
        } else {
            problems.append("metadata.name is missing")
        }

        if let image = spec.image, image.isEmpty { problems.append("spec.image is empty") }
        if let policy = spec.imagePullPolicy, !["Always", "IfNotPresent", "Never"].contains(policy) {
            problems.append("spec.imagePullPolicy \"\(policy)\" is not Always, IfNotPresent or Never")
        }
        let replicas = spec.replicas ?? FloeDefaults.replicas
        if replicas < 0 { problems.append("spec.replicas \(replicas) is negative") }
        if let grace = spec.terminationGracePeriodSeconds, grace < 10 {
            problems.append("spec.terminationGracePeriodSeconds \(grace) is below 10: brokers need time to hand over partitions")
        }

        problems += storageProblems(spec.storage)

        if let l = spec.listeners {
            let kafka = l.kafkaPort ?? FloeDefaults.kafkaPort
            let http = l.httpPort ?? FloeDefaults.httpPort
            for (field, port) in [("kafkaPort", kafka), ("httpPort", http)] where !(1024...65535).contains(port) {
                problems.append("spec.listeners.\(field) \(port) is outside 1024-65535 (brokers run as non-root)")
            }
            if kafka == http { problems.append("spec.listeners.kafkaPort and httpPort are both \(kafka)") }
            if let t = l.serviceType, !["ClusterIP", "NodePort", "LoadBalancer"].contains(t) {
                problems.append("spec.listeners.serviceType \"\(t)\" is not ClusterIP, NodePort or LoadBalancer")
            }
            if let e = l.external {
                problems += externalListenerProblems(e, kafkaPort: kafka, httpPort: http, replicas: Render.externalServiceCount(spec))
            }
        }

        if let t = spec.podTemplate {
            for name in (t.env ?? [:]).keys.sorted() {
                if Render.reservedEnv.contains(name) || name.hasPrefix("FLOE_") {
                    problems.append("spec.podTemplate.env \"\(name)\" is set by the operator")
                } else if name.isEmpty || name.first!.isNumber || !name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-._".contains($0)) }) {
                    problems.append("spec.podTemplate.env \"\(name)\" is not a valid environment variable name")
                }
            }
            if let c = t.topologySpreadConstraints, case .array = c {} else if t.topologySpreadConstraints != nil {
                problems.append("spec.podTemplate.topologySpreadConstraints must be a list")
            }
            for name in t.imagePullSecrets ?? [] where name.isEmpty {
                problems.append("spec.podTemplate.imagePullSecrets has an empty name")
            }
        }
        if let m = spec.disruptionBudget?.maxUnavailable, m < 0 {
            problems.append("spec.disruptionBudget.maxUnavailable \(m) is negative")
        }

        for (key, value) in (spec.config ?? [:]).sorted(by: { $0.key < $1.key }) {
            if SecuritySettings.rendered.contains(key) {
                problems.append("spec.config key \"\(key)\" is set by the operator from spec.listeners, spec.users and spec.authorization")
            } else if let problem = configProblem(key, value) {
                problems.append(problem)
            }
        }
        problems += securityProblems(spec)

        if let a = spec.autoscaling { problems += autoscalingProblems(a, replicas: replicas) }

        if let b = spec.balancing {
            if let i = b.intervalSeconds, i < 10 { problems.append("spec.balancing.intervalSeconds \(i) is below 10") }
            if let m = b.maxMovesPerRound, m < 1 { problems.append("spec.balancing.maxMovesPerRound \(m) must be at least 1") }
            if let t = b.tolerancePercent, !(1...100).contains(t) { problems.append("spec.balancing.tolerancePercent \(t) is outside 1-100") }
            if let c = b.moveCooldownSeconds, c < 0 { problems.append("spec.balancing.moveCooldownSeconds \(c) is negative") }
        }
        return problems
    }

    /// What is wrong with an external listener: its type, its port, its node ports (one per
    /// broker, inside 30000-32767), and a LoadBalancer without an advertised host.
    static func externalListenerProblems(_ e: ExternalListenerSpec, kafkaPort: Int32, httpPort: Int32, replicas: Int32) -> [String] {
        var problems: [String] = []
        let type = e.type ?? FloeDefaults.externalType
        if !["NodePort", "LoadBalancer"].contains(type) {
            problems.append("spec.listeners.external.type \"\(type)\" is not NodePort or LoadBalancer")
        }
        let port = e.port ?? FloeDefaults.externalPort
        if !(1024...65535).contains(port) {
            problems.append("spec.listeners.external.port \(port) is outside 1024-65535 (brokers run as non-root)")
        }
        if port == kafkaPort || port == httpPort {
            problems.append("spec.listeners.external.port \(port) is also the kafkaPort or httpPort")
        }
        if type == "NodePort" {
            let base = e.nodePortBase ?? FloeDefaults.externalNodePortBase
            let last = Int64(base) + Int64(max(replicas, 1)) - 1
            if base < 30000 || last > 32767 {
                problems.append("spec.listeners.external.nodePortBase \(base) gives node ports \(base)-\(last), outside 30000-32767")
            }
        }
        if type == "LoadBalancer" && (e.advertisedHost ?? "").isEmpty {
            problems.append("spec.listeners.external.advertisedHost is required for a LoadBalancer external listener")
        }
        if let host = e.advertisedHost {
            var rest = Substring(host)
            while let open = rest.firstIndex(of: "{") {
                let close = rest[open...].firstIndex(of: "}")
                if close == nil || rest[rest.index(after: open)..<close!] != "node" {
                    problems.append("spec.listeners.external.advertisedHost \"\(host)\": only {node} may be used")
                    break
                }
                rest = rest[rest.index(after: close!)...]
            }
        }
        return problems
    }

    /// What is wrong with the security fields: TLS Secrets and client authentication of each
    /// listener, authentication types, users, authorization and the object store's CA. The broker
    /// has one certificate and one client CA for all its TLS listeners, so two TLS listeners must
    /// agree on them.
    public static func securityProblems(_ spec: FloeClusterSpec) -> [String] {
        var problems: [String] = []
        let internalField = "spec.listeners"
        let externalField = "spec.listeners.external"
        func listener(_ field: String, tls: ListenerTLSSpec?, authentication: ListenerAuthenticationSpec?) {
            if let t = tls {
                if t.secretName.isEmpty { problems.append("\(field).tls.secretName is empty") }
                let auth = t.clientAuth ?? "none"
                if !["none", "requested", "required"].contains(auth) {
                    problems.append("\(field).tls.clientAuth \"\(auth)\" is not none, requested or required")
                } else if auth != "none" && (t.caSecretName ?? "").isEmpty {
                    problems.append("\(field).tls.clientAuth \(auth) needs \(field).tls.caSecretName (the CA that signs client certificates)")
                }
                if let ca = t.caSecretName, ca.isEmpty { problems.append("\(field).tls.caSecretName is empty") }
            }
            guard let type = authentication?.type else { return }
            if !["scram-sha-512", "scram-sha-256", "plain", "tls"].contains(type) {
                problems.append("\(field).authentication.type \"\(type)\" is not scram-sha-512, scram-sha-256, plain or tls")
            } else if type == "tls" {
                if field == internalField {
                    problems.append("\(field).authentication.type tls is not supported on the internal listener: the brokers and the operator "
                                    + "connect there and authenticate with SCRAM; use scram-sha-512 there and tls on spec.listeners.external")
                } else if tls == nil {
                    problems.append("\(field).authentication.type tls needs \(field).tls (client certificates are a TLS feature)")
                } else if (tls?.caSecretName ?? "").isEmpty {
                    problems.append("\(field).authentication.type tls needs \(field).tls.caSecretName (the CA that signs client certificates)")
                }
            }
        }
        let l = spec.listeners
        listener(internalField, tls: l?.tls, authentication: l?.authentication)
        if let e = l?.external { listener(externalField, tls: e.tls, authentication: e.authentication) }
        if let a = l?.tls, let b = l?.external?.tls {
            if a.secretName != b.secretName {
                problems.append("spec.listeners.tls.secretName \"\(a.secretName)\" and spec.listeners.external.tls.secretName \"\(b.secretName)\" differ: "
                                + "the broker serves one certificate on all TLS listeners")
            }
            if (a.caSecretName ?? "") != (b.caSecretName ?? "") || (a.clientAuth ?? "none") != (b.clientAuth ?? "none") {
                problems.append("spec.listeners.tls and spec.listeners.external.tls differ in caSecretName or clientAuth: "
                                + "the broker has one client CA and one client-certificate policy for all TLS listeners")
            }
        }
        if l?.external?.authentication?.type == "tls", l?.external?.tls != nil, let t = l?.tls, (t.clientAuth ?? "none") != "required" {
            problems.append("spec.listeners.external.authentication.type tls makes client certificates required on every TLS listener: "
                            + "set spec.listeners.tls.clientAuth to required as well")
        }

        let plan = SecurityPlan(spec)
        var seen = Set<String>()
        for (i, u) in (spec.users ?? []).enumerated() {
            let field = "spec.users[\(i)]"
            if u.name.isEmpty || u.name.count > 253
                || !u.name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._@-".contains($0)) })
            {
                problems.append("\(field).name \"\(u.name)\" must be 1-253 of letters, digits and . _ @ -")
            }
            if [SecurityLayout.operatorUser, SecurityLayout.brokerUser].contains(u.name) {
                problems.append("\(field).name \"\(u.name)\" is reserved for the operator's own users")
            }
            if !seen.insert(u.name).inserted { problems.append("\(field).name \"\(u.name)\" is listed twice") }
            if u.passwordSecret.name.isEmpty { problems.append("\(field).passwordSecret.name is empty") }
            if u.passwordSecret.key.isEmpty { problems.append("\(field).passwordSecret.key is empty") }
        }
        if !(spec.users ?? []).isEmpty && !plan.usesSASL {
            problems.append("spec.users is set but no listener uses SASL (spec.listeners.authentication or "
                            + "spec.listeners.external.authentication of type scram-sha-512, scram-sha-256 or plain)")
        }
        if let a = spec.authorization {
            let type = a.type ?? "none"
            if !["acl", "none"].contains(type) { problems.append("spec.authorization.type \"\(type)\" is not acl or none") }
            if type == "acl" && !plan.internalProtocol.usesSASL {
                problems.append("spec.authorization.type acl needs SASL authentication on the internal listener "
                                + "(spec.listeners.authentication): the brokers and the operator authenticate there as super users")
            }
            for (i, p) in (a.superUsers ?? []).enumerated() where !p.hasPrefix("User:") || p.count < 6 || p.contains(";") {
                problems.append("spec.authorization.superUsers[\(i)] \"\(p)\" must be a principal User:<name> without ';'")
            }
        }
        if let ca = spec.storage.caSecretName {
            if ca.isEmpty { problems.append("spec.storage.caSecretName is empty") }
            if !(spec.storage.endpoint ?? "").hasPrefix("https://") {
                problems.append("spec.storage.caSecretName needs an https:// spec.storage.endpoint (the CA verifies that endpoint)")
            }
        }
        return problems
    }

    static func storageProblems(_ s: StorageSpec) -> [String] {
        var problems: [String] = []
        let anonymous = s.anonymous ?? false
        if s.bucket.hasPrefix("s3://") {
            let rest = s.bucket.dropFirst("s3://".count)
            let bucket = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            if bucket.count < 3 || bucket.count > 63
                || !bucket.allSatisfy({ ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "-" || $0 == "." })
            {
                problems.append("spec.storage.bucket \"\(s.bucket)\" does not name a valid S3 bucket (3-63 of a-z 0-9 . -)")
            }
            if s.credentials == nil && !anonymous {
                problems.append("spec.storage.credentials is required for s3 storage unless spec.storage.anonymous is true")
            }
        } else if s.bucket.hasPrefix("file:///") {
            if s.endpoint != nil { problems.append("spec.storage.endpoint is set but the bucket is a file:// URL") }
        } else {
            problems.append("spec.storage.bucket \"\(s.bucket)\" must start with s3:// or file:///")
        }
        if s.credentials != nil && anonymous {
            problems.append("spec.storage.credentials and spec.storage.anonymous are exclusive")
        }
        if let c = s.credentials, c.secretName.isEmpty { problems.append("spec.storage.credentials.secretName is empty") }
        if let e = s.endpoint {
            let host = e.hasPrefix("https://") ? e.dropFirst(8) : e.hasPrefix("http://") ? e.dropFirst(7) : ""
            if host.isEmpty { problems.append("spec.storage.endpoint \"\(e)\" must be an http:// or https:// URL") }
        }
        if let wal = s.wal {
            let kind = wal.kind ?? FloeDefaults.walKind
            if kind != "object" && kind != "file" {
                problems.append("spec.storage.wal.kind \"\(kind)\" is not object or file")
            }
            if kind == "file" && wal.volumeSize == nil {
                problems.append("spec.storage.wal.volumeSize is required for the file WAL")
            }
            if kind == "object" && wal.volumeSize != nil {
                problems.append("spec.storage.wal.volumeSize is set but the WAL kind is object (no volume is used)")
            }
        }
        return problems
    }

    /// RFC 1035 label: what Service names need.
    static func isDNSLabel(_ s: String) -> Bool {
        guard let first = s.first, let last = s.last, s.count <= 63 else { return false }
        guard first >= "a" && first <= "z", (last >= "a" && last <= "z") || (last >= "0" && last <= "9") else { return false }
        return s.allSatisfy { ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "-" }
    }

    /// Problems of an autoscaling policy; `replicas` is the current broker count (nil: not checked).
    public static func autoscalingProblems(_ a: AutoscalingSpec, replicas: Int32?) -> [String] {
        var problems: [String] = []
        let lo = a.resolvedMin
        let hi = a.resolvedMax
        if lo < 1 { problems.append("spec.autoscaling.minBrokers \(lo) must be at least 1") }
        if lo > hi { problems.append("spec.autoscaling.minBrokers \(lo) exceeds maxBrokers \(hi)") }
        if let replicas, a.isEnabled && lo <= hi && !(lo...hi).contains(replicas) {
            problems.append("spec.replicas \(replicas) is outside autoscaling [minBrokers \(lo), maxBrokers \(hi)]")
        }
        if let t = a.tolerancePercent, !(0...100).contains(t) {
            problems.append("spec.autoscaling.tolerancePercent \(t) is outside 0-100")
        }
        if a.isEnabled {
            let targets = a.targets
            if targets?.bytesInPerSecond == nil && targets?.bytesOutPerSecond == nil && targets?.requestsPerSecond == nil
                && targets?.cpuUtilizationPercent == nil
            {
                problems.append("spec.autoscaling is enabled but sets no target in spec.autoscaling.targets")
            }
        }
        for (field, v) in [
            ("bytesInPerSecond", a.targets?.bytesInPerSecond), ("bytesOutPerSecond", a.targets?.bytesOutPerSecond),
            ("requestsPerSecond", a.targets?.requestsPerSecond),
        ] {
            if let v, v < 1 { problems.append("spec.autoscaling.targets.\(field) \(v) must be positive") }
        }
        if let cpu = a.targets?.cpuUtilizationPercent, !(1...100).contains(cpu) {
            problems.append("spec.autoscaling.targets.cpuUtilizationPercent \(cpu) is outside 1-100")
        }
        for (field, b) in [("scaleUp", a.scaleUp), ("scaleDown", a.scaleDown)] {
            if let step = b?.maxStepBrokers, step < 1 {
                problems.append("spec.autoscaling.\(field).maxStepBrokers \(step) must be at least 1")
            }
            if let w = b?.stabilizationWindowSeconds, w < 0 {
                problems.append("spec.autoscaling.\(field).stabilizationWindowSeconds \(w) is negative")
            }
        }
        problems += prescaleProblems(a)
        return problems
    }

    /// Problems of `spec.autoscaling.schedules` and `predictive`: names, cron, time zone,
    /// durations, floors (each needs one, within maxBrokers; a bytes floor needs a bytes-in target).
    static func prescaleProblems(_ a: AutoscalingSpec) -> [String] {
        var problems: [String] = []
        let schedules = a.schedules ?? []
        // With autoscaling enabled and no target at all, "sets no target" already says it.
        let needsBytesTarget = a.targets?.bytesInPerSecond == nil && !(a.isEnabled && a.targets == nil)
        if schedules.count > 50 { problems.append("spec.autoscaling.schedules has \(schedules.count) entries; at most 50") }
        var seen = Set<String>()
        for (i, s) in schedules.enumerated() {
            let field = "spec.autoscaling.schedules[\(i)]" + (s.name.isEmpty ? "" : " (\(s.name))")
            let nameOK = s.name.count <= 63 && s.name.first != "-" && s.name.last != "-"
                && s.name.allSatisfy { ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "-" }
            if s.name.isEmpty || !nameOK {
                problems.append("\(field).name \"\(s.name)\" must be lower-case letters, digits and '-'")
            }
            if !seen.insert(s.name).inserted { problems.append("\(field).name \"\(s.name)\" is used twice") }
            do throws(OperatorError) { _ = try CronExpression(s.start) } catch { problems.append("\(field).start: \(error)") }
            if let tz = s.timeZone, TimeZone(identifier: tz) == nil {
                problems.append("\(field).timeZone \"\(tz)\" is not a known IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)")
            }
            if s.durationMinutes < 1 { problems.append("\(field).durationMinutes \(s.durationMinutes) must be at least 1") }
            if s.durationMinutes > 10080 { problems.append("\(field).durationMinutes \(s.durationMinutes) is more than a week (10080)") }
            if let l = s.leadTimeSeconds, l < 0 { problems.append("\(field).leadTimeSeconds \(l) is negative") }
            if let l = s.leadTimeSeconds, l > 86400 { problems.append("\(field).leadTimeSeconds \(l) is more than a day (86400)") }
            if s.minBrokers == nil && s.expectedBytesInPerSecond == nil {
                problems.append("\(field) needs a floor: minBrokers or expectedBytesInPerSecond")
            }
            if let m = s.minBrokers, m < 1 { problems.append("\(field).minBrokers \(m) must be at least 1") }
            if let m = s.minBrokers, m > a.resolvedMax { problems.append("\(field).minBrokers \(m) exceeds maxBrokers \(a.resolvedMax)") }
            if let e = s.expectedBytesInPerSecond {
                if e < 1 { problems.append("\(field).expectedBytesInPerSecond \(e) must be positive") }
                if needsBytesTarget {
                    problems.append("\(field).expectedBytesInPerSecond needs spec.autoscaling.targets.bytesInPerSecond to convert it to brokers")
                }
            }
        }
        if let p = a.predictive {
            if p.enabled ?? false, needsBytesTarget {
                problems.append("spec.autoscaling.predictive needs spec.autoscaling.targets.bytesInPerSecond (it predicts bytes in)")
            }
            if let d = p.historyDays, !(1...14).contains(d) { problems.append("spec.autoscaling.predictive.historyDays \(d) is outside 1-14") }
            if let l = p.lookaheadMinutes, !(5...1440).contains(l) {
                problems.append("spec.autoscaling.predictive.lookaheadMinutes \(l) is outside 5-1440")
            }
            if let m = p.marginPercent, !(0...1000).contains(m) { problems.append("spec.autoscaling.predictive.marginPercent \(m) is outside 0-1000") }
        }
        return problems
    }

}
