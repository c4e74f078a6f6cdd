-- Sending: the send-time re-check and claim, the record of each attempt, chats, dead letters.
-- The current definition of each function and view of this area (sql/README.md: how to
-- change one). Grants: roles.sql.

-- A marketing text held back until p_until by p_rule (pgflow._marketing_slot): queued with
-- send_after, its reason in words and its rule kept; the claim's `defer` answer.
create or replace function pgflow._defer_marketing(
  p_message_id bigint, p_until timestamptz, p_rule text, p_now timestamptz,
  p_note text default ''
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_reason text := coalesce(pgflow.rule_text(p_rule), 'send window closed');
begin
  perform pgflow._set_reason(v_reason);
  update pgflow.messages set delivery_status = 'queued', send_after = p_until,
         updated_at = p_now, deferred_reason = v_reason || p_note, deferred_rule = p_rule
   where id = p_message_id;
  return pg_catalog.jsonb_build_object('action', 'defer', 'reason', v_reason, 'rule', p_rule,
    'delay_seconds', extract(epoch from p_until - p_now));
end;
$$;

-- The send-time re-check and claim. For the message of a send_sms job:
--   skip        the message is no longer waiting
--   suppressed  the contact opted out, or the drip / conversation no longer allows it
--   defer       not now (the campaign's window or a state rule's hours or cap: `rule`;
--               backoff pending, campaign paused, the sending number at its per-second or
--               daily limit): retry after delay_seconds
--   check_chat  a drip step while the conversation's last chat may be ongoing: read it
--               (GET /get-chat), record it (pgflow.record_chat), then claim again with
--               p_checked_chat = that chat id; a reply found there suppresses the step
--   reconcile   its last attempt was cut off (a worker died): look for the chat it may
--               have started, then record_send it as sent, or release_interrupted it
--   send        claimed: attempt n is ours; everything the transport needs is returned
create or replace function pgflow._claim_one(
  p_message_id bigint, p_worker uuid, p_checked_chat text, p_now timestamptz
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
  v_max integer;
  v_open timestamptz;
  v_reason text;
  v_number pgflow.sending_numbers;
  v_day date := (v_now at time zone 'UTC')::date;
  v_used integer;
  v_slot timestamptz;
  v_rule text;
  v_transport text;
  r record;
begin
  -- the message (locked), its contact, conversation, enrollment, campaign, agent and line
  -- in one statement
  select mm as msg, ct as contact, cv as conversation, e.status as enrollment_status,
         c as campaign, a as agent, n as line
    into r
    from pgflow.messages mm
    left join pgflow.contacts ct on ct.id = mm.contact_id
    left join pgflow.conversations cv on cv.id = mm.conversation_id
    left join pgflow.enrollments e on e.id = coalesce(mm.enrollment_id, cv.enrollment_id)
    left join pgflow.campaigns c on c.id = coalesce(e.campaign_id, cv.campaign_id)
    left join pgflow.agents a on a.id = coalesce(cv.agent_id, c.agent_id)
    left join pgflow.sending_numbers n on n.number = cv.from_number
   where mm.id = p_message_id
     for update of mm;
  if not found then
    return pg_catalog.jsonb_build_object('action', 'skip', 'reason', 'no such message');
  end if;
  m := r.msg;
  if m.direction <> 'outbound' or m.delivery_status not in ('queued', 'sending') then
    return pg_catalog.jsonb_build_object('action', 'skip',
      'reason', 'message is ' || m.delivery_status);
  end if;
  v_contact := r.contact;
  v_conversation := r.conversation;
  v_enrollment_status := r.enrollment_status;
  v_campaign := r.campaign;
  v_agent := r.agent;
  v_number := r.line;
  v_max := coalesce(v_campaign.max_attempts, 6);

  if m.delivery_status = 'sending' then
    -- The last attempt never came back: its worker died mid-send, perhaps after Retell
    -- took it. The worker looks for the chat first (its metadata carries our id), then
    -- records it sent, or releases it (pgflow.release_interrupted) and claims again.
    return pg_catalog.jsonb_build_object(
      'action', 'reconcile', 'message_id', m.id, 'attempt', m.attempts, 'kind', m.kind,
      'to_number', v_contact.phone,
      'since', coalesce((select pg_catalog.max(a.started_at) from pgflow.message_attempts a
                          where a.message_id = m.id and a.finished_at is null), m.updated_at),
      'transport', pgflow._line_transport(v_conversation.from_number),
      'from_number', v_conversation.from_number, 'body', m.body,
      'end_chat_after', m.kind = 'system' and v_contact.opted_out_at is not null);
  end if;

  v_reason := case
    when v_contact.opted_out_at is not null and m.kind <> 'system' then 'contact opted out'
    when m.kind = 'campaign' and v_enrollment_status in ('stopped', 'opted_out')
      then 'enrollment ' || v_enrollment_status
    when m.kind = 'campaign' and v_conversation.status = 'engaged' then 'lead replied'
    -- while a person holds the lead no AI text reaches it, but the agent's closing reply
    -- (its handover: the lead is told a person will answer) unless a person took over
    when m.kind = 'agent' and v_contact.held_by is not null then 'a person holds this lead'
    when m.kind = 'agent' and v_contact.held_at is not null
         and m.id is distinct from v_conversation.closing_message_id
      then 'a person holds this lead'
    -- an ended conversation takes system messages, a person's texts, and the agent's
    -- closing reply (its booking or handover) unless a person took over
    when v_conversation.status = 'ended' and m.kind not in ('system', 'human')
         and not (m.id = v_conversation.closing_message_id
                  and v_conversation.outcome_source is distinct from 'human')
      then 'conversation ended'
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
    if v_campaign.status <> 'active' or v_enrollment_status = 'paused' then
      -- held, not dropped: a paused campaign or drip sends it when resumed
      update pgflow.messages set delivery_status = 'queued',
             send_after = v_now + interval '15 minutes', updated_at = v_now,
             deferred_reason = case when v_campaign.status <> 'active'
                                    then 'campaign ' || v_campaign.status else 'drip paused' end
       where id = m.id;
      return pg_catalog.jsonb_build_object('action', 'defer', 'reason',
        case when v_campaign.status <> 'active' then 'campaign ' || v_campaign.status
             else 'drip paused' end, 'delay_seconds', 900);
    end if;
    -- the campaign's window, the state rules' hours and their cap per 24 h (the contact's
    -- row locked: two claims cannot both pass the cap)
    perform from pgflow.contacts where id = v_contact.id for no key update;
    select s.at, s.rule into v_open, v_rule
      from pgflow._marketing_slot(v_contact, v_campaign, v_now) s;
    if v_open > v_now then
      return pgflow._defer_marketing(m.id, v_open, v_rule, v_now);
    end if;
    -- A missed or late webhook must never let a drip talk over a live conversation.
    if v_conversation.provider_chat_id is not null
       and coalesce(v_conversation.chat_status, 'ongoing') = 'ongoing'
       and p_checked_chat is distinct from v_conversation.provider_chat_id then
      return pg_catalog.jsonb_build_object('action', 'check_chat',
        'chat_id', v_conversation.provider_chat_id);
    end if;
  end if;

  -- A person's text to a lead who never wrote is a first contact: the window and the state
  -- rules apply as to a drip step.
  if m.kind = 'human' and v_conversation.last_inbound_at is null
     and not exists (select 1 from pgflow.messages x
                      where x.contact_id = m.contact_id and x.direction = 'inbound') then
    select s.at, s.rule into v_open, v_rule
      from pgflow._marketing_slot(v_contact, v_campaign, v_now) s;
    if v_open > v_now then
      return pgflow._defer_marketing(m.id, v_open, v_rule, v_now, ' (the lead has not written yet)');
    end if;
  end if;

  -- The sending number's carrier limits. System messages (opt-out confirmations, help)
  -- are counted but never held back.
  if m.kind <> 'system' and v_number.daily_segments is not null then
    -- claims of a number with a daily limit take turns, so the limit is exact
    perform from pgflow.sending_numbers where id = v_number.id for update;
    select pg_catalog.sum(u.segments) into v_used from pgflow.number_usage u
     where u.number = v_number.number and u.day = v_day;
    if coalesce(v_used, 0) + m.segments > v_number.daily_segments then
      v_open := ((v_day + 1)::timestamp at time zone 'UTC')
                + pg_catalog.random() * interval '10 minutes';
      perform pgflow._set_reason('number daily limit');
      update pgflow.messages set delivery_status = 'queued', send_after = v_open,
             number_slot_at = null, updated_at = v_now,
             deferred_reason = 'the number''s daily limit is used up'
       where id = m.id;
      return pg_catalog.jsonb_build_object('action', 'defer', 'reason', 'number daily limit',
        'delay_seconds', extract(epoch from v_open - v_now));
    end if;
  end if;
  if m.kind <> 'system' and v_number.per_second is not null
     and (m.number_slot_at is null or m.number_slot_at < v_now - interval '1 minute') then
    -- Take the next free slot; one in the future is reserved for this message, which comes
    -- back at that instant and sends without taking another (unless it is a minute late).
    update pgflow.sending_numbers
       set next_slot_at = greatest(coalesce(next_slot_at, v_now), v_now)
                          + interval '1 second' / per_second
     where id = v_number.id
    returning next_slot_at - interval '1 second' / per_second into v_slot;
    if v_slot > v_now then
      update pgflow.messages set delivery_status = 'queued', send_after = v_slot,
             number_slot_at = v_slot, updated_at = v_now,
             deferred_reason = 'the number''s rate limit'
       where id = m.id;
      return pg_catalog.jsonb_build_object('action', 'defer', 'reason', 'number rate limit',
        'delay_seconds', extract(epoch from v_slot - v_now));
    end if;
  end if;

  perform pg_catalog.set_config('pgflow.reason', 'attempt ' || (m.attempts + 1), true);
  update pgflow.messages
     set delivery_status = 'sending', attempts = attempts + 1, send_after = null,
         number_slot_at = null, deferred_reason = null, deferred_rule = null,
         updated_at = v_now,
         -- an agent reply posted into a chat carries our id, so its echo is recognised
         chat_message_id = case when m.kind in ('agent', 'human') then 'pgflow-' || m.id
                                else chat_message_id end
   where id = m.id
  returning * into m;
  insert into pgflow.message_attempts (message_id, attempt, worker_id, started_at)
  select m.id, coalesce(pg_catalog.max(a.attempt), 0) + 1, p_worker, v_now
    from pgflow.message_attempts a where a.message_id = m.id;
  v_transport := pgflow._line_transport(v_conversation.from_number);
  return pg_catalog.jsonb_build_object(
    'action', 'send',
    'segments', m.segments,
    'usage_day', v_day,
    -- counted at once by claim_messages: the batch's next claim on the number sees it
    'usage_limited', v_number.daily_segments is not null,
    'message_id', m.id,
    'attempt', m.attempts,
    'max_attempts', v_max,
    'kind', m.kind,
    'transport', v_transport,
    -- how long Twilio may hold the text before it is dropped (its ValidityPeriod): a drip
    -- text never arrives after its send window closes
    'validity_seconds', case when v_transport = 'twilio'
                             then pgflow._validity_seconds(m.kind, v_contact, v_campaign, v_now) end,
    'from_number', v_conversation.from_number,
    'to_number', v_contact.phone,
    'body', m.body,
    'retell_agent_id', v_agent.retell_agent_id,
    'chat_id', v_conversation.provider_chat_id,
    'chat_status', v_conversation.chat_status,
    'chat_message_id', m.chat_message_id,
    'previous_chat_id', v_conversation.provider_chat_id,
    -- an opt-out confirmation ends its chat at once: nothing may follow it; so does a
    -- person's text where it starts a chat (the worker knows: Retell's own LLM would answer)
    'end_chat_after', m.kind = 'system' and v_contact.opted_out_at is not null,
    'held', v_contact.held_at is not null,
    'metadata', pg_catalog.jsonb_build_object(
      'pgflow_message_id', m.id::text,
      'pgflow_conversation_id', m.conversation_id::text,
      'pgflow_contact_id', m.contact_id::text),
    'variables', case when m.kind = 'human' or v_contact.held_at is not null then
                   pgflow._agent_variables(v_contact, v_campaign, v_agent, m.body)
                   || '{"agent_prompt": "A person from our team is handling this conversation and wrote the first message of this chat. Do not write anything more; end the chat."}'
                 else pgflow._agent_variables(v_contact, v_campaign, v_agent, m.body) end
                 - 'sms_body');
end;
$$;

-- The claim of one message (see pgflow._claim_one), counted against its number.
create or replace function pgflow.claim_message(
  p_message_id bigint,
  p_worker uuid default null,
  p_checked_chat text default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_claim jsonb := pgflow._claim_one(p_message_id, p_worker, p_checked_chat,
                                     coalesce(p_now, pg_catalog.now()));
begin
  perform pgflow._count_usage(array[v_claim]);
  return v_claim - 'usage_day' - 'usage_limited';
end;
$$;

-- The claims of several messages in one transaction (a worker gathers the jobs that start
-- together): each as pgflow.claim_message would answer it, in the order of p_ids. Rows are
-- locked in a fixed order (the numbers with limits, then the messages by id) so that two
-- batches never deadlock. A send on a number with a daily limit is counted at once (the
-- next claim in the batch must see it: the limit is exact); the others at the end, at once.
create or replace function pgflow.claim_messages(
  p_ids bigint[], p_worker uuid default null, p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_claims jsonb := '{}';
  v_claim jsonb;
  v_id bigint;
  v_rest jsonb[] := '{}';
begin
  perform from pgflow.sending_numbers n
   where (n.per_second is not null or n.daily_segments is not null)
     and n.number in (select cv.from_number from pgflow.messages m
                        join pgflow.conversations cv on cv.id = m.conversation_id
                       where m.id = any (p_ids))
   order by n.id
     for update of n;
  for v_id in select distinct i from pg_catalog.unnest(p_ids) i order by i loop
    v_claim := pgflow._claim_one(v_id, p_worker, null, v_now);
    if (v_claim ->> 'usage_limited')::boolean then
      perform pgflow._count_usage(array[v_claim]);
    elsif v_claim ->> 'action' = 'send' then
      v_rest := v_rest || v_claim;
    end if;
    v_claims := v_claims || pg_catalog.jsonb_build_object(v_id::text, v_claim);
  end loop;
  perform pgflow._count_usage(v_rest);
  return (select pg_catalog.jsonb_agg((v_claims -> i::text) - 'usage_day' - 'usage_limited'
                                      order by ord)
            from pg_catalog.unnest(p_ids) with ordinality as t(i, ord));
end;
$$;

-- A send cut off mid-way that Retell has no chat for: its attempt is recorded as
-- interrupted and the message waits again (queued), or, after max_attempts of them, it is
-- a dead letter (a poison message). {action: released | dead_letter | stale}.
create or replace function pgflow.release_interrupted(
  p_message_id bigint, p_attempt integer, p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  m pgflow.messages;
  v_max integer;
begin
  select * into m from pgflow.messages
   where id = p_message_id and delivery_status = 'sending' and attempts = p_attempt
     for update;
  if not found then
    return pg_catalog.jsonb_build_object('action', 'stale');
  end if;
  update pgflow.message_attempts
     set finished_at = v_now, outcome = 'interrupted',
         error = 'the worker stopped during the send, and Retell has no chat for it'
   where message_id = m.id and finished_at is null;
  select coalesce(c.max_attempts, 6) into v_max
    from pgflow.conversations cv
    left join pgflow.enrollments e on e.id = m.enrollment_id
    left join pgflow.campaigns c on c.id = coalesce(e.campaign_id, cv.campaign_id)
   where cv.id = m.conversation_id;
  if m.attempts >= v_max then
    perform pgflow._set_reason('interrupted ' || m.attempts || ' times');
    update pgflow.messages
       set delivery_status = 'dead_letter', updated_at = v_now,
           delivery_error = pg_catalog.format(
             'the worker stopped during each of %s attempts (possible poison message)', m.attempts)
     where id = m.id;
    return pg_catalog.jsonb_build_object('action', 'dead_letter');
  end if;
  perform pgflow._set_reason('attempt ' || m.attempts || ' interrupted; not sent');
  update pgflow.messages set delivery_status = 'queued', updated_at = v_now where id = m.id;
  return pg_catalog.jsonb_build_object('action', 'released');
end;
$$;

-- Record the outcome of attempt p_attempt, in one call. p_result:
--   {"ok": true, "transport": "retell", "chat_id": "...", "agent_id": "...", "status_code": 200}
--   {"ok": true, "transport": "twilio", "provider_message_id": "SM...", "status_code": 201}
--   {"ok": false, "transport": ..., "retryable": bool, "alert": bool, "status_code": int|null,
--    "error": "...", "retry_after": seconds|null, "carrier_error_code": int|null}
-- Returns {"action": sent | retry | dead_letter | failed | stale, "delay_seconds"?}.
-- A refusal whose carrier code says the number is bad or opted out (Twilio's 21211,
-- 21610, ...) is no dead letter to requeue: the text is `failed` and the code acts
-- (pgflow._on_carrier_error).
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
  v_transport text := coalesce(p_result ->> 'transport', 'retell');
  v_code integer;
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
           chat_id = coalesce(v_chat, chat_id), transport = v_transport
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

  if (p_result ->> 'carrier_error_code') ~ '^[0-9]{1,9}$' then
    v_code := (p_result ->> 'carrier_error_code')::integer;
  end if;
  if pgflow.carrier_error_class(v_code) in ('bad_number', 'opted_out') then
    perform pgflow._set_reason('refused: ' || coalesce(v_error, '?'));
    update pgflow.messages
       set delivery_status = 'failed', delivery_error = v_error, carrier_error_code = v_code,
           transport = v_transport, updated_at = v_now
     where id = m.id
    returning * into m;
    update pgflow.message_attempts
       set finished_at = v_now, outcome = 'failed', status_code = v_status, error = v_error
     where message_id = m.id and finished_at is null;
    perform pgflow._on_carrier_error(m, v_code, v_now);
    return pg_catalog.jsonb_build_object('action', 'failed',
      'class', pgflow.carrier_error_class(v_code));
  end if;

  perform pgflow._set_reason(case when coalesce((p_result ->> 'retryable')::boolean, false)
                                  then 'gave up after ' || p_attempt || ' attempts'
                                  else 'permanent failure' end);
  update pgflow.messages
     set delivery_status = 'dead_letter', delivery_error = v_error, carrier_error_code = v_code,
         updated_at = v_now
   where id = m.id;
  update pgflow.message_attempts
     set finished_at = v_now, outcome = 'dead_letter', status_code = v_status, error = v_error
   where message_id = m.id and finished_at is null;
  if coalesce((p_result ->> 'alert')::boolean, false) then
    v_kind := v_transport || case v_status when 401 then '_unauthorized'
                                           when 402 then '_payment_required'
                                           else '_' || coalesce(v_status::text, 'error') end;
    perform pgflow.open_alert(v_kind, 'critical',
      pg_catalog.format('%s refused a send with HTTP %s: %s',
                        pg_catalog.initcap(v_transport), v_status, coalesce(v_error, '')),
      pg_catalog.jsonb_build_object('message_id', m.id, 'status_code', v_status), v_now);
  end if;
  return pg_catalog.jsonb_build_object('action', 'dead_letter');
end;
$$;

-- Several results in one transaction: p_items = [{message_id, attempt, result}], each
-- recorded as pgflow.record_send would (in message order); the answers in the order given.
-- The common case, a send that went through for a message still `sending` at that attempt
-- with no provider receipt waiting, one per conversation, is recorded for the whole batch
-- at once: its messages (one statement per attempt number: the transition log's reason
-- names it), their open attempts and their conversations, locked in id order (messages,
-- then conversations). Every other item goes through pgflow.record_send, one by one, after.
-- (Each message is locked before it is read.)
create or replace function pgflow.record_sends(
  p_items jsonb, p_retry_base_seconds double precision default 30, p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_out jsonb;
  v_ords bigint[];
  v_ids bigint[];
  v_attempts integer[];
  v_conversations bigint[];
  v_results jsonb[];
  v_attempt integer;
  r record;
begin
  perform from pgflow.messages m
   where m.id in (select (t.item ->> 'message_id')::bigint
                    from pg_catalog.jsonb_array_elements(p_items) t(item))
   order by m.id
     for update;
  -- the sends that went through, of messages still `sending` at that attempt with no
  -- receipt waiting (Twilio's: pgflow.record_send applies it), the first per conversation
  select pg_catalog.array_agg(f.ord order by f.id), pg_catalog.array_agg(f.id order by f.id),
         pg_catalog.array_agg(f.attempt order by f.id),
         pg_catalog.array_agg(f.conversation_id order by f.id),
         pg_catalog.array_agg(f.result order by f.id)
    into v_ords, v_ids, v_attempts, v_conversations, v_results
    from (select distinct on (m.conversation_id) i.ord, m.id, i.attempt, m.conversation_id, i.result
            from (select distinct on ((t.item ->> 'message_id')::bigint)
                         (t.item ->> 'message_id')::bigint as id,
                         (t.item ->> 'attempt')::integer as attempt, t.item -> 'result' as result,
                         t.ord
                    from pg_catalog.jsonb_array_elements(p_items) with ordinality as t(item, ord)
                   order by (t.item ->> 'message_id')::bigint, t.ord) i
            join pgflow.messages m on m.id = i.id
           where (i.result ->> 'ok')::boolean
             and m.delivery_status = 'sending' and m.attempts = i.attempt
             and m.provider_status is null
           order by m.conversation_id, m.id) f;
  if v_ids is not null then
    perform from pgflow.conversations cv where cv.id = any (v_conversations)
     order by cv.id for no key update;
    for v_attempt in select distinct a from pg_catalog.unnest(v_attempts) a order by 1 loop
      perform pg_catalog.set_config('pgflow.reason', 'sent on attempt ' || v_attempt, true);
      update pgflow.messages m
         set delivery_status = 'sent', sent_at = v_now, updated_at = v_now,
             provider_message_id = coalesce(b.result ->> 'chat_id',
                                            b.result ->> 'provider_message_id',
                                            m.provider_message_id),
             chat_id = coalesce(b.result ->> 'chat_id', m.chat_id),
             transport = coalesce(b.result ->> 'transport', 'retell')
        from rows from (pg_catalog.unnest(v_ids), pg_catalog.unnest(v_attempts), pg_catalog.unnest(v_results)) as b(id, attempt, result)
       where m.id = b.id and b.attempt = v_attempt;
    end loop;
    update pgflow.message_attempts a
       set finished_at = v_now, outcome = 'sent',
           status_code = (b.result ->> 'status_code')::integer
      from rows from (pg_catalog.unnest(v_ids), pg_catalog.unnest(v_results)) as b(id, result)
     where a.message_id = b.id and a.finished_at is null;
    update pgflow.conversations cv
       set last_outbound_at = v_now,
           chat_status = case when b.result ->> 'chat_id' is not null
                               and b.result ->> 'chat_id' is distinct from cv.provider_chat_id
                              then 'ongoing' else cv.chat_status end,
           provider_chat_id = coalesce(b.result ->> 'chat_id', cv.provider_chat_id),
           updated_at = v_now
      from rows from (pg_catalog.unnest(v_conversations), pg_catalog.unnest(v_results)) as b(id, result)
     where cv.id = b.id;
  end if;
  select coalesce(pg_catalog.jsonb_object_agg(o::text, '{"action": "sent"}'::jsonb), '{}')
    into v_out from pg_catalog.unnest(v_ords) o;
  for r in select t.item, t.ord from pg_catalog.jsonb_array_elements(p_items) with ordinality as t(item, ord)
            where t.ord <> all (coalesce(v_ords, '{}'))
            order by (t.item ->> 'message_id')::bigint, t.ord
  loop
    v_out := v_out || pg_catalog.jsonb_build_object(r.ord::text,
      pgflow.record_send((r.item ->> 'message_id')::bigint, (r.item ->> 'attempt')::integer,
                         r.item -> 'result', p_retry_base_seconds, v_now));
  end loop;
  return (select coalesce(pg_catalog.jsonb_agg(v_out -> ord::text order by ord), '[]')
            from pg_catalog.generate_series(1, pg_catalog.jsonb_array_length(p_items)) ord);
end;
$$;

-- The provider ended a chat (or we did): the conversation's chat is no longer ongoing.
create or replace function pgflow.mark_chat_ended(p_chat_id text, p_now timestamptz default null)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  update pgflow.conversations
     set chat_status = 'ended', updated_at = coalesce(p_now, pg_catalog.now())
   where provider_chat_id = p_chat_id and coalesce(chat_status, 'ongoing') <> 'ended';
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;

-- For an end_chat job: the conversation's chat when it may still be ongoing, else NULL.
create or replace function pgflow.chat_to_end(p_conversation_id bigint) returns text
language sql stable
security definer
set search_path = ''
as $$
  select provider_chat_id from pgflow.conversations
   where id = p_conversation_id and coalesce(chat_status, 'ongoing') = 'ongoing'
$$;

-- End the provider chats still ongoing on these conversations (an end_chat job each).
create or replace function pgflow._end_chats(p_conversation_ids bigint[]) returns integer
language sql
set search_path = ''
as $$
  select pgflow._enqueue('end_chat', coalesce(pg_catalog.array_agg(cv.id), '{}'), 20)
    from pgflow.conversations cv
   where cv.id = any (p_conversation_ids) and cv.provider_chat_id is not null
     and coalesce(cv.chat_status, 'ongoing') = 'ongoing'
$$;

-- Dead letters with what an operator needs to decide. Phones are for the CLI to mask.
create or replace view pgflow.dead_letters as
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
create or replace function pgflow.requeue_dead_letters(
  p_ids bigint[] default null, p_campaign text default null, p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
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
create or replace function pgflow.discard_dead_letters(p_ids bigint[], p_now timestamptz default null)
returns jsonb
language plpgsql
security definer
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
