// A query's page: draws the data inlined in the page, then follows the query's event stream
// (Server-Sent Events, one `progress` event per batch). Plain script, no build step; charts by
// uPlot. Each chart's container carries `data-points`, the number of batches it shows.
"use strict";

const KEEP = 300; // progress reports charted, as the server keeps
const TABLE_ROWS = 15; // batches in the table
const PHASES = ["latestOffset", "walCommit", "getBatch", "queryPlanning", "addBatch", "stateCommit", "commitOffsets"];
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

const query = JSON.parse(document.getElementById("query-data").textContent);
let progress = query.progress; // oldest first
let operators = query.operators;
let charts = {};
let chartShape = "";

// ---- formatting ----

function num(v, digits) {
  if (v == null || !isFinite(v)) return "-";
  return v.toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 0 : digits });
}

function bytes(v) {
  if (v == null) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
}

function seconds(s) {
  if (s == null || !isFinite(s)) return "-";
  const a = Math.abs(s);
  if (a < 120) return num(s, 1) + " s";
  if (a < 7200) return num(s / 60, 1) + " min";
  if (a < 172800) return num(s / 3600, 1) + " h";
  if (a < 63072000) return num(s / 86400, 1) + " d";
  return num(s / 31557600, 2) + " y";
}

function time(ts) {
  return ts ? ts.replace("T", " ").replace("Z", "") : "-";
}

// ---- what each chart shows ----

// Seconds; none before the watermark first moves (at the epoch), as Spark's UI.
function watermarkGap(p) {
  const w = p.eventTime && p.eventTime.watermark && Date.parse(p.eventTime.watermark);
  return w > 0 ? (Date.parse(p.timestamp) - w) / 1000 : null;
}

function perOperator(field) {
  return operators.map((name, i) => ({
    label: name || "operator " + i,
    value: (p) => (p.stateOperators[i] ? p.stateOperators[i][field] : null),
  }));
}

// Each chart: its series (label, value of a report) and how its axis reads.
function chartSpecs() {
  const phases = PHASES.filter((ph) => progress.some((p) => p.durationMs && p.durationMs[ph] != null));
  const other = (p) => {
    const d = p.durationMs || {};
    return Math.max(0, (d.triggerExecution || 0) - phases.reduce((s, ph) => s + (d[ph] || 0), 0));
  };
  return {
    "chart-rates": {
      axis: (v) => num(v),
      series: [
        { label: "input rows/s", value: (p) => (p.inputRowsPerSecond === undefined ? null : p.inputRowsPerSecond) },
        { label: "processed rows/s", value: (p) => (p.processedRowsPerSecond === undefined ? null : p.processedRowsPerSecond) },
      ],
    },
    "chart-duration": {
      axis: (v) => num(v) + " ms",
      stacked: true,
      series: phases
        .map((ph) => ({ label: ph, value: (p) => (p.durationMs && p.durationMs[ph]) || 0 }))
        .concat([{ label: "other", value: other }]),
    },
    "chart-watermark": { axis: seconds, series: [{ label: "watermark gap", value: watermarkGap }] },
    "chart-late": { axis: (v) => num(v), series: perOperator("numRowsDroppedByWatermark") },
    "chart-state-rows": { axis: (v) => num(v), series: perOperator("numRowsTotal") },
    "chart-state-bytes": { axis: bytes, series: perOperator("memoryUsedBytes") },
  };
}

// uPlot's data: the batch ids, then a row per series; stacked charts hold running sums, drawn
// from the top so that each phase's band shows over the ones above it.
function chartData(spec) {
  const xs = progress.map((p) => p.batchId);
  let rows = spec.series.map((s) => progress.map((p) => s.value(p)));
  if (spec.stacked) {
    const sums = [];
    rows.forEach((row, i) => sums.push(row.map((v, j) => v + (i > 0 ? sums[i - 1][j] : 0))));
    rows = sums.reverse();
  }
  return { data: [xs].concat(rows), raw: rows };
}

function makeChart(id, spec) {
  const el = document.getElementById(id);
  el.innerHTML = "";
  const series = spec.series.map((s, i) => ({ label: s.label, color: COLORS[i % COLORS.length] }));
  if (spec.stacked) series.reverse();
  const { data } = chartData(spec);
  const chart = { plot: null, spec: spec, lastData: data };
  const stackedRaw = (si, i) => {
    // The phase's own time: its running sum minus the one below it.
    const d = chart.lastData;
    const below = si + 1 < d.length ? d[si + 1][i] : 0;
    return d[si][i] - below;
  };
  const opts = {
    width: Math.max(300, el.clientWidth || 600),
    height: 220,
    scales: { x: { time: false } },
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
    series: [{ label: "batch", value: (u, v) => (v == null ? "-" : v) }].concat(
      series.map((s) => ({
        label: s.label,
        stroke: s.color,
        width: spec.stacked ? 1 : 2,
        fill: spec.stacked ? s.color + "cc" : undefined,
        points: { show: false },
        spanGaps: false,
        value: (u, v, si, i) =>
          v == null ? "-" : spec.axis(spec.stacked && i != null ? stackedRaw(si, i) : v),
      })),
    ),
    axes: [
      { label: "batch", stroke: "#444", grid: { stroke: "#eee" } },
      { stroke: "#444", size: 80, grid: { stroke: "#eee" }, values: (u, ticks) => ticks.map(spec.axis) },
    ],
  };
  chart.plot = new uPlot(opts, data, el);
  showLast(chart.plot);
  el.dataset.points = String(progress.length);
  el.dataset.series = String(series.length);
  return chart;
}

// The legend shows the last batch's values (the hovered batch's while the pointer is on the chart).
function showLast(plot) {
  if (progress.length > 0 && plot.cursor.idx == null) plot.setLegend({ idx: progress.length - 1 });
}

function drawCharts() {
  const specs = chartSpecs();
  // Rebuilt when the series change (the operators or phases first known), else updated.
  const shape = JSON.stringify(Object.values(specs).map((s) => s.series.map((x) => x.label)));
  for (const [id, spec] of Object.entries(specs)) {
    if (shape !== chartShape || !charts[id]) {
      if (charts[id]) charts[id].plot.destroy();
      charts[id] = makeChart(id, spec);
    } else {
      const { data } = chartData(spec);
      charts[id].spec = spec;
      charts[id].lastData = data;
      charts[id].plot.setData(data);
      showLast(charts[id].plot);
      document.getElementById(id).dataset.points = String(progress.length);
    }
  }
  chartShape = shape;
}

// ---- the rest of the page ----

function text(tag, content, cls) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (cls) el.className = cls;
  return el;
}

function drawSummary() {
  const last = progress[progress.length - 1];
  document.getElementById("status").textContent = query.status;
  document.getElementById("status").className = "badge status-" + query.status;
  const items = [
    ["query id", query.id],
    ["run id", query.runId || "-"],
    ["last batch", last ? String(last.batchId) : "-"],
    ["input rows (charted batches)", num(progress.reduce((s, p) => s + p.numInputRows, 0))],
    ["last batch duration", last ? num(last.batchDuration) + " ms" : "-"],
    ["watermark", last && last.eventTime && last.eventTime.watermark ? time(last.eventTime.watermark) : "none"],
    ["sources", last ? last.sources.map((s) => s.description).join(", ") : "-"],
    ["sink", last ? last.sink.description : "-"],
  ];
  const dl = document.createElement("dl");
  for (const [k, v] of items) {
    dl.appendChild(text("dt", k));
    dl.appendChild(text("dd", v));
  }
  document.getElementById("summary").replaceChildren(dl);
  const error = document.getElementById("error");
  error.hidden = !query.exception;
  if (query.exception) {
    error.replaceChildren(text("h2", "The query stopped on an error"), text("pre", query.exception));
  }
}

function drawPlan() {
  const pre = document.getElementById("plan");
  if (!query.plan) {
    pre.textContent = "(the plan of a query the UI was not given with LiveUi::watch is not known)";
    return;
  }
  const last = progress[progress.length - 1];
  pre.replaceChildren();
  for (const line of query.plan.split("\n")) {
    if (!line) continue;
    pre.appendChild(document.createTextNode(line));
    const m = line.match(/StatefulExec: ([^,]+),/);
    const i = m ? operators.indexOf(m[1]) : -1;
    if (i >= 0 && last && last.stateOperators[i]) {
      const o = last.stateOperators[i];
      pre.appendChild(
        text(
          "span",
          "  \u2190 " + o.operatorName + ": " + num(o.numRowsTotal) + " rows, " + bytes(o.memoryUsedBytes) +
            " (+" + num(o.numRowsUpdated) + " \u2212" + num(o.numRowsRemoved) + ", late " + num(o.numRowsDroppedByWatermark) + ")",
          "state",
        ),
      );
    }
    pre.appendChild(document.createTextNode("\n"));
  }
}

function drawTable() {
  const body = document.getElementById("batches");
  body.replaceChildren();
  for (const p of progress.slice(-TABLE_ROWS).reverse()) {
    const tr = document.createElement("tr");
    const cells = [
      String(p.batchId),
      time(p.timestamp),
      num(p.numInputRows),
      num(p.inputRowsPerSecond),
      num(p.processedRowsPerSecond),
      num(p.batchDuration) + " ms",
      p.eventTime && p.eventTime.watermark ? time(p.eventTime.watermark) : "-",
      num(p.stateOperators.reduce((s, o) => s + o.numRowsTotal, 0)),
      num(p.stateOperators.reduce((s, o) => s + o.numRowsDroppedByWatermark, 0)),
      num(p.sink.numOutputRows),
    ];
    cells.forEach((c) => tr.appendChild(text("td", c)));
    body.appendChild(tr);
  }
}

function draw() {
  drawSummary();
  drawCharts();
  drawPlan();
  drawTable();
}

// ---- live updates ----

function live(state) {
  const el = document.getElementById("live");
  el.textContent = state;
  el.className = "live-" + state.split(" ")[0];
}

function follow() {
  const events = new EventSource("/api/query/" + encodeURIComponent(query.id) + "/events?after=" + query.lastEventId);
  // Each response ends after its events and the browser reconnects: an error only counts once no
  // response has come for a while (the process has ended, or the network is down).
  let lastOpen = Date.now();
  events.onopen = () => {
    lastOpen = Date.now();
    live("live");
  };
  events.onerror = () => {
    if (Date.now() - lastOpen > 5000) live(query.status === "terminated" ? "ended" : "disconnected");
  };
  events.addEventListener("progress", (e) => {
    const event = JSON.parse(e.data);
    const last = progress[progress.length - 1];
    if (last && event.progress.batchId <= last.batchId && event.progress.runId === last.runId) return;
    progress.push(event.progress);
    if (progress.length > KEEP) progress = progress.slice(-KEEP);
    operators = event.operators;
    query.status = "active";
    draw();
  });
  events.addEventListener("started", (e) => {
    const event = JSON.parse(e.data);
    query.runId = event.runId;
    query.status = "active";
    query.exception = null;
    drawSummary();
  });
  events.addEventListener("idle", () => {
    query.status = "idle";
    drawSummary();
  });
  events.addEventListener("terminated", (e) => {
    const event = JSON.parse(e.data);
    query.status = "terminated";
    query.exception = event.exception;
    drawSummary();
  });
}

draw();
window.addEventListener("resize", () => {
  for (const [id, c] of Object.entries(charts)) {
    const el = document.getElementById(id);
    c.plot.setSize({ width: Math.max(300, el.clientWidth), height: 220 });
  }
});
follow();
