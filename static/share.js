// The share viewer (/v/{token}): the mosaic's title and pyramid come from data attributes, so no
// page data is ever written into a script.
(function () {
  "use strict";
  const data = document.body.dataset;
  const viewer = new DeepZoomViewer(document.getElementById("viewer"), { label: "Mosaic of " + data.title });
  viewer.open(data.dzi).catch(function (err) {
    const box = document.getElementById("viewer-error");
    box.textContent = "The zoomable mosaic cannot be shown: " + err.message;
    box.hidden = false;
  });
  window.tesseraViewer = viewer;
})();
