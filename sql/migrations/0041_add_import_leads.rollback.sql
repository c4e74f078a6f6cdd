-- Bulk import of a lead list, set-based: pgflow.import_leads (ingest_lead's rules for a chunk of rows in one call) and pgflow._merge_objects.
-- depends: 0040_log_inserts_per_statement

drop function pgflow.import_leads(text,text,integer[],jsonb[],text[],text[],text[],timestamp with time zone);

drop function pgflow._merge_objects(jsonb[]);
