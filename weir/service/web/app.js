// Weir's streaming page: polls GET /progress and draws, per query, six charts over its recent
// batches (input rate, processing rate, batch duration by phase, watermark delay, state rows,
// lag) with its status and last progress record, like Spark UI's Structured Streaming tab.
// `window.weirUI` exposes the derived series and the uPlot charts (tests read them).
"use strict";

(() => {
  const POLL_MS = 1500;
  const RECORDS = 100; // the most /progress keeps per query
  const PLOT_HEIGHT = 150;
  const MIN_WINDOW_S = 60;
  const PHASES = ["walCommit", "getBatch", "addBatch", "commitOffsets", "other"];
  const PHASE_COLORS = {
    getBatch: "#4c9be8",
    walCommit: "#a371f7",
    addBatch: "#2da44e",
    commitOffsets: "#e3a21a",
    other: "#afb8c1",
  };
  const CHARTS = [
    { key: "input", title: "Input rate", unit: "rows/s", color: "#0b6bcb" },
    { key: "processing", title: "Processing rate", unit: "rows/s", color: "#2da44e" },
    { key: "duration", title: "Batch duration", unit: "ms", stacked: true },
    {
      key: "watermarkDelay",
      title: "Watermark delay",
      unit: "s",
      color: "#8250df",
      none: "no watermark",
    },
    { key: "stateRows", title: "State rows", unit: "rows", color: "#bf3989", none: "no state" },
    {
      key: "lag",
      title: "Lag",
      unit: "offsets behind latest",
      color: "#cf222e",
      none: "no offsets",
    },
  ];

  const ui = { polls: 0, error: null, series: {}, charts: {} };
  window.weirUI = ui;
  const sections = new Map(); // query name -> {section, charts: {key: uPlot}, parts}

  // -- what each chart shows, from one progress record ---------------------------------------
  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  const epochSeconds = (iso) => {
    const ms = typeof iso === "string" ? Date.parse(iso) : NaN;
    return Number.isNaN(ms) ? null : ms / 1000;
  };

  /** Seconds from the watermark to the batch's timestamp; null without a watermark. */
  function watermarkDelay(r) {
    const at = epochSeconds(r.timestamp);
    const wm = epochSeconds(r.eventTime ? r.eventTime.watermark : null);
    return at === null || wm === null ? null : at - wm;
  }

  /** Sum of numRowsTotal over the state operators; null for a stateless query. */
  function stateRows(r) {
    const totals = (r.stateOperators || []).map((op) => num(op.numRowsTotal));
    const known = totals.filter((v) => v !== null);
    return known.length ? known.reduce((a, b) => a + b, 0) : null;
  }

  /** Offsets behind the latest over all sources: latestOffset - endOffset per partition,
   * else the source's maxOffsetsBehindLatest metric; null when no source tells. */
  function lag(r) {
    let total = null;
    for (const src of r.sources || []) {
      let behind = offsetsBehind(src.latestOffset, src.endOffset);
      if (behind === null && src.metrics && src.metrics.maxOffsetsBehindLatest != null) {
        const v = Number(src.metrics.maxOffsetsBehindLatest);
        behind = Number.isFinite(v) ? v : null;
      }
      if (behind !== null) total = (total || 0) + behind;
    }
    return total;
  }

  function offsetsBehind(latest, end) {
    if (!latest || !end || typeof latest !== "object" || typeof end !== "object") return null;
    let sum = null;
    for (const [topic, parts] of Object.entries(latest)) {
      for (const [p, off] of Object.entries(parts || {})) {
        const done = end[topic] ? num(Number(end[topic][p])) : null;
        const last = num(Number(off));
        if (done !== null && last !== null) sum = (sum || 0) + Math.max(0, last - done);
      }
    }
    return sum;
  }

  /** Milliseconds per phase; "other" is what triggerExecution has beyond the named phases. */
  function phases(r) {
    const d = r.durationMs || {};
    const out = {};
    let named = 0;
    for (const p of PHASES.slice(0, -1)) {
      out[p] = num(d[p]) || 0;
      named += out[p];
    }
    const total = num(d.triggerExecution);
    out.other = total === null ? 0 : Math.max(0, total - named);
    return out;
  }

  /** Every chart's series over the recent records that carry a timestamp (oldest first). */
  function seriesOf(records) {
    const rows = records.filter((r) => epochSeconds(r.timestamp) !== null);
    const s = {
      time: rows.map((r) => epochSeconds(r.timestamp)),
      batchId: rows.map((r) => r.batchId),
      input: rows.map((r) => num(r.inputRowsPerSecond)),
      processing: rows.map((r) => num(r.processedRowsPerSecond)),
      phases: {},
      watermarkDelay: rows.map(watermarkDelay),
      stateRows: rows.map(stateRows),
      lag: rows.map(lag),
    };
    const split = rows.map(phases);
    for (const p of PHASES) s.phases[p] = split.map((x) => x[p]);
    s.duration = split.map((x) => PHASES.reduce((a, p) => a + x[p], 0));
    return s;
  }

  /** uPlot data of one chart; the duration chart stacks its phases (top band first, so each
   * lower band is drawn over the filled area of those above it). */
  function chartData(chart, s) {
    if (!chart.stacked) return [s.time, s[chart.key]];
    const stacked = [];
    let running = s.time.map(() => 0);
    for (const p of PHASES) {
      running = running.map((v, i) => v + s.phases[p][i]);
      stacked.push(running);
    }
    return [s.time, ...stacked.reverse()];
  }

  // -- drawing -------------------------------------------------------------------------------
  function fmt(v) {
    if (v === null || v === undefined) return "–";
    const a = Math.abs(v);
    if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    return Number.isInteger(v) ? String(v) : v.toFixed(1);
  }

  const clock = (d) => d.toLocaleTimeString([], { hour12: false });
  const clockOf = (epochS) => clock(new Date(epochS * 1000));

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    node.append(...children);
    return node;
  }

  /** The time axis spans at least a minute, ending at the latest batch. */
  function timeWindow(times) {
    const max = times.length ? times[times.length - 1] : Date.now() / 1000;
    const min = times.length ? times[0] : max;
    return max - min < MIN_WINDOW_S ? { min: max - MIN_WINDOW_S, max } : { min, max };
  }

  function plotOptions(chart, width, phaseValues) {
    const axis = { stroke: "#59636e", grid: { stroke: "#eaeef2" }, ticks: { stroke: "#d1d9e0" } };
    const xAxis = { ...axis, space: 64, values: (u, ticks) => ticks.map(clockOf) };
    const yAxis = { ...axis, size: 48, values: (u, ticks) => ticks.map(fmt) };
    const lowest = (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1];
    let series;
    if (chart.stacked) {
      series = [...PHASES].reverse().map((p) => ({
        label: p,
        stroke: PHASE_COLORS[p],
        fill: PHASE_COLORS[p] + "cc",
        width: 1,
        // the hovered round's value; without a cursor, the latest round's
        value: (u, v, si, idx) => {
          const values = phaseValues()[p] || [];
          const i = idx == null ? values.length - 1 : idx;
          return i < 0 ? "–" : fmt(values[i]);
        },
      }));
    } else {
      series = [{ label: chart.title, stroke: chart.color, fill: chart.color + "22", width: 2 }];
    }
    return {
      width,
      height: PLOT_HEIGHT,
      legend: { show: !!chart.stacked, live: true },
      scales: { y: { range: lowest } },
      axes: [xAxis, yAxis],
      series: [{}, ...series],
    };
  }

  function createSection(name) {
    const parts = {
      ids: el("div", { class: "ids" }),
      status: el("p", { class: "status" }, el("span", { class: "dot" }), el("span")),
      summary: el("p", { class: "summary" }),
      grid: el("div", { class: "charts" }),
      json: el("pre", { class: "last-progress" }),
    };
    const section = el(
      "section",
      { class: "query", "data-query": name },
      el("h2", { text: name }),
      parts.ids,
      parts.status,
      parts.summary,
      parts.grid,
      el("details", {}, el("summary", { text: "Last progress record" }), parts.json),
    );
    const entry = { section, parts, charts: {}, cells: {} };
    for (const chart of CHARTS) {
      const latest = el("span", { class: "latest" });
      const plot = el("div", { class: "plot" });
      const cell = el(
        "div",
        { class: "chart", "data-chart": chart.key, "data-points": "0", "data-empty": "true" },
        el("h3", { text: `${chart.title} (${chart.unit}) ` }, latest),
        plot,
        el("span", { class: "no-data", text: "no batches yet" }),
      );
      parts.grid.append(cell);
      entry.cells[chart.key] = { cell, latest, plot };
    }
    return entry;
  }

  function mountCharts(name, entry) {
    for (const chart of CHARTS) {
      const { plot } = entry.cells[chart.key];
      const opts = plotOptions(chart, plot.clientWidth || 300, () => (ui.series[name] || {}).phases || {});
      const u = new uPlot(opts, chartData(chart, seriesOf([])), plot);
      entry.charts[chart.key] = u;
      new ResizeObserver(() => u.setSize({ width: plot.clientWidth, height: PLOT_HEIGHT })).observe(
        plot,
      );
    }
    ui.charts[name] = entry.charts;
  }

  function statusLine(q) {
    const status = q.status || {};
    const active = !!(status.isTriggerActive || status.isDataAvailable);
    return { text: status.message || "status unknown", active };
  }

  function summaryLine(q, s) {
    const last = q.last_progress;
    if (!last) return [["", "No batch committed yet"]];
    const avg = (xs) => {
      const known = xs.filter((v) => v !== null);
      return known.length ? known.reduce((a, b) => a + b, 0) / known.length : null;
    };
    const at = last.timestamp ? clock(new Date(last.timestamp)) : "?";
    return [
      ["Last batch ", `#${last.batchId} at ${at}`],
      [" · batches shown ", String(s.time.length)],
      [" · avg input ", `${fmt(avg(s.input))} rows/s`],
      [" · avg processing ", `${fmt(avg(s.processing))} rows/s`],
      [" · avg duration ", `${fmt(avg(s.duration))} ms`],
    ];
  }

  function update(name, q, entry) {
    const s = seriesOf(q.recent_progress || []);
    ui.series[name] = s;
    const { parts } = entry;
    const ids = [`id ${q.id || "–"}`, `run ${q.runId || "–"}`];
    ids.push(`partitions [${(q.partitions || []).join(", ")}]`);
    parts.ids.textContent = ids.join(" · ");
    const status = statusLine(q);
    parts.status.className = status.active ? "status active" : "status";
    parts.status.lastChild.textContent = status.text;
    parts.summary.replaceChildren(
      ...summaryLine(q, s).flatMap(([label, value]) => [label, el("b", { text: value })]),
    );
    const json = q.last_progress ? JSON.stringify(q.last_progress, null, 2) : "none yet";
    if (parts.json.textContent !== json) parts.json.textContent = json;
    for (const chart of CHARTS) {
      const u = entry.charts[chart.key];
      u.setData(chartData(chart, s));
      u.setScale("x", timeWindow(s.time));
      const { cell, latest } = entry.cells[chart.key];
      cell.dataset.points = String(s.time.length);
      const values = chart.stacked ? s.duration : s[chart.key];
      cell.dataset.empty = String(values.every((v) => v === null));
      cell.lastChild.textContent = s.time.length ? chart.none || "no data" : "no batches yet";
      latest.textContent = values.length ? `now ${fmt(values[values.length - 1])}` : "";
    }
  }

  function render(progress) {
    const queries = progress.queries || {};
    const names = Object.keys(queries).sort();
    const main = document.getElementById("queries");
    document.getElementById("no-queries").hidden = names.length > 0;
    for (const [name, entry] of sections) {
      if (!(name in queries)) {
        Object.values(entry.charts).forEach((u) => u.destroy());
        entry.section.remove();
        sections.delete(name);
        delete ui.charts[name];
        delete ui.series[name];
      }
    }
    for (const name of names) {
      let entry = sections.get(name);
      if (!entry) {
        entry = createSection(name);
        sections.set(name, entry);
        // In name order, and in the DOM before drawing: a chart takes its cell's width.
        const next = [...sections.keys()].filter((n) => n > name).sort()[0];
        main.insertBefore(entry.section, next ? sections.get(next).section : null);
        mountCharts(name, entry);
      }
      update(name, queries[name], entry);
    }
  }

  async function poll() {
    const line = document.getElementById("connection");
    try {
      const resp = await fetch(`/progress?n=${RECORDS}`, { cache: "no-store" });
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      render(await resp.json());
      ui.error = null;
      line.className = "connection";
      line.textContent = `updated ${clock(new Date())} · every ${POLL_MS / 1000} s`;
    } catch (err) {
      ui.error = String(err);
      line.className = "connection error";
      line.textContent = `cannot read /progress: ${err}`;
    } finally {
      ui.polls += 1;
      setTimeout(poll, POLL_MS);
    }
  }

  poll();
})();
