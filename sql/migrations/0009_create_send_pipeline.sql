-- The send pipeline: claim (send-time re-check), record (retry/dead-letter), attempts, alerts, workers, dead letters.
-- depends: 0008_schedule_cron_jobs

-- Every send attempt, kept: what happened, the provider's status, the error. At most one
-- is open (finished_at null) per message: the one whose message is 'sending'.
create table pgflow.message_attempts (
  id bigint generated always as identity primary key,
  message_id bigint not null references pgflow.messages (id),
  attempt integer not null,
  worker_id uuid,
  started_at timestamptz not null,
  finished_at timestamptz,
  outcome text,
  status_code integer,
  error text,
  constraint message_attempts_message_attempt_key unique (message_id, attempt),
  constraint message_attempts_attempt_positive check (attempt > 0),
  constraint message_attempts_outcome_valid
    check (outcome in ('sent', 'retry', 'dead_letter', 'interrupted')),
  constraint message_attempts_finished_has_outcome
    check ((finished_at is null) = (outcome is null))
);
create unique index message_attempts_one_open on pgflow.message_attempts (message_id)
  where finished_at is null;

-- Open an alert, or count one more occurrence of the open alert of that kind.
-- A newly opened alert gets a deliver_alert job. Returns the alert id.
create function pgflow.open_alert(
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

create function pgflow.resolve_alert(p_kind text, p_now timestamptz default null)
returns bigint
language sql
set search_path = ''
as $$
  update pgflow.alerts set resolved_at = coalesce(p_now, pg_catalog.now())
   where kind = p_kind and resolved_at is null
  returning id
$$;

-- Record that an alert notification went out (or why it could not).
create function pgflow.record_alert_delivery(
  p_alert_id bigint, p_error text default null, p_now timestamptz default null
) returns void
language sql
set search_path = ''
as $$
  update pgflow.alerts
     set notified_at = case when p_error is null then coalesce(p_now, pg_catalog.now()) end,
         details = case when p_error is null then details
                        else details || pg_catalog.jsonb_build_object('notify_error', p_error) end
   where id = p_alert_id
$$;

-- Worker heartbeats.
create function pgflow.worker_heartbeat(
  p_id uuid, p_host text, p_pid integer, p_version text, p_stopping boolean default false,
  p_now timestamptz default null
) returns void
language sql
set search_path = ''
as $$
  insert into pgflow.workers as w (id, host, pid, version, started_at, last_seen_at, stopped_at)
  values (p_id, p_host, p_pid, p_version, coalesce(p_now, pg_catalog.now()),
          coalesce(p_now, pg_catalog.now()),
          case when p_stopping then coalesce(p_now, pg_catalog.now()) end)
  on conflict (id) do update
    set last_seen_at = excluded.last_seen_at, stopped_at = excluded.stopped_at
$$;

-- The send-time re-check and claim, in one call. For the message of a send_sms job:
--   skip        the message is no longer waiting (sent, suppressed, dead letter, ...)
--   suppressed  the contact opted out, or the drip / conversation no longer allows it
--   defer       not now (send window closed, backoff pending, campaign paused): retry later
--   dead_letter the previous attempts were interrupted max_attempts times (a poison message)
--   send        claimed: attempt n is ours; everything the transport needs is returned
create function pgflow.claim_send(
  p_message_id bigint, p_worker uuid default null, p_now timestamptz default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  m pgflow.messages;
  v_contact pgflow.contacts;
  v_conversation pgflow.conversations;
  v_campaign pgflow.campaigns;
  v_agent pgflow.agents;
  v_enrollment_status text;
  v_campaign_id bigint;
  v_max integer;
  v_open timestamptz;
  v_reason text;
begin
  select * into m from pgflow.messages where id = p_message_id for update;
  if not found then
    return pg_catalog.jsonb_build_object('action', 'skip', 'reason', 'no such message');
  end if;
  if m.direction <> 'outbound' or m.delivery_status not in ('queued', 'sending') then
    return pg_catalog.jsonb_build_object('action', 'skip',
      'reason', 'message is ' || m.delivery_status);
  end if;
  select * into v_contact from pgflow.contacts where id = m.contact_id;
  select * into v_conversation from pgflow.conversations where id = m.conversation_id;
  -- a campaign message answers to its own drip; other messages to the conversation's
  select e.status, e.campaign_id into v_enrollment_status, v_campaign_id
    from pgflow.enrollments e where e.id = coalesce(m.enrollment_id, v_conversation.enrollment_id);
  select * into v_campaign from pgflow.campaigns
   where id = coalesce(v_campaign_id, v_conversation.campaign_id);
  select * into v_agent from pgflow.agents
   where id = coalesce(v_campaign.agent_id, v_conversation.agent_id);
  v_max := coalesce(v_campaign.max_attempts, 6);

  if m.delivery_status = 'sending' then
    -- The last attempt never came back: its worker died mid-send.
    update pgflow.message_attempts
       set finished_at = v_now, outcome = 'interrupted',
           error = 'the worker stopped during the send'
     where message_id = m.id and finished_at is null;
    if m.attempts >= v_max then
      perform pgflow._set_reason('interrupted ' || m.attempts || ' times');
      update pgflow.messages
         set delivery_status = 'dead_letter', updated_at = v_now,
             delivery_error = pg_catalog.format(
               'the worker stopped during each of %s attempts (possible poison message)', m.attempts)
       where id = m.id;
      return pg_catalog.jsonb_build_object('action', 'dead_letter', 'reason', 'interrupted');
    end if;
  end if;

  v_reason := case
    when v_contact.opted_out_at is not null and m.kind <> 'system' then 'contact opted out'
    when m.kind = 'campaign' and v_enrollment_status in ('stopped', 'opted_out')
      then 'enrollment ' || v_enrollment_status
    when m.kind = 'campaign' and v_conversation.status = 'engaged' then 'lead replied'
    when v_conversation.status = 'ended' and m.kind <> 'system' then 'conversation ended'
  end;
  if v_reason is not null then
    perform pgflow._set_reason(v_reason);
    update pgflow.messages
       set delivery_status = 'suppressed', delivery_error = v_reason, updated_at = v_now
     where id = m.id;
    return pg_catalog.jsonb_build_object('action', 'suppressed', 'reason', v_reason);
  end if;

  if m.send_after > v_now then
    return pg_catalog.jsonb_build_object('action', 'defer', 'reason', 'backoff',
      'delay_seconds', extract(epoch from m.send_after - v_now));
  end if;
  if m.kind = 'campaign' then
    if v_campaign.status <> 'active' then
      update pgflow.messages set delivery_status = 'queued',
             send_after = v_now + interval '15 minutes', updated_at = v_now
       where id = m.id;
      return pg_catalog.jsonb_build_object('action', 'defer', 'reason',
        'campaign ' || v_campaign.status, 'delay_seconds', 900);
    end if;
    v_open := pgflow.next_window_open(coalesce(v_contact.timezone, v_campaign.timezone),
      v_campaign.window_start, v_campaign.window_end, v_campaign.window_days, v_now);
    if v_open > v_now then
      perform pgflow._set_reason('send window closed');
      update pgflow.messages set delivery_status = 'queued', send_after = v_open,
             updated_at = v_now
       where id = m.id;
      return pg_catalog.jsonb_build_object('action', 'defer', 'reason', 'send window closed',
        'delay_seconds', extract(epoch from v_open - v_now));
    end if;
  end if;

  perform pgflow._set_reason('attempt ' || (m.attempts + 1));
  update pgflow.messages
     set delivery_status = 'sending', attempts = attempts + 1, send_after = null,
         updated_at = v_now
   where id = m.id
  returning * into m;
  -- attempt numbers keep counting across requeues; messages.attempts counts this round
  insert into pgflow.message_attempts (message_id, attempt, worker_id, started_at)
  select m.id, coalesce(pg_catalog.max(a.attempt), 0) + 1, p_worker, v_now
    from pgflow.message_attempts a where a.message_id = m.id;
  return pg_catalog.jsonb_build_object(
    'action', 'send',
    'message_id', m.id,
    'attempt', m.attempts,
    'max_attempts', v_max,
    'kind', m.kind,
    'from_number', v_conversation.from_number,
    'to_number', v_contact.phone,
    'body', m.body,
    'retell_agent_id', v_agent.retell_agent_id,
    'previous_chat_id', v_conversation.provider_chat_id,
    'metadata', pg_catalog.jsonb_build_object(
      'pgflow_message_id', m.id::text,
      'pgflow_conversation_id', m.conversation_id::text,
      'pgflow_contact_id', m.contact_id::text),
    'variables', pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
      'agent_prompt', v_agent.prompt,
      'first_name', coalesce(v_contact.first_name, v_campaign.fallbacks ->> 'first_name', ''),
      'campaign_name', v_campaign.name)));
end;
$$;

-- Record the outcome of attempt p_attempt, in one call. p_result:
--   {"ok": true, "chat_id": "...", "agent_id": "...", "status_code": 200}
--   {"ok": false, "retryable": bool, "alert": bool, "status_code": int|null,
--    "error": "...", "retry_after": seconds|null}
-- Returns {"action": sent | retry | dead_letter | stale, "delay_seconds"?}.
-- Backoff: p_retry_base * 2^(attempt-1), capped at 1 h, jittered +-20 %, at least Retry-After.
create function pgflow.record_send(
  p_message_id bigint, p_attempt integer, p_result jsonb,
  p_retry_base_seconds double precision default 30, p_now timestamptz default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  m pgflow.messages;
  v_max integer;
  v_delay double precision;
  v_error text := pg_catalog.left(p_result ->> 'error', 2000);
  v_status integer := (p_result ->> 'status_code')::integer;
  v_kind text;
begin
  select * into m from pgflow.messages
   where id = p_message_id and delivery_status = 'sending' and attempts = p_attempt
     for update;
  if not found then
    -- Someone else re-claimed it after our heartbeat lapsed; their record wins.
    return pg_catalog.jsonb_build_object('action', 'stale');
  end if;
  select coalesce(c.max_attempts, 6) into v_max
    from pgflow.conversations cv
    left join pgflow.enrollments e on e.id = m.enrollment_id
    left join pgflow.campaigns c on c.id = coalesce(e.campaign_id, cv.campaign_id)
   where cv.id = m.conversation_id;

  if (p_result ->> 'ok')::boolean then
    perform pgflow._set_reason('sent on attempt ' || p_attempt);
    update pgflow.messages
       set delivery_status = 'sent', sent_at = v_now, updated_at = v_now,
           provider_message_id = p_result ->> 'chat_id'
     where id = m.id;
    update pgflow.message_attempts
       set finished_at = v_now, outcome = 'sent', status_code = v_status
     where message_id = m.id and finished_at is null;
    update pgflow.conversations
       set last_outbound_at = v_now, provider_chat_id = coalesce(p_result ->> 'chat_id', provider_chat_id),
           updated_at = v_now
     where id = m.conversation_id;
    return pg_catalog.jsonb_build_object('action', 'sent');
  end if;

  if coalesce((p_result ->> 'retryable')::boolean, false) and p_attempt < v_max then
    v_delay := least(3600, p_retry_base_seconds * 2 ^ (p_attempt - 1))
               * (0.8 + 0.4 * pg_catalog.random());
    v_delay := greatest(v_delay, coalesce((p_result ->> 'retry_after')::double precision, 0));
    perform pgflow._set_reason('attempt ' || p_attempt || ' failed: ' || coalesce(v_error, '?'));
    update pgflow.messages
       set delivery_status = 'queued', delivery_error = v_error, updated_at = v_now,
           send_after = v_now + v_delay * interval '1 second'
     where id = m.id;
    update pgflow.message_attempts
       set finished_at = v_now, outcome = 'retry', status_code = v_status, error = v_error
     where message_id = m.id and finished_at is null;
    return pg_catalog.jsonb_build_object('action', 'retry', 'delay_seconds', v_delay);
  end if;

  perform pgflow._set_reason(case when coalesce((p_result ->> 'retryable')::boolean, false)
                                  then 'gave up after ' || p_attempt || ' attempts'
                                  else 'permanent failure' end);
  update pgflow.messages
     set delivery_status = 'dead_letter', delivery_error = v_error, updated_at = v_now
   where id = m.id;
  update pgflow.message_attempts
     set finished_at = v_now, outcome = 'dead_letter', status_code = v_status, error = v_error
   where message_id = m.id and finished_at is null;
  if coalesce((p_result ->> 'alert')::boolean, false) then
    v_kind := case v_status when 401 then 'retell_unauthorized'
                            when 402 then 'retell_payment_required'
                            else 'retell_' || coalesce(v_status::text, 'error') end;
    perform pgflow.open_alert(v_kind, 'critical',
      pg_catalog.format('Retell refused a send with HTTP %s: %s', v_status, coalesce(v_error, '')),
      pg_catalog.jsonb_build_object('message_id', m.id, 'status_code', v_status), v_now);
  end if;
  return pg_catalog.jsonb_build_object('action', 'dead_letter');
end;
$$;

-- Dead letters with what an operator needs to decide. Phones are for the CLI to mask.
create view pgflow.dead_letters as
select m.id, m.created_at, m.updated_at as failed_at, m.attempts, m.delivery_error, m.kind,
       m.step_position, m.body, ct.phone, ct.opted_out_at is not null as contact_opted_out,
       c.slug as campaign
  from pgflow.messages m
  join pgflow.contacts ct on ct.id = m.contact_id
  join pgflow.conversations cv on cv.id = m.conversation_id
  left join pgflow.enrollments e on e.id = m.enrollment_id
  left join pgflow.campaigns c on c.id = coalesce(e.campaign_id, cv.campaign_id)
 where m.delivery_status = 'dead_letter';

-- Requeue dead letters (by id, or all, optionally of one campaign): attempts reset, a new
-- send_sms job. Refuses opted-out contacts. One result per id asked for.
create function pgflow.requeue_dead_letters(
  p_ids bigint[] default null, p_campaign text default null, p_now timestamptz default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_results jsonb := '[]'::jsonb;
  v_requeue bigint[] := '{}';
  r record;
begin
  if p_campaign is not null and not exists (select 1 from pgflow.campaigns where slug = p_campaign) then
    raise exception 'no campaign with slug %', p_campaign using errcode = 'PF002';
  end if;
  for r in
    select want.id, m.id as found_id, m.delivery_status, ct.opted_out_at, c.slug
      from (select pg_catalog.unnest(p_ids) as id
             where p_ids is not null
            union
            select d.id from pgflow.dead_letters d
             where p_ids is null and (p_campaign is null or d.campaign = p_campaign)) want
      left join pgflow.messages m on m.id = want.id
      left join pgflow.contacts ct on ct.id = m.contact_id
      left join pgflow.conversations cv on cv.id = m.conversation_id
      left join pgflow.enrollments e on e.id = m.enrollment_id
      left join pgflow.campaigns c on c.id = coalesce(e.campaign_id, cv.campaign_id)
     order by want.id
  loop
    if r.found_id is null then
      v_results := v_results || pg_catalog.jsonb_build_object('id', r.id, 'result', 'not_found');
    elsif r.delivery_status <> 'dead_letter' then
      v_results := v_results || pg_catalog.jsonb_build_object('id', r.id,
        'result', 'not_dead_letter', 'detail', 'message is ' || r.delivery_status);
    elsif p_campaign is not null and r.slug is distinct from p_campaign then
      v_results := v_results || pg_catalog.jsonb_build_object('id', r.id,
        'result', 'other_campaign', 'detail', 'message belongs to ' || coalesce(r.slug, '(none)'));
    elsif r.opted_out_at is not null then
      v_results := v_results || pg_catalog.jsonb_build_object('id', r.id,
        'result', 'refused', 'detail', 'the contact has opted out');
    else
      v_requeue := v_requeue || r.id;
      v_results := v_results || pg_catalog.jsonb_build_object('id', r.id, 'result', 'requeued');
    end if;
  end loop;
  perform pgflow._set_reason('requeued by an operator');
  update pgflow.messages
     set delivery_status = 'queued', attempts = 0, send_after = null, updated_at = v_now
   where id = any (v_requeue);
  perform pgflow._enqueue('send_sms', v_requeue, 5);
  return v_results;
end;
$$;

-- Discard dead letters: they end as 'failed' (an operator looked and gave up).
create function pgflow.discard_dead_letters(p_ids bigint[], p_now timestamptz default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_results jsonb;
begin
  perform pgflow._set_reason('discarded by an operator');
  with want as (select pg_catalog.unnest(p_ids) as id),
  done as (
    update pgflow.messages m set delivery_status = 'failed', updated_at = v_now
      from want where m.id = want.id and m.delivery_status = 'dead_letter'
    returning m.id)
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('id', want.id, 'result',
           case when done.id is not null then 'discarded'
                when m.id is null then 'not_found'
                else 'not_dead_letter' end) order by want.id), '[]')
    into v_results
    from want left join done on done.id = want.id
    left join pgflow.messages m on m.id = want.id;
  return v_results;
end;
$$;

-- An alert as JSON, for its notification.
create function pgflow.alert(p_id bigint) returns jsonb
language sql stable
set search_path = ''
as $$ select pg_catalog.to_jsonb(a) from pgflow.alerts a where a.id = p_id $$;

