-- Drop what nothing calls: claim_send (claim_message succeeded it), alert and record_alert_delivery (alert_notice, record_alert_notice), resume_enrollment.
-- depends: 0019_create_number_pools

CREATE OR REPLACE FUNCTION pgflow.resume_enrollment(p_id bigint, p_reason text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS pgflow.enrollments
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
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
$function$;
revoke execute on function pgflow.resume_enrollment(bigint,text,timestamp with time zone) from public;
grant execute on function pgflow.resume_enrollment(bigint,text,timestamp with time zone) to pgflow_operator;

CREATE OR REPLACE FUNCTION pgflow.record_alert_delivery(p_alert_id bigint, p_error text DEFAULT NULL::text, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS void
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
  update pgflow.alerts
     set notified_at = case when p_error is null then coalesce(p_now, pg_catalog.now()) end,
         details = case when p_error is null then details
                        else details || pg_catalog.jsonb_build_object('notify_error', p_error) end
   where id = p_alert_id
$function$;
revoke execute on function pgflow.record_alert_delivery(bigint,text,timestamp with time zone) from public;
grant execute on function pgflow.record_alert_delivery(bigint,text,timestamp with time zone) to pgflow_worker;

CREATE OR REPLACE FUNCTION pgflow.claim_send(p_message_id bigint, p_worker uuid DEFAULT NULL::uuid, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
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
$function$;
revoke execute on function pgflow.claim_send(bigint,uuid,timestamp with time zone) from public;
grant execute on function pgflow.claim_send(bigint,uuid,timestamp with time zone) to pgflow_worker;

CREATE OR REPLACE FUNCTION pgflow.alert(p_id bigint)
 RETURNS jsonb
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO ''
AS $function$ select pg_catalog.to_jsonb(a) from pgflow.alerts a where a.id = p_id $function$;
revoke execute on function pgflow.alert(bigint) from public;
grant execute on function pgflow.alert(bigint) to pgflow_worker;
