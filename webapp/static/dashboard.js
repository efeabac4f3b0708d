// rlab's dashboards: every <div class="chart-grid" data-project="<id>"> of a page is an even grid
// of panels, <section class="chart-panel" data-panel="<metric key>">, arranged by the project's
// chart layout (the JSON element #chart-layout-<id>, from the dashboard template tags). Pinned
// panels come first, then the others in the layout's order, then metrics the layout does not
// name, in the order the page added them. Members pin, move (buttons, or drag and drop), resize
// and hide panels, and save the layout for the project: every run, group and comparison page of
// the project then opens the same way. Viewers see the saved layout without the controls.
//
// What a panel draws is its page's business (charts.js, groups.js): this script only moves
// panels and sets their data-size, "<columns>x<rows>" of the grid (rlab.css); a chart follows
// its panel's size with a ResizeObserver. Panels added later (a metric that appears mid-run, a
// comparison swapped in by htmx) are placed as they come.
"use strict";

(function () {
  const SIZES = [["1x1", "1 × 1"], ["2x1", "2 × 1"], ["3x1", "3 × 1 (full width)"],
                 ["1x2", "1 × 2"], ["2x2", "2 × 2"], ["3x2", "3 × 2 (full width)"]];
  const DEFAULT_SIZE = "1x1";

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text; // textContent: metric keys are user data
    return node;
  }

  function button(className, text, label) {
    const node = element("button", className, text);
    node.type = "button";
    node.title = label;
    return node;
  }

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (err) {
      return "";
    }
  }

  function isPanel(node) {
    return node.nodeType === 1 && node.matches("section.chart-panel[data-panel]");
  }

  class Dashboard {
    constructor(grid, config) {
      this.grid = grid;
      this.url = config.url;
      this.canEdit = Boolean(config.canEdit);
      // The layout as it stands on this page (saved or not): every panel it names, including
      // metrics this page does not show, whose places are kept when it is saved.
      this.entries = ((config.layout || {}).panels || []).map((p) => ({ ...p }));
      this.dirty = false;
      grid.classList.add("arranged");
      if (this.canEdit) {
        grid.classList.add("editable");
        grid.before(this.buildToolbar());
        grid.addEventListener("dragover", (event) => this.dragOver(event));
        grid.addEventListener("drop", (event) => this.drop(event));
      }
      this.adopt();
      new MutationObserver(() => this.adopt()).observe(grid, { childList: true });
    }

    panels() {
      return [...this.grid.children].filter(isPanel);
    }

    entry(key) {
      return this.entries.find((e) => e.key === key);
    }

    // ------------------------------------------------------------ placing panels

    // Panels the page added since: sized and pinned as the layout says, given their controls,
    // then every panel put in its place.
    adopt() {
      let fresh = false;
      this.panels().forEach((panel, index) => {
        if (panel.dataset.arranged) return;
        fresh = true;
        panel.dataset.arranged = "true";
        if (!("default" in panel.dataset)) panel.dataset.default = String(1e6 + index);
        const saved = this.entry(panel.dataset.panel);
        if (saved) {
          panel.dataset.size = saved.size || DEFAULT_SIZE;
          panel.classList.toggle("pinned", Boolean(saved.pinned));
          panel.hidden = Boolean(saved.hidden);
        } else if (!panel.dataset.size) {
          panel.dataset.size = DEFAULT_SIZE;
        }
        if (this.canEdit) this.decorate(panel);
      });
      if (fresh) this.arrange();
    }

    // Pinned first, then the layout's order, then the rest as they are.
    arrange() {
      const rank = new Map(this.entries.map((e, i) => [e.key, i]));
      const panels = this.panels();
      const order = panels.map((panel, index) => ({ panel, index }));
      order.sort((a, b) => {
        const pinned = Number(!a.panel.classList.contains("pinned")) -
          Number(!b.panel.classList.contains("pinned"));
        if (pinned) return pinned;
        const ra = rank.get(a.panel.dataset.panel) ?? Infinity;
        const rb = rank.get(b.panel.dataset.panel) ?? Infinity;
        return ra === rb ? a.index - b.index : ra - rb;
      });
      this.place(order.map((o) => o.panel));
    }

    // Put the panels in this order, moving only those out of place (a moved canvas is redrawn).
    place(ordered) {
      const current = this.panels();
      if (ordered.every((panel, i) => current[i] === panel)) return this.sync();
      const anchor = current.length ? current[current.length - 1].nextSibling : null;
      for (const panel of ordered) this.grid.insertBefore(panel, anchor);
      this.sync();
    }

    // The panels shown, in order (a panel the page has not drawn yet counts: it may be soon).
    shown() {
      return this.panels().filter((panel) => !panel.hidden);
    }

    // Controls follow the panels' places; the grid says how it is arranged (for tests, styles).
    sync() {
      const shown = this.shown();
      shown.forEach((panel, i) => {
        const pinned = panel.classList.contains("pinned");
        panel.dataset.pinned = String(pinned);
        const bar = panel.querySelector(":scope > .panel-bar");
        if (!bar) return;
        const pin = bar.querySelector(".panel-pin");
        pin.setAttribute("aria-pressed", String(pinned));
        pin.textContent = pinned ? "Unpin" : "Pin";
        pin.title = pinned ? "Unpin this panel" : "Pin this panel to the top";
        const prev = shown[i - 1];
        const next = shown[i + 1];
        bar.querySelector(".panel-up").disabled =
          !prev || prev.classList.contains("pinned") !== pinned;
        bar.querySelector(".panel-down").disabled =
          !next || next.classList.contains("pinned") !== pinned;
        bar.querySelector(".panel-size").value = panel.dataset.size;
      });
      if (this.hiddenList) {
        const hidden = this.panels().filter((panel) => panel.hidden);
        this.hiddenList.hidden = !hidden.length;
        this.hiddenList.replaceChildren(element("span", "muted small", "Hidden:"), ...hidden.map(
          (panel) => {
            const show = button("dashboard-show", panel.dataset.panel,
                                `Show ${panel.dataset.panel} again`);
            show.dataset.panel = panel.dataset.panel;
            show.addEventListener("click", () => this.setHidden(panel, false));
            return show;
          }));
      }
      this.grid.dataset.order = this.panels().map((p) => p.dataset.panel).join("\n");
    }

    // ------------------------------------------------------------ a member's controls

    decorate(panel) {
      const key = panel.dataset.panel;
      const bar = element("div", "panel-bar");
      bar.setAttribute("role", "group");
      bar.setAttribute("aria-label", `Arrange ${key}`);
      const handle = element("span", "panel-handle", "⠿");
      handle.draggable = true;
      handle.title = "Drag to move this panel";
      handle.setAttribute("aria-hidden", "true");
      handle.addEventListener("dragstart", (event) => {
        this.dragged = panel;
        panel.classList.add("dragging");
        event.dataTransfer.effectAllowed = "move";
        event.dataTransfer.setData("text/plain", key);
        event.dataTransfer.setDragImage(panel, 16, 16);
      });
      handle.addEventListener("dragend", () => this.dragEnd());
      const pin = button("panel-pin", "Pin", `Pin ${key} to the top`);
      pin.addEventListener("click", () => this.togglePin(panel));
      const up = button("panel-up", "↑", "Move this panel up");
      up.setAttribute("aria-label", `Move ${key} up`);
      up.addEventListener("click", () => this.move(panel, -1));
      const down = button("panel-down", "↓", "Move this panel down");
      down.setAttribute("aria-label", `Move ${key} down`);
      down.addEventListener("click", () => this.move(panel, 1));
      const size = element("select", "panel-size");
      size.title = "Size: columns × rows of the grid";
      size.setAttribute("aria-label", `Size of ${key}`);
      for (const [value, text] of SIZES) {
        const option = element("option", null, text);
        option.value = value;
        size.append(option);
      }
      size.addEventListener("change", () => {
        panel.dataset.size = size.value;
        this.changed();
      });
      const hide = button("panel-hide", "Hide", "Hide this panel (shown again from the list " +
                          "of hidden panels above the grid)");
      hide.setAttribute("aria-label", `Hide ${key}`);
      hide.addEventListener("click", () => this.setHidden(panel, true));
      bar.append(handle, pin, up, down, hide, size);
      panel.prepend(bar);
    }

    setHidden(panel, hidden) {
      panel.hidden = hidden;
      this.changed();
      (hidden ? this.saveButton : panel.querySelector(".panel-hide"))?.focus();
    }

    togglePin(panel) {
      const pinned = !panel.classList.contains("pinned");
      panel.classList.toggle("pinned", pinned);
      // A pinned panel joins the end of the pinned ones; an unpinned one heads the rest.
      const others = this.panels().filter((p) => p !== panel);
      const boundary = others.filter((p) => p.classList.contains("pinned")).length;
      others.splice(boundary, 0, panel);
      this.place(others);
      this.changed();
      panel.querySelector(".panel-pin")?.focus();
    }

    // One place up or down among the panels shown, within its section (pinned or not).
    move(panel, by) {
      const shown = this.shown();
      const other = shown[shown.indexOf(panel) + by];
      if (!other || other.classList.contains("pinned") !== panel.classList.contains("pinned")) {
        return;
      }
      const panels = this.panels().filter((p) => p !== panel);
      panels.splice(panels.indexOf(other) + (by > 0 ? 1 : 0), 0, panel);
      this.place(panels);
      this.changed();
      const focus = panel.querySelector(by < 0 ? ".panel-up" : ".panel-down");
      (focus && !focus.disabled ? focus : panel.querySelector(".panel-pin"))?.focus();
    }

    // A panel dropped on another goes before it (left half) or after it (right half), and
    // takes its pinned state: dropping among the pinned panels pins it.
    dropTarget(event) {
      const target = event.target.closest && event.target.closest("section.chart-panel");
      if (!target || target.parentElement !== this.grid || target === this.dragged) return null;
      const box = target.getBoundingClientRect();
      return { target, after: event.clientX > box.left + box.width / 2 };
    }

    dragOver(event) {
      if (!this.dragged) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "move";
      for (const panel of this.panels()) panel.classList.remove("drop-before", "drop-after");
      const spot = this.dropTarget(event);
      if (spot) spot.target.classList.add(spot.after ? "drop-after" : "drop-before");
    }

    drop(event) {
      if (!this.dragged) return;
      event.preventDefault();
      const spot = this.dropTarget(event);
      const panel = this.dragged;
      this.dragEnd();
      if (!spot) return;
      panel.classList.toggle("pinned", spot.target.classList.contains("pinned"));
      const panels = this.panels().filter((p) => p !== panel);
      panels.splice(panels.indexOf(spot.target) + (spot.after ? 1 : 0), 0, panel);
      this.place(panels);
      this.changed();
    }

    dragEnd() {
      for (const panel of this.panels()) {
        panel.classList.remove("dragging", "drop-before", "drop-after");
      }
      this.dragged = null;
    }

    // ------------------------------------------------------------ saving

    // The page's panels, in their order, take the places the layout gave the page's panels;
    // the layout's other entries (metrics of other runs) keep theirs.
    snapshot() {
      const here = this.panels().map((panel) => ({
        key: panel.dataset.panel, pinned: panel.classList.contains("pinned"),
        size: panel.dataset.size || DEFAULT_SIZE, hidden: panel.hidden }));
      const onPage = new Set(here.map((p) => p.key));
      const queue = [...here];
      const merged = this.entries.map((e) => (onPage.has(e.key) ? queue.shift() : e));
      return merged.concat(queue);
    }

    changed() {
      this.entries = this.snapshot();
      this.sync();
      this.setDirty(true, "Unsaved changes: save them for every page of this project.");
    }

    setDirty(dirty, message) {
      this.dirty = dirty;
      this.grid.dataset.dirty = String(dirty);
      if (!this.saveButton) return;
      this.saveButton.disabled = !dirty;
      this.status.textContent = message;
    }

    buildToolbar() {
      const bar = element("div", "dashboard-toolbar");
      bar.setAttribute("role", "group");
      bar.setAttribute("aria-label", "Chart layout");
      this.saveButton = button("dashboard-save primary", "Save layout",
                               "Save this layout for every run, group and comparison page of " +
                               "the project");
      this.saveButton.disabled = true;
      this.saveButton.addEventListener("click", () => this.save(this.entries));
      const reset = button("dashboard-reset", "Reset layout",
                           "Unpin, resize and order every panel as by default, for the project");
      reset.addEventListener("click", () => this.reset());
      this.status = element("span", "dashboard-status muted small");
      this.status.setAttribute("role", "status");
      this.hiddenList = element("span", "dashboard-hidden");
      this.hiddenList.hidden = true;
      bar.append(this.saveButton, reset, this.status, this.hiddenList,
                 element("span", "muted small dashboard-hint",
                         "Pin, move (⠿ drag, or ↑ ↓), resize and hide panels, then save."));
      return bar;
    }

    async save(entries) {
      this.status.textContent = "Saving…";
      let answer;
      try {
        const response = await fetch(this.url, {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(),
                     Accept: "application/json" },
          body: JSON.stringify({ panels: entries }),
        });
        answer = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
        if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
      } catch (err) {
        this.status.textContent = `Not saved: ${err.message}`;
        this.grid.dataset.saveError = err.message;
        return false;
      }
      this.entries = answer.layout.panels;
      delete this.grid.dataset.saveError;
      this.setDirty(false, entries.length ? "Layout saved for the project."
        : "Layout reset for the project.");
      return true;
    }

    async reset() {
      if (!(await this.save([]))) return;
      for (const panel of this.panels()) {
        panel.classList.remove("pinned");
        panel.dataset.size = DEFAULT_SIZE;
        panel.hidden = false;
      }
      this.place(this.panels().sort((a, b) => Number(a.dataset.default) -
                                              Number(b.dataset.default)));
    }
  }

  // ------------------------------------------------------------ start-up

  function configFor(project) {
    const source = document.getElementById(`chart-layout-${project}`);
    if (!source) return { layout: { panels: [] }, canEdit: false };
    try {
      return JSON.parse(source.textContent);
    } catch (err) {
      return { layout: { panels: [] }, canEdit: false };
    }
  }

  const started = new WeakSet();

  function startWithin(scope) {
    if (!scope || !scope.querySelectorAll) return;
    const grids = [...scope.querySelectorAll(".chart-grid[data-project]")];
    if (scope.matches && scope.matches(".chart-grid[data-project]")) grids.unshift(scope);
    for (const grid of grids) {
      if (started.has(grid)) continue;
      started.add(grid);
      new Dashboard(grid, configFor(grid.dataset.project));
    }
  }

  function start() {
    startWithin(document);
    // A comparison's result is swapped in by htmx when runs are picked.
    document.addEventListener("htmx:load",
                              (event) => startWithin(event.detail.elt || event.target));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
