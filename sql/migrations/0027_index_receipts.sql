-- The Twilio texts still waiting for a final receipt, by when they were sent (the sweeper's scan), built without blocking writes.
-- depends: 0026_add_transports
-- transactional: false

create index concurrently if not exists messages_awaiting_receipt_idx
  on pgflow.messages (sent_at)
  where delivery_status = 'sent' and transport = 'twilio';
