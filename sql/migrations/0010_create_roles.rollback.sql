-- Revoke what 0010 granted and make the functions SECURITY INVOKER again; the roles stay (they are cluster-wide).
do $$
declare
  r text;
begin
  foreach r in array array['pgflow_web', 'pgflow_worker', 'pgflow_operator', 'pgflow_reader'] loop
    if exists (select 1 from pg_catalog.pg_roles where rolname = r) then
      execute pg_catalog.format('revoke all on all functions in schema pgflow from %I', r);
      execute pg_catalog.format('revoke all on all tables in schema pgflow from %I', r);
      execute pg_catalog.format('revoke all on all sequences in schema pgflow from %I', r);
      execute pg_catalog.format('revoke all on schema pgflow from %I', r);
    end if;
  end loop;
end;
$$;
do $$
declare
  f regprocedure;
begin
  for f in select p.oid::regprocedure from pg_catalog.pg_proc p
            where p.pronamespace = 'pgflow'::regnamespace and p.prosecdef loop
    execute pg_catalog.format('alter function %s security invoker', f);
  end loop;
end;
$$;
grant execute on all functions in schema pgflow to public;
