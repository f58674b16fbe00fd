"use strict";
// The rater's page: calibration, then one trial after another; every answer is stored on submit.
//
// Each trial is shown on a "desk": one large viewing area that shows one image at a time, at no less
// than its native size (see layout()), beside the list of images with their score buttons. Holding
// Space, or a mouse button on the viewing area (or on "Original"), shows the original in place of the
// selected image; releasing shows the image again: flipping in place, the usual way to compare a
// reconstruction with its reference. Keys: 1-5 score the selected image, Left/Right select the
// previous/next image, Enter submits once every image has a score (the submit button stays).
//
// This replaces the former loupe: the loupe magnified one spot of down-scaled thumbnails, interpolated
// by the browser; the viewing area now shows every image pixel on whole screen pixels, and the
// magnification buttons enlarge the whole image (the area then scrolls) rather than one spot, with
// the same place kept when flipping or changing images.
const token = window.location.pathname.split("/").pop();
const base = "/api/rater/" + token;
const MAGNIFICATIONS = [1, 2, 3, 4, 6];
const BOTTOM_GAP_PX = 12;   // the viewing area ends this far above the window's bottom edge
const MIN_AREA_PX = 120;    // ... but is never made lower than this (the page then scrolls)
let state = null;
let desk = null;            // the desk on screen (calibration or trial), the target of the keys
let magnification = "fit";  // "fit" or a whole number; kept from one trial to the next, sent nowhere

function show(section) {
  for (const id of ["calibration", "feedback", "trial", "done"]) {
    document.getElementById(id).classList.toggle("hidden", id !== section);
  }
}

function letter(k) { return String.fromCharCode(65 + k); }

function decoded(img) {
  return img.decode().catch(() => { throw new Error("an image could not be loaded: reload the page"); });
}

// Rounded up to Chromium's layout unit (1/64 CSS pixel), so that rounding never takes a device pixel off.
function ceilLayout(px) { return Math.ceil(px * 64 - 1e-6) / 64; }

// A desk over `host`: original {url}, items [{item_id, label, url, score}], the section's submit button.
function createDesk(host, section, original, items, submit) {
  const scores = {};
  let selected = 0, size = null, laidOut = "";
  const holds = new Set();   // what holds the original on screen now: "key", "pointer", "button"

  const image = (url, alt) => el("img", { src: url, alt, draggable: "false", "aria-hidden": "true" });
  const originalImg = image(original.url, "Original");
  const itemImgs = items.map((item) => image(item.url, "Image " + item.label));
  const stack = el("div", { class: "stack" }, [originalImg, ...itemImgs]);
  const stage = el("div", { class: "stage", role: "img", "aria-roledescription": "viewing area" }, [stack]);
  const viewLabel = el("span", { class: "view-label" });
  const scaleInfo = el("span", { class: "scale-info" });
  const notice = el("span", { class: "fit-notice hidden", role: "status" });
  const viewer = el("div", { class: "viewer" }, [el("div", { class: "view-bar" }, [viewLabel, notice, scaleInfo]), stage]);

  const rows = items.map((item, k) => {
    const pick = el("button", { type: "button", class: "pick", "aria-pressed": "false", text: "Image " + item.label });
    pick.addEventListener("click", () => select(k));
    const buttons = [1, 2, 3, 4, 5].map((value) => {
      const b = el("button", { type: "button", class: "score", "data-item": item.item_id, "data-value": String(value),
                               "aria-pressed": "false", text: String(value),
                               title: value + ": " + ((state && state.scale[String(value)]) || "") });
      b.addEventListener("click", () => { select(k); rate(k, value); });
      return b;
    });
    const status = el("span", { class: "row-score", "aria-hidden": "true" });
    const row = el("div", { class: "item-row", "data-item": item.item_id }, [
      pick, el("span", { class: "scores", role: "group", "aria-label": "Score for image " + item.label }, buttons), status]);
    return { row, pick, buttons, status };
  });

  const flip = el("button", { type: "button", class: "flip", text: "Original (hold)",
                              title: "Hold to see the original in place of the selected image (or hold Space)" });
  const zoomButtons = ["fit", ...MAGNIFICATIONS].map((m) => {
    const b = el("button", { type: "button", class: "zoom", "data-zoom": String(m), "aria-pressed": "false",
                             text: m === "fit" ? "Fit" : m + "\u00d7" });
    b.addEventListener("click", () => { magnification = m; layout(); });
    return b;
  });
  const hint = el("p", { class: "hint", role: "status" });
  const keys = el("ul", { class: "keys" }, [
    ["Space", " hold: the original"], ["1", "\u2013", "5", " score the selected image"],
    ["\u2190", " ", "\u2192", " previous / next image"], ["Enter", " submit when all are scored"],
  ].map((parts) => el("li", {}, parts.map((p, i) => (i % 2 === 0 && p.trim() ? el("kbd", { text: p }) : document.createTextNode(p))))));
  const side = el("div", { class: "side" }, [
    el("div", { class: "items" }, rows.map((r) => r.row)), flip,
    el("div", { class: "zooms", role: "group", "aria-label": "Magnification" }, [el("span", { text: "Magnification" }), ...zoomButtons]),
    keys, hint, submit]);
  host.replaceChildren(el("div", { class: "desk" }, [viewer, side]));

  // A mouse click on the desk leaves no button of it focused, so that Enter then submits rather than
  // pressing that button again (Enter presses a focused button; Tab focuses them as usual).
  const unfocus = () => { if (document.activeElement instanceof HTMLElement && host.contains(document.activeElement)) document.activeElement.blur(); };
  for (const b of side.querySelectorAll("button")) b.addEventListener("mousedown", (event) => { event.preventDefault(); unfocus(); });

  // Flipping: press and hold on the viewing area or the "Original" button.
  for (const [target, name] of [[stage, "pointer"], [flip, "button"]]) {
    target.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      const box = stage.getBoundingClientRect();
      if (target === stage && (event.clientX - box.left >= stage.clientWidth || event.clientY - box.top >= stage.clientHeight)) return;  // a scrollbar
      event.preventDefault();
      unfocus();
      target.setPointerCapture(event.pointerId);
      hold(name, true);
    });
    for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) target.addEventListener(type, () => hold(name, false));
  }

  function hold(name, on) {
    if (on) holds.add(name); else holds.delete(name);
    render();
  }

  function releaseAll() { holds.clear(); render(); }

  function select(k) {
    selected = (k + items.length) % items.length;
    hint.textContent = "";
    render();
  }

  function rate(k, value) {
    scores[items[k].item_id] = value;
    hint.textContent = "";
    render();
  }

  function complete() { return items.every((item) => scores[item.item_id] !== undefined); }

  function trySubmit() {
    if (!complete()) {
      const missing = items.findIndex((item) => scores[item.item_id] === undefined);
      select(missing);
      hint.textContent = "Score every image first: image " + items[missing].label + " has no score.";
      return;
    }
    if (!submit.disabled) submit.click();
  }

  function render() {
    const showOriginal = holds.size > 0;
    const current = showOriginal ? originalImg : itemImgs[selected];
    for (const img of [originalImg, ...itemImgs]) {
      img.classList.toggle("current", img === current);
      img.setAttribute("aria-hidden", img === current ? "false" : "true");
    }
    stage.setAttribute("aria-label", current.alt);
    viewer.classList.toggle("showing-original", showOriginal);
    viewLabel.textContent = showOriginal ? "ORIGINAL" : "Image " + items[selected].label;
    flip.setAttribute("aria-pressed", String(showOriginal));
    rows.forEach((r, k) => {
      const score = scores[items[k].item_id];
      r.row.classList.toggle("selected", k === selected);
      r.pick.setAttribute("aria-pressed", String(k === selected));
      r.buttons.forEach((b, i) => b.setAttribute("aria-pressed", String(score === i + 1)));
      r.status.textContent = score === undefined ? "\u2013" : String(score);
    });
    zoomButtons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.zoom === String(magnification))));
    submit.disabled = !complete() || Boolean(submit.dataset.busy);
  }

  // Sizing. An image N pixels wide is drawn on m*N device pixels (the screen's own pixels), m a whole
  // number >= 1: the largest that fits the viewing area ("Fit"), or the rater's choice (the area then
  // scrolls). A CSS pixel is devicePixelRatio device pixels (2 on "Retina" screens, 1.25 or 1.5 with
  // Windows display scaling, and it follows the browser's zoom), so the CSS width is m*N/devicePixelRatio,
  // rounded up to Chromium's layout unit (1/64 CSS px): 128 px at ratio 1.25 is 102.4 CSS px, which
  // would otherwise become 102.390625 px = 127.99 device pixels. A whole magnification with
  // `image-rendering: pixelated` makes every image pixel an m x m block of identical screen pixels: no
  // interpolation by the browser, which would blur (or smooth the blockiness of) the very detail being
  // rated; at m = 1 each image pixel is one screen pixel. The image starts on a whole device pixel (the
  // margins below) so that the blocks are not split across screen pixels. When not even m = 1 fits
  // (a small window), the images are scaled down to fit, smoothly, and the page says so with the
  // percentage. Nothing of this is sent: the viewport and pixel ratio already go with every rating.
  function view() { return [window.devicePixelRatio || 1, window.innerWidth, window.innerHeight].join(" "); }

  function layout() {
    if (!size || stage.offsetParent === null) return;
    laidOut = view();
    const top = stage.getBoundingClientRect().top;
    fit();
    if (stage.getBoundingClientRect().top !== top) fit();   // the notice changed the height of the bar above
    viewer.dataset.view = laidOut;                            // what it was sized for (the browser test waits on it)
    render();
  }

  function fit() {
    const dpr = window.devicePixelRatio || 1;
    const stageTop = stage.getBoundingClientRect().top + window.scrollY;
    stage.style.height = Math.max(MIN_AREA_PX, Math.floor(window.innerHeight - stageTop - BOTTOM_GAP_PX)) + "px";
    const area = stage.getBoundingClientRect();
    const x0 = area.left + window.scrollX, y0 = area.top + window.scrollY;   // CSS pixels of the page
    const left = Math.ceil(x0 * dpr - 1e-6), top = Math.ceil(y0 * dpr - 1e-6);   // the whole device pixels inside
    const areaW = Math.floor((x0 + area.width) * dpr + 1e-6) - left, areaH = Math.floor((y0 + area.height) * dpr + 1e-6) - top;
    const fits = Math.min(areaW / size.w, areaH / size.h);
    const m = magnification === "fit" ? (fits >= 1 ? Math.floor(fits) : fits) : magnification;
    const devW = m >= 1 ? size.w * m : Math.max(1, Math.floor(size.w * m));
    const devH = m >= 1 ? size.h * m : Math.max(1, Math.floor(size.h * m));
    const cssW = ceilLayout(devW / dpr), cssH = ceilLayout(devH / dpr);
    // Centred in the area, starting on a whole device pixel of the page: the margin is rounded up to the
    // layout unit, so the start lies less than devicePixelRatio/64 device pixel past it and snaps onto it.
    const startX = left + Math.max(0, Math.floor((areaW - devW) / 2));
    const startY = top + Math.max(0, Math.floor((areaH - devH) / 2));
    stack.style.marginLeft = ceilLayout(startX / dpr - x0) + "px";
    stack.style.marginTop = ceilLayout(startY / dpr - y0) + "px";
    stage.classList.toggle("scrolls", devW > areaW || devH > areaH);   // a magnification chosen larger than the area
    for (const img of [originalImg, ...itemImgs]) {
      img.style.width = cssW + "px";
      img.style.height = cssH + "px";
      img.classList.toggle("pixelated", m >= 1);
    }
    const percent = Math.floor((100 * devW) / size.w);
    notice.textContent = m < 1 ? "Images are shown at " + percent + "% of their size: enlarge the window." : "";
    notice.classList.toggle("hidden", m >= 1);
    scaleInfo.textContent = m < 1 ? size.w + "\u00d7" + size.h + " px image at " + percent + "%"
      : size.w + "\u00d7" + size.h + " px image, " + (m === 1 ? "native size: 1 image pixel = 1 screen pixel"
                                                             : "1 image pixel = " + m + "\u00d7" + m + " screen pixels");
    zoomButtons[0].textContent = fits >= 1 ? "Fit (" + Math.floor(fits) + "\u00d7)" : "Fit (" + Math.floor(100 * fits) + "%)";
  }

  // Loads every image of the trial before it is shown (flipping is then instant), then sizes them.
  async function ready() {
    await Promise.all([originalImg, ...itemImgs].map(decoded));
    size = { w: originalImg.naturalWidth, h: originalImg.naturalHeight };
    layout();
    viewer.classList.add("loaded");
  }

  for (const item of items) if (item.score) scores[item.item_id] = item.score;
  render();
  return { section, layout, ready, stale: () => size !== null && view() !== laidOut, hold, releaseAll, select: (k) => select(k), next: (d) => select(selected + d),
           rate: (value) => rate(selected, value), trySubmit, scores: () => Object.assign({}, scores) };
}

// -- keys: only for the desk on screen, never while typing in a field, never with Ctrl/Alt/Meta -------------------
function deskKeys(event) {
  if (!desk || document.getElementById(desk.section).classList.contains("hidden")) return null;
  if (event.ctrlKey || event.altKey || event.metaKey || event.isComposing) return null;
  const target = event.target;
  if (target instanceof Element && target.closest("input, select, textarea, [contenteditable]:not([contenteditable=false])")) return null;
  return desk;
}

document.addEventListener("keydown", (event) => {
  const d = deskKeys(event);
  if (!d) return;
  if (event.key === " ") {                       // also stops the page from scrolling and a focused button from firing
    event.preventDefault();
    if (!event.repeat) d.hold("key", true);
  } else if (/^[1-5]$/.test(event.key)) {
    event.preventDefault();
    d.rate(Number(event.key));
  } else if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
    event.preventDefault();
    d.next(event.key === "ArrowRight" ? 1 : -1);
  } else if (event.key === "Enter" && !event.repeat) {
    if (event.target instanceof Element && event.target.closest("button, a")) return;  // Enter presses a focused button
    event.preventDefault();
    d.trySubmit();
  }
});
document.addEventListener("keyup", (event) => {
  if (event.key !== " " || !desk) return;
  if (deskKeys(event)) event.preventDefault();
  desk.hold("key", false);
});
window.addEventListener("blur", () => desk && desk.releaseAll());   // a key released in another window
window.addEventListener("resize", () => desk && desk.layout());
// The pixel ratio also changes without a resize (the window moved to another screen, display scaling
// changed); Chromium does not always tell (no media-query event under emulation), so it is also polled.
setInterval(() => { if (desk && desk.stale()) desk.layout(); }, 500);

async function openDesk(section, original, items, submit) {
  desk = createDesk(document.getElementById(section + "-desk"), section, original, items, submit);
  show(section);
  window.scrollTo(0, 0);
  await desk.ready();
}

function renderCalibration() {
  const items = state.calibration.items.map((item, k) => ({ item_id: item.item_id, label: letter(k), url: item.url }));
  return openDesk("calibration", { url: state.calibration.original }, items, document.getElementById("calibration-submit"));
}

async function submitCalibration() {
  const button = document.getElementById("calibration-submit");
  if (button.dataset.busy) return;
  button.dataset.busy = "1";
  button.disabled = true;
  try {
    const result = await api("POST", base + "/calibration", { scores: desk.scores(), viewport: viewport() });
    const list = document.getElementById("feedback-list");
    list.replaceChildren();
    result.feedback.forEach((f) => {
      const k = state.calibration.items.findIndex((i) => i.item_id === f.item_id);
      list.appendChild(el("li", { text: "Image " + letter(k) + ": you gave " + f.your_score +
        ", expected " + f.expected + ". " + f.explanation }));
    });
    desk = null;
    show("feedback");
    document.getElementById("begin").focus();
  } catch (error) { showError(error.message); button.disabled = false; } finally { delete button.dataset.busy; }
}

async function renderTrial(position) {
  const trial = await api("GET", base + "/trials/" + position);
  document.getElementById("progress").textContent = "Trial " + position + " of " + trial.n_trials;
  const button = document.getElementById("trial-submit");
  button.dataset.position = String(position);
  await openDesk("trial", { url: trial.original }, trial.items, button);
  button.dataset.shownAt = String(performance.now());
}

async function submitTrial() {
  const button = document.getElementById("trial-submit");
  if (button.dataset.busy) return;
  button.dataset.busy = "1";
  button.disabled = true;
  try {
    const result = await api("POST", base + "/trials/" + button.dataset.position,
                             { scores: desk.scores(), viewport: viewport(),
                               trial_seconds: (performance.now() - Number(button.dataset.shownAt)) / 1000 });
    showError("");
    if (result.next_position === null) { desk = null; show("done"); } else await renderTrial(result.next_position);
  } catch (error) { showError(error.message); button.disabled = false; } finally { delete button.dataset.busy; }
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
    if (!state.calibrated) await renderCalibration();
    else if (state.next_position === null) show("done");
    else await renderTrial(state.next_position);
  } catch (error) { showError(error.message); }
})();
