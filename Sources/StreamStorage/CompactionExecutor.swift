import ObjectStore

/// Carries out one `CompactionJob`: reads the input objects whole, keeps only the batches that
/// metadata still references (and that are not wholly before the stream's start), and groups
/// them into output objects: one per stream in `ownObjectStreams`, one for `mergedStreams`.
/// The caller uploads the outputs and swaps them in with `commitCompaction`.
enum CompactionExecutor {
    /// A contiguous run of one stream's batches.
    struct Run {
        var stream: StreamID
        var batches: [StoredBatch]
    }

    struct Plan {
        /// One entry per output object.
        var outputGroups: [[Run]]
    }

    static func read(job: CompactionJob, manifest: Manifest, objects: any ObjectStore, dataPrefix: String, decodeOn pool: ColdReadPool) async throws -> Plan {
        var decoded: [UInt64: [(DataBlockEntry, [StoredBatch])]] = [:]
        for id in job.inputs {
            let key = ObjectReader.key(dataPrefix, id)
            // On a local directory the maintenance thread reads the whole object itself (a
            // multi-millisecond copy and checksum that otherwise ran at normal priority).
            decoded[id] = try await pool.fetch(key, from: objects) { try DataObjectFormat.decodeObject($0[...], key: key) }
        }
        let inputs = Set(job.inputs)
        func runs(of stream: StreamID) -> [Run] {
            guard let meta = manifest.streams[stream] else { return [] }
            var batches: [StoredBatch] = []
            for r in meta.ranges where inputs.contains(r.objectID) {
                for (entry, bs) in decoded[r.objectID] ?? [] where entry.streamID == stream {
                    batches += bs.filter { $0.baseOffset >= r.startOffset && $0.endOffset <= r.endOffset && $0.endOffset > meta.startOffset }
                }
            }
            batches.sort { $0.baseOffset < $1.baseOffset }
            var out: [Run] = []
            for b in batches {
                if let last = out.last?.batches.last, last.endOffset == b.baseOffset {
                    out[out.count - 1].batches.append(b)
                } else {
                    out.append(Run(stream: stream, batches: [b]))
                }
            }
            return out
        }
        var groups: [[Run]] = job.ownObjectStreams.map { runs(of: $0) }
        groups.append(job.mergedStreams.flatMap { runs(of: $0) })
        return Plan(outputGroups: groups)
    }

    static func build(objectID: UInt64, runs: [Run], blockBytes: Int) -> ([UInt8], [(StreamID, ObjectRange)]) {
        var builder = DataObjectBuilder(objectID: objectID, blockBytes: blockBytes,
                                        capacity: DataObjectBuilder.capacity(runs: runs.map { $0.batches.map(\.bytes.count) }, blockBytes: blockBytes))
        var ranges: [(StreamID, ObjectRange)] = []
        for run in runs {
            builder.add(stream: run.stream, batches: run.batches)
            ranges.append((run.stream, ObjectRange(
                objectID: objectID, startOffset: run.batches.first!.baseOffset, endOffset: run.batches.last!.endOffset,
                bytes: UInt64(run.batches.reduce(0) { $0 + $1.bytes.count }),
                maxAppendTimeMillis: run.batches.map(\.appendTimeMillis).max()!)))
        }
        return (builder.finish(), ranges)
    }
}
