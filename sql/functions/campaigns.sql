-- Campaign files: agents, campaigns and steps applied as one idempotent upsert.
-- The current definition of each function and view of this area (sql/README.md: how to
-- change one). Grants: roles.sql.

-- The declarative upsert behind `pgflow campaign apply`. p_doc:
--   {"agents": [{name, prompt, model?, retell_agent_id?, max_turns?, reply_debounce?}],
--    "campaigns": [{slug, name, agent, from_number, status?, timezone?, window_start?,
--                   window_end?, window_days?, reply_timeout?, silence_timeout?, daily_cap?,
--                   max_attempts?, help_text?, opt_out_text?, fallbacks?, goal?,
--                   from_numbers?, transport?, steps: [{delay, body}]}],
--    "numbers": [...]}
-- Agents upsert by name, campaigns by slug. Steps are replaced as a whole, but a step some
-- enrollment has already passed may not change (PF005). Returns what was done per item.
-- from_numbers is the pool (from_number first; default [from_number]); numbers are
-- [{number, inbound_agent?, per_second?, daily_segments?}] (a limit key that is absent keeps the number's limit; null removes it). Every number of
-- a pool is registered as a sending number. transport is retell (the default) or twilio; a
-- number carries one transport (its inbound texts come from that provider): a number that
-- campaigns of both would share is refused (PF003).
create or replace function pgflow.apply_campaigns(p_doc jsonb, p_now timestamptz default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_item jsonb;
  v_id bigint;
  v_inserted boolean;
  v_changed boolean;
  v_agent_id bigint;
  v_campaign pgflow.campaigns;
  v_old jsonb;
  v_new jsonb;
  v_first_diff integer;
  v_passed integer;
  v_result jsonb := '{"agents": [], "campaigns": [], "numbers": []}'::jsonb;
  v_steps_action text;
  v_pool text[];
  v_old_pool text[];
  v_conflict text;
  v_other text;
begin
  for v_item in select * from pg_catalog.jsonb_array_elements(coalesce(p_doc -> 'agents', '[]'))
  loop
    insert into pgflow.agents as a (name, prompt, model, retell_agent_id, max_turns,
                                    reply_debounce, created_at, updated_at)
    values (v_item ->> 'name', v_item ->> 'prompt', v_item ->> 'model',
            v_item ->> 'retell_agent_id', coalesce((v_item ->> 'max_turns')::integer, 10),
            coalesce((v_item ->> 'reply_debounce')::interval, '3 seconds'), v_now, v_now)
    on conflict (name) do update set
      prompt = excluded.prompt, model = excluded.model,
      retell_agent_id = excluded.retell_agent_id, max_turns = excluded.max_turns,
      reply_debounce = excluded.reply_debounce, updated_at = excluded.updated_at
    where (a.prompt, a.model, a.retell_agent_id, a.max_turns, a.reply_debounce)
          is distinct from (excluded.prompt, excluded.model, excluded.retell_agent_id,
                            excluded.max_turns, excluded.reply_debounce)
    returning id, (xmax = 0) into v_id, v_inserted;
    v_result := pg_catalog.jsonb_set(v_result, '{agents}', (v_result -> 'agents') ||
      pg_catalog.jsonb_build_object('name', v_item ->> 'name', 'action',
        case when v_id is null then 'unchanged' when v_inserted then 'created' else 'updated' end));
  end loop;

  for v_item in select * from pg_catalog.jsonb_array_elements(coalesce(p_doc -> 'campaigns', '[]'))
  loop
    select id into v_agent_id from pgflow.agents where name = v_item ->> 'agent';
    if v_agent_id is null then
      raise exception 'campaign %: unknown agent %', v_item ->> 'slug', v_item ->> 'agent'
        using errcode = 'PF003';
    end if;
    if pg_catalog.jsonb_array_length(coalesce(v_item -> 'steps', '[]')) = 0 then
      raise exception 'campaign %: at least one step is required', v_item ->> 'slug'
        using errcode = 'PF003';
    end if;
    v_id := null;
    insert into pgflow.campaigns as c
      (slug, name, agent_id, from_number, status, timezone, window_start, window_end,
       window_days, reply_timeout, silence_timeout, daily_cap, max_attempts, help_text,
       opt_out_text, fallbacks, goal, transport, created_at, updated_at)
    values (
      v_item ->> 'slug', v_item ->> 'name', v_agent_id, v_item ->> 'from_number',
      coalesce(v_item ->> 'status', 'active'),
      coalesce(v_item ->> 'timezone', 'America/New_York'),
      coalesce((v_item ->> 'window_start')::time, '09:00'),
      coalesce((v_item ->> 'window_end')::time, '20:00'),
      coalesce((select pg_catalog.array_agg(d::smallint order by d::smallint)
                  from pg_catalog.jsonb_array_elements_text(v_item -> 'window_days') d),
               '{1,2,3,4,5,6}'),
      coalesce((v_item ->> 'reply_timeout')::interval, '3 days'),
      coalesce((v_item ->> 'silence_timeout')::interval, '24 hours'),
      coalesce((v_item ->> 'daily_cap')::integer, 3),
      coalesce((v_item ->> 'max_attempts')::integer, 6),
      v_item ->> 'help_text',
      coalesce(v_item ->> 'opt_out_text',
        'You are unsubscribed and will receive no more messages. Reply START to resubscribe.'),
      coalesce(v_item -> 'fallbacks', '{}'),
      v_item ->> 'goal',
      coalesce(v_item ->> 'transport', 'retell'),
      v_now, v_now)
    on conflict (slug) do update set
      name = excluded.name, agent_id = excluded.agent_id, from_number = excluded.from_number,
      status = case when v_item ? 'status' then excluded.status else c.status end,
      timezone = excluded.timezone, window_start = excluded.window_start,
      window_end = excluded.window_end, window_days = excluded.window_days,
      reply_timeout = excluded.reply_timeout, silence_timeout = excluded.silence_timeout,
      daily_cap = excluded.daily_cap, max_attempts = excluded.max_attempts,
      help_text = excluded.help_text, opt_out_text = excluded.opt_out_text,
      fallbacks = excluded.fallbacks, goal = excluded.goal, transport = excluded.transport,
      updated_at = excluded.updated_at
    where (c.name, c.agent_id, c.from_number, c.timezone, c.window_start, c.window_end,
           c.window_days, c.reply_timeout, c.silence_timeout, c.daily_cap, c.max_attempts,
           c.help_text, c.opt_out_text, c.fallbacks, c.goal, c.transport,
           case when v_item ? 'status' then excluded.status else c.status end)
          is distinct from
          (excluded.name, excluded.agent_id, excluded.from_number, excluded.timezone,
           excluded.window_start, excluded.window_end, excluded.window_days,
           excluded.reply_timeout, excluded.silence_timeout, excluded.daily_cap,
           excluded.max_attempts, excluded.help_text, excluded.opt_out_text,
           excluded.fallbacks, excluded.goal, excluded.transport, c.status)
    returning id, (xmax = 0) into v_id, v_inserted;
    v_changed := v_id is not null;
    select * into v_campaign from pgflow.campaigns where slug = v_item ->> 'slug';

    -- Steps: compare old and new; the first position that differs must not have been passed.
    select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
             'position', position, 'delay', delay, 'body', body) order by position), '[]')
      into v_old from pgflow.campaign_steps where campaign_id = v_campaign.id;
    select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
             'position', ord, 'delay', (s ->> 'delay')::interval, 'body', s ->> 'body')
             order by ord)
      into v_new from pg_catalog.jsonb_array_elements(v_item -> 'steps') with ordinality as t(s, ord);
    if v_old = v_new then
      v_steps_action := 'unchanged';
    else
      select pg_catalog.min(i) into v_first_diff
        from pg_catalog.generate_series(0, greatest(pg_catalog.jsonb_array_length(v_old),
                                                    pg_catalog.jsonb_array_length(v_new)) - 1) i
       where (v_old -> i) is distinct from (v_new -> i);
      v_first_diff := v_first_diff + 1;
      select pg_catalog.max(m.step_position) into v_passed
        from pgflow.messages m
        join pgflow.enrollments e on e.id = m.enrollment_id
       where e.campaign_id = v_campaign.id and m.kind = 'campaign';
      if v_passed is not null and v_passed >= v_first_diff then
        raise exception
          'campaign %: step % differs from the applied one, but enrollments have already passed step %; steps 1..% are fixed (append new steps after them, or create a new campaign)',
          v_campaign.slug, v_first_diff, v_passed, v_passed
          using errcode = 'PF005';
      end if;
      delete from pgflow.campaign_steps where campaign_id = v_campaign.id;
      insert into pgflow.campaign_steps (campaign_id, position, delay, body, created_at)
      select v_campaign.id, (s ->> 'position')::integer, (s ->> 'delay')::interval, s ->> 'body', v_now
        from pg_catalog.jsonb_array_elements(v_new) s;
      v_steps_action := 'replaced';
      v_changed := true;
    end if;
    -- The pool: from_number first, then the others in file order. A conversation keeps
    -- its number even when the number leaves the pool.
    insert into pgflow.sending_numbers (number, created_at, updated_at)
    select n, v_now, v_now
      from pg_catalog.jsonb_array_elements_text(
             coalesce(v_item -> 'from_numbers', '[]') || pg_catalog.to_jsonb(v_campaign.from_number)) n
    on conflict (number) do nothing;
    select pg_catalog.array_agg(number order by position) into v_old_pool
      from pgflow.campaign_numbers where campaign_id = v_campaign.id;
    select pg_catalog.array_agg(n order by ord) into v_pool
      from (select n, pg_catalog.min(ord) as ord
              from pg_catalog.jsonb_array_elements_text(
                     pg_catalog.to_jsonb(v_campaign.from_number)
                     || coalesce(v_item -> 'from_numbers', '[]')) with ordinality as t(n, ord)
             group by n) pool;
    if v_old_pool is distinct from v_pool then
      delete from pgflow.campaign_numbers where campaign_id = v_campaign.id;
      insert into pgflow.campaign_numbers (campaign_id, number, position)
      select v_campaign.id, n, ord::smallint
        from pg_catalog.unnest(v_pool) with ordinality as t(n, ord);
      v_changed := true;
    end if;
    -- One provider per number: its inbound texts reach one webhook.
    select cn.number, c.slug into v_conflict, v_other
      from pgflow.campaign_numbers cn
      join pgflow.campaigns c on c.id = cn.campaign_id
     where cn.number = any (v_pool) and c.id <> v_campaign.id
       and c.transport <> v_campaign.transport and c.status <> 'archived'
     order by cn.number, c.slug limit 1;
    if v_conflict is not null then
      raise exception 'campaign %: number % is on campaign % with another transport; a number carries one transport (its replies come from one provider)',
        v_campaign.slug, v_conflict, v_other using errcode = 'PF003';
    end if;
    v_result := pg_catalog.jsonb_set(v_result, '{campaigns}', (v_result -> 'campaigns') ||
      pg_catalog.jsonb_build_object('slug', v_campaign.slug, 'id', v_campaign.id,
        'action', case when v_inserted then 'created' when v_changed then 'updated' else 'unchanged' end,
        'steps', v_steps_action));
  end loop;

  -- Sending numbers: the default agent for leads who text a number without a conversation.
  for v_item in select * from pg_catalog.jsonb_array_elements(coalesce(p_doc -> 'numbers', '[]'))
  loop
    v_agent_id := null;
    if v_item ->> 'inbound_agent' is not null then
      select id into v_agent_id from pgflow.agents where name = v_item ->> 'inbound_agent';
      if v_agent_id is null then
        raise exception 'number %: unknown agent %', v_item ->> 'number',
          v_item ->> 'inbound_agent' using errcode = 'PF003';
      end if;
    end if;
    v_id := null;
    insert into pgflow.sending_numbers as n
      (number, inbound_agent_id, per_second, daily_segments, created_at, updated_at)
    values (v_item ->> 'number', v_agent_id, (v_item ->> 'per_second')::numeric,
            (v_item ->> 'daily_segments')::integer, v_now, v_now)
    on conflict (number) do update set
      inbound_agent_id = excluded.inbound_agent_id,
      per_second = case when v_item ? 'per_second' then excluded.per_second else n.per_second end,
      daily_segments = case when v_item ? 'daily_segments' then excluded.daily_segments
                            else n.daily_segments end,
      updated_at = excluded.updated_at
    where (n.inbound_agent_id, n.per_second, n.daily_segments) is distinct from
          (excluded.inbound_agent_id,
           case when v_item ? 'per_second' then excluded.per_second else n.per_second end,
           case when v_item ? 'daily_segments' then excluded.daily_segments
                else n.daily_segments end)
    returning id, (xmax = 0) into v_id, v_inserted;
    v_result := pg_catalog.jsonb_set(v_result, '{numbers}', (v_result -> 'numbers') ||
      pg_catalog.jsonb_build_object('number', v_item ->> 'number', 'action',
        case when v_id is null then 'unchanged' when v_inserted then 'created' else 'updated' end));
  end loop;
  return v_result;
end;
$$;
