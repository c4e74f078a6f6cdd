CREATE SCHEMA pgflow;
CREATE TYPE pgflow.pgqueuer_status AS ENUM (
    'queued',
    'picked',
    'successful',
    'exception',
    'canceled',
    'deleted',
    'failed'
);
CREATE FUNCTION pgflow._is_time_zone(p_tz text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    SET search_path TO ''
    AS $$
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
CREATE FUNCTION pgflow.fn_pgqueuer_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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
$$;
CREATE FUNCTION pgflow.health(p_now timestamp with time zone DEFAULT NULL::timestamp with time zone) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $_$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_checks jsonb := '[]'::jsonb;
  v_cron_db text := pg_catalog.current_setting('cron.database_name', true);
  v_preloaded boolean :=
    pg_catalog.current_setting('shared_preload_libraries') ~ '(^|[ ,])pg_cron([ ,]|$)';
begin
  v_checks := v_checks || pg_catalog.jsonb_build_object(
    'name', 'pg_cron',
    'ok', v_preloaded and (v_cron_db <> pg_catalog.current_database()
                           or pg_catalog.to_regclass('cron.job') is not null),
    'detail', case
      when not v_preloaded then 'pg_cron is not in shared_preload_libraries'
      when v_cron_db <> pg_catalog.current_database()
        then pg_catalog.format('cron database is %I; schedule jobs there (README)', v_cron_db)
      when pg_catalog.to_regclass('cron.job') is null then 'extension pg_cron is not created'
      else 'preloaded; extension created'
    end);
  return pg_catalog.jsonb_build_object(
    'now', v_now,
    'checks', v_checks,
    'figures', pg_catalog.jsonb_build_object(
      'contacts', (select pg_catalog.count(*) from pgflow.contacts),
      'enrollments_active',
        (select pg_catalog.count(*) from pgflow.enrollments where status = 'active'),
      'conversations_open',
        (select pg_catalog.count(*) from pgflow.conversations where status <> 'ended'),
      'jobs_queued',
        (select pg_catalog.count(*) from pgflow.pgqueuer where status = 'queued'),
      'dead_letters',
        (select pg_catalog.count(*) from pgflow.messages where delivery_status = 'dead_letter'),
      'alerts_open', (select pg_catalog.count(*) from pgflow.alerts where resolved_at is null)
    ));
end;
$_$;
CREATE TABLE pgflow.agents (
    id bigint NOT NULL,
    name text NOT NULL,
    prompt text NOT NULL,
    model text,
    retell_agent_id text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT agents_name_nonempty CHECK ((name ~ '^\S(.*\S)?$'::text)),
    CONSTRAINT agents_prompt_nonempty CHECK ((length(btrim(prompt)) > 0))
);
ALTER TABLE pgflow.agents ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.agents_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.alerts (
    id bigint NOT NULL,
    kind text NOT NULL,
    severity text DEFAULT 'warning'::text NOT NULL,
    message text NOT NULL,
    details jsonb DEFAULT '{}'::jsonb NOT NULL,
    occurrences integer DEFAULT 1 NOT NULL,
    opened_at timestamp with time zone DEFAULT now() NOT NULL,
    last_seen_at timestamp with time zone DEFAULT now() NOT NULL,
    resolved_at timestamp with time zone,
    notified_at timestamp with time zone,
    CONSTRAINT alerts_resolved_after_open CHECK (((resolved_at IS NULL) OR (resolved_at >= opened_at))),
    CONSTRAINT alerts_severity_valid CHECK ((severity = ANY (ARRAY['info'::text, 'warning'::text, 'critical'::text])))
);
ALTER TABLE pgflow.alerts ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.alerts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.campaign_steps (
    id bigint NOT NULL,
    campaign_id bigint NOT NULL,
    "position" integer NOT NULL,
    delay interval DEFAULT '00:00:00'::interval NOT NULL,
    body text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT campaign_steps_body_length CHECK (((length(btrim(body)) >= 1) AND (length(btrim(body)) <= 1600))),
    CONSTRAINT campaign_steps_delay_nonnegative CHECK ((delay >= '00:00:00'::interval)),
    CONSTRAINT campaign_steps_position_positive CHECK (("position" > 0))
);
ALTER TABLE pgflow.campaign_steps ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.campaign_steps_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.campaigns (
    id bigint NOT NULL,
    slug text NOT NULL,
    name text NOT NULL,
    agent_id bigint NOT NULL,
    from_number text NOT NULL,
    status text DEFAULT 'draft'::text NOT NULL,
    timezone text DEFAULT 'America/New_York'::text NOT NULL,
    window_start time without time zone DEFAULT '09:00:00'::time without time zone NOT NULL,
    window_end time without time zone DEFAULT '20:00:00'::time without time zone NOT NULL,
    window_days smallint[] DEFAULT '{1,2,3,4,5,6}'::smallint[] NOT NULL,
    reply_timeout interval DEFAULT '3 days'::interval NOT NULL,
    silence_timeout interval DEFAULT '24:00:00'::interval NOT NULL,
    daily_cap integer DEFAULT 3 NOT NULL,
    max_attempts integer DEFAULT 6 NOT NULL,
    help_text text,
    opt_out_text text DEFAULT 'You are unsubscribed and will receive no more messages. Reply START to resubscribe.'::text NOT NULL,
    fallbacks jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT campaigns_daily_cap_positive CHECK ((daily_cap > 0)),
    CONSTRAINT campaigns_fallbacks_object CHECK ((jsonb_typeof(fallbacks) = 'object'::text)),
    CONSTRAINT campaigns_from_number_e164 CHECK ((from_number ~ '^\+[1-9][0-9]{6,14}$'::text)),
    CONSTRAINT campaigns_max_attempts_range CHECK (((max_attempts >= 1) AND (max_attempts <= 50))),
    CONSTRAINT campaigns_reply_timeout_positive CHECK ((reply_timeout > '00:00:00'::interval)),
    CONSTRAINT campaigns_silence_timeout_positive CHECK ((silence_timeout > '00:00:00'::interval)),
    CONSTRAINT campaigns_slug_shape CHECK ((slug ~ '^[a-z0-9][a-z0-9_-]{0,62}$'::text)),
    CONSTRAINT campaigns_status_valid CHECK ((status = ANY (ARRAY['draft'::text, 'active'::text, 'paused'::text, 'archived'::text]))),
    CONSTRAINT campaigns_timezone_valid CHECK (pgflow._is_time_zone(timezone)),
    CONSTRAINT campaigns_window_days_valid CHECK ((((cardinality(window_days) >= 1) AND (cardinality(window_days) <= 7)) AND (window_days <@ '{1,2,3,4,5,6,7}'::smallint[]))),
    CONSTRAINT campaigns_window_order CHECK ((window_start < window_end))
);
ALTER TABLE pgflow.campaigns ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.campaigns_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.contacts (
    id bigint NOT NULL,
    phone text NOT NULL,
    first_name text,
    last_name text,
    email text,
    timezone text,
    attributes jsonb DEFAULT '{}'::jsonb NOT NULL,
    opted_out_at timestamp with time zone,
    opt_out_source text,
    consent_at timestamp with time zone,
    consent_source text,
    consent_text text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT contacts_attributes_object CHECK ((jsonb_typeof(attributes) = 'object'::text)),
    CONSTRAINT contacts_email_shape CHECK (((email IS NULL) OR (email ~ '^[^@\s]+@[^@\s]+$'::text))),
    CONSTRAINT contacts_opt_out_consistent CHECK (((opted_out_at IS NULL) = (opt_out_source IS NULL))),
    CONSTRAINT contacts_phone_e164 CHECK ((phone ~ '^\+[1-9][0-9]{6,14}$'::text)),
    CONSTRAINT contacts_timezone_valid CHECK (pgflow._is_time_zone(timezone))
);
ALTER TABLE pgflow.contacts ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.contacts_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.conversations (
    id bigint NOT NULL,
    contact_id bigint NOT NULL,
    campaign_id bigint,
    agent_id bigint,
    enrollment_id bigint,
    from_number text NOT NULL,
    status text DEFAULT 'open'::text NOT NULL,
    conversion_status text,
    outcome_reason text,
    outcome_source text,
    ended_at timestamp with time zone,
    last_inbound_at timestamp with time zone,
    last_outbound_at timestamp with time zone,
    provider_chat_id text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT conversations_conversion_status_valid CHECK ((conversion_status = ANY (ARRAY['success'::text, 'qualified'::text, 'unqualified'::text, 'escalated'::text, 'no_response'::text, 'discarded'::text]))),
    CONSTRAINT conversations_ended_at_iff_ended CHECK (((status = 'ended'::text) = (ended_at IS NOT NULL))),
    CONSTRAINT conversations_ended_has_outcome CHECK (((status <> 'ended'::text) OR ((conversion_status IS NOT NULL) AND (outcome_source IS NOT NULL)))),
    CONSTRAINT conversations_from_number_e164 CHECK ((from_number ~ '^\+[1-9][0-9]{6,14}$'::text)),
    CONSTRAINT conversations_outcome_only_when_ended CHECK (((conversion_status IS NULL) OR (status = 'ended'::text))),
    CONSTRAINT conversations_outcome_source_valid CHECK ((outcome_source = ANY (ARRAY['rule'::text, 'llm'::text, 'human'::text, 'webhook'::text]))),
    CONSTRAINT conversations_status_valid CHECK ((status = ANY (ARRAY['open'::text, 'engaged'::text, 'ended'::text])))
);
ALTER TABLE pgflow.conversations ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.conversations_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.enrollments (
    id bigint NOT NULL,
    contact_id bigint NOT NULL,
    campaign_id bigint NOT NULL,
    status text DEFAULT 'active'::text NOT NULL,
    next_step integer,
    next_message_at timestamp with time zone,
    last_step_sent_at timestamp with time zone,
    enrolled_at timestamp with time zone DEFAULT now() NOT NULL,
    ended_at timestamp with time zone,
    stop_reason text,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT enrollments_active_scheduled CHECK (((status <> 'active'::text) OR ((next_step IS NOT NULL) AND (next_message_at IS NOT NULL)))),
    CONSTRAINT enrollments_ended_consistent CHECK (((status = ANY (ARRAY['completed'::text, 'stopped'::text, 'opted_out'::text])) = (ended_at IS NOT NULL))),
    CONSTRAINT enrollments_next_step_positive CHECK (((next_step IS NULL) OR (next_step > 0))),
    CONSTRAINT enrollments_status_valid CHECK ((status = ANY (ARRAY['active'::text, 'paused'::text, 'completed'::text, 'stopped'::text, 'opted_out'::text]))),
    CONSTRAINT enrollments_stop_reason_given CHECK (((status <> ALL (ARRAY['stopped'::text, 'opted_out'::text])) OR (stop_reason IS NOT NULL)))
);
ALTER TABLE pgflow.enrollments ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.enrollments_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.events (
    id bigint NOT NULL,
    occurred_at timestamp with time zone DEFAULT now() NOT NULL,
    entity text NOT NULL,
    entity_id bigint NOT NULL,
    from_status text,
    to_status text NOT NULL,
    reason text,
    details jsonb,
    CONSTRAINT events_entity_valid CHECK ((entity = ANY (ARRAY['contact'::text, 'enrollment'::text, 'conversation'::text, 'message'::text, 'campaign'::text, 'alert'::text])))
);
ALTER TABLE pgflow.events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.lead_events (
    id bigint NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    source text,
    external_id text,
    campaign_slug text,
    payload jsonb,
    raw_body text,
    result text NOT NULL,
    error_code text,
    error_detail text,
    contact_id bigint,
    enrollment_id bigint,
    CONSTRAINT lead_events_has_body CHECK (((payload IS NOT NULL) OR (raw_body IS NOT NULL))),
    CONSTRAINT lead_events_rejected_has_error CHECK (((result = 'rejected'::text) = (error_code IS NOT NULL))),
    CONSTRAINT lead_events_result_valid CHECK ((result = ANY (ARRAY['created'::text, 'already_enrolled'::text, 'suppressed'::text, 'rejected'::text])))
);
ALTER TABLE pgflow.lead_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.lead_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.messages (
    id bigint NOT NULL,
    conversation_id bigint NOT NULL,
    contact_id bigint NOT NULL,
    direction text NOT NULL,
    kind text NOT NULL,
    body text NOT NULL,
    step_position integer,
    delivery_status text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    delivery_error text,
    provider_message_id text,
    segments integer DEFAULT 1 NOT NULL,
    encoding text DEFAULT 'gsm7'::text NOT NULL,
    dedupe_key text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    send_after timestamp with time zone,
    sent_at timestamp with time zone,
    delivered_at timestamp with time zone,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT messages_attempts_nonnegative CHECK ((attempts >= 0)),
    CONSTRAINT messages_campaign_has_step CHECK (((kind = 'campaign'::text) = (step_position IS NOT NULL))),
    CONSTRAINT messages_delivered_has_time CHECK (((delivery_status <> 'delivered'::text) OR (delivered_at IS NOT NULL))),
    CONSTRAINT messages_delivery_status_valid CHECK ((delivery_status = ANY (ARRAY['pending'::text, 'queued'::text, 'sending'::text, 'sent'::text, 'delivered'::text, 'failed'::text, 'dead_letter'::text, 'suppressed'::text, 'received'::text]))),
    CONSTRAINT messages_direction_valid CHECK ((direction = ANY (ARRAY['outbound'::text, 'inbound'::text]))),
    CONSTRAINT messages_encoding_valid CHECK ((encoding = ANY (ARRAY['gsm7'::text, 'ucs2'::text]))),
    CONSTRAINT messages_inbound_is_lead CHECK (((direction = 'inbound'::text) = (kind = 'lead'::text))),
    CONSTRAINT messages_inbound_received CHECK (((direction = 'inbound'::text) = (delivery_status = 'received'::text))),
    CONSTRAINT messages_kind_valid CHECK ((kind = ANY (ARRAY['campaign'::text, 'agent'::text, 'system'::text, 'human'::text, 'lead'::text]))),
    CONSTRAINT messages_segments_positive CHECK ((segments > 0)),
    CONSTRAINT messages_sent_has_time CHECK (((delivery_status <> ALL (ARRAY['sent'::text, 'delivered'::text])) OR (sent_at IS NOT NULL)))
);
ALTER TABLE pgflow.messages ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.messages_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.pgqueuer (
    id bigint NOT NULL,
    priority integer NOT NULL,
    queue_manager_id uuid,
    created timestamp with time zone DEFAULT now() NOT NULL,
    updated timestamp with time zone DEFAULT now() NOT NULL,
    heartbeat timestamp with time zone DEFAULT now() NOT NULL,
    execute_after timestamp with time zone DEFAULT now() NOT NULL,
    status pgflow.pgqueuer_status NOT NULL,
    entrypoint text NOT NULL,
    dedupe_key text,
    payload bytea,
    headers jsonb,
    attempts integer DEFAULT 0 NOT NULL,
    slot bigint
);
CREATE SEQUENCE pgflow.pgqueuer_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE pgflow.pgqueuer_id_seq OWNED BY pgflow.pgqueuer.id;
CREATE TABLE pgflow.pgqueuer_log (
    id bigint NOT NULL,
    created timestamp with time zone DEFAULT now() NOT NULL,
    job_id bigint NOT NULL,
    status pgflow.pgqueuer_status NOT NULL,
    priority integer NOT NULL,
    entrypoint text NOT NULL,
    traceback jsonb,
    aggregated boolean DEFAULT false
);
ALTER TABLE pgflow.pgqueuer_log ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (
    SEQUENCE NAME pgflow.pgqueuer_log_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.pgqueuer_schedules (
    id bigint NOT NULL,
    expression text NOT NULL,
    entrypoint text NOT NULL,
    heartbeat timestamp with time zone DEFAULT now() NOT NULL,
    created timestamp with time zone DEFAULT now() NOT NULL,
    updated timestamp with time zone DEFAULT now() NOT NULL,
    next_run timestamp with time zone DEFAULT now() NOT NULL,
    last_run timestamp with time zone,
    status pgflow.pgqueuer_status DEFAULT 'queued'::pgflow.pgqueuer_status
);
CREATE SEQUENCE pgflow.pgqueuer_schedules_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE pgflow.pgqueuer_schedules_id_seq OWNED BY pgflow.pgqueuer_schedules.id;
CREATE TABLE pgflow.pgqueuer_statistics (
    id bigint NOT NULL,
    created timestamp with time zone DEFAULT date_trunc('sec'::text, now()) NOT NULL,
    count bigint NOT NULL,
    priority integer NOT NULL,
    status pgflow.pgqueuer_status NOT NULL,
    entrypoint text NOT NULL
);
CREATE SEQUENCE pgflow.pgqueuer_statistics_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE pgflow.pgqueuer_statistics_id_seq OWNED BY pgflow.pgqueuer_statistics.id;
CREATE TABLE pgflow.webhook_deliveries (
    id bigint NOT NULL,
    provider text DEFAULT 'retell'::text NOT NULL,
    delivery_key text NOT NULL,
    event_type text NOT NULL,
    payload jsonb NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    processed_at timestamp with time zone,
    result text,
    error text
);
ALTER TABLE pgflow.webhook_deliveries ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME pgflow.webhook_deliveries_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);
CREATE TABLE pgflow.workers (
    id uuid NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    version text NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    last_seen_at timestamp with time zone DEFAULT now() NOT NULL,
    stopped_at timestamp with time zone
);
ALTER TABLE ONLY pgflow.pgqueuer ALTER COLUMN id SET DEFAULT nextval('pgflow.pgqueuer_id_seq'::regclass);
ALTER TABLE ONLY pgflow.pgqueuer_schedules ALTER COLUMN id SET DEFAULT nextval('pgflow.pgqueuer_schedules_id_seq'::regclass);
ALTER TABLE ONLY pgflow.pgqueuer_statistics ALTER COLUMN id SET DEFAULT nextval('pgflow.pgqueuer_statistics_id_seq'::regclass);
ALTER TABLE ONLY pgflow.agents
    ADD CONSTRAINT agents_name_key UNIQUE (name);
ALTER TABLE ONLY pgflow.agents
    ADD CONSTRAINT agents_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.alerts
    ADD CONSTRAINT alerts_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.campaign_steps
    ADD CONSTRAINT campaign_steps_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.campaign_steps
    ADD CONSTRAINT campaign_steps_position_key UNIQUE (campaign_id, "position");
ALTER TABLE ONLY pgflow.campaigns
    ADD CONSTRAINT campaigns_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.campaigns
    ADD CONSTRAINT campaigns_slug_key UNIQUE (slug);
ALTER TABLE ONLY pgflow.contacts
    ADD CONSTRAINT contacts_phone_key UNIQUE (phone);
ALTER TABLE ONLY pgflow.contacts
    ADD CONSTRAINT contacts_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.conversations
    ADD CONSTRAINT conversations_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.enrollments
    ADD CONSTRAINT enrollments_contact_campaign_key UNIQUE (contact_id, campaign_id);
ALTER TABLE ONLY pgflow.enrollments
    ADD CONSTRAINT enrollments_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.lead_events
    ADD CONSTRAINT lead_events_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.messages
    ADD CONSTRAINT messages_dedupe_key_key UNIQUE (dedupe_key);
ALTER TABLE ONLY pgflow.messages
    ADD CONSTRAINT messages_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.pgqueuer_log
    ADD CONSTRAINT pgqueuer_log_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.pgqueuer
    ADD CONSTRAINT pgqueuer_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.pgqueuer_schedules
    ADD CONSTRAINT pgqueuer_schedules_expression_entrypoint_key UNIQUE (expression, entrypoint);
ALTER TABLE ONLY pgflow.pgqueuer_schedules
    ADD CONSTRAINT pgqueuer_schedules_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.pgqueuer_statistics
    ADD CONSTRAINT pgqueuer_statistics_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (id);
ALTER TABLE ONLY pgflow.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_provider_key UNIQUE (provider, delivery_key);
ALTER TABLE ONLY pgflow.workers
    ADD CONSTRAINT workers_pkey PRIMARY KEY (id);
CREATE UNIQUE INDEX alerts_one_open_per_kind ON pgflow.alerts USING btree (kind) WHERE (resolved_at IS NULL);
CREATE INDEX alerts_opened_at_idx ON pgflow.alerts USING btree (opened_at);
CREATE INDEX campaigns_agent_id_idx ON pgflow.campaigns USING btree (agent_id);
CREATE INDEX conversations_agent_id_idx ON pgflow.conversations USING btree (agent_id);
CREATE INDEX conversations_campaign_id_idx ON pgflow.conversations USING btree (campaign_id);
CREATE INDEX conversations_contact_id_idx ON pgflow.conversations USING btree (contact_id);
CREATE INDEX conversations_enrollment_id_idx ON pgflow.conversations USING btree (enrollment_id);
CREATE UNIQUE INDEX conversations_one_live_per_line ON pgflow.conversations USING btree (contact_id, from_number) WHERE (status <> 'ended'::text);
CREATE INDEX enrollments_campaign_id_idx ON pgflow.enrollments USING btree (campaign_id);
CREATE INDEX enrollments_due_idx ON pgflow.enrollments USING btree (next_message_at) WHERE (status = 'active'::text);
CREATE INDEX events_entity_idx ON pgflow.events USING btree (entity, entity_id, occurred_at);
CREATE INDEX events_occurred_at_idx ON pgflow.events USING btree (occurred_at);
CREATE INDEX lead_events_contact_id_idx ON pgflow.lead_events USING btree (contact_id);
CREATE INDEX lead_events_enrollment_id_idx ON pgflow.lead_events USING btree (enrollment_id);
CREATE INDEX lead_events_external_idx ON pgflow.lead_events USING btree (source, external_id) WHERE (external_id IS NOT NULL);
CREATE INDEX lead_events_received_at_idx ON pgflow.lead_events USING btree (received_at);
CREATE INDEX messages_contact_id_idx ON pgflow.messages USING btree (contact_id, created_at);
CREATE INDEX messages_conversation_id_idx ON pgflow.messages USING btree (conversation_id, created_at);
CREATE INDEX messages_dead_letter_idx ON pgflow.messages USING btree (updated_at) WHERE (delivery_status = 'dead_letter'::text);
CREATE INDEX messages_provider_message_id_idx ON pgflow.messages USING btree (provider_message_id) WHERE (provider_message_id IS NOT NULL);
CREATE INDEX pgqueuer_ep_ea_idx ON pgflow.pgqueuer USING btree (entrypoint, execute_after) WHERE (status = 'queued'::pgflow.pgqueuer_status);
CREATE INDEX pgqueuer_ep_prio_id_idx ON pgflow.pgqueuer USING btree (entrypoint, priority DESC, id) WHERE (status = 'queued'::pgflow.pgqueuer_status);
CREATE INDEX pgqueuer_log_created ON pgflow.pgqueuer_log USING btree (created);
CREATE INDEX pgqueuer_log_job_id_status ON pgflow.pgqueuer_log USING btree (job_id, created DESC);
CREATE INDEX pgqueuer_log_not_aggregated ON pgflow.pgqueuer_log USING btree ((1)) WHERE (NOT aggregated);
CREATE INDEX pgqueuer_log_status ON pgflow.pgqueuer_log USING btree (status);
CREATE INDEX pgqueuer_picked_heartbeat_idx ON pgflow.pgqueuer USING btree (heartbeat) WHERE (status = 'picked'::pgflow.pgqueuer_status);
CREATE UNIQUE INDEX pgqueuer_picked_slot_idx ON pgflow.pgqueuer USING btree (entrypoint, slot) WHERE ((status = 'picked'::pgflow.pgqueuer_status) AND (slot IS NOT NULL));
CREATE INDEX pgqueuer_priority_id_id1_idx ON pgflow.pgqueuer USING btree (priority, id DESC) INCLUDE (id) WHERE (status = 'queued'::pgflow.pgqueuer_status);
CREATE INDEX pgqueuer_queue_manager_id_idx ON pgflow.pgqueuer USING btree (queue_manager_id) WHERE (queue_manager_id IS NOT NULL);
CREATE UNIQUE INDEX pgqueuer_statistics_unique_count ON pgflow.pgqueuer_statistics USING btree (priority, date_trunc('sec'::text, timezone('UTC'::text, created)), status, entrypoint);
CREATE UNIQUE INDEX pgqueuer_unique_dedupe_key ON pgflow.pgqueuer USING btree (dedupe_key) WHERE ((status = ANY (ARRAY['queued'::pgflow.pgqueuer_status, 'picked'::pgflow.pgqueuer_status])) AND (dedupe_key IS NOT NULL));
CREATE INDEX pgqueuer_updated_id_id1_idx ON pgflow.pgqueuer USING btree (updated, id DESC) INCLUDE (id) WHERE (status = 'picked'::pgflow.pgqueuer_status);
CREATE INDEX webhook_deliveries_received_at_idx ON pgflow.webhook_deliveries USING btree (received_at);
CREATE INDEX workers_last_seen_at_idx ON pgflow.workers USING btree (last_seen_at);
CREATE TRIGGER tg_pgqueuer_changed AFTER INSERT OR DELETE OR UPDATE OR TRUNCATE ON pgflow.pgqueuer FOR EACH STATEMENT EXECUTE FUNCTION pgflow.fn_pgqueuer_changed();
ALTER TABLE ONLY pgflow.campaign_steps
    ADD CONSTRAINT campaign_steps_campaign_id_fkey FOREIGN KEY (campaign_id) REFERENCES pgflow.campaigns(id) ON DELETE CASCADE;
ALTER TABLE ONLY pgflow.campaigns
    ADD CONSTRAINT campaigns_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES pgflow.agents(id);
ALTER TABLE ONLY pgflow.conversations
    ADD CONSTRAINT conversations_agent_id_fkey FOREIGN KEY (agent_id) REFERENCES pgflow.agents(id);
ALTER TABLE ONLY pgflow.conversations
    ADD CONSTRAINT conversations_campaign_id_fkey FOREIGN KEY (campaign_id) REFERENCES pgflow.campaigns(id);
ALTER TABLE ONLY pgflow.conversations
    ADD CONSTRAINT conversations_contact_id_fkey FOREIGN KEY (contact_id) REFERENCES pgflow.contacts(id);
ALTER TABLE ONLY pgflow.conversations
    ADD CONSTRAINT conversations_enrollment_id_fkey FOREIGN KEY (enrollment_id) REFERENCES pgflow.enrollments(id);
ALTER TABLE ONLY pgflow.enrollments
    ADD CONSTRAINT enrollments_campaign_id_fkey FOREIGN KEY (campaign_id) REFERENCES pgflow.campaigns(id);
ALTER TABLE ONLY pgflow.enrollments
    ADD CONSTRAINT enrollments_contact_id_fkey FOREIGN KEY (contact_id) REFERENCES pgflow.contacts(id);
ALTER TABLE ONLY pgflow.lead_events
    ADD CONSTRAINT lead_events_contact_id_fkey FOREIGN KEY (contact_id) REFERENCES pgflow.contacts(id);
ALTER TABLE ONLY pgflow.lead_events
    ADD CONSTRAINT lead_events_enrollment_id_fkey FOREIGN KEY (enrollment_id) REFERENCES pgflow.enrollments(id);
ALTER TABLE ONLY pgflow.messages
    ADD CONSTRAINT messages_contact_id_fkey FOREIGN KEY (contact_id) REFERENCES pgflow.contacts(id);
ALTER TABLE ONLY pgflow.messages
    ADD CONSTRAINT messages_conversation_id_fkey FOREIGN KEY (conversation_id) REFERENCES pgflow.conversations(id);
