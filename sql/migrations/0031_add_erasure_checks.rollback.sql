-- Undo 0031: erasure's constraint values and the erasures' phone hash; refused once a contact was forgotten or an erasure opt-out recorded (the old checks would not hold).
-- depends: 0030_create_consents

do $$
begin
  if exists (select 1 from pgflow.opt_outs where source = 'erasure')
     or exists (select 1 from pgflow.suppressions where source = 'erasure')
     or exists (select 1 from pgflow.audit_log where action = 'forget')
     or exists (select 1 from pgflow.erasures) then
    raise exception 'contacts were forgotten: 0031 cannot be undone';
  end if;
end;
$$;
alter table pgflow.contacts drop constraint if exists contacts_forgotten_is_empty;
drop index if exists pgflow.erasures_phone_hash_idx;
alter table pgflow.erasures drop column if exists phone_hash;
alter table pgflow.audit_log drop constraint audit_log_action_valid,
  add constraint audit_log_action_valid check (action in (
    'sign_in', 'sign_out', 'takeover', 'hand_back', 'reply', 'set_outcome',
    'requeue', 'discard', 'user_add', 'user_disable', 'user_password', 'sessions_revoke'));
alter table pgflow.suppressions drop constraint if exists suppressions_hash_length,
  drop constraint if exists suppressions_source_valid;
alter table pgflow.opt_outs drop constraint opt_outs_source_valid,
  add constraint opt_outs_source_valid
  check (source in ('keyword', 'phrase', 'llm', 'operator', 'import', 'webhook', 'carrier'));
