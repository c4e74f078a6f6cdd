-- Shared by every area: checks used by constraints, the transition log and its errors, enqueueing pgqueuer jobs.
-- The current definition of each function and view of this area (sql/README.md: how to
-- change one). Grants: roles.sql.

-- True when the text names a time zone this server knows (IANA). Used by CHECK constraints.
create or replace function pgflow._is_time_zone(p_tz text) returns boolean
language plpgsql immutable parallel safe
set search_path = ''
as $$
begin
  if p_tz is null then
    return true;
  end if;
  perform pg_catalog.now() at time zone p_tz;
  return true;
exception when invalid_parameter_value then
  return false;
end;
$$;

-- True for NULL or an ISO 8601 date/time Postgres reads as a finite timestamptz
-- ('now', 'epoch' and 'infinity' are not lead data).
create or replace function pgflow._is_timestamp(p_text text) returns boolean
language plpgsql immutable
set search_path = ''
as $$
begin
  if p_text is null then
    return true;
  end if;
  if p_text !~ '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}(:?\d{2})?)?$' then
    return false;
  end if;
  perform p_text::timestamptz;
  return true;
exception when others then
  return false;
end;
$$;

-- Raised when a transition is asked of a row that is not in a legal from-state (PF001),
-- or of a row that does not exist (PF002).
create or replace function pgflow._transition_failed(
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

create or replace function pgflow._set_reason(p_reason text) returns void
language plpgsql
set search_path = ''
as $$
begin
  perform pg_catalog.set_config('pgflow.reason', coalesce(p_reason, ''), true);
end;
$$;

-- Every status change lands in pgflow.events. The reason comes from the transaction-local
-- setting pgflow.reason, which transition functions set; the time is the row's updated_at
-- (the injected clock) so the audit trail agrees with the data.
create or replace function pgflow._log_transition() returns trigger
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

-- The same for the rows one INSERT made (a statement-level trigger over its transition
-- table new_rows): one insert into pgflow.events per statement, in the order of the ids,
-- rather than one per row. Updates keep the row trigger above.
create or replace function pgflow._log_inserts() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_reason text := nullif(pg_catalog.current_setting('pgflow.reason', true), '');
begin
  if tg_table_name = 'messages' then
    insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
    select coalesce(n.updated_at, pg_catalog.now()), 'message', n.id, null, n.delivery_status,
           v_reason
      from new_rows n order by n.id;
  elsif tg_table_name = 'conversations' then
    insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
    select coalesce(n.updated_at, pg_catalog.now()), 'conversation', n.id, null, n.status,
           v_reason
      from new_rows n order by n.id;
  else
    insert into pgflow.events (occurred_at, entity, entity_id, from_status, to_status, reason)
    select coalesce(n.updated_at, pg_catalog.now()), pg_catalog.rtrim(tg_table_name, 's'), n.id,
           null, n.status, v_reason
      from new_rows n order by n.id;
  end if;
  return null;
end;
$$;

-- Enqueue one pgqueuer job per id in ONE statement (its trigger NOTIFYs once).
-- The dedupe key guards against a second active job; our own unique keys guard the rest.
create or replace function pgflow._enqueue(p_entrypoint text, p_ids bigint[], p_priority integer default 0)
returns integer
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
         pg_catalog.now(), p_entrypoint || ':' || id, 'queued'
    from pg_catalog.unnest(p_ids) as id
  on conflict (dedupe_key)
    where ((status = any (array['queued'::pgflow.pgqueuer_status, 'picked'::pgflow.pgqueuer_status]))
           and (dedupe_key is not null))
  do nothing;
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;

-- Enqueue jobs that run no sooner than p_after (debounced agent replies).
create or replace function pgflow._enqueue_after(
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

create or replace function pgflow.fn_pgqueuer_changed() RETURNS TRIGGER AS $$
DECLARE
    to_emit BOOLEAN := false;  -- Flag to decide whether to emit a notification
BEGIN
    -- Check operation type and set the emit flag accordingly
    IF TG_OP = 'UPDATE' AND OLD IS DISTINCT FROM NEW THEN
        to_emit := true;
    ELSIF TG_OP = 'DELETE' THEN
        to_emit := true;
    ELSIF TG_OP = 'INSERT' THEN
        to_emit := true;
    ELSIF TG_OP = 'TRUNCATE' THEN
        to_emit := true;
    END IF;

    -- Perform notification if the emit flag is set
    IF to_emit THEN
        PERFORM pg_notify(
            'ch_pgqueuer',
            json_build_object(
                'channel', 'ch_pgqueuer',
                'operation', lower(TG_OP),
                'sent_at', NOW(),
                'table', TG_TABLE_NAME,
                'type', 'table_changed_event'
            )::text
        );
    END IF;

    -- Return appropriate value based on the operation
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        RETURN NEW;
    ELSIF TG_OP = 'DELETE' THEN
        RETURN OLD;
    ELSE
        RETURN NULL; -- For TRUNCATE and other non-row-specific contexts
    END IF;

END;
$$ LANGUAGE plpgsql;
