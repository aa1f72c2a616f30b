/* The dashboard's charts: a small SVG line chart (draw), the fitness per generation from the
 * server's data series (applySeries), and the loss-shape plots of the panels (drawLossShapes).
 * No dependencies; every word a chart shows comes from the page's data attributes.
 *
 * draw(container, {
 *   series: [{label, color, points: [[x, y], ...], dashed}],   y may be null (a gap)
 *   xLabel, yLabel,                                           axis titles
 *   integerX: true                                            integer ticks on x (generations)
 * })  scales with its container (viewBox) and redraws from scratch on every call.
 */
(function () {
  "use strict";

  const NS = "http://www.w3.org/2000/svg";
  const W = 640, H = 280;
  const M = { left: 58, right: 16, top: 30, bottom: 42 };

  function svg(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // About `count` round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart).
  function ticks(lo, hi, count, integer) {
    if (lo === hi) { lo -= 1; hi += 1; }
    const raw = (hi - lo) / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    let step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
    if (integer) step = Math.max(1, Math.round(step));
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    return out;
  }

  function label(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    return a >= 1e4 || a < 1e-3 ? v.toExponential(1) : String(+v.toPrecision(4));
  }

  function extent(values) {
    const finite = values.filter((v) => v !== null && Number.isFinite(v));
    return finite.length ? [Math.min(...finite), Math.max(...finite)] : null;
  }

  function draw(container, options) {
    const series = options.series.filter((s) => s.points.length);
    const xs = extent(series.flatMap((s) => s.points.map((p) => p[0])));
    const ys = extent(series.flatMap((s) => s.points.map((p) => p[1])));
    if (!xs || !ys) return; // nothing finite to draw: whatever the page shows there stays
    let [x0, x1] = xs, [y0, y1] = ys;
    if (x0 === x1) {  // one x value: integer axes (generations) go forward, never below the first
      if (options.integerX) x1 += 1;
      else { x0 -= 1; x1 += 1; }
    }
    const pad = (y1 - y0) * 0.08 || Math.abs(y0) * 0.1 || 1;
    y0 -= pad; y1 += pad;
    const sx = (x) => M.left + ((x - x0) / (x1 - x0)) * (W - M.left - M.right);
    const sy = (y) => H - M.bottom - ((y - y0) / (y1 - y0)) * (H - M.top - M.bottom);

    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg", role: "img" });
    const grid = svg("g", { class: "grid" });
    for (const t of ticks(y0, y1, 5)) {
      grid.append(svg("line", { x1: M.left, x2: W - M.right, y1: sy(t), y2: sy(t) }));
      grid.append(svg("text", { x: M.left - 6, y: sy(t) + 4, "text-anchor": "end" }, label(t)));
    }
    for (const t of ticks(x0, x1, 6, options.integerX)) {
      grid.append(svg("line", { x1: sx(t), x2: sx(t), y1: M.top, y2: H - M.bottom, class: "minor" }));
      grid.append(svg("text", { x: sx(t), y: H - M.bottom + 16, "text-anchor": "middle" }, label(t)));
    }
    root.append(grid);
    root.append(svg("text", { x: (M.left + W - M.right) / 2, y: H - 6, "text-anchor": "middle", class: "axis-title" }, options.xLabel || ""));
    root.append(svg("text", { x: 14, y: (M.top + H - M.bottom) / 2, "text-anchor": "middle", class: "axis-title",
      transform: `rotate(-90 14 ${(M.top + H - M.bottom) / 2})` }, options.yLabel || ""));
    root.append(svg("rect", { x: M.left, y: M.top, width: W - M.left - M.right, height: H - M.top - M.bottom, class: "frame" }));

    let legendX = M.left;
    series.forEach((s) => {
      let d = "", pen = "M";
      for (const [x, y] of s.points) {
        if (y === null || !Number.isFinite(y)) { pen = "M"; continue; }
        d += `${pen}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`;
        pen = "L";
      }
      const attrs = { d, fill: "none", stroke: s.color, "stroke-width": 2 };
      if (s.dashed) attrs["stroke-dasharray"] = "6 4";
      root.append(svg("path", attrs));
      if (s.points.length <= 60 && !s.dashed) {
        for (const [x, y] of s.points) {
          if (y !== null && Number.isFinite(y)) root.append(svg("circle", { cx: sx(x), cy: sy(y), r: 2.5, fill: s.color }));
        }
      }
      root.append(svg("rect", { x: legendX, y: 10, width: 14, height: 4, fill: s.color }));
      const text = svg("text", { x: legendX + 18, y: 16, class: "legend" }, s.label);
      root.append(text);
      legendX += 30 + s.label.length * 7;
    });
    container.replaceChildren(root);
  }

  // ------------------------------------------------------------------ the dashboard's two charts

  const COLORS = { best: "#1f6feb", mean: "#d97706", baseline: "#6b7280", wrong: "#b42318" };
  const points = new Map(); // generation -> {generation, best, mean}
  let axes = { metric: "", baseline: null }; // of the fitness chart, from the latest data

  // The fitness chart from the server's data: a snapshot brings every point, an update its new ones
  // (merged by generation, so a repeated event changes nothing).
  function applySeries(data, complete) {
    if (!data) return;
    if (complete) points.clear();
    data.points.forEach((p) => points.set(p.generation, p));
    axes = { metric: data.metric, baseline: data.baseline };
    drawFitness(document.getElementById("fitness-chart"));
  }

  function drawFitness(container) {
    const gens = [...points.values()].sort((a, b) => a.generation - b.generation);
    if (!container || !gens.length) return; // the page's own text says the chart fills in later
    const labels = container.dataset;
    const lines = [
      { label: labels.bestLabel, color: COLORS.best, points: gens.map((g) => [g.generation, g.best]) },
      { label: labels.meanLabel, color: COLORS.mean, points: gens.map((g) => [g.generation, g.mean]) },
    ];
    if (axes.baseline) {
      // across at least one generation's width, so it shows while only one has finished
      const x0 = gens[0].generation, x1 = Math.max(gens[gens.length - 1].generation, x0 + 1);
      lines.push({ label: `${labels.baselineLabel} (${axes.baseline.loss})`, color: COLORS.baseline, dashed: true,
        points: [[x0, axes.baseline.fitness], [x1, axes.baseline.fitness]] });
    }
    draw(container, { series: lines, xLabel: labels.xLabel, yLabel: axes.metric, integerX: true });
  }

  // Every loss-shape plot inside `root`: its data is the JSON script its data-loss-shape names, its
  // words are its data attributes (both rendered by the server with the panel).
  function drawLossShapes(root) {
    root.querySelectorAll("[data-loss-shape]").forEach((container) => {
      const source = document.getElementById(container.dataset.lossShape);
      const shape = source ? JSON.parse(source.textContent) : null;
      if (!shape) return;
      const labels = container.dataset;
      const lines = shape.residual
        ? [{ label: labels.lossLabel, color: COLORS.best, points: shape.residual.map((r, i) => [r, shape.loss[i]]) }]
        : [{ label: labels.trueLabel, color: COLORS.best, points: shape.p.map((p, i) => [p, shape.loss_true[i]]) },
          { label: labels.wrongLabel, color: COLORS.wrong, points: shape.p.map((p, i) => [p, shape.loss_wrong[i]]) }];
      draw(container, { series: lines, xLabel: labels.xLabel, yLabel: labels.yLabel });
    });
  }

  const dashboard = (window.LflDashboard = window.LflDashboard || {});
  dashboard.chart = { draw, applySeries, drawLossShapes };
})();
