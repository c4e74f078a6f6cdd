-- Undo 0019: the row-at-a-time dispatch and ingest_lead of 0006 (ingest_lead SECURITY DEFINER as 0010 made it).
drop function pgflow.set_number_limits(text, jsonb, timestamptz);
drop function pgflow.number_report(timestamptz);

-- For the given enrollments that are active and due at p_now: send the due step (message +
-- send_sms job), or defer it to the next window opening / until under the daily cap, then
-- advance or complete. Rows locked by someone else are skipped (they are being handled).
create or replace function pgflow._dispatch_steps(
  p_ids bigint[], p_now timestamptz, p_priority integer default 0
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  r record;
  v_contact pgflow.contacts;
  v_conversation pgflow.conversations;
  v_open timestamptz;
  v_recent integer;
  v_oldest timestamptz;
  v_body text;
  v_message bigint;
  v_next pgflow.campaign_steps;
  v_messages bigint[] := '{}';
  v_sent integer := 0;
  v_window integer := 0;
  v_capped integer := 0;
  v_completed integer := 0;
  v_held integer := 0;
  v_stopped integer := 0;
begin
  for r in
    select e.id, e.contact_id, e.campaign_id, e.next_step,
           c.status as campaign_status, c.timezone as campaign_tz, c.window_start,
           c.window_end, c.window_days, c.daily_cap, c.from_number, c.agent_id, c.fallbacks,
           c.reply_timeout, s.position, s.body
      from pgflow.enrollments e
      join pgflow.campaigns c on c.id = e.campaign_id
      left join pgflow.campaign_steps s on s.campaign_id = e.campaign_id
                                       and s.position = e.next_step
     where e.id = any (p_ids) and e.status = 'active' and e.next_message_at <= p_now
     order by e.next_message_at, e.id
       for update of e skip locked
  loop
    select * into v_contact from pgflow.contacts where id = r.contact_id;
    if v_contact.opted_out_at is not null then
      perform pgflow.opt_out_enrollment(r.id, 'contact opted out', p_now);
      v_stopped := v_stopped + 1;
      continue;
    end if;
    if r.campaign_status <> 'active' then
      -- A paused or draft campaign holds its drips; look again in a quarter of an hour.
      update pgflow.enrollments set next_message_at = p_now + interval '15 minutes',
             updated_at = p_now where id = r.id;
      v_held := v_held + 1;
      continue;
    end if;
    if r.position is null then
      perform pgflow.complete_enrollment(r.id, 'no step ' || r.next_step, p_now);
      v_completed := v_completed + 1;
      continue;
    end if;
    select * into v_conversation from pgflow.conversations
     where contact_id = r.contact_id and from_number = r.from_number and status <> 'ended';
    if found and v_conversation.status = 'engaged' then
      -- The lead has replied on this line: the drip is over.
      perform pgflow.stop_enrollment(r.id, 'lead replied', p_now);
      v_stopped := v_stopped + 1;
      continue;
    end if;
    v_open := pgflow.next_window_open(coalesce(v_contact.timezone, r.campaign_tz),
                                      r.window_start, r.window_end, r.window_days, p_now);
    if v_open > p_now then
      update pgflow.enrollments set next_message_at = v_open, updated_at = p_now
       where id = r.id;
      v_window := v_window + 1;
      continue;
    end if;
    select pg_catalog.count(*), pg_catalog.min(m.created_at) into v_recent, v_oldest
      from pgflow.messages m
     where m.contact_id = r.contact_id and m.kind = 'campaign'
       and m.created_at > p_now - interval '24 hours' and m.created_at <= p_now
       and m.delivery_status not in ('suppressed', 'dead_letter', 'failed');
    if v_recent >= r.daily_cap then
      update pgflow.enrollments
         set next_message_at = v_oldest + interval '24 hours 1 second', updated_at = p_now
       where id = r.id;
      v_capped := v_capped + 1;
      continue;
    end if;
    if v_conversation.id is null then
      insert into pgflow.conversations
        (contact_id, campaign_id, agent_id, enrollment_id, from_number, created_at, updated_at)
      values (r.contact_id, r.campaign_id, r.agent_id, r.id, r.from_number, p_now, p_now)
      returning * into v_conversation;
    end if;
    v_body := pgflow.render_template(r.body, pgflow._template_values(v_contact), r.fallbacks);
    insert into pgflow.messages
      (conversation_id, contact_id, enrollment_id, direction, kind, body, step_position,
       delivery_status, segments, encoding, dedupe_key, created_at, updated_at)
    values (v_conversation.id, r.contact_id, r.id, 'outbound', 'campaign', v_body, r.position,
            'queued', pgflow.sms_segments(v_body), pgflow.sms_encoding(v_body),
            'step:' || r.id || ':' || r.position, p_now, p_now)
    on conflict (dedupe_key) do nothing
    returning id into v_message;
    if v_message is not null then
      v_messages := v_messages || v_message;
      v_sent := v_sent + 1;
    end if;
    select * into v_next from pgflow.campaign_steps
     where campaign_id = r.campaign_id and position > r.position
     order by position limit 1;
    if found then
      update pgflow.enrollments
         set next_step = v_next.position, next_message_at = p_now + v_next.delay,
             last_step_sent_at = p_now, updated_at = p_now
       where id = r.id;
    else
      update pgflow.enrollments set last_step_sent_at = p_now where id = r.id;
      perform pgflow.complete_enrollment(r.id, 'last step sent', p_now);
      update pgflow.conversations set reply_deadline_at = p_now + r.reply_timeout
       where id = v_conversation.id and status = 'open';
      v_completed := v_completed + 1;
    end if;
  end loop;
  perform pgflow._enqueue('send_sms', v_messages, p_priority);
  return pg_catalog.jsonb_build_object(
    'sent', v_sent, 'deferred_window', v_window, 'deferred_cap', v_capped,
    'completed', v_completed, 'held', v_held, 'stopped', v_stopped);
end;
$$;

-- One call per lead. Records it in lead_events whatever happens; upserts the contact;
-- enrolls idempotently; opens the conversation; sends step 1 at once when it is due and
-- the window is open. p_edge carries what the HTTP edge derived: {"phone": E.164 or null,
-- "phone_error": "...", "timezone": inferred IANA zone}. Returns
-- {contact_id, enrollment_id, status} with status created | already_enrolled | suppressed,
-- or {status: "rejected", error, detail}.
create or replace function pgflow.ingest_lead(
  payload jsonb, p_now timestamptz default null, p_edge jsonb default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
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
    insert into pgflow.lead_events
      (received_at, source, external_id, campaign_slug, payload, result, error_code, error_detail)
    values (v_now, payload ->> 'source', payload ->> 'external_id', payload ->> 'campaign',
            payload, 'rejected', v_error, v_detail)
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
    consent_at = coalesce(excluded.consent_at, c.consent_at),
    consent_source = coalesce(excluded.consent_source, c.consent_source),
    consent_text = coalesce(excluded.consent_text, c.consent_text),
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
              v_campaign.from_number, v_now, v_now)
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
$$;

drop type pgflow._due_step;
drop function pgflow.sender_for(bigint, bigint);
