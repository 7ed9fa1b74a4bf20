"""HTTP plumbing both faces use (the authorization server in ``web/``, the token handler in
``proxy/``): cookies, CORS, error rendering and pages, forwarded addresses, a request's grant
context, metrics. It calls no use case and imports neither face."""
