-- Undo 0022: drop the inbox's indexes.
-- depends: 0021_create_console_tables
-- transactional: false

drop index concurrently if exists pgflow.contacts_last_name_idx;

drop index concurrently if exists pgflow.contacts_first_name_idx;

drop index concurrently if exists pgflow.contacts_phone_suffix_idx;

drop index concurrently if exists pgflow.conversations_engaged_inbound_idx;

drop index concurrently if exists pgflow.conversations_activity_idx;
