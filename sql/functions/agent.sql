-- The agent: its turns, opt-out judgments, the live conversations.
-- The current definition of each function and view of this area (sql/README.md: how to
-- change one). Grants: roles.sql.

-- Why no agent reply may follow this lead text now, or NULL when one may.
create or replace function pgflow._reply_refusal(p_trigger pgflow.messages) returns text
language sql stable
set search_path = ''
as $$
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

-- For an agent_reply job: everything the agent needs to answer this lead text (its prompt,
-- the campaign, the lead, the transcript), or {answer: false, reason} when no reply may
-- follow (opted out, ended, taken over, a later text pending, turns used up), or a retry
-- while an ambiguous opt-out word waits for its judgment.
create or replace function pgflow.agent_turn(p_trigger_id bigint, p_now timestamptz default null)
returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
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

-- The agent's answer to a lead text, recorded and queued for sending in one call, unless
-- the situation changed while the agent thought (then 'stale', nothing written). The
-- agent's action: `booked` ends the conversation `success`, `handoff` escalates it (both
-- by rule; the reply still goes out as the closing message), `end` (or the last turn)
-- asks for the outcome to be classified.
create or replace function pgflow.record_agent_reply(
  p_trigger_id bigint,
  p_body text,
  p_action text default 'continue',
  p_reason text default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
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

-- For a judge_opt_out job: the lead's text while it still waits for a judgment, else NULL.
create or replace function pgflow.opt_out_question(p_message_id bigint) returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object('message_id', m.id, 'text', m.body)
    from pgflow.messages m
   where m.id = p_message_id and m.direction = 'inbound' and m.intent = 'maybe_opt_out'
$$;

-- The judgment on an ambiguous text: an opt-out suppresses the contact (source 'llm'),
-- anything else leaves it a plain reply. The first judgment stands.
create or replace function pgflow.record_opt_out_judgment(
  p_message_id bigint, p_opt_out boolean, p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
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

-- Conversations not ended, for `pgflow conversations list` (the CLI masks the phones).
create or replace view pgflow.live_conversations as
select cv.id, ct.phone, c.slug as campaign, a.name as agent, cv.status, cv.from_number,
       cv.created_at, cv.engaged_at, cv.agent_turns, cv.chat_status,
       greatest(cv.last_inbound_at, cv.last_outbound_at, cv.created_at) as last_message_at,
       cv.last_inbound_at
  from pgflow.conversations cv
  join pgflow.contacts ct on ct.id = cv.contact_id
  left join pgflow.campaigns c on c.id = cv.campaign_id
  left join pgflow.agents a on a.id = cv.agent_id
 where cv.status <> 'ended';
