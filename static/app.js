// Tessera upload page: tiles -> session (indexed in the background) -> cover -> mosaic.
"use strict";

const $ = (id) => document.getElementById(id);
const BATCH_FILES = 400;                 // files per upload request
const BATCH_BYTES = 256 * 1024 * 1024;   // bytes per upload request
const POLL_MS = 400;
const IMAGE_NAME = /\.(jpe?g|png|webp|gif|bmp|tiff?|heic|heif|avif|zip)$/i;

const state = {
  sessionId: document.body.dataset.session || null,
  tiles: [],        // File objects picked but not uploaded yet
  skipped: 0,       // picked files that are not images
  cover: null,
  coverCheck: null, // Promise of the cover's check in the page: null (fine) or a message
  coverUrl: null,   // the cover as the page shows it (object URL or the server's copy)
  startedAt: 0,     // when the person pressed "Make mosaic"
  busy: false,
};

// Messages start with a capital and end with a stop, whatever the server's style.
function sentence(text) {
  const t = String(text || "").trim();
  if (!t) return t;
  const looksLikeName = /^[^\s:]*[._/\\0-9]/.test(t);  // "photo_01.jpg: ..." keeps its file's name
  const s = looksLikeName ? t : t[0].toUpperCase() + t.slice(1);
  return /[.!?…)]$/.test(s) ? s : `${s}.`;
}

const formatMB = (bytes) => `${(bytes / 1048576).toFixed(bytes < 10 * 1048576 ? 1 : 0)} MB`;
const formatSeconds = (ms) => (ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`);

// ---------------------------------------------------------------- errors and progress

function showError(id, message) {
  const el = $(id);
  if (!el) return showError("form-error", message);
  el.textContent = sentence(message);
  el.hidden = false;
  const input = $(id.replace(/-error$/, ""));
  if (input) input.setAttribute("aria-invalid", "true");
}

function clearErrors() {
  document.querySelectorAll(".error").forEach((el) => { el.hidden = true; el.textContent = ""; });
  document.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
}

// Put an API error next to the input that caused it.
function showApiError(body, fallbackId) {
  const detail = (body && body.detail) || "Something went wrong.";
  const field = body && body.field;
  const file = body && body.file;
  const text = file && !detail.includes(file) ? `${file}: ${detail}` : detail;  // the name once
  if (field === "cover" || (file && fallbackId === "cover-error")) return showError("cover-error", text);
  if (field === "tiles") return showError("tiles-error", text);
  if (field && $(`${field}-error`)) return showError(`${field}-error`, text);
  showError(fallbackId || "form-error", text);
}

// The number inputs carry the server's limits (min, max: the engine's option table): say them.
function allowedText(input) {
  const whole = input.step !== "any" ? "A whole number" : "A number";
  if (input.min !== "" && input.max !== "") return `${whole} between ${input.min} and ${input.max}.`;
  if (input.min !== "") return `${whole} of at least ${input.min}.`;
  return `${whole}.`;
}

function setProgress(label, done, total) {
  $("progress").hidden = false;
  const waited = state.startedAt ? ` · ${formatSeconds(Date.now() - state.startedAt)} so far` : "";
  $("progress-label").textContent = label + waited;
  const bar = $("progress-bar");
  if (total > 0) { bar.max = total; bar.value = Math.min(done, total); } else { bar.removeAttribute("value"); }
}

function hideProgress() { $("progress").hidden = true; }

class ApiError extends Error {
  constructor(status, body) { super((body && body.detail) || `HTTP ${status}`); this.status = status; this.body = body; }
}

async function api(method, url, formData) {
  const response = await fetch(url, { method, body: formData });
  let body = null;
  try { body = await response.json(); } catch (_) { body = { detail: `HTTP ${response.status}` }; }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// XHR, for upload progress.
function upload(url, formData, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded, e.total); };
    xhr.onload = () => {
      let body;
      try { body = JSON.parse(xhr.responseText); } catch (_) { body = { detail: `HTTP ${xhr.status}` }; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body); else reject(new ApiError(xhr.status, body));
    };
    xhr.onerror = () => reject(new ApiError(0, { detail: "The upload failed: is the server reachable?" }));
    xhr.send(formData);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- picking files

function acceptable(file) { return file.type.startsWith("image/") || IMAGE_NAME.test(file.name); }

function addTiles(files) {
  for (const file of files) {
    if (acceptable(file)) state.tiles.push(file); else state.skipped += 1;
  }
  const mb = state.tiles.reduce((s, f) => s + f.size, 0) / 1048576;
  let text = state.tiles.length ? `${state.tiles.length} file${state.tiles.length === 1 ? "" : "s"} picked (${mb.toFixed(1)} MB)` : "";
  if (state.skipped) text += `${text ? ", " : ""}${state.skipped} non-image file${state.skipped === 1 ? "" : "s"} skipped`;
  $("tiles-picked").textContent = text;
  $("tiles-error").hidden = true;
  if (!sampleTile) pickSampleTile();
}

// HEIC and HEIF: the server decodes them, most browsers cannot.
const SERVER_ONLY = /\.(heic|heif)$/i;

// Decode the cover in the page before anything is uploaded: a file that is not a picture costs
// the server nothing. Resolves to null when it is fine, else to the message to show.
async function checkCover(file) {
  if (file.size === 0) return `${file.name}: the file is empty.`;
  try {
    const bitmap = await createImageBitmap(file);
    coverSize = { w: bitmap.width, h: bitmap.height };
    coverBitmap = bitmap;
    updateSizeHint();
    drawTintPreview();
    return null;
  } catch (_) {
    if (SERVER_ONLY.test(file.name)) return null;
    return `${file.name}: not a supported image (it cannot be decoded as a picture).`;
  }
}

function setCover(file) {
  if (!file) return;
  state.cover = file;
  coverSize = null;
  coverBitmap = null;
  $("cover-picked").textContent = file.name;
  $("cover-error").hidden = true;
  $("cover-input").removeAttribute("aria-invalid");
  const preview = $("cover-preview");
  if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  state.coverCheck = checkCover(file).then((problem) => {
    if (problem && state.cover === file) {
      preview.hidden = true;
      showError("cover-error", problem);
    }
    return problem;
  });
  updateSizeHint();
}

// Walk folders dropped onto the page.
async function filesFromDrop(dataTransfer) {
  const entries = [...dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  if (!entries.length) return [...dataTransfer.files];
  const files = [];
  async function walk(entry) {
    if (entry.isFile) {
      files.push(await new Promise((res, rej) => entry.file(res, rej)));
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
        if (!batch.length) break;
        for (const child of batch) if (!child.name.startsWith(".")) await walk(child);
      }
    }
  }
  for (const entry of entries) await walk(entry);
  return files;
}

function dropZone(zone, onFiles) {
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    onFiles(await filesFromDrop(e.dataTransfer));
  });
}

// ---------------------------------------------------------------- the size hint

let coverSize = null;    // the cover's pixel size, once decoded
let coverBitmap = null;  // the decoded cover (for the tint preview)
const DEFAULT_DPI = 300;

function dpiValue() {
  const input = $("dpi");
  const dpi = input ? parseInt(input.value, 10) : DEFAULT_DPI;
  return dpi > 0 ? dpi : DEFAULT_DPI;
}

// The print size of a picture of width x height pixels at dpi: the same formula as the server's
// report.print (inches = pixels / dpi; 2.54 cm to the inch).
function printSize(width, height, dpi) {
  const r1 = (x) => Math.round(x * 10) / 10;
  const r2 = (x) => Math.round(x * 100) / 100;
  return { dpi, width_in: r2(width / dpi), height_in: r2(height / dpi),
    width_cm: r1(width / dpi * 2.54), height_cm: r1(height / dpi * 2.54) };
}

function printText(p) {
  return `${p.width_cm} × ${p.height_cm} cm (${p.width_in} × ${p.height_in} in) at ${p.dpi} dpi`;
}

function tileHeight(px) {
  const [aw, ah] = $("aspect").value.split(":").map(Number);
  return Math.max(1, Math.round(px * ah / aw));
}

function updateSizeHint() {
  const cols = parseInt($("cols").value, 10);
  const px = parseInt($("tile_size").value, 10);
  if (!(cols > 0 && px > 0)) { $("size-hint").textContent = ""; return; }
  const tileH = tileHeight(px);
  const width = cols * px;
  const across = printSize(width, width, dpiValue());
  let text = `${width} px wide, ${across.width_cm} cm (${across.width_in} in) at ${across.dpi} dpi`;
  if (coverSize) {
    const rows = Math.max(1, Math.round(cols * px * coverSize.h / (coverSize.w * tileH)));
    text = `${cols} × ${rows} tiles, ${width} × ${rows * tileH} px: a print of ${printText(printSize(width, rows * tileH, dpiValue()))}`;
  }
  $("size-hint").textContent = `The mosaic will be ${text}.`;
}

// Print presets: the long and short side in inches (or pixels for a screen). A preset picks a
// tile size that gives about 100 tiles across the print, and the columns that fill its width.
const PRESETS = {
  a4: { short: 21 / 2.54, long: 29.7 / 2.54 },
  a3: { short: 29.7 / 2.54, long: 42 / 2.54 },
  "50x70": { short: 50 / 2.54, long: 70 / 2.54 },
  "18x24in": { short: 18, long: 24 },
  phone: { shortPx: 1170, longPx: 2532, portrait: true },
};

function applyPreset(name) {
  const preset = PRESETS[name];
  if (!preset) return;
  const portrait = preset.portrait || !coverSize || coverSize.h >= coverSize.w;
  const widthPx = preset.shortPx
    ? (portrait ? preset.shortPx : preset.longPx)
    : Math.round((portrait ? preset.short : preset.long) * dpiValue());
  const input = $("tile_size");
  const min = parseInt(input.min, 10) || 1;
  const max = parseInt(input.max, 10) || 512;
  const colsMax = parseInt($("cols").max, 10) || 1000;
  let px = Math.min(max, Math.max(min, Math.round(widthPx / 100)));
  px = Math.max(px, Math.ceil(widthPx / colsMax));
  input.value = String(px);
  $("cols").value = String(Math.max(1, Math.round(widthPx / px)));
  updateSizeHint();
}

$("preset").addEventListener("change", (e) => applyPreset(e.target.value));
["cols", "tile_size", "aspect", "dpi"].forEach((id) => {
  const input = $(id);
  if (!input) return;
  input.addEventListener("input", updateSizeHint);
  if (id !== "aspect" && id !== "dpi") input.addEventListener("input", () => { $("preset").value = ""; });
});

// ---------------------------------------------------------------- the tint preview

// One tile on the cover's middle cell, as the server would shift it: each pixel moves tint % of
// the way from the tile's mean colour to the cell's (the engine's tint_offsets).
let sampleTile = null;

function meanColour(data) {
  const sum = [0, 0, 0];
  for (let i = 0; i < data.length; i += 4) { sum[0] += data[i]; sum[1] += data[i + 1]; sum[2] += data[i + 2]; }
  const n = data.length / 4 || 1;
  return sum.map((v) => v / n);
}

function drawTintPreview() {
  const tint = parseFloat($("tint").value) || 0;
  $("tint-value").textContent = `${Math.round(tint)} %`;
  const canvas = $("tint-preview");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const half = canvas.width / 2;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const source = sampleTile || coverBitmap;
  if (!source || !coverBitmap) { canvas.hidden = true; return; }
  canvas.hidden = false;
  // the cell: the middle tenth of the cover
  const cw = Math.max(1, Math.round(coverBitmap.width / 10));
  const ch = Math.max(1, Math.round(coverBitmap.height / 10));
  ctx.drawImage(coverBitmap, (coverBitmap.width - cw) / 2, (coverBitmap.height - ch) / 2, cw, ch, 0, 0, half, canvas.height);
  const cell = meanColour(ctx.getImageData(0, 0, half, canvas.height).data);
  ctx.fillStyle = `rgb(${cell.map(Math.round).join(",")})`;
  ctx.fillRect(0, 0, half, canvas.height);
  const side = Math.min(source.width, source.height);
  ctx.drawImage(source, (source.width - side) / 2, (source.height - side) / 2, side, side, half, 0, half, canvas.height);
  const image = ctx.getImageData(half, 0, half, canvas.height);
  const mean = meanColour(image.data);
  const shift = cell.map((c, k) => (tint / 100) * (c - mean[k]));
  for (let i = 0; i < image.data.length; i += 4) {
    for (let k = 0; k < 3; k += 1) image.data[i + k] = Math.max(0, Math.min(255, image.data[i + k] + shift[k]));
  }
  ctx.putImageData(image, half, 0);
}

async function pickSampleTile() {
  const file = state.tiles.find((f) => f.type.startsWith("image/") && !SERVER_ONLY.test(f.name));
  if (!file) return;
  try { sampleTile = await createImageBitmap(file, { resizeWidth: 160, resizeQuality: "medium" }); } catch (_) { return; }
  drawTintPreview();
}

$("tint").addEventListener("input", drawTintPreview);

// ---------------------------------------------------------------- session and mosaics

function showLibrary(session) {
  const n = session.tiles_accepted;
  let text;
  if (session.state === "ready") text = `${n} tile photo${n === 1 ? "" : "s"} ready. Add more, or go on with a cover.`;
  else if (session.state === "indexing") text = `Indexing tiles: ${session.progress.done} of ${session.progress.total}…`;
  else text = `This tile library failed: ${session.error || "unknown error"}. Add usable photos.`;
  $("library-status").textContent = text;
  $("new-session").hidden = false;
  const rejected = session.rejected || [];
  $("rejected-box").hidden = rejected.length === 0;
  $("rejected-summary").textContent = `${rejected.length} file${rejected.length === 1 ? " was" : "s were"} not usable`;
  $("rejected-list").replaceChildren(...rejected.map((r) => {
    const li = document.createElement("li");
    li.textContent = `${r.file}: ${r.reason}`;
    return li;
  }));
  showGallery(session.mosaics || []);
}

// A gallery picture: the file itself, except a TIFF (which browsers cannot show): its pyramid's
// 128 px level (one Deep Zoom tile), or the cover until the pyramid is ready.
function thumbnailUrl(m) {
  if (m.format !== "tiff") return m.image_url;
  return m.dzi_url ? m.dzi_url.replace(/\.dzi$/, "_files/7/0_0.jpg") : m.cover_url;
}

function showGallery(mosaics) {
  const ready = mosaics.filter((m) => m.state === "ready");
  $("history").hidden = ready.length === 0;
  $("gallery").replaceChildren(...ready.slice().reverse().map((m) => {
    const li = document.createElement("li");
    li.dataset.mosaic = m.id;
    const open = document.createElement("button");
    open.type = "button";
    open.className = "thumb";
    open.setAttribute("aria-label", `Open the mosaic of ${m.cover_name}, ${m.cols} × ${m.rows} tiles`);
    if (zoom.mosaic && zoom.mosaic.id === m.id) open.setAttribute("aria-current", "true");
    const img = document.createElement("img");
    img.src = thumbnailUrl(m);
    img.alt = "";
    img.loading = "lazy";
    const caption = document.createElement("span");
    caption.textContent = `${m.cover_name} · ${m.cols} × ${m.rows}`;
    open.append(img, caption);
    open.addEventListener("click", () => { showResult(m); showGallery(mosaics); });
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "button link delete";
    remove.textContent = "Delete";
    remove.setAttribute("aria-label", `Delete the mosaic of ${m.cover_name}, ${m.cols} × ${m.rows} tiles`);
    remove.addEventListener("click", () => deleteMosaic(m));
    li.append(open, remove);
    return li;
  }));
}

async function deleteMosaic(mosaic) {
  if (!window.confirm(`Delete the mosaic of ${mosaic.cover_name}? Its share link stops working.`)) return;
  $("gallery-error").hidden = true;
  try {
    await api("DELETE", mosaic.status_url);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) { showError("gallery-error", err.message); return; }
  }
  if (zoom.mosaic && zoom.mosaic.id === mosaic.id) closeResult();
  showLibrary(await api("GET", `/api/sessions/${state.sessionId}`));
}

// What the server could not keep of the rules asked for (report.rules_raised): in words, with
// how many photos keeping it would take.
const plural = (n, word) => `${n} ${word}${Number(n) === 1 ? "" : "s"}`;

function ruleText(r) {
  const need = r.tiles_needed ? ` Keeping it needs ${Number(r.tiles_needed).toLocaleString("en")} different photos: add more tiles.` : "";
  if (r.rule === "unique") return `"Use each photo once" could not be kept: some photos are used ${plural(r.used, "time")}.${need}`;
  if (r.rule === "max_uses") return `"Most uses of one photo: ${r.asked}" could not be kept: some photos are used ${plural(r.used, "time")}.${need}`;
  if (r.rule === "min_distance") return `"No repeat within ${plural(r.asked, "cell")}" could not be kept: it holds within ${plural(r.used, "cell")}.${need}`;
  return `${sentence(`${r.rule}: asked ${r.asked}, used ${r.used}; ${r.reason}`)}${need}`;
}

function rulesText(raised) { return raised.map(ruleText).join(" "); }

function statsText(mosaic) {
  const r = mosaic.report || {};
  const seconds = (mosaic.timings && mosaic.timings.job) || 0;
  const parts = [
    `${mosaic.width} × ${mosaic.height} px`,
    `${mosaic.cols} × ${mosaic.rows} tiles`,
    `${r.distinct_tiles} different photos used`,
    formatMB(r.bytes || 0),
    `made in ${seconds.toFixed(1)} s on the server`,
    `behind transparent tiles: ${r.background === "cell" || !r.background ? "each cell's own colour" : r.background}`,
  ];
  if (mosaic.waited) parts.push(`you waited ${formatSeconds(mosaic.waited)} in all`);
  return parts.join(" · ");
}

function closeResult() {
  zoom.shown += 1;
  if (zoom.handle) { zoom.handle.destroy(); zoom.handle = null; }
  zoom.mosaic = null;
  $("result").hidden = true;
  history.replaceState(null, "", `/s/${state.sessionId}`);
}

function showResult(mosaic, { scroll = true } = {}) {
  const img = $("result-image");
  // a browser cannot show a TIFF: the zoomable view replaces the picture once its pyramid is ready
  if (mosaic.format === "tiff") img.removeAttribute("src"); else img.src = mosaic.image_url;
  img.alt = `Mosaic of ${mosaic.cover_name}, ${mosaic.cols} × ${mosaic.rows} tiles`;
  $("result-link").href = mosaic.image_url;
  const download = $("download");
  download.href = `${mosaic.image_url}?download=1`;
  download.setAttribute("download", mosaic.download_name || "mosaic");
  $("result-stats").textContent = statsText(mosaic);
  const raised = (mosaic.report && mosaic.report.rules_raised) || [];
  $("rules-note").hidden = raised.length === 0;
  $("rules-note").textContent = raised.length ? `The tile library is too small for a rule you asked for. ${rulesText(raised)}` : "";
  const cover = $("compare-cover");
  cover.src = mosaic.cover_url || "";
  cover.alt = `The cover picture, ${mosaic.cover_name}`;
  $("compare-slider").value = "50";
  $("compare-toggle").hidden = !mosaic.cover_url;
  // the print size beside the download: the server's report.print, else the same formula here
  const dpi = (mosaic.params && mosaic.params.dpi) || DEFAULT_DPI;
  const print = (mosaic.report && mosaic.report.print) || printSize(mosaic.width, mosaic.height, dpi);
  $("print-size").textContent = `Prints at ${printText(print)}`;
  $("result").hidden = false;
  history.replaceState(null, "", `/s/${state.sessionId}#${mosaic.id}`);
  if (scroll) $("result").scrollIntoView({ behavior: "smooth", block: "start" });
  showZoom(mosaic).catch((err) => showError("anim-error", `The zoomable view is not available: ${err.message}`));
}

// Before / after: the cover under the mosaic picture; the slider uncovers it from the right.
function setCompare(on) {
  $("compare-toggle").setAttribute("aria-pressed", on ? "true" : "false");
  $("compare-tools").hidden = !on;
  $("compare-hint").hidden = !on;
  $("compare-cover").hidden = !on;
  $("compare").classList.toggle("comparing", on);
  const viewerReady = Boolean(zoom.handle && zoom.viewerReady);
  $("viewer").hidden = on || !viewerReady;
  $("viewer-hint").hidden = on || !viewerReady;
  $("compare").hidden = !on && viewerReady;
  $("fullscreen").hidden = on || !viewerReady;
  applyCompare();
}

function applyCompare() {
  const at = parseFloat($("compare-slider").value);
  const on = $("compare").classList.contains("comparing");
  $("result-image").style.clipPath = on ? `inset(0 ${at}% 0 0)` : "";
}

$("compare-toggle").addEventListener("click", () => setCompare($("compare-toggle").getAttribute("aria-pressed") !== "true"));
$("compare-slider").addEventListener("input", applyCompare);

async function uploadTiles() {
  const files = state.tiles;
  const total = files.reduce((s, f) => s + f.size, 0) || 1;
  let sent = 0;
  let i = 0;
  setProgress(`Uploading tiles: 0 of ${formatMB(total)}`, 0, total);
  while (i < files.length) {
    const form = new FormData();
    let bytes = 0;
    const start = i;
    while (i < files.length && i - start < BATCH_FILES && (bytes === 0 || bytes + files[i].size <= BATCH_BYTES)) {
      const f = files[i];
      form.append("tiles", f, f.webkitRelativePath || f.name);
      bytes += f.size;
      i += 1;
    }
    const url = state.sessionId ? `/api/sessions/${state.sessionId}/tiles` : "/api/sessions";
    // The request's own byte count (multipart framing included) scaled to this batch's files.
    const session = await upload(url, form, (loaded, size) => {
      const done = sent + (size > 0 ? bytes * loaded / size : 0);
      setProgress(`Uploading tiles: ${formatMB(done)} of ${formatMB(total)} (${files.length} files)`, done, total);
    });
    sent += bytes;
    if (!state.sessionId) {
      state.sessionId = session.id;
      history.replaceState(null, "", `/s/${session.id}`);
    }
  }
  state.tiles = [];
  state.skipped = 0;
  $("tiles-picked").textContent = "";
  $("tiles-input").value = "";
  $("folder-input").value = "";
}

async function waitForLibrary() {
  for (;;) {
    const session = await api("GET", `/api/sessions/${state.sessionId}`);
    showLibrary(session);
    if (session.state !== "indexing") return session;
    const { done, total } = session.progress;
    setProgress(total ? `Indexing tiles: ${done} of ${total} photos read` : "Indexing tiles: starting…", done, total);
    await sleep(POLL_MS);
  }
}

const STAGES = { tiles: "Preparing tiles", cover: "Reading the cover", match: "Matching tiles", render: "Stitching", encode: "Saving the image" };
const FORM_FIELDS = ["cols", "tile_size", "format", "color_space", "cell_grid", "aspect", "tint", "max_uses", "min_distance", "dpi", "zoom_tile_size"];

async function makeMosaic() {
  const form = new FormData();
  form.append("cover", state.cover, state.cover.name);
  for (const id of FORM_FIELDS) if ($(id)) form.append(id, $(id).value);
  form.append("unique", $("unique").checked ? "true" : "false");
  let mosaic = await api("POST", `/api/sessions/${state.sessionId}/mosaics`, form);
  while (mosaic.state === "queued" || mosaic.state === "rendering") {
    const label = mosaic.state === "queued" ? "Waiting for a free worker" : (STAGES[mosaic.stage] || "Rendering");
    const { done, total } = mosaic.progress;
    setProgress(`${label}${total > 1 ? `: ${done} of ${total}` : "…"}`, done, total);
    await sleep(POLL_MS);
    mosaic = await api("GET", mosaic.status_url);
  }
  if (mosaic.state === "failed") throw new ApiError(422, { detail: mosaic.error, field: /^cover /.test(mosaic.error || "") ? "cover" : null });
  return mosaic;
}

// The settings last used: the newest mosaic's parameters, kept in the session's records.
function restoreSettings(params, format) {
  for (const id of FORM_FIELDS) {
    const input = $(id);
    if (!input || params[id] === undefined) continue;
    input.value = params[id] === null ? "" : String(params[id]);
  }
  if (format && $("format").querySelector(`option[value="${format}"]`)) $("format").value = format;
  $("unique").checked = Boolean(params.unique);
  $("preset").value = "";
  updateSizeHint();
  drawTintPreview();
}

$("mosaic-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (state.busy) return;
  clearErrors();
  let ok = true;
  if (!state.sessionId && !state.tiles.length) { showError("tiles-error", "Pick some tile photos, a folder or a .zip first."); ok = false; }
  if (!state.cover) { showError("cover-error", "Pick the picture the mosaic should show."); ok = false; }
  for (const input of document.querySelectorAll("#options-step input[type=number], #options-step input[type=range]")) {
    if (!input.checkValidity()) { showError(`${input.id}-error`, allowedText(input)); ok = false; }
  }
  if (!ok) return;

  state.busy = true;
  $("make-button").disabled = true;
  state.startedAt = Date.now();
  let step = "cover";
  try {
    setProgress("Checking the cover picture…", 0, 0);
    const problem = await state.coverCheck;  // nothing leaves the page for a bad cover
    if (problem) { showError("cover-error", problem); return; }
    step = "tiles";
    if (state.tiles.length) await uploadTiles();
    const session = await waitForLibrary();
    if (session.state !== "ready") { showError("tiles-error", session.error || "No usable tiles."); return; }
    step = "mosaic";
    const mosaic = await makeMosaic();
    mosaic.waited = Date.now() - state.startedAt;
    showResult(mosaic);
    showLibrary(await api("GET", `/api/sessions/${state.sessionId}`));
  } catch (err) {
    if (err instanceof ApiError) {
      if (err.status === 404 && step === "tiles" && state.sessionId) {
        showError("tiles-error", "This session no longer exists; start over with new tiles.");
      } else {
        showApiError(err.body, step === "tiles" ? "tiles-error" : "cover-error");
      }
    } else {
      showError("form-error", `Unexpected error: ${err.message}`);
    }
  } finally {
    hideProgress();
    state.busy = false;
    state.startedAt = 0;
    $("make-button").disabled = false;
  }
});

// ---------------------------------------------------------------- deep zoom, share link, animations

const zoom = { handle: null, viewerReady: false, mosaic: null, cell: null, shown: 0, busy: false };
const PYRAMID_WAIT_MS = 10 * 60 * 1000;

// The viewer: TesseraViewer.open(container, dziUrl, options) resolves to a view with destroy()
// and setMarker() (static/tessera-viewer.js, on OpenSeadragon).

async function apiJson(method, url, data) {
  const response = await fetch(url, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });
  let body = null;
  try { body = await response.json(); } catch (_) { body = { detail: `HTTP ${response.status}` }; }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// The pyramid is built in the background after the render: poll until it is ready.
async function waitForPyramid(mosaic) {
  const deadline = Date.now() + PYRAMID_WAIT_MS;
  while (!mosaic.dzi_url && Date.now() < deadline) {
    if (mosaic.pyramid && mosaic.pyramid.state === "failed") throw new Error(mosaic.pyramid.error || "failed");
    await sleep(POLL_MS);
    mosaic = await api("GET", mosaic.status_url);
  }
  return mosaic;
}

function showShare(url) {
  const absolute = new URL(url, window.location.href).href;
  $("share-link").href = absolute;
  $("share-link").textContent = absolute;
  $("share").hidden = false;
}

async function showZoom(mosaic) {
  const shown = ++zoom.shown;  // a newer mosaic takes the viewer over
  if (zoom.handle) { zoom.handle.destroy(); zoom.handle = null; }
  zoom.viewerReady = false;
  zoom.mosaic = mosaic;
  pickCell(null);
  setCompare(false);  // the picture shows until this mosaic's viewer has its tiles
  $("share").hidden = true;
  $("anim-form").hidden = false;
  $("anim-result").hidden = true;
  const ready = await waitForPyramid(mosaic);
  if (shown !== zoom.shown || !ready.dzi_url) return;
  zoom.mosaic = { ...ready, waited: mosaic.waited };
  if (ready.viewer_url) showShare(ready.viewer_url);
  const container = $("viewer");
  container.style.aspectRatio = `${ready.width} / ${ready.height}`;  // the mosaic's own shape
  // Laid out (for its size) but not shown until its first tiles are drawn: the picture stays.
  container.hidden = false;
  container.classList.add("loading");
  let view;
  try {
    view = await TesseraViewer.open(container, ready.dzi_url, {
      onPick: pickCell,
      label: `Zoomable mosaic of ${ready.cover_name}`,
      fullPageControl: false,  // the page's own "Full screen" button does it: one control, not two
    });
  } catch (err) {
    container.classList.remove("loading");
    container.hidden = true;
    throw err;
  }
  if (shown !== zoom.shown) { view.destroy(); return; }
  zoom.handle = view;
  window.tesseraViewer = view;
  // The viewer marks the deepest level it has drawn (data-level): then it has tiles to show.
  const deadline = Date.now() + PYRAMID_WAIT_MS;
  while (container.dataset.level === undefined && shown === zoom.shown && Date.now() < deadline) await sleep(50);
  if (shown !== zoom.shown) return;
  container.classList.remove("loading");
  zoom.viewerReady = true;
  setCompare($("compare-toggle").getAttribute("aria-pressed") === "true");
}

$("fullscreen").addEventListener("click", () => {
  if (!zoom.handle) return;
  $("viewer").requestFullscreen().catch((err) => showError("anim-error", `Full screen is not available here: ${err.message}`));
});

// A click in the viewer picks the tile a zoom animation ends in.
function pickCell(point) {
  const m = zoom.mosaic;
  const mark = (rect) => { if (zoom.handle && zoom.handle.setMarker) zoom.handle.setMarker(rect); };
  if (!point || !m) {
    zoom.cell = null;
    $("anim-cell").value = "the middle one";
    mark(null);
    return;
  }
  const size = zoom.handle.layout;  // the pyramid's full size: the render's, times 2^k with photo levels
  const cellW = size.width / m.cols;
  const cellH = size.height / m.rows;
  const col = Math.min(m.cols - 1, Math.floor(point.x / cellW));
  const row = Math.min(m.rows - 1, Math.floor(point.y / cellH));
  zoom.cell = { col, row };
  $("anim-cell").value = `column ${col + 1}, row ${row + 1}`;
  if (!$("anim-kind").value.startsWith("zoom")) $("anim-kind").value = "zoom";
  mark({ x: col * cellW, y: row * cellH, w: cellW, h: cellH });
}

function setAnimProgress(label, done, total) {
  $("anim-progress").hidden = false;
  $("anim-progress-label").textContent = label;
  const bar = $("anim-progress-bar");
  if (total > 0) { bar.max = total; bar.value = Math.min(done, total); } else { bar.removeAttribute("value"); }
}

function showAnimation(record) {
  const preview = record.format === "mp4" ? document.createElement("video") : document.createElement("img");
  preview.className = "anim-preview";
  preview.src = record.url;
  if (record.format === "mp4") Object.assign(preview, { controls: true, loop: true, muted: true, autoplay: true, playsInline: true });
  else preview.alt = `${record.kind} animation of the mosaic`;
  $("anim-preview").replaceChildren(preview);
  $("anim-download").href = `${record.url}?download=1`;
  $("anim-download").setAttribute("download", record.download_name || `mosaic.${record.format}`);
  $("anim-result").hidden = false;
}

const ANIM_FIELDS = { width: "anim-size", height: "anim-size", col: "anim-cell", row: "anim-cell" };

async function makeAnimation() {
  const [width, height] = $("anim-size").value.split("x").map(Number);
  const choice = $("anim-kind").value;
  const body = {
    kind: choice === "zoom-out" ? "zoom" : choice,
    reverse: choice === "zoom-out",
    format: $("anim-format").value,
    seconds: parseFloat($("anim-seconds").value),
    fps: parseInt($("anim-fps").value, 10),
    width, height,
  };
  if (zoom.cell && body.kind === "zoom") Object.assign(body, zoom.cell);
  let record = await apiJson("POST", zoom.mosaic.animations_url, body);
  while (record.state === "queued" || record.state === "rendering") {
    const label = record.state === "queued" ? "Waiting for a free worker…" : `Rendering frames: ${record.progress.done} of ${record.progress.total}`;
    setAnimProgress(label, record.progress.done, record.progress.total);
    await sleep(POLL_MS);
    record = await api("GET", record.status_url);
  }
  if (record.state === "failed") throw new ApiError(500, { detail: record.error });
  return record;
}

$("anim-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (zoom.busy || !zoom.mosaic) return;
  document.querySelectorAll("#anim-form .error").forEach((el) => { el.hidden = true; el.textContent = ""; });
  zoom.busy = true;
  $("anim-button").disabled = true;
  $("anim-result").hidden = true;
  try {
    showAnimation(await makeAnimation());
  } catch (err) {
    const body = err instanceof ApiError ? err.body : { detail: err.message };
    const field = body && body.field;
    const id = field && (ANIM_FIELDS[field] || `anim-${field}`);
    showError(id && $(`${id}-error`) ? `${id}-error` : "anim-error", (body && body.detail) || "The animation failed.");
  } finally {
    $("anim-progress").hidden = true;
    zoom.busy = false;
    $("anim-button").disabled = false;
  }
});

// GIF and WebP hold every frame: smaller frames and fewer of them suit them.
$("anim-format").addEventListener("change", (e) => {
  const small = { gif: ["480x270", 12], webp: ["854x480", 15], mp4: ["1280x720", 24] }[e.target.value];
  $("anim-size").value = small[0];
  $("anim-fps").value = small[1];
});

$("share-copy").addEventListener("click", async () => {
  try { await navigator.clipboard.writeText($("share-link").href); $("share-copy").textContent = "Copied"; } catch (_) { /* the link stays selectable */ }
});

$("tiles-input").addEventListener("change", (e) => addTiles(e.target.files));
$("folder-input").addEventListener("change", (e) => addTiles(e.target.files));
$("cover-input").addEventListener("change", (e) => setCover(e.target.files[0]));
dropZone($("tiles-drop"), addTiles);
dropZone($("cover-drop"), (files) => setCover(files.find(acceptable) || files[0]));

// Keyboard: the buttons and the drop zones (Enter or Space) open the hidden file choosers.
document.querySelectorAll("button[data-opens]").forEach((button) => {
  button.addEventListener("click", () => $(button.dataset.opens).click());
});
document.querySelectorAll(".drop[data-opens]").forEach((zone) => {
  zone.addEventListener("keydown", (e) => {
    if (e.target !== zone || (e.key !== "Enter" && e.key !== " ")) return;
    e.preventDefault();
    $(zone.dataset.opens).click();
  });
});

$("another").addEventListener("click", () => {
  $("cover-step").scrollIntoView({ behavior: "smooth" });
  $("cover-input").click();
});

// Reopened on a session (its id in the URL, a saved project): its tiles, every mosaic, the one
// named after "#" (else the newest) with its viewer and tools, and the settings last used.
(async () => {
  updateSizeHint();
  drawTintPreview();
  if (!state.sessionId) return;
  try {
    const session = await api("GET", `/api/sessions/${state.sessionId}`);
    showLibrary(session);
    const ready = (session.mosaics || []).filter((m) => m.state === "ready");
    if (ready.length) {
      const newest = ready[ready.length - 1];
      restoreSettings(newest.params || {}, newest.format);
      const wanted = ready.find((m) => `#${m.id}` === window.location.hash) || newest;
      showResult(wanted, { scroll: false });
      showGallery(session.mosaics);
    }
    if (session.state === "indexing") waitForLibrary().then(hideProgress).catch(() => {});
  } catch (err) {
    state.sessionId = null;
    history.replaceState(null, "", "/");
    showError("tiles-error", "That session no longer exists (sessions expire); upload your tiles again.");
  }
})();
