-- Retell: its webhooks and chat objects, each text recorded once and in order, chats matched to conversations.
-- The current definition of each function and view of this area (sql/README.md: how to
-- change one). Grants: roles.sql.

-- The text messages of a Retell chat object, in order: `message_with_tool_calls` entries
-- whose role is agent or user (tool calls, node and state transitions are not messages),
-- or, without that list, the `transcript` string ("Agent: ...\nUser: ..."). Each has a key:
-- An identifier from outside as a key we can index: itself up to 200 characters, else its
-- md5 (a btree entry has a size limit; a longer id is no id of Retell's or a CRM's).
create or replace function pgflow._short_key(p_id text) returns text
language sql immutable parallel safe
set search_path = ''
as $$
  select case when pg_catalog.length(p_id) <= 200 then p_id else 'md5:' || pg_catalog.md5(p_id) end
$$;

-- Retell's message_id, else <chat_id>:<position among the texts>.
create or replace function pgflow._chat_items(p_chat jsonb)
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
create or replace function pgflow._chat_conversation(p_chat jsonb) returns pgflow.conversations
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
create or replace function pgflow._live_conversation(p_ended pgflow.conversations, p_now timestamptz)
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

-- The dynamic variables every chat carries (Retell sends a missing one literally, so each
-- is present and non-empty): the agent's prompt, the lead's context, the first message.
create or replace function pgflow._agent_variables(
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
