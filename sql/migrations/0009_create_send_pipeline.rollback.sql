-- Drop the send pipeline.
drop function if exists pgflow.alert(bigint);
drop function if exists pgflow.discard_dead_letters(bigint[], timestamptz);
drop function if exists pgflow.requeue_dead_letters(bigint[], text, timestamptz);
drop view if exists pgflow.dead_letters;
drop function if exists pgflow.record_send(bigint, integer, jsonb, double precision, timestamptz);
drop function if exists pgflow.claim_send(bigint, uuid, timestamptz);
drop function if exists pgflow.worker_heartbeat(uuid, text, integer, text, boolean, timestamptz);
drop function if exists pgflow.record_alert_delivery(bigint, text, timestamptz);
drop function if exists pgflow.resolve_alert(text, timestamptz);
drop function if exists pgflow.open_alert(text, text, text, jsonb, timestamptz);
drop table if exists pgflow.message_attempts;
