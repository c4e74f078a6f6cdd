-- One validation of a lead for the webhook and the import: pgflow._lead_error (the checks in the order a person would fix them), called by ingest_lead and by import_leads for each row, which each had their own copy.
-- depends: 0044_plan_intake_once

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
revoke execute on function pgflow._lead_error(jsonb,jsonb,text,text) from public;

-- A chunk of a lead list (`pgflow leads import`), in file order: what ingest_lead() would
-- do to each row, one row after the other, done set-based. p_lines[i], p_payloads[i] (the
-- payload ingest_lead would get, naming p_campaign and p_source), p_phones[i] (the edge's
-- E.164, NULL when the raw phone is none; p_phone_errors[i] says why) and p_zones[i] (the
-- zone the edge inferred) describe row i. One row back per row, in order: its line, status
-- (created | already_enrolled | suppressed | rejected), error, detail, contact and
-- enrollment, each exactly as ingest_lead would answer it, and the same rows written:
-- - validation in ingest_lead's order with its words (invalid_payload, the campaign's
--   refusal, invalid_phone, invalid_email, invalid_timezone); a refused row is a
--   lead_events row and nothing else;
-- - contacts upserted with each number's first row (a forgotten number is suppressed by the
--   contacts trigger, as one by one), and its later rows folded in file order into it after
--   step 1 went (a later name, email or state wins; an explicit zone wins and an inferred one
--   only fills a gap; attributes merged; the first consent recorded is kept);
-- - a number's first accepted row enrolls it (created) unless it is opted out (every row
--   suppressed) or enrolled already (already_enrolled), as are its later rows;
-- - each new enrollment's conversation on pgflow.sender_for's number, and step 1 at once
--   when its delay is 0: pgflow._dispatch_steps of all of them in one call, priority 10;
-- - lead_events in file order, and a pgflow.consents row for each accepted row with a
--   consent.
-- Working rows live in two temporary tables of this transaction (dropped at commit).
create or replace function pgflow.import_leads(
  p_campaign text,
  p_source text,
  p_lines integer[],
  p_payloads jsonb[],
  p_phones text[],
  p_phone_errors text[],
  p_zones text[],
  p_now timestamptz default null
) returns table (line integer, status text, error text, detail text, contact_id bigint,
                 enrollment_id bigint)
language plpgsql
security definer
set search_path = ''
set jit = off  -- the validation's estimates would have it compile for seconds
as $$
#variable_conflict use_column
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_n integer := coalesce(pg_catalog.cardinality(p_lines), 0);
  v_refusal jsonb := pgflow.campaign_refusal(p_campaign);
  v_campaign pgflow.campaigns;
  v_first pgflow.campaign_steps;
  v_created bigint[];
begin
  if coalesce(pg_catalog.cardinality(p_payloads), 0) <> v_n
     or coalesce(pg_catalog.cardinality(p_phones), 0) <> v_n
     or coalesce(pg_catalog.cardinality(p_phone_errors), 0) <> v_n
     or coalesce(pg_catalog.cardinality(p_zones), 0) <> v_n then
    raise exception 'import_leads: the arrays must have one element per row' using errcode = 'PF003';
  end if;
  if exists (select 1 from pg_catalog.unnest(p_payloads) p
              where pg_catalog.jsonb_typeof(p) = 'object'
                and (p ->> 'campaign' is distinct from p_campaign
                     or p ->> 'source' is distinct from p_source)) then
    raise exception 'import_leads: every payload must name campaign % and source %',
      p_campaign, p_source using errcode = 'PF003';
  end if;
  if v_n = 0 then
    return;
  end if;
  if v_refusal is null then
    select * into v_campaign from pgflow.campaigns c where c.slug = p_campaign;
    select * into v_first from pgflow.campaign_steps s
     where s.campaign_id = v_campaign.id order by s.position limit 1;
  end if;

  drop table if exists pg_temp.pgflow_import_rows, pg_temp.pgflow_import_contacts;
  create temp table pg_temp.pgflow_import_rows (
    ord integer primary key, line integer, payload jsonb, phone text, error text,
    detail text, first_name text, last_name text, email text, tz text, edge_tz text,
    state text, attributes jsonb, consent jsonb, lead_event_id bigint
  ) on commit drop;

  -- Validation: pgflow._lead_error, as ingest_lead asks it; the edge's zones are checked
  -- once per distinct name, states read once per distinct state (what _state_code reads).
  with r as (
    select x.ord::integer as ord, x.line, x.payload, x.phone, x.phone_error, x.zone,
           nullif(pg_catalog.btrim(x.payload ->> 'timezone'), '') as tz
      from rows from (pg_catalog.unnest(p_lines), pg_catalog.unnest(p_payloads),
                      pg_catalog.unnest(p_phones), pg_catalog.unnest(p_phone_errors),
                      pg_catalog.unnest(p_zones))
           with ordinality as x(line, payload, phone, phone_error, zone, ord)
  ), zones as (
    select z.name, pgflow._is_time_zone(z.name) as known
      from (select r.tz as name from r union select r.zone from r) z
     where z.name is not null
  ), states as (
    select k.lead, pgflow._state_code(k.lead) as code
      from (select distinct pg_catalog.jsonb_build_object('state', r.payload -> 'state',
                                                          'address', r.payload -> 'address') as lead
              from r) k
  )
  insert into pg_temp.pgflow_import_rows
    (ord, line, payload, phone, error, detail, first_name, last_name, email, tz, edge_tz,
     state, attributes, consent)
  select r.ord, r.line, r.payload, r.phone, v.e[1], v.e[2],
         nullif(pg_catalog.btrim(r.payload ->> 'first_name'), ''),
         nullif(pg_catalog.btrim(r.payload ->> 'last_name'), ''),
         nullif(pg_catalog.btrim(r.payload ->> 'email'), ''),
         r.tz, case when ez.known then r.zone end,
         case when v.e is null then st.code end,
         coalesce(nullif(r.payload -> 'attributes', 'null'::jsonb), '{}'::jsonb),
         nullif(r.payload -> 'consent', 'null'::jsonb)
    from r
    left join zones ez on ez.name = r.zone
    left join states st on st.lead = pg_catalog.jsonb_build_object(
      'state', r.payload -> 'state', 'address', r.payload -> 'address')
   cross join lateral (select pgflow._lead_error(r.payload, v_refusal, r.phone, r.phone_error)
                         as e
     offset 0) v;  -- evaluated once per row, not once per reference

  -- One row per number: its first accepted row, which enrolls it (the number's later
  -- rows change the contact after step 1 went, below).
  create temp table pg_temp.pgflow_import_contacts (
    phone text primary key, first_ord integer, first_name text, last_name text, email text,
    tz text, edge_tz text, state text, attributes jsonb, consent_at timestamptz,
    consent_source text, consent_text text, contact_id bigint, suppressed boolean,
    enrollment_id bigint, created boolean not null default false
  ) on commit drop;
  insert into pg_temp.pgflow_import_contacts
    (phone, first_ord, first_name, last_name, email, tz, edge_tz, state, attributes,
     consent_at, consent_source, consent_text)
  select distinct on (i.phone)
         i.phone, i.ord, i.first_name, i.last_name, i.email, i.tz, i.edge_tz, i.state,
         i.attributes,
         case when i.consent is not null then coalesce((i.consent ->> 'at')::timestamptz, v_now) end,
         coalesce(i.consent ->> 'source', case when i.consent is not null then i.payload ->> 'source' end),
         i.consent ->> 'text'
    from pg_temp.pgflow_import_rows i
   where i.error is null
   order by i.phone, i.ord;

  -- ingest_lead's upsert, once per number; an explicit zone wins, an inferred one only
  -- fills a gap (which of the two `excluded.timezone` is, the working row says).
  with up as (
    insert into pgflow.contacts as c
      (phone, first_name, last_name, email, timezone, state, attributes,
       consent_at, consent_source, consent_text, created_at, updated_at)
    select g.phone, g.first_name, g.last_name, g.email, coalesce(g.tz, g.edge_tz), g.state,
           g.attributes, g.consent_at, g.consent_source, g.consent_text, v_now, v_now
      from pg_temp.pgflow_import_contacts g
     order by g.first_ord
    on conflict (phone) do update set
      first_name = coalesce(excluded.first_name, c.first_name),
      last_name = coalesce(excluded.last_name, c.last_name),
      email = coalesce(excluded.email, c.email),
      timezone = coalesce((select g.tz from pg_temp.pgflow_import_contacts g
                            where g.phone = excluded.phone),
                          c.timezone, excluded.timezone),
      state = coalesce(excluded.state, c.state),
      attributes = c.attributes || excluded.attributes,
      consent_at = coalesce(c.consent_at, excluded.consent_at),
      consent_source = case when c.consent_at is null then excluded.consent_source
                            else c.consent_source end,
      consent_text = case when c.consent_at is null then excluded.consent_text
                          else c.consent_text end,
      updated_at = excluded.updated_at
    returning c.id, c.phone, c.opted_out_at
  )
  update pg_temp.pgflow_import_contacts g
     set contact_id = up.id, suppressed = up.opted_out_at is not null
    from up
   where g.phone = up.phone;

  -- A number's first row enrolls it; the enrollment it has already answers the others.
  if v_campaign.id is not null then
    perform pgflow._set_reason('lead ' || coalesce(p_source, 'webhook'));
    with e as (
      insert into pgflow.enrollments as e
        (contact_id, campaign_id, status, next_step, next_message_at, enrolled_at, updated_at)
      select g.contact_id, v_campaign.id, 'active', v_first.position, v_now + v_first.delay,
             v_now, v_now
        from pg_temp.pgflow_import_contacts g
       where not g.suppressed
       order by g.first_ord
      on conflict (contact_id, campaign_id) do nothing
      returning e.id, e.contact_id
    )
    update pg_temp.pgflow_import_contacts g
       set enrollment_id = e.id, created = true
      from e
     where g.contact_id = e.contact_id;
    update pg_temp.pgflow_import_contacts g
       set enrollment_id = e.id
      from pgflow.enrollments e
     where not g.created and e.contact_id = g.contact_id and e.campaign_id = v_campaign.id;

    insert into pgflow.conversations
      (contact_id, campaign_id, agent_id, enrollment_id, from_number, created_at, updated_at)
    select g.contact_id, v_campaign.id, v_campaign.agent_id, g.enrollment_id,
           pgflow.sender_for(g.contact_id, v_campaign.id), v_now, v_now
      from pg_temp.pgflow_import_contacts g
     where g.created
     order by g.first_ord
    on conflict (contact_id, from_number) where status <> 'ended' do nothing;

    if v_first.delay = interval '0' then
      -- Speed to lead: step 1 now, in this transaction, as ingest_lead sends it.
      select pg_catalog.array_agg(g.enrollment_id order by g.first_ord) into v_created
        from pg_temp.pgflow_import_contacts g
       where g.created;
      if v_created is not null then
        perform pgflow._dispatch_steps(v_created, v_now, 10);
      end if;
    end if;
  end if;

  -- A number's later rows, folded in file order into the contact as their upserts one by
  -- one would leave it (a later value wins, an explicit zone wins and an inferred one fills
  -- a gap, attributes merge, the first consent recorded stays).
  with later as (
    select i.phone,
           (pg_catalog.array_agg(i.first_name order by i.ord desc) filter (where i.first_name is not null))[1] as first_name,
           (pg_catalog.array_agg(i.last_name order by i.ord desc) filter (where i.last_name is not null))[1] as last_name,
           (pg_catalog.array_agg(i.email order by i.ord desc) filter (where i.email is not null))[1] as email,
           (pg_catalog.array_agg(i.tz order by i.ord desc) filter (where i.tz is not null))[1] as tz,
           (pg_catalog.array_agg(i.edge_tz order by i.ord) filter (where i.edge_tz is not null))[1] as edge_tz,
           (pg_catalog.array_agg(i.state order by i.ord desc) filter (where i.state is not null))[1] as state,
           pgflow._merge_objects(pg_catalog.array_agg(i.attributes order by i.ord)) as attributes,
           (pg_catalog.array_agg(coalesce((i.consent ->> 'at')::timestamptz, v_now) order by i.ord)
              filter (where i.consent is not null))[1] as consent_at,
           (pg_catalog.array_agg(coalesce(i.consent ->> 'source', i.payload ->> 'source') order by i.ord)
              filter (where i.consent is not null))[1] as consent_source,
           (pg_catalog.array_agg(i.consent ->> 'text' order by i.ord)
              filter (where i.consent is not null))[1] as consent_text
      from pg_temp.pgflow_import_rows i
      join pg_temp.pgflow_import_contacts g on g.phone = i.phone
     where i.error is null and i.ord > g.first_ord
     group by i.phone
  )
  update pgflow.contacts c set
    first_name = coalesce(l.first_name, c.first_name),
    last_name = coalesce(l.last_name, c.last_name),
    email = coalesce(l.email, c.email),
    timezone = coalesce(l.tz, c.timezone, l.edge_tz),
    state = coalesce(l.state, c.state),
    attributes = c.attributes || l.attributes,
    consent_at = coalesce(c.consent_at, l.consent_at),
    consent_source = case when c.consent_at is null then l.consent_source
                          else c.consent_source end,
    consent_text = case when c.consent_at is null then l.consent_text else c.consent_text end,
    updated_at = v_now
    from later l
    join pg_temp.pgflow_import_contacts g on g.phone = l.phone
   where c.id = g.contact_id;

  -- Every row a lead event, in file order (ids taken in that order), and its consent.
  update pg_temp.pgflow_import_rows i
     set lead_event_id = n.id
    from (select o.ord, pg_catalog.nextval('pgflow.lead_events_id_seq'::regclass) as id
            from (select i2.ord from pg_temp.pgflow_import_rows i2 order by i2.ord) o) n
   where i.ord = n.ord;
  insert into pgflow.lead_events
    (id, received_at, source, external_id, campaign_slug, payload, result, error_code,
     error_detail, contact_id, enrollment_id)
  overriding system value
  select i.lead_event_id, v_now,
         case when i.error is null then i.payload ->> 'source'
              else pgflow._short_key(i.payload ->> 'source') end,
         case when i.error is null then i.payload ->> 'external_id'
              else pgflow._short_key(i.payload ->> 'external_id') end,
         case when i.error is null then v_campaign.slug
              else pgflow._short_key(i.payload ->> 'campaign') end,
         i.payload,
         case when i.error is not null then 'rejected'
              when g.suppressed then 'suppressed'
              when g.created and g.first_ord = i.ord then 'created'
              else 'already_enrolled' end,
         i.error, i.detail, g.contact_id, g.enrollment_id
    from pg_temp.pgflow_import_rows i
    left join pg_temp.pgflow_import_contacts g on g.phone = i.phone and i.error is null
   order by i.ord;
  insert into pgflow.consents
    (contact_id, given_at, source, disclosure, ip, user_agent, request, lead_event_id,
     recorded_at)
  select g.contact_id, coalesce((i.consent ->> 'at')::timestamptz, v_now),
         coalesce(i.consent ->> 'source', i.payload ->> 'source'), i.consent ->> 'text',
         nullif(pg_catalog.btrim(i.consent ->> 'ip'), ''),
         nullif(pg_catalog.btrim(i.consent ->> 'user_agent'), ''), i.payload, i.lead_event_id,
         v_now
    from pg_temp.pgflow_import_rows i
    join pg_temp.pgflow_import_contacts g on g.phone = i.phone
   where i.error is null and i.consent is not null
   order by i.ord;

  return query
    select i.line,
           case when i.error is not null then 'rejected'
                when g.suppressed then 'suppressed'
                when g.created and g.first_ord = i.ord then 'created'
                else 'already_enrolled' end,
           i.error, i.detail, g.contact_id, g.enrollment_id
      from pg_temp.pgflow_import_rows i
      left join pg_temp.pgflow_import_contacts g on g.phone = i.phone and i.error is null
     order by i.ord;
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
