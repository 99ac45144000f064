/// Reads the Kafka message schemas and writes Swift codecs. See README.md in this folder.
public enum ProtocolGenerator {}
