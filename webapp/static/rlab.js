// rlab's page script: live metric charts with uPlot. No inline scripts anywhere (CSP-friendly).
"use strict";

(function () {
  const POLL_MS = 2000;
  const HEADLINE = ["reward/mean", "kl/mean", "entropy/mean", "completion/length_mean"];
  const NOT_RECORDED = {
    "kl/mean": "KL to the reference is measured when β > 0 (a frozen reference model is loaded).",
  };

  function chartWidth(el) {
    return Math.max(240, Math.floor(el.getBoundingClientRect().width) - 16);
  }

  function formatValue(value) {
    if (value == null) return "–";
    const magnitude = Math.abs(value);
    return magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e5)
      ? value.toExponential(3) : String(Number(value.toPrecision(4)));
  }

  function formatTick(value) {
    const magnitude = Math.abs(value);
    return magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e5)
      ? value.toExponential(1) : String(Number(value.toPrecision(3)));
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

  function makeChart(container, key, data) {
    const box = document.createElement("figure");
    box.className = "chart" + (HEADLINE.includes(key) ? " headline" : "");
    box.dataset.key = key;
    const caption = document.createElement("figcaption");
    const name = document.createElement("span");
    name.textContent = key; // textContent: metric names are user data, never HTML
    const readout = document.createElement("span");
    readout.className = "readout";
    caption.append(name, readout);
    box.appendChild(caption);
    container.appendChild(box);

    const showLatest = (u) => {
      const last = u.data[0].length - 1;
      readout.textContent = last < 0 ? "" : `step ${u.data[0][last]}: ${formatValue(u.data[1][last])}`;
    };
    const opts = {
      width: chartWidth(box),
      height: HEADLINE.includes(key) ? 200 : 140,
      legend: { show: false },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: false }, y: { range: yRange } },
      axes: [{}, { size: 60, values: (u, ticks) => ticks.map(formatTick) }],
      series: [{}, { stroke: "#2563eb", width: 1.5, points: { show: data[0].length < 60 } }],
      hooks: {
        // Hovering shows the value under the cursor; otherwise the latest point.
        setCursor: [(u) => {
          const i = u.cursor.idx;
          if (i == null) showLatest(u);
          else readout.textContent = `step ${u.data[0][i]}: ${formatValue(u.data[1][i])}`;
        }],
        setData: [showLatest],
      },
    };
    const plot = new uPlot(opts, data, box);
    showLatest(plot);
    return plot;
  }

  function addPlaceholder(container, key) {
    const box = document.createElement("figure");
    box.className = "chart headline placeholder";
    box.dataset.key = key;
    const caption = document.createElement("figcaption");
    caption.textContent = key;
    const note = document.createElement("p");
    note.className = "muted small";
    note.textContent = NOT_RECORDED[key] || "Not recorded by this run.";
    box.append(caption, note);
    const after = HEADLINE.slice(HEADLINE.indexOf(key) + 1)
      .map((k) => container.querySelector(`figure[data-key="${k}"]`)).find(Boolean);
    container.insertBefore(box, after || null);
  }

  function initCharts(container) {
    const url = container.dataset.metricsUrl;
    const charts = new Map(); // key -> {plot, steps, values}
    let lastStep = -1;

    async function poll() {
      let payload;
      try {
        const response = await fetch(`${url}?after=${lastStep}`, { headers: { Accept: "application/json" } });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        payload = await response.json();
      } catch (err) {
        container.dataset.error = String(err);
        setTimeout(poll, POLL_MS * 2);
        return;
      }
      for (const key of payload.keys) {
        const incoming = payload.series[key] || [[], []];
        let chart = charts.get(key);
        if (!chart) {
          chart = { steps: [], values: [] };
          chart.steps.push(...incoming[0]);
          chart.values.push(...incoming[1]);
          chart.plot = makeChart(container, key, [chart.steps, chart.values]);
          charts.set(key, chart);
        } else if (incoming[0].length) {
          chart.steps.push(...incoming[0]);
          chart.values.push(...incoming[1]);
          chart.plot.setData([chart.steps, chart.values]);
        }
        if (incoming[0].length) lastStep = Math.max(lastStep, incoming[0][incoming[0].length - 1]);
      }
      if (charts.size) {
        container.querySelector(".charts-empty")?.remove();
        for (const key of HEADLINE) {
          const placeholder = container.querySelector(`figure.placeholder[data-key="${key}"]`);
          if (charts.has(key)) placeholder?.remove();
          else if (!placeholder) addPlaceholder(container, key);
        }
      }
      container.dataset.points = String(Math.max(0, ...[...charts.values()].map((c) => c.steps.length)));
      container.dataset.lastStep = String(lastStep);
      if (payload.active) setTimeout(poll, POLL_MS);
      else container.dataset.done = "true";
    }

    window.addEventListener("resize", () => {
      for (const chart of charts.values()) {
        chart.plot.setSize({ width: chartWidth(chart.plot.root.parentElement), height: chart.plot.height });
      }
    });
    poll();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const container = document.getElementById("charts");
    if (container && window.uPlot) initCharts(container);
  });
})();
