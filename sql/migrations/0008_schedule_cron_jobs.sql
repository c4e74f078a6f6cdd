-- Retention (pgflow.prune) and the pg_cron schedules pgflow-tick and pgflow-prune, by name.
-- depends: 0007_create_apply_campaigns

-- Deletes old rows of the append-only tables in bounded batches. Safe to run often.
create function pgflow.prune(
  p_now timestamptz default null,
  p_keep_events interval default '180 days',
  p_keep_job_log interval default '14 days',
  p_keep_cron_runs interval default '7 days',
  p_keep_webhooks interval default '90 days',
  p_batch integer default 10000
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_events integer;
  v_log integer;
  v_webhooks integer;
  v_cron integer := 0;
begin
  if not pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('pgflow.prune')) then
    return pg_catalog.jsonb_build_object('skipped', true);
  end if;
  perform pg_catalog.set_config('statement_timeout', '55s', true);
  perform pg_catalog.set_config('lock_timeout', '5s', true);
  delete from pgflow.events where id in (
    select id from pgflow.events where occurred_at < v_now - p_keep_events
     order by occurred_at limit p_batch);
  get diagnostics v_events = row_count;
  delete from pgflow.pgqueuer_log where id in (
    select id from pgflow.pgqueuer_log where created < v_now - p_keep_job_log
     order by created limit p_batch);
  get diagnostics v_log = row_count;
  delete from pgflow.webhook_deliveries where id in (
    select id from pgflow.webhook_deliveries where received_at < v_now - p_keep_webhooks
     order by received_at limit p_batch);
  get diagnostics v_webhooks = row_count;
  if pg_catalog.to_regclass('cron.job_run_details') is not null then
    execute 'delete from cron.job_run_details where runid in (
               select runid from cron.job_run_details where end_time < $1 limit $2)'
      using v_now - p_keep_cron_runs, p_batch;
    get diagnostics v_cron = row_count;
  end if;
  return pg_catalog.jsonb_build_object('events', v_events, 'job_log', v_log,
                                       'webhook_deliveries', v_webhooks, 'cron_runs', v_cron);
end;
$$;

-- Schedule by name (an upsert) where pg_cron lives in this database. Elsewhere, the README
-- gives the cron.schedule_in_database() calls to run in the cron database.
do $$
begin
  if pg_catalog.to_regclass('cron.job') is not null then
    perform cron.schedule('pgflow-tick', '* * * * *', 'select pgflow.tick()');
    perform cron.schedule('pgflow-prune', '17 * * * *', 'select pgflow.prune()');
  end if;
end;
$$;
