-- Compliance: the state rules on marketing texts (hours per weekday, texts per rolling
-- 24 h) on top of each campaign's own window, which rule holds a step back, and the dry run
-- of a campaign. The current definition of each function and view of this area
-- (sql/README.md: how to change one). Grants: roles.sql.

-- The rules that apply to a lead (pgflow.state_rules): 'US' (the federal hours) always; the
-- state the lead gave; its area code's state (a US one) — both when they differ; and 'ZZ'
-- (the strictest) when no state can be told: a state code we do not know, or no state given
-- and a number outside the US and Canada or with no geographic area code. A Canadian area
-- code tells a province: only the federal hours apply.
create or replace function pgflow.contact_rules(p_phone text, p_state text) returns text[]
language plpgsql stable parallel safe
set search_path = ''
as $$
begin
  -- plpgsql, not sql: its statements are planned once per session, not on every call
  return (
    with ac as (
      select a.region, a.country from pgflow.area_codes a
       where p_phone like '+1%' and a.npa = pg_catalog.substr(p_phone, 3, 3)
    ), given as (
      select p_state as state,
             p_state is not null
             and p_state not in (select r.state from pgflow.state_rules r where r.state <> 'ZZ')
             and p_state not in (select a.region from pgflow.area_codes a) as unknown
    )
    select pg_catalog.array_agg(distinct s order by s)
      from (select 'US' as s
            union all
            select g.state from given g
             where g.state in (select r.state from pgflow.state_rules r)
            union all
            select ac.region from ac
             where ac.country = 'US' and ac.region in (select r.state from pgflow.state_rules r)
            union all
            select 'ZZ' from given g
             where g.unknown or (g.state is null and not exists (select 1 from ac))) rules);
end;
$$;

-- The fewest marketing texts per rolling 24 h any of the rules allows (null: no cap).
create or replace function pgflow.rules_cap(p_rules text[]) returns integer
language plpgsql stable parallel safe
set search_path = ''
as $$
begin
  return (select pg_catalog.min(r.max_per_24h) from pgflow.state_rules r
           where r.state = any (p_rules));
end;
$$;

-- Which cap holds a lead back when p_campaign_cap (the campaign's daily cap; null: none
-- counted) and the rules' caps both apply: 'campaign_cap' when the campaign's is the
-- smaller, else 'state_cap:XX' (the first rule with the smallest cap); null with no cap.
create or replace function pgflow.cap_rule(p_rules text[], p_campaign_cap integer) returns text
language plpgsql stable parallel safe
set search_path = ''
as $$
declare
  v_cap integer;
  v_state text;
begin
  select r.max_per_24h, r.state into v_cap, v_state
    from pgflow.state_rules r
   where r.state = any (p_rules) and r.max_per_24h is not null
   order by r.max_per_24h, r.state
   limit 1;
  return case when v_cap <= coalesce(p_campaign_cap, v_cap) then 'state_cap:' || v_state
              when p_campaign_cap is not null then 'campaign_cap' end;
end;
$$;

-- The first instant at or after p_at inside the campaign's window AND the hours of every
-- rule (the stricter wins), in the lead's zone p_tz, on a day all of them allow. rule says
-- what held it back (null: p_at itself is allowed): campaign_window, state_window:XX (a
-- rule's hours are narrower), quiet_day:XX (a rule allows no text that day). Looks 8 days
-- ahead; null `at` when nothing opens (a campaign with no day in common with a rule).
create or replace function pgflow.marketing_open(
  p_tz text, p_rules text[], p_start time, p_end time, p_days smallint[], p_at timestamptz,
  out at timestamptz, out rule text
)
language plpgsql stable parallel safe
set search_path = ''
as $$
declare
  v_local timestamp := p_at at time zone p_tz;
  v_day date;
  v_dow smallint;
  v_open time;
  v_close time;
  v_opened_by text;
  v_closed_by text;
  v_quiet text;
  v_from timestamptz;
  v_to timestamptz;
  w record;
  d integer;
begin
  for d in 0..8 loop
    v_day := v_local::date + d;
    v_dow := extract(isodow from v_day)::smallint;
    if not v_dow = any (p_days) then
      rule := coalesce(rule, 'campaign_window');
      continue;
    end if;
    v_open := p_start; v_opened_by := 'campaign_window';
    v_close := p_end; v_closed_by := 'campaign_window';
    v_quiet := null;
    for w in select r.state, sw.opens, sw.closes
               from pg_catalog.unnest(p_rules) as r(state)
               left join pgflow.state_windows sw on sw.state = r.state and sw.isodow = v_dow
              order by r.state
    loop
      if w.opens is null then
        v_quiet := coalesce(v_quiet, 'quiet_day:' || w.state);
      else
        if w.opens > v_open then
          v_open := w.opens; v_opened_by := 'state_window:' || w.state;
        end if;
        if w.closes < v_close then
          v_close := w.closes; v_closed_by := 'state_window:' || w.state;
        end if;
      end if;
    end loop;
    if v_quiet is not null or v_open >= v_close then
      rule := coalesce(rule, v_quiet, v_closed_by);
      continue;
    end if;
    v_from := (v_day + v_open) at time zone p_tz;
    v_to := (v_day + v_close) at time zone p_tz;
    if d = 0 and p_at >= v_to then
      rule := coalesce(rule, v_closed_by);  -- closed for today by the earliest close
      continue;
    end if;
    if p_at >= v_from then
      at := p_at;  -- open now (or, on a later day, p_at is before v_from: see below)
    else
      at := v_from;
      rule := coalesce(rule, v_opened_by);  -- not yet open: the latest opening holds it
    end if;
    return;
  end loop;
  at := null;
end;
$$;

-- The first instant at or after p_at when one more marketing text may go under a cap of
-- p_cap per rolling 24 h, given when the lead's recent ones went (p_recent): once the
-- oldest of the last p_cap is 24 h old.
create or replace function pgflow.cap_open(p_cap integer, p_recent timestamptz[], p_at timestamptz)
returns timestamptz
language plpgsql immutable parallel safe
set search_path = ''
as $$
begin
  if p_cap is null then
    return p_at;
  end if;
  return greatest(p_at, coalesce((
    select t + interval '24 hours'
      from (select t from pg_catalog.unnest(p_recent) t
             where t > p_at - interval '24 hours' and t <= p_at
             order by t desc offset p_cap - 1 limit 1) kth), p_at));
end;
$$;

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

-- What a rule key means, in words (the drip timeline, the console, `status`).
create or replace function pgflow.rule_text(p_rule text) returns text
language sql stable parallel safe
set search_path = ''
as $$
  select case
    when p_rule is null then null
    when p_rule = 'campaign_window' then 'send window closed'
    when p_rule = 'campaign_cap' then 'the campaign''s daily cap'
    when p_rule like 'state_window:%' then pg_catalog.format('%s hours for marketing texts',
      coalesce((select r.name from pgflow.state_rules r where r.state = pg_catalog.split_part(p_rule, ':', 2)), p_rule))
    when p_rule like 'quiet_day:%' then pg_catalog.format('no marketing texts today (%s)',
      coalesce((select r.name from pgflow.state_rules r where r.state = pg_catalog.split_part(p_rule, ':', 2)), p_rule))
    when p_rule like 'state_cap:%' then pg_catalog.format('%s limit: %s marketing texts per 24 h',
      coalesce((select r.name from pgflow.state_rules r where r.state = pg_catalog.split_part(p_rule, ':', 2)), p_rule),
      (select r.max_per_24h from pgflow.state_rules r where r.state = pg_catalog.split_part(p_rule, ':', 2)))
    else p_rule end
$$;

-- The steps and texts waiting now, by the rule that holds them back: enrollments whose next
-- step waits, and queued texts deferred at send time. [{rule, steps, texts}], for /metrics
-- and `pgflow status`.
create or replace function pgflow.deferrals() returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
           'rule', d.rule, 'steps', d.steps, 'texts', d.texts) order by d.rule), '[]')
    from (select coalesce(e.rule, m.rule) as rule, coalesce(e.n, 0) as steps,
                 coalesce(m.n, 0) as texts
            from (select deferred_rule as rule, pg_catalog.count(*) as n
                    from pgflow.enrollments
                   where status = 'active' and deferred_rule is not null
                   group by 1) e
            full join (select deferred_rule as rule, pg_catalog.count(*) as n
                         from pgflow.messages
                        where delivery_status = 'queued' and deferred_rule is not null
                        group by 1) m on m.rule = e.rule) d
$$;

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
