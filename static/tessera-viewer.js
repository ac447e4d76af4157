// TesseraViewer: the page's and the share link's Deep Zoom viewer, on OpenSeadragon (vendored in
// static/vendor/openseadragon/). One call:
//
//   const view = await TesseraViewer.open(container, dziUrl, { onPick, label, fullPageControl });
//   view.destroy();
//
// open() waits while the server still builds the pyramid (HTTP 409), then shows it with OpenSeadragon's
// home / zoom / fullscreen buttons, a navigator, keyboard (arrows, + - 0 when focused) and touch. A click
// without a drag calls options.onPick({x, y}) in full-size image pixels; setMarker({x, y, w, h}) outlines
// a box (the chosen cell). The container's data-level says the deepest pyramid level drawn.
// fullPageControl: false hides OpenSeadragon's own full-page button, for a page that has its own.
"use strict";

(function () {
  const VENDOR = new URL("vendor/openseadragon/", document.currentScript ? document.currentScript.src : window.location.href).href;
  const RETRY_MS = 500;
  const MAX_WAIT_MS = 10 * 60 * 1000;

  // The descriptor, once the server has it (409 while the pyramid is being built).
  async function fetchDescriptor(dziUrl) {
    const deadline = Date.now() + MAX_WAIT_MS;
    for (;;) {
      const response = await fetch(dziUrl);
      if (response.ok) return response.text();
      if (response.status !== 409 || Date.now() > deadline) throw new Error(`cannot load ${dziUrl}: HTTP ${response.status}`);
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }

  function layoutOf(xml, dziUrl) {
    const doc = new DOMParser().parseFromString(xml, "application/xml");
    const image = doc.getElementsByTagName("Image")[0];
    const size = doc.getElementsByTagName("Size")[0];
    if (!image || !size) throw new Error(`${dziUrl} is not a Deep Zoom descriptor`);
    const width = +size.getAttribute("Width");
    const height = +size.getAttribute("Height");
    return { width, height, tileSize: +image.getAttribute("TileSize"), maxLevel: Math.ceil(Math.log2(Math.max(width, height))) };
  }

  function open(container, dziUrl, options = {}) {
    return fetchDescriptor(dziUrl).then((xml) => new View(container, dziUrl, layoutOf(xml, dziUrl), options).ready);
  }

  class View {
    constructor(container, dziUrl, layout, options) {
      this.container = container;
      this.layout = layout;
      this.options = options;
      this.levelsLoaded = new Set();
      this.marker = null;
      container.replaceChildren();
      container.classList.add("tv-viewer");
      container.setAttribute("aria-label", options.label || "Zoomable mosaic");
      this.osd = OpenSeadragon({
        element: container,
        tileSources: dziUrl,
        prefixUrl: VENDOR + "images/",
        drawer: "canvas",
        showNavigator: true,
        navigatorPosition: "BOTTOM_RIGHT",
        showFullPageControl: options.fullPageControl !== false,
        showRotationControl: false,
        maxZoomPixelRatio: 2,  // at most 2 screen pixels per pixel of the deepest level
        visibilityRatio: 0.5,
        immediateRender: true,  // draw the level the view needs at once, not every coarser one first
        minPixelRatio: 1,  // that level: the one whose pixels match the screen's (device pixels)
        gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true },
        gestureSettingsTouch: { pinchRotate: false },
        crossOriginPolicy: false,
      });
      this.osd.addHandler("tile-loaded", (e) => this.levelsLoaded.add(e.tile.level));
      this.osd.addHandler("tiled-image-drawn", (e) => {
        const deepest = e.tiles.reduce((level, tile) => Math.max(level, tile.level), -1);
        if (deepest >= 0) container.dataset.level = String(deepest);
      });
      this.osd.addHandler("canvas-click", (e) => {
        if (!e.quick || !this.options.onPick) return;  // a drag, not a click
        const point = this.osd.viewport.viewerElementToImageCoordinates(e.position);
        if (point.x >= 0 && point.y >= 0 && point.x < layout.width && point.y < layout.height) this.options.onPick({ x: point.x, y: point.y });
      });
      this.ready = new Promise((resolve, reject) => {
        this.osd.addOnceHandler("open", () => resolve(this));
        this.osd.addOnceHandler("open-failed", (e) => reject(new Error(e.message || "cannot open the pyramid")));
      });
    }

    // Screen pixels per full-size image pixel.
    get scale() { return this.osd.viewport.viewportToImageZoom(this.osd.viewport.getZoom(true)); }

    // A point of the viewer element (CSS px) in full-size image pixels.
    toImage(x, y) {
      const point = this.osd.viewport.viewerElementToImageCoordinates(new OpenSeadragon.Point(x, y));
      return { x: point.x, y: point.y };
    }

    // Outline box {x, y, w, h} (image pixels); null removes it.
    setMarker(box) {
      if (this.marker) { this.osd.removeOverlay(this.marker); this.marker = null; }
      if (!box) return;
      this.marker = document.createElement("div");
      this.marker.className = "tv-marker";
      this.osd.addOverlay({ element: this.marker, location: this.osd.viewport.imageToViewportRectangle(box.x, box.y, box.w, box.h) });
    }

    home() { this.osd.viewport.goHome(); }

    destroy() {
      this.osd.destroy();
      this.container.replaceChildren();
      delete this.container.dataset.level;
    }
  }

  window.TesseraViewer = { open };
})();
