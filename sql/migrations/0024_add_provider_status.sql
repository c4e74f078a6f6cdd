-- A provider's own view of each text: its status (Twilio's queued, sent, delivered, undelivered, failed) and the carrier's error code beside our delivery_status; a carrier's opt-out as a source.
-- depends: 0023_create_console

alter table pgflow.messages
  add column provider_status text,
  add column carrier_error_code integer;

-- A carrier's opt-out (Twilio's 21610: the lead replied STOP to Twilio itself) is a source.
alter table pgflow.opt_outs drop constraint opt_outs_source_valid,
  add constraint opt_outs_source_valid
  check (source in ('keyword', 'phrase', 'llm', 'operator', 'import', 'webhook', 'carrier'));
