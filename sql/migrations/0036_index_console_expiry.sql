-- Console sessions by expiry and sign-in attempts by time, for prune(), built without blocking writes.
-- depends: 0035_add_deferred_reason
-- transactional: false

create index concurrently if not exists console_sessions_expires_at_idx
  on pgflow.console_sessions (expires_at);

create index concurrently if not exists console_sign_ins_attempted_at_idx
  on pgflow.console_sign_ins (attempted_at);
