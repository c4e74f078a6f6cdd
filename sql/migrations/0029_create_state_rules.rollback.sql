-- Undo 0029: the state rules, the area codes, the lead's state and the deferral's rule.
-- depends: 0028_add_twilio_inbound

alter type pgflow._due_step drop attribute if exists rule;
alter table pgflow.enrollments drop column if exists deferred_rule;
alter table pgflow.messages drop column if exists deferred_rule;
alter table pgflow.contacts drop column if exists state;
drop table if exists pgflow.area_codes;
drop table if exists pgflow.state_windows;
drop table if exists pgflow.state_rules;
