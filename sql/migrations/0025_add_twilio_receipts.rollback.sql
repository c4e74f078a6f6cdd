-- Undo 0025: the receipt functions and _hold dropped; record_send, opt_out_contact, take_over and _escalate restored.
-- depends: 0024_add_provider_status

CREATE OR REPLACE FUNCTION pgflow.take_over(p_conversation_id bigint, p_actor text, p_user_id bigint DEFAULT NULL::bigint, p_reason text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
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
  r record;
begin
  select * into v_conversation from pgflow.conversations where id = p_conversation_id;
  if not found then
    raise exception 'conversation % does not exist', p_conversation_id using errcode = 'PF002';
  end if;
  select * into v_contact from pgflow.contacts where id = v_conversation.contact_id for update;
  if v_contact.held_by is not distinct from v_actor then
    return pg_catalog.jsonb_build_object('result', 'unchanged', 'contact_id', v_contact.id,
                                         'held_by', v_actor);
  end if;
  update pgflow.contacts set held_at = coalesce(held_at, v_now), held_by = v_actor,
         updated_at = v_now
   where id = v_contact.id;
  insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
  values (v_now, 'contact', v_contact.id,
          case when v_contact.held_at is null then 'with_agent' else 'held' end, 'held',
          'taken over by ' || v_actor || coalesce(': ' || nullif(pg_catalog.btrim(p_reason), ''), ''));
  for r in select id from pgflow.enrollments
            where contact_id = v_contact.id and status = 'active' order by id
  loop
    perform pgflow.pause_enrollment(r.id, 'a person took over', v_now);
  end loop;
  perform pgflow._end_chats(array(select id from pgflow.conversations
                                   where contact_id = v_contact.id and status <> 'ended'));
  perform pgflow._audit(v_actor, p_user_id, 'takeover', p_conversation_id, v_contact.id,
    pg_catalog.jsonb_build_object('reason', nullif(pg_catalog.btrim(p_reason), ''),
                                  'from', v_contact.held_by), v_now);
  return pg_catalog.jsonb_build_object('result', 'held', 'contact_id', v_contact.id,
    'conversation_id', p_conversation_id, 'held_by', v_actor, 'previous', v_contact.held_by);
end;
$function$;

drop function pgflow.record_twilio_status(bigint,jsonb,timestamp with time zone);

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
           provider_message_id = v_chat, chat_id = coalesce(v_chat, chat_id)
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

CREATE OR REPLACE FUNCTION pgflow.opt_out_contact(p_contact_id bigint, p_source text, p_message_id bigint DEFAULT NULL::bigint, p_text text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
  if v_via is not null then
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
$function$;

drop function pgflow.carrier_error_class(integer);

drop function pgflow._provider_rank(text);

drop function pgflow._on_carrier_error(pgflow.messages,integer,timestamp with time zone);

drop function pgflow._hold(pgflow.contacts,text,text,text,timestamp with time zone);

CREATE OR REPLACE FUNCTION pgflow._escalate(p_conversation_id bigint, p_reason text, p_source text, p_ack boolean, p_now timestamp with time zone)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
declare
  v_campaign text;
  r record;
begin
  perform pgflow.set_outcome(p_conversation_id, 'escalated', p_reason, p_source, p_now);
  perform pgflow._end_chats(array[p_conversation_id]);
  -- the lead waits for a person: no AI text reaches it until a person hands it back
  update pgflow.contacts set held_at = p_now, updated_at = p_now
   where id = (select contact_id from pgflow.conversations where id = p_conversation_id)
     and held_at is null;
  if found then
    insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
    select p_now, 'contact', cv.contact_id, 'with_agent', 'held', 'waiting for a person'
      from pgflow.conversations cv where cv.id = p_conversation_id;
  end if;
  -- no drip step either while the lead waits for a person (a CRM takeover may come first)
  for r in select e.id from pgflow.enrollments e
             join pgflow.conversations cv on cv.contact_id = e.contact_id
            where cv.id = p_conversation_id and e.status = 'active' order by e.id
  loop
    perform pgflow.pause_enrollment(r.id, 'waiting for a person', p_now);
  end loop;
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

drop function pgflow._apply_provider_status(bigint,timestamp with time zone);
