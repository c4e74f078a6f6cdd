-- Undo 0036: the console's expiry indexes.
-- depends: 0035_add_deferred_reason
-- transactional: false

drop index concurrently if exists pgflow.console_sign_ins_attempted_at_idx;

drop index concurrently if exists pgflow.console_sessions_expires_at_idx;
