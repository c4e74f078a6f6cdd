CREATE SCHEMA pgflow;
CREATE TYPE pgflow._due_step AS (
	enrollment_id bigint,
	contact_id bigint,
	decision text,
	until timestamp with time zone,
	from_number text,
	next_position integer,
	next_delay interval,
	recent integer,
	oldest timestamp with time zone,
	daily_cap integer,
	rule text
);
CREATE TYPE pgflow.pgqueuer_status AS ENUM (
    'queued',
    'picked',
    'successful',
    'exception',
    'canceled',
    'deleted',
    'failed'
);
CREATE FUNCTION pgflow._actor(p_actor text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $$
begin
  if coalesce(pg_catalog.btrim(p_actor), '') = '' then
    raise exception 'the person acting must be named' using errcode = 'PF003';
  end if;
  return pg_catalog.left(pg_catalog.btrim(p_actor), 254);
end;
$$;
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
CREATE TABLE pgflow.agents (
    id bigint NOT NULL,
    name text NOT NULL,
    prompt text NOT NULL,
    model text,
    retell_agent_id text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    max_turns integer DEFAULT 10 NOT NULL,
    reply_debounce interval DEFAULT '00:00:03'::interval NOT NULL,
    CONSTRAINT agents_max_turns_range CHECK (((max_turns >= 1) AND (max_turns <= 100))),
    CONSTRAINT agents_name_nonempty CHECK ((name ~ '^\S(.*\S)?$'::text)),
    CONSTRAINT agents_prompt_nonempty CHECK ((length(btrim(prompt)) > 0)),
    CONSTRAINT agents_reply_debounce_range CHECK (((reply_debounce >= '00:00:00'::interval) AND (reply_debounce <= '00:05:00'::interval)))
);
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
    goal text,
    transport text DEFAULT 'retell'::text NOT NULL,
    CONSTRAINT campaigns_daily_cap_positive CHECK ((daily_cap > 0)),
    CONSTRAINT campaigns_fallbacks_object CHECK ((jsonb_typeof(fallbacks) = 'object'::text)),
    CONSTRAINT campaigns_from_number_e164 CHECK ((from_number ~ '^\+[1-9][0-9]{6,14}$'::text)),
    CONSTRAINT campaigns_max_attempts_range CHECK (((max_attempts >= 1) AND (max_attempts <= 50))),
    CONSTRAINT campaigns_reply_timeout_positive CHECK ((reply_timeout > '00:00:00'::interval)),
    CONSTRAINT campaigns_silence_timeout_positive CHECK ((silence_timeout > '00:00:00'::interval)),
    CONSTRAINT campaigns_slug_shape CHECK ((slug ~ '^[a-z0-9][a-z0-9_-]{0,62}$'::text)),
    CONSTRAINT campaigns_status_valid CHECK ((status = ANY (ARRAY['draft'::text, 'active'::text, 'paused'::text, 'archived'::text]))),
    CONSTRAINT campaigns_timezone_valid CHECK (pgflow._is_time_zone(timezone)),
    CONSTRAINT campaigns_transport_valid CHECK ((transport = ANY (ARRAY['retell'::text, 'twilio'::text]))),
    CONSTRAINT campaigns_window_days_valid CHECK ((((cardinality(window_days) >= 1) AND (cardinality(window_days) <= 7)) AND (window_days <@ '{1,2,3,4,5,6,7}'::smallint[]))),
    CONSTRAINT campaigns_window_order CHECK ((window_start < window_end))
);
CREATE TABLE pgflow.contacts (
    id bigint NOT NULL,
    phone text,
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
    held_at timestamp with time zone,
    held_by text,
    state text,
    forgotten_at timestamp with time zone,
    CONSTRAINT contacts_attributes_object CHECK ((jsonb_typeof(attributes) = 'object'::text)),
    CONSTRAINT contacts_email_shape CHECK (((email IS NULL) OR (email ~ '^[^@\s]+@[^@\s]+$'::text))),
    CONSTRAINT contacts_forgotten_is_empty CHECK (((forgotten_at IS NULL) OR ((phone IS NULL) AND (first_name IS NULL) AND (last_name IS NULL) AND (email IS NULL) AND (attributes = '{}'::jsonb) AND (held_by IS NULL) AND (opted_out_at IS NOT NULL)))),
    CONSTRAINT contacts_held_by_needs_hold CHECK (((held_by IS NULL) OR (held_at IS NOT NULL))),
    CONSTRAINT contacts_opt_out_consistent CHECK (((opted_out_at IS NULL) = (opt_out_source IS NULL))),
    CONSTRAINT contacts_phone_e164 CHECK ((phone ~ '^\+[1-9][0-9]{6,14}$'::text)),
    CONSTRAINT contacts_phone_or_forgotten CHECK (((phone IS NOT NULL) OR (forgotten_at IS NOT NULL))),
    CONSTRAINT contacts_state_code CHECK ((state ~ '^[A-Z]{2}$'::text)),
    CONSTRAINT contacts_timezone_valid CHECK (pgflow._is_time_zone(timezone))
);
CREATE FUNCTION pgflow._agent_variables(p_contact pgflow.contacts, p_campaign pgflow.campaigns, p_agent pgflow.agents, p_sms_body text) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select pg_catalog.jsonb_build_object(
    'agent_prompt', coalesce(nullif(pg_catalog.btrim(p_agent.prompt), ''),
                             'You are a helpful assistant. Be brief.'),
    'first_name', coalesce(nullif(pg_catalog.btrim(p_contact.first_name), ''),
                           p_campaign.fallbacks ->> 'first_name', 'there'),
    'campaign_name', coalesce(p_campaign.name, 'our team'),
    'campaign_goal', coalesce(nullif(pg_catalog.btrim(p_campaign.goal), ''),
                              'help the lead and answer their questions'),
    'lead_context', coalesce((
      select pg_catalog.string_agg(k || ': ' || v, '; ' order by k)
        from pg_catalog.jsonb_each_text(pgflow._template_values(p_contact)) as kv(k, v)
       where nullif(pg_catalog.btrim(v), '') is not null), 'nothing known yet'),
    'sms_body', coalesce(nullif(pg_catalog.btrim(p_sms_body), ''), 'Thanks for your message.'))
$$;
CREATE FUNCTION pgflow._answer_inbound(p_payload jsonb, p_engine_replies boolean, p_now timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $_$
declare
  v_in jsonb := case
    when pg_catalog.jsonb_typeof(p_payload -> 'chat_inbound') = 'object' then p_payload -> 'chat_inbound'
    when pg_catalog.jsonb_typeof(p_payload -> 'sms_inbound') = 'object' then p_payload -> 'sms_inbound'
    else p_payload end;
  v_lead text := v_in ->> 'from_number';
  v_line text := v_in ->> 'to_number';
  v_text text := coalesce(v_in ->> 'message', v_in ->> 'body', v_in ->> 'content');
  v_reject jsonb := '{"chat_inbound": {"reject": true}}';
  v_contact pgflow.contacts;
  v_number pgflow.sending_numbers;
  v_conversation pgflow.conversations;
  v_campaign pgflow.campaigns;
  v_agent pgflow.agents;
  v_message bigint;
  v_answer jsonb;
begin
  if v_lead is null or v_lead !~ '^\+[1-9][0-9]{6,14}$'
     or v_line is null or v_line !~ '^\+[1-9][0-9]{6,14}$' then
    return pg_catalog.jsonb_build_object('result', 'invalid', 'response', v_reject,
      'detail', 'from_number and to_number must be E.164 numbers');
  end if;
  select * into v_number from pgflow.sending_numbers where number = v_line;
  select * into v_contact from pgflow.contacts where phone = v_lead for update;
  if v_contact.id is null then
    if v_number.inbound_agent_id is null then
      return pg_catalog.jsonb_build_object('result', 'unknown_number_rejected',
                                           'response', v_reject);
    end if;
    insert into pgflow.contacts (phone, created_at, updated_at)
    values (v_lead, p_now, p_now)
    on conflict (phone) do update set updated_at = excluded.updated_at
    returning * into v_contact;
  end if;
  if v_contact.opted_out_at is not null
     and (v_text is null or (select i.intent from pgflow.inbound_intent(v_text) i) <> 'opt_in') then
    return pg_catalog.jsonb_build_object('result', 'suppressed_rejected', 'response', v_reject);
  end if;
  v_conversation := pgflow._inbound_conversation(v_contact.id, v_line, p_now);
  if v_conversation.id is null then
    return pg_catalog.jsonb_build_object('result', 'no_agent_rejected', 'response', v_reject);
  end if;
  select * into v_campaign from pgflow.campaigns where id = v_conversation.campaign_id;
  select * into v_agent from pgflow.agents where id = v_conversation.agent_id;
  -- Retell's new chat becomes the conversation's, but not one refused below (a person
  -- holds the lead): it never starts, and the chat an end_chat job ends stays the one it had.
  if v_in ? 'chat_id' and nullif(v_in ->> 'chat_id', '') is not null
     and (v_contact.held_at is null or p_engine_replies) then
    update pgflow.conversations
       set provider_chat_id = v_in ->> 'chat_id', chat_status = 'ongoing', updated_at = p_now
     where id = v_conversation.id;
  end if;
  v_answer := pg_catalog.jsonb_build_object(
    'dynamic_variables', pgflow._agent_variables(v_contact, v_campaign, v_agent, null),
    'metadata', pg_catalog.jsonb_build_object(
      'pgflow_conversation_id', v_conversation.id::text,
      'pgflow_contact_id', v_contact.id::text));
  if v_agent.retell_agent_id is not null then
    v_answer := v_answer || pg_catalog.jsonb_build_object('override_agent_id', v_agent.retell_agent_id);
  end if;
  -- The older shape carries the text itself: record it as the lead's message.
  if v_text is not null then
    perform pgflow._set_reason('lead text (inbound webhook)');
    insert into pgflow.messages
      (conversation_id, contact_id, direction, kind, body, delivery_status, segments, encoding,
       dedupe_key, created_at, updated_at)
    values (v_conversation.id, v_contact.id, 'inbound', 'lead', v_text, 'received',
            pgflow.sms_segments(v_text), pgflow.sms_encoding(v_text),
            'inbound:' || pg_catalog.md5(p_payload::text), p_now, p_now)
    on conflict (dedupe_key) do nothing
    returning id into v_message;
    if v_message is not null then
      perform pgflow._on_inbound(v_message, false, p_now);
    end if;
  end if;
  -- While a person holds the lead, Retell's own LLM must not answer: the chat is refused.
  -- Retell gives no text with chat_inbound, so the person is told a text came (the
  -- console shows it as a note). Where the engine writes the replies (the sandbox), the
  -- chat goes on and agent_turn keeps the agent quiet.
  if v_contact.held_at is not null and not p_engine_replies then
    insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
    values (p_now, 'contact', v_contact.id, 'held', 'held',
            'the lead texted while a person holds the conversation; Retell does not pass '
            || 'the text on (its chat was refused so its AI stays quiet)');
    return pg_catalog.jsonb_build_object('result', 'held_rejected',
      'conversation_id', v_conversation.id, 'response', v_reject);
  end if;
  return pg_catalog.jsonb_build_object('result', 'answered', 'conversation_id', v_conversation.id,
    'response', pg_catalog.jsonb_build_object('chat_inbound', v_answer));
end;
$_$;
CREATE FUNCTION pgflow._apply_provider_status(p_message_id bigint, p_now timestamp with time zone) RETURNS text
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  m pgflow.messages;
begin
  select * into m from pgflow.messages where id = p_message_id for update;
  if m.delivery_status <> 'sent' then
    return null;
  end if;
  if m.provider_status = 'delivered' then
    perform pgflow._set_reason('the carrier delivered it');
    update pgflow.messages set delivery_status = 'delivered', delivered_at = p_now,
           updated_at = p_now
     where id = m.id;
    return 'delivered';
  elsif m.provider_status in ('undelivered', 'failed') then
    perform pgflow._set_reason(pg_catalog.format('%s: error %s', m.provider_status,
                                                 coalesce(m.carrier_error_code::text, '-')));
    update pgflow.messages
       set delivery_status = 'failed', updated_at = p_now,
           delivery_error = pg_catalog.format('%s: error %s (%s)', m.provider_status,
             coalesce(m.carrier_error_code::text, '-'),
             pgflow.carrier_error_class(m.carrier_error_code))
     where id = m.id
    returning * into m;
    return pgflow._on_carrier_error(m, m.carrier_error_code, p_now);
  end if;
  return null;
end;
$$;
CREATE FUNCTION pgflow._audit(p_actor text, p_user_id bigint, p_action text, p_conversation_id bigint, p_contact_id bigint, p_detail jsonb, p_now timestamp with time zone) RETURNS bigint
    LANGUAGE sql
    SET search_path TO ''
    AS $$
  insert into pgflow.audit_log
    (occurred_at, actor, user_id, action, conversation_id, contact_id, detail)
  values (p_now, p_actor, p_user_id, p_action, p_conversation_id, p_contact_id,
          pg_catalog.jsonb_strip_nulls(coalesce(p_detail, '{}')))
  returning id
$$;
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
    chat_status text,
    engaged_at timestamp with time zone,
    agent_turns integer DEFAULT 0 NOT NULL,
    review_reason text,
    review_requested_at timestamp with time zone,
    classify_requested_at timestamp with time zone,
    closing_message_id bigint,
    CONSTRAINT conversations_agent_turns_nonnegative CHECK ((agent_turns >= 0)),
    CONSTRAINT conversations_chat_status_valid CHECK ((chat_status = ANY (ARRAY['ongoing'::text, 'ended'::text]))),
    CONSTRAINT conversations_conversion_status_valid CHECK ((conversion_status = ANY (ARRAY['success'::text, 'qualified'::text, 'unqualified'::text, 'escalated'::text, 'no_response'::text, 'discarded'::text]))),
    CONSTRAINT conversations_ended_at_iff_ended CHECK (((status = 'ended'::text) = (ended_at IS NOT NULL))),
    CONSTRAINT conversations_ended_has_outcome CHECK (((status <> 'ended'::text) OR ((conversion_status IS NOT NULL) AND (outcome_source IS NOT NULL)))),
    CONSTRAINT conversations_from_number_e164 CHECK ((from_number ~ '^\+[1-9][0-9]{6,14}$'::text)),
    CONSTRAINT conversations_outcome_only_when_ended CHECK (((conversion_status IS NULL) OR (status = 'ended'::text))),
    CONSTRAINT conversations_outcome_source_valid CHECK ((outcome_source = ANY (ARRAY['rule'::text, 'llm'::text, 'human'::text, 'webhook'::text, 'retell'::text]))),
    CONSTRAINT conversations_reply_deadline_only_open CHECK (((reply_deadline_at IS NULL) OR (status = 'open'::text))),
    CONSTRAINT conversations_review_consistent CHECK (((review_reason IS NULL) = (review_requested_at IS NULL))),
    CONSTRAINT conversations_status_valid CHECK ((status = ANY (ARRAY['open'::text, 'engaged'::text, 'ended'::text])))
);
CREATE FUNCTION pgflow._chat_conversation(p_chat jsonb) RETURNS pgflow.conversations
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $_$
declare
  v_row pgflow.conversations;
  v_id text := p_chat #>> '{metadata,pgflow_conversation_id}';
  v_chat text := p_chat ->> 'chat_id';
begin
  if v_id ~ '^\d{1,18}$' then
    select * into v_row from pgflow.conversations where id = v_id::bigint;
    if found then
      return v_row;
    end if;
  end if;
  if v_chat is not null then
    select * into v_row from pgflow.conversations where provider_chat_id = v_chat
     order by id desc limit 1;
    if found then
      return v_row;
    end if;
    select cv.* into v_row from pgflow.messages m
      join pgflow.conversations cv on cv.id = m.conversation_id
     where m.provider_message_id = v_chat order by m.id desc limit 1;
  end if;
  return v_row;
end;
$_$;
CREATE FUNCTION pgflow._chat_items(p_chat jsonb) RETURNS TABLE(pos integer, key text, role text, content text, at timestamp with time zone)
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $_$
declare
  v_chat_id text := coalesce(p_chat ->> 'chat_id', '?');
  v_line text;
  v_role text;
  v_text text;
  v_pos integer := 0;
begin
  if pg_catalog.jsonb_typeof(p_chat -> 'message_with_tool_calls') = 'array' then
    return query
      select (t.n - 1)::integer,
             pgflow._short_key(coalesce(nullif(t.e ->> 'message_id', ''),
                                       v_chat_id || ':' || (t.n - 1))),
             t.e ->> 'role', t.e ->> 'content',
             -- milliseconds since 1970 up to year 2286; anything else is no time at all
             case when (t.e ->> 'created_timestamp') ~ '^\d{10,13}$'
                  then pg_catalog.to_timestamp((t.e ->> 'created_timestamp')::bigint / 1000.0) end
        from (select x.e, pg_catalog.row_number() over (order by x.ord) as n
                from pg_catalog.jsonb_array_elements(p_chat -> 'message_with_tool_calls')
                     with ordinality as x(e, ord)
               where pg_catalog.jsonb_typeof(x.e) = 'object'
                 and x.e ->> 'role' in ('agent', 'user')
                 and pg_catalog.jsonb_typeof(x.e -> 'content') = 'string') t
       order by t.n;
    return;
  end if;
  if pg_catalog.jsonb_typeof(p_chat -> 'transcript') is distinct from 'string' then
    return;
  end if;
  foreach v_line in array pg_catalog.string_to_array(p_chat ->> 'transcript', E'\n') loop
    if v_line ~ '^(Agent|User): ' then
      if v_role is not null then
        pos := v_pos; key := pgflow._short_key(v_chat_id || ':' || v_pos); role := v_role;
        content := v_text; at := null;
        return next;
        v_pos := v_pos + 1;
      end if;
      v_role := case when v_line like 'Agent: %' then 'agent' else 'user' end;
      v_text := pg_catalog.substr(v_line, pg_catalog.strpos(v_line, ': ') + 2);
    elsif v_role is not null then
      v_text := v_text || E'\n' || v_line;
    end if;
  end loop;
  if v_role is not null then
    pos := v_pos; key := pgflow._short_key(v_chat_id || ':' || v_pos); role := v_role;
    content := pg_catalog.rtrim(v_text, E'\n'); at := null;
    return next;
  end if;
end;
$_$;
CREATE FUNCTION pgflow._claim_one(p_message_id bigint, p_worker uuid, p_checked_chat text, p_now timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql
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
  v_max integer;
  v_open timestamptz;
  v_reason text;
  v_number pgflow.sending_numbers;
  v_day date := (v_now at time zone 'UTC')::date;
  v_used integer;
  v_slot timestamptz;
  v_rule text;
  v_transport text;
  r record;
begin
  -- the message (locked), its contact, conversation, enrollment, campaign, agent and line
  -- in one statement
  select mm as msg, ct as contact, cv as conversation, e.status as enrollment_status,
         c as campaign, a as agent, n as line
    into r
    from pgflow.messages mm
    left join pgflow.contacts ct on ct.id = mm.contact_id
    left join pgflow.conversations cv on cv.id = mm.conversation_id
    left join pgflow.enrollments e on e.id = coalesce(mm.enrollment_id, cv.enrollment_id)
    left join pgflow.campaigns c on c.id = coalesce(e.campaign_id, cv.campaign_id)
    left join pgflow.agents a on a.id = coalesce(cv.agent_id, c.agent_id)
    left join pgflow.sending_numbers n on n.number = cv.from_number
   where mm.id = p_message_id
     for update of mm;
  if not found then
    return pg_catalog.jsonb_build_object('action', 'skip', 'reason', 'no such message');
  end if;
  m := r.msg;
  if m.direction <> 'outbound' or m.delivery_status not in ('queued', 'sending') then
    return pg_catalog.jsonb_build_object('action', 'skip',
      'reason', 'message is ' || m.delivery_status);
  end if;
  v_contact := r.contact;
  v_conversation := r.conversation;
  v_enrollment_status := r.enrollment_status;
  v_campaign := r.campaign;
  v_agent := r.agent;
  v_number := r.line;
  v_max := coalesce(v_campaign.max_attempts, 6);
  if m.delivery_status = 'sending' then
    -- The last attempt never came back: its worker died mid-send, perhaps after Retell
    -- took it. The worker looks for the chat first (its metadata carries our id), then
    -- records it sent, or releases it (pgflow.release_interrupted) and claims again.
    return pg_catalog.jsonb_build_object(
      'action', 'reconcile', 'message_id', m.id, 'attempt', m.attempts, 'kind', m.kind,
      'to_number', v_contact.phone,
      'since', coalesce((select pg_catalog.max(a.started_at) from pgflow.message_attempts a
                          where a.message_id = m.id and a.finished_at is null), m.updated_at),
      'transport', pgflow._line_transport(v_conversation.from_number),
      'from_number', v_conversation.from_number, 'body', m.body,
      'end_chat_after', m.kind = 'system' and v_contact.opted_out_at is not null);
  end if;
  v_reason := case
    when v_contact.opted_out_at is not null and m.kind <> 'system' then 'contact opted out'
    when m.kind = 'campaign' and v_enrollment_status in ('stopped', 'opted_out')
      then 'enrollment ' || v_enrollment_status
    when m.kind = 'campaign' and v_conversation.status = 'engaged' then 'lead replied'
    -- while a person holds the lead no AI text reaches it, but the agent's closing reply
    -- (its handover: the lead is told a person will answer) unless a person took over
    when m.kind = 'agent' and v_contact.held_by is not null then 'a person holds this lead'
    when m.kind = 'agent' and v_contact.held_at is not null
         and m.id is distinct from v_conversation.closing_message_id
      then 'a person holds this lead'
    -- an ended conversation takes system messages, a person's texts, and the agent's
    -- closing reply (its booking or handover) unless a person took over
    when v_conversation.status = 'ended' and m.kind not in ('system', 'human')
         and not (m.id = v_conversation.closing_message_id
                  and v_conversation.outcome_source is distinct from 'human')
      then 'conversation ended'
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
    if v_campaign.status <> 'active' or v_enrollment_status = 'paused' then
      -- held, not dropped: a paused campaign or drip sends it when resumed
      update pgflow.messages set delivery_status = 'queued',
             send_after = v_now + interval '15 minutes', updated_at = v_now,
             deferred_reason = case when v_campaign.status <> 'active'
                                    then 'campaign ' || v_campaign.status else 'drip paused' end
       where id = m.id;
      return pg_catalog.jsonb_build_object('action', 'defer', 'reason',
        case when v_campaign.status <> 'active' then 'campaign ' || v_campaign.status
             else 'drip paused' end, 'delay_seconds', 900);
    end if;
    -- the campaign's window, the state rules' hours and their cap per 24 h (the contact's
    -- row locked: two claims cannot both pass the cap)
    perform from pgflow.contacts where id = v_contact.id for no key update;
    select s.at, s.rule into v_open, v_rule
      from pgflow._marketing_slot(v_contact, v_campaign, v_now) s;
    if v_open > v_now then
      return pgflow._defer_marketing(m.id, v_open, v_rule, v_now);
    end if;
    -- A missed or late webhook must never let a drip talk over a live conversation.
    if v_conversation.provider_chat_id is not null
       and coalesce(v_conversation.chat_status, 'ongoing') = 'ongoing'
       and p_checked_chat is distinct from v_conversation.provider_chat_id then
      return pg_catalog.jsonb_build_object('action', 'check_chat',
        'chat_id', v_conversation.provider_chat_id);
    end if;
  end if;
  -- A person's text to a lead who never wrote is a first contact: the window and the state
  -- rules apply as to a drip step.
  if m.kind = 'human' and v_conversation.last_inbound_at is null
     and not exists (select 1 from pgflow.messages x
                      where x.contact_id = m.contact_id and x.direction = 'inbound') then
    select s.at, s.rule into v_open, v_rule
      from pgflow._marketing_slot(v_contact, v_campaign, v_now) s;
    if v_open > v_now then
      return pgflow._defer_marketing(m.id, v_open, v_rule, v_now, ' (the lead has not written yet)');
    end if;
  end if;
  -- The sending number's carrier limits. System messages (opt-out confirmations, help)
  -- are counted but never held back.
  if m.kind <> 'system' and v_number.daily_segments is not null then
    -- claims of a number with a daily limit take turns, so the limit is exact
    perform from pgflow.sending_numbers where id = v_number.id for update;
    select pg_catalog.sum(u.segments) into v_used from pgflow.number_usage u
     where u.number = v_number.number and u.day = v_day;
    if coalesce(v_used, 0) + m.segments > v_number.daily_segments then
      v_open := ((v_day + 1)::timestamp at time zone 'UTC')
                + pg_catalog.random() * interval '10 minutes';
      perform pgflow._set_reason('number daily limit');
      update pgflow.messages set delivery_status = 'queued', send_after = v_open,
             number_slot_at = null, updated_at = v_now,
             deferred_reason = 'the number''s daily limit is used up'
       where id = m.id;
      return pg_catalog.jsonb_build_object('action', 'defer', 'reason', 'number daily limit',
        'delay_seconds', extract(epoch from v_open - v_now));
    end if;
  end if;
  if m.kind <> 'system' and v_number.per_second is not null
     and (m.number_slot_at is null or m.number_slot_at < v_now - interval '1 minute') then
    -- Take the next free slot; one in the future is reserved for this message, which comes
    -- back at that instant and sends without taking another (unless it is a minute late).
    update pgflow.sending_numbers
       set next_slot_at = greatest(coalesce(next_slot_at, v_now), v_now)
                          + interval '1 second' / per_second
     where id = v_number.id
    returning next_slot_at - interval '1 second' / per_second into v_slot;
    if v_slot > v_now then
      update pgflow.messages set delivery_status = 'queued', send_after = v_slot,
             number_slot_at = v_slot, updated_at = v_now,
             deferred_reason = 'the number''s rate limit'
       where id = m.id;
      return pg_catalog.jsonb_build_object('action', 'defer', 'reason', 'number rate limit',
        'delay_seconds', extract(epoch from v_slot - v_now));
    end if;
  end if;
  perform pg_catalog.set_config('pgflow.reason', 'attempt ' || (m.attempts + 1), true);
  update pgflow.messages
     set delivery_status = 'sending', attempts = attempts + 1, send_after = null,
         number_slot_at = null, deferred_reason = null, deferred_rule = null,
         updated_at = v_now,
         -- an agent reply posted into a chat carries our id, so its echo is recognised
         chat_message_id = case when m.kind in ('agent', 'human') then 'pgflow-' || m.id
                                else chat_message_id end
   where id = m.id
  returning * into m;
  insert into pgflow.message_attempts (message_id, attempt, worker_id, started_at)
  select m.id, coalesce(pg_catalog.max(a.attempt), 0) + 1, p_worker, v_now
    from pgflow.message_attempts a where a.message_id = m.id;
  v_transport := pgflow._line_transport(v_conversation.from_number);
  return pg_catalog.jsonb_build_object(
    'action', 'send',
    'segments', m.segments,
    'usage_day', v_day,
    -- counted at once by claim_messages: the batch's next claim on the number sees it
    'usage_limited', v_number.daily_segments is not null,
    'message_id', m.id,
    'attempt', m.attempts,
    'max_attempts', v_max,
    'kind', m.kind,
    'transport', v_transport,
    -- how long Twilio may hold the text before it is dropped (its ValidityPeriod): a drip
    -- text never arrives after its send window closes
    'validity_seconds', case when v_transport = 'twilio'
                             then pgflow._validity_seconds(m.kind, v_contact, v_campaign, v_now) end,
    'from_number', v_conversation.from_number,
    'to_number', v_contact.phone,
    'body', m.body,
    'retell_agent_id', v_agent.retell_agent_id,
    'chat_id', v_conversation.provider_chat_id,
    'chat_status', v_conversation.chat_status,
    'chat_message_id', m.chat_message_id,
    'previous_chat_id', v_conversation.provider_chat_id,
    -- an opt-out confirmation ends its chat at once: nothing may follow it; so does a
    -- person's text where it starts a chat (the worker knows: Retell's own LLM would answer)
    'end_chat_after', m.kind = 'system' and v_contact.opted_out_at is not null,
    'held', v_contact.held_at is not null,
    'metadata', pg_catalog.jsonb_build_object(
      'pgflow_message_id', m.id::text,
      'pgflow_conversation_id', m.conversation_id::text,
      'pgflow_contact_id', m.contact_id::text),
    'variables', case when m.kind = 'human' or v_contact.held_at is not null then
                   pgflow._agent_variables(v_contact, v_campaign, v_agent, m.body)
                   || '{"agent_prompt": "A person from our team is handling this conversation and wrote the first message of this chat. Do not write anything more; end the chat."}'
                 else pgflow._agent_variables(v_contact, v_campaign, v_agent, m.body) end
                 - 'sms_body');
end;
$$;
CREATE FUNCTION pgflow._consent_record(p_contact pgflow.contacts) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select pg_catalog.jsonb_build_object(
    'id', p_contact.id, 'phone', p_contact.phone, 'first_name', p_contact.first_name,
    'last_name', p_contact.last_name, 'email', p_contact.email, 'state', p_contact.state,
    'created_at', p_contact.created_at, 'opted_out_at', p_contact.opted_out_at,
    'opt_out_source', p_contact.opt_out_source, 'forgotten_at', p_contact.forgotten_at,
    'consents', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', c.id, 'given_at', c.given_at, 'source', c.source,
               'disclosure', c.disclosure, 'ip', c.ip, 'user_agent', c.user_agent,
               'request', c.request, 'lead_event_id', c.lead_event_id,
               'recorded_at', c.recorded_at) order by c.given_at, c.id)
        from pgflow.consents c where c.contact_id = p_contact.id), '[]'),
    'opt_outs', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', o.id, 'action', o.action, 'source', o.source, 'text', o.text,
               'message_id', o.message_id, 'occurred_at', o.occurred_at)
             order by o.occurred_at, o.id)
        from pgflow.opt_outs o where o.contact_id = p_contact.id), '[]'),
    'erasure', (
      select pg_catalog.jsonb_build_object(
               'id', e.id, 'requested_by', e.requested_by, 'reason', e.reason,
               'erased_at', e.erased_at, 'removed', e.removed)
        from pgflow.erasures e where e.contact_id = p_contact.id
       order by e.erased_at desc, e.id desc limit 1))
$$;
CREATE FUNCTION pgflow._contact_suppression() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_suppression pgflow.suppressions;
  v_at timestamptz := coalesce(new.created_at, pg_catalog.now());
begin
  if new.phone is null
     or (tg_when = 'BEFORE' and new.opted_out_at is not null)  -- opted out already
     or (tg_when = 'AFTER' and new.opted_out_at is null) then  -- not suppressed
    return new;
  end if;
  v_suppression := pgflow._suppression(new.phone);
  if v_suppression.phone_hash is null then
    return new;
  end if;
  if tg_when = 'BEFORE' then
    new.opted_out_at := v_at;
    new.opt_out_source := v_suppression.source;
    return new;
  end if;
  insert into pgflow.opt_outs (contact_id, action, source, text, occurred_at)
  values (new.id, 'opt_out', v_suppression.source,
          pg_catalog.format('suppressed: a contact with this number was forgotten on request (%s)',
                            v_suppression.source),
          new.opted_out_at);
  insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
  values (new.opted_out_at, 'contact', new.id, null, 'opted_out',
          'suppressed: a forgotten number');
  return null;
end;
$$;
CREATE FUNCTION pgflow._count_usage(p_claims jsonb[]) RETURNS void
    LANGUAGE sql
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow._current_conversation(p_conversation pgflow.conversations) RETURNS pgflow.conversations
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select coalesce(
    (select cv from pgflow.conversations cv
      where cv.contact_id = p_conversation.contact_id
        and cv.from_number = p_conversation.from_number and cv.status <> 'ended'),
    p_conversation)
$$;
CREATE FUNCTION pgflow._defer_marketing(p_message_id bigint, p_until timestamp with time zone, p_rule text, p_now timestamp with time zone, p_note text DEFAULT ''::text) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_reason text := coalesce(pgflow.rule_text(p_rule), 'send window closed');
begin
  perform pgflow._set_reason(v_reason);
  update pgflow.messages set delivery_status = 'queued', send_after = p_until,
         updated_at = p_now, deferred_reason = v_reason || p_note, deferred_rule = p_rule
   where id = p_message_id;
  return pg_catalog.jsonb_build_object('action', 'defer', 'reason', v_reason, 'rule', p_rule,
    'delay_seconds', extract(epoch from p_until - p_now));
end;
$$;
CREATE FUNCTION pgflow._dispatch_steps(p_ids bigint[], p_now timestamp with time zone, p_priority integer DEFAULT 0) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow._end_chats(p_conversation_ids bigint[]) RETURNS integer
    LANGUAGE sql
    SET search_path TO ''
    AS $$
  select pgflow._enqueue('end_chat', coalesce(pg_catalog.array_agg(cv.id), '{}'), 20)
    from pgflow.conversations cv
   where cv.id = any (p_conversation_ids) and cv.provider_chat_id is not null
     and coalesce(cv.chat_status, 'ongoing') = 'ongoing'
$$;
CREATE FUNCTION pgflow._engage(p_conversation_id bigint, p_at timestamp with time zone, p_now timestamp with time zone) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_conversation pgflow.conversations;
  r record;
begin
  perform pgflow._set_reason('lead replied');
  update pgflow.conversations
     set status = 'engaged', engaged_at = coalesce(engaged_at, p_at, p_now),
         reply_deadline_at = null, updated_at = p_now
   where id = p_conversation_id and status = 'open'
  returning * into v_conversation;
  if not found then
    return false;
  end if;
  -- every drip of this contact whose campaign sends from this line
  for r in select e.id from pgflow.enrollments e
             join pgflow.campaign_numbers cn on cn.campaign_id = e.campaign_id
            where e.contact_id = v_conversation.contact_id
              and cn.number = v_conversation.from_number and e.status = 'active'
            order by e.id
  loop
    perform pgflow.pause_enrollment(r.id, 'lead replied', p_now);
  end loop;
  return true;
end;
$$;
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
CREATE FUNCTION pgflow._enqueue_after(p_entrypoint text, p_ids bigint[], p_priority integer, p_after timestamp with time zone) RETURNS integer
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
         p_after, p_entrypoint || ':' || id, 'queued'
    from pg_catalog.unnest(p_ids) as id
  on conflict (dedupe_key)
    where ((status = any (array['queued'::pgflow.pgqueuer_status, 'picked'::pgflow.pgqueuer_status]))
           and (dedupe_key is not null))
  do nothing;
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;
CREATE FUNCTION pgflow._enqueue_notice(p_alert_id bigint, p_notice text) RETURNS void
    LANGUAGE sql
    SET search_path TO ''
    AS $$
  insert into pgflow.pgqueuer (priority, entrypoint, payload, execute_after, dedupe_key, status)
  values (20, 'deliver_alert',
          pg_catalog.convert_to(pg_catalog.json_build_object('id', p_alert_id)::text, 'UTF8'),
          pg_catalog.now(), 'deliver_alert:' || p_alert_id || ':' || p_notice, 'queued')
  on conflict (dedupe_key)
    where ((status = any (array['queued'::pgflow.pgqueuer_status, 'picked'::pgflow.pgqueuer_status]))
           and (dedupe_key is not null))
  do nothing
$$;
CREATE FUNCTION pgflow._enqueue_receipt_checks(p_now timestamp with time zone, p_limit integer) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_ids bigint[];
begin
  with due as (
    select m.id from pgflow.messages m
     where m.delivery_status = 'sent' and m.transport = 'twilio'
       and m.sent_at < p_now - interval '2 hours' and m.sent_at > p_now - interval '3 days'
       and m.provider_message_id is not null
       and (m.receipt_checked_at is null or m.receipt_checked_at < p_now - interval '6 hours')
     order by m.sent_at
     limit p_limit
       for update skip locked
  ), marked as (
    update pgflow.messages m set receipt_checked_at = p_now
      from due where m.id = due.id
    returning m.id
  )
  select pg_catalog.array_agg(id order by id) into v_ids from marked;
  return pgflow._enqueue('check_receipt', v_ids, 1);
end;
$$;
CREATE FUNCTION pgflow._escalate(p_conversation_id bigint, p_reason text, p_source text, p_ack boolean, p_now timestamp with time zone) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_campaign text;
  v_contact pgflow.contacts;
begin
  perform pgflow.set_outcome(p_conversation_id, 'escalated', p_reason, p_source, p_now);
  perform pgflow._end_chats(array[p_conversation_id]);
  -- the lead waits for a person: no AI text and no drip step until a person hands it back
  -- (a CRM takeover may come before any reply)
  select ct.* into v_contact from pgflow.contacts ct
    join pgflow.conversations cv on cv.contact_id = ct.id
   where cv.id = p_conversation_id for update of ct;
  perform pgflow._hold(v_contact, null, 'waiting for a person', 'waiting for a person', p_now);
  select c.slug into v_campaign from pgflow.conversations cv
    left join pgflow.campaigns c on c.id = cv.campaign_id where cv.id = p_conversation_id;
  perform pgflow.open_alert('escalation:' || p_conversation_id, 'warning',
    pg_catalog.format('conversation %s (%s) needs a person: %s', p_conversation_id,
                      coalesce(v_campaign, 'inbound'), p_reason),
    pg_catalog.jsonb_build_object('conversation_id', p_conversation_id, 'source', p_source,
                                  'reason', p_reason), p_now);
  if p_ack then
    perform pgflow._system_message(p_conversation_id,
      'Thanks - a member of our team will text you shortly.',
      'handoff_ack:' || p_conversation_id, p_now);
  end if;
end;
$$;
CREATE FUNCTION pgflow._flag_review(p_conversation_id bigint, p_reason text, p_now timestamp with time zone) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_waiting integer;
begin
  update pgflow.conversations
     set review_reason = pg_catalog.left(p_reason, 2000),
         review_requested_at = coalesce(review_requested_at, p_now), updated_at = p_now
   where id = p_conversation_id;
  select pg_catalog.count(*) into v_waiting from pgflow.conversations
   where review_reason is not null;
  perform pgflow.open_alert('needs_review', 'warning',
    pg_catalog.format('%s conversation(s) wait for a person to set their outcome '
                      '(pgflow conversations review)', v_waiting),
    pg_catalog.jsonb_build_object('conversation_id', p_conversation_id, 'reason',
                                  pg_catalog.left(p_reason, 500), 'waiting', v_waiting),
    p_now);
end;
$$;
CREATE FUNCTION pgflow._hold(p_contact pgflow.contacts, p_held_by text, p_reason text, p_pause_reason text, p_now timestamp with time zone) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  r record;
begin
  if p_contact.held_at is null
     or (p_held_by is not null and p_contact.held_by is distinct from p_held_by) then
    update pgflow.contacts
       set held_at = coalesce(held_at, p_now), held_by = coalesce(p_held_by, held_by),
           updated_at = p_now
     where id = p_contact.id;
    insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
    values (p_now, 'contact', p_contact.id,
            case when p_contact.held_at is null then 'with_agent' else 'held' end, 'held',
            p_reason);
  end if;
  for r in select id from pgflow.enrollments
            where contact_id = p_contact.id and status = 'active' order by id
  loop
    perform pgflow.pause_enrollment(r.id, p_pause_reason, p_now);
  end loop;
  perform pgflow._end_chats(array(select id from pgflow.conversations
                                   where contact_id = p_contact.id and status <> 'ended'));
end;
$$;
CREATE FUNCTION pgflow._inbound_conversation(p_contact_id bigint, p_line text, p_now timestamp with time zone) RETURNS pgflow.conversations
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_conversation pgflow.conversations;
  v_campaign pgflow.campaigns;
  v_enrollment bigint;
  v_agent bigint;
begin
  select * into v_conversation from pgflow.conversations
   where contact_id = p_contact_id and from_number = p_line and status <> 'ended';
  if v_conversation.id is not null then
    return v_conversation;
  end if;
  select e.id, e.campaign_id into v_enrollment, v_campaign.id
    from pgflow.enrollments e
    join pgflow.campaign_numbers cn on cn.campaign_id = e.campaign_id
   where e.contact_id = p_contact_id and cn.number = p_line
   order by (e.status in ('active', 'paused')) desc, e.enrolled_at desc, e.id desc limit 1;
  select * into v_campaign from pgflow.campaigns where id = v_campaign.id;
  v_agent := coalesce(v_campaign.agent_id,
                      (select n.inbound_agent_id from pgflow.sending_numbers n
                        where n.number = p_line),
                      (select cv.agent_id from pgflow.conversations cv
                        where cv.contact_id = p_contact_id and cv.from_number = p_line
                        order by cv.id desc limit 1));
  if v_agent is null then
    return v_conversation;
  end if;
  perform pgflow._set_reason('lead wrote first');
  insert into pgflow.conversations
    (contact_id, campaign_id, agent_id, enrollment_id, from_number, created_at, updated_at)
  values (p_contact_id, v_campaign.id, v_agent, v_enrollment, p_line, p_now, p_now)
  on conflict (contact_id, from_number) where status <> 'ended' do nothing
  returning * into v_conversation;
  if v_conversation.id is null then
    select * into v_conversation from pgflow.conversations
     where contact_id = p_contact_id and from_number = p_line and status <> 'ended';
  end if;
  return v_conversation;
end;
$$;
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
CREATE FUNCTION pgflow._lead_error(p_payload jsonb, p_refusal jsonb, p_phone text, p_phone_error text) RETURNS text[]
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $_$
begin
  return case
     when p_payload is null or pg_catalog.jsonb_typeof(p_payload) <> 'object' then
       array['invalid_payload', 'the body must be a JSON object']
     when pg_catalog.jsonb_typeof(p_payload -> 'campaign') is distinct from 'string'
          or pg_catalog.btrim(p_payload ->> 'campaign') = '' then
       array['invalid_payload', 'campaign (a slug string) is required']
     when pg_catalog.jsonb_typeof(p_payload -> 'phone') is distinct from 'string' then
       array['invalid_payload', 'phone (a string) is required']
     when p_payload ? 'first_name'
          and pg_catalog.jsonb_typeof(p_payload -> 'first_name') not in ('string', 'null') then
       array['invalid_payload', 'first_name must be a string']
     when pg_catalog.length(p_payload ->> 'first_name') > 200 then
       array['invalid_payload', 'first_name is longer than 200 characters']
     when p_payload ? 'last_name'
          and pg_catalog.jsonb_typeof(p_payload -> 'last_name') not in ('string', 'null') then
       array['invalid_payload', 'last_name must be a string']
     when pg_catalog.length(p_payload ->> 'last_name') > 200 then
       array['invalid_payload', 'last_name is longer than 200 characters']
     when p_payload ? 'email'
          and pg_catalog.jsonb_typeof(p_payload -> 'email') not in ('string', 'null') then
       array['invalid_payload', 'email must be a string']
     when pg_catalog.length(p_payload ->> 'email') > 200 then
       array['invalid_payload', 'email is longer than 200 characters']
     when p_payload ? 'timezone'
          and pg_catalog.jsonb_typeof(p_payload -> 'timezone') not in ('string', 'null') then
       array['invalid_payload', 'timezone must be a string']
     when pg_catalog.length(p_payload ->> 'timezone') > 200 then
       array['invalid_payload', 'timezone is longer than 200 characters']
     when p_payload ? 'source'
          and pg_catalog.jsonb_typeof(p_payload -> 'source') not in ('string', 'null') then
       array['invalid_payload', 'source must be a string']
     when pg_catalog.length(p_payload ->> 'source') > 200 then
       array['invalid_payload', 'source is longer than 200 characters']
     when p_payload ? 'external_id'
          and pg_catalog.jsonb_typeof(p_payload -> 'external_id') not in ('string', 'null') then
       array['invalid_payload', 'external_id must be a string']
     when pg_catalog.length(p_payload ->> 'external_id') > 200 then
       array['invalid_payload', 'external_id is longer than 200 characters']
     when p_payload ? 'attributes'
          and pg_catalog.jsonb_typeof(p_payload -> 'attributes') not in ('object', 'null') then
       array['invalid_payload', 'attributes must be an object']
     when p_payload ? 'consent'
          and pg_catalog.jsonb_typeof(p_payload -> 'consent') not in ('object', 'null') then
       array['invalid_payload', 'consent must be an object']
     when pg_catalog.jsonb_typeof(p_payload -> 'consent') = 'object'
          and (pg_catalog.jsonb_typeof(p_payload #> '{consent,at}') not in ('string', 'null')
               or not pgflow._is_timestamp(p_payload #>> '{consent,at}')) then
       array['invalid_payload', 'consent.at must be an ISO 8601 time, e.g. 2026-11-23T14:59:00Z']
     when pg_catalog.jsonb_typeof(p_payload -> 'consent') = 'object'
          and (pg_catalog.jsonb_typeof(p_payload #> '{consent,text}') not in ('string', 'null')
               or pg_catalog.jsonb_typeof(p_payload #> '{consent,source}') not in ('string', 'null')) then
       array['invalid_payload', 'consent.text and consent.source must be strings']
     when pg_catalog.jsonb_typeof(p_payload -> 'consent') = 'object'
          and (pg_catalog.jsonb_typeof(p_payload #> '{consent,ip}') not in ('string', 'null')
               or pg_catalog.length(p_payload #>> '{consent,ip}') > 64) then
       array['invalid_payload', 'consent.ip must be a string of at most 64 characters']
     when pg_catalog.jsonb_typeof(p_payload -> 'consent') = 'object'
          and (pg_catalog.jsonb_typeof(p_payload #> '{consent,user_agent}') not in ('string', 'null')
               or pg_catalog.length(p_payload #>> '{consent,user_agent}') > 512) then
       array['invalid_payload', 'consent.user_agent must be a string of at most 512 characters']
     when p_refusal is not null then
       array[p_refusal ->> 'error', p_refusal ->> 'detail']
     when p_phone is null or p_phone !~ '^\+[1-9][0-9]{6,14}$' then
       array['invalid_phone', coalesce(p_phone_error, 'not a valid phone number')]
     when nullif(p_payload ->> 'email', '') is not null
          and p_payload ->> 'email' !~ '^[^@\s]+@[^@\s]+$' then
       array['invalid_email', 'email is not an address']
     when nullif(pg_catalog.btrim(p_payload ->> 'timezone'), '') is not null
          and not pgflow._is_time_zone(pg_catalog.btrim(p_payload ->> 'timezone')) then
       array['invalid_timezone', pg_catalog.format(
         'unknown time zone %L (use an IANA name like America/Chicago)',
         pg_catalog.btrim(p_payload ->> 'timezone'))]
  end;
end;
$_$;
CREATE FUNCTION pgflow._line_transport(p_number text) RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select coalesce((select c.transport from pgflow.campaign_numbers cn
                     join pgflow.campaigns c on c.id = cn.campaign_id
                    where cn.number = p_number
                    order by (c.status <> 'archived') desc, c.id desc limit 1), 'retell')
$$;
CREATE FUNCTION pgflow._live_conversation(p_ended pgflow.conversations, p_now timestamp with time zone) RETURNS pgflow.conversations
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_row pgflow.conversations;
begin
  select * into v_row from pgflow.conversations
   where contact_id = p_ended.contact_id and from_number = p_ended.from_number
     and status <> 'ended';
  if found then
    return v_row;
  end if;
  perform pgflow._set_reason('lead wrote after the conversation ended');
  insert into pgflow.conversations
    (contact_id, campaign_id, agent_id, from_number, provider_chat_id, chat_status,
     created_at, updated_at)
  values (p_ended.contact_id, p_ended.campaign_id, p_ended.agent_id, p_ended.from_number,
          p_ended.provider_chat_id, p_ended.chat_status, p_now, p_now)
  on conflict (contact_id, from_number) where status <> 'ended' do nothing
  returning * into v_row;
  if v_row.id is null then
    select * into v_row from pgflow.conversations
     where contact_id = p_ended.contact_id and from_number = p_ended.from_number
       and status <> 'ended';
  end if;
  return v_row;
end;
$$;
CREATE FUNCTION pgflow._log_inserts() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_reason text := nullif(pg_catalog.current_setting('pgflow.reason', true), '');
begin
  if tg_table_name = 'messages' then
    insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
    select coalesce(n.updated_at, pg_catalog.now()), 'message', n.id, null, n.delivery_status,
           v_reason
      from new_rows n order by n.id;
  elsif tg_table_name = 'conversations' then
    insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
    select coalesce(n.updated_at, pg_catalog.now()), 'conversation', n.id, null, n.status,
           v_reason
      from new_rows n order by n.id;
  else
    insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
    select coalesce(n.updated_at, pg_catalog.now()), pg_catalog.rtrim(tg_table_name, 's'), n.id,
           null, n.status, v_reason
      from new_rows n order by n.id;
  end if;
  return null;
end;
$$;
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
CREATE FUNCTION pgflow._marketing_slot(p_contact pgflow.contacts, p_campaign pgflow.campaigns, p_now timestamp with time zone, OUT at timestamp with time zone, OUT rule text) RETURNS record
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow._merge_objects(p_objects jsonb[]) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow._needs_person(p_conversation pgflow.conversations, p_contact pgflow.contacts) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    SET search_path TO ''
    AS $$
  select p_conversation.review_requested_at is not null
      or (p_contact.held_at is not null
          and (p_conversation.status <> 'ended' or p_conversation.conversion_status = 'escalated'))
$$;
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
    number_slot_at timestamp with time zone,
    chat_id text,
    chat_message_id text,
    intent text,
    deferred_reason text,
    provider_status text,
    carrier_error_code integer,
    transport text,
    receipt_checked_at timestamp with time zone,
    deferred_rule text,
    CONSTRAINT messages_attempts_nonnegative CHECK ((attempts >= 0)),
    CONSTRAINT messages_campaign_has_enrollment CHECK (((kind <> 'campaign'::text) OR (enrollment_id IS NOT NULL))),
    CONSTRAINT messages_campaign_has_step CHECK (((kind = 'campaign'::text) = (step_position IS NOT NULL))),
    CONSTRAINT messages_delivered_has_time CHECK (((delivery_status <> 'delivered'::text) OR (delivered_at IS NOT NULL))),
    CONSTRAINT messages_delivery_status_valid CHECK ((delivery_status = ANY (ARRAY['pending'::text, 'queued'::text, 'sending'::text, 'sent'::text, 'delivered'::text, 'failed'::text, 'dead_letter'::text, 'suppressed'::text, 'received'::text]))),
    CONSTRAINT messages_direction_valid CHECK ((direction = ANY (ARRAY['outbound'::text, 'inbound'::text]))),
    CONSTRAINT messages_encoding_valid CHECK ((encoding = ANY (ARRAY['gsm7'::text, 'ucs2'::text]))),
    CONSTRAINT messages_inbound_is_lead CHECK (((direction = 'inbound'::text) = (kind = 'lead'::text))),
    CONSTRAINT messages_inbound_received CHECK (((direction = 'inbound'::text) = (delivery_status = 'received'::text))),
    CONSTRAINT messages_intent_inbound CHECK (((intent IS NULL) OR (direction = 'inbound'::text))),
    CONSTRAINT messages_intent_valid CHECK ((intent = ANY (ARRAY['opt_out'::text, 'opt_in'::text, 'help'::text, 'human'::text, 'maybe_opt_out'::text, 'none'::text]))),
    CONSTRAINT messages_kind_valid CHECK ((kind = ANY (ARRAY['campaign'::text, 'agent'::text, 'system'::text, 'human'::text, 'lead'::text]))),
    CONSTRAINT messages_segments_positive CHECK ((segments > 0)),
    CONSTRAINT messages_sent_has_time CHECK (((delivery_status <> ALL (ARRAY['sent'::text, 'delivered'::text])) OR (sent_at IS NOT NULL))),
    CONSTRAINT messages_transport_valid CHECK ((transport = ANY (ARRAY['retell'::text, 'twilio'::text])))
);
CREATE FUNCTION pgflow._on_carrier_error(p_message pgflow.messages, p_code integer, p_now timestamp with time zone) RETURNS text
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_class text := pgflow.carrier_error_class(p_code);
  v_reason text := pg_catalog.format('the carrier refused a text: error %s (%s)',
                                     coalesce(p_code::text, '-'), v_class);
  v_campaign pgflow.campaigns;
  v_max integer;
  v_filtered integer;
  r record;
begin
  select c.* into v_campaign
    from pgflow.conversations cv
    left join pgflow.enrollments e on e.id = p_message.enrollment_id
    join pgflow.campaigns c on c.id = coalesce(e.campaign_id, cv.campaign_id)
   where cv.id = p_message.conversation_id;
  if v_class = 'bad_number' then
    for r in select id from pgflow.enrollments
              where contact_id = p_message.contact_id and status in ('active', 'paused')
              order by id
    loop
      perform pgflow.stop_enrollment(r.id, v_reason, p_now);
    end loop;
    for r in select id from pgflow.conversations
              where contact_id = p_message.contact_id and status <> 'ended' order by id
    loop
      perform pgflow.set_outcome(r.id, 'discarded', v_reason, 'rule', p_now);
    end loop;
  elsif v_class = 'opted_out' then
    perform pgflow.opt_out_contact(p_message.contact_id, 'carrier', null, v_reason, p_now);
  elsif v_class in ('filtered', 'sender') and v_campaign.id is not null then
    if v_class = 'filtered' then
      select pg_catalog.count(*) into v_filtered
        from pgflow.messages m
        join pgflow.conversations cv on cv.id = m.conversation_id
        left join pgflow.enrollments e on e.id = m.enrollment_id
       where coalesce(e.campaign_id, cv.campaign_id) = v_campaign.id
         and m.direction = 'outbound' and m.carrier_error_code = 30007
         and m.updated_at > p_now - interval '1 hour';
      perform pgflow.open_alert('carrier_filtered:' || v_campaign.slug, 'warning',
        pg_catalog.format('campaign %s: %s of its texts filtered by the carrier in the last hour (%s pauses it)',
                          v_campaign.slug, v_filtered, 3),
        pg_catalog.jsonb_build_object('campaign', v_campaign.slug, 'message_id', p_message.id,
                                      'error_code', p_code, 'last_hour', v_filtered), p_now);
      if v_filtered < 3 then
        return v_class;
      end if;
      v_reason := pg_catalog.format('%s texts filtered by the carrier (error 30007) within an hour',
                                    v_filtered);
    end if;
    update pgflow.campaigns set status = 'paused', updated_at = p_now
     where id = v_campaign.id and status = 'active';
    if found then
      insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
      values (p_now, 'campaign', v_campaign.id, 'active', 'paused', v_reason);
    end if;
    perform pgflow.open_alert(
      case v_class when 'filtered' then 'carrier_paused:' else 'carrier_sender:' end
        || v_campaign.slug, 'critical',
      pg_catalog.format('campaign %s paused: %s', v_campaign.slug, v_reason),
      pg_catalog.jsonb_build_object('campaign', v_campaign.slug, 'message_id', p_message.id,
                                    'error_code', p_code), p_now);
  elsif v_class = 'transient' then
    v_max := coalesce(v_campaign.max_attempts, 6);
    if p_message.attempts < v_max then
      perform pgflow._set_reason(v_reason || ': trying again');
      update pgflow.messages
         set delivery_status = 'queued', provider_message_id = null, provider_status = null,
             send_after = p_now + p_message.attempts * interval '10 minutes',
             deferred_reason = v_reason || ': trying again', updated_at = p_now
       where id = p_message.id;
      perform pgflow._enqueue_after('send_sms', array[p_message.id], 10,
                                    p_now + p_message.attempts * interval '10 minutes');
      return 'retry';
    end if;
  end if;
  return v_class;
end;
$$;
CREATE FUNCTION pgflow._on_inbound(p_message_id bigint, p_engine_replies boolean, p_now timestamp with time zone, p_carrier_answered text DEFAULT NULL::text) RETURNS text
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  m pgflow.messages;
  v_contact pgflow.contacts;
  v_intent text;
  v_rule text;
  v_conversation pgflow.conversations;
  v_campaign pgflow.campaigns;
  v_debounce interval;
begin
  select * into m from pgflow.messages where id = p_message_id;
  select * into v_contact from pgflow.contacts where id = m.contact_id for update;
  select i.intent, i.rule into v_intent, v_rule from pgflow.inbound_intent(m.body) i;
  update pgflow.messages set intent = v_intent where id = m.id;
  update pgflow.conversations
     set last_inbound_at = greatest(last_inbound_at, m.created_at), updated_at = p_now,
         classify_requested_at = null  -- the conversation goes on: classify it when quiet
   where id = m.conversation_id and status <> 'ended';
  if v_contact.opted_out_at is not null then
    if v_intent = 'opt_in' or p_carrier_answered = 'START' then
      perform pgflow.opt_in_contact(v_contact.id,
        case when p_carrier_answered = 'START' then 'carrier' else v_rule end, m.id, m.body, p_now);
      return 'opt_in';
    end if;
    return 'ignored_opted_out';
  end if;
  if v_intent = 'opt_out' or p_carrier_answered = 'STOP' then
    perform pgflow.opt_out_contact(v_contact.id,
      case when p_carrier_answered = 'STOP' then 'carrier' else v_rule end, m.id, m.body, p_now);
    return 'opt_out';
  end if;
  perform pgflow._engage(m.conversation_id, m.created_at, p_now);
  select * into v_conversation from pgflow.conversations where id = m.conversation_id;
  if v_conversation.status = 'ended' then
    return 'recorded';
  end if;
  if v_intent = 'human' then
    perform pgflow._escalate(v_conversation.id, 'the lead asked for a person: '
                             || pg_catalog.left(m.body, 200), 'rule', true, p_now);
    return 'human';
  end if;
  if p_carrier_answered = 'HELP' then
    return 'help';  -- the carrier sent its help text
  end if;
  if v_intent = 'help' then
    select * into v_campaign from pgflow.campaigns where id = v_conversation.campaign_id;
    perform pgflow._system_message(v_conversation.id,
      coalesce(v_campaign.help_text,
               pg_catalog.format('%s: reply STOP to opt out. Msg & data rates may apply.',
                                 coalesce(v_campaign.name, 'Help'))),
      'help:' || m.id, p_now);
    return 'help';
  end if;
  if v_intent = 'maybe_opt_out' then
    perform pgflow._enqueue('judge_opt_out', array[m.id], 30);
  end if;
  if p_engine_replies then
    select a.reply_debounce into v_debounce from pgflow.agents a
     where a.id = v_conversation.agent_id;
    perform pgflow._enqueue_after('agent_reply', array[m.id], 15,
                                  pg_catalog.now() + coalesce(v_debounce, interval '3 seconds'));
  end if;
  return v_intent;
end;
$$;
CREATE FUNCTION pgflow._phone_hash(p_phone text) RETURNS bytea
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
begin
  return (select pg_catalog.sha256(s.value || pg_catalog.convert_to(p_phone, 'UTF8'))
            from pgflow.secrets s
           where s.name = 'phone_hash_key');
end;
$$;
CREATE FUNCTION pgflow._pool_from_number() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow._provider_rank(p_status text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
  select case p_status
    when 'accepted' then 0 when 'scheduled' then 0 when 'queued' then 1 when 'sending' then 2
    when 'sent' then 3 when 'delivered' then 4 when 'undelivered' then 4 when 'failed' then 4
    when 'canceled' then 4 end
$$;
CREATE FUNCTION pgflow._record_retell_analysis(p_conversation_id bigint, p_chat jsonb, p_now timestamp with time zone) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_status text := pg_catalog.lower(pg_catalog.btrim(
    p_chat #>> '{chat_analysis,custom_analysis_data,conversion_status}'));
  v_row pgflow.conversations;
  v_summary text := pg_catalog.left(p_chat #>> '{chat_analysis,chat_summary}', 1000);
begin
  if v_status is null or v_status not in
     ('success', 'qualified', 'unqualified', 'escalated', 'no_response', 'discarded') then
    return;
  end if;
  insert into pgflow.outcome_signals
    (conversation_id, source, status, reason, transcript_hash, created_at)
  values (p_conversation_id, 'retell', v_status, v_summary,
          coalesce(p_chat ->> 'chat_id', ''), p_now)
  on conflict (conversation_id, source, transcript_hash) do nothing;
  if not found then
    return;
  end if;
  select * into v_row from pgflow.conversations where id = p_conversation_id;
  if v_row.status = 'ended' and v_row.outcome_source <> 'human'
     and v_row.conversion_status <> v_status then
    perform pgflow._flag_review(p_conversation_id, pg_catalog.format(
      'retell says %s (%s); it ended %s by %s (%s)', v_status, coalesce(v_summary, '-'),
      v_row.conversion_status, v_row.outcome_source, coalesce(v_row.outcome_reason, '-')),
      p_now);
  end if;
end;
$$;
CREATE FUNCTION pgflow._redact(p_text text, p_strings text[]) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
declare
  v_text text := p_text;
  v_string text;
begin
  foreach v_string in array coalesce(p_strings, '{}') loop
    if v_text is not null and pg_catalog.length(v_string) >= 2 then
      v_text := pg_catalog.regexp_replace(v_text,
        '(?<![[:alnum:]])'
        || pg_catalog.regexp_replace(v_string, '([^[:alnum:][:space:]])', '\\\1', 'g')
        || '(?![[:alnum:]])',
        '[erased]', 'g');
    end if;
  end loop;
  return v_text;
end;
$$;
CREATE FUNCTION pgflow._reply_refusal(p_trigger pgflow.messages) RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select case
    when cv.id is null then 'no such conversation'
    when cv.status = 'ended' then 'conversation ended'
    when ct.opted_out_at is not null then 'contact opted out'
    when ct.held_at is not null then 'a person holds this lead'
    when exists (select 1 from pgflow.messages x
                  where x.conversation_id = cv.id and x.direction = 'inbound'
                    and x.id > p_trigger.id)
      then 'a later text will be answered'
    when exists (select 1 from pgflow.messages x
                  where x.conversation_id = cv.id and x.direction = 'outbound'
                    and x.kind in ('agent', 'human') and x.id > p_trigger.id)
      then 'already answered'
    when cv.agent_turns >= coalesce(a.max_turns, 10) then 'the agent has used its turns'
  end
  from (select 1) one
  left join pgflow.conversations cv on cv.id = p_trigger.conversation_id
  left join pgflow.contacts ct on ct.id = cv.contact_id
  left join pgflow.agents a on a.id = cv.agent_id
$$;
CREATE FUNCTION pgflow._request_classification(p_conversation_id bigint, p_now timestamp with time zone) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  -- a person holding the lead gives the outcome; no classifier ends it under them
  update pgflow.conversations cv set classify_requested_at = p_now, updated_at = p_now
   where cv.id = p_conversation_id and cv.status <> 'ended' and cv.classify_requested_at is null
     and not exists (select 1 from pgflow.contacts ct
                      where ct.id = cv.contact_id and ct.held_at is not null);
  if not found then
    return false;
  end if;
  perform pgflow._enqueue('classify_outcome', array[p_conversation_id], 5);
  return true;
end;
$$;
CREATE FUNCTION pgflow._requeue_orphans(p_now timestamp with time zone, p_limit integer DEFAULT 1000) RETURNS integer
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow._segments(p_body text, p_encoding text) RETURNS integer
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow._set_reason(p_reason text) RETURNS void
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
begin
  perform pg_catalog.set_config('pgflow.reason', coalesce(p_reason, ''), true);
end;
$$;
CREATE FUNCTION pgflow._short_key(p_id text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
  select case when pg_catalog.length(p_id) <= 200 then p_id else 'md5:' || pg_catalog.md5(p_id) end
$$;
CREATE FUNCTION pgflow._sms_words(p_text text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
  select pg_catalog.btrim(pg_catalog.regexp_replace(
           pg_catalog.regexp_replace(
             pg_catalog.regexp_replace(
               pg_catalog.translate(pg_catalog.lower(coalesce(p_text, '')), '’‘`´', ''''''''''),
               '''', '', 'g'),
             '[^[:alnum:]]+', ' ', 'g'),
           '\s+', ' ', 'g'))
$$;
CREATE FUNCTION pgflow._state_code(p_lead jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $_$
declare
  v jsonb := coalesce(nullif(p_lead -> 'state', 'null'::jsonb),
                      case when pg_catalog.jsonb_typeof(p_lead -> 'address') = 'object'
                           then nullif(p_lead #> '{address,state}', 'null'::jsonb) end);
  t text;
begin
  if v is null then
    return null;
  elsif pg_catalog.jsonb_typeof(v) <> 'string' then
    return 'ZZ';
  end if;
  -- the text without dots and with single spaces: 'N.Y.' is NY, 'New  York' New York
  t := pg_catalog.btrim(pg_catalog.regexp_replace(
         pg_catalog.translate(v #>> '{}', '.', ''), '\s+', ' ', 'g'));
  if t = '' then
    return null;
  elsif t ~ '^[A-Za-z]{2}$' then
    return pg_catalog.upper(t);
  end if;
  return coalesce((
    select n.code from (values
      ('AL', 'alabama'), ('AK', 'alaska'), ('AZ', 'arizona'), ('AR', 'arkansas'),
      ('CA', 'california'), ('CO', 'colorado'), ('CT', 'connecticut'), ('DE', 'delaware'),
      ('DC', 'district of columbia'), ('DC', 'washington dc'), ('FL', 'florida'),
      ('GA', 'georgia'), ('HI', 'hawaii'), ('ID', 'idaho'), ('IL', 'illinois'),
      ('IN', 'indiana'), ('IA', 'iowa'), ('KS', 'kansas'), ('KY', 'kentucky'),
      ('LA', 'louisiana'), ('ME', 'maine'), ('MD', 'maryland'), ('MA', 'massachusetts'),
      ('MI', 'michigan'), ('MN', 'minnesota'), ('MS', 'mississippi'), ('MO', 'missouri'),
      ('MT', 'montana'), ('NE', 'nebraska'), ('NV', 'nevada'), ('NH', 'new hampshire'),
      ('NJ', 'new jersey'), ('NM', 'new mexico'), ('NY', 'new york'),
      ('NC', 'north carolina'), ('ND', 'north dakota'), ('OH', 'ohio'), ('OK', 'oklahoma'),
      ('OR', 'oregon'), ('PA', 'pennsylvania'), ('RI', 'rhode island'),
      ('SC', 'south carolina'), ('SD', 'south dakota'), ('TN', 'tennessee'),
      ('TX', 'texas'), ('UT', 'utah'), ('VT', 'vermont'), ('VA', 'virginia'),
      ('WA', 'washington'), ('WV', 'west virginia'), ('WI', 'wisconsin'),
      ('WY', 'wyoming'), ('AS', 'american samoa'), ('GU', 'guam'),
      ('MP', 'northern mariana islands'), ('PR', 'puerto rico'),
      ('VI', 'us virgin islands'), ('VI', 'virgin islands'),
      ('AB', 'alberta'), ('BC', 'british columbia'), ('MB', 'manitoba'),
      ('NB', 'new brunswick'), ('NL', 'newfoundland and labrador'),
      ('NS', 'nova scotia'), ('NT', 'northwest territories'), ('NU', 'nunavut'),
      ('ON', 'ontario'), ('PE', 'prince edward island'), ('QC', 'quebec'),
      ('SK', 'saskatchewan'), ('YT', 'yukon')) as n(code, name)
     where n.name = pg_catalog.lower(t)), 'ZZ');
end;
$_$;
CREATE TABLE pgflow.suppressions (
    phone_hash bytea NOT NULL,
    suppressed_at timestamp with time zone NOT NULL,
    source text NOT NULL,
    forgotten_at timestamp with time zone,
    CONSTRAINT suppressions_hash_length CHECK ((length(phone_hash) = 32)),
    CONSTRAINT suppressions_source_valid CHECK ((source = ANY (ARRAY['keyword'::text, 'phrase'::text, 'llm'::text, 'operator'::text, 'import'::text, 'webhook'::text, 'carrier'::text, 'erasure'::text])))
);
CREATE FUNCTION pgflow._suppression(p_phone text) RETURNS pgflow.suppressions
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  v_row pgflow.suppressions;
begin
  select * into v_row from pgflow.suppressions where phone_hash = pgflow._phone_hash(p_phone);
  return v_row;
end;
$$;
CREATE FUNCTION pgflow._system_message(p_conversation_id bigint, p_body text, p_dedupe_key text, p_now timestamp with time zone) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_id bigint;
begin
  perform pgflow._set_reason('system message ' || pg_catalog.split_part(p_dedupe_key, ':', 1));
  insert into pgflow.messages
    (conversation_id, contact_id, direction, kind, body, delivery_status, segments, encoding,
     dedupe_key, created_at, updated_at)
  select cv.id, cv.contact_id, 'outbound', 'system', p_body, 'queued',
         pgflow.sms_segments(p_body), pgflow.sms_encoding(p_body), p_dedupe_key, p_now, p_now
    from pgflow.conversations cv where cv.id = p_conversation_id
  on conflict (dedupe_key) do nothing
  returning id into v_id;
  if v_id is not null then
    perform pgflow._enqueue('send_sms', array[v_id], 20);
  end if;
  return v_id;
end;
$$;
CREATE FUNCTION pgflow._template_values(p_contact pgflow.contacts) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE
    SET search_path TO ''
    AS $$
begin
  return p_contact.attributes || pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
    'first_name', p_contact.first_name, 'last_name', p_contact.last_name,
    'email', p_contact.email));
end;
$$;
CREATE FUNCTION pgflow._tick_health(p_now timestamp with time zone, OUT checkable boolean, OUT ok boolean, OUT detail text) RETURNS record
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $_$
declare
  v_cron_db text := pg_catalog.current_setting('cron.database_name', true);
  v_preloaded boolean :=
    pg_catalog.current_setting('shared_preload_libraries') ~ '(^|[ ,])pg_cron([ ,]|$)';
  v_launcher boolean := exists (select 1 from pg_catalog.pg_stat_activity
                                 where backend_type = 'pg_cron launcher');
  v_tick record;
begin
  checkable := true;
  if not v_preloaded then
    ok := false; detail := 'pg_cron is not in shared_preload_libraries'; return;
  end if;
  if v_cron_db is distinct from pg_catalog.current_database() then
    checkable := false; ok := true;
    detail := pg_catalog.format('cron database is %s: its schedules are not visible here',
                                coalesce(v_cron_db, '(unset)'));
    return;
  end if;
  if pg_catalog.to_regclass('cron.job') is null then
    ok := false; detail := 'extension pg_cron is not created'; return;
  end if;
  if not v_launcher then
    ok := false;
    detail := 'pg_cron''s launcher is not running: nothing is scheduled (restart PostgreSQL)';
    return;
  end if;
  execute $q$
    select j.jobid, j.active,
           (select pg_catalog.max(d.end_time) from cron.job_run_details d
             where d.jobid = j.jobid and d.status = 'succeeded') as last_ok,
           (select d.return_message from cron.job_run_details d
             where d.jobid = j.jobid and d.status = 'failed'
             order by d.end_time desc nulls last limit 1) as last_error
      from cron.job j where j.jobname = 'pgflow-tick'
  $q$ into v_tick;
  if v_tick.jobid is null then
    ok := false; detail := 'cron job pgflow-tick is not scheduled';
  elsif not v_tick.active then
    ok := false; detail := 'cron job pgflow-tick is inactive';
  elsif v_tick.last_ok > p_now - interval '3 minutes' then
    ok := true;
    detail := pg_catalog.format('last ran %s s ago',
                                pg_catalog.round(extract(epoch from p_now - v_tick.last_ok)));
  elsif v_tick.last_ok is null and v_tick.last_error is null then
    ok := true; detail := 'scheduled; no run yet';
  elsif v_tick.last_error is not null then
    ok := false; detail := 'failing: ' || pg_catalog.left(v_tick.last_error, 200);
  else
    ok := false;
    detail := pg_catalog.format('last successful run %s ago', p_now - v_tick.last_ok);
  end if;
end;
$_$;
CREATE FUNCTION pgflow._transcript_hash(p_conversation_id bigint) RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select pg_catalog.md5(coalesce(pg_catalog.string_agg(m.direction || ':' || m.body, E'\n'
                                                     order by m.created_at, m.id), ''))
    from pgflow.messages m
   where m.conversation_id = p_conversation_id
     and (m.direction = 'inbound' or m.delivery_status in ('queued', 'sending', 'sent', 'delivered'))
$$;
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
CREATE FUNCTION pgflow._validity_seconds(p_kind text, p_contact pgflow.contacts, p_campaign pgflow.campaigns, p_now timestamp with time zone) RETURNS integer
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
declare
  v_tz text := coalesce(p_contact.timezone, p_campaign.timezone, 'America/New_York');
  v_end timestamptz;
begin
  if p_kind = 'campaign' and p_campaign.window_end is not null then
    v_end := ((p_now at time zone v_tz)::date + p_campaign.window_end) at time zone v_tz;
    return least(36000, greatest(60, extract(epoch from v_end - p_now)::integer));
  end if;
  return case p_kind when 'agent' then 1800 when 'human' then 14400 else 36000 end;
end;
$$;
CREATE FUNCTION pgflow.add_console_user(p_email text, p_role text, p_password_hash text, p_actor text, p_user_id bigint DEFAULT NULL::bigint, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_actor text := pgflow._actor(p_actor);
  v_email text := pg_catalog.lower(pg_catalog.btrim(coalesce(p_email, '')));
  v_user pgflow.console_users;
  v_result text := 'added';
begin
  if v_email !~ '^[^@\s]+@[^@\s]+$' or pg_catalog.length(v_email) > 254 then
    raise exception '% is not an email address', pg_catalog.left(v_email, 80) using errcode = 'PF003';
  end if;
  if p_role is null or p_role not in ('agent', 'manager', 'admin') then
    raise exception 'a role is agent, manager or admin (not %)', coalesce(p_role, 'none')
      using errcode = 'PF003';
  end if;
  if p_password_hash is null or p_password_hash not like 'scrypt$%' then
    raise exception 'the password must be hashed with scrypt' using errcode = 'PF003';
  end if;
  insert into pgflow.console_users (email, role, password_hash, created_at, updated_at)
  values (v_email, p_role, p_password_hash, v_now, v_now)
  on conflict (email) do nothing
  returning * into v_user;
  if v_user.id is null then
    update pgflow.console_users
       set role = p_role, password_hash = p_password_hash, disabled_at = null, updated_at = v_now
     where email = v_email and disabled_at is not null
    returning * into v_user;
    if v_user.id is null then
      raise exception 'a console user % exists already', v_email using errcode = 'PF005';
    end if;
    v_result := 'enabled';
  end if;
  perform pgflow._audit(v_actor, p_user_id, 'user_add', null, null,
    pg_catalog.jsonb_build_object('email', v_email, 'role', p_role, 'result', v_result), v_now);
  return pg_catalog.jsonb_build_object('result', v_result, 'user_id', v_user.id,
                                       'email', v_email, 'role', p_role);
end;
$_$;
CREATE FUNCTION pgflow.agent_turn(p_trigger_id bigint, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  m pgflow.messages;
  v_conversation pgflow.conversations;
  v_contact pgflow.contacts;
  v_campaign pgflow.campaigns;
  v_agent pgflow.agents;
  v_refusal text;
begin
  select * into m from pgflow.messages where id = p_trigger_id and direction = 'inbound';
  if not found then
    return '{"answer": false, "reason": "no such lead text"}';
  end if;
  v_refusal := pgflow._reply_refusal(m);
  if v_refusal is not null then
    return pg_catalog.jsonb_build_object('answer', false, 'reason', v_refusal);
  end if;
  if exists (select 1 from pgflow.messages x where x.conversation_id = m.conversation_id
              and x.direction = 'inbound' and x.intent = 'maybe_opt_out') then
    return '{"answer": false, "reason": "an opt-out judgment is pending", "retry_seconds": 2}';
  end if;
  select * into v_conversation from pgflow.conversations where id = m.conversation_id;
  select * into v_contact from pgflow.contacts where id = m.contact_id;
  select * into v_campaign from pgflow.campaigns where id = v_conversation.campaign_id;
  select * into v_agent from pgflow.agents where id = v_conversation.agent_id;
  return pg_catalog.jsonb_build_object(
    'answer', true,
    'conversation_id', v_conversation.id,
    'turns', v_conversation.agent_turns,
    'max_turns', v_agent.max_turns,
    'agent', pg_catalog.jsonb_build_object('name', v_agent.name, 'prompt', v_agent.prompt,
                                           'model', v_agent.model),
    'campaign', pg_catalog.jsonb_build_object('name', v_campaign.name, 'goal', v_campaign.goal),
    'variables', pgflow._agent_variables(v_contact, v_campaign, v_agent, null) - 'sms_body',
    'transcript', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'role', case when t.direction = 'inbound' then 'lead' else 'agent' end,
               'text', t.body, 'at', t.created_at) order by t.created_at, t.id)
        from (select x.* from pgflow.messages x
               where x.conversation_id = v_conversation.id
                 and (x.direction = 'inbound'
                      or x.delivery_status in ('queued', 'sending', 'sent', 'delivered'))
               order by x.created_at desc, x.id desc limit 40) t), '[]'));
end;
$$;
CREATE FUNCTION pgflow.alert_notice(p_alert_id bigint) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select case
    when a.notified_at is null then
      pg_catalog.jsonb_build_object('notice', 'opened', 'alert', pg_catalog.to_jsonb(a))
    when a.resolved_at is not null and a.resolve_notified_at is null then
      pg_catalog.jsonb_build_object('notice', 'resolved', 'alert', pg_catalog.to_jsonb(a))
  end
  from pgflow.alerts a where a.id = p_alert_id
$$;
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
CREATE FUNCTION pgflow.campaign_refusal(p_slug text) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
begin
  return (
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
    left join pgflow.campaigns c on c.slug = p_slug);
end;
$$;
CREATE FUNCTION pgflow.cap_open(p_cap integer, p_recent timestamp with time zone[], p_at timestamp with time zone) RETURNS timestamp with time zone
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow.cap_rule(p_rules text[], p_campaign_cap integer) RETURNS text
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow.carrier_error_class(p_code integer) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
  select case
    when p_code in (21211, 21614, 21635, 30005, 30006) then 'bad_number'
    when p_code = 21610 then 'opted_out'
    when p_code = 30007 then 'filtered'
    when p_code = 30034 then 'sender'
    when p_code = 30003 then 'transient'
    when p_code = 20429 then 'rate_limited'
    else 'unknown' end
$$;
CREATE FUNCTION pgflow.change_console_user(p_email text, p_action text, p_password_hash text, p_actor text, p_user_id bigint DEFAULT NULL::bigint, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_actor text := pgflow._actor(p_actor);
  v_email text := pg_catalog.lower(pg_catalog.btrim(coalesce(p_email, '')));
  v_user pgflow.console_users;
  v_revoked integer;
begin
  select * into v_user from pgflow.console_users where email = v_email for update;
  if not found then
    raise exception 'no console user %', pg_catalog.left(v_email, 80) using errcode = 'PF002';
  end if;
  if p_action = 'disable' then
    update pgflow.console_users set disabled_at = coalesce(disabled_at, v_now), updated_at = v_now
     where id = v_user.id;
  elsif p_action = 'password' then
    if p_password_hash is null or p_password_hash not like 'scrypt$%' then
      raise exception 'the password must be hashed with scrypt' using errcode = 'PF003';
    end if;
    update pgflow.console_users set password_hash = p_password_hash, updated_at = v_now
     where id = v_user.id;
  elsif p_action is distinct from 'revoke' then
    raise exception 'unknown user action %', coalesce(p_action, '(none)') using errcode = 'PF003';
  end if;
  update pgflow.console_sessions set revoked_at = v_now
   where user_id = v_user.id and revoked_at is null and expires_at > v_now;
  get diagnostics v_revoked = row_count;
  perform pgflow._audit(v_actor, p_user_id,
    case p_action when 'disable' then 'user_disable' when 'password' then 'user_password'
                  else 'sessions_revoke' end,
    null, null, pg_catalog.jsonb_build_object('email', v_email, 'sessions_ended', v_revoked),
    v_now);
  return pg_catalog.jsonb_build_object('result', p_action, 'email', v_email,
                                       'sessions_ended', v_revoked);
end;
$_$;
CREATE FUNCTION pgflow.chat_to_end(p_conversation_id bigint) RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select provider_chat_id from pgflow.conversations
   where id = p_conversation_id and coalesce(chat_status, 'ongoing') = 'ongoing'
$$;
CREATE FUNCTION pgflow.claim_message(p_message_id bigint, p_worker uuid DEFAULT NULL::uuid, p_checked_chat text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_claim jsonb := pgflow._claim_one(p_message_id, p_worker, p_checked_chat,
                                     coalesce(p_now, pg_catalog.now()));
begin
  perform pgflow._count_usage(array[v_claim]);
  return v_claim - 'usage_day' - 'usage_limited';
end;
$$;
CREATE FUNCTION pgflow.claim_messages(p_ids bigint[], p_worker uuid DEFAULT NULL::uuid, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_claims jsonb := '{}';
  v_claim jsonb;
  v_id bigint;
  v_rest jsonb[] := '{}';
begin
  perform from pgflow.sending_numbers n
   where (n.per_second is not null or n.daily_segments is not null)
     and n.number in (select cv.from_number from pgflow.messages m
                        join pgflow.conversations cv on cv.id = m.conversation_id
                       where m.id = any (p_ids))
   order by n.id
     for update of n;
  for v_id in select distinct i from pg_catalog.unnest(p_ids) i order by i loop
    v_claim := pgflow._claim_one(v_id, p_worker, null, v_now);
    if (v_claim ->> 'usage_limited')::boolean then
      perform pgflow._count_usage(array[v_claim]);
    elsif v_claim ->> 'action' = 'send' then
      v_rest := v_rest || v_claim;
    end if;
    v_claims := v_claims || pg_catalog.jsonb_build_object(v_id::text, v_claim);
  end loop;
  perform pgflow._count_usage(v_rest);
  return (select pg_catalog.jsonb_agg((v_claims -> i::text) - 'usage_day' - 'usage_limited'
                                      order by ord)
            from pg_catalog.unnest(p_ids) with ordinality as t(i, ord));
end;
$$;
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
    deferred_rule text,
    CONSTRAINT enrollments_active_scheduled CHECK (((status <> 'active'::text) OR ((next_step IS NOT NULL) AND (next_message_at IS NOT NULL)))),
    CONSTRAINT enrollments_ended_consistent CHECK (((status = ANY (ARRAY['completed'::text, 'stopped'::text, 'opted_out'::text])) = (ended_at IS NOT NULL))),
    CONSTRAINT enrollments_next_step_positive CHECK (((next_step IS NULL) OR (next_step > 0))),
    CONSTRAINT enrollments_status_valid CHECK ((status = ANY (ARRAY['active'::text, 'paused'::text, 'completed'::text, 'stopped'::text, 'opted_out'::text]))),
    CONSTRAINT enrollments_stop_reason_given CHECK (((status <> ALL (ARRAY['stopped'::text, 'opted_out'::text])) OR (stop_reason IS NOT NULL)))
);
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
CREATE FUNCTION pgflow.console_alerts(p_limit integer DEFAULT 200) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(x)
                    order by (x.resolved_at is null) desc, x.opened_at desc, x.id desc), '[]')
    from (select al.id, al.kind, al.severity, al.message, al.occurrences, al.opened_at,
                 al.last_seen_at, al.resolved_at, al.notified_at,
                 (al.details ->> 'conversation_id')::bigint as conversation_id
            from pgflow.alerts al
           order by (al.resolved_at is null) desc, al.opened_at desc, al.id desc
           limit least(greatest(coalesce(p_limit, 200), 1), 1000)) x
$$;
CREATE FUNCTION pgflow.console_campaign_slugs() RETURNS text[]
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select coalesce(pg_catalog.array_agg(c.slug order by c.slug), '{}') from pgflow.campaigns c
$$;
CREATE FUNCTION pgflow.console_campaigns() RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
    'slug', c.slug, 'name', c.name, 'status', c.status, 'agent', a.name,
    'from_number', c.from_number, 'timezone', c.timezone,
    'window_start', c.window_start, 'window_end', c.window_end, 'window_days', c.window_days,
    'reply_timeout', c.reply_timeout::text, 'silence_timeout', c.silence_timeout::text,
    'daily_cap', c.daily_cap, 'max_attempts', c.max_attempts,
    'enrolled', (select pg_catalog.count(*) from pgflow.enrollments e where e.campaign_id = c.id),
    'steps', coalesce((select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'position', s.position, 'delay', s.delay::text, 'body', s.body)
                        order by s.position)
                         from pgflow.campaign_steps s where s.campaign_id = c.id), '[]'))
    order by c.slug), '[]')
    from pgflow.campaigns c left join pgflow.agents a on a.id = c.agent_id
$$;
CREATE FUNCTION pgflow.console_cursor() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select pg_catalog.concat_ws('.',
    coalesce((select pg_catalog.max(id) from pgflow.messages), 0),
    coalesce((select pg_catalog.max(id) from pgflow.events), 0),
    coalesce((select pg_catalog.max(id) from pgflow.alerts), 0),
    coalesce((select pg_catalog.max(id) from pgflow.audit_log), 0),
    coalesce((select pg_catalog.max(id) from pgflow.conversations), 0))
$$;
CREATE FUNCTION pgflow.console_dead_letters(p_campaign text DEFAULT NULL::text, p_limit integer DEFAULT 200) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(x)
                    order by x.failed_at desc, x.id desc), '[]')
    from (select d.id, d.campaign, d.phone, d.kind, d.attempts, d.delivery_error, d.failed_at,
                 d.contact_opted_out, d.step_position, d.body, m.conversation_id
            from pgflow.dead_letters d join pgflow.messages m on m.id = d.id
           where p_campaign is null or d.campaign = p_campaign
           order by d.failed_at desc, d.id desc
           limit least(greatest(coalesce(p_limit, 200), 1), 1000)) x
$$;
CREATE FUNCTION pgflow.console_review(p_limit integer DEFAULT 200) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(x)
                    order by x.review_requested_at, x.id), '[]')
    from (select r.id, r.phone, r.campaign, r.status, r.conversion_status, r.outcome_source,
                 r.review_reason, r.review_requested_at, r.signals
            from pgflow.review_queue r
           order by r.review_requested_at, r.id
           limit least(greatest(coalesce(p_limit, 200), 1), 1000)) x
$$;
CREATE FUNCTION pgflow.console_session(p_token_hash bytea, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_session pgflow.console_sessions;
  v_user pgflow.console_users;
begin
  select * into v_session from pgflow.console_sessions
   where token_hash = p_token_hash and revoked_at is null and expires_at > v_now;
  if not found then
    return null;
  end if;
  select * into v_user from pgflow.console_users
   where id = v_session.user_id and disabled_at is null;
  if not found then
    return null;
  end if;
  if v_session.last_seen_at < v_now - interval '1 minute' then
    update pgflow.console_sessions
       set last_seen_at = v_now,
           expires_at = greatest(expires_at, least(created_at + interval '7 days',
                                                   v_now + interval '12 hours'))
     where id = v_session.id;
  end if;
  return pg_catalog.jsonb_build_object('session_id', v_session.id, 'user_id', v_user.id,
    'email', v_user.email, 'role', v_user.role);
end;
$$;
CREATE FUNCTION pgflow.console_sign_in_user(p_email text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  with e as (select pg_catalog.lower(pg_catalog.btrim(coalesce(p_email, ''))) as email,
                    coalesce(p_now, pg_catalog.now()) as now),
  failures as (
    select a.attempted_at from pgflow.console_sign_ins a, e
     where a.email = e.email and not a.ok and a.attempted_at > e.now - interval '15 minutes'
       and a.attempted_at > coalesce((select pg_catalog.max(b.attempted_at)
                                        from pgflow.console_sign_ins b
                                       where b.email = e.email and b.ok), '-infinity')
     order by a.attempted_at desc limit 5)
  select pg_catalog.jsonb_build_object(
    'email', e.email,
    'user_id', u.id,
    'role', u.role,
    'password_hash', u.password_hash,
    'retry_after_seconds', case when (select pg_catalog.count(*) from failures) >= 5 then
      pg_catalog.ceil(extract(epoch from (select pg_catalog.min(attempted_at) from failures)
                                          + interval '15 minutes' - e.now))
      else 0 end)
    from e left join pgflow.console_users u on u.email = e.email and u.disabled_at is null
$$;
CREATE FUNCTION pgflow.console_user_list(p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
           'id', u.id, 'email', u.email, 'role', u.role, 'created_at', u.created_at,
           'disabled_at', u.disabled_at,
           'last_seen_at', (select pg_catalog.max(s.last_seen_at) from pgflow.console_sessions s
                             where s.user_id = u.id),
           'sessions', (select pg_catalog.count(*) from pgflow.console_sessions s
                         where s.user_id = u.id and s.revoked_at is null
                           and s.expires_at > coalesce(p_now, pg_catalog.now())))
           order by u.email), '[]')
    from pgflow.console_users u
$$;
CREATE FUNCTION pgflow.contact_consent(p_phone text) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_hash bytea := pgflow._phone_hash(p_phone);
  v_records jsonb;
begin
  select pg_catalog.jsonb_agg(pgflow._consent_record(ct) order by ct.created_at, ct.id)
    into v_records
    from pgflow.contacts ct
   where ct.phone = p_phone
      or ct.id in (select e.contact_id from pgflow.erasures e where e.phone_hash = v_hash);
  if v_records is null then
    raise exception 'no contact has this number' using errcode = 'PF002';
  end if;
  return pg_catalog.jsonb_build_object(
    'phone', p_phone,
    'suppressed', exists (select 1 from pgflow.suppressions s where s.phone_hash = v_hash),
    'contacts', v_records);
end;
$$;
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
CREATE FUNCTION pgflow.contact_rules(p_phone text, p_state text) RETURNS text[]
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow.conversation_view(p_conversation_id bigint, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select pg_catalog.jsonb_build_object(
    'conversation', pg_catalog.to_jsonb(cv) - 'agent_turns',
    'agent_turns', cv.agent_turns,
    'needs_person', pgflow._needs_person(cv, ct),
    'contact', pg_catalog.jsonb_build_object(
      'id', ct.id, 'phone', ct.phone, 'first_name', ct.first_name, 'last_name', ct.last_name,
      'email', ct.email, 'timezone', ct.timezone, 'opted_out_at', ct.opted_out_at,
      'opt_out_source', ct.opt_out_source, 'consent_at', ct.consent_at,
      'consent_source', ct.consent_source, 'consent_text', ct.consent_text,
      'held_at', ct.held_at, 'held_by', ct.held_by),
    'campaign', (select pg_catalog.jsonb_build_object('slug', c.slug, 'name', c.name,
                                                      'status', c.status)
                   from pgflow.campaigns c where c.id = cv.campaign_id),
    'agent', (select a.name from pgflow.agents a where a.id = cv.agent_id),
    'transcript', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', t.id, 'direction', t.direction, 'kind', t.kind, 'body', t.body,
               'delivery_status', t.delivery_status, 'delivery_error', t.delivery_error,
               'step_position', t.step_position, 'created_at', t.created_at,
               'sent_at', t.sent_at, 'send_after', t.send_after, 'attempts', t.attempts,
               'deferred_reason', t.deferred_reason,
               'segments', t.segments, 'intent', t.intent) order by t.created_at, t.id)
        from (select m.* from pgflow.messages m where m.conversation_id = cv.id
               order by m.created_at desc, m.id desc limit 500) t), '[]'),
    'notes', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'at', n.occurred_at, 'entity', n.entity, 'from', n.from_status,
               'to', n.to_status, 'reason', n.reason) order by n.occurred_at, n.id)
        from (select ev.* from pgflow.events ev
               where (ev.entity = 'conversation' and ev.entity_id = cv.id)
                  or (ev.entity = 'enrollment' and ev.entity_id = cv.enrollment_id)
                  or (ev.entity = 'contact' and ev.entity_id = ct.id
                      and ev.occurred_at >= cv.created_at)
               order by ev.occurred_at desc, ev.id desc limit 200) n), '[]'),
    'drip', (
      select pg_catalog.jsonb_build_object(
        'enrollment_id', e.id, 'status', e.status, 'next_step', e.next_step,
        'next_message_at', e.next_message_at, 'stop_reason', e.stop_reason,
        'steps', coalesce((
          select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'position', st.position, 'delay', st.delay::text,
                   'message_id', sm.id, 'status', sm.delivery_status,
                   'sent_at', sm.sent_at, 'send_after', sm.send_after,
                   'deferred_reason', sm.deferred_reason,
                   'error', sm.delivery_error, 'attempts', sm.attempts,
                   'planned_at', case when sm.id is null and e.next_step = st.position
                                      and e.status = 'active' then e.next_message_at end)
                   order by st.position)
            from pgflow.campaign_steps st
            left join lateral (
              select m.* from pgflow.messages m
               where m.enrollment_id = e.id and m.step_position = st.position
               order by m.id desc limit 1) sm on true
           where st.campaign_id = e.campaign_id), '[]'))
        from pgflow.enrollments e where e.id = cv.enrollment_id),
    'signals', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'source', s.source, 'status', s.status, 'reason', s.reason,
               'confidence', s.confidence, 'model', s.model, 'at', s.created_at)
               order by s.created_at, s.id)
        from pgflow.outcome_signals s where s.conversation_id = cv.id), '[]'),
    'audit', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'at', l.occurred_at, 'actor', l.actor, 'action', l.action,
               'conversation_id', l.conversation_id, 'detail', l.detail)
               order by l.occurred_at, l.id)
        from pgflow.audit_log l
       where l.conversation_id = cv.id
          or (l.contact_id = ct.id and l.occurred_at >= cv.created_at)), '[]'),
    'others', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', o.id, 'status', o.status, 'conversion_status', o.conversion_status,
               'created_at', o.created_at) order by o.id desc)
        from pgflow.conversations o where o.contact_id = ct.id and o.id <> cv.id), '[]'))
    from pgflow.conversations cv
    join pgflow.contacts ct on ct.id = cv.contact_id
   where cv.id = p_conversation_id
$$;
CREATE FUNCTION pgflow.deferrals() RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow.dispatch_due(p_lane integer DEFAULT NULL::integer, p_batch integer DEFAULT 1000, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow.dispatch_lanes() RETURNS integer
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
  select greatest(1, least(64, coalesce(
    nullif(pg_catalog.current_setting('pgflow.dispatch_lanes', true), '')::integer, 2)))
$$;
CREATE FUNCTION pgflow.end_console_session(p_token_hash bytea, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_session pgflow.console_sessions;
  v_email text;
begin
  update pgflow.console_sessions set revoked_at = v_now
   where token_hash = p_token_hash and revoked_at is null
  returning * into v_session;
  if not found then
    return '{"result": "unchanged"}';
  end if;
  select email into v_email from pgflow.console_users where id = v_session.user_id;
  perform pgflow._audit(v_email, v_session.user_id, 'sign_out', null, null, '{}', v_now);
  return '{"result": "signed_out"}';
end;
$$;
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
  if p_source is null or p_source not in ('rule', 'llm', 'human', 'webhook', 'retell') then
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
CREATE FUNCTION pgflow.forget_contact(p_phone text, p_requested_by text, p_reason text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_actor text := pgflow._actor(p_requested_by);
  v_hash bytea := pgflow._phone_hash(p_phone);
  v_contact pgflow.contacts;
  v_keys text[];        -- what identifies the person anywhere: the number, its digits, email
  v_names text[];       -- v_keys and the names: redacted from texts of ours that quote them
  v_enrollments bigint[];
  v_conversations bigint[];
  v_messages bigint[];
  v_ids text[];         -- the conversations' ids, as our metadata and alerts have them
  v_digits text[];      -- the number's digits, to find it in a body that never parsed
  v_provider_ids text[];  -- chat ids and message SIDs of the transports
  v_source text;
  v_removed jsonb := '{}';
  v_n integer;
  v_erasure bigint;
  v_reason text;
  r record;
begin
  if v_hash is null then
    raise exception 'the phone hash key (pgflow.secrets phone_hash_key) is missing';
  end if;
  select * into v_contact from pgflow.contacts where phone = p_phone for update;
  if not found then
    raise exception 'no contact has this number' using errcode = 'PF002';
  end if;
  v_keys := pg_catalog.array_remove(array[
    p_phone, pg_catalog.ltrim(p_phone, '+'),
    case when p_phone ~ '^\+1[0-9]{10}$' then pg_catalog.substr(p_phone, 3) end,
    v_contact.email], null);
  v_names := v_keys || pg_catalog.array_remove(array[v_contact.first_name, v_contact.last_name],
                                               null);
  v_reason := pgflow._redact(nullif(pg_catalog.btrim(p_reason), ''), v_names);
  select coalesce(pg_catalog.array_agg(id), '{}') into v_enrollments
    from pgflow.enrollments where contact_id = v_contact.id;
  select coalesce(pg_catalog.array_agg(id), '{}') into v_conversations
    from pgflow.conversations where contact_id = v_contact.id;
  select coalesce(pg_catalog.array_agg(id), '{}') into v_messages
    from pgflow.messages where contact_id = v_contact.id;
  v_ids := v_conversations::text[];
  v_digits := pg_catalog.array_remove(array[
    pg_catalog.ltrim(p_phone, '+'),
    case when p_phone ~ '^\+1[0-9]{10}$' then pg_catalog.substr(p_phone, 3) end], null);
  select coalesce(pg_catalog.array_agg(distinct x.id), '{}') into v_provider_ids
    from (select cv.provider_chat_id as id from pgflow.conversations cv
           where cv.id = any (v_conversations)
          union all select m.chat_id from pgflow.messages m where m.id = any (v_messages)
          union all select m.provider_message_id from pgflow.messages m
           where m.id = any (v_messages)) x
   where x.id is not null;
  -- Texts: every message keeps its row, kind, status, segments and times.
  update pgflow.messages
     set body = '[erased]',
         delivery_error = case when delivery_error is not null then '[erased]' end
   where id = any (v_messages);
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('messages', v_n);
  update pgflow.message_attempts set error = '[erased]'
   where message_id = any (v_messages) and error is not null;
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('message_attempts', v_n);
  -- Free texts on their rows (a reason may quote the lead, an LLM's or Retell's summary may
  -- say anything): replaced, never emptied where the funnel counts a value (review_reason).
  update pgflow.conversations
     set outcome_reason = case when outcome_reason is not null then '[erased]' end,
         review_reason = case when review_reason is not null then '[erased]' end
   where id = any (v_conversations)
     and (outcome_reason is not null or review_reason is not null);
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('conversations', v_n);
  update pgflow.outcome_signals
     set reason = case when reason is not null then '[erased]' end,
         -- a hash of the transcript tells a guessed text apart: it goes too
         transcript_hash = case when source = 'llm' then 'erased:' || id else transcript_hash end
   where conversation_id = any (v_conversations);
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('outcome_signals', v_n);
  update pgflow.enrollments set stop_reason = '[erased]'
   where id = any (v_enrollments) and stop_reason is not null;
  update pgflow.opt_outs set text = '[erased]'
   where contact_id = v_contact.id and text is not null;
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('opt_out_texts', v_n);
  update pgflow.events set reason = '[erased]', details = null
   where ((entity = 'contact' and entity_id = v_contact.id)
          or (entity = 'enrollment' and entity_id = any (v_enrollments))
          or (entity = 'conversation' and entity_id = any (v_conversations))
          or (entity = 'message' and entity_id = any (v_messages)))
     and (reason is not null or details is not null);
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('events', v_n);
  update pgflow.alerts a
     set message = a.kind || ' (details erased)', details = '{"erased": true}'
   where a.kind in (select 'escalation:' || x from pg_catalog.unnest(v_conversations) x)
      or a.details ->> 'conversation_id' = any (v_ids)
      or exists (select 1 from pg_catalog.unnest(v_keys) k
                  where pg_catalog.strpos(a.message || a.details::text, k) > 0);
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('alerts', v_n);
  update pgflow.audit_log l
     set detail = case
       when exists (select 1 from pg_catalog.unnest(v_names) k
                     where pg_catalog.strpos(l.detail::text, k) > 0) then '{"erased": true}'
       else l.detail || '{"reason": "[erased]"}' end
   where (l.contact_id = v_contact.id or l.conversation_id = any (v_conversations))
     and (l.detail ? 'reason'
          or exists (select 1 from pg_catalog.unnest(v_names) k
                      where pg_catalog.strpos(l.detail::text, k) > 0));
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('audit_log', v_n);
  -- Consent: when, how and the disclosure stay (proof, and not the person's words); what
  -- came from the person's browser goes.
  update pgflow.consents
     set request = null, ip = null, user_agent = null,
         disclosure = pgflow._redact(disclosure, v_names),
         source = pgflow._redact(source, v_names)
   where contact_id = v_contact.id;
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('consents', v_n);
  -- Lead bodies: theirs, and refused ones that carry their number or email.
  update pgflow.lead_events l
     set payload = '{"erased": true}', raw_body = null, external_id = null,
         error_detail = case when l.error_detail is not null then '[erased]' end
   where l.contact_id = v_contact.id
      or l.enrollment_id = any (v_enrollments)
      or pgflow._normalize_phone(l.payload ->> 'phone') = p_phone
      or exists (select 1 from pg_catalog.unnest(v_keys) k
                  where pg_catalog.strpos(l.payload::text, k) > 0
                     or pg_catalog.strpos(l.raw_body, k) > 0)
      or (l.raw_body is not null
          and exists (select 1 from pg_catalog.unnest(v_digits) k
                       where pg_catalog.strpos(
                               pg_catalog.regexp_replace(l.raw_body, '\D', '', 'g'), k) > 0));
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('lead_events', v_n);
  -- Provider webhooks: by our ids in their metadata, their chat ids and SIDs, their number.
  update pgflow.webhook_deliveries d
     set payload = '{"erased": true}', response = null, error = null
   where d.payload #>> '{chat,metadata,pgflow_conversation_id}' = any (v_ids)
      or d.response #>> '{chat_inbound,metadata,pgflow_contact_id}' = v_contact.id::text
      or d.payload #>> '{chat,chat_id}' = any (v_provider_ids)
      or d.payload #>> '{chat_inbound,chat_id}' = any (v_provider_ids)
      or d.payload ->> 'MessageSid' = any (v_provider_ids)
      or (d.provider = 'events'
          and (d.payload ->> 'conversation_id' = any (v_ids)
               or pgflow._normalize_phone(d.payload ->> 'phone') = p_phone))
      or exists (select 1 from pg_catalog.unnest(v_keys) k
                  where pg_catalog.strpos(d.payload::text, k) > 0
                     or pg_catalog.strpos(d.response::text, k) > 0);
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('webhook_deliveries', v_n);
  update pgflow.pgqueuer_log q set traceback = null
   where q.traceback is not null
     and exists (select 1 from pg_catalog.unnest(v_keys) k
                  where pg_catalog.strpos(q.traceback::text, k) > 0);
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('job_log', v_n);
  -- Nothing is sent to the row again.
  perform pgflow._set_reason('contact forgotten');
  update pgflow.messages
     set delivery_status = 'suppressed', delivery_error = 'contact forgotten', updated_at = v_now
   where id = any (v_messages) and direction = 'outbound'
     and delivery_status in ('pending', 'queued');
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('messages_suppressed', v_n);
  v_n := 0;
  for r in select id from pgflow.enrollments
            where id = any (v_enrollments) and status in ('active', 'paused') order by id
  loop
    perform pgflow.stop_enrollment(r.id, 'the contact was forgotten on request', v_now);
    v_n := v_n + 1;
  end loop;
  v_removed := v_removed || pg_catalog.jsonb_build_object('enrollments_stopped', v_n);
  perform pgflow._end_chats(v_conversations);
  for r in select a.kind from pgflow.alerts a
            where a.resolved_at is null
              and a.kind in (select 'escalation:' || x from pg_catalog.unnest(v_conversations) x)
  loop
    perform pgflow.resolve_alert(r.kind, v_now);
  end loop;
  -- The fact of the opt-out stays, by the keyed hash of the number.
  v_source := coalesce(v_contact.opt_out_source, 'erasure');
  if v_source not in ('keyword', 'phrase', 'llm', 'operator', 'import', 'webhook', 'carrier') then
    v_source := 'erasure';
  end if;
  if v_contact.opted_out_at is null then
    insert into pgflow.opt_outs (contact_id, action, source, text, occurred_at)
    values (v_contact.id, 'opt_out', 'erasure', 'forgotten on request', v_now);
    insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
    values (v_now, 'contact', v_contact.id, 'subscribed', 'opted_out', 'forgotten on request');
  end if;
  insert into pgflow.suppressions (phone_hash, suppressed_at, source, forgotten_at)
  values (v_hash, coalesce(v_contact.opted_out_at, v_now), v_source, v_now)
  on conflict (phone_hash) do update set forgotten_at = excluded.forgotten_at;
  update pgflow.contacts
     set phone = null, first_name = null, last_name = null, email = null, attributes = '{}',
         timezone = null, state = null, held_at = null, held_by = null,
         consent_text = pgflow._redact(consent_text, v_names),
         consent_source = pgflow._redact(consent_source, v_names),
         opted_out_at = coalesce(opted_out_at, v_now),
         opt_out_source = coalesce(opt_out_source, 'erasure'),
         forgotten_at = v_now, updated_at = v_now
   where id = v_contact.id;
  insert into pgflow.erasures (contact_id, requested_by, reason, erased_at, removed, phone_hash)
  values (v_contact.id, v_actor, v_reason, v_now, v_removed, v_hash)
  returning id into v_erasure;
  perform pgflow._audit(v_actor, null, 'forget', null, v_contact.id,
    pg_catalog.jsonb_build_object('erasure_id', v_erasure, 'reason', v_reason), v_now);
  return pg_catalog.jsonb_build_object(
    'result', 'forgotten', 'contact_id', v_contact.id, 'erasure_id', v_erasure,
    'forgotten_at', v_now, 'suppression_source', v_source, 'removed', v_removed);
end;
$_$;
CREATE FUNCTION pgflow.funnel(p_campaign text DEFAULT NULL::text, p_since timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  with c as (
    select * from pgflow.campaigns where p_campaign is null or slug = p_campaign
  ), e as (
    select e.* from pgflow.enrollments e join c on c.id = e.campaign_id
     where p_since is null or e.enrolled_at >= p_since
  ), steps as (
    select m.enrollment_id, m.step_position, m.sent_at, m.delivery_status, m.delivered_at,
           m.carrier_error_code
      from pgflow.messages m join e on e.id = m.enrollment_id
     where m.kind = 'campaign' and m.sent_at is not null
       and m.delivery_status in ('sent', 'delivered', 'failed')
  ), cv as (
    select cv.* from pgflow.conversations cv
     where cv.campaign_id in (select id from c)
       and cv.contact_id in (select contact_id from e)
  ), per_lead as (
    select e.id, e.campaign_id, e.status,
           (select pg_catalog.min(s.sent_at) from steps s where s.enrollment_id = e.id)
             as first_sent,
           (select pg_catalog.min(m.created_at) from pgflow.messages m
              join cv on cv.id = m.conversation_id
             where cv.contact_id = e.contact_id and cv.campaign_id = e.campaign_id
               and m.direction = 'inbound') as first_reply
      from e
  ), replied_after as (
    select p.id, p.campaign_id,
           (select pg_catalog.max(s.step_position) from steps s
             where s.enrollment_id = p.id and s.sent_at <= p.first_reply) as step
      from per_lead p where p.first_reply is not null
  )
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
    'campaign', c.slug,
    'since', p_since,
    'enrolled', (select pg_catalog.count(*) from e where e.campaign_id = c.id),
    'messaged', (select pg_catalog.count(*) from per_lead p
                  where p.campaign_id = c.id and p.first_sent is not null),
    'steps_sent', (select pg_catalog.count(*) from steps s join e on e.id = s.enrollment_id
                    where e.campaign_id = c.id),
    'transport', c.transport,
    'delivered', (select pg_catalog.count(*) from steps s join e on e.id = s.enrollment_id
                   where e.campaign_id = c.id and s.delivery_status = 'delivered'),
    'undelivered', (select pg_catalog.count(*) from steps s join e on e.id = s.enrollment_id
                     where e.campaign_id = c.id and s.delivery_status = 'failed'),
    'undelivered_by_class', (
      select coalesce(pg_catalog.jsonb_object_agg(k.class, k.n), '{}')
        from (select pgflow.carrier_error_class(s.carrier_error_code) as class,
                     pg_catalog.count(*) as n
                from steps s join e on e.id = s.enrollment_id
               where e.campaign_id = c.id and s.delivery_status = 'failed'
               group by 1) k),
    'delivery_seconds', (
      select pg_catalog.jsonb_build_object(
               'p50', pg_catalog.round(pg_catalog.percentile_cont(0.5) within group (
                        order by extract(epoch from s.delivered_at - s.sent_at))::numeric, 1),
               'p90', pg_catalog.round(pg_catalog.percentile_cont(0.9) within group (
                        order by extract(epoch from s.delivered_at - s.sent_at))::numeric, 1))
        from steps s join e on e.id = s.enrollment_id
       where e.campaign_id = c.id and s.delivery_status = 'delivered'
         and s.delivered_at >= s.sent_at),
    'replied', (select pg_catalog.count(*) from per_lead p
                 where p.campaign_id = c.id and p.first_reply is not null),
    'opted_out', (select pg_catalog.count(*) from e
                   where e.campaign_id = c.id and e.status = 'opted_out'),
    'reply_rate', (select pg_catalog.round(
                          pg_catalog.count(*) filter (where p.first_sent is not null
                                                        and p.first_reply is not null)::numeric
                          / nullif(pg_catalog.count(p.first_sent), 0), 4)
                     from per_lead p where p.campaign_id = c.id),
    'opt_out_rate', (select pg_catalog.round(
                            pg_catalog.count(*) filter (where p.status = 'opted_out')::numeric
                            / nullif(pg_catalog.count(p.first_sent), 0), 4)
                       from per_lead p where p.campaign_id = c.id),
    'median_first_reply_seconds', (
      select pg_catalog.round(pg_catalog.percentile_cont(0.5) within group (
               order by extract(epoch from p.first_reply - p.first_sent))::numeric, 1)
        from per_lead p
       where p.campaign_id = c.id and p.first_reply >= p.first_sent),
    'outcomes', (
      select pg_catalog.jsonb_build_object(
        'success', pg_catalog.count(*) filter (where cv.conversion_status = 'success'),
        'qualified', pg_catalog.count(*) filter (where cv.conversion_status = 'qualified'),
        'unqualified', pg_catalog.count(*) filter (where cv.conversion_status = 'unqualified'),
        'escalated', pg_catalog.count(*) filter (where cv.conversion_status = 'escalated'),
        'no_response', pg_catalog.count(*) filter (where cv.conversion_status = 'no_response'),
        'discarded', pg_catalog.count(*) filter (where cv.conversion_status = 'discarded'),
        'open', pg_catalog.count(*) filter (where cv.status = 'open'),
        'engaged', pg_catalog.count(*) filter (where cv.status = 'engaged'),
        'in_review', pg_catalog.count(*) filter (where cv.review_reason is not null))
        from cv where cv.campaign_id = c.id),
    'steps', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'position', st.position,
               'sent', (select pg_catalog.count(*) from steps s join e on e.id = s.enrollment_id
                         where e.campaign_id = c.id and s.step_position = st.position),
               'replied_after', (select pg_catalog.count(*) from replied_after r
                                  where r.campaign_id = c.id and r.step = st.position))
             order by st.position)
        from pgflow.campaign_steps st where st.campaign_id = c.id), '[]')
  ) order by c.slug), '[]')
  from c
$$;
CREATE FUNCTION pgflow.hand_back(p_conversation_id bigint, p_actor text, p_user_id bigint DEFAULT NULL::bigint, p_engine_replies boolean DEFAULT false, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_actor text := pgflow._actor(p_actor);
  v_conversation pgflow.conversations;
  v_contact pgflow.contacts;
  v_last pgflow.messages;
  v_queued boolean := false;
  r record;
begin
  select * into v_conversation from pgflow.conversations where id = p_conversation_id;
  if not found then
    raise exception 'conversation % does not exist', p_conversation_id using errcode = 'PF002';
  end if;
  select * into v_contact from pgflow.contacts where id = v_conversation.contact_id
     for no key update;  -- a receipt's foreign-key check (key share) may hold it meanwhile
  if v_contact.held_at is null then
    raise exception 'nobody holds this lead: the agent has it already' using errcode = 'PF001';
  end if;
  update pgflow.contacts set held_at = null, held_by = null, updated_at = v_now
   where id = v_contact.id;
  insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
  values (v_now, 'contact', v_contact.id, 'held', 'with_agent', 'handed back by ' || v_actor);
  for r in select id from pgflow.conversations where contact_id = v_contact.id order by id loop
    perform pgflow.resolve_alert('escalation:' || r.id, v_now);
  end loop;
  v_conversation := pgflow._current_conversation(v_conversation);
  if (p_engine_replies or pgflow._line_transport(v_conversation.from_number) = 'twilio')
     and v_conversation.status <> 'ended' and v_contact.opted_out_at is null then
    select * into v_last from pgflow.messages
     where conversation_id = v_conversation.id
       and (direction = 'inbound' or kind in ('agent', 'human'))
     order by id desc limit 1;
    if v_last.direction = 'inbound' then
      perform pgflow._enqueue('agent_reply', array[v_last.id], 15);
      v_queued := true;
    end if;
  end if;
  perform pgflow._audit(v_actor, p_user_id, 'hand_back', p_conversation_id, v_contact.id,
    pg_catalog.jsonb_build_object('held_by', v_contact.held_by,
                                  'agent_reply_queued', v_queued), v_now);
  return pg_catalog.jsonb_build_object('result', 'handed_back', 'contact_id', v_contact.id,
    'conversation_id', v_conversation.id, 'agent_reply_queued', v_queued);
end;
$$;
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
CREATE FUNCTION pgflow.human_reply(p_conversation_id bigint, p_body text, p_actor text, p_user_id bigint DEFAULT NULL::bigint, p_key text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_actor text := pgflow._actor(p_actor);
  v_body text := pg_catalog.btrim(coalesce(p_body, ''), E' \t\r\n');
  v_key text := 'human:' || coalesce(nullif(pg_catalog.btrim(p_key), ''),
                                     pg_catalog.gen_random_uuid()::text);
  v_conversation pgflow.conversations;
  v_contact pgflow.contacts;
  v_id bigint;
begin
  if v_body = '' then
    raise exception 'a reply must not be empty' using errcode = 'PF003';
  end if;
  if pg_catalog.length(v_body) > 1600 then
    raise exception 'a reply is at most 1600 characters (this one has %)',
      pg_catalog.length(v_body) using errcode = 'PF003';
  end if;
  if pg_catalog.length(v_key) > 120 then
    raise exception 'the reply key is too long' using errcode = 'PF003';
  end if;
  select * into v_conversation from pgflow.conversations where id = p_conversation_id;
  if not found then
    raise exception 'conversation % does not exist', p_conversation_id using errcode = 'PF002';
  end if;
  select * into v_contact from pgflow.contacts where id = v_conversation.contact_id
     for no key update;  -- a receipt's foreign-key check (key share) may hold it meanwhile
  select id into v_id from pgflow.messages where dedupe_key = v_key;
  if v_id is not null then
    return pg_catalog.jsonb_build_object('result', 'duplicate', 'message_id', v_id);
  end if;
  if v_contact.opted_out_at is not null then
    raise exception 'the lead opted out (%): nothing more may be sent to them',
      v_contact.opt_out_source using errcode = 'PF004';
  end if;
  v_conversation := pgflow._current_conversation(v_conversation);
  if v_contact.held_by is distinct from v_actor then
    perform pgflow.take_over(v_conversation.id, v_actor, p_user_id, 'replied to the lead', v_now);
  end if;
  perform 1 from pgflow.conversations where id = v_conversation.id for no key update;
  perform pgflow._set_reason('a person replied');
  insert into pgflow.messages
    (conversation_id, contact_id, direction, kind, body, delivery_status, segments, encoding,
     dedupe_key, created_at, updated_at)
  values (v_conversation.id, v_contact.id, 'outbound', 'human', v_body, 'queued',
          pgflow.sms_segments(v_body), pgflow.sms_encoding(v_body), v_key, v_now, v_now)
  returning id into v_id;
  perform pgflow._enqueue('send_sms', array[v_id], 18);
  perform pgflow._audit(v_actor, p_user_id, 'reply', v_conversation.id, v_contact.id,
    pg_catalog.jsonb_build_object('message_id', v_id, 'segments', pgflow.sms_segments(v_body)),
    v_now);
  return pg_catalog.jsonb_build_object('result', 'queued', 'message_id', v_id,
    'conversation_id', v_conversation.id, 'segments', pgflow.sms_segments(v_body),
    'transport', pgflow._line_transport(v_conversation.from_number));
end;
$$;
CREATE FUNCTION pgflow.import_leads(p_campaign text, p_source text, p_lines integer[], p_payloads jsonb[], p_phones text[], p_phone_errors text[], p_zones text[], p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS TABLE(line integer, status text, error text, detail text, contact_id bigint, enrollment_id bigint)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    SET jit TO 'off'
    AS $$
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
CREATE FUNCTION pgflow.inbound_intent(p_text text, OUT intent text, OUT rule text) RETURNS record
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $_$
declare
  w text := pgflow._sms_words(p_text);
  v_polite text := '(please |pls |plz )?(%s)( please| pls| plz| now| thanks| thank you| it| me)*';
begin
  if w ~ ('^' || pg_catalog.format(v_polite,
      'stop|stopall|stop all|unsubscribe|unsub|cancel|end|quit|revoke|optout|opt out'
      || '|parar|alto|detener|cancelar|baja') || '$') then
    intent := 'opt_out'; rule := 'keyword'; return;
  end if;
  if w !~ '\m(dont|do not|never|wont|will not|didnt|did not) (stop|quit|cease|unsubscribe|remove)\M'
     and (w ~ '\m(stop|quit|cease) (texting|txting|texing|messaging|msging|contacting|sending|calling|spamming|bothering|emailing)\M'
       or w ~ '\m(stop|quit) (all )?(these |the |your )?(texts|txts|messages|msgs|sms)\M'
       or w ~ '\m(remove|delete|erase|drop) (me|my number|this number|my info|my information)\M'
       or w ~ '\mtake (me|my number|this number) off\M'
       or w ~ '\m(dont|do not|never) (text|txt|message|msg|contact|call|sms|email|bother) (me|us|this number)\M'
       or w ~ '\m(unsubscribe|unsub)\M'
       or w ~ '\mopt (me )?out\M|\moptout\M'
       or w ~ '\mleave me alone\M'
       or w ~ '\mlose (my|this) number\M'
       or w ~ '\mno more (texts|text|txts|messages|msgs)\M'
       or w ~ '\mno me (escribas|escriban|envies|envien|mandes|manden|contactes|contacten)\M'
       or w ~ '\m(deja|dejen) de (escribir|enviar|mandar)\M') then
    intent := 'opt_out'; rule := 'phrase'; return;
  end if;
  if w ~ ('^' || pg_catalog.format(v_polite, 'start|unstop|yes|subscribe|resubscribe') || '$') then
    intent := 'opt_in'; rule := 'keyword'; return;
  end if;
  if w ~ '^(help|info|information|ayuda)( please| pls)?$' then
    intent := 'help'; rule := 'keyword'; return;
  end if;
  if w ~ '\m(real|actual|live) (person|human|agent|people)\M'
     or w ~ '\m(talk|speak|chat|text) (to|with) (a |an |someone|somebody|a real |an actual |your |the )?(person|human|someone|somebody|manager|agent|representative|rep|owner|supervisor|boss)\M'
     or w ~ '\m(can|could|would|will) (someone|somebody|a person|a human|a manager) (call|contact|phone|text|reach)\M'
     or w ~ '^(human|agent|representative|operator|person|manager)( please| pls)?$' then
    intent := 'human'; rule := 'phrase'; return;
  end if;
  if w ~ '\m(stop|stopping|unsubscribe|unsub|remove|quit|cancel|optout|opt|block|blocked|spam|spamming|harass|harassing|report|reported|parar|baja)\M' then
    intent := 'maybe_opt_out'; rule := 'ambiguous'; return;
  end if;
  intent := 'none';
end;
$_$;
CREATE FUNCTION pgflow.inbox(p_filter jsonb DEFAULT '{}'::jsonb, p_after jsonb DEFAULT NULL::jsonb, p_limit integer DEFAULT 50, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    SET plan_cache_mode TO 'force_custom_plan'
    AS $$
declare
  v_recent timestamptz := coalesce(p_now, pg_catalog.now()) - interval '3 days';
  v_limit integer := least(greatest(coalesce(p_limit, 50), 1), 200);
  v_filter jsonb := coalesce(p_filter, '{}');
  v_campaign bigint;
  v_state text := nullif(v_filter ->> 'state', '');
  v_outcome text := nullif(v_filter ->> 'outcome', '');
  v_q text := pg_catalog.lower(nullif(pg_catalog.btrim(v_filter ->> 'q'), ''));
  v_digits text;
  v_word text;
  v_rest text;
  v_contacts bigint[];
  v_start integer := 1;
  v_at timestamptz;
  v_id bigint;
  v_page jsonb := '[]';
  v_more jsonb;
  v_last jsonb;
  v_rows jsonb;
begin
  if nullif(v_filter ->> 'campaign', '') is not null then
    select id into v_campaign from pgflow.campaigns where slug = v_filter ->> 'campaign';
    if not found then
      return '{"rows": [], "next": null}';
    end if;
  end if;
  if p_after is not null then
    v_start := coalesce((p_after ->> 'bucket')::integer, 1);
    v_at := (p_after ->> 'at')::timestamptz;
    v_id := (p_after ->> 'id')::bigint;
  end if;
  if v_q is not null then
    -- indexes: contacts_phone_suffix_idx, contacts_first_name_idx, contacts_last_name_idx
    v_digits := pg_catalog.regexp_replace(v_q, '[^0-9]', '', 'g');
    v_q := pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
             v_q, '\', '\\'), '%', '\%'), '_', '\_');
    v_word := pg_catalog.split_part(v_q, ' ', 1);
    v_rest := pg_catalog.btrim(pg_catalog.substr(v_q, pg_catalog.length(v_word) + 1));
    select pg_catalog.array_agg(x.id) into v_contacts
      from (select ct.id from pgflow.contacts ct
             where (pg_catalog.length(v_digits) >= 3
                    and pg_catalog.reverse(ct.phone) like pg_catalog.reverse(v_digits) || '%')
                or pg_catalog.lower(ct.first_name) like v_q || '%'
                or pg_catalog.lower(ct.last_name) like v_q || '%'
                or (v_rest <> '' and pg_catalog.lower(ct.first_name) = v_word
                    and pg_catalog.lower(ct.last_name) like v_rest || '%')
             limit 1000) x;
    if v_contacts is null then
      return '{"rows": [], "next": null}';
    end if;
  end if;
  for b in v_start..3 loop
    if b = 1 then
      -- from the two small sets (conversations_review_idx, contacts_held_idx)
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('id', t.id, 'bucket', 1,
               'sort_at', t.sort_at) order by t.sort_at desc, t.id desc)
        into v_more
        from (select cv.id, greatest(cv.last_inbound_at, cv.last_outbound_at, cv.created_at)
                       as sort_at
                from (select r.id from pgflow.conversations r where r.review_reason is not null
                      union
                      select h.id from pgflow.contacts hc
                        join pgflow.conversations h on h.contact_id = hc.id
                       where hc.held_at is not null
                         and (h.status <> 'ended' or h.conversion_status = 'escalated')) need
                join pgflow.conversations cv on cv.id = need.id
                join pgflow.contacts ct on ct.id = cv.contact_id
               where (v_campaign is null or cv.campaign_id = v_campaign)
                 and (v_contacts is null or cv.contact_id = any (v_contacts))
                 and (v_outcome is null or cv.conversion_status = v_outcome)
                 and (v_state is null
                      or (v_state in ('open', 'engaged', 'ended') and cv.status = v_state)
                      or (v_state = 'held' and ct.held_at is not null)
                      or (v_state = 'review' and cv.review_requested_at is not null))
                 and (v_start <> 1 or v_at is null
                      or (greatest(cv.last_inbound_at, cv.last_outbound_at, cv.created_at), cv.id)
                         < (v_at, v_id))
               order by 2 desc, 1 desc
               limit v_limit + 1 - pg_catalog.jsonb_array_length(v_page)) t;
    elsif b = 2 then
      -- conversations_engaged_inbound_idx
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('id', t.id, 'bucket', 2,
               'sort_at', t.sort_at) order by t.sort_at desc, t.id desc)
        into v_more
        from (select cv.id, cv.last_inbound_at as sort_at
                from pgflow.conversations cv
                join pgflow.contacts ct on ct.id = cv.contact_id
               where cv.status = 'engaged' and cv.last_inbound_at >= v_recent
                 and cv.review_requested_at is null and ct.held_at is null
                 and (v_campaign is null or cv.campaign_id = v_campaign)
                 and (v_contacts is null or cv.contact_id = any (v_contacts))
                 and (v_outcome is null or cv.conversion_status = v_outcome)
                 and (v_state is null or v_state = 'engaged')
                 and (v_start <> 2 or v_at is null or (cv.last_inbound_at, cv.id) < (v_at, v_id))
               order by cv.last_inbound_at desc, cv.id desc
               limit v_limit + 1 - pg_catalog.jsonb_array_length(v_page)) t;
    else
      -- conversations_activity_idx (or, for a search, the contacts' conversations)
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('id', t.id, 'bucket', 3,
               'sort_at', t.sort_at) order by t.sort_at desc, t.id desc)
        into v_more
        from (select cv.id, greatest(cv.last_inbound_at, cv.last_outbound_at, cv.created_at)
                       as sort_at
                from pgflow.conversations cv
                join pgflow.contacts ct on ct.id = cv.contact_id
               where cv.review_requested_at is null
                 and not (ct.held_at is not null
                          and (cv.status <> 'ended' or cv.conversion_status = 'escalated'))
                 and not (cv.status = 'engaged' and cv.last_inbound_at >= v_recent)
                 and (v_campaign is null or cv.campaign_id = v_campaign)
                 and (v_contacts is null or cv.contact_id = any (v_contacts))
                 and (v_outcome is null or cv.conversion_status = v_outcome)
                 and (v_state is null
                      or (v_state in ('open', 'engaged', 'ended') and cv.status = v_state)
                      or (v_state = 'held' and ct.held_at is not null))
                 and (v_start <> 3 or v_at is null
                      or (greatest(cv.last_inbound_at, cv.last_outbound_at, cv.created_at), cv.id)
                         < (v_at, v_id))
               order by 2 desc, 1 desc
               limit v_limit + 1 - pg_catalog.jsonb_array_length(v_page)) t;
    end if;
    v_page := v_page || coalesce(v_more, '[]');
    exit when pg_catalog.jsonb_array_length(v_page) > v_limit;
  end loop;
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
           'id', cv.id, 'bucket', (k.value ->> 'bucket')::integer, 'sort_at', k.value -> 'sort_at',
           'activity_at', greatest(cv.last_inbound_at, cv.last_outbound_at, cv.created_at),
           'phone', ct.phone, 'first_name', ct.first_name, 'last_name', ct.last_name,
           'campaign', c.slug, 'status', cv.status, 'conversion_status', cv.conversion_status,
           'outcome_source', cv.outcome_source, 'review_reason', cv.review_reason,
           'held_at', ct.held_at, 'held_by', ct.held_by,
           'opted_out', ct.opted_out_at is not null, 'last_text', lm.body,
           'last_direction', lm.direction, 'last_kind', lm.kind) order by k.ordinality), '[]')
    into v_rows
    from pg_catalog.jsonb_array_elements(v_page) with ordinality k
    join pgflow.conversations cv on cv.id = (k.value ->> 'id')::bigint
    join pgflow.contacts ct on ct.id = cv.contact_id
    left join pgflow.campaigns c on c.id = cv.campaign_id
    left join lateral (
      select m.body, m.direction, m.kind from pgflow.messages m
       where m.conversation_id = cv.id order by m.created_at desc, m.id desc limit 1) lm on true
   where k.ordinality <= v_limit;
  if pg_catalog.jsonb_array_length(v_page) > v_limit then
    v_last := v_page -> (v_limit - 1);
    return pg_catalog.jsonb_build_object('rows', v_rows,
      'next', pg_catalog.jsonb_build_object('bucket', v_last -> 'bucket',
                                            'at', v_last -> 'sort_at', 'id', v_last -> 'id'));
  end if;
  return pg_catalog.jsonb_build_object('rows', v_rows, 'next', null);
end;
$$;
CREATE FUNCTION pgflow.ingest_lead(payload jsonb, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone, p_edge jsonb DEFAULT NULL::jsonb) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    SET plan_cache_mode TO 'force_generic_plan'
    AS $$
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
  v_contact pgflow.contacts;
  v_enrollment bigint;
  v_status text;
  v_event bigint;
  v_consent jsonb;
begin
  -- Validation (pgflow._lead_error), then the campaign and its first step.
  v_refusal := pgflow.campaign_refusal(payload ->> 'campaign');
  v_phone := case when v_edge ? 'phone' then v_edge ->> 'phone'
                  else pgflow._normalize_phone(payload ->> 'phone') end;
  select e[1], e[2] into v_error, v_detail
    from (select pgflow._lead_error(payload, v_refusal, v_phone, v_edge ->> 'phone_error') as e) x;
  if v_error is null then
    select * into v_campaign from pgflow.campaigns where slug = payload ->> 'campaign';
    select * into v_first from pgflow.campaign_steps
     where campaign_id = v_campaign.id order by position limit 1;
    v_tz := nullif(pg_catalog.btrim(payload ->> 'timezone'), '');
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
    (phone, first_name, last_name, email, timezone, state, attributes,
     consent_at, consent_source, consent_text, created_at, updated_at)
  values (
    v_phone,
    nullif(pg_catalog.btrim(payload ->> 'first_name'), ''),
    nullif(pg_catalog.btrim(payload ->> 'last_name'), ''),
    nullif(pg_catalog.btrim(payload ->> 'email'), ''),
    coalesce(v_tz, case when pgflow._is_time_zone(v_edge ->> 'timezone') then v_edge ->> 'timezone' end),
    pgflow._state_code(payload),
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
    state = coalesce(excluded.state, c.state),
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
          v_status, v_contact.id, v_enrollment)
  returning id into v_event;
  if v_consent is not null then
    insert into pgflow.consents
      (contact_id, given_at, source, disclosure, ip, user_agent, request, lead_event_id,
       recorded_at)
    values (v_contact.id, coalesce((v_consent ->> 'at')::timestamptz, v_now),
            coalesce(v_consent ->> 'source', payload ->> 'source'), v_consent ->> 'text',
            nullif(pg_catalog.btrim(v_consent ->> 'ip'), ''),
            nullif(pg_catalog.btrim(v_consent ->> 'user_agent'), ''), payload, v_event, v_now);
  end if;
  return pg_catalog.jsonb_build_object('contact_id', v_contact.id,
                                       'enrollment_id', v_enrollment, 'status', v_status);
end;
$$;
CREATE FUNCTION pgflow.mark_chat_ended(p_chat_id text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_count integer;
begin
  update pgflow.conversations
     set chat_status = 'ended', updated_at = coalesce(p_now, pg_catalog.now())
   where provider_chat_id = p_chat_id and coalesce(chat_status, 'ongoing') <> 'ended';
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;
CREATE FUNCTION pgflow.marketing_open(p_tz text, p_rules text[], p_start time without time zone, p_end time without time zone, p_days smallint[], p_at timestamp with time zone, OUT at timestamp with time zone, OUT rule text) RETURNS record
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow.marketing_slot(p_tz text, p_rules text[], p_start time without time zone, p_end time without time zone, p_days smallint[], p_cap integer, p_cap_rule text, p_recent timestamp with time zone[], p_at timestamp with time zone, OUT at timestamp with time zone, OUT rule text) RETURNS record
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow.number_report(p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS TABLE(number text, campaigns text[], inbound_agent text, per_second numeric, daily_segments integer, messages_today integer, segments_today integer)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow.opt_in_contact(p_contact_id bigint, p_source text, p_message_id bigint DEFAULT NULL::bigint, p_text text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_opt_in bigint;
  v_via bigint;
  v_name text;
begin
  update pgflow.contacts
     set opted_out_at = null, opt_out_source = null, updated_at = v_now
   where id = p_contact_id and opted_out_at is not null;
  if not found then
    if not exists (select 1 from pgflow.contacts where id = p_contact_id) then
      raise exception 'contact % does not exist', p_contact_id using errcode = 'PF002';
    end if;
    return pg_catalog.jsonb_build_object('result', 'not_opted_out');
  end if;
  insert into pgflow.opt_outs (contact_id, action, source, message_id, text, occurred_at)
  values (p_contact_id, 'opt_in', p_source, p_message_id, pg_catalog.left(p_text, 500), v_now)
  returning id into v_opt_in;
  delete from pgflow.suppressions s using pgflow.contacts ct
   where ct.id = p_contact_id and s.phone_hash = pgflow._phone_hash(ct.phone);
  insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
  values (v_now, 'contact', p_contact_id, 'opted_out', 'subscribed', 'opt-in by ' || p_source);
  select m.conversation_id into v_via from pgflow.messages m where m.id = p_message_id;
  v_via := coalesce(v_via, (select pg_catalog.max(id) from pgflow.conversations
                             where contact_id = p_contact_id));
  if v_via is not null and p_source <> 'carrier' then  -- the carrier confirmed it already
    select coalesce(c.name, 'our') into v_name
      from pgflow.conversations cv left join pgflow.campaigns c on c.id = cv.campaign_id
     where cv.id = v_via;
    perform pgflow._system_message(v_via,
      pg_catalog.format('You are resubscribed to %s messages. Reply STOP to opt out.', v_name),
      'opt_in_confirmation:' || v_opt_in, v_now);
  end if;
  return pg_catalog.jsonb_build_object('result', 'opted_in', 'opt_in_id', v_opt_in);
end;
$$;
CREATE FUNCTION pgflow.opt_out_contact(p_contact_id bigint, p_source text, p_message_id bigint DEFAULT NULL::bigint, p_text text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_contact pgflow.contacts;
  v_opt_out bigint;
  v_via bigint;
  v_live bigint[];
  v_text text;
  r record;
begin
  update pgflow.contacts
     set opted_out_at = v_now, opt_out_source = p_source, updated_at = v_now
   where id = p_contact_id and opted_out_at is null
  returning * into v_contact;
  if not found then
    if not exists (select 1 from pgflow.contacts where id = p_contact_id) then
      raise exception 'contact % does not exist', p_contact_id using errcode = 'PF002';
    end if;
    return pg_catalog.jsonb_build_object('result', 'already_opted_out');
  end if;
  insert into pgflow.opt_outs (contact_id, action, source, message_id, text, occurred_at)
  values (p_contact_id, 'opt_out', p_source, p_message_id, pg_catalog.left(p_text, 500), v_now)
  returning id into v_opt_out;
  insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
  values (v_now, 'contact', p_contact_id, 'subscribed', 'opted_out', 'opt-out by ' || p_source);
  for r in select id from pgflow.enrollments
            where contact_id = p_contact_id and status in ('active', 'paused') order by id
  loop
    perform pgflow.opt_out_enrollment(r.id, 'contact opted out (' || p_source || ')', v_now);
  end loop;
  select m.conversation_id into v_via from pgflow.messages m where m.id = p_message_id;
  select pg_catalog.array_agg(id order by id) into v_live
    from pgflow.conversations where contact_id = p_contact_id and status <> 'ended';
  v_via := coalesce(v_via, v_live[pg_catalog.cardinality(v_live)],
                    (select pg_catalog.max(id) from pgflow.conversations
                      where contact_id = p_contact_id));
  for r in select unnest as id from pg_catalog.unnest(coalesce(v_live, '{}')) loop
    perform pgflow.end_conversation(r.id, 'discarded', 'opted out (' || p_source || ')',
                                    'rule', v_now);
  end loop;
  perform pgflow._set_reason('contact opted out');
  update pgflow.messages
     set delivery_status = 'suppressed', delivery_error = 'contact opted out', updated_at = v_now
   where contact_id = p_contact_id and direction = 'outbound' and kind <> 'system'
     and delivery_status in ('pending', 'queued');
  perform pgflow._end_chats(array(select id from pgflow.conversations
                                   where contact_id = p_contact_id));
  -- a carrier's opt-out (Twilio's 21610) was confirmed by the carrier: none from us
  if v_via is not null and p_source <> 'carrier' then
    select coalesce(c.opt_out_text,
                    'You are unsubscribed and will receive no more messages. Reply START to resubscribe.')
      into v_text
      from pgflow.conversations cv left join pgflow.campaigns c on c.id = cv.campaign_id
     where cv.id = v_via;
    perform pgflow._system_message(v_via, v_text, 'opt_out_confirmation:' || v_opt_out, v_now);
  end if;
  return pg_catalog.jsonb_build_object('result', 'opted_out', 'opt_out_id', v_opt_out,
                                       'conversation_id', v_via);
end;
$$;
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
CREATE FUNCTION pgflow.opt_out_question(p_message_id bigint) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select pg_catalog.jsonb_build_object('message_id', m.id, 'text', m.body)
    from pgflow.messages m
   where m.id = p_message_id and m.direction = 'inbound' and m.intent = 'maybe_opt_out'
$$;
CREATE FUNCTION pgflow.outcome_question(p_conversation_id bigint, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_row pgflow.conversations;
  v_contact pgflow.contacts;
  v_campaign pgflow.campaigns;
  v_agent pgflow.agents;
begin
  select * into v_row from pgflow.conversations where id = p_conversation_id for update;
  if not found then
    return '{"classify": false, "reason": "no such conversation"}';
  end if;
  if v_row.status = 'ended' then
    return pg_catalog.jsonb_build_object('classify', false, 'reason',
      pg_catalog.format('it ended %s by %s', v_row.conversion_status, v_row.outcome_source));
  end if;
  select * into v_contact from pgflow.contacts where id = v_row.contact_id;
  if v_contact.opted_out_at is not null then
    perform pgflow.set_outcome(v_row.id, 'discarded', 'the contact opted out', 'rule', v_now);
    return '{"classify": false, "reason": "discarded by rule: opted out"}';
  end if;
  if not exists (select 1 from pgflow.messages
                  where conversation_id = v_row.id and direction = 'inbound') then
    perform pgflow.set_outcome(v_row.id, 'no_response', 'the lead never replied', 'rule', v_now);
    return '{"classify": false, "reason": "no_response by rule: the lead never replied"}';
  end if;
  select * into v_campaign from pgflow.campaigns where id = v_row.campaign_id;
  select * into v_agent from pgflow.agents where id = v_row.agent_id;
  return pg_catalog.jsonb_build_object(
    'classify', true,
    'conversation_id', v_row.id,
    'transcript_hash', pgflow._transcript_hash(v_row.id),
    'campaign', coalesce(v_campaign.name, 'inbound'),
    'goal', coalesce(nullif(pg_catalog.btrim(v_campaign.goal), ''), v_agent.prompt),
    'model', v_agent.model,
    'transcript', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'role', case when m.direction = 'inbound' then 'lead' else 'agent' end,
               'text', m.body) order by m.created_at, m.id)
        from pgflow.messages m
       where m.conversation_id = v_row.id
         and (m.direction = 'inbound'
              or m.delivery_status in ('queued', 'sending', 'sent', 'delivered'))), '[]'));
end;
$$;
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
CREATE FUNCTION pgflow.prune(p_now timestamp with time zone DEFAULT NULL::timestamp with time zone, p_keep_events interval DEFAULT '180 days'::interval, p_keep_job_log interval DEFAULT '14 days'::interval, p_keep_cron_runs interval DEFAULT '7 days'::interval, p_keep_webhooks interval DEFAULT '90 days'::interval, p_batch integer DEFAULT 10000) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_events integer;
  v_log integer;
  v_webhooks integer;
  v_sessions integer;
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
  -- console sessions a month past their end, and sign-in attempts a month old
  delete from pgflow.console_sessions where id in (
    select id from pgflow.console_sessions
     where coalesce(revoked_at, expires_at) < v_now - interval '30 days'
     order by expires_at limit p_batch);
  get diagnostics v_sessions = row_count;
  delete from pgflow.console_sign_ins where id in (
    select id from pgflow.console_sign_ins where attempted_at < v_now - interval '30 days'
     order by attempted_at limit p_batch);
  if pg_catalog.to_regclass('cron.job_run_details') is not null then
    execute 'delete from cron.job_run_details where runid in (
               select runid from cron.job_run_details where end_time < $1 limit $2)'
      using v_now - p_keep_cron_runs, p_batch;
    get diagnostics v_cron = row_count;
  end if;
  return pg_catalog.jsonb_build_object('events', v_events, 'job_log', v_log,
                                       'webhook_deliveries', v_webhooks, 'cron_runs', v_cron,
                                       'console_sessions', v_sessions);
end;
$_$;
CREATE FUNCTION pgflow.receipt_to_check(p_message_id bigint) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select pg_catalog.jsonb_build_object('message_id', m.id, 'sid', m.provider_message_id)
    from pgflow.messages m
   where m.id = p_message_id and m.delivery_status = 'sent' and m.transport = 'twilio'
     and m.provider_message_id is not null
$$;
CREATE FUNCTION pgflow.record_agent_reply(p_trigger_id bigint, p_body text, p_action text DEFAULT 'continue'::text, p_reason text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  m pgflow.messages;
  v_refusal text;
  v_id bigint;
  v_conversation pgflow.conversations;
  v_max integer;
begin
  if p_action is null or p_action not in ('continue', 'handoff', 'end', 'booked') then
    raise exception 'unknown agent action %', coalesce(p_action, '(null)') using errcode = 'PF003';
  end if;
  select * into m from pgflow.messages where id = p_trigger_id and direction = 'inbound';
  if not found then
    raise exception 'lead text % does not exist', p_trigger_id using errcode = 'PF002';
  end if;
  if coalesce(pg_catalog.btrim(p_body), '') = '' then
    raise exception 'an agent reply must not be empty' using errcode = 'PF003';
  end if;
  -- serialise with the inbound path and other replies of this conversation
  perform 1 from pgflow.conversations where id = m.conversation_id for update;
  v_refusal := pgflow._reply_refusal(m);
  if v_refusal is not null then
    return pg_catalog.jsonb_build_object('result', 'stale', 'reason', v_refusal);
  end if;
  perform pgflow._set_reason('agent reply');
  insert into pgflow.messages
    (conversation_id, contact_id, direction, kind, body, delivery_status, segments, encoding,
     dedupe_key, created_at, updated_at)
  values (m.conversation_id, m.contact_id, 'outbound', 'agent', p_body, 'queued',
          pgflow.sms_segments(p_body), pgflow.sms_encoding(p_body),
          'agent_reply:' || m.id, v_now, v_now)
  on conflict (dedupe_key) do nothing
  returning id into v_id;
  if v_id is null then
    return '{"result": "stale", "reason": "already answered"}';
  end if;
  update pgflow.conversations set agent_turns = agent_turns + 1, updated_at = v_now,
         closing_message_id = case when p_action in ('booked', 'handoff') then v_id
                                   else closing_message_id end
   where id = m.conversation_id
  returning * into v_conversation;
  perform pgflow._enqueue('send_sms', array[v_id], 15);
  select a.max_turns into v_max from pgflow.agents a where a.id = v_conversation.agent_id;
  if p_action = 'booked' then
    perform pgflow.set_outcome(v_conversation.id, 'success',
      'the agent booked it: ' || coalesce(p_reason, 'a time was agreed'), 'rule', v_now);
  elsif p_action = 'handoff' then
    perform pgflow._escalate(v_conversation.id,
      'the agent handed over: ' || coalesce(p_reason, 'it could not help'), 'rule', false, v_now);
  elsif p_action = 'end' or v_conversation.agent_turns >= coalesce(v_max, 10) then
    perform pgflow._request_classification(v_conversation.id, v_now);
  end if;
  return pg_catalog.jsonb_build_object('result', 'queued', 'message_id', v_id,
                                       'action', p_action);
end;
$$;
CREATE FUNCTION pgflow.record_alert_notice(p_alert_id bigint, p_notice text, p_error text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_alert pgflow.alerts;
begin
  if p_error is not null then
    update pgflow.alerts
       set details = details || pg_catalog.jsonb_build_object('notify_error', p_error)
     where id = p_alert_id;
    return;
  end if;
  update pgflow.alerts
     set notified_at = case when p_notice = 'opened' then v_now else notified_at end,
         resolve_notified_at = case when p_notice = 'resolved' then v_now
                                    else resolve_notified_at end
   where id = p_alert_id
  returning * into v_alert;
  if p_notice = 'opened' and v_alert.resolved_at is not null then
    perform pgflow._enqueue_notice(p_alert_id, 'resolved');
  end if;
end;
$$;
CREATE FUNCTION pgflow.record_business_event(p_payload jsonb, p_phone text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_type text := p_payload ->> 'type';
  v_key text;
  v_delivery bigint;
  v_conversation bigint;
  v_result jsonb;
  v_change jsonb;
  v_detail text;
begin
  if p_payload is null or pg_catalog.jsonb_typeof(p_payload) <> 'object' then
    raise exception 'an event must be a JSON object' using errcode = 'PF003';
  end if;
  v_key := coalesce('id:' || pgflow._short_key(nullif(p_payload ->> 'id', '')),
                    pg_catalog.md5(p_payload::text));
  insert into pgflow.webhook_deliveries (provider, delivery_key, event_type, payload, received_at)
  values ('events', v_key, pg_catalog.left(coalesce(v_type, '(none)'), 100), p_payload, v_now)
  on conflict (provider, delivery_key) do nothing
  returning id into v_delivery;
  if v_delivery is null then
    select pg_catalog.jsonb_build_object('result', 'duplicate', 'first_result', d.result)
           || coalesce(d.response, '{}')
      into v_result from pgflow.webhook_deliveries d
     where d.provider = 'events' and d.delivery_key = v_key;
    return v_result;
  end if;
  if v_type is null or v_type not in ('appointment_booked', 'human_takeover', 'disqualified') then
    v_result := '{"result": "invalid", "detail": "type must be appointment_booked, human_takeover or disqualified"}';
  elsif p_payload ? 'conversation_id' then
    if (p_payload ->> 'conversation_id') ~ '^\d{1,18}$' then
      select id into v_conversation from pgflow.conversations
       where id = (p_payload ->> 'conversation_id')::bigint;
    end if;
    if v_conversation is null then
      v_result := pg_catalog.jsonb_build_object('result', 'unknown_conversation', 'detail',
        pg_catalog.format('no conversation %s', p_payload ->> 'conversation_id'));
    end if;
  elsif p_phone is null then
    v_result := pg_catalog.jsonb_build_object('result', 'invalid', 'detail',
      case when p_payload ? 'phone' then 'phone is not a phone number'
           else 'phone or conversation_id is required' end);
  else
    select cv.id into v_conversation from pgflow.conversations cv
      join pgflow.contacts ct on ct.id = cv.contact_id
     where ct.phone = p_phone
     order by (cv.status <> 'ended') desc, cv.id desc limit 1;
    if v_conversation is null then
      v_result := '{"result": "unknown_phone", "detail": "no conversation with that phone"}';
    end if;
  end if;
  if v_result is null then
    v_detail := nullif(pg_catalog.btrim(coalesce(p_payload #>> '{data,note}',
                                                  p_payload #>> '{data,reason}', '')), '');
    if v_type = 'appointment_booked' then
      v_change := pgflow.set_outcome(v_conversation, 'success',
        'appointment booked' || coalesce(' for ' || (p_payload ->> 'at'), '')
        || coalesce(': ' || v_detail, ''), 'webhook', v_now);
    elsif v_type = 'disqualified' then
      v_change := pgflow.set_outcome(v_conversation, 'unqualified',
        coalesce(v_detail, 'disqualified in the CRM'), 'webhook', v_now);
    elsif exists (select 1 from pgflow.conversations where id = v_conversation
                   and status <> 'ended') then
      perform pgflow._escalate(v_conversation, coalesce(v_detail, 'taken over in the CRM'),
                               'webhook', false, v_now);
      v_change := '{"result": "ended"}';
    else
      v_change := pgflow.set_outcome(v_conversation, 'escalated',
        coalesce(v_detail, 'taken over in the CRM'), 'webhook', v_now);
      perform pgflow._end_chats(array[v_conversation]);
    end if;
    v_result := pg_catalog.jsonb_build_object('result', 'applied',
      'conversation_id', v_conversation, 'change', v_change ->> 'result',
      'outcome', (select conversion_status from pgflow.conversations where id = v_conversation));
  end if;
  update pgflow.webhook_deliveries
     set processed_at = v_now, result = v_result ->> 'result',
         response = v_result - 'result', error = v_result ->> 'detail'
   where id = v_delivery;
  return v_result || pg_catalog.jsonb_build_object('delivery_id', v_delivery);
end;
$_$;
CREATE FUNCTION pgflow.record_chat(p_chat jsonb, p_event text DEFAULT 'get_chat'::text, p_engine_replies boolean DEFAULT false, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_chat_id text := p_chat ->> 'chat_id';
  v_conversation pgflow.conversations;
  v_target pgflow.conversations;
  v_contact pgflow.contacts;
  v_started bigint;
  v_first_agent boolean := true;
  v_inserted bigint;
  v_inbound integer := 0;
  v_agent integer := 0;
  v_ended boolean := p_event in ('chat_ended', 'chat_analyzed')
                     or p_chat ->> 'chat_status' in ('ended', 'error');
  i record;
begin
  v_conversation := pgflow._chat_conversation(p_chat);
  if v_conversation.id is null then
    return pg_catalog.jsonb_build_object('result', 'unknown_chat');
  end if;
  -- one chat at a time per conversation: concurrent deliveries wait here
  select * into v_conversation from pgflow.conversations where id = v_conversation.id for update;
  select * into v_contact from pgflow.contacts where id = v_conversation.contact_id;
  if v_contact.forgotten_at is not null then
    return pg_catalog.jsonb_build_object('result', 'forgotten');
  end if;
  if v_chat_id is not null then
    update pgflow.conversations
       set provider_chat_id = coalesce(provider_chat_id, v_chat_id),
           chat_status = case when v_ended then 'ended'
                              else coalesce(chat_status, 'ongoing') end,
           updated_at = v_now
     where id = v_conversation.id
       and (provider_chat_id is null or provider_chat_id = v_chat_id);
  end if;
  if (p_chat #>> '{metadata,pgflow_message_id}') ~ '^\d{1,18}$' then
    v_started := (p_chat #>> '{metadata,pgflow_message_id}')::bigint;
  end if;
  v_target := v_conversation;
  for i in select * from pgflow._chat_items(p_chat) order by pos loop
    if i.role = 'agent' and v_first_agent then
      v_first_agent := false;
      if v_started is not null then
        update pgflow.messages
           set chat_message_id = i.key, chat_id = coalesce(chat_id, v_chat_id)
         where id = v_started and contact_id = v_contact.id
           -- our own id was set for a post into a live chat that ended first (409)
           and (chat_message_id is null or chat_message_id = 'pgflow-' || id)
           and not exists (select 1 from pgflow.messages x where x.chat_message_id = i.key);
        if found then
          continue;
        end if;
      end if;
    end if;
    if exists (select 1 from pgflow.messages where chat_message_id = i.key) then
      continue;
    end if;
    if i.role = 'user' and v_target.status = 'ended' and v_contact.opted_out_at is null then
      v_target := pgflow._live_conversation(v_target, v_now);
    end if;
    if i.role = 'agent' then
      perform pgflow._set_reason('agent message in chat ' || coalesce(v_chat_id, '?'));
      insert into pgflow.messages
        (conversation_id, contact_id, direction, kind, body, delivery_status, segments, encoding,
         dedupe_key, chat_id, chat_message_id, created_at, sent_at, updated_at)
      values (v_target.id, v_contact.id, 'outbound', 'agent', i.content, 'sent',
              pgflow.sms_segments(i.content), pgflow.sms_encoding(i.content),
              'chat:' || i.key, v_chat_id, i.key, coalesce(i.at, v_now), coalesce(i.at, v_now),
              v_now)
      on conflict (chat_message_id) where chat_message_id is not null do nothing
      returning id into v_inserted;
      if v_inserted is not null then
        v_agent := v_agent + 1;
        update pgflow.conversations
           set last_outbound_at = greatest(last_outbound_at, coalesce(i.at, v_now))
         where id = v_target.id;
      end if;
    else
      perform pgflow._set_reason('lead text in chat ' || coalesce(v_chat_id, '?'));
      insert into pgflow.messages
        (conversation_id, contact_id, direction, kind, body, delivery_status, segments, encoding,
         dedupe_key, chat_id, chat_message_id, created_at, updated_at)
      values (v_target.id, v_contact.id, 'inbound', 'lead', i.content, 'received',
              pgflow.sms_segments(i.content), pgflow.sms_encoding(i.content),
              'chat:' || i.key, v_chat_id, i.key, coalesce(i.at, v_now), v_now)
      on conflict (chat_message_id) where chat_message_id is not null do nothing
      returning id into v_inserted;
      if v_inserted is not null then
        v_inbound := v_inbound + 1;
        perform pgflow._on_inbound(v_inserted, p_engine_replies, v_now);
        select * into v_target from pgflow.conversations where id = v_target.id;
        select * into v_contact from pgflow.contacts where id = v_contact.id;
      end if;
    end if;
  end loop;
  if p_event = 'chat_analyzed' then
    perform pgflow._record_retell_analysis(v_conversation.id, p_chat, v_now);
  end if;
  -- A chat that ended on an engaged conversation (Retell's silence timer, or its agent
  -- closed it) asks for the outcome to be classified.
  select * into v_target from pgflow.conversations where id = v_target.id;
  if v_ended and v_target.status = 'engaged' and v_target.provider_chat_id = v_chat_id then
    perform pgflow._request_classification(v_target.id, v_now);
  end if;
  return pg_catalog.jsonb_build_object(
    'result', 'recorded', 'conversation_id', v_target.id, 'inbound', v_inbound,
    'agent', v_agent, 'chat_ended', v_ended);
end;
$_$;
CREATE FUNCTION pgflow.record_classification(p_conversation_id bigint, p_transcript_hash text, p_status text, p_reason text, p_confidence double precision, p_model text, p_error text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone, p_source text DEFAULT 'llm'::text) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_row pgflow.conversations;
  v_retell pgflow.outcome_signals;
begin
  select * into v_row from pgflow.conversations where id = p_conversation_id for update;
  if not found then
    raise exception 'conversation % does not exist', p_conversation_id using errcode = 'PF002';
  end if;
  if p_source not in ('llm', 'rule') then
    raise exception 'a classification comes from llm or rule, not %', p_source
      using errcode = 'PF003';
  end if;
  if p_error is not null then
    perform pgflow._flag_review(v_row.id, 'the outcome could not be classified: ' || p_error,
                                v_now);
    return '{"result": "review"}';
  end if;
  if v_row.status <> 'ended' and p_transcript_hash <> pgflow._transcript_hash(v_row.id) then
    update pgflow.conversations set classify_requested_at = null where id = v_row.id;
    return '{"result": "stale"}';
  end if;
  insert into pgflow.outcome_signals
    (conversation_id, source, status, reason, confidence, model, transcript_hash, created_at)
  values (v_row.id, p_source, p_status, pg_catalog.left(p_reason, 2000), p_confidence, p_model,
          p_transcript_hash, v_now)
  on conflict (conversation_id, source, transcript_hash) do nothing;
  if not found then
    return '{"result": "unchanged"}';
  end if;
  if v_row.status = 'ended' then
    return pgflow.set_outcome(v_row.id, p_status, p_reason, p_source, v_now);
  end if;
  if p_confidence < 0.6 then
    perform pgflow._flag_review(v_row.id, pg_catalog.format(
      'the LLM is unsure (%s): %s, %s', p_confidence, p_status, coalesce(p_reason, '-')), v_now);
    return '{"result": "review"}';
  end if;
  select * into v_retell from pgflow.outcome_signals
   where conversation_id = v_row.id and source = 'retell' order by id desc limit 1;
  if v_retell.id is not null and v_retell.status <> p_status then
    perform pgflow._flag_review(v_row.id, pg_catalog.format(
      '%s says %s (%s); retell says %s (%s)', p_source, p_status, coalesce(p_reason, '-'),
      v_retell.status, coalesce(v_retell.reason, '-')), v_now);
    return '{"result": "review"}';
  end if;
  return pgflow.set_outcome(v_row.id, p_status, p_reason, p_source, v_now);
end;
$$;
CREATE FUNCTION pgflow.record_opt_out_judgment(p_message_id bigint, p_opt_out boolean, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  m pgflow.messages;
begin
  update pgflow.messages set intent = case when p_opt_out then 'opt_out' else 'none' end
   where id = p_message_id and direction = 'inbound' and intent = 'maybe_opt_out'
  returning * into m;
  if not found then
    return '{"result": "already_judged"}';
  end if;
  if p_opt_out then
    perform pgflow.opt_out_contact(m.contact_id, 'llm', m.id, m.body, v_now);
    return '{"result": "opted_out"}';
  end if;
  return '{"result": "kept"}';
end;
$$;
CREATE FUNCTION pgflow.record_retell_event(p_payload jsonb, p_engine_replies boolean DEFAULT false, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_event text := coalesce(nullif(p_payload ->> 'event', ''), '(none)');
  v_key text;
  v_delivery bigint;
  v_result jsonb;
begin
  if p_payload is null or pg_catalog.jsonb_typeof(p_payload) <> 'object' then
    raise exception 'a webhook payload must be a JSON object' using errcode = 'PF003';
  end if;
  v_key := pgflow._short_key(v_event) || ':'
           || pgflow._short_key(coalesce(p_payload #>> '{chat,chat_id}',
                                         p_payload #>> '{chat_inbound,chat_id}', '-'))
           || ':' || pg_catalog.md5(p_payload::text);
  insert into pgflow.webhook_deliveries (provider, delivery_key, event_type, payload, received_at)
  values ('retell', v_key, pg_catalog.left(v_event, 100), p_payload, v_now)
  on conflict (provider, delivery_key) do nothing
  returning id into v_delivery;
  if v_delivery is null then
    select pg_catalog.jsonb_build_object('result', 'duplicate', 'first_result', d.result)
           || case when d.response is not null
                   then pg_catalog.jsonb_build_object('response', d.response)
                   else '{}'::jsonb end
      into v_result
      from pgflow.webhook_deliveries d where d.provider = 'retell' and d.delivery_key = v_key;
    return v_result;
  end if;
  if v_event in ('chat_inbound', 'sms_inbound') then
    v_result := pgflow._answer_inbound(p_payload, p_engine_replies, v_now);
  elsif v_event in ('chat_started', 'transcript_updated', 'chat_ended', 'chat_analyzed') then
    if pg_catalog.jsonb_typeof(p_payload -> 'chat') = 'object' then
      v_result := pgflow.record_chat(p_payload -> 'chat', v_event, p_engine_replies, v_now);
    else
      v_result := '{"result": "malformed", "detail": "no chat object"}';
    end if;
  else
    v_result := '{"result": "ignored", "detail": "unknown event"}';
  end if;
  update pgflow.webhook_deliveries
     set processed_at = v_now, result = v_result ->> 'result', response = v_result -> 'response',
         payload = case when v_result ->> 'result' = 'forgotten' then '{"erased": true}'
                        else payload end
   where id = v_delivery;
  return v_result || pg_catalog.jsonb_build_object('delivery_id', v_delivery);
end;
$$;
CREATE FUNCTION pgflow.record_send(p_message_id bigint, p_attempt integer, p_result jsonb, p_retry_base_seconds double precision DEFAULT 30, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  m pgflow.messages;
  v_max integer;
  v_delay double precision;
  v_error text := pg_catalog.left(p_result ->> 'error', 2000);
  v_status integer := (p_result ->> 'status_code')::integer;
  v_kind text;
  v_chat text := p_result ->> 'chat_id';
  v_transport text := coalesce(p_result ->> 'transport', 'retell');
  v_code integer;
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
           provider_message_id = coalesce(v_chat, p_result ->> 'provider_message_id',
                                          provider_message_id),
           chat_id = coalesce(v_chat, chat_id), transport = v_transport
     where id = m.id;
    update pgflow.message_attempts
       set finished_at = v_now, outcome = 'sent', status_code = v_status
     where message_id = m.id and finished_at is null;
    update pgflow.conversations
       set last_outbound_at = v_now,
           chat_status = case when v_chat is not null
                               and v_chat is distinct from provider_chat_id then 'ongoing'
                              else chat_status end,
           provider_chat_id = coalesce(v_chat, provider_chat_id),
           updated_at = v_now
     where id = m.conversation_id;
    -- a receipt that came before this answer (Twilio) is applied now
    if m.provider_status is not null then
      perform pgflow._apply_provider_status(m.id, v_now);
    end if;
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
  if (p_result ->> 'carrier_error_code') ~ '^[0-9]{1,9}$' then
    v_code := (p_result ->> 'carrier_error_code')::integer;
  end if;
  if pgflow.carrier_error_class(v_code) in ('bad_number', 'opted_out') then
    perform pgflow._set_reason('refused: ' || coalesce(v_error, '?'));
    update pgflow.messages
       set delivery_status = 'failed', delivery_error = v_error, carrier_error_code = v_code,
           transport = v_transport, updated_at = v_now
     where id = m.id
    returning * into m;
    update pgflow.message_attempts
       set finished_at = v_now, outcome = 'failed', status_code = v_status, error = v_error
     where message_id = m.id and finished_at is null;
    perform pgflow._on_carrier_error(m, v_code, v_now);
    return pg_catalog.jsonb_build_object('action', 'failed',
      'class', pgflow.carrier_error_class(v_code));
  end if;
  perform pgflow._set_reason(case when coalesce((p_result ->> 'retryable')::boolean, false)
                                  then 'gave up after ' || p_attempt || ' attempts'
                                  else 'permanent failure' end);
  update pgflow.messages
     set delivery_status = 'dead_letter', delivery_error = v_error, carrier_error_code = v_code,
         updated_at = v_now
   where id = m.id;
  update pgflow.message_attempts
     set finished_at = v_now, outcome = 'dead_letter', status_code = v_status, error = v_error
   where message_id = m.id and finished_at is null;
  if coalesce((p_result ->> 'alert')::boolean, false) then
    v_kind := v_transport || case v_status when 401 then '_unauthorized'
                                           when 402 then '_payment_required'
                                           else '_' || coalesce(v_status::text, 'error') end;
    perform pgflow.open_alert(v_kind, 'critical',
      pg_catalog.format('%s refused a send with HTTP %s: %s',
                        pg_catalog.initcap(v_transport), v_status, coalesce(v_error, '')),
      pg_catalog.jsonb_build_object('message_id', m.id, 'status_code', v_status), v_now);
  end if;
  return pg_catalog.jsonb_build_object('action', 'dead_letter');
end;
$_$;
CREATE FUNCTION pgflow.record_sends(p_items jsonb, p_retry_base_seconds double precision DEFAULT 30, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_out jsonb;
  v_ords bigint[];
  v_ids bigint[];
  v_attempts integer[];
  v_conversations bigint[];
  v_results jsonb[];
  v_attempt integer;
  r record;
begin
  perform from pgflow.messages m
   where m.id in (select (t.item ->> 'message_id')::bigint
                    from pg_catalog.jsonb_array_elements(p_items) t(item))
   order by m.id
     for update;
  -- the sends that went through, of messages still `sending` at that attempt with no
  -- receipt waiting (Twilio's: pgflow.record_send applies it), the first per conversation
  select pg_catalog.array_agg(f.ord order by f.id), pg_catalog.array_agg(f.id order by f.id),
         pg_catalog.array_agg(f.attempt order by f.id),
         pg_catalog.array_agg(f.conversation_id order by f.id),
         pg_catalog.array_agg(f.result order by f.id)
    into v_ords, v_ids, v_attempts, v_conversations, v_results
    from (select distinct on (m.conversation_id) i.ord, m.id, i.attempt, m.conversation_id, i.result
            from (select distinct on ((t.item ->> 'message_id')::bigint)
                         (t.item ->> 'message_id')::bigint as id,
                         (t.item ->> 'attempt')::integer as attempt, t.item -> 'result' as result,
                         t.ord
                    from pg_catalog.jsonb_array_elements(p_items) with ordinality as t(item, ord)
                   order by (t.item ->> 'message_id')::bigint, t.ord) i
            join pgflow.messages m on m.id = i.id
           where (i.result ->> 'ok')::boolean
             and m.delivery_status = 'sending' and m.attempts = i.attempt
             and m.provider_status is null
           order by m.conversation_id, m.id) f;
  if v_ids is not null then
    perform from pgflow.conversations cv where cv.id = any (v_conversations)
     order by cv.id for no key update;
    for v_attempt in select distinct a from pg_catalog.unnest(v_attempts) a order by 1 loop
      perform pg_catalog.set_config('pgflow.reason', 'sent on attempt ' || v_attempt, true);
      update pgflow.messages m
         set delivery_status = 'sent', sent_at = v_now, updated_at = v_now,
             provider_message_id = coalesce(b.result ->> 'chat_id',
                                            b.result ->> 'provider_message_id',
                                            m.provider_message_id),
             chat_id = coalesce(b.result ->> 'chat_id', m.chat_id),
             transport = coalesce(b.result ->> 'transport', 'retell')
        from rows from (pg_catalog.unnest(v_ids), pg_catalog.unnest(v_attempts), pg_catalog.unnest(v_results)) as b(id, attempt, result)
       where m.id = b.id and b.attempt = v_attempt;
    end loop;
    update pgflow.message_attempts a
       set finished_at = v_now, outcome = 'sent',
           status_code = (b.result ->> 'status_code')::integer
      from rows from (pg_catalog.unnest(v_ids), pg_catalog.unnest(v_results)) as b(id, result)
     where a.message_id = b.id and a.finished_at is null;
    update pgflow.conversations cv
       set last_outbound_at = v_now,
           chat_status = case when b.result ->> 'chat_id' is not null
                               and b.result ->> 'chat_id' is distinct from cv.provider_chat_id
                              then 'ongoing' else cv.chat_status end,
           provider_chat_id = coalesce(b.result ->> 'chat_id', cv.provider_chat_id),
           updated_at = v_now
      from rows from (pg_catalog.unnest(v_conversations), pg_catalog.unnest(v_results)) as b(id, result)
     where cv.id = b.id;
  end if;
  select coalesce(pg_catalog.jsonb_object_agg(o::text, '{"action": "sent"}'::jsonb), '{}')
    into v_out from pg_catalog.unnest(v_ords) o;
  for r in select t.item, t.ord from pg_catalog.jsonb_array_elements(p_items) with ordinality as t(item, ord)
            where t.ord <> all (coalesce(v_ords, '{}'))
            order by (t.item ->> 'message_id')::bigint, t.ord
  loop
    v_out := v_out || pg_catalog.jsonb_build_object(r.ord::text,
      pgflow.record_send((r.item ->> 'message_id')::bigint, (r.item ->> 'attempt')::integer,
                         r.item -> 'result', p_retry_base_seconds, v_now));
  end loop;
  return (select coalesce(pg_catalog.jsonb_agg(v_out -> ord::text order by ord), '[]')
            from pg_catalog.generate_series(1, pg_catalog.jsonb_array_length(p_items)) ord);
end;
$$;
CREATE FUNCTION pgflow.record_sign_in(p_email text, p_ok boolean, p_token_hash bytea, p_ip text DEFAULT NULL::text, p_user_agent text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_email text := pg_catalog.left(pg_catalog.lower(pg_catalog.btrim(coalesce(p_email, ''))), 254);
  v_user pgflow.console_users;
  v_session bigint;
begin
  insert into pgflow.console_sign_ins (email, ok, ip, attempted_at)
  values (v_email, p_ok, pg_catalog.left(p_ip, 64), v_now);
  delete from pgflow.console_sign_ins
   where email = v_email and attempted_at < v_now - interval '30 days';
  if not p_ok then
    return '{"result": "failed"}';
  end if;
  select * into v_user from pgflow.console_users where email = v_email and disabled_at is null;
  if not found then
    raise exception 'no active console user %', v_email using errcode = 'PF002';
  end if;
  insert into pgflow.console_sessions
    (user_id, token_hash, created_at, last_seen_at, expires_at, ip, user_agent)
  values (v_user.id, p_token_hash, v_now, v_now, v_now + interval '12 hours',
          pg_catalog.left(p_ip, 64), pg_catalog.left(p_user_agent, 300))
  returning id into v_session;
  perform pgflow._audit(v_user.email, v_user.id, 'sign_in', null, null,
                        pg_catalog.jsonb_build_object('ip', pg_catalog.left(p_ip, 64)), v_now);
  return pg_catalog.jsonb_build_object('result', 'signed_in', 'session_id', v_session,
                                       'user_id', v_user.id, 'role', v_user.role);
end;
$$;
CREATE FUNCTION pgflow.record_twilio_inbound(p_payload jsonb, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_sid text := p_payload ->> 'MessageSid';
  v_lead text := p_payload ->> 'From';
  v_line text := p_payload ->> 'To';
  v_text text := coalesce(p_payload ->> 'Body', '');
  v_word text := pg_catalog.upper(pg_catalog.btrim(v_text, E' \t\r\n.!'));
  v_carrier text;
  v_intent text := (select i.intent from pgflow.inbound_intent(v_text) i);
  v_delivery bigint;
  v_contact pgflow.contacts;
  v_conversation pgflow.conversations;
  v_message bigint;
  v_result jsonb;
begin
  if v_sid is null or v_sid !~ '^(SM|MM)[0-9a-f]{32}$'
     or v_lead is null or v_lead !~ '^\+[1-9][0-9]{6,14}$'
     or v_line is null or v_line !~ '^\+[1-9][0-9]{6,14}$' then
    return '{"result": "invalid", "detail": "MessageSid, and From and To as E.164 numbers, are needed"}';
  end if;
  v_carrier := case
    when pg_catalog.upper(p_payload ->> 'OptOutType') in ('STOP', 'START', 'HELP')
      then pg_catalog.upper(p_payload ->> 'OptOutType')
    when v_word in ('STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT') then 'STOP'
    when v_word in ('START', 'UNSTOP', 'YES') then 'START'
    when v_word in ('HELP', 'INFO') then 'HELP' end;
  insert into pgflow.webhook_deliveries (provider, delivery_key, event_type, payload, received_at)
  values ('twilio', 'inbound:' || v_sid, 'inbound', p_payload, v_now)
  on conflict (provider, delivery_key) do nothing
  returning id into v_delivery;
  if v_delivery is null then
    return '{"result": "duplicate"}';
  end if;
  select * into v_contact from pgflow.contacts where phone = v_lead for update;
  -- a stranger's contact is made for a STOP, for a line that answers strangers, and for
  -- START from a number forgotten before (its contact arrives opted out: START lifts it)
  if v_contact.id is null and (v_carrier = 'STOP' or v_intent = 'opt_out'
       or exists (select 1 from pgflow.sending_numbers n
                   where n.number = v_line and n.inbound_agent_id is not null)
       or ((v_carrier = 'START' or v_intent = 'opt_in')
           and (pgflow._suppression(v_lead)).phone_hash is not null)) then
    insert into pgflow.contacts (phone, created_at, updated_at)
    values (v_lead, v_now, v_now)
    on conflict (phone) do update set updated_at = excluded.updated_at
    returning * into v_contact;
  end if;
  if v_contact.id is null then
    v_result := '{"result": "unknown_number_ignored"}';
  elsif v_contact.opted_out_at is not null and v_intent <> 'opt_in'
        and v_carrier is distinct from 'START' then
    v_result := '{"result": "ignored_opted_out"}';
  else
    v_conversation := pgflow._inbound_conversation(v_contact.id, v_line, v_now);
    if v_conversation.id is null then  -- no agent anywhere: still honour a STOP or a START
      if v_carrier = 'STOP' or v_intent = 'opt_out' then
        perform pgflow.opt_out_contact(v_contact.id,
          case when v_carrier = 'STOP' then 'carrier' else 'keyword' end, null, v_text, v_now);
        v_result := '{"result": "recorded", "effect": "opt_out"}';
      elsif v_contact.opted_out_at is not null then  -- START (others were ignored above)
        perform pgflow.opt_in_contact(v_contact.id,
          case when v_carrier = 'START' then 'carrier' else 'keyword' end, null, v_text, v_now);
        v_result := '{"result": "recorded", "effect": "opt_in"}';
      else
        v_result := '{"result": "unknown_number_ignored"}';
      end if;
    else
      perform pgflow._set_reason('lead text (Twilio)');
      insert into pgflow.messages
        (conversation_id, contact_id, direction, kind, body, delivery_status, segments,
         encoding, dedupe_key, provider_message_id, transport, created_at, updated_at)
      values (v_conversation.id, v_contact.id, 'inbound', 'lead', v_text, 'received',
              pgflow.sms_segments(v_text), pgflow.sms_encoding(v_text),
              'twilio:' || v_sid, v_sid, 'twilio', v_now, v_now)
      on conflict (dedupe_key) do nothing
      returning id into v_message;
      v_result := pg_catalog.jsonb_build_object('result', 'recorded',
        'conversation_id', v_conversation.id, 'message_id', v_message,
        'effect', case when v_message is not null
                       then pgflow._on_inbound(v_message, true, v_now, v_carrier) end);
    end if;
  end if;
  update pgflow.webhook_deliveries
     set processed_at = v_now, result = v_result ->> 'result', response = v_result
   where id = v_delivery;
  return v_result;
end;
$_$;
CREATE FUNCTION pgflow.record_twilio_status(p_message_id bigint, p_payload jsonb, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_sid text := p_payload ->> 'MessageSid';
  v_status text := pg_catalog.lower(p_payload ->> 'MessageStatus');
  v_code integer;
  v_delivery bigint;
  m pgflow.messages;
  v_result jsonb;
begin
  if v_sid is null or v_sid !~ '^(SM|MM)[0-9a-f]{32}$' or v_status is null then
    return '{"result": "invalid", "detail": "MessageSid and MessageStatus are needed"}';
  end if;
  if (p_payload ->> 'ErrorCode') ~ '^[0-9]{1,9}$' then
    v_code := (p_payload ->> 'ErrorCode')::integer;
  end if;
  insert into pgflow.webhook_deliveries (provider, delivery_key, event_type, payload, received_at)
  values ('twilio', v_sid || ':' || v_status, 'status', p_payload, v_now)
  on conflict (provider, delivery_key) do nothing
  returning id into v_delivery;
  if v_delivery is null then
    return '{"result": "duplicate"}';
  end if;
  select * into m from pgflow.messages
   where id = p_message_id and direction = 'outbound' for update;
  -- ours: the id Twilio gave our send, or (its answer not recorded yet) a text being sent
  if not found or (m.provider_message_id is not null and m.provider_message_id <> v_sid)
     or (m.provider_message_id is null and m.delivery_status not in ('sending', 'sent')) then
    v_result := '{"result": "unknown_message"}';
  elsif pgflow._provider_rank(v_status) is null then
    v_result := '{"result": "ignored"}';
  elsif pgflow._provider_rank(v_status) <= coalesce(pgflow._provider_rank(m.provider_status), -1)
  then
    v_result := pg_catalog.jsonb_build_object('result', 'stale', 'status', m.provider_status);
  else
    update pgflow.messages
       set provider_message_id = v_sid, provider_status = v_status,
           carrier_error_code = coalesce(v_code, carrier_error_code), updated_at = v_now
     where id = m.id;
    v_result := pg_catalog.jsonb_build_object('result', 'applied', 'status', v_status,
      'effect', pgflow._apply_provider_status(m.id, v_now));
  end if;
  update pgflow.webhook_deliveries
     set processed_at = v_now, result = v_result ->> 'result', response = v_result,
         payload = case when exists (select 1 from pgflow.contacts ct
                                      where ct.id = m.contact_id and ct.forgotten_at is not null)
                        then '{"erased": true}' else payload end
   where id = v_delivery;
  return v_result || pg_catalog.jsonb_build_object('message_id', p_message_id);
end;
$_$;
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
CREATE FUNCTION pgflow.release_interrupted(p_message_id bigint, p_attempt integer, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  m pgflow.messages;
  v_max integer;
begin
  select * into m from pgflow.messages
   where id = p_message_id and delivery_status = 'sending' and attempts = p_attempt
     for update;
  if not found then
    return pg_catalog.jsonb_build_object('action', 'stale');
  end if;
  update pgflow.message_attempts
     set finished_at = v_now, outcome = 'interrupted',
         error = 'the worker stopped during the send, and Retell has no chat for it'
   where message_id = m.id and finished_at is null;
  select coalesce(c.max_attempts, 6) into v_max
    from pgflow.conversations cv
    left join pgflow.enrollments e on e.id = m.enrollment_id
    left join pgflow.campaigns c on c.id = coalesce(e.campaign_id, cv.campaign_id)
   where cv.id = m.conversation_id;
  if m.attempts >= v_max then
    perform pgflow._set_reason('interrupted ' || m.attempts || ' times');
    update pgflow.messages
       set delivery_status = 'dead_letter', updated_at = v_now,
           delivery_error = pg_catalog.format(
             'the worker stopped during each of %s attempts (possible poison message)', m.attempts)
     where id = m.id;
    return pg_catalog.jsonb_build_object('action', 'dead_letter');
  end if;
  perform pgflow._set_reason('attempt ' || m.attempts || ' interrupted; not sent');
  update pgflow.messages set delivery_status = 'queued', updated_at = v_now where id = m.id;
  return pg_catalog.jsonb_build_object('action', 'released');
end;
$$;
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
CREATE FUNCTION pgflow.resolve_alert(p_kind text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
declare
  v_id bigint;
begin
  update pgflow.alerts set resolved_at = greatest(coalesce(p_now, pg_catalog.now()), opened_at)
   where kind = p_kind and resolved_at is null
  returning id into v_id;
  if v_id is not null then
    perform pgflow._enqueue_notice(v_id, 'resolved');
  end if;
  return v_id;
end;
$$;
CREATE FUNCTION pgflow.rule_text(p_rule text) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow.rules_cap(p_rules text[]) RETURNS integer
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
begin
  return (select pg_catalog.min(r.max_per_24h) from pgflow.state_rules r
           where r.state = any (p_rules));
end;
$$;
CREATE FUNCTION pgflow.send_latency(p_window interval DEFAULT '01:00:00'::interval, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  with sent as (
    select m.kind, extract(epoch from m.sent_at - m.created_at)::double precision as s
      from pgflow.messages m
     where m.direction = 'outbound' and m.sent_at is not null
       and m.sent_at > coalesce(p_now, pg_catalog.now()) - p_window
       and m.sent_at <= coalesce(p_now, pg_catalog.now())
  ), bounds as (
    select pg_catalog.unnest(array[0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600,
                                   86400]::double precision[]) as le
  )
  select coalesce(pg_catalog.jsonb_object_agg(k.kind, pg_catalog.jsonb_build_object(
           'count', (select pg_catalog.count(*) from sent where sent.kind = k.kind),
           'sum', (select coalesce(pg_catalog.sum(greatest(s, 0)), 0) from sent
                    where sent.kind = k.kind),
           'buckets', (select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(b.le,
                         (select pg_catalog.count(*) from sent
                           where sent.kind = k.kind and sent.s <= b.le)) order by b.le)
                         from bounds b))), '{}')
    from (select distinct kind from sent) k
$$;
CREATE FUNCTION pgflow.sender_for(p_contact_id bigint, p_campaign_id bigint) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow.sends_per_hour(p_campaign text DEFAULT NULL::text, p_hours integer DEFAULT 24, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  with bounds as (
    select pg_catalog.date_trunc('hour', coalesce(p_now, pg_catalog.now())) as last_hour,
           least(greatest(coalesce(p_hours, 24), 1), 168) as hours
  ), hours as (
    select b.last_hour - pg_catalog.make_interval(hours => g) as hour
      from bounds b, pg_catalog.generate_series(0, b.hours - 1) g
  ), sent as (
    select pg_catalog.date_trunc('hour', m.sent_at) as hour, pg_catalog.count(*) as n
      from pgflow.messages m
      join pgflow.conversations cv on cv.id = m.conversation_id
      left join pgflow.campaigns c on c.id = cv.campaign_id, bounds b
     where m.direction = 'outbound' and m.sent_at is not null
       and m.sent_at >= b.last_hour - pg_catalog.make_interval(hours => b.hours - 1)
       and (p_campaign is null or c.slug = p_campaign)
     group by 1
  )
  select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('hour', h.hour,
                                                            'sent', coalesce(s.n, 0))
                              order by h.hour)
    from hours h left join sent s on s.hour = h.hour
$$;
CREATE TABLE pgflow.sending_numbers (
    id bigint NOT NULL,
    number text NOT NULL,
    inbound_agent_id bigint,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    per_second numeric,
    daily_segments integer,
    next_slot_at timestamp with time zone,
    CONSTRAINT sending_numbers_daily_segments_positive CHECK ((daily_segments > 0)),
    CONSTRAINT sending_numbers_number_e164 CHECK ((number ~ '^\+[1-9][0-9]{6,14}$'::text)),
    CONSTRAINT sending_numbers_per_second_positive CHECK (((per_second > (0)::numeric) AND (per_second <= (1000)::numeric)))
);
CREATE FUNCTION pgflow.set_number_limits(p_number text, p_limits jsonb, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS pgflow.sending_numbers
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow.set_outcome(p_conversation_id bigint, p_status text, p_reason text, p_source text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_row pgflow.conversations;
  v_result text;
begin
  select * into v_row from pgflow.conversations where id = p_conversation_id for update;
  if not found then
    raise exception 'conversation % does not exist', p_conversation_id using errcode = 'PF002';
  end if;
  if v_row.status <> 'ended' then
    perform pgflow.end_conversation(p_conversation_id, p_status, p_reason, p_source, v_now);
    v_result := 'ended';
  elsif v_row.outcome_source = 'human' and p_source <> 'human' then
    v_result := 'kept';
  elsif p_source in ('human', 'webhook') then
    if p_status is null or p_status not in
       ('success', 'qualified', 'unqualified', 'escalated', 'no_response', 'discarded') then
      raise exception 'unknown conversion status %', coalesce(p_status, '(null)')
        using errcode = 'PF003';
    end if;
    update pgflow.conversations
       set conversion_status = p_status, outcome_reason = p_reason, outcome_source = p_source,
           updated_at = v_now
     where id = p_conversation_id;
    insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
    values (v_now, 'conversation', p_conversation_id, 'ended', 'ended',
            pg_catalog.format('outcome %s -> %s by %s%s', v_row.conversion_status, p_status,
                              p_source, coalesce(': ' || p_reason, '')));
    v_result := 'changed';
  else
    if v_row.conversion_status is distinct from p_status then
      perform pgflow._flag_review(p_conversation_id, pg_catalog.format(
        '%s says %s (%s), but it ended %s by %s (%s)', p_source, p_status,
        coalesce(p_reason, '-'), v_row.conversion_status, v_row.outcome_source,
        coalesce(v_row.outcome_reason, '-')), v_now);
    end if;
    v_result := 'kept';
  end if;
  insert into pgflow.outcome_signals
    (conversation_id, source, status, reason, transcript_hash, created_at)
  values (p_conversation_id, p_source, p_status, pg_catalog.left(p_reason, 2000),
          'set:' || extract(epoch from v_now)::text || ':' || p_status, v_now)
  on conflict (conversation_id, source, transcript_hash) do nothing;
  if p_source = 'human' then
    update pgflow.conversations set review_reason = null, review_requested_at = null
     where id = p_conversation_id;
    if not exists (select 1 from pgflow.conversations where review_reason is not null) then
      perform pgflow.resolve_alert('needs_review', v_now);
    end if;
  end if;
  return pg_catalog.jsonb_build_object('result', v_result, 'conversation_id', p_conversation_id,
    'status', (select conversion_status from pgflow.conversations where id = p_conversation_id));
end;
$$;
CREATE FUNCTION pgflow.settle(p_conversation_id bigint, p_status text, p_reason text, p_actor text, p_user_id bigint DEFAULT NULL::bigint, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_actor text := pgflow._actor(p_actor);
  v_before pgflow.conversations;
  v_result jsonb;
begin
  if p_status is null or p_status not in
     ('success', 'qualified', 'unqualified', 'escalated', 'no_response', 'discarded') then
    raise exception 'unknown outcome %', coalesce(p_status, '(none)') using errcode = 'PF003';
  end if;
  select * into v_before from pgflow.conversations where id = p_conversation_id;
  if not found then
    raise exception 'conversation % does not exist', p_conversation_id using errcode = 'PF002';
  end if;
  v_result := pgflow.set_outcome(p_conversation_id, p_status,
    coalesce(nullif(pg_catalog.btrim(p_reason), ''), 'set by ' || v_actor), 'human', v_now);
  perform pgflow._audit(v_actor, p_user_id, 'set_outcome', p_conversation_id,
    v_before.contact_id, pg_catalog.jsonb_build_object('status', p_status,
      'before', v_before.conversion_status, 'result', v_result ->> 'result',
      'reason', nullif(pg_catalog.btrim(p_reason), '')), v_now);
  return v_result;
end;
$$;
CREATE FUNCTION pgflow.settle_dead_letters(p_action text, p_ids bigint[], p_actor text, p_user_id bigint DEFAULT NULL::bigint, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_actor text := pgflow._actor(p_actor);
  v_results jsonb;
  r record;
begin
  if p_action = 'requeue' then
    v_results := pgflow.requeue_dead_letters(p_ids, null, v_now);
  elsif p_action = 'discard' then
    v_results := pgflow.discard_dead_letters(p_ids, v_now);
  else
    raise exception 'unknown dead-letter action %', coalesce(p_action, '(none)')
      using errcode = 'PF003';
  end if;
  for r in select (x ->> 'id')::bigint as id, x ->> 'result' as result
             from pg_catalog.jsonb_array_elements(v_results) x
            where x ->> 'result' in ('requeued', 'discarded')
  loop
    perform pgflow._audit(v_actor, p_user_id, p_action, m.conversation_id, m.contact_id,
                          pg_catalog.jsonb_build_object('message_id', r.id), v_now)
       from pgflow.messages m where m.id = r.id;
  end loop;
  return v_results;
end;
$$;
CREATE FUNCTION pgflow.simulate_campaign(p_slug text, p_leads jsonb, p_days integer DEFAULT 14, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow.sms_encoding(p_body text) RETURNS text
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $_$
begin
  -- plpgsql, not sql: a SQL function that cannot be inlined is planned on every call
  return case
    when p_body ~ ('^[@£$¥èéùìòÇ' || E'\n' || 'Øø' || E'\r' || 'Å寅ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&''()*+,\-./0-9:;<=>?¡A-ZÄÖÑܧ¿a-zäöñüà^{}\\\[~\]|€' || E'\f' || ']*$')
      then 'gsm7'
    else 'ucs2'
  end;
end;
$_$;
CREATE FUNCTION pgflow.sms_segments(p_body text) RETURNS integer
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
begin
  return pgflow._segments(p_body, pgflow.sms_encoding(p_body));
end;
$$;
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
CREATE FUNCTION pgflow.take_over(p_conversation_id bigint, p_actor text, p_user_id bigint DEFAULT NULL::bigint, p_reason text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_actor text := pgflow._actor(p_actor);
  v_conversation pgflow.conversations;
  v_contact pgflow.contacts;
begin
  select * into v_conversation from pgflow.conversations where id = p_conversation_id;
  if not found then
    raise exception 'conversation % does not exist', p_conversation_id using errcode = 'PF002';
  end if;
  select * into v_contact from pgflow.contacts where id = v_conversation.contact_id
     for no key update;  -- a receipt's foreign-key check (key share) may hold it meanwhile
  if v_contact.held_by is not distinct from v_actor then
    return pg_catalog.jsonb_build_object('result', 'unchanged', 'contact_id', v_contact.id,
                                         'held_by', v_actor);
  end if;
  perform pgflow._hold(v_contact, v_actor,
    'taken over by ' || v_actor || coalesce(': ' || nullif(pg_catalog.btrim(p_reason), ''), ''),
    'a person took over', v_now);
  perform pgflow._audit(v_actor, p_user_id, 'takeover', p_conversation_id, v_contact.id,
    pg_catalog.jsonb_build_object('reason', nullif(pg_catalog.btrim(p_reason), ''),
                                  'from', v_contact.held_by), v_now);
  return pg_catalog.jsonb_build_object('result', 'held', 'contact_id', v_contact.id,
    'conversation_id', p_conversation_id, 'held_by', v_actor, 'previous', v_contact.held_by);
end;
$$;
CREATE FUNCTION pgflow.tick(p_now timestamp with time zone DEFAULT NULL::timestamp with time zone, p_batch integer DEFAULT 1000) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow.twilio_numbers() RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path TO ''
    AS $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
           'number', n.number, 'campaigns', n.slugs) order by n.number), '[]')
    from (select cn.number, pg_catalog.array_agg(c.slug order by c.slug) as slugs
            from pgflow.campaign_numbers cn
            join pgflow.campaigns c on c.id = cn.campaign_id
           where c.transport = 'twilio' and c.status <> 'archived'
           group by cn.number) n
$$;
CREATE FUNCTION pgflow.watch(p_source text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone, p_failure_rate numeric DEFAULT 0.25, p_failure_min integer DEFAULT 5, p_backlog interval DEFAULT '00:05:00'::interval) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_tick record;
  v_workers integer;
  v_ready integer;
  v_oldest timestamptz;
  v_tried integer;
  v_failed integer;
  v_dead integer;
  v_review integer;
  v_opened text[] := '{}';
  v_resolved text[] := '{}';
begin
  if p_source is distinct from 'tick' then
    v_tick := pgflow._tick_health(v_now);
    if v_tick.checkable and not v_tick.ok then
      perform pgflow.open_alert('tick_stalled', 'critical',
        'pg_cron''s pgflow-tick has not run for 3 minutes: drips, no_response and alerts stop. '
        || v_tick.detail, pg_catalog.jsonb_build_object('detail', v_tick.detail), v_now);
      v_opened := v_opened || 'tick_stalled'::text;
    elsif v_tick.checkable and pgflow.resolve_alert('tick_stalled', v_now) is not null then
      v_resolved := v_resolved || 'tick_stalled'::text;
    end if;
  end if;
  select pg_catalog.count(*) into v_workers from pgflow.workers
   where stopped_at is null and last_seen_at > v_now - interval '1 minute';
  select pg_catalog.count(*), pg_catalog.min(execute_after) into v_ready, v_oldest
    from pgflow.pgqueuer where status = 'queued' and execute_after <= v_now;
  if v_ready > 0 and v_workers = 0 and p_source <> 'worker' then
    perform pgflow.open_alert('worker_down', 'critical',
      pg_catalog.format('%s job(s) wait and no worker has been seen for a minute: nothing is '
                        'being sent (start or restart pgflow worker)', v_ready),
      pg_catalog.jsonb_build_object('ready_jobs', v_ready, 'oldest', v_oldest), v_now);
    v_opened := v_opened || 'worker_down'::text;
  elsif (v_workers > 0 or v_ready = 0) and pgflow.resolve_alert('worker_down', v_now) is not null then
    v_resolved := v_resolved || 'worker_down'::text;
  end if;
  select pg_catalog.count(*), pg_catalog.count(*) filter (where outcome in ('retry', 'dead_letter'))
    into v_tried, v_failed
    from pgflow.message_attempts
   where finished_at > v_now - interval '15 minutes' and finished_at <= v_now;
  if v_failed >= p_failure_min and v_failed > p_failure_rate * v_tried then
    perform pgflow.open_alert('delivery_failures', 'warning',
      pg_catalog.format('%s of %s sends failed in the last 15 minutes (%s%%)', v_failed, v_tried,
                        pg_catalog.round(100.0 * v_failed / v_tried)),
      pg_catalog.jsonb_build_object('failed', v_failed, 'attempts', v_tried), v_now);
    v_opened := v_opened || 'delivery_failures'::text;
  elsif pgflow.resolve_alert('delivery_failures', v_now) is not null then
    v_resolved := v_resolved || 'delivery_failures'::text;
  end if;
  select pg_catalog.count(*) into v_dead from pgflow.messages
   where delivery_status = 'dead_letter' and updated_at > v_now - interval '15 minutes'
     and updated_at <= v_now;
  if v_dead > 0 then
    perform pgflow.open_alert('dead_letters', 'warning',
      pg_catalog.format('%s message(s) became dead letters in the last 15 minutes '
                        '(pgflow dead-letters list)', v_dead),
      pg_catalog.jsonb_build_object('new_dead_letters', v_dead), v_now);
    v_opened := v_opened || 'dead_letters'::text;
  elsif pgflow.resolve_alert('dead_letters', v_now) is not null then
    v_resolved := v_resolved || 'dead_letters'::text;
  end if;
  if v_oldest < v_now - p_backlog then
    perform pgflow.open_alert('queue_backlog', 'warning',
      pg_catalog.format('the oldest ready job has waited %s (%s ready)',
                        pg_catalog.date_trunc('second', v_now - v_oldest), v_ready),
      pg_catalog.jsonb_build_object('ready_jobs', v_ready, 'oldest', v_oldest), v_now);
    v_opened := v_opened || 'queue_backlog'::text;
  elsif pgflow.resolve_alert('queue_backlog', v_now) is not null then
    v_resolved := v_resolved || 'queue_backlog'::text;
  end if;
  select pg_catalog.count(*) into v_review from pgflow.conversations
   where review_reason is not null;
  if v_review = 0 and pgflow.resolve_alert('needs_review', v_now) is not null then
    v_resolved := v_resolved || 'needs_review'::text;
  end if;
  return pg_catalog.jsonb_build_object(
    'opened', pg_catalog.to_jsonb(v_opened),
    'resolved', pg_catalog.to_jsonb(v_resolved),
    'open', (select coalesce(pg_catalog.jsonb_agg(kind order by kind), '[]')
               from pgflow.alerts where resolved_at is null));
end;
$$;
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
ALTER TABLE pgflow.agents ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.agents_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
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
    resolve_notified_at timestamp with time zone,
    CONSTRAINT alerts_resolved_after_open CHECK (((resolved_at IS NULL) OR (resolved_at >= opened_at))),
    CONSTRAINT alerts_severity_valid CHECK ((severity = ANY (ARRAY['info'::text, 'warning'::text, 'critical'::text])))
);
ALTER TABLE pgflow.alerts ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.alerts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.area_codes (
    npa text NOT NULL,
    region text NOT NULL,
    country text NOT NULL,
    CONSTRAINT area_codes_country CHECK ((country = ANY (ARRAY['US'::text, 'CA'::text]))),
    CONSTRAINT area_codes_npa CHECK ((npa ~ '^[2-9][0-9]{2}$'::text)),
    CONSTRAINT area_codes_region CHECK ((region ~ '^[A-Z]{2}$'::text))
);
CREATE TABLE pgflow.audit_log (
    id bigint NOT NULL,
    occurred_at timestamp with time zone DEFAULT now() NOT NULL,
    actor text NOT NULL,
    user_id bigint,
    action text NOT NULL,
    conversation_id bigint,
    contact_id bigint,
    detail jsonb DEFAULT '{}'::jsonb NOT NULL,
    CONSTRAINT audit_log_action_valid CHECK ((action = ANY (ARRAY['sign_in'::text, 'sign_out'::text, 'takeover'::text, 'hand_back'::text, 'reply'::text, 'set_outcome'::text, 'requeue'::text, 'discard'::text, 'user_add'::text, 'user_disable'::text, 'user_password'::text, 'sessions_revoke'::text, 'forget'::text]))),
    CONSTRAINT audit_log_actor_present CHECK ((length(btrim(actor)) > 0)),
    CONSTRAINT audit_log_detail_object CHECK ((jsonb_typeof(detail) = 'object'::text))
);
ALTER TABLE pgflow.audit_log ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.audit_log_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE VIEW pgflow.campaign_funnel AS
 SELECT (f.value ->> 'campaign'::text) AS campaign,
    ((f.value ->> 'enrolled'::text))::bigint AS enrolled,
    ((f.value ->> 'messaged'::text))::bigint AS messaged,
    ((f.value ->> 'steps_sent'::text))::bigint AS steps_sent,
    ((f.value ->> 'delivered'::text))::bigint AS delivered,
    ((f.value ->> 'replied'::text))::bigint AS replied,
    ((f.value ->> 'opted_out'::text))::bigint AS opted_out,
    ((f.value ->> 'reply_rate'::text))::numeric AS reply_rate,
    ((f.value ->> 'opt_out_rate'::text))::numeric AS opt_out_rate,
    ((f.value ->> 'median_first_reply_seconds'::text))::numeric AS median_first_reply_seconds,
    (f.value -> 'outcomes'::text) AS outcomes,
    (f.value -> 'steps'::text) AS steps
   FROM jsonb_array_elements(pgflow.funnel()) f(value);
CREATE TABLE pgflow.campaign_numbers (
    campaign_id bigint NOT NULL,
    number text NOT NULL,
    "position" smallint NOT NULL,
    CONSTRAINT campaign_numbers_position_positive CHECK (("position" > 0))
);
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
ALTER TABLE pgflow.campaign_steps ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.campaign_steps_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
ALTER TABLE pgflow.campaigns ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.campaigns_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.consents (
    id bigint NOT NULL,
    contact_id bigint NOT NULL,
    given_at timestamp with time zone NOT NULL,
    source text,
    disclosure text,
    ip text,
    user_agent text,
    request jsonb,
    lead_event_id bigint,
    recorded_at timestamp with time zone DEFAULT now() NOT NULL
);
ALTER TABLE pgflow.consents ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.consents_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.console_sessions (
    id bigint NOT NULL,
    user_id bigint NOT NULL,
    token_hash bytea NOT NULL,
    created_at timestamp with time zone NOT NULL,
    last_seen_at timestamp with time zone NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    revoked_at timestamp with time zone,
    ip text,
    user_agent text,
    CONSTRAINT console_sessions_expiry_after_start CHECK ((expires_at > created_at)),
    CONSTRAINT console_sessions_token_hash_length CHECK ((length(token_hash) = 32))
);
ALTER TABLE pgflow.console_sessions ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.console_sessions_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.console_sign_ins (
    id bigint NOT NULL,
    email text NOT NULL,
    ok boolean NOT NULL,
    ip text,
    attempted_at timestamp with time zone NOT NULL
);
ALTER TABLE pgflow.console_sign_ins ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.console_sign_ins_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.console_users (
    id bigint NOT NULL,
    email text NOT NULL,
    role text NOT NULL,
    password_hash text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    disabled_at timestamp with time zone,
    CONSTRAINT console_users_email_shape CHECK (((email ~ '^[^@\s]+@[^@\s]+$'::text) AND (email = lower(email)) AND (length(email) <= 254))),
    CONSTRAINT console_users_password_hash_scrypt CHECK ((password_hash ~~ 'scrypt$%'::text)),
    CONSTRAINT console_users_role_valid CHECK ((role = ANY (ARRAY['agent'::text, 'manager'::text, 'admin'::text])))
);
ALTER TABLE pgflow.console_users ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.console_users_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
ALTER TABLE pgflow.contacts ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.contacts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
ALTER TABLE pgflow.conversations ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.conversations_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
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
ALTER TABLE pgflow.enrollments ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.enrollments_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.erasures (
    id bigint NOT NULL,
    contact_id bigint NOT NULL,
    requested_by text NOT NULL,
    reason text,
    erased_at timestamp with time zone NOT NULL,
    removed jsonb DEFAULT '{}'::jsonb NOT NULL,
    phone_hash bytea,
    CONSTRAINT erasures_hash_length CHECK ((length(phone_hash) = 32))
);
ALTER TABLE pgflow.erasures ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.erasures_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
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
ALTER TABLE pgflow.events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
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
ALTER TABLE pgflow.lead_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.lead_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE VIEW pgflow.live_conversations AS
 SELECT cv.id,
    ct.phone,
    c.slug AS campaign,
    a.name AS agent,
    cv.status,
    cv.from_number,
    cv.created_at,
    cv.engaged_at,
    cv.agent_turns,
    cv.chat_status,
    GREATEST(cv.last_inbound_at, cv.last_outbound_at, cv.created_at) AS last_message_at,
    cv.last_inbound_at
   FROM (((pgflow.conversations cv
     JOIN pgflow.contacts ct ON ((ct.id = cv.contact_id)))
     LEFT JOIN pgflow.campaigns c ON ((c.id = cv.campaign_id)))
     LEFT JOIN pgflow.agents a ON ((a.id = cv.agent_id)))
  WHERE (cv.status <> 'ended'::text);
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
    CONSTRAINT message_attempts_finished_has_outcome CHECK (((finished_at IS NULL) = (outcome IS NULL)))
);
ALTER TABLE pgflow.message_attempts ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.message_attempts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
ALTER TABLE pgflow.messages ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.messages_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.number_usage (
    number text NOT NULL,
    day date NOT NULL,
    shard smallint NOT NULL,
    messages integer DEFAULT 0 NOT NULL,
    segments integer DEFAULT 0 NOT NULL,
    CONSTRAINT number_usage_counts_nonnegative CHECK (((messages >= 0) AND (segments >= 0))),
    CONSTRAINT number_usage_shard_range CHECK (((shard >= 0) AND (shard <= 7)))
);
CREATE TABLE pgflow.opt_outs (
    id bigint NOT NULL,
    contact_id bigint NOT NULL,
    action text NOT NULL,
    source text NOT NULL,
    message_id bigint,
    text text,
    occurred_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT opt_outs_action_valid CHECK ((action = ANY (ARRAY['opt_out'::text, 'opt_in'::text]))),
    CONSTRAINT opt_outs_source_valid CHECK ((source = ANY (ARRAY['keyword'::text, 'phrase'::text, 'llm'::text, 'operator'::text, 'import'::text, 'webhook'::text, 'carrier'::text, 'erasure'::text])))
);
ALTER TABLE pgflow.opt_outs ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.opt_outs_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.outcome_signals (
    id bigint NOT NULL,
    conversation_id bigint NOT NULL,
    source text NOT NULL,
    status text NOT NULL,
    reason text,
    confidence numeric(4,3),
    model text,
    transcript_hash text DEFAULT ''::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT outcome_signals_confidence_range CHECK (((confidence >= (0)::numeric) AND (confidence <= (1)::numeric))),
    CONSTRAINT outcome_signals_source_valid CHECK ((source = ANY (ARRAY['rule'::text, 'llm'::text, 'human'::text, 'webhook'::text, 'retell'::text]))),
    CONSTRAINT outcome_signals_status_valid CHECK ((status = ANY (ARRAY['success'::text, 'qualified'::text, 'unqualified'::text, 'escalated'::text, 'no_response'::text, 'discarded'::text])))
);
ALTER TABLE pgflow.outcome_signals ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.outcome_signals_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
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
CREATE SEQUENCE pgflow.pgqueuer_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE pgflow.pgqueuer_id_seq OWNED BY pgflow.pgqueuer.id;
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
ALTER TABLE pgflow.pgqueuer_log ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME pgflow.pgqueuer_log_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
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
CREATE SEQUENCE pgflow.pgqueuer_schedules_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE pgflow.pgqueuer_schedules_id_seq OWNED BY pgflow.pgqueuer_schedules.id;
CREATE TABLE pgflow.pgqueuer_statistics (
    id bigint NOT NULL,
    created timestamp with time zone DEFAULT date_trunc('sec'::text, now()) NOT NULL,
    count bigint NOT NULL,
    priority integer NOT NULL,
    status pgflow.pgqueuer_status NOT NULL,
    entrypoint text NOT NULL
);
CREATE SEQUENCE pgflow.pgqueuer_statistics_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE pgflow.pgqueuer_statistics_id_seq OWNED BY pgflow.pgqueuer_statistics.id;
CREATE VIEW pgflow.review_queue AS
 SELECT cv.id,
    ct.phone,
    c.slug AS campaign,
    cv.status,
    cv.conversion_status,
    cv.outcome_source,
    cv.review_reason,
    cv.review_requested_at,
    COALESCE(( SELECT jsonb_agg(jsonb_build_object('source', s.source, 'status', s.status, 'reason', s.reason, 'confidence', s.confidence) ORDER BY s.id) AS jsonb_agg
           FROM pgflow.outcome_signals s
          WHERE (s.conversation_id = cv.id)), '[]'::jsonb) AS signals
   FROM ((pgflow.conversations cv
     JOIN pgflow.contacts ct ON ((ct.id = cv.contact_id)))
     LEFT JOIN pgflow.campaigns c ON ((c.id = cv.campaign_id)))
  WHERE (cv.review_reason IS NOT NULL);
CREATE TABLE pgflow.secrets (
    name text NOT NULL,
    value bytea NOT NULL
);
ALTER TABLE pgflow.sending_numbers ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.sending_numbers_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.state_rules (
    state text NOT NULL,
    name text NOT NULL,
    max_per_24h integer,
    law text NOT NULL,
    CONSTRAINT state_rules_cap_positive CHECK ((max_per_24h > 0)),
    CONSTRAINT state_rules_code CHECK ((state ~ '^[A-Z]{2}$'::text))
);
CREATE TABLE pgflow.state_windows (
    state text NOT NULL,
    isodow smallint NOT NULL,
    opens time without time zone NOT NULL,
    closes time without time zone NOT NULL,
    CONSTRAINT state_windows_day CHECK (((isodow >= 1) AND (isodow <= 7))),
    CONSTRAINT state_windows_order CHECK ((opens < closes))
);
CREATE TABLE pgflow.webhook_deliveries (
    id bigint NOT NULL,
    provider text DEFAULT 'retell'::text NOT NULL,
    delivery_key text NOT NULL,
    event_type text NOT NULL,
    payload jsonb NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    processed_at timestamp with time zone,
    result text,
    error text,
    response jsonb
);
ALTER TABLE pgflow.webhook_deliveries ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.webhook_deliveries_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.workers (
    id uuid NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    version text NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    last_seen_at timestamp with time zone DEFAULT now() NOT NULL,
    stopped_at timestamp with time zone
);
ALTER TABLE ONLY pgflow.pgqueuer ALTER COLUMN id SET DEFAULT nextval('pgflow.pgqueuer_id_seq'::regclass);
ALTER TABLE ONLY pgflow.pgqueuer_schedules ALTER COLUMN id SET DEFAULT nextval('pgflow.pgqueuer_schedules_id_seq'::regclass);
ALTER TABLE ONLY pgflow.pgqueuer_statistics ALTER COLUMN id SET DEFAULT nextval('pgflow.pgqueuer_statistics_id_seq'::regclass);
ALTER TABLE ONLY pgflow.agents
    ADD CONSTRAINT agents_name_key UNIQUE (name);
ALTER TABLE ONLY pgflow.agents
    ADD CONSTRAINT agents_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.alerts
    ADD CONSTRAINT alerts_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.area_codes
    ADD CONSTRAINT area_codes_pkey PRIMARY KEY (npa);
ALTER TABLE ONLY pgflow.audit_log
    ADD CONSTRAINT audit_log_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.campaign_numbers
    ADD CONSTRAINT campaign_numbers_pkey PRIMARY KEY (campaign_id, number);
ALTER TABLE ONLY pgflow.campaign_numbers
    ADD CONSTRAINT campaign_numbers_position_key UNIQUE (campaign_id, "position");
ALTER TABLE ONLY pgflow.campaign_steps
    ADD CONSTRAINT campaign_steps_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.campaign_steps
    ADD CONSTRAINT campaign_steps_position_key UNIQUE (campaign_id, "position");
ALTER TABLE ONLY pgflow.campaigns
    ADD CONSTRAINT campaigns_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.campaigns
    ADD CONSTRAINT campaigns_slug_key UNIQUE (slug);
ALTER TABLE ONLY pgflow.consents
    ADD CONSTRAINT consents_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.console_sessions
    ADD CONSTRAINT console_sessions_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.console_sessions
    ADD CONSTRAINT console_sessions_token_hash_key UNIQUE (token_hash);
ALTER TABLE ONLY pgflow.console_sign_ins
    ADD CONSTRAINT console_sign_ins_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.console_users
    ADD CONSTRAINT console_users_email_key UNIQUE (email);
ALTER TABLE ONLY pgflow.console_users
    ADD CONSTRAINT console_users_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.contacts
    ADD CONSTRAINT contacts_phone_key UNIQUE (phone);
ALTER TABLE ONLY pgflow.contacts
    ADD CONSTRAINT contacts_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.conversations
    ADD CONSTRAINT conversations_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.enrollments
    ADD CONSTRAINT enrollments_contact_campaign_key UNIQUE (contact_id, campaign_id);
ALTER TABLE ONLY pgflow.enrollments
    ADD CONSTRAINT enrollments_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.erasures
    ADD CONSTRAINT erasures_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.lead_events
    ADD CONSTRAINT lead_events_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.message_attempts
    ADD CONSTRAINT message_attempts_message_attempt_key UNIQUE (message_id, attempt);
ALTER TABLE pgflow.message_attempts
    ADD CONSTRAINT message_attempts_outcome_valid CHECK ((outcome = ANY (ARRAY['sent'::text, 'retry'::text, 'dead_letter'::text, 'interrupted'::text, 'failed'::text]))) NOT VALID;
ALTER TABLE ONLY pgflow.message_attempts
    ADD CONSTRAINT message_attempts_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.messages
    ADD CONSTRAINT messages_dedupe_key_key UNIQUE (dedupe_key);
ALTER TABLE ONLY pgflow.messages
    ADD CONSTRAINT messages_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.number_usage
    ADD CONSTRAINT number_usage_pkey PRIMARY KEY (number, day, shard);
ALTER TABLE ONLY pgflow.opt_outs
    ADD CONSTRAINT opt_outs_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.outcome_signals
    ADD CONSTRAINT outcome_signals_once_per_transcript UNIQUE (conversation_id, source, transcript_hash);
ALTER TABLE ONLY pgflow.outcome_signals
    ADD CONSTRAINT outcome_signals_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.pgqueuer_log
    ADD CONSTRAINT pgqueuer_log_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.pgqueuer
    ADD CONSTRAINT pgqueuer_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.pgqueuer_schedules
    ADD CONSTRAINT pgqueuer_schedules_expression_entrypoint_key UNIQUE (expression, entrypoint);
ALTER TABLE ONLY pgflow.pgqueuer_schedules
    ADD CONSTRAINT pgqueuer_schedules_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.pgqueuer_statistics
    ADD CONSTRAINT pgqueuer_statistics_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.secrets
    ADD CONSTRAINT secrets_pkey PRIMARY KEY (name);
ALTER TABLE ONLY pgflow.sending_numbers
    ADD CONSTRAINT sending_numbers_number_key UNIQUE (number);
ALTER TABLE ONLY pgflow.sending_numbers
    ADD CONSTRAINT sending_numbers_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.state_rules
    ADD CONSTRAINT state_rules_pkey PRIMARY KEY (state);
ALTER TABLE ONLY pgflow.state_windows
    ADD CONSTRAINT state_windows_pkey PRIMARY KEY (state, isodow);
ALTER TABLE ONLY pgflow.suppressions
    ADD CONSTRAINT suppressions_pkey PRIMARY KEY (phone_hash);
ALTER TABLE ONLY pgflow.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_provider_key UNIQUE (provider, delivery_key);
ALTER TABLE ONLY pgflow.workers
    ADD CONSTRAINT workers_pkey PRIMARY KEY (id);
CREATE UNIQUE INDEX alerts_one_open_per_kind ON pgflow.alerts USING btree (kind) WHERE (resolved_at IS NULL);
CREATE INDEX alerts_opened_at_idx ON pgflow.alerts USING btree (opened_at);
CREATE INDEX audit_log_contact_id_idx ON pgflow.audit_log USING btree (contact_id);
CREATE INDEX audit_log_conversation_id_idx ON pgflow.audit_log USING btree (conversation_id);
CREATE INDEX audit_log_user_id_idx ON pgflow.audit_log USING btree (user_id);
CREATE INDEX campaign_numbers_number_idx ON pgflow.campaign_numbers USING btree (number);
CREATE INDEX campaigns_agent_id_idx ON pgflow.campaigns USING btree (agent_id);
CREATE INDEX consents_contact_idx ON pgflow.consents USING btree (contact_id, given_at);
CREATE INDEX console_sessions_expires_at_idx ON pgflow.console_sessions USING btree (expires_at);
CREATE INDEX console_sessions_user_id_idx ON pgflow.console_sessions USING btree (user_id);
CREATE INDEX console_sign_ins_attempted_at_idx ON pgflow.console_sign_ins USING btree (attempted_at);
CREATE INDEX console_sign_ins_email_idx ON pgflow.console_sign_ins USING btree (email, attempted_at);
CREATE INDEX contacts_first_name_idx ON pgflow.contacts USING btree (lower(first_name) text_pattern_ops);
CREATE INDEX contacts_held_idx ON pgflow.contacts USING btree (held_at) WHERE (held_at IS NOT NULL);
CREATE INDEX contacts_last_name_idx ON pgflow.contacts USING btree (lower(last_name) text_pattern_ops);
CREATE INDEX contacts_phone_suffix_idx ON pgflow.contacts USING btree (reverse(phone) text_pattern_ops);
CREATE INDEX conversations_activity_idx ON pgflow.conversations USING btree (GREATEST(last_inbound_at, last_outbound_at, created_at) DESC, id DESC);
CREATE INDEX conversations_agent_id_idx ON pgflow.conversations USING btree (agent_id);
CREATE INDEX conversations_campaign_id_idx ON pgflow.conversations USING btree (campaign_id);
CREATE INDEX conversations_contact_id_idx ON pgflow.conversations USING btree (contact_id);
CREATE INDEX conversations_engaged_inbound_idx ON pgflow.conversations USING btree (last_inbound_at DESC, id DESC) WHERE (status = 'engaged'::text);
CREATE INDEX conversations_enrollment_id_idx ON pgflow.conversations USING btree (enrollment_id);
CREATE UNIQUE INDEX conversations_one_live_per_line ON pgflow.conversations USING btree (contact_id, from_number) WHERE (status <> 'ended'::text);
CREATE INDEX conversations_provider_chat_id_idx ON pgflow.conversations USING btree (provider_chat_id) WHERE (provider_chat_id IS NOT NULL);
CREATE INDEX conversations_quiet_idx ON pgflow.conversations USING btree (GREATEST(last_inbound_at, last_outbound_at, engaged_at)) WHERE ((status = 'engaged'::text) AND (classify_requested_at IS NULL));
CREATE INDEX conversations_reply_deadline_idx ON pgflow.conversations USING btree (reply_deadline_at) WHERE ((status = 'open'::text) AND (reply_deadline_at IS NOT NULL));
CREATE INDEX conversations_review_idx ON pgflow.conversations USING btree (review_requested_at) WHERE (review_reason IS NOT NULL);
CREATE INDEX enrollments_campaign_id_idx ON pgflow.enrollments USING btree (campaign_id);
CREATE INDEX enrollments_due_idx ON pgflow.enrollments USING btree (next_message_at) WHERE (status = 'active'::text);
CREATE INDEX erasures_contact_idx ON pgflow.erasures USING btree (contact_id);
CREATE INDEX erasures_phone_hash_idx ON pgflow.erasures USING btree (phone_hash);
CREATE INDEX events_entity_idx ON pgflow.events USING btree (entity, entity_id, occurred_at);
CREATE INDEX events_occurred_at_idx ON pgflow.events USING btree (occurred_at);
CREATE INDEX lead_events_contact_id_idx ON pgflow.lead_events USING btree (contact_id);
CREATE INDEX lead_events_enrollment_id_idx ON pgflow.lead_events USING btree (enrollment_id);
CREATE INDEX lead_events_external_idx ON pgflow.lead_events USING btree (source, external_id) WHERE (external_id IS NOT NULL);
CREATE INDEX lead_events_received_at_idx ON pgflow.lead_events USING btree (received_at);
CREATE UNIQUE INDEX message_attempts_one_open ON pgflow.message_attempts USING btree (message_id) WHERE (finished_at IS NULL);
CREATE INDEX messages_awaiting_receipt_idx ON pgflow.messages USING btree (sent_at) WHERE ((delivery_status = 'sent'::text) AND (transport = 'twilio'::text));
CREATE INDEX messages_carrier_error_idx ON pgflow.messages USING btree (carrier_error_code, updated_at) WHERE (carrier_error_code IS NOT NULL);
CREATE UNIQUE INDEX messages_chat_message_id_key ON pgflow.messages USING btree (chat_message_id) WHERE (chat_message_id IS NOT NULL);
CREATE INDEX messages_contact_id_idx ON pgflow.messages USING btree (contact_id, created_at);
CREATE INDEX messages_conversation_id_idx ON pgflow.messages USING btree (conversation_id, created_at);
CREATE INDEX messages_dead_letter_idx ON pgflow.messages USING btree (updated_at) WHERE (delivery_status = 'dead_letter'::text);
CREATE INDEX messages_enrollment_id_idx ON pgflow.messages USING btree (enrollment_id);
CREATE INDEX messages_provider_message_id_idx ON pgflow.messages USING btree (provider_message_id) WHERE (provider_message_id IS NOT NULL);
CREATE INDEX messages_unsettled_idx ON pgflow.messages USING btree (updated_at) WHERE (delivery_status = ANY (ARRAY['queued'::text, 'sending'::text]));
CREATE INDEX opt_outs_contact_id_idx ON pgflow.opt_outs USING btree (contact_id, occurred_at);
CREATE INDEX opt_outs_message_id_idx ON pgflow.opt_outs USING btree (message_id);
CREATE INDEX pgqueuer_ep_ea_idx ON pgflow.pgqueuer USING btree (entrypoint, execute_after) WHERE (status = 'queued'::pgflow.pgqueuer_status);
CREATE INDEX pgqueuer_ep_prio_id_idx ON pgflow.pgqueuer USING btree (entrypoint, priority DESC, id) WHERE (status = 'queued'::pgflow.pgqueuer_status);
CREATE INDEX pgqueuer_log_created ON pgflow.pgqueuer_log USING btree (created);
CREATE INDEX pgqueuer_log_job_id_status ON pgflow.pgqueuer_log USING btree (job_id, created DESC);
CREATE INDEX pgqueuer_log_not_aggregated ON pgflow.pgqueuer_log USING btree ((1)) WHERE (NOT aggregated);
CREATE INDEX pgqueuer_log_status ON pgflow.pgqueuer_log USING btree (status);
CREATE INDEX pgqueuer_picked_heartbeat_idx ON pgflow.pgqueuer USING btree (heartbeat) WHERE (status = 'picked'::pgflow.pgqueuer_status);
CREATE UNIQUE INDEX pgqueuer_picked_slot_idx ON pgflow.pgqueuer USING btree (entrypoint, slot) WHERE ((status = 'picked'::pgflow.pgqueuer_status) AND (slot IS NOT NULL));
CREATE INDEX pgqueuer_priority_id_id1_idx ON pgflow.pgqueuer USING btree (priority, id DESC) INCLUDE (id) WHERE (status = 'queued'::pgflow.pgqueuer_status);
CREATE INDEX pgqueuer_queue_manager_id_idx ON pgflow.pgqueuer USING btree (queue_manager_id) WHERE (queue_manager_id IS NOT NULL);
CREATE UNIQUE INDEX pgqueuer_statistics_unique_count ON pgflow.pgqueuer_statistics USING btree (priority, date_trunc('sec'::text, timezone('UTC'::text, created)), status, entrypoint);
CREATE UNIQUE INDEX pgqueuer_unique_dedupe_key ON pgflow.pgqueuer USING btree (dedupe_key) WHERE ((status = ANY (ARRAY['queued'::pgflow.pgqueuer_status, 'picked'::pgflow.pgqueuer_status])) AND (dedupe_key IS NOT NULL));
CREATE INDEX pgqueuer_updated_id_id1_idx ON pgflow.pgqueuer USING btree (updated, id DESC) INCLUDE (id) WHERE (status = 'picked'::pgflow.pgqueuer_status);
CREATE INDEX sending_numbers_inbound_agent_id_idx ON pgflow.sending_numbers USING btree (inbound_agent_id);
CREATE INDEX webhook_deliveries_received_at_idx ON pgflow.webhook_deliveries USING btree (received_at);
CREATE INDEX workers_last_seen_at_idx ON pgflow.workers USING btree (last_seen_at);
CREATE TRIGGER campaigns_pool_from_number AFTER INSERT OR UPDATE OF from_number ON pgflow.campaigns FOR EACH ROW EXECUTE FUNCTION pgflow._pool_from_number();
CREATE TRIGGER contacts_suppress_forgotten_after AFTER INSERT ON pgflow.contacts FOR EACH ROW EXECUTE FUNCTION pgflow._contact_suppression();
CREATE TRIGGER contacts_suppress_forgotten_before BEFORE INSERT ON pgflow.contacts FOR EACH ROW EXECUTE FUNCTION pgflow._contact_suppression();
CREATE TRIGGER conversations_log_insert AFTER INSERT ON pgflow.conversations REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgflow._log_inserts();
CREATE TRIGGER conversations_log_transition AFTER UPDATE OF status ON pgflow.conversations FOR EACH ROW EXECUTE FUNCTION pgflow._log_transition();
CREATE TRIGGER enrollments_log_insert AFTER INSERT ON pgflow.enrollments REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgflow._log_inserts();
CREATE TRIGGER enrollments_log_transition AFTER UPDATE OF status ON pgflow.enrollments FOR EACH ROW EXECUTE FUNCTION pgflow._log_transition();
CREATE TRIGGER messages_log_insert AFTER INSERT ON pgflow.messages REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION pgflow._log_inserts();
CREATE TRIGGER messages_log_transition AFTER UPDATE OF delivery_status ON pgflow.messages FOR EACH ROW EXECUTE FUNCTION pgflow._log_transition();
CREATE TRIGGER tg_pgqueuer_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON pgflow.pgqueuer FOR EACH STATEMENT EXECUTE FUNCTION pgflow.fn_pgqueuer_changed();
ALTER TABLE ONLY pgflow.audit_log
    ADD CONSTRAINT audit_log_contact_id_fkey FOREIGN KEY (contact_id) REFERENCES pgflow.contacts(id) ON DELETE SET NULL;
ALTER TABLE ONLY pgflow.audit_log
    ADD CONSTRAINT audit_log_conversation_id_fkey FOREIGN KEY (conversation_id) REFERENCES pgflow.conversations(id) ON DELETE SET NULL;
ALTER TABLE ONLY pgflow.audit_log
    ADD CONSTRAINT audit_log_user_id_fkey FOREIGN KEY (user_id) REFERENCES pgflow.console_users(id) ON DELETE SET NULL;
ALTER TABLE ONLY pgflow.campaign_numbers
    ADD CONSTRAINT campaign_numbers_campaign_id_fkey FOREIGN KEY (campaign_id) REFERENCES pgflow.campaigns(id) ON DELETE CASCADE;
ALTER TABLE ONLY pgflow.campaign_numbers
    ADD CONSTRAINT campaign_numbers_number_fkey FOREIGN KEY (number) REFERENCES pgflow.sending_numbers(number);
ALTER TABLE ONLY pgflow.campaign_steps
    ADD CONSTRAINT campaign_steps_campaign_id_fkey FOREIGN KEY (campaign_id) REFERENCES pgflow.campaigns(id) ON DELETE CASCADE;
ALTER TABLE ONLY pgflow.campaigns
    ADD CONSTRAINT campaigns_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES pgflow.agents(id);
ALTER TABLE ONLY pgflow.consents
    ADD CONSTRAINT consents_contact_id_fkey FOREIGN KEY (contact_id) REFERENCES pgflow.contacts(id);
ALTER TABLE ONLY pgflow.console_sessions
    ADD CONSTRAINT console_sessions_user_id_fkey FOREIGN KEY (user_id) REFERENCES pgflow.console_users(id) ON DELETE CASCADE;
ALTER TABLE ONLY pgflow.conversations
    ADD CONSTRAINT conversations_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES pgflow.agents(id);
ALTER TABLE ONLY pgflow.conversations
    ADD CONSTRAINT conversations_campaign_id_fkey FOREIGN KEY (campaign_id) REFERENCES pgflow.campaigns(id);
ALTER TABLE ONLY pgflow.conversations
    ADD CONSTRAINT conversations_contact_id_fkey FOREIGN KEY (contact_id) REFERENCES pgflow.contacts(id);
ALTER TABLE ONLY pgflow.conversations
    ADD CONSTRAINT conversations_enrollment_id_fkey FOREIGN KEY (enrollment_id) REFERENCES pgflow.enrollments(id);
ALTER TABLE ONLY pgflow.enrollments
    ADD CONSTRAINT enrollments_campaign_id_fkey FOREIGN KEY (campaign_id) REFERENCES pgflow.campaigns(id);
ALTER TABLE ONLY pgflow.enrollments
    ADD CONSTRAINT enrollments_contact_id_fkey FOREIGN KEY (contact_id) REFERENCES pgflow.contacts(id);
ALTER TABLE ONLY pgflow.erasures
    ADD CONSTRAINT erasures_contact_id_fkey FOREIGN KEY (contact_id) REFERENCES pgflow.contacts(id);
ALTER TABLE ONLY pgflow.lead_events
    ADD CONSTRAINT lead_events_contact_id_fkey FOREIGN KEY (contact_id) REFERENCES pgflow.contacts(id);
ALTER TABLE ONLY pgflow.lead_events
    ADD CONSTRAINT lead_events_enrollment_id_fkey FOREIGN KEY (enrollment_id) REFERENCES pgflow.enrollments(id);
ALTER TABLE ONLY pgflow.message_attempts
    ADD CONSTRAINT message_attempts_message_id_fkey FOREIGN KEY (message_id) REFERENCES pgflow.messages(id);
ALTER TABLE ONLY pgflow.messages
    ADD CONSTRAINT messages_contact_id_fkey FOREIGN KEY (contact_id) REFERENCES pgflow.contacts(id);
ALTER TABLE ONLY pgflow.messages
    ADD CONSTRAINT messages_conversation_id_fkey FOREIGN KEY (conversation_id) REFERENCES pgflow.conversations(id);
ALTER TABLE ONLY pgflow.messages
    ADD CONSTRAINT messages_enrollment_id_fkey FOREIGN KEY (enrollment_id) REFERENCES pgflow.enrollments(id);
ALTER TABLE ONLY pgflow.number_usage
    ADD CONSTRAINT number_usage_number_fkey FOREIGN KEY (number) REFERENCES pgflow.sending_numbers(number);
ALTER TABLE ONLY pgflow.opt_outs
    ADD CONSTRAINT opt_outs_contact_id_fkey FOREIGN KEY (contact_id) REFERENCES pgflow.contacts(id);
ALTER TABLE ONLY pgflow.opt_outs
    ADD CONSTRAINT opt_outs_message_id_fkey FOREIGN KEY (message_id) REFERENCES pgflow.messages(id);
ALTER TABLE ONLY pgflow.outcome_signals
    ADD CONSTRAINT outcome_signals_conversation_id_fkey FOREIGN KEY (conversation_id) REFERENCES pgflow.conversations(id);
ALTER TABLE ONLY pgflow.sending_numbers
    ADD CONSTRAINT sending_numbers_inbound_agent_id_fkey FOREIGN KEY (inbound_agent_id) REFERENCES pgflow.agents(id);
ALTER TABLE ONLY pgflow.state_windows
    ADD CONSTRAINT state_windows_state_fkey FOREIGN KEY (state) REFERENCES pgflow.state_rules(state) ON DELETE CASCADE;
