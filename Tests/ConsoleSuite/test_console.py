"""The operator's web console, end to end: `floe-operator local` under a short load ramp scales
out and moves partitions; headless Chromium shows the page; what the DOM shows must match
`/api/clusters/local`. Then the API is switched to answer errors: the page must say so and show
no old figures; switched back, it recovers.

Screenshots: $FLOE_TEST_OUTPUT/console/console.png (scale-out), console-small.png (its top, smaller:
docs/console.png is a copy) and console-api-error.png.
"""
import os
import threading
import time
import uuid

import cdp
from conftest import LocalOperator, OUTPUT, free_port, free_ports, require_chromium, require_modules

TARGET = 256 * 1024   # per-broker bytes in target (B/s)
RECORD = 1024
PARTITIONS = 6
MAX_BROKERS = 3
RATE = 2.6 * TARGET / RECORD   # records/s: the cluster wants 3 brokers

DOM_BROKERS = """[...document.querySelectorAll('#brokers tbody tr[data-id]')].map(r =>
  ({id: +r.dataset.id, state: r.dataset.state, partitions: +r.dataset.partitions}))"""
DOM_DECISIONS = """[...document.querySelectorAll('#decisions tbody tr[data-time]')].map(r =>
  ({timeMs: +r.dataset.time, from: +r.dataset.from, to: +r.dataset.to, reason: r.querySelector('.reason').textContent}))"""
DOM_MOVES = """[...document.querySelectorAll('#moves tbody tr[data-partition]')].map(r =>
  ({partition: r.dataset.partition, from: +r.dataset.from, to: +r.dataset.to, why: r.dataset.why, outcome: r.dataset.outcome}))"""
DOM_MARKERS = """[...document.querySelectorAll('#chart-brokers g.decision')].map(g =>
  ({timeMs: +g.dataset.time, title: g.querySelector('title').textContent}))"""


def shown(page):
    return page.evaluate(f"({{brokers: {DOM_BROKERS}, decisions: {DOM_DECISIONS}, moves: {DOM_MOVES}, markers: {DOM_MARKERS}}})")


def expected(api):
    return {
        "brokers": [{"id": b["id"], "state": b["state"], "partitions": b["partitions"]} for b in api["brokers"]],
        "decisions": [{"timeMs": d["timeMs"], "from": d["from"], "to": d["to"], "reason": d["reason"]} for d in reversed(api["decisions"])],
        "moves": [{k: m[k] for k in ("partition", "from", "to", "why", "outcome")} for m in reversed(api["moves"])],
    }


def test_console_shows_the_scale_out_and_says_when_the_api_fails(tmp_path):
    require_chromium()
    require_modules("confluent_kafka")
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    out_dir = os.path.join(OUTPUT, "console")
    os.makedirs(out_dir, exist_ok=True)
    base = free_ports(MAX_BROKERS)
    operator = LocalOperator(str(tmp_path), base, free_port(), MAX_BROKERS, TARGET, [
        "--tolerance", "10", "--scale-up-window", "3", "--scale-down-window", "600", "--tick", "1", "--window", "4",
        "--balance-interval", "15", "--move-cooldown", "15"])
    stop = threading.Event()
    errors = []
    producer_thread = consumer_thread = None
    try:
        operator.wait_ready()
        bootstrap = f"127.0.0.1:{base}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("orders", PARTITIONS, 1)])["orders"].result(timeout=30)

        def produce():
            p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", "message.timeout.ms": 120000})
            start, sent, value = time.time(), 0.0, b"x" * RECORD
            while not stop.is_set():
                t = time.time() - start
                sent += min(1.0, t / 10) * RATE * 0.05   # a 10 s ramp, then steady
                while sent >= 1:
                    p.produce("orders", key=str(uuid.uuid4()).encode(), value=value,
                              on_delivery=lambda err, _m: err and errors.append(str(err)))
                    sent -= 1
                p.poll(0)
                time.sleep(0.05)
            p.flush(30)

        def consume():
            c = Consumer({"bootstrap.servers": bootstrap, "group.id": "console", "auto.offset.reset": "earliest"})
            c.subscribe(["orders"])
            while not stop.is_set():
                for m in c.consume(500, timeout=0.5):
                    if m.error():
                        errors.append(str(m.error()))
            c.close()

        producer_thread = threading.Thread(target=produce)
        producer_thread.start()
        consumer_thread = threading.Thread(target=consume)
        consumer_thread.start()

        # The cluster scales out and the scale-out round of moves completes (seen through the API).
        deadline = time.time() + 150
        api = None
        while time.time() < deadline:
            assert operator.proc.poll() is None, "operator exited:\n" + operator.text()
            api = operator.api()
            done = [m for m in api["moves"] if m["outcome"] == "done" and m["why"] == "scale-out"]
            if (api["decisions"] and done and api["phase"] == "steady" and len(api["brokers"]) == MAX_BROKERS
                    and all(b["state"] == "ready" for b in api["brokers"])):
                break
            time.sleep(1)
        else:
            raise AssertionError(f"no scale-out to {MAX_BROKERS} brokers with completed moves in 150 s; last /api answer: {api}\n" + operator.text()[-3000:])
        assert api["decisions"][-1]["to"] > api["decisions"][-1]["from"], api["decisions"]
        series = operator.api("/api/clusters/local/series")["samples"]
        assert series and max(s["bytesInPerSecond"] for s in series) > TARGET, series[-5:]

        with cdp.Browser() as browser:
            started = time.time()
            page = browser.open(operator.http + "/")
            # "/" lists the clusters and, with one, goes to its page.
            page.wait_for("location.pathname === '/clusters/local' && document.body.dataset.state === 'ok'"
                          " && document.querySelectorAll('#brokers tbody tr[data-id]').length > 0", timeout=30,
                          what="the cluster page with live data")
            first_render_s = time.time() - started
            timing = page.evaluate("""(() => { const n = performance.getEntriesByType('navigation')[0];
                const r = performance.getEntriesByName('floe-console-rendered')[0];
                return {load: n.loadEventEnd, rendered: r ? r.startTime : null, bytes: n.transferSize}; })()""")
            print(f"console page: load event {timing['load']:.0f} ms, first live render {timing['rendered']:.0f} ms "
                  f"after navigation, {timing['bytes']} bytes; {first_render_s:.2f} s including the redirect and waiting")

            # The DOM shows what the API says. Both move on (a tick every second, a redraw every
            # 2 s), so compare a DOM read with the API answers read just before and just after it.
            deadline = time.time() + 20
            while True:
                before = expected(operator.api())
                dom = shown(page)
                after = expected(operator.api())
                view = {k: dom[k] for k in ("brokers", "decisions", "moves")}
                if view == before or view == after:
                    break
                assert time.time() < deadline, f"the page does not show what /api says:\nDOM: {view}\nAPI: {after}"
                time.sleep(0.5)
            assert len(dom["brokers"]) >= 2 and all(b["state"] == "ready" for b in dom["brokers"]), dom["brokers"]
            assert any(m["why"] == "scale-out" and m["outcome"] == "done" for m in dom["moves"]), dom["moves"]
            scale_out = next(d for d in dom["decisions"] if d["to"] > d["from"])
            # The decision is marked on the chart, its reason on hover (an SVG <title>).
            marker = [m for m in dom["markers"] if m["timeMs"] == scale_out["timeMs"]]
            assert marker and scale_out["reason"] in marker[0]["title"], (scale_out, dom["markers"])
            assert page.evaluate("document.querySelector('#chart-throughput polyline.series-in').getAttribute('points').split(' ').length") > 3
            plan = page.evaluate("document.getElementById('plan').textContent")
            assert "balanced" in plan or "move(s) planned" in plan, plan
            assert "in 256.0 KiB/s" in page.evaluate("document.getElementById('autoscaler').textContent")
            page.screenshot(os.path.join(out_dir, "console.png"))
            # The README's picture (docs/console.png is a copy): the top of the page, smaller.
            page.screenshot(os.path.join(out_dir, "console-small.png"), height=930, scale=0.7)

            # The API answers errors: the page says so and shows no figures from before.
            open(operator.fault_file, "w").close()
            page.wait_for("document.body.dataset.state === 'error'", timeout=20, what="the page to notice the API errors")
            banner = page.evaluate("document.getElementById('banner').textContent")
            assert "503" in banner and "injected fault" in banner, banner
            assert page.evaluate("getComputedStyle(document.getElementById('content')).display") == "none"
            assert page.evaluate("document.querySelectorAll('#brokers tbody tr, #moves tbody tr, #decisions tbody tr').length") == 0
            assert page.evaluate("document.getElementById('chart-throughput').children.length") == 0
            page.screenshot(os.path.join(out_dir, "console-api-error.png"))
            # A page opened while the API fails says so from the start.
            fresh = browser.open(operator.http + "/clusters/local")
            fresh.wait_for("document.body.dataset.state === 'error'", timeout=20, what="a fresh page to report the API errors")
            assert "503" in fresh.evaluate("document.getElementById('banner').textContent")

            # Back to normal: the page shows live data again.
            os.remove(operator.fault_file)
            page.wait_for("document.body.dataset.state === 'ok' && document.querySelectorAll('#brokers tbody tr[data-id]').length > 0",
                          timeout=20, what="the page to recover")
        print(f"screenshots in {out_dir}")
        assert not errors, errors[:5]
    finally:
        stop.set()
        for t in (producer_thread, consumer_thread):
            if t:
                t.join(timeout=60)
        status = operator.stop()
    assert status == 0, "operator did not stop cleanly:\n" + operator.text()[-3000:]
