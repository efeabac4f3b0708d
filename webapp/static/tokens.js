// The token view: recolour the tokens by the chosen quantity without a reload, and read out the
// hovered token's text and values. The server already coloured them by the quantity in the URL
// (?colour=), and every token's title holds its values, so the page works without this file.
"use strict";

(function () {
  const LABELS = { logprob: "log-prob", entropy: "entropy", kl: "KL", advantage: "advantage",
                   process: "PRL process", conflict: "GTPO conflict", "teacher_kl": "KL to teacher" };

  function format(value) {
    const number = Number(value);
    if (!Number.isFinite(number)) return String(value);
    const magnitude = Math.abs(number);
    return magnitude !== 0 && magnitude < 1e-3 ? number.toExponential(2) : number.toFixed(4);
  }

  // Whitespace made visible: a token that is a space or a newline still shows as something.
  function visible(text) {
    return text.replace(/ /g, "␣").replace(/\n/g, "⏎").replace(/\t/g, "⇥");
  }

  function colour(view, quantity) {
    const attribute = `colour-${quantity}`;
    view.querySelectorAll(".tok").forEach((token) => {
      const css = token.dataset[attribute.replace(/-([a-z])/g, (_, c) => c.toUpperCase())];
      token.className = `tok ${css || "shade-none"}`;
    });
    document.querySelectorAll(".token-legend").forEach((legend) => {
      legend.hidden = legend.dataset.quantity !== quantity;
    });
    const url = new URL(window.location.href);
    url.searchParams.set("colour", quantity);
    window.history.replaceState(window.history.state, "", url);
  }

  function readout(box, token) {
    const text = document.createElement("b");
    text.className = "mono";
    text.textContent = visible(token.textContent); // textContent: model text is never HTML
    const parts = Object.keys(LABELS)
      .filter((key) => token.dataset[key] !== undefined)
      .map((key) => {
        let part = `${LABELS[key]} ${format(token.dataset[key])}`;
        if (key === "logprob") part += ` (p = ${format(Math.exp(Number(token.dataset[key])))})`;
        return part;
      });
    const values = document.createElement("span");
    values.textContent = parts.length ? ` · ${parts.join(" · ")}` : " · no values recorded";
    box.replaceChildren(text, values);
  }

  function init() {
    const view = document.getElementById("token-view");
    if (!view) return;
    const select = document.getElementById("token-colour");
    const box = document.getElementById("token-readout");
    if (select) select.addEventListener("change", () => colour(view, select.value));
    const show = (event) => {
      const token = event.target instanceof Element && event.target.closest(".tok");
      if (token && view.contains(token)) {
        view.querySelectorAll(".tok.hovered").forEach((t) => t.classList.remove("hovered"));
        token.classList.add("hovered");
        readout(box, token);
      }
    };
    view.addEventListener("mouseover", show);
    view.addEventListener("click", show); // touch screens have no hover
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
