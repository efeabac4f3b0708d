// Copy buttons: each element marked data-copyable (an input, or any element with text) gets a
// "Copy" button beside it that puts its value on the clipboard. This script adds the buttons, so
// a page without JavaScript shows none that would do nothing; its text can still be selected.
"use strict";

(function () {
  const added = new WeakSet();

  function addButtons(scope) {
    if (!scope || !scope.querySelectorAll) return;
    for (const source of scope.querySelectorAll("[data-copyable]")) {
      if (added.has(source)) continue;
      added.add(source);
      const button = document.createElement("button");
      button.type = "button";
      button.className = "copy";
      button.textContent = "Copy";
      button.addEventListener("click", () => copy(source, button));
      source.after(button);
    }
  }

  // The clipboard API needs a secure context (https, or localhost): over plain http to another
  // host, select the text and fall back to the older copy command.
  async function copy(source, button) {
    const text = "value" in source ? source.value : source.textContent;
    let copied = false;
    try {
      await navigator.clipboard.writeText(text);
      copied = true;
    } catch (err) {
      if (source.select) source.select();
      copied = document.execCommand("copy");
    }
    button.textContent = copied ? "Copied" : "Press Ctrl+C to copy";
    button.dataset.copied = String(copied);
  }

  function start() {
    addButtons(document);
    // Content htmx swaps in (a token just created) brings its own copyable text.
    document.addEventListener("htmx:load", (event) => addButtons(event.detail.elt || event.target));
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
