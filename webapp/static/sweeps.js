// rlab's sweep pages: the parallel-coordinates plot of a sweep's settings against its objective
// (an SVG drawn here, no library), and the form's "Add an axis" button. No inline scripts or
// styles (CSP): the plot's data comes from a json_script element, and every colour is an SVG
// presentation attribute, which the policy does not govern.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const WIDTH = 900;
  const HEIGHT = 340;
  const PAD = { top: 36, bottom: 30, side: 60 };

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    if (parent) parent.appendChild(node);
    return node;
  }

  function label(value) {
    if (typeof value === "number") {
      return Math.abs(value) >= 1e4 || (value !== 0 && Math.abs(value) < 1e-3)
        ? value.toExponential(2) : String(Number(value.toPrecision(4)));
    }
    const text = String(value);
    return text.length > 24 ? `${text.slice(0, 23)}…` : text;
  }

  // An axis maps a value to 0 (bottom) .. 1 (top).
  function scaleOf(axis, lines) {
    if (axis.scale === "categorical") {
      const n = axis.values.length;
      const key = (value) => JSON.stringify(value);
      const index = new Map(axis.values.map((value, i) => [key(value), i]));
      return {
        at: (value) => (n === 1 ? 0.5 : (index.get(key(value)) ?? 0) / (n - 1)),
        ticks: axis.values.map((value) => [value, n === 1 ? 0.5 : index.get(key(value)) / (n - 1)]),
      };
    }
    let low = axis.low;
    let high = axis.high;
    if (low === undefined) {
      const seen = lines.map((line) => line.value);
      low = Math.min(...seen);
      high = Math.max(...seen);
    }
    const log = axis.scale === "log";
    const f = log ? Math.log10 : (x) => x;
    const span = f(high) - f(low) || 1;
    const at = (value) => (low === high ? 0.5 : (f(value) - f(low)) / span);
    const ticks = [0, 0.5, 1].map((t) => {
      const value = log ? 10 ** (f(low) + t * span) : low + t * (high - low);
      return [value, low === high ? 0.5 : t];
    });
    return { at, ticks: low === high ? [[low, 0.5]] : ticks };
  }

  // Worse trials blue, better ones red, whatever the direction.
  function colourOf(t) {
    const hue = 230 - 230 * t;
    return `hsl(${hue.toFixed(0)}, 75%, 45%)`;
  }

  function draw(container, data) {
    const axes = [...data.axes, { name: data.objective, scale: "linear", objective: true }];
    const lines = data.lines;
    container.replaceChildren();
    if (!lines.length) {
      const note = document.createElement("p");
      note.className = "muted";
      note.textContent = "No trial has finished yet: the plot draws one line per finished trial.";
      container.appendChild(note);
      return;
    }
    const svg = el("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, class: "sweep-plot-svg",
                            role: "img", "aria-label": `Settings against ${data.objective}` },
                   container);
    const scales = axes.map((axis) => scaleOf(axis, lines));
    const step = axes.length > 1 ? (WIDTH - 2 * PAD.side) / (axes.length - 1) : 0;
    const x = (i) => PAD.side + i * step;
    const y = (t) => HEIGHT - PAD.bottom - t * (HEIGHT - PAD.top - PAD.bottom);
    const objective = scales[scales.length - 1];
    const better = (line) => {
      const t = objective.at(line.value);
      return data.direction === "maximize" ? t : 1 - t;
    };
    const group = el("g", { class: "sweep-lines" }, svg);
    for (const line of [...lines].sort((a, b) => better(a) - better(b))) {
      const points = axes.map((axis, i) => {
        const value = axis.objective ? line.value : line.params[axis.name];
        return `${x(i).toFixed(1)},${y(scales[i].at(value)).toFixed(1)}`;
      });
      const path = el("polyline", { points: points.join(" "), fill: "none",
                                    stroke: colourOf(better(line)), "stroke-width": 2,
                                    "stroke-opacity": 0.8, "data-trial": line.trial }, group);
      el("title", {}, path).textContent = `trial ${line.trial}: ${label(line.value)}`;
    }
    axes.forEach((axis, i) => {
      const g = el("g", { class: "sweep-axis" }, svg);
      el("line", { x1: x(i), x2: x(i), y1: y(0), y2: y(1), stroke: "#374151" }, g);
      const name = el("text", { x: x(i), y: PAD.top - 16, "text-anchor": "middle",
                                "font-size": 12, "font-weight": 600 }, g);
      name.textContent = axis.name + (axis.scale === "log" ? " (log)" : "");
      for (const [value, t] of scales[i].ticks) {
        const tick = el("text", { x: x(i) + 5, y: y(t) + 4, "font-size": 10, fill: "#4b5563" }, g);
        tick.textContent = label(value);
        el("title", {}, tick).textContent = String(value);
      }
    });
  }

  function plots() {
    for (const container of document.querySelectorAll("[data-plot]")) {
      const source = document.getElementById(container.dataset.plot);
      if (source) draw(container, JSON.parse(source.textContent));
    }
  }

  // The form's axis rows: a new row is the formset's empty form, numbered.
  function axisRows() {
    const button = document.querySelector("[data-add-axis]");
    const template = document.getElementById("axis-template");
    const total = document.getElementById("id_axes-TOTAL_FORMS");
    if (!button || !template || !total) return;
    button.hidden = false;
    button.addEventListener("click", () => {
      const index = Number(total.value);
      const row = template.content.firstElementChild.cloneNode(true);
      for (const field of row.querySelectorAll("[name], [id]")) {
        for (const attr of ["name", "id"]) {
          const value = field.getAttribute(attr);
          if (value) field.setAttribute(attr, value.replace("__prefix__", String(index)));
        }
      }
      document.getElementById("axis-rows").appendChild(row);
      total.value = String(index + 1);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    plots();
    axisRows();
  });
})();
