-- The console in SQL: a person takes over, replies, hands back and settles (audited); console users and sessions; the inbox and conversation reads; while a lead is held no AI text reaches it (takeover, which ended the conversation, is gone).
-- depends: 0022_index_inbox

-- Who acts must be named (a console user's email, or `cli:<os user>`).
create or replace function pgflow._actor(p_actor text) returns text
language plpgsql immutable
set search_path = ''
as $$
begin
  if coalesce(pg_catalog.btrim(p_actor), '') = '' then
    raise exception 'the person acting must be named' using errcode = 'PF003';
  end if;
  return pg_catalog.left(pg_catalog.btrim(p_actor), 254);
end;
$$;
revoke execute on function pgflow._actor(text) from public;

-- chat_inbound (and the older sms_inbound): a lead texted one of our numbers and Retell
-- asks which agent answers. The answer is the agent of the lead's conversation on that
-- line (the campaign's agent), with its prompt and the lead's context as dynamic variables
-- and our ids as metadata. A suppressed contact is rejected unless the text is START; an
-- unknown number gets the line's default inbound agent, or a reject.
create or replace function pgflow._answer_inbound(
  p_payload jsonb, p_engine_replies boolean, p_now timestamptz
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_in jsonb := case
    when pg_catalog.jsonb_typeof(p_payload -> 'chat_inbound') = 'object' then p_payload -> 'chat_inbound'
    when pg_catalog.jsonb_typeof(p_payload -> 'sms_inbound') = 'object' then p_payload -> 'sms_inbound'
    else p_payload end;
  v_lead text := v_in ->> 'from_number';
  v_line text := v_in ->> 'to_number';
  v_text text := coalesce(v_in ->> 'message', v_in ->> 'body', v_in ->> 'content');
  v_reject jsonb := '{"chat_inbound": {"reject": true}}';
  v_contact pgflow.contacts;
  v_number pgflow.sending_numbers;
  v_conversation pgflow.conversations;
  v_campaign pgflow.campaigns;
  v_agent pgflow.agents;
  v_enrollment bigint;
  v_message bigint;
  v_answer jsonb;
begin
  if v_lead is null or v_lead !~ '^\+[1-9][0-9]{6,14}$'
     or v_line is null or v_line !~ '^\+[1-9][0-9]{6,14}$' then
    return pg_catalog.jsonb_build_object('result', 'invalid', 'response', v_reject,
      'detail', 'from_number and to_number must be E.164 numbers');
  end if;
  select * into v_number from pgflow.sending_numbers where number = v_line;
  select * into v_contact from pgflow.contacts where phone = v_lead for update;

  if v_contact.id is null then
    if v_number.inbound_agent_id is null then
      return pg_catalog.jsonb_build_object('result', 'unknown_number_rejected',
                                           'response', v_reject);
    end if;
    insert into pgflow.contacts (phone, created_at, updated_at)
    values (v_lead, p_now, p_now)
    on conflict (phone) do update set updated_at = excluded.updated_at
    returning * into v_contact;
  elsif v_contact.opted_out_at is not null
        and (v_text is null or (select i.intent from pgflow.inbound_intent(v_text) i) <> 'opt_in') then
    return pg_catalog.jsonb_build_object('result', 'suppressed_rejected', 'response', v_reject);
  end if;

  select * into v_conversation from pgflow.conversations
   where contact_id = v_contact.id and from_number = v_line and status <> 'ended';
  if v_conversation.id is null then
    -- the drip the lead is in on this line, else the last campaign that used it
    select e.id, e.campaign_id into v_enrollment, v_campaign.id
      from pgflow.enrollments e
      join pgflow.campaign_numbers cn on cn.campaign_id = e.campaign_id
     where e.contact_id = v_contact.id and cn.number = v_line
     order by (e.status in ('active', 'paused')) desc, e.enrolled_at desc, e.id desc limit 1;
    select * into v_campaign from pgflow.campaigns where id = v_campaign.id;
    select * into v_agent from pgflow.agents
     where id = coalesce(v_campaign.agent_id, v_number.inbound_agent_id,
                         (select cv.agent_id from pgflow.conversations cv
                           where cv.contact_id = v_contact.id and cv.from_number = v_line
                           order by cv.id desc limit 1));
    if v_agent.id is null then
      return pg_catalog.jsonb_build_object('result', 'no_agent_rejected', 'response', v_reject);
    end if;
    perform pgflow._set_reason('lead wrote first');
    insert into pgflow.conversations
      (contact_id, campaign_id, agent_id, enrollment_id, from_number, created_at, updated_at)
    values (v_contact.id, v_campaign.id, v_agent.id, v_enrollment, v_line, p_now, p_now)
    on conflict (contact_id, from_number) where status <> 'ended' do nothing
    returning * into v_conversation;
    if v_conversation.id is null then
      select * into v_conversation from pgflow.conversations
       where contact_id = v_contact.id and from_number = v_line and status <> 'ended';
    end if;
  end if;
  select * into v_campaign from pgflow.campaigns where id = v_conversation.campaign_id;
  select * into v_agent from pgflow.agents where id = v_conversation.agent_id;
  -- Retell's new chat becomes the conversation's, but not one refused below (a person
  -- holds the lead): it never starts, and the chat an end_chat job ends stays the one it had.
  if v_in ? 'chat_id' and nullif(v_in ->> 'chat_id', '') is not null
     and (v_contact.held_at is null or p_engine_replies) then
    update pgflow.conversations
       set provider_chat_id = v_in ->> 'chat_id', chat_status = 'ongoing', updated_at = p_now
     where id = v_conversation.id;
  end if;

  v_answer := pg_catalog.jsonb_build_object(
    'dynamic_variables', pgflow._agent_variables(v_contact, v_campaign, v_agent, null),
    'metadata', pg_catalog.jsonb_build_object(
      'pgflow_conversation_id', v_conversation.id::text,
      'pgflow_contact_id', v_contact.id::text));
  if v_agent.retell_agent_id is not null then
    v_answer := v_answer || pg_catalog.jsonb_build_object('override_agent_id', v_agent.retell_agent_id);
  end if;

  -- The older shape carries the text itself: record it as the lead's message.
  if v_text is not null then
    perform pgflow._set_reason('lead text (inbound webhook)');
    insert into pgflow.messages
      (conversation_id, contact_id, direction, kind, body, delivery_status, segments, encoding,
       dedupe_key, created_at, updated_at)
    values (v_conversation.id, v_contact.id, 'inbound', 'lead', v_text, 'received',
            pgflow.sms_segments(v_text), pgflow.sms_encoding(v_text),
            'inbound:' || pg_catalog.md5(p_payload::text), p_now, p_now)
    on conflict (dedupe_key) do nothing
    returning id into v_message;
    if v_message is not null then
      perform pgflow._on_inbound(v_message, false, p_now);
    end if;
  end if;
  -- While a person holds the lead, Retell's own LLM must not answer: the chat is refused.
  -- Retell gives no text with chat_inbound, so the person is told a text came (the
  -- console shows it as a note). Where the engine writes the replies (the sandbox), the
  -- chat goes on and agent_turn keeps the agent quiet.
  if v_contact.held_at is not null and not p_engine_replies then
    insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
    values (p_now, 'contact', v_contact.id, 'held', 'held',
            'the lead texted while a person holds the conversation; Retell does not pass '
            || 'the text on (its chat was refused so its AI stays quiet)');
    return pg_catalog.jsonb_build_object('result', 'held_rejected',
      'conversation_id', v_conversation.id, 'response', v_reject);
  end if;
  return pg_catalog.jsonb_build_object('result', 'answered', 'conversation_id', v_conversation.id,
    'response', pg_catalog.jsonb_build_object('chat_inbound', v_answer));
end;
$$;
revoke execute on function pgflow._answer_inbound(jsonb,boolean,timestamp with time zone) from public;

drop function pgflow._answer_inbound(jsonb,timestamp with time zone);

-- One line of the audit trail: who did what, when, on which conversation.
create or replace function pgflow._audit(
  p_actor text, p_user_id bigint, p_action text, p_conversation_id bigint,
  p_contact_id bigint, p_detail jsonb, p_now timestamptz
) returns bigint
language sql
set search_path = ''
as $$
  insert into pgflow.audit_log
    (occurred_at, actor, user_id, action, conversation_id, contact_id, detail)
  values (p_now, p_actor, p_user_id, p_action, p_conversation_id, p_contact_id,
          pg_catalog.jsonb_strip_nulls(coalesce(p_detail, '{}')))
  returning id
$$;
revoke execute on function pgflow._audit(text,bigint,text,bigint,bigint,jsonb,timestamp with time zone) from public;

-- The send-time re-check and claim. For the message of a send_sms job:
--   skip        the message is no longer waiting
--   suppressed  the contact opted out, or the drip / conversation no longer allows it
--   defer       not now (window closed, backoff pending, campaign paused, the sending
--               number at its per-second or daily limit): retry after delay_seconds
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
  v_campaign_id bigint;
  v_max integer;
  v_open timestamptz;
  v_reason text;
  v_number pgflow.sending_numbers;
  v_day date := (v_now at time zone 'UTC')::date;
  v_used integer;
  v_slot timestamptz;
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
  select e.status, e.campaign_id into v_enrollment_status, v_campaign_id
    from pgflow.enrollments e where e.id = coalesce(m.enrollment_id, v_conversation.enrollment_id);
  select * into v_campaign from pgflow.campaigns
   where id = coalesce(v_campaign_id, v_conversation.campaign_id);
  select * into v_agent from pgflow.agents
   where id = coalesce(v_conversation.agent_id, v_campaign.agent_id);
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
    v_open := pgflow.next_window_open(coalesce(v_contact.timezone, v_campaign.timezone),
      v_campaign.window_start, v_campaign.window_end, v_campaign.window_days, v_now);
    if v_open > v_now then
      perform pgflow._set_reason('send window closed');
      update pgflow.messages set delivery_status = 'queued', send_after = v_open,
             updated_at = v_now, deferred_reason = 'send window closed'
       where id = m.id;
      return pg_catalog.jsonb_build_object('action', 'defer', 'reason', 'send window closed',
        'delay_seconds', extract(epoch from v_open - v_now));
    end if;
    -- A missed or late webhook must never let a drip talk over a live conversation.
    if v_conversation.provider_chat_id is not null
       and coalesce(v_conversation.chat_status, 'ongoing') = 'ongoing'
       and p_checked_chat is distinct from v_conversation.provider_chat_id then
      return pg_catalog.jsonb_build_object('action', 'check_chat',
        'chat_id', v_conversation.provider_chat_id);
    end if;
  end if;

  -- A person's text to a lead who never wrote is a first contact: the window applies.
  if m.kind = 'human' and v_conversation.last_inbound_at is null
     and not exists (select 1 from pgflow.messages x
                      where x.contact_id = m.contact_id and x.direction = 'inbound') then
    v_open := pgflow.next_window_open(
      coalesce(v_contact.timezone, v_campaign.timezone, 'America/New_York'),
      coalesce(v_campaign.window_start, time '09:00'), coalesce(v_campaign.window_end, time '20:00'),
      coalesce(v_campaign.window_days, '{1,2,3,4,5,6}'), v_now);
    if v_open > v_now then
      perform pgflow._set_reason('send window closed');
      update pgflow.messages set send_after = v_open, updated_at = v_now,
             deferred_reason = 'send window closed (the lead has not written yet)'
       where id = m.id;
      return pg_catalog.jsonb_build_object('action', 'defer', 'reason', 'send window closed',
        'delay_seconds', extract(epoch from v_open - v_now));
    end if;
  end if;

  -- The sending number's carrier limits. System messages (opt-out confirmations, help)
  -- are counted but never held back.
  select * into v_number from pgflow.sending_numbers where number = v_conversation.from_number;
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

  perform pgflow._set_reason('attempt ' || (m.attempts + 1));
  update pgflow.messages
     set delivery_status = 'sending', attempts = attempts + 1, send_after = null,
         number_slot_at = null, deferred_reason = null,
         updated_at = v_now,
         -- an agent reply posted into a chat carries our id, so its echo is recognised
         chat_message_id = case when m.kind in ('agent', 'human') then 'pgflow-' || m.id
                                else chat_message_id end
   where id = m.id
  returning * into m;
  insert into pgflow.message_attempts (message_id, attempt, worker_id, started_at)
  select m.id, coalesce(pg_catalog.max(a.attempt), 0) + 1, p_worker, v_now
    from pgflow.message_attempts a where a.message_id = m.id;
  return pg_catalog.jsonb_build_object(
    'action', 'send',
    'segments', m.segments,
    'usage_day', v_day,
    'message_id', m.id,
    'attempt', m.attempts,
    'max_attempts', v_max,
    'kind', m.kind,
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

-- The contact's live conversation on the line of this one, else this one.
create or replace function pgflow._current_conversation(p_conversation pgflow.conversations)
returns pgflow.conversations
language sql stable
set search_path = ''
as $$
  select coalesce(
    (select cv from pgflow.conversations cv
      where cv.contact_id = p_conversation.contact_id
        and cv.from_number = p_conversation.from_number and cv.status <> 'ended'),
    p_conversation)
$$;
revoke execute on function pgflow._current_conversation(pgflow.conversations) from public;

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
  r record;
begin
  perform pgflow.set_outcome(p_conversation_id, 'escalated', p_reason, p_source, p_now);
  perform pgflow._end_chats(array[p_conversation_id]);
  -- the lead waits for a person: no AI text reaches it until a person hands it back
  update pgflow.contacts set held_at = p_now, updated_at = p_now
   where id = (select contact_id from pgflow.conversations where id = p_conversation_id)
     and held_at is null;
  if found then
    insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
    select p_now, 'contact', cv.contact_id, 'with_agent', 'held', 'waiting for a person'
      from pgflow.conversations cv where cv.id = p_conversation_id;
  end if;
  -- no drip step either while the lead waits for a person (a CRM takeover may come first)
  for r in select e.id from pgflow.enrollments e
             join pgflow.conversations cv on cv.contact_id = e.contact_id
            where cv.id = p_conversation_id and e.status = 'active' order by e.id
  loop
    perform pgflow.pause_enrollment(r.id, 'waiting for a person', p_now);
  end loop;
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

-- The inbox's sort key of a conversation: conversations that need a person first (a
-- review asked for, or the lead held by a person or waiting for one: escalated), then
-- engaged ones whose lead wrote in the last 3 days, then the rest.
create or replace function pgflow._needs_person(
  p_conversation pgflow.conversations, p_contact pgflow.contacts
) returns boolean
language sql immutable
set search_path = ''
as $$
  select p_conversation.review_requested_at is not null
      or (p_contact.held_at is not null
          and (p_conversation.status <> 'ended' or p_conversation.conversion_status = 'escalated'))
$$;
revoke execute on function pgflow._needs_person(pgflow.conversations,pgflow.contacts) from public;

-- Why no agent reply may follow this lead text now, or NULL when one may.
create or replace function pgflow._reply_refusal(p_trigger pgflow.messages) returns text
language sql stable
set search_path = ''
as $$
  select case
    when cv.id is null then 'no such conversation'
    when cv.status = 'ended' then 'conversation ended'
    when ct.opted_out_at is not null then 'contact opted out'
    when ct.held_at is not null then 'a person holds this lead'
    when exists (select 1 from pgflow.messages x
                  where x.conversation_id = cv.id and x.direction = 'inbound'
                    and x.id > p_trigger.id)
      then 'a later text will be answered'
    when exists (select 1 from pgflow.messages x
                  where x.conversation_id = cv.id and x.direction = 'outbound'
                    and x.kind in ('agent', 'human') and x.id > p_trigger.id)
      then 'already answered'
    when cv.agent_turns >= coalesce(a.max_turns, 10) then 'the agent has used its turns'
  end
  from (select 1) one
  left join pgflow.conversations cv on cv.id = p_trigger.conversation_id
  left join pgflow.contacts ct on ct.id = cv.contact_id
  left join pgflow.agents a on a.id = cv.agent_id
$$;

-- Ask for an LLM classification of a conversation that is not ended (once per quiet spell:
-- a new lead text allows another request).
create or replace function pgflow._request_classification(p_conversation_id bigint, p_now timestamptz)
returns boolean
language plpgsql
set search_path = ''
as $$
begin
  -- a person holding the lead gives the outcome; no classifier ends it under them
  update pgflow.conversations cv set classify_requested_at = p_now, updated_at = p_now
   where cv.id = p_conversation_id and cv.status <> 'ended' and cv.classify_requested_at is null
     and not exists (select 1 from pgflow.contacts ct
                      where ct.id = cv.contact_id and ct.held_at is not null);
  if not found then
    return false;
  end if;
  perform pgflow._enqueue('classify_outcome', array[p_conversation_id], 5);
  return true;
end;
$$;

-- A new console user, or a disabled one enabled again with a new role and password.
-- PF005 when the email belongs to an active user; PF003 for a bad email or role.
create or replace function pgflow.add_console_user(
  p_email text,
  p_role text,
  p_password_hash text,
  p_actor text,
  p_user_id bigint default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_actor text := pgflow._actor(p_actor);
  v_email text := pg_catalog.lower(pg_catalog.btrim(coalesce(p_email, '')));
  v_user pgflow.console_users;
  v_result text := 'added';
begin
  if v_email !~ '^[^@\s]+@[^@\s]+$' or pg_catalog.length(v_email) > 254 then
    raise exception '% is not an email address', pg_catalog.left(v_email, 80) using errcode = 'PF003';
  end if;
  if p_role is null or p_role not in ('agent', 'manager', 'admin') then
    raise exception 'a role is agent, manager or admin (not %)', coalesce(p_role, 'none')
      using errcode = 'PF003';
  end if;
  if p_password_hash is null or p_password_hash not like 'scrypt$%' then
    raise exception 'the password must be hashed with scrypt' using errcode = 'PF003';
  end if;
  insert into pgflow.console_users (email, role, password_hash, created_at, updated_at)
  values (v_email, p_role, p_password_hash, v_now, v_now)
  on conflict (email) do nothing
  returning * into v_user;
  if v_user.id is null then
    update pgflow.console_users
       set role = p_role, password_hash = p_password_hash, disabled_at = null, updated_at = v_now
     where email = v_email and disabled_at is not null
    returning * into v_user;
    if v_user.id is null then
      raise exception 'a console user % exists already', v_email using errcode = 'PF005';
    end if;
    v_result := 'enabled';
  end if;
  perform pgflow._audit(v_actor, p_user_id, 'user_add', null, null,
    pg_catalog.jsonb_build_object('email', v_email, 'role', p_role, 'result', v_result), v_now);
  return pg_catalog.jsonb_build_object('result', v_result, 'user_id', v_user.id,
                                       'email', v_email, 'role', p_role);
end;
$$;
revoke execute on function pgflow.add_console_user(text,text,text,text,bigint,timestamp with time zone) from public;
grant execute on function pgflow.add_console_user(text,text,text,text,bigint,timestamp with time zone) to pgflow_operator;
grant execute on function pgflow.add_console_user(text,text,text,text,bigint,timestamp with time zone) to pgflow_web;

-- Disable a console user, give them a new password, or just end their sessions: in each
-- case every session of theirs ends. PF002 for an unknown email.
create or replace function pgflow.change_console_user(
  p_email text,
  p_action text,
  p_password_hash text,
  p_actor text,
  p_user_id bigint default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_actor text := pgflow._actor(p_actor);
  v_email text := pg_catalog.lower(pg_catalog.btrim(coalesce(p_email, '')));
  v_user pgflow.console_users;
  v_revoked integer;
begin
  select * into v_user from pgflow.console_users where email = v_email for update;
  if not found then
    raise exception 'no console user %', pg_catalog.left(v_email, 80) using errcode = 'PF002';
  end if;
  if p_action = 'disable' then
    update pgflow.console_users set disabled_at = coalesce(disabled_at, v_now), updated_at = v_now
     where id = v_user.id;
  elsif p_action = 'password' then
    if p_password_hash is null or p_password_hash not like 'scrypt$%' then
      raise exception 'the password must be hashed with scrypt' using errcode = 'PF003';
    end if;
    update pgflow.console_users set password_hash = p_password_hash, updated_at = v_now
     where id = v_user.id;
  elsif p_action is distinct from 'revoke' then
    raise exception 'unknown user action %', coalesce(p_action, '(none)') using errcode = 'PF003';
  end if;
  update pgflow.console_sessions set revoked_at = v_now
   where user_id = v_user.id and revoked_at is null and expires_at > v_now;
  get diagnostics v_revoked = row_count;
  perform pgflow._audit(v_actor, p_user_id,
    case p_action when 'disable' then 'user_disable' when 'password' then 'user_password'
                  else 'sessions_revoke' end,
    null, null, pg_catalog.jsonb_build_object('email', v_email, 'sessions_ended', v_revoked),
    v_now);
  return pg_catalog.jsonb_build_object('result', p_action, 'email', v_email,
                                       'sessions_ended', v_revoked);
end;
$$;
revoke execute on function pgflow.change_console_user(text,text,text,text,bigint,timestamp with time zone) from public;
grant execute on function pgflow.change_console_user(text,text,text,text,bigint,timestamp with time zone) to pgflow_operator;
grant execute on function pgflow.change_console_user(text,text,text,text,bigint,timestamp with time zone) to pgflow_web;

create or replace function pgflow.console_alerts(p_limit integer default 200) returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(x)
                    order by (x.resolved_at is null) desc, x.opened_at desc, x.id desc), '[]')
    from (select al.id, al.kind, al.severity, al.message, al.occurrences, al.opened_at,
                 al.last_seen_at, al.resolved_at, al.notified_at,
                 (al.details ->> 'conversation_id')::bigint as conversation_id
            from pgflow.alerts al
           order by (al.resolved_at is null) desc, al.opened_at desc, al.id desc
           limit least(greatest(coalesce(p_limit, 200), 1), 1000)) x
$$;
revoke execute on function pgflow.console_alerts(integer) from public;
grant execute on function pgflow.console_alerts(integer) to pgflow_reader;
grant execute on function pgflow.console_alerts(integer) to pgflow_web;

-- The campaigns' slugs, for the inbox's filter (cheap: no counts).
create or replace function pgflow.console_campaign_slugs() returns text[]
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.array_agg(c.slug order by c.slug), '{}') from pgflow.campaigns c
$$;
revoke execute on function pgflow.console_campaign_slugs() from public;
grant execute on function pgflow.console_campaign_slugs() to pgflow_web;

-- The console's other pages: campaigns with their steps and windows, alerts open and
-- resolved, dead letters, and sends per hour over the last day.
create or replace function pgflow.console_campaigns() returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
    'slug', c.slug, 'name', c.name, 'status', c.status, 'agent', a.name,
    'from_number', c.from_number, 'timezone', c.timezone,
    'window_start', c.window_start, 'window_end', c.window_end, 'window_days', c.window_days,
    'reply_timeout', c.reply_timeout::text, 'silence_timeout', c.silence_timeout::text,
    'daily_cap', c.daily_cap, 'max_attempts', c.max_attempts,
    'enrolled', (select pg_catalog.count(*) from pgflow.enrollments e where e.campaign_id = c.id),
    'steps', coalesce((select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'position', s.position, 'delay', s.delay::text, 'body', s.body)
                        order by s.position)
                         from pgflow.campaign_steps s where s.campaign_id = c.id), '[]'))
    order by c.slug), '[]')
    from pgflow.campaigns c left join pgflow.agents a on a.id = c.agent_id
$$;
revoke execute on function pgflow.console_campaigns() from public;
grant execute on function pgflow.console_campaigns() to pgflow_reader;
grant execute on function pgflow.console_campaigns() to pgflow_web;

-- What changed since a console page was drawn: the newest message, state change, alert
-- and audit line, as one string. The page polls it and redraws when it differs.
create or replace function pgflow.console_cursor() returns text
language sql stable
security definer
set search_path = ''
as $$
  select pg_catalog.concat_ws('.',
    coalesce((select pg_catalog.max(id) from pgflow.messages), 0),
    coalesce((select pg_catalog.max(id) from pgflow.events), 0),
    coalesce((select pg_catalog.max(id) from pgflow.alerts), 0),
    coalesce((select pg_catalog.max(id) from pgflow.audit_log), 0),
    coalesce((select pg_catalog.max(id) from pgflow.conversations), 0))
$$;
revoke execute on function pgflow.console_cursor() from public;
grant execute on function pgflow.console_cursor() to pgflow_web;

create or replace function pgflow.console_dead_letters(
  p_campaign text default null, p_limit integer default 200
) returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(x)
                    order by x.failed_at desc, x.id desc), '[]')
    from (select d.id, d.campaign, d.phone, d.kind, d.attempts, d.delivery_error, d.failed_at,
                 d.contact_opted_out, d.step_position, d.body, m.conversation_id
            from pgflow.dead_letters d join pgflow.messages m on m.id = d.id
           where p_campaign is null or d.campaign = p_campaign
           order by d.failed_at desc, d.id desc
           limit least(greatest(coalesce(p_limit, 200), 1), 1000)) x
$$;
revoke execute on function pgflow.console_dead_letters(text,integer) from public;
grant execute on function pgflow.console_dead_letters(text,integer) to pgflow_web;

-- The review queue for the console (the view pgflow.review_queue, oldest first).
create or replace function pgflow.console_review(p_limit integer default 200) returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(x)
                    order by x.review_requested_at, x.id), '[]')
    from (select r.id, r.phone, r.campaign, r.status, r.conversion_status, r.outcome_source,
                 r.review_reason, r.review_requested_at, r.signals
            from pgflow.review_queue r
           order by r.review_requested_at, r.id
           limit least(greatest(coalesce(p_limit, 200), 1), 1000)) x
$$;
revoke execute on function pgflow.console_review(integer) from public;
grant execute on function pgflow.console_review(integer) to pgflow_web;

-- The signed-in user behind a session token's hash, or NULL (unknown, revoked, expired,
-- or the user disabled). Seen again after a minute, the session's idle expiry moves on.
create or replace function pgflow.console_session(p_token_hash bytea, p_now timestamptz default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_session pgflow.console_sessions;
  v_user pgflow.console_users;
begin
  select * into v_session from pgflow.console_sessions
   where token_hash = p_token_hash and revoked_at is null and expires_at > v_now;
  if not found then
    return null;
  end if;
  select * into v_user from pgflow.console_users
   where id = v_session.user_id and disabled_at is null;
  if not found then
    return null;
  end if;
  if v_session.last_seen_at < v_now - interval '1 minute' then
    update pgflow.console_sessions
       set last_seen_at = v_now,
           expires_at = greatest(expires_at, least(created_at + interval '7 days',
                                                   v_now + interval '12 hours'))
     where id = v_session.id;
  end if;
  return pg_catalog.jsonb_build_object('session_id', v_session.id, 'user_id', v_user.id,
    'email', v_user.email, 'role', v_user.role);
end;
$$;
revoke execute on function pgflow.console_session(bytea,timestamp with time zone) from public;
grant execute on function pgflow.console_session(bytea,timestamp with time zone) to pgflow_web;

-- What signing in as this email needs: the user's hash and role (NULLs for an unknown or
-- disabled email), and retry_after_seconds > 0 while the email is throttled: 5 failed
-- attempts within 15 minutes lock it until the oldest of them is 15 minutes old.
create or replace function pgflow.console_sign_in_user(p_email text, p_now timestamptz default null)
returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  with e as (select pg_catalog.lower(pg_catalog.btrim(coalesce(p_email, ''))) as email,
                    coalesce(p_now, pg_catalog.now()) as now),
  failures as (
    select a.attempted_at from pgflow.console_sign_ins a, e
     where a.email = e.email and not a.ok and a.attempted_at > e.now - interval '15 minutes'
       and a.attempted_at > coalesce((select pg_catalog.max(b.attempted_at)
                                        from pgflow.console_sign_ins b
                                       where b.email = e.email and b.ok), '-infinity')
     order by a.attempted_at desc limit 5)
  select pg_catalog.jsonb_build_object(
    'email', e.email,
    'user_id', u.id,
    'role', u.role,
    'password_hash', u.password_hash,
    'retry_after_seconds', case when (select pg_catalog.count(*) from failures) >= 5 then
      pg_catalog.ceil(extract(epoch from (select pg_catalog.min(attempted_at) from failures)
                                          + interval '15 minutes' - e.now))
      else 0 end)
    from e left join pgflow.console_users u on u.email = e.email and u.disabled_at is null
$$;
revoke execute on function pgflow.console_sign_in_user(text,timestamp with time zone) from public;
grant execute on function pgflow.console_sign_in_user(text,timestamp with time zone) to pgflow_web;

-- Console users with their last sign-in and live sessions (never a password hash).
create or replace function pgflow.console_user_list(p_now timestamptz default null)
returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
           'id', u.id, 'email', u.email, 'role', u.role, 'created_at', u.created_at,
           'disabled_at', u.disabled_at,
           'last_seen_at', (select pg_catalog.max(s.last_seen_at) from pgflow.console_sessions s
                             where s.user_id = u.id),
           'sessions', (select pg_catalog.count(*) from pgflow.console_sessions s
                         where s.user_id = u.id and s.revoked_at is null
                           and s.expires_at > coalesce(p_now, pg_catalog.now())))
           order by u.email), '[]')
    from pgflow.console_users u
$$;
revoke execute on function pgflow.console_user_list(timestamp with time zone) from public;
grant execute on function pgflow.console_user_list(timestamp with time zone) to pgflow_operator;
grant execute on function pgflow.console_user_list(timestamp with time zone) to pgflow_web;

-- Everything the conversation page shows: the conversation, its lead (consent, opt-out,
-- hold), the transcript, system notes (state changes of the conversation, its drip and
-- its lead), the drip's steps, every outcome signal and the audit trail. NULL: unknown id.
create or replace function pgflow.conversation_view(
  p_conversation_id bigint, p_now timestamptz default null
) returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'conversation', pg_catalog.to_jsonb(cv) - 'agent_turns',
    'agent_turns', cv.agent_turns,
    'needs_person', pgflow._needs_person(cv, ct),
    'contact', pg_catalog.jsonb_build_object(
      'id', ct.id, 'phone', ct.phone, 'first_name', ct.first_name, 'last_name', ct.last_name,
      'email', ct.email, 'timezone', ct.timezone, 'opted_out_at', ct.opted_out_at,
      'opt_out_source', ct.opt_out_source, 'consent_at', ct.consent_at,
      'consent_source', ct.consent_source, 'consent_text', ct.consent_text,
      'held_at', ct.held_at, 'held_by', ct.held_by),
    'campaign', (select pg_catalog.jsonb_build_object('slug', c.slug, 'name', c.name,
                                                      'status', c.status)
                   from pgflow.campaigns c where c.id = cv.campaign_id),
    'agent', (select a.name from pgflow.agents a where a.id = cv.agent_id),
    'transcript', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', t.id, 'direction', t.direction, 'kind', t.kind, 'body', t.body,
               'delivery_status', t.delivery_status, 'delivery_error', t.delivery_error,
               'step_position', t.step_position, 'created_at', t.created_at,
               'sent_at', t.sent_at, 'send_after', t.send_after, 'attempts', t.attempts,
               'deferred_reason', t.deferred_reason,
               'segments', t.segments, 'intent', t.intent) order by t.created_at, t.id)
        from (select m.* from pgflow.messages m where m.conversation_id = cv.id
               order by m.created_at desc, m.id desc limit 500) t), '[]'),
    'notes', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'at', n.occurred_at, 'entity', n.entity, 'from', n.from_status,
               'to', n.to_status, 'reason', n.reason) order by n.occurred_at, n.id)
        from (select ev.* from pgflow.events ev
               where (ev.entity = 'conversation' and ev.entity_id = cv.id)
                  or (ev.entity = 'enrollment' and ev.entity_id = cv.enrollment_id)
                  or (ev.entity = 'contact' and ev.entity_id = ct.id
                      and ev.occurred_at >= cv.created_at)
               order by ev.occurred_at desc, ev.id desc limit 200) n), '[]'),
    'drip', (
      select pg_catalog.jsonb_build_object(
        'enrollment_id', e.id, 'status', e.status, 'next_step', e.next_step,
        'next_message_at', e.next_message_at, 'stop_reason', e.stop_reason,
        'steps', coalesce((
          select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'position', st.position, 'delay', st.delay::text,
                   'message_id', sm.id, 'status', sm.delivery_status,
                   'sent_at', sm.sent_at, 'send_after', sm.send_after,
                   'deferred_reason', sm.deferred_reason,
                   'error', sm.delivery_error, 'attempts', sm.attempts,
                   'planned_at', case when sm.id is null and e.next_step = st.position
                                      and e.status = 'active' then e.next_message_at end)
                   order by st.position)
            from pgflow.campaign_steps st
            left join lateral (
              select m.* from pgflow.messages m
               where m.enrollment_id = e.id and m.step_position = st.position
               order by m.id desc limit 1) sm on true
           where st.campaign_id = e.campaign_id), '[]'))
        from pgflow.enrollments e where e.id = cv.enrollment_id),
    'signals', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'source', s.source, 'status', s.status, 'reason', s.reason,
               'confidence', s.confidence, 'model', s.model, 'at', s.created_at)
               order by s.created_at, s.id)
        from pgflow.outcome_signals s where s.conversation_id = cv.id), '[]'),
    'audit', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'at', l.occurred_at, 'actor', l.actor, 'action', l.action,
               'conversation_id', l.conversation_id, 'detail', l.detail)
               order by l.occurred_at, l.id)
        from pgflow.audit_log l
       where l.conversation_id = cv.id
          or (l.contact_id = ct.id and l.occurred_at >= cv.created_at)), '[]'),
    'others', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', o.id, 'status', o.status, 'conversion_status', o.conversion_status,
               'created_at', o.created_at) order by o.id desc)
        from pgflow.conversations o where o.contact_id = ct.id and o.id <> cv.id), '[]'))
    from pgflow.conversations cv
    join pgflow.contacts ct on ct.id = cv.contact_id
   where cv.id = p_conversation_id
$$;
revoke execute on function pgflow.conversation_view(bigint,timestamp with time zone) from public;
grant execute on function pgflow.conversation_view(bigint,timestamp with time zone) to pgflow_operator;
grant execute on function pgflow.conversation_view(bigint,timestamp with time zone) to pgflow_reader;
grant execute on function pgflow.conversation_view(bigint,timestamp with time zone) to pgflow_web;

-- Sign out: the session of this token's hash ends.
create or replace function pgflow.end_console_session(p_token_hash bytea, p_now timestamptz default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_session pgflow.console_sessions;
  v_email text;
begin
  update pgflow.console_sessions set revoked_at = v_now
   where token_hash = p_token_hash and revoked_at is null
  returning * into v_session;
  if not found then
    return '{"result": "unchanged"}';
  end if;
  select email into v_email from pgflow.console_users where id = v_session.user_id;
  perform pgflow._audit(v_email, v_session.user_id, 'sign_out', null, null, '{}', v_now);
  return '{"result": "signed_out"}';
end;
$$;
revoke execute on function pgflow.end_console_session(bytea,timestamp with time zone) from public;
grant execute on function pgflow.end_console_session(bytea,timestamp with time zone) to pgflow_web;

-- The person hands the lead back to the agent: the hold is lifted, the escalation alerts
-- of the lead's conversations are resolved, and where the engine writes the agent's
-- replies (p_engine_replies) a lead text nobody answered yet gets the agent's answer.
-- A paused drip stays paused (stop-on-reply). PF001 when nobody holds the lead.
create or replace function pgflow.hand_back(
  p_conversation_id bigint,
  p_actor text,
  p_user_id bigint default null,
  p_engine_replies boolean default false,
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
  v_last pgflow.messages;
  v_queued boolean := false;
  r record;
begin
  select * into v_conversation from pgflow.conversations where id = p_conversation_id;
  if not found then
    raise exception 'conversation % does not exist', p_conversation_id using errcode = 'PF002';
  end if;
  select * into v_contact from pgflow.contacts where id = v_conversation.contact_id for update;
  if v_contact.held_at is null then
    raise exception 'nobody holds this lead: the agent has it already' using errcode = 'PF001';
  end if;
  update pgflow.contacts set held_at = null, held_by = null, updated_at = v_now
   where id = v_contact.id;
  insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
  values (v_now, 'contact', v_contact.id, 'held', 'with_agent', 'handed back by ' || v_actor);
  for r in select id from pgflow.conversations where contact_id = v_contact.id order by id loop
    perform pgflow.resolve_alert('escalation:' || r.id, v_now);
  end loop;
  v_conversation := pgflow._current_conversation(v_conversation);
  if p_engine_replies and v_conversation.status <> 'ended' and v_contact.opted_out_at is null then
    select * into v_last from pgflow.messages
     where conversation_id = v_conversation.id
       and (direction = 'inbound' or kind in ('agent', 'human'))
     order by id desc limit 1;
    if v_last.direction = 'inbound' then
      perform pgflow._enqueue('agent_reply', array[v_last.id], 15);
      v_queued := true;
    end if;
  end if;
  perform pgflow._audit(v_actor, p_user_id, 'hand_back', p_conversation_id, v_contact.id,
    pg_catalog.jsonb_build_object('held_by', v_contact.held_by,
                                  'agent_reply_queued', v_queued), v_now);
  return pg_catalog.jsonb_build_object('result', 'handed_back', 'contact_id', v_contact.id,
    'conversation_id', v_conversation.id, 'agent_reply_queued', v_queued);
end;
$$;
revoke execute on function pgflow.hand_back(bigint,text,bigint,boolean,timestamp with time zone) from public;
grant execute on function pgflow.hand_back(bigint,text,bigint,boolean,timestamp with time zone) to pgflow_operator;
grant execute on function pgflow.hand_back(bigint,text,bigint,boolean,timestamp with time zone) to pgflow_web;

-- A person's text to the lead, queued like any message: the send-time claim checks it
-- again (never after STOP; the number's limits; the send window when the lead never
-- wrote), segments are counted. Writing takes the lead over first. It goes on the lead's
-- live conversation on that line, else on this one (an escalated conversation is
-- answered where it ended). p_key (the form's one-time key) makes a resubmitted form
-- once-only. Raises PF004 for an opted-out lead, PF003 for an empty or too long text.
create or replace function pgflow.human_reply(
  p_conversation_id bigint,
  p_body text,
  p_actor text,
  p_user_id bigint default null,
  p_key text default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_actor text := pgflow._actor(p_actor);
  v_body text := pg_catalog.btrim(coalesce(p_body, ''), E' \t\r\n');
  v_key text := 'human:' || coalesce(nullif(pg_catalog.btrim(p_key), ''),
                                     pg_catalog.gen_random_uuid()::text);
  v_conversation pgflow.conversations;
  v_contact pgflow.contacts;
  v_id bigint;
begin
  if v_body = '' then
    raise exception 'a reply must not be empty' using errcode = 'PF003';
  end if;
  if pg_catalog.length(v_body) > 1600 then
    raise exception 'a reply is at most 1600 characters (this one has %)',
      pg_catalog.length(v_body) using errcode = 'PF003';
  end if;
  if pg_catalog.length(v_key) > 120 then
    raise exception 'the reply key is too long' using errcode = 'PF003';
  end if;
  select * into v_conversation from pgflow.conversations where id = p_conversation_id;
  if not found then
    raise exception 'conversation % does not exist', p_conversation_id using errcode = 'PF002';
  end if;
  select * into v_contact from pgflow.contacts where id = v_conversation.contact_id for update;
  select id into v_id from pgflow.messages where dedupe_key = v_key;
  if v_id is not null then
    return pg_catalog.jsonb_build_object('result', 'duplicate', 'message_id', v_id);
  end if;
  if v_contact.opted_out_at is not null then
    raise exception 'the lead opted out (%): nothing more may be sent to them',
      v_contact.opt_out_source using errcode = 'PF004';
  end if;
  v_conversation := pgflow._current_conversation(v_conversation);
  if v_contact.held_by is distinct from v_actor then
    perform pgflow.take_over(v_conversation.id, v_actor, p_user_id, 'replied to the lead', v_now);
  end if;
  perform 1 from pgflow.conversations where id = v_conversation.id for update;
  perform pgflow._set_reason('a person replied');
  insert into pgflow.messages
    (conversation_id, contact_id, direction, kind, body, delivery_status, segments, encoding,
     dedupe_key, created_at, updated_at)
  values (v_conversation.id, v_contact.id, 'outbound', 'human', v_body, 'queued',
          pgflow.sms_segments(v_body), pgflow.sms_encoding(v_body), v_key, v_now, v_now)
  returning id into v_id;
  perform pgflow._enqueue('send_sms', array[v_id], 18);
  perform pgflow._audit(v_actor, p_user_id, 'reply', v_conversation.id, v_contact.id,
    pg_catalog.jsonb_build_object('message_id', v_id, 'segments', pgflow.sms_segments(v_body)),
    v_now);
  return pg_catalog.jsonb_build_object('result', 'queued', 'message_id', v_id,
    'conversation_id', v_conversation.id, 'segments', pgflow.sms_segments(v_body));
end;
$$;
revoke execute on function pgflow.human_reply(bigint,text,text,bigint,text,timestamp with time zone) from public;
grant execute on function pgflow.human_reply(bigint,text,text,bigint,text,timestamp with time zone) to pgflow_operator;
grant execute on function pgflow.human_reply(bigint,text,text,bigint,text,timestamp with time zone) to pgflow_web;

-- One page of the inbox: {rows: [...], next: cursor | null}. Filters (p_filter): campaign
-- (slug), state (open | engaged | ended | held | review), outcome, q (the end of a phone
-- number, at least 3 digits, or the start of a first name, a last name or "first last").
-- Pages are keyset pages: p_after is the `next` of the page before. Bucket 1 needs a
-- person (a review, or a held lead), 2 is engaged with a lead text in the last 3 days (by
-- that text), 3 the rest (by last activity). Each bucket is its own statement on its own
-- index (custom plans only: a generic plan would sort every conversation); the rows are
-- built for the page's ids alone.
create or replace function pgflow.inbox(
  p_filter jsonb default '{}',
  p_after jsonb default null,
  p_limit integer default 50,
  p_now timestamptz default null
) returns jsonb
language plpgsql stable
security definer
set search_path = ''
set plan_cache_mode = force_custom_plan
as $$
declare
  v_recent timestamptz := coalesce(p_now, pg_catalog.now()) - interval '3 days';
  v_limit integer := least(greatest(coalesce(p_limit, 50), 1), 200);
  v_filter jsonb := coalesce(p_filter, '{}');
  v_campaign bigint;
  v_state text := nullif(v_filter ->> 'state', '');
  v_outcome text := nullif(v_filter ->> 'outcome', '');
  v_q text := pg_catalog.lower(nullif(pg_catalog.btrim(v_filter ->> 'q'), ''));
  v_digits text;
  v_word text;
  v_rest text;
  v_contacts bigint[];
  v_start integer := 1;
  v_at timestamptz;
  v_id bigint;
  v_page jsonb := '[]';
  v_more jsonb;
  v_last jsonb;
  v_rows jsonb;
begin
  if nullif(v_filter ->> 'campaign', '') is not null then
    select id into v_campaign from pgflow.campaigns where slug = v_filter ->> 'campaign';
    if not found then
      return '{"rows": [], "next": null}';
    end if;
  end if;
  if p_after is not null then
    v_start := coalesce((p_after ->> 'bucket')::integer, 1);
    v_at := (p_after ->> 'at')::timestamptz;
    v_id := (p_after ->> 'id')::bigint;
  end if;
  if v_q is not null then
    -- indexes: contacts_phone_suffix_idx, contacts_first_name_idx, contacts_last_name_idx
    v_digits := pg_catalog.regexp_replace(v_q, '[^0-9]', '', 'g');
    v_q := pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
             v_q, '\', '\\'), '%', '\%'), '_', '\_');
    v_word := pg_catalog.split_part(v_q, ' ', 1);
    v_rest := pg_catalog.btrim(pg_catalog.substr(v_q, pg_catalog.length(v_word) + 1));
    select pg_catalog.array_agg(x.id) into v_contacts
      from (select ct.id from pgflow.contacts ct
             where (pg_catalog.length(v_digits) >= 3
                    and pg_catalog.reverse(ct.phone) like pg_catalog.reverse(v_digits) || '%')
                or pg_catalog.lower(ct.first_name) like v_q || '%'
                or pg_catalog.lower(ct.last_name) like v_q || '%'
                or (v_rest <> '' and pg_catalog.lower(ct.first_name) = v_word
                    and pg_catalog.lower(ct.last_name) like v_rest || '%')
             limit 1000) x;
    if v_contacts is null then
      return '{"rows": [], "next": null}';
    end if;
  end if;

  for b in v_start..3 loop
    if b = 1 then
      -- from the two small sets (conversations_review_idx, contacts_held_idx)
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('id', t.id, 'bucket', 1,
               'sort_at', t.sort_at) order by t.sort_at desc, t.id desc)
        into v_more
        from (select cv.id, greatest(cv.last_inbound_at, cv.last_outbound_at, cv.created_at)
                       as sort_at
                from (select r.id from pgflow.conversations r where r.review_reason is not null
                      union
                      select h.id from pgflow.contacts hc
                        join pgflow.conversations h on h.contact_id = hc.id
                       where hc.held_at is not null
                         and (h.status <> 'ended' or h.conversion_status = 'escalated')) need
                join pgflow.conversations cv on cv.id = need.id
                join pgflow.contacts ct on ct.id = cv.contact_id
               where (v_campaign is null or cv.campaign_id = v_campaign)
                 and (v_contacts is null or cv.contact_id = any (v_contacts))
                 and (v_outcome is null or cv.conversion_status = v_outcome)
                 and (v_state is null
                      or (v_state in ('open', 'engaged', 'ended') and cv.status = v_state)
                      or (v_state = 'held' and ct.held_at is not null)
                      or (v_state = 'review' and cv.review_requested_at is not null))
                 and (v_start <> 1 or v_at is null
                      or (greatest(cv.last_inbound_at, cv.last_outbound_at, cv.created_at), cv.id)
                         < (v_at, v_id))
               order by 2 desc, 1 desc
               limit v_limit + 1 - pg_catalog.jsonb_array_length(v_page)) t;
    elsif b = 2 then
      -- conversations_engaged_inbound_idx
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('id', t.id, 'bucket', 2,
               'sort_at', t.sort_at) order by t.sort_at desc, t.id desc)
        into v_more
        from (select cv.id, cv.last_inbound_at as sort_at
                from pgflow.conversations cv
                join pgflow.contacts ct on ct.id = cv.contact_id
               where cv.status = 'engaged' and cv.last_inbound_at >= v_recent
                 and cv.review_requested_at is null and ct.held_at is null
                 and (v_campaign is null or cv.campaign_id = v_campaign)
                 and (v_contacts is null or cv.contact_id = any (v_contacts))
                 and (v_outcome is null or cv.conversion_status = v_outcome)
                 and (v_state is null or v_state = 'engaged')
                 and (v_start <> 2 or v_at is null or (cv.last_inbound_at, cv.id) < (v_at, v_id))
               order by cv.last_inbound_at desc, cv.id desc
               limit v_limit + 1 - pg_catalog.jsonb_array_length(v_page)) t;
    else
      -- conversations_activity_idx (or, for a search, the contacts' conversations)
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('id', t.id, 'bucket', 3,
               'sort_at', t.sort_at) order by t.sort_at desc, t.id desc)
        into v_more
        from (select cv.id, greatest(cv.last_inbound_at, cv.last_outbound_at, cv.created_at)
                       as sort_at
                from pgflow.conversations cv
                join pgflow.contacts ct on ct.id = cv.contact_id
               where cv.review_requested_at is null
                 and not (ct.held_at is not null
                          and (cv.status <> 'ended' or cv.conversion_status = 'escalated'))
                 and not (cv.status = 'engaged' and cv.last_inbound_at >= v_recent)
                 and (v_campaign is null or cv.campaign_id = v_campaign)
                 and (v_contacts is null or cv.contact_id = any (v_contacts))
                 and (v_outcome is null or cv.conversion_status = v_outcome)
                 and (v_state is null
                      or (v_state in ('open', 'engaged', 'ended') and cv.status = v_state)
                      or (v_state = 'held' and ct.held_at is not null))
                 and (v_start <> 3 or v_at is null
                      or (greatest(cv.last_inbound_at, cv.last_outbound_at, cv.created_at), cv.id)
                         < (v_at, v_id))
               order by 2 desc, 1 desc
               limit v_limit + 1 - pg_catalog.jsonb_array_length(v_page)) t;
    end if;
    v_page := v_page || coalesce(v_more, '[]');
    exit when pg_catalog.jsonb_array_length(v_page) > v_limit;
  end loop;

  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
           'id', cv.id, 'bucket', (k.value ->> 'bucket')::integer, 'sort_at', k.value -> 'sort_at',
           'activity_at', greatest(cv.last_inbound_at, cv.last_outbound_at, cv.created_at),
           'phone', ct.phone, 'first_name', ct.first_name, 'last_name', ct.last_name,
           'campaign', c.slug, 'status', cv.status, 'conversion_status', cv.conversion_status,
           'outcome_source', cv.outcome_source, 'review_reason', cv.review_reason,
           'held_at', ct.held_at, 'held_by', ct.held_by,
           'opted_out', ct.opted_out_at is not null, 'last_text', lm.body,
           'last_direction', lm.direction, 'last_kind', lm.kind) order by k.ordinality), '[]')
    into v_rows
    from pg_catalog.jsonb_array_elements(v_page) with ordinality k
    join pgflow.conversations cv on cv.id = (k.value ->> 'id')::bigint
    join pgflow.contacts ct on ct.id = cv.contact_id
    left join pgflow.campaigns c on c.id = cv.campaign_id
    left join lateral (
      select m.body, m.direction, m.kind from pgflow.messages m
       where m.conversation_id = cv.id order by m.created_at desc, m.id desc limit 1) lm on true
   where k.ordinality <= v_limit;
  if pg_catalog.jsonb_array_length(v_page) > v_limit then
    v_last := v_page -> (v_limit - 1);
    return pg_catalog.jsonb_build_object('rows', v_rows,
      'next', pg_catalog.jsonb_build_object('bucket', v_last -> 'bucket',
                                            'at', v_last -> 'sort_at', 'id', v_last -> 'id'));
  end if;
  return pg_catalog.jsonb_build_object('rows', v_rows, 'next', null);
end;
$$;
revoke execute on function pgflow.inbox(jsonb,jsonb,integer,timestamp with time zone) from public;
grant execute on function pgflow.inbox(jsonb,jsonb,integer,timestamp with time zone) to pgflow_operator;
grant execute on function pgflow.inbox(jsonb,jsonb,integer,timestamp with time zone) to pgflow_reader;
grant execute on function pgflow.inbox(jsonb,jsonb,integer,timestamp with time zone) to pgflow_web;

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

-- Record a Retell chat object (from any chat webhook, or from GET /get-chat before a drip
-- step): each text once, in order, on its conversation; the chat's state; and what each
-- new lead text sets off (pgflow._on_inbound). The chat's first agent message is the
-- message that started it (metadata pgflow_message_id): it is linked, never recorded
-- twice. Safe to call any number of times with any subset of the transcript, in any order.
create or replace function pgflow.record_chat(
  p_chat jsonb,
  p_event text default 'get_chat',
  p_engine_replies boolean default false,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_chat_id text := p_chat ->> 'chat_id';
  v_conversation pgflow.conversations;
  v_target pgflow.conversations;
  v_contact pgflow.contacts;
  v_started bigint;
  v_first_agent boolean := true;
  v_inserted bigint;
  v_inbound integer := 0;
  v_agent integer := 0;
  v_ended boolean := p_event in ('chat_ended', 'chat_analyzed')
                     or p_chat ->> 'chat_status' in ('ended', 'error');
  i record;
begin
  v_conversation := pgflow._chat_conversation(p_chat);
  if v_conversation.id is null then
    return pg_catalog.jsonb_build_object('result', 'unknown_chat');
  end if;
  -- one chat at a time per conversation: concurrent deliveries wait here
  select * into v_conversation from pgflow.conversations where id = v_conversation.id for update;
  select * into v_contact from pgflow.contacts where id = v_conversation.contact_id;

  if v_chat_id is not null then
    update pgflow.conversations
       set provider_chat_id = coalesce(provider_chat_id, v_chat_id),
           chat_status = case when v_ended then 'ended'
                              else coalesce(chat_status, 'ongoing') end,
           updated_at = v_now
     where id = v_conversation.id
       and (provider_chat_id is null or provider_chat_id = v_chat_id);
  end if;
  if (p_chat #>> '{metadata,pgflow_message_id}') ~ '^\d{1,18}$' then
    v_started := (p_chat #>> '{metadata,pgflow_message_id}')::bigint;
  end if;

  v_target := v_conversation;
  for i in select * from pgflow._chat_items(p_chat) order by pos loop
    if i.role = 'agent' and v_first_agent then
      v_first_agent := false;
      if v_started is not null then
        update pgflow.messages
           set chat_message_id = i.key, chat_id = coalesce(chat_id, v_chat_id)
         where id = v_started and contact_id = v_contact.id
           -- our own id was set for a post into a live chat that ended first (409)
           and (chat_message_id is null or chat_message_id = 'pgflow-' || id)
           and not exists (select 1 from pgflow.messages x where x.chat_message_id = i.key);
        if found then
          continue;
        end if;
      end if;
    end if;
    if exists (select 1 from pgflow.messages where chat_message_id = i.key) then
      continue;
    end if;
    if i.role = 'user' and v_target.status = 'ended' and v_contact.opted_out_at is null then
      v_target := pgflow._live_conversation(v_target, v_now);
    end if;
    if i.role = 'agent' then
      perform pgflow._set_reason('agent message in chat ' || coalesce(v_chat_id, '?'));
      insert into pgflow.messages
        (conversation_id, contact_id, direction, kind, body, delivery_status, segments, encoding,
         dedupe_key, chat_id, chat_message_id, created_at, sent_at, updated_at)
      values (v_target.id, v_contact.id, 'outbound', 'agent', i.content, 'sent',
              pgflow.sms_segments(i.content), pgflow.sms_encoding(i.content),
              'chat:' || i.key, v_chat_id, i.key, coalesce(i.at, v_now), coalesce(i.at, v_now),
              v_now)
      on conflict (chat_message_id) where chat_message_id is not null do nothing
      returning id into v_inserted;
      if v_inserted is not null then
        v_agent := v_agent + 1;
        update pgflow.conversations
           set last_outbound_at = greatest(last_outbound_at, coalesce(i.at, v_now))
         where id = v_target.id;
      end if;
    else
      perform pgflow._set_reason('lead text in chat ' || coalesce(v_chat_id, '?'));
      insert into pgflow.messages
        (conversation_id, contact_id, direction, kind, body, delivery_status, segments, encoding,
         dedupe_key, chat_id, chat_message_id, created_at, updated_at)
      values (v_target.id, v_contact.id, 'inbound', 'lead', i.content, 'received',
              pgflow.sms_segments(i.content), pgflow.sms_encoding(i.content),
              'chat:' || i.key, v_chat_id, i.key, coalesce(i.at, v_now), v_now)
      on conflict (chat_message_id) where chat_message_id is not null do nothing
      returning id into v_inserted;
      if v_inserted is not null then
        v_inbound := v_inbound + 1;
        perform pgflow._on_inbound(v_inserted, p_engine_replies, v_now);
        select * into v_target from pgflow.conversations where id = v_target.id;
        select * into v_contact from pgflow.contacts where id = v_contact.id;
      end if;
    end if;
  end loop;
  if p_event = 'chat_analyzed' then
    perform pgflow._record_retell_analysis(v_conversation.id, p_chat, v_now);
  end if;
  -- A chat that ended on an engaged conversation (Retell's silence timer, or its agent
  -- closed it) asks for the outcome to be classified.
  select * into v_target from pgflow.conversations where id = v_target.id;
  if v_ended and v_target.status = 'engaged' and v_target.provider_chat_id = v_chat_id then
    perform pgflow._request_classification(v_target.id, v_now);
  end if;
  return pg_catalog.jsonb_build_object(
    'result', 'recorded', 'conversation_id', v_target.id, 'inbound', v_inbound,
    'agent', v_agent, 'chat_ended', v_ended);
end;
$$;

-- One Retell webhook, one call: recorded in webhook_deliveries under a key made of its
-- event, chat and content (Retell's retries are the same delivery: they change nothing
-- and get the first answer back), then handled by its event. Unknown events and chats are
-- recorded and ignored. p_engine_replies: the transport takes our text (the sandbox), so
-- the engine writes the agent's replies.
create or replace function pgflow.record_retell_event(
  p_payload jsonb, p_engine_replies boolean default false, p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_event text := coalesce(nullif(p_payload ->> 'event', ''), '(none)');
  v_key text;
  v_delivery bigint;
  v_result jsonb;
begin
  if p_payload is null or pg_catalog.jsonb_typeof(p_payload) <> 'object' then
    raise exception 'a webhook payload must be a JSON object' using errcode = 'PF003';
  end if;
  v_key := pgflow._short_key(v_event) || ':'
           || pgflow._short_key(coalesce(p_payload #>> '{chat,chat_id}',
                                         p_payload #>> '{chat_inbound,chat_id}', '-'))
           || ':' || pg_catalog.md5(p_payload::text);
  insert into pgflow.webhook_deliveries (provider, delivery_key, event_type, payload, received_at)
  values ('retell', v_key, pg_catalog.left(v_event, 100), p_payload, v_now)
  on conflict (provider, delivery_key) do nothing
  returning id into v_delivery;
  if v_delivery is null then
    select pg_catalog.jsonb_build_object('result', 'duplicate', 'first_result', d.result)
           || case when d.response is not null
                   then pg_catalog.jsonb_build_object('response', d.response)
                   else '{}'::jsonb end
      into v_result
      from pgflow.webhook_deliveries d where d.provider = 'retell' and d.delivery_key = v_key;
    return v_result;
  end if;

  if v_event in ('chat_inbound', 'sms_inbound') then
    v_result := pgflow._answer_inbound(p_payload, p_engine_replies, v_now);
  elsif v_event in ('chat_started', 'transcript_updated', 'chat_ended', 'chat_analyzed') then
    if pg_catalog.jsonb_typeof(p_payload -> 'chat') = 'object' then
      v_result := pgflow.record_chat(p_payload -> 'chat', v_event, p_engine_replies, v_now);
    else
      v_result := '{"result": "malformed", "detail": "no chat object"}';
    end if;
  else
    v_result := '{"result": "ignored", "detail": "unknown event"}';
  end if;
  update pgflow.webhook_deliveries
     set processed_at = v_now, result = v_result ->> 'result', response = v_result -> 'response'
   where id = v_delivery;
  return v_result || pg_catalog.jsonb_build_object('delivery_id', v_delivery);
end;
$$;

-- One sign-in attempt, recorded; a success opens a session for the token's hash (idle
-- expiry 12 h, absolute 7 days) and is written to the audit trail. PF002 when the user
-- is gone or disabled by then.
create or replace function pgflow.record_sign_in(
  p_email text,
  p_ok boolean,
  p_token_hash bytea,
  p_ip text default null,
  p_user_agent text default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_email text := pg_catalog.left(pg_catalog.lower(pg_catalog.btrim(coalesce(p_email, ''))), 254);
  v_user pgflow.console_users;
  v_session bigint;
begin
  insert into pgflow.console_sign_ins (email, ok, ip, attempted_at)
  values (v_email, p_ok, pg_catalog.left(p_ip, 64), v_now);
  delete from pgflow.console_sign_ins
   where email = v_email and attempted_at < v_now - interval '30 days';
  if not p_ok then
    return '{"result": "failed"}';
  end if;
  select * into v_user from pgflow.console_users where email = v_email and disabled_at is null;
  if not found then
    raise exception 'no active console user %', v_email using errcode = 'PF002';
  end if;
  insert into pgflow.console_sessions
    (user_id, token_hash, created_at, last_seen_at, expires_at, ip, user_agent)
  values (v_user.id, p_token_hash, v_now, v_now, v_now + interval '12 hours',
          pg_catalog.left(p_ip, 64), pg_catalog.left(p_user_agent, 300))
  returning id into v_session;
  perform pgflow._audit(v_user.email, v_user.id, 'sign_in', null, null,
                        pg_catalog.jsonb_build_object('ip', pg_catalog.left(p_ip, 64)), v_now);
  return pg_catalog.jsonb_build_object('result', 'signed_in', 'session_id', v_session,
                                       'user_id', v_user.id, 'role', v_user.role);
end;
$$;
revoke execute on function pgflow.record_sign_in(text,boolean,bytea,text,text,timestamp with time zone) from public;
grant execute on function pgflow.record_sign_in(text,boolean,bytea,text,text,timestamp with time zone) to pgflow_web;

create or replace function pgflow.sends_per_hour(
  p_campaign text default null, p_hours integer default 24, p_now timestamptz default null
) returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  with bounds as (
    select pg_catalog.date_trunc('hour', coalesce(p_now, pg_catalog.now())) as last_hour,
           least(greatest(coalesce(p_hours, 24), 1), 168) as hours
  ), hours as (
    select b.last_hour - pg_catalog.make_interval(hours => g) as hour
      from bounds b, pg_catalog.generate_series(0, b.hours - 1) g
  ), sent as (
    select pg_catalog.date_trunc('hour', m.sent_at) as hour, pg_catalog.count(*) as n
      from pgflow.messages m
      join pgflow.conversations cv on cv.id = m.conversation_id
      left join pgflow.campaigns c on c.id = cv.campaign_id, bounds b
     where m.direction = 'outbound' and m.sent_at is not null
       and m.sent_at >= b.last_hour - pg_catalog.make_interval(hours => b.hours - 1)
       and (p_campaign is null or c.slug = p_campaign)
     group by 1
  )
  select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('hour', h.hour,
                                                            'sent', coalesce(s.n, 0))
                              order by h.hour)
    from hours h left join sent s on s.hour = h.hour
$$;
revoke execute on function pgflow.sends_per_hour(text,integer,timestamp with time zone) from public;
grant execute on function pgflow.sends_per_hour(text,integer,timestamp with time zone) to pgflow_reader;
grant execute on function pgflow.sends_per_hour(text,integer,timestamp with time zone) to pgflow_web;

-- A person gives a conversation its outcome (pgflow.set_outcome, source human: nothing
-- overwrites it, the review is cleared), written to the audit trail.
create or replace function pgflow.settle(
  p_conversation_id bigint,
  p_status text,
  p_reason text,
  p_actor text,
  p_user_id bigint default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_actor text := pgflow._actor(p_actor);
  v_before pgflow.conversations;
  v_result jsonb;
begin
  if p_status is null or p_status not in
     ('success', 'qualified', 'unqualified', 'escalated', 'no_response', 'discarded') then
    raise exception 'unknown outcome %', coalesce(p_status, '(none)') using errcode = 'PF003';
  end if;
  select * into v_before from pgflow.conversations where id = p_conversation_id;
  if not found then
    raise exception 'conversation % does not exist', p_conversation_id using errcode = 'PF002';
  end if;
  v_result := pgflow.set_outcome(p_conversation_id, p_status,
    coalesce(nullif(pg_catalog.btrim(p_reason), ''), 'set by ' || v_actor), 'human', v_now);
  perform pgflow._audit(v_actor, p_user_id, 'set_outcome', p_conversation_id,
    v_before.contact_id, pg_catalog.jsonb_build_object('status', p_status,
      'before', v_before.conversion_status, 'result', v_result ->> 'result',
      'reason', nullif(pg_catalog.btrim(p_reason), '')), v_now);
  return v_result;
end;
$$;
revoke execute on function pgflow.settle(bigint,text,text,text,bigint,timestamp with time zone) from public;
grant execute on function pgflow.settle(bigint,text,text,text,bigint,timestamp with time zone) to pgflow_operator;
grant execute on function pgflow.settle(bigint,text,text,text,bigint,timestamp with time zone) to pgflow_web;

-- Dead letters re-queued or discarded by a person: pgflow.requeue_dead_letters or
-- pgflow.discard_dead_letters, each message done written to the audit trail.
create or replace function pgflow.settle_dead_letters(
  p_action text,
  p_ids bigint[],
  p_actor text,
  p_user_id bigint default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_actor text := pgflow._actor(p_actor);
  v_results jsonb;
  r record;
begin
  if p_action = 'requeue' then
    v_results := pgflow.requeue_dead_letters(p_ids, null, v_now);
  elsif p_action = 'discard' then
    v_results := pgflow.discard_dead_letters(p_ids, v_now);
  else
    raise exception 'unknown dead-letter action %', coalesce(p_action, '(none)')
      using errcode = 'PF003';
  end if;
  for r in select (x ->> 'id')::bigint as id, x ->> 'result' as result
             from pg_catalog.jsonb_array_elements(v_results) x
            where x ->> 'result' in ('requeued', 'discarded')
  loop
    perform pgflow._audit(v_actor, p_user_id, p_action, m.conversation_id, m.contact_id,
                          pg_catalog.jsonb_build_object('message_id', r.id), v_now)
       from pgflow.messages m where m.id = r.id;
  end loop;
  return v_results;
end;
$$;
revoke execute on function pgflow.settle_dead_letters(text,bigint[],text,bigint,timestamp with time zone) from public;
grant execute on function pgflow.settle_dead_letters(text,bigint[],text,bigint,timestamp with time zone) to pgflow_operator;
grant execute on function pgflow.settle_dead_letters(text,bigint[],text,bigint,timestamp with time zone) to pgflow_web;

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
  r record;
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
  update pgflow.contacts set held_at = coalesce(held_at, v_now), held_by = v_actor,
         updated_at = v_now
   where id = v_contact.id;
  insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
  values (v_now, 'contact', v_contact.id,
          case when v_contact.held_at is null then 'with_agent' else 'held' end, 'held',
          'taken over by ' || v_actor || coalesce(': ' || nullif(pg_catalog.btrim(p_reason), ''), ''));
  for r in select id from pgflow.enrollments
            where contact_id = v_contact.id and status = 'active' order by id
  loop
    perform pgflow.pause_enrollment(r.id, 'a person took over', v_now);
  end loop;
  perform pgflow._end_chats(array(select id from pgflow.conversations
                                   where contact_id = v_contact.id and status <> 'ended'));
  perform pgflow._audit(v_actor, p_user_id, 'takeover', p_conversation_id, v_contact.id,
    pg_catalog.jsonb_build_object('reason', nullif(pg_catalog.btrim(p_reason), ''),
                                  'from', v_contact.held_by), v_now);
  return pg_catalog.jsonb_build_object('result', 'held', 'contact_id', v_contact.id,
    'conversation_id', p_conversation_id, 'held_by', v_actor, 'previous', v_contact.held_by);
end;
$$;
revoke execute on function pgflow.take_over(bigint,text,bigint,text,timestamp with time zone) from public;
grant execute on function pgflow.take_over(bigint,text,bigint,text,timestamp with time zone) to pgflow_operator;
grant execute on function pgflow.take_over(bigint,text,bigint,text,timestamp with time zone) to pgflow_web;

drop function pgflow.takeover(text,text,timestamp with time zone);

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

  -- No reply by the deadline after the last step: no_response by rule, unless a person
  -- holds the lead (theirs to settle: no rule ends a conversation under them).
  for v_conversation in
    select c.id from pgflow.conversations c
     where c.status = 'open' and c.reply_deadline_at <= v_now
       and not exists (select 1 from pgflow.messages m
                        where m.conversation_id = c.id and m.direction = 'outbound'
                          and m.delivery_status in ('pending', 'queued', 'sending'))
       and not exists (select 1 from pgflow.contacts ct
                        where ct.id = c.contact_id and ct.held_at is not null)
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
