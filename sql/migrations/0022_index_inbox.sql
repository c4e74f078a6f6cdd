-- Indexes for the console's inbox, built without blocking writes: conversations by last activity (its keyset pages), engaged ones by the lead's last text, and the contacts' search (the end of a phone number, the start of a name).
-- depends: 0021_create_console_tables
-- transactional: false

create index concurrently if not exists conversations_activity_idx
  on pgflow.conversations
  (greatest(last_inbound_at, last_outbound_at, created_at) desc, id desc);

create index concurrently if not exists conversations_engaged_inbound_idx
  on pgflow.conversations (last_inbound_at desc, id desc) where status = 'engaged';

create index concurrently if not exists contacts_phone_suffix_idx
  on pgflow.contacts (reverse(phone) text_pattern_ops);

create index concurrently if not exists contacts_first_name_idx
  on pgflow.contacts (lower(first_name) text_pattern_ops);

create index concurrently if not exists contacts_last_name_idx
  on pgflow.contacts (lower(last_name) text_pattern_ops);
