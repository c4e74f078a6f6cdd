"""pgflow-sms: a Postgres-centric engine that turns inbound leads into SMS conversations."""

__version__ = "0.1.0"
