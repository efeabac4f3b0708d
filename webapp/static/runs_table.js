// The runs table (templates/runs_table/runs_table.html): "select all" ticks every run of the
// page. The box is hidden in the markup, since it needs this script; the table and its
// actions work without it.
(function () {
  "use strict";

  function wire(root) {
    const all = root.querySelector("#select-all");
    if (!all || all.dataset.wired) return;
    all.dataset.wired = "1";
    all.hidden = false;
    const boxes = () => Array.from(root.querySelectorAll("#runs-table .pick-run"));
    all.addEventListener("change", () => {
      boxes().forEach((box) => { box.checked = all.checked; });
    });
    root.addEventListener("change", (event) => {
      if (!event.target.classList || !event.target.classList.contains("pick-run")) return;
      const picked = boxes();
      all.checked = picked.length > 0 && picked.every((box) => box.checked);
    });
  }

  document.addEventListener("DOMContentLoaded", () => wire(document));
  document.addEventListener("htmx:afterSettle", () => wire(document));
})();
