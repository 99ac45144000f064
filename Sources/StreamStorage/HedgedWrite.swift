import Support
import Synchronization

/// Runs an idempotent write until one attempt succeeds: retries after transient failures with
/// exponential backoff, for at least `attempts` attempts and for at least `retryFor` after the
/// first one; and, when `hedgeAfter` is set, starts a second attempt beside one that has not
/// answered for that long (a slow or hung request), keeping at most two in flight.
///
/// Cancelling the calling task cancels the attempts and returns once they have stopped.
///
/// Only for writes that may safely run twice at once: the object WAL's put-if-absent of identical
/// bytes, where the loser finds the winner's object and recognizes it as its own.
///
/// Example: `retryFor` 30 s, `hedgeAfter` 2 s, object store unreachable for 8 s. Attempts fail
/// fast (connection refused) with backoff 20, 40, 80 ... ms capped at `maxBackoff`; the first
/// attempt after the outage lands, and the records it holds are acknowledged about 8 s late
/// instead of failing the log. A PUT that hangs is hedged after 2 s.
enum HedgedWrite {
    enum AttemptResult: Sendable {
        case done
        /// Retrying cannot help (e.g. the log was fenced by a newer writer).
        case final(StreamStorageError)
        case retry(StreamStorageError)
    }

    private enum Event: Sendable {
        case finished(attempt: Int, AttemptResult)
        case launch
        case tick
    }

    static func run(clock: any FloeClock, attempts: Int, retryFor: Duration, backoff: Duration, maxBackoff: Duration,
                    hedgeAfter: Duration?, attempt: @escaping @Sendable (Int) async -> AttemptResult) async -> Result<Void, StreamStorageError> {
        let (events, sink) = AsyncStream<Event>.makeStream()
        let started = clock.now()
        var running: [Int: MonotonicInstant] = [:]
        var launched = 0
        var failures = 0
        var lastError = StreamStorageError.io(operation: "write", key: "", detail: "no attempt made")
        var helpers: [Task<Void, Never>] = []
        // Attempts still running when the write is decided are cancelled (a retrying store
        // stops at its next backoff; an identical put that still lands is harmless).
        var tasks: [Task<Void, Never>] = []
        defer {
            sink.finish()
            for t in helpers + tasks { t.cancel() }
        }
        func launch() {
            let n = launched
            launched += 1
            running[n] = clock.now()
            tasks.append(Task { sink.yield(.finished(attempt: n, await attempt(n))) })
        }
        if let hedgeAfter {
            helpers.append(Task {
                while !Task.isCancelled {
                    do { try await clock.sleep(for: hedgeAfter / 2) } catch { return }
                    sink.yield(.tick)
                }
            })
        }
        launch()
        for await event in events {
            switch event {
            case let .finished(n, result):
                running[n] = nil
                switch result {
                case .done:
                    return .success(())
                case let .final(error):
                    return .failure(error)
                case let .retry(error):
                    failures += 1
                    lastError = error
                    guard running.isEmpty else { continue }  // a hedge is still trying
                    let elapsed = clock.now().duration(since: started)
                    if failures >= attempts && elapsed >= retryFor { return .failure(lastError) }
                    let exponent = min(failures - 1, 16)
                    let pause = min(backoff * (1 << exponent), maxBackoff)
                    helpers.append(Task {
                        do { try await clock.sleep(for: pause) } catch { return }
                        sink.yield(.launch)
                    })
                }
            case .launch:
                if running.isEmpty { launch() }
            case .tick:
                guard let hedgeAfter, running.count == 1, let since = running.values.first,
                      clock.now().duration(since: since) >= hedgeAfter else { continue }
                launch()
            }
        }
        // The stream ends only when the task is cancelled (the log is being abandoned): wait for
        // the attempts to stop, so that no write of this log is still in flight afterwards.
        for t in tasks { t.cancel() }
        for t in tasks { await t.value }
        return .failure(.closed(what: "WAL object write (cancelled)"))
    }
}
