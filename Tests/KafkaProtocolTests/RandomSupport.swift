import KafkaProtocol

// Hand-written helpers used by the generated Generated/RandomMessages.swift.

/// A message type that can build random values valid at a given version.
protocol RandomMessage: KafkaMessage {
    static func random(version: Int16, using rng: inout some RandomNumberGenerator) -> Self
}

/// Seeded generator (SplitMix64) so every failure reproduces from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Mostly small values and edges (0, −1, min, max), sometimes any value.
func randomInteger<T: FixedWidthInteger>(_: T.Type, using rng: inout some RandomNumberGenerator) -> T {
    switch Int.random(in: 0..<8, using: &rng) {
    case 0: return 0
    case 1: return T.min
    case 2: return T.max
    case 3: return T.isSigned ? 0 &- 1 : 1
    case 4, 5: return T(truncatingIfNeeded: Int.random(in: 0..<300, using: &rng))
    default: return T.random(in: T.min...T.max, using: &rng)
    }
}

func randomDouble(using rng: inout some RandomNumberGenerator) -> Double {
    switch Int.random(in: 0..<4, using: &rng) {
    case 0: return 0
    case 1: return -1.5
    default: return Double.random(in: -1e12...1e12, using: &rng)
    }
}

/// ASCII and some multi-byte UTF-8, 0–12 characters.
func randomString(using rng: inout some RandomNumberGenerator) -> String {
    let alphabet: [Character] = Array("abcXYZ019-_. é€😀")
    let count = Int.random(in: 0...12, using: &rng)
    var s = ""
    for _ in 0..<count { s.append(alphabet[Int.random(in: 0..<alphabet.count, using: &rng)]) }
    return s
}

func randomBytes(using rng: inout some RandomNumberGenerator) -> [UInt8] {
    (0..<Int.random(in: 0...16, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
}

/// A slice that does not start at index 0, as decoded records are slices of a larger buffer.
func randomRecords(using rng: inout some RandomNumberGenerator) -> ArraySlice<UInt8> {
    let bytes = [0xEE] + randomBytes(using: &rng)
    return bytes[1...]
}

func randomUUID(using rng: inout some RandomNumberGenerator) -> KafkaUUID {
    if Int.random(in: 0..<4, using: &rng) == 0 { return .zero }
    return KafkaUUID(mostSignificantBits: rng.next(), leastSignificantBits: rng.next())
}

/// True one time in four.
func randomIsNil(using rng: inout some RandomNumberGenerator) -> Bool {
    Int.random(in: 0..<4, using: &rng) == 0
}

/// Array lengths 0–3.
func randomCount(using rng: inout some RandomNumberGenerator) -> Int {
    Int.random(in: 0...3, using: &rng)
}

/// Usually none; one time in four 1–2 fields with distinct ascending tags ≥ `from`.
func randomUnknownTaggedFields(from first: UInt32, using rng: inout some RandomNumberGenerator) -> [TaggedField] {
    guard Int.random(in: 0..<4, using: &rng) == 0 else { return [] }
    var tag = first + UInt32.random(in: 0...3, using: &rng)
    var fields: [TaggedField] = []
    for _ in 0..<Int.random(in: 1...2, using: &rng) {
        fields.append(TaggedField(tag: tag, data: randomBytes(using: &rng)))
        tag += UInt32.random(in: 1...200, using: &rng)
    }
    return fields
}
