// The rollout browser's keys: j / k select the next / previous group, n / p load the next /
// previous page. Without JavaScript the page and its links work the same, minus the keys.
"use strict";

(function () {
  const GROUP = "#rollout-results .rollout-group";
  let selected = -1;
  // Which group to select when the page asked for with n / p arrives; a filter change selects
  // nothing, so typing in the search box keeps its focus.
  let afterSwap = null;

  function groups() {
    return Array.from(document.querySelectorAll(GROUP));
  }

  function select(index) {
    const all = groups();
    if (!all.length) return;
    selected = Math.max(0, Math.min(all.length - 1, index));
    all.forEach((group, i) => {
      group.classList.toggle("selected", i === selected);
      if (i === selected) group.setAttribute("aria-current", "true");
      else group.removeAttribute("aria-current");
    });
    const group = all[selected];
    group.focus({ preventScroll: true });
    group.scrollIntoView({ block: "nearest" });
  }

  function follow(selector) {
    const link = document.querySelector(`#rollout-results ${selector}`);
    if (link) link.click(); // htmx swaps the results; without htmx the browser follows href
  }

  function isTyping(target) {
    return target instanceof Element &&
      Boolean(target.closest("input, textarea, select, [contenteditable='true']"));
  }

  document.addEventListener("keydown", (event) => {
    if (!document.getElementById("rollout-results")) return;
    if (event.ctrlKey || event.metaKey || event.altKey || isTyping(event.target)) return;
    switch (event.key) {
      case "j": select(selected + 1); break;
      case "k": select(selected < 0 ? 0 : selected - 1); break;
      case "n": afterSwap = "first"; follow(".next-page"); break;
      case "p": afterSwap = "last"; follow(".prev-page"); break;
      default: return;
    }
    event.preventDefault();
  });

  // A click on a group selects it, so j / k go on from there.
  document.addEventListener("click", (event) => {
    const group = event.target instanceof Element && event.target.closest(GROUP);
    if (group) {
      selected = groups().indexOf(group);
      groups().forEach((g) => g.classList.toggle("selected", g === group));
    }
  });

  document.addEventListener("htmx:afterSettle", (event) => {
    if (!(event.target instanceof Element) || event.target.id !== "rollout-results") return;
    selected = -1;
    if (groups().length && afterSwap) select(afterSwap === "last" ? groups().length - 1 : 0);
    afterSwap = null;
  });
})();
