-- State machines: the transition functions of enrollments and conversations, and the audit trigger.
-- depends: 0004_create_health

-- Raised when a transition is asked of a row that is not in a legal from-state (PF001),
-- or of a row that does not exist (PF002).
create function pgflow._transition_failed(
  p_entity text, p_id bigint, p_current text, p_action text, p_allowed text[]
) returns void
language plpgsql
set search_path = ''
as $$
begin
  if p_current is null then
    raise exception '% % does not exist', p_entity, p_id using errcode = 'PF002';
  end if;
  raise exception '% % is %; cannot % (allowed from: %)',
    p_entity, p_id, p_current, p_action, pg_catalog.array_to_string(p_allowed, ', ')
    using errcode = 'PF001';
end;
$$;

-- Every status change lands in pgflow.events. The reason comes from the transaction-local
-- setting pgflow.reason, which transition functions set; the time is the row's updated_at
-- (the injected clock) so the audit trail agrees with the data.
create function pgflow._log_transition() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_entity text := pg_catalog.rtrim(tg_table_name, 's');
  v_from text;
  v_to text;
  v_when timestamptz;
begin
  if tg_table_name = 'messages' then
    v_to := new.delivery_status;
    v_from := case when tg_op = 'UPDATE' then old.delivery_status end;
  else
    v_to := new.status;
    v_from := case when tg_op = 'UPDATE' then old.status end;
  end if;
  if tg_op = 'UPDATE' and v_from is not distinct from v_to then
    return null;
  end if;
  v_when := coalesce(new.updated_at, pg_catalog.now());
  insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
  values (v_when, v_entity, new.id, v_from, v_to,
          nullif(pg_catalog.current_setting('pgflow.reason', true), ''));
  return null;
end;
$$;

create trigger enrollments_log_transition
  after insert or update of status on pgflow.enrollments
  for each row execute function pgflow._log_transition();
create trigger conversations_log_transition
  after insert or update of status on pgflow.conversations
  for each row execute function pgflow._log_transition();
create trigger messages_log_transition
  after insert or update of delivery_status on pgflow.messages
  for each row execute function pgflow._log_transition();

create function pgflow._set_reason(p_reason text) returns void
language sql
set search_path = ''
as $$ select pg_catalog.set_config('pgflow.reason', coalesce(p_reason, ''), true) $$;

-- Enrollments: active -> paused | completed | stopped | opted_out; paused -> active | stopped | opted_out.

create function pgflow.pause_enrollment(
  p_id bigint, p_reason text default null, p_now timestamptz default null
) returns pgflow.enrollments
language plpgsql
set search_path = ''
as $$
declare
  v_row pgflow.enrollments;
begin
  perform pgflow._set_reason(coalesce(p_reason, 'paused'));
  update pgflow.enrollments
     set status = 'paused', updated_at = coalesce(p_now, pg_catalog.now())
   where id = p_id and status = 'active'
  returning * into v_row;
  if not found then
    perform pgflow._transition_failed('enrollment', p_id,
      (select status from pgflow.enrollments where id = p_id), 'pause', '{active}');
  end if;
  return v_row;
end;
$$;

create function pgflow.resume_enrollment(
  p_id bigint, p_reason text default null, p_now timestamptz default null
) returns pgflow.enrollments
language plpgsql
set search_path = ''
as $$
declare
  v_row pgflow.enrollments;
begin
  perform pgflow._set_reason(coalesce(p_reason, 'resumed'));
  update pgflow.enrollments
     set status = 'active', updated_at = coalesce(p_now, pg_catalog.now()),
         next_step = coalesce(next_step, 1),
         next_message_at = coalesce(next_message_at, p_now, pg_catalog.now())
   where id = p_id and status = 'paused'
  returning * into v_row;
  if not found then
    perform pgflow._transition_failed('enrollment', p_id,
      (select status from pgflow.enrollments where id = p_id), 'resume', '{paused}');
  end if;
  return v_row;
end;
$$;

create function pgflow.complete_enrollment(
  p_id bigint, p_reason text default null, p_now timestamptz default null
) returns pgflow.enrollments
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_row pgflow.enrollments;
begin
  perform pgflow._set_reason(coalesce(p_reason, 'last step sent'));
  update pgflow.enrollments
     set status = 'completed', ended_at = v_now, updated_at = v_now,
         next_step = null, next_message_at = null
   where id = p_id and status = 'active'
  returning * into v_row;
  if not found then
    perform pgflow._transition_failed('enrollment', p_id,
      (select status from pgflow.enrollments where id = p_id), 'complete', '{active}');
  end if;
  return v_row;
end;
$$;

create function pgflow.stop_enrollment(
  p_id bigint, p_reason text, p_now timestamptz default null
) returns pgflow.enrollments
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_row pgflow.enrollments;
begin
  if coalesce(pg_catalog.btrim(p_reason), '') = '' then
    raise exception 'stopping an enrollment needs a reason' using errcode = 'PF003';
  end if;
  perform pgflow._set_reason(p_reason);
  update pgflow.enrollments
     set status = 'stopped', stop_reason = p_reason, ended_at = v_now, updated_at = v_now,
         next_message_at = null
   where id = p_id and status in ('active', 'paused')
  returning * into v_row;
  if not found then
    perform pgflow._transition_failed('enrollment', p_id,
      (select status from pgflow.enrollments where id = p_id), 'stop', '{active,paused}');
  end if;
  return v_row;
end;
$$;

create function pgflow.opt_out_enrollment(
  p_id bigint, p_reason text default null, p_now timestamptz default null
) returns pgflow.enrollments
language plpgsql
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_row pgflow.enrollments;
begin
  perform pgflow._set_reason(coalesce(p_reason, 'contact opted out'));
  update pgflow.enrollments
     set status = 'opted_out', stop_reason = coalesce(p_reason, 'contact opted out'),
         ended_at = v_now, updated_at = v_now, next_message_at = null
   where id = p_id and status in ('active', 'paused')
  returning * into v_row;
  if not found then
    perform pgflow._transition_failed('enrollment', p_id,
      (select status from pgflow.enrollments where id = p_id), 'opt out', '{active,paused}');
  end if;
  return v_row;
end;
$$;

-- Conversations: open -> engaged -> ended; open -> ended. Ending one stops its drip.

create function pgflow.engage_conversation(
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

create function pgflow.end_conversation(
  p_id bigint,
  p_conversion_status text,
  p_reason text,
  p_source text,
  p_now timestamptz default null
) returns pgflow.conversations
language plpgsql
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
  if p_source is null or p_source not in ('rule', 'llm', 'human', 'webhook') then
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
