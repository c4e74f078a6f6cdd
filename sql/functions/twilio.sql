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
