"""`pgflow serve`: the ASGI app, one small module per concern.

- `app`: the app, its lifespan and the route table
- `context`: what the handlers share (settings, the pool, the clock, the metrics)
- `http`: reading bodies within a limit, JSON parsing, error responses
- `auth`: bearer tokens compared in constant time
- `leads`: POST /webhooks/leads
- `retell`: POST /webhooks/retell (signature on the raw body, one SQL call)
- `events`: POST /webhooks/events (bookings, takeovers, disqualifications from a CRM)
- `probes`: GET /healthz, GET /readyz
- `metrics`: GET /metrics and the request counter
"""
