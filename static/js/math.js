/* Render every <span class="math" data-latex="..."> on the page with KaTeX (text stays as fallback). */
(function () {
  "use strict";
  if (!window.katex) return;
  document.querySelectorAll(".math[data-latex]").forEach((span) => {
    const latex = span.getAttribute("data-latex");
    if (latex) {
      try { window.katex.render(latex, span, { throwOnError: false }); } catch (e) { /* keep the text */ }
    }
  });
})();
