"use strict";
// The rater's page: calibration, then one trial after another; every answer is stored on submit.
const token = window.location.pathname.split("/").pop();
const base = "/api/rater/" + token;
let state = null;

function show(section) {
  for (const id of ["calibration", "feedback", "trial", "done"]) {
    document.getElementById(id).classList.toggle("hidden", id !== section);
  }
}

function card(title, url, reference) {
  const img = el("img", { src: url, alt: title, draggable: "false" });
  const frame = el("div", { class: "frame" }, [img, el("div", { class: "loupe" })]);
  return el("div", { class: "card" + (reference ? " reference" : "") }, [el("h3", { text: title }), frame]);
}

function scoreInputs(itemId, onChange, current) {
  const row = el("div", { class: "score", role: "radiogroup", "aria-label": "score" });
  for (let value = 1; value <= 5; value++) {
    const input = el("input", { type: "radio", name: itemId, value: String(value), "data-item": itemId });
    if (current === value) input.checked = true;
    input.addEventListener("change", onChange);
    row.appendChild(el("label", {}, [input, el("span", { text: String(value) })]));
  }
  return row;
}

function collect(grid) {
  const scores = {};
  for (const input of grid.querySelectorAll("input[type=radio]:checked")) scores[input.dataset.item] = Number(input.value);
  return scores;
}

// The loupe: the same spot of every image of the grid, magnified, follows the mouse.
function attachLoupe(grid) {
  const frames = Array.from(grid.querySelectorAll(".frame"));
  const hide = () => frames.forEach((f) => { f.querySelector(".loupe").style.display = "none"; });
  for (const frame of frames) {
    frame.addEventListener("mouseleave", hide);
    frame.addEventListener("mousemove", (event) => {
      if (!document.getElementById("loupe-on").checked) return hide();
      const zoom = Number(document.getElementById("zoom").value);
      const box = frame.getBoundingClientRect();
      const fx = (event.clientX - box.left) / box.width, fy = (event.clientY - box.top) / box.height;
      for (const other of frames) {
        const img = other.querySelector("img"), loupe = other.querySelector(".loupe");
        const w = img.clientWidth, h = img.clientHeight, size = loupe.offsetWidth || 140;
        loupe.style.display = "block";
        loupe.style.backgroundImage = "url(" + img.src + ")";
        loupe.style.backgroundSize = (w * zoom) + "px " + (h * zoom) + "px";
        loupe.style.left = (fx * w - size / 2) + "px";
        loupe.style.top = (fy * h - size / 2) + "px";
        loupe.style.backgroundPosition = (size / 2 - fx * w * zoom) + "px " + (size / 2 - fy * h * zoom) + "px";
      }
    });
  }
}

function renderCalibration() {
  const grid = document.getElementById("calibration-grid");
  grid.replaceChildren(card("Original", state.calibration.original, true));
  const button = document.getElementById("calibration-submit");
  const update = () => { button.disabled = Object.keys(collect(grid)).length !== state.calibration.items.length; };
  state.calibration.items.forEach((item, k) => {
    const c = card("Image " + String.fromCharCode(65 + k), item.url, false);
    c.appendChild(scoreInputs(item.item_id, update));
    grid.appendChild(c);
  });
  attachLoupe(grid);
  show("calibration");
}

async function submitCalibration() {
  const button = document.getElementById("calibration-submit");
  button.disabled = true;
  try {
    const result = await api("POST", base + "/calibration", { scores: collect(document.getElementById("calibration-grid")), viewport: viewport() });
    const list = document.getElementById("feedback-list");
    list.replaceChildren();
    result.feedback.forEach((f) => {
      const k = state.calibration.items.findIndex((i) => i.item_id === f.item_id);
      list.appendChild(el("li", { text: "Image " + String.fromCharCode(65 + k) + ": you gave " + f.your_score +
        ", expected " + f.expected + ". " + f.explanation }));
    });
    show("feedback");
  } catch (error) { showError(error.message); button.disabled = false; }
}

async function renderTrial(position) {
  const trial = await api("GET", base + "/trials/" + position);
  document.getElementById("progress").textContent = "Trial " + position + " of " + trial.n_trials;
  const grid = document.getElementById("trial-grid");
  grid.replaceChildren(card("Original", trial.original, true));
  const button = document.getElementById("trial-submit");
  const update = () => { button.disabled = Object.keys(collect(grid)).length !== trial.items.length; };
  for (const item of trial.items) {
    const c = card(item.label, item.url, false);
    c.appendChild(scoreInputs(item.item_id, update, item.score));
    grid.appendChild(c);
  }
  attachLoupe(grid);
  update();
  button.dataset.position = String(position);
  button.dataset.shownAt = String(performance.now());
  show("trial");
  window.scrollTo(0, 0);
}

async function submitTrial() {
  const button = document.getElementById("trial-submit");
  button.disabled = true;
  try {
    const result = await api("POST", base + "/trials/" + button.dataset.position,
                             { scores: collect(document.getElementById("trial-grid")), viewport: viewport(),
                               trial_seconds: (performance.now() - Number(button.dataset.shownAt)) / 1000 });
    showError("");
    if (result.next_position === null) show("done"); else await renderTrial(result.next_position);
  } catch (error) { showError(error.message); button.disabled = false; }
}

(async function () {
  document.getElementById("resume").textContent = window.location.href;
  document.getElementById("calibration-submit").addEventListener("click", submitCalibration);
  document.getElementById("trial-submit").addEventListener("click", submitTrial);
  try {
    state = await api("GET", base);
    document.getElementById("who").textContent = "(" + state.alias + ")";
    document.getElementById("scale-line").textContent = Object.entries(state.scale).map(([v, l]) => v + " = " + l).join("; ");
    document.getElementById("begin").addEventListener("click", () => {
      if (state.next_position === null) show("done"); else renderTrial(state.next_position).catch((e) => showError(e.message));
    });
    if (!state.calibrated) renderCalibration();
    else if (state.next_position === null) show("done");
    else await renderTrial(state.next_position);
  } catch (error) { showError(error.message); }
})();
