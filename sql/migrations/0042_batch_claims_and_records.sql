-- The send path in fewer statements: the claim reads its rows in one statement and asks the validity only for Twilio lines; record_sends records the sends that went through set-based; claim_messages counts a send on a number with a daily limit at once (a batch claimed past the limit).
-- depends: 0041_add_import_leads

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
