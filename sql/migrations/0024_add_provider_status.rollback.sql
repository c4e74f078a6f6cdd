-- Undo 0024: the provider's status and error code on messages.
-- depends: 0023_create_console

alter table pgflow.messages
  drop column if exists carrier_error_code,
  drop column if exists provider_status;

alter table pgflow.opt_outs drop constraint opt_outs_source_valid,
  add constraint opt_outs_source_valid
  check (source in ('keyword', 'phrase', 'llm', 'operator', 'import', 'webhook'));
