-- Alerts: open and resolve by condition, notices for the alert webhook.
-- The current definition of each function and view of this area (sql/README.md: how to
-- change one). Grants: roles.sql.

-- Open an alert, or count one more occurrence of the open alert of that kind.
-- A newly opened alert gets a deliver_alert job. Returns the alert id.
create or replace function pgflow.open_alert(
  p_kind text, p_severity text, p_message text, p_details jsonb default '{}',
  p_now timestamptz default null
) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_id bigint;
  v_new boolean;
begin
  insert into pgflow.alerts as a (kind, severity, message, details, opened_at, last_seen_at)
  values (p_kind, p_severity, p_message, coalesce(p_details, '{}'), v_now, v_now)
  on conflict (kind) where resolved_at is null do update
    set occurrences = a.occurrences + 1, last_seen_at = excluded.last_seen_at,
        message = excluded.message, details = excluded.details
  returning id, (xmax = 0) into v_id, v_new;
  if v_new then
    perform pgflow._enqueue('deliver_alert', array[v_id]);
  end if;
  return v_id;
end;
$$;

-- Resolve the open alert of a kind (never before it opened); a resolved alert gets a
-- resolved notice.
create or replace function pgflow.resolve_alert(p_kind text, p_now timestamptz default null)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_id bigint;
begin
  update pgflow.alerts set resolved_at = greatest(coalesce(p_now, pg_catalog.now()), opened_at)
   where kind = p_kind and resolved_at is null
  returning id into v_id;
  if v_id is not null then
    perform pgflow._enqueue_notice(v_id, 'resolved');
  end if;
  return v_id;
end;
$$;

-- A deliver_alert job for a notice; a resolved notice has a key of its own, so it queues
-- even while the opening notice's job is still running.
create or replace function pgflow._enqueue_notice(p_alert_id bigint, p_notice text) returns void
language sql
set search_path = ''
as $$
  insert into pgflow.pgqueuer (priority, entrypoint, payload, execute_after, dedupe_key, status)
  values (20, 'deliver_alert',
          pg_catalog.convert_to(pg_catalog.json_build_object('id', p_alert_id)::text, 'UTF8'),
          pg_catalog.now(), 'deliver_alert:' || p_alert_id || ':' || p_notice, 'queued')
  on conflict (dedupe_key)
    where ((status = any (array['queued'::pgflow.pgqueuer_status, 'picked'::pgflow.pgqueuer_status]))
           and (dedupe_key is not null))
  do nothing
$$;

-- For a deliver_alert job: which notice is due (opened, then resolved), with the alert.
create or replace function pgflow.alert_notice(p_alert_id bigint) returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select case
    when a.notified_at is null then
      pg_catalog.jsonb_build_object('notice', 'opened', 'alert', pg_catalog.to_jsonb(a))
    when a.resolved_at is not null and a.resolve_notified_at is null then
      pg_catalog.jsonb_build_object('notice', 'resolved', 'alert', pg_catalog.to_jsonb(a))
  end
  from pgflow.alerts a where a.id = p_alert_id
$$;

-- A notice went out (or why it could not: kept in details.notify_error). An alert resolved
-- before its opening notice went out gets its resolved notice next.
create or replace function pgflow.record_alert_notice(
  p_alert_id bigint, p_notice text, p_error text default null, p_now timestamptz default null
) returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_alert pgflow.alerts;
begin
  if p_error is not null then
    update pgflow.alerts
       set details = details || pg_catalog.jsonb_build_object('notify_error', p_error)
     where id = p_alert_id;
    return;
  end if;
  update pgflow.alerts
     set notified_at = case when p_notice = 'opened' then v_now else notified_at end,
         resolve_notified_at = case when p_notice = 'resolved' then v_now
                                    else resolve_notified_at end
   where id = p_alert_id
  returning * into v_alert;
  if p_notice = 'opened' and v_alert.resolved_at is not null then
    perform pgflow._enqueue_notice(p_alert_id, 'resolved');
  end if;
end;
$$;

-- Is pg_cron ticking? (checkable: false where this database is not the cron database, whose
-- schedules it cannot see.) The same rules as pgflow.health()'s tick check.
create or replace function pgflow._tick_health(p_now timestamptz, out checkable boolean, out ok boolean,
                                    out detail text)
language plpgsql stable
set search_path = ''
as $$
declare
  v_cron_db text := pg_catalog.current_setting('cron.database_name', true);
  v_preloaded boolean :=
    pg_catalog.current_setting('shared_preload_libraries') ~ '(^|[ ,])pg_cron([ ,]|$)';
  v_launcher boolean := exists (select 1 from pg_catalog.pg_stat_activity
                                 where backend_type = 'pg_cron launcher');
  v_tick record;
begin
  checkable := true;
  if not v_preloaded then
    ok := false; detail := 'pg_cron is not in shared_preload_libraries'; return;
  end if;
  if v_cron_db is distinct from pg_catalog.current_database() then
    checkable := false; ok := true;
    detail := pg_catalog.format('cron database is %s: its schedules are not visible here',
                                coalesce(v_cron_db, '(unset)'));
    return;
  end if;
  if pg_catalog.to_regclass('cron.job') is null then
    ok := false; detail := 'extension pg_cron is not created'; return;
  end if;
  if not v_launcher then
    ok := false;
    detail := 'pg_cron''s launcher is not running: nothing is scheduled (restart PostgreSQL)';
    return;
  end if;
  execute $q$
    select j.jobid, j.active,
           (select pg_catalog.max(d.end_time) from cron.job_run_details d
             where d.jobid = j.jobid and d.status = 'succeeded') as last_ok,
           (select d.return_message from cron.job_run_details d
             where d.jobid = j.jobid and d.status = 'failed'
             order by d.end_time desc nulls last limit 1) as last_error
      from cron.job j where j.jobname = 'pgflow-tick'
  $q$ into v_tick;
  if v_tick.jobid is null then
    ok := false; detail := 'cron job pgflow-tick is not scheduled';
  elsif not v_tick.active then
    ok := false; detail := 'cron job pgflow-tick is inactive';
  elsif v_tick.last_ok > p_now - interval '3 minutes' then
    ok := true;
    detail := pg_catalog.format('last ran %s s ago',
                                pg_catalog.round(extract(epoch from p_now - v_tick.last_ok)));
  elsif v_tick.last_ok is null and v_tick.last_error is null then
    ok := true; detail := 'scheduled; no run yet';
  elsif v_tick.last_error is not null then
    ok := false; detail := 'failing: ' || pg_catalog.left(v_tick.last_error, 200);
  else
    ok := false;
    detail := pg_catalog.format('last successful run %s ago', p_now - v_tick.last_ok);
  end if;
end;
$$;

-- Open an alert when its condition holds, resolve it when it no longer does; one open per
-- kind. The worker's heartbeat calls it (so the worker watches pg_cron's tick) and so does
-- the tick (so pg_cron watches the workers); each checks what it can see:
--   tick_stalled      the tick has not run for 3 minutes (not judged by the tick itself)
--   worker_down       jobs are ready and no worker heartbeat is under a minute old
--   delivery_failures more than p_failure_rate of the sends in 15 minutes failed, at least
--                     p_failure_min of them
--   dead_letters      messages became dead letters in the last 15 minutes
--   queue_backlog     a ready job has waited longer than p_backlog
--   needs_review      conversations wait for a person (opened by classification)
create or replace function pgflow.watch(
  p_source text,
  p_now timestamptz default null,
  p_failure_rate numeric default 0.25,
  p_failure_min integer default 5,
  p_backlog interval default '5 minutes'
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_tick record;
  v_workers integer;
  v_ready integer;
  v_oldest timestamptz;
  v_tried integer;
  v_failed integer;
  v_dead integer;
  v_review integer;
  v_opened text[] := '{}';
  v_resolved text[] := '{}';

begin
  if p_source is distinct from 'tick' then
    v_tick := pgflow._tick_health(v_now);
    if v_tick.checkable and not v_tick.ok then
      perform pgflow.open_alert('tick_stalled', 'critical',
        'pg_cron''s pgflow-tick has not run for 3 minutes: drips, no_response and alerts stop. '
        || v_tick.detail, pg_catalog.jsonb_build_object('detail', v_tick.detail), v_now);
      v_opened := v_opened || 'tick_stalled'::text;
    elsif v_tick.checkable and pgflow.resolve_alert('tick_stalled', v_now) is not null then
      v_resolved := v_resolved || 'tick_stalled'::text;
    end if;
  end if;

  select pg_catalog.count(*) into v_workers from pgflow.workers
   where stopped_at is null and last_seen_at > v_now - interval '1 minute';
  select pg_catalog.count(*), pg_catalog.min(execute_after) into v_ready, v_oldest
    from pgflow.pgqueuer where status = 'queued' and execute_after <= v_now;
  if v_ready > 0 and v_workers = 0 and p_source <> 'worker' then
    perform pgflow.open_alert('worker_down', 'critical',
      pg_catalog.format('%s job(s) wait and no worker has been seen for a minute: nothing is '
                        'being sent (start or restart pgflow worker)', v_ready),
      pg_catalog.jsonb_build_object('ready_jobs', v_ready, 'oldest', v_oldest), v_now);
    v_opened := v_opened || 'worker_down'::text;
  elsif (v_workers > 0 or v_ready = 0) and pgflow.resolve_alert('worker_down', v_now) is not null then
    v_resolved := v_resolved || 'worker_down'::text;
  end if;

  select pg_catalog.count(*), pg_catalog.count(*) filter (where outcome in ('retry', 'dead_letter'))
    into v_tried, v_failed
    from pgflow.message_attempts
   where finished_at > v_now - interval '15 minutes' and finished_at <= v_now;
  if v_failed >= p_failure_min and v_failed > p_failure_rate * v_tried then
    perform pgflow.open_alert('delivery_failures', 'warning',
      pg_catalog.format('%s of %s sends failed in the last 15 minutes (%s%%)', v_failed, v_tried,
                        pg_catalog.round(100.0 * v_failed / v_tried)),
      pg_catalog.jsonb_build_object('failed', v_failed, 'attempts', v_tried), v_now);
    v_opened := v_opened || 'delivery_failures'::text;
  elsif pgflow.resolve_alert('delivery_failures', v_now) is not null then
    v_resolved := v_resolved || 'delivery_failures'::text;
  end if;

  select pg_catalog.count(*) into v_dead from pgflow.messages
   where delivery_status = 'dead_letter' and updated_at > v_now - interval '15 minutes'
     and updated_at <= v_now;
  if v_dead > 0 then
    perform pgflow.open_alert('dead_letters', 'warning',
      pg_catalog.format('%s message(s) became dead letters in the last 15 minutes '
                        '(pgflow dead-letters list)', v_dead),
      pg_catalog.jsonb_build_object('new_dead_letters', v_dead), v_now);
    v_opened := v_opened || 'dead_letters'::text;
  elsif pgflow.resolve_alert('dead_letters', v_now) is not null then
    v_resolved := v_resolved || 'dead_letters'::text;
  end if;

  if v_oldest < v_now - p_backlog then
    perform pgflow.open_alert('queue_backlog', 'warning',
      pg_catalog.format('the oldest ready job has waited %s (%s ready)',
                        pg_catalog.date_trunc('second', v_now - v_oldest), v_ready),
      pg_catalog.jsonb_build_object('ready_jobs', v_ready, 'oldest', v_oldest), v_now);
    v_opened := v_opened || 'queue_backlog'::text;
  elsif pgflow.resolve_alert('queue_backlog', v_now) is not null then
    v_resolved := v_resolved || 'queue_backlog'::text;
  end if;

  select pg_catalog.count(*) into v_review from pgflow.conversations
   where review_reason is not null;
  if v_review = 0 and pgflow.resolve_alert('needs_review', v_now) is not null then
    v_resolved := v_resolved || 'needs_review'::text;
  end if;

  return pg_catalog.jsonb_build_object(
    'opened', pg_catalog.to_jsonb(v_opened),
    'resolved', pg_catalog.to_jsonb(v_resolved),
    'open', (select coalesce(pg_catalog.jsonb_agg(kind order by kind), '[]')
               from pgflow.alerts where resolved_at is null));
end;
$$;
