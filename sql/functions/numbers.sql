-- Sending numbers: the sticky sender of a contact, per-number usage and limits.
-- The current definition of each function and view of this area (sql/README.md: how to
-- change one). Grants: roles.sql.

-- However a campaign is written, its from_number is a sending number in its pool.
create or replace function pgflow._pool_from_number() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  insert into pgflow.sending_numbers (number) values (new.from_number)
  on conflict (number) do nothing;
  insert into pgflow.campaign_numbers (campaign_id, number, position)
  select new.id, new.from_number, coalesce(pg_catalog.max(position), 0) + 1
    from pgflow.campaign_numbers where campaign_id = new.id
  on conflict (campaign_id, number) do nothing;
  return null;
end;
$$;

-- The number a new conversation of this contact in this campaign sends from: the pool
-- number the contact last talked with (sticky across conversations), else one in the
-- contact's area code (local presence, +1 numbers), else the pool spread by contact id.
create or replace function pgflow.sender_for(p_contact_id bigint, p_campaign_id bigint) returns text
language plpgsql stable
set search_path = ''
as $$
begin
  -- plpgsql, not SQL: its plan is kept for the session (a SQL function's is made again in
  -- every transaction; this one runs in every lead's)
  return coalesce(
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
    (select c.from_number from pgflow.campaigns c where c.id = p_campaign_id));
end;
$$;

-- Count the claimed sends against their numbers (number_usage), one row per number, day and
-- shard, in a fixed order (claims that run at once never wait on each other in a cycle).
create or replace function pgflow._count_usage(p_claims jsonb[]) returns void
language sql
set search_path = ''
as $$
  insert into pgflow.number_usage as u (number, day, shard, messages, segments)
  select c ->> 'from_number', (c ->> 'usage_day')::date, ((c ->> 'message_id')::bigint % 8)::smallint,
         pg_catalog.count(*), pg_catalog.sum((c ->> 'segments')::integer)
    from pg_catalog.unnest(p_claims) c
   where c ->> 'action' = 'send'
   group by 1, 2, 3
   order by 1, 2, 3
  on conflict (number, day, shard) do update
    set messages = u.messages + excluded.messages, segments = u.segments + excluded.segments
$$;

-- Each sending number today (UTC): messages and segments claimed against its limits, and
-- the campaigns whose pool it is in.
create or replace function pgflow.number_report(p_now timestamptz default null)
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
create or replace function pgflow.set_number_limits(
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
