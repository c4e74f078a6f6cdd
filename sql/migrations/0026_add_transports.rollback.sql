-- Undo 0026: the campaign's and the text's transport, and the receipt sweeper's mark.
-- depends: 0025_add_twilio_receipts

update pgflow.message_attempts set outcome = 'dead_letter' where outcome = 'failed';
alter table pgflow.message_attempts drop constraint message_attempts_outcome_valid,
  add constraint message_attempts_outcome_valid
  check (outcome in ('sent', 'retry', 'dead_letter', 'interrupted'));

alter table pgflow.messages
  drop column if exists receipt_checked_at,
  drop column if exists transport;

alter table pgflow.campaigns drop column if exists transport;
