// Group charts and the statistics page's plots, drawn with uPlot. No inline scripts or styles
// (CSP): each chart's data comes from its panel's data-series-url (webapp/groups/views.py,
// group_series), the statistics page's from a json_script block.
//
// A group chart draws each group's mean over its runs and a band (mean ± std, min–max, or a
// 95% bootstrap interval of the mean: the server computes it, the panel's select picks it).
// The readout under a chart says, at the cursor, how many runs each group's point averages: runs
// log at different steps, so a bucket where fewer runs report averages fewer. Charts sit in the
// dashboard grid's panels (dashboard.js arranges them) and take their panel's size, following
// it with a ResizeObserver as users resize panels.
"use strict";

(function () {
  const PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#dc2626", "#9333ea", "#0d9488", "#db2777",
                   "#92400e"];
  function fill(colour) {
    return colour + "33"; // the band: the line's colour, mostly transparent
  }

  // A plot takes its container's size: the panel's share of the dashboard grid (which users
  // resize) for a group chart, the figure's box on the statistics page.
  const PLOT_HEIGHT = 240; // the statistics page's plots, whose legends sit below them

  function sizeOf(element, height) {
    return { width: Math.max(120, Math.floor(element.clientWidth)),
             height: height || Math.max(80, Math.floor(element.clientHeight)) };
  }

  function follow(container, plot, height) {
    if (!window.ResizeObserver) return;
    const observer = new ResizeObserver(() => {
      if (!container.isConnected || !plot.root.isConnected) {
        observer.disconnect();
        return;
      }
      const size = sizeOf(container, height);
      if (size.width !== plot.width || size.height !== plot.height) plot.setSize(size);
    });
    observer.observe(container);
  }

  function format(value) {
    return value == null ? "—" : Number(value).toPrecision(4);
  }

  // ------------------------------------------------------------------------- group charts

  // Under the plot, at the cursor's step: each group's mean and how many runs it averages.
  function showReadout(readout, data, idx) {
    if (idx == null) {
      readout.textContent = "";
      return;
    }
    readout.textContent = "step " + data.steps[idx] + ": " + data.groups.map((group) =>
      group.name + " " + format(group.mean[idx]) + " (n=" + group.n[idx] + ")").join(" · ");
  }

  function groupChartOptions(data, holder, readout) {
    const series = [{ label: "step" }];
    const bands = [];
    data.groups.forEach((group, i) => {
      const colour = PALETTE[i % PALETTE.length];
      const base = series.length;
      series.push({ label: group.name, stroke: colour, width: 2, spanGaps: false });
      series.push({ label: group.name + " lower", stroke: colour, width: 0.5, dash: [4, 4],
                    spanGaps: false });
      series.push({ label: group.name + " upper", stroke: colour, width: 0.5, dash: [4, 4],
                    spanGaps: false });
      bands.push({ series: [base + 2, base + 1], fill: fill(colour) });
    });
    return Object.assign(sizeOf(holder), {
      series: series, bands: bands,
      scales: { x: { time: false } },
      legend: { show: false },
      cursor: { drag: { x: true, y: false } },
      hooks: { setCursor: [(u) => showReadout(readout, data, u.cursor.idx)] },
    });
  }

  function groupChartData(data) {
    const columns = [data.steps];
    for (const group of data.groups) columns.push(group.mean, group.lower, group.upper);
    return columns;
  }

  function drawGroupChart(panel) {
    const holder = panel.querySelector(".group-chart");
    const note = panel.querySelector(".group-chart-note");
    const readout = panel.querySelector(".group-readout");
    const url = new URL(holder.dataset.seriesUrl, window.location.href);
    url.searchParams.set("metric", holder.dataset.metric);
    url.searchParams.set("band", panel.querySelector(".band-choice").value);
    url.searchParams.set("reduce", panel.querySelector(".reduce-choice").value);
    holder.dataset.state = "loading";
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((response) => response.json().then((body) => ({ ok: response.ok, body: body })))
      .then(({ ok, body }) => {
        if (holder.plot) {
          holder.plot.destroy();
          holder.plot = null;
        }
        readout.textContent = "";
        if (!ok) {
          note.textContent = body.error || "The chart could not be read.";
          holder.dataset.state = "error";
          return;
        }
        if (!body.steps.length) {
          note.textContent = "No run of these groups has a finite point of this metric.";
          holder.dataset.state = "empty";
          return;
        }
        holder.plot = new uPlot(groupChartOptions(body, holder, readout), groupChartData(body),
                                holder);
        follow(holder, holder.plot);
        note.textContent = (body.reduce === "last" ? "Last point" : "Mean") + " per bucket of " +
          body.width + " step" + (body.width === 1 ? "" : "s") + "; n: runs that report there.";
        holder.dataset.band = body.band;
        holder.dataset.state = "drawn";
      })
      .catch(() => {
        note.textContent = "The chart could not be read.";
        holder.dataset.state = "error";
      });
  }

  function initGroupCharts(root) {
    for (const panel of root.querySelectorAll(".chart-panel")) {
      if (!panel.querySelector(".group-chart") || panel.dataset.groupsReady) continue;
      panel.dataset.groupsReady = "1";
      for (const select of panel.querySelectorAll(".band-choice, .reduce-choice")) {
        select.addEventListener("change", () => drawGroupChart(panel));
      }
      drawGroupChart(panel);
    }
  }

  // ------------------------------------------------------------------- statistics page

  // Points with 95% whiskers: each group's mean and IQM, one x position per group.
  function drawIntervals(container, groups) {
    const xs = groups.map((_, i) => i);
    const column = (key, part) => groups.map((g) => {
      if (part == null) return g[key];
      return g[key + "_ci"] ? g[key + "_ci"][part] : null;
    });
    const whiskers = (u, seriesIdx, lowIdx, highIdx) => {
      const ctx = u.ctx;
      ctx.save();
      ctx.strokeStyle = u.series[seriesIdx].stroke();
      ctx.lineWidth = 2;
      for (let i = 0; i < xs.length; i++) {
        const low = u.data[lowIdx][i];
        const high = u.data[highIdx][i];
        if (low == null || high == null) continue;
        const x = u.valToPos(xs[i] + (seriesIdx === 1 ? -0.08 : 0.08), "x", true);
        ctx.beginPath();
        ctx.moveTo(x, u.valToPos(low, "y", true));
        ctx.lineTo(x, u.valToPos(high, "y", true));
        ctx.stroke();
      }
      ctx.restore();
    };
    const point = { show: true, size: 9 };
    const options = {
      ...sizeOf(container, PLOT_HEIGHT),
      scales: { x: { time: false, range: [-0.5, groups.length - 0.5] } },
      axes: [{ values: (u, ticks) => ticks.map((t) => Number.isInteger(t) && groups[t] ?
                                                 groups[t].name.slice(0, 30) : "") }, {}],
      series: [
        { label: "group" },
        { label: "mean", stroke: PALETTE[0], width: 0, points: point },
        { label: "IQM", stroke: PALETTE[1], width: 0, points: point },
        { show: false, label: "mean low" }, { show: false, label: "mean high" },
        { show: false, label: "IQM low" }, { show: false, label: "IQM high" },
      ],
      hooks: { draw: [(u) => { whiskers(u, 1, 3, 4); whiskers(u, 2, 5, 6); }] },
    };
    const data = [xs, column("mean"), column("iqm"), column("mean", 0), column("mean", 1),
                  column("iqm", 0), column("iqm", 1)];
    const plot = new uPlot(options, data, container);
    follow(container, plot, PLOT_HEIGHT);
    container.dataset.state = "drawn";
  }

  function drawProfile(container, profile) {
    const series = [{ label: "τ" }];
    const bands = [];
    const data = [profile.tau];
    profile.groups.forEach((group, i) => {
      const colour = PALETTE[i % PALETTE.length];
      const base = series.length;
      series.push({ label: group.name, stroke: colour, width: 2 });
      series.push({ label: group.name + " low", stroke: colour, width: 0.5, dash: [4, 4] });
      series.push({ label: group.name + " high", stroke: colour, width: 0.5, dash: [4, 4] });
      bands.push({ series: [base + 2, base + 1], fill: fill(colour) });
      data.push(group.profile, group.low, group.high);
    });
    const plot = new uPlot({ ...sizeOf(container, PLOT_HEIGHT), series: series,
                             bands: bands, scales: { x: { time: false }, y: { range: [0, 1] } } },
                           data, container);
    follow(container, plot, PLOT_HEIGHT);
    container.dataset.state = "drawn";
  }

  function initStatistics(root) {
    const source = root.querySelector("#statistics-plot");
    if (!source || source.dataset.drawn) return;
    source.dataset.drawn = "1";
    const plot = JSON.parse(source.textContent);
    if (!plot) return;
    const intervals = root.querySelector(".statistics-intervals");
    if (intervals) drawIntervals(intervals, plot.groups);
    const profile = root.querySelector(".statistics-profile");
    if (profile && plot.profile) drawProfile(profile, plot.profile);
  }

  function init(root) {
    if (typeof uPlot === "undefined") return;
    initGroupCharts(root);
    initStatistics(root);
  }

  document.addEventListener("DOMContentLoaded", () => init(document));
  // htmx swaps a new grouping's result in: draw its charts
  document.addEventListener("htmx:afterSwap", () => init(document));
})();
