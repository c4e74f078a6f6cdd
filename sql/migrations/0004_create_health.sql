-- pgflow.health(): the checks and figures behind `pgflow status`, /readyz and /metrics.
-- depends: 0003_create_pg_cron

create function pgflow.health(p_now timestamptz default null)
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
  -- pg_cron's scheduler; it stops for good if its database is dropped and re-created
  v_launcher boolean := exists (select 1 from pg_catalog.pg_stat_activity
                                 where backend_type = 'pg_cron launcher');
  v_tick record;
  v_workers integer;
  v_last_worker timestamptz;
  v_ready integer;
  v_oldest_ready timestamptz;
  v_alerts integer;
  v_alert_kinds text;
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
      'ok', v_launcher and v_tick.jobid is not null and v_tick.active
            and (v_tick.last_ok > v_now - interval '3 minutes'
                 or (v_tick.last_ok is null and v_tick.last_error is null)),
      'detail', case
        when not v_launcher
          then 'pg_cron''s launcher is not running: nothing is scheduled (restart PostgreSQL)'
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
  select pg_catalog.count(*) filter (where stopped_at is null
                                      and last_seen_at > v_now - interval '1 minute'),
         pg_catalog.max(last_seen_at)
    into v_workers, v_last_worker
    from pgflow.workers;
  select pg_catalog.count(*), pg_catalog.min(execute_after)
    into v_ready, v_oldest_ready
    from pgflow.pgqueuer where status = 'queued' and execute_after <= v_now;
  v_checks := v_checks || pg_catalog.jsonb_build_object(
    'name', 'worker',
    'ok', v_workers > 0 or v_ready = 0,
    'detail', case
      when v_workers > 0 then pg_catalog.format('%s alive', v_workers)
      when v_ready = 0 then 'none alive; no job waiting'
      else pg_catalog.format('none alive and %s job(s) waiting since %s', v_ready,
                             pg_catalog.to_char(v_oldest_ready, 'YYYY-MM-DD HH24:MI:SS TZ'))
    end);
  select pg_catalog.count(*), pg_catalog.string_agg(kind, ', ' order by kind)
    into v_alerts, v_alert_kinds
    from pgflow.alerts where resolved_at is null and severity = 'critical';
  v_checks := v_checks || pg_catalog.jsonb_build_object(
    'name', 'alerts',
    'ok', v_alerts = 0,
    'detail', case when v_alerts = 0 then 'no critical alert open'
                   else 'critical alert(s) open: ' || v_alert_kinds end);
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
      'workers_alive', v_workers,
      'jobs_ready', v_ready,
      'messages_sent_24h',
        (select pg_catalog.count(*) from pgflow.messages
          where direction = 'outbound' and sent_at > v_now - interval '24 hours'),
      'dead_letters',
        (select pg_catalog.count(*) from pgflow.messages where delivery_status = 'dead_letter'),
      'alerts_open', (select pg_catalog.count(*) from pgflow.alerts where resolved_at is null),
      'leads_rejected_24h',
        (select pg_catalog.count(*) from pgflow.lead_events
          where result = 'rejected' and received_at > v_now - interval '24 hours')
    ));
end;
$$;
