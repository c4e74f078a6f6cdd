-- Indexes built without blocking writes (chat correlation, quiet engaged conversations, unsettled messages, review), and the outcome-source check validated.
-- depends: 0012_create_inbound_tables
-- transactional: false

create unique index concurrently if not exists messages_chat_message_id_key
  on pgflow.messages (chat_message_id) where chat_message_id is not null;

create index concurrently if not exists conversations_provider_chat_id_idx
  on pgflow.conversations (provider_chat_id) where provider_chat_id is not null;

-- The tick's silence scan: engaged conversations by their last activity.
create index concurrently if not exists conversations_quiet_idx
  on pgflow.conversations (greatest(last_inbound_at, last_outbound_at, engaged_at))
  where status = 'engaged' and classify_requested_at is null;

-- The tick's look for sends whose job was lost: messages not settled yet.
create index concurrently if not exists messages_unsettled_idx
  on pgflow.messages (updated_at) where delivery_status in ('queued', 'sending');

-- `pgflow conversations review`.
create index concurrently if not exists conversations_review_idx
  on pgflow.conversations (review_requested_at) where review_reason is not null;

-- Rows written before 0012 all satisfy the wider check; validating takes no write lock.
alter table pgflow.conversations validate constraint conversations_outcome_source_valid;
