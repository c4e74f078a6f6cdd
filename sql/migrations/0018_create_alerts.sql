-- Alerts that open and resolve by themselves (pgflow.watch: tick_stalled, worker_down, delivery_failures, dead_letters, queue_backlog, needs_review), their notices, and the tick that asks quiet conversations to be classified and watches the workers.
-- depends: 0017_create_outcomes

-- A resolved alert is announced too, once.
alter table pgflow.alerts add column resolve_notified_at timestamptz;

-- Is pg_cron ticking? (checkable: false where this database is not the cron database, whose
-- schedules it cannot see.) The same rules as pgflow.health()'s tick check.
create function pgflow._tick_health(p_now timestamptz, out checkable boolean, out ok boolean,
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
create function pgflow.watch(
  p_source text,
  p_now timestamptz default null,
  p_failure_rate numeric default 0.25,
  p_failure_min integer default 5,
  p_backlog interval default '5 minutes'
) returns jsonb
language plpgsql
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

-- resolve_alert as in 0009 (never before the alert opened), and a resolved alert gets a
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
create function pgflow._enqueue_notice(p_alert_id bigint, p_notice text) returns void
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
create function pgflow.alert_notice(p_alert_id bigint) returns jsonb
language sql stable
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
create function pgflow.record_alert_notice(
  p_alert_id bigint, p_notice text, p_error text default null, p_now timestamptz default null
) returns void
language plpgsql
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

-- Outbound messages not settled (queued, sending) for over two minutes whose send_sms job
-- is gone (a job held as failed by a bug, a queue row deleted by hand): queued again, at
-- their send_after when it is later. The claim decides what happens to them; nothing
-- waits for ever without a job.
create function pgflow._requeue_orphans(p_now timestamptz, p_limit integer default 1000)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_count integer := 0;
  r record;
begin
  for r in
    select coalesce(greatest(m.send_after, p_now), p_now) as after,
           pg_catalog.array_agg(m.id order by m.id) as ids
      from (select m.id, m.send_after from pgflow.messages m
             where m.delivery_status in ('queued', 'sending') and m.direction = 'outbound'
               and m.updated_at < p_now - interval '2 minutes'
               and not exists (
                 select 1 from pgflow.pgqueuer q
                  where q.dedupe_key = 'send_sms:' || m.id
                    and q.status in ('queued'::pgflow.pgqueuer_status,
                                     'picked'::pgflow.pgqueuer_status))
             order by m.updated_at
             limit p_limit) m
     group by 1
  loop
    v_count := v_count + pgflow._enqueue_after('send_sms', r.ids, 0, r.after);
  end loop;
  return v_count;
end;
$$;

create or replace function pgflow.tick(p_now timestamptz default null, p_batch integer default 1000)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_started timestamptz := pg_catalog.clock_timestamp();
  v_ids bigint[];
  v_batch jsonb;
  v_totals jsonb := '{"sent": 0, "deferred_window": 0, "deferred_cap": 0, "completed": 0,
                      "held": 0, "stopped": 0}'::jsonb;
  v_key text;
  v_no_response integer := 0;
  v_conversation bigint;
  v_batches integer := 0;
  v_quiet integer := 0;
  v_min_silence interval;
  v_alerts jsonb;
  v_orphans integer;
begin
  if not pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('pgflow.tick')) then
    return pg_catalog.jsonb_build_object('skipped', true, 'reason', 'another tick is running');
  end if;
  perform pg_catalog.set_config('statement_timeout', '55s', true);
  perform pg_catalog.set_config('lock_timeout', '5s', true);

  loop
    select pg_catalog.array_agg(id) into v_ids from (
      select e.id from pgflow.enrollments e
       where e.status = 'active' and e.next_message_at <= v_now
       order by e.next_message_at
       limit p_batch
         for update skip locked
    ) due;
    exit when v_ids is null;
    v_batches := v_batches + 1;
    v_batch := pgflow._dispatch_steps(v_ids, v_now);
    for v_key in select pg_catalog.jsonb_object_keys(v_batch) loop
      v_totals := pg_catalog.jsonb_set(v_totals, array[v_key],
        pg_catalog.to_jsonb((v_totals ->> v_key)::integer + (v_batch ->> v_key)::integer));
    end loop;
    exit when pg_catalog.cardinality(v_ids) < p_batch
           or v_batches >= 20
           or pg_catalog.clock_timestamp() - v_started > interval '20 seconds';
  end loop;

  for v_conversation in
    select c.id from pgflow.conversations c
     where c.status = 'open' and c.reply_deadline_at <= v_now
       and not exists (select 1 from pgflow.messages m
                        where m.conversation_id = c.id and m.direction = 'outbound'
                          and m.delivery_status in ('pending', 'queued', 'sending'))
     order by c.reply_deadline_at
     limit p_batch
       for update skip locked
  loop
    perform pgflow.end_conversation(v_conversation, 'no_response',
      'no reply within the reply timeout after the last step', 'rule', v_now);
    v_no_response := v_no_response + 1;
  end loop;

  -- Engaged conversations quiet past their campaign's silence timeout: classify them.
  select coalesce(pg_catalog.min(silence_timeout), interval '24 hours') into v_min_silence
    from pgflow.campaigns;
  v_min_silence := least(v_min_silence, interval '24 hours');
  for v_conversation in
    select cv.id from pgflow.conversations cv
      left join pgflow.campaigns c on c.id = cv.campaign_id
     where cv.status = 'engaged' and cv.classify_requested_at is null
       and greatest(cv.last_inbound_at, cv.last_outbound_at, cv.engaged_at) < v_now - v_min_silence
       and greatest(cv.last_inbound_at, cv.last_outbound_at, cv.engaged_at)
           < v_now - coalesce(c.silence_timeout, interval '24 hours')
     order by greatest(cv.last_inbound_at, cv.last_outbound_at, cv.engaged_at)
     limit p_batch
       for update of cv skip locked
  loop
    if pgflow._request_classification(v_conversation, v_now) then
      v_quiet := v_quiet + 1;
    end if;
  end loop;

  v_orphans := pgflow._requeue_orphans(v_now, p_batch);

  -- pg_cron watches the workers (and the deliveries, the dead letters, the queue). Alerts
  -- are about real time: a tick run at an injected time (a test, the demo) does not judge.
  if p_now is null then
    v_alerts := pgflow.watch('tick', v_now);
  end if;

  return v_totals || pg_catalog.jsonb_build_object(
    'no_response', v_no_response, 'classify_requested', v_quiet, 'batches', v_batches,
    'requeued', v_orphans, 'alerts', v_alerts -> 'open',
    'ms', pg_catalog.round(extract(epoch from pg_catalog.clock_timestamp() - v_started) * 1000));
end;
$$;



-- For /metrics: how long messages sent in the last p_window took from queued to sent, per
-- kind, as cumulative histogram buckets (seconds) with their count and sum.
create function pgflow.send_latency(
  p_window interval default '1 hour', p_now timestamptz default null
) returns jsonb
language sql stable
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

revoke execute on function pgflow._tick_health(timestamptz), pgflow._requeue_orphans(timestamptz, integer),
  pgflow.send_latency(interval, timestamptz),
  pgflow.watch(text, timestamptz, numeric, integer, interval),
  pgflow._enqueue_notice(bigint, text), pgflow.alert_notice(bigint),
  pgflow.record_alert_notice(bigint, text, text, timestamptz)
  from public;
alter function pgflow.watch(text, timestamptz, numeric, integer, interval) security definer;
alter function pgflow.alert_notice(bigint) security definer;
alter function pgflow.record_alert_notice(bigint, text, text, timestamptz) security definer;
grant execute on function pgflow.watch(text, timestamptz, numeric, integer, interval),
  pgflow.alert_notice(bigint), pgflow.record_alert_notice(bigint, text, text, timestamptz)
  to pgflow_worker;
grant execute on function pgflow.watch(text, timestamptz, numeric, integer, interval)
  to pgflow_operator;
alter function pgflow.send_latency(interval, timestamptz) security definer;
grant execute on function pgflow.send_latency(interval, timestamptz)
  to pgflow_web, pgflow_operator, pgflow_reader;
