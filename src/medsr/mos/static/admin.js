"use strict";
// The organiser's page: progress, invitations, results and the CSV export (all need the admin token).
function auth() { return { Authorization: "Bearer " + sessionStorage.getItem("medsr-admin-token") }; }
const fmt = (x, d) => (x === null || x === undefined ? "-" : Number(x).toFixed(d === undefined ? 2 : d));

function table(node, header, rows) {
  node.replaceChildren(el("tr", {}, header.map((h) => el("th", { text: h }))));
  for (const row of rows) node.appendChild(el("tr", {}, row.map((c) => el("td", { text: String(c) }))));
}

async function refresh() {
  try {
    const progress = await api("GET", "/api/admin/progress", undefined, auth());
    table(document.getElementById("raters"), ["#", "alias", "ratings", "complete", "link"],
      progress.raters.map((r) => [r.rater_id, r.alias, r.ratings + "/" + progress.ratings_per_rater, r.complete ? "yes" : "no",
                                  window.location.origin + r.link]));
    const results = await api("GET", "/api/admin/results", undefined, auth());
    const box = document.getElementById("results");
    box.replaceChildren();
    for (const [key, title] of [["all_raters", "All raters"], ["without_flagged", "Without flagged raters"]]) {
      const block = results[key];
      box.appendChild(el("h3", { text: title + " (" + block.n_raters + " raters)" }));
      const t = el("table", { class: "data" });
      table(t, ["method", "MOS", "95% CI", "vs " + results.study.baseline],
        Object.entries(block.methods).map(([m, v]) => [m, fmt(v.mos), "[" + fmt(v.ci_low) + ", " + fmt(v.ci_high) + "]",
          block.vs_baseline[m] ? fmt(block.vs_baseline[m].improvement_pct, 1) + "%" : "-"]));
      box.appendChild(t);
    }
    const flagged = results.raters.filter((r) => r.flagged).map((r) => r.alias + ": " + r.reasons.join("; "));
    box.appendChild(el("p", { text: "Flagged raters: " + (flagged.length ? flagged.join(" | ") : "none") }));
    document.getElementById("login").classList.add("hidden");
    document.getElementById("dashboard").classList.remove("hidden");
    showError("");
  } catch (error) { showError(error.message); }
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("medsr-admin-token", document.getElementById("token").value);
  refresh();
});
document.getElementById("refresh").addEventListener("click", refresh);
document.getElementById("invite").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const rater = await api("POST", "/api/admin/raters", { alias: document.getElementById("alias").value.trim() }, auth());
    document.getElementById("new-link").textContent = window.location.origin + rater.link;
    refresh();
  } catch (error) { showError(error.message); }
});
document.getElementById("csv").addEventListener("click", async () => {
  const response = await fetch("/api/admin/ratings.csv", { headers: auth() });
  if (!response.ok) return showError("export failed: " + response.status);
  const link = el("a", { href: URL.createObjectURL(await response.blob()), download: "ratings.csv" });
  document.body.appendChild(link); link.click(); link.remove();
});
if (sessionStorage.getItem("medsr-admin-token")) refresh();
