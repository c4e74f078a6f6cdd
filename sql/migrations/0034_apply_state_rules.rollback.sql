-- Undo 0034: the window and cap as they were before the state rules.
-- depends: 0033_create_suppression_trigger

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
  perform pgflow._hold(v_contact, v_actor,
    'taken over by ' || v_actor || coalesce(': ' || nullif(pg_catalog.btrim(p_reason), ''), ''),
    'a person took over', v_now);
  perform pgflow._audit(v_actor, p_user_id, 'takeover', p_conversation_id, v_contact.id,
    pg_catalog.jsonb_build_object('reason', nullif(pg_catalog.btrim(p_reason), ''),
                                  'from', v_contact.held_by), v_now);
  return pg_catalog.jsonb_build_object('result', 'held', 'contact_id', v_contact.id,
    'conversation_id', p_conversation_id, 'held_by', v_actor, 'previous', v_contact.held_by);
end;
$function$;

drop function pgflow.simulate_campaign(text,jsonb,integer,timestamp with time zone);

drop function pgflow.rules_cap(text[]);

drop function pgflow.rule_text(text);

drop function pgflow.marketing_open(text,text[],time without time zone,time without time zone,smallint[],timestamp with time zone);

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
    'conversation_id', v_conversation.id, 'segments', pgflow.sms_segments(v_body),
    'transport', pgflow._line_transport(v_conversation.from_number));
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
$function$;

drop function pgflow.deferrals();

drop function pgflow.contact_rules(text,text);

drop function pgflow.cap_open(integer,timestamp with time zone[],timestamp with time zone);

drop function pgflow._marketing_slot(pgflow.contacts,pgflow.campaigns,timestamp with time zone);

CREATE OR REPLACE FUNCTION pgflow._dispatch_steps(p_ids bigint[], p_now timestamp with time zone, p_priority integer DEFAULT 0)
 RETURNS jsonb
 LANGUAGE plpgsql
 SET search_path TO ''
AS $function$
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
           case when ct.opted_out_at is not null then 'opted_out'
                when c.status <> 'active' then 'held'
                when s.position is null then 'no_step' end as rare,
           pgflow.next_window_open(coalesce(ct.timezone, c.timezone), c.window_start,
                                   c.window_end, c.window_days, p_now) as open_at
      from pgflow.enrollments e
      join pgflow.campaigns c on c.id = e.campaign_id
      join pgflow.contacts ct on ct.id = e.contact_id
      left join pgflow.campaign_steps s on s.campaign_id = e.campaign_id
                                       and s.position = e.next_step
     where e.id = any (p_ids) and e.status = 'active' and e.next_message_at <= p_now
     order by e.next_message_at, e.id
       for update of e skip locked
  ), lined as (
    -- the contact's live conversation of this drip (on its line even when the number has
    -- left the pool since) or on a line of the campaign's pool; a replied one first
    select d.*, coalesce(d.rare, case when live.status = 'engaged' then 'engaged' end) as fate,
           live.from_number as live_from
      from due d
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
                     when k.recent >= k.daily_cap then 'cap'
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
           nx.position, nx.delay, d.recent, d.oldest, d.daily_cap)::pgflow._due_step
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
  update pgflow.enrollments e set next_message_at = p.until, updated_at = p_now
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
                                                       ord)
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
           pgflow.sms_segments(b.body), pgflow.sms_encoding(b.body),
           'step:' || e.id || ':' || s.position, p_now, p_now
      from pg_catalog.unnest(v_plan) with ordinality as p(enrollment_id, contact_id, decision,
                                                         until, from_number, next_position,
                                                         next_delay, recent, oldest,
                                                         daily_cap, ord)
      join pgflow.enrollments e on e.id = p.enrollment_id
      join pgflow.campaigns c on c.id = e.campaign_id
      join pgflow.contacts ct on ct.id = e.contact_id
      join pgflow.campaign_steps s on s.campaign_id = e.campaign_id and s.position = e.next_step
      join pgflow.conversations cv on cv.contact_id = e.contact_id
                                  and cv.from_number = p.from_number and cv.status <> 'ended'
      cross join lateral (select pgflow.render_template(s.body, pgflow._template_values(ct),
                                                        c.fallbacks) as body) b
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
         last_step_sent_at = p_now, updated_at = p_now
    from pg_catalog.unnest(v_plan) p
   where e.id = p.enrollment_id and p.decision = 'send' and p.next_position is not null;
  perform pgflow._set_reason('last step sent');
  update pgflow.enrollments e
     set status = 'completed', ended_at = p_now, updated_at = p_now, next_step = null,
         next_message_at = null, last_step_sent_at = p_now
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
$function$;

drop function pgflow._defer_marketing(bigint,timestamp with time zone,text,timestamp with time zone,text);

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
    'transport', pgflow._line_transport(v_conversation.from_number),
    -- how long the provider may hold the text before it is dropped (Twilio's
    -- ValidityPeriod): a drip text never arrives after its send window closes
    'validity_seconds', pgflow._validity_seconds(m.kind, v_contact, v_campaign, v_now),
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
