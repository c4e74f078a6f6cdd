-- Unschedule the cron jobs and drop pgflow.prune().
do $$
begin
  if pg_catalog.to_regclass('cron.job') is not null then
    perform cron.unschedule(jobname) from cron.job
     where jobname in ('pgflow-tick', 'pgflow-prune');
  end if;
end;
$$;
drop function if exists pgflow.prune(timestamptz, interval, interval, interval, interval, integer);
