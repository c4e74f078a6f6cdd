-- Twilio: delivery receipts as a one-way state machine, and what a carrier's error means.
-- The current definition of each function and view of this area (sql/README.md: how to
-- change one). Grants: roles.sql.

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

-- One Twilio status callback (POST /webhooks/twilio/status?message_id=N, its signature
-- checked by the web layer): stored once per (MessageSid, status) in webhook_deliveries;
-- applied only when it moves the message forward (queued < sending < sent < delivered |
-- undelivered | failed): a late or repeated callback changes nothing. {result: applied |
-- stale | duplicate | unknown_message | ignored | invalid, ...}. The callback of a text to
-- a contact forgotten on request is applied but its payload (their number) is not kept.
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
     set processed_at = v_now, result = v_result ->> 'result', response = v_result,
         payload = case when exists (select 1 from pgflow.contacts ct
                                      where ct.id = m.contact_id and ct.forgotten_at is not null)
                        then '{"erased": true}' else payload end
   where id = v_delivery;
  return v_result || pg_catalog.jsonb_build_object('message_id', p_message_id);
end;
$$;

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

-- One text from a lead through Twilio (POST /webhooks/twilio/inbound, its signature
-- checked by the web layer), in one call: stored once per MessageSid, then the same path
-- as any reply (pgflow._on_inbound: opt-out first, stop-on-reply, a person's hold, HELP,
-- the agent's answer written by the engine). Twilio answers STOP, START and HELP itself
-- (its OptOutType field, or one of its default keywords alone): that opt-out is recorded
-- with source `carrier` and no second confirmation. A STOP from a number we never texted
-- is still recorded (no later import may text it). A number forgotten on request arrives
-- opted out (the contacts trigger): only START lifts it, on any line, answered or not.
-- {result: recorded | duplicate | invalid | unknown_number_ignored | ignored_opted_out,
-- effect?, conversation_id?}.
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
  -- a stranger's contact is made for a STOP, for a line that answers strangers, and for
  -- START from a number forgotten before (its contact arrives opted out: START lifts it)
  if v_contact.id is null and (v_carrier = 'STOP' or v_intent = 'opt_out'
       or exists (select 1 from pgflow.sending_numbers n
                   where n.number = v_line and n.inbound_agent_id is not null)
       or ((v_carrier = 'START' or v_intent = 'opt_in')
           and (pgflow._suppression(v_lead)).phone_hash is not null)) then
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
    if v_conversation.id is null then  -- no agent anywhere: still honour a STOP or a START
      if v_carrier = 'STOP' or v_intent = 'opt_out' then
        perform pgflow.opt_out_contact(v_contact.id,
          case when v_carrier = 'STOP' then 'carrier' else 'keyword' end, null, v_text, v_now);
        v_result := '{"result": "recorded", "effect": "opt_out"}';
      elsif v_contact.opted_out_at is not null then  -- START (others were ignored above)
        perform pgflow.opt_in_contact(v_contact.id,
          case when v_carrier = 'START' then 'carrier' else 'keyword' end, null, v_text, v_now);
        v_result := '{"result": "recorded", "effect": "opt_in"}';
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
