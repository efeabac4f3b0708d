// rlab's page script: live metric charts with uPlot. No inline scripts anywhere (CSP-friendly).
"use strict";

(function () {
  const POLL_MS = 2000;
  const HEADLINE = ["reward/mean", "kl/mean", "entropy/mean", "completion/length_mean"];

  function chartWidth(el) {
    return Math.max(240, Math.floor(el.getBoundingClientRect().width) - 16);
  }

  function makeChart(container, key, data) {
    const box = document.createElement("figure");
    box.className = "chart" + (HEADLINE.includes(key) ? " headline" : "");
    box.dataset.key = key;
    const caption = document.createElement("figcaption");
    caption.textContent = key; // textContent: metric names are user data, never HTML
    box.appendChild(caption);
    container.appendChild(box);
    const opts = {
      width: chartWidth(box),
      height: HEADLINE.includes(key) ? 200 : 140,
      legend: { show: true },
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: false } },
      axes: [{ label: "step" }, {}],
      series: [{ label: "step" }, { label: key, stroke: "#2563eb", width: 1.5,
                                    points: { show: data[0].length < 60 } }],
    };
    return new uPlot(opts, data, box);
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
      if (charts.size) container.querySelector(".charts-empty")?.remove();
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
