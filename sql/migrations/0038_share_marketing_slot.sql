-- One computation of a marketing text's slot (marketing_slot: the cap, then the window and the rules' hours, and the rule that held it back) for the claim and the dry run, and one cap_rule for the tick, the claim and the dry run.
-- depends: 0037_replace_console_functions

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
           case when ct.opted_out_at is not null then 'opted_out'
                when c.status <> 'active' then 'held'
                when s.position is null then 'no_step' end as rare,
           -- the campaign's window and the state rules' hours (pgflow.marketing_open)
           coalesce(mo.at, p_now + interval '1 day') as open_at,
           coalesce(mo.rule, 'no window in 8 days') as open_rule,
           least(c.daily_cap, pgflow.rules_cap(cr.rules)) as cap,
           pgflow.cap_rule(cr.rules, c.daily_cap) as cap_rule
      from pgflow.enrollments e
      join pgflow.campaigns c on c.id = e.campaign_id
      join pgflow.contacts ct on ct.id = e.contact_id
      cross join lateral pgflow.contact_rules(ct.phone, ct.state) as cr(rules)
      cross join lateral pgflow.marketing_open(coalesce(ct.timezone, c.timezone), cr.rules,
        c.window_start, c.window_end, c.window_days, p_now) as mo
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
           pgflow.sms_segments(b.body), pgflow.sms_encoding(b.body),
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

-- When the claim may send one marketing text (a drip step; a person's first text to a
-- lead who never wrote) to this contact (pgflow.marketing_slot): the campaign's window and
-- the rules' hours, and the rules' cap per 24 h counted over the lead's campaign texts sent
-- (or being sent) in the last day. The caller holds the contact's row locked (two claims
-- cannot both pass the cap); no window in 8 days waits a day.
create or replace function pgflow._marketing_slot(
  p_contact pgflow.contacts, p_campaign pgflow.campaigns, p_now timestamptz,
  out at timestamptz, out rule text
)
language plpgsql stable
set search_path = ''
as $$
declare
  v_rules text[] := pgflow.contact_rules(p_contact.phone, p_contact.state);
  v_cap integer := pgflow.rules_cap(v_rules);
  v_recent timestamptz[];
begin
  if v_cap is not null then
    select pg_catalog.array_agg(coalesce(m.sent_at, m.updated_at)) into v_recent
      from pgflow.messages m
     where m.contact_id = p_contact.id and m.kind = 'campaign' and m.direction = 'outbound'
       and m.created_at > p_now - interval '10 days'
       and ((m.sent_at > p_now - interval '24 hours' and m.delivery_status <> 'failed')
            or m.delivery_status = 'sending');
  end if;
  select s.at, s.rule into at, rule
    from pgflow.marketing_slot(
      coalesce(p_contact.timezone, p_campaign.timezone, 'America/New_York'), v_rules,
      coalesce(p_campaign.window_start, time '09:00'), coalesce(p_campaign.window_end, time '20:00'),
      coalesce(p_campaign.window_days, '{1,2,3,4,5,6}'), v_cap, pgflow.cap_rule(v_rules, null),
      v_recent, p_now) s;
  at := coalesce(at, p_now + interval '1 day');
end;
$$;

-- Which cap holds a lead back when p_campaign_cap (the campaign's daily cap; null: none
-- counted) and the rules' caps both apply: 'campaign_cap' when the campaign's is the
-- smaller, else 'state_cap:XX' (the first rule with the smallest cap); null with no cap.
create or replace function pgflow.cap_rule(p_rules text[], p_campaign_cap integer) returns text
language sql stable parallel safe
set search_path = ''
as $$
  select case
    when pgflow.rules_cap(p_rules) <= coalesce(p_campaign_cap, pgflow.rules_cap(p_rules))
      then 'state_cap:' || (select pg_catalog.min(r.state) from pgflow.state_rules r
                             where r.state = any (p_rules)
                               and r.max_per_24h = pgflow.rules_cap(p_rules))
    when p_campaign_cap is not null then 'campaign_cap' end
$$;
revoke execute on function pgflow.cap_rule(text[],integer) from public;

-- The first instant at or after p_at when one more marketing text may go to a lead: under
-- p_cap per rolling 24 h (given when its recent ones went, p_recent; p_cap_rule names that
-- cap), then inside the window and the rules' hours (pgflow.marketing_open). rule: what
-- held it back (null: p_at itself), the window's rule when the hours moved it furthest,
-- else the cap's. `at` null when no window opens in 8 days. The claim and the dry run
-- both ask this.
create or replace function pgflow.marketing_slot(
  p_tz text, p_rules text[], p_start time, p_end time, p_days smallint[],
  p_cap integer, p_cap_rule text, p_recent timestamptz[], p_at timestamptz,
  out at timestamptz, out rule text
)
language plpgsql stable parallel safe
set search_path = ''
as $$
declare
  v_capped timestamptz := pgflow.cap_open(p_cap, coalesce(p_recent, '{}'), p_at);
  v_open record;
begin
  select o.at, o.rule into v_open
    from pgflow.marketing_open(p_tz, p_rules, p_start, p_end, p_days, v_capped) o;
  at := v_open.at;
  rule := case when v_open.at is null then 'no window in 8 days'
               when v_open.rule is not null and v_open.at > v_capped then v_open.rule
               when v_capped > p_at then p_cap_rule
               else v_open.rule end;
end;
$$;
revoke execute on function pgflow.marketing_slot(text,text[],time without time zone,time without time zone,smallint[],integer,text,timestamp with time zone[],timestamp with time zone) from public;

-- A dry run of one applied campaign for sample leads (p_leads: [{phone, timezone?,
-- state?}]): when each step would go over the next p_days from p_now, if nobody replies,
-- and which rule decided, as the tick and the claim would (the window and the rules' hours,
-- the campaign's daily cap and the rules' cap, counted over the simulated steps). Nothing
-- is written. [{phone, timezone, rules, steps: [{step, due_at, send_at, local, rule}]}].
create or replace function pgflow.simulate_campaign(
  p_slug text, p_leads jsonb, p_days integer default 14, p_now timestamptz default null
) returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_campaign pgflow.campaigns;
  v_lead jsonb;
  v_tz text;
  v_rules text[];
  v_cap integer;
  v_sent timestamptz[];
  v_due timestamptz;
  v_at timestamptz;
  v_rule text;
  v_steps jsonb;
  v_out jsonb := '[]';
  s record;
begin
  select * into v_campaign from pgflow.campaigns where slug = p_slug;
  if not found then
    raise exception 'no campaign %', p_slug using errcode = 'PF002';
  end if;
  for v_lead in select * from pg_catalog.jsonb_array_elements(coalesce(p_leads, '[]')) loop
    v_tz := coalesce(nullif(v_lead ->> 'timezone', ''), v_campaign.timezone);
    if not pgflow._is_time_zone(v_tz) then
      raise exception 'lead %: % is not a time zone', v_lead ->> 'phone', v_tz
        using errcode = 'PF003';
    end if;
    v_rules := pgflow.contact_rules(v_lead ->> 'phone', nullif(pg_catalog.upper(v_lead ->> 'state'), ''));
    v_cap := least(v_campaign.daily_cap, pgflow.rules_cap(v_rules));
    v_sent := '{}';
    v_due := v_now;
    v_steps := '[]';
    for s in select st.position, st.delay from pgflow.campaign_steps st
              where st.campaign_id = v_campaign.id order by st.position
    loop
      v_due := v_due + s.delay;
      exit when v_due > v_now + p_days * interval '1 day';
      select o.at, o.rule into v_at, v_rule
        from pgflow.marketing_slot(v_tz, v_rules, v_campaign.window_start,
               v_campaign.window_end, v_campaign.window_days, v_cap,
               pgflow.cap_rule(v_rules, v_campaign.daily_cap), v_sent, v_due) o;
      v_steps := v_steps || pg_catalog.jsonb_build_object(
        'step', s.position, 'due_at', v_due, 'send_at', v_at,
        'local', pg_catalog.to_char(v_at at time zone v_tz, 'Dy YYYY-MM-DD HH24:MI'),
        'rule', v_rule, 'why', coalesce(pgflow.rule_text(v_rule), 'due, and allowed'));
      exit when v_at is null;
      v_sent := v_sent || v_at;
      v_due := v_at;  -- the next step's delay counts from when this one goes (the tick)
    end loop;
    v_out := v_out || pg_catalog.jsonb_build_object(
      'phone', v_lead ->> 'phone', 'timezone', v_tz, 'rules', pg_catalog.to_jsonb(v_rules),
      'steps', v_steps);
  end loop;
  return v_out;
end;
$$;
