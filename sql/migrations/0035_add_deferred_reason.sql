-- Why a queued message waits (the send window, a paused drip, the number's limits, a state rule), for the console's drip timeline; cleared when it is sent.
-- depends: 0034_apply_state_rules

alter table pgflow.messages add column if not exists deferred_reason text;
