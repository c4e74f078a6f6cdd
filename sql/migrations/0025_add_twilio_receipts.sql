-- Twilio's delivery receipts: record_twilio_status (once per MessageSid and status, only forward), the carrier's error classes and what each sets off; record_send keeps a provider's message id and applies a receipt that came first; a carrier's opt-out gets no second confirmation; the hold (_hold) written once for take_over and _escalate.
-- depends: 0024_add_provider_status

-- The provider's last status, applied to our delivery_status once the send is recorded
-- (a receipt can come before the answer to our own POST): delivered sets delivered_at;
-- undelivered and failed make the text `failed` with the carrier's error and set off
-- pgflow._on_carrier_error. Anything else changes nothing.
create or replace function pgflow._apply_provider_status(p_message_id bigint, p_now timestamptz)
returns text
language plpgsql
set search_path = ''
as $$
declare
  m pgflow.messages;
begin
  select * into m from pgflow.messages where id = p_message_id for update;
  if m.delivery_status <> 'sent' then
    return null;
  end if;
  if m.provider_status = 'delivered' then
    perform pgflow._set_reason('the carrier delivered it');
    update pgflow.messages set delivery_status = 'delivered', delivered_at = p_now,
           updated_at = p_now
     where id = m.id;
    return 'delivered';
  elsif m.provider_status in ('undelivered', 'failed') then
    perform pgflow._set_reason(pg_catalog.format('%s: error %s', m.provider_status,
                                                 coalesce(m.carrier_error_code::text, '-')));
    update pgflow.messages
       set delivery_status = 'failed', updated_at = p_now,
           delivery_error = pg_catalog.format('%s: error %s (%s)', m.provider_status,
             coalesce(m.carrier_error_code::text, '-'),
             pgflow.carrier_error_class(m.carrier_error_code))
     where id = m.id
    returning * into m;
    return pgflow._on_carrier_error(m, m.carrier_error_code, p_now);
  end if;
  return null;
end;
$$;
revoke execute on function pgflow._apply_provider_status(bigint,timestamp with time zone) from public;

-- Hand a conversation to a person: it ends `escalated`, its chat ends (the provider's agent
-- stops), the lead waits for a person (contacts.held_at: no AI text reaches it until a
-- person hands it back), an alert opens for it, and the lead may be told a person will
-- follow up.
create or replace function pgflow._escalate(
  p_conversation_id bigint, p_reason text, p_source text, p_ack boolean, p_now timestamptz
) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_campaign text;
  v_contact pgflow.contacts;
begin
  perform pgflow.set_outcome(p_conversation_id, 'escalated', p_reason, p_source, p_now);
  perform pgflow._end_chats(array[p_conversation_id]);
  -- the lead waits for a person: no AI text and no drip step until a person hands it back
  -- (a CRM takeover may come before any reply)
  select ct.* into v_contact from pgflow.contacts ct
    join pgflow.conversations cv on cv.contact_id = ct.id
   where cv.id = p_conversation_id for update of ct;
  perform pgflow._hold(v_contact, null, 'waiting for a person', 'waiting for a person', p_now);
  select c.slug into v_campaign from pgflow.conversations cv
    left join pgflow.campaigns c on c.id = cv.campaign_id where cv.id = p_conversation_id;
  perform pgflow.open_alert('escalation:' || p_conversation_id, 'warning',
    pg_catalog.format('conversation %s (%s) needs a person: %s', p_conversation_id,
                      coalesce(v_campaign, 'inbound'), p_reason),
    pg_catalog.jsonb_build_object('conversation_id', p_conversation_id, 'source', p_source,
                                  'reason', p_reason), p_now);
  if p_ack then
    perform pgflow._system_message(p_conversation_id,
      'Thanks - a member of our team will text you shortly.',
      'handoff_ack:' || p_conversation_id, p_now);
  end if;
end;
$$;

-- The hold itself (sql/STATE_MACHINES.md): held_at set (and held_by, when a person is
-- named), the move written to events when it changes anything, every active drip of the
-- lead paused and its live chats ended, so neither a drip step nor the provider's own AI
-- reaches the lead. Used by take_over (a person) and _escalate (waiting for a person).
create or replace function pgflow._hold(
  p_contact pgflow.contacts, p_held_by text, p_reason text, p_pause_reason text,
  p_now timestamptz
) returns void
language plpgsql
set search_path = ''
as $$
declare
  r record;
begin
  if p_contact.held_at is null
     or (p_held_by is not null and p_contact.held_by is distinct from p_held_by) then
    update pgflow.contacts
       set held_at = coalesce(held_at, p_now), held_by = coalesce(p_held_by, held_by),
           updated_at = p_now
     where id = p_contact.id;
    insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
    values (p_now, 'contact', p_contact.id,
            case when p_contact.held_at is null then 'with_agent' else 'held' end, 'held',
            p_reason);
  end if;
  for r in select id from pgflow.enrollments
            where contact_id = p_contact.id and status = 'active' order by id
  loop
    perform pgflow.pause_enrollment(r.id, p_pause_reason, p_now);
  end loop;
  perform pgflow._end_chats(array(select id from pgflow.conversations
                                   where contact_id = p_contact.id and status <> 'ended'));
end;
$$;
revoke execute on function pgflow._hold(pgflow.contacts,text,text,text,timestamp with time zone) from public;

-- What a carrier's refusal of one of our texts sets off, by the error's class:
--   bad_number  the contact's drips stop and its live conversations end `discarded`
--   opted_out   the contact is suppressed (source `carrier`: Twilio already confirmed)
--   filtered, sender  the campaign pauses and a critical alert opens
--   transient   the text is queued again after a pause, within the campaign's attempts
create or replace function pgflow._on_carrier_error(
  p_message pgflow.messages, p_code integer, p_now timestamptz
) returns text
language plpgsql
set search_path = ''
as $$
declare
  v_class text := pgflow.carrier_error_class(p_code);
  v_reason text := pg_catalog.format('the carrier refused a text: error %s (%s)',
                                     coalesce(p_code::text, '-'), v_class);
  v_campaign pgflow.campaigns;
  v_max integer;
  r record;
begin
  select c.* into v_campaign
    from pgflow.conversations cv
    left join pgflow.enrollments e on e.id = p_message.enrollment_id
    join pgflow.campaigns c on c.id = coalesce(e.campaign_id, cv.campaign_id)
   where cv.id = p_message.conversation_id;
  if v_class = 'bad_number' then
    for r in select id from pgflow.enrollments
              where contact_id = p_message.contact_id and status in ('active', 'paused')
              order by id
    loop
      perform pgflow.stop_enrollment(r.id, v_reason, p_now);
    end loop;
    for r in select id from pgflow.conversations
              where contact_id = p_message.contact_id and status <> 'ended' order by id
    loop
      perform pgflow.set_outcome(r.id, 'discarded', v_reason, 'rule', p_now);
    end loop;
  elsif v_class = 'opted_out' then
    perform pgflow.opt_out_contact(p_message.contact_id, 'carrier', null, v_reason, p_now);
  elsif v_class in ('filtered', 'sender') and v_campaign.id is not null then
    update pgflow.campaigns set status = 'paused', updated_at = p_now
     where id = v_campaign.id and status = 'active';
    if found then
      insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
      values (p_now, 'campaign', v_campaign.id, 'active', 'paused', v_reason);
    end if;
    perform pgflow.open_alert('carrier_' || v_class || ':' || v_campaign.slug, 'critical',
      pg_catalog.format('campaign %s paused: %s', v_campaign.slug, v_reason),
      pg_catalog.jsonb_build_object('campaign', v_campaign.slug, 'message_id', p_message.id,
                                    'error_code', p_code), p_now);
  elsif v_class = 'transient' then
    v_max := coalesce(v_campaign.max_attempts, 6);
    if p_message.attempts < v_max then
      perform pgflow._set_reason(v_reason || ': trying again');
      update pgflow.messages
         set delivery_status = 'queued', provider_message_id = null, provider_status = null,
             send_after = p_now + p_message.attempts * interval '10 minutes',
             deferred_reason = v_reason || ': trying again', updated_at = p_now
       where id = p_message.id;
      perform pgflow._enqueue_after('send_sms', array[p_message.id], 10,
                                    p_now + p_message.attempts * interval '10 minutes');
      return 'retry';
    end if;
  end if;
  return v_class;
end;
$$;
revoke execute on function pgflow._on_carrier_error(pgflow.messages,integer,timestamp with time zone) from public;

-- Twilio's statuses in order: a receipt never moves a message back (NULL: not a status we
-- track, e.g. `read` or `receiving`).
create or replace function pgflow._provider_rank(p_status text) returns integer
language sql immutable parallel safe
set search_path = ''
as $$
  select case p_status
    when 'accepted' then 0 when 'scheduled' then 0 when 'queued' then 1 when 'sending' then 2
    when 'sent' then 3 when 'delivered' then 4 when 'undelivered' then 4 when 'failed' then 4
    when 'canceled' then 4 end
$$;
revoke execute on function pgflow._provider_rank(text) from public;

-- What a Twilio error code means for us: bad_number, opted_out, filtered, sender,
-- transient, rate_limited, or unknown (Twilio's codes may change: the raw code is kept).
create or replace function pgflow.carrier_error_class(p_code integer) returns text
language sql immutable parallel safe
set search_path = ''
as $$
  select case
    when p_code in (21211, 21614, 21635, 30005, 30006) then 'bad_number'
    when p_code = 21610 then 'opted_out'
    when p_code = 30007 then 'filtered'
    when p_code = 30034 then 'sender'
    when p_code = 30003 then 'transient'
    when p_code = 20429 then 'rate_limited'
    else 'unknown' end
$$;
revoke execute on function pgflow.carrier_error_class(integer) from public;

-- A contact opts out: suppressed across every campaign, every drip opted_out, every live
-- conversation ended `discarded`, queued messages suppressed, ongoing chats ended, and ONE
-- confirmation (the campaign's opt_out_text) on the conversation the opt-out came through.
-- A contact already opted out changes nothing and gets no second confirmation.
create or replace function pgflow.opt_out_contact(
  p_contact_id bigint,
  p_source text,
  p_message_id bigint default null,
  p_text text default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_contact pgflow.contacts;
  v_opt_out bigint;
  v_via bigint;
  v_live bigint[];
  v_text text;
  r record;
begin
  update pgflow.contacts
     set opted_out_at = v_now, opt_out_source = p_source, updated_at = v_now
   where id = p_contact_id and opted_out_at is null
  returning * into v_contact;
  if not found then
    if not exists (select 1 from pgflow.contacts where id = p_contact_id) then
      raise exception 'contact % does not exist', p_contact_id using errcode = 'PF002';
    end if;
    return pg_catalog.jsonb_build_object('result', 'already_opted_out');
  end if;
  insert into pgflow.opt_outs (contact_id, action, source, message_id, text, occurred_at)
  values (p_contact_id, 'opt_out', p_source, p_message_id, pg_catalog.left(p_text, 500), v_now)
  returning id into v_opt_out;
  insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
  values (v_now, 'contact', p_contact_id, 'subscribed', 'opted_out', 'opt-out by ' || p_source);

  for r in select id from pgflow.enrollments
            where contact_id = p_contact_id and status in ('active', 'paused') order by id
  loop
    perform pgflow.opt_out_enrollment(r.id, 'contact opted out (' || p_source || ')', v_now);
  end loop;

  select m.conversation_id into v_via from pgflow.messages m where m.id = p_message_id;
  select pg_catalog.array_agg(id order by id) into v_live
    from pgflow.conversations where contact_id = p_contact_id and status <> 'ended';
  v_via := coalesce(v_via, v_live[pg_catalog.cardinality(v_live)],
                    (select pg_catalog.max(id) from pgflow.conversations
                      where contact_id = p_contact_id));
  for r in select unnest as id from pg_catalog.unnest(coalesce(v_live, '{}')) loop
    perform pgflow.end_conversation(r.id, 'discarded', 'opted out (' || p_source || ')',
                                    'rule', v_now);
  end loop;

  perform pgflow._set_reason('contact opted out');
  update pgflow.messages
     set delivery_status = 'suppressed', delivery_error = 'contact opted out', updated_at = v_now
   where contact_id = p_contact_id and direction = 'outbound' and kind <> 'system'
     and delivery_status in ('pending', 'queued');
  perform pgflow._end_chats(array(select id from pgflow.conversations
                                   where contact_id = p_contact_id));
  -- a carrier's opt-out (Twilio's 21610) was confirmed by the carrier: none from us
  if v_via is not null and p_source <> 'carrier' then
    select coalesce(c.opt_out_text,
                    'You are unsubscribed and will receive no more messages. Reply START to resubscribe.')
      into v_text
      from pgflow.conversations cv left join pgflow.campaigns c on c.id = cv.campaign_id
     where cv.id = v_via;
    perform pgflow._system_message(v_via, v_text, 'opt_out_confirmation:' || v_opt_out, v_now);
  end if;
  return pg_catalog.jsonb_build_object('result', 'opted_out', 'opt_out_id', v_opt_out,
                                       'conversation_id', v_via);
end;
$$;

-- Record the outcome of attempt p_attempt, in one call. p_result:
--   {"ok": true, "chat_id": "...", "agent_id": "...", "status_code": 200}
--   {"ok": false, "retryable": bool, "alert": bool, "status_code": int|null,
--    "error": "...", "retry_after": seconds|null}
-- Returns {"action": sent | retry | dead_letter | stale, "delay_seconds"?}.
-- Backoff: p_retry_base * 2^(attempt-1), capped at 1 h, jittered +-20 %, at least Retry-After.
-- A send that started a new chat makes it the conversation's current chat, ongoing; the
-- message keeps its chat id.
create or replace function pgflow.record_send(
  p_message_id bigint, p_attempt integer, p_result jsonb,
  p_retry_base_seconds double precision default 30, p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
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
  v_chat text := p_result ->> 'chat_id';
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
           provider_message_id = coalesce(v_chat, p_result ->> 'provider_message_id',
                                          provider_message_id),
           chat_id = coalesce(v_chat, chat_id)
     where id = m.id;
    update pgflow.message_attempts
       set finished_at = v_now, outcome = 'sent', status_code = v_status
     where message_id = m.id and finished_at is null;
    update pgflow.conversations
       set last_outbound_at = v_now,
           chat_status = case when v_chat is not null
                               and v_chat is distinct from provider_chat_id then 'ongoing'
                              else chat_status end,
           provider_chat_id = coalesce(v_chat, provider_chat_id),
           updated_at = v_now
     where id = m.conversation_id;
    -- a receipt that came before this answer (Twilio) is applied now
    if m.provider_status is not null then
      perform pgflow._apply_provider_status(m.id, v_now);
    end if;
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

-- One Twilio status callback (POST /webhooks/twilio/status?message_id=N, its signature
-- checked by the web layer): stored once per (MessageSid, status) in webhook_deliveries;
-- applied only when it moves the message forward (queued < sending < sent < delivered |
-- undelivered | failed): a late or repeated callback changes nothing. {result: applied |
-- stale | duplicate | unknown_message | ignored | invalid, ...}.
create or replace function pgflow.record_twilio_status(
  p_message_id bigint, p_payload jsonb, p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_sid text := p_payload ->> 'MessageSid';
  v_status text := pg_catalog.lower(p_payload ->> 'MessageStatus');
  v_code integer;
  v_delivery bigint;
  m pgflow.messages;
  v_result jsonb;
begin
  if v_sid is null or v_sid !~ '^(SM|MM)[0-9a-f]{32}$' or v_status is null then
    return '{"result": "invalid", "detail": "MessageSid and MessageStatus are needed"}';
  end if;
  if (p_payload ->> 'ErrorCode') ~ '^[0-9]{1,9}$' then
    v_code := (p_payload ->> 'ErrorCode')::integer;
  end if;
  insert into pgflow.webhook_deliveries (provider, delivery_key, event_type, payload, received_at)
  values ('twilio', v_sid || ':' || v_status, 'status', p_payload, v_now)
  on conflict (provider, delivery_key) do nothing
  returning id into v_delivery;
  if v_delivery is null then
    return '{"result": "duplicate"}';
  end if;
  select * into m from pgflow.messages
   where id = p_message_id and direction = 'outbound' for update;
  -- ours: the id Twilio gave our send, or (its answer not recorded yet) a text being sent
  if not found or (m.provider_message_id is not null and m.provider_message_id <> v_sid)
     or (m.provider_message_id is null and m.delivery_status not in ('sending', 'sent')) then
    v_result := '{"result": "unknown_message"}';
  elsif pgflow._provider_rank(v_status) is null then
    v_result := '{"result": "ignored"}';
  elsif pgflow._provider_rank(v_status) <= coalesce(pgflow._provider_rank(m.provider_status), -1)
  then
    v_result := pg_catalog.jsonb_build_object('result', 'stale', 'status', m.provider_status);
  else
    update pgflow.messages
       set provider_message_id = v_sid, provider_status = v_status,
           carrier_error_code = coalesce(v_code, carrier_error_code), updated_at = v_now
     where id = m.id;
    v_result := pg_catalog.jsonb_build_object('result', 'applied', 'status', v_status,
      'effect', pgflow._apply_provider_status(m.id, v_now));
  end if;
  update pgflow.webhook_deliveries
     set processed_at = v_now, result = v_result ->> 'result', response = v_result
   where id = v_delivery;
  return v_result || pg_catalog.jsonb_build_object('message_id', p_message_id);
end;
$$;
revoke execute on function pgflow.record_twilio_status(bigint,jsonb,timestamp with time zone) from public;
grant execute on function pgflow.record_twilio_status(bigint,jsonb,timestamp with time zone) to pgflow_web;

-- A person takes over the lead of this conversation: from now on no AI text reaches the
-- lead on any conversation (agent_turn and the send-time claim refuse, Retell's chats are
-- ended and its chat_inbound rejected), no drip step goes (active drips are paused), and
-- the conversation stays open for the person's texts. Taking over from a colleague is
-- allowed and recorded. Returns {result: held | unchanged, contact_id, held_by, previous}.
create or replace function pgflow.take_over(
  p_conversation_id bigint,
  p_actor text,
  p_user_id bigint default null,
  p_reason text default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_actor text := pgflow._actor(p_actor);
  v_conversation pgflow.conversations;
  v_contact pgflow.contacts;
begin
  select * into v_conversation from pgflow.conversations where id = p_conversation_id;
  if not found then
    raise exception 'conversation % does not exist', p_conversation_id using errcode = 'PF002';
  end if;
  select * into v_contact from pgflow.contacts where id = v_conversation.contact_id for update;
  if v_contact.held_by is not distinct from v_actor then
    return pg_catalog.jsonb_build_object('result', 'unchanged', 'contact_id', v_contact.id,
                                         'held_by', v_actor);
  end if;
  perform pgflow._hold(v_contact, v_actor,
    'taken over by ' || v_actor || coalesce(': ' || nullif(pg_catalog.btrim(p_reason), ''), ''),
    'a person took over', v_now);
  perform pgflow._audit(v_actor, p_user_id, 'takeover', p_conversation_id, v_contact.id,
    pg_catalog.jsonb_build_object('reason', nullif(pg_catalog.btrim(p_reason), ''),
                                  'from', v_contact.held_by), v_now);
  return pg_catalog.jsonb_build_object('result', 'held', 'contact_id', v_contact.id,
    'conversation_id', p_conversation_id, 'held_by', v_actor, 'previous', v_contact.held_by);
end;
$$;
