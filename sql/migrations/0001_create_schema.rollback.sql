-- Drops everything 0001 created except the schema itself (it also holds yoyo's bookkeeping).
drop table if exists pgflow.workers, pgflow.alerts, pgflow.events, pgflow.webhook_deliveries,
  pgflow.lead_events, pgflow.messages, pgflow.conversations, pgflow.enrollments,
  pgflow.campaign_steps, pgflow.campaigns, pgflow.agents, pgflow.contacts;
drop function if exists pgflow._is_time_zone(text);
