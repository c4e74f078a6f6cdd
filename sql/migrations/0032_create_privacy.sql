-- Proof of consent and erasure: contact_consent (operators, readers) and forget_contact (operators); every lead's consent recorded with its ip, user agent and request, and its state read; a forgotten number's keyed hash (_phone_hash) and the trigger function that creates its contacts opted out; START lifts that suppression; late Retell chats and Twilio receipts of a forgotten contact keep no payload (from sql/functions/).
-- depends: 0031_add_erasure_checks

-- chat_inbound (and the older sms_inbound): a lead texted one of our numbers and Retell
-- asks which agent answers. The answer is the agent of the lead's conversation on that
-- line (the campaign's agent), with its prompt and the lead's context as dynamic variables
-- and our ids as metadata. A suppressed contact is rejected unless the text is START; an
-- unknown number gets the line's default inbound agent, or a reject (a number forgotten
-- on request arrives opted out: its new contact is rejected like any suppressed one).
create or replace function pgflow._answer_inbound(
  p_payload jsonb, p_engine_replies boolean, p_now timestamptz
) returns jsonb
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
  end if;
  if v_contact.opted_out_at is not null
     and (v_text is null or (select i.intent from pgflow.inbound_intent(v_text) i) <> 'opt_in') then
    return pg_catalog.jsonb_build_object('result', 'suppressed_rejected', 'response', v_reject);
  end if;

  v_conversation := pgflow._inbound_conversation(v_contact.id, v_line, p_now);
  if v_conversation.id is null then
    return pg_catalog.jsonb_build_object('result', 'no_agent_rejected', 'response', v_reject);
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
$$;

-- One contact row as proof of consent: who (as stored now), its consents in the order
-- given (when, source, the exact disclosure, the lead request it came with, ip and user
-- agent), every opt-out and opt-in with the text that caused it, and its erasure.
create or replace function pgflow._consent_record(p_contact pgflow.contacts) returns jsonb
language sql stable
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'id', p_contact.id, 'phone', p_contact.phone, 'first_name', p_contact.first_name,
    'last_name', p_contact.last_name, 'email', p_contact.email, 'state', p_contact.state,
    'created_at', p_contact.created_at, 'opted_out_at', p_contact.opted_out_at,
    'opt_out_source', p_contact.opt_out_source, 'forgotten_at', p_contact.forgotten_at,
    'consents', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', c.id, 'given_at', c.given_at, 'source', c.source,
               'disclosure', c.disclosure, 'ip', c.ip, 'user_agent', c.user_agent,
               'request', c.request, 'lead_event_id', c.lead_event_id,
               'recorded_at', c.recorded_at) order by c.given_at, c.id)
        from pgflow.consents c where c.contact_id = p_contact.id), '[]'),
    'opt_outs', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', o.id, 'action', o.action, 'source', o.source, 'text', o.text,
               'message_id', o.message_id, 'occurred_at', o.occurred_at)
             order by o.occurred_at, o.id)
        from pgflow.opt_outs o where o.contact_id = p_contact.id), '[]'),
    'erasure', (
      select pg_catalog.jsonb_build_object(
               'id', e.id, 'requested_by', e.requested_by, 'reason', e.reason,
               'erased_at', e.erased_at, 'removed', e.removed)
        from pgflow.erasures e where e.contact_id = p_contact.id
       order by e.erased_at desc, e.id desc limit 1))
$$;
revoke execute on function pgflow._consent_record(pgflow.contacts) from public;

-- The trigger on every new contact, whatever creates it (a lead, a stranger's text through
-- Retell or Twilio, any later path): a number that was forgotten on request arrives opted
-- out. BEFORE INSERT sets opted_out_at and the suppression's source on the new row (an
-- upsert that finds its contact inserts nothing, and changes nothing here); AFTER INSERT
-- records why, in opt_outs and events. Only START from the number lifts it
-- (opt_in_contact, which also deletes the suppression).
create or replace function pgflow._contact_suppression() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_suppression pgflow.suppressions;
  v_at timestamptz := coalesce(new.created_at, pg_catalog.now());
begin
  if new.phone is null
     or (tg_when = 'BEFORE' and new.opted_out_at is not null)  -- opted out already
     or (tg_when = 'AFTER' and new.opted_out_at is null) then  -- not suppressed
    return new;
  end if;
  v_suppression := pgflow._suppression(new.phone);
  if v_suppression.phone_hash is null then
    return new;
  end if;
  if tg_when = 'BEFORE' then
    new.opted_out_at := v_at;
    new.opt_out_source := v_suppression.source;
    return new;
  end if;
  insert into pgflow.opt_outs (contact_id, action, source, text, occurred_at)
  values (new.id, 'opt_out', v_suppression.source,
          pg_catalog.format('suppressed: a contact with this number was forgotten on request (%s)',
                            v_suppression.source),
          new.opted_out_at);
  insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
  values (new.opted_out_at, 'contact', new.id, null, 'opted_out',
          'suppressed: a forgotten number');
  return null;
end;
$$;
revoke execute on function pgflow._contact_suppression() from public;

-- The keyed hash of a number (E.164): sha256 of pgflow.secrets 'phone_hash_key' (32 random
-- bytes no role may read) followed by the number. Without the key nobody can hash a guess
-- and compare, so the hash keeps a number recognisable to us alone. NULL when the key is
-- missing or the number is NULL.
create or replace function pgflow._phone_hash(p_phone text) returns bytea
language sql stable
set search_path = ''
as $$
  select pg_catalog.sha256(s.value || pg_catalog.convert_to(p_phone, 'UTF8'))
    from pgflow.secrets s
   where s.name = 'phone_hash_key'
$$;
revoke execute on function pgflow._phone_hash(text) from public;

-- The text with every whole-word, same-case occurrence of each string (a person's number,
-- names, email) replaced by '[erased]': what is left of a text that is ours but may quote
-- the person (a consent disclosure that names the lead, an erasure's reason). Strings
-- shorter than two characters are left alone.
create or replace function pgflow._redact(p_text text, p_strings text[]) returns text
language plpgsql immutable parallel safe
set search_path = ''
as $$
declare
  v_text text := p_text;
  v_string text;
begin
  foreach v_string in array coalesce(p_strings, '{}') loop
    if v_text is not null and pg_catalog.length(v_string) >= 2 then
      v_text := pg_catalog.regexp_replace(v_text,
        '(?<![[:alnum:]])'
        || pg_catalog.regexp_replace(v_string, '([^[:alnum:][:space:]])', '\\\1', 'g')
        || '(?![[:alnum:]])',
        '[erased]', 'g');
    end if;
  end loop;
  return v_text;
end;
$$;
revoke execute on function pgflow._redact(text,text[]) from public;

-- The state a lead gives (`state`, else `address.state`), as contacts.state keeps it: a
-- two-letter code in any case, uppercased (a US state or territory, a Canadian province;
-- a code we do not know is kept as given and gets the strictest rules); a full US state
-- or territory name, or a Canadian province's, in any case and spacing, as its code; 'ZZ'
-- (the strictest rules) for anything else; NULL when none is given. Never an error: a bad
-- state is no reason to refuse a lead.
create or replace function pgflow._state_code(p_lead jsonb) returns text
language sql immutable parallel safe
set search_path = ''
as $$
  select case
    when x.v is null then null
    when pg_catalog.jsonb_typeof(x.v) <> 'string' then 'ZZ'
    when y.t = '' then null
    when y.t ~ '^[A-Za-z]{2}$' then pg_catalog.upper(y.t)
    else coalesce((
      select n.code from (values
        ('AL', 'alabama'), ('AK', 'alaska'), ('AZ', 'arizona'), ('AR', 'arkansas'),
        ('CA', 'california'), ('CO', 'colorado'), ('CT', 'connecticut'), ('DE', 'delaware'),
        ('DC', 'district of columbia'), ('DC', 'washington dc'), ('FL', 'florida'),
        ('GA', 'georgia'), ('HI', 'hawaii'), ('ID', 'idaho'), ('IL', 'illinois'),
        ('IN', 'indiana'), ('IA', 'iowa'), ('KS', 'kansas'), ('KY', 'kentucky'),
        ('LA', 'louisiana'), ('ME', 'maine'), ('MD', 'maryland'), ('MA', 'massachusetts'),
        ('MI', 'michigan'), ('MN', 'minnesota'), ('MS', 'mississippi'), ('MO', 'missouri'),
        ('MT', 'montana'), ('NE', 'nebraska'), ('NV', 'nevada'), ('NH', 'new hampshire'),
        ('NJ', 'new jersey'), ('NM', 'new mexico'), ('NY', 'new york'),
        ('NC', 'north carolina'), ('ND', 'north dakota'), ('OH', 'ohio'), ('OK', 'oklahoma'),
        ('OR', 'oregon'), ('PA', 'pennsylvania'), ('RI', 'rhode island'),
        ('SC', 'south carolina'), ('SD', 'south dakota'), ('TN', 'tennessee'),
        ('TX', 'texas'), ('UT', 'utah'), ('VT', 'vermont'), ('VA', 'virginia'),
        ('WA', 'washington'), ('WV', 'west virginia'), ('WI', 'wisconsin'),
        ('WY', 'wyoming'), ('AS', 'american samoa'), ('GU', 'guam'),
        ('MP', 'northern mariana islands'), ('PR', 'puerto rico'),
        ('VI', 'us virgin islands'), ('VI', 'virgin islands'),
        ('AB', 'alberta'), ('BC', 'british columbia'), ('MB', 'manitoba'),
        ('NB', 'new brunswick'), ('NL', 'newfoundland and labrador'),
        ('NS', 'nova scotia'), ('NT', 'northwest territories'), ('NU', 'nunavut'),
        ('ON', 'ontario'), ('PE', 'prince edward island'), ('QC', 'quebec'),
        ('SK', 'saskatchewan'), ('YT', 'yukon')) as n(code, name)
       where n.name = pg_catalog.lower(y.t)), 'ZZ')
  end
  from (select coalesce(nullif(p_lead -> 'state', 'null'::jsonb),
                        case when pg_catalog.jsonb_typeof(p_lead -> 'address') = 'object'
                             then nullif(p_lead #> '{address,state}', 'null'::jsonb) end) as v) x,
       -- the text without dots and with single spaces: 'N.Y.' is NY, 'New  York' New York
       lateral (select pg_catalog.btrim(pg_catalog.regexp_replace(
                  pg_catalog.translate(x.v #>> '{}', '.', ''), '\s+', ' ', 'g')) as t) y
$$;
revoke execute on function pgflow._state_code(jsonb) from public;

-- The suppression of a forgotten number: its pgflow.suppressions row, or a row of NULLs
-- when the number is not suppressed.
create or replace function pgflow._suppression(p_phone text) returns pgflow.suppressions
language sql stable
set search_path = ''
as $$
  select * from pgflow.suppressions where phone_hash = pgflow._phone_hash(p_phone)
$$;
revoke execute on function pgflow._suppression(text) from public;

-- Proof of consent for a number (`pgflow contacts consent`): every contact the number has
-- had, oldest first: the one that has it now, and each one forgotten since (found by the
-- keyed hash its erasure kept: a forgotten contact keeps when and how it consented, and
-- the disclosure, for as long as consents are kept), each as _consent_record() gives it;
-- and whether the number is suppressed. Error PF002: the number never had a contact.
create or replace function pgflow.contact_consent(p_phone text) returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  v_hash bytea := pgflow._phone_hash(p_phone);
  v_records jsonb;
begin
  select pg_catalog.jsonb_agg(pgflow._consent_record(ct) order by ct.created_at, ct.id)
    into v_records
    from pgflow.contacts ct
   where ct.phone = p_phone
      or ct.id in (select e.contact_id from pgflow.erasures e where e.phone_hash = v_hash);
  if v_records is null then
    raise exception 'no contact has this number' using errcode = 'PF002';
  end if;
  return pg_catalog.jsonb_build_object(
    'phone', p_phone,
    'suppressed', exists (select 1 from pgflow.suppressions s where s.phone_hash = v_hash),
    'contacts', v_records);
end;
$$;
revoke execute on function pgflow.contact_consent(text) from public;
grant execute on function pgflow.contact_consent(text) to pgflow_operator;
grant execute on function pgflow.contact_consent(text) to pgflow_reader;

-- Erasure on request (`pgflow contacts forget`), in one transaction. The person's data goes
-- from every table: names, email, attributes, zone and state, the number; every text to and
-- from them ('[erased]' in place, the row kept); every free text on their rows (reasons,
-- errors, review notes, opt-out texts, the LLM's and Retell's summaries, events' reasons);
-- their consents' request, ip and user agent; their lead bodies; the provider webhooks and
-- the job tracebacks that carry their number, chats or ids. What stays: every row the
-- funnel counts, with its statuses, kinds and times (funnel() gives the same numbers);
-- when and how they consented with the disclosure text (ours, not theirs; any of their
-- identifiers in it redacted); the fact of each opt-out; and the number's keyed hash in
-- suppressions (source: their opt-out's, else 'erasure': an erasure request also means
-- never text again), so a new lead or text from the number arrives opted out.
-- Nothing is sent to the row again: it is opted out, its queued texts suppressed, its
-- drips stopped (a drip's stop is not in the funnel), a hold on it released, its Retell
-- chats ended, its escalation alerts resolved. Its live conversations keep their status (the
-- funnel counts them) and end by their timers like any opted-out contact's. Who asked and
-- why (redacted) go to erasures, with the counts of what was removed, and the audit log.
-- Errors: PF002 no contact has the number; PF003 no one named as asking.
create or replace function pgflow.forget_contact(
  p_phone text,
  p_requested_by text,
  p_reason text default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_actor text := pgflow._actor(p_requested_by);
  v_hash bytea := pgflow._phone_hash(p_phone);
  v_contact pgflow.contacts;
  v_keys text[];        -- what identifies the person anywhere: the number, its digits, email
  v_names text[];       -- v_keys and the names: redacted from texts of ours that quote them
  v_enrollments bigint[];
  v_conversations bigint[];
  v_messages bigint[];
  v_ids text[];         -- the conversations' ids, as our metadata and alerts have them
  v_digits text[];      -- the number's digits, to find it in a body that never parsed
  v_provider_ids text[];  -- chat ids and message SIDs of the transports
  v_source text;
  v_removed jsonb := '{}';
  v_n integer;
  v_erasure bigint;
  v_reason text;
  r record;
begin
  if v_hash is null then
    raise exception 'the phone hash key (pgflow.secrets phone_hash_key) is missing';
  end if;
  select * into v_contact from pgflow.contacts where phone = p_phone for update;
  if not found then
    raise exception 'no contact has this number' using errcode = 'PF002';
  end if;
  v_keys := pg_catalog.array_remove(array[
    p_phone, pg_catalog.ltrim(p_phone, '+'),
    case when p_phone ~ '^\+1[0-9]{10}$' then pg_catalog.substr(p_phone, 3) end,
    v_contact.email], null);
  v_names := v_keys || pg_catalog.array_remove(array[v_contact.first_name, v_contact.last_name],
                                               null);
  v_reason := pgflow._redact(nullif(pg_catalog.btrim(p_reason), ''), v_names);
  select coalesce(pg_catalog.array_agg(id), '{}') into v_enrollments
    from pgflow.enrollments where contact_id = v_contact.id;
  select coalesce(pg_catalog.array_agg(id), '{}') into v_conversations
    from pgflow.conversations where contact_id = v_contact.id;
  select coalesce(pg_catalog.array_agg(id), '{}') into v_messages
    from pgflow.messages where contact_id = v_contact.id;
  v_ids := v_conversations::text[];
  v_digits := pg_catalog.array_remove(array[
    pg_catalog.ltrim(p_phone, '+'),
    case when p_phone ~ '^\+1[0-9]{10}$' then pg_catalog.substr(p_phone, 3) end], null);
  select coalesce(pg_catalog.array_agg(distinct x.id), '{}') into v_provider_ids
    from (select cv.provider_chat_id as id from pgflow.conversations cv
           where cv.id = any (v_conversations)
          union all select m.chat_id from pgflow.messages m where m.id = any (v_messages)
          union all select m.provider_message_id from pgflow.messages m
           where m.id = any (v_messages)) x
   where x.id is not null;

  -- Texts: every message keeps its row, kind, status, segments and times.
  update pgflow.messages
     set body = '[erased]',
         delivery_error = case when delivery_error is not null then '[erased]' end
   where id = any (v_messages);
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('messages', v_n);
  update pgflow.message_attempts set error = '[erased]'
   where message_id = any (v_messages) and error is not null;
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('message_attempts', v_n);

  -- Free texts on their rows (a reason may quote the lead, an LLM's or Retell's summary may
  -- say anything): replaced, never emptied where the funnel counts a value (review_reason).
  update pgflow.conversations
     set outcome_reason = case when outcome_reason is not null then '[erased]' end,
         review_reason = case when review_reason is not null then '[erased]' end
   where id = any (v_conversations)
     and (outcome_reason is not null or review_reason is not null);
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('conversations', v_n);
  update pgflow.outcome_signals
     set reason = case when reason is not null then '[erased]' end,
         -- a hash of the transcript tells a guessed text apart: it goes too
         transcript_hash = case when source = 'llm' then 'erased:' || id else transcript_hash end
   where conversation_id = any (v_conversations);
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('outcome_signals', v_n);
  update pgflow.enrollments set stop_reason = '[erased]'
   where id = any (v_enrollments) and stop_reason is not null;
  update pgflow.opt_outs set text = '[erased]'
   where contact_id = v_contact.id and text is not null;
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('opt_out_texts', v_n);
  update pgflow.events set reason = '[erased]', details = null
   where ((entity = 'contact' and entity_id = v_contact.id)
          or (entity = 'enrollment' and entity_id = any (v_enrollments))
          or (entity = 'conversation' and entity_id = any (v_conversations))
          or (entity = 'message' and entity_id = any (v_messages)))
     and (reason is not null or details is not null);
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('events', v_n);
  update pgflow.alerts a
     set message = a.kind || ' (details erased)', details = '{"erased": true}'
   where a.kind in (select 'escalation:' || x from pg_catalog.unnest(v_conversations) x)
      or a.details ->> 'conversation_id' = any (v_ids)
      or exists (select 1 from pg_catalog.unnest(v_keys) k
                  where pg_catalog.strpos(a.message || a.details::text, k) > 0);
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('alerts', v_n);
  update pgflow.audit_log l
     set detail = case
       when exists (select 1 from pg_catalog.unnest(v_names) k
                     where pg_catalog.strpos(l.detail::text, k) > 0) then '{"erased": true}'
       else l.detail || '{"reason": "[erased]"}' end
   where (l.contact_id = v_contact.id or l.conversation_id = any (v_conversations))
     and (l.detail ? 'reason'
          or exists (select 1 from pg_catalog.unnest(v_names) k
                      where pg_catalog.strpos(l.detail::text, k) > 0));
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('audit_log', v_n);

  -- Consent: when, how and the disclosure stay (proof, and not the person's words); what
  -- came from the person's browser goes.
  update pgflow.consents
     set request = null, ip = null, user_agent = null,
         disclosure = pgflow._redact(disclosure, v_names),
         source = pgflow._redact(source, v_names)
   where contact_id = v_contact.id;
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('consents', v_n);

  -- Lead bodies: theirs, and refused ones that carry their number or email.
  update pgflow.lead_events l
     set payload = '{"erased": true}', raw_body = null, external_id = null,
         error_detail = case when l.error_detail is not null then '[erased]' end
   where l.contact_id = v_contact.id
      or l.enrollment_id = any (v_enrollments)
      or pgflow._normalize_phone(l.payload ->> 'phone') = p_phone
      or exists (select 1 from pg_catalog.unnest(v_keys) k
                  where pg_catalog.strpos(l.payload::text, k) > 0
                     or pg_catalog.strpos(l.raw_body, k) > 0)
      or (l.raw_body is not null
          and exists (select 1 from pg_catalog.unnest(v_digits) k
                       where pg_catalog.strpos(
                               pg_catalog.regexp_replace(l.raw_body, '\D', '', 'g'), k) > 0));
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('lead_events', v_n);

  -- Provider webhooks: by our ids in their metadata, their chat ids and SIDs, their number.
  update pgflow.webhook_deliveries d
     set payload = '{"erased": true}', response = null, error = null
   where d.payload #>> '{chat,metadata,pgflow_conversation_id}' = any (v_ids)
      or d.response #>> '{chat_inbound,metadata,pgflow_contact_id}' = v_contact.id::text
      or d.payload #>> '{chat,chat_id}' = any (v_provider_ids)
      or d.payload #>> '{chat_inbound,chat_id}' = any (v_provider_ids)
      or d.payload ->> 'MessageSid' = any (v_provider_ids)
      or (d.provider = 'events'
          and (d.payload ->> 'conversation_id' = any (v_ids)
               or pgflow._normalize_phone(d.payload ->> 'phone') = p_phone))
      or exists (select 1 from pg_catalog.unnest(v_keys) k
                  where pg_catalog.strpos(d.payload::text, k) > 0
                     or pg_catalog.strpos(d.response::text, k) > 0);
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('webhook_deliveries', v_n);
  update pgflow.pgqueuer_log q set traceback = null
   where q.traceback is not null
     and exists (select 1 from pg_catalog.unnest(v_keys) k
                  where pg_catalog.strpos(q.traceback::text, k) > 0);
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('job_log', v_n);

  -- Nothing is sent to the row again.
  perform pgflow._set_reason('contact forgotten');
  update pgflow.messages
     set delivery_status = 'suppressed', delivery_error = 'contact forgotten', updated_at = v_now
   where id = any (v_messages) and direction = 'outbound'
     and delivery_status in ('pending', 'queued');
  get diagnostics v_n = row_count;
  v_removed := v_removed || pg_catalog.jsonb_build_object('messages_suppressed', v_n);
  v_n := 0;
  for r in select id from pgflow.enrollments
            where id = any (v_enrollments) and status in ('active', 'paused') order by id
  loop
    perform pgflow.stop_enrollment(r.id, 'the contact was forgotten on request', v_now);
    v_n := v_n + 1;
  end loop;
  v_removed := v_removed || pg_catalog.jsonb_build_object('enrollments_stopped', v_n);
  perform pgflow._end_chats(v_conversations);
  for r in select a.kind from pgflow.alerts a
            where a.resolved_at is null
              and a.kind in (select 'escalation:' || x from pg_catalog.unnest(v_conversations) x)
  loop
    perform pgflow.resolve_alert(r.kind, v_now);
  end loop;

  -- The fact of the opt-out stays, by the keyed hash of the number.
  v_source := coalesce(v_contact.opt_out_source, 'erasure');
  if v_source not in ('keyword', 'phrase', 'llm', 'operator', 'import', 'webhook', 'carrier') then
    v_source := 'erasure';
  end if;
  if v_contact.opted_out_at is null then
    insert into pgflow.opt_outs (contact_id, action, source, text, occurred_at)
    values (v_contact.id, 'opt_out', 'erasure', 'forgotten on request', v_now);
    insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
    values (v_now, 'contact', v_contact.id, 'subscribed', 'opted_out', 'forgotten on request');
  end if;
  insert into pgflow.suppressions (phone_hash, suppressed_at, source, forgotten_at)
  values (v_hash, coalesce(v_contact.opted_out_at, v_now), v_source, v_now)
  on conflict (phone_hash) do update set forgotten_at = excluded.forgotten_at;

  update pgflow.contacts
     set phone = null, first_name = null, last_name = null, email = null, attributes = '{}',
         timezone = null, state = null, held_at = null, held_by = null,
         consent_text = pgflow._redact(consent_text, v_names),
         consent_source = pgflow._redact(consent_source, v_names),
         opted_out_at = coalesce(opted_out_at, v_now),
         opt_out_source = coalesce(opt_out_source, 'erasure'),
         forgotten_at = v_now, updated_at = v_now
   where id = v_contact.id;

  insert into pgflow.erasures (contact_id, requested_by, reason, erased_at, removed, phone_hash)
  values (v_contact.id, v_actor, v_reason, v_now, v_removed, v_hash)
  returning id into v_erasure;
  perform pgflow._audit(v_actor, null, 'forget', null, v_contact.id,
    pg_catalog.jsonb_build_object('erasure_id', v_erasure, 'reason', v_reason), v_now);
  return pg_catalog.jsonb_build_object(
    'result', 'forgotten', 'contact_id', v_contact.id, 'erasure_id', v_erasure,
    'forgotten_at', v_now, 'suppression_source', v_source, 'removed', v_removed);
end;
$$;
revoke execute on function pgflow.forget_contact(text,text,text,timestamp with time zone) from public;
grant execute on function pgflow.forget_contact(text,text,text,timestamp with time zone) to pgflow_operator;

-- The conversation opens on the contact's sticky sender of the campaign's pool
-- (pgflow.sender_for), not always on from_number; a refused lead's
-- identifiers are kept short enough to index (pgflow._short_key); and a contact's first
-- recorded consent is kept (a later lead cannot rewrite the evidence). One call per lead.
-- Records it in lead_events whatever happens; upserts the contact; enrolls idempotently;
-- opens the conversation; sends step 1 at once when it is due and the window is open. p_edge carries what the HTTP edge derived: {"phone": E.164 or null,
-- "phone_error": "...", "timezone": inferred IANA zone}. Returns
-- {contact_id, enrollment_id, status} with status created | already_enrolled | suppressed,
-- or {status: "rejected", error, detail}. Every accepted lead with a `consent` leaves a
-- pgflow.consents row (when, source, the disclosure, ip and user agent, the whole request,
-- its lead event): the proof of consent, kept when the contact's own record is the first
-- one's. The lead's `state` (or `address.state`) is read by _state_code() and never
-- refuses it. A number forgotten on request arrives opted out (the contacts trigger,
-- _contact_suppression) and the lead is `suppressed`.
create or replace function pgflow.ingest_lead(
  payload jsonb, p_now timestamptz default null, p_edge jsonb default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_edge jsonb := coalesce(p_edge, '{}'::jsonb);
  v_campaign pgflow.campaigns;
  v_first pgflow.campaign_steps;
  v_refusal jsonb;
  v_phone text;
  v_tz text;
  v_error text;
  v_detail text;
  v_field text;
  v_contact pgflow.contacts;
  v_enrollment bigint;
  v_status text;
  v_event bigint;
  v_consent jsonb;
begin
  -- Validation, in the order a person would fix things.
  if payload is null or pg_catalog.jsonb_typeof(payload) <> 'object' then
    v_error := 'invalid_payload'; v_detail := 'the body must be a JSON object';
  elsif pg_catalog.jsonb_typeof(payload -> 'campaign') is distinct from 'string'
        or pg_catalog.btrim(payload ->> 'campaign') = '' then
    v_error := 'invalid_payload'; v_detail := 'campaign (a slug string) is required';
  elsif pg_catalog.jsonb_typeof(payload -> 'phone') is distinct from 'string' then
    v_error := 'invalid_payload'; v_detail := 'phone (a string) is required';
  end if;
  if v_error is null then
    foreach v_field in array array['first_name', 'last_name', 'email', 'timezone', 'source',
                                   'external_id']
    loop
      if payload ? v_field and pg_catalog.jsonb_typeof(payload -> v_field) not in ('string', 'null') then
        v_error := 'invalid_payload'; v_detail := v_field || ' must be a string';
        exit;
      elsif pg_catalog.length(payload ->> v_field) > 200 then
        v_error := 'invalid_payload'; v_detail := v_field || ' is longer than 200 characters';
        exit;
      end if;
    end loop;
  end if;
  if v_error is null and payload ? 'attributes'
     and pg_catalog.jsonb_typeof(payload -> 'attributes') not in ('object', 'null') then
    v_error := 'invalid_payload'; v_detail := 'attributes must be an object';
  end if;
  if v_error is null and payload ? 'consent'
     and pg_catalog.jsonb_typeof(payload -> 'consent') not in ('object', 'null') then
    v_error := 'invalid_payload'; v_detail := 'consent must be an object';
  end if;
  if v_error is null and pg_catalog.jsonb_typeof(payload -> 'consent') = 'object' then
    if pg_catalog.jsonb_typeof(payload #> '{consent,at}') not in ('string', 'null')
       or not pgflow._is_timestamp(payload #>> '{consent,at}') then
      v_error := 'invalid_payload';
      v_detail := 'consent.at must be an ISO 8601 time, e.g. 2026-11-23T14:59:00Z';
    elsif pg_catalog.jsonb_typeof(payload #> '{consent,text}') not in ('string', 'null')
       or pg_catalog.jsonb_typeof(payload #> '{consent,source}') not in ('string', 'null') then
      v_error := 'invalid_payload'; v_detail := 'consent.text and consent.source must be strings';
    elsif pg_catalog.jsonb_typeof(payload #> '{consent,ip}') not in ('string', 'null')
       or pg_catalog.length(payload #>> '{consent,ip}') > 64 then
      v_error := 'invalid_payload';
      v_detail := 'consent.ip must be a string of at most 64 characters';
    elsif pg_catalog.jsonb_typeof(payload #> '{consent,user_agent}') not in ('string', 'null')
       or pg_catalog.length(payload #>> '{consent,user_agent}') > 512 then
      v_error := 'invalid_payload';
      v_detail := 'consent.user_agent must be a string of at most 512 characters';
    end if;
  end if;
  if v_error is null then
    v_refusal := pgflow.campaign_refusal(payload ->> 'campaign');
    if v_refusal is not null then
      v_error := v_refusal ->> 'error';
      v_detail := v_refusal ->> 'detail';
    else
      select * into v_campaign from pgflow.campaigns where slug = payload ->> 'campaign';
      select * into v_first from pgflow.campaign_steps
       where campaign_id = v_campaign.id order by position limit 1;
    end if;
  end if;
  if v_error is null then
    v_phone := case when v_edge ? 'phone' then v_edge ->> 'phone'
                    else pgflow._normalize_phone(payload ->> 'phone') end;
    if v_phone is null or v_phone !~ '^\+[1-9][0-9]{6,14}$' then
      v_error := 'invalid_phone';
      v_detail := coalesce(v_edge ->> 'phone_error', 'not a valid phone number');
    end if;
  end if;
  if v_error is null and nullif(payload ->> 'email', '') is not null
     and payload ->> 'email' !~ '^[^@\s]+@[^@\s]+$' then
    v_error := 'invalid_email'; v_detail := 'email is not an address';
  end if;
  if v_error is null then
    v_tz := nullif(pg_catalog.btrim(payload ->> 'timezone'), '');
    if v_tz is not null and not pgflow._is_time_zone(v_tz) then
      v_error := 'invalid_timezone';
      v_detail := pg_catalog.format('unknown time zone %L (use an IANA name like America/Chicago)', v_tz);
    end if;
  end if;
  if v_error is not null then
    -- a refused lead's fields may be anything: kept short enough to index
    insert into pgflow.lead_events
      (received_at, source, external_id, campaign_slug, payload, result, error_code, error_detail)
    values (v_now, pgflow._short_key(payload ->> 'source'),
            pgflow._short_key(payload ->> 'external_id'),
            pgflow._short_key(payload ->> 'campaign'), payload, 'rejected', v_error, v_detail)
    returning id into v_event;
    return pg_catalog.jsonb_build_object('status', 'rejected', 'error', v_error,
                                         'detail', v_detail, 'lead_event_id', v_event);
  end if;

  v_consent := nullif(payload -> 'consent', 'null'::jsonb);
  insert into pgflow.contacts as c
    (phone, first_name, last_name, email, timezone, state, attributes,
     consent_at, consent_source, consent_text, created_at, updated_at)
  values (
    v_phone,
    nullif(pg_catalog.btrim(payload ->> 'first_name'), ''),
    nullif(pg_catalog.btrim(payload ->> 'last_name'), ''),
    nullif(pg_catalog.btrim(payload ->> 'email'), ''),
    coalesce(v_tz, case when pgflow._is_time_zone(v_edge ->> 'timezone') then v_edge ->> 'timezone' end),
    pgflow._state_code(payload),
    coalesce(nullif(payload -> 'attributes', 'null'::jsonb), '{}'::jsonb),
    case when v_consent is not null
         then coalesce((v_consent ->> 'at')::timestamptz, v_now) end,
    coalesce(v_consent ->> 'source', case when v_consent is not null then payload ->> 'source' end),
    v_consent ->> 'text',
    v_now, v_now)
  on conflict (phone) do update set
    first_name = coalesce(excluded.first_name, c.first_name),
    last_name = coalesce(excluded.last_name, c.last_name),
    email = coalesce(excluded.email, c.email),
    -- an explicit zone wins; an inferred one only fills a gap
    timezone = coalesce(v_tz, c.timezone, excluded.timezone),
    state = coalesce(excluded.state, c.state),
    attributes = c.attributes || excluded.attributes,
    -- the first consent recorded is the evidence: a later lead cannot rewrite it (each
    -- lead's own consent stays in its lead_events payload)
    consent_at = coalesce(c.consent_at, excluded.consent_at),
    consent_source = case when c.consent_at is null then excluded.consent_source
                          else c.consent_source end,
    consent_text = case when c.consent_at is null then excluded.consent_text
                        else c.consent_text end,
    updated_at = excluded.updated_at
  returning * into v_contact;

  if v_contact.opted_out_at is not null then
    v_status := 'suppressed';
    select id into v_enrollment from pgflow.enrollments
     where contact_id = v_contact.id and campaign_id = v_campaign.id;
  else
    perform pgflow._set_reason('lead ' || coalesce(payload ->> 'source', 'webhook'));
    insert into pgflow.enrollments
      (contact_id, campaign_id, status, next_step, next_message_at, enrolled_at, updated_at)
    values (v_contact.id, v_campaign.id, 'active', v_first.position, v_now + v_first.delay,
            v_now, v_now)
    on conflict (contact_id, campaign_id) do nothing
    returning id into v_enrollment;
    if v_enrollment is null then
      v_status := 'already_enrolled';
      select id into v_enrollment from pgflow.enrollments
       where contact_id = v_contact.id and campaign_id = v_campaign.id;
    else
      v_status := 'created';
      insert into pgflow.conversations
        (contact_id, campaign_id, agent_id, enrollment_id, from_number, created_at, updated_at)
      values (v_contact.id, v_campaign.id, v_campaign.agent_id, v_enrollment,
              pgflow.sender_for(v_contact.id, v_campaign.id), v_now, v_now)
      on conflict (contact_id, from_number) where status <> 'ended' do nothing;
      if v_first.delay = interval '0' then
        -- Speed to lead: step 1 now, in this transaction, not at the next tick.
        perform pgflow._dispatch_steps(array[v_enrollment], v_now, 10);
      end if;
    end if;
  end if;

  insert into pgflow.lead_events
    (received_at, source, external_id, campaign_slug, payload, result, contact_id, enrollment_id)
  values (v_now, payload ->> 'source', payload ->> 'external_id', v_campaign.slug, payload,
          v_status, v_contact.id, v_enrollment)
  returning id into v_event;
  if v_consent is not null then
    insert into pgflow.consents
      (contact_id, given_at, source, disclosure, ip, user_agent, request, lead_event_id,
       recorded_at)
    values (v_contact.id, coalesce((v_consent ->> 'at')::timestamptz, v_now),
            coalesce(v_consent ->> 'source', payload ->> 'source'), v_consent ->> 'text',
            nullif(pg_catalog.btrim(v_consent ->> 'ip'), ''),
            nullif(pg_catalog.btrim(v_consent ->> 'user_agent'), ''), payload, v_event, v_now);
  end if;
  return pg_catalog.jsonb_build_object('contact_id', v_contact.id,
                                       'enrollment_id', v_enrollment, 'status', v_status);
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

-- Record a Retell chat object (from any chat webhook, or from GET /get-chat before a drip
-- step): each text once, in order, on its conversation; the chat's state; and what each
-- new lead text sets off (pgflow._on_inbound). The chat's first agent message is the
-- message that started it (metadata pgflow_message_id): it is linked, never recorded
-- twice. Safe to call any number of times with any subset of the transcript, in any order.
-- A chat of a contact forgotten on request records nothing ({result: forgotten}): a late
-- transcript must not bring the texts back.
create or replace function pgflow.record_chat(
  p_chat jsonb,
  p_event text default 'get_chat',
  p_engine_replies boolean default false,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
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
  if v_contact.forgotten_at is not null then
    return pg_catalog.jsonb_build_object('result', 'forgotten');
  end if;

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
         where id = v_started and contact_id = v_contact.id
           -- our own id was set for a post into a live chat that ended first (409)
           and (chat_message_id is null or chat_message_id = 'pgflow-' || id)
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

-- One Retell webhook, one call: recorded in webhook_deliveries under a key made of its
-- event, chat and content (Retell's retries are the same delivery: they change nothing
-- and get the first answer back), then handled by its event. Unknown events and chats are
-- recorded and ignored. p_engine_replies: the transport takes our text (the sandbox), so
-- the engine writes the agent's replies. A chat of a forgotten contact keeps no payload.
create or replace function pgflow.record_retell_event(
  p_payload jsonb, p_engine_replies boolean default false, p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
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
    v_result := pgflow._answer_inbound(p_payload, p_engine_replies, v_now);
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
     set processed_at = v_now, result = v_result ->> 'result', response = v_result -> 'response',
         payload = case when v_result ->> 'result' = 'forgotten' then '{"erased": true}'
                        else payload end
   where id = v_delivery;
  return v_result || pg_catalog.jsonb_build_object('delivery_id', v_delivery);
end;
$$;

-- One text from a lead through Twilio (POST /webhooks/twilio/inbound, its signature
-- checked by the web layer), in one call: stored once per MessageSid, then the same path
-- as any reply (pgflow._on_inbound: opt-out first, stop-on-reply, a person's hold, HELP,
-- the agent's answer written by the engine). Twilio answers STOP, START and HELP itself
-- (its OptOutType field, or one of its default keywords alone): that opt-out is recorded
-- with source `carrier` and no second confirmation. A STOP from a number we never texted
-- is still recorded (no later import may text it). A number forgotten on request arrives
-- opted out (the contacts trigger): only START lifts it, on any line, answered or not.
-- {result: recorded | duplicate | invalid | unknown_number_ignored | ignored_opted_out,
-- effect?, conversation_id?}.
create or replace function pgflow.record_twilio_inbound(p_payload jsonb, p_now timestamptz default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_sid text := p_payload ->> 'MessageSid';
  v_lead text := p_payload ->> 'From';
  v_line text := p_payload ->> 'To';
  v_text text := coalesce(p_payload ->> 'Body', '');
  v_word text := pg_catalog.upper(pg_catalog.btrim(v_text, E' \t\r\n.!'));
  v_carrier text;
  v_intent text := (select i.intent from pgflow.inbound_intent(v_text) i);
  v_delivery bigint;
  v_contact pgflow.contacts;
  v_conversation pgflow.conversations;
  v_message bigint;
  v_result jsonb;
begin
  if v_sid is null or v_sid !~ '^(SM|MM)[0-9a-f]{32}$'
     or v_lead is null or v_lead !~ '^\+[1-9][0-9]{6,14}$'
     or v_line is null or v_line !~ '^\+[1-9][0-9]{6,14}$' then
    return '{"result": "invalid", "detail": "MessageSid, and From and To as E.164 numbers, are needed"}';
  end if;
  v_carrier := case
    when pg_catalog.upper(p_payload ->> 'OptOutType') in ('STOP', 'START', 'HELP')
      then pg_catalog.upper(p_payload ->> 'OptOutType')
    when v_word in ('STOP', 'STOPALL', 'UNSUBSCRIBE', 'CANCEL', 'END', 'QUIT') then 'STOP'
    when v_word in ('START', 'UNSTOP', 'YES') then 'START'
    when v_word in ('HELP', 'INFO') then 'HELP' end;
  insert into pgflow.webhook_deliveries (provider, delivery_key, event_type, payload, received_at)
  values ('twilio', 'inbound:' || v_sid, 'inbound', p_payload, v_now)
  on conflict (provider, delivery_key) do nothing
  returning id into v_delivery;
  if v_delivery is null then
    return '{"result": "duplicate"}';
  end if;

  select * into v_contact from pgflow.contacts where phone = v_lead for update;
  -- a stranger's contact is made for a STOP, for a line that answers strangers, and for
  -- START from a number forgotten before (its contact arrives opted out: START lifts it)
  if v_contact.id is null and (v_carrier = 'STOP' or v_intent = 'opt_out'
       or exists (select 1 from pgflow.sending_numbers n
                   where n.number = v_line and n.inbound_agent_id is not null)
       or ((v_carrier = 'START' or v_intent = 'opt_in')
           and (pgflow._suppression(v_lead)).phone_hash is not null)) then
    insert into pgflow.contacts (phone, created_at, updated_at)
    values (v_lead, v_now, v_now)
    on conflict (phone) do update set updated_at = excluded.updated_at
    returning * into v_contact;
  end if;
  if v_contact.id is null then
    v_result := '{"result": "unknown_number_ignored"}';
  elsif v_contact.opted_out_at is not null and v_intent <> 'opt_in'
        and v_carrier is distinct from 'START' then
    v_result := '{"result": "ignored_opted_out"}';
  else
    v_conversation := pgflow._inbound_conversation(v_contact.id, v_line, v_now);
    if v_conversation.id is null then  -- no agent anywhere: still honour a STOP or a START
      if v_carrier = 'STOP' or v_intent = 'opt_out' then
        perform pgflow.opt_out_contact(v_contact.id,
          case when v_carrier = 'STOP' then 'carrier' else 'keyword' end, null, v_text, v_now);
        v_result := '{"result": "recorded", "effect": "opt_out"}';
      elsif v_contact.opted_out_at is not null then  -- START (others were ignored above)
        perform pgflow.opt_in_contact(v_contact.id,
          case when v_carrier = 'START' then 'carrier' else 'keyword' end, null, v_text, v_now);
        v_result := '{"result": "recorded", "effect": "opt_in"}';
      else
        v_result := '{"result": "unknown_number_ignored"}';
      end if;
    else
      perform pgflow._set_reason('lead text (Twilio)');
      insert into pgflow.messages
        (conversation_id, contact_id, direction, kind, body, delivery_status, segments,
         encoding, dedupe_key, provider_message_id, transport, created_at, updated_at)
      values (v_conversation.id, v_contact.id, 'inbound', 'lead', v_text, 'received',
              pgflow.sms_segments(v_text), pgflow.sms_encoding(v_text),
              'twilio:' || v_sid, v_sid, 'twilio', v_now, v_now)
      on conflict (dedupe_key) do nothing
      returning id into v_message;
      v_result := pg_catalog.jsonb_build_object('result', 'recorded',
        'conversation_id', v_conversation.id, 'message_id', v_message,
        'effect', case when v_message is not null
                       then pgflow._on_inbound(v_message, true, v_now, v_carrier) end);
    end if;
  end if;
  update pgflow.webhook_deliveries
     set processed_at = v_now, result = v_result ->> 'result', response = v_result
   where id = v_delivery;
  return v_result;
end;
$$;

-- One Twilio status callback (POST /webhooks/twilio/status?message_id=N, its signature
-- checked by the web layer): stored once per (MessageSid, status) in webhook_deliveries;
-- applied only when it moves the message forward (queued < sending < sent < delivered |
-- undelivered | failed): a late or repeated callback changes nothing. {result: applied |
-- stale | duplicate | unknown_message | ignored | invalid, ...}. The callback of a text to
-- a contact forgotten on request is applied but its payload (their number) is not kept.
create or replace function pgflow.record_twilio_status(
  p_message_id bigint, p_payload jsonb, p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_sid text := p_payload ->> 'MessageSid';
  v_status text := pg_catalog.lower(p_payload ->> 'MessageStatus');
  v_code integer;
  v_delivery bigint;
  m pgflow.messages;
  v_result jsonb;
begin
  if v_sid is null or v_sid !~ '^(SM|MM)[0-9a-f]{32}$' or v_status is null then
    return '{"result": "invalid", "detail": "MessageSid and MessageStatus are needed"}';
  end if;
  if (p_payload ->> 'ErrorCode') ~ '^[0-9]{1,9}$' then
    v_code := (p_payload ->> 'ErrorCode')::integer;
  end if;
  insert into pgflow.webhook_deliveries (provider, delivery_key, event_type, payload, received_at)
  values ('twilio', v_sid || ':' || v_status, 'status', p_payload, v_now)
  on conflict (provider, delivery_key) do nothing
  returning id into v_delivery;
  if v_delivery is null then
    return '{"result": "duplicate"}';
  end if;
  select * into m from pgflow.messages
   where id = p_message_id and direction = 'outbound' for update;
  -- ours: the id Twilio gave our send, or (its answer not recorded yet) a text being sent
  if not found or (m.provider_message_id is not null and m.provider_message_id <> v_sid)
     or (m.provider_message_id is null and m.delivery_status not in ('sending', 'sent')) then
    v_result := '{"result": "unknown_message"}';
  elsif pgflow._provider_rank(v_status) is null then
    v_result := '{"result": "ignored"}';
  elsif pgflow._provider_rank(v_status) <= coalesce(pgflow._provider_rank(m.provider_status), -1)
  then
    v_result := pg_catalog.jsonb_build_object('result', 'stale', 'status', m.provider_status);
  else
    update pgflow.messages
       set provider_message_id = v_sid, provider_status = v_status,
           carrier_error_code = coalesce(v_code, carrier_error_code), updated_at = v_now
     where id = m.id;
    v_result := pg_catalog.jsonb_build_object('result', 'applied', 'status', v_status,
      'effect', pgflow._apply_provider_status(m.id, v_now));
  end if;
  update pgflow.webhook_deliveries
     set processed_at = v_now, result = v_result ->> 'result', response = v_result,
         payload = case when exists (select 1 from pgflow.contacts ct
                                      where ct.id = m.contact_id and ct.forgotten_at is not null)
                        then '{"erased": true}' else payload end
   where id = v_delivery;
  return v_result || pg_catalog.jsonb_build_object('message_id', p_message_id);
end;
$$;
