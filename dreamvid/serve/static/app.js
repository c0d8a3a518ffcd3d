// dreamvid studio: the live dream over a WebSocket (binary JPEG frames onto a canvas), training jobs, runs.
"use strict";

const SPEEDS = [0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6];
const $ = (id) => document.getElementById(id);
const state = {
  ws: null, runs: [], run: null, runInfo: null, paused: false, version: 0,
  pendingChange: null, decoding: false, pendingFrame: null, retry: 0,
  info: null, jobsTimer: null, lastJobsKey: "", full: false,
};
// Read by the browser tests and handy in the console.
// With `trace` on, a checksum of every drawn frame is kept by "version:frame number in the dream" (last 600).
window.dreamvid = { framesDrawn: 0, lastVersion: 0, sentVersion: 0, lastIndex: 0, lastLatencyMs: null,
                    latencies: [], bytes: 0, ready: false, trace: false, checksums: new Map() };

// ---------- helpers ----------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function showError(message) {
  $("error-text").textContent = message;
  $("error-banner").hidden = false;
}
function clearError() { $("error-banner").hidden = true; }

async function api(path, options = {}) {
  const init = Object.assign({}, options);
  if (init.method && init.method !== "GET") init.headers = Object.assign({ "X-Dreamvid": "1" }, init.headers || {});
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new Error("the studio server cannot be reached");
  }
  let body = null;
  try { body = await response.json(); } catch (err) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || `request failed (${response.status})`);
  return body;
}

function fmtSeconds(s) {
  if (s === null || s === undefined || !isFinite(s)) return "";
  s = Math.max(0, Math.round(s));
  const m = Math.floor(s / 60), r = s % 60;
  return m ? `${m} min ${String(r).padStart(2, "0")} s` : `${r} s`;
}
function fmtBytes(n) {
  const units = ["bytes", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i ? `${n.toFixed(1)} ${units[i]}` : `${n} bytes`;
}

// ---------- live dream ----------
const canvas = $("dream");
const ctx = canvas.getContext("2d", { alpha: false });

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/ws/dream`);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  setConnection("connecting…", "");
  ws.onopen = () => {
    state.retry = 0;
    setConnection("live", "live");
    if (state.run) startRun(state.run);
  };
  ws.onmessage = (event) => {
    if (typeof event.data === "string") onEvent(JSON.parse(event.data));
    else onFrame(event.data);
  };
  ws.onclose = () => {
    setConnection(state.full ? "studio full – retrying" : "disconnected – retrying", "down");
    state.full = false;
    window.dreamvid.ready = false;
    const delay = Math.min(5000, 500 * 2 ** state.retry++);
    setTimeout(connect, delay);
  };
  ws.onerror = () => {};  // onclose follows and retries
}

function setConnection(text, cls) {
  const pill = $("connection");
  pill.textContent = text;
  pill.className = "pill " + cls;
}

function send(message) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(message));
    return true;
  }
  return false;
}

// A control that changes the picture carries a new version; the first frame with that version shows it.
function sendChange(message) {
  state.version += 1;
  message.v = state.version;
  window.dreamvid.sentVersion = state.version;
  state.pendingChange = { v: state.version, t: performance.now() };
  send(message);
}

function currentSpeed() { return SPEEDS[Number($("speed").value)] || 1; }

function startRun(runId) {
  state.run = runId;
  $("run-select").value = runId;
  state.version += 1;
  window.dreamvid.sentVersion = state.version;
  state.pendingChange = null;  // loading a run is not a control's latency
  send({ type: "start", run: runId, temperature: Number($("temperature").value), speed: currentSpeed(),
         paused: state.paused, reproject: $("reproject").checked, v: state.version });
  $("screen-note").textContent = "loading the run…";
  highlightCurrent();
}

function onFrame(buffer) {
  const view = new DataView(buffer);
  const version = view.getUint32(4, true);
  const index = view.getUint32(8, true);
  window.dreamvid.bytes += buffer.byteLength;
  const blob = new Blob([new Uint8Array(buffer, 12)], { type: "image/jpeg" });
  // Keep only the newest undecoded frame: if decoding lags, older frames are skipped, never queued.
  state.pendingFrame = { blob, version, index };
  if (!state.decoding) drawNext();
}

async function drawNext() {
  const item = state.pendingFrame;
  if (!item) return;
  state.pendingFrame = null;
  state.decoding = true;
  try {
    const bitmap = await createImageBitmap(item.blob);
    if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
      canvas.width = bitmap.width; canvas.height = bitmap.height;
    }
    ctx.drawImage(bitmap, 0, 0);
    bitmap.close();
    const d = window.dreamvid;
    d.framesDrawn += 1;
    d.lastVersion = item.version;
    d.lastIndex = item.index;
    if (d.trace) {
      const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      let h = 2166136261;
      for (let i = 0; i < data.length; i++) h = Math.imul(h ^ data[i], 16777619);
      d.checksums.set(`${item.version}:${item.index}`, h >>> 0);
      if (d.checksums.size > 600) d.checksums.delete(d.checksums.keys().next().value);
    }
    if (state.pendingChange && item.version >= state.pendingChange.v) {
      d.lastLatencyMs = performance.now() - state.pendingChange.t;
      d.latencies.push(d.lastLatencyMs);
      if (d.latencies.length > 50) d.latencies.shift();
      state.pendingChange = null;
    }
    countFps();
  } catch (err) {
    // a frame that does not decode is skipped
  } finally {
    state.decoding = false;
    if (state.pendingFrame) drawNext();
  }
}

const fpsWindow = [];
function countFps() {
  const now = performance.now();
  fpsWindow.push(now);
  while (fpsWindow.length && now - fpsWindow[0] > 1000) fpsWindow.shift();
}

let serverStats = null;
function renderStats() {
  const d = window.dreamvid;
  const parts = [`${fpsWindow.length} fps shown`];
  if (serverStats) {
    parts.push(`target ${serverStats.target_fps}`);
    if (serverStats.model_fps) parts.push(`model up to ~${Math.round(serverStats.model_fps)} fps`);
    parts.push(`${serverStats.dropped} dropped`);
  }
  if (d.lastLatencyMs !== null) parts.push(`last control → screen ${Math.round(d.lastLatencyMs)} ms`);
  $("stats").textContent = parts.join(" · ");
}
setInterval(renderStats, 500);

function onEvent(event) {
  switch (event.type) {
    case "ready": {
      state.runInfo = event;
      window.dreamvid.ready = true;
      $("screen-note").textContent = state.paused ? "paused" : "";
      const frame = $("reseed-frame");
      frame.max = Math.max(0, event.frames - 1);
      if (Number(frame.value) > event.frames - 1) frame.value = 0;
      $("reseed-frame-value").textContent = frame.value;
      if (event.temperature) setTemperatureDisplay(event.temperature);
      updateSpeedLabel();
      if ($("reseed-panel").open) updateThumb();
      break;
    }
    case "stats": serverStats = event; break;
    case "recording":
      $("record-status").textContent = `recording ${event.seconds} s (${event.frames} frames)…`;
      break;
    case "recorded": {
      $("record-status").textContent = "recording saved:";
      $("record").disabled = false;
      const link = el("a", { href: event.url, download: event.name, text: event.name });
      $("recordings").prepend(el("li", {}, link));
      refreshRuns();
      break;
    }
    case "full":
      state.full = true;
      showError(event.message);
      break;
    case "error":
      $("record").disabled = false;
      if (event.run && event.run === state.run) $("screen-note").textContent = event.message;
      showError(event.message);
      break;
    default: break;
  }
}

function setTemperatureDisplay(t) {
  $("temperature").value = t;
  $("temperature-value").textContent = Number(t).toFixed(2);
}

function updateSpeedLabel() {
  const s = currentSpeed();
  const fps = state.runInfo ? ` (${Math.round(state.runInfo.fps * s * 10) / 10} fps)` : "";
  $("speed-value").textContent = `${s}×${fps}`;
}

let thumbTimer = null;
function updateThumb() {
  clearTimeout(thumbTimer);
  thumbTimer = setTimeout(() => {
    if (!state.run || !state.runInfo) return;
    const img = $("reseed-thumb");
    img.src = `/api/runs/${state.run}/frames/${$("reseed-frame").value}`;
    img.hidden = false;
  }, 120);
}

function wireControls() {
  $("temperature").addEventListener("input", (e) => {
    $("temperature-value").textContent = Number(e.target.value).toFixed(2);
    sendChange({ type: "set", temperature: Number(e.target.value) });
  });
  $("speed").addEventListener("input", () => {
    updateSpeedLabel();
    send({ type: "set", speed: currentSpeed() });
  });
  $("pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("pause").textContent = state.paused ? "Play" : "Pause";
    $("screen-note").textContent = state.paused ? "paused" : "";
    sendChange({ type: "pause", paused: state.paused });
  });
  $("reproject").addEventListener("change", (e) => sendChange({ type: "set", reproject: e.target.checked }));
  $("reseed-random").addEventListener("click", () => sendChange({ type: "reseed" }));
  $("reseed-frame").addEventListener("input", (e) => {
    $("reseed-frame-value").textContent = e.target.value;
    updateThumb();
  });
  $("reseed-panel").addEventListener("toggle", () => { if ($("reseed-panel").open) updateThumb(); });
  $("reseed-from-frame").addEventListener("click", () => {
    const seed = $("reseed-seed").value.trim();
    if (seed && !/^\d+$/.test(seed)) { showError("the seed must be a whole number, or blank for a random one"); return; }
    sendChange({ type: "reseed", frame_index: Number($("reseed-frame").value), seed: seed ? Number(seed) : null });
  });
  $("record").addEventListener("click", () => {
    const seconds = Number($("record-seconds").value);
    if (!(seconds >= 1 && seconds <= 120)) { showError("record between 1 and 120 seconds"); return; }
    if (send({ type: "record", seconds })) $("record").disabled = true;
  });
  $("crisp").addEventListener("change", (e) => canvas.classList.toggle("crisp", e.target.checked));
  $("run-select").addEventListener("change", (e) => { if (e.target.value) startRun(e.target.value); });
  $("error-close").addEventListener("click", clearError);
}

// ---------- runs ----------
async function refreshRuns() {
  let data;
  try { data = await api("/api/runs"); } catch (err) { showError(err.message); return; }
  const key = JSON.stringify(data.runs);
  const changed = key !== state.runsKey;
  state.runsKey = key;
  state.runs = data.runs;
  const select = $("run-select");
  const ready = state.runs.filter((r) => r.status === "ready");
  if (changed) select.replaceChildren(...(ready.length ? ready.map((r) => el("option", { value: r.id, text: r.name }))
                                          : [el("option", { value: "", text: "no trained run yet" })]));
  if (state.run && ready.some((r) => r.id === state.run)) select.value = state.run;
  else if (ready.length && (!state.run || !ready.some((r) => r.id === state.run))) {
    if (!state.run) startRun(ready[0].id);
  }
  if (!ready.length) $("screen-note").textContent = "no trained run yet – train one below";
  if (changed) renderGallery();
}

function highlightCurrent() {
  for (const card of document.querySelectorAll(".card")) card.classList.toggle("current", card.dataset.run === state.run);
}

function renderGallery() {
  const gallery = $("gallery");
  if (!state.runs.length) {
    gallery.replaceChildren(el("p", { class: "empty", text: "No runs yet. Upload a video above to train one." }));
    return;
  }
  gallery.replaceChildren(...state.runs.map((run) => {
    const meta = [run.preset, run.size ? `${run.size}px` : null, run.fps ? `${run.fps} fps` : null]
      .filter(Boolean).join(" · ");
    const dreams = run.dreams.length
      ? el("ul", { class: "links" }, ...run.dreams.map((d) =>
          el("li", {}, el("a", { href: d.url, download: d.name, text: d.name }), ` ${fmtBytes(d.bytes)}`)))
      : null;
    return el("div", { class: "card" + (run.id === state.run ? " current" : ""), "data-run": run.id },
      run.preview ? el("img", { src: run.preview, alt: `preview of ${run.name}`, loading: "lazy" }) : null,
      el("div", { class: "title", text: run.name }),
      el("div", { class: "muted", text: `${meta}${meta ? " · " : ""}${run.status}` }),
      el("div", { class: "buttons" },
        run.status === "ready" ? el("button", { type: "button", text: "Dream", onclick: () => startRun(run.id) }) : null,
        run.report ? el("a", { href: run.report, target: "_blank", rel: "noopener", text: "Eval report" }) : null),
      dreams);
  }));
}

// ---------- training ----------
async function loadInfo() {
  const info = await api("/api/info");
  state.info = info;
  $("upload-preset").replaceChildren(...info.presets.map((p) => el("option", { value: p, text: p, selected: p === info.default_preset })));
  $("upload-size").replaceChildren(...info.sizes.map((s) => el("option", { value: s, text: `${s} px`, selected: s === info.default_size })));
  $("upload-limit").textContent = `Up to ${info.max_upload} per video. Runs are saved in ${info.runs_dir}.`;
}

function trainError(message) {
  const box = $("train-error");
  box.textContent = message;
  box.hidden = !message;
}

function upload(event) {
  event.preventDefault();
  trainError("");
  const file = $("upload-file").files[0];
  if (!file) { trainError("choose a video file first"); return; }
  if (state.info && file.size > state.info.max_upload_bytes) {
    trainError(`${file.name} is ${fmtBytes(file.size)}, over the ${state.info.max_upload} upload limit`);
    return;
  }
  const params = new URLSearchParams({
    filename: file.name, name: $("upload-name").value.trim(), preset: $("upload-preset").value,
    size: $("upload-size").value, minutes: $("upload-minutes").value,
  });
  const xhr = new XMLHttpRequest();
  const bar = $("upload-progress");
  bar.hidden = false; bar.value = 0;
  $("upload-submit").disabled = true;
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; };
  xhr.onload = () => {
    $("upload-submit").disabled = false;
    bar.hidden = true;
    let body = null;
    try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
    if (xhr.status >= 200 && xhr.status < 300) {
      $("upload-form").reset();
      loadInfoDefaults();
      refreshJobs();
    } else {
      trainError((body && body.error) || `the upload failed (${xhr.status})`);
    }
  };
  xhr.onerror = () => {
    $("upload-submit").disabled = false;
    bar.hidden = true;
    trainError("the upload did not reach the server (connection lost or file too large)");
  };
  xhr.open("POST", `/api/upload?${params}`);
  xhr.setRequestHeader("X-Dreamvid", "1");
  xhr.setRequestHeader("Content-Type", "application/octet-stream");
  xhr.send(file);
}

function loadInfoDefaults() {
  if (!state.info) return;
  $("upload-preset").value = state.info.default_preset;
  $("upload-size").value = state.info.default_size;
}

const jobNodes = new Map();
async function refreshJobs() {
  let data;
  try { data = await api("/api/jobs"); } catch (err) { scheduleJobs(5000); return; }
  const jobs = data.jobs.slice().reverse();
  const container = $("jobs");
  const seen = new Set();
  let active = false, finishedNow = false;
  for (const job of jobs) {
    seen.add(job.id);
    let node = jobNodes.get(job.id);
    if (!node) { node = makeJobNode(job); jobNodes.set(job.id, node); }
    const wasActive = node.dataset.state === "running" || node.dataset.state === "cancelling" || node.dataset.state === "queued";
    if (wasActive && job.state === "done") finishedNow = true;
    updateJobNode(node, job);
    if (["queued", "running", "cancelling"].includes(job.state)) active = true;
  }
  for (const [id, node] of jobNodes) if (!seen.has(id)) { node.remove(); jobNodes.delete(id); }
  container.replaceChildren(...jobs.map((j) => jobNodes.get(j.id)));
  if (finishedNow) refreshRuns();
  scheduleJobs(active ? 1000 : 5000);
}

function scheduleJobs(ms) {
  clearTimeout(state.jobsTimer);
  state.jobsTimer = setTimeout(refreshJobs, ms);
}

function makeJobNode(job) {
  const node = el("div", { class: "job", "data-job": job.id });
  node.innerHTML = "";
  node.append(
    el("div", { class: "job-head" },
      el("strong", { text: job.name }), el("span", { class: "job-state" }), el("span", { class: "muted job-detail" })),
    el("div", { class: "buttons" },
      el("button", { type: "button", class: "job-cancel", text: "Cancel", onclick: () => jobAction(job.id, "cancel") }),
      el("button", { type: "button", class: "job-resume", text: "Resume", onclick: () => jobAction(job.id, "resume") }),
      el("button", { type: "button", class: "job-remove", text: "Remove", onclick: () => jobAction(job.id, "remove") })),
    el("progress", { class: "job-progress", max: 1, value: 0 }),
    el("div", { class: "error job-error", hidden: true }),
    el("div", { class: "job-body" },
      el("canvas", { class: "curves", width: 360, height: 140 }),
      el("img", { class: "preview", alt: "reconstruction and dream preview", hidden: true })));
  return node;
}

function updateJobNode(node, job) {
  node.dataset.state = job.state;
  const stateEl = node.querySelector(".job-state");
  stateEl.textContent = job.state;
  stateEl.className = `job-state ${job.state}`;
  const p = job.progress || {};
  const details = [`${job.preset}, ${job.size} px, ${job.minutes} min`, `from ${job.source}`];
  const fraction = p.fraction !== undefined && p.fraction !== null ? p.fraction : (p.total ? p.done / p.total : null);
  if (job.state === "running" && !p.stage) details.push("starting…");
  if (job.state === "running" && p.stage) {
    details.push(`${p.stage} stage${fraction !== null ? ` ${Math.round(100 * fraction)}%` : ""}`);
    if (p.eta_s !== null && p.eta_s !== undefined) details.push(`about ${fmtSeconds(p.eta_s)} left`);
  }
  node.querySelector(".job-detail").textContent = details.join(" · ");
  const bar = node.querySelector(".job-progress");
  bar.hidden = !["running", "cancelling"].includes(job.state);
  if (fraction !== null) bar.value = Math.min(1, fraction); else bar.removeAttribute("value");
  const err = node.querySelector(".job-error");
  err.textContent = job.error || "";
  err.hidden = !job.error;
  node.querySelector(".job-cancel").hidden = !["queued", "running"].includes(job.state);
  node.querySelector(".job-remove").hidden = ["queued", "running", "cancelling"].includes(job.state);
  node.querySelector(".job-resume").hidden = !["cancelled", "interrupted", "failed"].includes(job.state);
  const img = node.querySelector("img.preview");
  if (job.preview && img.getAttribute("src") !== job.preview) { img.src = job.preview; img.hidden = false; }
  const canvasEl = node.querySelector("canvas.curves");
  if (job.state !== "queued") {
    const key = `${job.state}:${p.fraction}:${p.step}:${p.epoch}:${p.stage}`;
    if (node.dataset.curveKey !== key) {
      node.dataset.curveKey = key;
      api(`/api/jobs/${job.id}/log`).then((d) => drawCurves(canvasEl, d.curves)).catch(() => {});
    }
  }
  canvasEl.hidden = job.state === "queued";
}

function drawCurves(c, curves) {
  const g = c.getContext("2d");
  g.fillStyle = "#12141b"; g.fillRect(0, 0, c.width, c.height);
  const stages = Object.keys(curves || {}).filter((s) => curves[s].train.length || curves[s].val.length);
  if (!stages.length) {
    g.fillStyle = "#8d94a6"; g.font = "12px sans-serif"; g.fillText("loss curves appear once training logs", 10, 20);
    return;
  }
  const w = c.width / stages.length;
  stages.forEach((stage, i) => {
    const { train, val } = curves[stage];
    const all = train.concat(val).map((p) => p[1]).filter((v) => v > 0);
    const xs = train.concat(val).map((p) => p[0]);
    const lo = Math.log(Math.min(...all)), hi = Math.log(Math.max(...all));
    const x0 = Math.min(...xs), x1 = Math.max(...xs);
    const px = (x) => i * w + 8 + (w - 16) * (x1 > x0 ? (x - x0) / (x1 - x0) : 0.5);
    const py = (y) => 22 + (c.height - 32) * (hi > lo ? 1 - (Math.log(y) - lo) / (hi - lo) : 0.5);
    for (const [points, color] of [[train, "#8fb3ff"], [val, "#ffb86b"]]) {
      g.strokeStyle = color; g.lineWidth = 1.5; g.beginPath();
      points.filter((p) => p[1] > 0).forEach((p, j) => (j ? g.lineTo(px(p[0]), py(p[1])) : g.moveTo(px(p[0]), py(p[1]))));
      g.stroke();
    }
    g.fillStyle = "#e6e8ee"; g.font = "12px sans-serif";
    const last = train.length ? train[train.length - 1][1] : val[val.length - 1][1];
    g.fillText(`${stage} loss ${last.toPrecision(3)}`, i * w + 8, 14);
  });
  g.fillStyle = "#8fb3ff"; g.fillText("train", c.width - 80, c.height - 6);
  g.fillStyle = "#ffb86b"; g.fillText("val", c.width - 36, c.height - 6);
}

async function jobAction(id, action) {
  try { await api(`/api/jobs/${id}/${action}`, { method: "POST" }); } catch (err) { showError(err.message); }
  refreshJobs();
}

// ---------- start ----------
async function main() {
  wireControls();
  $("upload-form").addEventListener("submit", upload);
  try { await loadInfo(); } catch (err) { showError(err.message); }
  connect();
  await refreshRuns();
  refreshJobs();
  setInterval(refreshRuns, 15000);
}
main();
