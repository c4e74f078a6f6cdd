-- Twilio as a transport: the inbound webhook (record_twilio_inbound, the carrier's own STOP/START/HELP answer counted once), a transport and a ValidityPeriod on each claim, a carrier's refusal of the number acting at send time, a burst of filtered texts (not one) pausing a campaign, the receipt sweeper from the tick, delivery in the funnel, hand back and a person's reply aware of Twilio lines, twilio_numbers for the setup.
-- depends: 0027_index_receipts

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

  v_conversation := pgflow._inbound_conversation(v_contact.id, v_line, p_now);
  if v_conversation.id is null then
    return pg_catalog.jsonb_build_object('result', 'no_agent_rejected', 'response', v_reject);
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
    'transport', pgflow._line_transport(v_conversation.from_number),
    -- how long the provider may hold the text before it is dropped (Twilio's
    -- ValidityPeriod): a drip text never arrives after its send window closes
    'validity_seconds', pgflow._validity_seconds(m.kind, v_contact, v_campaign, v_now),
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

-- The receipt sweeper (from the tick): Twilio texts sent over two hours ago with no final
-- status (a callback lost after Twilio's one retry) get a check_receipt job that asks
-- Twilio. Each text is asked at most every six hours, and not after three days (some
-- carriers never confirm: `sent` is then its last word). The number queued.
create or replace function pgflow._enqueue_receipt_checks(p_now timestamptz, p_limit integer)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_ids bigint[];
begin
  with due as (
    select m.id from pgflow.messages m
     where m.delivery_status = 'sent' and m.transport = 'twilio'
       and m.sent_at < p_now - interval '2 hours' and m.sent_at > p_now - interval '3 days'
       and m.provider_message_id is not null
       and (m.receipt_checked_at is null or m.receipt_checked_at < p_now - interval '6 hours')
     order by m.sent_at
     limit p_limit
       for update skip locked
  ), marked as (
    update pgflow.messages m set receipt_checked_at = p_now
      from due where m.id = due.id
    returning m.id
  )
  select pg_catalog.array_agg(id order by id) into v_ids from marked;
  return pgflow._enqueue('check_receipt', v_ids, 1);
end;
$$;
revoke execute on function pgflow._enqueue_receipt_checks(timestamp with time zone,integer) from public;

-- The live conversation of a lead who texted our line p_line, opened when there is none:
-- on the drip the lead is in on this line, else the last campaign that used it, with its
-- agent, else the number's inbound agent, else the agent the lead last talked to there.
-- A row with a null id when no agent can answer (the caller refuses the text).
create or replace function pgflow._inbound_conversation(
  p_contact_id bigint, p_line text, p_now timestamptz
) returns pgflow.conversations
language plpgsql
set search_path = ''
as $$
declare
  v_conversation pgflow.conversations;
  v_campaign pgflow.campaigns;
  v_enrollment bigint;
  v_agent bigint;
begin
  select * into v_conversation from pgflow.conversations
   where contact_id = p_contact_id and from_number = p_line and status <> 'ended';
  if v_conversation.id is not null then
    return v_conversation;
  end if;
  select e.id, e.campaign_id into v_enrollment, v_campaign.id
    from pgflow.enrollments e
    join pgflow.campaign_numbers cn on cn.campaign_id = e.campaign_id
   where e.contact_id = p_contact_id and cn.number = p_line
   order by (e.status in ('active', 'paused')) desc, e.enrolled_at desc, e.id desc limit 1;
  select * into v_campaign from pgflow.campaigns where id = v_campaign.id;
  v_agent := coalesce(v_campaign.agent_id,
                      (select n.inbound_agent_id from pgflow.sending_numbers n
                        where n.number = p_line),
                      (select cv.agent_id from pgflow.conversations cv
                        where cv.contact_id = p_contact_id and cv.from_number = p_line
                        order by cv.id desc limit 1));
  if v_agent is null then
    return v_conversation;
  end if;
  perform pgflow._set_reason('lead wrote first');
  insert into pgflow.conversations
    (contact_id, campaign_id, agent_id, enrollment_id, from_number, created_at, updated_at)
  values (p_contact_id, v_campaign.id, v_agent, v_enrollment, p_line, p_now, p_now)
  on conflict (contact_id, from_number) where status <> 'ended' do nothing
  returning * into v_conversation;
  if v_conversation.id is null then
    select * into v_conversation from pgflow.conversations
     where contact_id = p_contact_id and from_number = p_line and status <> 'ended';
  end if;
  return v_conversation;
end;
$$;
revoke execute on function pgflow._inbound_conversation(bigint,text,timestamp with time zone) from public;

-- The transport of one of our lines: the transport of the campaigns that send from it (a
-- number carries one: apply_campaigns refuses a mix), retell for a line no campaign uses.
create or replace function pgflow._line_transport(p_number text) returns text
language sql stable
set search_path = ''
as $$
  select coalesce((select c.transport from pgflow.campaign_numbers cn
                     join pgflow.campaigns c on c.id = cn.campaign_id
                    where cn.number = p_number
                    order by (c.status <> 'archived') desc, c.id desc limit 1), 'retell')
$$;
revoke execute on function pgflow._line_transport(text) from public;

-- What a carrier's refusal of one of our texts sets off, by the error's class:
--   bad_number  the contact's drips stop and its live conversations end `discarded`
--   opted_out   the contact is suppressed (source `carrier`: Twilio already confirmed)
--   filtered    a warning alert per campaign (carrier_filtered:<slug>); a burst (3 of the
--               campaign's texts filtered within an hour) pauses the campaign with a
--               critical alert (carrier_paused:<slug>): one filtered text is the carrier's
--               judgment of one text, a burst is the campaign's content or reputation
--   sender      (the number is not registered for A2P) the campaign pauses at once and a
--               critical alert opens (carrier_sender:<slug>)
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
  v_filtered integer;
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
    if v_class = 'filtered' then
      select pg_catalog.count(*) into v_filtered
        from pgflow.messages m
        join pgflow.conversations cv on cv.id = m.conversation_id
        left join pgflow.enrollments e on e.id = m.enrollment_id
       where coalesce(e.campaign_id, cv.campaign_id) = v_campaign.id
         and m.direction = 'outbound' and m.carrier_error_code = 30007
         and m.updated_at > p_now - interval '1 hour';
      perform pgflow.open_alert('carrier_filtered:' || v_campaign.slug, 'warning',
        pg_catalog.format('campaign %s: %s of its texts filtered by the carrier in the last hour (%s pauses it)',
                          v_campaign.slug, v_filtered, 3),
        pg_catalog.jsonb_build_object('campaign', v_campaign.slug, 'message_id', p_message.id,
                                      'error_code', p_code, 'last_hour', v_filtered), p_now);
      if v_filtered < 3 then
        return v_class;
      end if;
      v_reason := pg_catalog.format('%s texts filtered by the carrier (error 30007) within an hour',
                                    v_filtered);
    end if;
    update pgflow.campaigns set status = 'paused', updated_at = p_now
     where id = v_campaign.id and status = 'active';
    if found then
      insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
      values (p_now, 'campaign', v_campaign.id, 'active', 'paused', v_reason);
    end if;
    perform pgflow.open_alert(
      case v_class when 'filtered' then 'carrier_paused:' else 'carrier_sender:' end
        || v_campaign.slug, 'critical',
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

drop function pgflow._on_inbound(bigint,boolean,timestamp with time zone);

-- What one new inbound message sets off, in order: opt-out before anything else; for an
-- opted-out contact only START counts; otherwise the conversation is engaged (drips
-- paused), a request for a person escalates it (an alert; the lead is told), HELP gets the
-- help text, an ambiguous opt-out word gets an LLM judgment, and
-- where the engine writes the agent's replies (the sandbox) an agent_reply job is queued
-- after the agent's debounce, so a burst of texts gets one answer.
-- p_carrier_answered: the keyword the carrier itself answered (Twilio replies to STOP,
-- START and HELP on its own): that opt-out or opt-in is recorded with source `carrier` and
-- no confirmation of ours follows, nor our help text: the lead gets one answer, not two.
create or replace function pgflow._on_inbound(
  p_message_id bigint, p_engine_replies boolean, p_now timestamptz,
  p_carrier_answered text default null
) returns text
language plpgsql
set search_path = ''
as $$
declare
  m pgflow.messages;
  v_contact pgflow.contacts;
  v_intent text;
  v_rule text;
  v_conversation pgflow.conversations;
  v_campaign pgflow.campaigns;
  v_debounce interval;
begin
  select * into m from pgflow.messages where id = p_message_id;
  select * into v_contact from pgflow.contacts where id = m.contact_id for update;
  select i.intent, i.rule into v_intent, v_rule from pgflow.inbound_intent(m.body) i;
  update pgflow.messages set intent = v_intent where id = m.id;
  update pgflow.conversations
     set last_inbound_at = greatest(last_inbound_at, m.created_at), updated_at = p_now,
         classify_requested_at = null  -- the conversation goes on: classify it when quiet
   where id = m.conversation_id and status <> 'ended';

  if v_contact.opted_out_at is not null then
    if v_intent = 'opt_in' or p_carrier_answered = 'START' then
      perform pgflow.opt_in_contact(v_contact.id,
        case when p_carrier_answered = 'START' then 'carrier' else v_rule end, m.id, m.body, p_now);
      return 'opt_in';
    end if;
    return 'ignored_opted_out';
  end if;
  if v_intent = 'opt_out' or p_carrier_answered = 'STOP' then
    perform pgflow.opt_out_contact(v_contact.id,
      case when p_carrier_answered = 'STOP' then 'carrier' else v_rule end, m.id, m.body, p_now);
    return 'opt_out';
  end if;

  perform pgflow._engage(m.conversation_id, m.created_at, p_now);
  select * into v_conversation from pgflow.conversations where id = m.conversation_id;
  if v_conversation.status = 'ended' then
    return 'recorded';
  end if;
  if v_intent = 'human' then
    perform pgflow._escalate(v_conversation.id, 'the lead asked for a person: '
                             || pg_catalog.left(m.body, 200), 'rule', true, p_now);
    return 'human';
  end if;
  if p_carrier_answered = 'HELP' then
    return 'help';  -- the carrier sent its help text
  end if;
  if v_intent = 'help' then
    select * into v_campaign from pgflow.campaigns where id = v_conversation.campaign_id;
    perform pgflow._system_message(v_conversation.id,
      coalesce(v_campaign.help_text,
               pg_catalog.format('%s: reply STOP to opt out. Msg & data rates may apply.',
                                 coalesce(v_campaign.name, 'Help'))),
      'help:' || m.id, p_now);
    return 'help';
  end if;
  if v_intent = 'maybe_opt_out' then
    perform pgflow._enqueue('judge_opt_out', array[m.id], 30);
  end if;
  if p_engine_replies then
    select a.reply_debounce into v_debounce from pgflow.agents a
     where a.id = v_conversation.agent_id;
    perform pgflow._enqueue_after('agent_reply', array[m.id], 15,
                                  pg_catalog.now() + coalesce(v_debounce, interval '3 seconds'));
  end if;
  return v_intent;
end;
$$;
revoke execute on function pgflow._on_inbound(bigint,boolean,timestamp with time zone,text) from public;

-- How long a provider may hold one text before dropping it (Twilio's ValidityPeriod,
-- 1..36000 s): a drip text until its send window closes in the lead's zone (it never
-- arrives at night), an agent's answer 30 minutes (a late answer confuses), a person's
-- text 4 hours, a system text (an opt-out confirmation, help) the whole 10 hours.
create or replace function pgflow._validity_seconds(
  p_kind text, p_contact pgflow.contacts, p_campaign pgflow.campaigns, p_now timestamptz
) returns integer
language plpgsql stable
set search_path = ''
as $$
declare
  v_tz text := coalesce(p_contact.timezone, p_campaign.timezone, 'America/New_York');
  v_end timestamptz;
begin
  if p_kind = 'campaign' and p_campaign.window_end is not null then
    v_end := ((p_now at time zone v_tz)::date + p_campaign.window_end) at time zone v_tz;
    return least(36000, greatest(60, extract(epoch from v_end - p_now)::integer));
  end if;
  return case p_kind when 'agent' then 1800 when 'human' then 14400 else 36000 end;
end;
$$;
revoke execute on function pgflow._validity_seconds(text,pgflow.contacts,pgflow.campaigns,timestamp with time zone) from public;

-- The declarative upsert behind `pgflow campaign apply`. p_doc:
--   {"agents": [{name, prompt, model?, retell_agent_id?, max_turns?, reply_debounce?}],
--    "campaigns": [{slug, name, agent, from_number, status?, timezone?, window_start?,
--                   window_end?, window_days?, reply_timeout?, silence_timeout?, daily_cap?,
--                   max_attempts?, help_text?, opt_out_text?, fallbacks?, goal?,
--                   from_numbers?, transport?, steps: [{delay, body}]}],
--    "numbers": [...]}
-- Agents upsert by name, campaigns by slug. Steps are replaced as a whole, but a step some
-- enrollment has already passed may not change (PF005). Returns what was done per item.
-- from_numbers is the pool (from_number first; default [from_number]); numbers are
-- [{number, inbound_agent?, per_second?, daily_segments?}] (a limit key that is absent keeps the number's limit; null removes it). Every number of
-- a pool is registered as a sending number. transport is retell (the default) or twilio; a
-- number carries one transport (its inbound texts come from that provider): a number that
-- campaigns of both would share is refused (PF003).
create or replace function pgflow.apply_campaigns(p_doc jsonb, p_now timestamptz default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_item jsonb;
  v_id bigint;
  v_inserted boolean;
  v_changed boolean;
  v_agent_id bigint;
  v_campaign pgflow.campaigns;
  v_old jsonb;
  v_new jsonb;
  v_first_diff integer;
  v_passed integer;
  v_result jsonb := '{"agents": [], "campaigns": [], "numbers": []}'::jsonb;
  v_steps_action text;
  v_pool text[];
  v_old_pool text[];
  v_conflict text;
  v_other text;
begin
  for v_item in select * from pg_catalog.jsonb_array_elements(coalesce(p_doc -> 'agents', '[]'))
  loop
    insert into pgflow.agents as a (name, prompt, model, retell_agent_id, max_turns,
                                    reply_debounce, created_at, updated_at)
    values (v_item ->> 'name', v_item ->> 'prompt', v_item ->> 'model',
            v_item ->> 'retell_agent_id', coalesce((v_item ->> 'max_turns')::integer, 10),
            coalesce((v_item ->> 'reply_debounce')::interval, '3 seconds'), v_now, v_now)
    on conflict (name) do update set
      prompt = excluded.prompt, model = excluded.model,
      retell_agent_id = excluded.retell_agent_id, max_turns = excluded.max_turns,
      reply_debounce = excluded.reply_debounce, updated_at = excluded.updated_at
    where (a.prompt, a.model, a.retell_agent_id, a.max_turns, a.reply_debounce)
          is distinct from (excluded.prompt, excluded.model, excluded.retell_agent_id,
                            excluded.max_turns, excluded.reply_debounce)
    returning id, (xmax = 0) into v_id, v_inserted;
    v_result := pg_catalog.jsonb_set(v_result, '{agents}', (v_result -> 'agents') ||
      pg_catalog.jsonb_build_object('name', v_item ->> 'name', 'action',
        case when v_id is null then 'unchanged' when v_inserted then 'created' else 'updated' end));
  end loop;

  for v_item in select * from pg_catalog.jsonb_array_elements(coalesce(p_doc -> 'campaigns', '[]'))
  loop
    select id into v_agent_id from pgflow.agents where name = v_item ->> 'agent';
    if v_agent_id is null then
      raise exception 'campaign %: unknown agent %', v_item ->> 'slug', v_item ->> 'agent'
        using errcode = 'PF003';
    end if;
    if pg_catalog.jsonb_array_length(coalesce(v_item -> 'steps', '[]')) = 0 then
      raise exception 'campaign %: at least one step is required', v_item ->> 'slug'
        using errcode = 'PF003';
    end if;
    v_id := null;
    insert into pgflow.campaigns as c
      (slug, name, agent_id, from_number, status, timezone, window_start, window_end,
       window_days, reply_timeout, silence_timeout, daily_cap, max_attempts, help_text,
       opt_out_text, fallbacks, goal, transport, created_at, updated_at)
    values (
      v_item ->> 'slug', v_item ->> 'name', v_agent_id, v_item ->> 'from_number',
      coalesce(v_item ->> 'status', 'active'),
      coalesce(v_item ->> 'timezone', 'America/New_York'),
      coalesce((v_item ->> 'window_start')::time, '09:00'),
      coalesce((v_item ->> 'window_end')::time, '20:00'),
      coalesce((select pg_catalog.array_agg(d::smallint order by d::smallint)
                  from pg_catalog.jsonb_array_elements_text(v_item -> 'window_days') d),
               '{1,2,3,4,5,6}'),
      coalesce((v_item ->> 'reply_timeout')::interval, '3 days'),
      coalesce((v_item ->> 'silence_timeout')::interval, '24 hours'),
      coalesce((v_item ->> 'daily_cap')::integer, 3),
      coalesce((v_item ->> 'max_attempts')::integer, 6),
      v_item ->> 'help_text',
      coalesce(v_item ->> 'opt_out_text',
        'You are unsubscribed and will receive no more messages. Reply START to resubscribe.'),
      coalesce(v_item -> 'fallbacks', '{}'),
      v_item ->> 'goal',
      coalesce(v_item ->> 'transport', 'retell'),
      v_now, v_now)
    on conflict (slug) do update set
      name = excluded.name, agent_id = excluded.agent_id, from_number = excluded.from_number,
      status = case when v_item ? 'status' then excluded.status else c.status end,
      timezone = excluded.timezone, window_start = excluded.window_start,
      window_end = excluded.window_end, window_days = excluded.window_days,
      reply_timeout = excluded.reply_timeout, silence_timeout = excluded.silence_timeout,
      daily_cap = excluded.daily_cap, max_attempts = excluded.max_attempts,
      help_text = excluded.help_text, opt_out_text = excluded.opt_out_text,
      fallbacks = excluded.fallbacks, goal = excluded.goal, transport = excluded.transport,
      updated_at = excluded.updated_at
    where (c.name, c.agent_id, c.from_number, c.timezone, c.window_start, c.window_end,
           c.window_days, c.reply_timeout, c.silence_timeout, c.daily_cap, c.max_attempts,
           c.help_text, c.opt_out_text, c.fallbacks, c.goal, c.transport,
           case when v_item ? 'status' then excluded.status else c.status end)
          is distinct from
          (excluded.name, excluded.agent_id, excluded.from_number, excluded.timezone,
           excluded.window_start, excluded.window_end, excluded.window_days,
           excluded.reply_timeout, excluded.silence_timeout, excluded.daily_cap,
           excluded.max_attempts, excluded.help_text, excluded.opt_out_text,
           excluded.fallbacks, excluded.goal, excluded.transport, c.status)
    returning id, (xmax = 0) into v_id, v_inserted;
    v_changed := v_id is not null;
    select * into v_campaign from pgflow.campaigns where slug = v_item ->> 'slug';

    -- Steps: compare old and new; the first position that differs must not have been passed.
    select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
             'position', position, 'delay', delay, 'body', body) order by position), '[]')
      into v_old from pgflow.campaign_steps where campaign_id = v_campaign.id;
    select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
             'position', ord, 'delay', (s ->> 'delay')::interval, 'body', s ->> 'body')
             order by ord)
      into v_new from pg_catalog.jsonb_array_elements(v_item -> 'steps') with ordinality as t(s, ord);
    if v_old = v_new then
      v_steps_action := 'unchanged';
    else
      select pg_catalog.min(i) into v_first_diff
        from pg_catalog.generate_series(0, greatest(pg_catalog.jsonb_array_length(v_old),
                                                    pg_catalog.jsonb_array_length(v_new)) - 1) i
       where (v_old -> i) is distinct from (v_new -> i);
      v_first_diff := v_first_diff + 1;
      select pg_catalog.max(m.step_position) into v_passed
        from pgflow.messages m
        join pgflow.enrollments e on e.id = m.enrollment_id
       where e.campaign_id = v_campaign.id and m.kind = 'campaign';
      if v_passed is not null and v_passed >= v_first_diff then
        raise exception
          'campaign %: step % differs from the applied one, but enrollments have already passed step %; steps 1..% are fixed (append new steps after them, or create a new campaign)',
          v_campaign.slug, v_first_diff, v_passed, v_passed
          using errcode = 'PF005';
      end if;
      delete from pgflow.campaign_steps where campaign_id = v_campaign.id;
      insert into pgflow.campaign_steps (campaign_id, position, delay, body, created_at)
      select v_campaign.id, (s ->> 'position')::integer, (s ->> 'delay')::interval, s ->> 'body', v_now
        from pg_catalog.jsonb_array_elements(v_new) s;
      v_steps_action := 'replaced';
      v_changed := true;
    end if;
    -- The pool: from_number first, then the others in file order. A conversation keeps
    -- its number even when the number leaves the pool.
    insert into pgflow.sending_numbers (number, created_at, updated_at)
    select n, v_now, v_now
      from pg_catalog.jsonb_array_elements_text(
             coalesce(v_item -> 'from_numbers', '[]') || pg_catalog.to_jsonb(v_campaign.from_number)) n
    on conflict (number) do nothing;
    select pg_catalog.array_agg(number order by position) into v_old_pool
      from pgflow.campaign_numbers where campaign_id = v_campaign.id;
    select pg_catalog.array_agg(n order by ord) into v_pool
      from (select n, pg_catalog.min(ord) as ord
              from pg_catalog.jsonb_array_elements_text(
                     pg_catalog.to_jsonb(v_campaign.from_number)
                     || coalesce(v_item -> 'from_numbers', '[]')) with ordinality as t(n, ord)
             group by n) pool;
    if v_old_pool is distinct from v_pool then
      delete from pgflow.campaign_numbers where campaign_id = v_campaign.id;
      insert into pgflow.campaign_numbers (campaign_id, number, position)
      select v_campaign.id, n, ord::smallint
        from pg_catalog.unnest(v_pool) with ordinality as t(n, ord);
      v_changed := true;
    end if;
    -- One provider per number: its inbound texts reach one webhook.
    select cn.number, c.slug into v_conflict, v_other
      from pgflow.campaign_numbers cn
      join pgflow.campaigns c on c.id = cn.campaign_id
     where cn.number = any (v_pool) and c.id <> v_campaign.id
       and c.transport <> v_campaign.transport and c.status <> 'archived'
     order by cn.number, c.slug limit 1;
    if v_conflict is not null then
      raise exception 'campaign %: number % is on campaign % with another transport; a number carries one transport (its replies come from one provider)',
        v_campaign.slug, v_conflict, v_other using errcode = 'PF003';
    end if;
    v_result := pg_catalog.jsonb_set(v_result, '{campaigns}', (v_result -> 'campaigns') ||
      pg_catalog.jsonb_build_object('slug', v_campaign.slug, 'id', v_campaign.id,
        'action', case when v_inserted then 'created' when v_changed then 'updated' else 'unchanged' end,
        'steps', v_steps_action));
  end loop;

  -- Sending numbers: the default agent for leads who text a number without a conversation.
  for v_item in select * from pg_catalog.jsonb_array_elements(coalesce(p_doc -> 'numbers', '[]'))
  loop
    v_agent_id := null;
    if v_item ->> 'inbound_agent' is not null then
      select id into v_agent_id from pgflow.agents where name = v_item ->> 'inbound_agent';
      if v_agent_id is null then
        raise exception 'number %: unknown agent %', v_item ->> 'number',
          v_item ->> 'inbound_agent' using errcode = 'PF003';
      end if;
    end if;
    v_id := null;
    insert into pgflow.sending_numbers as n
      (number, inbound_agent_id, per_second, daily_segments, created_at, updated_at)
    values (v_item ->> 'number', v_agent_id, (v_item ->> 'per_second')::numeric,
            (v_item ->> 'daily_segments')::integer, v_now, v_now)
    on conflict (number) do update set
      inbound_agent_id = excluded.inbound_agent_id,
      per_second = case when v_item ? 'per_second' then excluded.per_second else n.per_second end,
      daily_segments = case when v_item ? 'daily_segments' then excluded.daily_segments
                            else n.daily_segments end,
      updated_at = excluded.updated_at
    where (n.inbound_agent_id, n.per_second, n.daily_segments) is distinct from
          (excluded.inbound_agent_id,
           case when v_item ? 'per_second' then excluded.per_second else n.per_second end,
           case when v_item ? 'daily_segments' then excluded.daily_segments
                else n.daily_segments end)
    returning id, (xmax = 0) into v_id, v_inserted;
    v_result := pg_catalog.jsonb_set(v_result, '{numbers}', (v_result -> 'numbers') ||
      pg_catalog.jsonb_build_object('number', v_item ->> 'number', 'action',
        case when v_id is null then 'unchanged' when v_inserted then 'created' else 'updated' end));
  end loop;
  return v_result;
end;
$$;

-- The funnel of each campaign (or one), counting its leads enrolled since p_since:
-- its transport; enrolled, messaged (a step sent), steps sent, delivered (a carrier's
-- receipt: Twilio only) and undelivered (by the carrier error's class) with the time from
-- sent to delivered (p50, p90), replied (a lead may write
-- before any step reached them), the reply rate (of the messaged), opted out, the
-- outcomes of their conversations, the median time from the first step to the first reply,
-- and per step: sent, and the leads whose first reply came after it.
create or replace function pgflow.funnel(p_campaign text default null, p_since timestamptz default null)
returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  with c as (
    select * from pgflow.campaigns where p_campaign is null or slug = p_campaign
  ), e as (
    select e.* from pgflow.enrollments e join c on c.id = e.campaign_id
     where p_since is null or e.enrolled_at >= p_since
  ), steps as (
    select m.enrollment_id, m.step_position, m.sent_at, m.delivery_status, m.delivered_at,
           m.carrier_error_code
      from pgflow.messages m join e on e.id = m.enrollment_id
     where m.kind = 'campaign' and m.sent_at is not null
       and m.delivery_status in ('sent', 'delivered', 'failed')
  ), cv as (
    select cv.* from pgflow.conversations cv
     where cv.campaign_id in (select id from c)
       and cv.contact_id in (select contact_id from e)
  ), per_lead as (
    select e.id, e.campaign_id, e.status,
           (select pg_catalog.min(s.sent_at) from steps s where s.enrollment_id = e.id)
             as first_sent,
           (select pg_catalog.min(m.created_at) from pgflow.messages m
              join cv on cv.id = m.conversation_id
             where cv.contact_id = e.contact_id and cv.campaign_id = e.campaign_id
               and m.direction = 'inbound') as first_reply
      from e
  ), replied_after as (
    select p.id, p.campaign_id,
           (select pg_catalog.max(s.step_position) from steps s
             where s.enrollment_id = p.id and s.sent_at <= p.first_reply) as step
      from per_lead p where p.first_reply is not null
  )
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
    'campaign', c.slug,
    'since', p_since,
    'enrolled', (select pg_catalog.count(*) from e where e.campaign_id = c.id),
    'messaged', (select pg_catalog.count(*) from per_lead p
                  where p.campaign_id = c.id and p.first_sent is not null),
    'steps_sent', (select pg_catalog.count(*) from steps s join e on e.id = s.enrollment_id
                    where e.campaign_id = c.id),
    'transport', c.transport,
    'delivered', (select pg_catalog.count(*) from steps s join e on e.id = s.enrollment_id
                   where e.campaign_id = c.id and s.delivery_status = 'delivered'),
    'undelivered', (select pg_catalog.count(*) from steps s join e on e.id = s.enrollment_id
                     where e.campaign_id = c.id and s.delivery_status = 'failed'),
    'undelivered_by_class', (
      select coalesce(pg_catalog.jsonb_object_agg(k.class, k.n), '{}')
        from (select pgflow.carrier_error_class(s.carrier_error_code) as class,
                     pg_catalog.count(*) as n
                from steps s join e on e.id = s.enrollment_id
               where e.campaign_id = c.id and s.delivery_status = 'failed'
               group by 1) k),
    'delivery_seconds', (
      select pg_catalog.jsonb_build_object(
               'p50', pg_catalog.round(pg_catalog.percentile_cont(0.5) within group (
                        order by extract(epoch from s.delivered_at - s.sent_at))::numeric, 1),
               'p90', pg_catalog.round(pg_catalog.percentile_cont(0.9) within group (
                        order by extract(epoch from s.delivered_at - s.sent_at))::numeric, 1))
        from steps s join e on e.id = s.enrollment_id
       where e.campaign_id = c.id and s.delivery_status = 'delivered'
         and s.delivered_at >= s.sent_at),
    'replied', (select pg_catalog.count(*) from per_lead p
                 where p.campaign_id = c.id and p.first_reply is not null),
    'opted_out', (select pg_catalog.count(*) from e
                   where e.campaign_id = c.id and e.status = 'opted_out'),
    'reply_rate', (select pg_catalog.round(
                          pg_catalog.count(*) filter (where p.first_sent is not null
                                                        and p.first_reply is not null)::numeric
                          / nullif(pg_catalog.count(p.first_sent), 0), 4)
                     from per_lead p where p.campaign_id = c.id),
    'opt_out_rate', (select pg_catalog.round(
                            pg_catalog.count(*) filter (where p.status = 'opted_out')::numeric
                            / nullif(pg_catalog.count(p.first_sent), 0), 4)
                       from per_lead p where p.campaign_id = c.id),
    'median_first_reply_seconds', (
      select pg_catalog.round(pg_catalog.percentile_cont(0.5) within group (
               order by extract(epoch from p.first_reply - p.first_sent))::numeric, 1)
        from per_lead p
       where p.campaign_id = c.id and p.first_reply >= p.first_sent),
    'outcomes', (
      select pg_catalog.jsonb_build_object(
        'success', pg_catalog.count(*) filter (where cv.conversion_status = 'success'),
        'qualified', pg_catalog.count(*) filter (where cv.conversion_status = 'qualified'),
        'unqualified', pg_catalog.count(*) filter (where cv.conversion_status = 'unqualified'),
        'escalated', pg_catalog.count(*) filter (where cv.conversion_status = 'escalated'),
        'no_response', pg_catalog.count(*) filter (where cv.conversion_status = 'no_response'),
        'discarded', pg_catalog.count(*) filter (where cv.conversion_status = 'discarded'),
        'open', pg_catalog.count(*) filter (where cv.status = 'open'),
        'engaged', pg_catalog.count(*) filter (where cv.status = 'engaged'),
        'in_review', pg_catalog.count(*) filter (where cv.review_reason is not null))
        from cv where cv.campaign_id = c.id),
    'steps', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'position', st.position,
               'sent', (select pg_catalog.count(*) from steps s join e on e.id = s.enrollment_id
                         where e.campaign_id = c.id and s.step_position = st.position),
               'replied_after', (select pg_catalog.count(*) from replied_after r
                                  where r.campaign_id = c.id and r.step = st.position))
             order by st.position)
        from pgflow.campaign_steps st where st.campaign_id = c.id), '[]')
  ) order by c.slug), '[]')
  from c
$$;

-- The person hands the lead back to the agent: the hold is lifted, the escalation alerts
-- of the lead's conversations are resolved, and where the engine writes the agent's
-- replies (p_engine_replies, or the conversation's line is on Twilio) a lead text nobody
-- answered yet gets the agent's answer.
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
  if (p_engine_replies or pgflow._line_transport(v_conversation.from_number) = 'twilio')
     and v_conversation.status <> 'ended' and v_contact.opted_out_at is null then
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

-- A person's text to the lead, queued like any message: the send-time claim checks it
-- again (never after STOP; the number's limits; the send window when the lead never
-- wrote), segments are counted. Writing takes the lead over first. It goes on the lead's
-- live conversation on that line, else on this one (an escalated conversation is
-- answered where it ended). p_key (the form's one-time key) makes a resubmitted form
-- once-only. Raises PF004 for an opted-out lead, PF003 for an empty or too long text.
-- The answer names the line's transport (what carries the text: the CLI says what that
-- transport can do).
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
    'conversation_id', v_conversation.id, 'segments', pgflow.sms_segments(v_body),
    'transport', pgflow._line_transport(v_conversation.from_number));
end;
$$;

-- START / UNSTOP / YES after an opt-out: the suppression is lifted (recorded with its
-- source) and one confirmation goes out (none where the carrier sent its own). No drip is resumed and nobody is re-enrolled.
create or replace function pgflow.opt_in_contact(
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
  v_opt_in bigint;
  v_via bigint;
  v_name text;
begin
  update pgflow.contacts
     set opted_out_at = null, opt_out_source = null, updated_at = v_now
   where id = p_contact_id and opted_out_at is not null;
  if not found then
    if not exists (select 1 from pgflow.contacts where id = p_contact_id) then
      raise exception 'contact % does not exist', p_contact_id using errcode = 'PF002';
    end if;
    return pg_catalog.jsonb_build_object('result', 'not_opted_out');
  end if;
  insert into pgflow.opt_outs (contact_id, action, source, message_id, text, occurred_at)
  values (p_contact_id, 'opt_in', p_source, p_message_id, pg_catalog.left(p_text, 500), v_now)
  returning id into v_opt_in;
  insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
  values (v_now, 'contact', p_contact_id, 'opted_out', 'subscribed', 'opt-in by ' || p_source);
  select m.conversation_id into v_via from pgflow.messages m where m.id = p_message_id;
  v_via := coalesce(v_via, (select pg_catalog.max(id) from pgflow.conversations
                             where contact_id = p_contact_id));
  if v_via is not null and p_source <> 'carrier' then  -- the carrier confirmed it already
    select coalesce(c.name, 'our') into v_name
      from pgflow.conversations cv left join pgflow.campaigns c on c.id = cv.campaign_id
     where cv.id = v_via;
    perform pgflow._system_message(v_via,
      pg_catalog.format('You are resubscribed to %s messages. Reply STOP to opt out.', v_name),
      'opt_in_confirmation:' || v_opt_in, v_now);
  end if;
  return pg_catalog.jsonb_build_object('result', 'opted_in', 'opt_in_id', v_opt_in);
end;
$$;

-- What the check_receipt job asks Twilio about: the text's SID while it still waits for a
-- final status ({message_id, sid}; null when there is nothing to ask).
create or replace function pgflow.receipt_to_check(p_message_id bigint) returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object('message_id', m.id, 'sid', m.provider_message_id)
    from pgflow.messages m
   where m.id = p_message_id and m.delivery_status = 'sent' and m.transport = 'twilio'
     and m.provider_message_id is not null
$$;
revoke execute on function pgflow.receipt_to_check(bigint) from public;
grant execute on function pgflow.receipt_to_check(bigint) to pgflow_worker;

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

-- One text from a lead through Twilio (POST /webhooks/twilio/inbound, its signature
-- checked by the web layer), in one call: stored once per MessageSid, then the same path
-- as any reply (pgflow._on_inbound: opt-out first, stop-on-reply, a person's hold, HELP,
-- the agent's answer written by the engine). Twilio answers STOP, START and HELP itself
-- (its OptOutType field, or one of its default keywords alone): that opt-out is recorded
-- with source `carrier` and no second confirmation. A STOP from a number we never texted
-- is still recorded (no later import may text it). {result: recorded | duplicate |
-- invalid | unknown_number_ignored | ignored_opted_out, effect?, conversation_id?}.
create or replace function pgflow.record_twilio_inbound(p_payload jsonb, p_now timestamptz default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_sid text := p_payload ->> 'MessageSid';
  v_lead text := p_payload ->> 'From';
  v_line text := p_payload ->> 'To';
  v_text text := coalesce(p_payload ->> 'Body', '');
  v_word text := pg_catalog.upper(pg_catalog.btrim(v_text, E' \t\r\n.!'));
  v_carrier text;
  v_intent text := (select i.intent from pgflow.inbound_intent(v_text) i);
  v_delivery bigint;
  v_contact pgflow.contacts;
  v_conversation pgflow.conversations;
  v_message bigint;
  v_result jsonb;
begin
  if v_sid is null or v_sid !~ '^(SM|MM)[0-9a-f]{32}$'
     or v_lead is null or v_lead !~ '^\+[1-9][0-9]{6,14}$'
     or v_line is null or v_line !~ '^\+[1-9][0-9]{6,14}$' then
    return '{"result": "invalid", "detail": "MessageSid, and From and To as E.164 numbers, are needed"}';
  end if;
  v_carrier := case
    when pg_catalog.upper(p_payload ->> 'OptOutType') in ('STOP', 'START', 'HELP')
      then pg_catalog.upper(p_payload ->> 'OptOutType')
    when v_word in ('STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT') then 'STOP'
    when v_word in ('START', 'UNSTOP', 'YES') then 'START'
    when v_word in ('HELP', 'INFO') then 'HELP' end;
  insert into pgflow.webhook_deliveries (provider, delivery_key, event_type, payload, received_at)
  values ('twilio', 'inbound:' || v_sid, 'inbound', p_payload, v_now)
  on conflict (provider, delivery_key) do nothing
  returning id into v_delivery;
  if v_delivery is null then
    return '{"result": "duplicate"}';
  end if;

  select * into v_contact from pgflow.contacts where phone = v_lead for update;
  if v_contact.id is null and (v_carrier = 'STOP' or v_intent = 'opt_out'
       or exists (select 1 from pgflow.sending_numbers n
                   where n.number = v_line and n.inbound_agent_id is not null)) then
    insert into pgflow.contacts (phone, created_at, updated_at)
    values (v_lead, v_now, v_now)
    on conflict (phone) do update set updated_at = excluded.updated_at
    returning * into v_contact;
  end if;
  if v_contact.id is null then
    v_result := '{"result": "unknown_number_ignored"}';
  elsif v_contact.opted_out_at is not null and v_intent <> 'opt_in'
        and v_carrier is distinct from 'START' then
    v_result := '{"result": "ignored_opted_out"}';
  else
    v_conversation := pgflow._inbound_conversation(v_contact.id, v_line, v_now);
    if v_conversation.id is null then  -- no agent anywhere: still honour a STOP
      if v_carrier = 'STOP' or v_intent = 'opt_out' then
        perform pgflow.opt_out_contact(v_contact.id,
          case when v_carrier = 'STOP' then 'carrier' else 'keyword' end, null, v_text, v_now);
        v_result := '{"result": "recorded", "effect": "opt_out"}';
      else
        v_result := '{"result": "unknown_number_ignored"}';
      end if;
    else
      perform pgflow._set_reason('lead text (Twilio)');
      insert into pgflow.messages
        (conversation_id, contact_id, direction, kind, body, delivery_status, segments,
         encoding, dedupe_key, provider_message_id, transport, created_at, updated_at)
      values (v_conversation.id, v_contact.id, 'inbound', 'lead', v_text, 'received',
              pgflow.sms_segments(v_text), pgflow.sms_encoding(v_text),
              'twilio:' || v_sid, v_sid, 'twilio', v_now, v_now)
      on conflict (dedupe_key) do nothing
      returning id into v_message;
      v_result := pg_catalog.jsonb_build_object('result', 'recorded',
        'conversation_id', v_conversation.id, 'message_id', v_message,
        'effect', case when v_message is not null
                       then pgflow._on_inbound(v_message, true, v_now, v_carrier) end);
    end if;
  end if;
  update pgflow.webhook_deliveries
     set processed_at = v_now, result = v_result ->> 'result', response = v_result
   where id = v_delivery;
  return v_result;
end;
$$;
revoke execute on function pgflow.record_twilio_inbound(jsonb,timestamp with time zone) from public;
grant execute on function pgflow.record_twilio_inbound(jsonb,timestamp with time zone) to pgflow_web;

grant execute on function pgflow.record_twilio_status(bigint,jsonb,timestamp with time zone) to pgflow_worker;

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
  v_receipts integer;
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
  -- Twilio texts whose final receipt never came: ask Twilio (the check_receipt job).
  v_receipts := pgflow._enqueue_receipt_checks(v_now, p_batch);

  -- pg_cron watches the workers (and the deliveries, the dead letters, the queue). Alerts
  -- are about real time: a tick run at an injected time (a test, the demo) does not judge.
  if p_now is null then
    v_alerts := pgflow.watch('tick', v_now);
  end if;

  return v_totals || pg_catalog.jsonb_build_object(
    'no_response', v_no_response, 'classify_requested', v_quiet, 'batches', v_batches,
    'requeued', v_orphans, 'receipt_checks', v_receipts, 'alerts', v_alerts -> 'open',
    'ms', pg_catalog.round(extract(epoch from pg_catalog.clock_timestamp() - v_started) * 1000));
end;
$$;

-- Our Twilio lines, for `pgflow twilio setup`: [{number, campaigns: [slug, ...]}], the
-- sending numbers of every campaign on the Twilio transport that is not archived.
create or replace function pgflow.twilio_numbers() returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
           'number', n.number, 'campaigns', n.slugs) order by n.number), '[]')
    from (select cn.number, pg_catalog.array_agg(c.slug order by c.slug) as slugs
            from pgflow.campaign_numbers cn
            join pgflow.campaigns c on c.id = cn.campaign_id
           where c.transport = 'twilio' and c.status <> 'archived'
           group by cn.number) n
$$;
revoke execute on function pgflow.twilio_numbers() from public;
grant execute on function pgflow.twilio_numbers() to pgflow_operator;
