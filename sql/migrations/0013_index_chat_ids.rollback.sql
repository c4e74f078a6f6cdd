-- Undo 0013: drop the chat correlation indexes.
-- transactional: false
drop index concurrently if exists pgflow.conversations_review_idx;

drop index concurrently if exists pgflow.messages_unsettled_idx;

drop index concurrently if exists pgflow.conversations_quiet_idx;

drop index concurrently if exists pgflow.conversations_provider_chat_id_idx;

drop index concurrently if exists pgflow.messages_chat_message_id_key;
