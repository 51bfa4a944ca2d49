// The job's dashboard: polls the scheduler's /api/job (the same status `pserver status --json` prints, plus the
// job's events) twice a second and draws it. No libraries: the page must work on machines without internet.
"use strict";
const colors = ["#3182ce", "#38a169", "#d69e2e", "#805ad5", "#dd6b20", "#319795", "#d53f8c", "#5a67d8"];
const windowMs = 5 * 60 * 1000;
const samples = []; // {t, bytes}: bytes per second through the servers
let previous = null; // the last answer, for rates
const state = { updates: 0, lastUpdateMs: 0, firstRenderMs: 0, error: "" };
window.psDashboard = state;

function fmtBytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function trafficOf(answer, id) {
  const t = answer.status.traffic[String(id)];
  return t ? { sent: t.bytes_sent, received: t.bytes_received } : null;
}

function render(answer) {
  const s = answer.status;
  const alive = s.nodes.filter(n => n.alive);
  document.getElementById("job").textContent =
    `view ${s.view} · ${s.ready ? "running" : "starting"} · ${alive.filter(n => n.role === "server").length} servers, ` +
    `${alive.filter(n => n.role === "worker").length} workers alive` + (s.migrating ? " · migrating" : "");
  document.getElementById("updated").textContent = "updated " + new Date(answer.time_ms).toLocaleTimeString();

  const seconds = previous ? Math.max(1e-3, (answer.time_ms - previous.time_ms) / 1000) : 0;
  const body = document.querySelector("#nodes tbody");
  body.replaceChildren();
  for (const n of s.nodes) {
    const row = body.insertRow();
    row.dataset.node = n.id;
    row.dataset.state = n.state;
    cell(row, n.id);
    cell(row, n.role);
    cell(row, n.rank);
    cell(row, n.address);
    cell(row, n.state, n.alive ? "" : "dead");
    cell(row, n.role === "server" && n.alive ? (100 * n.ring_share).toFixed(1) + " %" : "");
    const now = trafficOf(answer, n.id), before = previous && trafficOf(previous, n.id);
    cell(row, now && before && seconds ? fmtBytes((now.sent - before.sent) / seconds) : "");
    cell(row, now && before && seconds ? fmtBytes((now.received - before.received) / seconds) : "");
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

  const tables = document.querySelector("#tables tbody");
  tables.replaceChildren();
  for (const t of s.tables) {
    const row = tables.insertRow();
    [t.id, t.name, t.width, t.handler, t.mode, t.dense_size || "sparse"].forEach(v => cell(row, v));
  }

  if (previous && seconds) {
    const servers = s.nodes.filter(n => n.role === "server").map(n => n.id);
    let bytes = 0;
    for (const id of servers) {
      const now = trafficOf(answer, id), before = trafficOf(previous, id);
      if (now && before) bytes += (now.sent - before.sent) + (now.received - before.received);
    }
    samples.push({ t: answer.time_ms, bytes: bytes / seconds });
    while (samples.length && samples[0].t < answer.time_ms - windowMs) samples.shift();
  }
  drawThroughput(answer.time_ms, answer.events);

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

function drawThroughput(nowMs, events) {
  const canvas = document.getElementById("throughput");
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 70, bottom = 20;
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...samples.map(p => p.bytes));
  const x = t => left + (w - left - 10) * (1 - (nowMs - t) / windowMs);
  const y = v => (h - bottom) * (1 - v / max) + 4;
  g.strokeStyle = "#cbd5e0";
  g.fillStyle = "#4a5568";
  g.font = "11px system-ui";
  for (let i = 0; i <= 4; i++) {
    const v = max * i / 4;
    g.beginPath(); g.moveTo(left, y(v)); g.lineTo(w - 10, y(v)); g.stroke();
    g.fillText(fmtBytes(v) + "/s", 2, y(v) + 4);
  }
  for (let m = 0; m <= 5; m++) g.fillText(m === 0 ? "now" : `-${m} min`, x(nowMs - m * 60000) - 12, h - 4);
  for (const e of events.filter(e => e.unix_ms >= nowMs - windowMs)) {
    g.strokeStyle = e.kind === "death" || e.kind === "failure" ? "#e53e3e" : "#a0aec0";
    g.beginPath(); g.moveTo(x(e.unix_ms), 0); g.lineTo(x(e.unix_ms), h - bottom); g.stroke();
  }
  g.strokeStyle = "#3182ce";
  g.lineWidth = 2;
  g.beginPath();
  samples.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p.bytes)) : g.moveTo(x(p.t), y(p.bytes))));
  g.stroke();
  g.lineWidth = 1;
}

async function poll() {
  const started = performance.now();
  try {
    const response = await fetch("api/job", { cache: "no-store" });
    if (!response.ok) throw new Error(await response.text());
    const answer = await response.json();
    render(answer);
    previous = answer;
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
