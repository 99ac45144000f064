import ObjectStore
import Testing

/// Names (group and transactional ids) as one key segment and back.
@Suite struct ObjectKeyTests {
    @Test func escapedNamesRoundTripAndStayOneSegment() {
        for name in ["plain-id_1.x", "tx/1", "a b%c", "grüße", "", "%2F", "ends with /"] {
            let segment = ObjectKey.escaped(name)
            #expect(!segment.contains("/"), "\(name) → \(segment)")
            #expect(ObjectKey.unescaped(segment[...]) == name, "\(name) → \(segment)")
        }
        #expect(ObjectKey.escaped("tx/1") == "tx%2F1")
    }

    @Test func segmentsNotMadeByEscapingAreRefused() {
        // A bad escape, a non-canonical one (lowercase hex, an escaped safe byte), invalid UTF-8,
        // and a raw separator.
        for segment in ["a%2", "a%zz", "tx%2f1", "%41", "%FF", "a/b"] {
            #expect(ObjectKey.unescaped(segment[...]) == nil, "\(segment)")
        }
    }
}
