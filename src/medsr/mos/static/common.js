"use strict";
// Shared by every page: JSON API calls, error display, and the narrow-screen warning.
const NARROW_PX = 1024;

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.classList.toggle("hidden", !message);
}

async function api(method, path, body, headers) {
  const options = { method, headers: Object.assign({ "Content-Type": "application/json" }, headers || {}) };
  if (body !== undefined) options.body = JSON.stringify(body);
  const response = await fetch(path, options);
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("application/json") ? await response.json() : await response.text();
  if (!response.ok) {
    const detail = data && data.detail ? (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)) : response.statusText;
    throw new Error(detail);
  }
  return data;
}

function viewport() {
  return { width: window.innerWidth, height: window.innerHeight, device_pixel_ratio: window.devicePixelRatio || 1 };
}

function checkScreen() {
  const banner = document.getElementById("narrow");
  if (banner) banner.classList.toggle("hidden", window.innerWidth >= NARROW_PX);
}
window.addEventListener("resize", checkScreen);
window.addEventListener("DOMContentLoaded", checkScreen);

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value; else node.setAttribute(key, value);
  }
  for (const child of children || []) node.appendChild(child);
  return node;
}
