-- The functions the tick, the claim and the import call per row in PL/pgSQL (planned once per session; a SQL function that cannot be inlined is planned on every call): sms_encoding, _segments, sms_segments, _template_values, contact_rules, rules_cap, cap_rule (its cap looked up once, not three times), cap_open.
-- depends: 0042_batch_claims_and_records

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

-- The segments p_body takes.
create or replace function pgflow.sms_segments(p_body text) returns integer
language plpgsql immutable parallel safe
set search_path = ''
as $$
begin
  return pgflow._segments(p_body, pgflow.sms_encoding(p_body));
end;
$$;
