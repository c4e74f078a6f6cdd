-- Undo 0032: the privacy functions dropped, ingest_lead, opt_in_contact, _answer_inbound, record_chat, record_retell_event and record_twilio_status as 0028-0031 left them (from sql/functions/).
-- depends: 0031_add_erasure_checks

CREATE OR REPLACE FUNCTION pgflow.record_twilio_status(p_message_id bigint, p_payload jsonb, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION pgflow.record_twilio_inbound(p_payload jsonb, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION pgflow.record_retell_event(p_payload jsonb, p_engine_replies boolean DEFAULT false, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION pgflow.record_chat(p_chat jsonb, p_event text DEFAULT 'get_chat'::text, p_engine_replies boolean DEFAULT false, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION pgflow.opt_in_contact(p_contact_id bigint, p_source text, p_message_id bigint DEFAULT NULL::bigint, p_text text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION pgflow.ingest_lead(payload jsonb, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone, p_edge jsonb DEFAULT NULL::jsonb)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_edge jsonb := coalesce(p_edge, '{}'::jsonb);
  v_campaign pgflow.campaigns;
  v_first pgflow.campaign_steps;
  v_refusal jsonb;
  v_phone text;
  v_tz text;
  v_error text;
  v_detail text;
  v_field text;
  v_contact pgflow.contacts;
  v_enrollment bigint;
  v_status text;
  v_event bigint;
  v_consent jsonb;
begin
  -- Validation, in the order a person would fix things.
  if payload is null or pg_catalog.jsonb_typeof(payload) <> 'object' then
    v_error := 'invalid_payload'; v_detail := 'the body must be a JSON object';
  elsif pg_catalog.jsonb_typeof(payload -> 'campaign') is distinct from 'string'
        or pg_catalog.btrim(payload ->> 'campaign') = '' then
    v_error := 'invalid_payload'; v_detail := 'campaign (a slug string) is required';
  elsif pg_catalog.jsonb_typeof(payload -> 'phone') is distinct from 'string' then
    v_error := 'invalid_payload'; v_detail := 'phone (a string) is required';
  end if;
  if v_error is null then
    foreach v_field in array array['first_name', 'last_name', 'email', 'timezone', 'source',
                                   'external_id']
    loop
      if payload ? v_field and pg_catalog.jsonb_typeof(payload -> v_field) not in ('string', 'null') then
        v_error := 'invalid_payload'; v_detail := v_field || ' must be a string';
        exit;
      elsif pg_catalog.length(payload ->> v_field) > 200 then
        v_error := 'invalid_payload'; v_detail := v_field || ' is longer than 200 characters';
        exit;
      end if;
    end loop;
  end if;
  if v_error is null and payload ? 'attributes'
     and pg_catalog.jsonb_typeof(payload -> 'attributes') not in ('object', 'null') then
    v_error := 'invalid_payload'; v_detail := 'attributes must be an object';
  end if;
  if v_error is null and payload ? 'consent'
     and pg_catalog.jsonb_typeof(payload -> 'consent') not in ('object', 'null') then
    v_error := 'invalid_payload'; v_detail := 'consent must be an object';
  end if;
  if v_error is null and pg_catalog.jsonb_typeof(payload -> 'consent') = 'object' then
    if pg_catalog.jsonb_typeof(payload #> '{consent,at}') not in ('string', 'null')
       or not pgflow._is_timestamp(payload #>> '{consent,at}') then
      v_error := 'invalid_payload';
      v_detail := 'consent.at must be an ISO 8601 time, e.g. 2026-11-23T14:59:00Z';
    elsif pg_catalog.jsonb_typeof(payload #> '{consent,text}') not in ('string', 'null')
       or pg_catalog.jsonb_typeof(payload #> '{consent,source}') not in ('string', 'null') then
      v_error := 'invalid_payload'; v_detail := 'consent.text and consent.source must be strings';
    end if;
  end if;
  if v_error is null then
    v_refusal := pgflow.campaign_refusal(payload ->> 'campaign');
    if v_refusal is not null then
      v_error := v_refusal ->> 'error';
      v_detail := v_refusal ->> 'detail';
    else
      select * into v_campaign from pgflow.campaigns where slug = payload ->> 'campaign';
      select * into v_first from pgflow.campaign_steps
       where campaign_id = v_campaign.id order by position limit 1;
    end if;
  end if;
  if v_error is null then
    v_phone := case when v_edge ? 'phone' then v_edge ->> 'phone'
                    else pgflow._normalize_phone(payload ->> 'phone') end;
    if v_phone is null or v_phone !~ '^\+[1-9][0-9]{6,14}$' then
      v_error := 'invalid_phone';
      v_detail := coalesce(v_edge ->> 'phone_error', 'not a valid phone number');
    end if;
  end if;
  if v_error is null and nullif(payload ->> 'email', '') is not null
     and payload ->> 'email' !~ '^[^@\s]+@[^@\s]+$' then
    v_error := 'invalid_email'; v_detail := 'email is not an address';
  end if;
  if v_error is null then
    v_tz := nullif(pg_catalog.btrim(payload ->> 'timezone'), '');
    if v_tz is not null and not pgflow._is_time_zone(v_tz) then
      v_error := 'invalid_timezone';
      v_detail := pg_catalog.format('unknown time zone %L (use an IANA name like America/Chicago)', v_tz);
    end if;
  end if;
  if v_error is not null then
    -- a refused lead's fields may be anything: kept short enough to index
    insert into pgflow.lead_events
      (received_at, source, external_id, campaign_slug, payload, result, error_code, error_detail)
    values (v_now, pgflow._short_key(payload ->> 'source'),
            pgflow._short_key(payload ->> 'external_id'),
            pgflow._short_key(payload ->> 'campaign'), payload, 'rejected', v_error, v_detail)
    returning id into v_event;
    return pg_catalog.jsonb_build_object('status', 'rejected', 'error', v_error,
                                         'detail', v_detail, 'lead_event_id', v_event);
  end if;

  v_consent := nullif(payload -> 'consent', 'null'::jsonb);
  insert into pgflow.contacts as c
    (phone, first_name, last_name, email, timezone, attributes,
     consent_at, consent_source, consent_text, created_at, updated_at)
  values (
    v_phone,
    nullif(pg_catalog.btrim(payload ->> 'first_name'), ''),
    nullif(pg_catalog.btrim(payload ->> 'last_name'), ''),
    nullif(pg_catalog.btrim(payload ->> 'email'), ''),
    coalesce(v_tz, case when pgflow._is_time_zone(v_edge ->> 'timezone') then v_edge ->> 'timezone' end),
    coalesce(nullif(payload -> 'attributes', 'null'::jsonb), '{}'::jsonb),
    case when v_consent is not null
         then coalesce((v_consent ->> 'at')::timestamptz, v_now) end,
    coalesce(v_consent ->> 'source', case when v_consent is not null then payload ->> 'source' end),
    v_consent ->> 'text',
    v_now, v_now)
  on conflict (phone) do update set
    first_name = coalesce(excluded.first_name, c.first_name),
    last_name = coalesce(excluded.last_name, c.last_name),
    email = coalesce(excluded.email, c.email),
    -- an explicit zone wins; an inferred one only fills a gap
    timezone = coalesce(v_tz, c.timezone, excluded.timezone),
    attributes = c.attributes || excluded.attributes,
    -- the first consent recorded is the evidence: a later lead cannot rewrite it (each
    -- lead's own consent stays in its lead_events payload)
    consent_at = coalesce(c.consent_at, excluded.consent_at),
    consent_source = case when c.consent_at is null then excluded.consent_source
                          else c.consent_source end,
    consent_text = case when c.consent_at is null then excluded.consent_text
                        else c.consent_text end,
    updated_at = excluded.updated_at
  returning * into v_contact;

  if v_contact.opted_out_at is not null then
    v_status := 'suppressed';
    select id into v_enrollment from pgflow.enrollments
     where contact_id = v_contact.id and campaign_id = v_campaign.id;
  else
    perform pgflow._set_reason('lead ' || coalesce(payload ->> 'source', 'webhook'));
    insert into pgflow.enrollments
      (contact_id, campaign_id, status, next_step, next_message_at, enrolled_at, updated_at)
    values (v_contact.id, v_campaign.id, 'active', v_first.position, v_now + v_first.delay,
            v_now, v_now)
    on conflict (contact_id, campaign_id) do nothing
    returning id into v_enrollment;
    if v_enrollment is null then
      v_status := 'already_enrolled';
      select id into v_enrollment from pgflow.enrollments
       where contact_id = v_contact.id and campaign_id = v_campaign.id;
    else
      v_status := 'created';
      insert into pgflow.conversations
        (contact_id, campaign_id, agent_id, enrollment_id, from_number, created_at, updated_at)
      values (v_contact.id, v_campaign.id, v_campaign.agent_id, v_enrollment,
              pgflow.sender_for(v_contact.id, v_campaign.id), v_now, v_now)
      on conflict (contact_id, from_number) where status <> 'ended' do nothing;
      if v_first.delay = interval '0' then
        -- Speed to lead: step 1 now, in this transaction, not at the next tick.
        perform pgflow._dispatch_steps(array[v_enrollment], v_now, 10);
      end if;
    end if;
  end if;

  insert into pgflow.lead_events
    (received_at, source, external_id, campaign_slug, payload, result, contact_id, enrollment_id)
  values (v_now, payload ->> 'source', payload ->> 'external_id', v_campaign.slug, payload,
          v_status, v_contact.id, v_enrollment);
  return pg_catalog.jsonb_build_object('contact_id', v_contact.id,
                                       'enrollment_id', v_enrollment, 'status', v_status);
end;
$function$;

drop function pgflow.forget_contact(text,text,text,timestamp with time zone);

drop function pgflow.contact_consent(text);

drop function pgflow._suppression(text);

drop function pgflow._state_code(jsonb);

drop function pgflow._redact(text,text[]);

drop function pgflow._phone_hash(text);

drop function pgflow._contact_suppression();

drop function pgflow._consent_record(pgflow.contacts);

CREATE OR REPLACE FUNCTION pgflow._answer_inbound(p_payload jsonb, p_engine_replies boolean, p_now timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
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
$function$;
