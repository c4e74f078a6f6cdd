-- Operations: health, worker heartbeats, retention, a contact's report, send latency.
-- The current definition of each function and view of this area (sql/README.md: how to
-- change one). Grants: roles.sql.

create or replace function pgflow.health(p_now timestamptz default null)
returns jsonb
language plpgsql stable
security definer
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

-- Worker heartbeats.
create or replace function pgflow.worker_heartbeat(
  p_id uuid, p_host text, p_pid integer, p_version text, p_stopping boolean default false,
  p_now timestamptz default null
) returns void
language sql
security definer
set search_path = ''
as $$
  insert into pgflow.workers as w (id, host, pid, version, started_at, last_seen_at, stopped_at)
  values (p_id, p_host, p_pid, p_version, coalesce(p_now, pg_catalog.now()),
          coalesce(p_now, pg_catalog.now()),
          case when p_stopping then coalesce(p_now, pg_catalog.now()) end)
  on conflict (id) do update
    set last_seen_at = excluded.last_seen_at, stopped_at = excluded.stopped_at
$$;

-- Deletes old rows of the append-only tables in bounded batches. Safe to run often.
create or replace function pgflow.prune(
  p_now timestamptz default null,
  p_keep_events interval default '180 days',
  p_keep_job_log interval default '14 days',
  p_keep_cron_runs interval default '7 days',
  p_keep_webhooks interval default '90 days',
  p_batch integer default 10000
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_events integer;
  v_log integer;
  v_webhooks integer;
  v_sessions integer;
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
  -- console sessions a month past their end, and sign-in attempts a month old
  delete from pgflow.console_sessions where id in (
    select id from pgflow.console_sessions
     where coalesce(revoked_at, expires_at) < v_now - interval '30 days'
     order by expires_at limit p_batch);
  get diagnostics v_sessions = row_count;
  delete from pgflow.console_sign_ins where id in (
    select id from pgflow.console_sign_ins where attempted_at < v_now - interval '30 days'
     order by attempted_at limit p_batch);
  if pg_catalog.to_regclass('cron.job_run_details') is not null then
    execute 'delete from cron.job_run_details where runid in (
               select runid from cron.job_run_details where end_time < $1 limit $2)'
      using v_now - p_keep_cron_runs, p_batch;
    get diagnostics v_cron = row_count;
  end if;
  return pg_catalog.jsonb_build_object('events', v_events, 'job_log', v_log,
                                       'webhook_deliveries', v_webhooks, 'cron_runs', v_cron,
                                       'console_sessions', v_sessions);
end;
$$;

create or replace function pgflow.contact_report(p_phone text, p_limit integer default 200)
returns jsonb
language sql stable security definer
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'contact', pg_catalog.jsonb_build_object(
      'id', ct.id, 'phone', ct.phone, 'first_name', ct.first_name, 'last_name', ct.last_name,
      'timezone', ct.timezone, 'opted_out_at', ct.opted_out_at,
      'opt_out_source', ct.opt_out_source, 'consent_at', ct.consent_at,
      'consent_source', ct.consent_source),
    'enrollments', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', e.id, 'campaign', c.slug, 'status', e.status, 'next_step', e.next_step,
               'next_message_at', e.next_message_at, 'enrolled_at', e.enrolled_at,
               'ended_at', e.ended_at, 'stop_reason', e.stop_reason) order by e.id)
        from pgflow.enrollments e join pgflow.campaigns c on c.id = e.campaign_id
       where e.contact_id = ct.id), '[]'),
    'conversations', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', cv.id, 'from_number', cv.from_number, 'status', cv.status,
               'conversion_status', cv.conversion_status, 'outcome_reason', cv.outcome_reason,
               'outcome_source', cv.outcome_source, 'created_at', cv.created_at,
               'ended_at', cv.ended_at) order by cv.id)
        from pgflow.conversations cv where cv.contact_id = ct.id), '[]'),
    'messages', coalesce((
      select pg_catalog.jsonb_agg(x.m order by x.created_at, x.id)
        from (select m.id, m.created_at, pg_catalog.jsonb_build_object(
                       'id', m.id, 'conversation_id', m.conversation_id,
                       'at', coalesce(m.sent_at, m.created_at), 'direction', m.direction,
                       'kind', m.kind, 'step', m.step_position, 'status', m.delivery_status,
                       'attempts', m.attempts, 'error', m.delivery_error, 'body', m.body,
                       'segments', m.segments) as m
                from pgflow.messages m where m.contact_id = ct.id
               order by m.created_at desc, m.id desc limit p_limit) x), '[]'))
    from pgflow.contacts ct
   where ct.phone = p_phone
$$;

-- For /metrics: how long messages sent in the last p_window took from queued to sent, per
-- kind, as cumulative histogram buckets (seconds) with their count and sum.
create or replace function pgflow.send_latency(
  p_window interval default '1 hour', p_now timestamptz default null
) returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  with sent as (
    select m.kind, extract(epoch from m.sent_at - m.created_at)::double precision as s
      from pgflow.messages m
     where m.direction = 'outbound' and m.sent_at is not null
       and m.sent_at > coalesce(p_now, pg_catalog.now()) - p_window
       and m.sent_at <= coalesce(p_now, pg_catalog.now())
  ), bounds as (
    select pg_catalog.unnest(array[0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600,
                                   86400]::double precision[]) as le
  )
  select coalesce(pg_catalog.jsonb_object_agg(k.kind, pg_catalog.jsonb_build_object(
           'count', (select pg_catalog.count(*) from sent where sent.kind = k.kind),
           'sum', (select coalesce(pg_catalog.sum(greatest(s, 0)), 0) from sent
                    where sent.kind = k.kind),
           'buckets', (select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(b.le,
                         (select pg_catalog.count(*) from sent
                           where sent.kind = k.kind and sent.s <= b.le)) order by b.le)
                         from bounds b))), '{}')
    from (select distinct kind from sent) k
$$;
