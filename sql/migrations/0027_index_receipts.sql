-- The Twilio texts still waiting for a final receipt, by when they were sent (the sweeper's scan), and the texts a carrier refused, by code and time (a burst of filtered texts pauses a campaign), built without blocking writes.
-- depends: 0026_add_transports
-- transactional: false

create index concurrently if not exists messages_awaiting_receipt_idx
  on pgflow.messages (sent_at)
  where delivery_status = 'sent' and transport = 'twilio';

create index concurrently if not exists messages_carrier_error_idx
  on pgflow.messages (carrier_error_code, updated_at)
  where carrier_error_code is not null;
