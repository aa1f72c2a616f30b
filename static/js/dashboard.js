/* The live experiment dashboard.
 *
 * The page arrives rendered from the database. This script keeps a copy of that state (from the
 * embedded JSON), connects to ws/experiments/<id>/, applies every message to the state by key
 * (generation, index), and redraws the parts of the page that changed. On connect (and on every
 * reconnect) the server sends a full snapshot, so nothing is missed while the socket was down.
 * Close codes 4401 (signed out) and 4403 (not allowed) end the stream; anything else reconnects
 * with exponential backoff.
 */
(function () {
  "use strict";

  const root = document.getElementById("dashboard");
  if (!root) return;

  const FINISHED = ["succeeded", "failed", "cancelled"];
  const STATUS_LABELS = { queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled" };
  const COLORS = { best: "#1f6feb", mean: "#d97706", baseline: "#6b7280", wrong: "#b42318" };

  const state = {
    experiment: null,
    generations: new Map(), // index -> generation summary
    candidates: new Map(), // index -> candidate of generation `candidateGeneration`
    candidateGeneration: null,
    learned: readJson("learned-data") || [], // rows with ids and download links
    lossShape: readJson("loss-shape-data"),
    metaTest: null, // the best loss's meta-test record, once it is in
    metaTestShown: null, // what the meta-test panel shows now (rendered only when this changes)
    fetchingResults: false,
  };

  // ------------------------------------------------------------------ helpers

  function readJson(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function $(id) { return document.getElementById(id); }

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return node;
  }

  function fitness(v) { return v === null || v === undefined ? "—" : Number(v).toFixed(4); }

  function duration(seconds) {
    if (seconds === null) return "—";
    const s = Math.round(seconds), hours = Math.floor(s / 3600), minutes = Math.floor((s % 3600) / 60), secs = s % 60;
    const pad = (n) => String(n).padStart(2, "0");
    if (hours) return `${hours} h ${pad(minutes)} min`;
    return minutes ? `${minutes} min ${pad(secs)} s` : `${secs} s`;
  }

  function math(latex, fallback) {
    const span = h("span", { class: "math" }, fallback || latex || "");
    if (latex && window.katex) {
      try { window.katex.render(latex, span, { throwOnError: false }); } catch (e) { /* keep the text */ }
    }
    return span;
  }

  function renderMathIn(container) {
    if (!window.katex) return;
    container.querySelectorAll(".math[data-latex]").forEach((span) => {
      const latex = span.getAttribute("data-latex");
      if (latex) {
        try { window.katex.render(latex, span, { throwOnError: false }); } catch (e) { /* keep the text */ }
      }
    });
  }

  function isFinished() { return FINISHED.includes(state.experiment.status); }

  function latestGeneration() {
    let latest = null;
    for (const g of state.generations.values()) if (!latest || g.generation > latest.generation) latest = g;
    return latest;
  }

  // ------------------------------------------------------------------ applying messages

  function applySnapshot(snapshot) {
    state.experiment = snapshot.experiment;
    state.generations = new Map(snapshot.generations.map((g) => [g.generation, g]));
    state.candidates = new Map();
    state.candidateGeneration = null;
    snapshot.candidates.forEach(addCandidate);
    if (snapshot.learned_losses.length !== state.learned.length) fetchResults();
  }

  function addCandidate(c) {
    if (state.candidateGeneration !== null && c.generation < state.candidateGeneration) return; // an old repeat
    if (c.generation !== state.candidateGeneration) {
      state.candidates = new Map();
      state.candidateGeneration = c.generation;
    }
    state.candidates.set(c.index, c);
  }

  function refineCandidate(r) {
    if (r.generation !== state.candidateGeneration) return;
    for (const c of state.candidates.values()) {
      if (c.canonical_key !== r.canonical_key) continue;
      c.symbolic_fitness = r.symbolic_fitness;
      if (r.fitness !== null && (r.symbolic_fitness === null || r.fitness <= r.symbolic_fitness)) {
        c.fitness = r.fitness;
        c.weights = r.weights;
      }
    }
  }

  function handle(message) {
    const e = state.experiment;
    switch (message.type) {
      case "snapshot": applySnapshot(message); break;
      case "search_started":
        Object.assign(e, { total_generations: message.generations, current_generation: message.start_generation,
          baseline_loss: message.baseline_loss, baseline_fitness: message.baseline_fitness,
          evaluation_plan: message.plan, evaluation_label: planLabel(message.plan),
          metric: message.baseline_loss === "cross_entropy" ? "error rate" : "MSE" });
        break;
      case "candidate_evaluated": addCandidate(message); break;
      case "candidate_refined": refineCandidate(message); break;
      case "generation_finished":
        state.generations.set(message.generation, message);
        e.current_generation = Math.max(e.current_generation, message.generation + 1);
        break;
      case "experiment_status":
        state.experiment = message.experiment;
        if (isFinished()) fetchResults();
        break;
      case "meta_test_progress":
        if (e.meta_test_status === "running") e.meta_test_seeds_done = Math.max(e.meta_test_seeds_done || 0, message.seeds_done);
        break;
      case "meta_test_finished":
        state.metaTest = message.meta_test;
        e.meta_test_status = "succeeded";
        break;
      default: return; // search_finished: the status message that follows carries the new row
    }
    scheduleRender();
  }

  function fetchResults() {
    if (state.fetchingResults) return;
    state.fetchingResults = true;
    fetch(root.dataset.resultsUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
      .then((results) => {
        state.learned = results.learned_losses;
        state.lossShape = results.loss_shape;
        state.metaTest = results.meta_test || state.metaTest;
        scheduleRender();
      })
      .catch(() => { /* the page still shows the live state; a reload shows the results */ })
      .finally(() => { state.fetchingResults = false; });
  }

  // ------------------------------------------------------------------ rendering

  let renderPending = false;
  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    requestAnimationFrame(() => { renderPending = false; render(); });
  }

  function render() {
    renderStatus();
    renderProgress();
    renderBest();
    renderFitnessChart();
    renderHallOfFame();
    renderCandidates();
    renderLossShape();
    renderMetaTest();
  }

  function renderStatus() {
    const e = state.experiment;
    const status = $("status");
    status.className = `status status-${e.status}`;
    status.textContent = (STATUS_LABELS[e.status] || e.status) + (e.cancel_requested && !isFinished() ? " (stopping)" : "");
    const cancel = $("cancel-form"), remove = $("delete-form");
    if (cancel) {
      cancel.hidden = isFinished();
      const button = cancel.querySelector("button");
      button.disabled = e.cancel_requested;
      button.textContent = e.cancel_requested ? "Stopping…" : "Cancel search";
    }
    if (remove) remove.hidden = !isFinished();
    if (e.status !== "queued") dismissQueuedNotice();
    const error = $("error");
    error.hidden = !e.error;
    error.textContent = e.error || "";
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

  function renderProgress() {
    const e = state.experiment, gens = [...state.generations.values()];
    const pct = e.total_generations ? Math.min(100, (100 * e.current_generation) / e.total_generations) : 0;
    $("progress-bar").style.width = `${pct.toFixed(1)}%`;
    $("generation-counter").textContent = `${e.current_generation} / ${e.total_generations}`;
    const left = Math.max(0, e.total_generations - e.current_generation);
    const mean = gens.length ? gens.reduce((s, g) => s + g.seconds, 0) / gens.length : null;
    $("eta").textContent = duration(!isFinished() && mean !== null && left ? mean * left : null);
    const sum = (key) => gens.reduce((s, g) => s + (g[key] || 0), 0);
    $("total-evaluated").textContent = sum("evaluated");
    $("total-rejected").textContent = sum("rejected");
    $("total-cache-hits").textContent = sum("cache_hits");
    // Before search_started the worker is loading the data, timing the evaluation plan and training the baseline.
    $("baseline").textContent = e.baseline_loss ? `${e.baseline_loss}: ${fitness(e.baseline_fitness)}`
      : e.status === "running" ? "training…" : "—";
    $("metric").textContent = e.metric;
    const plan = $("evaluation-plan");
    plan.textContent = e.evaluation_label || "—";
    plan.title = (e.evaluation_plan && e.evaluation_plan.reason) || "";
  }

  // As Experiment.evaluation_label words it.
  function planLabel(plan) {
    if (!plan || !plan.strategy) return "";
    const how = plan.strategy === "batched" ? `batched, up to ${plan.chunk} per program` : plan.strategy;
    return `${how}, ${plan.device || "?"}`;
  }

  function renderBest() {
    const latest = latestGeneration();
    const box = $("best-formula");
    if (!latest || !latest.best_expression) return;
    box.replaceChildren(math(latest.best_latex, latest.best_expression));
    $("best-fitness").textContent = fitness(latest.best_fitness);
    const latestRejected = $("latest-rejected"), latestCache = $("latest-cache-hits");
    latestRejected.textContent = latest.rejected;
    latestCache.textContent = latest.cache_hits;
  }

  function renderFitnessChart() {
    const gens = [...state.generations.values()].sort((a, b) => a.generation - b.generation);
    if (!gens.length || !window.LflChart) return;
    const e = state.experiment;
    const series = [
      { label: "best", color: COLORS.best, points: gens.map((g) => [g.generation, g.best_fitness]) },
      { label: "mean", color: COLORS.mean, points: gens.map((g) => [g.generation, g.mean_fitness]) },
    ];
    if (e.baseline_fitness !== null && e.baseline_fitness !== undefined) {
      // across at least one generation's width, so it shows while only one has finished
      const x0 = gens[0].generation, x1 = Math.max(gens[gens.length - 1].generation, x0 + 1);
      series.push({ label: `baseline (${e.baseline_loss})`, color: COLORS.baseline, dashed: true,
        points: [[x0, e.baseline_fitness], [x1, e.baseline_fitness]] });
    }
    window.LflChart.draw($("fitness-chart"), { series, xLabel: "generation", yLabel: e.metric, integerX: true });
  }

  function renderHallOfFame() {
    const body = $("hall-of-fame");
    let rows;
    if (state.learned.length) {
      rows = state.learned.map((loss) => h("tr", {},
        h("td", {}, loss.rank), h("td", {}, math(loss.latex, loss.expression)),
        h("td", { class: "num" }, fitness(loss.validation_fitness)), h("td", { class: "num" }, loss.complexity),
        h("td", { class: "num" }, loss.generation), h("td", { class: "num" }, loss.weight_count),
        h("td", { class: "downloads" }, ...Object.entries(loss.downloads).flatMap(([fmt, url]) => [h("a", { href: url }, fmt), " "]))));
    } else {
      const latest = latestGeneration();
      const entries = latest ? latest.hall_of_fame : [];
      rows = entries.map((entry, i) => h("tr", {},
        h("td", {}, i + 1), h("td", {}, math(entry.latex, entry.expression)),
        h("td", { class: "num" }, fitness(entry.fitness)), h("td", { class: "num" }, entry.size),
        h("td", { class: "num" }, entry.generation), h("td", { class: "num" }, (entry.weights || []).length),
        h("td", { class: "muted" }, "when finished")));
      if (!rows.length) rows = [h("tr", {}, h("td", { colSpan: 7, class: "empty" }, "Empty until the first generation finishes."))];
    }
    body.replaceChildren(...rows);
  }

  // Only local search mode top_k reports a candidate's fitness before refinement (the server
  // renders the column's header on the same condition).
  function refinesTopK() { return ((state.experiment.config || {}).local_search || {}).mode === "top_k"; }

  function renderCandidates() {
    if (state.candidateGeneration === null) return;
    $("candidates-generation").textContent = state.candidateGeneration;
    const rows = [...state.candidates.values()].sort((a, b) => a.index - b.index).map((c) => h("tr",
      c.rejection_reason ? { class: "rejected" } : {},
      h("td", {}, c.index), h("td", {}, math(c.latex, c.expression)),
      c.rejection_reason ? h("td", { class: "reason" }, `rejected: ${c.rejection_reason}`) : h("td", { class: "num" }, fitness(c.fitness)),
      ...(refinesTopK() ? [h("td", { class: "num" }, fitness(c.symbolic_fitness))] : []),
      h("td", {}, c.cache_hit ? "yes" : "no"),
      h("td", { class: "num" }, (c.weights || []).length)));
    $("candidates").replaceChildren(...rows);
  }

  function renderLossShape() {
    const shape = state.lossShape;
    $("loss-shape-panel").hidden = !shape;
    if (!shape || !window.LflChart) return;
    const chart = $("loss-shape-chart");
    if (shape.kind === "regression") {
      $("loss-shape-caption").textContent = "Per-sample loss against the residual f − y.";
      window.LflChart.draw(chart, { xLabel: "residual f − y", yLabel: "loss",
        series: [{ label: "loss", color: COLORS.best, points: shape.residual.map((r, i) => [r, shape.loss[i]]) }] });
    } else {
      $("loss-shape-caption").textContent = "Per-sample loss against the probability p given to the true class, "
        + `or to one wrong class (${shape.n_classes} classes).`;
      window.LflChart.draw(chart, { xLabel: "probability p", yLabel: "loss", series: [
        { label: "true class has p", color: COLORS.best, points: shape.p.map((p, i) => [p, shape.loss_true[i]]) },
        { label: "one wrong class has p", color: COLORS.wrong, points: shape.p.map((p, i) => [p, shape.loss_wrong[i]]) },
      ] });
    }
  }

  // Same decision as Experiment.meta_test_view on the server.
  function metaTestView() {
    const e = state.experiment;
    if (state.metaTest) return "results";
    if (e.meta_test_status === "running" || e.meta_test_status === "failed") return e.meta_test_status;
    if (!state.learned.length) return "";
    return { succeeded: "not_run", cancelled: "cancelled" }[e.status] || "";
  }

  function renderMetaTest() {
    const e = state.experiment, view = metaTestView(), box = $("meta-test");
    // Redraw only when something shown changes: the panel is a live region, and a screen reader
    // would read it out again on every message of the search.
    const key = JSON.stringify([view, e.meta_test_seeds_done, e.meta_test_error, state.metaTest]);
    if (key === state.metaTestShown) return;
    const first = state.metaTestShown === null;
    state.metaTestShown = key;
    $("meta-test-panel").hidden = !view;
    if (first && box.dataset.view === view) return; // the page arrived showing this very state
    if (view === "running" && box.dataset.view === "running") return updateMetaTestProgress(box);
    box.dataset.view = view;
    const content = {
      results: metaTestResults, running: metaTestRunning,
      failed: () => [h("p", { class: "error-box" }, `The meta-test failed: ${e.meta_test_error}`),
        h("p", { class: "muted" }, "The search itself succeeded: its losses above are complete and can be downloaded.")],
      not_run: () => [h("p", { class: "muted" }, "The best loss was not meta-tested.")],
      cancelled: () => [h("p", { class: "muted" },
        "Not meta-tested: the search was cancelled, and only a search that completes is meta-tested.")],
    }[view];
    box.replaceChildren(...(content ? content() : []));
    if (view === "running") updateMetaTestProgress(box);
  }

  function metaTestResults() {
    const m = state.metaTest, n = (m.seeds || []).length;
    const p = m.p_value === null || m.p_value === undefined ? "n/a" : Number(m.p_value).toPrecision(3);
    const row = (label, mean, std) => h("tr", {}, h("td", {}, label), h("td", { class: "num" }, `${fitness(mean)} ± ${fitness(std)}`));
    return [
      h("table", { class: "data" },
        h("thead", {}, h("tr", {}, h("th", {}, "Trained with"), h("th", { class: "num" }, `Test ${m.metric} (mean ± std)`))),
        h("tbody", {},
          row("Learned loss", m.learned_mean, m.learned_std),
          ...(m.symbolic ? [row("Same formula, every weight 1", m.symbolic.learned_mean, m.symbolic.learned_std)] : []),
          row(`Baseline (${state.experiment.baseline_loss || "baseline"})`, m.baseline_mean, m.baseline_std))),
      h("p", {}, `Learned better on ${m.wins} of ${n} seeds (${m.steps} training steps each, held-out test data); `
        + `paired t-test p = ${p}.`),
    ];
  }

  function metaTestRunning() {
    const plan = state.experiment.meta_test_plan || {};
    const bar = h("div", { class: "progress" }, h("div", { class: "bar" }));
    for (const [name, value] of [["role", "progressbar"], ["aria-label", "meta-test seeds done"],
      ["aria-valuemin", "0"], ["aria-valuemax", String(plan.seeds)]]) bar.setAttribute(name, value);
    const spinner = h("span", { class: "spinner" });
    spinner.setAttribute("aria-hidden", "true");
    return [
      h("p", { class: "working" }, spinner,
        ` Meta-testing the best loss: ${plan.seeds} seeds × ${plan.steps} steps, learned vs baseline…`),
      bar, h("p", { class: "muted" }, h("span", { class: "seeds-done" }),
        " Models are trained from scratch with each loss and scored on held-out test data; the losses above can "
        + "already be downloaded."),
    ];
  }

  function updateMetaTestProgress(box) {
    const e = state.experiment, seeds = (e.meta_test_plan || {}).seeds, done = e.meta_test_seeds_done || 0;
    const bar = box.querySelector(".progress");
    bar.setAttribute("aria-valuenow", String(done));
    bar.firstChild.style.width = `${seeds ? Math.min(100, (100 * done) / seeds) : 0}%`;
    box.querySelector(".seeds-done").textContent = `${done} of ${seeds} seeds done.`;
  }

  // ------------------------------------------------------------------ the socket

  let attempts = 0;

  function setConnection(text, kind) {
    const node = $("connection");
    node.textContent = text;
    node.className = `connection ${kind}`;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}${root.dataset.wsPath}`);
    setConnection(attempts ? "reconnecting…" : "connecting…", "pending");
    socket.onopen = () => { attempts = 0; setConnection("live", "live"); };
    socket.onmessage = (event) => handle(JSON.parse(event.data));
    socket.onclose = (event) => {
      if (event.code === 4401) return setConnection("signed out: reload the page to sign in", "offline");
      if (event.code === 4403) return setConnection("this experiment is not available to you", "offline");
      const delay = Math.min(30000, 1000 * 2 ** attempts) * (0.75 + Math.random() / 2);
      attempts += 1;
      setConnection(`offline, retrying in ${Math.round(delay / 1000)} s`, "offline");
      setTimeout(connect, delay);
    };
  }

  // ------------------------------------------------------------------ start

  applySnapshot(readJson("snapshot-data"));
  state.metaTest = state.learned.length ? state.learned[0].meta_test : null;
  renderMathIn(root);
  render();
  connect();
})();
