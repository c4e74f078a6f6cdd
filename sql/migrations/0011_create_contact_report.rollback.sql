-- Drop pgflow.contact_report().
drop function if exists pgflow.contact_report(text, integer);
