-- Inbound and outcomes: sending numbers (with their default inbound agent), opt-out history, chat ids, outcome signals and review, agent and campaign settings.
-- depends: 0011_create_contact_report

-- Every number we send from. A campaign's from_number is registered when the campaign is
-- applied; `inbound_agent_id` answers leads who text the number without a conversation.
create table pgflow.sending_numbers (
  id bigint generated always as identity primary key,
  number text not null,
  inbound_agent_id bigint references pgflow.agents (id),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint sending_numbers_number_key unique (number),
  constraint sending_numbers_number_e164 check (number ~ '^\+[1-9][0-9]{6,14}$')
);
create index sending_numbers_inbound_agent_id_idx on pgflow.sending_numbers (inbound_agent_id);

-- A sending number is a resource with carrier limits: messages per second and segments per
-- (UTC) day. NULL is no limit. A claim over a limit is deferred, never dropped; next_slot_at
-- is the next free instant under per_second (reserved by the claims that wait for it).
alter table pgflow.sending_numbers
  add column per_second numeric,
  add column daily_segments integer,
  add column next_slot_at timestamptz,
  add constraint sending_numbers_per_second_positive check (per_second > 0 and per_second <= 1000),
  add constraint sending_numbers_daily_segments_positive check (daily_segments > 0);

-- A campaign's pool of sending numbers (its from_number is always one of them). A new
-- conversation takes one number of the pool and keeps it: the sticky sender.
create table pgflow.campaign_numbers (
  campaign_id bigint not null references pgflow.campaigns (id) on delete cascade,
  number text not null references pgflow.sending_numbers (number),
  position smallint not null,
  primary key (campaign_id, number),
  constraint campaign_numbers_position_key unique (campaign_id, position),
  constraint campaign_numbers_position_positive check (position > 0)
);
create index campaign_numbers_number_idx on pgflow.campaign_numbers (number);

-- However a campaign is written, its from_number is a sending number in its pool.
create function pgflow._pool_from_number() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  insert into pgflow.sending_numbers (number) values (new.from_number)
  on conflict (number) do nothing;
  insert into pgflow.campaign_numbers (campaign_id, number, position)
  select new.id, new.from_number, coalesce(pg_catalog.max(position), 0) + 1
    from pgflow.campaign_numbers where campaign_id = new.id
  on conflict (campaign_id, number) do nothing;
  return null;
end;
$$;
create trigger campaigns_pool_from_number
  after insert or update of from_number on pgflow.campaigns
  for each row execute function pgflow._pool_from_number();
revoke execute on function pgflow._pool_from_number() from public;

-- What each number sent per UTC day: claimed sends (every attempt counts), their segments.
-- Spread over 8 rows a day (shard = message id % 8) so that concurrent claims do not queue
-- on one row; a number with a limit is read (summed) under its sending_numbers row lock.
create table pgflow.number_usage (
  number text not null references pgflow.sending_numbers (number),
  day date not null,
  shard smallint not null,
  messages integer not null default 0,
  segments integer not null default 0,
  primary key (number, day, shard),
  constraint number_usage_shard_range check (shard between 0 and 7),
  constraint number_usage_counts_nonnegative check (messages >= 0 and segments >= 0)
);

-- The per-second slot a deferred message reserved: when it comes back it sends without
-- taking another.
alter table pgflow.messages add column number_slot_at timestamptz;

-- Every opt-out and opt-in, kept for compliance (never pruned): who, how, their words.
create table pgflow.opt_outs (
  id bigint generated always as identity primary key,
  contact_id bigint not null references pgflow.contacts (id),
  action text not null,
  source text not null,
  message_id bigint references pgflow.messages (id),
  text text,
  occurred_at timestamptz not null default now(),
  constraint opt_outs_action_valid check (action in ('opt_out', 'opt_in')),
  constraint opt_outs_source_valid
    check (source in ('keyword', 'phrase', 'llm', 'operator', 'import', 'webhook'))
);
create index opt_outs_contact_id_idx on pgflow.opt_outs (contact_id, occurred_at);
create index opt_outs_message_id_idx on pgflow.opt_outs (message_id);

-- Messages of a provider chat: the chat and the provider's own id of the message in it, so
-- a transcript delivered many times records each message once.
-- `intent` is what the rules (or the LLM) made of an inbound text: opt_out, opt_in, help,
-- human, maybe_opt_out (waiting for the LLM's judgment), or none.
alter table pgflow.messages
  add column chat_id text,
  add column chat_message_id text,
  add column intent text,
  add constraint messages_intent_valid
    check (intent in ('opt_out', 'opt_in', 'help', 'human', 'maybe_opt_out', 'none')),
  add constraint messages_intent_inbound check (intent is null or direction = 'inbound');

-- The state of the conversation's current provider chat, and agent bookkeeping.
alter table pgflow.conversations
  add column chat_status text,
  add column engaged_at timestamptz,
  add column agent_turns integer not null default 0,
  add constraint conversations_chat_status_valid check (chat_status in ('ongoing', 'ended')),
  add constraint conversations_agent_turns_nonnegative check (agent_turns >= 0);

-- Outcomes: `retell` joins the sources (chat_analyzed's own conversion_status); a
-- conversation may wait for a person's review (classification failed, unsure, or two
-- signals disagree) whether or not it has ended; a quiet one is asked to be classified
-- once; an agent's closing reply (a booking, a handover) is still sent after the end.
alter table pgflow.conversations
  drop constraint conversations_outcome_source_valid,
  add constraint conversations_outcome_source_valid
    check (outcome_source in ('rule', 'llm', 'human', 'webhook', 'retell')) not valid,
  add column review_reason text,
  add column review_requested_at timestamptz,
  add column classify_requested_at timestamptz,
  add column closing_message_id bigint,
  add constraint conversations_review_consistent
    check ((review_reason is null) = (review_requested_at is null));

-- Every opinion on a conversation's outcome, kept side by side: the rules', the LLM's (per
-- transcript: classifying the same transcript again writes nothing), Retell's analysis,
-- a business event's, a person's.
create table pgflow.outcome_signals (
  id bigint generated always as identity primary key,
  conversation_id bigint not null references pgflow.conversations (id),
  source text not null,
  status text not null,
  reason text,
  confidence numeric(4, 3),
  model text,
  transcript_hash text not null default '',
  created_at timestamptz not null default now(),
  constraint outcome_signals_source_valid
    check (source in ('rule', 'llm', 'human', 'webhook', 'retell')),
  constraint outcome_signals_status_valid check (
    status in ('success', 'qualified', 'unqualified', 'escalated', 'no_response', 'discarded')
  ),
  constraint outcome_signals_confidence_range check (confidence between 0 and 1),
  constraint outcome_signals_once_per_transcript
    unique (conversation_id, source, transcript_hash)
);

-- What a webhook was answered with (a retried chat_inbound gets the same answer).
alter table pgflow.webhook_deliveries add column response jsonb;

-- Agent settings: at most this many agent replies per conversation; lead texts that
-- arrive within reply_debounce of each other get one answer.
alter table pgflow.agents
  add column max_turns integer not null default 10,
  add column reply_debounce interval not null default '3 seconds',
  add constraint agents_max_turns_range check (max_turns between 1 and 100),
  add constraint agents_reply_debounce_range
    check (reply_debounce between interval '0' and interval '5 minutes');

-- What the campaign is for, in a sentence (outcome classification reads it).
alter table pgflow.campaigns add column goal text;

-- The numbers already in use.
insert into pgflow.sending_numbers (number)
select distinct from_number from pgflow.campaigns
on conflict (number) do nothing;
insert into pgflow.campaign_numbers (campaign_id, number, position)
select id, from_number, 1 from pgflow.campaigns
on conflict do nothing;
