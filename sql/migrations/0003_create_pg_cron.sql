-- Create pg_cron where this database is the cron database; elsewhere schedules are set up by hand (README).
-- depends: 0002_install_pgqueuer

do $$
begin
  if exists (select 1 from pg_catalog.pg_available_extensions where name = 'pg_cron')
     and pg_catalog.current_database() = pg_catalog.current_setting('cron.database_name', true)
  then
    create extension if not exists pg_cron;
  end if;
end;
$$;
