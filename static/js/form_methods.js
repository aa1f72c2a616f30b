// The new-experiment form shows the chosen method's fields only. Every section and field that
// not all methods read says which do (data-methods="evomal gplfl"); this script hides those the
// checked method is not among, whenever the choice changes. Without it every section stays in
// view, each naming its methods, and the server ignores the fields of the methods not chosen.
(() => {
  const form = document.querySelector("form.experiment-form");
  if (!form) return;
  const tagged = form.querySelectorAll("[data-methods]");
  function show() {
    const checked = form.querySelector("input[name=method]:checked");
    const method = checked ? checked.value : form.dataset.method;
    for (const element of tagged) element.hidden = !element.dataset.methods.split(" ").includes(method);
    form.dataset.method = method;
  }
  form.addEventListener("change", (event) => {
    if (event.target.name === "method") show();
  });
  form.classList.add("by-method");  // the stylesheet drops the "... only" notes: what shows is the method's
  show();
})();
