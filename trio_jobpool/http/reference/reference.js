// The API reference page (/docs): Swagger UI over this server's own /openapi.json.
// Nothing is loaded from elsewhere: no validator badge (validatorUrl: null), no top bar that
// would load another document.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  const node = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: new URL(node.dataset.openapi, document.baseURI).href,
    domNode: node,
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
