/// The Floe release these executables were built from.
public enum FloeVersion {
    public static let string = "0.1.0-dev"
}
