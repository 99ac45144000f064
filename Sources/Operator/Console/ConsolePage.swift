/// The console page: one HTML document with its CSS and JavaScript inline, no external
/// resources and no build step. Charts are hand-written SVG. It polls the JSON API every 2 s
/// (`/api/clusters/NAME` and `/api/clusters/NAME/series?sinceMs=T`, only new samples), and when
/// the API fails it hides every figure and says so, rather than leave old numbers on screen.
///
/// Hooks for tests and scripts: `body[data-state]` is `loading`, `ok`, `stale` or `error`; rows
/// carry `data-*` attributes with the values they show (broker id, state, partitions; decision
/// from/to/time; move partition/from/to/why).
enum ConsolePage {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Floe console</title>
<style>
:root { --bg:#f6f7f9; --card:#fff; --ink:#1d2330; --mute:#687083; --line:#e3e6ec; --in:#2f6fdf; --out:#1a9e77; --desired:#c0392b; --ready:#2f6fdf; --warn:#b7791f; --bad:#c0392b; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; background:var(--bg); color:var(--ink); }
header { display:flex; align-items:center; gap:16px; padding:10px 20px; background:#1d2330; color:#fff; }
header h1 { font-size:17px; margin:0; font-weight:600; }
header a { color:#cfd8ea; }
#status { margin-left:auto; font-size:13px; padding:2px 10px; border-radius:10px; background:#3b4457; }
body[data-state=ok] #status { background:#1a7f55; }
body[data-state=stale] #status, body[data-state=error] #status { background:var(--bad); }
#banner { display:none; margin:12px 20px 0; padding:10px 14px; border-radius:6px; background:#fdecea; color:#7a1c12; border:1px solid #f3b7ae; font-weight:600; }
body[data-state=error] #banner, body[data-state=stale] #banner { display:block; }
body[data-state=error] #content { display:none; }
body[data-state=stale] #content { opacity:.45; }
main { padding:12px 20px 30px; }
.grid { display:grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap:14px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 14px; min-width:0; }
section h2 { font-size:13px; text-transform:uppercase; letter-spacing:.05em; color:var(--mute); margin:0 0 8px; font-weight:600; }
.cards { display:flex; gap:12px; flex-wrap:wrap; margin-bottom:14px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:8px 14px; min-width:140px; }
.card .k { font-size:12px; color:var(--mute); } .card .v { font-size:20px; font-weight:600; }
table { width:100%; border-collapse:collapse; font-variant-numeric: tabular-nums; }
th, td { text-align:left; padding:4px 6px; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-size:12px; color:var(--mute); font-weight:600; }
td.num, th.num { text-align:right; }
.state { padding:1px 8px; border-radius:9px; font-size:12px; background:#e9edf5; }
.state-ready { background:#dff3e8; color:#135c3c; } .state-starting { background:#fff3d6; color:#7a5512; }
.state-draining { background:#fde6d8; color:#8a3b0c; } .state-gone { background:#eceff3; color:#7b8190; text-decoration:line-through; }
svg { width:100%; height:auto; display:block; }
svg text { font-size:11px; fill:var(--mute); }
.legend { font-size:12px; color:var(--mute); display:flex; gap:14px; margin-top:4px; }
.sw { display:inline-block; width:12px; height:3px; vertical-align:middle; margin-right:4px; }
.decision line { stroke:var(--warn); stroke-width:1.5; stroke-dasharray:4 3; }
.decision circle { fill:var(--warn); cursor:help; }
.bar { fill:#7fa7ea; } .bar.drain { fill:#e39a62; } .bar.scale-out { fill:#5cbf95; } .bar.refused, .bar.timed-out { fill:var(--bad); }
dl { display:grid; grid-template-columns:max-content 1fr; gap:3px 14px; margin:0; }
dt { color:var(--mute); } dd { margin:0; }
.muted { color:var(--mute); } .reason { font-size:12px; color:#394152; }
.balanced { color:#1a7f55; font-weight:600; }
ul.clusters { font-size:16px; }
</style>
</head>
<body data-state="loading">
<header><h1>Floe console</h1><span id="cluster-name"></span><a href="/">all clusters</a><span id="status">loading…</span></header>
<div id="banner" role="alert"></div>
<main id="content">
  <div class="cards" id="cards"></div>
  <div class="grid">
    <section><h2>Brokers</h2>
      <table id="brokers"><thead><tr><th>broker</th><th>state</th><th class="num">partitions</th><th class="num">in MiB/s</th><th class="num">out MiB/s</th><th class="num">CPU</th><th class="num">p99 produce</th></tr></thead><tbody></tbody></table>
    </section>
    <section><h2>Throughput, last hour (MiB/s)</h2><div id="chart-throughput"></div>
      <div class="legend"><span><span class="sw" style="background:var(--in)"></span>in</span><span><span class="sw" style="background:var(--out)"></span>out</span><span><span class="sw" style="background:var(--warn)"></span>scaling decision (hover for the reason)</span></div>
    </section>
    <section><h2>Brokers desired vs ready, last hour</h2><div id="chart-brokers"></div>
      <div class="legend"><span><span class="sw" style="background:var(--desired)"></span>desired</span><span><span class="sw" style="background:var(--ready)"></span>ready</span><span><span class="sw" style="background:var(--warn)"></span>scaling decision</span></div>
    </section>
    <section><h2>Scaling decisions</h2>
      <table id="decisions"><thead><tr><th>time</th><th>brokers</th><th>reason</th></tr></thead><tbody></tbody></table>
    </section>
    <section><h2>Partition moves</h2><div id="moves-timeline"></div>
      <table id="moves"><thead><tr><th>started</th><th>partition</th><th>from → to</th><th class="num">duration</th><th>why</th><th>outcome</th></tr></thead><tbody></tbody></table>
    </section>
    <section><h2>Balancer plan</h2><div id="plan"></div></section>
    <section><h2>Autoscaler</h2><dl id="autoscaler"></dl></section>
    <section><h2>Scheduled pre-scaling</h2><div id="schedules"></div></section>
    <section><h2>Events</h2><table id="events"><tbody></tbody></table></section>
  </div>
</main>
<script>
"use strict";
const POLL_MS = 2000, HOUR_MS = 3600e3;
const MiB = 1048576;
let series = [], lastSampleMs = null, cluster = null, timer = null;

function el(tag, attrs, ...kids) {
  const svg = ["svg","line","polyline","path","rect","circle","text","title","g"].includes(tag);
  const e = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, v);
  for (const k of kids.flat()) if (k !== undefined && k !== null) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
const mib = v => v == null ? "–" : (v / MiB).toFixed(2);
const rate = v => v == null ? "–" : v < 1024 ? v.toFixed(0) + " B/s" : v < MiB ? (v / 1024).toFixed(1) + " KiB/s" : (v / MiB).toFixed(1) + " MiB/s";
const clock = ms => new Date(ms).toLocaleTimeString([], {hour12:false});
const secs = s => s == null ? "–" : s < 1 ? (s * 1000).toFixed(0) + " ms" : s.toFixed(1) + " s";
function fill(id, rows) { const t = document.querySelector("#" + id + " tbody"); if (t) t.replaceChildren(...rows); }

function setState(state, message) {
  document.body.dataset.state = state;
  const status = document.getElementById("status"), banner = document.getElementById("banner");
  if (state === "error") {
    status.textContent = "API error";
    banner.textContent = message;
    // Say so, and show nothing old: clear every figure.
    for (const id of ["brokers","decisions","moves","events"]) fill(id, []);
    for (const id of ["cards","chart-throughput","chart-brokers","moves-timeline","plan","autoscaler","schedules"]) document.getElementById(id)?.replaceChildren();
    series = []; lastSampleMs = null;
  } else if (state === "stale") {
    status.textContent = "stale";
    banner.textContent = message;
  } else {
    status.textContent = "live · " + clock(Date.now());
    banner.textContent = "";
  }
}

async function getJSON(url) {
  let r;
  try { r = await fetch(url, {cache: "no-store"}); }
  catch (e) { throw new Error("the operator does not answer (" + e.message + ")"); }
  let body = null;
  try { body = await r.json(); } catch (e) { /* not JSON: report the status */ }
  if (!r.ok) throw new Error("the operator's API answered HTTP " + r.status + (body && body.error ? ": " + body.error : ""));
  if (body === null) throw new Error("the operator's API answered something that is not JSON");
  return body;
}

async function poll() {
  const api = "/api/clusters/" + cluster;
  try {
    const [snap, s] = await Promise.all([getJSON(api), getJSON(api + "/series" + (lastSampleMs ? "?sinceMs=" + lastSampleMs : ""))]);
    if (document.body.dataset.state === "error") { series = []; }
    for (const p of s.samples) series.push(p);
    if (series.length) lastSampleMs = series[series.length - 1].timeMs;
    const cut = snap.nowMs - HOUR_MS;
    while (series.length && series[0].timeMs < cut) series.shift();
    render(snap);
    const age = snap.updatedMs == null ? null : (snap.nowMs - snap.updatedMs) / 1000;
    const limit = Math.max(15, 5 * snap.autoscaler.tickSeconds);
    if (age == null) setState("stale", "The controller has not reported yet.");
    else if (age > limit) setState("stale", "No update from the controller for " + age.toFixed(0) + " s: the figures below are from " + clock(snap.updatedMs) + ".");
    else setState("ok");
    // For load-time measurements: when the page first showed live data.
    if (!performance.getEntriesByName("floe-console-rendered").length) performance.mark("floe-console-rendered");
  } catch (e) {
    setState("error", "Cannot show cluster " + cluster + ": " + e.message + ". Retrying every " + POLL_MS / 1000 + " s.");
  }
  timer = setTimeout(poll, POLL_MS);
}

function render(c) {
  document.getElementById("cluster-name").textContent = c.name + " · " + c.bootstrap;
  const card = (k, v, id) => el("div", {class: "card", id}, el("div", {class: "k"}, k), el("div", {class: "v"}, v));
  document.getElementById("cards").replaceChildren(
    card("phase", c.phase, "card-phase"), card("brokers ready / desired", c.readyBrokers + " / " + c.desiredBrokers, "card-brokers"),
    card("in", rate(c.bytesInPerSecond), "card-in"), card("out", rate(c.bytesOutPerSecond), "card-out"),
    card("moves in progress", c.movesInProgress, "card-moves"));
  fill("brokers", c.brokers.map(b => el("tr", {"data-id": b.id, "data-state": b.state, "data-partitions": b.partitions},
    el("td", {}, b.id), el("td", {}, el("span", {class: "state state-" + b.state}, b.state)), el("td", {class: "num"}, b.partitions),
    el("td", {class: "num"}, mib(b.bytesInPerSecond)), el("td", {class: "num"}, mib(b.bytesOutPerSecond)),
    el("td", {class: "num"}, b.cpuPercent == null ? "–" : b.cpuPercent.toFixed(0) + "%"),
    el("td", {class: "num"}, b.produceP99Ms == null ? "–" : "≤" + b.produceP99Ms + " ms"))));
  const decisions = c.decisions.slice().reverse();
  fill("decisions", decisions.map(d => el("tr", {"data-time": d.timeMs, "data-from": d.from, "data-to": d.to},
    el("td", {}, clock(d.timeMs)), el("td", {}, d.from + " → " + d.to + (d.dryRun ? " (dry run)" : "")), el("td", {class: "reason"}, d.reason))));
  if (!decisions.length) fill("decisions", [el("tr", {}, el("td", {colspan: 3, class: "muted"}, "no scaling decision yet"))]);
  const moves = c.moves.slice().reverse();
  fill("moves", moves.map(m => el("tr", {"data-partition": m.partition, "data-from": m.from, "data-to": m.to, "data-why": m.why, "data-outcome": m.outcome},
    el("td", {}, clock(m.startedMs)), el("td", {}, m.partition), el("td", {}, m.from + " → " + m.to), el("td", {class: "num"}, secs(m.seconds)),
    el("td", {}, m.why), el("td", {}, m.outcome))));
  if (!moves.length) fill("moves", [el("tr", {}, el("td", {colspan: 6, class: "muted"}, "no partition moved yet"))]);
  timeline(c);
  const pl = document.getElementById("plan");
  if (!c.plan) pl.replaceChildren(el("p", {class: "muted"}, "balancing is off, or no metadata yet"));
  else if (c.plan.balanced) pl.replaceChildren(el("p", {class: "balanced", id: "plan-balanced"}, "balanced"),
    el("p", {class: "muted"}, "band " + rate(c.plan.bandLowBytesPerSecond) + " … " + rate(c.plan.bandHighBytesPerSecond) + " per broker"));
  else pl.replaceChildren(el("p", {}, c.plan.moves.length + " move(s) planned" + (c.plan.note ? " — " + c.plan.note : "")),
    el("table", {id: "plan-moves"}, el("tbody", {}, c.plan.moves.map(m => el("tr", {"data-partition": m.partition},
      el("td", {}, m.partition), el("td", {}, m.from + " → " + m.to), el("td", {}, m.why), el("td", {class: "num"}, rate(m.loadBytesPerSecond)))))));
  const a = c.autoscaler, b = c.balancer;
  const kv = (k, v) => [el("dt", {}, k), el("dd", {}, v)];
  document.getElementById("autoscaler").replaceChildren(...[
    kv("autoscaling", a.enabled ? (a.dryRun ? "dry run (decides, does not act)" : "on") : "off"),
    kv("brokers", a.minBrokers + " … " + a.maxBrokers),
    kv("targets per broker", [a.targetBytesInPerSecond != null ? "in " + rate(a.targetBytesInPerSecond) : null,
      a.targetBytesOutPerSecond != null ? "out " + rate(a.targetBytesOutPerSecond) : null,
      a.targetRequestsPerSecond != null ? a.targetRequestsPerSecond + " req/s" : null,
      a.targetCpuPercent != null ? "CPU " + a.targetCpuPercent + "%" : null].filter(x => x).join(", ") || "none"),
    kv("tolerance", a.tolerancePercent.toFixed(0) + "%"),
    kv("stabilization", "up " + a.scaleUpWindowSeconds + " s, down " + a.scaleDownWindowSeconds + " s"),
    kv("max step", "up " + a.scaleUpStep + ", down " + a.scaleDownStep),
    kv("tick / load window", a.tickSeconds + " s / " + a.loadWindowSeconds + " s"),
    kv("balancer", b.enabled ? "every " + b.intervalSeconds + " s, band ±" + b.tolerancePercent.toFixed(0) + "%, ≤ " + b.maxMovesPerRound +
      " moves, cooldown " + b.moveCooldownSeconds + " s" + (b.dryRun ? ", dry run" : "") : "off")].flat());
  const s = c.schedules, sc = document.getElementById("schedules");
  const win = w => w.name + ": floor " + w.floorBrokers + ", raised " + clock(w.raiseAtMs) + ", open " + clock(w.startMs) + " – " + clock(w.endMs);
  if (!s.configured.length && !s.predictive) sc.replaceChildren(el("p", {class: "muted"}, "no schedules, predictive floor off"));
  else sc.replaceChildren(
    el("dl", {}, [kv("floor now", s.floorBrokers != null ? s.floorReason : "none"),
      kv("active", s.active.length ? s.active.map(win).join("; ") : "none"), kv("next", s.next ? win(s.next) : "none"),
      kv("predictive", s.predictive ? (s.predictedBytesInPerSecond != null ? "predicts " + rate(s.predictedBytesInPerSecond) : "learning") : "off")].flat()),
    el("table", {id: "schedule-list"}, el("tbody", {}, s.configured.map(x => el("tr", {"data-name": x.name},
      el("td", {}, x.name), el("td", {}, x.cron + " " + x.timeZone), el("td", {}, (x.durationSeconds / 60).toFixed(0) + " min, lead " + x.leadSeconds + " s"),
      el("td", {}, x.floorSource))))));
  fill("events", c.events.slice().reverse().map(e => el("tr", {}, el("td", {class: "muted"}, clock(e.timeMs)), el("td", {}, e.text))));
  charts(c);
}

// A line chart: x = time over the last hour (or since the first sample), y from 0.
function chart(id, lines, decisions, nowMs, step) {
  const W = 640, H = 190, L = 40, R = 10, T = 10, B = 22;
  const t0 = Math.max(nowMs - HOUR_MS, series.length ? series[0].timeMs : nowMs - 60e3), t1 = nowMs;
  const x = t => L + (W - L - R) * (t - t0) / Math.max(1, t1 - t0);
  let ymax = 0;
  for (const ln of lines) for (const p of series) ymax = Math.max(ymax, ln.value(p));
  // Broker counts: whole numbers on the axis, one above the highest.
  ymax = step ? Math.ceil(ymax) + 1 : ymax <= 0 ? 1 : ymax * 1.15;
  const ticks = step && ymax <= 8 ? ymax : 4;
  const y = v => T + (H - T - B) * (1 - v / ymax);
  const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, role: "img"});
  for (let i = 0; i <= ticks; i++) {
    const v = ymax * i / ticks;
    svg.append(el("line", {x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#eef0f4"}),
      el("text", {x: L - 4, y: y(v) + 4, "text-anchor": "end"}, step ? v.toFixed(0) : v.toFixed(v < 10 ? 1 : 0)));
  }
  for (let i = 0; i <= 4; i++) { const t = t0 + (t1 - t0) * i / 4; svg.append(el("text", {x: x(t), y: H - 6, "text-anchor": "middle"}, clock(t))); }
  for (const ln of lines) {
    let pts = [];
    series.forEach((p, i) => {
      if (step && i > 0) pts.push(x(p.timeMs) + "," + y(ln.value(series[i - 1])));
      pts.push(x(p.timeMs) + "," + y(ln.value(p)));
    });
    svg.append(el("polyline", {points: pts.join(" "), fill: "none", stroke: ln.color, "stroke-width": ln.dash ? 2 : 3,
      "stroke-dasharray": ln.dash, "class": "series-" + ln.name}));
  }
  for (const d of decisions) {
    if (d.timeMs < t0) continue;
    const tip = clock(d.timeMs) + " " + d.from + " → " + d.to + " brokers" + (d.dryRun ? " (dry run)" : "") + ": " + d.reason;
    svg.append(el("g", {class: "decision", "data-time": d.timeMs}, el("title", {}, tip),
      el("line", {x1: x(d.timeMs), x2: x(d.timeMs), y1: T, y2: H - B}), el("circle", {cx: x(d.timeMs), cy: T + 5, r: 5})));
  }
  document.getElementById(id).replaceChildren(svg);
}

function charts(c) {
  chart("chart-throughput", [
    {name: "in", color: "var(--in)", value: p => p.bytesInPerSecond / MiB},
    {name: "out", color: "var(--out)", value: p => p.bytesOutPerSecond / MiB}], c.decisions, c.nowMs, false);
  chart("chart-brokers", [
    {name: "ready", color: "var(--ready)", value: p => p.readyBrokers},
    {name: "desired", color: "var(--desired)", value: p => p.desiredBrokers, dash: "6 4"}], c.decisions, c.nowMs, true);
}

// The moves as bars on a time axis: one row per move, from its start for its duration.
function timeline(c) {
  const moves = c.moves.slice(-30), box = document.getElementById("moves-timeline");
  if (!moves.length) { box.replaceChildren(); return; }
  const W = 640, L = 150, R = 10, row = 14, H = moves.length * row + 22;
  const t0 = Math.min(...moves.map(m => m.startedMs)), t1 = Math.max(c.nowMs, ...moves.map(m => m.startedMs + 1000 * (m.seconds || 0)));
  const x = t => L + (W - L - R) * (t - t0) / Math.max(1, t1 - t0);
  const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, role: "img"});
  moves.forEach((m, i) => {
    const end = m.seconds != null ? m.startedMs + m.seconds * 1000 : c.nowMs;
    svg.append(el("text", {x: 4, y: i * row + 11}, m.partition + " " + m.from + "→" + m.to),
      el("rect", {x: x(m.startedMs), y: i * row + 2, width: Math.max(2, x(end) - x(m.startedMs)), height: row - 4,
        class: "bar " + m.why + " " + m.outcome.replace(" ", "-")},
        el("title", {}, m.partition + ": broker " + m.from + " → " + m.to + ", " + m.why + ", " + secs(m.seconds) + ", " + m.outcome)));
  });
  svg.append(el("text", {x: L, y: H - 4}, clock(t0)), el("text", {x: W - R, y: H - 4, "text-anchor": "end"}, clock(t1)));
  box.replaceChildren(svg);
}

async function index() {
  document.querySelector("main").replaceChildren();
  try {
    const list = await getJSON("/api/clusters");
    if (list.clusters.length === 1) { location.replace("/clusters/" + list.clusters[0].name); return; }
    document.querySelector("main").append(el("h2", {}, "Clusters"), list.clusters.length
      ? el("ul", {class: "clusters"}, list.clusters.map(c => el("li", {}, el("a", {href: "/clusters/" + c.name}, c.name), " — " + c.brokers + " broker(s), " + c.phase)))
      : el("p", {class: "muted"}, "No cluster with autoscaling or balancing runs under this operator."));
    setState("ok");
  } catch (e) { setState("error", "Cannot list the clusters: " + e.message); }
}

const path = location.pathname;
if (path.startsWith("/clusters/") && path.length > "/clusters/".length) { cluster = path.slice("/clusters/".length); poll(); }
else index();
</script>
</body>
</html>
"""#
}
