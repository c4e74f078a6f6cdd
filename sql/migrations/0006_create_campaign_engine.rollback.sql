-- Drop the campaign engine.
drop function if exists pgflow.tick(timestamptz, integer);
drop function if exists pgflow.ingest_lead(jsonb, timestamptz, jsonb);
drop function if exists pgflow.campaign_refusal(text);
drop function if exists pgflow._is_timestamp(text);
drop function if exists pgflow.reject_lead(text, text, text, text, timestamptz);
drop function if exists pgflow._dispatch_steps(bigint[], timestamptz, integer);
drop function if exists pgflow._template_values(pgflow.contacts);
drop function if exists pgflow._enqueue(text, bigint[], integer);
drop function if exists pgflow.next_window_open(text, time, time, smallint[], timestamptz);
drop function if exists pgflow.render_template(text, jsonb, jsonb);
drop function if exists pgflow.sms_segments(text);
drop function if exists pgflow.sms_encoding(text);
drop function if exists pgflow._normalize_phone(text);
