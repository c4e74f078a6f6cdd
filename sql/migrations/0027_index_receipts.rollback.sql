-- Undo 0027: the sweeper's and the carrier errors' indexes.
-- depends: 0026_add_transports
-- transactional: false

drop index concurrently if exists pgflow.messages_carrier_error_idx;

drop index concurrently if exists pgflow.messages_awaiting_receipt_idx;
