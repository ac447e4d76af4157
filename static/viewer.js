// Tessera deep-zoom viewer: pans and zooms a Deep Zoom (DZI) pyramid on a canvas.
// Only the tiles in view are fetched, from the level whose pixels match the screen's; coarser
// levels already loaded fill in while finer tiles arrive. Wheel, drag, pinch, double-click,
// keyboard (+ - 0 and arrows) and the on-screen buttons move the view; a click without a drag
// reports the picked point in full-size image pixels (options.onPick).
"use strict";

class DeepZoomViewer {
  constructor(container, options = {}) {
    this.container = container;
    this.options = options;
    this.canvas = document.createElement("canvas");
    this.canvas.className = "dz-canvas";
    this.canvas.tabIndex = 0;
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", options.label || "Zoomable mosaic");
    this.ctx = this.canvas.getContext("2d");
    this.tiles = new Map();      // "level/col/row" -> {img, ready}
    this.pointers = new Map();   // pointerId -> {x, y}
    this.marker = null;          // {x, y, w, h} in image pixels
    this.layout = null;
    this.frame = 0;
    container.replaceChildren(this.canvas, this.buttons());
    this.bindEvents();
    new ResizeObserver(() => this.resize()).observe(container);
  }

  // Load the descriptor (retrying while the server still builds the pyramid: 409).
  async open(dziUrl) {
    for (let attempt = 0; ; attempt += 1) {
      const response = await fetch(dziUrl);
      if (response.ok) { this.setLayout(dziUrl, await response.text()); return this; }
      if (response.status !== 409 || attempt > 600) throw new Error(`cannot load ${dziUrl}: HTTP ${response.status}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }

  setLayout(dziUrl, xml) {
    const doc = new DOMParser().parseFromString(xml, "application/xml");
    const image = doc.getElementsByTagName("Image")[0];
    const size = doc.getElementsByTagName("Size")[0];
    const width = +size.getAttribute("Width");
    const height = +size.getAttribute("Height");
    this.layout = {
      width, height,
      tileSize: +image.getAttribute("TileSize"),
      overlap: +image.getAttribute("Overlap"),
      format: image.getAttribute("Format"),
      maxLevel: Math.ceil(Math.log2(Math.max(width, height))),
      files: dziUrl.replace(/\.dzi$/, "_files"),
    };
    this.tiles.clear();
    this.resize();
    this.home();
  }

  // ------------------------------------------------------------------ the view

  get viewWidth() { return this.canvas.clientWidth || 1; }
  get viewHeight() { return this.canvas.clientHeight || 1; }
  get fitScale() { return Math.min(this.viewWidth / this.layout.width, this.viewHeight / this.layout.height); }

  home() {
    if (!this.layout) return;
    this.scale = this.fitScale;  // CSS pixels per image pixel
    this.x = (this.layout.width - this.viewWidth / this.scale) / 2;   // image point at the left edge
    this.y = (this.layout.height - this.viewHeight / this.scale) / 2;
    this.redraw();
  }

  // Zoom by `factor` keeping the image point under (sx, sy) (CSS pixels in the canvas) in place.
  zoomAt(factor, sx, sy) {
    if (!this.layout) return;
    const dpr = window.devicePixelRatio || 1;
    const scale = Math.min(Math.max(this.scale * factor, this.fitScale / 2), 8 / dpr);
    const ix = this.x + sx / this.scale;
    const iy = this.y + sy / this.scale;
    this.scale = scale;
    this.x = ix - sx / scale;
    this.y = iy - sy / scale;
    this.redraw();
  }

  panBy(dx, dy) {
    if (!this.layout) return;
    this.x -= dx / this.scale;
    this.y -= dy / this.scale;
    // Keep at least a quarter of the view on the image.
    const w = this.viewWidth / this.scale;
    const h = this.viewHeight / this.scale;
    this.x = Math.min(Math.max(this.x, -w * 0.75), this.layout.width - w * 0.25);
    this.y = Math.min(Math.max(this.y, -h * 0.75), this.layout.height - h * 0.25);
    this.redraw();
  }

  toImage(sx, sy) { return { x: this.x + sx / this.scale, y: this.y + sy / this.scale }; }

  setMarker(box) { this.marker = box; this.redraw(); }

  // The level whose pixels are at least as dense as the screen's.
  levelFor(scale) {
    const need = scale * (window.devicePixelRatio || 1);
    const level = this.layout.maxLevel + Math.ceil(Math.log2(need) - 1e-9);
    return Math.min(this.layout.maxLevel, Math.max(0, level));
  }

  // ------------------------------------------------------------------ drawing

  resize() {
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(this.viewWidth * dpr);
    this.canvas.height = Math.round(this.viewHeight * dpr);
    this.redraw();
  }

  redraw() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.draw(); });
  }

  draw() {
    const ctx = this.ctx;
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.layout) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.imageSmoothingQuality = "high";
    const target = this.levelFor(this.scale);
    this.container.dataset.level = String(target);
    // Coarse levels first (loaded once, always complete), the target level on top.
    const base = Math.min(target, Math.max(0, Math.ceil(Math.log2(this.layout.tileSize)) - 1));
    this.drawLevel(base, true);
    for (let level = Math.max(base + 1, target - 3); level < target; level += 1) this.drawLevel(level, false);
    if (target > base) this.drawLevel(target, true);
    this.drawMarker();
  }

  // Draw the tiles of `level` that are in view; `fetch` also requests the missing ones.
  drawLevel(level, fetchMissing) {
    const { tileSize, overlap, maxLevel } = this.layout;
    const f = 2 ** (maxLevel - level);                  // image pixels per level pixel
    const levelW = Math.ceil(this.layout.width / f);
    const levelH = Math.ceil(this.layout.height / f);
    const x0 = Math.max(0, this.x / f);
    const y0 = Math.max(0, this.y / f);
    const x1 = Math.min(levelW, (this.x + this.viewWidth / this.scale) / f);
    const y1 = Math.min(levelH, (this.y + this.viewHeight / this.scale) / f);
    for (let row = Math.floor(y0 / tileSize); row * tileSize < y1; row += 1) {
      for (let col = Math.floor(x0 / tileSize); col * tileSize < x1; col += 1) {
        const tile = fetchMissing ? this.request(level, col, row) : this.tiles.get(`${level}/${col}/${row}`);
        if (!tile || !tile.ready) continue;
        const left = col * tileSize - (col ? overlap : 0);
        const top = row * tileSize - (row ? overlap : 0);
        const sx = (left * f - this.x) * this.scale;
        const sy = (top * f - this.y) * this.scale;
        // Snap edges to whole device pixels so neighbouring tiles leave no seams.
        const ex = Math.round(sx + tile.img.naturalWidth * f * this.scale);
        const ey = Math.round(sy + tile.img.naturalHeight * f * this.scale);
        this.ctx.drawImage(tile.img, Math.round(sx), Math.round(sy), ex - Math.round(sx), ey - Math.round(sy));
      }
    }
  }

  request(level, col, row) {
    const key = `${level}/${col}/${row}`;
    let tile = this.tiles.get(key);
    if (!tile) {
      const img = new Image();
      tile = { img, ready: false };
      img.onload = () => { tile.ready = true; this.redraw(); };
      img.onerror = () => { this.tiles.delete(key); };
      img.src = `${this.layout.files}/${level}/${col}_${row}.${this.layout.format}`;
      this.tiles.set(key, tile);
      if (this.tiles.size > 1500) this.forgetFarTiles(level);
    }
    return tile;
  }

  // Bound memory: drop loaded tiles of levels far from the current one.
  forgetFarTiles(level) {
    for (const [key, tile] of this.tiles) {
      const tileLevel = +key.split("/")[0];
      if (tile.ready && tileLevel > 8 && Math.abs(tileLevel - level) > 1) this.tiles.delete(key);
    }
  }

  drawMarker() {
    if (!this.marker) return;
    const { x, y, w, h } = this.marker;
    const ctx = this.ctx;
    ctx.lineWidth = 3;
    ctx.strokeStyle = "#facc15";
    ctx.strokeRect((x - this.x) * this.scale, (y - this.y) * this.scale, w * this.scale, h * this.scale);
  }

  // ------------------------------------------------------------------ input

  buttons() {
    const bar = document.createElement("div");
    bar.className = "dz-buttons";
    const make = (label, title, action) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = label;
      b.title = title;
      b.setAttribute("aria-label", title);
      b.addEventListener("click", action);
      bar.append(b);
    };
    make("+", "Zoom in", () => this.zoomAt(2, this.viewWidth / 2, this.viewHeight / 2));
    make("−", "Zoom out", () => this.zoomAt(0.5, this.viewWidth / 2, this.viewHeight / 2));
    make("⤢", "Whole mosaic", () => this.home());
    return bar;
  }

  local(event) {
    const rect = this.canvas.getBoundingClientRect();
    return { x: event.clientX - rect.left, y: event.clientY - rect.top };
  }

  bindEvents() {
    const c = this.canvas;
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      const p = this.local(e);
      const delta = e.deltaMode === 1 ? e.deltaY * 33 : e.deltaY;
      this.zoomAt(Math.exp(-delta * 0.002), p.x, p.y);
    }, { passive: false });
    c.addEventListener("dblclick", (e) => { const p = this.local(e); this.zoomAt(2, p.x, p.y); });
    c.addEventListener("pointerdown", (e) => {
      c.setPointerCapture(e.pointerId);
      this.pointers.set(e.pointerId, this.local(e));
      this.gesture = { moved: 0, start: performance.now(), distance: this.pinchDistance() };
    });
    c.addEventListener("pointermove", (e) => {
      if (!this.pointers.has(e.pointerId)) return;
      const p = this.local(e);
      const last = this.pointers.get(e.pointerId);
      this.pointers.set(e.pointerId, p);
      this.gesture.moved += Math.abs(p.x - last.x) + Math.abs(p.y - last.y);
      if (this.pointers.size === 1) { this.panBy(p.x - last.x, p.y - last.y); return; }
      const distance = this.pinchDistance();
      if (this.gesture.distance > 0 && distance > 0) {
        const mid = this.pinchMiddle();
        this.zoomAt(distance / this.gesture.distance, mid.x, mid.y);
      }
      this.gesture.distance = distance;
    });
    const end = (e) => {
      if (!this.pointers.has(e.pointerId)) return;
      const p = this.pointers.get(e.pointerId);
      this.pointers.delete(e.pointerId);
      const click = this.pointers.size === 0 && this.gesture.moved < 6 && performance.now() - this.gesture.start < 600;
      if (click && e.type === "pointerup" && this.options.onPick && this.layout) {
        const point = this.toImage(p.x, p.y);
        if (point.x >= 0 && point.y >= 0 && point.x < this.layout.width && point.y < this.layout.height) {
          this.options.onPick(point);
        }
      }
      this.gesture.distance = this.pinchDistance();
    };
    c.addEventListener("pointerup", end);
    c.addEventListener("pointercancel", end);
    c.addEventListener("keydown", (e) => {
      const w = this.viewWidth;
      const h = this.viewHeight;
      const keys = {
        "+": () => this.zoomAt(1.5, w / 2, h / 2), "=": () => this.zoomAt(1.5, w / 2, h / 2),
        "-": () => this.zoomAt(1 / 1.5, w / 2, h / 2), "0": () => this.home(),
        ArrowLeft: () => this.panBy(w / 8, 0), ArrowRight: () => this.panBy(-w / 8, 0),
        ArrowUp: () => this.panBy(0, h / 8), ArrowDown: () => this.panBy(0, -h / 8),
      };
      if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
    });
  }

  pinchDistance() {
    if (this.pointers.size < 2) return 0;
    const [a, b] = [...this.pointers.values()];
    return Math.hypot(a.x - b.x, a.y - b.y);
  }

  pinchMiddle() {
    const [a, b] = [...this.pointers.values()];
    return { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
  }
}

window.DeepZoomViewer = DeepZoomViewer;
