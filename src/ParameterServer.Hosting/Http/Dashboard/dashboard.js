// The job's dashboard: polls the scheduler's /api/job twice a second (the status `pserver status --json` prints, the
// job's events, and the history samples the page has not seen yet) and draws it. No libraries: the page must work
// on machines without internet.
"use strict";
const colors = ["#3182ce", "#38a169", "#d69e2e", "#805ad5", "#dd6b20", "#319795", "#d53f8c", "#5a67d8"];
const maxWindowMs = 10 * 60 * 1000;
const history = []; // samples from the scheduler, one a second: {t, servers_bytes_s, nodes: {id: {sent_s, received_s, step_ms, loss, answer_ms}}}
const state = { updates: 0, lastUpdateMs: 0, firstRenderMs: 0, error: "" };
window.psDashboard = state;

function fmtBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
}

function fmtMs(v) { return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2); }

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function render(answer) {
  const s = answer.status;
  const alive = s.nodes.filter(n => n.alive);
  document.getElementById("job").textContent =
    `view ${s.view} · ${s.ready ? "running" : "starting"} · ${alive.filter(n => n.role === "server").length} servers, ` +
    `${alive.filter(n => n.role === "worker").length} workers alive` + (s.migrating ? " · migrating" : "");
  document.getElementById("updated").textContent = "updated " + new Date(answer.time_ms).toLocaleTimeString();

  const latest = history.length ? history[history.length - 1].nodes : {};
  const body = document.querySelector("#nodes tbody");
  body.replaceChildren();
  for (const n of s.nodes) {
    const row = body.insertRow();
    row.dataset.node = n.id;
    row.dataset.state = n.state;
    row.dataset.straggler = n.straggler;
    if (n.straggler) row.className = "straggler";
    const rate = latest[n.id] || {};
    const p = n.progress;
    cell(row, n.id);
    cell(row, n.role);
    cell(row, n.rank);
    cell(row, n.address.startsWith(":") ? "" : n.address);
    cell(row, n.state, n.alive ? "" : "dead");
    cell(row, n.role === "server" && n.alive ? (100 * n.ring_share).toFixed(1) + " %" : "");
    cell(row, rate.sent_s !== undefined ? fmtBytes(rate.sent_s) : "");
    cell(row, rate.received_s !== undefined ? fmtBytes(rate.received_s) : "");
    cell(row, p ? (p.fraction !== null ? `${p.phase} ${(100 * p.fraction).toFixed(0)} %` : "") : "");
    cell(row, p ? p.steps.toLocaleString() : "");
    cell(row, p && p.step_ms !== null ? fmtMs(p.step_ms) + " ms/step" : n.answer_ms !== null ? fmtMs(n.answer_ms) + " ms/answer" : "",
      n.straggler ? "slow" : "");
    cell(row, p && p.loss !== null ? p.loss.toPrecision(4) : "");
  }

  const ring = document.getElementById("ring");
  ring.replaceChildren();
  s.nodes.filter(n => n.role === "server" && n.alive).forEach((n, i) => {
    const part = document.createElement("div");
    part.style.width = (100 * n.ring_share) + "%";
    part.style.background = colors[i % colors.length];
    part.textContent = `server ${n.id} · ${(100 * n.ring_share).toFixed(1)}%`;
    part.title = part.textContent;
    ring.appendChild(part);
  });
  const r = s.replication;
  document.getElementById("replication").textContent =
    `replication ${r.factor}: ${r.copies} copies of every range, ${r.healthy ? "healthy" : r.restoring ? "restoring lost copies" : "DEGRADED"}`;

  const slow = document.getElementById("slow");
  slow.replaceChildren();
  for (const n of s.nodes) {
    for (const call of n.slow_calls) {
      const item = document.createElement("li");
      item.dataset.node = n.id;
      item.textContent = `worker ${n.id}: ${call}`;
      slow.appendChild(item);
    }
  }
  document.getElementById("slow-none").hidden = slow.children.length > 0;

  const tables = document.querySelector("#tables tbody");
  tables.replaceChildren();
  for (const t of s.tables) {
    const row = tables.insertRow();
    [t.id, t.name, t.width, t.handler, t.mode, t.dense_size || "sparse"].forEach(v => cell(row, v));
  }

  const now = answer.time_ms;
  const windowMs = Math.min(maxWindowMs, Math.max(60000, history.length ? now - history[0].t : 0));
  const events = answer.events.filter(e => e.unix_ms >= now - windowMs);
  const byNode = (field, role) => s.nodes.filter(n => n.role === role).map(n => ({
    name: `${role} ${n.id}`,
    points: history.filter(h => h.nodes[n.id] && h.nodes[n.id][field] !== undefined).map(h => ({ t: h.t, v: h.nodes[n.id][field] })),
  })).filter(x => x.points.length);
  plot("throughput", now, windowMs, events, [{ name: "servers", points: history.map(h => ({ t: h.t, v: h.servers_bytes_s })) }], v => fmtBytes(v) + "/s");
  plot("steps", now, windowMs, events, byNode("step_ms", "worker"), v => fmtMs(v) + " ms");
  plot("answers", now, windowMs, events, byNode("answer_ms", "server"), v => fmtMs(v) + " ms");
  plot("loss", now, windowMs, events, byNode("loss", "worker"), v => v.toPrecision(3));

  const list = document.getElementById("events");
  list.replaceChildren();
  for (const e of answer.events.slice().reverse()) {
    const item = document.createElement("li");
    item.className = e.kind;
    item.dataset.kind = e.kind;
    item.textContent = `${new Date(e.unix_ms).toLocaleTimeString()}  [${e.kind}]  ${e.text}`;
    list.appendChild(item);
  }
}

// A time plot of some series over the window, with the job's events as vertical lines and a legend.
function plot(id, nowMs, windowMs, events, series, label) {
  const canvas = document.getElementById(id);
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 80, bottom = 18, top = 16;
  g.clearRect(0, 0, w, h);
  const values = series.flatMap(x => x.points.filter(p => p.t >= nowMs - windowMs).map(p => p.v)).filter(Number.isFinite);
  const max = values.length ? Math.max(...values) * 1.05 || 1 : 1;
  const x = t => left + (w - left - 10) * (1 - (nowMs - t) / windowMs);
  const y = v => top + (h - bottom - top) * (1 - v / max);
  g.font = "11px system-ui";
  g.strokeStyle = "#e2e8f0";
  g.fillStyle = "#4a5568";
  for (let i = 0; i <= 4; i++) {
    const v = max * i / 4;
    g.beginPath(); g.moveTo(left, y(v)); g.lineTo(w - 10, y(v)); g.stroke();
    g.fillText(label(v), 2, y(v) + 4);
  }
  const stepS = windowMs > 180000 ? 60 : windowMs > 60000 ? 30 : 10;
  for (let s = 0; s * 1000 <= windowMs; s += stepS) g.fillText(s === 0 ? "now" : `-${s >= 60 ? s / 60 + " min" : s + " s"}`, x(nowMs - s * 1000) - 12, h - 4);
  for (const e of events) {
    g.strokeStyle = e.kind === "death" || e.kind === "failure" ? "#e53e3e" : "#a0aec0";
    g.beginPath(); g.moveTo(x(e.unix_ms), top); g.lineTo(x(e.unix_ms), h - bottom); g.stroke();
  }
  g.lineWidth = 2;
  series.forEach((sr, i) => {
    const color = colors[i % colors.length];
    g.strokeStyle = color;
    g.beginPath();
    sr.points.filter(p => p.t >= nowMs - windowMs).forEach((p, j) => (j ? g.lineTo(x(p.t), y(p.v)) : g.moveTo(x(p.t), y(p.v))));
    g.stroke();
    g.fillStyle = color;
    g.fillText(sr.name, left + 10 + i * 90, 11);
  });
  g.lineWidth = 1;
  if (!values.length) {
    g.fillStyle = "#a0aec0";
    g.fillText("nothing reported yet", left + 10, h / 2);
  }
}

async function poll() {
  const started = performance.now();
  try {
    const since = history.length ? history[history.length - 1].t : 0;
    const response = await fetch("api/job?since=" + since, { cache: "no-store" });
    if (!response.ok) throw new Error(await response.text());
    const answer = await response.json();
    history.push(...answer.history);
    while (history.length && history[0].t < answer.time_ms - maxWindowMs) history.shift();
    render(answer);
    state.updates++;
    state.lastUpdateMs = Date.now();
    if (!state.firstRenderMs) state.firstRenderMs = performance.now();
    state.error = "";
  } catch (err) {
    state.error = String(err);
    document.getElementById("job").textContent = "cannot reach the scheduler: " + err;
  }
  setTimeout(poll, Math.max(0, 500 - (performance.now() - started))); // twice a second
}
poll();
