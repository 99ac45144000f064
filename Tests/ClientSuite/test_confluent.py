"""confluent-kafka: the PyPI wheel (2.16.1, librdkafka 2.16.0) and Debian's
python3-confluent-kafka (1.7.0, librdkafka 2.0.2) run the same checks (confluent_checks.py)."""
import os
import subprocess
import sys

import pytest

from conftest import run

HERE = os.path.dirname(os.path.abspath(__file__))
DEBIAN_PYTHON = "/usr/bin/python3"

pytestmark = [
    pytest.mark.known_failure(
        target="tansu", params={"binding": "debian"},
        reason="librdkafka 2.0.2 cannot parse tansu's ApiVersions v3 response (non-empty top-level tagged fields)"),
]


@pytest.fixture(scope="module", params=["wheel", "debian"])
def binding(request):
    python = sys.executable if request.param == "wheel" else DEBIAN_PYTHON
    want = "2.16." if request.param == "wheel" else "2.0."
    p = subprocess.run([python, "-c", "import confluent_kafka as c; print(getattr(c, '__version__', None) or c.version()[0], c.libversion()[0])"],
                       capture_output=True, text=True, timeout=30)
    if request.param == "debian" and p.returncode != 0:
        pytest.fail(f"{python} cannot import confluent_kafka (apt-get install python3-confluent-kafka): {p.stderr[-500:]}")
    assert p.returncode == 0, p.stderr
    lib = p.stdout.split()[1]
    assert lib.startswith(want), f"{request.param} confluent-kafka runs on librdkafka {lib}, expected {want}x"
    return python


def check(python, name, broker, topic, *extra):
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)
    p = run([python, os.path.join(HERE, "confluent_checks.py"), name, broker.bootstrap, topic, *extra], 300,
            env=env, what=f"confluent_checks.py {name} ({python})")
    out = p.stdout.decode()
    assert out.startswith("OK"), out
    print(out)


def test_idempotent_producer_acks_all(broker, binding, topic_name):
    check(binding, "idempotent", broker, topic_name)


def test_group_commit_and_resume(broker, binding, topic_name):
    check(binding, "group", broker, topic_name)


@pytest.mark.known_failure(target="tansu-relay", params={"binding": "debian"},
                           reason="tansu 0.6.0 does not implement AlterConfigs (API 33), which confluent-kafka 1.7.0's alter_configs uses")
def test_admin_topics_and_configs(broker, binding, topic_name):
    check(binding, "admin", broker, topic_name)


@pytest.mark.known_failure(target=("tansu", "tansu-relay"),
                           reason="tansu 0.6.0 does not implement CreatePartitions (API 37): _UNSUPPORTED_FEATURE")
def test_admin_create_partitions(broker, binding, topic_name):
    check(binding, "partitions", broker, topic_name)


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_topic(broker, binding, topic_name, codec):
    check(binding, "compression", broker, topic_name, codec)
