-- pgflow.health(): the checks and figures behind `pgflow status`, /readyz and /metrics.
-- depends: 0003_create_pg_cron

create or replace function pgflow.health(p_now timestamptz default null)
returns jsonb
language plpgsql stable
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_checks jsonb := '[]'::jsonb;
  v_cron_db text := pg_catalog.current_setting('cron.database_name', true);
  v_preloaded boolean :=
    pg_catalog.current_setting('shared_preload_libraries') ~ '(^|[ ,])pg_cron([ ,]|$)';
begin
  v_checks := v_checks || pg_catalog.jsonb_build_object(
    'name', 'pg_cron',
    'ok', v_preloaded and (v_cron_db <> pg_catalog.current_database()
                           or pg_catalog.to_regclass('cron.job') is not null),
    'detail', case
      when not v_preloaded then 'pg_cron is not in shared_preload_libraries'
      when v_cron_db <> pg_catalog.current_database()
        then pg_catalog.format('cron database is %I; schedule jobs there (README)', v_cron_db)
      when pg_catalog.to_regclass('cron.job') is null then 'extension pg_cron is not created'
      else 'preloaded; extension created'
    end);
  return pg_catalog.jsonb_build_object(
    'now', v_now,
    'checks', v_checks,
    'figures', pg_catalog.jsonb_build_object(
      'contacts', (select pg_catalog.count(*) from pgflow.contacts),
      'enrollments_active',
        (select pg_catalog.count(*) from pgflow.enrollments where status = 'active'),
      'conversations_open',
        (select pg_catalog.count(*) from pgflow.conversations where status <> 'ended'),
      'jobs_queued',
        (select pg_catalog.count(*) from pgflow.pgqueuer where status = 'queued'),
      'dead_letters',
        (select pg_catalog.count(*) from pgflow.messages where delivery_status = 'dead_letter'),
      'alerts_open', (select pg_catalog.count(*) from pgflow.alerts where resolved_at is null)
    ));
end;
$$;
