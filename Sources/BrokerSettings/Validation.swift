/// Where a value came from, as the user wrote it, so that an error names the setting in the
/// user's terms: the flag, the `--set` argument, the environment variable or the file.
///
/// Example: `.flag("--node-id")` reads `--node-id "-1"`; `.set` reads `--set node.id="-1"`;
/// `.environment` reads `FLOE_NODE_ID="-1"`; `.file("/etc/floe/broker.properties")` reads
/// `node.id="-1" in /etc/floe/broker.properties`.
public enum SettingOrigin: Sendable, Hashable {
    /// A `--name VALUE` (or `--name=VALUE`) flag, spelled as given.
    case flag(String)
    /// `--set KEY=VALUE`.
    case set
    /// A `FLOE_*` environment variable.
    case environment
    /// A line of the `--config` properties file at this path.
    case file(String)
    /// The declared default.
    case `default`

    /// The setting with its value, as the user gave it (one line, the value quoted).
    public func describe(_ key: String, _ value: String) -> String {
        let quoted = SettingText.quoted(value)
        switch self {
        case .flag(let flag): return "\(flag) \(quoted)"
        case .set: return "--set \(key)=\(quoted)"
        case .environment:
            let variable = BrokerSettings.named[key]?.environmentVariable ?? "FLOE_" + key.uppercased()
            return "\(variable)=\(quoted)"
        case .file(let path): return "\(key)=\(quoted) in \(path)"
        case .default: return "\(key)=\(quoted) (the default)"
        }
    }
}

/// One invalid setting: the key, its value, where it came from and why it is refused.
public struct SettingProblem: Sendable, Hashable, CustomStringConvertible {
    public let key: String
    public let value: String
    public let origin: SettingOrigin
    public let reason: String

    public init(key: String, value: String, origin: SettingOrigin, reason: String) {
        self.key = key
        self.value = value
        self.origin = origin
        self.reason = reason
    }

    /// One line: `invalid --advertise "host:abc": the port must be a number 1-65535`.
    public var description: String { "invalid \(origin.describe(key, value)): \(reason)" }
}

extension BrokerSettings {
    /// Every problem of a resolved configuration, in key order, then the rules that span
    /// settings. `values` holds every effective value (defaults included); `origin` tells
    /// where each came from. Unknown keys are the caller's concern (they are refused where
    /// they are read, with the spelling the user used).
    ///
    /// Example: `["num.partitions": "0"]` with origin `.set` gives one problem whose
    /// description is `invalid --set num.partitions="0": must be at least 1`.
    public static func problems(_ values: [String: String], origin: (String) -> SettingOrigin) -> [SettingProblem] {
        var out: [SettingProblem] = []
        for key in values.keys.sorted() {
            guard let setting = named[key], let value = values[key] else { continue }
            if let reason = setting.problem(value) {
                out.append(SettingProblem(key: key, value: value, origin: origin(key), reason: reason))
            }
        }
        guard out.isEmpty else { return out }
        func int(_ key: String) -> Int64? { values[key].flatMap { Int64($0.trimmingBlanks) } }
        func problem(_ key: String, _ reason: String) -> SettingProblem {
            SettingProblem(key: key, value: values[key] ?? "", origin: origin(key), reason: reason)
        }
        // Of two settings in conflict, name the one the user gave (not a default).
        func blamed(_ a: String, _ b: String) -> String { origin(a) == .default && origin(b) != .default ? b : a }

        if values["wal"]?.trimmingBlanks == "memory", !(values["storage"] ?? "").trimmingBlanks.hasPrefix("memory://") {
            out.append(problem("wal", "acknowledged records would not be durable; memory is allowed only with memory:// storage (tests)"))
        }
        if let lo = int("group.min.session.timeout.ms"), let hi = int("group.max.session.timeout.ms"), lo > hi {
            let key = blamed("group.min.session.timeout.ms", "group.max.session.timeout.ms")
            out.append(problem(key, "group.min.session.timeout.ms (\(lo)) exceeds group.max.session.timeout.ms (\(hi))"))
        }
        if let beat = int("broker.heartbeat.interval.ms"), let session = int("broker.session.timeout.ms"), beat * 3 > session {
            let key = blamed("broker.heartbeat.interval.ms", "broker.session.timeout.ms")
            out.append(problem(key, "broker.heartbeat.interval.ms (\(beat)) must be at most a third of broker.session.timeout.ms (\(session))"))
        }
        if let message = int("message.max.bytes"), let frame = int("socket.request.max.bytes"), message > frame {
            let key = blamed("message.max.bytes", "socket.request.max.bytes")
            out.append(problem(key, "message.max.bytes (\(message)) exceeds socket.request.max.bytes (\(frame)): no request could carry such a batch"))
        }
        for key in ["security.protocol", "external.security.protocol"] {
            guard let value = values[key]?.trimmingBlanks, value.hasSuffix("SSL") else { continue }
            if key == "external.security.protocol", (values["external.listen"] ?? "").trimmingBlanks.isEmpty { continue }
            for file in ["ssl.certificate.file", "ssl.key.file"] where (values[file] ?? "").trimmingBlanks.isEmpty {
                out.append(problem(key, "an \(value) listener needs \(file)"))
            }
        }
        if let auth = values["ssl.client.auth"]?.trimmingBlanks, auth != "none", (values["ssl.client.ca.file"] ?? "").trimmingBlanks.isEmpty {
            out.append(problem("ssl.client.auth", "client certificates cannot be verified without ssl.client.ca.file"))
        }
        return out
    }

    /// The declared name closest to `name` (a typo's likely intent), or nil if none is close.
    ///
    /// Example: `nearest(to: "num.partition")` is `"num.partitions"`; `nearest(to: "no.such.key")` is nil.
    public static func nearest(to name: String) -> String? {
        let wanted = name.lowercased()
        var best: (name: String, distance: Int)?
        for setting in all {
            let d = editDistance(wanted, setting.name)
            if d < (best?.distance ?? Int.max) { best = (setting.name, d) }
        }
        guard let best else { return nil }
        let allowed = max(1, min(3, wanted.count / 4))
        return best.distance <= allowed ? best.name : nil
    }

    /// The one-line refusal of an undeclared key, named as the user wrote it, with the nearest
    /// declared name when one is close.
    ///
    /// Example: `unknownSetting("num.partition", origin: .set, value: "3")` is
    /// `unknown setting num.partition (--set num.partition=3); did you mean num.partitions?`;
    /// with `.flag("--num-partition")`: `unknown setting --num-partition; did you mean --num-partitions?`.
    public static func unknownSetting(_ key: String, origin: SettingOrigin, value: String) -> String {
        let near = nearest(to: key).flatMap { named[$0] }
        let name = SettingText.oneLine(key)
        var text: String
        switch origin {
        case .flag(let flag):
            text = "unknown setting \(SettingText.oneLine(flag))"
            if let near { return text + "; did you mean \(near.flag)?" }
        case .set: text = "unknown setting \(name) (--set \(name)=\(SettingText.oneLine(value)))"
        case .environment: text = "unknown setting \(name) (from the environment)"
        case .file(let path): text = "unknown setting \(name) in \(path)"
        case .default: text = "unknown setting \(name)"
        }
        if let near { return text + "; did you mean \(near.name)?" }
        return text + "; floe-broker --help and docs/broker.md list the settings"
    }

    /// Levenshtein distance over characters.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}

/// Text helpers that keep every message on one line.
public enum SettingText {
    /// `value` in double quotes, control characters escaped, at most 200 characters.
    ///
    /// Example: `quoted("a\nb")` is `"a\nb"` with a backslash and an `n`, not a line break.
    public static func quoted(_ value: String) -> String { "\"" + oneLine(value) + "\"" }

    /// `text` with control characters escaped (`\n`, `\t`, `\u{1}`) and cut at 200 characters.
    public static func oneLine(_ text: String, limit: Int = 200) -> String {
        var out = ""
        var count = 0
        for scalar in text.unicodeScalars {
            if count >= limit {
                out += "…"
                break
            }
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\"": out += "\\\""
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += "\\u{\(String(scalar.value, radix: 16))}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
            count += 1
        }
        return out
    }
}

/// The syntax of listen and advertised addresses (no name resolution: pure checks).
enum AddressRules {
    /// A listen address: `HOST:PORT`, the host an IPv4 address, `localhost` or empty.
    static func listenProblem(_ v: String) -> String? {
        guard let colon = v.lastIndex(of: ":") else { return "must be HOST:PORT (HOST may be empty for all interfaces)" }
        let host = String(v[..<colon]), portText = String(v[v.index(after: colon)...])
        guard !portText.isEmpty, portText.allSatisfy(\.isASCIIDigit), let port = Int(portText), (0...65535).contains(port) else {
            return "the port must be a number 0-65535"
        }
        guard host.isEmpty || host == "localhost" || isIPv4(host) else {
            return "the host must be an IPv4 address (0.0.0.0 for all interfaces), localhost or empty"
        }
        return nil
    }

    /// An address given to clients: `HOST[:PORT]`, with `{node}` / `{N+node}` when `template`.
    static func advertisedProblem(_ v: String, template: Bool) -> String? {
        var text = v
        if template {
            switch expandForCheck(v) {
            case .success(let expanded): text = expanded
            case .failure(let reason): return reason.text
            }
        } else if v.contains("{") || v.contains("}") {
            return "the host may not contain { or } ({node} placeholders are for external.advertise only)"
        }
        var host = text
        if text.hasPrefix("[") {
            return "IPv6 addresses are not supported; give a host name or an IPv4 address"
        }
        if let colon = text.lastIndex(of: ":") {
            host = String(text[..<colon])
            let portText = String(text[text.index(after: colon)...])
            guard !portText.isEmpty, portText.allSatisfy(\.isASCIIDigit), let port = Int(portText), (1...65535).contains(port) else {
                return "the port must be a number 1-65535"
            }
        }
        if host.isEmpty { return "the host is empty; expected HOST[:PORT]" }
        if host.contains(":") { return "must be HOST[:PORT] with one colon" }
        if host.contains(where: { $0 == " " || $0 == "/" || $0 == "\\" }) {
            return "the host must be a name or an IPv4 address (no blanks or slashes)"
        }
        return nil
    }

    struct Reason: Error { let text: String }

    /// Replaces `{node}` and `{N+node}` by node 0's values to check the rest of the syntax.
    static func expandForCheck(_ template: String) -> Result<String, Reason> {
        var out = ""
        var rest = Substring(template)
        while let open = rest.firstIndex(where: { $0 == "{" || $0 == "}" }) {
            guard rest[open] == "{" else { return .failure(Reason(text: "has a } without a {")) }
            out += rest[..<open]
            guard let close = rest[open...].firstIndex(of: "}") else { return .failure(Reason(text: "has an unclosed {")) }
            let inner = rest[rest.index(after: open)..<close]
            if inner == "node" {
                out += "0"
            } else if inner.hasSuffix("+node"), let base = Int64(inner.dropLast(5)), base >= 0 {
                out += String(base)
            } else {
                return .failure(Reason(text: "has an unknown placeholder {\(inner)}; use {node} or {N+node}"))
            }
            rest = rest[rest.index(after: close)...]
        }
        return .success(out + rest)
    }

    static func isIPv4(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy(\.isASCIIDigit), let n = Int(p), n <= 255 else { return false }
        }
        return true
    }
}

/// What the contract checks of a storage URL; the broker's `StorageURL` parses the rest.
enum StorageURLRules {
    static func problem(_ v: String) -> String? {
        if v.hasPrefix("file://") {
            let path = v.dropFirst("file://".count)
            if String(path).trimmingBlanks.isEmpty { return "the path after file:// is empty; give file:///absolute/path or file://./relative" }
            return nil
        }
        if v.hasPrefix("s3://") {
            let rest = v.dropFirst("s3://".count)
            let bucket = rest.prefix { $0 != "/" && $0 != "?" }
            if bucket.isEmpty { return "no bucket name after s3://; expected s3://bucket/prefix?endpoint=…" }
            return nil
        }
        if v.hasPrefix("memory://") {
            return nil
        }
        return "must start with file://, s3:// or memory://"
    }
}

extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
