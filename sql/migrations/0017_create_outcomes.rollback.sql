-- Undo 0017: drop the outcome functions and views.
drop view pgflow.review_queue;
drop view pgflow.campaign_funnel;
drop function pgflow.funnel(text, timestamptz);
drop function pgflow.record_business_event(jsonb, text, timestamptz);
drop function pgflow.record_classification(bigint, text, text, text, double precision, text, text, timestamptz, text);
drop function pgflow.outcome_question(bigint, timestamptz);
drop function pgflow._transcript_hash(bigint);
