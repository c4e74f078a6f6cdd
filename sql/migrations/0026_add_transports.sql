-- A transport per campaign (retell or twilio) and on each text sent; when the Twilio receipt sweeper last asked about a text.
-- depends: 0025_add_twilio_receipts

alter table pgflow.campaigns
  add column transport text not null default 'retell',
  add constraint campaigns_transport_valid check (transport in ('retell', 'twilio'));

-- The transport that carried a sent text (null: not sent yet, or sent before transports).
alter table pgflow.messages
  add column transport text,
  add column receipt_checked_at timestamptz,
  add constraint messages_transport_valid check (transport in ('retell', 'twilio'));

-- A carrier's refusal of the number (Twilio's 21211, 21610, ...) ends an attempt `failed`:
-- not a dead letter to requeue. Widening a check: rows already valid; `not valid` skips
-- the scan of a large table.
alter table pgflow.message_attempts drop constraint message_attempts_outcome_valid,
  add constraint message_attempts_outcome_valid
  check (outcome in ('sent', 'retry', 'dead_letter', 'interrupted', 'failed')) not valid;
