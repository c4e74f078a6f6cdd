-- New enrollments, conversations and messages are logged to pgflow.events once per INSERT statement (pgflow._log_inserts over the transition table), not once per row; status changes keep the row trigger.
-- depends: 0039_dispatch_due_steps_in_lanes

drop trigger conversations_log_transition on pgflow.conversations;
create trigger conversations_log_transition after update of status on pgflow.conversations
  for each row execute function pgflow._log_transition();
create trigger conversations_log_insert after insert on pgflow.conversations
  referencing new table as new_rows
  for each statement execute function pgflow._log_inserts();

drop trigger enrollments_log_transition on pgflow.enrollments;
create trigger enrollments_log_transition after update of status on pgflow.enrollments
  for each row execute function pgflow._log_transition();
create trigger enrollments_log_insert after insert on pgflow.enrollments
  referencing new table as new_rows
  for each statement execute function pgflow._log_inserts();

drop trigger messages_log_transition on pgflow.messages;
create trigger messages_log_transition after update of delivery_status on pgflow.messages
  for each row execute function pgflow._log_transition();
create trigger messages_log_insert after insert on pgflow.messages
  referencing new table as new_rows
  for each statement execute function pgflow._log_inserts();
