// rlab's chart script: the run page's live metric charts and the run comparison's overlaid
// charts, drawn with uPlot. No inline scripts or styles anywhere (CSP); colours of series are
// classes (.series-N in rlab.css) with the same palette as PALETTE here.
//
// A board is one page's set of charts, one chart per metric, one coloured series per run, each
// drawn in its panel of the page's even grid: <section class="chart-panel" data-panel="<key>">
// inside <div class="chart-grid">, which the server renders in the project's layout and
// dashboard.js lets members pin, move and resize. A chart fills its panel and follows its size.
// The server sends series downsampled to about 2,000 points (each bucket's lowest and highest
// point, webapp/runs/metric_series.py); zooming in fetches the visible range again, at full
// resolution once it spans ≤ 1,000 steps.
"use strict";

(function () {
  // The metrics charted first, in their order: the server's list (HEADLINE_METRICS in
  // webapp/runs/selectors.py), which each page with charts carries as JSON.
  const HEADLINE = JSON.parse(document.getElementById("headline-metrics")?.textContent || "[]");
  const NOT_RECORDED = {
    "kl/mean": "KL to the reference is measured when β > 0 (a frozen reference model is loaded).",
  };
  const PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#dc2626", "#9333ea", "#0d9488", "#db2777",
                   "#92400e"];
  const POLL_MS = 2000;
  const SETTINGS_KEY = "rlab.charts";

  // ---------------------------------------------------------------- settings (shared, saved)

  const settings = Object.assign({ smoothing: 0, x: "step", log: false }, readSettings());
  const boards = new Set();

  function readSettings() {
    try {
      return JSON.parse(window.localStorage.getItem(SETTINGS_KEY)) || {};
    } catch (err) {
      return {};
    }
  }

  function saveSettings(change) {
    Object.assign(settings, change);
    try {
      window.localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
    } catch (err) { /* private mode: settings last for this page only */ }
  }

  // A setting of the charts changed: every chart on the page follows.
  function changeSettings(change) {
    const redraw = "x" in change || "log" in change ||
      ("smoothing" in change && (change.smoothing > 0) !== (settings.smoothing > 0));
    saveSettings(change);
    for (const board of liveBoards()) {
      board.syncToolbar();
      for (const chart of board.charts.values()) redraw ? chart.build() : chart.refresh();
    }
  }

  // Boards still on the page (htmx swaps a comparison's result out when runs are picked).
  function liveBoards() {
    for (const board of boards) if (!board.root.isConnected) boards.delete(board);
    return [...boards];
  }

  // ---------------------------------------------------------------- formatting and helpers

  function formatValue(value) {
    if (value == null) return "–";
    const magnitude = Math.abs(value);
    return magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e5)
      ? value.toExponential(3) : String(Number(value.toPrecision(4)));
  }

  function formatTick(value) {
    if (value == null) return ""; // a log axis leaves out some ticks
    const magnitude = Math.abs(value);
    return magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e5)
      ? value.toExponential(1) : String(Number(value.toPrecision(3)));
  }

  // Tick spacings for a step axis: whole steps only (1, 2, 5, 10, 20, 50, …), never 2.5.
  const STEP_INCREMENTS = [];
  for (let scale = 1; scale <= 1e12; scale *= 10) STEP_INCREMENTS.push(scale, 2 * scale, 5 * scale);

  // Steps as 950, 12k, 1.5M.
  function formatStep(value) {
    if (value == null) return "";
    const magnitude = Math.abs(value);
    if (magnitude >= 1e6) return `${Number((value / 1e6).toPrecision(3))}M`;
    if (magnitude >= 1e4) return `${Number((value / 1e3).toPrecision(3))}k`;
    return String(Number(value.toPrecision(4)));
  }

  function formatDuration(seconds) {
    if (seconds == null) return "";
    const s = Math.round(seconds);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (h) return `${h}h${String(m).padStart(2, "0")}`;
    if (m) return `${m}m${String(s % 60).padStart(2, "0")}`;
    return `${s}s`;
  }

  // TensorBoard's smoothing: an exponential moving average, debiased so the first points are
  // not pulled towards zero. Gaps stay gaps.
  function smooth(values, weight) {
    if (!weight) return values;
    const out = new Array(values.length);
    let last = 0;
    let count = 0;
    for (let i = 0; i < values.length; i++) {
      const value = values[i];
      if (value == null || !Number.isFinite(value)) {
        out[i] = value;
        continue;
      }
      last = last * weight + (1 - weight) * value;
      count++;
      out[i] = last / (1 - Math.pow(weight, count));
    }
    return out;
  }

  // The index of the first element >= x in an ascending array.
  function lowerBound(array, x) {
    let lo = 0;
    let hi = array.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (array[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  function nearest(array, x) {
    const i = lowerBound(array, x);
    if (i >= array.length) return array.length - 1;
    if (i > 0 && x - array[i - 1] < array[i] - x) return i - 1;
    return i;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text; // textContent: metric names are user data
    return node;
  }

  function download(blob, filename) {
    const link = element("a");
    link.href = URL.createObjectURL(blob);
    link.download = filename;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  }

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return response.json();
  }

  function withParams(url, params) {
    const target = new URL(url, window.location.href);
    for (const [name, value] of Object.entries(params)) {
      if (Array.isArray(value)) value.forEach((v) => target.searchParams.append(name, v));
      else target.searchParams.set(name, value);
    }
    return target.pathname + target.search;
  }

  // ---------------------------------------------------------------- one chart

  // A chart holds, per run, the points it has ([steps, values, wall times]) and redraws them
  // with the board's settings: x by step or by time since the run's first point, smoothing,
  // log scale when every value is positive. Its plot takes the size of its area, which the
  // panel's size in the grid sets: a ResizeObserver redraws it when the panel is resized.
  class Chart {
    constructor(board, key, figure) {
      this.board = board;
      this.key = key;
      this.figure = figure;
      this.points = board.runs.map(() => ({ steps: [], values: [], walls: [] }));
      this.plot = null;
      this.zoom = null; // the x range shown when zoomed in, else null
      this.refined = ""; // the step range last fetched at higher resolution
      this.columns = []; // per run, the x values and smoothed values last drawn
      const caption = element("figcaption");
      this.readout = element("span", "readout");
      const tools = element("span", "chart-tools");
      const png = element("button", "chart-png link-dark", "PNG");
      png.type = "button";
      png.title = "Download this chart as a PNG image";
      png.addEventListener("click", () => this.exportPng());
      tools.append(png);
      if (board.csvUrl) {
        const csv = element("a", "chart-csv", "CSV");
        csv.href = withParams(board.csvUrl, { keys: key });
        csv.download = "";
        csv.title = "Every point of this metric, as CSV";
        tools.append(csv);
      }
      caption.append(element("span", "chart-title", key), this.readout, tools);
      this.area = element("div", "chart-plot");
      this.note = element("p", "chart-note muted small");
      this.note.hidden = true;
      figure.append(caption, this.area, this.note);
      this.sized = new ResizeObserver(() => this.resize());
      this.sized.observe(this.area);
      if (board.runs.length > 1) {
        this.legend = element("ul", "chart-legend");
        this.legendValues = board.runs.map((run, i) => {
          const item = element("li", `series-${i}`);
          item.dataset.run = run.id;
          const value = element("span", "mono");
          item.append(element("span", "swatch"), element("span", "name", run.label), value);
          this.legend.append(item);
          return value;
        });
        figure.append(this.legend);
      }
    }

    // New points of run i, after the ones it has (older or repeated steps are dropped).
    append(i, [steps, values, walls]) {
      const own = this.points[i];
      const last = own.steps.length ? own.steps[own.steps.length - 1] : -Infinity;
      let added = 0;
      for (let j = 0; j < steps.length; j++) {
        if (steps[j] <= last) continue;
        own.steps.push(steps[j]);
        own.values.push(values[j]);
        own.walls.push(walls[j]);
        added++;
      }
      return added;
    }

    // Replace run i's points between two steps with a finer read of that range.
    replaceRange(i, [steps, values, walls], start, end) {
      const own = this.points[i];
      const from = lowerBound(own.steps, start);
      const to = lowerBound(own.steps, end + 1);
      own.steps.splice(from, to - from, ...steps);
      own.values.splice(from, to - from, ...values);
      own.walls.splice(from, to - from, ...walls);
    }

    canLog() {
      return this.points.every((p) => p.values.every((v) => v == null || v > 0));
    }

    // uPlot's data: x, then per run its raw values (drawn faint when smoothing) and its smoothed
    // ones. Several runs are joined on the union of their x values.
    data() {
      const byTime = settings.x === "time";
      this.columns = this.points.map((p, i) => {
        const columns = { x: byTime ? p.walls.map((w) => w - this.board.t0[i]) : p.steps,
                          raw: p.values, smoothed: smooth(p.values, settings.smoothing),
                          steps: p.steps };
        return byTime && !ascending(columns.x) ? sortedByX(columns) : columns;
      });
      const tables = this.columns.map((c) => [c.x, c.raw, c.smoothed]);
      return tables.length === 1 ? tables[0] : uPlot.join(tables);
    }

    build() {
      const data = this.data();
      const logScale = settings.log && this.canLog();
      this.note.hidden = !(settings.log && !logScale);
      this.note.textContent = this.note.hidden ? "" : "Linear scale: this metric has values ≤ 0.";
      this.figure.dataset.scale = logScale ? "log" : "linear";
      const smoothing = settings.smoothing > 0;
      const few = this.points.every((p) => p.steps.length < 60);
      const series = [{}];
      this.board.runs.forEach((run, i) => {
        const colour = PALETTE[i % PALETTE.length];
        series.push({ label: run.label, stroke: colour + (smoothing ? "40" : ""), width: 1,
                      show: smoothing, spanGaps: true, points: { show: false } });
        series.push({ label: `${run.label} (smoothed)`, stroke: colour, width: 1.5,
                      spanGaps: true, points: { show: few && !smoothing } });
      });
      const byTime = settings.x === "time";
      const opts = {
        ...this.size(),
        legend: { show: false },
        cursor: { drag: { x: true, y: false } },
        scales: {
          x: { time: false },
          y: logScale ? { distr: 3, log: 10 } : { range: yRange },
        },
        axes: [
          byTime ? { values: (u, ticks) => ticks.map(formatDuration) }
            : { values: (u, ticks) => ticks.map(formatStep), incrs: STEP_INCREMENTS },
          { size: 60, values: (u, ticks) => ticks.map(formatTick) },
        ],
        series,
        hooks: {
          setCursor: [(u) => this.showReadout(u)],
          setScale: [(u, scale) => { if (scale === "x") this.zoomed(u); }],
        },
      };
      if (this.plot) this.plot.destroy();
      this.zoom = null;
      this.plot = new uPlot(opts, data, this.area);
      this.countPoints();
      this.showReadout(this.plot);
    }

    // Redraw with the data as it is now; a zoomed chart keeps its range (set again: uPlot
    // finds the points in view when the x scale is set).
    refresh() {
      if (!this.plot) return this.build();
      const zoom = this.zoom;
      this.plot.setData(this.data(), !zoom);
      if (zoom) this.plot.setScale("x", { min: zoom[0], max: zoom[1] });
      this.countPoints();
      this.showReadout(this.plot);
    }

    countPoints() {
      this.figure.dataset.points = String(Math.max(...this.points.map((p) => p.steps.length)));
    }

    // The plot's size: its area's, which the panel's share of the grid sets.
    size() {
      return { width: Math.max(120, Math.floor(this.area.clientWidth)),
               height: Math.max(80, Math.floor(this.area.clientHeight)) };
    }

    resize() {
      if (!this.figure.isConnected) {
        this.sized.disconnect();
        return;
      }
      const size = this.size();
      if (this.plot && (size.width !== this.plot.width || size.height !== this.plot.height)) {
        this.plot.setSize(size);
      }
    }

    // The values under the cursor (or the latest ones): the caption names the x position; one
    // run's value goes beside it, several runs' values go in the legend.
    showReadout(u) {
      const left = u.cursor.left;
      const hovering = left != null && left >= 0;
      const x = hovering ? u.posToVal(left, "x") : null;
      const picks = this.columns.map((c) => {
        if (!c.x.length) return null;
        const j = hovering ? nearest(c.x, x) : c.x.length - 1;
        return { step: c.steps[j], raw: c.raw[j], smoothed: c.smoothed[j], x: c.x[j] };
      });
      const shown = picks.find(Boolean);
      if (!shown) {
        this.readout.textContent = "";
        return;
      }
      const where = settings.x === "time" ? `step ${shown.step} · ${formatDuration(shown.x)}`
        : `step ${shown.step}`;
      const text = (p) => (p == null ? "–" : settings.smoothing > 0
        ? `${formatValue(p.smoothed)} (raw ${formatValue(p.raw)})` : formatValue(p.raw));
      if (this.legendValues) {
        this.readout.textContent = hovering ? where : "";
        picks.forEach((p, i) => { this.legendValues[i].textContent = text(p); });
      } else {
        this.readout.textContent = `${where}: ${text(shown)}`;
      }
    }

    // Zoomed in (dragged over x) on downsampled data: fetch the range again, finer.
    zoomed(u) {
      const { min, max } = u.scales.x;
      const xs = this.columns.flatMap((c) => (c.x.length ? [c.x[0], c.x[c.x.length - 1]] : []));
      const full = !xs.length || (min <= Math.min(...xs) && max >= Math.max(...xs));
      this.zoom = full ? null : [min, max];
      this.figure.dataset.zoomed = full ? "" : "true";
      if (full || !this.board.widths.some((w) => w > 1)) return;
      clearTimeout(this.refineTimer);
      this.refineTimer = setTimeout(() => this.refine(min, max), 150);
    }

    async refine(min, max) {
      const ranges = this.columns.map((c) => {
        if (!c.x.length) return null;
        const from = Math.min(lowerBound(c.x, min), c.x.length - 1);
        const to = Math.max(0, lowerBound(c.x, max) - 1);
        const steps = [c.steps[Math.max(0, from - 1)], c.steps[Math.min(c.x.length - 1, to + 1)]];
        return [Math.min(...steps), Math.max(...steps)];
      });
      const signature = JSON.stringify(ranges);
      if (signature === this.refined) return;
      this.refined = signature;
      const reads = ranges.map((range, i) => (range && this.board.widths[i] > 1
        ? getJSON(withParams(this.board.runs[i].url,
                             { keys: this.key, start: range[0], end: range[1] }))
        : null));
      for (let i = 0; i < reads.length; i++) {
        if (!reads[i]) continue;
        try {
          const payload = await reads[i];
          const columns = payload.series[this.key];
          if (columns) this.replaceRange(i, columns, ranges[i][0], ranges[i][1]);
        } catch (err) {
          this.figure.dataset.error = String(err);
        }
      }
      this.figure.dataset.refined = ranges.filter(Boolean).map((r) => r.join("-")).join(",");
      if (this.zoom) this.refresh();
    }

    // The chart as a PNG: white background, the metric's name and the runs' names on top.
    exportPng() {
      const source = this.plot.ctx.canvas;
      const ratio = source.width / this.plot.width;
      const header = Math.round(26 * ratio);
      const canvas = document.createElement("canvas");
      canvas.width = source.width;
      canvas.height = source.height + header;
      const g = canvas.getContext("2d");
      g.fillStyle = "#ffffff";
      g.fillRect(0, 0, canvas.width, canvas.height);
      g.font = `${Math.round(13 * ratio)}px sans-serif`;
      g.textBaseline = "middle";
      g.fillStyle = "#111827";
      let left = 8 * ratio;
      g.fillText(this.key, left, header / 2);
      left += g.measureText(this.key).width + 16 * ratio;
      if (this.board.runs.length > 1) {
        this.board.runs.forEach((run, i) => {
          g.fillStyle = PALETTE[i % PALETTE.length];
          g.fillText(run.label, left, header / 2);
          left += g.measureText(run.label).width + 12 * ratio;
        });
      }
      g.drawImage(source, 0, header);
      const name = `${this.board.name}-${this.key}`.replace(/[^\w.-]+/g, "_");
      canvas.toBlob((blob) => download(blob, `${name}.png`), "image/png");
    }
  }

  // A flat series (all zeros, say) gets a small band around its value instead of uPlot's 0..100.
  function yRange(u, min, max) {
    if (min == null) return [0, 1];
    if (min === max) {
      const pad = Math.abs(min) * 0.1 || 1;
      return [min - pad, max + pad];
    }
    const pad = (max - min) * 0.05;
    return [min - pad, max + pad];
  }

  function ascending(xs) {
    for (let j = 1; j < xs.length; j++) if (xs[j] < xs[j - 1]) return false;
    return true;
  }

  // A run whose clock went back (wall times out of step order) is drawn in time order.
  function sortedByX(columns) {
    const order = columns.x.map((_, j) => j).sort((a, b) => columns.x[a] - columns.x[b]);
    const pick = (column) => order.map((j) => column[j]);
    return { x: pick(columns.x), raw: pick(columns.raw), smoothed: pick(columns.smoothed),
             steps: pick(columns.steps) };
  }

  // ---------------------------------------------------------------- a board of charts

  class Board {
    // runs: [{id, label, url}] (one for the run page, several for a comparison).
    constructor(root, runs, { csvUrl = null, name = "run", placeholders = false } = {}) {
      this.root = root;
      this.runs = runs;
      this.csvUrl = csvUrl;
      this.name = name;
      this.placeholders = placeholders;
      this.charts = new Map();
      this.widths = runs.map(() => 1);
      this.t0 = runs.map(() => Infinity);
      this.grid = root.querySelector(".chart-grid") ||
        root.appendChild(element("div", "chart-grid"));
      this.toolbar = this.buildToolbar();
      root.prepend(this.toolbar);
      boards.add(this);
    }

    buildToolbar() {
      const bar = element("div", "chart-toolbar");
      bar.setAttribute("role", "group");
      bar.setAttribute("aria-label", "Chart settings");
      const smoothingLabel = element("label", "chart-setting", "Smoothing ");
      this.smoothing = element("input", "chart-smoothing");
      Object.assign(this.smoothing, { type: "range", min: "0", max: "0.99", step: "0.01" });
      this.smoothingOut = element("output", "mono");
      smoothingLabel.append(this.smoothing, this.smoothingOut);
      this.smoothing.addEventListener("input", () => {
        const value = Number(this.smoothing.value);
        this.smoothingOut.textContent = value.toFixed(2);
        cancelAnimationFrame(this.smoothingFrame);
        this.smoothingFrame = requestAnimationFrame(() => changeSettings({ smoothing: value }));
      });
      const xLabel = element("label", "chart-setting", "X axis ");
      this.xAxis = element("select", "chart-x");
      for (const [value, text] of [["step", "step"], ["time", "wall time"]]) {
        const option = element("option", null, text);
        option.value = value;
        this.xAxis.append(option);
      }
      xLabel.append(this.xAxis);
      this.xAxis.addEventListener("change", () => changeSettings({ x: this.xAxis.value }));
      const logLabel = element("label", "chart-setting");
      this.logScale = element("input", "chart-log");
      this.logScale.type = "checkbox";
      logLabel.append(this.logScale, document.createTextNode(" log scale"));
      logLabel.title = "Charts whose values are all positive use a log y axis";
      this.logScale.addEventListener("change",
                                     () => changeSettings({ log: this.logScale.checked }));
      bar.append(smoothingLabel, xLabel, logLabel,
                 element("span", "muted small", "Drag to zoom, double-click to reset."));
      if (this.csvUrl) {
        const all = element("a", "chart-csv-all small", "All metrics (CSV)");
        all.href = this.csvUrl;
        all.download = "";
        bar.append(all);
      }
      this.syncToolbar();
      return bar;
    }

    syncToolbar() {
      this.smoothing.value = String(settings.smoothing);
      this.smoothingOut.textContent = Number(settings.smoothing).toFixed(2);
      this.xAxis.value = settings.x;
      this.logScale.checked = Boolean(settings.log);
    }

    // The metric's panel: the server's, or a new one at the end of the grid (a metric that
    // appeared after the page was rendered), which dashboard.js then places by the layout.
    panel(key) {
      for (const panel of this.grid.children) {
        if (panel.matches("section.chart-panel") && panel.dataset.panel === key) return panel;
      }
      const panel = element("section", "chart-panel");
      panel.dataset.panel = key;
      panel.dataset.size = "1x1";
      panel.setAttribute("aria-label", key);
      this.grid.append(panel);
      return panel;
    }

    chart(key) {
      let chart = this.charts.get(key);
      if (chart) return chart;
      const panel = this.panel(key);
      panel.querySelector("figure.placeholder")?.remove();
      const figure = element("figure", "chart");
      figure.dataset.key = key;
      figure.dataset.runs = String(this.runs.length);
      panel.append(figure);
      chart = new Chart(this, key, figure);
      this.charts.set(key, chart);
      this.root.querySelector(".charts-empty")?.remove();
      return chart;
    }

    // Points of run i, {key: [steps, values, wall times]}: new charts for new keys.
    add(i, series, width) {
      if (width != null) this.widths[i] = Math.max(this.widths[i], width);
      let lastStep = Number(this.root.dataset.lastStep ?? -1);
      const changed = [];
      for (const [key, columns] of Object.entries(series || {})) {
        if (!columns[0].length) continue;
        if (columns[2].length && columns[2][0] < this.t0[i]) {
          this.t0[i] = columns[2][0];
        }
        const fresh = !this.charts.has(key);
        const chart = this.chart(key);
        if (chart.append(i, columns) || fresh) changed.push(chart);
        lastStep = Math.max(lastStep, columns[0][columns[0].length - 1]);
      }
      for (const chart of changed) chart.plot ? chart.refresh() : chart.build();
      if (this.placeholders && this.charts.size) this.showMissingHeadline();
      this.root.dataset.lastStep = String(lastStep);
      this.root.dataset.points = String(Math.max(0, ...[...this.charts.values()].map(
        (chart) => Math.max(...chart.points.map((p) => p.steps.length)))));
    }

    // The run page keeps a panel for each headline metric the run does not record, saying why.
    showMissingHeadline() {
      for (const key of HEADLINE) {
        if (this.charts.has(key)) continue;
        const panel = this.panel(key);
        if (panel.querySelector("figure")) continue;
        const figure = element("figure", "chart placeholder");
        figure.dataset.key = key;
        figure.append(element("figcaption", null, key),
                      element("p", "muted small",
                              NOT_RECORDED[key] || "Not recorded by this run."));
        panel.append(figure);
      }
    }
  }

  // ---------------------------------------------------------------- the run page

  // Charts load the run's history from metrics.json, then take new points from the page's
  // event stream: the htmx SSE extension fires htmx:sseBeforeMessage on #charts (sse-swap=
  // "metrics") with the message, whose JSON is {"series": {key: [steps, values, times]}};
  // preventing it keeps htmx from swapping the JSON into the page. A page without an event
  // stream (a finished run, or no SSE at all) polls metrics.json while the run is active.
  function startRunCharts(root) {
    const url = root.dataset.metricsUrl;
    const csvUrl = root.dataset.csvUrl || url.replace(/\.json$/, ".csv");
    const runId = (url.match(/runs\/(\d+)\//) || [])[1] || "";
    const board = new Board(root, [{ id: runId, label: `run ${runId}`, url }],
                            { csvUrl, name: `run-${runId}`, placeholders: true });
    const streamed = root.hasAttribute("sse-swap") && root.closest("[sse-connect]");
    let loaded = false;
    const early = [];
    if (streamed) {
      root.addEventListener("htmx:sseBeforeMessage", (event) => {
        const message = event.detail;
        if (!message || message.type !== "metrics") return;
        event.preventDefault();
        let payload;
        try {
          payload = JSON.parse(message.data);
        } catch (err) {
          root.dataset.error = `unreadable metrics event: ${err}`;
          return;
        }
        if (loaded) board.add(0, payload.series);
        else early.push(payload.series);
      });
    }

    async function load(after) {
      const payload = await getJSON(after == null ? url : withParams(url, { after }));
      board.add(0, payload.series, payload.width);
      return payload;
    }

    async function poll() {
      try {
        const payload = await load(Number(root.dataset.lastStep ?? -1));
        if (payload.active) setTimeout(poll, POLL_MS);
        else root.dataset.done = "true";
      } catch (err) {
        root.dataset.error = String(err);
        setTimeout(poll, POLL_MS * 2);
      }
    }

    (async () => {
      let payload = null;
      try {
        payload = await load(null);
      } catch (err) {
        root.dataset.error = String(err); // the stream's points still draw, or polling retries
      }
      loaded = true;
      for (const series of early.splice(0)) board.add(0, series);
      if (payload && !payload.active) root.dataset.done = "true";
      else if (!streamed) setTimeout(poll, payload ? POLL_MS : POLL_MS * 2);
    })();
  }

  // ---------------------------------------------------------------- the comparison page

  async function startComparison(root) {
    const items = [...document.querySelectorAll("#compare-legend li[data-run-id]")];
    const runs = items.map((item) => ({ id: item.dataset.runId, label: item.dataset.label,
                                        url: item.dataset.metricsUrl }));
    if (!runs.length) return;
    const board = new Board(root, runs, { name: "compare" });
    const payloads = await Promise.all(runs.map((run) => getJSON(run.url).catch((err) => {
      root.dataset.error = String(err);
      return null;
    })));
    payloads.forEach((payload, i) => { if (payload) board.add(i, payload.series, payload.width); });
    root.dataset.loaded = "true";
    if (!board.charts.size) {
      root.append(element("p", "muted charts-empty",
                          "None of these runs has logged a metric yet."));
    }
  }

  // "Differences only" hides the settings all runs share, and keeps the link in step.
  function onlyDifferences(checkbox) {
    document.querySelector("table.config-diff")?.classList.toggle("only-diff", checkbox.checked);
    const url = new URL(window.location.href);
    if (checkbox.checked) url.searchParams.set("only_diff", "1");
    else url.searchParams.delete("only_diff");
    window.history.replaceState(window.history.state, "", url.pathname + url.search);
  }

  // ---------------------------------------------------------------- start-up

  const started = new WeakSet();

  function startWithin(scope) {
    if (!window.uPlot || !scope || !scope.querySelectorAll) return;
    const selector = "#charts[data-metrics-url], [data-compare-charts]";
    const roots = [...scope.querySelectorAll(selector)];
    if (scope.matches && scope.matches(selector)) roots.unshift(scope);
    for (const root of roots) {
      if (started.has(root)) continue;
      started.add(root);
      if (root.matches("[data-compare-charts]")) startComparison(root);
      else startRunCharts(root);
    }
  }

  function start() {
    startWithin(document);
    // The comparison's result is swapped in by htmx when runs are picked.
    document.addEventListener("htmx:load",
                              (event) => startWithin(event.detail.elt || event.target));
    document.addEventListener("change", (event) => {
      if (event.target.id === "only-diff") onlyDifferences(event.target);
    });
  }

  // Deferred, so the page is parsed: start now, before the event stream can deliver anything.
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
