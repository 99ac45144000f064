/// Version sets restricted to a message's valid versions, and the Swift conditions testing them.
struct VersionSet: Equatable {
    /// Sorted, distinct.
    var versions: [Int16]

    init(_ versions: some Sequence<Int16>) {
        self.versions = Array(Set(versions)).sorted()
    }

    init(range: VersionRange, within universe: VersionSet) {
        self.init(universe.versions.filter { range.contains($0) })
    }

    var isEmpty: Bool { versions.isEmpty }
    func contains(_ v: Int16) -> Bool { versions.contains(v) }
    func intersection(_ other: VersionSet) -> VersionSet { VersionSet(versions.filter { other.contains($0) }) }
    func union(_ other: VersionSet) -> VersionSet { VersionSet(versions + other.versions) }
    func subtracting(_ other: VersionSet) -> VersionSet { VersionSet(versions.filter { !other.contains($0) }) }
    func isSuperset(of other: VersionSet) -> Bool { other.versions.allSatisfy { contains($0) } }

    var description: String {
        guard let first = versions.first, let last = versions.last else { return "none" }
        if versions.count == Int(last - first) + 1 { return first == last ? "\(first)" : "\(first)-\(last)" }
        return versions.map(String.init).joined(separator: ",")
    }
}

/// The outcome of testing `version ∈ set` when `version` is known to be in `universe`.
enum Condition: Equatable {
    case always
    case never
    case when(String)

    /// `set` tested against versions from `universe` (the versions at which the code can run).
    init(_ set: VersionSet, within universe: VersionSet) {
        let inside = set.intersection(universe)
        if inside.isEmpty { self = .never; return }
        if inside.isSuperset(of: universe) { self = .always; return }
        // Runs of consecutive universe elements that are in the set.
        let u = universe.versions
        var runs: [(Int, Int)] = []
        var i = 0
        while i < u.count {
            if inside.contains(u[i]) {
                var j = i
                while j + 1 < u.count && inside.contains(u[j + 1]) { j += 1 }
                runs.append((i, j))
                i = j + 1
            } else {
                i += 1
            }
        }
        var parts: [String] = []
        for (a, b) in runs {
            var checks: [String] = []
            if a > 0 { checks.append("version >= \(u[a])") }
            if b < u.count - 1 { checks.append("version <= \(u[b])") }
            if a == b && a > 0 && b < u.count - 1 { checks = ["version == \(u[a])"] }
            parts.append(checks.joined(separator: " && "))
        }
        if parts.count == 1 { self = .when(parts[0]); return }
        self = .when(parts.map { "(\($0))" }.joined(separator: " || "))
    }

    /// A Bool expression: "true", "false" or the test.
    var expression: String {
        switch self {
        case .always: return "true"
        case .never: return "false"
        case let .when(e): return e
        }
    }
}
