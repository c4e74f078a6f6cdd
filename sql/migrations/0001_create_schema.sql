-- Schema pgflow: contacts, agents, campaigns, steps, enrollments, conversations, messages, audit.
-- depends:

create schema if not exists pgflow;

-- True when the text names a time zone this server knows (IANA). Used by CHECK constraints.
create function pgflow._is_time_zone(p_tz text) returns boolean
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

create table pgflow.contacts (
  id bigint generated always as identity primary key,
  phone text not null,
  first_name text,
  last_name text,
  email text,
  timezone text,
  attributes jsonb not null default '{}'::jsonb,
  opted_out_at timestamptz,
  opt_out_source text,
  consent_at timestamptz,
  consent_source text,
  consent_text text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint contacts_phone_key unique (phone),
  constraint contacts_phone_e164 check (phone ~ '^\+[1-9][0-9]{6,14}$'),
  constraint contacts_timezone_valid check (pgflow._is_time_zone(timezone)),
  constraint contacts_attributes_object check (jsonb_typeof(attributes) = 'object'),
  constraint contacts_opt_out_consistent check ((opted_out_at is null) = (opt_out_source is null)),
  constraint contacts_email_shape check (email is null or email ~ '^[^@\s]+@[^@\s]+$')
);

create table pgflow.agents (
  id bigint generated always as identity primary key,
  name text not null,
  prompt text not null,
  model text,
  retell_agent_id text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint agents_name_key unique (name),
  constraint agents_name_nonempty check (name ~ '^\S(.*\S)?$'),
  constraint agents_prompt_nonempty check (length(btrim(prompt)) > 0)
);

create table pgflow.campaigns (
  id bigint generated always as identity primary key,
  slug text not null,
  name text not null,
  agent_id bigint not null references pgflow.agents (id),
  from_number text not null,
  status text not null default 'draft',
  timezone text not null default 'America/New_York',
  window_start time not null default '09:00',
  window_end time not null default '20:00',
  window_days smallint[] not null default '{1,2,3,4,5,6}',
  reply_timeout interval not null default '3 days',
  silence_timeout interval not null default '24 hours',
  daily_cap integer not null default 3,
  max_attempts integer not null default 6,
  help_text text,
  opt_out_text text not null
    default 'You are unsubscribed and will receive no more messages. Reply START to resubscribe.',
  fallbacks jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint campaigns_slug_key unique (slug),
  constraint campaigns_slug_shape check (slug ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  constraint campaigns_status_valid check (status in ('draft', 'active', 'paused', 'archived')),
  constraint campaigns_from_number_e164 check (from_number ~ '^\+[1-9][0-9]{6,14}$'),
  constraint campaigns_timezone_valid check (pgflow._is_time_zone(timezone)),
  constraint campaigns_window_order check (window_start < window_end),
  constraint campaigns_window_days_valid check (
    cardinality(window_days) between 1 and 7 and window_days <@ '{1,2,3,4,5,6,7}'::smallint[]
  ),
  constraint campaigns_reply_timeout_positive check (reply_timeout > interval '0'),
  constraint campaigns_silence_timeout_positive check (silence_timeout > interval '0'),
  constraint campaigns_daily_cap_positive check (daily_cap > 0),
  constraint campaigns_max_attempts_range check (max_attempts between 1 and 50),
  constraint campaigns_fallbacks_object check (jsonb_typeof(fallbacks) = 'object')
);
create index campaigns_agent_id_idx on pgflow.campaigns (agent_id);

create table pgflow.campaign_steps (
  id bigint generated always as identity primary key,
  campaign_id bigint not null references pgflow.campaigns (id) on delete cascade,
  position integer not null,
  delay interval not null default '0',
  body text not null,
  created_at timestamptz not null default now(),
  constraint campaign_steps_position_key unique (campaign_id, position),
  constraint campaign_steps_position_positive check (position > 0),
  constraint campaign_steps_delay_nonnegative check (delay >= interval '0'),
  constraint campaign_steps_body_length check (length(btrim(body)) between 1 and 1600)
);

create table pgflow.enrollments (
  id bigint generated always as identity primary key,
  contact_id bigint not null references pgflow.contacts (id),
  campaign_id bigint not null references pgflow.campaigns (id),
  status text not null default 'active',
  next_step integer,
  next_message_at timestamptz,
  last_step_sent_at timestamptz,
  enrolled_at timestamptz not null default now(),
  ended_at timestamptz,
  stop_reason text,
  updated_at timestamptz not null default now(),
  constraint enrollments_contact_campaign_key unique (contact_id, campaign_id),
  constraint enrollments_status_valid
    check (status in ('active', 'paused', 'completed', 'stopped', 'opted_out')),
  constraint enrollments_active_scheduled
    check (status <> 'active' or (next_step is not null and next_message_at is not null)),
  constraint enrollments_next_step_positive check (next_step is null or next_step > 0),
  constraint enrollments_ended_consistent
    check ((status in ('completed', 'stopped', 'opted_out')) = (ended_at is not null)),
  constraint enrollments_stop_reason_given
    check (status not in ('stopped', 'opted_out') or stop_reason is not null)
);
create index enrollments_campaign_id_idx on pgflow.enrollments (campaign_id);
-- The tick's due scan: only active enrollments, in due order.
create index enrollments_due_idx on pgflow.enrollments (next_message_at)
  where status = 'active';

create table pgflow.conversations (
  id bigint generated always as identity primary key,
  contact_id bigint not null references pgflow.contacts (id),
  campaign_id bigint references pgflow.campaigns (id),
  agent_id bigint references pgflow.agents (id),
  enrollment_id bigint references pgflow.enrollments (id),
  from_number text not null,
  status text not null default 'open',
  conversion_status text,
  outcome_reason text,
  outcome_source text,
  ended_at timestamptz,
  last_inbound_at timestamptz,
  last_outbound_at timestamptz,
  provider_chat_id text,
  reply_deadline_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint conversations_reply_deadline_only_open
    check (reply_deadline_at is null or status = 'open'),
  constraint conversations_status_valid check (status in ('open', 'engaged', 'ended')),
  constraint conversations_conversion_status_valid check (
    conversion_status in
      ('success', 'qualified', 'unqualified', 'escalated', 'no_response', 'discarded')
  ),
  constraint conversations_outcome_source_valid
    check (outcome_source in ('rule', 'llm', 'human', 'webhook')),
  constraint conversations_ended_at_iff_ended check ((status = 'ended') = (ended_at is not null)),
  constraint conversations_outcome_only_when_ended
    check (conversion_status is null or status = 'ended'),
  constraint conversations_ended_has_outcome
    check (status <> 'ended' or (conversion_status is not null and outcome_source is not null)),
  constraint conversations_from_number_e164 check (from_number ~ '^\+[1-9][0-9]{6,14}$')
);
create index conversations_contact_id_idx on pgflow.conversations (contact_id);
create index conversations_campaign_id_idx on pgflow.conversations (campaign_id);
create index conversations_agent_id_idx on pgflow.conversations (agent_id);
create index conversations_enrollment_id_idx on pgflow.conversations (enrollment_id);
-- At most one conversation not yet ended per contact and sending number.
create unique index conversations_one_live_per_line
  on pgflow.conversations (contact_id, from_number) where status <> 'ended';
-- The tick's no-response scan: open conversations whose last step has gone unanswered.
create index conversations_reply_deadline_idx on pgflow.conversations (reply_deadline_at)
  where status = 'open' and reply_deadline_at is not null;

create table pgflow.messages (
  id bigint generated always as identity primary key,
  conversation_id bigint not null references pgflow.conversations (id),
  contact_id bigint not null references pgflow.contacts (id),
  -- the drip a campaign message belongs to (a line may carry several campaigns)
  enrollment_id bigint references pgflow.enrollments (id),
  direction text not null,
  kind text not null,
  body text not null,
  step_position integer,
  delivery_status text not null,
  attempts integer not null default 0,
  delivery_error text,
  provider_message_id text,
  segments integer not null default 1,
  encoding text not null default 'gsm7',
  dedupe_key text not null,
  created_at timestamptz not null default now(),
  send_after timestamptz,
  sent_at timestamptz,
  delivered_at timestamptz,
  updated_at timestamptz not null default now(),
  constraint messages_dedupe_key_key unique (dedupe_key),
  constraint messages_direction_valid check (direction in ('outbound', 'inbound')),
  constraint messages_kind_valid check (kind in ('campaign', 'agent', 'system', 'human', 'lead')),
  constraint messages_inbound_is_lead check ((direction = 'inbound') = (kind = 'lead')),
  constraint messages_delivery_status_valid check (
    delivery_status in ('pending', 'queued', 'sending', 'sent', 'delivered', 'failed',
                        'dead_letter', 'suppressed', 'received')
  ),
  constraint messages_inbound_received
    check ((direction = 'inbound') = (delivery_status = 'received')),
  constraint messages_campaign_has_step check ((kind = 'campaign') = (step_position is not null)),
  constraint messages_campaign_has_enrollment check (kind <> 'campaign' or enrollment_id is not null),
  constraint messages_sent_has_time
    check (delivery_status not in ('sent', 'delivered') or sent_at is not null),
  constraint messages_delivered_has_time
    check (delivery_status <> 'delivered' or delivered_at is not null),
  constraint messages_attempts_nonnegative check (attempts >= 0),
  constraint messages_segments_positive check (segments > 0),
  constraint messages_encoding_valid check (encoding in ('gsm7', 'ucs2'))
);
create index messages_conversation_id_idx on pgflow.messages (conversation_id, created_at);
create index messages_contact_id_idx on pgflow.messages (contact_id, created_at);
create index messages_enrollment_id_idx on pgflow.messages (enrollment_id);
create index messages_dead_letter_idx on pgflow.messages (updated_at)
  where delivery_status = 'dead_letter';
create index messages_provider_message_id_idx on pgflow.messages (provider_message_id)
  where provider_message_id is not null;

create table pgflow.lead_events (
  id bigint generated always as identity primary key,
  received_at timestamptz not null default now(),
  source text,
  external_id text,
  campaign_slug text,
  payload jsonb,
  raw_body text,
  result text not null,
  error_code text,
  error_detail text,
  contact_id bigint references pgflow.contacts (id),
  enrollment_id bigint references pgflow.enrollments (id),
  constraint lead_events_result_valid
    check (result in ('created', 'already_enrolled', 'suppressed', 'rejected')),
  constraint lead_events_rejected_has_error check ((result = 'rejected') = (error_code is not null)),
  constraint lead_events_has_body check (payload is not null or raw_body is not null)
);
create index lead_events_received_at_idx on pgflow.lead_events (received_at);
create index lead_events_contact_id_idx on pgflow.lead_events (contact_id);
create index lead_events_enrollment_id_idx on pgflow.lead_events (enrollment_id);
create index lead_events_external_idx on pgflow.lead_events (source, external_id)
  where external_id is not null;

create table pgflow.webhook_deliveries (
  id bigint generated always as identity primary key,
  provider text not null default 'retell',
  delivery_key text not null,
  event_type text not null,
  payload jsonb not null,
  received_at timestamptz not null default now(),
  processed_at timestamptz,
  result text,
  error text,
  constraint webhook_deliveries_provider_key unique (provider, delivery_key)
);
create index webhook_deliveries_received_at_idx on pgflow.webhook_deliveries (received_at);

-- Append-only audit trail. No foreign keys on purpose: it outlives and outgrows what it records.
create table pgflow.events (
  id bigint generated always as identity primary key,
  occurred_at timestamptz not null default now(),
  entity text not null,
  entity_id bigint not null,
  from_status text,
  to_status text not null,
  reason text,
  details jsonb,
  constraint events_entity_valid
    check (entity in ('contact', 'enrollment', 'conversation', 'message', 'campaign', 'alert'))
);
create index events_entity_idx on pgflow.events (entity, entity_id, occurred_at);
create index events_occurred_at_idx on pgflow.events (occurred_at);

create table pgflow.alerts (
  id bigint generated always as identity primary key,
  kind text not null,
  severity text not null default 'warning',
  message text not null,
  details jsonb not null default '{}'::jsonb,
  occurrences integer not null default 1,
  opened_at timestamptz not null default now(),
  last_seen_at timestamptz not null default now(),
  resolved_at timestamptz,
  notified_at timestamptz,
  constraint alerts_severity_valid check (severity in ('info', 'warning', 'critical')),
  constraint alerts_resolved_after_open check (resolved_at is null or resolved_at >= opened_at)
);
-- At most one open alert per kind.
create unique index alerts_one_open_per_kind on pgflow.alerts (kind) where resolved_at is null;
create index alerts_opened_at_idx on pgflow.alerts (opened_at);

create table pgflow.workers (
  id uuid primary key,
  host text not null,
  pid integer not null,
  version text not null,
  started_at timestamptz not null default now(),
  last_seen_at timestamptz not null default now(),
  stopped_at timestamptz
);
create index workers_last_seen_at_idx on pgflow.workers (last_seen_at);
