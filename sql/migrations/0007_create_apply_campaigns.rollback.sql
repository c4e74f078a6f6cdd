-- Drop pgflow.apply_campaigns().
drop function if exists pgflow.apply_campaigns(jsonb, timestamptz);
