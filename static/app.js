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
  busy: false,
};

// ---------------------------------------------------------------- errors and progress

function showError(id, message) {
  const el = $(id);
  if (!el) return showError("form-error", message);
  el.textContent = message;
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
  const text = file ? `${file}: ${detail}` : detail;
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
  $("progress-label").textContent = label;
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
}

function setCover(file) {
  if (!file) return;
  state.cover = file;
  $("cover-picked").textContent = file.name;
  const preview = $("cover-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("cover-error").hidden = true;
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

let coverSize = null;
function updateSizeHint() {
  const cols = parseInt($("cols").value, 10);
  const px = parseInt($("tile_size").value, 10);
  const [aw, ah] = $("aspect").value.split(":").map(Number);
  if (!(cols > 0 && px > 0)) { $("size-hint").textContent = ""; return; }
  const tileH = Math.max(1, Math.round(px * ah / aw));
  let text = `${cols * px} px wide`;
  if (coverSize) {
    const rows = Math.max(1, Math.round(cols * px * coverSize.h / (coverSize.w * tileH)));
    text = `${cols} × ${rows} tiles, ${cols * px} × ${rows * tileH} px`;
  }
  $("size-hint").textContent = `The mosaic will be ${text}.`;
}

$("cover-preview").addEventListener("load", (e) => {
  coverSize = { w: e.target.naturalWidth, h: e.target.naturalHeight };
  updateSizeHint();
});
["cols", "tile_size", "aspect"].forEach((id) => $(id).addEventListener("input", updateSizeHint));

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

function showGallery(mosaics) {
  const ready = mosaics.filter((m) => m.state === "ready");
  $("history").hidden = ready.length === 0;
  $("gallery").replaceChildren(...ready.slice().reverse().map((m) => {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = m.image_url;
    a.target = "_blank";
    a.rel = "noopener";
    const img = document.createElement("img");
    img.src = m.image_url;
    img.alt = `Mosaic of ${m.cover_name}`;
    img.loading = "lazy";
    a.append(img, document.createTextNode(`${m.cover_name} · ${m.cols}×${m.rows}`));
    li.append(a);
    return li;
  }));
}

// "Prints at 40.6 × 30.5 cm (16 × 12 in) at 300 dpi": the report's print size, beside the download.
function printSize(report) {
  const p = report && report.print;
  return p ? `Prints at ${p.width_cm} × ${p.height_cm} cm (${p.width_in} × ${p.height_in} in) at ${p.dpi} dpi` : "";
}

function showResult(mosaic) {
  const img = $("result-image");
  // a browser cannot show a TIFF: the zoomable view replaces the picture once its pyramid is ready
  if (mosaic.format === "tiff") img.removeAttribute("src"); else img.src = mosaic.image_url;
  img.alt = `Mosaic of ${mosaic.cover_name}, ${mosaic.cols} × ${mosaic.rows} tiles`;
  $("result-link").href = mosaic.image_url;
  const download = $("download");
  download.href = `${mosaic.image_url}?download=1`;
  download.setAttribute("download", mosaic.download_name || "mosaic");
  const r = mosaic.report || {};
  const mb = (r.bytes || 0) / 1048576;
  const seconds = (mosaic.timings && mosaic.timings.job) || 0;
  $("result-stats").textContent =
    `${mosaic.width} × ${mosaic.height} px · ${mosaic.cols} × ${mosaic.rows} tiles · ` +
    `${r.distinct_tiles} different photos used · ${mb.toFixed(1)} MB · made in ${seconds.toFixed(1)} s`;
  $("print-size").textContent = printSize(r);
  $("result").hidden = false;
  $("result").scrollIntoView({ behavior: "smooth", block: "start" });
  showZoom(mosaic).catch((err) => showError("anim-error", `The zoomable view is not available: ${err.message}`));
}

async function uploadTiles() {
  const files = state.tiles;
  const total = files.reduce((s, f) => s + f.size, 0) || 1;
  let sent = 0;
  let i = 0;
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
    const session = await upload(url, form, (loaded) => {
      setProgress(`Uploading tiles: ${i} of ${files.length} files`, sent + loaded, total);
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
    setProgress(`Indexing tiles: ${session.progress.done} of ${session.progress.total}`, session.progress.done, session.progress.total);
    await sleep(POLL_MS);
  }
}

const STAGES = { tiles: "Preparing tiles", cover: "Reading the cover", match: "Matching tiles", render: "Stitching", encode: "Saving the image" };

async function makeMosaic() {
  const form = new FormData();
  form.append("cover", state.cover, state.cover.name);
  for (const id of ["cols", "tile_size", "format", "color_space", "cell_grid", "aspect", "tint", "max_uses", "min_distance", "dpi", "zoom_tile_size"]) {
    form.append(id, $(id).value);
  }
  form.append("unique", $("unique").checked ? "true" : "false");
  let mosaic = await api("POST", `/api/sessions/${state.sessionId}/mosaics`, form);
  while (mosaic.state === "queued" || mosaic.state === "rendering") {
    const label = mosaic.state === "queued" ? "Waiting for a free worker" : (STAGES[mosaic.stage] || "Rendering");
    setProgress(`${label}…`, mosaic.progress.done, mosaic.progress.total);
    await sleep(POLL_MS);
    mosaic = await api("GET", mosaic.status_url);
  }
  if (mosaic.state === "failed") throw new ApiError(422, { detail: mosaic.error, field: /^cover /.test(mosaic.error || "") ? "cover" : null });
  return mosaic;
}

$("mosaic-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (state.busy) return;
  clearErrors();
  let ok = true;
  if (!state.sessionId && !state.tiles.length) { showError("tiles-error", "Pick some tile photos, a folder or a .zip first."); ok = false; }
  if (!state.cover) { showError("cover-error", "Pick the picture the mosaic should show."); ok = false; }
  for (const input of document.querySelectorAll("#options-step input[type=number]")) {
    if (!input.checkValidity()) { showError(`${input.id}-error`, allowedText(input)); ok = false; }
  }
  if (!ok) return;

  state.busy = true;
  $("make-button").disabled = true;
  let step = "tiles";
  try {
    if (state.tiles.length) await uploadTiles();
    const session = await waitForLibrary();
    if (session.state !== "ready") { showError("tiles-error", session.error || "No usable tiles."); return; }
    step = "mosaic";
    const mosaic = await makeMosaic();
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
    $("make-button").disabled = false;
  }
});

// ---------------------------------------------------------------- deep zoom, share link, animations

const zoom = { viewer: null, mosaic: null, cell: null, shown: 0, busy: false };
const PYRAMID_WAIT_MS = 10 * 60 * 1000;

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
  zoom.mosaic = mosaic;
  pickCell(null);
  $("viewer").hidden = true;  // the picture shows until this mosaic's pyramid is ready
  $("viewer-hint").hidden = true;
  $("result-link").hidden = false;
  $("share").hidden = true;
  $("anim-form").hidden = false;
  $("anim-result").hidden = true;
  const ready = await waitForPyramid(mosaic);
  if (shown !== zoom.shown || !ready.dzi_url) return;
  zoom.mosaic = ready;
  if (ready.viewer_url) showShare(ready.viewer_url);
  $("viewer").hidden = false;
  $("viewer-hint").hidden = false;
  $("result-link").hidden = true;
  if (zoom.viewer) zoom.viewer.destroy();
  zoom.viewer = null;
  const view = await TesseraViewer.open($("viewer"), ready.dzi_url, { onPick: pickCell, label: "Zoomable mosaic" });
  if (shown !== zoom.shown) { view.destroy(); return; }
  zoom.viewer = view;
  window.tesseraViewer = view;
}

// A click in the viewer picks the tile a zoom animation ends in.
function pickCell(point) {
  const m = zoom.mosaic;
  if (!point || !m) {
    zoom.cell = null;
    $("anim-cell").value = "the middle one";
    if (zoom.viewer) zoom.viewer.setMarker(null);
    return;
  }
  const cellW = m.width / m.cols;
  const cellH = m.height / m.rows;
  const col = Math.min(m.cols - 1, Math.floor(point.x / cellW));
  const row = Math.min(m.rows - 1, Math.floor(point.y / cellH));
  zoom.cell = { col, row };
  $("anim-cell").value = `column ${col + 1}, row ${row + 1}`;
  if (!$("anim-kind").value.startsWith("zoom")) $("anim-kind").value = "zoom";
  zoom.viewer.setMarker({ x: col * cellW, y: row * cellH, w: cellW, h: cellH });
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
$("another").addEventListener("click", () => {
  $("cover-step").scrollIntoView({ behavior: "smooth" });
  $("cover-input").click();
});

// Reopened on a session (its id in the URL): show its tiles and mosaics.
(async () => {
  updateSizeHint();
  if (!state.sessionId) return;
  try {
    const session = await api("GET", `/api/sessions/${state.sessionId}`);
    showLibrary(session);
    if (session.state === "indexing") waitForLibrary().then(hideProgress).catch(() => {});
  } catch (err) {
    state.sessionId = null;
    history.replaceState(null, "", "/");
    showError("tiles-error", "That session no longer exists (sessions expire); upload your tiles again.");
  }
})();
