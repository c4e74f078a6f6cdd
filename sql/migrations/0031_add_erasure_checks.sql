-- Erasure's values and invariants: 'erasure' as an opt-out and suppression source, 'forget' as an audited action, the keyed hash of the number on each erasure (proof of consent stays findable by number), and a forgotten contact that holds no personal data (checked as NOT VALID; 0033 validates it).
-- depends: 0030_create_consents

-- An erasure request is also a request never to be texted again: its opt-out is recorded
-- with source 'erasure' (when the contact had not opted out already).
alter table pgflow.opt_outs drop constraint opt_outs_source_valid,
  add constraint opt_outs_source_valid
  check (source in ('keyword', 'phrase', 'llm', 'operator', 'import', 'webhook', 'carrier',
                    'erasure'));

-- A suppression carries the forgotten contact's opt-out source, or 'erasure'.
alter table pgflow.suppressions
  add constraint suppressions_source_valid
  check (source in ('keyword', 'phrase', 'llm', 'operator', 'import', 'webhook', 'carrier',
                    'erasure')),
  add constraint suppressions_hash_length check (pg_catalog.length(phone_hash) = 32);

-- `pgflow contacts forget` is audited like a person's other actions.
alter table pgflow.audit_log drop constraint audit_log_action_valid,
  add constraint audit_log_action_valid check (action in (
    'sign_in', 'sign_out', 'takeover', 'hand_back', 'reply', 'set_outcome',
    'requeue', 'discard', 'user_add', 'user_disable', 'user_password', 'sessions_revoke',
    'forget'));

-- The keyed hash of the forgotten number (as in suppressions): contact_consent() finds a
-- forgotten contact's consents by the number without keeping the number.
alter table pgflow.erasures
  add column phone_hash bytea
    constraint erasures_hash_length check (pg_catalog.length(phone_hash) = 32);
create index erasures_phone_hash_idx on pgflow.erasures (phone_hash);

-- A forgotten contact keeps its row for the counts and nothing that names the person; it
-- is never texted again. NOT VALID: new and updated rows are checked at once, the
-- existing rows by 0033's VALIDATE (no long exclusive lock on a big table).
alter table pgflow.contacts
  add constraint contacts_forgotten_is_empty check (
    forgotten_at is null
    or (phone is null and first_name is null and last_name is null and email is null
        and attributes = '{}'::jsonb and held_by is null and opted_out_at is not null))
  not valid;
