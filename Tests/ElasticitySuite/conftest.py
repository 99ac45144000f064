"""Elasticity suite: `floe-operator local` scaling real brokers under real Kafka clients (see README.md).

Environment:
  FLOE_OPERATOR_BIN, FLOE_BROKER_BIN   the binaries (required; scripts/test exports the release builds).
  CI                                   when set, a missing peer (confluent-kafka) fails instead of skipping.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "PythonSupport"))
from floe_suite import Peers  # noqa: E402

OPERATOR_BIN = os.environ.get("FLOE_OPERATOR_BIN", "").strip()
BROKER_BIN = os.environ.get("FLOE_BROKER_BIN", "").strip()


def pytest_configure(config):
    for name, path in (("FLOE_OPERATOR_BIN", OPERATOR_BIN), ("FLOE_BROKER_BIN", BROKER_BIN)):
        if not path:
            raise pytest.UsageError(f"\n*** {name} is unset: the elasticity suite has nothing to run. "
                                    "e.g. FLOE_OPERATOR_BIN=.build/release/floe-operator FLOE_BROKER_BIN=.build/release/floe-broker ***\n")
        if not os.access(path, os.X_OK):
            raise pytest.UsageError(f"{name}={path} is not an executable file")


require_modules = Peers("elasticity suite").require_modules
