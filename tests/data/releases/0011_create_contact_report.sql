--
-- PostgreSQL database dump
--


-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: pgflow; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA pgflow;


--
-- Name: pgqueuer_status; Type: TYPE; Schema: pgflow; Owner: -
--

CREATE TYPE pgflow.pgqueuer_status AS ENUM (
    'queued',
    'picked',
    'successful',
    'exception',
    'canceled',
    'deleted',
    'failed'
);


--
-- Name: _dispatch_steps(bigint[], timestamp with time zone, integer); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow._dispatch_steps(p_ids bigint[], p_now timestamp with time zone, p_priority integer DEFAULT 0) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  r record;
  v_contact pgflow.contacts;
  v_conversation pgflow.conversations;
  v_open timestamptz;
  v_recent integer;
  v_oldest timestamptz;
  v_body text;
  v_message bigint;
  v_next pgflow.campaign_steps;
  v_messages bigint[] := '{}';
  v_sent integer := 0;
  v_window integer := 0;
  v_capped integer := 0;
  v_completed integer := 0;
  v_held integer := 0;
  v_stopped integer := 0;
begin
  for r in
    select e.id, e.contact_id, e.campaign_id, e.next_step,
           c.status as campaign_status, c.timezone as campaign_tz, c.window_start,
           c.window_end, c.window_days, c.daily_cap, c.from_number, c.agent_id, c.fallbacks,
           c.reply_timeout, s.position, s.body
      from pgflow.enrollments e
      join pgflow.campaigns c on c.id = e.campaign_id
      left join pgflow.campaign_steps s on s.campaign_id = e.campaign_id
                                       and s.position = e.next_step
     where e.id = any (p_ids) and e.status = 'active' and e.next_message_at <= p_now
     order by e.next_message_at, e.id
       for update of e skip locked
  loop
    select * into v_contact from pgflow.contacts where id = r.contact_id;
    if v_contact.opted_out_at is not null then
      perform pgflow.opt_out_enrollment(r.id, 'contact opted out', p_now);
      v_stopped := v_stopped + 1;
      continue;
    end if;
    if r.campaign_status <> 'active' then
      -- A paused or draft campaign holds its drips; look again in a quarter of an hour.
      update pgflow.enrollments set next_message_at = p_now + interval '15 minutes',
             updated_at = p_now where id = r.id;
      v_held := v_held + 1;
      continue;
    end if;
    if r.position is null then
      perform pgflow.complete_enrollment(r.id, 'no step ' || r.next_step, p_now);
      v_completed := v_completed + 1;
      continue;
    end if;
    select * into v_conversation from pgflow.conversations
     where contact_id = r.contact_id and from_number = r.from_number and status <> 'ended';
    if found and v_conversation.status = 'engaged' then
      -- The lead has replied on this line: the drip is over.
      perform pgflow.stop_enrollment(r.id, 'lead replied', p_now);
      v_stopped := v_stopped + 1;
      continue;
    end if;
    v_open := pgflow.next_window_open(coalesce(v_contact.timezone, r.campaign_tz),
                                      r.window_start, r.window_end, r.window_days, p_now);
    if v_open > p_now then
      update pgflow.enrollments set next_message_at = v_open, updated_at = p_now
       where id = r.id;
      v_window := v_window + 1;
      continue;
    end if;
    select pg_catalog.count(*), pg_catalog.min(m.created_at) into v_recent, v_oldest
      from pgflow.messages m
     where m.contact_id = r.contact_id and m.kind = 'campaign'
       and m.created_at > p_now - interval '24 hours' and m.created_at <= p_now
       and m.delivery_status not in ('suppressed', 'dead_letter', 'failed');
    if v_recent >= r.daily_cap then
      update pgflow.enrollments
         set next_message_at = v_oldest + interval '24 hours 1 second', updated_at = p_now
       where id = r.id;
      v_capped := v_capped + 1;
      continue;
    end if;
    if v_conversation.id is null then
      insert into pgflow.conversations
        (contact_id, campaign_id, agent_id, enrollment_id, from_number, created_at, updated_at)
      values (r.contact_id, r.campaign_id, r.agent_id, r.id, r.from_number, p_now, p_now)
      returning * into v_conversation;
    end if;
    v_body := pgflow.render_template(r.body, pgflow._template_values(v_contact), r.fallbacks);
    insert into pgflow.messages
      (conversation_id, contact_id, enrollment_id, direction, kind, body, step_position,
       delivery_status, segments, encoding, dedupe_key, created_at, updated_at)
    values (v_conversation.id, r.contact_id, r.id, 'outbound', 'campaign', v_body, r.position,
            'queued', pgflow.sms_segments(v_body), pgflow.sms_encoding(v_body),
            'step:' || r.id || ':' || r.position, p_now, p_now)
    on conflict (dedupe_key) do nothing
    returning id into v_message;
    if v_message is not null then
      v_messages := v_messages || v_message;
      v_sent := v_sent + 1;
    end if;
    select * into v_next from pgflow.campaign_steps
     where campaign_id = r.campaign_id and position > r.position
     order by position limit 1;
    if found then
      update pgflow.enrollments
         set next_step = v_next.position, next_message_at = p_now + v_next.delay,
             last_step_sent_at = p_now, updated_at = p_now
       where id = r.id;
    else
      update pgflow.enrollments set last_step_sent_at = p_now where id = r.id;
      perform pgflow.complete_enrollment(r.id, 'last step sent', p_now);
      update pgflow.conversations set reply_deadline_at = p_now + r.reply_timeout
       where id = v_conversation.id and status = 'open';
      v_completed := v_completed + 1;
    end if;
  end loop;
  perform pgflow._enqueue('send_sms', v_messages, p_priority);
  return pg_catalog.jsonb_build_object(
    'sent', v_sent, 'deferred_window', v_window, 'deferred_cap', v_capped,
    'completed', v_completed, 'held', v_held, 'stopped', v_stopped);
end;
$$;


--
-- Name: _enqueue(text, bigint[], integer); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow._enqueue(p_entrypoint text, p_ids bigint[], p_priority integer DEFAULT 0) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_count integer;
begin
  if coalesce(pg_catalog.cardinality(p_ids), 0) = 0 then
    return 0;
  end if;
  insert into pgflow.pgqueuer (priority, entrypoint, payload, execute_after, dedupe_key, status)
  select p_priority, p_entrypoint,
         pg_catalog.convert_to(pg_catalog.json_build_object('id', id)::text, 'UTF8'),
         pg_catalog.now(), p_entrypoint || ':' || id, 'queued'
    from pg_catalog.unnest(p_ids) as id
  on conflict (dedupe_key)
    where ((status = any (array['queued'::pgflow.pgqueuer_status, 'picked'::pgflow.pgqueuer_status]))
           and (dedupe_key is not null))
  do nothing;
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;


--
-- Name: _is_time_zone(text); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow._is_time_zone(p_tz text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
begin
  if p_tz is null then
    return true;
  end if;
  perform pg_catalog.now() at time zone p_tz;
  return true;
exception when invalid_parameter_value then
  return false;
end;
$$;


--
-- Name: _is_timestamp(text); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow._is_timestamp(p_text text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $_$
begin
  if p_text is null then
    return true;
  end if;
  if p_text !~ '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}(:?\d{2})?)?$' then
    return false;
  end if;
  perform p_text::timestamptz;
  return true;
exception when others then
  return false;
end;
$_$;


--
-- Name: _log_transition(); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow._log_transition() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_entity text := pg_catalog.rtrim(tg_table_name, 's');
  v_from text;
  v_to text;
  v_when timestamptz;
begin
  if tg_table_name = 'messages' then
    v_to := new.delivery_status;
    v_from := case when tg_op = 'UPDATE' then old.delivery_status end;
  else
    v_to := new.status;
    v_from := case when tg_op = 'UPDATE' then old.status end;
  end if;
  if tg_op = 'UPDATE' and v_from is not distinct from v_to then
    return null;
  end if;
  v_when := coalesce(new.updated_at, pg_catalog.now());
  insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
  values (v_when, v_entity, new.id, v_from, v_to,
          nullif(pg_catalog.current_setting('pgflow.reason', true), ''));
  return null;
end;
$$;


--
-- Name: _normalize_phone(text); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow._normalize_phone(p_raw text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $_$
  select case
    when d is null then null
    when p_raw ~ '^\s*\+' and d ~ '^[1-9][0-9]{6,14}$' then '+' || d
    when p_raw ~ '^\s*00' and d ~ '^00[1-9][0-9]{6,14}$' then '+' || pg_catalog.substr(d, 3)
    when d ~ '^[2-9][0-9]{2}[2-9][0-9]{6}$' then '+1' || d
    when d ~ '^1[2-9][0-9]{2}[2-9][0-9]{6}$' then '+' || d
  end
  from (select nullif(pg_catalog.regexp_replace(p_raw, '[^0-9]', '', 'g'), '') as d) x
  where p_raw !~ '[A-Za-z]'
$_$;


--
-- Name: _set_reason(text); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow._set_reason(p_reason text) RETURNS void
    LANGUAGE sql
    SET search_path TO ''
    AS $$ select pg_catalog.set_config('pgflow.reason', coalesce(p_reason, ''), true) $$;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: contacts; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow.contacts (
    id bigint NOT NULL,
    phone text NOT NULL,
    first_name text,
    last_name text,
    email text,
    timezone text,
    attributes jsonb DEFAULT '{}'::jsonb NOT NULL,
    opted_out_at timestamp with time zone,
    opt_out_source text,
    consent_at timestamp with time zone,
    consent_source text,
    consent_text text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT contacts_attributes_object CHECK ((jsonb_typeof(attributes) = 'object'::text)),
    CONSTRAINT contacts_email_shape CHECK (((email IS NULL) OR (email ~ '^[^@\s]+@[^@\s]+$'::text))),
    CONSTRAINT contacts_opt_out_consistent CHECK (((opted_out_at IS NULL) = (opt_out_source IS NULL))),
    CONSTRAINT contacts_phone_e164 CHECK ((phone ~ '^\+[1-9][0-9]{6,14}$'::text)),
    CONSTRAINT contacts_timezone_valid CHECK (pgflow._is_time_zone(timezone))
);


--
-- Name: _template_values(pgflow.contacts); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow._template_values(p_contact pgflow.contacts) RETURNS jsonb
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $$
  select p_contact.attributes || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
    'first_name', p_contact.first_name, 'last_name', p_contact.last_name,
    'email', p_contact.email))
$$;


--
-- Name: _transition_failed(text, bigint, text, text, text[]); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow._transition_failed(p_entity text, p_id bigint, p_current text, p_action text, p_allowed text[]) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  if p_current is null then
    raise exception '% % does not exist', p_entity, p_id using errcode = 'PF002';
  end if;
  raise exception '% % is %; cannot % (allowed from: %)',
    p_entity, p_id, p_current, p_action, pg_catalog.array_to_string(p_allowed, ', ')
    using errcode = 'PF001';
end;
$$;


--
-- Name: alert(bigint); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.alert(p_id bigint) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$ select pg_catalog.to_jsonb(a) from pgflow.alerts a where a.id = p_id $$;


--
-- Name: apply_campaigns(jsonb, timestamp with time zone); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.apply_campaigns(p_doc jsonb, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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
  v_result jsonb := '{"agents": [], "campaigns": []}'::jsonb;
  v_steps_action text;
begin
  for v_item in select * from pg_catalog.jsonb_array_elements(coalesce(p_doc -> 'agents', '[]'))
  loop
    insert into pgflow.agents as a (name, prompt, model, retell_agent_id, created_at, updated_at)
    values (v_item ->> 'name', v_item ->> 'prompt', v_item ->> 'model',
            v_item ->> 'retell_agent_id', v_now, v_now)
    on conflict (name) do update set
      prompt = excluded.prompt, model = excluded.model,
      retell_agent_id = excluded.retell_agent_id, updated_at = excluded.updated_at
    where (a.prompt, a.model, a.retell_agent_id)
          is distinct from (excluded.prompt, excluded.model, excluded.retell_agent_id)
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
       opt_out_text, fallbacks, created_at, updated_at)
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
      v_now, v_now)
    on conflict (slug) do update set
      name = excluded.name, agent_id = excluded.agent_id, from_number = excluded.from_number,
      status = case when v_item ? 'status' then excluded.status else c.status end,
      timezone = excluded.timezone, window_start = excluded.window_start,
      window_end = excluded.window_end, window_days = excluded.window_days,
      reply_timeout = excluded.reply_timeout, silence_timeout = excluded.silence_timeout,
      daily_cap = excluded.daily_cap, max_attempts = excluded.max_attempts,
      help_text = excluded.help_text, opt_out_text = excluded.opt_out_text,
      fallbacks = excluded.fallbacks, updated_at = excluded.updated_at
    where (c.name, c.agent_id, c.from_number, c.timezone, c.window_start, c.window_end,
           c.window_days, c.reply_timeout, c.silence_timeout, c.daily_cap, c.max_attempts,
           c.help_text, c.opt_out_text, c.fallbacks,
           case when v_item ? 'status' then excluded.status else c.status end)
          is distinct from
          (excluded.name, excluded.agent_id, excluded.from_number, excluded.timezone,
           excluded.window_start, excluded.window_end, excluded.window_days,
           excluded.reply_timeout, excluded.silence_timeout, excluded.daily_cap,
           excluded.max_attempts, excluded.help_text, excluded.opt_out_text,
           excluded.fallbacks, c.status)
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
    v_result := pg_catalog.jsonb_set(v_result, '{campaigns}', (v_result -> 'campaigns') ||
      pg_catalog.jsonb_build_object('slug', v_campaign.slug, 'id', v_campaign.id,
        'action', case when v_inserted then 'created' when v_changed then 'updated' else 'unchanged' end,
        'steps', v_steps_action));
  end loop;
  return v_result;
end;
$$;


--
-- Name: campaign_refusal(text); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.campaign_refusal(p_slug text) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select case
    when c.id is null then pg_catalog.jsonb_build_object('error', 'unknown_campaign',
      'detail', pg_catalog.format('no campaign with slug %L', p_slug))
    when c.status <> 'active' then pg_catalog.jsonb_build_object('error', 'campaign_inactive',
      'detail', pg_catalog.format('campaign %L is %s', c.slug, c.status))
    when not exists (select 1 from pgflow.campaign_steps s where s.campaign_id = c.id)
      then pg_catalog.jsonb_build_object('error', 'campaign_has_no_steps',
        'detail', pg_catalog.format('campaign %L has no steps', c.slug))
  end
  from (select 1) one
  left join pgflow.campaigns c on c.slug = p_slug
$$;


--
-- Name: claim_send(bigint, uuid, timestamp with time zone); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.claim_send(p_message_id bigint, p_worker uuid DEFAULT NULL::uuid, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  m pgflow.messages;
  v_contact pgflow.contacts;
  v_conversation pgflow.conversations;
  v_campaign pgflow.campaigns;
  v_agent pgflow.agents;
  v_enrollment_status text;
  v_campaign_id bigint;
  v_max integer;
  v_open timestamptz;
  v_reason text;
begin
  select * into m from pgflow.messages where id = p_message_id for update;
  if not found then
    return pg_catalog.jsonb_build_object('action', 'skip', 'reason', 'no such message');
  end if;
  if m.direction <> 'outbound' or m.delivery_status not in ('queued', 'sending') then
    return pg_catalog.jsonb_build_object('action', 'skip',
      'reason', 'message is ' || m.delivery_status);
  end if;
  select * into v_contact from pgflow.contacts where id = m.contact_id;
  select * into v_conversation from pgflow.conversations where id = m.conversation_id;
  -- a campaign message answers to its own drip; other messages to the conversation's
  select e.status, e.campaign_id into v_enrollment_status, v_campaign_id
    from pgflow.enrollments e where e.id = coalesce(m.enrollment_id, v_conversation.enrollment_id);
  select * into v_campaign from pgflow.campaigns
   where id = coalesce(v_campaign_id, v_conversation.campaign_id);
  select * into v_agent from pgflow.agents
   where id = coalesce(v_campaign.agent_id, v_conversation.agent_id);
  v_max := coalesce(v_campaign.max_attempts, 6);

  if m.delivery_status = 'sending' then
    -- The last attempt never came back: its worker died mid-send.
    update pgflow.message_attempts
       set finished_at = v_now, outcome = 'interrupted',
           error = 'the worker stopped during the send'
     where message_id = m.id and finished_at is null;
    if m.attempts >= v_max then
      perform pgflow._set_reason('interrupted ' || m.attempts || ' times');
      update pgflow.messages
         set delivery_status = 'dead_letter', updated_at = v_now,
             delivery_error = pg_catalog.format(
               'the worker stopped during each of %s attempts (possible poison message)', m.attempts)
       where id = m.id;
      return pg_catalog.jsonb_build_object('action', 'dead_letter', 'reason', 'interrupted');
    end if;
  end if;

  v_reason := case
    when v_contact.opted_out_at is not null and m.kind <> 'system' then 'contact opted out'
    when m.kind = 'campaign' and v_enrollment_status in ('stopped', 'opted_out')
      then 'enrollment ' || v_enrollment_status
    when m.kind = 'campaign' and v_conversation.status = 'engaged' then 'lead replied'
    when v_conversation.status = 'ended' and m.kind <> 'system' then 'conversation ended'
  end;
  if v_reason is not null then
    perform pgflow._set_reason(v_reason);
    update pgflow.messages
       set delivery_status = 'suppressed', delivery_error = v_reason, updated_at = v_now
     where id = m.id;
    return pg_catalog.jsonb_build_object('action', 'suppressed', 'reason', v_reason);
  end if;

  if m.send_after > v_now then
    return pg_catalog.jsonb_build_object('action', 'defer', 'reason', 'backoff',
      'delay_seconds', extract(epoch from m.send_after - v_now));
  end if;
  if m.kind = 'campaign' then
    if v_campaign.status <> 'active' then
      update pgflow.messages set delivery_status = 'queued',
             send_after = v_now + interval '15 minutes', updated_at = v_now
       where id = m.id;
      return pg_catalog.jsonb_build_object('action', 'defer', 'reason',
        'campaign ' || v_campaign.status, 'delay_seconds', 900);
    end if;
    v_open := pgflow.next_window_open(coalesce(v_contact.timezone, v_campaign.timezone),
      v_campaign.window_start, v_campaign.window_end, v_campaign.window_days, v_now);
    if v_open > v_now then
      perform pgflow._set_reason('send window closed');
      update pgflow.messages set delivery_status = 'queued', send_after = v_open,
             updated_at = v_now
       where id = m.id;
      return pg_catalog.jsonb_build_object('action', 'defer', 'reason', 'send window closed',
        'delay_seconds', extract(epoch from v_open - v_now));
    end if;
  end if;

  perform pgflow._set_reason('attempt ' || (m.attempts + 1));
  update pgflow.messages
     set delivery_status = 'sending', attempts = attempts + 1, send_after = null,
         updated_at = v_now
   where id = m.id
  returning * into m;
  -- attempt numbers keep counting across requeues; messages.attempts counts this round
  insert into pgflow.message_attempts (message_id, attempt, worker_id, started_at)
  select m.id, coalesce(pg_catalog.max(a.attempt), 0) + 1, p_worker, v_now
    from pgflow.message_attempts a where a.message_id = m.id;
  return pg_catalog.jsonb_build_object(
    'action', 'send',
    'message_id', m.id,
    'attempt', m.attempts,
    'max_attempts', v_max,
    'kind', m.kind,
    'from_number', v_conversation.from_number,
    'to_number', v_contact.phone,
    'body', m.body,
    'retell_agent_id', v_agent.retell_agent_id,
    'previous_chat_id', v_conversation.provider_chat_id,
    'metadata', pg_catalog.jsonb_build_object(
      'pgflow_message_id', m.id::text,
      'pgflow_conversation_id', m.conversation_id::text,
      'pgflow_contact_id', m.contact_id::text),
    'variables', pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
      'agent_prompt', v_agent.prompt,
      'first_name', coalesce(v_contact.first_name, v_campaign.fallbacks ->> 'first_name', ''),
      'campaign_name', v_campaign.name)));
end;
$$;


--
-- Name: enrollments; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow.enrollments (
    id bigint NOT NULL,
    contact_id bigint NOT NULL,
    campaign_id bigint NOT NULL,
    status text DEFAULT 'active'::text NOT NULL,
    next_step integer,
    next_message_at timestamp with time zone,
    last_step_sent_at timestamp with time zone,
    enrolled_at timestamp with time zone DEFAULT now() NOT NULL,
    ended_at timestamp with time zone,
    stop_reason text,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT enrollments_active_scheduled CHECK (((status <> 'active'::text) OR ((next_step IS NOT NULL) AND (next_message_at IS NOT NULL)))),
    CONSTRAINT enrollments_ended_consistent CHECK (((status = ANY (ARRAY['completed'::text, 'stopped'::text, 'opted_out'::text])) = (ended_at IS NOT NULL))),
    CONSTRAINT enrollments_next_step_positive CHECK (((next_step IS NULL) OR (next_step > 0))),
    CONSTRAINT enrollments_status_valid CHECK ((status = ANY (ARRAY['active'::text, 'paused'::text, 'completed'::text, 'stopped'::text, 'opted_out'::text]))),
    CONSTRAINT enrollments_stop_reason_given CHECK (((status <> ALL (ARRAY['stopped'::text, 'opted_out'::text])) OR (stop_reason IS NOT NULL)))
);


--
-- Name: complete_enrollment(bigint, text, timestamp with time zone); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.complete_enrollment(p_id bigint, p_reason text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS pgflow.enrollments
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
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


--
-- Name: contact_report(text, integer); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.contact_report(p_phone text, p_limit integer DEFAULT 200) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select pg_catalog.jsonb_build_object(
    'contact', pg_catalog.jsonb_build_object(
      'id', ct.id, 'phone', ct.phone, 'first_name', ct.first_name, 'last_name', ct.last_name,
      'timezone', ct.timezone, 'opted_out_at', ct.opted_out_at,
      'opt_out_source', ct.opt_out_source, 'consent_at', ct.consent_at,
      'consent_source', ct.consent_source),
    'enrollments', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', e.id, 'campaign', c.slug, 'status', e.status, 'next_step', e.next_step,
               'next_message_at', e.next_message_at, 'enrolled_at', e.enrolled_at,
               'ended_at', e.ended_at, 'stop_reason', e.stop_reason) order by e.id)
        from pgflow.enrollments e join pgflow.campaigns c on c.id = e.campaign_id
       where e.contact_id = ct.id), '[]'),
    'conversations', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', cv.id, 'from_number', cv.from_number, 'status', cv.status,
               'conversion_status', cv.conversion_status, 'outcome_reason', cv.outcome_reason,
               'outcome_source', cv.outcome_source, 'created_at', cv.created_at,
               'ended_at', cv.ended_at) order by cv.id)
        from pgflow.conversations cv where cv.contact_id = ct.id), '[]'),
    'messages', coalesce((
      select pg_catalog.jsonb_agg(x.m order by x.created_at, x.id)
        from (select m.id, m.created_at, pg_catalog.jsonb_build_object(
                       'id', m.id, 'conversation_id', m.conversation_id,
                       'at', coalesce(m.sent_at, m.created_at), 'direction', m.direction,
                       'kind', m.kind, 'step', m.step_position, 'status', m.delivery_status,
                       'attempts', m.attempts, 'error', m.delivery_error, 'body', m.body,
                       'segments', m.segments) as m
                from pgflow.messages m where m.contact_id = ct.id
               order by m.created_at desc, m.id desc limit p_limit) x), '[]'))
    from pgflow.contacts ct
   where ct.phone = p_phone
$$;


--
-- Name: discard_dead_letters(bigint[], timestamp with time zone); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.discard_dead_letters(p_ids bigint[], p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_results jsonb;
begin
  perform pgflow._set_reason('discarded by an operator');
  with want as (select pg_catalog.unnest(p_ids) as id),
  done as (
    update pgflow.messages m set delivery_status = 'failed', updated_at = v_now
      from want where m.id = want.id and m.delivery_status = 'dead_letter'
    returning m.id)
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('id', want.id, 'result',
           case when done.id is not null then 'discarded'
                when m.id is null then 'not_found'
                else 'not_dead_letter' end) order by want.id), '[]')
    into v_results
    from want left join done on done.id = want.id
    left join pgflow.messages m on m.id = want.id;
  return v_results;
end;
$$;


--
-- Name: conversations; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow.conversations (
    id bigint NOT NULL,
    contact_id bigint NOT NULL,
    campaign_id bigint,
    agent_id bigint,
    enrollment_id bigint,
    from_number text NOT NULL,
    status text DEFAULT 'open'::text NOT NULL,
    conversion_status text,
    outcome_reason text,
    outcome_source text,
    ended_at timestamp with time zone,
    last_inbound_at timestamp with time zone,
    last_outbound_at timestamp with time zone,
    provider_chat_id text,
    reply_deadline_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT conversations_conversion_status_valid CHECK ((conversion_status = ANY (ARRAY['success'::text, 'qualified'::text, 'unqualified'::text, 'escalated'::text, 'no_response'::text, 'discarded'::text]))),
    CONSTRAINT conversations_ended_at_iff_ended CHECK (((status = 'ended'::text) = (ended_at IS NOT NULL))),
    CONSTRAINT conversations_ended_has_outcome CHECK (((status <> 'ended'::text) OR ((conversion_status IS NOT NULL) AND (outcome_source IS NOT NULL)))),
    CONSTRAINT conversations_from_number_e164 CHECK ((from_number ~ '^\+[1-9][0-9]{6,14}$'::text)),
    CONSTRAINT conversations_outcome_only_when_ended CHECK (((conversion_status IS NULL) OR (status = 'ended'::text))),
    CONSTRAINT conversations_outcome_source_valid CHECK ((outcome_source = ANY (ARRAY['rule'::text, 'llm'::text, 'human'::text, 'webhook'::text]))),
    CONSTRAINT conversations_reply_deadline_only_open CHECK (((reply_deadline_at IS NULL) OR (status = 'open'::text))),
    CONSTRAINT conversations_status_valid CHECK ((status = ANY (ARRAY['open'::text, 'engaged'::text, 'ended'::text])))
);


--
-- Name: end_conversation(bigint, text, text, text, timestamp with time zone); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.end_conversation(p_id bigint, p_conversion_status text, p_reason text, p_source text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS pgflow.conversations
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_row pgflow.conversations;
begin
  if p_conversion_status is null or p_conversion_status not in
     ('success', 'qualified', 'unqualified', 'escalated', 'no_response', 'discarded') then
    raise exception 'unknown conversion status %', coalesce(p_conversion_status, '(null)')
      using errcode = 'PF003';
  end if;
  if p_source is null or p_source not in ('rule', 'llm', 'human', 'webhook') then
    raise exception 'unknown outcome source %', coalesce(p_source, '(null)')
      using errcode = 'PF003';
  end if;
  perform pgflow._set_reason(p_conversion_status || coalesce(': ' || p_reason, ''));
  update pgflow.conversations
     set status = 'ended', ended_at = v_now, updated_at = v_now, reply_deadline_at = null,
         conversion_status = p_conversion_status, outcome_reason = p_reason,
         outcome_source = p_source
   where id = p_id and status in ('open', 'engaged')
  returning * into v_row;
  if not found then
    perform pgflow._transition_failed('conversation', p_id,
      (select status from pgflow.conversations where id = p_id), 'end', '{open,engaged}');
  end if;
  if v_row.enrollment_id is not null then
    perform pgflow._set_reason('conversation ended: ' || p_conversion_status);
    update pgflow.enrollments
       set status = 'stopped', stop_reason = 'conversation ended: ' || p_conversion_status,
           ended_at = v_now, updated_at = v_now, next_message_at = null
     where id = v_row.enrollment_id and status in ('active', 'paused');
  end if;
  return v_row;
end;
$$;


--
-- Name: engage_conversation(bigint, text, timestamp with time zone); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.engage_conversation(p_id bigint, p_reason text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS pgflow.conversations
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_row pgflow.conversations;
begin
  perform pgflow._set_reason(coalesce(p_reason, 'lead replied'));
  update pgflow.conversations
     set status = 'engaged', updated_at = coalesce(p_now, pg_catalog.now())
   where id = p_id and status = 'open'
  returning * into v_row;
  if not found then
    perform pgflow._transition_failed('conversation', p_id,
      (select status from pgflow.conversations where id = p_id), 'engage', '{open}');
  end if;
  return v_row;
end;
$$;


--
-- Name: fn_pgqueuer_changed(); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.fn_pgqueuer_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    to_emit BOOLEAN := false;  -- Flag to decide whether to emit a notification
BEGIN
    -- Check operation type and set the emit flag accordingly
    IF TG_OP = 'UPDATE' AND OLD IS DISTINCT FROM NEW THEN
        to_emit := true;
    ELSIF TG_OP = 'DELETE' THEN
        to_emit := true;
    ELSIF TG_OP = 'INSERT' THEN
        to_emit := true;
    ELSIF TG_OP = 'TRUNCATE' THEN
        to_emit := true;
    END IF;

    -- Perform notification if the emit flag is set
    IF to_emit THEN
        PERFORM pg_notify(
            'ch_pgqueuer',
            json_build_object(
                'channel', 'ch_pgqueuer',
                'operation', lower(TG_OP),
                'sent_at', NOW(),
                'table', TG_TABLE_NAME,
                'type', 'table_changed_event'
            )::text
        );
    END IF;

    -- Return appropriate value based on the operation
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        RETURN NEW;
    ELSIF TG_OP = 'DELETE' THEN
        RETURN OLD;
    ELSE
        RETURN NULL; -- For TRUNCATE and other non-row-specific contexts
    END IF;

END;
$$;


--
-- Name: health(timestamp with time zone); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.health(p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $_$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_checks jsonb := '[]'::jsonb;
  v_cron_db text := pg_catalog.current_setting('cron.database_name', true);
  v_preloaded boolean :=
    pg_catalog.current_setting('shared_preload_libraries') ~ '(^|[ ,])pg_cron([ ,]|$)';
  v_local_cron boolean := pg_catalog.to_regclass('cron.job') is not null;
  -- pg_cron's scheduler; it stops for good if its database is dropped and re-created
  v_launcher boolean := exists (select 1 from pg_catalog.pg_stat_activity
                                 where backend_type = 'pg_cron launcher');
  v_tick record;
  v_workers integer;
  v_last_worker timestamptz;
  v_ready integer;
  v_oldest_ready timestamptz;
  v_alerts integer;
  v_alert_kinds text;
begin
  v_checks := v_checks || pg_catalog.jsonb_build_object(
    'name', 'pg_cron',
    'ok', v_preloaded and (v_cron_db <> pg_catalog.current_database() or v_local_cron),
    'detail', case
      when not v_preloaded then 'pg_cron is not in shared_preload_libraries'
      when v_cron_db <> pg_catalog.current_database()
        then pg_catalog.format('cron database is %I; schedule jobs there (README)', v_cron_db)
      when not v_local_cron then 'extension pg_cron is not created'
      else 'preloaded; extension created'
    end);
  if v_local_cron then
    execute $q$
      select j.jobid, j.active,
             (select pg_catalog.max(d.end_time) from cron.job_run_details d
               where d.jobid = j.jobid and d.status = 'succeeded') as last_ok,
             (select d.return_message from cron.job_run_details d
               where d.jobid = j.jobid and d.status = 'failed'
               order by d.end_time desc nulls last limit 1) as last_error
        from cron.job j where j.jobname = 'pgflow-tick'
    $q$ into v_tick;
    v_checks := v_checks || pg_catalog.jsonb_build_object(
      'name', 'tick',
      'ok', v_launcher and v_tick.jobid is not null and v_tick.active
            and (v_tick.last_ok > v_now - interval '3 minutes'
                 or (v_tick.last_ok is null and v_tick.last_error is null)),
      'detail', case
        when not v_launcher
          then 'pg_cron''s launcher is not running: nothing is scheduled (restart PostgreSQL)'
        when v_tick.jobid is null then 'cron job pgflow-tick is not scheduled'
        when not v_tick.active then 'cron job pgflow-tick is inactive'
        when v_tick.last_ok > v_now - interval '3 minutes'
          then pg_catalog.format('last ran %s s ago',
                 pg_catalog.round(extract(epoch from v_now - v_tick.last_ok)))
        when v_tick.last_error is not null
          then 'failing: ' || pg_catalog.left(v_tick.last_error, 200)
        when v_tick.last_ok is null then 'scheduled; no run yet'
        else pg_catalog.format('last successful run %s ago', v_now - v_tick.last_ok)
      end);
  end if;
  select pg_catalog.count(*) filter (where stopped_at is null
                                      and last_seen_at > v_now - interval '1 minute'),
         pg_catalog.max(last_seen_at)
    into v_workers, v_last_worker
    from pgflow.workers;
  select pg_catalog.count(*), pg_catalog.min(execute_after)
    into v_ready, v_oldest_ready
    from pgflow.pgqueuer where status = 'queued' and execute_after <= v_now;
  v_checks := v_checks || pg_catalog.jsonb_build_object(
    'name', 'worker',
    'ok', v_workers > 0 or v_ready = 0,
    'detail', case
      when v_workers > 0 then pg_catalog.format('%s alive', v_workers)
      when v_ready = 0 then 'none alive; no job waiting'
      else pg_catalog.format('none alive and %s job(s) waiting since %s', v_ready,
                             pg_catalog.to_char(v_oldest_ready, 'YYYY-MM-DD HH24:MI:SS TZ'))
    end);
  select pg_catalog.count(*), pg_catalog.string_agg(kind, ', ' order by kind)
    into v_alerts, v_alert_kinds
    from pgflow.alerts where resolved_at is null and severity = 'critical';
  v_checks := v_checks || pg_catalog.jsonb_build_object(
    'name', 'alerts',
    'ok', v_alerts = 0,
    'detail', case when v_alerts = 0 then 'no critical alert open'
                   else 'critical alert(s) open: ' || v_alert_kinds end);
  return pg_catalog.jsonb_build_object(
    'now', v_now,
    'checks', v_checks,
    'figures', pg_catalog.jsonb_build_object(
      'contacts', (select pg_catalog.count(*) from pgflow.contacts),
      'enrollments_active',
        (select pg_catalog.count(*) from pgflow.enrollments where status = 'active'),
      'enrollments_due',
        (select pg_catalog.count(*) from pgflow.enrollments
          where status = 'active' and next_message_at <= v_now),
      'conversations_open',
        (select pg_catalog.count(*) from pgflow.conversations where status <> 'ended'),
      'jobs_queued',
        (select pg_catalog.count(*) from pgflow.pgqueuer where status = 'queued'),
      'workers_alive', v_workers,
      'jobs_ready', v_ready,
      'messages_sent_24h',
        (select pg_catalog.count(*) from pgflow.messages
          where direction = 'outbound' and sent_at > v_now - interval '24 hours'),
      'dead_letters',
        (select pg_catalog.count(*) from pgflow.messages where delivery_status = 'dead_letter'),
      'alerts_open', (select pg_catalog.count(*) from pgflow.alerts where resolved_at is null),
      'leads_rejected_24h',
        (select pg_catalog.count(*) from pgflow.lead_events
          where result = 'rejected' and received_at > v_now - interval '24 hours')
    ));
end;
$_$;


--
-- Name: ingest_lead(jsonb, timestamp with time zone, jsonb); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.ingest_lead(payload jsonb, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone, p_edge jsonb DEFAULT NULL::jsonb) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
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
    insert into pgflow.lead_events
      (received_at, source, external_id, campaign_slug, payload, result, error_code, error_detail)
    values (v_now, payload ->> 'source', payload ->> 'external_id', payload ->> 'campaign',
            payload, 'rejected', v_error, v_detail)
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
    consent_at = coalesce(excluded.consent_at, c.consent_at),
    consent_source = coalesce(excluded.consent_source, c.consent_source),
    consent_text = coalesce(excluded.consent_text, c.consent_text),
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
              v_campaign.from_number, v_now, v_now)
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
$_$;


--
-- Name: next_window_open(text, time without time zone, time without time zone, smallint[], timestamp with time zone); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.next_window_open(p_tz text, p_start time without time zone, p_end time without time zone, p_days smallint[], p_now timestamp with time zone) RETURNS timestamp with time zone
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
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


--
-- Name: open_alert(text, text, text, jsonb, timestamp with time zone); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.open_alert(p_kind text, p_severity text, p_message text, p_details jsonb DEFAULT '{}'::jsonb, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_id bigint;
  v_new boolean;
begin
  insert into pgflow.alerts as a (kind, severity, message, details, opened_at, last_seen_at)
  values (p_kind, p_severity, p_message, coalesce(p_details, '{}'), v_now, v_now)
  on conflict (kind) where resolved_at is null do update
    set occurrences = a.occurrences + 1, last_seen_at = excluded.last_seen_at,
        message = excluded.message, details = excluded.details
  returning id, (xmax = 0) into v_id, v_new;
  if v_new then
    perform pgflow._enqueue('deliver_alert', array[v_id]);
  end if;
  return v_id;
end;
$$;


--
-- Name: opt_out_enrollment(bigint, text, timestamp with time zone); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.opt_out_enrollment(p_id bigint, p_reason text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS pgflow.enrollments
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
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


--
-- Name: pause_enrollment(bigint, text, timestamp with time zone); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.pause_enrollment(p_id bigint, p_reason text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS pgflow.enrollments
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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


--
-- Name: prune(timestamp with time zone, interval, interval, interval, interval, integer); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.prune(p_now timestamp with time zone DEFAULT NULL::timestamp with time zone, p_keep_events interval DEFAULT '180 days'::interval, p_keep_job_log interval DEFAULT '14 days'::interval, p_keep_cron_runs interval DEFAULT '7 days'::interval, p_keep_webhooks interval DEFAULT '90 days'::interval, p_batch integer DEFAULT 10000) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_events integer;
  v_log integer;
  v_webhooks integer;
  v_cron integer := 0;
begin
  if not pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('pgflow.prune')) then
    return pg_catalog.jsonb_build_object('skipped', true);
  end if;
  perform pg_catalog.set_config('statement_timeout', '55s', true);
  perform pg_catalog.set_config('lock_timeout', '5s', true);
  delete from pgflow.events where id in (
    select id from pgflow.events where occurred_at < v_now - p_keep_events
     order by occurred_at limit p_batch);
  get diagnostics v_events = row_count;
  delete from pgflow.pgqueuer_log where id in (
    select id from pgflow.pgqueuer_log where created < v_now - p_keep_job_log
     order by created limit p_batch);
  get diagnostics v_log = row_count;
  delete from pgflow.webhook_deliveries where id in (
    select id from pgflow.webhook_deliveries where received_at < v_now - p_keep_webhooks
     order by received_at limit p_batch);
  get diagnostics v_webhooks = row_count;
  if pg_catalog.to_regclass('cron.job_run_details') is not null then
    execute 'delete from cron.job_run_details where runid in (
               select runid from cron.job_run_details where end_time < $1 limit $2)'
      using v_now - p_keep_cron_runs, p_batch;
    get diagnostics v_cron = row_count;
  end if;
  return pg_catalog.jsonb_build_object('events', v_events, 'job_log', v_log,
                                       'webhook_deliveries', v_webhooks, 'cron_runs', v_cron);
end;
$_$;


--
-- Name: record_alert_delivery(bigint, text, timestamp with time zone); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.record_alert_delivery(p_alert_id bigint, p_error text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
  update pgflow.alerts
     set notified_at = case when p_error is null then coalesce(p_now, pg_catalog.now()) end,
         details = case when p_error is null then details
                        else details || pg_catalog.jsonb_build_object('notify_error', p_error) end
   where id = p_alert_id
$$;


--
-- Name: record_send(bigint, integer, jsonb, double precision, timestamp with time zone); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.record_send(p_message_id bigint, p_attempt integer, p_result jsonb, p_retry_base_seconds double precision DEFAULT 30, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  m pgflow.messages;
  v_max integer;
  v_delay double precision;
  v_error text := pg_catalog.left(p_result ->> 'error', 2000);
  v_status integer := (p_result ->> 'status_code')::integer;
  v_kind text;
begin
  select * into m from pgflow.messages
   where id = p_message_id and delivery_status = 'sending' and attempts = p_attempt
     for update;
  if not found then
    -- Someone else re-claimed it after our heartbeat lapsed; their record wins.
    return pg_catalog.jsonb_build_object('action', 'stale');
  end if;
  select coalesce(c.max_attempts, 6) into v_max
    from pgflow.conversations cv
    left join pgflow.enrollments e on e.id = m.enrollment_id
    left join pgflow.campaigns c on c.id = coalesce(e.campaign_id, cv.campaign_id)
   where cv.id = m.conversation_id;

  if (p_result ->> 'ok')::boolean then
    perform pgflow._set_reason('sent on attempt ' || p_attempt);
    update pgflow.messages
       set delivery_status = 'sent', sent_at = v_now, updated_at = v_now,
           provider_message_id = p_result ->> 'chat_id'
     where id = m.id;
    update pgflow.message_attempts
       set finished_at = v_now, outcome = 'sent', status_code = v_status
     where message_id = m.id and finished_at is null;
    update pgflow.conversations
       set last_outbound_at = v_now, provider_chat_id = coalesce(p_result ->> 'chat_id', provider_chat_id),
           updated_at = v_now
     where id = m.conversation_id;
    return pg_catalog.jsonb_build_object('action', 'sent');
  end if;

  if coalesce((p_result ->> 'retryable')::boolean, false) and p_attempt < v_max then
    v_delay := least(3600, p_retry_base_seconds * 2 ^ (p_attempt - 1))
               * (0.8 + 0.4 * pg_catalog.random());
    v_delay := greatest(v_delay, coalesce((p_result ->> 'retry_after')::double precision, 0));
    perform pgflow._set_reason('attempt ' || p_attempt || ' failed: ' || coalesce(v_error, '?'));
    update pgflow.messages
       set delivery_status = 'queued', delivery_error = v_error, updated_at = v_now,
           send_after = v_now + v_delay * interval '1 second'
     where id = m.id;
    update pgflow.message_attempts
       set finished_at = v_now, outcome = 'retry', status_code = v_status, error = v_error
     where message_id = m.id and finished_at is null;
    return pg_catalog.jsonb_build_object('action', 'retry', 'delay_seconds', v_delay);
  end if;

  perform pgflow._set_reason(case when coalesce((p_result ->> 'retryable')::boolean, false)
                                  then 'gave up after ' || p_attempt || ' attempts'
                                  else 'permanent failure' end);
  update pgflow.messages
     set delivery_status = 'dead_letter', delivery_error = v_error, updated_at = v_now
   where id = m.id;
  update pgflow.message_attempts
     set finished_at = v_now, outcome = 'dead_letter', status_code = v_status, error = v_error
   where message_id = m.id and finished_at is null;
  if coalesce((p_result ->> 'alert')::boolean, false) then
    v_kind := case v_status when 401 then 'retell_unauthorized'
                            when 402 then 'retell_payment_required'
                            else 'retell_' || coalesce(v_status::text, 'error') end;
    perform pgflow.open_alert(v_kind, 'critical',
      pg_catalog.format('Retell refused a send with HTTP %s: %s', v_status, coalesce(v_error, '')),
      pg_catalog.jsonb_build_object('message_id', m.id, 'status_code', v_status), v_now);
  end if;
  return pg_catalog.jsonb_build_object('action', 'dead_letter');
end;
$$;


--
-- Name: reject_lead(text, text, text, text, timestamp with time zone); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.reject_lead(p_raw_body text, p_error text, p_detail text, p_source text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_id bigint;
begin
  insert into pgflow.lead_events (received_at, source, raw_body, result, error_code, error_detail)
  values (coalesce(p_now, pg_catalog.now()), p_source, coalesce(p_raw_body, ''), 'rejected',
          p_error, p_detail)
  returning id into v_id;
  return pg_catalog.jsonb_build_object('status', 'rejected', 'error', p_error,
                                       'detail', p_detail, 'lead_event_id', v_id);
end;
$$;


--
-- Name: render_template(text, jsonb, jsonb); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.render_template(p_template text, p_values jsonb, p_fallbacks jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $_$
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
$_$;


--
-- Name: requeue_dead_letters(bigint[], text, timestamp with time zone); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.requeue_dead_letters(p_ids bigint[] DEFAULT NULL::bigint[], p_campaign text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_results jsonb := '[]'::jsonb;
  v_requeue bigint[] := '{}';
  r record;
begin
  if p_campaign is not null and not exists (select 1 from pgflow.campaigns where slug = p_campaign) then
    raise exception 'no campaign with slug %', p_campaign using errcode = 'PF002';
  end if;
  for r in
    select want.id, m.id as found_id, m.delivery_status, ct.opted_out_at, c.slug
      from (select pg_catalog.unnest(p_ids) as id
             where p_ids is not null
            union
            select d.id from pgflow.dead_letters d
             where p_ids is null and (p_campaign is null or d.campaign = p_campaign)) want
      left join pgflow.messages m on m.id = want.id
      left join pgflow.contacts ct on ct.id = m.contact_id
      left join pgflow.conversations cv on cv.id = m.conversation_id
      left join pgflow.enrollments e on e.id = m.enrollment_id
      left join pgflow.campaigns c on c.id = coalesce(e.campaign_id, cv.campaign_id)
     order by want.id
  loop
    if r.found_id is null then
      v_results := v_results || pg_catalog.jsonb_build_object('id', r.id, 'result', 'not_found');
    elsif r.delivery_status <> 'dead_letter' then
      v_results := v_results || pg_catalog.jsonb_build_object('id', r.id,
        'result', 'not_dead_letter', 'detail', 'message is ' || r.delivery_status);
    elsif p_campaign is not null and r.slug is distinct from p_campaign then
      v_results := v_results || pg_catalog.jsonb_build_object('id', r.id,
        'result', 'other_campaign', 'detail', 'message belongs to ' || coalesce(r.slug, '(none)'));
    elsif r.opted_out_at is not null then
      v_results := v_results || pg_catalog.jsonb_build_object('id', r.id,
        'result', 'refused', 'detail', 'the contact has opted out');
    else
      v_requeue := v_requeue || r.id;
      v_results := v_results || pg_catalog.jsonb_build_object('id', r.id, 'result', 'requeued');
    end if;
  end loop;
  perform pgflow._set_reason('requeued by an operator');
  update pgflow.messages
     set delivery_status = 'queued', attempts = 0, send_after = null, updated_at = v_now
   where id = any (v_requeue);
  perform pgflow._enqueue('send_sms', v_requeue, 5);
  return v_results;
end;
$$;


--
-- Name: resolve_alert(text, timestamp with time zone); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.resolve_alert(p_kind text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS bigint
    LANGUAGE sql
    SET search_path TO ''
    AS $$
  update pgflow.alerts set resolved_at = coalesce(p_now, pg_catalog.now())
   where kind = p_kind and resolved_at is null
  returning id
$$;


--
-- Name: resume_enrollment(bigint, text, timestamp with time zone); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.resume_enrollment(p_id bigint, p_reason text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS pgflow.enrollments
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_row pgflow.enrollments;
begin
  perform pgflow._set_reason(coalesce(p_reason, 'resumed'));
  update pgflow.enrollments
     set status = 'active', updated_at = coalesce(p_now, pg_catalog.now()),
         next_step = coalesce(next_step, 1),
         next_message_at = coalesce(next_message_at, p_now, pg_catalog.now())
   where id = p_id and status = 'paused'
  returning * into v_row;
  if not found then
    perform pgflow._transition_failed('enrollment', p_id,
      (select status from pgflow.enrollments where id = p_id), 'resume', '{paused}');
  end if;
  return v_row;
end;
$$;


--
-- Name: sms_encoding(text); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.sms_encoding(p_body text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $_$
  select case
    when p_body ~ ('^[@£$¥èéùìòÇ' || E'\n' || 'Øø' || E'\r' || 'Å寅ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&''()*+,\-./0-9:;<=>?¡A-ZÄÖÑܧ¿a-zäöñüà^{}\\\[~\]|€' || E'\f' || ']*$')
      then 'gsm7'
    else 'ucs2'
  end
$_$;


--
-- Name: sms_segments(text); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.sms_segments(p_body text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
  select case
    when pgflow.sms_encoding(p_body) = 'gsm7' then
      case when units <= 160 then 1 else ceil(units / 153.0)::integer end
    else
      -- UCS-2 counts UTF-16 code units: characters beyond the BMP (most emoji) take two.
      case when u16 <= 70 then 1 else ceil(u16 / 67.0)::integer end
  end
  from (
    select pg_catalog.length(p_body)
             + pg_catalog.length(pg_catalog.regexp_replace(p_body, '[^\^{}\\\[~\]|€' || E'\f' || ']', '', 'g'))
             as units,
           pg_catalog.length(p_body)
             + pg_catalog.length(pg_catalog.regexp_replace(p_body, '[\u0001-\uffff]', '', 'g'))
             as u16
  ) x
$$;


--
-- Name: stop_enrollment(bigint, text, timestamp with time zone); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.stop_enrollment(p_id bigint, p_reason text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS pgflow.enrollments
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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


--
-- Name: tick(timestamp with time zone, integer); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.tick(p_now timestamp with time zone DEFAULT NULL::timestamp with time zone, p_batch integer DEFAULT 1000) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_started timestamptz := pg_catalog.clock_timestamp();
  v_ids bigint[];
  v_batch jsonb;
  v_totals jsonb := '{"sent": 0, "deferred_window": 0, "deferred_cap": 0, "completed": 0,
                      "held": 0, "stopped": 0}'::jsonb;
  v_key text;
  v_no_response integer := 0;
  v_conversation bigint;
  v_batches integer := 0;
begin
  if not pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('pgflow.tick')) then
    return pg_catalog.jsonb_build_object('skipped', true, 'reason', 'another tick is running');
  end if;
  perform pg_catalog.set_config('statement_timeout', '55s', true);
  perform pg_catalog.set_config('lock_timeout', '5s', true);

  loop
    select pg_catalog.array_agg(id) into v_ids from (
      select e.id from pgflow.enrollments e
       where e.status = 'active' and e.next_message_at <= v_now
       order by e.next_message_at
       limit p_batch
         for update skip locked
    ) due;
    exit when v_ids is null;
    v_batches := v_batches + 1;
    v_batch := pgflow._dispatch_steps(v_ids, v_now);
    for v_key in select pg_catalog.jsonb_object_keys(v_batch) loop
      v_totals := pg_catalog.jsonb_set(v_totals, array[v_key],
        pg_catalog.to_jsonb((v_totals ->> v_key)::integer + (v_batch ->> v_key)::integer));
    end loop;
    exit when pg_catalog.cardinality(v_ids) < p_batch
           or v_batches >= 20
           or pg_catalog.clock_timestamp() - v_started > interval '20 seconds';
  end loop;

  for v_conversation in
    select c.id from pgflow.conversations c
     where c.status = 'open' and c.reply_deadline_at <= v_now
       and not exists (select 1 from pgflow.messages m
                        where m.conversation_id = c.id and m.direction = 'outbound'
                          and m.delivery_status in ('pending', 'queued', 'sending'))
     order by c.reply_deadline_at
     limit p_batch
       for update skip locked
  loop
    perform pgflow.end_conversation(v_conversation, 'no_response',
      'no reply within the reply timeout after the last step', 'rule', v_now);
    v_no_response := v_no_response + 1;
  end loop;

  return v_totals || pg_catalog.jsonb_build_object(
    'no_response', v_no_response, 'batches', v_batches,
    'ms', pg_catalog.round(extract(epoch from pg_catalog.clock_timestamp() - v_started) * 1000));
end;
$$;


--
-- Name: worker_heartbeat(uuid, text, integer, text, boolean, timestamp with time zone); Type: FUNCTION; Schema: pgflow; Owner: -
--

CREATE FUNCTION pgflow.worker_heartbeat(p_id uuid, p_host text, p_pid integer, p_version text, p_stopping boolean DEFAULT false, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS void
    LANGUAGE sql SECURITY DEFINER
    SET search_path TO ''
    AS $$
  insert into pgflow.workers as w (id, host, pid, version, started_at, last_seen_at, stopped_at)
  values (p_id, p_host, p_pid, p_version, coalesce(p_now, pg_catalog.now()),
          coalesce(p_now, pg_catalog.now()),
          case when p_stopping then coalesce(p_now, pg_catalog.now()) end)
  on conflict (id) do update
    set last_seen_at = excluded.last_seen_at, stopped_at = excluded.stopped_at
$$;


--
-- Name: _yoyo_log; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow._yoyo_log (
    id character varying(36) NOT NULL,
    migration_hash character varying(64),
    migration_id character varying(255),
    operation character varying(10),
    username character varying(255),
    hostname character varying(255),
    comment character varying(255),
    created_at_utc timestamp without time zone
);


--
-- Name: _yoyo_migration; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow._yoyo_migration (
    migration_hash character varying(64) NOT NULL,
    migration_id character varying(255),
    applied_at_utc timestamp without time zone
);


--
-- Name: _yoyo_version; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow._yoyo_version (
    version integer NOT NULL,
    installed_at_utc timestamp without time zone
);


--
-- Name: agents; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow.agents (
    id bigint NOT NULL,
    name text NOT NULL,
    prompt text NOT NULL,
    model text,
    retell_agent_id text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT agents_name_nonempty CHECK ((name ~ '^\S(.*\S)?$'::text)),
    CONSTRAINT agents_prompt_nonempty CHECK ((length(btrim(prompt)) > 0))
);


--
-- Name: agents_id_seq; Type: SEQUENCE; Schema: pgflow; Owner: -
--

ALTER TABLE pgflow.agents ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.agents_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: alerts; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow.alerts (
    id bigint NOT NULL,
    kind text NOT NULL,
    severity text DEFAULT 'warning'::text NOT NULL,
    message text NOT NULL,
    details jsonb DEFAULT '{}'::jsonb NOT NULL,
    occurrences integer DEFAULT 1 NOT NULL,
    opened_at timestamp with time zone DEFAULT now() NOT NULL,
    last_seen_at timestamp with time zone DEFAULT now() NOT NULL,
    resolved_at timestamp with time zone,
    notified_at timestamp with time zone,
    CONSTRAINT alerts_resolved_after_open CHECK (((resolved_at IS NULL) OR (resolved_at >= opened_at))),
    CONSTRAINT alerts_severity_valid CHECK ((severity = ANY (ARRAY['info'::text, 'warning'::text, 'critical'::text])))
);


--
-- Name: alerts_id_seq; Type: SEQUENCE; Schema: pgflow; Owner: -
--

ALTER TABLE pgflow.alerts ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.alerts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: campaign_steps; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow.campaign_steps (
    id bigint NOT NULL,
    campaign_id bigint NOT NULL,
    "position" integer NOT NULL,
    delay interval DEFAULT '00:00:00'::interval NOT NULL,
    body text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT campaign_steps_body_length CHECK (((length(btrim(body)) >= 1) AND (length(btrim(body)) <= 1600))),
    CONSTRAINT campaign_steps_delay_nonnegative CHECK ((delay >= '00:00:00'::interval)),
    CONSTRAINT campaign_steps_position_positive CHECK (("position" > 0))
);


--
-- Name: campaign_steps_id_seq; Type: SEQUENCE; Schema: pgflow; Owner: -
--

ALTER TABLE pgflow.campaign_steps ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.campaign_steps_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: campaigns; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow.campaigns (
    id bigint NOT NULL,
    slug text NOT NULL,
    name text NOT NULL,
    agent_id bigint NOT NULL,
    from_number text NOT NULL,
    status text DEFAULT 'draft'::text NOT NULL,
    timezone text DEFAULT 'America/New_York'::text NOT NULL,
    window_start time without time zone DEFAULT '09:00:00'::time without time zone NOT NULL,
    window_end time without time zone DEFAULT '20:00:00'::time without time zone NOT NULL,
    window_days smallint[] DEFAULT '{1,2,3,4,5,6}'::smallint[] NOT NULL,
    reply_timeout interval DEFAULT '3 days'::interval NOT NULL,
    silence_timeout interval DEFAULT '24:00:00'::interval NOT NULL,
    daily_cap integer DEFAULT 3 NOT NULL,
    max_attempts integer DEFAULT 6 NOT NULL,
    help_text text,
    opt_out_text text DEFAULT 'You are unsubscribed and will receive no more messages. Reply START to resubscribe.'::text NOT NULL,
    fallbacks jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT campaigns_daily_cap_positive CHECK ((daily_cap > 0)),
    CONSTRAINT campaigns_fallbacks_object CHECK ((jsonb_typeof(fallbacks) = 'object'::text)),
    CONSTRAINT campaigns_from_number_e164 CHECK ((from_number ~ '^\+[1-9][0-9]{6,14}$'::text)),
    CONSTRAINT campaigns_max_attempts_range CHECK (((max_attempts >= 1) AND (max_attempts <= 50))),
    CONSTRAINT campaigns_reply_timeout_positive CHECK ((reply_timeout > '00:00:00'::interval)),
    CONSTRAINT campaigns_silence_timeout_positive CHECK ((silence_timeout > '00:00:00'::interval)),
    CONSTRAINT campaigns_slug_shape CHECK ((slug ~ '^[a-z0-9][a-z0-9_-]{0,62}$'::text)),
    CONSTRAINT campaigns_status_valid CHECK ((status = ANY (ARRAY['draft'::text, 'active'::text, 'paused'::text, 'archived'::text]))),
    CONSTRAINT campaigns_timezone_valid CHECK (pgflow._is_time_zone(timezone)),
    CONSTRAINT campaigns_window_days_valid CHECK ((((cardinality(window_days) >= 1) AND (cardinality(window_days) <= 7)) AND (window_days <@ '{1,2,3,4,5,6,7}'::smallint[]))),
    CONSTRAINT campaigns_window_order CHECK ((window_start < window_end))
);


--
-- Name: campaigns_id_seq; Type: SEQUENCE; Schema: pgflow; Owner: -
--

ALTER TABLE pgflow.campaigns ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.campaigns_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: contacts_id_seq; Type: SEQUENCE; Schema: pgflow; Owner: -
--

ALTER TABLE pgflow.contacts ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.contacts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: conversations_id_seq; Type: SEQUENCE; Schema: pgflow; Owner: -
--

ALTER TABLE pgflow.conversations ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.conversations_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: messages; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow.messages (
    id bigint NOT NULL,
    conversation_id bigint NOT NULL,
    contact_id bigint NOT NULL,
    enrollment_id bigint,
    direction text NOT NULL,
    kind text NOT NULL,
    body text NOT NULL,
    step_position integer,
    delivery_status text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    delivery_error text,
    provider_message_id text,
    segments integer DEFAULT 1 NOT NULL,
    encoding text DEFAULT 'gsm7'::text NOT NULL,
    dedupe_key text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    send_after timestamp with time zone,
    sent_at timestamp with time zone,
    delivered_at timestamp with time zone,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT messages_attempts_nonnegative CHECK ((attempts >= 0)),
    CONSTRAINT messages_campaign_has_enrollment CHECK (((kind <> 'campaign'::text) OR (enrollment_id IS NOT NULL))),
    CONSTRAINT messages_campaign_has_step CHECK (((kind = 'campaign'::text) = (step_position IS NOT NULL))),
    CONSTRAINT messages_delivered_has_time CHECK (((delivery_status <> 'delivered'::text) OR (delivered_at IS NOT NULL))),
    CONSTRAINT messages_delivery_status_valid CHECK ((delivery_status = ANY (ARRAY['pending'::text, 'queued'::text, 'sending'::text, 'sent'::text, 'delivered'::text, 'failed'::text, 'dead_letter'::text, 'suppressed'::text, 'received'::text]))),
    CONSTRAINT messages_direction_valid CHECK ((direction = ANY (ARRAY['outbound'::text, 'inbound'::text]))),
    CONSTRAINT messages_encoding_valid CHECK ((encoding = ANY (ARRAY['gsm7'::text, 'ucs2'::text]))),
    CONSTRAINT messages_inbound_is_lead CHECK (((direction = 'inbound'::text) = (kind = 'lead'::text))),
    CONSTRAINT messages_inbound_received CHECK (((direction = 'inbound'::text) = (delivery_status = 'received'::text))),
    CONSTRAINT messages_kind_valid CHECK ((kind = ANY (ARRAY['campaign'::text, 'agent'::text, 'system'::text, 'human'::text, 'lead'::text]))),
    CONSTRAINT messages_segments_positive CHECK ((segments > 0)),
    CONSTRAINT messages_sent_has_time CHECK (((delivery_status <> ALL (ARRAY['sent'::text, 'delivered'::text])) OR (sent_at IS NOT NULL)))
);


--
-- Name: dead_letters; Type: VIEW; Schema: pgflow; Owner: -
--

CREATE VIEW pgflow.dead_letters AS
 SELECT m.id,
    m.created_at,
    m.updated_at AS failed_at,
    m.attempts,
    m.delivery_error,
    m.kind,
    m.step_position,
    m.body,
    ct.phone,
    (ct.opted_out_at IS NOT NULL) AS contact_opted_out,
    c.slug AS campaign
   FROM ((((pgflow.messages m
     JOIN pgflow.contacts ct ON ((ct.id = m.contact_id)))
     JOIN pgflow.conversations cv ON ((cv.id = m.conversation_id)))
     LEFT JOIN pgflow.enrollments e ON ((e.id = m.enrollment_id)))
     LEFT JOIN pgflow.campaigns c ON ((c.id = COALESCE(e.campaign_id, cv.campaign_id))))
  WHERE (m.delivery_status = 'dead_letter'::text);


--
-- Name: enrollments_id_seq; Type: SEQUENCE; Schema: pgflow; Owner: -
--

ALTER TABLE pgflow.enrollments ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.enrollments_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: events; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow.events (
    id bigint NOT NULL,
    occurred_at timestamp with time zone DEFAULT now() NOT NULL,
    entity text NOT NULL,
    entity_id bigint NOT NULL,
    from_status text,
    to_status text NOT NULL,
    reason text,
    details jsonb,
    CONSTRAINT events_entity_valid CHECK ((entity = ANY (ARRAY['contact'::text, 'enrollment'::text, 'conversation'::text, 'message'::text, 'campaign'::text, 'alert'::text])))
);


--
-- Name: events_id_seq; Type: SEQUENCE; Schema: pgflow; Owner: -
--

ALTER TABLE pgflow.events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: lead_events; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow.lead_events (
    id bigint NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    source text,
    external_id text,
    campaign_slug text,
    payload jsonb,
    raw_body text,
    result text NOT NULL,
    error_code text,
    error_detail text,
    contact_id bigint,
    enrollment_id bigint,
    CONSTRAINT lead_events_has_body CHECK (((payload IS NOT NULL) OR (raw_body IS NOT NULL))),
    CONSTRAINT lead_events_rejected_has_error CHECK (((result = 'rejected'::text) = (error_code IS NOT NULL))),
    CONSTRAINT lead_events_result_valid CHECK ((result = ANY (ARRAY['created'::text, 'already_enrolled'::text, 'suppressed'::text, 'rejected'::text])))
);


--
-- Name: lead_events_id_seq; Type: SEQUENCE; Schema: pgflow; Owner: -
--

ALTER TABLE pgflow.lead_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.lead_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: message_attempts; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow.message_attempts (
    id bigint NOT NULL,
    message_id bigint NOT NULL,
    attempt integer NOT NULL,
    worker_id uuid,
    started_at timestamp with time zone NOT NULL,
    finished_at timestamp with time zone,
    outcome text,
    status_code integer,
    error text,
    CONSTRAINT message_attempts_attempt_positive CHECK ((attempt > 0)),
    CONSTRAINT message_attempts_finished_has_outcome CHECK (((finished_at IS NULL) = (outcome IS NULL))),
    CONSTRAINT message_attempts_outcome_valid CHECK ((outcome = ANY (ARRAY['sent'::text, 'retry'::text, 'dead_letter'::text, 'interrupted'::text])))
);


--
-- Name: message_attempts_id_seq; Type: SEQUENCE; Schema: pgflow; Owner: -
--

ALTER TABLE pgflow.message_attempts ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.message_attempts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: messages_id_seq; Type: SEQUENCE; Schema: pgflow; Owner: -
--

ALTER TABLE pgflow.messages ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.messages_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: pgqueuer; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow.pgqueuer (
    id bigint NOT NULL,
    priority integer NOT NULL,
    queue_manager_id uuid,
    created timestamp with time zone DEFAULT now() NOT NULL,
    updated timestamp with time zone DEFAULT now() NOT NULL,
    heartbeat timestamp with time zone DEFAULT now() NOT NULL,
    execute_after timestamp with time zone DEFAULT now() NOT NULL,
    status pgflow.pgqueuer_status NOT NULL,
    entrypoint text NOT NULL,
    dedupe_key text,
    payload bytea,
    headers jsonb,
    attempts integer DEFAULT 0 NOT NULL,
    slot bigint
);


--
-- Name: pgqueuer_id_seq; Type: SEQUENCE; Schema: pgflow; Owner: -
--

CREATE SEQUENCE pgflow.pgqueuer_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: pgqueuer_id_seq; Type: SEQUENCE OWNED BY; Schema: pgflow; Owner: -
--

ALTER SEQUENCE pgflow.pgqueuer_id_seq OWNED BY pgflow.pgqueuer.id;


--
-- Name: pgqueuer_log; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow.pgqueuer_log (
    id bigint NOT NULL,
    created timestamp with time zone DEFAULT now() NOT NULL,
    job_id bigint NOT NULL,
    status pgflow.pgqueuer_status NOT NULL,
    priority integer NOT NULL,
    entrypoint text NOT NULL,
    traceback jsonb,
    aggregated boolean DEFAULT false
);


--
-- Name: pgqueuer_log_id_seq; Type: SEQUENCE; Schema: pgflow; Owner: -
--

ALTER TABLE pgflow.pgqueuer_log ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME pgflow.pgqueuer_log_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: pgqueuer_schedules; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow.pgqueuer_schedules (
    id bigint NOT NULL,
    expression text NOT NULL,
    entrypoint text NOT NULL,
    heartbeat timestamp with time zone DEFAULT now() NOT NULL,
    created timestamp with time zone DEFAULT now() NOT NULL,
    updated timestamp with time zone DEFAULT now() NOT NULL,
    next_run timestamp with time zone DEFAULT now() NOT NULL,
    last_run timestamp with time zone,
    status pgflow.pgqueuer_status DEFAULT 'queued'::pgflow.pgqueuer_status
);


--
-- Name: pgqueuer_schedules_id_seq; Type: SEQUENCE; Schema: pgflow; Owner: -
--

CREATE SEQUENCE pgflow.pgqueuer_schedules_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: pgqueuer_schedules_id_seq; Type: SEQUENCE OWNED BY; Schema: pgflow; Owner: -
--

ALTER SEQUENCE pgflow.pgqueuer_schedules_id_seq OWNED BY pgflow.pgqueuer_schedules.id;


--
-- Name: pgqueuer_statistics; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow.pgqueuer_statistics (
    id bigint NOT NULL,
    created timestamp with time zone DEFAULT date_trunc('sec'::text, now()) NOT NULL,
    count bigint NOT NULL,
    priority integer NOT NULL,
    status pgflow.pgqueuer_status NOT NULL,
    entrypoint text NOT NULL
);


--
-- Name: pgqueuer_statistics_id_seq; Type: SEQUENCE; Schema: pgflow; Owner: -
--

CREATE SEQUENCE pgflow.pgqueuer_statistics_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: pgqueuer_statistics_id_seq; Type: SEQUENCE OWNED BY; Schema: pgflow; Owner: -
--

ALTER SEQUENCE pgflow.pgqueuer_statistics_id_seq OWNED BY pgflow.pgqueuer_statistics.id;


--
-- Name: webhook_deliveries; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow.webhook_deliveries (
    id bigint NOT NULL,
    provider text DEFAULT 'retell'::text NOT NULL,
    delivery_key text NOT NULL,
    event_type text NOT NULL,
    payload jsonb NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    processed_at timestamp with time zone,
    result text,
    error text
);


--
-- Name: webhook_deliveries_id_seq; Type: SEQUENCE; Schema: pgflow; Owner: -
--

ALTER TABLE pgflow.webhook_deliveries ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.webhook_deliveries_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: workers; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow.workers (
    id uuid NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    version text NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    last_seen_at timestamp with time zone DEFAULT now() NOT NULL,
    stopped_at timestamp with time zone
);


--
-- Name: yoyo_lock; Type: TABLE; Schema: pgflow; Owner: -
--

CREATE TABLE pgflow.yoyo_lock (
    locked integer DEFAULT 1 NOT NULL,
    ctime timestamp without time zone,
    pid integer NOT NULL
);


--
-- Name: pgqueuer id; Type: DEFAULT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.pgqueuer ALTER COLUMN id SET DEFAULT nextval('pgflow.pgqueuer_id_seq'::regclass);


--
-- Name: pgqueuer_schedules id; Type: DEFAULT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.pgqueuer_schedules ALTER COLUMN id SET DEFAULT nextval('pgflow.pgqueuer_schedules_id_seq'::regclass);


--
-- Name: pgqueuer_statistics id; Type: DEFAULT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.pgqueuer_statistics ALTER COLUMN id SET DEFAULT nextval('pgflow.pgqueuer_statistics_id_seq'::regclass);


--
-- Data for Name: _yoyo_migration; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow._yoyo_migration (migration_hash, migration_id, applied_at_utc) FROM stdin;
161fc35cb5fcd8a9d3aed6280acaf5eadf1ceb5824ed218c9f06ef46ef11478a	0001_create_schema	2026-11-25 16:07:04.456736
aae13e0b38208eb68bf692abdb92408fcd667a4afdd1cf2a341da734be145415	0002_install_pgqueuer	2026-11-25 16:07:04.52411
60015f42709437bd4c59c2f241e46e569bd95c89d808bc25e363ffaa13e50261	0003_create_pg_cron	2026-11-25 16:07:04.53808
fe2aaab6f540a2845dce31806b9d84d292d600f13c5ca0fbc5611d47eab1272a	0004_create_health	2026-11-25 16:07:04.548242
fd6ff8cabbb4da6dd3c183d2af5d7eb58122e520bc9353aae4e2b252dab9cc64	0005_create_state_machines	2026-11-25 16:07:04.566216
de7e40142a0277833b1351a4e607099375221f708683c1562eed12db30c069f2	0006_create_campaign_engine	2026-11-25 16:07:04.586851
c4be20428d0e819f0d4ce801d5eaccd5f8540b693e2d521c01c3f3fb9d13482a	0007_create_apply_campaigns	2026-11-25 16:07:04.598744
bc871703d9e2637921b4feca23cb5cea7a30027a297799ab4f9548a15ccdc670	0008_schedule_cron_jobs	2026-11-25 16:07:04.608586
2251b594276e8d3573756cc89ea6de7f73ff4b218da3bf3ebae46bac43dac727	0009_create_send_pipeline	2026-11-25 16:07:04.640069
d670811e280b5c5f9bce94f8340764473a380d1127b05e45164d336864e8e76f	0010_create_roles	2026-11-25 16:07:04.67411
f4345bd8425a2e8b19395bc9e42e9352c3db7e3ed065533b49608b98a3ac23fe	0011_create_contact_report	2026-11-25 16:07:04.68551
\.


--
-- Data for Name: _yoyo_version; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow._yoyo_version (version, installed_at_utc) FROM stdin;
2	2026-11-25 16:07:04.158769
\.


--
-- Data for Name: agents; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow.agents (id, name, prompt, model, retell_agent_id, created_at, updated_at) FROM stdin;
\.


--
-- Data for Name: alerts; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow.alerts (id, kind, severity, message, details, occurrences, opened_at, last_seen_at, resolved_at, notified_at) FROM stdin;
\.


--
-- Data for Name: campaign_steps; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow.campaign_steps (id, campaign_id, "position", delay, body, created_at) FROM stdin;
\.


--
-- Data for Name: campaigns; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow.campaigns (id, slug, name, agent_id, from_number, status, timezone, window_start, window_end, window_days, reply_timeout, silence_timeout, daily_cap, max_attempts, help_text, opt_out_text, fallbacks, created_at, updated_at) FROM stdin;
\.


--
-- Data for Name: contacts; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow.contacts (id, phone, first_name, last_name, email, timezone, attributes, opted_out_at, opt_out_source, consent_at, consent_source, consent_text, created_at, updated_at) FROM stdin;
\.


--
-- Data for Name: conversations; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow.conversations (id, contact_id, campaign_id, agent_id, enrollment_id, from_number, status, conversion_status, outcome_reason, outcome_source, ended_at, last_inbound_at, last_outbound_at, provider_chat_id, reply_deadline_at, created_at, updated_at) FROM stdin;
\.


--
-- Data for Name: enrollments; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow.enrollments (id, contact_id, campaign_id, status, next_step, next_message_at, last_step_sent_at, enrolled_at, ended_at, stop_reason, updated_at) FROM stdin;
\.


--
-- Data for Name: events; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow.events (id, occurred_at, entity, entity_id, from_status, to_status, reason, details) FROM stdin;
\.


--
-- Data for Name: lead_events; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow.lead_events (id, received_at, source, external_id, campaign_slug, payload, raw_body, result, error_code, error_detail, contact_id, enrollment_id) FROM stdin;
\.


--
-- Data for Name: message_attempts; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow.message_attempts (id, message_id, attempt, worker_id, started_at, finished_at, outcome, status_code, error) FROM stdin;
\.


--
-- Data for Name: messages; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow.messages (id, conversation_id, contact_id, enrollment_id, direction, kind, body, step_position, delivery_status, attempts, delivery_error, provider_message_id, segments, encoding, dedupe_key, created_at, send_after, sent_at, delivered_at, updated_at) FROM stdin;
\.


--
-- Data for Name: pgqueuer; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow.pgqueuer (id, priority, queue_manager_id, created, updated, heartbeat, execute_after, status, entrypoint, dedupe_key, payload, headers, attempts, slot) FROM stdin;
\.


--
-- Data for Name: pgqueuer_log; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow.pgqueuer_log (id, created, job_id, status, priority, entrypoint, traceback, aggregated) FROM stdin;
\.


--
-- Data for Name: pgqueuer_schedules; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow.pgqueuer_schedules (id, expression, entrypoint, heartbeat, created, updated, next_run, last_run, status) FROM stdin;
\.


--
-- Data for Name: pgqueuer_statistics; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow.pgqueuer_statistics (id, created, count, priority, status, entrypoint) FROM stdin;
\.


--
-- Data for Name: webhook_deliveries; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow.webhook_deliveries (id, provider, delivery_key, event_type, payload, received_at, processed_at, result, error) FROM stdin;
\.


--
-- Data for Name: workers; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow.workers (id, host, pid, version, started_at, last_seen_at, stopped_at) FROM stdin;
\.


--
-- Data for Name: yoyo_lock; Type: TABLE DATA; Schema: pgflow; Owner: -
--

COPY pgflow.yoyo_lock (locked, ctime, pid) FROM stdin;
\.


--
-- Name: agents_id_seq; Type: SEQUENCE SET; Schema: pgflow; Owner: -
--

SELECT pg_catalog.setval('pgflow.agents_id_seq', 1, false);


--
-- Name: alerts_id_seq; Type: SEQUENCE SET; Schema: pgflow; Owner: -
--

SELECT pg_catalog.setval('pgflow.alerts_id_seq', 1, false);


--
-- Name: campaign_steps_id_seq; Type: SEQUENCE SET; Schema: pgflow; Owner: -
--

SELECT pg_catalog.setval('pgflow.campaign_steps_id_seq', 1, false);


--
-- Name: campaigns_id_seq; Type: SEQUENCE SET; Schema: pgflow; Owner: -
--

SELECT pg_catalog.setval('pgflow.campaigns_id_seq', 1, false);


--
-- Name: contacts_id_seq; Type: SEQUENCE SET; Schema: pgflow; Owner: -
--

SELECT pg_catalog.setval('pgflow.contacts_id_seq', 1, false);


--
-- Name: conversations_id_seq; Type: SEQUENCE SET; Schema: pgflow; Owner: -
--

SELECT pg_catalog.setval('pgflow.conversations_id_seq', 1, false);


--
-- Name: enrollments_id_seq; Type: SEQUENCE SET; Schema: pgflow; Owner: -
--

SELECT pg_catalog.setval('pgflow.enrollments_id_seq', 1, false);


--
-- Name: events_id_seq; Type: SEQUENCE SET; Schema: pgflow; Owner: -
--

SELECT pg_catalog.setval('pgflow.events_id_seq', 1, false);


--
-- Name: lead_events_id_seq; Type: SEQUENCE SET; Schema: pgflow; Owner: -
--

SELECT pg_catalog.setval('pgflow.lead_events_id_seq', 1, false);


--
-- Name: message_attempts_id_seq; Type: SEQUENCE SET; Schema: pgflow; Owner: -
--

SELECT pg_catalog.setval('pgflow.message_attempts_id_seq', 1, false);


--
-- Name: messages_id_seq; Type: SEQUENCE SET; Schema: pgflow; Owner: -
--

SELECT pg_catalog.setval('pgflow.messages_id_seq', 1, false);


--
-- Name: pgqueuer_id_seq; Type: SEQUENCE SET; Schema: pgflow; Owner: -
--

SELECT pg_catalog.setval('pgflow.pgqueuer_id_seq', 1, false);


--
-- Name: pgqueuer_log_id_seq; Type: SEQUENCE SET; Schema: pgflow; Owner: -
--

SELECT pg_catalog.setval('pgflow.pgqueuer_log_id_seq', 1, false);


--
-- Name: pgqueuer_schedules_id_seq; Type: SEQUENCE SET; Schema: pgflow; Owner: -
--

SELECT pg_catalog.setval('pgflow.pgqueuer_schedules_id_seq', 1, false);


--
-- Name: pgqueuer_statistics_id_seq; Type: SEQUENCE SET; Schema: pgflow; Owner: -
--

SELECT pg_catalog.setval('pgflow.pgqueuer_statistics_id_seq', 1, false);


--
-- Name: webhook_deliveries_id_seq; Type: SEQUENCE SET; Schema: pgflow; Owner: -
--

SELECT pg_catalog.setval('pgflow.webhook_deliveries_id_seq', 1, false);


--
-- Name: _yoyo_log _yoyo_log_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow._yoyo_log
    ADD CONSTRAINT _yoyo_log_pkey PRIMARY KEY (id);


--
-- Name: _yoyo_migration _yoyo_migration_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow._yoyo_migration
    ADD CONSTRAINT _yoyo_migration_pkey PRIMARY KEY (migration_hash);


--
-- Name: _yoyo_version _yoyo_version_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow._yoyo_version
    ADD CONSTRAINT _yoyo_version_pkey PRIMARY KEY (version);


--
-- Name: agents agents_name_key; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.agents
    ADD CONSTRAINT agents_name_key UNIQUE (name);


--
-- Name: agents agents_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.agents
    ADD CONSTRAINT agents_pkey PRIMARY KEY (id);


--
-- Name: alerts alerts_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.alerts
    ADD CONSTRAINT alerts_pkey PRIMARY KEY (id);


--
-- Name: campaign_steps campaign_steps_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.campaign_steps
    ADD CONSTRAINT campaign_steps_pkey PRIMARY KEY (id);


--
-- Name: campaign_steps campaign_steps_position_key; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.campaign_steps
    ADD CONSTRAINT campaign_steps_position_key UNIQUE (campaign_id, "position");


--
-- Name: campaigns campaigns_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.campaigns
    ADD CONSTRAINT campaigns_pkey PRIMARY KEY (id);


--
-- Name: campaigns campaigns_slug_key; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.campaigns
    ADD CONSTRAINT campaigns_slug_key UNIQUE (slug);


--
-- Name: contacts contacts_phone_key; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.contacts
    ADD CONSTRAINT contacts_phone_key UNIQUE (phone);


--
-- Name: contacts contacts_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.contacts
    ADD CONSTRAINT contacts_pkey PRIMARY KEY (id);


--
-- Name: conversations conversations_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.conversations
    ADD CONSTRAINT conversations_pkey PRIMARY KEY (id);


--
-- Name: enrollments enrollments_contact_campaign_key; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.enrollments
    ADD CONSTRAINT enrollments_contact_campaign_key UNIQUE (contact_id, campaign_id);


--
-- Name: enrollments enrollments_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.enrollments
    ADD CONSTRAINT enrollments_pkey PRIMARY KEY (id);


--
-- Name: events events_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (id);


--
-- Name: lead_events lead_events_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.lead_events
    ADD CONSTRAINT lead_events_pkey PRIMARY KEY (id);


--
-- Name: message_attempts message_attempts_message_attempt_key; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.message_attempts
    ADD CONSTRAINT message_attempts_message_attempt_key UNIQUE (message_id, attempt);


--
-- Name: message_attempts message_attempts_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.message_attempts
    ADD CONSTRAINT message_attempts_pkey PRIMARY KEY (id);


--
-- Name: messages messages_dedupe_key_key; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.messages
    ADD CONSTRAINT messages_dedupe_key_key UNIQUE (dedupe_key);


--
-- Name: messages messages_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.messages
    ADD CONSTRAINT messages_pkey PRIMARY KEY (id);


--
-- Name: pgqueuer_log pgqueuer_log_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.pgqueuer_log
    ADD CONSTRAINT pgqueuer_log_pkey PRIMARY KEY (id);


--
-- Name: pgqueuer pgqueuer_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.pgqueuer
    ADD CONSTRAINT pgqueuer_pkey PRIMARY KEY (id);


--
-- Name: pgqueuer_schedules pgqueuer_schedules_expression_entrypoint_key; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.pgqueuer_schedules
    ADD CONSTRAINT pgqueuer_schedules_expression_entrypoint_key UNIQUE (expression, entrypoint);


--
-- Name: pgqueuer_schedules pgqueuer_schedules_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.pgqueuer_schedules
    ADD CONSTRAINT pgqueuer_schedules_pkey PRIMARY KEY (id);


--
-- Name: pgqueuer_statistics pgqueuer_statistics_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.pgqueuer_statistics
    ADD CONSTRAINT pgqueuer_statistics_pkey PRIMARY KEY (id);


--
-- Name: webhook_deliveries webhook_deliveries_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (id);


--
-- Name: webhook_deliveries webhook_deliveries_provider_key; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_provider_key UNIQUE (provider, delivery_key);


--
-- Name: workers workers_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.workers
    ADD CONSTRAINT workers_pkey PRIMARY KEY (id);


--
-- Name: yoyo_lock yoyo_lock_pkey; Type: CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.yoyo_lock
    ADD CONSTRAINT yoyo_lock_pkey PRIMARY KEY (locked);


--
-- Name: alerts_one_open_per_kind; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE UNIQUE INDEX alerts_one_open_per_kind ON pgflow.alerts USING btree (kind) WHERE (resolved_at IS NULL);


--
-- Name: alerts_opened_at_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX alerts_opened_at_idx ON pgflow.alerts USING btree (opened_at);


--
-- Name: campaigns_agent_id_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX campaigns_agent_id_idx ON pgflow.campaigns USING btree (agent_id);


--
-- Name: conversations_agent_id_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX conversations_agent_id_idx ON pgflow.conversations USING btree (agent_id);


--
-- Name: conversations_campaign_id_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX conversations_campaign_id_idx ON pgflow.conversations USING btree (campaign_id);


--
-- Name: conversations_contact_id_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX conversations_contact_id_idx ON pgflow.conversations USING btree (contact_id);


--
-- Name: conversations_enrollment_id_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX conversations_enrollment_id_idx ON pgflow.conversations USING btree (enrollment_id);


--
-- Name: conversations_one_live_per_line; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE UNIQUE INDEX conversations_one_live_per_line ON pgflow.conversations USING btree (contact_id, from_number) WHERE (status <> 'ended'::text);


--
-- Name: conversations_reply_deadline_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX conversations_reply_deadline_idx ON pgflow.conversations USING btree (reply_deadline_at) WHERE ((status = 'open'::text) AND (reply_deadline_at IS NOT NULL));


--
-- Name: enrollments_campaign_id_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX enrollments_campaign_id_idx ON pgflow.enrollments USING btree (campaign_id);


--
-- Name: enrollments_due_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX enrollments_due_idx ON pgflow.enrollments USING btree (next_message_at) WHERE (status = 'active'::text);


--
-- Name: events_entity_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX events_entity_idx ON pgflow.events USING btree (entity, entity_id, occurred_at);


--
-- Name: events_occurred_at_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX events_occurred_at_idx ON pgflow.events USING btree (occurred_at);


--
-- Name: lead_events_contact_id_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX lead_events_contact_id_idx ON pgflow.lead_events USING btree (contact_id);


--
-- Name: lead_events_enrollment_id_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX lead_events_enrollment_id_idx ON pgflow.lead_events USING btree (enrollment_id);


--
-- Name: lead_events_external_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX lead_events_external_idx ON pgflow.lead_events USING btree (source, external_id) WHERE (external_id IS NOT NULL);


--
-- Name: lead_events_received_at_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX lead_events_received_at_idx ON pgflow.lead_events USING btree (received_at);


--
-- Name: message_attempts_one_open; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE UNIQUE INDEX message_attempts_one_open ON pgflow.message_attempts USING btree (message_id) WHERE (finished_at IS NULL);


--
-- Name: messages_contact_id_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX messages_contact_id_idx ON pgflow.messages USING btree (contact_id, created_at);


--
-- Name: messages_conversation_id_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX messages_conversation_id_idx ON pgflow.messages USING btree (conversation_id, created_at);


--
-- Name: messages_dead_letter_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX messages_dead_letter_idx ON pgflow.messages USING btree (updated_at) WHERE (delivery_status = 'dead_letter'::text);


--
-- Name: messages_enrollment_id_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX messages_enrollment_id_idx ON pgflow.messages USING btree (enrollment_id);


--
-- Name: messages_provider_message_id_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX messages_provider_message_id_idx ON pgflow.messages USING btree (provider_message_id) WHERE (provider_message_id IS NOT NULL);


--
-- Name: pgqueuer_ep_ea_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX pgqueuer_ep_ea_idx ON pgflow.pgqueuer USING btree (entrypoint, execute_after) WHERE (status = 'queued'::pgflow.pgqueuer_status);


--
-- Name: pgqueuer_ep_prio_id_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX pgqueuer_ep_prio_id_idx ON pgflow.pgqueuer USING btree (entrypoint, priority DESC, id) WHERE (status = 'queued'::pgflow.pgqueuer_status);


--
-- Name: pgqueuer_log_created; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX pgqueuer_log_created ON pgflow.pgqueuer_log USING btree (created);


--
-- Name: pgqueuer_log_job_id_status; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX pgqueuer_log_job_id_status ON pgflow.pgqueuer_log USING btree (job_id, created DESC);


--
-- Name: pgqueuer_log_not_aggregated; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX pgqueuer_log_not_aggregated ON pgflow.pgqueuer_log USING btree ((1)) WHERE (NOT aggregated);


--
-- Name: pgqueuer_log_status; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX pgqueuer_log_status ON pgflow.pgqueuer_log USING btree (status);


--
-- Name: pgqueuer_picked_heartbeat_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX pgqueuer_picked_heartbeat_idx ON pgflow.pgqueuer USING btree (heartbeat) WHERE (status = 'picked'::pgflow.pgqueuer_status);


--
-- Name: pgqueuer_picked_slot_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE UNIQUE INDEX pgqueuer_picked_slot_idx ON pgflow.pgqueuer USING btree (entrypoint, slot) WHERE ((status = 'picked'::pgflow.pgqueuer_status) AND (slot IS NOT NULL));


--
-- Name: pgqueuer_priority_id_id1_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX pgqueuer_priority_id_id1_idx ON pgflow.pgqueuer USING btree (priority, id DESC) INCLUDE (id) WHERE (status = 'queued'::pgflow.pgqueuer_status);


--
-- Name: pgqueuer_queue_manager_id_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX pgqueuer_queue_manager_id_idx ON pgflow.pgqueuer USING btree (queue_manager_id) WHERE (queue_manager_id IS NOT NULL);


--
-- Name: pgqueuer_statistics_unique_count; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE UNIQUE INDEX pgqueuer_statistics_unique_count ON pgflow.pgqueuer_statistics USING btree (priority, date_trunc('sec'::text, timezone('UTC'::text, created)), status, entrypoint);


--
-- Name: pgqueuer_unique_dedupe_key; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE UNIQUE INDEX pgqueuer_unique_dedupe_key ON pgflow.pgqueuer USING btree (dedupe_key) WHERE ((status = ANY (ARRAY['queued'::pgflow.pgqueuer_status, 'picked'::pgflow.pgqueuer_status])) AND (dedupe_key IS NOT NULL));


--
-- Name: pgqueuer_updated_id_id1_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX pgqueuer_updated_id_id1_idx ON pgflow.pgqueuer USING btree (updated, id DESC) INCLUDE (id) WHERE (status = 'picked'::pgflow.pgqueuer_status);


--
-- Name: webhook_deliveries_received_at_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX webhook_deliveries_received_at_idx ON pgflow.webhook_deliveries USING btree (received_at);


--
-- Name: workers_last_seen_at_idx; Type: INDEX; Schema: pgflow; Owner: -
--

CREATE INDEX workers_last_seen_at_idx ON pgflow.workers USING btree (last_seen_at);


--
-- Name: conversations conversations_log_transition; Type: TRIGGER; Schema: pgflow; Owner: -
--

CREATE TRIGGER conversations_log_transition AFTER INSERT OR UPDATE OF status ON pgflow.conversations FOR EACH ROW EXECUTE FUNCTION pgflow._log_transition();


--
-- Name: enrollments enrollments_log_transition; Type: TRIGGER; Schema: pgflow; Owner: -
--

CREATE TRIGGER enrollments_log_transition AFTER INSERT OR UPDATE OF status ON pgflow.enrollments FOR EACH ROW EXECUTE FUNCTION pgflow._log_transition();


--
-- Name: messages messages_log_transition; Type: TRIGGER; Schema: pgflow; Owner: -
--

CREATE TRIGGER messages_log_transition AFTER INSERT OR UPDATE OF delivery_status ON pgflow.messages FOR EACH ROW EXECUTE FUNCTION pgflow._log_transition();


--
-- Name: pgqueuer tg_pgqueuer_changed; Type: TRIGGER; Schema: pgflow; Owner: -
--

CREATE TRIGGER tg_pgqueuer_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON pgflow.pgqueuer FOR EACH STATEMENT EXECUTE FUNCTION pgflow.fn_pgqueuer_changed();


--
-- Name: campaign_steps campaign_steps_campaign_id_fkey; Type: FK CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.campaign_steps
    ADD CONSTRAINT campaign_steps_campaign_id_fkey FOREIGN KEY (campaign_id) REFERENCES pgflow.campaigns(id) ON DELETE CASCADE;


--
-- Name: campaigns campaigns_agent_id_fkey; Type: FK CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.campaigns
    ADD CONSTRAINT campaigns_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES pgflow.agents(id);


--
-- Name: conversations conversations_agent_id_fkey; Type: FK CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.conversations
    ADD CONSTRAINT conversations_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES pgflow.agents(id);


--
-- Name: conversations conversations_campaign_id_fkey; Type: FK CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.conversations
    ADD CONSTRAINT conversations_campaign_id_fkey FOREIGN KEY (campaign_id) REFERENCES pgflow.campaigns(id);


--
-- Name: conversations conversations_contact_id_fkey; Type: FK CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.conversations
    ADD CONSTRAINT conversations_contact_id_fkey FOREIGN KEY (contact_id) REFERENCES pgflow.contacts(id);


--
-- Name: conversations conversations_enrollment_id_fkey; Type: FK CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.conversations
    ADD CONSTRAINT conversations_enrollment_id_fkey FOREIGN KEY (enrollment_id) REFERENCES pgflow.enrollments(id);


--
-- Name: enrollments enrollments_campaign_id_fkey; Type: FK CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.enrollments
    ADD CONSTRAINT enrollments_campaign_id_fkey FOREIGN KEY (campaign_id) REFERENCES pgflow.campaigns(id);


--
-- Name: enrollments enrollments_contact_id_fkey; Type: FK CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.enrollments
    ADD CONSTRAINT enrollments_contact_id_fkey FOREIGN KEY (contact_id) REFERENCES pgflow.contacts(id);


--
-- Name: lead_events lead_events_contact_id_fkey; Type: FK CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.lead_events
    ADD CONSTRAINT lead_events_contact_id_fkey FOREIGN KEY (contact_id) REFERENCES pgflow.contacts(id);


--
-- Name: lead_events lead_events_enrollment_id_fkey; Type: FK CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.lead_events
    ADD CONSTRAINT lead_events_enrollment_id_fkey FOREIGN KEY (enrollment_id) REFERENCES pgflow.enrollments(id);


--
-- Name: message_attempts message_attempts_message_id_fkey; Type: FK CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.message_attempts
    ADD CONSTRAINT message_attempts_message_id_fkey FOREIGN KEY (message_id) REFERENCES pgflow.messages(id);


--
-- Name: messages messages_contact_id_fkey; Type: FK CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.messages
    ADD CONSTRAINT messages_contact_id_fkey FOREIGN KEY (contact_id) REFERENCES pgflow.contacts(id);


--
-- Name: messages messages_conversation_id_fkey; Type: FK CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.messages
    ADD CONSTRAINT messages_conversation_id_fkey FOREIGN KEY (conversation_id) REFERENCES pgflow.conversations(id);


--
-- Name: messages messages_enrollment_id_fkey; Type: FK CONSTRAINT; Schema: pgflow; Owner: -
--

ALTER TABLE ONLY pgflow.messages
    ADD CONSTRAINT messages_enrollment_id_fkey FOREIGN KEY (enrollment_id) REFERENCES pgflow.enrollments(id);


--
-- Name: SCHEMA pgflow; Type: ACL; Schema: -; Owner: -
--

GRANT USAGE ON SCHEMA pgflow TO pgflow_web;
GRANT USAGE ON SCHEMA pgflow TO pgflow_worker;
GRANT USAGE ON SCHEMA pgflow TO pgflow_operator;
GRANT USAGE ON SCHEMA pgflow TO pgflow_reader;


--
-- Name: FUNCTION _dispatch_steps(p_ids bigint[], p_now timestamp with time zone, p_priority integer); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow._dispatch_steps(p_ids bigint[], p_now timestamp with time zone, p_priority integer) FROM PUBLIC;


--
-- Name: FUNCTION _enqueue(p_entrypoint text, p_ids bigint[], p_priority integer); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow._enqueue(p_entrypoint text, p_ids bigint[], p_priority integer) FROM PUBLIC;


--
-- Name: FUNCTION _is_time_zone(p_tz text); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow._is_time_zone(p_tz text) FROM PUBLIC;


--
-- Name: FUNCTION _is_timestamp(p_text text); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow._is_timestamp(p_text text) FROM PUBLIC;


--
-- Name: FUNCTION _log_transition(); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow._log_transition() FROM PUBLIC;


--
-- Name: FUNCTION _normalize_phone(p_raw text); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow._normalize_phone(p_raw text) FROM PUBLIC;


--
-- Name: FUNCTION _set_reason(p_reason text); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow._set_reason(p_reason text) FROM PUBLIC;


--
-- Name: TABLE contacts; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT ON TABLE pgflow.contacts TO pgflow_reader;


--
-- Name: FUNCTION _template_values(p_contact pgflow.contacts); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow._template_values(p_contact pgflow.contacts) FROM PUBLIC;


--
-- Name: FUNCTION _transition_failed(p_entity text, p_id bigint, p_current text, p_action text, p_allowed text[]); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow._transition_failed(p_entity text, p_id bigint, p_current text, p_action text, p_allowed text[]) FROM PUBLIC;


--
-- Name: FUNCTION alert(p_id bigint); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.alert(p_id bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION pgflow.alert(p_id bigint) TO pgflow_worker;


--
-- Name: FUNCTION apply_campaigns(p_doc jsonb, p_now timestamp with time zone); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.apply_campaigns(p_doc jsonb, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION pgflow.apply_campaigns(p_doc jsonb, p_now timestamp with time zone) TO pgflow_operator;


--
-- Name: FUNCTION campaign_refusal(p_slug text); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.campaign_refusal(p_slug text) FROM PUBLIC;
GRANT ALL ON FUNCTION pgflow.campaign_refusal(p_slug text) TO pgflow_operator;


--
-- Name: FUNCTION claim_send(p_message_id bigint, p_worker uuid, p_now timestamp with time zone); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.claim_send(p_message_id bigint, p_worker uuid, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION pgflow.claim_send(p_message_id bigint, p_worker uuid, p_now timestamp with time zone) TO pgflow_worker;


--
-- Name: TABLE enrollments; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT ON TABLE pgflow.enrollments TO pgflow_reader;


--
-- Name: FUNCTION complete_enrollment(p_id bigint, p_reason text, p_now timestamp with time zone); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.complete_enrollment(p_id bigint, p_reason text, p_now timestamp with time zone) FROM PUBLIC;


--
-- Name: FUNCTION contact_report(p_phone text, p_limit integer); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.contact_report(p_phone text, p_limit integer) FROM PUBLIC;
GRANT ALL ON FUNCTION pgflow.contact_report(p_phone text, p_limit integer) TO pgflow_operator;
GRANT ALL ON FUNCTION pgflow.contact_report(p_phone text, p_limit integer) TO pgflow_reader;


--
-- Name: FUNCTION discard_dead_letters(p_ids bigint[], p_now timestamp with time zone); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.discard_dead_letters(p_ids bigint[], p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION pgflow.discard_dead_letters(p_ids bigint[], p_now timestamp with time zone) TO pgflow_operator;


--
-- Name: TABLE conversations; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT ON TABLE pgflow.conversations TO pgflow_reader;


--
-- Name: FUNCTION end_conversation(p_id bigint, p_conversion_status text, p_reason text, p_source text, p_now timestamp with time zone); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.end_conversation(p_id bigint, p_conversion_status text, p_reason text, p_source text, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION pgflow.end_conversation(p_id bigint, p_conversion_status text, p_reason text, p_source text, p_now timestamp with time zone) TO pgflow_operator;


--
-- Name: FUNCTION engage_conversation(p_id bigint, p_reason text, p_now timestamp with time zone); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.engage_conversation(p_id bigint, p_reason text, p_now timestamp with time zone) FROM PUBLIC;


--
-- Name: FUNCTION fn_pgqueuer_changed(); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.fn_pgqueuer_changed() FROM PUBLIC;


--
-- Name: FUNCTION health(p_now timestamp with time zone); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.health(p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION pgflow.health(p_now timestamp with time zone) TO pgflow_web;
GRANT ALL ON FUNCTION pgflow.health(p_now timestamp with time zone) TO pgflow_worker;
GRANT ALL ON FUNCTION pgflow.health(p_now timestamp with time zone) TO pgflow_operator;
GRANT ALL ON FUNCTION pgflow.health(p_now timestamp with time zone) TO pgflow_reader;


--
-- Name: FUNCTION ingest_lead(payload jsonb, p_now timestamp with time zone, p_edge jsonb); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.ingest_lead(payload jsonb, p_now timestamp with time zone, p_edge jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION pgflow.ingest_lead(payload jsonb, p_now timestamp with time zone, p_edge jsonb) TO pgflow_web;
GRANT ALL ON FUNCTION pgflow.ingest_lead(payload jsonb, p_now timestamp with time zone, p_edge jsonb) TO pgflow_operator;


--
-- Name: FUNCTION next_window_open(p_tz text, p_start time without time zone, p_end time without time zone, p_days smallint[], p_now timestamp with time zone); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.next_window_open(p_tz text, p_start time without time zone, p_end time without time zone, p_days smallint[], p_now timestamp with time zone) FROM PUBLIC;


--
-- Name: FUNCTION open_alert(p_kind text, p_severity text, p_message text, p_details jsonb, p_now timestamp with time zone); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.open_alert(p_kind text, p_severity text, p_message text, p_details jsonb, p_now timestamp with time zone) FROM PUBLIC;


--
-- Name: FUNCTION opt_out_enrollment(p_id bigint, p_reason text, p_now timestamp with time zone); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.opt_out_enrollment(p_id bigint, p_reason text, p_now timestamp with time zone) FROM PUBLIC;


--
-- Name: FUNCTION pause_enrollment(p_id bigint, p_reason text, p_now timestamp with time zone); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.pause_enrollment(p_id bigint, p_reason text, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION pgflow.pause_enrollment(p_id bigint, p_reason text, p_now timestamp with time zone) TO pgflow_operator;


--
-- Name: FUNCTION prune(p_now timestamp with time zone, p_keep_events interval, p_keep_job_log interval, p_keep_cron_runs interval, p_keep_webhooks interval, p_batch integer); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.prune(p_now timestamp with time zone, p_keep_events interval, p_keep_job_log interval, p_keep_cron_runs interval, p_keep_webhooks interval, p_batch integer) FROM PUBLIC;
GRANT ALL ON FUNCTION pgflow.prune(p_now timestamp with time zone, p_keep_events interval, p_keep_job_log interval, p_keep_cron_runs interval, p_keep_webhooks interval, p_batch integer) TO pgflow_operator;


--
-- Name: FUNCTION record_alert_delivery(p_alert_id bigint, p_error text, p_now timestamp with time zone); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.record_alert_delivery(p_alert_id bigint, p_error text, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION pgflow.record_alert_delivery(p_alert_id bigint, p_error text, p_now timestamp with time zone) TO pgflow_worker;


--
-- Name: FUNCTION record_send(p_message_id bigint, p_attempt integer, p_result jsonb, p_retry_base_seconds double precision, p_now timestamp with time zone); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.record_send(p_message_id bigint, p_attempt integer, p_result jsonb, p_retry_base_seconds double precision, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION pgflow.record_send(p_message_id bigint, p_attempt integer, p_result jsonb, p_retry_base_seconds double precision, p_now timestamp with time zone) TO pgflow_worker;


--
-- Name: FUNCTION reject_lead(p_raw_body text, p_error text, p_detail text, p_source text, p_now timestamp with time zone); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.reject_lead(p_raw_body text, p_error text, p_detail text, p_source text, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION pgflow.reject_lead(p_raw_body text, p_error text, p_detail text, p_source text, p_now timestamp with time zone) TO pgflow_web;
GRANT ALL ON FUNCTION pgflow.reject_lead(p_raw_body text, p_error text, p_detail text, p_source text, p_now timestamp with time zone) TO pgflow_operator;


--
-- Name: FUNCTION render_template(p_template text, p_values jsonb, p_fallbacks jsonb); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.render_template(p_template text, p_values jsonb, p_fallbacks jsonb) FROM PUBLIC;


--
-- Name: FUNCTION requeue_dead_letters(p_ids bigint[], p_campaign text, p_now timestamp with time zone); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.requeue_dead_letters(p_ids bigint[], p_campaign text, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION pgflow.requeue_dead_letters(p_ids bigint[], p_campaign text, p_now timestamp with time zone) TO pgflow_operator;


--
-- Name: FUNCTION resolve_alert(p_kind text, p_now timestamp with time zone); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.resolve_alert(p_kind text, p_now timestamp with time zone) FROM PUBLIC;


--
-- Name: FUNCTION resume_enrollment(p_id bigint, p_reason text, p_now timestamp with time zone); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.resume_enrollment(p_id bigint, p_reason text, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION pgflow.resume_enrollment(p_id bigint, p_reason text, p_now timestamp with time zone) TO pgflow_operator;


--
-- Name: FUNCTION sms_encoding(p_body text); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.sms_encoding(p_body text) FROM PUBLIC;


--
-- Name: FUNCTION sms_segments(p_body text); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.sms_segments(p_body text) FROM PUBLIC;


--
-- Name: FUNCTION stop_enrollment(p_id bigint, p_reason text, p_now timestamp with time zone); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.stop_enrollment(p_id bigint, p_reason text, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION pgflow.stop_enrollment(p_id bigint, p_reason text, p_now timestamp with time zone) TO pgflow_operator;


--
-- Name: FUNCTION tick(p_now timestamp with time zone, p_batch integer); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.tick(p_now timestamp with time zone, p_batch integer) FROM PUBLIC;
GRANT ALL ON FUNCTION pgflow.tick(p_now timestamp with time zone, p_batch integer) TO pgflow_operator;


--
-- Name: FUNCTION worker_heartbeat(p_id uuid, p_host text, p_pid integer, p_version text, p_stopping boolean, p_now timestamp with time zone); Type: ACL; Schema: pgflow; Owner: -
--

REVOKE ALL ON FUNCTION pgflow.worker_heartbeat(p_id uuid, p_host text, p_pid integer, p_version text, p_stopping boolean, p_now timestamp with time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION pgflow.worker_heartbeat(p_id uuid, p_host text, p_pid integer, p_version text, p_stopping boolean, p_now timestamp with time zone) TO pgflow_worker;


--
-- Name: TABLE _yoyo_log; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT ON TABLE pgflow._yoyo_log TO pgflow_reader;


--
-- Name: TABLE _yoyo_migration; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT ON TABLE pgflow._yoyo_migration TO pgflow_reader;
GRANT SELECT ON TABLE pgflow._yoyo_migration TO pgflow_web;
GRANT SELECT ON TABLE pgflow._yoyo_migration TO pgflow_worker;


--
-- Name: TABLE _yoyo_version; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT ON TABLE pgflow._yoyo_version TO pgflow_reader;
GRANT SELECT ON TABLE pgflow._yoyo_version TO pgflow_web;
GRANT SELECT ON TABLE pgflow._yoyo_version TO pgflow_worker;


--
-- Name: TABLE agents; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT ON TABLE pgflow.agents TO pgflow_reader;


--
-- Name: TABLE alerts; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT ON TABLE pgflow.alerts TO pgflow_reader;


--
-- Name: TABLE campaign_steps; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT ON TABLE pgflow.campaign_steps TO pgflow_reader;


--
-- Name: TABLE campaigns; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT ON TABLE pgflow.campaigns TO pgflow_reader;


--
-- Name: TABLE messages; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT ON TABLE pgflow.messages TO pgflow_reader;


--
-- Name: TABLE dead_letters; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT ON TABLE pgflow.dead_letters TO pgflow_reader;


--
-- Name: TABLE events; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT ON TABLE pgflow.events TO pgflow_reader;


--
-- Name: TABLE lead_events; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT ON TABLE pgflow.lead_events TO pgflow_reader;


--
-- Name: TABLE message_attempts; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT ON TABLE pgflow.message_attempts TO pgflow_reader;


--
-- Name: TABLE pgqueuer; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE pgflow.pgqueuer TO pgflow_worker;
GRANT SELECT ON TABLE pgflow.pgqueuer TO pgflow_reader;


--
-- Name: SEQUENCE pgqueuer_id_seq; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT,USAGE ON SEQUENCE pgflow.pgqueuer_id_seq TO pgflow_worker;


--
-- Name: TABLE pgqueuer_log; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE pgflow.pgqueuer_log TO pgflow_worker;
GRANT SELECT ON TABLE pgflow.pgqueuer_log TO pgflow_reader;


--
-- Name: TABLE pgqueuer_schedules; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE pgflow.pgqueuer_schedules TO pgflow_worker;
GRANT SELECT ON TABLE pgflow.pgqueuer_schedules TO pgflow_reader;


--
-- Name: SEQUENCE pgqueuer_schedules_id_seq; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT,USAGE ON SEQUENCE pgflow.pgqueuer_schedules_id_seq TO pgflow_worker;


--
-- Name: TABLE pgqueuer_statistics; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE pgflow.pgqueuer_statistics TO pgflow_worker;
GRANT SELECT ON TABLE pgflow.pgqueuer_statistics TO pgflow_reader;


--
-- Name: SEQUENCE pgqueuer_statistics_id_seq; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT,USAGE ON SEQUENCE pgflow.pgqueuer_statistics_id_seq TO pgflow_worker;


--
-- Name: TABLE webhook_deliveries; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT ON TABLE pgflow.webhook_deliveries TO pgflow_reader;


--
-- Name: TABLE workers; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT ON TABLE pgflow.workers TO pgflow_reader;


--
-- Name: TABLE yoyo_lock; Type: ACL; Schema: pgflow; Owner: -
--

GRANT SELECT ON TABLE pgflow.yoyo_lock TO pgflow_reader;


--
-- PostgreSQL database dump complete
--


