-- Undo 0035: the reason a queued message waits.
-- depends: 0034_apply_state_rules

alter table pgflow.messages drop column if exists deferred_reason;
