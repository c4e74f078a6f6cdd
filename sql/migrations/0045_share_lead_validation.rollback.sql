-- Undo 0045: ingest_lead and import_leads with their own copies of the validation; no _lead_error.
-- depends: 0044_plan_intake_once

CREATE OR REPLACE FUNCTION pgflow.ingest_lead(payload jsonb, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone, p_edge jsonb DEFAULT NULL::jsonb)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
 SET plan_cache_mode TO 'force_generic_plan'
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
$function$;

CREATE OR REPLACE FUNCTION pgflow.import_leads(p_campaign text, p_source text, p_lines integer[], p_payloads jsonb[], p_phones text[], p_phone_errors text[], p_zones text[], p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS TABLE(line integer, status text, error text, detail text, contact_id bigint, enrollment_id bigint)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
 SET jit TO 'off'
AS $function$
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

  -- Validation, in ingest_lead's order and words; zones are checked once per distinct name,
  -- states read once per distinct state (what _state_code reads of a lead).
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
    left join zones tz on tz.name = r.tz
    left join zones ez on ez.name = r.zone
    left join states st on st.lead = pg_catalog.jsonb_build_object(
      'state', r.payload -> 'state', 'address', r.payload -> 'address')
   cross join lateral (select case
     when r.payload is null or pg_catalog.jsonb_typeof(r.payload) <> 'object' then
       array['invalid_payload', 'the body must be a JSON object']
     when pg_catalog.jsonb_typeof(r.payload -> 'campaign') is distinct from 'string'
          or pg_catalog.btrim(r.payload ->> 'campaign') = '' then
       array['invalid_payload', 'campaign (a slug string) is required']
     when pg_catalog.jsonb_typeof(r.payload -> 'phone') is distinct from 'string' then
       array['invalid_payload', 'phone (a string) is required']
     when r.payload ? 'first_name'
          and pg_catalog.jsonb_typeof(r.payload -> 'first_name') not in ('string', 'null') then
       array['invalid_payload', 'first_name must be a string']
     when pg_catalog.length(r.payload ->> 'first_name') > 200 then
       array['invalid_payload', 'first_name is longer than 200 characters']
     when r.payload ? 'last_name'
          and pg_catalog.jsonb_typeof(r.payload -> 'last_name') not in ('string', 'null') then
       array['invalid_payload', 'last_name must be a string']
     when pg_catalog.length(r.payload ->> 'last_name') > 200 then
       array['invalid_payload', 'last_name is longer than 200 characters']
     when r.payload ? 'email'
          and pg_catalog.jsonb_typeof(r.payload -> 'email') not in ('string', 'null') then
       array['invalid_payload', 'email must be a string']
     when pg_catalog.length(r.payload ->> 'email') > 200 then
       array['invalid_payload', 'email is longer than 200 characters']
     when r.payload ? 'timezone'
          and pg_catalog.jsonb_typeof(r.payload -> 'timezone') not in ('string', 'null') then
       array['invalid_payload', 'timezone must be a string']
     when pg_catalog.length(r.payload ->> 'timezone') > 200 then
       array['invalid_payload', 'timezone is longer than 200 characters']
     when r.payload ? 'source'
          and pg_catalog.jsonb_typeof(r.payload -> 'source') not in ('string', 'null') then
       array['invalid_payload', 'source must be a string']
     when pg_catalog.length(r.payload ->> 'source') > 200 then
       array['invalid_payload', 'source is longer than 200 characters']
     when r.payload ? 'external_id'
          and pg_catalog.jsonb_typeof(r.payload -> 'external_id') not in ('string', 'null') then
       array['invalid_payload', 'external_id must be a string']
     when pg_catalog.length(r.payload ->> 'external_id') > 200 then
       array['invalid_payload', 'external_id is longer than 200 characters']
     when r.payload ? 'attributes'
          and pg_catalog.jsonb_typeof(r.payload -> 'attributes') not in ('object', 'null') then
       array['invalid_payload', 'attributes must be an object']
     when r.payload ? 'consent'
          and pg_catalog.jsonb_typeof(r.payload -> 'consent') not in ('object', 'null') then
       array['invalid_payload', 'consent must be an object']
     when pg_catalog.jsonb_typeof(r.payload -> 'consent') = 'object'
          and (pg_catalog.jsonb_typeof(r.payload #> '{consent,at}') not in ('string', 'null')
               or not pgflow._is_timestamp(r.payload #>> '{consent,at}')) then
       array['invalid_payload', 'consent.at must be an ISO 8601 time, e.g. 2026-11-23T14:59:00Z']
     when pg_catalog.jsonb_typeof(r.payload -> 'consent') = 'object'
          and (pg_catalog.jsonb_typeof(r.payload #> '{consent,text}') not in ('string', 'null')
               or pg_catalog.jsonb_typeof(r.payload #> '{consent,source}') not in ('string', 'null')) then
       array['invalid_payload', 'consent.text and consent.source must be strings']
     when pg_catalog.jsonb_typeof(r.payload -> 'consent') = 'object'
          and (pg_catalog.jsonb_typeof(r.payload #> '{consent,ip}') not in ('string', 'null')
               or pg_catalog.length(r.payload #>> '{consent,ip}') > 64) then
       array['invalid_payload', 'consent.ip must be a string of at most 64 characters']
     when pg_catalog.jsonb_typeof(r.payload -> 'consent') = 'object'
          and (pg_catalog.jsonb_typeof(r.payload #> '{consent,user_agent}') not in ('string', 'null')
               or pg_catalog.length(r.payload #>> '{consent,user_agent}') > 512) then
       array['invalid_payload', 'consent.user_agent must be a string of at most 512 characters']
     when v_refusal is not null then
       array[v_refusal ->> 'error', v_refusal ->> 'detail']
     when r.phone is null or r.phone !~ '^\+[1-9][0-9]{6,14}$' then
       array['invalid_phone', coalesce(r.phone_error, 'not a valid phone number')]
     when nullif(r.payload ->> 'email', '') is not null
          and r.payload ->> 'email' !~ '^[^@\s]+@[^@\s]+$' then
       array['invalid_email', 'email is not an address']
     when r.tz is not null and not tz.known then
       array['invalid_timezone', pg_catalog.format(
         'unknown time zone %L (use an IANA name like America/Chicago)', r.tz)]
     end as e
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
$function$;

drop function pgflow._lead_error(jsonb,jsonb,text,text);
