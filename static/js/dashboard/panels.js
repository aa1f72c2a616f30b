/* The dashboard's panels, swapped in as the server renders them.
 *
 * A panel is an element with data-panel; its id names it. A message from the socket brings new HTML
 * for some panels, rendered by the server from the database with the same partials as the page. A
 * panel is swapped only when its HTML changed, and the element itself stays (so a live region stays
 * one, and is read out only when something changed). Swaps wait for the next animation frame, where
 * only the newest HTML of each panel counts. The status badge's data attributes then drive what the
 * page keeps outside the panels: the cancel and delete forms and the new-experiment form's notice
 * (the meta-test panel's data-meta-testing keeps the cancel form for a running meta-test).
 *
 * A panel with data-refresh-url (the workers panel: a worker taking a chunk sends no event) is also
 * fetched again every data-refresh-seconds while the page expects news and is visible; it stops once
 * the server renders it without that attribute, or answers with anything but the fragment.
 */
(function () {
  "use strict";

  const root = document.getElementById("dashboard");
  if (!root) return;
  const dashboard = window.LflDashboard;
  const shown = new Map(); // panel id -> its HTML as the parser writes it back (only compared)
  const pending = new Map(); // panel id -> the newest HTML not swapped in yet
  const charts = []; // [chart data, complete] not drawn yet
  let frame = null;

  function parse(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function swap(id, html) {
    const node = document.getElementById(id), fresh = parse(html);
    if (!node || !fresh || shown.get(id) === fresh.outerHTML) return; // a repeat, or nothing changed
    shown.set(id, fresh.outerHTML);
    for (const { name } of [...node.attributes]) if (!fresh.hasAttribute(name)) node.removeAttribute(name);
    for (const { name, value } of [...fresh.attributes]) node.setAttribute(name, value);
    node.replaceChildren(...fresh.childNodes);
    decorate(node);
  }

  // What the browser adds to server HTML: typeset formulas and drawn plots.
  function decorate(node) {
    if (window.LflMath) window.LflMath.renderIn(node);
    dashboard.chart.drawLossShapes(node);
  }

  function flush() {
    frame = null;
    pending.forEach((html, id) => swap(id, html));
    pending.clear();
    charts.splice(0).forEach(([data, complete]) => dashboard.chart.applySeries(data, complete));
    followStatus();
    refreshPanels();
    root.dispatchEvent(new CustomEvent("lfl:panels"));
  }

  const refreshing = new Set(); // ids of the panels with a fetch scheduled or under way

  // Schedule a fetch of every panel that asks for one and has none scheduled.
  function refreshPanels() {
    root.querySelectorAll("[data-panel][data-refresh-url]").forEach((node) => {
      if (refreshing.has(node.id)) return;
      refreshing.add(node.id);
      refreshLater(node);
    });
  }

  function refreshLater(node) {
    const seconds = Number(node.dataset.refreshSeconds) || 3;
    setTimeout(() => refresh(node.id), seconds * 1000);
  }

  async function refresh(id) {
    const node = document.getElementById(id);
    if (!node || !node.dataset.refreshUrl || !expectsNews()) return refreshing.delete(id);
    if (!document.hidden) {
      let html = null;
      try {
        // a redirect (signed out) is not followed: the sign-in page is no panel
        const response = await fetch(node.dataset.refreshUrl, { credentials: "same-origin", redirect: "manual" });
        if (response.type === "opaqueredirect" || (response.status >= 400 && response.status < 500)) {
          return refreshing.delete(id); // signed out, or no longer allowed: the socket says which
        }
        if (response.ok) html = await response.text();
      } catch (error) {
        // the server is out of reach: try again at the next turn
      }
      if (html !== null) receive({ type: "refresh", panels: { [id]: html } });
    }
    refreshLater(node);
  }

  /** Take a socket message: {type, panels: {id: html}, chart} (a snapshot has every panel and point). */
  function receive(message) {
    Object.entries(message.panels || {}).forEach(([id, html]) => pending.set(id, html));
    if (message.chart) charts.push([message.chart, message.type === "snapshot"]);
    if (!frame) frame = requestAnimationFrame(flush);
  }

  function status() { return document.getElementById("status").dataset; }

  /** Whether the server says more is to come (the page keeps its socket open as long as it does). */
  function expectsNews() { return status().expectsNews === "true"; }

  /** Whether the meta-test panel says the best loss is being meta-tested (the cancel form stops that too). */
  function metaTesting() {
    const panel = document.getElementById("meta-test");
    return Boolean(panel) && panel.dataset.metaTesting === "true";
  }

  function followStatus() {
    const { finished, cancelRequested } = status(), stopping = cancelRequested === "true";
    const cancel = document.getElementById("cancel-form"), remove = document.getElementById("delete-form");
    if (cancel) {
      const testing = metaTesting();
      cancel.hidden = finished === "true" && !testing;
      cancel.querySelector("button").disabled = stopping;
      cancel.querySelector("[data-if-stopping]").hidden = !stopping;
      cancel.querySelector("[data-unless-stopping]").hidden = stopping;
      cancel.querySelector("[data-search-phase]").hidden = testing;
      cancel.querySelector("[data-meta-test-phase]").hidden = !testing;
    }
    if (remove) remove.hidden = finished !== "true";
    if (status().status !== "queued") dismissQueuedNotice();
  }

  // The "… is queued" notice from the form is out of date once a worker has the search; the status
  // badge (a live region) says what it is now.
  function dismissQueuedNotice() {
    document.querySelectorAll(".messages .queued-notice").forEach((notice) => {
      const list = notice.parentElement;
      notice.remove();
      if (list && !list.children.length) list.remove();
    });
  }

  // Note what the server rendered before anything decorates it, so an unchanged panel is left alone.
  root.querySelectorAll("[data-panel]").forEach((node) => shown.set(node.id, node.outerHTML));
  decorate(root);
  dashboard.chart.applySeries(JSON.parse(document.getElementById("chart-data").textContent), true);
  followStatus();
  refreshPanels();
  dashboard.panels = { receive, expectsNews };
})();
