// Transfers of learned losses: refresh each list that has a queued or running run until none is left,
// and give a transfer form rendered for every watcher (so without a CSRF token) the page's own token.
(function () {
  "use strict";
  if (window.lflTransfers) return; // the hall of fame and a page may both load this file
  window.lflTransfers = true;
  const PERIOD_MS = 4000;

  const TOKEN = "csrfmiddlewaretoken";

  // capture: forms swapped in later by the dashboard's live updates are covered too
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!form.matches("form[data-transfer-form]") || form.elements[TOKEN]) return;
    const pageToken = document.querySelector(`input[name="${TOKEN}"]`); // e.g. the sign-out form's
    if (!pageToken) return;
    const input = document.createElement("input");
    Object.assign(input, {type: "hidden", name: TOKEN, value: pageToken.value});
    form.append(input);
  }, true);

  async function refresh(list) {
    const response = await fetch(list.dataset.transfersUrl, {credentials: "same-origin"});
    if (!response.ok) return;
    const holder = document.createElement("div");
    holder.innerHTML = await response.text(); // the server's partial: the browser only swaps it in
    const fresh = holder.querySelector("[data-transfers-url]");
    if (!fresh || !list.isConnected) return;
    const opened = list.querySelector("details[open]"), details = fresh.querySelector("details");
    if (opened && details) details.open = true; // a reader who opened the runs keeps them open
    list.replaceWith(fresh);
  }

  setInterval(() => {
    document.querySelectorAll("[data-transfers-url][data-pending]").forEach((list) => {
      refresh(list).catch(() => {}); // a missed poll is retried on the next tick
    });
  }, PERIOD_MS);
})();
