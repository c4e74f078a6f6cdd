-- Privacy: proof of consent, erasure on request, and the keyed-hash suppression that keeps a forgotten number from being texted again.
-- The current definition of each function and view of this area (sql/README.md: how to
-- change one). Grants: roles.sql.

-- The keyed hash of a number (E.164): sha256 of pgflow.secrets 'phone_hash_key' (32 random
-- bytes no role may read) followed by the number. Without the key nobody can hash a guess
-- and compare, so the hash keeps a number recognisable to us alone. NULL when the key is
-- missing or the number is NULL.
create or replace function pgflow._phone_hash(p_phone text) returns bytea
language plpgsql stable
set search_path = ''
as $$
begin
  return (select pg_catalog.sha256(s.value || pg_catalog.convert_to(p_phone, 'UTF8'))
            from pgflow.secrets s
           where s.name = 'phone_hash_key');
end;
$$;

-- The suppression of a forgotten number: its pgflow.suppressions row, or a row of NULLs
-- when the number is not suppressed.
create or replace function pgflow._suppression(p_phone text) returns pgflow.suppressions
language plpgsql stable
set search_path = ''
as $$
declare
  v_row pgflow.suppressions;
begin
  select * into v_row from pgflow.suppressions where phone_hash = pgflow._phone_hash(p_phone);
  return v_row;
end;
$$;

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
