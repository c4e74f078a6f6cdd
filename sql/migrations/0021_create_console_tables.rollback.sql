-- Undo 0021: the console's tables and the hold on contacts.
-- depends: 0020_drop_unused_functions

alter table pgflow.messages drop column if exists deferred_reason;
drop index if exists pgflow.contacts_held_idx;
alter table pgflow.contacts
  drop constraint if exists contacts_held_by_needs_hold,
  drop column if exists held_by,
  drop column if exists held_at;
drop table if exists pgflow.audit_log;
drop table if exists pgflow.console_sign_ins;
drop table if exists pgflow.console_sessions;
drop table if exists pgflow.console_users;
