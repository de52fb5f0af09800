// Starts Swagger UI on the server's own OpenAPI document. A file of its own
// (not an inline script) because the server's CSP is `script-src 'self'`.
/* global SwaggerUIBundle */
window.addEventListener('load', () => {
  window.ui = SwaggerUIBundle({
    url: '/openapi.json',
    dom_id: '#swagger-ui',
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout',
    // No calls to the public validator service (and no badge image from elsewhere).
    validatorUrl: null,
    // Authorize once (a token from POST /auth/login, an API key for /api/) for the session.
    persistAuthorization: false,
    displayRequestDuration: true,
    tryItOutEnabled: false,
  });
});
