-- State rules applied: the tick defers a step to the next opening of the campaign's window and every applicable rule's hours and holds it under the smaller of the campaign's and the rules' caps; the claim re-checks both at send time (the contact locked); the rule that holds a step or text back is kept; the dry run of a campaign; a person's take-over, reply and hand-back lock the lead without blocking a receipt's foreign-key checks (the deadlock of a reply with a delivery receipt).
-- depends: 0033_create_suppression_trigger

-- The send-time re-check and claim. For the message of a send_sms job:
--   skip        the message is no longer waiting
--   suppressed  the contact opted out, or the drip / conversation no longer allows it
--   defer       not now (the campaign's window or a state rule's hours or cap: `rule`;
--               backoff pending, campaign paused, the sending number at its per-second or
--               daily limit): retry after delay_seconds
--   check_chat  a drip step while the conversation's last chat may be ongoing: read it
--               (GET /get-chat), record it (pgflow.record_chat), then claim again with
--               p_checked_chat = that chat id; a reply found there suppresses the step
--   reconcile   its last attempt was cut off (a worker died): look for the chat it may
--               have started, then record_send it as sent, or release_interrupted it
--   send        claimed: attempt n is ours; everything the transport needs is returned
create or replace function pgflow._claim_one(
  p_message_id bigint, p_worker uuid, p_checked_chat text, p_now timestamptz
) returns jsonb
language plpgsql
set search_path = ''
as $$
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
  v_rule text;
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
$$;

-- A marketing text held back until p_until by p_rule (pgflow._marketing_slot): queued with
-- send_after, its reason in words and its rule kept; the claim's `defer` answer.
create or replace function pgflow._defer_marketing(
  p_message_id bigint, p_until timestamptz, p_rule text, p_now timestamptz,
  p_note text default ''
) returns jsonb
language plpgsql
set search_path = ''
as $$
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
revoke execute on function pgflow._defer_marketing(bigint,timestamp with time zone,text,timestamp with time zone,text) from public;

-- For the given enrollments that are active and due at p_now: send the due step (message +
-- send_sms job), or defer it to the next opening of the campaign's window and the state
-- rules' hours (pgflow.marketing_open) / until under the daily cap (the campaign's, or a
-- state rule's when smaller), recording the rule that holds it back; then advance or
-- complete. Set-based: one planning
-- query, then one statement per kind of change (transitions with their own reason still
-- go one by one, and are rare). Rows locked by someone else are skipped.
create or replace function pgflow._dispatch_steps(
  p_ids bigint[], p_now timestamptz, p_priority integer default 0
) returns jsonb
language plpgsql
set search_path = ''
as $$
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
           -- the campaign's window and the state rules' hours (pgflow.marketing_open)
           coalesce(mo.at, p_now + interval '1 day') as open_at,
           coalesce(mo.rule, 'no window in 8 days') as open_rule,
           least(c.daily_cap, pgflow.rules_cap(cr.rules)) as cap,
           case when pgflow.rules_cap(cr.rules) <= c.daily_cap
                then 'state_cap:' || (select pg_catalog.min(sr.state) from pgflow.state_rules sr
                                       where sr.state = any (cr.rules)
                                         and sr.max_per_24h = pgflow.rules_cap(cr.rules))
                else 'campaign_cap' end as cap_rule
      from pgflow.enrollments e
      join pgflow.campaigns c on c.id = e.campaign_id
      join pgflow.contacts ct on ct.id = e.contact_id
      cross join lateral pgflow.contact_rules(ct.phone, ct.state) as cr(rules)
      cross join lateral pgflow.marketing_open(coalesce(ct.timezone, c.timezone), cr.rules,
        c.window_start, c.window_end, c.window_days, p_now) as mo
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
           pgflow.sms_segments(b.body), pgflow.sms_encoding(b.body),
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

-- When the claim may send one marketing text (a drip step; a person's first text to a
-- lead who never wrote) to this contact: the campaign's window and the rules' hours, and
-- the rules' cap per 24 h counted over the lead's campaign texts sent (or being sent)
-- in the last day. {at, rule}: rule null when now is allowed; state_cap:XX when the cap
-- holds it back. The caller holds the contact's row locked (two claims cannot both pass
-- the cap).
create or replace function pgflow._marketing_slot(
  p_contact pgflow.contacts, p_campaign pgflow.campaigns, p_now timestamptz,
  out at timestamptz, out rule text
)
language plpgsql stable
set search_path = ''
as $$
declare
  v_rules text[] := pgflow.contact_rules(p_contact.phone, p_contact.state);
  v_cap integer := pgflow.rules_cap(v_rules);
  v_recent timestamptz[];
  v_capped timestamptz;
  v_open record;
begin
  if v_cap is not null then
    select pg_catalog.array_agg(coalesce(m.sent_at, m.updated_at)) into v_recent
      from pgflow.messages m
     where m.contact_id = p_contact.id and m.kind = 'campaign' and m.direction = 'outbound'
       and m.created_at > p_now - interval '10 days'
       and ((m.sent_at > p_now - interval '24 hours' and m.delivery_status <> 'failed')
            or m.delivery_status = 'sending');
  end if;
  v_capped := pgflow.cap_open(v_cap, coalesce(v_recent, '{}'), p_now);
  select o.at, o.rule into v_open
    from pgflow.marketing_open(
      coalesce(p_contact.timezone, p_campaign.timezone, 'America/New_York'), v_rules,
      coalesce(p_campaign.window_start, time '09:00'), coalesce(p_campaign.window_end, time '20:00'),
      coalesce(p_campaign.window_days, '{1,2,3,4,5,6}'), v_capped) o;
  at := coalesce(v_open.at, p_now + interval '1 day');
  rule := case when v_open.rule is not null and v_open.at > v_capped then v_open.rule
               when v_capped > p_now then
                 'state_cap:' || (select pg_catalog.min(r.state) from pgflow.state_rules r
                                   where r.state = any (v_rules) and r.max_per_24h = v_cap)
               else v_open.rule end;
end;
$$;
revoke execute on function pgflow._marketing_slot(pgflow.contacts,pgflow.campaigns,timestamp with time zone) from public;

-- The first instant at or after p_at when one more marketing text may go under a cap of
-- p_cap per rolling 24 h, given when the lead's recent ones went (p_recent): once the
-- oldest of the last p_cap is 24 h old.
create or replace function pgflow.cap_open(p_cap integer, p_recent timestamptz[], p_at timestamptz)
returns timestamptz
language sql immutable parallel safe
set search_path = ''
as $$
  select case
    when p_cap is null then p_at
    else greatest(p_at, coalesce((
      select t + interval '24 hours'
        from (select t from pg_catalog.unnest(p_recent) t
               where t > p_at - interval '24 hours' and t <= p_at
               order by t desc offset p_cap - 1 limit 1) kth), p_at)) end
$$;
revoke execute on function pgflow.cap_open(integer,timestamp with time zone[],timestamp with time zone) from public;

-- The rules that apply to a lead (pgflow.state_rules): 'US' (the federal hours) always; the
-- state the lead gave; its area code's state (a US one) — both when they differ; and 'ZZ'
-- (the strictest) when no state can be told: a state code we do not know, or no state given
-- and a number outside the US and Canada or with no geographic area code. A Canadian area
-- code tells a province: only the federal hours apply.
create or replace function pgflow.contact_rules(p_phone text, p_state text) returns text[]
language sql stable parallel safe
set search_path = ''
as $$
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
$$;
revoke execute on function pgflow.contact_rules(text,text) from public;

-- The steps and texts waiting now, by the rule that holds them back: enrollments whose next
-- step waits, and queued texts deferred at send time. [{rule, steps, texts}], for /metrics
-- and `pgflow status`.
create or replace function pgflow.deferrals() returns jsonb
language sql stable
security definer
set search_path = ''
as $$
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
revoke execute on function pgflow.deferrals() from public;
grant execute on function pgflow.deferrals() to pgflow_operator;
grant execute on function pgflow.deferrals() to pgflow_reader;
grant execute on function pgflow.deferrals() to pgflow_web;

-- The person hands the lead back to the agent: the hold is lifted, the escalation alerts
-- of the lead's conversations are resolved, and where the engine writes the agent's
-- replies (p_engine_replies, or the conversation's line is on Twilio) a lead text nobody
-- answered yet gets the agent's answer.
-- A paused drip stays paused (stop-on-reply). PF001 when nobody holds the lead.
create or replace function pgflow.hand_back(
  p_conversation_id bigint,
  p_actor text,
  p_user_id bigint default null,
  p_engine_replies boolean default false,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
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

-- A person's text to the lead, queued like any message: the send-time claim checks it
-- again (never after STOP; the number's limits; the send window when the lead never
-- wrote), segments are counted. Writing takes the lead over first. It goes on the lead's
-- live conversation on that line, else on this one (an escalated conversation is
-- answered where it ended). p_key (the form's one-time key) makes a resubmitted form
-- once-only. Raises PF004 for an opted-out lead, PF003 for an empty or too long text.
-- The answer names the line's transport (what carries the text: the CLI says what that
-- transport can do).
create or replace function pgflow.human_reply(
  p_conversation_id bigint,
  p_body text,
  p_actor text,
  p_user_id bigint default null,
  p_key text default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
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

-- The first instant at or after p_at inside the campaign's window AND the hours of every
-- rule (the stricter wins), in the lead's zone p_tz, on a day all of them allow. rule says
-- what held it back (null: p_at itself is allowed): campaign_window, state_window:XX (a
-- rule's hours are narrower), quiet_day:XX (a rule allows no text that day). Looks 8 days
-- ahead; null `at` when nothing opens (a campaign with no day in common with a rule).
create or replace function pgflow.marketing_open(
  p_tz text, p_rules text[], p_start time, p_end time, p_days smallint[], p_at timestamptz,
  out at timestamptz, out rule text
)
language plpgsql stable parallel safe
set search_path = ''
as $$
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
revoke execute on function pgflow.marketing_open(text,text[],time without time zone,time without time zone,smallint[],timestamp with time zone) from public;

-- What a rule key means, in words (the drip timeline, the console, `status`).
create or replace function pgflow.rule_text(p_rule text) returns text
language sql stable parallel safe
set search_path = ''
as $$
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
revoke execute on function pgflow.rule_text(text) from public;

-- The fewest marketing texts per rolling 24 h any of the rules allows (null: no cap).
create or replace function pgflow.rules_cap(p_rules text[]) returns integer
language sql stable parallel safe
set search_path = ''
as $$
  select pg_catalog.min(r.max_per_24h) from pgflow.state_rules r where r.state = any (p_rules)
$$;
revoke execute on function pgflow.rules_cap(text[]) from public;

-- A dry run of one applied campaign for sample leads (p_leads: [{phone, timezone?,
-- state?}]): when each step would go over the next p_days from p_now, if nobody replies,
-- and which rule decided, as the tick and the claim would (the window and the rules' hours,
-- the campaign's daily cap and the rules' cap, counted over the simulated steps). Nothing
-- is written. [{phone, timezone, rules, steps: [{step, due_at, send_at, local, rule}]}].
create or replace function pgflow.simulate_campaign(
  p_slug text, p_leads jsonb, p_days integer default 14, p_now timestamptz default null
) returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
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
  v_open record;
  v_capped timestamptz;
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
      v_capped := pgflow.cap_open(v_cap, v_sent, v_due);
      select o.at, o.rule into v_open
        from pgflow.marketing_open(v_tz, v_rules, v_campaign.window_start,
                                   v_campaign.window_end, v_campaign.window_days, v_capped) o;
      v_at := v_open.at;
      v_rule := case when v_open.at is null then 'no window in 8 days'
                     when v_open.rule is not null and v_open.at > v_capped then v_open.rule
                     when v_capped > v_due then
                       case when v_cap = v_campaign.daily_cap
                                 and v_cap < coalesce(pgflow.rules_cap(v_rules), v_cap + 1)
                            then 'campaign_cap'
                            else 'state_cap:' || (select pg_catalog.min(r.state) from pgflow.state_rules r
                                                   where r.state = any (v_rules) and r.max_per_24h = v_cap)
                       end
                     else v_open.rule end;
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
revoke execute on function pgflow.simulate_campaign(text,jsonb,integer,timestamp with time zone) from public;
grant execute on function pgflow.simulate_campaign(text,jsonb,integer,timestamp with time zone) to pgflow_operator;

-- A person takes over the lead of this conversation: from now on no AI text reaches the
-- lead on any conversation (agent_turn and the send-time claim refuse, Retell's chats are
-- ended and its chat_inbound rejected), no drip step goes (active drips are paused), and
-- the conversation stays open for the person's texts. Taking over from a colleague is
-- allowed and recorded. Returns {result: held | unchanged, contact_id, held_by, previous}.
create or replace function pgflow.take_over(
  p_conversation_id bigint,
  p_actor text,
  p_user_id bigint default null,
  p_reason text default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
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
