-- The campaign engine: lead intake, step dispatch, send windows, templates, segments, the tick.
-- depends: 0005_create_state_machines

-- E.164 from a loosely formatted number when no normalised phone comes from the edge:
-- US national formats and explicit international ones; NULL when it cannot be one.
create function pgflow._normalize_phone(p_raw text) returns text
language sql immutable parallel safe
set search_path = ''
as $$
  select case
    when d is null then null
    when p_raw ~ '^\s*\+' and d ~ '^[1-9][0-9]{6,14}$' then '+' || d
    when p_raw ~ '^\s*00' and d ~ '^00[1-9][0-9]{6,14}$' then '+' || pg_catalog.substr(d, 3)
    when d ~ '^[2-9][0-9]{2}[2-9][0-9]{6}$' then '+1' || d
    when d ~ '^1[2-9][0-9]{2}[2-9][0-9]{6}$' then '+' || d
  end
  from (select nullif(pg_catalog.regexp_replace(p_raw, '[^0-9]', '', 'g'), '') as d) x
  where p_raw !~ '[A-Za-z]'
$$;

-- GSM-7 (160 chars, 153 per part; extension characters count double) or UCS-2 (70 / 67).
create function pgflow.sms_encoding(p_body text) returns text
language sql immutable parallel safe
set search_path = ''
as $$
  select case
    when p_body ~ ('^[@£$¥èéùìòÇ' || E'\n' || 'Øø' || E'\r' || 'Å寅ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&''()*+,\-./0-9:;<=>?¡A-ZÄÖÑܧ¿a-zäöñüà^{}\\\[~\]|€' || E'\f' || ']*$')
      then 'gsm7'
    else 'ucs2'
  end
$$;

create function pgflow.sms_segments(p_body text) returns integer
language sql immutable parallel safe
set search_path = ''
as $$
  select case
    when pgflow.sms_encoding(p_body) = 'gsm7' then
      case when units <= 160 then 1 else ceil(units / 153.0)::integer end
    else
      -- UCS-2 counts UTF-16 code units: characters beyond the BMP (most emoji) take two.
      case when u16 <= 70 then 1 else ceil(u16 / 67.0)::integer end
  end
  from (
    select pg_catalog.length(p_body)
             + pg_catalog.length(pg_catalog.regexp_replace(p_body, '[^\^{}\\\[~\]|€' || E'\f' || ']', '', 'g'))
             as units,
           pg_catalog.length(p_body)
             + pg_catalog.length(pg_catalog.regexp_replace(p_body, '[\u0001-\uffff]', '', 'g'))
             as u16
  ) x
$$;

-- {{name}} placeholders from values, else the campaign's fallbacks, else removed (with the
-- space before it when punctuation or a space follows), never left raw.
create function pgflow.render_template(p_template text, p_values jsonb, p_fallbacks jsonb)
returns text
language plpgsql immutable parallel safe
set search_path = ''
as $$
declare
  v_out text := p_template;
  v_match text[];
  v_value text;
begin
  for v_match in
    select m from pg_catalog.regexp_matches(p_template, '\{\{\s*([A-Za-z0-9_]+)\s*\}\}', 'g') m
  loop
    v_value := nullif(pg_catalog.btrim(coalesce(p_values ->> v_match[1], '')), '');
    v_value := coalesce(v_value, nullif(pg_catalog.btrim(coalesce(p_fallbacks ->> v_match[1], '')), ''));
    v_out := pg_catalog.regexp_replace(v_out, '\{\{\s*' || v_match[1] || '\s*\}\}',
                                       pg_catalog.replace(coalesce(v_value, E'\x01'), '\', '\\'), 'g');
  end loop;
  v_out := pg_catalog.regexp_replace(v_out, ' ?\x01(?=[ ,.!?;:]|$)', '', 'g');
  return pg_catalog.replace(v_out, E'\x01', '');
end;
$$;

-- The first instant at or after p_now inside the send window, in the zone p_tz:
-- p_now itself when the window is open. Local wall-clock times, so DST shifts are honoured.
create function pgflow.next_window_open(
  p_tz text, p_start time, p_end time, p_days smallint[], p_now timestamptz
) returns timestamptz
language plpgsql stable parallel safe
set search_path = ''
as $$
declare
  v_local timestamp := p_now at time zone p_tz;
  v_day date := v_local::date;
  v_time time := v_local::time;
  d integer;
begin
  for d in 0..7 loop
    if extract(isodow from v_day + d)::smallint = any (p_days) then
      if d > 0 then
        return ((v_day + d) + p_start) at time zone p_tz;
      elsif v_time >= p_start and v_time < p_end then
        return p_now;
      elsif v_time < p_start then
        return (v_day + p_start) at time zone p_tz;
      end if;
    end if;
  end loop;
  return null;
end;
$$;

-- Enqueue one pgqueuer job per id in ONE statement (its trigger NOTIFYs once).
-- The dedupe key guards against a second active job; our own unique keys guard the rest.
create function pgflow._enqueue(p_entrypoint text, p_ids bigint[], p_priority integer default 0)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_count integer;
begin
  if coalesce(pg_catalog.cardinality(p_ids), 0) = 0 then
    return 0;
  end if;
  insert into pgflow.pgqueuer (priority, entrypoint, payload, execute_after, dedupe_key, status)
  select p_priority, p_entrypoint,
         pg_catalog.convert_to(pg_catalog.json_build_object('id', id)::text, 'UTF8'),
         pg_catalog.now(), p_entrypoint || ':' || id, 'queued'
    from pg_catalog.unnest(p_ids) as id
  on conflict (dedupe_key)
    where ((status = any (array['queued'::pgflow.pgqueuer_status, 'picked'::pgflow.pgqueuer_status]))
           and (dedupe_key is not null))
  do nothing;
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;

-- The values a step template may use: contact fields over the contact's attributes.
create function pgflow._template_values(p_contact pgflow.contacts) returns jsonb
language sql immutable
set search_path = ''
as $$
  select p_contact.attributes || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
    'first_name', p_contact.first_name, 'last_name', p_contact.last_name,
    'email', p_contact.email))
$$;

-- For the given enrollments that are active and due at p_now: send the due step (message +
-- send_sms job), or defer it to the next window opening / until under the daily cap, then
-- advance or complete. Rows locked by someone else are skipped (they are being handled).
create function pgflow._dispatch_steps(
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

-- Record a lead that could not even be read (malformed JSON, too large, not an object).
create function pgflow.reject_lead(
  p_raw_body text,
  p_error text,
  p_detail text,
  p_source text default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_id bigint;
begin
  insert into pgflow.lead_events (received_at, source, raw_body, result, error_code, error_detail)
  values (coalesce(p_now, pg_catalog.now()), p_source, coalesce(p_raw_body, ''), 'rejected',
          p_error, p_detail)
  returning id into v_id;
  return pg_catalog.jsonb_build_object('status', 'rejected', 'error', p_error,
                                       'detail', p_detail, 'lead_event_id', v_id);
end;
$$;

-- True for NULL or an ISO 8601 date/time Postgres reads as a finite timestamptz
-- ('now', 'epoch' and 'infinity' are not lead data).
create function pgflow._is_timestamp(p_text text) returns boolean
language plpgsql immutable
set search_path = ''
as $$
begin
  if p_text is null then
    return true;
  end if;
  if p_text !~ '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}(:?\d{2})?)?$' then
    return false;
  end if;
  perform p_text::timestamptz;
  return true;
exception when others then
  return false;
end;
$$;

-- Why a campaign takes no leads now ({"error", "detail"}), or NULL when it does:
-- it must exist, be active and have at least one step. ingest_lead() and the CSV import's
-- up-front check share it.
create function pgflow.campaign_refusal(p_slug text) returns jsonb
language sql stable
set search_path = ''
as $$
  select case
    when c.id is null then pg_catalog.jsonb_build_object('error', 'unknown_campaign',
      'detail', pg_catalog.format('no campaign with slug %L', p_slug))
    when c.status <> 'active' then pg_catalog.jsonb_build_object('error', 'campaign_inactive',
      'detail', pg_catalog.format('campaign %L is %s', c.slug, c.status))
    when not exists (select 1 from pgflow.campaign_steps s where s.campaign_id = c.id)
      then pg_catalog.jsonb_build_object('error', 'campaign_has_no_steps',
        'detail', pg_catalog.format('campaign %L has no steps', c.slug))
  end
  from (select 1) one
  left join pgflow.campaigns c on c.slug = p_slug
$$;

-- One call per lead. Records it in lead_events whatever happens; upserts the contact;
-- enrolls idempotently; opens the conversation; sends step 1 at once when it is due and
-- the window is open. p_edge carries what the HTTP edge derived: {"phone": E.164 or null,
-- "phone_error": "...", "timezone": inferred IANA zone}. Returns
-- {contact_id, enrollment_id, status} with status created | already_enrolled | suppressed,
-- or {status: "rejected", error, detail}.
create function pgflow.ingest_lead(
  payload jsonb, p_now timestamptz default null, p_edge jsonb default null
) returns jsonb
language plpgsql
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

-- The every-minute heartbeat: dispatch due steps in bounded batches and end conversations
-- whose last step went unanswered past the campaign's reply timeout. One run at a time.
create function pgflow.tick(p_now timestamptz default null, p_batch integer default 1000)
returns jsonb
language plpgsql
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

  for v_conversation in
    select c.id from pgflow.conversations c
     where c.status = 'open' and c.reply_deadline_at <= v_now
       and not exists (select 1 from pgflow.messages m
                        where m.conversation_id = c.id and m.direction = 'outbound'
                          and m.delivery_status in ('pending', 'queued', 'sending'))
     order by c.reply_deadline_at
     limit p_batch
       for update skip locked
  loop
    perform pgflow.end_conversation(v_conversation, 'no_response',
      'no reply within the reply timeout after the last step', 'rule', v_now);
    v_no_response := v_no_response + 1;
  end loop;

  return v_totals || pg_catalog.jsonb_build_object(
    'no_response', v_no_response, 'batches', v_batches,
    'ms', pg_catalog.round(extract(epoch from pg_catalog.clock_timestamp() - v_started) * 1000));
end;
$$;
