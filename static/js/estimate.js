// The new-experiment form's work estimate, kept current: on each change the form's values (not its
// file) go to the estimate endpoint, whose rendered panel replaces the old one. Every sentence lives
// in the server's template; this script only carries it.
(() => {
  const form = document.querySelector("form.experiment-form");
  const panel = document.querySelector("#work-estimate .estimate-body");
  if (!form || !panel) return;
  const url = document.getElementById("work-estimate").dataset.url;
  let timer = null;
  let latest = 0;
  const box = document.getElementById("work-estimate");
  async function refresh() {
    const asked = ++latest;
    const values = new FormData(form);
    values.delete("data_file");
    try {
      const response = await fetch(url, {method: "POST", body: values, credentials: "same-origin"});
      if (response.ok && asked === latest) panel.innerHTML = await response.text();
    } finally {
      if (asked === latest) delete box.dataset.pending;  // the panel shows the current values again
    }
  }
  function soon() {
    box.dataset.pending = "1";  // the panel may still change size (a test waits for this to go)
    clearTimeout(timer);
    timer = setTimeout(() => refresh().catch(() => {}), 250);
  }
  form.addEventListener("input", soon);
  form.addEventListener("change", soon);
})();
