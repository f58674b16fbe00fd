"use strict";
(async function () {
  try {
    const study = await api("GET", "/api/study");
    document.getElementById("title").textContent = study.title;
    const table = document.getElementById("scale");
    for (const [value, label] of Object.entries(study.scale)) {
      table.appendChild(el("tr", {}, [el("td", { text: value }), el("td", { text: label })]));
    }
    if (study.enrolment === "invite") {
      document.getElementById("enrol").classList.add("hidden");
      document.getElementById("invite").classList.remove("hidden");
    }
  } catch (error) { showError(error.message); }
  document.getElementById("enrol").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = document.getElementById("start");
    button.disabled = true;
    try {
      const rater = await api("POST", "/api/raters", { alias: document.getElementById("alias").value.trim() });
      window.location.assign(rater.link);
    } catch (error) { showError(error.message); button.disabled = false; }
  });
})();
