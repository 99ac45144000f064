// swift-tools-version:6.0
// Floe: elastic, Kafka-compatible streaming on object storage.
// No package dependencies: Foundation, Dispatch, the toolchain's test libraries, and C system
// libraries through system-library targets.
import PackageDescription

let package = Package(
    name: "Floe",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "floe-operator", targets: ["floe-operator"]),
        .executable(name: "floe-broker", targets: ["floe-broker"]),
        .executable(name: "floe-protocol-gen", targets: ["floe-protocol-gen"]),
        .executable(name: "floe-bench", targets: ["floe-bench"]),
    ],
    targets: [
        // C system libraries and shims.
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "CFloeShims"),

        // Libraries; dependencies point one way (see docs/architecture.md).
        .target(name: "Bytes", dependencies: ["CFloeShims"]),
        .target(name: "Support", dependencies: ["CFloeShims"], exclude: ["README.md"]),
        // The broker's configuration contract, shared by the broker and the operator (neither imports the other).
        .target(name: "BrokerSettings", exclude: ["README.md"]),
        .target(name: "HTTPClient", dependencies: ["Support", "CCurl"], exclude: ["README.md"]),
        .target(
            name: "ObjectStore", dependencies: ["Support", "Bytes", "HTTPClient", "CCrypto", "CFloeShims"], exclude: ["README.md"]),
        // TLS over OpenSSL with memory BIOs, driven by whoever owns the socket (event loop or client I/O thread).
        .target(name: "TLS", dependencies: ["CCrypto"], exclude: ["README.md"]),
        .target(name: "StreamStorage", dependencies: ["ObjectStore", "Bytes", "Support", "CFloeShims"], exclude: ["README.md"]),
        .target(name: "KafkaProtocol", dependencies: ["Bytes", "CZlib"], exclude: ["README.md"]),
        .target(name: "ProtocolGenerator", exclude: ["README.md"]),
        // SASL mechanisms (PLAIN, SCRAM-SHA-256/512): the client and server exchanges, shared by the broker and KafkaClient.
        .target(name: "SASL", dependencies: ["CCrypto"], exclude: ["README.md"]),
        .target(name: "YAML", dependencies: ["CYAML"], exclude: ["README.md"]),
        .target(name: "Broker", dependencies: ["BrokerSettings", "KafkaProtocol", "KafkaClient", "Support", "CFloeShims", "ObjectStore", "Bytes", "StreamStorage", "SASL", "TLS"], exclude: ["README.md"]),
        .target(name: "KafkaClient", dependencies: ["KafkaProtocol", "Bytes", "SASL", "TLS"], exclude: ["README.md"]),
        .target(name: "KubeAPI", dependencies: ["YAML", "HTTPClient", "Support"], exclude: ["README.md"]),
        .target(name: "ControllerRuntime", dependencies: ["KubeAPI", "Support"], exclude: ["README.md"]),
        .target(
            name: "Operator", dependencies: ["BrokerSettings", "KubeAPI", "ControllerRuntime", "Support", "KafkaClient", "KafkaProtocol", "HTTPClient", "CCrypto"],
            exclude: ["README.md"]),

        // Executables.
        .executableTarget(name: "floe-protocol-gen", dependencies: ["ProtocolGenerator"]),
        .executableTarget(name: "floe-broker", dependencies: ["Broker", "BrokerSettings", "KafkaProtocol", "Support", "ObjectStore", "StreamStorage", "CFloeShims"]),
        .executableTarget(
            name: "floe-operator", dependencies: ["KafkaProtocol", "KafkaClient", "HTTPClient", "Support", "KubeAPI", "ControllerRuntime", "Operator", "YAML"]),
        .executableTarget(name: "floe-bench", dependencies: ["KafkaProtocol", "KafkaClient", "Bytes", "Support", "ObjectStore", "StreamStorage", "Broker"]),

        // Tests: one target per module, and FloeTestSupport (requireCase, peers that skip visibly
        // and fail under CI=true) shared by them.
        .target(name: "FloeTestSupport", path: "Tests/FloeTestSupport"),
        .testTarget(name: "BytesTests", dependencies: ["Bytes"]),
        .testTarget(
            name: "KafkaProtocolTests", dependencies: ["KafkaProtocol", "Bytes"],
            resources: [.copy("Fixtures")]),
        .testTarget(name: "ProtocolGeneratorTests", dependencies: ["ProtocolGenerator", "FloeTestSupport"]),
        .testTarget(name: "YAMLTests", dependencies: ["YAML"]),
        .testTarget(name: "BrokerTests", dependencies: ["Broker", "BrokerSettings", "KafkaProtocol", "KafkaClient", "ObjectStore", "Support", "Bytes", "StreamStorage", "FloeTestSupport", "SASL", "TLS"]),
        .testTarget(name: "KafkaClientTests", dependencies: ["KafkaClient", "KafkaProtocol", "Broker", "BrokerSettings", "ObjectStore", "FloeTestSupport", "SASL"]),
        .testTarget(name: "KubeAPITests", dependencies: ["KubeAPI", "YAML", "HTTPClient", "Support"]),
        .testTarget(name: "ControllerRuntimeTests", dependencies: ["ControllerRuntime", "KubeAPI", "Support", "FloeTestSupport"]),
        .testTarget(name: "OperatorTests", dependencies: ["Operator", "KubeAPI", "BrokerSettings", "KafkaClient", "Support"], exclude: ["Golden"]),
        .testTarget(name: "SupportTests", dependencies: ["Support", "CFloeShims"]),
        .testTarget(name: "SASLTests", dependencies: ["SASL"]),
        .testTarget(name: "BrokerSettingsTests", dependencies: ["BrokerSettings"]),
        .testTarget(name: "HTTPClientTests", dependencies: ["HTTPClient", "Support"]),
        .testTarget(name: "StreamStorageTests", dependencies: ["StreamStorage", "ObjectStore", "Bytes", "Support", "FloeTestSupport"]),
        .testTarget(name: "ObjectStoreTests", dependencies: ["ObjectStore", "HTTPClient", "Support", "Bytes", "FloeTestSupport"]),
        .testTarget(name: "FloeBenchTests", dependencies: ["floe-bench"]),
    ],
    swiftLanguageModes: [.v6]
)
