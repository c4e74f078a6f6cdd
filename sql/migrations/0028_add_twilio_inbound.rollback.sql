-- Undo 0028: the functions as they were before Twilio became a transport.
-- depends: 0027_index_receipts

drop function pgflow.twilio_numbers();

CREATE OR REPLACE FUNCTION pgflow.tick(p_now timestamp with time zone DEFAULT NULL::timestamp with time zone, p_batch integer DEFAULT 1000)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
  v_quiet integer := 0;
  v_min_silence interval;
  v_alerts jsonb;
  v_orphans integer;
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

  -- pg_cron watches the workers (and the deliveries, the dead letters, the queue). Alerts
  -- are about real time: a tick run at an injected time (a test, the demo) does not judge.
  if p_now is null then
    v_alerts := pgflow.watch('tick', v_now);
  end if;

  return v_totals || pg_catalog.jsonb_build_object(
    'no_response', v_no_response, 'classify_requested', v_quiet, 'batches', v_batches,
    'requeued', v_orphans, 'alerts', v_alerts -> 'open',
    'ms', pg_catalog.round(extract(epoch from pg_catalog.clock_timestamp() - v_started) * 1000));
end;
$function$;

revoke execute on function pgflow.record_twilio_status(bigint,jsonb,timestamp with time zone) from pgflow_worker;

drop function pgflow.record_twilio_inbound(jsonb,timestamp with time zone);

CREATE OR REPLACE FUNCTION pgflow.record_send(p_message_id bigint, p_attempt integer, p_result jsonb, p_retry_base_seconds double precision DEFAULT 30, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  m pgflow.messages;
  v_max integer;
  v_delay double precision;
  v_error text := pg_catalog.left(p_result ->> 'error', 2000);
  v_status integer := (p_result ->> 'status_code')::integer;
  v_kind text;
  v_chat text := p_result ->> 'chat_id';
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
           chat_id = coalesce(v_chat, chat_id)
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
$function$;

drop function pgflow.receipt_to_check(bigint);

CREATE OR REPLACE FUNCTION pgflow.opt_in_contact(p_contact_id bigint, p_source text, p_message_id bigint DEFAULT NULL::bigint, p_text text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
  insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
  values (v_now, 'contact', p_contact_id, 'opted_out', 'subscribed', 'opt-in by ' || p_source);
  select m.conversation_id into v_via from pgflow.messages m where m.id = p_message_id;
  v_via := coalesce(v_via, (select pg_catalog.max(id) from pgflow.conversations
                             where contact_id = p_contact_id));
  if v_via is not null then
    select coalesce(c.name, 'our') into v_name
      from pgflow.conversations cv left join pgflow.campaigns c on c.id = cv.campaign_id
     where cv.id = v_via;
    perform pgflow._system_message(v_via,
      pg_catalog.format('You are resubscribed to %s messages. Reply STOP to opt out.', v_name),
      'opt_in_confirmation:' || v_opt_in, v_now);
  end if;
  return pg_catalog.jsonb_build_object('result', 'opted_in', 'opt_in_id', v_opt_in);
end;
$function$;

CREATE OR REPLACE FUNCTION pgflow.human_reply(p_conversation_id bigint, p_body text, p_actor text, p_user_id bigint DEFAULT NULL::bigint, p_key text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
  select * into v_contact from pgflow.contacts where id = v_conversation.contact_id for update;
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
  perform 1 from pgflow.conversations where id = v_conversation.id for update;
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
    'conversation_id', v_conversation.id, 'segments', pgflow.sms_segments(v_body));
end;
$function$;

CREATE OR REPLACE FUNCTION pgflow.hand_back(p_conversation_id bigint, p_actor text, p_user_id bigint DEFAULT NULL::bigint, p_engine_replies boolean DEFAULT false, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
  select * into v_contact from pgflow.contacts where id = v_conversation.contact_id for update;
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
  if p_engine_replies and v_conversation.status <> 'ended' and v_contact.opted_out_at is null then
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
$function$;

CREATE OR REPLACE FUNCTION pgflow.funnel(p_campaign text DEFAULT NULL::text, p_since timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO ''
AS $function$
  with c as (
    select * from pgflow.campaigns where p_campaign is null or slug = p_campaign
  ), e as (
    select e.* from pgflow.enrollments e join c on c.id = e.campaign_id
     where p_since is null or e.enrolled_at >= p_since
  ), steps as (
    select m.enrollment_id, m.step_position, m.sent_at, m.delivery_status
      from pgflow.messages m join e on e.id = m.enrollment_id
     where m.kind = 'campaign' and m.delivery_status in ('sent', 'delivered')
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
    'delivered', (select pg_catalog.count(*) from steps s join e on e.id = s.enrollment_id
                   where e.campaign_id = c.id and s.delivery_status = 'delivered'),
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
$function$;

CREATE OR REPLACE FUNCTION pgflow.apply_campaigns(p_doc jsonb, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
       opt_out_text, fallbacks, goal, created_at, updated_at)
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
      v_now, v_now)
    on conflict (slug) do update set
      name = excluded.name, agent_id = excluded.agent_id, from_number = excluded.from_number,
      status = case when v_item ? 'status' then excluded.status else c.status end,
      timezone = excluded.timezone, window_start = excluded.window_start,
      window_end = excluded.window_end, window_days = excluded.window_days,
      reply_timeout = excluded.reply_timeout, silence_timeout = excluded.silence_timeout,
      daily_cap = excluded.daily_cap, max_attempts = excluded.max_attempts,
      help_text = excluded.help_text, opt_out_text = excluded.opt_out_text,
      fallbacks = excluded.fallbacks, goal = excluded.goal, updated_at = excluded.updated_at
    where (c.name, c.agent_id, c.from_number, c.timezone, c.window_start, c.window_end,
           c.window_days, c.reply_timeout, c.silence_timeout, c.daily_cap, c.max_attempts,
           c.help_text, c.opt_out_text, c.fallbacks, c.goal,
           case when v_item ? 'status' then excluded.status else c.status end)
          is distinct from
          (excluded.name, excluded.agent_id, excluded.from_number, excluded.timezone,
           excluded.window_start, excluded.window_end, excluded.window_days,
           excluded.reply_timeout, excluded.silence_timeout, excluded.daily_cap,
           excluded.max_attempts, excluded.help_text, excluded.opt_out_text,
           excluded.fallbacks, excluded.goal, c.status)
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
$function$;

drop function pgflow._validity_seconds(text,pgflow.contacts,pgflow.campaigns,timestamp with time zone);

drop function pgflow._on_inbound(bigint,boolean,timestamp with time zone,text);

CREATE OR REPLACE FUNCTION pgflow._on_inbound(p_message_id bigint, p_engine_replies boolean, p_now timestamp with time zone)
 RETURNS text
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
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
    if v_intent = 'opt_in' then
      perform pgflow.opt_in_contact(v_contact.id, v_rule, m.id, m.body, p_now);
      return 'opt_in';
    end if;
    return 'ignored_opted_out';
  end if;
  if v_intent = 'opt_out' then
    perform pgflow.opt_out_contact(v_contact.id, v_rule, m.id, m.body, p_now);
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
$function$;
revoke execute on function pgflow._on_inbound(bigint,boolean,timestamp with time zone) from public;

CREATE OR REPLACE FUNCTION pgflow._on_carrier_error(p_message pgflow.messages, p_code integer, p_now timestamp with time zone)
 RETURNS text
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
declare
  v_class text := pgflow.carrier_error_class(p_code);
  v_reason text := pg_catalog.format('the carrier refused a text: error %s (%s)',
                                     coalesce(p_code::text, '-'), v_class);
  v_campaign pgflow.campaigns;
  v_max integer;
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
    update pgflow.campaigns set status = 'paused', updated_at = p_now
     where id = v_campaign.id and status = 'active';
    if found then
      insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
      values (p_now, 'campaign', v_campaign.id, 'active', 'paused', v_reason);
    end if;
    perform pgflow.open_alert('carrier_' || v_class || ':' || v_campaign.slug, 'critical',
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
$function$;

drop function pgflow._line_transport(text);

drop function pgflow._inbound_conversation(bigint,text,timestamp with time zone);

drop function pgflow._enqueue_receipt_checks(timestamp with time zone,integer);

CREATE OR REPLACE FUNCTION pgflow._claim_one(p_message_id bigint, p_worker uuid, p_checked_chat text, p_now timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
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
  v_number pgflow.sending_numbers;
  v_day date := (v_now at time zone 'UTC')::date;
  v_used integer;
  v_slot timestamptz;
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
  select e.status, e.campaign_id into v_enrollment_status, v_campaign_id
    from pgflow.enrollments e where e.id = coalesce(m.enrollment_id, v_conversation.enrollment_id);
  select * into v_campaign from pgflow.campaigns
   where id = coalesce(v_campaign_id, v_conversation.campaign_id);
  select * into v_agent from pgflow.agents
   where id = coalesce(v_conversation.agent_id, v_campaign.agent_id);
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
    v_open := pgflow.next_window_open(coalesce(v_contact.timezone, v_campaign.timezone),
      v_campaign.window_start, v_campaign.window_end, v_campaign.window_days, v_now);
    if v_open > v_now then
      perform pgflow._set_reason('send window closed');
      update pgflow.messages set delivery_status = 'queued', send_after = v_open,
             updated_at = v_now, deferred_reason = 'send window closed'
       where id = m.id;
      return pg_catalog.jsonb_build_object('action', 'defer', 'reason', 'send window closed',
        'delay_seconds', extract(epoch from v_open - v_now));
    end if;
    -- A missed or late webhook must never let a drip talk over a live conversation.
    if v_conversation.provider_chat_id is not null
       and coalesce(v_conversation.chat_status, 'ongoing') = 'ongoing'
       and p_checked_chat is distinct from v_conversation.provider_chat_id then
      return pg_catalog.jsonb_build_object('action', 'check_chat',
        'chat_id', v_conversation.provider_chat_id);
    end if;
  end if;

  -- A person's text to a lead who never wrote is a first contact: the window applies.
  if m.kind = 'human' and v_conversation.last_inbound_at is null
     and not exists (select 1 from pgflow.messages x
                      where x.contact_id = m.contact_id and x.direction = 'inbound') then
    v_open := pgflow.next_window_open(
      coalesce(v_contact.timezone, v_campaign.timezone, 'America/New_York'),
      coalesce(v_campaign.window_start, time '09:00'), coalesce(v_campaign.window_end, time '20:00'),
      coalesce(v_campaign.window_days, '{1,2,3,4,5,6}'), v_now);
    if v_open > v_now then
      perform pgflow._set_reason('send window closed');
      update pgflow.messages set send_after = v_open, updated_at = v_now,
             deferred_reason = 'send window closed (the lead has not written yet)'
       where id = m.id;
      return pg_catalog.jsonb_build_object('action', 'defer', 'reason', 'send window closed',
        'delay_seconds', extract(epoch from v_open - v_now));
    end if;
  end if;

  -- The sending number's carrier limits. System messages (opt-out confirmations, help)
  -- are counted but never held back.
  select * into v_number from pgflow.sending_numbers where number = v_conversation.from_number;
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

  perform pgflow._set_reason('attempt ' || (m.attempts + 1));
  update pgflow.messages
     set delivery_status = 'sending', attempts = attempts + 1, send_after = null,
         number_slot_at = null, deferred_reason = null,
         updated_at = v_now,
         -- an agent reply posted into a chat carries our id, so its echo is recognised
         chat_message_id = case when m.kind in ('agent', 'human') then 'pgflow-' || m.id
                                else chat_message_id end
   where id = m.id
  returning * into m;
  insert into pgflow.message_attempts (message_id, attempt, worker_id, started_at)
  select m.id, coalesce(pg_catalog.max(a.attempt), 0) + 1, p_worker, v_now
    from pgflow.message_attempts a where a.message_id = m.id;
  return pg_catalog.jsonb_build_object(
    'action', 'send',
    'segments', m.segments,
    'usage_day', v_day,
    'message_id', m.id,
    'attempt', m.attempts,
    'max_attempts', v_max,
    'kind', m.kind,
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
$function$;

CREATE OR REPLACE FUNCTION pgflow._answer_inbound(p_payload jsonb, p_engine_replies boolean, p_now timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
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
  v_enrollment bigint;
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
  elsif v_contact.opted_out_at is not null
        and (v_text is null or (select i.intent from pgflow.inbound_intent(v_text) i) <> 'opt_in') then
    return pg_catalog.jsonb_build_object('result', 'suppressed_rejected', 'response', v_reject);
  end if;

  select * into v_conversation from pgflow.conversations
   where contact_id = v_contact.id and from_number = v_line and status <> 'ended';
  if v_conversation.id is null then
    -- the drip the lead is in on this line, else the last campaign that used it
    select e.id, e.campaign_id into v_enrollment, v_campaign.id
      from pgflow.enrollments e
      join pgflow.campaign_numbers cn on cn.campaign_id = e.campaign_id
     where e.contact_id = v_contact.id and cn.number = v_line
     order by (e.status in ('active', 'paused')) desc, e.enrolled_at desc, e.id desc limit 1;
    select * into v_campaign from pgflow.campaigns where id = v_campaign.id;
    select * into v_agent from pgflow.agents
     where id = coalesce(v_campaign.agent_id, v_number.inbound_agent_id,
                         (select cv.agent_id from pgflow.conversations cv
                           where cv.contact_id = v_contact.id and cv.from_number = v_line
                           order by cv.id desc limit 1));
    if v_agent.id is null then
      return pg_catalog.jsonb_build_object('result', 'no_agent_rejected', 'response', v_reject);
    end if;
    perform pgflow._set_reason('lead wrote first');
    insert into pgflow.conversations
      (contact_id, campaign_id, agent_id, enrollment_id, from_number, created_at, updated_at)
    values (v_contact.id, v_campaign.id, v_agent.id, v_enrollment, v_line, p_now, p_now)
    on conflict (contact_id, from_number) where status <> 'ended' do nothing
    returning * into v_conversation;
    if v_conversation.id is null then
      select * into v_conversation from pgflow.conversations
       where contact_id = v_contact.id and from_number = v_line and status <> 'ended';
    end if;
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
$function$;
