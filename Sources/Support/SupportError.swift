import Foundation

/// The errors of the Support module.
public enum SupportError: Error, Equatable, CustomStringConvertible {
    /// Work was submitted to a component (named) after it was shut down.
    case shutDown(component: String)
    /// A listen address is not `[host]:port`.
    case invalidAddress(String)
    /// Binding or listening on `address` failed with `errno`.
    case listenFailed(address: String, errno: Int32)

    public var description: String {
        switch self {
        case .shutDown(let component): "\(component) is shut down; no more work is accepted"
        case .invalidAddress(let a): "invalid listen address \(a); expected [host]:port such as :8080"
        case .listenFailed(let a, let e): "cannot listen on \(a): \(String(cString: strerror(e)))"
        }
    }
}
