-- Drop pgflow.health().
drop function if exists pgflow.health(timestamptz);
