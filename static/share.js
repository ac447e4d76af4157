// The share link's page: the mosaic alone in the Deep Zoom viewer (static/tessera-viewer.js).
"use strict";

(function () {
  const body = document.body;
  TesseraViewer.open(document.getElementById("viewer"), body.dataset.dzi, { label: `Mosaic of ${body.dataset.title}` })
    .then((view) => { window.tesseraViewer = view; })
    .catch((err) => {
      const box = document.getElementById("viewer-error");
      box.textContent = "The zoomable mosaic cannot be shown: " + err.message;
      box.hidden = false;
    });
})();
