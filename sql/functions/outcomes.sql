-- Outcomes: conversation transitions, the rules, review, classification, business events, the funnel.
-- The current definition of each function and view of this area (sql/README.md: how to
-- change one). Grants: roles.sql.

-- Conversations: open -> engaged -> ended; open -> ended. Ending one stops its drip.
create or replace function pgflow.engage_conversation(
  p_id bigint, p_reason text default null, p_now timestamptz default null
) returns pgflow.conversations
language plpgsql
set search_path = ''
as $$
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

-- Conversations: open -> engaged -> ended; open -> ended, with an outcome and its source
-- (rule, llm, human, webhook, retell: Retell's own analysis). Ending one stops its drip.
create or replace function pgflow.end_conversation(
  p_id bigint,
  p_conversion_status text,
  p_reason text,
  p_source text,
  p_now timestamptz default null
) returns pgflow.conversations
language plpgsql
security definer
set search_path = ''
as $$
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

-- A conversation waits for a person: why, since when; one needs_review alert counts them.
create or replace function pgflow._flag_review(p_conversation_id bigint, p_reason text, p_now timestamptz)
returns void
language plpgsql
set search_path = ''
as $$
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

-- Ask for an LLM classification of a conversation that is not ended (once per quiet spell:
-- a new lead text allows another request).
create or replace function pgflow._request_classification(p_conversation_id bigint, p_now timestamptz)
returns boolean
language plpgsql
set search_path = ''
as $$
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

-- Give a conversation its outcome, from any source, by these rules:
--   - not ended: it ends with this outcome;
--   - ended by a person: nothing overwrites it (the signal is kept);
--   - ended otherwise: a person or a business event (a booking from the CRM) replace the
--     outcome; a rule, the LLM or Retell never replace one, and when they disagree the
--     conversation goes to review.
-- A person's outcome clears the review. Every call leaves a row in outcome_signals.
create or replace function pgflow.set_outcome(
  p_conversation_id bigint,
  p_status text,
  p_reason text,
  p_source text,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
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

-- Hand a conversation to a person: it ends `escalated`, its chat ends (the provider's agent
-- stops), the lead waits for a person (contacts.held_at: no AI text reaches it until a
-- person hands it back), an alert opens for it, and the lead may be told a person will
-- follow up.
create or replace function pgflow._escalate(
  p_conversation_id bigint, p_reason text, p_source text, p_ack boolean, p_now timestamptz
) returns void
language plpgsql
set search_path = ''
as $$
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

-- chat_analyzed may carry Retell's own conversion_status (post_chat_analysis_data): kept as
-- a signal beside ours; when it disagrees with an outcome already given, a person reviews.
create or replace function pgflow._record_retell_analysis(
  p_conversation_id bigint, p_chat jsonb, p_now timestamptz
) returns void
language plpgsql
set search_path = ''
as $$
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

-- The transcript a classification saw, as a hash: classifying it again writes nothing, and
-- a conversation that went on since makes the classification stale.
create or replace function pgflow._transcript_hash(p_conversation_id bigint) returns text
language sql stable
set search_path = ''
as $$
  select pg_catalog.md5(coalesce(pg_catalog.string_agg(m.direction || ':' || m.body, E'\n'
                                                     order by m.created_at, m.id), ''))
    from pgflow.messages m
   where m.conversation_id = p_conversation_id
     and (m.direction = 'inbound' or m.delivery_status in ('queued', 'sending', 'sent', 'delivered'))
$$;

-- For a classify_outcome job: the rules first (no text from the lead: no_response; opted
-- out: discarded), then what the LLM needs: the transcript, its hash, the campaign's goal.
create or replace function pgflow.outcome_question(p_conversation_id bigint, p_now timestamptz default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
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

-- The LLM's verdict on a transcript (or why there is none). Same transcript again: nothing
-- written. A transcript that went on since: stale. No verdict, an unsure one (confidence
-- below 0.6), or one that disagrees with Retell's: the conversation waits for a person's
-- review, never a guess. Otherwise the conversation ends with it (source llm, or rule for
-- the offline classifier).
create or replace function pgflow.record_classification(
  p_conversation_id bigint,
  p_transcript_hash text,
  p_status text,
  p_reason text,
  p_confidence double precision,
  p_model text,
  p_error text default null,
  p_now timestamptz default null,
  p_source text default 'llm'
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
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

-- POST /webhooks/events: a business event for a lead (by conversation id, or by phone:
-- the live conversation, else the latest). appointment_booked -> success, disqualified ->
-- unqualified, human_takeover -> escalated and the agent goes quiet; source `webhook`.
-- Recorded once (by its `id`, else its content); an unknown phone is recorded too.
create or replace function pgflow.record_business_event(
  p_payload jsonb, p_phone text default null, p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
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
$$;

-- The funnel of each campaign (or one), counting its leads enrolled since p_since:
-- its transport; enrolled, messaged (a step sent), steps sent, delivered (a carrier's
-- receipt: Twilio only) and undelivered (by the carrier error's class) with the time from
-- sent to delivered (p50, p90), replied (a lead may write
-- before any step reached them), the reply rate (of the messaged), opted out, the
-- outcomes of their conversations, the median time from the first step to the first reply,
-- and per step: sent, and the leads whose first reply came after it.
create or replace function pgflow.funnel(p_campaign text default null, p_since timestamptz default null)
returns jsonb
language sql stable
security definer
set search_path = ''
as $$
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

-- One row per campaign, all time (dashboards query this).
create or replace view pgflow.campaign_funnel as
select f ->> 'campaign' as campaign,
       (f ->> 'enrolled')::bigint as enrolled,
       (f ->> 'messaged')::bigint as messaged,
       (f ->> 'steps_sent')::bigint as steps_sent,
       (f ->> 'delivered')::bigint as delivered,
       (f ->> 'replied')::bigint as replied,
       (f ->> 'opted_out')::bigint as opted_out,
       (f ->> 'reply_rate')::numeric as reply_rate,
       (f ->> 'opt_out_rate')::numeric as opt_out_rate,
       (f ->> 'median_first_reply_seconds')::numeric as median_first_reply_seconds,
       f -> 'outcomes' as outcomes,
       f -> 'steps' as steps
  from pg_catalog.jsonb_array_elements(pgflow.funnel()) as f;

-- Conversations waiting for a person, with every signal on them.
create or replace view pgflow.review_queue as
select cv.id, ct.phone, c.slug as campaign, cv.status, cv.conversion_status,
       cv.outcome_source, cv.review_reason, cv.review_requested_at,
       coalesce((select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                          'source', s.source, 'status', s.status, 'reason', s.reason,
                          'confidence', s.confidence) order by s.id)
                   from pgflow.outcome_signals s where s.conversation_id = cv.id), '[]')
         as signals
  from pgflow.conversations cv
  join pgflow.contacts ct on ct.id = cv.contact_id
  left join pgflow.campaigns c on c.id = cv.campaign_id
 where cv.review_reason is not null;
