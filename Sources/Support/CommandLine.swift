/// A minimal command-line reader shared by the executables: `--flag value`, `--flag=value`,
/// boolean `--flag`, and positional words. Unknown flags are reported by the caller.
///
/// Example: `["serve", "--listen=127.0.0.1:9092", "--verbose"]` gives positionals `["serve"]`,
/// `value("listen") == "127.0.0.1:9092"` and `has("verbose") == true`.
public struct CommandLineArguments: Sendable {
    public private(set) var positionals: [String] = []
    public private(set) var options: [String: String] = [:]
    public private(set) var flags: Set<String> = []

    public init(_ arguments: [String], booleanFlags: Set<String> = ["help", "version", "h"]) {
        var i = 0
        while i < arguments.count {
            let word = arguments[i]
            if word == "-h" {
                flags.insert("help")
            } else if word.hasPrefix("--") {
                let body = String(word.dropFirst(2))
                if let eq = body.firstIndex(of: "=") {
                    options[String(body[..<eq])] = String(body[body.index(after: eq)...])
                } else if booleanFlags.contains(body) || i + 1 >= arguments.count || arguments[i + 1].hasPrefix("--") {
                    flags.insert(body)
                } else {
                    options[body] = arguments[i + 1]
                    i += 1
                }
            } else {
                positionals.append(word)
            }
            i += 1
        }
    }

    public func value(_ name: String) -> String? { options[name] }
    public func has(_ name: String) -> Bool { flags.contains(name) }
    /// Names given on the command line that are not in `known`.
    public func unknown(known: Set<String>) -> [String] {
        (Set(options.keys).union(flags)).subtracting(known).sorted()
    }
}
