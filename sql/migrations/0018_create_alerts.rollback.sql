-- Undo 0018: the tick as 0006 defined it, resolve_alert as 0009 did; drop the watchdog.
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

  return v_totals || pg_catalog.jsonb_build_object(
    'no_response', v_no_response, 'batches', v_batches,
    'ms', pg_catalog.round(extract(epoch from pg_catalog.clock_timestamp() - v_started) * 1000));
end;
$$;

create or replace function pgflow.resolve_alert(p_kind text, p_now timestamptz default null)
returns bigint
language sql
set search_path = ''
as $$
  update pgflow.alerts set resolved_at = coalesce(p_now, pg_catalog.now())
   where kind = p_kind and resolved_at is null
  returning id
$$;

drop function pgflow.send_latency(interval, timestamptz);
drop function pgflow.record_alert_notice(bigint, text, text, timestamptz);
drop function pgflow.alert_notice(bigint);
drop function pgflow._enqueue_notice(bigint, text);
drop function pgflow.watch(text, timestamptz, numeric, integer, interval);
drop function pgflow._tick_health(timestamptz);
drop function pgflow._requeue_orphans(timestamptz, integer);
alter table pgflow.alerts drop column resolve_notified_at;
