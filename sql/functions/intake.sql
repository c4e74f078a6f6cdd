-- Intake: a lead in, by webhook or CSV row, as one call; a lead that cannot be read is still recorded.
-- The current definition of each function and view of this area (sql/README.md: how to
-- change one). Grants: roles.sql.
--
-- Cost: the functions a lead calls are plpgsql, not SQL. PostgreSQL 15 parses and plans a
-- SQL function that it cannot inline (ours never inline: `set search_path`) again in every
-- transaction, i.e. for every lead; plpgsql keeps its plans for the session.

-- E.164 from a loosely formatted number when no normalised phone comes from the edge:
-- US national formats and explicit international ones; NULL when it cannot be one.
create or replace function pgflow._normalize_phone(p_raw text) returns text
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

-- Record a lead that could not even be read (malformed JSON, too large, not an object).
create or replace function pgflow.reject_lead(
  p_raw_body text,
  p_error text,
  p_detail text,
  p_source text default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
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

-- Why a lead is refused, in the order a person would fix things: {error, detail}, or null
-- when it is not. p_refusal: pgflow.campaign_refusal() of its campaign; p_phone: its number
-- in E.164 (null when none could be made; p_phone_error says why). ingest_lead asks it for
-- one lead, import_leads for each row of a chunk.
create or replace function pgflow._lead_error(
  p_payload jsonb, p_refusal jsonb, p_phone text, p_phone_error text
) returns text[]
language plpgsql stable
set search_path = ''
as $$
begin
  return case
     when p_payload is null or pg_catalog.jsonb_typeof(p_payload) <> 'object' then
       array['invalid_payload', 'the body must be a JSON object']
     when pg_catalog.jsonb_typeof(p_payload -> 'campaign') is distinct from 'string'
          or pg_catalog.btrim(p_payload ->> 'campaign') = '' then
       array['invalid_payload', 'campaign (a slug string) is required']
     when pg_catalog.jsonb_typeof(p_payload -> 'phone') is distinct from 'string' then
       array['invalid_payload', 'phone (a string) is required']
     when p_payload ? 'first_name'
          and pg_catalog.jsonb_typeof(p_payload -> 'first_name') not in ('string', 'null') then
       array['invalid_payload', 'first_name must be a string']
     when pg_catalog.length(p_payload ->> 'first_name') > 200 then
       array['invalid_payload', 'first_name is longer than 200 characters']
     when p_payload ? 'last_name'
          and pg_catalog.jsonb_typeof(p_payload -> 'last_name') not in ('string', 'null') then
       array['invalid_payload', 'last_name must be a string']
     when pg_catalog.length(p_payload ->> 'last_name') > 200 then
       array['invalid_payload', 'last_name is longer than 200 characters']
     when p_payload ? 'email'
          and pg_catalog.jsonb_typeof(p_payload -> 'email') not in ('string', 'null') then
       array['invalid_payload', 'email must be a string']
     when pg_catalog.length(p_payload ->> 'email') > 200 then
       array['invalid_payload', 'email is longer than 200 characters']
     when p_payload ? 'timezone'
          and pg_catalog.jsonb_typeof(p_payload -> 'timezone') not in ('string', 'null') then
       array['invalid_payload', 'timezone must be a string']
     when pg_catalog.length(p_payload ->> 'timezone') > 200 then
       array['invalid_payload', 'timezone is longer than 200 characters']
     when p_payload ? 'source'
          and pg_catalog.jsonb_typeof(p_payload -> 'source') not in ('string', 'null') then
       array['invalid_payload', 'source must be a string']
     when pg_catalog.length(p_payload ->> 'source') > 200 then
       array['invalid_payload', 'source is longer than 200 characters']
     when p_payload ? 'external_id'
          and pg_catalog.jsonb_typeof(p_payload -> 'external_id') not in ('string', 'null') then
       array['invalid_payload', 'external_id must be a string']
     when pg_catalog.length(p_payload ->> 'external_id') > 200 then
       array['invalid_payload', 'external_id is longer than 200 characters']
     when p_payload ? 'attributes'
          and pg_catalog.jsonb_typeof(p_payload -> 'attributes') not in ('object', 'null') then
       array['invalid_payload', 'attributes must be an object']
     when p_payload ? 'consent'
          and pg_catalog.jsonb_typeof(p_payload -> 'consent') not in ('object', 'null') then
       array['invalid_payload', 'consent must be an object']
     when pg_catalog.jsonb_typeof(p_payload -> 'consent') = 'object'
          and (pg_catalog.jsonb_typeof(p_payload #> '{consent,at}') not in ('string', 'null')
               or not pgflow._is_timestamp(p_payload #>> '{consent,at}')) then
       array['invalid_payload', 'consent.at must be an ISO 8601 time, e.g. 2026-11-23T14:59:00Z']
     when pg_catalog.jsonb_typeof(p_payload -> 'consent') = 'object'
          and (pg_catalog.jsonb_typeof(p_payload #> '{consent,text}') not in ('string', 'null')
               or pg_catalog.jsonb_typeof(p_payload #> '{consent,source}') not in ('string', 'null')) then
       array['invalid_payload', 'consent.text and consent.source must be strings']
     when pg_catalog.jsonb_typeof(p_payload -> 'consent') = 'object'
          and (pg_catalog.jsonb_typeof(p_payload #> '{consent,ip}') not in ('string', 'null')
               or pg_catalog.length(p_payload #>> '{consent,ip}') > 64) then
       array['invalid_payload', 'consent.ip must be a string of at most 64 characters']
     when pg_catalog.jsonb_typeof(p_payload -> 'consent') = 'object'
          and (pg_catalog.jsonb_typeof(p_payload #> '{consent,user_agent}') not in ('string', 'null')
               or pg_catalog.length(p_payload #>> '{consent,user_agent}') > 512) then
       array['invalid_payload', 'consent.user_agent must be a string of at most 512 characters']
     when p_refusal is not null then
       array[p_refusal ->> 'error', p_refusal ->> 'detail']
     when p_phone is null or p_phone !~ '^\+[1-9][0-9]{6,14}$' then
       array['invalid_phone', coalesce(p_phone_error, 'not a valid phone number')]
     when nullif(p_payload ->> 'email', '') is not null
          and p_payload ->> 'email' !~ '^[^@\s]+@[^@\s]+$' then
       array['invalid_email', 'email is not an address']
     when nullif(pg_catalog.btrim(p_payload ->> 'timezone'), '') is not null
          and not pgflow._is_time_zone(pg_catalog.btrim(p_payload ->> 'timezone')) then
       array['invalid_timezone', pg_catalog.format(
         'unknown time zone %L (use an IANA name like America/Chicago)',
         pg_catalog.btrim(p_payload ->> 'timezone'))]
  end;
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
  v_contact pgflow.contacts;
  v_enrollment bigint;
  v_status text;
  v_event bigint;
  v_consent jsonb;
begin
  -- Validation (pgflow._lead_error), then the campaign and its first step.
  v_refusal := pgflow.campaign_refusal(payload ->> 'campaign');
  v_phone := case when v_edge ? 'phone' then v_edge ->> 'phone'
                  else pgflow._normalize_phone(payload ->> 'phone') end;
  select e[1], e[2] into v_error, v_detail
    from (select pgflow._lead_error(payload, v_refusal, v_phone, v_edge ->> 'phone_error') as e) x;
  if v_error is null then
    select * into v_campaign from pgflow.campaigns where slug = payload ->> 'campaign';
    select * into v_first from pgflow.campaign_steps
     where campaign_id = v_campaign.id order by position limit 1;
    v_tz := nullif(pg_catalog.btrim(payload ->> 'timezone'), '');
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
