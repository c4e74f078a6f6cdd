-- The console's tables: its users, their sessions and sign-in attempts, the audit trail of what people do, a person's hold on a lead, and why a queued message waits.
-- depends: 0020_drop_unused_functions

-- People who sign in to the console. Passwords are scrypt hashes written by the CLI or
-- the console (pgflow/web/console/passwords.py); the database never sees a password.
create table pgflow.console_users (
  id bigint generated always as identity primary key,
  email text not null,
  role text not null,
  password_hash text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  disabled_at timestamptz,
  constraint console_users_email_key unique (email),
  constraint console_users_email_shape
    check (email ~ '^[^@\s]+@[^@\s]+$' and email = lower(email) and length(email) <= 254),
  constraint console_users_role_valid check (role in ('agent', 'manager', 'admin')),
  constraint console_users_password_hash_scrypt check (password_hash like 'scrypt$%')
);

-- A signed-in browser. The cookie carries a random token; only its SHA-256 is stored, so a
-- copy of this table signs nobody in. Sessions expire when idle and at an absolute age.
create table pgflow.console_sessions (
  id bigint generated always as identity primary key,
  user_id bigint not null references pgflow.console_users (id) on delete cascade,
  token_hash bytea not null,
  created_at timestamptz not null,
  last_seen_at timestamptz not null,
  expires_at timestamptz not null,
  revoked_at timestamptz,
  ip text,
  user_agent text,
  constraint console_sessions_token_hash_key unique (token_hash),
  constraint console_sessions_token_hash_length check (length(token_hash) = 32),
  constraint console_sessions_expiry_after_start check (expires_at > created_at)
);
create index console_sessions_user_id_idx on pgflow.console_sessions (user_id);
create index console_sessions_expires_at_idx on pgflow.console_sessions (expires_at);

-- Every sign-in attempt, known email or not: repeated failures throttle that email.
create table pgflow.console_sign_ins (
  id bigint generated always as identity primary key,
  email text not null,
  ok boolean not null,
  ip text,
  attempted_at timestamptz not null
);
create index console_sign_ins_email_idx on pgflow.console_sign_ins (email, attempted_at);
create index console_sign_ins_attempted_at_idx on pgflow.console_sign_ins (attempted_at);

-- What people did: who, what, when, on which conversation. Written by the functions that
-- carry out the action, in the same transaction.
create table pgflow.audit_log (
  id bigint generated always as identity primary key,
  occurred_at timestamptz not null default now(),
  actor text not null,
  user_id bigint references pgflow.console_users (id) on delete set null,
  action text not null,
  conversation_id bigint references pgflow.conversations (id) on delete set null,
  contact_id bigint references pgflow.contacts (id) on delete set null,
  detail jsonb not null default '{}',
  constraint audit_log_action_valid check (action in (
    'sign_in', 'sign_out', 'takeover', 'hand_back', 'reply', 'set_outcome',
    'requeue', 'discard', 'user_add', 'user_disable', 'user_password', 'sessions_revoke')),
  constraint audit_log_detail_object check (jsonb_typeof(detail) = 'object'),
  constraint audit_log_actor_present check (length(btrim(actor)) > 0)
);
create index audit_log_user_id_idx on pgflow.audit_log (user_id);
create index audit_log_conversation_id_idx on pgflow.audit_log (conversation_id);
create index audit_log_contact_id_idx on pgflow.audit_log (contact_id);

-- A person's hold on a lead: while held_at is set no AI text reaches the lead, on any
-- conversation or line. An escalation sets held_at alone (waiting for a person); a person
-- taking over sets held_by too; handing back clears both.
alter table pgflow.contacts
  add column held_at timestamptz,
  add column held_by text,
  add constraint contacts_held_by_needs_hold check (held_by is null or held_at is not null);
create index contacts_held_idx on pgflow.contacts (held_at) where held_at is not null;

-- Why a queued message waits (the send window, a paused drip, the number's limits), for the
-- console's drip timeline; cleared when it is sent.
alter table pgflow.messages add column deferred_reason text;

-- The console's live pages poll "anything new since" on these.
grant select on pgflow.audit_log to pgflow_reader;
