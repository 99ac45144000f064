import Foundation
import KubeAPI
import Testing

@testable import Operator

@Suite struct ValidationTests {
    @Test(arguments: sampleNames) func samplesAreValid(name: String) throws {
        #expect(FloeClusterValidation.problems(try sampleCluster(name)) == [])
    }

    /// Each mutation of a valid cluster yields exactly one problem, which names the field.
    @Test func eachRuleReportsItsField() throws {
        let base = try sampleCluster("autoscaling")
        let cases: [(String, (inout FloeCluster) -> Void)] = [
            ("minBrokers 8 exceeds maxBrokers 5", { $0.spec.autoscaling?.minBrokers = 8; $0.spec.autoscaling?.maxBrokers = 5; $0.spec.replicas = 6 }),
            ("spec.replicas 20 is outside autoscaling", { $0.spec.replicas = 20 }),
            ("must start with s3:// or file:///", { $0.spec.storage.bucket = "gs://bucket" }),
            ("does not name a valid S3 bucket", { $0.spec.storage.bucket = "s3://Bad_Bucket" }),
            ("credentials is required for s3 storage", { $0.spec.storage.credentials = nil }),
            ("credentials and spec.storage.anonymous are exclusive", { $0.spec.storage.anonymous = true }),
            ("spec.storage.endpoint \"minio:9000\"", { $0.spec.storage.endpoint = "minio:9000" }),
            ("wal.volumeSize is required", { $0.spec.storage.wal = WALSpec(kind: "file") }),
            ("wal.kind \"disk\"", { $0.spec.storage.wal = WALSpec(kind: "disk") }),
            ("key \"node.id\" is set by the operator", { $0.spec.config = ["node.id": "3"] }),
            ("key \"wal\" is set by the operator", { $0.spec.config = ["wal": "memory"] }),
            ("key \"storage\" is set by the operator", { $0.spec.config = ["storage": "file:///tmp"] }),
            ("key \"wal.kind\" is not a broker setting", { $0.spec.config = ["wal.kind": "file"] }),
            ("key \"group.max.session.timout.ms\" is not a broker setting", { $0.spec.config = ["group.max.session.timout.ms": "1"] }),
            ("key \"offsets.topic.replication.factor\" is read-only", { $0.spec.config = ["offsets.topic.replication.factor": "3"] }),
            ("key \"num.partitions\" value \"many\": not an integer", { $0.spec.config = ["num.partitions": "many"] }),
            ("longer than 45 characters", { $0.metadata.name = String(repeating: "a", count: 46) }),
            ("metadata.name \"Events\"", { $0.metadata.name = "Events" }),
            ("kafkaPort and httpPort are both 8080", { $0.spec.listeners = ListenersSpec(kafkaPort: 8080) }),
            ("httpPort 80 is outside", { $0.spec.listeners = ListenersSpec(httpPort: 80) }),
            ("sets no target", { $0.spec.autoscaling?.targets = nil }),
            ("schedules[1] (weekday-morning).start: cron \"30 8 * * mon-fry\": day-of-week field", {
                $0.spec.autoscaling?.schedules?[1].start = "30 8 * * mon-fry" }),
            ("timeZone \"Europe/Berlín\" is not a known IANA time zone", { $0.spec.autoscaling?.schedules?[0].timeZone = "Europe/Berlín" }),
            ("durationMinutes -30 must be at least 1", { $0.spec.autoscaling?.schedules?[0].durationMinutes = -30 }),
            ("predictive needs spec.autoscaling.targets.bytesInPerSecond", {
                $0.spec.autoscaling?.targets?.bytesInPerSecond = nil; $0.spec.autoscaling?.schedules = nil }),
            ("cpuUtilizationPercent 150", { $0.spec.autoscaling?.targets?.cpuUtilizationPercent = 150 }),
            ("scaleDown.maxStepBrokers 0", { $0.spec.autoscaling?.scaleDown?.maxStepBrokers = 0 }),
            ("terminationGracePeriodSeconds 5", { $0.spec.terminationGracePeriodSeconds = 5 }),
            ("imagePullPolicy \"Sometimes\"", { $0.spec.imagePullPolicy = "Sometimes" }),
            ("balancing.intervalSeconds 1", { $0.spec.balancing?.intervalSeconds = 1 }),
            ("external.type \"HostPort\"", { $0.spec.listeners = ListenersSpec(external: ExternalListenerSpec(type: "HostPort")) }),
            ("external.port 9092 is also", { $0.spec.listeners = ListenersSpec(external: ExternalListenerSpec(port: 9092)) }),
            ("external.port 80 is outside", { $0.spec.listeners = ListenersSpec(external: ExternalListenerSpec(port: 80)) }),
            ("gives node ports 32766-32777", { $0.spec.listeners = ListenersSpec(external: ExternalListenerSpec(nodePortBase: 32766)) }),
            ("advertisedHost is required for a LoadBalancer", {
                $0.spec.listeners = ListenersSpec(external: ExternalListenerSpec(type: "LoadBalancer")) }),
            ("env \"NODE_ID\" is set by the operator", { $0.spec.podTemplate = PodTemplateOverrides(env: ["NODE_ID": "3"]) }),
            ("env \"FLOE_LISTEN\" is set by the operator", { $0.spec.podTemplate = PodTemplateOverrides(env: ["FLOE_LISTEN": "x"]) }),
            ("env \"1BAD\" is not a valid", { $0.spec.podTemplate = PodTemplateOverrides(env: ["1BAD": "x"]) }),
            ("topologySpreadConstraints must be a list", { $0.spec.podTemplate = PodTemplateOverrides(topologySpreadConstraints: ["a": 1]) }),
            ("disruptionBudget.maxUnavailable -1", { $0.spec.disruptionBudget = DisruptionBudgetSpec(maxUnavailable: -1) }),
            ("only {node} may be used", { $0.spec.listeners = ListenersSpec(external: ExternalListenerSpec(advertisedHost: "b-{id}.example.com")) }),
        ]
        for (expected, mutate) in cases {
            var c = base
            mutate(&c)
            let problems = FloeClusterValidation.problems(c)
            #expect(problems.count == 1 && problems[0].contains(expected), "expected one problem containing '\(expected)', got \(problems)")
        }
    }

    @Test func userSettingsWithValidValuesAreAccepted() throws {
        var c = try sampleCluster("minimal")
        c.spec.config = ["group.min.session.timeout.ms": "1000", "offsets.retention.minutes": "60", "log.level": "debug",
                         "auto.create.topics.enable": "false"]
        #expect(FloeClusterValidation.problems(c) == [])
    }

    @Test func replicasOutsideRangeIsFineWhileAutoscalingIsOff() throws {
        var c = try sampleCluster("autoscaling")
        c.spec.autoscaling?.enabled = false
        c.spec.replicas = 50
        #expect(FloeClusterValidation.problems(c) == [])
    }

    @Test func anonymousS3NeedsNoSecret() throws {
        var c = try sampleCluster("s3-minio")
        c.spec.storage.credentials = nil
        c.spec.storage.anonymous = true
        #expect(FloeClusterValidation.problems(c) == [])
    }
}
