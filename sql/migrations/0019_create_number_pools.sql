-- Sending numbers as a resource: the sticky sender of a campaign's pool, each number's use against its limits, and due drip steps fired set-based (one statement per kind of change, not a loop per enrollment).
-- depends: 0018_create_alerts

-- The number a new conversation of this contact in this campaign sends from: the pool
-- number the contact last talked with (sticky across conversations), else one in the
-- contact's area code (local presence, +1 numbers), else the pool spread by contact id.
create function pgflow.sender_for(p_contact_id bigint, p_campaign_id bigint) returns text
language sql stable
set search_path = ''
as $$
  select coalesce(
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
    (select c.from_number from pgflow.campaigns c where c.id = p_campaign_id))
$$;

-- One due enrollment's fate in a dispatch: send | window | cap | held (deferred to `until`)
-- | opted_out | no_step | engaged (a transition) | queue (a send or a cap, decided in
-- order: the contact has several sendable steps in the batch); for a send, its line and
-- the next step; for the cap, the contact's campaign messages of the last 24 h.
create type pgflow._due_step as (
  enrollment_id bigint,
  contact_id bigint,
  decision text,
  until timestamptz,
  from_number text,
  next_position integer,
  next_delay interval,
  recent integer,
  oldest timestamptz,
  daily_cap integer
);

-- For the given enrollments that are active and due at p_now: send the due step (message +
-- send_sms job), or defer it to the next window opening / until under the daily cap, then
-- advance or complete; as in 0006, with the same results, but set-based: one planning
-- query, then one statement per kind of change (transitions with their own reason still
-- go one by one, and are rare). Rows locked by someone else are skipped.
create or replace function pgflow._dispatch_steps(
  p_ids bigint[], p_now timestamptz, p_priority integer default 0
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_plan pgflow._due_step[];
  r pgflow._due_step;
  i integer;
  v_sends jsonb := '{}';
  v_before integer;
  v_messages bigint[];
  v_completed integer;
  v_stopped integer := 0;
begin
  with due as materialized (
    select e.id, e.contact_id, e.campaign_id, e.next_step, e.next_message_at,
           c.status as campaign_status, c.daily_cap,
           case when ct.opted_out_at is not null then 'opted_out'
                when c.status <> 'active' then 'held'
                when s.position is null then 'no_step' end as rare,
           pgflow.next_window_open(coalesce(ct.timezone, c.timezone), c.window_start,
                                   c.window_end, c.window_days, p_now) as open_at
      from pgflow.enrollments e
      join pgflow.campaigns c on c.id = e.campaign_id
      join pgflow.contacts ct on ct.id = e.contact_id
      left join pgflow.campaign_steps s on s.campaign_id = e.campaign_id
                                       and s.position = e.next_step
     where e.id = any (p_ids) and e.status = 'active' and e.next_message_at <= p_now
     order by e.next_message_at, e.id
       for update of e skip locked
  ), lined as (
    -- the contact's live conversation of this drip (on its line even when the number has
    -- left the pool since) or on a line of the campaign's pool; a replied one first
    select d.*, coalesce(d.rare, case when live.status = 'engaged' then 'engaged' end) as fate,
           live.from_number as live_from
      from due d
      left join lateral (
        select cv.status, cv.from_number from pgflow.conversations cv
         where cv.contact_id = d.contact_id and cv.status <> 'ended'
           and (cv.enrollment_id = d.id
                or cv.from_number in (select cn.number from pgflow.campaign_numbers cn
                                       where cn.campaign_id = d.campaign_id))
         order by cv.status = 'engaged' desc, cv.enrollment_id = d.id desc, cv.id desc
         limit 1) live on true
  ), ranked as (
    -- the contact's campaign messages of the last 24 h, and how many sendable rows the
    -- contact has in this batch (each one sent counts against the next one's cap)
    select l.*, coalesce(recent.n, 0)::integer as recent, recent.oldest,
           pg_catalog.count(*) over (
             partition by l.contact_id, (l.fate is null and l.open_at <= p_now) is not false)
             as sendable
      from lined l
      left join lateral (
        select pg_catalog.count(*) as n, pg_catalog.min(m.created_at) as oldest
          from pgflow.messages m
         where m.contact_id = l.contact_id and m.kind = 'campaign'
           and m.created_at > p_now - interval '24 hours' and m.created_at <= p_now
           and m.delivery_status not in ('suppressed', 'dead_letter', 'failed')) recent
        on l.fate is null and l.open_at <= p_now is not false
  ), decided as (
    select k.*, case when k.fate is not null then k.fate
                     when k.open_at > p_now then 'window'
                     when k.sendable > 1 then 'queue'
                     when k.recent >= k.daily_cap then 'cap'
                     else 'send' end as decision
      from ranked k
  )
  select pg_catalog.array_agg(row(
           d.id, d.contact_id, d.decision,
           case d.decision
             when 'held' then p_now + interval '15 minutes'
             when 'window' then d.open_at
             when 'cap' then coalesce(d.oldest, p_now) + interval '24 hours 1 second' end,
           case when d.decision in ('send', 'queue')
                then coalesce(d.live_from, pgflow.sender_for(d.contact_id, d.campaign_id)) end,
           nx.position, nx.delay, d.recent, d.oldest, d.daily_cap)::pgflow._due_step
         order by d.next_message_at, d.id)
    into v_plan
    from decided d
    left join lateral (
      select s.position, s.delay from pgflow.campaign_steps s
       where s.campaign_id = d.campaign_id and s.position > d.next_step
       order by s.position limit 1) nx on d.decision in ('send', 'queue');
  if v_plan is null then
    return '{"sent": 0, "deferred_window": 0, "deferred_cap": 0, "completed": 0, "held": 0,
             "stopped": 0}'::jsonb;
  end if;

  -- A contact with several sendable steps in the batch (two campaigns): in order, each
  -- one sent counts against the next one's cap, as one by one.
  for i in 1 .. pg_catalog.cardinality(v_plan) loop
    continue when v_plan[i].decision <> 'queue';
    r := v_plan[i];
    v_before := coalesce((v_sends ->> r.contact_id::text)::integer, 0);
    if r.recent + v_before >= r.daily_cap then
      r.decision := 'cap';
      r.until := case when r.recent > 0 then r.oldest else p_now end
                 + interval '24 hours 1 second';
    else
      r.decision := 'send';
      v_sends := v_sends || pg_catalog.jsonb_build_object(r.contact_id::text, v_before + 1);
    end if;
    v_plan[i] := r;
  end loop;

  -- Transitions that carry their own reason, one by one (rare).
  for r in select * from pg_catalog.unnest(v_plan) p
            where p.decision in ('opted_out', 'no_step', 'engaged')
  loop
    if r.decision = 'opted_out' then
      perform pgflow.opt_out_enrollment(r.enrollment_id, 'contact opted out', p_now);
      v_stopped := v_stopped + 1;
    elsif r.decision = 'engaged' then
      -- The lead has replied on this line: the drip is over.
      perform pgflow.stop_enrollment(r.enrollment_id, 'lead replied', p_now);
      v_stopped := v_stopped + 1;
    else
      perform pgflow.complete_enrollment(r.enrollment_id,
        'no step ' || (select e.next_step from pgflow.enrollments e where e.id = r.enrollment_id),
        p_now);
    end if;
  end loop;

  -- Not now: a paused campaign looks again in a quarter of an hour; a closed window waits
  -- for its opening; a contact at the daily cap waits until its oldest message is a day old.
  update pgflow.enrollments e set next_message_at = p.until, updated_at = p_now
    from pg_catalog.unnest(v_plan) p
   where e.id = p.enrollment_id and p.decision in ('held', 'window', 'cap');

  -- Sends: the conversation on the line (one per contact and line), the message, its job.
  perform pgflow._set_reason('step due');
  insert into pgflow.conversations
    (contact_id, campaign_id, agent_id, enrollment_id, from_number, created_at, updated_at)
  select distinct on (e.contact_id, p.from_number)
         e.contact_id, e.campaign_id, c.agent_id, e.id, p.from_number, p_now, p_now
    from pg_catalog.unnest(v_plan) with ordinality as p(enrollment_id, contact_id, decision,
                                                       until, from_number, next_position,
                                                       next_delay, recent, oldest, daily_cap,
                                                       ord)
    join pgflow.enrollments e on e.id = p.enrollment_id
    join pgflow.campaigns c on c.id = e.campaign_id
   where p.decision = 'send'
     and not exists (select 1 from pgflow.conversations cv
                      where cv.contact_id = e.contact_id and cv.from_number = p.from_number
                        and cv.status <> 'ended')
   order by e.contact_id, p.from_number, p.ord
  on conflict (contact_id, from_number) where status <> 'ended' do nothing;

  with sent as (
    insert into pgflow.messages
      (conversation_id, contact_id, enrollment_id, direction, kind, body, step_position,
       delivery_status, segments, encoding, dedupe_key, created_at, updated_at)
    select cv.id, e.contact_id, e.id, 'outbound', 'campaign', b.body, s.position, 'queued',
           pgflow.sms_segments(b.body), pgflow.sms_encoding(b.body),
           'step:' || e.id || ':' || s.position, p_now, p_now
      from pg_catalog.unnest(v_plan) with ordinality as p(enrollment_id, contact_id, decision,
                                                         until, from_number, next_position,
                                                         next_delay, recent, oldest,
                                                         daily_cap, ord)
      join pgflow.enrollments e on e.id = p.enrollment_id
      join pgflow.campaigns c on c.id = e.campaign_id
      join pgflow.contacts ct on ct.id = e.contact_id
      join pgflow.campaign_steps s on s.campaign_id = e.campaign_id and s.position = e.next_step
      join pgflow.conversations cv on cv.contact_id = e.contact_id
                                  and cv.from_number = p.from_number and cv.status <> 'ended'
      cross join lateral (select pgflow.render_template(s.body, pgflow._template_values(ct),
                                                        c.fallbacks) as body) b
     where p.decision = 'send'
     order by p.ord
    on conflict (dedupe_key) do nothing
    returning id
  )
  select pg_catalog.array_agg(id order by id) into v_messages from sent;

  -- A conversation whose last step went out waits reply_timeout for an answer.
  update pgflow.conversations cv set reply_deadline_at = p_now + c.reply_timeout
    from pg_catalog.unnest(v_plan) p
    join pgflow.enrollments e on e.id = p.enrollment_id
    join pgflow.campaigns c on c.id = e.campaign_id
   where p.decision = 'send' and p.next_position is null
     and cv.contact_id = e.contact_id and cv.from_number = p.from_number and cv.status = 'open';
  update pgflow.enrollments e
     set next_step = p.next_position, next_message_at = p_now + p.next_delay,
         last_step_sent_at = p_now, updated_at = p_now
    from pg_catalog.unnest(v_plan) p
   where e.id = p.enrollment_id and p.decision = 'send' and p.next_position is not null;
  perform pgflow._set_reason('last step sent');
  update pgflow.enrollments e
     set status = 'completed', ended_at = p_now, updated_at = p_now, next_step = null,
         next_message_at = null, last_step_sent_at = p_now
    from pg_catalog.unnest(v_plan) p
   where e.id = p.enrollment_id and p.decision = 'send' and p.next_position is null
     and e.status = 'active';
  get diagnostics v_completed = row_count;

  perform pgflow._enqueue('send_sms', v_messages, p_priority);
  return (select pg_catalog.jsonb_build_object(
    'sent', coalesce(pg_catalog.cardinality(v_messages), 0),
    'deferred_window', pg_catalog.count(*) filter (where p.decision = 'window'),
    'deferred_cap', pg_catalog.count(*) filter (where p.decision = 'cap'),
    'completed', v_completed + pg_catalog.count(*) filter (where p.decision = 'no_step'),
    'held', pg_catalog.count(*) filter (where p.decision = 'held'),
    'stopped', v_stopped)
    from pg_catalog.unnest(v_plan) p);
end;
$$;

-- ingest_lead as in 0006, but the conversation opens on the contact's sticky sender of the
-- campaign's pool (pgflow.sender_for), not always on from_number; a refused lead's
-- identifiers are kept short enough to index (pgflow._short_key); and a contact's first
-- recorded consent is kept (a later lead cannot rewrite the evidence). One call per lead.
-- Records it in lead_events whatever happens; upserts the contact; enrolls idempotently;
-- opens the conversation; sends step 1 at once when it is due and the window is open. p_edge carries what the HTTP edge derived: {"phone": E.164 or null,
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
$$;


-- Each sending number today (UTC): messages and segments claimed against its limits, and
-- the campaigns whose pool it is in.
create function pgflow.number_report(p_now timestamptz default null)
returns table (number text, campaigns text[], inbound_agent text, per_second numeric,
               daily_segments integer, messages_today integer, segments_today integer)
language sql stable
security definer
set search_path = ''
as $$
  select n.number,
         coalesce((select pg_catalog.array_agg(c.slug order by c.slug)
                     from pgflow.campaign_numbers cn join pgflow.campaigns c on c.id = cn.campaign_id
                    where cn.number = n.number), '{}'),
         a.name, n.per_second, n.daily_segments,
         coalesce(u.messages, 0)::integer, coalesce(u.segments, 0)::integer
    from pgflow.sending_numbers n
    left join pgflow.agents a on a.id = n.inbound_agent_id
    left join lateral (
      select pg_catalog.sum(s.messages) as messages, pg_catalog.sum(s.segments) as segments
        from pgflow.number_usage s
       where s.number = n.number
         and s.day = (coalesce(p_now, pg_catalog.now()) at time zone 'UTC')::date) u on true
   order by n.number
$$;

-- Set or clear a number's limits (`pgflow numbers set`): each key of p_limits that is
-- present is applied, null removing the limit ({"per_second": 1, "daily_segments": null}).
create function pgflow.set_number_limits(
  p_number text, p_limits jsonb, p_now timestamptz default null
) returns pgflow.sending_numbers
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row pgflow.sending_numbers;
begin
  if exists (select 1 from pg_catalog.jsonb_object_keys(p_limits) k
              where k not in ('per_second', 'daily_segments')) then
    raise exception 'unknown limit in %', p_limits using errcode = 'PF003',
      hint = 'the limits are per_second and daily_segments';
  end if;
  update pgflow.sending_numbers n
     set per_second = case when p_limits ? 'per_second'
                           then (p_limits ->> 'per_second')::numeric else n.per_second end,
         daily_segments = case when p_limits ? 'daily_segments'
                               then (p_limits ->> 'daily_segments')::integer
                               else n.daily_segments end,
         updated_at = coalesce(p_now, pg_catalog.now())
   where n.number = p_number
  returning * into v_row;
  if not found then
    raise exception 'no sending number %', p_number using errcode = 'PF002',
      hint = 'numbers come from campaign files (from_number, from_numbers, numbers)';
  end if;
  return v_row;
end;
$$;

revoke execute on function pgflow.sender_for(bigint, bigint),
  pgflow._dispatch_steps(bigint[], timestamptz, integer),
  pgflow.number_report(timestamptz),
  pgflow.set_number_limits(text, jsonb, timestamptz)
  from public;
grant execute on function pgflow.number_report(timestamptz)
  to pgflow_web, pgflow_operator, pgflow_reader;
grant execute on function pgflow.set_number_limits(text, jsonb, timestamptz)
  to pgflow_operator;
