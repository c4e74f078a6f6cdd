-- Undo 0040: one row trigger per table logs inserts and status changes again.
-- depends: 0039_dispatch_due_steps_in_lanes

drop trigger conversations_log_insert on pgflow.conversations;
drop trigger conversations_log_transition on pgflow.conversations;
create trigger conversations_log_transition after insert or update of status on pgflow.conversations
  for each row execute function pgflow._log_transition();

drop trigger enrollments_log_insert on pgflow.enrollments;
drop trigger enrollments_log_transition on pgflow.enrollments;
create trigger enrollments_log_transition after insert or update of status on pgflow.enrollments
  for each row execute function pgflow._log_transition();

drop trigger messages_log_insert on pgflow.messages;
drop trigger messages_log_transition on pgflow.messages;
create trigger messages_log_transition after insert or update of delivery_status on pgflow.messages
  for each row execute function pgflow._log_transition();
