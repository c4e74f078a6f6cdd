-- Least-privilege roles: pgflow_web, pgflow_worker, pgflow_operator, pgflow_reader (NOLOGIN; grant them to login users).
-- depends: 0009_create_send_pipeline

do $$
declare
  r text;
begin
  foreach r in array array['pgflow_web', 'pgflow_worker', 'pgflow_operator', 'pgflow_reader'] loop
    if not exists (select 1 from pg_catalog.pg_roles where rolname = r) then
      execute pg_catalog.format('create role %I nologin', r);
    end if;
  end loop;
end;
$$;

-- Nothing for PUBLIC: functions are executable by PUBLIC unless revoked.
revoke all on schema pgflow from public;
revoke execute on all functions in schema pgflow from public;
grant usage on schema pgflow to pgflow_web, pgflow_worker, pgflow_operator, pgflow_reader;

-- The entry points run as their owner (SECURITY DEFINER, search_path = ''), so callers need
-- EXECUTE on them and nothing on the tables.
alter function pgflow.ingest_lead(jsonb, timestamptz, jsonb) security definer;
alter function pgflow.reject_lead(text, text, text, text, timestamptz) security definer;
alter function pgflow.health(timestamptz) security definer;
alter function pgflow.claim_send(bigint, uuid, timestamptz) security definer;
alter function pgflow.record_send(bigint, integer, jsonb, double precision, timestamptz) security definer;
alter function pgflow.worker_heartbeat(uuid, text, integer, text, boolean, timestamptz) security definer;
alter function pgflow.alert(bigint) security definer;
alter function pgflow.record_alert_delivery(bigint, text, timestamptz) security definer;
alter function pgflow.tick(timestamptz, integer) security definer;
alter function pgflow.prune(timestamptz, interval, interval, interval, interval, integer) security definer;
alter function pgflow.apply_campaigns(jsonb, timestamptz) security definer;
alter function pgflow.campaign_refusal(text) security definer;
alter function pgflow.requeue_dead_letters(bigint[], text, timestamptz) security definer;
alter function pgflow.discard_dead_letters(bigint[], timestamptz) security definer;
alter function pgflow.pause_enrollment(bigint, text, timestamptz) security definer;
alter function pgflow.resume_enrollment(bigint, text, timestamptz) security definer;
alter function pgflow.stop_enrollment(bigint, text, timestamptz) security definer;
alter function pgflow.end_conversation(bigint, text, text, text, timestamptz) security definer;

-- Web: take leads, report health.
grant execute on function pgflow.ingest_lead(jsonb, timestamptz, jsonb),
  pgflow.reject_lead(text, text, text, text, timestamptz),
  pgflow.health(timestamptz)
  to pgflow_web;

-- Worker: its job functions, plus pgqueuer's own tables (the library queries them directly).
grant execute on function pgflow.claim_send(bigint, uuid, timestamptz),
  pgflow.record_send(bigint, integer, jsonb, double precision, timestamptz),
  pgflow.worker_heartbeat(uuid, text, integer, text, boolean, timestamptz),
  pgflow.alert(bigint),
  pgflow.record_alert_delivery(bigint, text, timestamptz),
  pgflow.health(timestamptz)
  to pgflow_worker;
grant select, insert, update, delete on pgflow.pgqueuer, pgflow.pgqueuer_log,
  pgflow.pgqueuer_statistics, pgflow.pgqueuer_schedules to pgflow_worker;
grant usage, select on sequence pgflow.pgqueuer_id_seq, pgflow.pgqueuer_statistics_id_seq,
  pgflow.pgqueuer_schedules_id_seq to pgflow_worker;

-- Operator (the CLI): campaigns, the tick by hand, dead letters, transitions; reads everything.
grant execute on function pgflow.apply_campaigns(jsonb, timestamptz),
  pgflow.tick(timestamptz, integer),
  pgflow.prune(timestamptz, interval, interval, interval, interval, integer),
  pgflow.requeue_dead_letters(bigint[], text, timestamptz),
  pgflow.discard_dead_letters(bigint[], timestamptz),
  pgflow.pause_enrollment(bigint, text, timestamptz),
  pgflow.resume_enrollment(bigint, text, timestamptz),
  pgflow.stop_enrollment(bigint, text, timestamptz),
  pgflow.end_conversation(bigint, text, text, text, timestamptz),
  pgflow.ingest_lead(jsonb, timestamptz, jsonb),
  pgflow.reject_lead(text, text, text, text, timestamptz),
  pgflow.campaign_refusal(text),
  pgflow.health(timestamptz)
  to pgflow_operator;
grant pgflow_reader to pgflow_operator;

-- Reader: dashboards and `pgflow status`.
grant select on all tables in schema pgflow to pgflow_reader;
grant execute on function pgflow.health(timestamptz) to pgflow_reader;
-- Everyone checks that the schema is current (yoyo's bookkeeping).
grant select on pgflow._yoyo_migration, pgflow._yoyo_version
  to pgflow_web, pgflow_worker, pgflow_reader;
-- Functions are executable by PUBLIC when created, and a per-schema default privilege cannot
-- take that away: every later migration revokes it on the functions it creates (a test checks).
