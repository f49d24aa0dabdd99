// plugdb status page: polls this router's /v1/status, /metrics and
// /ui/api/{events,plugins} and renders them. Plain JavaScript, no
// dependencies; see docs/status-page.md.
"use strict";

const POLL_MS = 2000;
const SPARK_POINTS = 60;

// readings are the last polls' counters, oldest first, for rates: time (ms)
// and its clock, request and error totals, and each partition leader's
// applied LSN by "keyspace/partition". A rate is taken from the oldest
// reading within RATE_WINDOW_MS to the newest.
const RATE_WINDOW_MS = 10000;
let readings = [];
const rpsHistory = [];

// el makes an element with attributes and children (strings become text).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v; else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status + " " + (await r.text()).slice(0, 200));
  return r.json();
}

async function getText(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.text();
}

// requestTotals sums plugdb_requests_total in a Prometheus text exposition:
// every request, and those whose code is not OK.
function requestTotals(text) {
  let all = 0, errors = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith("plugdb_requests_total")) continue;
    const m = line.match(/^plugdb_requests_total(\{[^}]*\})?\s+(\S+)/);
    if (!m) continue;
    const v = parseFloat(m[2]);
    if (!isFinite(v)) continue;
    all += v;
    if (m[1] && !/code="OK"/.test(m[1])) errors += v;
  }
  return { all, errors };
}

function fmtRate(v) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  return v >= 100 ? v.toFixed(0) : v.toFixed(1);
}

function fmtTime(iso) {
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleTimeString([], { hour12: false });
}

// keyspacesOf is every keyspace of a status: its keyspaces, or the
// top-level one when the router lists none.
function keyspacesOf(st) {
  if (st.keyspaces && st.keyspaces.length) return st.keyspaces;
  return [{ name: "default", engine: st.engine, partitioner: st.partitioner, replicator: st.replicator,
    partitions: st.partitions || [], layout_version: st.layout_version, reshard: st.reshard }];
}

function leaderOf(ps) {
  return (ps.replicas || []).find(r => r.role === "leader");
}

function renderTopology(st, wps) {
  const root = document.getElementById("topology");
  const out = [];
  for (const ks of keyspacesOf(st)) {
    const parts = ks.partitions || [];
    const head = el("h3", {}, "keyspace " + ks.name, " ",
      el("span", { class: "muted" }, `· ${parts.length} partitions · partitioner ${ks.partitioner ? ks.partitioner.plugin : "?"}` +
        ` · layout v${ks.layout_version || 1}` + (ks.reshard && ks.reshard.state ? ` · reshard ${ks.reshard.state}` : "")));
    const table = el("table", { class: "topology" },
      el("thead", {}, el("tr", {}, el("th", {}, "replica"), el("th", {}, "role"), el("th", { class: "num" }, "epoch"),
        el("th", { class: "num" }, "applied LSN"), el("th", { class: "num" }, "persisted LSN"), el("th", {}, "in sync"),
        el("th", { class: "num" }, "lag (stmts)"), el("th", { class: "num" }, "lag (ms)"), el("th", { class: "num" }, "keys"),
        el("th", { class: "num" }, "bytes"), el("th", {}, "error"))));
    const body = el("tbody");
    for (const ps of parts) {
      const leader = leaderOf(ps);
      const key = ks.name + "/" + ps.partition;
      const rate = wps[key];
      const ack = ps.ack ? `ack ${ps.ack}${ps.ack_fallback ? " (fell back to async)" : ""}` : "";
      const isr = ps.replica_set ? `${ps.in_sync}/${ps.replica_set} in sync, ${ps.ack_needs} needed` : "";
      const short = ps.ack_needs && ps.in_sync < ps.ack_needs;
      body.append(el("tr", { class: "partition", "data-keyspace": ks.name, "data-partition": ps.partition,
          "data-leader": leader ? leader.addr : "", "data-epoch": ps.epoch },
        el("td", { colspan: 11 }, `partition ${ps.partition} · `,
          leader ? el("span", {}, "leader ", el("span", { class: "mono" }, leader.addr)) : el("span", { class: "bad" }, "no leader"),
          ` · epoch ${ps.epoch}`,
          ack ? " · " + ack : "",
          isr ? el("span", { class: short ? "bad" : "" }, " · " + isr) : "",
          el("span", { class: "muted" }, " · LSNs/s ", el("span", { class: "wps", "data-value": rate === undefined ? "" : rate }, fmtRate(rate))))));
      for (const r of ps.replicas || []) {
        const role = r.role === "leader" || r.role === "follower" ? r.role : "other";
        const lagBad = r.role === "follower" && (!r.isr || r.lag_ms >= 1000);
        body.append(el("tr", { class: "replica", "data-partition": ps.partition, "data-addr": r.addr, "data-role": r.role },
          el("td", { class: "mono" }, r.addr),
          el("td", {}, el("span", { class: "role " + role }, r.role || "?")),
          el("td", { class: "num" }, r.epoch),
          el("td", { class: "num" }, r.applied_lsn),
          el("td", { class: "num" }, r.persisted_lsn),
          el("td", {}, r.role === "leader" ? el("span", { class: "muted" }, "leader") :
            r.isr ? el("span", { class: "ok" }, "yes") : el("span", { class: "bad" }, "no")),
          el("td", { class: "num" + (lagBad ? " warn" : "") }, r.role === "leader" ? "" : r.lag_statements),
          el("td", { class: "num" + (lagBad ? " warn" : "") }, r.role === "leader" ? "" : r.lag_ms),
          el("td", { class: "num" }, r.keys),
          el("td", { class: "num" }, r.bytes),
          el("td", { class: "bad" }, r.replication_error || "")));
      }
    }
    table.append(body);
    out.push(head, table);
  }
  root.replaceChildren(...out);
}

function renderPlugins(st, extra) {
  const pins = {};
  for (const ks of (extra && extra.keyspaces) || []) {
    for (const p of ks.plugins || []) pins[ks.name + "/" + p.kind] = p;
  }
  const body = document.querySelector("#plugins tbody");
  const rows = [];
  for (const ks of keyspacesOf(st)) {
    for (const kind of ["engine", "partitioner", "replicator"]) {
      const p = ks[kind];
      if (!p) continue;
      // The config's block, unless a reshard moved the keyspace to another plugin.
      let x = pins[ks.name + "/" + kind] || {};
      if (x.plugin !== p.plugin) x = {};
      const opts = Object.entries(p.options || {}).map(([k, v]) => k + ": " + v).join(", ");
      rows.push(el("tr", { class: "plugin", "data-keyspace": ks.name, "data-kind": kind, "data-plugin": p.plugin, "data-mode": p.mode },
        el("td", {}, ks.name), el("td", {}, kind), el("td", { class: "mono" }, p.plugin), el("td", {}, p.mode),
        el("td", {}, x.protocol_version ? "v" + x.protocol_version : "–"),
        el("td", { class: "mono" }, x.sha256 ? x.sha256 : el("span", { class: "muted" }, "not pinned")),
        el("td", { class: "mono" }, opts ? "{" + opts + "}" : "{}")));
    }
  }
  body.replaceChildren(...rows);
}

function renderEvents(ev) {
  const body = document.querySelector("#failovers tbody");
  const events = ev.events || [];
  body.replaceChildren(...events.map(e => el("tr", { class: "failover", "data-keyspace": e.keyspace, "data-partition": e.partition,
      "data-from": e.from, "data-to": e.to, "data-epoch": e.epoch },
    el("td", {}, fmtTime(e.time)), el("td", {}, e.keyspace), el("td", {}, e.partition),
    el("td", { class: "mono" }, `${e.from} (epoch ${e.from_epoch})`), el("td", {}, "→"),
    el("td", { class: "mono" }, `${e.to} (epoch ${e.epoch})`))));
  const note = document.getElementById("failovers-note");
  note.textContent = events.length ? `${events.length} shown of ${ev.total} since the router started at ${fmtTime(ev.started)}`
    : `none since the router started at ${fmtTime(ev.started)}`;
}

function renderSpark() {
  const line = document.querySelector("#spark polyline");
  if (rpsHistory.length < 2) return;
  const max = Math.max(1, ...rpsHistory);
  // The line spans the card and fills in as readings come, then scrolls.
  const step = 240 / (rpsHistory.length - 1);
  line.setAttribute("points", rpsHistory.map((v, i) => `${(i * step).toFixed(1)},${(38 - 34 * v / max).toFixed(1)}`).join(" "));
}

function setFigure(id, v) {
  const e = document.getElementById(id);
  e.textContent = fmtRate(v);
  e.dataset.value = v === null || v === undefined || !isFinite(v) ? "" : String(v);
}

async function poll() {
  const [st, metrics, events, plugins] = await Promise.allSettled([
    getJSON("/v1/status"), getText("/metrics"), getJSON("/ui/api/events"), getJSON("/ui/api/plugins")]);
  // Rates are measured by the router's clock when it answers (it does so
  // beside /metrics and /v1/status), else by the browser's.
  let now = performance.now(), clock = "browser";
  if (events.status === "fulfilled" && events.value.now) {
    const t = Date.parse(events.value.now);
    if (isFinite(t)) { now = t; clock = "router"; }
  }
  const errors = [];
  const cur = { t: now, clock, lsn: {} };
  // A rate needs two readings of one clock.
  if (readings.length && readings[readings.length - 1].clock !== clock) readings = [];
  const prev = readings.length ? readings[0] : null;
  const last = readings.length ? readings[readings.length - 1] : null;
  if (metrics.status === "fulfilled") {
    Object.assign(cur, requestTotals(metrics.value));
  } else errors.push(metrics.reason.message);
  let wps = {};
  if (st.status === "fulfilled") {
    const s = st.value;
    document.getElementById("cluster").textContent = "· cluster " + s.cluster;
    let led = 0, total = 0;
    for (const ks of keyspacesOf(s)) {
      for (const ps of ks.partitions || []) {
        total++;
        const l = leaderOf(ps);
        if (l) { led++; cur.lsn[ks.name + "/" + ps.partition] = l.applied_lsn; }
      }
    }
    setFigure("led", null);
    document.getElementById("led").textContent = `${led} / ${total}`;
    document.getElementById("led").className = "figure" + (led < total ? " bad" : "");
    if (prev) {
      const dt = (now - prev.t) / 1000;
      let sum = 0, any = false;
      for (const [k, v] of Object.entries(cur.lsn)) {
        if (prev.lsn[k] !== undefined && v >= prev.lsn[k] && dt > 0) {
          wps[k] = (v - prev.lsn[k]) / dt; sum += wps[k]; any = true;
        }
      }
      setFigure("wps", any ? sum : null);
    }
    renderTopology(s, wps);
    renderPlugins(s, plugins.status === "fulfilled" ? plugins.value : null);
  } else errors.push(st.reason.message);
  if (prev && cur.all !== undefined && prev.all !== undefined && now > prev.t) {
    const dt = (now - prev.t) / 1000;
    const rps = Math.max(0, (cur.all - prev.all) / dt);
    setFigure("rps", rps);
    setFigure("eps", Math.max(0, (cur.errors - prev.errors) / dt));
    rpsHistory.push(rps);
    if (rpsHistory.length > SPARK_POINTS) rpsHistory.shift();
    renderSpark();
  }
  if (events.status === "fulfilled") renderEvents(events.value); else errors.push(events.reason.message);
  // Keep the last good counters when this poll lacks them.
  if (cur.all === undefined && last) { cur.all = last.all; cur.errors = last.errors; }
  if (st.status !== "fulfilled" && last) cur.lsn = last.lsn;
  readings.push(cur);
  while (readings.length > 2 && readings[1].t <= now - RATE_WINDOW_MS) readings.shift();
  const state = document.getElementById("state");
  state.className = "state" + (errors.length ? " error" : "");
  state.textContent = (errors.length ? "error: " + errors.join("; ") + " · " : "live · ") +
    "updated " + new Date().toLocaleTimeString([], { hour12: false });
  state.dataset.polls = String((parseInt(state.dataset.polls || "0", 10)) + 1);
}

async function loop() {
  try { await poll(); } catch (e) {
    const state = document.getElementById("state");
    state.className = "state error";
    state.textContent = "error: " + e.message;
  }
  setTimeout(loop, POLL_MS);
}

loop();
