// Group charts and the statistics page's plots, drawn with uPlot. No inline scripts or styles
// (CSP): each chart's data comes from its panel's data-series-url (webapp/groups/views.py,
// group_series), the statistics page's from a json_script block.
//
// A group chart draws each group's mean over its runs and a band (mean ± std, min–max, or a
// 95% bootstrap interval of the mean: the server computes it, the panel's select picks it).
// The legend says how many runs each point averages: runs log at different steps, so a bucket
// where fewer runs report averages fewer. Charts are sized from their panel, which the
// dashboard grid lets users resize: a ResizeObserver follows it.
"use strict";

(function () {
  const PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#dc2626", "#9333ea", "#0d9488", "#db2777",
                   "#92400e"];
  const HEIGHT = 240;

  function fill(colour) {
    return colour + "33"; // the band: the line's colour, mostly transparent
  }

  function widthOf(element) {
    return Math.max(200, Math.floor(element.getBoundingClientRect().width));
  }

  // Keep a uPlot as wide as its container, as the container is resized.
  function follow(container, plot) {
    if (!window.ResizeObserver) return;
    const observer = new ResizeObserver(() => {
      if (!container.isConnected) {
        observer.disconnect();
        return;
      }
      const width = widthOf(container);
      if (width !== plot.width) plot.setSize({ width: width, height: HEIGHT });
    });
    observer.observe(container);
  }

  // ------------------------------------------------------------------------- group charts

  function groupChartOptions(data, container) {
    const series = [{ label: "step" }];
    const bands = [];
    data.groups.forEach((group, i) => {
      const colour = PALETTE[i % PALETTE.length];
      const counts = group.n;
      const base = series.length;
      series.push({
        label: group.name + " (" + group.runs + " runs)",
        stroke: colour, width: 2, spanGaps: false,
        value: (u, v, si, idx) => v == null ? "—" :
          v.toPrecision(4) + " (n=" + (idx == null ? "" : counts[idx]) + ")",
      });
      series.push({ label: group.name + " lower", stroke: colour, width: 0.5, dash: [4, 4],
                    spanGaps: false, show: true });
      series.push({ label: group.name + " upper", stroke: colour, width: 0.5, dash: [4, 4],
                    spanGaps: false, show: true });
      bands.push({ series: [base + 2, base + 1], fill: fill(colour) });
    });
    return {
      width: widthOf(container), height: HEIGHT, series: series, bands: bands,
      scales: { x: { time: false } },
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
    };
  }

  function groupChartData(data) {
    const columns = [data.steps];
    for (const group of data.groups) columns.push(group.mean, group.lower, group.upper);
    return columns;
  }

  function drawGroupChart(panel) {
    const holder = panel.querySelector(".group-chart");
    const note = panel.querySelector(".group-chart-note");
    const band = panel.querySelector(".band-choice").value;
    const reduce = panel.querySelector(".reduce-choice").value;
    const url = new URL(holder.dataset.seriesUrl, window.location.href);
    url.searchParams.set("metric", holder.dataset.metric);
    url.searchParams.set("band", band);
    url.searchParams.set("reduce", reduce);
    holder.dataset.state = "loading";
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((response) => response.json().then((body) => ({ ok: response.ok, body: body })))
      .then(({ ok, body }) => {
        if (holder.plot) {
          holder.plot.destroy();
          holder.plot = null;
        }
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
        holder.plot = new uPlot(groupChartOptions(body, holder), groupChartData(body), holder);
        follow(holder, holder.plot);
        const most = Math.max(...body.groups.map((g) => g.runs));
        note.textContent = "Each point: the runs' " +
          (body.reduce === "last" ? "last point" : "mean") + " in a bucket of " + body.width +
          " step" + (body.width === 1 ? "" : "s") + "; the legend's n is how many of up to " +
          most + " runs report there.";
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
      width: widthOf(container), height: HEIGHT,
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
    follow(container, plot);
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
    const plot = new uPlot({ width: widthOf(container), height: HEIGHT, series: series,
                             bands: bands, scales: { x: { time: false }, y: { range: [0, 1] } } },
                           data, container);
    follow(container, plot);
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
