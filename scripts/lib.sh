# Shared helpers for scripts/run and scripts/test. Sourced, not executed.

# apt packages the build needs, and the peers the integration tests talk to (chromium: the console suite;
# kcat and Debian's confluent-kafka on librdkafka 2.0.2: the client and security suites).
FLOE_APT_PACKAGES=(pkg-config libcurl4-openssl-dev libyaml-dev libssl-dev zlib1g-dev openssl chromium kcat
                   python3-confluent-kafka)
# The Python peers every suite may use (the operator e2e tests drive rendered pods with confluent-kafka too).
FLOE_PIP_PACKAGES=(confluent-kafka==2.16.1 kafka-python==3.0.12 aiokafka==0.14.0 python-snappy cramjam lz4 zstandard
                   pytest boto3 "moto[server]")
STARTED_PIDS=()

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_system_packages() {
    local missing=()
    for p in "${FLOE_APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "==> installing system packages: ${missing[*]}"
        as_root apt-get update -q
        as_root apt-get install -y -q "${missing[@]}"
    fi
}

ensure_python_peers() {
    if ! command -v moto_server >/dev/null || ! python3 - <<'PY' 2>/dev/null
import confluent_kafka, kafka, aiokafka, snappy, cramjam, lz4.frame, zstandard, pytest, boto3, moto.server
assert confluent_kafka.__version__ == "2.16.1", confluent_kafka.__version__
assert kafka.__version__ == "3.0.12" and aiokafka.__version__ == "0.14.0"
PY
    then
        echo "==> installing Python test peers: ${FLOE_PIP_PACKAGES[*]}"
        python3 -m pip install -q "${FLOE_PIP_PACKAGES[@]}"
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Starts moto's S3 server on a free loopback port and exports FLOE_TEST_S3_ENDPOINT.
start_moto() {
    local port log
    port=$(free_port)
    log=$(mktemp -t floe-moto.XXXXXX)
    # One request at a time: moto's conditional writes are check-then-write (scripts/moto-serialized).
    python3 scripts/moto-serialized 127.0.0.1 "$port" >"$log" 2>&1 &
    STARTED_PIDS+=($!)
    for _ in $(seq 1 100); do
        if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
            export FLOE_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
            echo "==> moto S3 server on $FLOE_TEST_S3_ENDPOINT (pid ${STARTED_PIDS[-1]}, log $log)"
            return 0
        fi
        sleep 0.1
    done
    echo "moto_server did not start on 127.0.0.1:$port; log:" >&2
    cat "$log" >&2
    return 1
}

stop_started() {
    for pid in "${STARTED_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
