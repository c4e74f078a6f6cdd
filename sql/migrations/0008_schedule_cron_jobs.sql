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

create or replace function pgflow.health(p_now timestamptz default null)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_checks jsonb := '[]'::jsonb;
  v_cron_db text := pg_catalog.current_setting('cron.database_name', true);
  v_preloaded boolean :=
    pg_catalog.current_setting('shared_preload_libraries') ~ '(^|[ ,])pg_cron([ ,]|$)';
  v_local_cron boolean := pg_catalog.to_regclass('cron.job') is not null;
  v_tick record;
begin
  v_checks := v_checks || pg_catalog.jsonb_build_object(
    'name', 'pg_cron',
    'ok', v_preloaded and (v_cron_db <> pg_catalog.current_database() or v_local_cron),
    'detail', case
      when not v_preloaded then 'pg_cron is not in shared_preload_libraries'
      when v_cron_db <> pg_catalog.current_database()
        then pg_catalog.format('cron database is %I; schedule jobs there (README)', v_cron_db)
      when not v_local_cron then 'extension pg_cron is not created'
      else 'preloaded; extension created'
    end);
  if v_local_cron then
    execute $q$
      select j.jobid, j.active,
             (select pg_catalog.max(d.end_time) from cron.job_run_details d
               where d.jobid = j.jobid and d.status = 'succeeded') as last_ok,
             (select d.return_message from cron.job_run_details d
               where d.jobid = j.jobid and d.status = 'failed'
               order by d.end_time desc nulls last limit 1) as last_error
        from cron.job j where j.jobname = 'pgflow-tick'
    $q$ into v_tick;
    v_checks := v_checks || pg_catalog.jsonb_build_object(
      'name', 'tick',
      'ok', v_tick.jobid is not null and v_tick.active
            and (v_tick.last_ok > v_now - interval '3 minutes'
                 or (v_tick.last_ok is null and v_tick.last_error is null)),
      'detail', case
        when v_tick.jobid is null then 'cron job pgflow-tick is not scheduled'
        when not v_tick.active then 'cron job pgflow-tick is inactive'
        when v_tick.last_ok > v_now - interval '3 minutes'
          then pg_catalog.format('last ran %s s ago',
                 pg_catalog.round(extract(epoch from v_now - v_tick.last_ok)))
        when v_tick.last_error is not null
          then 'failing: ' || pg_catalog.left(v_tick.last_error, 200)
        when v_tick.last_ok is null then 'scheduled; no run yet'
        else pg_catalog.format('last successful run %s ago', v_now - v_tick.last_ok)
      end);
  end if;
  return pg_catalog.jsonb_build_object(
    'now', v_now,
    'checks', v_checks,
    'figures', pg_catalog.jsonb_build_object(
      'contacts', (select pg_catalog.count(*) from pgflow.contacts),
      'enrollments_active',
        (select pg_catalog.count(*) from pgflow.enrollments where status = 'active'),
      'enrollments_due',
        (select pg_catalog.count(*) from pgflow.enrollments
          where status = 'active' and next_message_at <= v_now),
      'conversations_open',
        (select pg_catalog.count(*) from pgflow.conversations where status <> 'ended'),
      'jobs_queued',
        (select pg_catalog.count(*) from pgflow.pgqueuer where status = 'queued'),
      'dead_letters',
        (select pg_catalog.count(*) from pgflow.messages where delivery_status = 'dead_letter'),
      'alerts_open', (select pg_catalog.count(*) from pgflow.alerts where resolved_at is null),
      'leads_rejected_24h',
        (select pg_catalog.count(*) from pgflow.lead_events
          where result = 'rejected' and received_at > v_now - interval '24 hours')
    ));
end;
$$;
