-- Proof of consent (every consent a lead gave, with the request it came with, kept at least four years), erasure on request (who asked, when, what was removed), and the suppression of a forgotten number by a keyed hash.
-- depends: 0029_create_state_rules

-- Every consent given: when, where, the exact disclosure text, and the lead request it came
-- with (kept here: lead_events are pruned, consent records are not).
create table pgflow.consents (
  id bigint generated always as identity primary key,
  contact_id bigint not null references pgflow.contacts,
  given_at timestamptz not null,
  source text,
  disclosure text,
  ip text,
  user_agent text,
  request jsonb,
  lead_event_id bigint,
  recorded_at timestamptz not null default now()
);
create index consents_contact_idx on pgflow.consents (contact_id, given_at);

-- The consents the contacts hold now (one per contact before this table).
insert into pgflow.consents (contact_id, given_at, source, disclosure, recorded_at)
select id, consent_at, consent_source, consent_text, updated_at
  from pgflow.contacts where consent_at is not null;

-- A forgotten contact keeps its row (the funnel counts it) but no phone: the row says when
-- it was forgotten.
alter table pgflow.contacts
  add column forgotten_at timestamptz,
  alter column phone drop not null,
  add constraint contacts_phone_or_forgotten check (phone is not null or forgotten_at is not null);

-- Numbers that must never be texted again though their contact is gone: a keyed hash of the
-- number (pgflow.secrets 'phone_hash_key'), never the number.
create table pgflow.suppressions (
  phone_hash bytea primary key,
  suppressed_at timestamptz not null,
  source text not null,
  forgotten_at timestamptz
);

-- Who asked that a person be forgotten, when, and what was removed.
create table pgflow.erasures (
  id bigint generated always as identity primary key,
  contact_id bigint not null references pgflow.contacts,
  requested_by text not null,
  reason text,
  erased_at timestamptz not null,
  removed jsonb not null default '{}'
);
create index erasures_contact_idx on pgflow.erasures (contact_id);

-- Keys only the schema's functions read (no role has any privilege on this table).
create table pgflow.secrets (
  name text primary key,
  value bytea not null
);
insert into pgflow.secrets (name, value)
values ('phone_hash_key',
        uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));
revoke all on pgflow.secrets from public;

grant select on pgflow.consents, pgflow.erasures to pgflow_reader;
