-- Undo 0023: the console functions dropped, the functions it changed restored, takeover back.
-- depends: 0022_index_inbox

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

CREATE OR REPLACE FUNCTION pgflow.takeover(p_phone text, p_reason text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_contact pgflow.contacts;
  v_ended jsonb := '[]';
  r record;
begin
  select * into v_contact from pgflow.contacts where phone = p_phone;
  if not found then
    raise exception 'no contact with that number' using errcode = 'PF002';
  end if;
  for r in select cv.id, c.slug from pgflow.conversations cv
             left join pgflow.campaigns c on c.id = cv.campaign_id
            where cv.contact_id = v_contact.id and cv.status <> 'ended' order by cv.id
            for update of cv
  loop
    perform pgflow._escalate(r.id,
      coalesce(nullif(pg_catalog.btrim(p_reason), ''), 'taken over by a person'), 'human',
      false, v_now);
    v_ended := v_ended || pg_catalog.jsonb_build_object('conversation_id', r.id,
                                                         'campaign', r.slug);
  end loop;
  return pg_catalog.jsonb_build_object('contact_id', v_contact.id, 'ended', v_ended);
end;
$function$;
revoke execute on function pgflow.takeover(text,text,timestamp with time zone) from public;
grant execute on function pgflow.takeover(text,text,timestamp with time zone) to pgflow_operator;

drop function pgflow.take_over(bigint,text,bigint,text,timestamp with time zone);

drop function pgflow.settle_dead_letters(text,bigint[],text,bigint,timestamp with time zone);

drop function pgflow.settle(bigint,text,text,text,bigint,timestamp with time zone);

drop function pgflow.sends_per_hour(text,integer,timestamp with time zone);

drop function pgflow.record_sign_in(text,boolean,bytea,text,text,timestamp with time zone);

CREATE OR REPLACE FUNCTION pgflow.record_retell_event(p_payload jsonb, p_engine_replies boolean DEFAULT false, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
    v_result := pgflow._answer_inbound(p_payload, v_now);
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
     set processed_at = v_now, result = v_result ->> 'result', response = v_result -> 'response'
   where id = v_delivery;
  return v_result || pg_catalog.jsonb_build_object('delivery_id', v_delivery);
end;
$function$;

CREATE OR REPLACE FUNCTION pgflow.record_chat(p_chat jsonb, p_event text DEFAULT 'get_chat'::text, p_engine_replies boolean DEFAULT false, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
         where id = v_started and contact_id = v_contact.id and chat_message_id is null
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
$function$;

CREATE OR REPLACE FUNCTION pgflow.prune(p_now timestamp with time zone DEFAULT NULL::timestamp with time zone, p_keep_events interval DEFAULT '180 days'::interval, p_keep_job_log interval DEFAULT '14 days'::interval, p_keep_cron_runs interval DEFAULT '7 days'::interval, p_keep_webhooks interval DEFAULT '90 days'::interval, p_batch integer DEFAULT 10000)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
$function$;

drop function pgflow.inbox(jsonb,jsonb,integer,timestamp with time zone);

drop function pgflow.human_reply(bigint,text,text,bigint,text,timestamp with time zone);

drop function pgflow.hand_back(bigint,text,bigint,boolean,timestamp with time zone);

drop function pgflow.end_console_session(bytea,timestamp with time zone);

drop function pgflow.conversation_view(bigint,timestamp with time zone);

drop function pgflow.console_user_list(timestamp with time zone);

drop function pgflow.console_sign_in_user(text,timestamp with time zone);

drop function pgflow.console_session(bytea,timestamp with time zone);

drop function pgflow.console_review(integer);

drop function pgflow.console_dead_letters(text,integer);

drop function pgflow.console_cursor();

drop function pgflow.console_campaigns();

drop function pgflow.console_campaign_slugs();

drop function pgflow.console_alerts(integer);

drop function pgflow.change_console_user(text,text,text,text,bigint,timestamp with time zone);

drop function pgflow.add_console_user(text,text,text,text,bigint,timestamp with time zone);

CREATE OR REPLACE FUNCTION pgflow._request_classification(p_conversation_id bigint, p_now timestamp with time zone)
 RETURNS boolean
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
begin
  update pgflow.conversations set classify_requested_at = p_now, updated_at = p_now
   where id = p_conversation_id and status <> 'ended' and classify_requested_at is null;
  if not found then
    return false;
  end if;
  perform pgflow._enqueue('classify_outcome', array[p_conversation_id], 5);
  return true;
end;
$function$;

CREATE OR REPLACE FUNCTION pgflow._reply_refusal(p_trigger pgflow.messages)
 RETURNS text
 LANGUAGE sql
 STABLE
 SET search_path TO ''
AS $function$
  select case
    when cv.id is null then 'no such conversation'
    when cv.status = 'ended' then 'conversation ended'
    when ct.opted_out_at is not null then 'contact opted out'
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
$function$;

drop function pgflow._needs_person(pgflow.conversations,pgflow.contacts);

CREATE OR REPLACE FUNCTION pgflow._escalate(p_conversation_id bigint, p_reason text, p_source text, p_ack boolean, p_now timestamp with time zone)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
declare
  v_campaign text;
begin
  perform pgflow.set_outcome(p_conversation_id, 'escalated', p_reason, p_source, p_now);
  perform pgflow._end_chats(array[p_conversation_id]);
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
$function$;

drop function pgflow._current_conversation(pgflow.conversations);

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
    -- an ended conversation takes system messages, and the agent's closing reply (its
    -- booking or handover) unless a person took over
    when v_conversation.status = 'ended' and m.kind <> 'system'
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
             send_after = v_now + interval '15 minutes', updated_at = v_now
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
             updated_at = v_now
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
             number_slot_at = null, updated_at = v_now
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
             number_slot_at = v_slot, updated_at = v_now
       where id = m.id;
      return pg_catalog.jsonb_build_object('action', 'defer', 'reason', 'number rate limit',
        'delay_seconds', extract(epoch from v_slot - v_now));
    end if;
  end if;

  perform pgflow._set_reason('attempt ' || (m.attempts + 1));
  update pgflow.messages
     set delivery_status = 'sending', attempts = attempts + 1, send_after = null,
         number_slot_at = null,
         updated_at = v_now,
         -- an agent reply posted into a chat carries our id, so its echo is recognised
         chat_message_id = case when m.kind = 'agent' then 'pgflow-' || m.id
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
    -- an opt-out confirmation ends its chat at once: nothing may follow it
    'end_chat_after', m.kind = 'system' and v_contact.opted_out_at is not null,
    'metadata', pg_catalog.jsonb_build_object(
      'pgflow_message_id', m.id::text,
      'pgflow_conversation_id', m.conversation_id::text,
      'pgflow_contact_id', m.contact_id::text),
    'variables', pgflow._agent_variables(v_contact, v_campaign, v_agent, m.body) - 'sms_body');
end;
$function$;

drop function pgflow._audit(text,bigint,text,bigint,bigint,jsonb,timestamp with time zone);

CREATE OR REPLACE FUNCTION pgflow._answer_inbound(p_payload jsonb, p_now timestamp with time zone)
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
  if v_in ? 'chat_id' and nullif(v_in ->> 'chat_id', '') is not null then
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
  return pg_catalog.jsonb_build_object('result', 'answered', 'conversation_id', v_conversation.id,
    'response', pg_catalog.jsonb_build_object('chat_inbound', v_answer));
end;
$function$;
revoke execute on function pgflow._answer_inbound(jsonb,timestamp with time zone) from public;

drop function pgflow._answer_inbound(jsonb,boolean,timestamp with time zone);

drop function pgflow._actor(text);
