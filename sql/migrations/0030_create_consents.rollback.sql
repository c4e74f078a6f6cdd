-- Undo 0030: consents, suppressions, erasures, the key; a forgotten contact cannot get its phone back, so the rollback refuses while one exists.
-- depends: 0029_create_state_rules

do $$
begin
  if exists (select 1 from pgflow.contacts where forgotten_at is not null) then
    raise exception 'contacts were forgotten: their phones are gone, 0030 cannot be undone';
  end if;
end;
$$;
drop table if exists pgflow.secrets;
drop table if exists pgflow.erasures;
drop table if exists pgflow.suppressions;
alter table pgflow.contacts drop constraint if exists contacts_phone_or_forgotten,
  alter column phone set not null,
  drop column if exists forgotten_at;
drop table if exists pgflow.consents;
