/// The broker's command line, read strictly: every word is an option the broker knows, and
/// every value is kept with the spelling the user gave it, so a refusal names it as written.
///
/// Accepted: `--NAME VALUE` and `--NAME=VALUE` for any declared setting (`node.id` is
/// `--node-id`; dots are accepted too: `--node.id`), `--set KEY=VALUE` (repeatable),
/// `--config FILE`, `--help`/`-h`, `--version`. Refused, each with one line (exit code 2):
/// a positional word, a single-dash option other than `-h`, an unknown `--NAME` or `--set` key
/// (with the nearest declared name when one is close), an option without its value, and one
/// setting given twice with different values.
///
/// Example: `["--node-id", "3", "--set", "num.partitions=4"]` gives
/// `values == ["node.id": "3", "num.partitions": "4"]`, `origins["node.id"] == .flag("--node-id")`
/// and `origins["num.partitions"] == .set`; `["serve"]` throws
/// `unexpected argument "serve": floe-broker takes only options (see --help)`.
public struct BrokerCommandLine: Sendable, Equatable {
    public var help = false
    public var version = false
    /// `--config FILE`.
    public var configPath: String?
    /// Setting values by key.
    public var values: [String: String] = [:]
    /// How each value was given (`.flag("--node-id")` or `.set`).
    public var origins: [String: SettingOrigin] = [:]

    /// A refusal of the command line: one line, for exit code 2.
    public struct UsageError: Error, Sendable, Equatable, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    public init() {}

    public static func parse(_ arguments: [String]) throws(UsageError) -> BrokerCommandLine {
        var line = BrokerCommandLine()
        var i = 0
        func fail(_ message: String) -> UsageError { UsageError(message: message) }
        while i < arguments.count {
            let word = arguments[i]
            i += 1
            if word == "-h" || word == "--help" {
                line.help = true
                continue
            }
            if word == "--version" {
                line.version = true
                continue
            }
            guard word.hasPrefix("--"), word.count > 2 else {
                if word == "--" { throw fail("unexpected argument \"--\": floe-broker takes only options (see --help)") }
                if word.hasPrefix("-") && word.count > 1 {
                    throw fail("unknown option \(SettingText.oneLine(word)): floe-broker's options are --NAME VALUE (see --help)")
                }
                throw fail("unexpected argument \(SettingText.quoted(word)): floe-broker takes only options (see --help)")
            }
            let body = word.dropFirst(2)
            let name: String
            let value: String
            if let eq = body.firstIndex(of: "=") {
                name = String(body[..<eq])
                value = String(body[body.index(after: eq)...])
            } else {
                name = String(body)
                if name == "help" || name == "version" { continue }
                guard i < arguments.count, !arguments[i].hasPrefix("--") else {
                    if name != "set" && name != "config" && BrokerSettings.named[Self.key(ofFlag: name)] == nil {
                        throw fail(BrokerSettings.unknownSetting(Self.key(ofFlag: name), origin: .flag("--" + name), value: ""))
                    }
                    throw fail("option --\(SettingText.oneLine(name)) needs a value (see --help)")
                }
                value = arguments[i]
                i += 1
            }
            switch name {
            case "config":
                guard !value.isEmpty else { throw fail("option --config needs a file path") }
                if let earlier = line.configPath, earlier != value {
                    throw fail("--config is given twice (\(SettingText.quoted(earlier)) and \(SettingText.quoted(value)))")
                }
                line.configPath = value
            case "set":
                guard let eq = value.firstIndex(of: "=") else {
                    throw fail("--set expects KEY=VALUE, got \(SettingText.quoted(value))")
                }
                let key = String(value[..<eq]).trimmingBlanks
                let setting = String(value[value.index(after: eq)...])
                guard !key.isEmpty else { throw fail("--set expects KEY=VALUE, got \(SettingText.quoted(value)) (no key)") }
                guard BrokerSettings.named[key] != nil else { throw fail(BrokerSettings.unknownSetting(key, origin: .set, value: setting)) }
                try line.add(key, setting, origin: .set)
            default:
                let key = Self.key(ofFlag: name)
                guard BrokerSettings.named[key] != nil else {
                    throw fail(BrokerSettings.unknownSetting(key, origin: .flag("--" + name), value: value))
                }
                try line.add(key, value, origin: .flag("--" + name))
            }
        }
        return line
    }

    /// `node-id` → `node.id` (a flag name written with dots is taken as is).
    static func key(ofFlag name: String) -> String { String(name.map { $0 == "-" ? "." : $0 }) }

    private mutating func add(_ key: String, _ value: String, origin: SettingOrigin) throws(UsageError) {
        if let earlier = values[key], earlier != value, let first = origins[key] {
            throw UsageError(message: "\(key) is given twice: \(first.describe(key, earlier)) and \(origin.describe(key, value))")
        }
        values[key] = value
        origins[key] = origin
    }
}
