/* The dashboard's live stream: ws/experiments/<id>/.
 *
 * Open while the status badge says more is to come (data-expects-news, decided by the server). On
 * every (re)connect the server sends a snapshot read from the database, then one message per event;
 * each goes to the panels as it is, so a reconnect catches up with whatever was missed. Close codes
 * 4401 (signed out) and 4403 (not allowed) end the stream; any other close (4503: the server lost
 * its channel layer; or the server itself is gone) reconnects with exponential backoff.
 *
 * The indicator (#connection) holds one sentence per state, written in the template: this script
 * only shows the element with the id connection-<state>, counts down the seconds to the next
 * attempt, and gives the indicator that element's data-kind as its class. It says "live" only once
 * the snapshot has arrived: a socket the server accepts and then closes is not live.
 */
(function () {
  "use strict";

  const root = document.getElementById("dashboard");
  if (!root) return;
  const panels = window.LflDashboard.panels;
  const indicator = document.getElementById("connection");
  const retrySeconds = document.getElementById("connection-retry-seconds");
  const MAX_DELAY_MS = 30000;
  // An accepted socket whose snapshot has not come by then is given up and tried again (seen just
  // after a Redis restart: the server accepted, then its consumer ended without a word).
  const SNAPSHOT_WAIT_MS = 8000;
  let attempts = 0, socket = null, ended = false, live = false;

  function show(state) {
    const shown = document.getElementById(`connection-${state}`);
    for (const sentence of indicator.children) sentence.hidden = sentence !== shown;
    indicator.dataset.state = state;
    indicator.className = shown.dataset.kind ? `connection ${shown.dataset.kind}` : "connection";
  }

  function end(state) {
    ended = true;
    if (socket) socket.close(1000);
    show(state);
  }

  // The experiment has finished (and so has its meta-test): nothing more will come.
  function endIfFinished() {
    if (!ended && !panels.expectsNews()) end("finished");
  }

  // Wait 1, 2, 4 … 30 s (±25 %), showing the seconds left, then connect again.
  function reconnectLater() {
    const due = Date.now() + Math.min(MAX_DELAY_MS, 1000 * 2 ** attempts) * (0.75 + Math.random() / 2);
    attempts += 1;
    let timer = null;
    const tick = () => {
      const left = Math.ceil((due - Date.now()) / 1000);
      if (ended || left <= 0) {
        clearInterval(timer);
        if (!ended) connect();
        return;
      }
      retrySeconds.textContent = String(left);
    };
    tick();
    show("interrupted");
    timer = setInterval(tick, 250);
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}${root.dataset.wsPath}`);
    live = false;
    show(attempts ? "reconnecting" : "connecting");
    const opened = socket;
    const watchdog = setTimeout(() => { if (!live && socket === opened) opened.close(); }, SNAPSHOT_WAIT_MS);
    socket.onmessage = (event) => {
      if (!live) {  // the snapshot: from here on the page is current
        clearTimeout(watchdog);
        live = true;
        attempts = 0;
        show("live");
      }
      panels.receive(JSON.parse(event.data));
    };
    socket.onclose = (event) => {
      clearTimeout(watchdog);
      live = false;
      if (ended) return;
      if (event.code === 4401) return end("signed-out");
      if (event.code === 4403) return end("not-allowed");
      reconnectLater();
    };
  }

  root.addEventListener("lfl:panels", endIfFinished);
  if (panels.expectsNews()) connect();
  else endIfFinished();
})();
