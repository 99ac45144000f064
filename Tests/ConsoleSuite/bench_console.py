"""Console cost, measured (not part of scripts/test; figures in docs/benchmarks.md):

    FLOE_OPERATOR_BIN=.build/release/floe-operator FLOE_BROKER_BIN=.build/release/floe-broker \
        python3 -m pytest -q -s Tests/ConsoleSuite/bench_console.py

An idle `floe-operator local` (one broker, no load): the operator's CPU (user + system, from
/proc/PID/stat) over 60 s without a page, then over 60 s with one console page open (polling
every 2 s); and the page's load time on loopback (navigation to load event, and to the first
render of live data), over 10 loads.
"""
import os
import statistics
import time

import cdp
from conftest import LocalOperator, free_port, free_ports, require_chromium

SECONDS = float(os.environ.get("FLOE_CONSOLE_BENCH_SECONDS", "60"))


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime


def test_console_cost(tmp_path):
    require_chromium()
    operator = LocalOperator(str(tmp_path), free_ports(2), free_port(), 2, 256 * 1024, ["--tick", "2"])
    try:
        operator.wait_ready()
        pid = operator.proc.pid
        time.sleep(10)  # let startup settle (not a correctness wait: a measurement window)
        c0, t0 = cpu_seconds(pid), time.time()
        time.sleep(SECONDS)
        idle = (cpu_seconds(pid) - c0) / (time.time() - t0) * 100

        with cdp.Browser() as browser:
            loads, renders = [], []
            for _ in range(10):
                page = browser.open(operator.http + "/clusters/local")
                page.wait_for("document.body.dataset.state === 'ok' && performance.getEntriesByName('floe-console-rendered').length > 0", timeout=30)
                t = page.evaluate("""(() => ({load: performance.getEntriesByType('navigation')[0].loadEventEnd,
                    rendered: performance.getEntriesByName('floe-console-rendered')[0].startTime,
                    bytes: performance.getEntriesByType('navigation')[0].encodedBodySize}))()""")
                loads.append(t["load"])
                renders.append(t["rendered"])
                page.navigate("about:blank")
            size = t["bytes"]
            page = browser.open(operator.http + "/clusters/local")
            page.wait_for("document.body.dataset.state === 'ok'", timeout=30)
            c0, t0 = cpu_seconds(pid), time.time()
            time.sleep(SECONDS)
            with_page = (cpu_seconds(pid) - c0) / (time.time() - t0) * 100
            assert page.evaluate("document.body.dataset.state") == "ok"
        print(f"\npage: {size} bytes; load event median {statistics.median(loads):.0f} ms (max {max(loads):.0f}); "
              f"first live render median {statistics.median(renders):.0f} ms (max {max(renders):.0f}) over {len(loads)} loads")
        print(f"operator CPU over {SECONDS:.0f} s: {idle:.2f}% of a core without a page, {with_page:.2f}% with one page open")
    finally:
        operator.stop()
