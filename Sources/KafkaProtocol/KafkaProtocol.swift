/// The Kafka wire protocol: generated message codecs (Generated/), request and response
/// headers, the frame decoder, and RecordBatch v2. See README.md in this folder.
public enum KafkaProtocolInfo {
    /// The Apache Kafka schema set the generated codecs were produced from.
    public static let schemaSource = "Apache Kafka clients/src/main/resources/common/message @ 1eb7644349cb07139d6a3c1ad1986979647cac99"
}
