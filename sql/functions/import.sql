-- Bulk import: a chunk of a lead list in ONE set-based call, with ingest_lead's rules.
-- The current definition of each function and view of this area (sql/README.md: how to
-- change one). Grants: roles.sql.

-- The objects merged left to right (`||`: a later key wins), as a run of upserts merges a
-- contact's attributes; '{}' for none.
create or replace function pgflow._merge_objects(p_objects jsonb[]) returns jsonb
language plpgsql immutable parallel safe
set search_path = ''
as $$
declare
  v_merged jsonb := '{}';
  v_object jsonb;
begin
  foreach v_object in array coalesce(p_objects, '{}') loop
    v_merged := v_merged || v_object;
  end loop;
  return v_merged;
end;
$$;

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
