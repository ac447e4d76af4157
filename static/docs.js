// /docs: Swagger UI from our own pinned copy (static/swagger-ui/), started without inline script.
(function () {
  "use strict";
  window.ui = SwaggerUIBundle({
    url: document.body.dataset.openapi,
    dom_id: "#swagger-ui",
    deepLinking: true,
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
  });
})();
