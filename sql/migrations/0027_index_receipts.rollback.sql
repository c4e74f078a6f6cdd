-- Undo 0027: the sweeper's index.
-- depends: 0026_add_transports
-- transactional: false

drop index concurrently if exists pgflow.messages_awaiting_receipt_idx;
