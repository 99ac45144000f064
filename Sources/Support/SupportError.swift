/// The errors of the Support module.
public enum SupportError: Error, Equatable, CustomStringConvertible {
    /// Work was submitted to a component (named) after it was shut down.
    case shutDown(component: String)

    public var description: String {
        switch self {
        case .shutDown(let component): "\(component) is shut down; no more work is accepted"
        }
    }
}
