-- Indexes for chat correlation, built without blocking writes: each provider message once; a conversation by its chat.
-- depends: 0012_create_inbound_tables
-- transactional: false

create unique index concurrently if not exists messages_chat_message_id_key
  on pgflow.messages (chat_message_id) where chat_message_id is not null;

create index concurrently if not exists conversations_provider_chat_id_idx
  on pgflow.conversations (provider_chat_id) where provider_chat_id is not null;
