// Render this service's OpenAPI document with Swagger UI (served locally, no CDN).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
  });
});
