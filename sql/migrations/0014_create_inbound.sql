-- Inbound: what a lead's text means (opt-out first), stop-on-reply, escalation and outcomes given by rule, and every Retell webhook recorded once (pgflow.record_retell_event).
-- depends: 0013_index_chat_ids

-- A text reduced to lowercase words: apostrophes dropped (don't -> dont), punctuation and
-- emoji to spaces, spaces collapsed.
create function pgflow._sms_words(p_text text) returns text
language sql immutable parallel safe
set search_path = ''
as $$
  select pg_catalog.btrim(pg_catalog.regexp_replace(
           pg_catalog.regexp_replace(
             pg_catalog.regexp_replace(
               pg_catalog.translate(pg_catalog.lower(coalesce(p_text, '')), '’‘`´', ''''''''''),
               '''', '', 'g'),
             '[^[:alnum:]]+', ' ', 'g'),
           '\s+', ' ', 'g'))
$$;

-- What an inbound text asks for, by rule (sql/STATE_MACHINES.md, "Inbound"):
--   opt_out        a standard keyword alone (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT,
--                  REVOKE, OPTOUT, and Spanish PARAR/BAJA/...), rule 'keyword'; or a clear
--                  phrase ("stop texting me", "take me off your list"), rule 'phrase'
--   opt_in         START, UNSTOP, YES, SUBSCRIBE alone (it lifts an opt-out only)
--   help           HELP or INFO alone
--   human          the lead asks for a person
--   maybe_opt_out  an opt-out word in a sentence no rule settles ("stop by at 3?",
--                  "don't stop!"): an LLM judges it where one is configured, else it stands
--   none           anything else
create function pgflow.inbound_intent(p_text text, out intent text, out rule text)
language plpgsql immutable parallel safe
set search_path = ''
as $$
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
$$;

-- Enqueue jobs that run no sooner than p_after (debounced agent replies).
create function pgflow._enqueue_after(
  p_entrypoint text, p_ids bigint[], p_priority integer, p_after timestamptz
) returns integer
language plpgsql
set search_path = ''
as $$
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

-- A system message (opt-out confirmation, HELP answer) on a conversation, queued and sent
-- at high priority; its dedupe key makes it once-only. Returns its id (NULL: it existed).
create function pgflow._system_message(
  p_conversation_id bigint, p_body text, p_dedupe_key text, p_now timestamptz
) returns bigint
language plpgsql
set search_path = ''
as $$
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

-- End the provider chats still ongoing on these conversations (an end_chat job each).
create function pgflow._end_chats(p_conversation_ids bigint[]) returns integer
language sql
set search_path = ''
as $$
  select pgflow._enqueue('end_chat', coalesce(pg_catalog.array_agg(cv.id), '{}'), 20)
    from pgflow.conversations cv
   where cv.id = any (p_conversation_ids) and cv.provider_chat_id is not null
     and coalesce(cv.chat_status, 'ongoing') = 'ongoing'
$$;

-- A contact opts out: suppressed across every campaign, every drip opted_out, every live
-- conversation ended `discarded`, queued messages suppressed, ongoing chats ended, and ONE
-- confirmation (the campaign's opt_out_text) on the conversation the opt-out came through.
-- A contact already opted out changes nothing and gets no second confirmation.
create function pgflow.opt_out_contact(
  p_contact_id bigint,
  p_source text,
  p_message_id bigint default null,
  p_text text default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
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
$$;

-- START / UNSTOP / YES after an opt-out: the suppression is lifted (recorded with its
-- source) and one confirmation goes out. No drip is resumed and nobody is re-enrolled.
create function pgflow.opt_in_contact(
  p_contact_id bigint,
  p_source text,
  p_message_id bigint default null,
  p_text text default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
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
$$;

-- Stop-on-reply: the first sign of a reply sets the conversation engaged and pauses every
-- active drip of the contact on that line, in one step. Later replies change nothing here.
create function pgflow._engage(p_conversation_id bigint, p_at timestamptz, p_now timestamptz)
returns boolean
language plpgsql
set search_path = ''
as $$
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

-- end_conversation as in 0005, with `retell` among the sources (Retell's own analysis).
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
create function pgflow._flag_review(p_conversation_id bigint, p_reason text, p_now timestamptz)
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
create function pgflow._request_classification(p_conversation_id bigint, p_now timestamptz)
returns boolean
language plpgsql
set search_path = ''
as $$
begin
  update pgflow.conversations set classify_requested_at = p_now, updated_at = p_now
   where id = p_conversation_id and status <> 'ended' and classify_requested_at is null;
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
create function pgflow.set_outcome(
  p_conversation_id bigint,
  p_status text,
  p_reason text,
  p_source text,
  p_now timestamptz default null
) returns jsonb
language plpgsql
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
-- stops), an alert opens for it, and the lead may be told a person will follow up.
create function pgflow._escalate(
  p_conversation_id bigint, p_reason text, p_source text, p_ack boolean, p_now timestamptz
) returns void
language plpgsql
set search_path = ''
as $$
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
$$;

-- chat_analyzed may carry Retell's own conversion_status (post_chat_analysis_data): kept as
-- a signal beside ours; when it disagrees with an outcome already given, a person reviews.
create function pgflow._record_retell_analysis(
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

-- What one new inbound message sets off, in order: opt-out before anything else; for an
-- opted-out contact only START counts; otherwise the conversation is engaged (drips
-- paused), a request for a person escalates it (an alert; the lead is told), HELP gets the
-- help text, an ambiguous opt-out word gets an LLM judgment, and
-- where the engine writes the agent's replies (the sandbox) an agent_reply job is queued
-- after the agent's debounce, so a burst of texts gets one answer.
create function pgflow._on_inbound(
  p_message_id bigint, p_engine_replies boolean, p_now timestamptz
) returns text
language plpgsql
set search_path = ''
as $$
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
$$;

-- The text messages of a Retell chat object, in order: `message_with_tool_calls` entries
-- whose role is agent or user (tool calls, node and state transitions are not messages),
-- or, without that list, the `transcript` string ("Agent: ...\nUser: ..."). Each has a key:
-- An identifier from outside as a key we can index: itself up to 200 characters, else its
-- md5 (a btree entry has a size limit; a longer id is no id of Retell's or a CRM's).
create function pgflow._short_key(p_id text) returns text
language sql immutable parallel safe
set search_path = ''
as $$
  select case when pg_catalog.length(p_id) <= 200 then p_id else 'md5:' || pg_catalog.md5(p_id) end
$$;

-- Retell's message_id, else <chat_id>:<position among the texts>.
create function pgflow._chat_items(p_chat jsonb)
returns table (pos integer, key text, role text, content text, at timestamptz)
language plpgsql immutable
set search_path = ''
as $$
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
$$;

-- The conversation a chat belongs to: through the metadata we gave it (our ids), else the
-- chat id we stored when sending. NULL fields when it is not ours.
create function pgflow._chat_conversation(p_chat jsonb) returns pgflow.conversations
language plpgsql stable
set search_path = ''
as $$
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
$$;

-- A lead wrote on a line whose conversation has ended (after no_response, say): the live
-- conversation of that line, or a new one with the same campaign and agent.
create function pgflow._live_conversation(p_ended pgflow.conversations, p_now timestamptz)
returns pgflow.conversations
language plpgsql
set search_path = ''
as $$
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

-- Record a Retell chat object (from any chat webhook, or from GET /get-chat before a drip
-- step): each text once, in order, on its conversation; the chat's state; and what each
-- new lead text sets off (pgflow._on_inbound). The chat's first agent message is the
-- message that started it (metadata pgflow_message_id): it is linked, never recorded
-- twice. Safe to call any number of times with any subset of the transcript, in any order.
create function pgflow.record_chat(
  p_chat jsonb,
  p_event text default 'get_chat',
  p_engine_replies boolean default false,
  p_now timestamptz default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
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
$$;

-- The dynamic variables every chat carries (Retell sends a missing one literally, so each
-- is present and non-empty): the agent's prompt, the lead's context, the first message.
create function pgflow._agent_variables(
  p_contact pgflow.contacts, p_campaign pgflow.campaigns, p_agent pgflow.agents,
  p_sms_body text
) returns jsonb
language sql stable
set search_path = ''
as $$
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

-- chat_inbound (and the older sms_inbound): a lead texted one of our numbers and Retell
-- asks which agent answers. The answer is the agent of the lead's conversation on that
-- line (the campaign's agent), with its prompt and the lead's context as dynamic variables
-- and our ids as metadata. A suppressed contact is rejected unless the text is START; an
-- unknown number gets the line's default inbound agent, or a reject.
create function pgflow._answer_inbound(p_payload jsonb, p_now timestamptz) returns jsonb
language plpgsql
set search_path = ''
as $$
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
$$;

-- One Retell webhook, one call: recorded in webhook_deliveries under a key made of its
-- event, chat and content (Retell's retries are the same delivery: they change nothing
-- and get the first answer back), then handled by its event. Unknown events and chats are
-- recorded and ignored. p_engine_replies: the transport takes our text (the sandbox), so
-- the engine writes the agent's replies.
create function pgflow.record_retell_event(
  p_payload jsonb, p_engine_replies boolean default false, p_now timestamptz default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
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
$$;

revoke execute on function pgflow._sms_words(text), pgflow.inbound_intent(text),
  pgflow._short_key(text),
  pgflow._enqueue_after(text, bigint[], integer, timestamptz),
  pgflow._system_message(bigint, text, text, timestamptz), pgflow._end_chats(bigint[]),
  pgflow.opt_out_contact(bigint, text, bigint, text, timestamptz),
  pgflow.opt_in_contact(bigint, text, bigint, text, timestamptz),
  pgflow._engage(bigint, timestamptz, timestamptz),
  pgflow._on_inbound(bigint, boolean, timestamptz), pgflow._chat_items(jsonb),
  pgflow._chat_conversation(jsonb),
  pgflow._live_conversation(pgflow.conversations, timestamptz),
  pgflow.record_chat(jsonb, text, boolean, timestamptz),
  pgflow._agent_variables(pgflow.contacts, pgflow.campaigns, pgflow.agents, text),
  pgflow._answer_inbound(jsonb, timestamptz),
  pgflow.record_retell_event(jsonb, boolean, timestamptz),
  pgflow._flag_review(bigint, text, timestamptz),
  pgflow._request_classification(bigint, timestamptz),
  pgflow.set_outcome(bigint, text, text, text, timestamptz),
  pgflow._escalate(bigint, text, text, boolean, timestamptz),
  pgflow._record_retell_analysis(bigint, jsonb, timestamptz)
  from public;
alter function pgflow.set_outcome(bigint, text, text, text, timestamptz) security definer;
grant execute on function pgflow.set_outcome(bigint, text, text, text, timestamptz)
  to pgflow_operator;

alter function pgflow.record_retell_event(jsonb, boolean, timestamptz) security definer;
alter function pgflow.record_chat(jsonb, text, boolean, timestamptz) security definer;
alter function pgflow.opt_out_contact(bigint, text, bigint, text, timestamptz) security definer;
alter function pgflow.opt_in_contact(bigint, text, bigint, text, timestamptz) security definer;
grant execute on function pgflow.record_retell_event(jsonb, boolean, timestamptz) to pgflow_web;
grant execute on function pgflow.record_chat(jsonb, text, boolean, timestamptz) to pgflow_worker;
grant execute on function pgflow.inbound_intent(text) to pgflow_worker, pgflow_operator, pgflow_reader;
grant execute on function pgflow.opt_out_contact(bigint, text, bigint, text, timestamptz),
  pgflow.opt_in_contact(bigint, text, bigint, text, timestamptz)
  to pgflow_operator;
grant select on pgflow.sending_numbers, pgflow.campaign_numbers, pgflow.number_usage,
  pgflow.opt_outs to pgflow_reader;
