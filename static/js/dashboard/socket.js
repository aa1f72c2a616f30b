/* The dashboard's live stream: ws/experiments/<id>/.
 *
 * Open while the status badge says more is to come (data-expects-news, decided by the server). On
 * every (re)connect the server sends a snapshot read from the database, then one message per event;
 * each goes to the panels as it is. Close codes 4401 (signed out) and 4403 (not allowed) end the
 * stream; any other close reconnects with exponential backoff. The indicator is lit only while live.
 */
(function () {
  "use strict";

  const root = document.getElementById("dashboard");
  if (!root) return;
  const panels = window.LflDashboard.panels;
  const indicator = document.getElementById("connection");
  let attempts = 0, socket = null, ended = false;

  function show(text, kind) {
    indicator.textContent = text;
    indicator.className = kind ? `connection ${kind}` : "connection";
  }

  function end(text, kind) {
    ended = true;
    if (socket) socket.close(1000);
    show(text, kind);
  }

  // The experiment has finished (and so has its meta-test): nothing more will come.
  function endIfFinished() {
    if (!ended && !panels.expectsNews()) end(indicator.dataset.finishedText, "");
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}${root.dataset.wsPath}`);
    show(attempts ? "reconnecting…" : "connecting…", "pending");
    socket.onopen = () => { attempts = 0; show("live", "live"); };
    socket.onmessage = (event) => panels.receive(JSON.parse(event.data));
    socket.onclose = (event) => {
      if (ended) return;
      if (event.code === 4401) return end("signed out: reload the page to sign in", "offline");
      if (event.code === 4403) return end("this experiment is not available to you", "offline");
      const delay = Math.min(30000, 1000 * 2 ** attempts) * (0.75 + Math.random() / 2);
      attempts += 1;
      show(`offline, retrying in ${Math.round(delay / 1000)} s`, "offline");
      setTimeout(connect, delay);
    };
  }

  root.addEventListener("lfl:panels", endIfFinished);
  if (panels.expectsNews()) connect();
  else endIfFinished();
})();
