-- Undo 0043: those functions in SQL again.
-- depends: 0042_batch_claims_and_records

CREATE OR REPLACE FUNCTION pgflow.sms_segments(p_body text)
 RETURNS integer
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
 SET search_path TO ''
AS $function$
  select pgflow._segments(p_body, pgflow.sms_encoding(p_body))
$function$;

CREATE OR REPLACE FUNCTION pgflow.sms_encoding(p_body text)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
 SET search_path TO ''
AS $function$
  select case
    when p_body ~ ('^[@£$¥èéùìòÇ' || E'\n' || 'Øø' || E'\r' || 'Å寅ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&''()*+,\-./0-9:;<=>?¡A-ZÄÖÑܧ¿a-zäöñüà^{}\\\[~\]|€' || E'\f' || ']*$')
      then 'gsm7'
    else 'ucs2'
  end
$function$;

CREATE OR REPLACE FUNCTION pgflow.rules_cap(p_rules text[])
 RETURNS integer
 LANGUAGE sql
 STABLE PARALLEL SAFE
 SET search_path TO ''
AS $function$
  select pg_catalog.min(r.max_per_24h) from pgflow.state_rules r where r.state = any (p_rules)
$function$;

CREATE OR REPLACE FUNCTION pgflow.contact_rules(p_phone text, p_state text)
 RETURNS text[]
 LANGUAGE sql
 STABLE PARALLEL SAFE
 SET search_path TO ''
AS $function$
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
           where g.unknown or (g.state is null and not exists (select 1 from ac))) rules
$function$;

CREATE OR REPLACE FUNCTION pgflow.cap_rule(p_rules text[], p_campaign_cap integer)
 RETURNS text
 LANGUAGE sql
 STABLE PARALLEL SAFE
 SET search_path TO ''
AS $function$
  select case
    when pgflow.rules_cap(p_rules) <= coalesce(p_campaign_cap, pgflow.rules_cap(p_rules))
      then 'state_cap:' || (select pg_catalog.min(r.state) from pgflow.state_rules r
                             where r.state = any (p_rules)
                               and r.max_per_24h = pgflow.rules_cap(p_rules))
    when p_campaign_cap is not null then 'campaign_cap' end
$function$;

CREATE OR REPLACE FUNCTION pgflow.cap_open(p_cap integer, p_recent timestamp with time zone[], p_at timestamp with time zone)
 RETURNS timestamp with time zone
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
 SET search_path TO ''
AS $function$
  select case
    when p_cap is null then p_at
    else greatest(p_at, coalesce((
      select t + interval '24 hours'
        from (select t from pg_catalog.unnest(p_recent) t
               where t > p_at - interval '24 hours' and t <= p_at
               order by t desc offset p_cap - 1 limit 1) kth), p_at)) end
$function$;

CREATE OR REPLACE FUNCTION pgflow._template_values(p_contact pgflow.contacts)
 RETURNS jsonb
 LANGUAGE sql
 IMMUTABLE
 SET search_path TO ''
AS $function$
  select p_contact.attributes || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
    'first_name', p_contact.first_name, 'last_name', p_contact.last_name,
    'email', p_contact.email))
$function$;

CREATE OR REPLACE FUNCTION pgflow._segments(p_body text, p_encoding text)
 RETURNS integer
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
 SET search_path TO ''
AS $function$
  select case when units <= single then 1 else ceil(units / part)::integer end
  from (
    select case
      when p_encoding = 'gsm7' then
        -- extension characters take two septets
        pg_catalog.length(p_body)
          + pg_catalog.length(pg_catalog.regexp_replace(p_body, '[^\^{}\\\[~\]|€' || E'\f' || ']', '', 'g'))
      else
        -- UCS-2 counts UTF-16 code units: characters beyond the BMP (most emoji) take two
        pg_catalog.length(p_body)
          + pg_catalog.length(pg_catalog.regexp_replace(p_body, '[\u0001-\uffff]', '', 'g'))
      end as units,
      case when p_encoding = 'gsm7' then 160 else 70 end as single,
      case when p_encoding = 'gsm7' then 153.0 else 67.0 end as part
  ) x
$function$;
