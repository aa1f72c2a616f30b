/* KaTeX for every <span class="math" data-latex="..."> (the text stays as the fallback).
 *
 * LflMath.renderIn(root) renders those inside `root`. The whole page is rendered on load, unless
 * the script tag says data-manual (the dashboard renders each fragment itself, once it has noted
 * what the server sent). Rendered formulas are kept by their LaTeX, because a live table shows the
 * same formulas again on every update.
 */
(function () {
  "use strict";

  const CACHE_LIMIT = 2000;
  const rendered = new Map(); // latex -> KaTeX's HTML

  function html(latex) {
    if (!rendered.has(latex)) {
      if (rendered.size >= CACHE_LIMIT) rendered.clear();
      rendered.set(latex, window.katex.renderToString(latex, { throwOnError: false }));
    }
    return rendered.get(latex);
  }

  function renderIn(root) {
    if (!window.katex) return;
    root.querySelectorAll(".math[data-latex]").forEach((span) => {
      const latex = span.getAttribute("data-latex");
      if (latex) {
        try { span.innerHTML = html(latex); } catch (e) { /* keep the text */ }
      }
    });
  }

  window.LflMath = { renderIn };
  const script = document.currentScript;
  if (!script || !script.hasAttribute("data-manual")) renderIn(document);
})();
