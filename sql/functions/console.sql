-- The console: a person's hold on a lead (take over, reply, hand back, settle), the audit
-- trail, console users and their sessions, and the reads behind the console's pages.
-- The current definition of each function and view of this area (sql/README.md: how to
-- change one). Grants: roles.sql.

-- One line of the audit trail: who did what, when, on which conversation.
create or replace function pgflow._audit(
  p_actor text, p_user_id bigint, p_action text, p_conversation_id bigint,
  p_contact_id bigint, p_detail jsonb, p_now timestamptz
) returns bigint
language sql
set search_path = ''
as $$
  insert into pgflow.audit_log
    (occurred_at, actor, user_id, action, conversation_id, contact_id, detail)
  values (p_now, p_actor, p_user_id, p_action, p_conversation_id, p_contact_id,
          pg_catalog.jsonb_strip_nulls(coalesce(p_detail, '{}')))
  returning id
$$;

-- Who acts must be named (a console user's email, or `cli:<os user>`).
create or replace function pgflow._actor(p_actor text) returns text
language plpgsql immutable
set search_path = ''
as $$
begin
  if coalesce(pg_catalog.btrim(p_actor), '') = '' then
    raise exception 'the person acting must be named' using errcode = 'PF003';
  end if;
  return pg_catalog.left(pg_catalog.btrim(p_actor), 254);
end;
$$;

-- The contact's live conversation on the line of this one, else this one.
create or replace function pgflow._current_conversation(p_conversation pgflow.conversations)
returns pgflow.conversations
language sql stable
set search_path = ''
as $$
  select coalesce(
    (select cv from pgflow.conversations cv
      where cv.contact_id = p_conversation.contact_id
        and cv.from_number = p_conversation.from_number and cv.status <> 'ended'),
    p_conversation)
$$;

-- The hold itself (sql/STATE_MACHINES.md): held_at set (and held_by, when a person is
-- named), the move written to events when it changes anything, every active drip of the
-- lead paused and its live chats ended, so neither a drip step nor the provider's own AI
-- reaches the lead. Used by take_over (a person) and _escalate (waiting for a person).
create or replace function pgflow._hold(
  p_contact pgflow.contacts, p_held_by text, p_reason text, p_pause_reason text,
  p_now timestamptz
) returns void
language plpgsql
set search_path = ''
as $$
declare
  r record;
begin
  if p_contact.held_at is null
     or (p_held_by is not null and p_contact.held_by is distinct from p_held_by) then
    update pgflow.contacts
       set held_at = coalesce(held_at, p_now), held_by = coalesce(p_held_by, held_by),
           updated_at = p_now
     where id = p_contact.id;
    insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
    values (p_now, 'contact', p_contact.id,
            case when p_contact.held_at is null then 'with_agent' else 'held' end, 'held',
            p_reason);
  end if;
  for r in select id from pgflow.enrollments
            where contact_id = p_contact.id and status = 'active' order by id
  loop
    perform pgflow.pause_enrollment(r.id, p_pause_reason, p_now);
  end loop;
  perform pgflow._end_chats(array(select id from pgflow.conversations
                                   where contact_id = p_contact.id and status <> 'ended'));
end;
$$;

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

-- A person gives a conversation its outcome (pgflow.set_outcome, source human: nothing
-- overwrites it, the review is cleared), written to the audit trail.
create or replace function pgflow.settle(
  p_conversation_id bigint,
  p_status text,
  p_reason text,
  p_actor text,
  p_user_id bigint default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_actor text := pgflow._actor(p_actor);
  v_before pgflow.conversations;
  v_result jsonb;
begin
  if p_status is null or p_status not in
     ('success', 'qualified', 'unqualified', 'escalated', 'no_response', 'discarded') then
    raise exception 'unknown outcome %', coalesce(p_status, '(none)') using errcode = 'PF003';
  end if;
  select * into v_before from pgflow.conversations where id = p_conversation_id;
  if not found then
    raise exception 'conversation % does not exist', p_conversation_id using errcode = 'PF002';
  end if;
  v_result := pgflow.set_outcome(p_conversation_id, p_status,
    coalesce(nullif(pg_catalog.btrim(p_reason), ''), 'set by ' || v_actor), 'human', v_now);
  perform pgflow._audit(v_actor, p_user_id, 'set_outcome', p_conversation_id,
    v_before.contact_id, pg_catalog.jsonb_build_object('status', p_status,
      'before', v_before.conversion_status, 'result', v_result ->> 'result',
      'reason', nullif(pg_catalog.btrim(p_reason), '')), v_now);
  return v_result;
end;
$$;

-- Dead letters re-queued or discarded by a person: pgflow.requeue_dead_letters or
-- pgflow.discard_dead_letters, each message done written to the audit trail.
create or replace function pgflow.settle_dead_letters(
  p_action text,
  p_ids bigint[],
  p_actor text,
  p_user_id bigint default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_actor text := pgflow._actor(p_actor);
  v_results jsonb;
  r record;
begin
  if p_action = 'requeue' then
    v_results := pgflow.requeue_dead_letters(p_ids, null, v_now);
  elsif p_action = 'discard' then
    v_results := pgflow.discard_dead_letters(p_ids, v_now);
  else
    raise exception 'unknown dead-letter action %', coalesce(p_action, '(none)')
      using errcode = 'PF003';
  end if;
  for r in select (x ->> 'id')::bigint as id, x ->> 'result' as result
             from pg_catalog.jsonb_array_elements(v_results) x
            where x ->> 'result' in ('requeued', 'discarded')
  loop
    perform pgflow._audit(v_actor, p_user_id, p_action, m.conversation_id, m.contact_id,
                          pg_catalog.jsonb_build_object('message_id', r.id), v_now)
       from pgflow.messages m where m.id = r.id;
  end loop;
  return v_results;
end;
$$;

-- A new console user, or a disabled one enabled again with a new role and password.
-- PF005 when the email belongs to an active user; PF003 for a bad email or role.
create or replace function pgflow.add_console_user(
  p_email text,
  p_role text,
  p_password_hash text,
  p_actor text,
  p_user_id bigint default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_actor text := pgflow._actor(p_actor);
  v_email text := pg_catalog.lower(pg_catalog.btrim(coalesce(p_email, '')));
  v_user pgflow.console_users;
  v_result text := 'added';
begin
  if v_email !~ '^[^@\s]+@[^@\s]+$' or pg_catalog.length(v_email) > 254 then
    raise exception '% is not an email address', pg_catalog.left(v_email, 80) using errcode = 'PF003';
  end if;
  if p_role is null or p_role not in ('agent', 'manager', 'admin') then
    raise exception 'a role is agent, manager or admin (not %)', coalesce(p_role, 'none')
      using errcode = 'PF003';
  end if;
  if p_password_hash is null or p_password_hash not like 'scrypt$%' then
    raise exception 'the password must be hashed with scrypt' using errcode = 'PF003';
  end if;
  insert into pgflow.console_users (email, role, password_hash, created_at, updated_at)
  values (v_email, p_role, p_password_hash, v_now, v_now)
  on conflict (email) do nothing
  returning * into v_user;
  if v_user.id is null then
    update pgflow.console_users
       set role = p_role, password_hash = p_password_hash, disabled_at = null, updated_at = v_now
     where email = v_email and disabled_at is not null
    returning * into v_user;
    if v_user.id is null then
      raise exception 'a console user % exists already', v_email using errcode = 'PF005';
    end if;
    v_result := 'enabled';
  end if;
  perform pgflow._audit(v_actor, p_user_id, 'user_add', null, null,
    pg_catalog.jsonb_build_object('email', v_email, 'role', p_role, 'result', v_result), v_now);
  return pg_catalog.jsonb_build_object('result', v_result, 'user_id', v_user.id,
                                       'email', v_email, 'role', p_role);
end;
$$;

-- Disable a console user, give them a new password, or just end their sessions: in each
-- case every session of theirs ends. PF002 for an unknown email.
create or replace function pgflow.change_console_user(
  p_email text,
  p_action text,
  p_password_hash text,
  p_actor text,
  p_user_id bigint default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_actor text := pgflow._actor(p_actor);
  v_email text := pg_catalog.lower(pg_catalog.btrim(coalesce(p_email, '')));
  v_user pgflow.console_users;
  v_revoked integer;
begin
  select * into v_user from pgflow.console_users where email = v_email for update;
  if not found then
    raise exception 'no console user %', pg_catalog.left(v_email, 80) using errcode = 'PF002';
  end if;
  if p_action = 'disable' then
    update pgflow.console_users set disabled_at = coalesce(disabled_at, v_now), updated_at = v_now
     where id = v_user.id;
  elsif p_action = 'password' then
    if p_password_hash is null or p_password_hash not like 'scrypt$%' then
      raise exception 'the password must be hashed with scrypt' using errcode = 'PF003';
    end if;
    update pgflow.console_users set password_hash = p_password_hash, updated_at = v_now
     where id = v_user.id;
  elsif p_action is distinct from 'revoke' then
    raise exception 'unknown user action %', coalesce(p_action, '(none)') using errcode = 'PF003';
  end if;
  update pgflow.console_sessions set revoked_at = v_now
   where user_id = v_user.id and revoked_at is null and expires_at > v_now;
  get diagnostics v_revoked = row_count;
  perform pgflow._audit(v_actor, p_user_id,
    case p_action when 'disable' then 'user_disable' when 'password' then 'user_password'
                  else 'sessions_revoke' end,
    null, null, pg_catalog.jsonb_build_object('email', v_email, 'sessions_ended', v_revoked),
    v_now);
  return pg_catalog.jsonb_build_object('result', p_action, 'email', v_email,
                                       'sessions_ended', v_revoked);
end;
$$;

-- Console users with their last sign-in and live sessions (never a password hash).
create or replace function pgflow.console_user_list(p_now timestamptz default null)
returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
           'id', u.id, 'email', u.email, 'role', u.role, 'created_at', u.created_at,
           'disabled_at', u.disabled_at,
           'last_seen_at', (select pg_catalog.max(s.last_seen_at) from pgflow.console_sessions s
                             where s.user_id = u.id),
           'sessions', (select pg_catalog.count(*) from pgflow.console_sessions s
                         where s.user_id = u.id and s.revoked_at is null
                           and s.expires_at > coalesce(p_now, pg_catalog.now())))
           order by u.email), '[]')
    from pgflow.console_users u
$$;

-- What signing in as this email needs: the user's hash and role (NULLs for an unknown or
-- disabled email), and retry_after_seconds > 0 while the email is throttled: 5 failed
-- attempts within 15 minutes lock it until the oldest of them is 15 minutes old.
create or replace function pgflow.console_sign_in_user(p_email text, p_now timestamptz default null)
returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  with e as (select pg_catalog.lower(pg_catalog.btrim(coalesce(p_email, ''))) as email,
                    coalesce(p_now, pg_catalog.now()) as now),
  failures as (
    select a.attempted_at from pgflow.console_sign_ins a, e
     where a.email = e.email and not a.ok and a.attempted_at > e.now - interval '15 minutes'
       and a.attempted_at > coalesce((select pg_catalog.max(b.attempted_at)
                                        from pgflow.console_sign_ins b
                                       where b.email = e.email and b.ok), '-infinity')
     order by a.attempted_at desc limit 5)
  select pg_catalog.jsonb_build_object(
    'email', e.email,
    'user_id', u.id,
    'role', u.role,
    'password_hash', u.password_hash,
    'retry_after_seconds', case when (select pg_catalog.count(*) from failures) >= 5 then
      pg_catalog.ceil(extract(epoch from (select pg_catalog.min(attempted_at) from failures)
                                          + interval '15 minutes' - e.now))
      else 0 end)
    from e left join pgflow.console_users u on u.email = e.email and u.disabled_at is null
$$;

-- One sign-in attempt, recorded; a success opens a session for the token's hash (idle
-- expiry 12 h, absolute 7 days) and is written to the audit trail. PF002 when the user
-- is gone or disabled by then.
create or replace function pgflow.record_sign_in(
  p_email text,
  p_ok boolean,
  p_token_hash bytea,
  p_ip text default null,
  p_user_agent text default null,
  p_now timestamptz default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_email text := pg_catalog.left(pg_catalog.lower(pg_catalog.btrim(coalesce(p_email, ''))), 254);
  v_user pgflow.console_users;
  v_session bigint;
begin
  insert into pgflow.console_sign_ins (email, ok, ip, attempted_at)
  values (v_email, p_ok, pg_catalog.left(p_ip, 64), v_now);
  delete from pgflow.console_sign_ins
   where email = v_email and attempted_at < v_now - interval '30 days';
  if not p_ok then
    return '{"result": "failed"}';
  end if;
  select * into v_user from pgflow.console_users where email = v_email and disabled_at is null;
  if not found then
    raise exception 'no active console user %', v_email using errcode = 'PF002';
  end if;
  insert into pgflow.console_sessions
    (user_id, token_hash, created_at, last_seen_at, expires_at, ip, user_agent)
  values (v_user.id, p_token_hash, v_now, v_now, v_now + interval '12 hours',
          pg_catalog.left(p_ip, 64), pg_catalog.left(p_user_agent, 300))
  returning id into v_session;
  perform pgflow._audit(v_user.email, v_user.id, 'sign_in', null, null,
                        pg_catalog.jsonb_build_object('ip', pg_catalog.left(p_ip, 64)), v_now);
  return pg_catalog.jsonb_build_object('result', 'signed_in', 'session_id', v_session,
                                       'user_id', v_user.id, 'role', v_user.role);
end;
$$;

-- The signed-in user behind a session token's hash, or NULL (unknown, revoked, expired,
-- or the user disabled). Seen again after a minute, the session's idle expiry moves on.
create or replace function pgflow.console_session(p_token_hash bytea, p_now timestamptz default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_session pgflow.console_sessions;
  v_user pgflow.console_users;
begin
  select * into v_session from pgflow.console_sessions
   where token_hash = p_token_hash and revoked_at is null and expires_at > v_now;
  if not found then
    return null;
  end if;
  select * into v_user from pgflow.console_users
   where id = v_session.user_id and disabled_at is null;
  if not found then
    return null;
  end if;
  if v_session.last_seen_at < v_now - interval '1 minute' then
    update pgflow.console_sessions
       set last_seen_at = v_now,
           expires_at = greatest(expires_at, least(created_at + interval '7 days',
                                                   v_now + interval '12 hours'))
     where id = v_session.id;
  end if;
  return pg_catalog.jsonb_build_object('session_id', v_session.id, 'user_id', v_user.id,
    'email', v_user.email, 'role', v_user.role);
end;
$$;

-- Sign out: the session of this token's hash ends.
create or replace function pgflow.end_console_session(p_token_hash bytea, p_now timestamptz default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_session pgflow.console_sessions;
  v_email text;
begin
  update pgflow.console_sessions set revoked_at = v_now
   where token_hash = p_token_hash and revoked_at is null
  returning * into v_session;
  if not found then
    return '{"result": "unchanged"}';
  end if;
  select email into v_email from pgflow.console_users where id = v_session.user_id;
  perform pgflow._audit(v_email, v_session.user_id, 'sign_out', null, null, '{}', v_now);
  return '{"result": "signed_out"}';
end;
$$;

-- The inbox's sort key of a conversation: conversations that need a person first (a
-- review asked for, or the lead held by a person or waiting for one: escalated), then
-- engaged ones whose lead wrote in the last 3 days, then the rest.
create or replace function pgflow._needs_person(
  p_conversation pgflow.conversations, p_contact pgflow.contacts
) returns boolean
language sql immutable
set search_path = ''
as $$
  select p_conversation.review_requested_at is not null
      or (p_contact.held_at is not null
          and (p_conversation.status <> 'ended' or p_conversation.conversion_status = 'escalated'))
$$;

-- One page of the inbox: {rows: [...], next: cursor | null}. Filters (p_filter): campaign
-- (slug), state (open | engaged | ended | held | review), outcome, q (the end of a phone
-- number, at least 3 digits, or the start of a first name, a last name or "first last").
-- Pages are keyset pages: p_after is the `next` of the page before. Bucket 1 needs a
-- person (a review, or a held lead), 2 is engaged with a lead text in the last 3 days (by
-- that text), 3 the rest (by last activity). Each bucket is its own statement on its own
-- index (custom plans only: a generic plan would sort every conversation); the rows are
-- built for the page's ids alone.
create or replace function pgflow.inbox(
  p_filter jsonb default '{}',
  p_after jsonb default null,
  p_limit integer default 50,
  p_now timestamptz default null
) returns jsonb
language plpgsql stable
security definer
set search_path = ''
set plan_cache_mode = force_custom_plan
as $$
declare
  v_recent timestamptz := coalesce(p_now, pg_catalog.now()) - interval '3 days';
  v_limit integer := least(greatest(coalesce(p_limit, 50), 1), 200);
  v_filter jsonb := coalesce(p_filter, '{}');
  v_campaign bigint;
  v_state text := nullif(v_filter ->> 'state', '');
  v_outcome text := nullif(v_filter ->> 'outcome', '');
  v_q text := pg_catalog.lower(nullif(pg_catalog.btrim(v_filter ->> 'q'), ''));
  v_digits text;
  v_word text;
  v_rest text;
  v_contacts bigint[];
  v_start integer := 1;
  v_at timestamptz;
  v_id bigint;
  v_page jsonb := '[]';
  v_more jsonb;
  v_last jsonb;
  v_rows jsonb;
begin
  if nullif(v_filter ->> 'campaign', '') is not null then
    select id into v_campaign from pgflow.campaigns where slug = v_filter ->> 'campaign';
    if not found then
      return '{"rows": [], "next": null}';
    end if;
  end if;
  if p_after is not null then
    v_start := coalesce((p_after ->> 'bucket')::integer, 1);
    v_at := (p_after ->> 'at')::timestamptz;
    v_id := (p_after ->> 'id')::bigint;
  end if;
  if v_q is not null then
    -- indexes: contacts_phone_suffix_idx, contacts_first_name_idx, contacts_last_name_idx
    v_digits := pg_catalog.regexp_replace(v_q, '[^0-9]', '', 'g');
    v_q := pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
             v_q, '\', '\\'), '%', '\%'), '_', '\_');
    v_word := pg_catalog.split_part(v_q, ' ', 1);
    v_rest := pg_catalog.btrim(pg_catalog.substr(v_q, pg_catalog.length(v_word) + 1));
    select pg_catalog.array_agg(x.id) into v_contacts
      from (select ct.id from pgflow.contacts ct
             where (pg_catalog.length(v_digits) >= 3
                    and pg_catalog.reverse(ct.phone) like pg_catalog.reverse(v_digits) || '%')
                or pg_catalog.lower(ct.first_name) like v_q || '%'
                or pg_catalog.lower(ct.last_name) like v_q || '%'
                or (v_rest <> '' and pg_catalog.lower(ct.first_name) = v_word
                    and pg_catalog.lower(ct.last_name) like v_rest || '%')
             limit 1000) x;
    if v_contacts is null then
      return '{"rows": [], "next": null}';
    end if;
  end if;

  for b in v_start..3 loop
    if b = 1 then
      -- from the two small sets (conversations_review_idx, contacts_held_idx)
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('id', t.id, 'bucket', 1,
               'sort_at', t.sort_at) order by t.sort_at desc, t.id desc)
        into v_more
        from (select cv.id, greatest(cv.last_inbound_at, cv.last_outbound_at, cv.created_at)
                       as sort_at
                from (select r.id from pgflow.conversations r where r.review_reason is not null
                      union
                      select h.id from pgflow.contacts hc
                        join pgflow.conversations h on h.contact_id = hc.id
                       where hc.held_at is not null
                         and (h.status <> 'ended' or h.conversion_status = 'escalated')) need
                join pgflow.conversations cv on cv.id = need.id
                join pgflow.contacts ct on ct.id = cv.contact_id
               where (v_campaign is null or cv.campaign_id = v_campaign)
                 and (v_contacts is null or cv.contact_id = any (v_contacts))
                 and (v_outcome is null or cv.conversion_status = v_outcome)
                 and (v_state is null
                      or (v_state in ('open', 'engaged', 'ended') and cv.status = v_state)
                      or (v_state = 'held' and ct.held_at is not null)
                      or (v_state = 'review' and cv.review_requested_at is not null))
                 and (v_start <> 1 or v_at is null
                      or (greatest(cv.last_inbound_at, cv.last_outbound_at, cv.created_at), cv.id)
                         < (v_at, v_id))
               order by 2 desc, 1 desc
               limit v_limit + 1 - pg_catalog.jsonb_array_length(v_page)) t;
    elsif b = 2 then
      -- conversations_engaged_inbound_idx
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('id', t.id, 'bucket', 2,
               'sort_at', t.sort_at) order by t.sort_at desc, t.id desc)
        into v_more
        from (select cv.id, cv.last_inbound_at as sort_at
                from pgflow.conversations cv
                join pgflow.contacts ct on ct.id = cv.contact_id
               where cv.status = 'engaged' and cv.last_inbound_at >= v_recent
                 and cv.review_requested_at is null and ct.held_at is null
                 and (v_campaign is null or cv.campaign_id = v_campaign)
                 and (v_contacts is null or cv.contact_id = any (v_contacts))
                 and (v_outcome is null or cv.conversion_status = v_outcome)
                 and (v_state is null or v_state = 'engaged')
                 and (v_start <> 2 or v_at is null or (cv.last_inbound_at, cv.id) < (v_at, v_id))
               order by cv.last_inbound_at desc, cv.id desc
               limit v_limit + 1 - pg_catalog.jsonb_array_length(v_page)) t;
    else
      -- conversations_activity_idx (or, for a search, the contacts' conversations)
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('id', t.id, 'bucket', 3,
               'sort_at', t.sort_at) order by t.sort_at desc, t.id desc)
        into v_more
        from (select cv.id, greatest(cv.last_inbound_at, cv.last_outbound_at, cv.created_at)
                       as sort_at
                from pgflow.conversations cv
                join pgflow.contacts ct on ct.id = cv.contact_id
               where cv.review_requested_at is null
                 and not (ct.held_at is not null
                          and (cv.status <> 'ended' or cv.conversion_status = 'escalated'))
                 and not (cv.status = 'engaged' and cv.last_inbound_at >= v_recent)
                 and (v_campaign is null or cv.campaign_id = v_campaign)
                 and (v_contacts is null or cv.contact_id = any (v_contacts))
                 and (v_outcome is null or cv.conversion_status = v_outcome)
                 and (v_state is null
                      or (v_state in ('open', 'engaged', 'ended') and cv.status = v_state)
                      or (v_state = 'held' and ct.held_at is not null))
                 and (v_start <> 3 or v_at is null
                      or (greatest(cv.last_inbound_at, cv.last_outbound_at, cv.created_at), cv.id)
                         < (v_at, v_id))
               order by 2 desc, 1 desc
               limit v_limit + 1 - pg_catalog.jsonb_array_length(v_page)) t;
    end if;
    v_page := v_page || coalesce(v_more, '[]');
    exit when pg_catalog.jsonb_array_length(v_page) > v_limit;
  end loop;

  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
           'id', cv.id, 'bucket', (k.value ->> 'bucket')::integer, 'sort_at', k.value -> 'sort_at',
           'activity_at', greatest(cv.last_inbound_at, cv.last_outbound_at, cv.created_at),
           'phone', ct.phone, 'first_name', ct.first_name, 'last_name', ct.last_name,
           'campaign', c.slug, 'status', cv.status, 'conversion_status', cv.conversion_status,
           'outcome_source', cv.outcome_source, 'review_reason', cv.review_reason,
           'held_at', ct.held_at, 'held_by', ct.held_by,
           'opted_out', ct.opted_out_at is not null, 'last_text', lm.body,
           'last_direction', lm.direction, 'last_kind', lm.kind) order by k.ordinality), '[]')
    into v_rows
    from pg_catalog.jsonb_array_elements(v_page) with ordinality k
    join pgflow.conversations cv on cv.id = (k.value ->> 'id')::bigint
    join pgflow.contacts ct on ct.id = cv.contact_id
    left join pgflow.campaigns c on c.id = cv.campaign_id
    left join lateral (
      select m.body, m.direction, m.kind from pgflow.messages m
       where m.conversation_id = cv.id order by m.created_at desc, m.id desc limit 1) lm on true
   where k.ordinality <= v_limit;
  if pg_catalog.jsonb_array_length(v_page) > v_limit then
    v_last := v_page -> (v_limit - 1);
    return pg_catalog.jsonb_build_object('rows', v_rows,
      'next', pg_catalog.jsonb_build_object('bucket', v_last -> 'bucket',
                                            'at', v_last -> 'sort_at', 'id', v_last -> 'id'));
  end if;
  return pg_catalog.jsonb_build_object('rows', v_rows, 'next', null);
end;
$$;

-- Everything the conversation page shows: the conversation, its lead (consent, opt-out,
-- hold), the transcript, system notes (state changes of the conversation, its drip and
-- its lead), the drip's steps, every outcome signal and the audit trail. NULL: unknown id.
create or replace function pgflow.conversation_view(
  p_conversation_id bigint, p_now timestamptz default null
) returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'conversation', pg_catalog.to_jsonb(cv) - 'agent_turns',
    'agent_turns', cv.agent_turns,
    'needs_person', pgflow._needs_person(cv, ct),
    'contact', pg_catalog.jsonb_build_object(
      'id', ct.id, 'phone', ct.phone, 'first_name', ct.first_name, 'last_name', ct.last_name,
      'email', ct.email, 'timezone', ct.timezone, 'opted_out_at', ct.opted_out_at,
      'opt_out_source', ct.opt_out_source, 'consent_at', ct.consent_at,
      'consent_source', ct.consent_source, 'consent_text', ct.consent_text,
      'held_at', ct.held_at, 'held_by', ct.held_by),
    'campaign', (select pg_catalog.jsonb_build_object('slug', c.slug, 'name', c.name,
                                                      'status', c.status)
                   from pgflow.campaigns c where c.id = cv.campaign_id),
    'agent', (select a.name from pgflow.agents a where a.id = cv.agent_id),
    'transcript', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', t.id, 'direction', t.direction, 'kind', t.kind, 'body', t.body,
               'delivery_status', t.delivery_status, 'delivery_error', t.delivery_error,
               'step_position', t.step_position, 'created_at', t.created_at,
               'sent_at', t.sent_at, 'send_after', t.send_after, 'attempts', t.attempts,
               'deferred_reason', t.deferred_reason,
               'segments', t.segments, 'intent', t.intent) order by t.created_at, t.id)
        from (select m.* from pgflow.messages m where m.conversation_id = cv.id
               order by m.created_at desc, m.id desc limit 500) t), '[]'),
    'notes', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'at', n.occurred_at, 'entity', n.entity, 'from', n.from_status,
               'to', n.to_status, 'reason', n.reason) order by n.occurred_at, n.id)
        from (select ev.* from pgflow.events ev
               where (ev.entity = 'conversation' and ev.entity_id = cv.id)
                  or (ev.entity = 'enrollment' and ev.entity_id = cv.enrollment_id)
                  or (ev.entity = 'contact' and ev.entity_id = ct.id
                      and ev.occurred_at >= cv.created_at)
               order by ev.occurred_at desc, ev.id desc limit 200) n), '[]'),
    'drip', (
      select pg_catalog.jsonb_build_object(
        'enrollment_id', e.id, 'status', e.status, 'next_step', e.next_step,
        'next_message_at', e.next_message_at, 'stop_reason', e.stop_reason,
        'steps', coalesce((
          select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'position', st.position, 'delay', st.delay::text,
                   'message_id', sm.id, 'status', sm.delivery_status,
                   'sent_at', sm.sent_at, 'send_after', sm.send_after,
                   'deferred_reason', sm.deferred_reason,
                   'error', sm.delivery_error, 'attempts', sm.attempts,
                   'planned_at', case when sm.id is null and e.next_step = st.position
                                      and e.status = 'active' then e.next_message_at end)
                   order by st.position)
            from pgflow.campaign_steps st
            left join lateral (
              select m.* from pgflow.messages m
               where m.enrollment_id = e.id and m.step_position = st.position
               order by m.id desc limit 1) sm on true
           where st.campaign_id = e.campaign_id), '[]'))
        from pgflow.enrollments e where e.id = cv.enrollment_id),
    'signals', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'source', s.source, 'status', s.status, 'reason', s.reason,
               'confidence', s.confidence, 'model', s.model, 'at', s.created_at)
               order by s.created_at, s.id)
        from pgflow.outcome_signals s where s.conversation_id = cv.id), '[]'),
    'audit', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'at', l.occurred_at, 'actor', l.actor, 'action', l.action,
               'conversation_id', l.conversation_id, 'detail', l.detail)
               order by l.occurred_at, l.id)
        from pgflow.audit_log l
       where l.conversation_id = cv.id
          or (l.contact_id = ct.id and l.occurred_at >= cv.created_at)), '[]'),
    'others', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', o.id, 'status', o.status, 'conversion_status', o.conversion_status,
               'created_at', o.created_at) order by o.id desc)
        from pgflow.conversations o where o.contact_id = ct.id and o.id <> cv.id), '[]'))
    from pgflow.conversations cv
    join pgflow.contacts ct on ct.id = cv.contact_id
   where cv.id = p_conversation_id
$$;

-- What changed since a console page was drawn: the newest message, state change, alert
-- and audit line, as one string. The page polls it and redraws when it differs.
create or replace function pgflow.console_cursor() returns text
language sql stable
security definer
set search_path = ''
as $$
  select pg_catalog.concat_ws('.',
    coalesce((select pg_catalog.max(id) from pgflow.messages), 0),
    coalesce((select pg_catalog.max(id) from pgflow.events), 0),
    coalesce((select pg_catalog.max(id) from pgflow.alerts), 0),
    coalesce((select pg_catalog.max(id) from pgflow.audit_log), 0),
    coalesce((select pg_catalog.max(id) from pgflow.conversations), 0))
$$;

-- The console's other pages: campaigns with their steps and windows, alerts open and
-- resolved, dead letters, and sends per hour over the last day.
create or replace function pgflow.console_campaigns() returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
    'slug', c.slug, 'name', c.name, 'status', c.status, 'agent', a.name,
    'from_number', c.from_number, 'timezone', c.timezone,
    'window_start', c.window_start, 'window_end', c.window_end, 'window_days', c.window_days,
    'reply_timeout', c.reply_timeout::text, 'silence_timeout', c.silence_timeout::text,
    'daily_cap', c.daily_cap, 'max_attempts', c.max_attempts,
    'enrolled', (select pg_catalog.count(*) from pgflow.enrollments e where e.campaign_id = c.id),
    'steps', coalesce((select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                        'position', s.position, 'delay', s.delay::text, 'body', s.body)
                        order by s.position)
                         from pgflow.campaign_steps s where s.campaign_id = c.id), '[]'))
    order by c.slug), '[]')
    from pgflow.campaigns c left join pgflow.agents a on a.id = c.agent_id
$$;

-- The campaigns' slugs, for the inbox's filter (cheap: no counts).
create or replace function pgflow.console_campaign_slugs() returns text[]
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.array_agg(c.slug order by c.slug), '{}') from pgflow.campaigns c
$$;

create or replace function pgflow.console_alerts(p_limit integer default 200) returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(x)
                    order by (x.resolved_at is null) desc, x.opened_at desc, x.id desc), '[]')
    from (select al.id, al.kind, al.severity, al.message, al.occurrences, al.opened_at,
                 al.last_seen_at, al.resolved_at, al.notified_at,
                 (al.details ->> 'conversation_id')::bigint as conversation_id
            from pgflow.alerts al
           order by (al.resolved_at is null) desc, al.opened_at desc, al.id desc
           limit least(greatest(coalesce(p_limit, 200), 1), 1000)) x
$$;

create or replace function pgflow.console_dead_letters(
  p_campaign text default null, p_limit integer default 200
) returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(x)
                    order by x.failed_at desc, x.id desc), '[]')
    from (select d.id, d.campaign, d.phone, d.kind, d.attempts, d.delivery_error, d.failed_at,
                 d.contact_opted_out, d.step_position, d.body, m.conversation_id
            from pgflow.dead_letters d join pgflow.messages m on m.id = d.id
           where p_campaign is null or d.campaign = p_campaign
           order by d.failed_at desc, d.id desc
           limit least(greatest(coalesce(p_limit, 200), 1), 1000)) x
$$;

create or replace function pgflow.sends_per_hour(
  p_campaign text default null, p_hours integer default 24, p_now timestamptz default null
) returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  with bounds as (
    select pg_catalog.date_trunc('hour', coalesce(p_now, pg_catalog.now())) as last_hour,
           least(greatest(coalesce(p_hours, 24), 1), 168) as hours
  ), hours as (
    select b.last_hour - pg_catalog.make_interval(hours => g) as hour
      from bounds b, pg_catalog.generate_series(0, b.hours - 1) g
  ), sent as (
    select pg_catalog.date_trunc('hour', m.sent_at) as hour, pg_catalog.count(*) as n
      from pgflow.messages m
      join pgflow.conversations cv on cv.id = m.conversation_id
      left join pgflow.campaigns c on c.id = cv.campaign_id, bounds b
     where m.direction = 'outbound' and m.sent_at is not null
       and m.sent_at >= b.last_hour - pg_catalog.make_interval(hours => b.hours - 1)
       and (p_campaign is null or c.slug = p_campaign)
     group by 1
  )
  select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('hour', h.hour,
                                                            'sent', coalesce(s.n, 0))
                              order by h.hour)
    from hours h left join sent s on s.hour = h.hour
$$;

-- The review queue for the console (the view pgflow.review_queue, oldest first).
create or replace function pgflow.console_review(p_limit integer default 200) returns jsonb
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(x)
                    order by x.review_requested_at, x.id), '[]')
    from (select r.id, r.phone, r.campaign, r.status, r.conversion_status, r.outcome_source,
                 r.review_reason, r.review_requested_at, r.signals
            from pgflow.review_queue r
           order by r.review_requested_at, r.id
           limit least(greatest(coalesce(p_limit, 200), 1), 1000)) x
$$;
