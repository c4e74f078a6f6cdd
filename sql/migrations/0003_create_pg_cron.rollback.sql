-- pg_cron may hold schedules beyond this project's: it is left installed on rollback.
select 1;
