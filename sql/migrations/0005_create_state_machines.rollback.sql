-- Drop the transition functions and the audit trigger.
drop trigger if exists enrollments_log_transition on pgflow.enrollments;
drop trigger if exists conversations_log_transition on pgflow.conversations;
drop trigger if exists messages_log_transition on pgflow.messages;
drop function if exists pgflow.end_conversation(bigint, text, text, text, timestamptz);
drop function if exists pgflow.engage_conversation(bigint, text, timestamptz);
drop function if exists pgflow.opt_out_enrollment(bigint, text, timestamptz);
drop function if exists pgflow.stop_enrollment(bigint, text, timestamptz);
drop function if exists pgflow.complete_enrollment(bigint, text, timestamptz);
drop function if exists pgflow.resume_enrollment(bigint, text, timestamptz);
drop function if exists pgflow.pause_enrollment(bigint, text, timestamptz);
drop function if exists pgflow._set_reason(text);
drop function if exists pgflow._log_transition();
drop function if exists pgflow._transition_failed(text, bigint, text, text, text[]);
