-- The functions a lead calls as plpgsql (planned once per session, not in every transaction) and ingest_lead on generic plans: _state_code, campaign_refusal, sender_for, _phone_hash, _suppression, _set_reason, ingest_lead.
-- depends: 0043_plan_hot_functions_once

-- The keyed hash of a number (E.164): sha256 of pgflow.secrets 'phone_hash_key' (32 random
-- bytes no role may read) followed by the number. Without the key nobody can hash a guess
-- and compare, so the hash keeps a number recognisable to us alone. NULL when the key is
-- missing or the number is NULL.
create or replace function pgflow._phone_hash(p_phone text) returns bytea
language plpgsql stable
set search_path = ''
as $$
begin
  return (select pg_catalog.sha256(s.value || pg_catalog.convert_to(p_phone, 'UTF8'))
            from pgflow.secrets s
           where s.name = 'phone_hash_key');
end;
$$;

create or replace function pgflow._set_reason(p_reason text) returns void
language plpgsql
set search_path = ''
as $$
begin
  perform pg_catalog.set_config('pgflow.reason', coalesce(p_reason, ''), true);
end;
$$;

-- The state a lead gives (`state`, else `address.state`), as contacts.state keeps it: a
-- two-letter code in any case, uppercased (a US state or territory, a Canadian province;
-- a code we do not know is kept as given and gets the strictest rules); a full US state
-- or territory name, or a Canadian province's, in any case and spacing, as its code; 'ZZ'
-- (the strictest rules) for anything else; NULL when none is given. Never an error: a bad
-- state is no reason to refuse a lead.
create or replace function pgflow._state_code(p_lead jsonb) returns text
language plpgsql immutable parallel safe
set search_path = ''
as $$
declare
  v jsonb := coalesce(nullif(p_lead -> 'state', 'null'::jsonb),
                      case when pg_catalog.jsonb_typeof(p_lead -> 'address') = 'object'
                           then nullif(p_lead #> '{address,state}', 'null'::jsonb) end);
  t text;
begin
  if v is null then
    return null;
  elsif pg_catalog.jsonb_typeof(v) <> 'string' then
    return 'ZZ';
  end if;
  -- the text without dots and with single spaces: 'N.Y.' is NY, 'New  York' New York
  t := pg_catalog.btrim(pg_catalog.regexp_replace(
         pg_catalog.translate(v #>> '{}', '.', ''), '\s+', ' ', 'g'));
  if t = '' then
    return null;
  elsif t ~ '^[A-Za-z]{2}$' then
    return pg_catalog.upper(t);
  end if;
  return coalesce((
    select n.code from (values
      ('AL', 'alabama'), ('AK', 'alaska'), ('AZ', 'arizona'), ('AR', 'arkansas'),
      ('CA', 'california'), ('CO', 'colorado'), ('CT', 'connecticut'), ('DE', 'delaware'),
      ('DC', 'district of columbia'), ('DC', 'washington dc'), ('FL', 'florida'),
      ('GA', 'georgia'), ('HI', 'hawaii'), ('ID', 'idaho'), ('IL', 'illinois'),
      ('IN', 'indiana'), ('IA', 'iowa'), ('KS', 'kansas'), ('KY', 'kentucky'),
      ('LA', 'louisiana'), ('ME', 'maine'), ('MD', 'maryland'), ('MA', 'massachusetts'),
      ('MI', 'michigan'), ('MN', 'minnesota'), ('MS', 'mississippi'), ('MO', 'missouri'),
      ('MT', 'montana'), ('NE', 'nebraska'), ('NV', 'nevada'), ('NH', 'new hampshire'),
      ('NJ', 'new jersey'), ('NM', 'new mexico'), ('NY', 'new york'),
      ('NC', 'north carolina'), ('ND', 'north dakota'), ('OH', 'ohio'), ('OK', 'oklahoma'),
      ('OR', 'oregon'), ('PA', 'pennsylvania'), ('RI', 'rhode island'),
      ('SC', 'south carolina'), ('SD', 'south dakota'), ('TN', 'tennessee'),
      ('TX', 'texas'), ('UT', 'utah'), ('VT', 'vermont'), ('VA', 'virginia'),
      ('WA', 'washington'), ('WV', 'west virginia'), ('WI', 'wisconsin'),
      ('WY', 'wyoming'), ('AS', 'american samoa'), ('GU', 'guam'),
      ('MP', 'northern mariana islands'), ('PR', 'puerto rico'),
      ('VI', 'us virgin islands'), ('VI', 'virgin islands'),
      ('AB', 'alberta'), ('BC', 'british columbia'), ('MB', 'manitoba'),
      ('NB', 'new brunswick'), ('NL', 'newfoundland and labrador'),
      ('NS', 'nova scotia'), ('NT', 'northwest territories'), ('NU', 'nunavut'),
      ('ON', 'ontario'), ('PE', 'prince edward island'), ('QC', 'quebec'),
      ('SK', 'saskatchewan'), ('YT', 'yukon')) as n(code, name)
     where n.name = pg_catalog.lower(t)), 'ZZ');
end;
$$;

-- The suppression of a forgotten number: its pgflow.suppressions row, or a row of NULLs
-- when the number is not suppressed.
create or replace function pgflow._suppression(p_phone text) returns pgflow.suppressions
language plpgsql stable
set search_path = ''
as $$
declare
  v_row pgflow.suppressions;
begin
  select * into v_row from pgflow.suppressions where phone_hash = pgflow._phone_hash(p_phone);
  return v_row;
end;
$$;

-- Why a campaign takes no leads now ({"error", "detail"}), or NULL when it does:
-- it must exist, be active and have at least one step. ingest_lead() and the CSV import's
-- up-front check share it.
create or replace function pgflow.campaign_refusal(p_slug text) returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  return (
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
    left join pgflow.campaigns c on c.slug = p_slug);
end;
$$;

-- The conversation opens on the contact's sticky sender of the campaign's pool
-- (pgflow.sender_for), not always on from_number; a refused lead's
-- identifiers are kept short enough to index (pgflow._short_key); and a contact's first
-- recorded consent is kept (a later lead cannot rewrite the evidence). One call per lead.
-- Records it in lead_events whatever happens; upserts the contact; enrolls idempotently;
-- opens the conversation; sends step 1 at once when it is due and the window is open. p_edge carries what the HTTP edge derived: {"phone": E.164 or null,
-- "phone_error": "...", "timezone": inferred IANA zone}. Returns
-- {contact_id, enrollment_id, status} with status created | already_enrolled | suppressed,
-- or {status: "rejected", error, detail}. Every accepted lead with a `consent` leaves a
-- pgflow.consents row (when, source, the disclosure, ip and user agent, the whole request,
-- its lead event): the proof of consent, kept when the contact's own record is the first
-- one's. The lead's `state` (or `address.state`) is read by _state_code() and never
-- refuses it. A number forgotten on request arrives opted out (the contacts trigger,
-- _contact_suppression) and the lead is `suppressed`.
-- Its statements, and those of what it calls (the first step's dispatch, the triggers), run
-- on generic plans (plan_cache_mode): one lead is one row each, and the custom plans that
-- `auto` keeps choosing for them were planned again on every call (about a quarter of the
-- database's time per lead).
create or replace function pgflow.ingest_lead(
  payload jsonb, p_now timestamptz default null, p_edge jsonb default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
set plan_cache_mode = force_generic_plan
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
    elsif pg_catalog.jsonb_typeof(payload #> '{consent,ip}') not in ('string', 'null')
       or pg_catalog.length(payload #>> '{consent,ip}') > 64 then
      v_error := 'invalid_payload';
      v_detail := 'consent.ip must be a string of at most 64 characters';
    elsif pg_catalog.jsonb_typeof(payload #> '{consent,user_agent}') not in ('string', 'null')
       or pg_catalog.length(payload #>> '{consent,user_agent}') > 512 then
      v_error := 'invalid_payload';
      v_detail := 'consent.user_agent must be a string of at most 512 characters';
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
    (phone, first_name, last_name, email, timezone, state, attributes,
     consent_at, consent_source, consent_text, created_at, updated_at)
  values (
    v_phone,
    nullif(pg_catalog.btrim(payload ->> 'first_name'), ''),
    nullif(pg_catalog.btrim(payload ->> 'last_name'), ''),
    nullif(pg_catalog.btrim(payload ->> 'email'), ''),
    coalesce(v_tz, case when pgflow._is_time_zone(v_edge ->> 'timezone') then v_edge ->> 'timezone' end),
    pgflow._state_code(payload),
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
    state = coalesce(excluded.state, c.state),
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
          v_status, v_contact.id, v_enrollment)
  returning id into v_event;
  if v_consent is not null then
    insert into pgflow.consents
      (contact_id, given_at, source, disclosure, ip, user_agent, request, lead_event_id,
       recorded_at)
    values (v_contact.id, coalesce((v_consent ->> 'at')::timestamptz, v_now),
            coalesce(v_consent ->> 'source', payload ->> 'source'), v_consent ->> 'text',
            nullif(pg_catalog.btrim(v_consent ->> 'ip'), ''),
            nullif(pg_catalog.btrim(v_consent ->> 'user_agent'), ''), payload, v_event, v_now);
  end if;
  return pg_catalog.jsonb_build_object('contact_id', v_contact.id,
                                       'enrollment_id', v_enrollment, 'status', v_status);
end;
$$;

-- The number a new conversation of this contact in this campaign sends from: the pool
-- number the contact last talked with (sticky across conversations), else one in the
-- contact's area code (local presence, +1 numbers), else the pool spread by contact id.
create or replace function pgflow.sender_for(p_contact_id bigint, p_campaign_id bigint) returns text
language plpgsql stable
set search_path = ''
as $$
begin
  -- plpgsql, not SQL: its plan is kept for the session (a SQL function's is made again in
  -- every transaction; this one runs in every lead's)
  return coalesce(
    (select cn.number
       from pgflow.campaign_numbers cn
       cross join (select ct.phone from pgflow.contacts ct where ct.id = p_contact_id) ct
       cross join (select pg_catalog.max(p.position) as n from pgflow.campaign_numbers p
                    where p.campaign_id = p_campaign_id) pool
       left join lateral (select pg_catalog.max(cv.id) as last_id from pgflow.conversations cv
                           where cv.contact_id = p_contact_id and cv.from_number = cn.number) prev
              on true
      where cn.campaign_id = p_campaign_id
      order by prev.last_id desc nulls last,
               (ct.phone like '+1%' and pg_catalog.left(cn.number, 5) = pg_catalog.left(ct.phone, 5)) desc,
               (cn.position - 1 + pool.n - p_contact_id % pool.n) % pool.n
      limit 1),
    (select c.from_number from pgflow.campaigns c where c.id = p_campaign_id));
end;
$$;
