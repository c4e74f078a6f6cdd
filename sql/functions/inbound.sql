-- Inbound: what a lead's text asks for, opt-out and opt-in, stop-on-reply, what a new text sets off.
-- The current definition of each function and view of this area (sql/README.md: how to
-- change one). Grants: roles.sql.

-- A text reduced to lowercase words: apostrophes dropped (don't -> dont), punctuation and
-- emoji to spaces, spaces collapsed.
create or replace function pgflow._sms_words(p_text text) returns text
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
create or replace function pgflow.inbound_intent(p_text text, out intent text, out rule text)
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

-- A system message (opt-out confirmation, HELP answer) on a conversation, queued and sent
-- at high priority; its dedupe key makes it once-only. Returns its id (NULL: it existed).
create or replace function pgflow._system_message(
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

-- A contact opts out: suppressed across every campaign, every drip opted_out, every live
-- conversation ended `discarded`, queued messages suppressed, ongoing chats ended, and ONE
-- confirmation (the campaign's opt_out_text) on the conversation the opt-out came through.
-- A contact already opted out changes nothing and gets no second confirmation.
create or replace function pgflow.opt_out_contact(
  p_contact_id bigint,
  p_source text,
  p_message_id bigint default null,
  p_text text default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
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

-- START / UNSTOP / YES after an opt-out: the suppression is lifted (recorded with its
-- source) and one confirmation goes out (none where the carrier sent its own). No drip is resumed and nobody is re-enrolled.
-- The number's own word lifts the suppression of a number forgotten before, too: its
-- pgflow.suppressions row is deleted (a later contact of the number is not suppressed).
create or replace function pgflow.opt_in_contact(
  p_contact_id bigint,
  p_source text,
  p_message_id bigint default null,
  p_text text default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
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

-- Stop-on-reply: the first sign of a reply sets the conversation engaged and pauses every
-- active drip of the contact on that line, in one step. Later replies change nothing here.
create or replace function pgflow._engage(p_conversation_id bigint, p_at timestamptz, p_now timestamptz)
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

-- The live conversation of a lead who texted our line p_line, opened when there is none:
-- on the drip the lead is in on this line, else the last campaign that used it, with its
-- agent, else the number's inbound agent, else the agent the lead last talked to there.
-- A row with a null id when no agent can answer (the caller refuses the text).
create or replace function pgflow._inbound_conversation(
  p_contact_id bigint, p_line text, p_now timestamptz
) returns pgflow.conversations
language plpgsql
set search_path = ''
as $$
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

-- What one new inbound message sets off, in order: opt-out before anything else; for an
-- opted-out contact only START counts; otherwise the conversation is engaged (drips
-- paused), a request for a person escalates it (an alert; the lead is told), HELP gets the
-- help text, an ambiguous opt-out word gets an LLM judgment, and
-- where the engine writes the agent's replies (the sandbox) an agent_reply job is queued
-- after the agent's debounce, so a burst of texts gets one answer.
-- p_carrier_answered: the keyword the carrier itself answered (Twilio replies to STOP,
-- START and HELP on its own): that opt-out or opt-in is recorded with source `carrier` and
-- no confirmation of ours follows, nor our help text: the lead gets one answer, not two.
create or replace function pgflow._on_inbound(
  p_message_id bigint, p_engine_replies boolean, p_now timestamptz,
  p_carrier_answered text default null
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
