/* AI Coach web page: upload a clip, follow the analysis, review faults against exemplars.
   Vanilla JS, no build step, no downloads: everything comes from the gateway that serves this file.
   API: GET /v1/sports, POST /v1/analyses, POST /v1/analyses/{id}/athlete, GET /v1/analyses[/{id}[/events|/result|/frames|/video|/keypoints.csv]]. */
"use strict";
(function () {

// ───────────────────────── helpers ─────────────────────────
const $ = (sel, root) => (root || document).querySelector(sel);
const SVG_NS = "http://www.w3.org/2000/svg";

/** el("div", {class: "x", onclick: f}, child, "text") -> element */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  for (const c of children.flat(Infinity)) if (c != null && c !== false) node.append(c instanceof Node ? c : String(c));
  return node;
}
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  for (const c of children.flat(Infinity)) if (c != null) node.append(c instanceof Node ? c : String(c));
  return node;
}
/** Replace node's children, skipping null/false (conditional parts). */
function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c != null && c !== false).map((c) => (c instanceof Node ? c : String(c))));
}
function setAttrs(node, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
}
const fmt = (v, d = 1) => (v == null || !isFinite(v) ? "–" : Number(v).toFixed(d));
const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
function show(node, on) { node.hidden = !on; }
function setText(node, text) { node.textContent = text; }
function mb(bytes) { return (bytes / 1048576).toFixed(bytes < 10485760 ? 1 : 0) + " MB"; }
function when(iso) {
  const d = new Date(iso);
  return isNaN(d) ? String(iso || "") : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** The gateway's error detail in words (string detail, or FastAPI's validation list). */
function describeDetail(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => {
      const where = (d.loc || []).filter((p) => p !== "body").join(".");
      return (where ? where + ": " : "") + (d.msg || JSON.stringify(d));
    }).join("\n");
  }
  return detail ? JSON.stringify(detail) : "";
}
async function errorText(resp) {
  let detail = "";
  try { detail = describeDetail((await resp.json()).detail); } catch (e) { /* not JSON */ }
  return detail || `the server answered ${resp.status} ${resp.statusText}`.trim();
}
// API key: only needed when the gateway is not on loopback. Kept in this browser's storage;
// sent as a header where we can, and as ?api_key= where the browser cannot set headers
// (EventSource, <video src>, download links).
function apiKey() { return localStorage.getItem("coach.apiKey") || ""; }
function withKey(url) {
  const k = apiKey();
  return k ? url + (url.includes("?") ? "&" : "?") + "api_key=" + encodeURIComponent(k) : url;
}
function askForKey(message) {
  const k = window.prompt(message || "This AI Coach server needs an API key (ask its operator; `coach keys create`):", "");
  if (k) localStorage.setItem("coach.apiKey", k.trim());
  return !!k;
}
async function api(path, retried) {
  let resp;
  const headers = { Accept: "application/json" };
  if (apiKey()) headers.Authorization = "Bearer " + apiKey();
  try {
    resp = await fetch(path, { headers });
  } catch (e) {
    throw new Error("Cannot reach the AI Coach server. Check the connection and that the server is running.");
  }
  if (resp.status === 401 && !retried && askForKey(await errorText(resp))) return api(path, true);
  if (!resp.ok) throw Object.assign(new Error(await errorText(resp)), { status: resp.status });
  return resp.json();
}

// ───────────────────────── constants ─────────────────────────
const STAGES = [
  ["tracker", "Finding and tracking the athlete"],
  ["pose", "Estimating the pose in every frame"],
  ["judge", "Judging every frame against the standard"],
  ["suggest", "Choosing exemplars, drawing the video"],
];
// Okabe–Ito colours (colour-blind safe); red and green are kept for faulty/correct on the video itself.
const PALETTE = ["#E69F00", "#0072B2", "#CC79A7", "#56B4E9", "#D55E00", "#009E73", "#8C564B", "#F0E442"];
const MEASURES = {
  knee_l: ["Left knee flexion", "°", "left_knee"], knee_r: ["Right knee flexion", "°", "right_knee"],
  hip_l: ["Left hip flexion", "°", "left_hip"], hip_r: ["Right hip flexion", "°", "right_hip"],
  elbow_l: ["Left elbow flexion", "°", "left_elbow"], elbow_r: ["Right elbow flexion", "°", "right_elbow"],
  trunk: ["Trunk lean from vertical", "°", ["left_shoulder", "right_shoulder", "left_hip", "right_hip"]],
  body_line: ["Body-line bend at the hips (+ piked, − sagging)", "°", ["left_hip", "right_hip"]],
  skis: ["Angle between the skis", "°", ["left_ankle", "right_ankle"]],
  knee_width_ratio: ["Knee width ÷ ankle width", "×", ["left_knee", "right_knee"]],
};
const measureLabel = (m) => (MEASURES[m] ? MEASURES[m][0] : m);
const measureUnit = (m) => (MEASURES[m] ? MEASURES[m][1] : "");
const fmtMeasure = (m, v) => (v == null ? "not measured" : measureUnit(m) === "×" ? `${fmt(v, 2)}×` : `${fmt(v, 0)}°`);
const fmtDiff = (m, v) => (measureUnit(m) === "×" ? fmt(v, 2) : `${fmt(v, 0)}°`);
const fmtRange = (m, r) => (measureUnit(m) === "×" ? `${fmt(r[0], 2)}–${fmt(r[1], 2)}` : `${fmt(r[0], 0)}–${fmt(r[1], 0)}°`);

// ───────────────────────── state ─────────────────────────
const state = {
  sports: null,          // name -> sport description (GET /v1/sports)
  sportsPromise: null,
  file: null,            // the chosen video
  preview: null,         // {w, h, frame: canvas} first frame of the chosen video
  box: null,             // [x, y, w, h] in video pixels
  xhr: null,
  aid: null,             // analysis on screen
  es: null,              // EventSource
  poll: null,
  A: null,               // the loaded result, see buildResult
  pages: null,           // {key: "<id>/<revision>", chunks: Map(chunk -> rows)}: frames loaded in pages (streamFrames)
  video: null,           // the analysis' video as its status gives it ({fps, width, height, frames})
  partial: null,         // {revision, sequence} of the provisional verdict shown (renderPartial)
};

// ───────────────────────── routing ─────────────────────────
function route() {
  const h = location.hash || "#/";
  stopAnalysis();
  const m = h.match(/^#\/a\/([a-f0-9]{32})$/);
  for (const v of ["new", "history", "analysis"]) show($(`#view-${v}`), false);
  $("#nav-new").classList.toggle("active", !m && h !== "#/history");
  $("#nav-history").classList.toggle("active", h === "#/history");
  if (m) { show($("#view-analysis"), true); openAnalysis(m[1]); }
  else if (h === "#/history") { show($("#view-history"), true); loadAnalyses($("#history-list"), 500); }
  else { show($("#view-new"), true); loadAnalyses($("#recent-list"), 8); }
  window.scrollTo(0, 0);
}
function globalError(msg) {
  const n = $("#global-error");
  setText(n, msg || "");
  show(n, !!msg);
}

// ───────────────────────── sports ─────────────────────────
function loadSports() {
  if (!state.sportsPromise) {
    state.sportsPromise = api("/v1/sports").then((d) => {
      state.sports = {};
      for (const s of d.sports) state.sports[s.name] = s;
      fillSportSelect();
      return state.sports;
    }).catch((e) => {
      state.sportsPromise = null;
      const sel = $("#sport");
      fill(sel, el("option", { value: "" }, "Sports could not be loaded"));
      globalError("Could not load the list of sports: " + e.message);
      throw e;
    });
  }
  return state.sportsPromise;
}
function fillSportSelect() {
  const sel = $("#sport");
  const last = localStorage.getItem("coach.sport");
  fill(sel, el("option", { value: "" }, "Choose a sport…"),
    ...Object.values(state.sports).map((s) => el("option", { value: s.name }, s.title || s.name)));
  if (last && state.sports[last]) sel.value = last;
  sportInfo();
}
function sportInfo() {
  const s = state.sports && state.sports[$("#sport").value];
  const box = $("#sport-info");
  if (!s) { fill(box); return; }
  fill(box, 
    s.camera ? el("div", null, el("strong", null, "Film it: "), s.camera) : null,
    s.synthetic ? el("div", { class: "muted small synthetic" }, "Criteria-based, not trained on expert labels.")
      : s.label_source ? el("div", { class: "muted small" }, `Trained on ${s.label_source}.`) : null,
    el("div", null, el("strong", null, "What is checked:")),
    el("ul", null, s.faults.map((f) => el("li", null, el("strong", null, f.title), " — ", f.standard))));
}

// ───────────────────────── upload ─────────────────────────
function uploadError(msg) {
  setText($("#upload-error"), msg || "");
  show($("#upload-error"), !!msg);
}
function onFileChosen(file) {
  uploadError("");
  state.file = file || null;
  state.box = null;
  state.preview = null;
  show($("#box-area"), false);
  show($("#preview-note"), false);
  if (!file) { setText($("#file-info"), ""); return; }
  const info = [file.name, mb(file.size)];
  if (file.type && !file.type.startsWith("video/")) info.push(`type ${file.type}: this may not be a video`);
  setText($("#file-info"), info.join(" · "));
  loadPreview(file);
}
function previewNote(msg) {
  setText($("#preview-note"), msg);
  show($("#preview-note"), !!msg);
}
function loadPreview(file) {
  const video = document.createElement("video");
  const url = URL.createObjectURL(file);
  let settled = false;
  const finish = () => { settled = true; clearTimeout(timer); video.removeAttribute("src"); video.load(); URL.revokeObjectURL(url); };
  const fail = () => {
    if (settled || state.file !== file) return;
    finish();
    previewNote("This browser cannot show this video format, so no athlete box can be drawn. " +
      "It can still be analysed: the person who moves most will be taken as the athlete.");
  };
  const timer = setTimeout(fail, 10000);
  video.muted = true; video.playsInline = true; video.preload = "auto";
  video.addEventListener("error", fail);
  video.addEventListener("loadeddata", () => {
    if (settled || state.file !== file) return;
    if (!video.videoWidth) return fail();
    const frame = document.createElement("canvas");
    frame.width = video.videoWidth; frame.height = video.videoHeight;
    frame.getContext("2d").drawImage(video, 0, 0);
    finish();
    state.preview = { w: frame.width, h: frame.height, frame };
    const c = $("#box-canvas");
    c.width = frame.width; c.height = frame.height;
    show($("#box-area"), true);
    drawBox();
  });
  video.src = url;
}
function drawBox(live) {
  const p = state.preview;
  if (!p) return;
  const c = $("#box-canvas"), g = c.getContext("2d");
  g.drawImage(p.frame, 0, 0);
  const b = live || state.box;
  const text = $("#box-text");
  if (b) {
    g.save();
    g.fillStyle = "rgba(0,0,0,.55)";
    g.fillRect(0, 0, c.width, b[1]); g.fillRect(0, b[1] + b[3], c.width, c.height - b[1] - b[3]);
    g.fillRect(0, b[1], b[0], b[3]); g.fillRect(b[0] + b[2], b[1], c.width - b[0] - b[2], b[3]);
    g.lineWidth = Math.max(2, c.width / 320);
    g.strokeStyle = "#ffb000";
    g.strokeRect(b[0], b[1], b[2], b[3]);
    g.restore();
  }
  if (state.box) {
    const [x, y, w, h] = state.box;
    setText(text, `Athlete box: x ${x}, y ${y}, ${w} × ${h} px (of the video's ${p.w} × ${p.h}).`);
  } else setText(text, "No box drawn: the person who moves most will be taken as the athlete.");
  show($("#box-clear"), !!state.box);
}
function setupBoxDrawing() {
  const c = $("#box-canvas");
  let start = null;
  const toVideo = (ev) => {
    const r = c.getBoundingClientRect();
    return [clamp((ev.clientX - r.left) * c.width / r.width, 0, c.width),
            clamp((ev.clientY - r.top) * c.height / r.height, 0, c.height)];
  };
  const boxOf = (a, b) => {
    const x = Math.round(Math.min(a[0], b[0])), y = Math.round(Math.min(a[1], b[1]));
    return [x, y, Math.round(Math.max(a[0], b[0])) - x, Math.round(Math.max(a[1], b[1])) - y];
  };
  c.addEventListener("pointerdown", (ev) => {
    if (!state.preview) return;
    start = toVideo(ev);
    c.setPointerCapture(ev.pointerId);
    ev.preventDefault();
  });
  c.addEventListener("pointermove", (ev) => { if (start) drawBox(boxOf(start, toVideo(ev))); });
  const end = (ev) => {
    if (!start) return;
    const b = boxOf(start, toVideo(ev));
    start = null;
    if (b[2] >= 8 && b[3] >= 8) state.box = b;   // a click is not a box
    drawBox();
  };
  c.addEventListener("pointerup", end);
  c.addEventListener("pointercancel", () => { start = null; drawBox(); });
  $("#box-clear").addEventListener("click", () => { state.box = null; drawBox(); });
}
function submitUpload(ev) {
  ev.preventDefault();
  uploadError("");
  const sport = $("#sport").value;
  if (!sport) return uploadError("Choose a sport first.");
  if (!state.file) return uploadError("Choose a video first (or record one).");
  localStorage.setItem("coach.sport", sport);
  const fd = new FormData();
  fd.append("video", state.file, state.file.name || "video");
  fd.append("sport", sport);
  if (state.box) fd.append("target_bbox", state.box.join(","));

  const xhr = new XMLHttpRequest();
  state.xhr = xhr;
  const bar = $("#upload-bar"), text = $("#upload-text"), btn = $("#submit");
  show($("#upload-progress"), true);
  bar.value = 0;
  setText(text, "Uploading…");
  btn.disabled = true;
  const done = () => { btn.disabled = false; state.xhr = null; };
  xhr.upload.addEventListener("progress", (e) => {
    if (!e.lengthComputable) return;
    bar.value = (100 * e.loaded) / e.total;
    setText(text, `Uploading… ${Math.floor(bar.value)}% (${mb(e.loaded)} of ${mb(e.total)})`);
  });
  xhr.upload.addEventListener("load", () => { bar.value = 100; setText(text, "Uploaded. Checking the video…"); });
  xhr.addEventListener("load", () => {
    done();
    let body = null;
    try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
    if (xhr.status === 202 && body && body.id) {
      setText(text, "Accepted.");
      location.hash = `#/a/${body.id}`;
      return;
    }
    show($("#upload-progress"), false);
    const detail = body ? describeDetail(body.detail) : "";
    uploadError(`The video was not accepted: ${detail || "the server answered " + xhr.status + " " + xhr.statusText}`);
  });
  xhr.addEventListener("error", () => {
    done(); show($("#upload-progress"), false);
    uploadError("The upload failed: the connection to the server was lost. Try again.");
  });
  xhr.addEventListener("abort", () => { done(); show($("#upload-progress"), false); uploadError("Upload cancelled."); });
  xhr.open("POST", "/v1/analyses");
  xhr.setRequestHeader("Accept", "application/json");
  if (apiKey()) xhr.setRequestHeader("Authorization", "Bearer " + apiKey());
  xhr.send(fd);
}

// ───────────────────────── past analyses ─────────────────────────
function overall(st) {
  const p = Object.values(st.progress || {});
  return p.length ? p.reduce((a, b) => a + b, 0) / p.length : 0;
}
function statusPill(st) {
  const label = st.status === "running" ? `running ${Math.round(100 * overall(st))}%` : st.status;
  return el("span", { class: `pill ${st.status}`, title: st.error || "" }, label);
}
async function loadAnalyses(box, limit) {
  try {
    const [d] = await Promise.all([api(`/v1/analyses?limit=${limit}`), loadSports().catch(() => null)]);
    if (!d.analyses.length) { fill(box, el("p", { class: "muted" }, "No analyses yet. Upload a clip to start.")); return; }
    const sportTitle = (n) => (state.sports && state.sports[n] ? state.sports[n].title : n);
    const rows = d.analyses.map((st) => {
      const v = st.video || {};
      const dur = v.frames && v.fps ? ` · ${fmt(v.frames / v.fps, 0)} s` : "";
      return el("tr", { class: "row-link", "data-id": st.id, onclick: () => { location.hash = `#/a/${st.id}`; } },
        el("td", null, el("a", { href: `#/a/${st.id}` }, when(st.submitted_at))),
        el("td", null, sportTitle(st.sport)),
        el("td", { class: "wide" }, v.width ? `${v.width}×${v.height}${dur}` : ""),
        el("td", null, statusPill(st)),
        el("td", { class: "wide muted small" }, st.id.slice(0, 8)));
    });
    fill(box, ...[el("table", { class: "analyses" },
      el("thead", null, el("tr", null, el("th", null, "Submitted"), el("th", null, "Sport"), el("th", { class: "wide" }, "Video"),
        el("th", null, "Status"), el("th", { class: "wide" }, "Id"))),
      el("tbody", null, rows)),
      limit < 50 && d.analyses.length >= limit ? el("p", { class: "small" }, el("a", { href: "#/history" }, "All past analyses →")) : null].filter(Boolean));
  } catch (e) {
    fill(box, el("p", { class: "error" }, "Could not load past analyses: " + e.message));
  }
}

// ───────────────────────── one analysis: progress ─────────────────────────
function stopAnalysis() {
  if (state.es) { state.es.close(); state.es = null; }
  if (state.poll) { clearTimeout(state.poll); state.poll = null; }
  stopCompare();
  const v = $("#player");
  if (v) { v.pause(); }
  state.aid = null;
  state.A = null;
}
async function openAnalysis(id) {
  state.aid = id;
  setText($("#analysis-title"), `Analysis ${id.slice(0, 8)}`);
  setText($("#analysis-meta"), "");
  setText($("#analysis-status"), "loading…");
  $("#analysis-status").className = "pill";
  show($("#analysis-error"), false);
  show($("#result"), false);
  show($("#stages-card"), true);
  clearPartial();
  fill($("#stages"), ...STAGES.map(([k, label]) => el("li", { "data-stage": k },
    el("span", null, label), el("span", { class: "pct" }, "0%"), el("div", { class: "bar" }, el("span")))));
  await loadSports().catch(() => null);
  let st;
  try { st = await api(`/v1/analyses/${id}`); }
  catch (e) { return analysisError(`This analysis cannot be shown: ${e.message}`); }
  if (state.aid !== id) return;
  renderStatus(st);
  if (st.status === "done") loadResult(id);
  else if (st.status === "failed") showFailed(st);
  else followEvents(id);
}
function analysisError(msg) {
  setText($("#analysis-error"), msg);
  show($("#analysis-error"), true);
}
function renderStatus(st) {
  if (state.aid !== st.id) return;
  const pill = $("#analysis-status");
  pill.className = `pill ${st.status}`;
  setText(pill, { queued: "queued", running: "analysing…", done: "done", failed: "failed" }[st.status] || st.status);
  const sport = state.sports && state.sports[st.sport];
  const v = st.video || {};
  state.video = st.video || null;
  setText($("#analysis-meta"), [sport ? sport.title : st.sport, when(st.submitted_at),
    v.width ? `${v.width}×${v.height}, ${v.frames || "?"} frames at ${fmt(v.fps, 0)} fps` : ""].filter(Boolean).join(" · "));
  for (const [k] of STAGES) {
    const li = $(`#stages li[data-stage="${k}"]`);
    const f = clamp((st.progress || {})[k] || 0, 0, 1);
    li.querySelector(".bar > span").style.width = `${100 * f}%`;
    setText(li.querySelector(".pct"), f >= 1 ? "done ✓" : `${Math.floor(100 * f)}%`);
    li.classList.toggle("done", f >= 1);
  }
}
function followEvents(id) {
  const es = new EventSource(withKey(`/v1/analyses/${id}/events`));
  state.es = es;
  es.addEventListener("progress", (ev) => { show($("#analysis-error"), false); renderStatus(JSON.parse(ev.data)); });
  es.addEventListener("partial", (ev) => renderPartial(JSON.parse(ev.data)));
  es.addEventListener("end", (ev) => {
    es.close(); state.es = null;
    const st = JSON.parse(ev.data);
    renderStatus(st);
    if (st.status === "done") loadResult(id); else showFailed(st);
  });
  es.addEventListener("error", () => {
    if (state.es !== es) return;
    if (es.readyState === EventSource.CLOSED) { state.es = null; pollStatus(id); }
    else analysisError("Lost the connection to the server; reconnecting…");
  });
}
function pollStatus(id) {   // fallback when server-sent events are not available
  state.poll = setTimeout(async () => {
    if (state.aid !== id) return;
    try {
      const st = await api(`/v1/analyses/${id}`);
      show($("#analysis-error"), false);
      renderStatus(st);
      if (st.status === "done") return loadResult(id);
      if (st.status === "failed") return showFailed(st);
      await pollPartial(id);
    } catch (e) { analysisError(`Cannot follow the analysis: ${e.message}. Retrying…`); }
    pollStatus(id);
  }, 2000);
}
function showFailed(st) {
  clearPartial();
  analysisError(`The analysis failed: ${st.error || "no reason was given"}.\n` +
    "Check that the athlete is fully visible and the camera matches the sport's advice, then try another clip.");
}

// ── what is known while the analysis runs (#17): the judge's latest provisional verdict (the
// `partial` event, or GET .../result?partial=1 when polling), shown under the progress bars until
// the full result replaces it ──
function clearPartial(floor) {
  state.partial = floor || null;   // a floor {revision, sequence: 0} after an athlete switch drops older ones
  fill($("#partial"));
  show($("#partial"), false);
}
async function pollPartial(id) {   // the polling twin of the `partial` event
  try {
    // frames=none: should the analysis have finished meanwhile, the answer is the result's summary, not megabytes
    renderPartial(await api(`/v1/analyses/${id}/result?partial=1&frames=none`));
  } catch (e) {
    if (e.status !== 409) throw e;   // 409: the judge has not made one yet
  }
}
function renderPartial(p) {
  if (!p || p.schema !== "coach.partial-verdict-document/1" || p.analysis_id !== state.aid || state.A) return;
  const last = state.partial;   // keep the newest (revision, sequence): an older one may arrive late
  if (last && (p.revision < last.revision || (p.revision === last.revision && p.sequence <= last.sequence))) return;
  state.partial = { revision: p.revision, sequence: p.sequence };
  const sport = (state.sports || {})[p.sport];
  const title = (type) => {
    const f = sport && sport.faults.find((x) => x.id === type);
    return f ? f.title : type.replace(/_/g, " ");
  };
  const v = state.video || {};
  const total = p.frames_total || v.frames;
  const totalS = total && v.fps ? total / v.fps : null;
  const faults = [...p.faults].sort((a, b) => a.start_s - b.start_s || a.type.localeCompare(b.type));
  const plural = (k, one, many) => `${k} ${k === 1 ? one : many}`;
  fill($("#partial"),
    el("h3", { id: "partial-head" }, "What is known so far", el("span", { class: "provisional" }, "provisional · may change")),
    el("p", { class: "partial-span" }, `Judged so far: first ${fmt(p.posed_until_s, 1)} s` +
      (totalS ? ` of ${fmt(totalS, 1)} s` : "") +
      ` (${p.clips_posed}${p.clip_count ? ` of ${p.clip_count} clips` : p.clips_posed === 1 ? " clip" : " clips"} posed).`),
    p.athlete_settled === false ? el("p", { class: "partial-athlete" }, "The person judged so far is the one " +
      "followed from the first frames; the athlete is chosen once the whole clip has been seen, and may then change.") : null,
    p.finding ? el("p", { class: "partial-finding" }, `Finding so far: ${p.finding}.`) : null,
    faults.length
      ? [el("p", null, `${plural(faults.length, "fault segment", "fault segments")} so far:`),
        el("ul", { class: "partial-faults" }, faults.map((f) =>
          el("li", { "data-type": f.type }, `${title(f.type)}: ${fmt(f.start_s, 1)}–${fmt(f.end_s, 1)} s`)))]
      : p.finding ? null : el("p", { class: "partial-none" }, `No fault found up to ${fmt(p.safe_until_s, 1)} s.`),
    (p.not_judgeable || []).length ? el("p", { class: "partial-not-judgeable muted small" },
      p.not_judgeable.map((n, i) => [i ? el("br") : "",
        `Not judgeable ${fmt(n.start_s, 1)}–${fmt(n.end_s, 1)} s (${title(n.type)}): ${n.reason}.`])) : null,
    p.withheld ? el("p", { class: "partial-withheld" }, `${plural(p.withheld, "more fault segment", "more fault segments")} ` +
      `ending after ${fmt(p.safe_until_s, 1)} s ${p.withheld === 1 ? "is" : "are"} withheld until later frames settle ` +
      `${p.withheld === 1 ? "it" : "them"}.`) : null,
    p.repetitions != null ? el("p", { class: "partial-reps" }, `Repetitions so far: ${p.repetitions}.`) : null,
    el("p", { class: "muted small" }, "Provisional: the frames still to come may change this. " +
      "The full result replaces it when the analysis is done."));
  show($("#partial"), true);
}
async function loadResult(id) {
  try {
    // the summary only (kilobytes); the frames follow in pages (streamFrames)
    const r = await api(`/v1/analyses/${id}/result?frames=none`);
    if (state.aid !== id) return;
    buildResult(r);
  } catch (e) { analysisError(`The result could not be loaded: ${e.message}`); }
}

// ───────────────────────── the result ─────────────────────────
/** Per-frame measure value: a joint angle from the result, or a ratio computed from the keypoints. */
function measureValue(frame, m) {
  if (!frame) return null;
  const a = frame.angles_deg || {};
  if (m in a) return a[m];
  if (m === "knee_width_ratio") return kneeWidthRatio(frame.keypoints);
  return null;
}
function kneeWidthRatio(k) {   // same definition as the judge's feature (services/judge/features.py)
  if (!k) return null;
  const ok = (n) => k[n] && k[n][2] >= 0.3;
  if (!["left_knee", "right_knee", "left_ankle", "right_ankle"].every(ok)) return null;
  const kx = k.left_knee[0] - k.right_knee[0], ax = k.left_ankle[0] - k.right_ankle[0];
  const shin = (s) => Math.hypot(k[`${s}_ankle`][0] - k[`${s}_knee`][0], k[`${s}_ankle`][1] - k[`${s}_knee`][1]);
  if (!(Math.abs(ax) > 0.15 * 0.5 * (shin("left") + shin("right")))) return null;
  return clamp(kx / ax, -3, 3);
}
function offBy(v, range) {
  if (v == null || !range) return null;
  return v < range[0] ? range[0] - v : v > range[1] ? v - range[1] : 0;
}

function buildResult(r) {
  const sport = (state.sports || {})[r.sport] || { name: r.sport, title: r.sport, faults: [] };
  const athletes = r.athletes || [];
  const athlete = athletes.find((a) => a.is_target) || athletes[0] || { frames: [] };
  const fps = r.video.fps;
  let n = Math.max(r.video.frames || 0, r.frame_paging ? r.frame_paging.end : 0);
  for (const f of athlete.frames || []) n = Math.max(n, f.index + 1);
  n = Math.max(n, 1);
  // a summary (?frames=none) has no frames: undefined = not loaded yet, null = not in the result
  const frames = new Array(n).fill(athlete.frames ? null : undefined);
  for (const f of athlete.frames || []) frames[f.index] = f;

  // fault types: the sport's order first, then anything else the result has
  const types = [];
  const typeOf = {};
  const addType = (id, title, def) => {
    if (typeOf[id]) return;
    typeOf[id] = { id, title, def, color: PALETTE[types.length % PALETTE.length], count: 0, frames: 0 };
    types.push(typeOf[id]);
  };
  for (const f of sport.faults) addType(f.id, f.title, f);
  for (const f of r.faults) addType(f.type, f.title, null);
  const segs = r.faults.map((f, k) => ({ ...f, k, t: typeOf[f.type] }))
    .sort((a, b) => a.start_frame - b.start_frame || types.indexOf(a.t) - types.indexOf(b.t));
  segs.forEach((s, i) => { s.k = i; s.t.count++; s.t.frames += s.end_frame - s.start_frame + 1; });

  const A = state.A = {
    r, id: r.id, sport, athlete, fps, n, frames, types, typeOf, segs, cur: 0, sel: null,
    enabled: new Set(types.map((t) => t.id)), cursors: [], lanes: [], duration: n / fps,
  };
  for (const s of segs) s.dev = deviation(s);
  A.zoom = zoomPlan(A);
  $("#zoom").checked = A.zoom.useful;
  $("#zoom").parentElement.hidden = !A.zoom.possible;

  show($("#stages-card"), false);
  clearPartial();
  show($("#result"), true);
  renderSummary();
  renderPeople();
  renderScore();
  setupPlayer();
  renderTimeline();
  renderLegend();
  renderFaultList();
  renderPlots();
  renderReps();
  renderDownloads();
  setFrame(0, false);
  if (segs.length) selectSeg(0, false);
  else { fill($("#fault-detail")); show($("#compare-card"), false); }
  if (!athlete.frames && r.frame_paging) streamFrames(A);
}

// ── the frames, in pages (#17): the summary shows at once; the frames come as columns from
// GET /v1/analyses/{id}/frames, one stored chunk at a time: first the chunk at the slider, then
// the next one to be played, then the rest (timeline, plots and fault details fill in as they come) ──
function rowsOfPage(p) {   // the columns back into result.json's per-frame rows
  const names = p.keypoint_names;
  const named = (flat) => {
    if (!flat) return null;
    const o = {};
    names.forEach((nm, j) => { if (flat[3 * j] != null) o[nm] = flat.slice(3 * j, 3 * j + 3); });
    return o;
  };
  const row = (cols, i) => { const o = {}; for (const k in cols || {}) o[k] = cols[k][i]; return o; };
  return p.index.map((index, i) => ({
    index, t_s: p.t_s[i], bbox_px: p.bbox_px[i], keypoints: named(p.keypoints[i]), keypoints_3d: named(p.keypoints_3d[i]),
    angles_deg: row(p.angles_deg, i), angles_3d_deg: p.angles_3d_present && p.angles_3d_present[i] ? row(p.angles_3d_deg, i) : null,
    faults: p.judged[i] ? row(p.faults, i) : {}, activity: p.activity[i], view: p.view[i], phase: p.phase[i],
  }));
}
async function streamFrames(A) {
  const size = A.r.frame_paging.chunk_frames, total = A.r.frame_paging.chunks, key = `${A.id}/${A.r.revision || 0}`;
  if (!state.pages || state.pages.key !== key) state.pages = { key, chunks: new Map() };
  const cache = state.pages.chunks;
  const merge = ({ rows, others }) => {
    for (const f of rows) if (f.index < A.n) A.frames[f.index] = f;
    addPeopleBoxes(A, others);
  };
  for (const got of cache.values()) merge(got);   // pages already loaded for this result (showResult again)
  if (cache.size) framesArrived(A);
  let drawn = performance.now(), failures = 0;
  while (state.A === A && state.pages.key === key && cache.size < total) {
    const here = Math.floor(A.cur / size);
    let k = here;
    for (let j = 0; j < total; j++) if (!cache.has((here + j) % total)) { k = (here + j) % total; break; }
    let page;
    try {
      page = await api(`/v1/analyses/${A.id}/frames?start=${k * size}&count=${size}`);
    } catch (e) {
      if (++failures >= 3) { analysisError(`The frames could not be loaded: ${e.message}`); return; }
      await new Promise((ok) => setTimeout(ok, 1000 * failures));
      continue;
    }
    const got = { rows: rowsOfPage(page), others: page.others || [] };
    if (state.pages.key !== key) return;
    cache.set(k, got);
    if (state.A !== A) return;
    merge(got);
    // redraw at once for the frames on screen, else at most once a second, and when all are in
    if (k === Math.floor(A.cur / size) || cache.size === total || performance.now() - drawn > 1000) {
      framesArrived(A);
      drawn = performance.now();
    }
  }
}
/** The other people's boxes of a frame page (columns per person) into the player's people boxes. */
function addPeopleBoxes(A, others) {
  for (const o of others) {
    const p = (A.people || []).find((q) => q.id === o.track_id);
    if (p) o.index.forEach((index, i) => { if (o.bbox_px[i]) p.boxes.set(index, o.bbox_px[i]); });
  }
}
function framesArrived(A) {
  if (state.A !== A) return;
  for (const s of A.segs) s.dev = deviation(s);
  const zoomable = A.zoom.possible;
  A.zoom = zoomPlan(A);
  if (A.zoom.possible && !zoomable) { $("#zoom").checked = A.zoom.useful; $("#zoom").parentElement.hidden = false; }
  renderSummary();
  renderTimeline();
  renderFaultList();
  renderPlots();
  const s = A.sel != null ? A.segs[A.sel] : null;
  if (s) {
    renderFaultDetail(s);
    for (const li of $("#fault-list").children) li.classList.toggle("selected", Number(li.dataset.k) === s.k);
    for (const r of document.querySelectorAll("#timeline rect.seg")) r.classList.toggle("selected", Number(r.getAttribute("data-k")) === s.k);
  }
  for (const r of document.querySelectorAll("#timeline rect.seg")) if (!A.enabled.has(r.getAttribute("data-type"))) r.setAttribute("opacity", 0.25);
  setFrame(A.cur, false);
}

/** How far the measure was from the standard at the segment's most certain frame, per side. */
function deviation(seg) {
  const A = state.A, def = seg.t.def;
  if (!def || !def.measure) return null;
  // the frame where the classifier was most certain, among those where the measure could be taken
  const measures = def.measure.split("/");
  const cands = [];
  for (let i = seg.start_frame; i <= Math.min(seg.end_frame, A.n - 1); i++) {
    const p = A.frames[i] && A.frames[i].faults ? A.frames[i].faults[seg.type] : null;
    cands.push({ i, p: p == null ? -1 : p, measured: measures.some((m) => measureValue(A.frames[i], m) != null) });
  }
  cands.sort((a, b) => (b.measured - a.measured) || (b.p - a.p));
  const worst = cands.length ? cands[0].i : seg.start_frame, best = cands.length ? cands[0].p : -1;
  const fallback = cands.some((c) => c.p > best);   // the most certain frame had no measurable angle
  const rows = measures.map((m) => {
    const v = measureValue(A.frames[worst], m);
    let segMax = null;
    for (let i = seg.start_frame; i <= Math.min(seg.end_frame, A.n - 1); i++) {
      const o = offBy(measureValue(A.frames[i], m), def.standard_range);
      if (o != null && (segMax == null || o > segMax)) segMax = o;
    }
    return { m, v, off: offBy(v, def.standard_range), segMax,
             dir: v == null ? "" : v < def.standard_range[0] ? "below" : v > def.standard_range[1] ? "above" : "within" };
  });
  const main = rows.filter((x) => x.off != null).sort((a, b) => b.off - a.off)[0] || null;
  return { worst, p: best, rows, main, range: def.standard_range, fallback };
}
function devSentence(seg) {
  const d = seg.dev;
  if (!d) return "";
  const x = d.main;
  if (!x) return `${d.rows.map((r) => measureLabel(r.m)).join(" / ")}: not measured at the worst frame`;
  if (x.off === 0) return `${measureLabel(x.m)} ${fmtMeasure(x.m, x.v)}: within the standard ${fmtRange(x.m, d.range)} at the worst frame`;
  return `${measureLabel(x.m)} ${fmtMeasure(x.m, x.v)} — ${fmtDiff(x.m, x.off)} ${x.dir} the standard ${fmtRange(x.m, d.range)}`;
}

function renderSummary() {
  const A = state.A, r = A.r;
  const posed = A.athlete.frames_posed != null ? A.athlete.frames_posed : A.frames.filter((f) => f && f.keypoints).length;
  const parts = [
    el("strong", null, A.sport.title || r.sport), ` · ${A.n} frames at ${fmt(A.fps, 0)} fps (${fmt(A.duration, 1)} s)`,
    ` · athlete found in ${posed} of ${A.n} frames`,
    A.athlete.choice_reason ? ` · athlete chosen: ${A.athlete.choice_reason}` : "",
    el("br"),
    judgementLine(r.judgement),
    A.segs.length
      ? [`${A.segs.length} fault segment${A.segs.length > 1 ? "s" : ""}: `,
         A.types.filter((t) => t.count).map((t, i) => [i ? ", " : "", el("span", { class: "swatch", style: `background:${t.color}` }),
           ` ${t.title} ×${t.count} (${fmt(t.frames / A.fps, 1)} s)`])]
      : (r.judgement && r.judgement.finding) ? ""
      : el("span", { class: "ok" }, "No faults found: every judged frame met the standard."),
    notJudgeableLines(r.judgement, A),
  ];
  const timings = Object.entries(r.timings_s || {}).map(([k, v]) => `${k} ${fmt(v, 1)} s`).join(", ");
  fill($("#summary"), ...parts.flat(Infinity), timings ? el("span", { class: "muted small" }, el("br"), `Processing: ${timings}`) : "");
}

// Everybody else the tracker followed (issue 15): each can be made the athlete; the analysis then
// runs again for that person (POST /v1/analyses/{id}/athlete) and the page follows it like an upload.
// Two ways in, one call (makeAthlete): the list's button, and the person's box on the player, which
// asks first (askSwitch) because a click on a moving picture is easily a slip.
function renderPeople() {
  const A = state.A, others = (A.r.athletes || []).filter((a) => !a.is_target);
  show($("#people-card"), others.length > 0);
  show($("#people-error"), false);
  fill($("#people"), others.map((p) => {
    const boxed = p.frames && p.frames.filter((f) => f.bbox_px).map((f) => f.index);
    // a summary (?frames=none) counts each person's frames instead of listing them
    const seen = boxed ? { n: boxed.length, first: boxed[0], last: boxed[boxed.length - 1] }
      : { n: p.frames_seen || 0, first: p.first_seen_frame, last: p.last_seen_frame };
    const span = seen.n ? ` (${fmt(seen.first / A.fps, 1)}–${fmt(seen.last / A.fps, 1)} s)` : "";
    const button = el("button", { type: "button", class: "make-athlete", "data-track": p.track_id }, "Make this the athlete");
    button.addEventListener("click", () => makeAthlete(A.id, p.track_id, button));
    const hot = (on) => { const b = $(`#people-layer .person-box[data-track="${p.track_id}"]`); if (b) b.classList.toggle("hot", on); };
    return el("li", { "data-track": p.track_id, onmouseenter: () => hot(true), onmouseleave: () => hot(false),
      onfocusin: () => hot(true), onfocusout: () => hot(false) },
      el("span", null, `Person ${p.track_id}: seen in ${seen.n} frames${span}`), " ", button);
  }));
  // their boxes on the player, one button each (so Tab and Enter reach them too), and the athlete's
  // (a summary has no frames: the boxes come with the frame pages, streamFrames -> addPeopleBoxes)
  A.people = others.map((p) => ({ id: p.track_id, boxes: new Map((p.frames || []).filter((f) => f.bbox_px).map((f) => [f.index, f.bbox_px])) }));
  show($("#show-people-label"), others.length > 0);
  closeSwitch();
  fill($("#people-layer"),
    el("div", { class: "athlete-box", "data-track": A.athlete.track_id, hidden: true },
      el("span", { class: "tag" }, `athlete ${A.athlete.track_id != null ? A.athlete.track_id : ""}`.trim())),
    A.people.map((p) => el("button", { type: "button", class: "person-box", "data-track": p.id, hidden: true,
      "aria-label": `Person ${p.id}: make this person the athlete`, title: `Person ${p.id}: click to make this person the athlete`,
      onclick: () => askSwitch(p.id) }, el("span", { class: "tag", "aria-hidden": "true" }, String(p.id)))));
}
/** Place the people's boxes on the current frame, through the video's displayed size, letterboxing and zoom. */
function drawPeople() {
  const A = state.A, layer = $("#people-layer"), v = $("#player");
  if (!A || !A.people) return;
  const map = videoToElement(v, A.r.video.width, A.r.video.height, A.viewZ);
  const cw = v.clientWidth, ch = v.clientHeight;
  const place = (node, b) => {
    const [x0, y0] = map(b[0], b[1]), [x1, y1] = map(b[0] + b[2], b[1] + b[3]);
    const off = x1 < 0 || y1 < 0 || x0 > cw || y0 > ch;   // zoomed out of view: not shown, not focusable
    node.hidden = off;
    if (off) return;
    Object.assign(node.style, { left: `${x0}px`, top: `${y0}px`, width: `${Math.max(x1 - x0, 12)}px`, height: `${Math.max(y1 - y0, 12)}px` });
    node.firstChild.style.top = y0 < 20 ? "0" : "";   // the id above the box, inside it at the picture's top edge
  };
  const f = A.frames[A.cur], ath = layer.querySelector(".athlete-box");
  if (ath) { if (f && f.bbox_px) place(ath, f.bbox_px); else ath.hidden = true; }
  const on = $("#show-people").checked;
  const shown = [];
  for (const p of A.people) {
    const node = layer.querySelector(`.person-box[data-track="${p.id}"]`), b = p.boxes.get(A.cur);
    if (!node) continue;
    if (!on || !b) { node.hidden = true; continue; }
    place(node, b);
    if (!node.hidden) shown.push([node, b[2] * b[3]]);
  }
  shown.sort((a, b) => b[1] - a[1]).forEach(([node], k) => { node.style.zIndex = k + 1; });   // the smaller on top
}
function askSwitch(trackId) {
  const A = state.A;
  if (!A) return;
  $("#player").pause();
  A.asking = trackId;
  for (const b of document.querySelectorAll("#people-layer .person-box")) b.classList.toggle("chosen", Number(b.dataset.track) === trackId);
  setText($("#person-confirm-text"), `Make person ${trackId} the athlete? Their pose, faults and suggestions are worked out ` +
    "again (tracking is not repeated).");
  setText($("#person-confirm-yes"), `Make person ${trackId} the athlete`);
  setText($("#person-confirm-status"), "");
  show($("#person-confirm-error"), false);
  $("#person-confirm-yes").disabled = false;
  show($("#person-confirm"), true);
  $("#person-confirm-yes").focus();
}
function closeSwitch() {
  if (state.A) state.A.asking = null;
  show($("#person-confirm"), false);
  for (const b of document.querySelectorAll("#people-layer .person-box.chosen")) b.classList.remove("chosen");
}
function setupSwitchEvents() {
  $("#person-confirm-yes").addEventListener("click", () => {
    const A = state.A;
    if (!A || A.asking == null) return;
    setText($("#person-confirm-status"), `Switching to person ${A.asking}…`);
    makeAthlete(A.id, A.asking, $("#person-confirm-yes"), $("#person-confirm-error"))
      .then(() => { if (!$("#person-confirm-error").hidden) setText($("#person-confirm-status"), ""); });
  });
  $("#person-confirm-no").addEventListener("click", closeSwitch);
  $("#person-confirm").addEventListener("keydown", (e) => { if (e.key === "Escape") { closeSwitch(); e.stopPropagation(); } });
  $("#show-people").addEventListener("change", drawPeople);
}
async function makeAthlete(id, trackId, button, errorNode) {
  const errNode = errorNode || $("#people-error");
  button.disabled = true;
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  if (apiKey()) headers.Authorization = "Bearer " + apiKey();
  let resp;
  try {
    resp = await fetch(`/v1/analyses/${id}/athlete`, { method: "POST", headers, body: JSON.stringify({ track_id: trackId }) });
  } catch (e) {
    resp = null;
  }
  if (!resp || !resp.ok) {
    button.disabled = false;
    setText(errNode, `Could not make person ${trackId} the athlete: ` +
      (resp ? await errorText(resp) : "cannot reach the AI Coach server."));
    show(errNode, true);
    return;
  }
  if (state.aid !== id) return;
  const revision = (await resp.json().catch(() => ({}))).revision;
  if (state.aid !== id) return;
  stopAnalysis();
  openAnalysis(id);   // progress, then the result with the new athlete first
  if (revision != null) state.partial = { revision, sequence: 0 };   // the previous athlete's partials no longer count
}

// What the judge could and could not say (#16): a finding when the exercise never happened, the
// label source of the fault models, and faults the camera's view cannot show.
function judgementLine(j) {
  if (!j) return "";
  return [
    j.finding ? [el("strong", { class: "finding", id: "finding" }, `Finding: ${j.finding}.`), el("br")] : "",
    j.synthetic ? [el("span", { class: "muted small synthetic", id: "synthetic-note" },
      "Fault models are criteria-based, not trained on expert labels: treat them as indicative."), el("br")] : "",
  ];
}

function notJudgeableLines(j, A) {
  if (!j || !(j.not_judgeable || []).length) return "";
  return [el("br"), el("span", { class: "muted small", id: "not-judgeable" },
    j.not_judgeable.map((n, i) => [i ? el("br") : "",
      `Not judgeable ${fmt(n.start_s, 1)}–${fmt(n.end_s, 1)} s: ${n.reason}.`]))];
}

function renderScore() {
  const panel = $("#score-panel"), s = state.A.r.score;
  if (s == null || typeof s !== "object" && typeof s !== "number") { show(panel, false); fill(panel); return; }
  const value = typeof s === "number" ? s : s.value;
  const pct = value == null ? null : clamp(value <= 1 ? value * 100 : value, 0, 100);
  const ex = Array.isArray(s.exemplars) ? s.exemplars : [];
  fill(panel, 
    el("div", null, el("div", { class: "muted small" }, "Estimated score"),
      el("div", { class: "score-value", id: "score-value" }, pct == null ? "–" : Math.round(pct), el("span", { class: "muted small" }, " / 100"))),
    el("div", { class: "score-bar", role: "meter", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct == null ? 0 : Math.round(pct) },
      el("span", { style: `width:${pct || 0}%` })),
    ex.length ? el("div", null, el("div", { class: "muted small" }, "Compared with"),
      el("ul", { class: "score-exemplars" }, ex.map((e) => el("li", null, typeof e === "string" ? e :
        [e.title || e.exemplar_id || JSON.stringify(e),
         e.score != null ? ` — ${fmt(e.score, 1)}` : "", e.similarity != null ? ` (${Math.round(100 * e.similarity)}% match)` : ""])))) : null);
  show(panel, true);
}

// ───────────────────────── player ─────────────────────────
const frameOf = (t) => clamp(Math.floor(t * state.A.fps + 1e-3), 0, state.A.n - 1);
const timeOfFrame = (i) => (i + 0.5) / state.A.fps;

function setupPlayer() {
  const A = state.A, v = $("#player");
  show($("#player-error"), false);
  const aspect = `${A.r.video.width} / ${A.r.video.height}`;
  $("#player-box").style.aspectRatio = aspect;
  for (const f of document.querySelectorAll(".cmp-frame")) f.style.aspectRatio = aspect;
  v.src = withKey(`/v1/analyses/${A.id}/video`);
  v.playbackRate = Number($("#speed").value);
  const slider = $("#slider");
  slider.max = A.n - 1;
  slider.value = 0;
  setText($("#play"), "Play");
  for (const b of ["#prev-fault", "#next-fault"]) $(b).disabled = !A.segs.length;
}
function onPlayerTime(t) {
  if (!state.A || state.A.pendingSeek != null) return;   // a frame chosen before the video could seek wins
  const i = frameOf(t);
  if (i !== state.A.cur) setFrame(i, false);
}
function setFrame(i, seek) {
  const A = state.A;
  if (!A) return;
  i = clamp(Math.round(i), 0, A.n - 1);
  A.cur = i;
  if (seek) {
    const v = $("#player");
    // Before its metadata is loaded a video cannot seek, and its first frame would bring the view
    // back to frame 0: keep the choice and seek once it can (loadedmetadata, setupPlayerEvents).
    if (v.readyState >= 1) { A.pendingSeek = null; v.currentTime = timeOfFrame(i); }
    else A.pendingSeek = i;
  }
  const slider = $("#slider");
  if (Number(slider.value) !== i) slider.value = i;
  const pct = `${(100 * (i + 0.5)) / A.n}%`;
  for (const ph of A.lanes) ph.style.left = pct;
  for (const c of A.cursors) c();
  renderFrameInfo();
  applyMainZoom();
  drawOverlay();
  const list = $("#fault-list");
  for (const li of list.children) {
    const s = A.segs[Number(li.dataset.k)];
    li.classList.toggle("current", !!s && s.start_frame <= i && i <= s.end_frame);
  }
}
function segsAt(i) { return state.A.segs.filter((s) => s.start_frame <= i && i <= s.end_frame); }
function renderFrameInfo() {
  const A = state.A, i = A.cur, f = A.frames[i];
  const here = segsAt(i);
  const parts = [el("strong", null, `Frame ${i + 1} / ${A.n}`), ` · ${fmt(i / A.fps, 2)} s · `];
  if (f === undefined) parts.push(el("span", { class: "muted" }, "loading this frame…"));
  else if (!f || !f.keypoints) parts.push(el("span", { class: "muted" }, "no pose found in this frame"));
  else if (f.activity === "not_performing") parts.push(el("span", { class: "muted" }, "not performing the exercise: not judged"));
  else if (!here.length) parts.push(el("span", { class: "ok" }, "✓ no fault in this frame"));
  else {
    const seen = new Set();
    for (const s of here) {
      if (seen.has(s.type)) continue;
      seen.add(s.type);
      const def = s.t.def;
      const vals = def && def.measure ? def.measure.split("/").map((m) => `${measureLabel(m).replace(" flexion", "")} ${fmtMeasure(m, measureValue(f, m))}`).join(", ") : "";
      parts.push(el("span", { class: "tag", style: `background:${s.t.color}` }, s.t.title),
        vals ? `${vals} (standard ${fmtRange(def.measure.split("/")[0], def.standard_range)}) ` : "");
    }
  }
  fill($("#frame-info"), ...parts);
}
function drawOverlay() {
  drawPeople();
  const A = state.A, c = $("#overlay"), v = $("#player");
  const dpr = window.devicePixelRatio || 1;
  const cw = c.clientWidth, ch = c.clientHeight;
  if (c.width !== Math.round(cw * dpr) || c.height !== Math.round(ch * dpr)) { c.width = Math.round(cw * dpr); c.height = Math.round(ch * dpr); }
  const g = c.getContext("2d");
  g.setTransform(1, 0, 0, 1, 0, 0);
  g.clearRect(0, 0, c.width, c.height);
  const f = A && A.frames[A.cur];
  if (!f || !f.keypoints || !$("#show-angles").checked) return;
  const map = videoToElement(v, A.r.video.width, A.r.video.height, A.viewZ);
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.font = "600 12px system-ui, sans-serif";
  g.textBaseline = "middle";
  // one label per measured angle, in a column beside the athlete, with a leader line to the joint
  const items = [], done = new Set();
  // red where this frame lies in a fault judged on that measure; the standard alone applies only at
  // some phase of the movement (e.g. the bottom of a squat), so a value outside it is not a fault by itself
  const faultyMeasures = new Set(segsAt(A.cur).flatMap((sg) => (sg.t.def && sg.t.def.measure ? sg.t.def.measure.split("/") : [])));
  const kp = Object.values(f.keypoints).filter((p) => p[2] >= 0.3).map((p) => map(p[0], p[1]));
  if (!kp.length) return;
  const minX = Math.min(...kp.map((p) => p[0])), maxX = Math.max(...kp.map((p) => p[0]));
  for (const t of A.types) {
    const def = t.def;
    if (!def || !def.measure) continue;
    for (const m of def.measure.split("/")) {
      if (done.has(m) || !MEASURES[m]) continue;
      done.add(m);
      const val = measureValue(f, m);
      const joints = [].concat(MEASURES[m][2]);
      const pts = joints.map((j) => f.keypoints[j]).filter((p) => p && p[2] >= 0.3);
      if (val == null || !pts.length) continue;
      const [x, y] = map(pts.reduce((a, p) => a + p[0], 0) / pts.length, pts.reduce((a, p) => a + p[1], 0) / pts.length);
      const text = `${SHORT[m] || m} ${fmtMeasure(m, val)}`;
      items.push({ x, y, text, w: g.measureText(text).width + 10, bad: faultyMeasures.has(m) && offBy(val, def.standard_range) > 0, left: m.endsWith("_r") });
    }
  }
  for (const it of items) {   // athlete's right on the image's left (facing the camera); flip where there is no room
    if (it.left && minX - 16 - it.w < 2) it.left = false;
    else if (!it.left && maxX + 16 + it.w > cw - 2) it.left = minX - 16 - it.w >= 2;
  }
  for (const left of [true, false]) {
    const col = items.filter((it) => it.left === left).sort((a, b) => a.y - b.y);
    let prev = -Infinity;
    for (const it of col) {
      it.ly = clamp(Math.max(it.y, prev + 21), 10, ch - 10);
      prev = it.ly;
      it.lx = left ? minX - 16 - it.w : Math.min(maxX + 16, cw - 2 - it.w);
      const edge = it.lx > it.x ? it.lx : it.lx + it.w;
      g.strokeStyle = "rgba(255,255,255,.9)"; g.lineWidth = 1.5;
      g.beginPath(); g.moveTo(it.x, it.y); g.lineTo(edge, it.ly); g.stroke();
      g.fillStyle = it.bad ? "rgba(198,40,40,.92)" : "rgba(16,36,58,.85)";
      g.fillRect(it.lx, it.ly - 10, it.w, 20);
      g.beginPath(); g.arc(it.x, it.y, 3.5, 0, 2 * Math.PI); g.fill();
      g.fillStyle = "#fff";
      g.fillText(it.text, it.lx + 5, it.ly + 0.5);
    }
  }
}
const SHORT = { knee_l: "L knee", knee_r: "R knee", hip_l: "L hip", hip_r: "R hip", elbow_l: "L elbow", elbow_r: "R elbow",
  trunk: "trunk", body_line: "body line", skis: "skis", knee_width_ratio: "knees/ankles" };

// ── zoom on the athlete: a crop that follows the tracker's box, smoothed over ~1.5 s ──
function zoomPlan(A) {
  const vw = A.r.video.width, vh = A.r.video.height, n = A.n;
  const cx = new Float64Array(n).fill(NaN), cy = new Float64Array(n).fill(NaN), hs = [], ws = [];
  for (let i = 0; i < n; i++) {
    const b = A.frames[i] && A.frames[i].bbox_px;
    if (!b) continue;
    cx[i] = b[0] + b[2] / 2; cy[i] = b[1] + b[3] / 2; hs.push(b[3]); ws.push(b[2]);
  }
  if (!hs.length) return { possible: false, useful: false };
  const median = (a) => a.slice().sort((x, y) => x - y)[a.length >> 1];
  // fill the gaps with the nearest box, then a centred moving average
  for (const arr of [cx, cy]) {
    let last = NaN;
    for (let i = 0; i < n; i++) if (isNaN(arr[i])) arr[i] = last; else last = arr[i];
    last = NaN;
    for (let i = n - 1; i >= 0; i--) if (isNaN(arr[i])) arr[i] = last; else last = arr[i];
  }
  const half = Math.max(1, Math.round(0.75 * A.fps));
  const smooth = (arr) => {
    const pre = new Float64Array(n + 1);
    for (let i = 0; i < n; i++) pre[i + 1] = pre[i] + arr[i];
    return Array.from({ length: n }, (_, i) => {
      const a = Math.max(0, i - half), b = Math.min(n, i + half + 1);
      return (pre[b] - pre[a]) / (b - a);
    });
  };
  const Z = clamp(Math.min((0.7 * vh) / median(hs), (0.6 * vw) / median(ws)), 1, 4);
  return { possible: Z >= 1.2, useful: Z >= 1.5, Z, cx: smooth(cx), cy: smooth(cy) };
}
/** A function mapping video pixels to element pixels, given the element's zoom view {Z, cx, cy} or null. */
function videoToElement(v, vw, vh, view) {
  const cw = v.clientWidth, ch = v.clientHeight;
  const s = Math.min(cw / vw, ch / vh), ox = (cw - vw * s) / 2, oy = (ch - vh * s) / 2;
  if (!view) return (x, y) => [ox + s * x, oy + s * y];
  const { Z, tx, ty } = view;
  return (x, y) => [(ox + s * x) * Z + tx, (oy + s * y) * Z + ty];
}
/** Zoom element v by Z around video pixel (cx, cy), never showing past the picture's edges. */
function zoomElement(v, vw, vh, Z, cx, cy) {
  if (!Z || Z <= 1) { v.style.transform = ""; return null; }
  const cw = v.clientWidth, ch = v.clientHeight;
  const s = Math.min(cw / vw, ch / vh), ox = (cw - vw * s) / 2, oy = (ch - vh * s) / 2;
  const fit = (c, o, span, full) => {   // translation that centres c, clamped to the content
    const t = full / 2 - (o + s * c) * Z;
    const lo = full - (o + span * s) * Z, hi = -o * Z;
    return lo > hi ? (lo + hi) / 2 : clamp(t, lo, hi);
  };
  const tx = fit(cx, ox, vw, cw), ty = fit(cy, oy, vh, ch);
  v.style.transformOrigin = "0 0";
  v.style.transform = `translate(${tx.toFixed(1)}px, ${ty.toFixed(1)}px) scale(${Z.toFixed(3)})`;
  return { Z, tx, ty };
}
function applyMainZoom() {
  const A = state.A, v = $("#player");
  if (!A) return;
  const z = A.zoom;
  A.viewZ = z.possible && $("#zoom").checked ? zoomElement(v, A.r.video.width, A.r.video.height, z.Z, z.cx[A.cur], z.cy[A.cur])
    : zoomElement(v, 1, 1, 0);
}
function applyCompareZoom() {
  const A = state.A, L = cmp.loop, va = $("#cmp-athlete");
  if (!A || !L) return;
  const z = A.zoom;
  if (!z.possible || !$("#zoom").checked) { zoomElement(va, 1, 1, 0); return; }
  const i0 = frameOf(L.a0), i1 = frameOf(Math.max(L.a0, L.a1 - 1e-6));
  let sx = 0, sy = 0;
  for (let i = i0; i <= i1; i++) { sx += z.cx[i]; sy += z.cy[i]; }
  const k = i1 - i0 + 1;
  zoomElement(va, A.r.video.width, A.r.video.height, z.Z, sx / k, sy / k);
}

function navSegs() { return state.A.segs.filter((s) => state.A.enabled.has(s.type)); }
function nextFault() {
  const A = state.A;
  const s = navSegs().find((x) => x.start_frame > A.cur);
  if (s) { setFrame(s.start_frame, true); selectSeg(s.k, false); }
}
function prevFault() {
  const A = state.A;
  const list = navSegs().filter((x) => x.start_frame < A.cur);
  const s = list[list.length - 1];
  if (s) { setFrame(s.start_frame, true); selectSeg(s.k, false); }
}
function togglePlay() {
  const v = $("#player");
  if (v.paused || v.ended) v.play().catch((e) => playerError(`The video cannot play: ${e.message}`));
  else v.pause();
}
function playerError(msg) { setText($("#player-error"), msg); show($("#player-error"), true); }
function setupPlayerEvents() {
  const v = $("#player");
  if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) {
    const cb = (now, meta) => { onPlayerTime(meta.mediaTime); v.requestVideoFrameCallback(cb); };
    v.requestVideoFrameCallback(cb);
  }
  v.addEventListener("timeupdate", () => { if (!v.seeking) onPlayerTime(v.currentTime); });
  v.addEventListener("loadedmetadata", () => {
    const A = state.A;
    if (A && A.pendingSeek != null) v.currentTime = timeOfFrame(A.pendingSeek);
  });
  v.addEventListener("seeked", () => { if (state.A) state.A.pendingSeek = null; });
  v.addEventListener("play", () => setText($("#play"), "Pause"));
  v.addEventListener("pause", () => setText($("#play"), "Play"));
  v.addEventListener("ended", () => setText($("#play"), "Play"));
  v.addEventListener("error", () => {
    if (!state.A || !v.getAttribute("src")) return;
    const code = v.error ? v.error.code : 0;
    playerError(code === 4 ? "The annotated video cannot be played in this browser (or it is not there)."
      : "The annotated video could not be loaded. Reload the page to try again.");
  });
  $("#play").addEventListener("click", togglePlay);
  $("#next-fault").addEventListener("click", nextFault);
  $("#prev-fault").addEventListener("click", prevFault);
  $("#next-frame").addEventListener("click", () => { $("#player").pause(); setFrame(state.A.cur + 1, true); });
  $("#prev-frame").addEventListener("click", () => { $("#player").pause(); setFrame(state.A.cur - 1, true); });
  $("#slider").addEventListener("input", (e) => setFrame(Number(e.target.value), true));
  $("#speed").addEventListener("change", (e) => { v.playbackRate = Number(e.target.value); });
  $("#show-angles").addEventListener("change", drawOverlay);
  $("#zoom").addEventListener("change", () => { applyMainZoom(); drawOverlay(); if (cmp.seg) applyCompareZoom(); });
  document.addEventListener("keydown", (e) => {
    if (!state.A || $("#view-analysis").hidden || e.ctrlKey || e.metaKey || e.altKey) return;
    const tag = (e.target.tagName || "").toLowerCase();
    if (["input", "select", "textarea", "button", "a"].includes(tag)) return;   // they have their own keys
    if (e.key === "ArrowRight") { setFrame(state.A.cur + 1, true); e.preventDefault(); }
    else if (e.key === "ArrowLeft") { setFrame(state.A.cur - 1, true); e.preventDefault(); }
    else if (e.key === "]") nextFault();
    else if (e.key === "[") prevFault();
    else if (e.key === " ") { togglePlay(); e.preventDefault(); }
  });
}

// ───────────────────────── timeline ─────────────────────────
function niceStep(range, target) {
  const raw = range / Math.max(1, target);
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) || 10 * p;
}
function renderTimeline() {
  const A = state.A, box = $("#timeline");
  A.lanes = [];
  const minW = A.n / 250;   // very short segments stay visible
  const lane = (label, color, rects, opts) => {
    const track = el("div", { class: "lane-track", role: "presentation" });
    const s = svg("svg", { viewBox: `0 0 ${A.n} 1`, preserveAspectRatio: "none" });
    for (const r of rects) {
      const rect = svg("rect", { x: r.x, y: 0, width: Math.max(r.w, minW), height: 1, fill: r.color || color, class: r.cls || "",
        "data-k": r.k, "data-type": r.type, opacity: r.opacity }, svg("title", null, r.title));
      s.append(rect);
    }
    track.append(s);
    const ph = el("div", { class: "playhead" });
    track.append(ph);
    A.lanes.push(ph);
    track.addEventListener("click", (e) => {
      const k = e.target.getAttribute && e.target.getAttribute("data-k");
      if (k != null && opts && opts.onSeg) return opts.onSeg(Number(k));
      const rc = track.getBoundingClientRect();
      setFrame(Math.floor(((e.clientX - rc.left) / rc.width) * A.n), true);
    });
    return el("div", { class: "lane", "data-lane": opts && opts.id },
      el("div", { class: "lane-label", title: label }, color ? el("span", { class: "swatch", style: `background:${color}` }) : null, " ", label), track);
  };
  const lanes = A.types.map((t) => lane(t.title, t.color, A.segs.filter((s) => s.type === t.id).map((s) => ({
    x: s.start_frame, w: s.end_frame - s.start_frame + 1, k: s.k, type: s.type, cls: "seg",
    title: `${t.title}: ${fmt(s.start_s, 1)}–${fmt(s.end_s, 1)} s, peak p ${fmt(s.peak_probability, 2)}`,
  })), { id: t.id, onSeg: (k) => { setFrame(A.segs[k].start_frame, true); selectSeg(k, false); } }));
  // frames where the athlete was not found
  const gaps = [];
  for (let i = 0; i < A.n; i++) {
    if (A.frames[i] === undefined || (A.frames[i] && A.frames[i].keypoints)) continue;   // undefined: not loaded yet
    const j0 = i;
    while (i + 1 < A.n && A.frames[i + 1] !== undefined && !(A.frames[i + 1] && A.frames[i + 1].keypoints)) i++;
    gaps.push({ x: j0, w: i - j0 + 1, color: "#9aa5b1", title: `no pose: frames ${j0 + 1}–${i + 1}` });
  }
  if (gaps.length) lanes.push(lane("No pose found", "#9aa5b1", gaps, { id: "nopose" }));
  // frames with a pose but not performing the exercise: not judged (#16)
  const idle = [];
  for (let i = 0; i < A.n; i++) {
    if (!(A.frames[i] && A.frames[i].activity === "not_performing")) continue;
    const j0 = i;
    while (i + 1 < A.n && A.frames[i + 1] && A.frames[i + 1].activity === "not_performing") i++;
    idle.push({ x: j0, w: i - j0 + 1, color: "#c9cfd6", title: `not performing the exercise: frames ${j0 + 1}–${i + 1}` });
  }
  if (idle.length) lanes.push(lane("Not performing", "#c9cfd6", idle, { id: "idle" }));
  const reps = Array.isArray(A.r.repetitions) ? A.r.repetitions : [];
  if (reps.length) {
    lanes.push(lane("Repetitions", "#5b6675", reps.map((rp, i) => ({
      x: rp.start_frame, w: rp.end_frame - rp.start_frame + 1, color: i % 2 ? "#7d8896" : "#aab4c0",
      opacity: rp.quality != null ? 0.45 + 0.55 * clamp(rp.quality, 0, 1) : 1,
      title: `repetition ${rp.index}: frames ${rp.start_frame}–${rp.end_frame}${rp.quality != null ? `, quality ${fmt(rp.quality, 2)}` : ""}`,
    })), { id: "reps" }));
  }
  const step = niceStep(A.duration, 8);
  const ticks = [];
  for (let t = 0; t <= A.duration + 1e-9; t += step) ticks.push(el("span", { style: `left:${(100 * t) / A.duration}%` }, `${+t.toFixed(2)} s`));
  fill(box, ...lanes, el("div", { class: "timeline-axis" }, el("span"), el("div", { class: "ticks" }, ticks)));
}
function renderLegend() {
  const A = state.A;
  fill($("#legend"), ...A.types.map((t) => el("label", { title: "Include in previous/next fault" },
    el("input", { type: "checkbox", checked: A.enabled.has(t.id), "data-type": t.id, onchange: (e) => {
      if (e.target.checked) A.enabled.add(t.id); else A.enabled.delete(t.id);
      for (const r of document.querySelectorAll(`#timeline rect[data-type="${t.id}"]`)) r.setAttribute("opacity", e.target.checked ? 1 : 0.25);
    } }),
    el("span", { class: "swatch", style: `background:${t.color}` }), `${t.title} (${t.count})`)));
  setText($("#fault-count"), A.segs.length ? `${A.segs.length} segment${A.segs.length > 1 ? "s" : ""}` : "none");
}
function renderFaultList() {
  const A = state.A, list = $("#fault-list");
  if (!A.segs.length) {
    const j = A.r.judgement;
    fill(list, el("li", { class: "muted" }, el("span"), j && j.finding
      ? "Not judged: the exercise was not performed (see the finding above)."
      : "No faults found: every judged frame met the standard."));
    return;
  }
  fill(list, ...A.segs.map((s) => el("li", { "data-k": s.k, tabindex: 0,
    onclick: () => { setFrame(s.start_frame, true); selectSeg(s.k, false); },
    onkeydown: (e) => { if (e.key === "Enter") { setFrame(s.start_frame, true); selectSeg(s.k, false); } } },
    el("span", { class: "swatch", style: `background:${s.t.color}` }),
    el("span", null, el("strong", null, s.title), " ", el("span", { class: "when" },
      `${fmt(s.start_s, 1)}–${fmt(s.end_s, 1)} s · frames ${s.start_frame + 1}–${s.end_frame + 1}`)),
    el("span", { class: "small muted", title: "peak probability" }, `p ${fmt(s.peak_probability, 2)}`),
    s.dev ? el("span", { class: "dev-short" }, devSentence(s)) : null)));
}
function selectSeg(k, seek) {
  const A = state.A, s = A.segs[k];
  if (!s) return;
  A.sel = k;
  if (seek) setFrame(s.start_frame, true);
  for (const li of $("#fault-list").children) li.classList.toggle("selected", Number(li.dataset.k) === k);
  for (const r of document.querySelectorAll("#timeline rect.seg")) r.classList.toggle("selected", Number(r.getAttribute("data-k")) === k);
  const li = $(`#fault-list li[data-k="${k}"]`);
  if (li) {   // keep it in view inside the list without scrolling the page
    const list = $("#fault-list");
    if (li.offsetTop < list.scrollTop || li.offsetTop + li.offsetHeight > list.scrollTop + list.clientHeight) list.scrollTop = li.offsetTop - list.clientHeight / 3;
  }
  renderFaultDetail(s);
  setupCompare(s, 0);
}
function renderFaultDetail(s) {
  const def = s.t.def, d = s.dev;
  const rows = d ? d.rows.map((x) => el("tr", null,
    el("td", null, measureLabel(x.m)),
    el("td", null, fmtMeasure(x.m, x.v)),
    el("td", null, fmtRange(x.m, d.range)),
    el("td", { class: x.off ? "off" : x.off === 0 ? "in" : "" }, x.off == null ? "–" : x.off === 0 ? "within" : `${fmtDiff(x.m, x.off)} ${x.dir}`),
    el("td", null, x.segMax == null ? "–" : x.segMax === 0 ? "within" : fmtDiff(x.m, x.segMax)))) : [];
  fill($("#fault-detail"), 
    el("h3", null, el("span", { class: "swatch", style: `background:${s.t.color}` }), s.title),
    el("p", { class: "muted small" }, `${fmt(s.start_s, 2)}–${fmt(s.end_s, 2)} s · frames ${s.start_frame + 1}–${s.end_frame + 1} · peak probability ${fmt(s.peak_probability, 2)}` +
      (def && def.threshold != null ? ` (threshold ${fmt(def.threshold, 2)})` : "")),
    def ? el("p", null, def.description) : null,
    def ? el("p", null, el("strong", null, "Standard: "), def.standard) : null,
    d ? el("table", { class: "dev" },
      el("thead", null, el("tr", null, el("th", null, "Measure"), el("th", null, `Frame ${d.worst + 1}`), el("th", null, "Standard"),
        el("th", null, "Off by"), el("th", { title: "largest distance from the standard within the segment" }, "Worst in segment"))),
      el("tbody", null, rows)) : null,
    d ? el("p", { class: "small" }, `Frame ${d.worst + 1} is where the classifier was most certain${d.fallback ? " among the frames where this could be measured" : ""} (p ${fmt(d.p, 2)}). `,
      el("button", { type: "button", class: "link-button", onclick: () => { $("#player").pause(); setFrame(d.worst, true); } }, "Show that frame")) : null);
}

// ───────────────────────── exemplar beside the athlete ─────────────────────────
const cmp = { seg: null, sug: null, raf: 0, playing: true, t0: 0, loop: null };
function stopCompare() {
  cancelAnimationFrame(cmp.raf);
  cmp.raf = 0;
  for (const id of ["#cmp-athlete", "#cmp-exemplar"]) { const v = $(id); if (v) v.pause(); }
}
function setupCompare(seg, which) {
  const A = state.A, card = $("#compare-card");
  const sugs = seg.suggestions || [];
  stopCompare();
  if (!sugs.length) { show(card, false); return; }
  const sug = sugs[clamp(which, 0, sugs.length - 1)];
  cmp.seg = seg; cmp.sug = sug;
  show(card, true);
  fill($("#suggestion-picker"), ...sugs.map((x, i) => el("button", { type: "button", class: x === sug ? "selected" : "",
    onclick: () => setupCompare(seg, i) }, `${x.title} · ${Math.round(100 * x.similarity)}% match`)));
  // the athlete's span and the exemplar's, padded alike to at least ~1.2 s so the movement can be seen
  const a0 = seg.start_frame / A.fps, a1 = (seg.end_frame + 1) / A.fps;
  const e0 = sug.start_s, e1 = Math.max(sug.end_s, sug.start_s + 1 / A.fps);
  const pad = Math.max(0, (1.2 - Math.max(a1 - a0, e1 - e0)) / 2);
  cmp.loop = { a0: Math.max(0, a0 - pad), a1: Math.min(A.duration, a1 + pad), e0: Math.max(0, e0 - pad), e1: e1 + pad };
  const va = $("#cmp-athlete"), ve = $("#cmp-exemplar");
  const aSrc = withKey(`/v1/analyses/${A.id}/video`);
  if (va.getAttribute("src") !== aSrc) va.src = aSrc;
  if (ve.getAttribute("src") !== sug.url) { ve.src = sug.url; ve.dataset.retried = ""; }
  applyCompareZoom();
  setText($("#cmp-athlete-cap"), `You: ${fmt(a0, 1)}–${fmt(a1, 1)} s (${seg.title})`);
  setText($("#cmp-exemplar-cap"), `${sug.title}: ${fmt(e0, 1)}–${fmt(e1, 1)} s · ${Math.round(100 * sug.similarity)}% match`);
  setText($("#compare-caption"), `Both clips loop over the same time, start with start and end with end` +
    (pad > 0.01 ? ` (each shown with ${fmt(pad, 1)} s either side)` : "") + `. ${seg.t.def ? "Standard: " + seg.t.def.standard + "." : ""}`);
  cmp.t0 = performance.now();
  cmp.phase = 0;
  cmp.playing = true;
  setText($("#compare-play"), "Pause");
  const start = () => {
    for (const v of [va, ve]) v.play().catch(() => null);
    cmp.raf = requestAnimationFrame(syncCompare);
  };
  start();
}
function syncCompare(now) {
  cmp.raf = requestAnimationFrame(syncCompare);
  const L = cmp.loop, va = $("#cmp-athlete"), ve = $("#cmp-exemplar");
  if (!L || $("#compare-card").hidden) return;
  const speed = Number($("#compare-speed").value);
  const aDur = L.a1 - L.a0, eDur = L.e1 - L.e0;
  const W = Math.max(aDur, eDur) / speed;     // wall seconds per loop
  if (!cmp.playing) { cmp.t0 = now - cmp.phase * W * 1000; return; }
  cmp.phase = (((now - cmp.t0) / 1000) % W) / W;
  const ta = L.a0 + cmp.phase * aDur, te = L.e0 + cmp.phase * eDur;
  for (const [v, target, rate] of [[va, ta, aDur / W], [ve, te, eDur / W]]) {
    if (v.readyState < 1) continue;
    const r = clamp(rate, 0.0625, 4);
    if (Math.abs(v.playbackRate - r) > 1e-3) v.playbackRate = r;
    if (!v.seeking && Math.abs(v.currentTime - target) > 0.2) v.currentTime = target;
    if (v.paused) v.play().catch(() => null);
  }
}
function setupCompareEvents() {
  $("#compare-play").addEventListener("click", () => {
    cmp.playing = !cmp.playing;
    setText($("#compare-play"), cmp.playing ? "Pause" : "Play");
    for (const v of [$("#cmp-athlete"), $("#cmp-exemplar")]) { if (cmp.playing) v.play().catch(() => null); else v.pause(); }
  });
  $("#cmp-exemplar").addEventListener("error", async () => {
    // presigned exemplar URLs expire: fetch the result again once for fresh ones
    const ve = $("#cmp-exemplar"), A = state.A;
    if (!A || !cmp.seg || !ve.getAttribute("src")) return;
    if (ve.dataset.retried) { setText($("#cmp-exemplar-cap"), "The exemplar clip could not be loaded."); return; }
    ve.dataset.retried = "1";
    try {
      const r = await api(`/v1/analyses/${A.id}/result?frames=none`);
      const fresh = r.faults.flatMap((f) => f.suggestions || []).find((x) => x.video_key === cmp.sug.video_key);
      if (fresh && fresh.url) {
        for (const s of A.segs) for (const x of s.suggestions || []) if (x.video_key === fresh.video_key) x.url = fresh.url;
        ve.src = fresh.url; ve.play().catch(() => null);
      }
    } catch (e) { setText($("#cmp-exemplar-cap"), `The exemplar clip could not be loaded: ${e.message}`); }
  });
}

// ───────────────────────── plots ─────────────────────────
function plotGroups() {
  const A = state.A, groups = [], byKey = {};
  for (const t of A.types) {
    const def = t.def;
    if (!def || !def.measure) continue;
    const key = def.measure;
    if (!byKey[key]) { byKey[key] = { key, measures: key.split("/"), bands: [], types: [] }; groups.push(byKey[key]); }
    const g = byKey[key];
    g.types.push(t);
    if (!g.bands.some((b) => b.lo === def.standard_range[0] && b.hi === def.standard_range[1]))
      g.bands.push({ lo: def.standard_range[0], hi: def.standard_range[1], label: def.standard });
  }
  if ($("#all-angles").checked) {
    const shown = new Set(groups.flatMap((g) => g.measures));
    const names = new Set();
    for (const f of A.frames) if (f && f.angles_deg) for (const k of Object.keys(f.angles_deg)) names.add(k);
    for (const m of names) if (!shown.has(m)) groups.push({ key: m, measures: [m], bands: [], types: [] });
  }
  return groups;
}
const SERIES_STYLE = [["#0b5fa5", ""], ["#7a3fbf", "5 3"], ["#1b2430", "2 2"]];
function renderPlots() {
  const A = state.A, box = $("#plots");
  A.cursors = [];
  const plots = plotGroups().map((g) => linePlot({
    title: g.measures.map(measureLabel).join(" · ").replace(/Left (\w+) flexion · Right \1 flexion/, "$1 flexion, left and right").replace(/^\w/, (c) => c.toUpperCase()),
    unit: measureUnit(g.measures[0]),
    series: g.measures.map((m, i) => ({ label: measureLabel(m), color: SERIES_STYLE[i % 3][0], dash: SERIES_STYLE[i % 3][1],
      values: A.frames.map((f) => measureValue(f, m)) })),
    bands: g.bands,
    shade: A.segs.filter((s) => g.types.includes(s.t)).map((s) => ({ a: s.start_frame, b: s.end_frame + 1, color: s.t.color })),
  }));
  // fault probabilities with each fault's decision threshold
  const probTypes = A.types.filter((t) => A.frames.some((f) => f && f.faults && f.faults[t.id] != null));
  if (probTypes.length) {
    plots.push(linePlot({
      title: "Fault probability per frame (dashed: decision threshold)", unit: "", yMin: 0, yMax: 1,
      series: probTypes.map((t) => ({ label: t.title, color: t.color, dash: "", values: A.frames.map((f) => (f && f.faults ? f.faults[t.id] : null)) })),
      hlines: probTypes.filter((t) => t.def && t.def.threshold != null).map((t) => ({ y: t.def.threshold, color: t.color, label: `${t.title} threshold ${t.def.threshold}` })),
      bands: [], shade: [],
    }));
  }
  fill(box, ...plots);
  if (!plots.length) fill(box, el("p", { class: "muted" }, "No joint angles were measured."));
}
function linePlot(o) {
  const A = state.A;
  const wrap = el("div", { class: "plot" });
  const W = Math.max(260, ($("#plots").clientWidth > 900 ? ($("#plots").clientWidth - 20) / 2 : $("#plots").clientWidth) || 600);
  const H = window.innerWidth <= 560 ? 150 : 170;
  const m = { l: 40, r: 8, t: 8, b: 20 };
  const pw = W - m.l - m.r, phh = H - m.t - m.b;
  let lo = o.yMin, hi = o.yMax;
  if (lo == null || hi == null) {
    let a = Infinity, b = -Infinity;
    for (const s of o.series) for (const v of s.values) if (v != null && isFinite(v)) { a = Math.min(a, v); b = Math.max(b, v); }
    for (const bd of o.bands) {   // keep the standard band in view unless it is far off the data (e.g. ratio up to 3)
      a = Math.min(a, bd.lo); b = Math.max(b, Math.min(bd.hi, isFinite(b) ? b + (b - a) * 0.5 + 1 : bd.hi));
    }
    if (!isFinite(a)) { a = 0; b = 1; }
    if (b - a < 1e-6) { a -= 1; b += 1; }
    const padY = (b - a) * 0.06;
    lo = o.yMin != null ? o.yMin : a - padY; hi = o.yMax != null ? o.yMax : b + padY;
  }
  const X = (i) => m.l + ((i + 0.5) / A.n) * pw;
  const Y = (v) => m.t + (1 - (v - lo) / (hi - lo)) * phh;
  const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, preserveAspectRatio: "none", role: "img", "aria-label": o.title });
  g.style.height = `${H}px`;
  const defs = svg("defs", null, svg("clipPath", { id: `clip${linePlot.n = (linePlot.n || 0) + 1}` }, svg("rect", { x: m.l, y: m.t, width: pw, height: phh })));
  g.append(defs);
  const clip = `url(#clip${linePlot.n})`;
  // faulty frames
  const shade = svg("g", { "clip-path": clip });
  for (const s of o.shade) shade.append(svg("rect", { x: X(s.a - 0.5), y: m.t, width: Math.max(1.5, X(s.b - 0.5) - X(s.a - 0.5)), height: phh, fill: s.color, opacity: 0.22 }));
  g.append(shade);
  // standard bands
  for (const b of o.bands) {
    const y1 = Y(Math.min(b.hi, hi)), y0 = Y(Math.max(b.lo, lo));
    if (y0 <= y1) continue;
    g.append(svg("rect", { x: m.l, y: y1, width: pw, height: y0 - y1, fill: "#1d8a4a", opacity: 0.13 }, svg("title", null, `standard: ${b.label}`)));
    for (const v of [b.lo, b.hi]) if (v >= lo && v <= hi) g.append(svg("line", { x1: m.l, x2: m.l + pw, y1: Y(v), y2: Y(v), stroke: "#1d8a4a", "stroke-dasharray": "4 3", "stroke-width": 1 }));
  }
  // axes
  const axis = svg("g", { class: "axis" });
  const ys = niceStep(hi - lo, 4);
  for (let v = Math.ceil(lo / ys) * ys; v <= hi + 1e-9; v += ys) {
    axis.append(svg("line", { x1: m.l - 3, x2: m.l + pw, y1: Y(v), y2: Y(v), stroke: "#eef1f5" }));
    axis.append(svg("text", { x: m.l - 5, y: Y(v) + 3, "text-anchor": "end" }, `${+v.toFixed(2)}${o.unit === "°" ? "°" : ""}`));
  }
  const xs = niceStep(A.duration, 6);
  for (let t = 0; t <= A.duration + 1e-9; t += xs) {
    const x = m.l + (t / A.duration) * pw;
    axis.append(svg("line", { x1: x, x2: x, y1: m.t + phh, y2: m.t + phh + 4 }));
    axis.append(svg("text", { x, y: H - 4, "text-anchor": "middle" }, `${+t.toFixed(2)} s`));
  }
  axis.append(svg("line", { x1: m.l, x2: m.l + pw, y1: m.t + phh, y2: m.t + phh }));
  g.append(axis);
  for (const h of o.hlines || []) g.append(svg("line", { x1: m.l, x2: m.l + pw, y1: Y(h.y), y2: Y(h.y), stroke: h.color, "stroke-dasharray": "6 4", "stroke-width": 1.5 }, svg("title", null, h.label)));
  // series (gaps where not measured); thinned to about 2 points per pixel
  const step = Math.max(1, Math.floor(A.n / (2 * pw)));
  for (const s of o.series) {
    let d = "", pen = false;
    for (let i = 0; i < A.n; i += step) {
      const v = s.values[i];
      if (v == null || !isFinite(v)) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${X(i).toFixed(1)} ${Y(clamp(v, lo, hi)).toFixed(1)}`;
      pen = true;
    }
    g.append(svg("path", { d, fill: "none", stroke: s.color, "stroke-width": 1.6, "stroke-dasharray": s.dash || null, "clip-path": clip, "stroke-linejoin": "round" }, svg("title", null, s.label)));
  }
  // playhead + value readout
  const cur = svg("line", { y1: m.t, y2: m.t + phh, stroke: "#10243a", "stroke-width": 1.5 });
  const readout = svg("text", { x: m.l + pw, y: m.t + 10, "text-anchor": "end", "font-size": 11, fill: "#1b2430", "font-weight": 600 });
  g.append(cur, readout);
  A.cursors.push(() => {
    const x = X(A.cur);
    cur.setAttribute("x1", x); cur.setAttribute("x2", x);
    readout.textContent = o.series.map((s) => { const v = s.values[A.cur]; return v == null ? "–" : o.unit === "°" ? `${fmt(v, 0)}°` : fmt(v, 2); }).join(" / ");
  });
  g.addEventListener("click", (e) => {
    const r = g.getBoundingClientRect();
    const x = ((e.clientX - r.left) / r.width) * W;
    $("#player").pause();
    setFrame(Math.floor(((x - m.l) / pw) * A.n), true);
  });
  wrap.append(el("h3", null, o.title), g,
    el("div", { class: "plot-legend" }, o.series.length > 1 || o.hlines ? o.series.map((s) => el("span", null, el("i", { style: `border-top-color:${s.color};${s.dash ? "border-top-style:dashed" : ""}` }), s.label)) : null,
      o.bands.map((b) => el("span", null, el("i", { style: "border-top-color:#1d8a4a;border-top-style:dashed" }), `standard ${fmt(b.lo, 2).replace(/\.?0+$/, "")}–${fmt(b.hi, 2).replace(/\.?0+$/, "")}${o.unit === "°" ? "°" : ""}`))));
  return wrap;
}

// ───────────────────────── repetitions, downloads ─────────────────────────
function renderReps() {
  const A = state.A, panel = $("#reps-panel"), reps = A.r.repetitions;
  if (!Array.isArray(reps)) { show(panel, false); fill(panel); return; }
  const att = (a) => {
    if (a == null) return "–";
    if (typeof a === "number") return fmt(a, 2);
    if (Array.isArray(a) && a.length && a.every((x) => typeof x === "number")) {   // attention weights: sparkline
      const mx = Math.max(...a, 1e-9), w = 90, h = 18;
      const pts = a.map((x, i) => `${((i + 0.5) / a.length) * w},${h - (x / mx) * (h - 2) - 1}`).join(" ");
      return svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": "attention over the repetition" },
        svg("polyline", { points: pts, fill: "none", stroke: "#0b5fa5", "stroke-width": 1.5 }));
    }
    return JSON.stringify(a).slice(0, 80);
  };
  fill(panel, el("h2", null, `Repetitions (${reps.length})`),
    reps.length ? el("table", { class: "reps" },
      el("thead", null, el("tr", null, el("th", null, "#"), el("th", null, "When"), el("th", null, "Quality"), el("th", null, "Attention"), el("th", null, "Faults"))),
      el("tbody", null, reps.map((rp) => el("tr", { onclick: () => { $("#player").pause(); setFrame(rp.start_frame, true); }, title: "Show this repetition" },
        el("td", null, rp.index),
        el("td", null, `${fmt(rp.start_frame / A.fps, 1)}–${fmt((rp.end_frame + 1) / A.fps, 1)} s (frames ${rp.start_frame + 1}–${rp.end_frame + 1})`),
        el("td", null, rp.quality == null ? "–" : [el("span", { class: "qbar" }, el("span", { style: `width:${100 * clamp(rp.quality <= 1 ? rp.quality : rp.quality / 100, 0, 1)}%` })), fmt(rp.quality, 2)]),
        el("td", null, att(rp.attention)),
        el("td", null, (rp.faults || []).length ? rp.faults.map((t) => (A.types.find((x) => x.id === t) || { title: t }).title).join(", ") : "–"))))) : el("p", { class: "muted" }, "No repetitions were found."));
  show(panel, true);
}
function renderDownloads() {
  const id = state.A.id;
  fill($("#downloads"), 
    el("li", null, el("a", { href: withKey(`/v1/analyses/${id}/result`), download: `coach-${id}.json` }, "Result (JSON)"), el("span", { class: "muted small" }, " — poses, angles, faults and suggestions, as the API returns them")),
    el("li", null, el("a", { href: withKey(`/v1/analyses/${id}/video`), download: `coach-${id}.mp4` }, "Annotated video (MP4)"), el("span", { class: "muted small" }, " — skeleton drawn; faulty frames red, correct green, not judged grey")),
    el("li", null, el("a", { href: withKey(`/v1/analyses/${id}/keypoints.csv`), download: `coach-${id}-keypoints.csv` }, "Keypoints and angles (CSV)"), el("span", { class: "muted small" }, " — one row per frame, for spreadsheets")));
}

// ───────────────────────── start ─────────────────────────
function init() {
  $("#sport").addEventListener("change", sportInfo);
  for (const id of ["#file", "#camera"]) $(id).addEventListener("change", (e) => {
    const f = e.target.files && e.target.files[0];
    if (id === "#camera" && f) $("#file").value = "";
    onFileChosen(f);
  });
  $("#upload-form").addEventListener("submit", submitUpload);
  $("#recent-refresh").addEventListener("click", () => loadAnalyses($("#recent-list"), 8));
  $("#history-refresh").addEventListener("click", () => loadAnalyses($("#history-list"), 500));
  $("#all-angles").addEventListener("change", () => { if (state.A) { renderPlots(); setFrame(state.A.cur, false); } });
  setupBoxDrawing();
  setupPlayerEvents();
  setupSwitchEvents();
  setupCompareEvents();
  let resizeTimer = 0, lastW = window.innerWidth;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (!state.A) return;
      applyMainZoom();
      drawOverlay();
      if (cmp.seg) applyCompareZoom();
      if (window.innerWidth !== lastW) { lastW = window.innerWidth; renderPlots(); setFrame(state.A.cur, false); }
    }, 150);
  });
  window.addEventListener("hashchange", route);
  loadSports().catch(() => null);
  route();
}

// for tests and curious users: the page's state and the renderer of a result document
window.AICoach = { state, showResult: buildResult, showPartial: renderPartial, setFrame, nextFault, prevFault, frameOf: (t) => frameOf(t) };
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
