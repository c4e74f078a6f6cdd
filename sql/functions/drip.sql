-- The drip: enrollment transitions, templates and segments, the send window, and the tick that dispatches due steps.
-- The current definition of each function and view of this area (sql/README.md: how to
-- change one). Grants: roles.sql.

-- Enrollments: active -> paused | completed | stopped | opted_out; paused -> stopped | opted_out
-- (a paused drip is never resumed: the lead replied).
create or replace function pgflow.pause_enrollment(
  p_id bigint, p_reason text default null, p_now timestamptz default null
) returns pgflow.enrollments
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row pgflow.enrollments;
begin
  perform pgflow._set_reason(coalesce(p_reason, 'paused'));
  update pgflow.enrollments
     set status = 'paused', updated_at = coalesce(p_now, pg_catalog.now())
   where id = p_id and status = 'active'
  returning * into v_row;
  if not found then
    perform pgflow._transition_failed('enrollment', p_id,
      (select status from pgflow.enrollments where id = p_id), 'pause', '{active}');
  end if;
  return v_row;
end;
$$;

create or replace function pgflow.complete_enrollment(
  p_id bigint, p_reason text default null, p_now timestamptz default null
) returns pgflow.enrollments
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_row pgflow.enrollments;
begin
  perform pgflow._set_reason(coalesce(p_reason, 'last step sent'));
  update pgflow.enrollments
     set status = 'completed', ended_at = v_now, updated_at = v_now,
         next_step = null, next_message_at = null
   where id = p_id and status = 'active'
  returning * into v_row;
  if not found then
    perform pgflow._transition_failed('enrollment', p_id,
      (select status from pgflow.enrollments where id = p_id), 'complete', '{active}');
  end if;
  return v_row;
end;
$$;

create or replace function pgflow.stop_enrollment(
  p_id bigint, p_reason text, p_now timestamptz default null
) returns pgflow.enrollments
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_row pgflow.enrollments;
begin
  if coalesce(pg_catalog.btrim(p_reason), '') = '' then
    raise exception 'stopping an enrollment needs a reason' using errcode = 'PF003';
  end if;
  perform pgflow._set_reason(p_reason);
  update pgflow.enrollments
     set status = 'stopped', stop_reason = p_reason, ended_at = v_now, updated_at = v_now,
         next_message_at = null
   where id = p_id and status in ('active', 'paused')
  returning * into v_row;
  if not found then
    perform pgflow._transition_failed('enrollment', p_id,
      (select status from pgflow.enrollments where id = p_id), 'stop', '{active,paused}');
  end if;
  return v_row;
end;
$$;

create or replace function pgflow.opt_out_enrollment(
  p_id bigint, p_reason text default null, p_now timestamptz default null
) returns pgflow.enrollments
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_row pgflow.enrollments;
begin
  perform pgflow._set_reason(coalesce(p_reason, 'contact opted out'));
  update pgflow.enrollments
     set status = 'opted_out', stop_reason = coalesce(p_reason, 'contact opted out'),
         ended_at = v_now, updated_at = v_now, next_message_at = null
   where id = p_id and status in ('active', 'paused')
  returning * into v_row;
  if not found then
    perform pgflow._transition_failed('enrollment', p_id,
      (select status from pgflow.enrollments where id = p_id), 'opt out', '{active,paused}');
  end if;
  return v_row;
end;
$$;

-- GSM-7 (160 chars, 153 per part; extension characters count double) or UCS-2 (70 / 67).
create or replace function pgflow.sms_encoding(p_body text) returns text
language plpgsql immutable parallel safe
set search_path = ''
as $$
begin
  -- plpgsql, not sql: a SQL function that cannot be inlined is planned on every call
  return case
    when p_body ~ ('^[@£$¥èéùìòÇ' || E'\n' || 'Øø' || E'\r' || 'Å寅ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&''()*+,\-./0-9:;<=>?¡A-ZÄÖÑܧ¿a-zäöñüà^{}\\\[~\]|€' || E'\f' || ']*$')
      then 'gsm7'
    else 'ucs2'
  end;
end;
$$;

-- The segments of p_body in p_encoding (pgflow.sms_encoding's answer for it): for a caller
-- that has the encoding already.
create or replace function pgflow._segments(p_body text, p_encoding text) returns integer
language plpgsql immutable parallel safe
set search_path = ''
as $$
declare
  v_units integer;
begin
  if p_encoding = 'gsm7' then
    -- extension characters take two septets
    v_units := pg_catalog.length(p_body) + pg_catalog.length(pg_catalog.regexp_replace(
      p_body, '[^\^{}\\\[~\]|€' || E'\f' || ']', '', 'g'));
    return case when v_units <= 160 then 1 else ceil(v_units / 153.0)::integer end;
  end if;
  -- UCS-2 counts UTF-16 code units: characters beyond the BMP (most emoji) take two
  v_units := pg_catalog.length(p_body)
             + pg_catalog.length(pg_catalog.regexp_replace(p_body, '[\u0001-\uffff]', '', 'g'));
  return case when v_units <= 70 then 1 else ceil(v_units / 67.0)::integer end;
end;
$$;

-- The segments p_body takes.
create or replace function pgflow.sms_segments(p_body text) returns integer
language plpgsql immutable parallel safe
set search_path = ''
as $$
begin
  return pgflow._segments(p_body, pgflow.sms_encoding(p_body));
end;
$$;

-- The values a step template may use: contact fields over the contact's attributes.
create or replace function pgflow._template_values(p_contact pgflow.contacts) returns jsonb
language plpgsql immutable
set search_path = ''
as $$
begin
  return p_contact.attributes || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
    'first_name', p_contact.first_name, 'last_name', p_contact.last_name,
    'email', p_contact.email));
end;
$$;

-- {{name}} placeholders from values, else the campaign's fallbacks, else removed (with the
-- space before it when punctuation or a space follows), never left raw.
create or replace function pgflow.render_template(p_template text, p_values jsonb, p_fallbacks jsonb)
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
create or replace function pgflow.next_window_open(
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

-- For the given enrollments that are active and due at p_now: send the due step (message +
-- send_sms job), or defer it to the next opening of the campaign's window and the state
-- rules' hours (pgflow.marketing_open) / until under the daily cap (the campaign's, or a
-- state rule's when smaller), recording the rule that holds it back; then advance or
-- complete. Set-based: one planning
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
           coalesce(ct.timezone, c.timezone) as tz,
           -- all contact_rules reads of a number: is it +1, and its area code
           pg_catalog.left(ct.phone, 5) as prefix, coalesce(ct.state, '') as state,
           case when ct.opted_out_at is not null then 'opted_out'
                when c.status <> 'active' then 'held'
                when s.position is null then 'no_step' end as rare
      from pgflow.enrollments e
      join pgflow.campaigns c on c.id = e.campaign_id
      join pgflow.contacts ct on ct.id = e.contact_id
      left join pgflow.campaign_steps s on s.campaign_id = e.campaign_id
                                       and s.position = e.next_step
     where e.id = any (p_ids) and e.status = 'active' and e.next_message_at <= p_now
     order by e.next_message_at, e.id
       for update of e skip locked
  ), ruled as materialized (
    -- the rules once per area code and state in the batch, not once per lead
    select k.prefix, k.state, pgflow.contact_rules(k.prefix, nullif(k.state, '')) as rules
      from (select distinct d.prefix, d.state from due d) k
  ), slots as materialized (
    -- the campaign's window and the state rules' hours (pgflow.marketing_open), and the
    -- cap, once per campaign, zone and rule set
    select g.campaign_id, g.tz, g.rules,
           coalesce(mo.at, p_now + interval '1 day') as open_at,
           coalesce(mo.rule, 'no window in 8 days') as open_rule,
           least(c.daily_cap, pgflow.rules_cap(g.rules)) as cap,
           pgflow.cap_rule(g.rules, c.daily_cap) as cap_rule
      from (select distinct d.campaign_id, d.tz, ru.rules
              from due d join ruled ru on ru.prefix = d.prefix and ru.state = d.state) g
      join pgflow.campaigns c on c.id = g.campaign_id
      cross join lateral pgflow.marketing_open(g.tz, g.rules, c.window_start, c.window_end,
        c.window_days, p_now) as mo
  ), planned as (
    select d.*, sl.open_at, sl.open_rule, sl.cap, sl.cap_rule
      from due d
      join ruled ru on ru.prefix = d.prefix and ru.state = d.state
      join slots sl on sl.campaign_id = d.campaign_id and sl.tz = d.tz and sl.rules = ru.rules
  ), lined as (
    -- the contact's live conversation of this drip (on its line even when the number has
    -- left the pool since) or on a line of the campaign's pool; a replied one first
    select d.*, coalesce(d.rare, case when live.status = 'engaged' then 'engaged' end) as fate,
           live.from_number as live_from
      from planned d
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
                     when k.recent >= k.cap then 'cap'
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
           nx.position, nx.delay, d.recent, d.oldest, d.cap,
           case d.decision when 'window' then d.open_rule
                           when 'cap' then d.cap_rule when 'queue' then d.cap_rule end
           )::pgflow._due_step
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
      r.rule := null;
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
  update pgflow.enrollments e
     set next_message_at = p.until, deferred_rule = p.rule, updated_at = p_now
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
                                                       rule, ord)
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
           pgflow._segments(b.body, en.encoding), en.encoding,
           'step:' || e.id || ':' || s.position, p_now, p_now
      from pg_catalog.unnest(v_plan) with ordinality as p(enrollment_id, contact_id, decision,
                                                         until, from_number, next_position,
                                                         next_delay, recent, oldest,
                                                         daily_cap, rule, ord)
      join pgflow.enrollments e on e.id = p.enrollment_id
      join pgflow.campaigns c on c.id = e.campaign_id
      join pgflow.contacts ct on ct.id = e.contact_id
      join pgflow.campaign_steps s on s.campaign_id = e.campaign_id and s.position = e.next_step
      join pgflow.conversations cv on cv.contact_id = e.contact_id
                                  and cv.from_number = p.from_number and cv.status <> 'ended'
      -- once per row (offset 0: not inlined into each use)
      cross join lateral (select pgflow.render_template(s.body, pgflow._template_values(ct),
                                                        c.fallbacks) as body offset 0) b
      cross join lateral (select pgflow.sms_encoding(b.body) as encoding offset 0) en
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
         last_step_sent_at = p_now, deferred_rule = null, updated_at = p_now
    from pg_catalog.unnest(v_plan) p
   where e.id = p.enrollment_id and p.decision = 'send' and p.next_position is not null;
  perform pgflow._set_reason('last step sent');
  update pgflow.enrollments e
     set status = 'completed', ended_at = p_now, updated_at = p_now, next_step = null,
         next_message_at = null, last_step_sent_at = p_now, deferred_rule = null
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

-- Outbound messages not settled (queued, sending) for over two minutes whose send_sms job
-- is gone (a job held as failed by a bug, a queue row deleted by hand): queued again, at
-- their send_after when it is later. The claim decides what happens to them; nothing
-- waits for ever without a job.
create or replace function pgflow._requeue_orphans(p_now timestamptz, p_limit integer default 1000)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_count integer := 0;
  r record;
begin
  for r in
    select coalesce(greatest(m.send_after, p_now), p_now) as after,
           pg_catalog.array_agg(m.id order by m.id) as ids
      from (select m.id, m.send_after from pgflow.messages m
             where m.delivery_status in ('queued', 'sending') and m.direction = 'outbound'
               and m.updated_at < p_now - interval '2 minutes'
               and not exists (
                 select 1 from pgflow.pgqueuer q
                  where q.dedupe_key = 'send_sms:' || m.id
                    and q.status in ('queued'::pgflow.pgqueuer_status,
                                     'picked'::pgflow.pgqueuer_status))
             order by m.updated_at
             limit p_limit) m
     group by 1
  loop
    v_count := v_count + pgflow._enqueue_after('send_sms', r.ids, 0, r.after);
  end loop;
  return v_count;
end;
$$;

-- How many dispatch lanes share a backlog of due steps (the dispatch_steps jobs, one per
-- lane, each lane a share of the contacts): the setting pgflow.dispatch_lanes (ALTER
-- DATABASE ... SET pgflow.dispatch_lanes = 4 on a server with more cores), 2 by default.
create or replace function pgflow.dispatch_lanes() returns integer
language sql stable
set search_path = ''
as $$
  select greatest(1, least(64, coalesce(
    nullif(pg_catalog.current_setting('pgflow.dispatch_lanes', true), '')::integer, 2)))
$$;

-- One batch of the due steps of a lane (the contacts with id % lanes = p_lane; null: every
-- contact), dispatched in the caller's transaction: the dispatch_steps job calls it in a
-- loop, a transaction each, while `more` says the batch came back full. Contacts are split
-- between lanes so that one contact's steps (several campaigns) are decided in one batch.
create or replace function pgflow.dispatch_due(
  p_lane integer default null, p_batch integer default 1000, p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_lanes integer := pgflow.dispatch_lanes();
  v_ids bigint[];
  v_started timestamptz := pg_catalog.clock_timestamp();
begin
  if p_lane is not null and (p_lane < 0 or p_lane >= v_lanes) then
    return pg_catalog.jsonb_build_object('sent', 0, 'more', false, 'lane', p_lane,
      'reason', 'no such lane (pgflow.dispatch_lanes is ' || v_lanes || ')');
  end if;
  perform pg_catalog.set_config('statement_timeout', '55s', true);
  perform pg_catalog.set_config('lock_timeout', '5s', true);
  select pg_catalog.array_agg(id) into v_ids from (
    select e.id from pgflow.enrollments e
     where e.status = 'active' and e.next_message_at <= v_now
       and (p_lane is null or e.contact_id % v_lanes = p_lane)
     order by e.next_message_at
     limit p_batch
       for update skip locked
  ) due;
  if v_ids is null then
    return pg_catalog.jsonb_build_object('sent', 0, 'more', false, 'lane', p_lane);
  end if;
  return pgflow._dispatch_steps(v_ids, v_now) || pg_catalog.jsonb_build_object(
    'more', pg_catalog.cardinality(v_ids) >= p_batch, 'lane', p_lane,
    'ms', pg_catalog.round(extract(epoch from pg_catalog.clock_timestamp() - v_started) * 1000));
end;
$$;

create or replace function pgflow.tick(p_now timestamptz default null, p_batch integer default 1000)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_started timestamptz := pg_catalog.clock_timestamp();
  v_batch jsonb;
  v_totals jsonb := '{"sent": 0, "deferred_window": 0, "deferred_cap": 0, "completed": 0,
                      "held": 0, "stopped": 0}'::jsonb;
  v_no_response integer := 0;
  v_conversation bigint;
  v_batches integer := 0;
  v_quiet integer := 0;
  v_min_silence interval;
  v_alerts jsonb;
  v_orphans integer;
  v_receipts integer;
  v_lanes integer := 0;
begin
  if not pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('pgflow.tick')) then
    return pg_catalog.jsonb_build_object('skipped', true, 'reason', 'another tick is running');
  end if;
  perform pg_catalog.set_config('statement_timeout', '55s', true);
  perform pg_catalog.set_config('lock_timeout', '5s', true);

  -- One batch here; a full one hands the rest to the dispatch_steps jobs (one per lane,
  -- run by the workers, a transaction per batch), so a backlog goes out as fast as the
  -- database dispatches it, with no count per minute of our own.
  v_batch := pgflow.dispatch_due(null, p_batch, v_now);
  if v_batch ? 'ms' then  -- a batch was dispatched
    v_batches := 1;
    v_totals := v_batch - 'more' - 'lane' - 'ms';
  end if;
  if (v_batch ->> 'more')::boolean then
    v_lanes := pgflow._enqueue('dispatch_steps',
      (select pg_catalog.array_agg(l) from pg_catalog.generate_series(0, pgflow.dispatch_lanes() - 1) l),
      5);
  end if;

  -- No reply by the deadline after the last step: no_response by rule, unless a person
  -- holds the lead (theirs to settle: no rule ends a conversation under them).
  for v_conversation in
    select c.id from pgflow.conversations c
     where c.status = 'open' and c.reply_deadline_at <= v_now
       and not exists (select 1 from pgflow.messages m
                        where m.conversation_id = c.id and m.direction = 'outbound'
                          and m.delivery_status in ('pending', 'queued', 'sending'))
       and not exists (select 1 from pgflow.contacts ct
                        where ct.id = c.contact_id and ct.held_at is not null)
     order by c.reply_deadline_at
     limit p_batch
       for update skip locked
  loop
    perform pgflow.end_conversation(v_conversation, 'no_response',
      'no reply within the reply timeout after the last step', 'rule', v_now);
    v_no_response := v_no_response + 1;
  end loop;

  -- Engaged conversations quiet past their campaign's silence timeout: classify them.
  select coalesce(pg_catalog.min(silence_timeout), interval '24 hours') into v_min_silence
    from pgflow.campaigns;
  v_min_silence := least(v_min_silence, interval '24 hours');
  for v_conversation in
    select cv.id from pgflow.conversations cv
      left join pgflow.campaigns c on c.id = cv.campaign_id
     where cv.status = 'engaged' and cv.classify_requested_at is null
       and greatest(cv.last_inbound_at, cv.last_outbound_at, cv.engaged_at) < v_now - v_min_silence
       and greatest(cv.last_inbound_at, cv.last_outbound_at, cv.engaged_at)
           < v_now - coalesce(c.silence_timeout, interval '24 hours')
     order by greatest(cv.last_inbound_at, cv.last_outbound_at, cv.engaged_at)
     limit p_batch
       for update of cv skip locked
  loop
    if pgflow._request_classification(v_conversation, v_now) then
      v_quiet := v_quiet + 1;
    end if;
  end loop;

  v_orphans := pgflow._requeue_orphans(v_now, p_batch);
  -- Twilio texts whose final receipt never came: ask Twilio (the check_receipt job).
  v_receipts := pgflow._enqueue_receipt_checks(v_now, p_batch);

  -- pg_cron watches the workers (and the deliveries, the dead letters, the queue). Alerts
  -- are about real time: a tick run at an injected time (a test, the demo) does not judge.
  if p_now is null then
    v_alerts := pgflow.watch('tick', v_now);
  end if;

  return v_totals || pg_catalog.jsonb_build_object(
    'no_response', v_no_response, 'classify_requested', v_quiet, 'batches', v_batches,
    'dispatch_jobs', v_lanes,
    'requeued', v_orphans, 'receipt_checks', v_receipts, 'alerts', v_alerts -> 'open',
    'ms', pg_catalog.round(extract(epoch from pg_catalog.clock_timestamp() - v_started) * 1000));
end;
$$;
