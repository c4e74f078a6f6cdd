"""`pgflow serve`: the ASGI app, one small module per concern.

- `app`: the app, its lifespan and the route table
- `context`: what the handlers share (settings, the pool, the clock, the instruments)
- `http`: reading bodies within a limit, JSON parsing, what jsonb can hold, error
  responses, and the answers to a failed SQL call
- `auth`: bearer tokens compared in constant time, the 401 and its log line
- `leads`: POST /webhooks/leads
- `retell`: POST /webhooks/retell (signature on the raw body, one SQL call)
- `events`: POST /webhooks/events (bookings, takeovers, disqualifications from a CRM)
- `probes`: GET /healthz, GET /readyz
- `instruments`: the process's own Prometheus instruments and the request-counting middleware
- `metrics`: GET /metrics
"""
