-- Uninstall pgqueuer's objects (output of: pgq --schema pgflow sql uninstall).
DROP TRIGGER IF EXISTS tg_pgqueuer_changed ON pgflow.pgqueuer;
DROP FUNCTION IF EXISTS pgflow.fn_pgqueuer_changed;
DROP TABLE IF EXISTS pgflow.pgqueuer;
DROP TABLE IF EXISTS pgflow.pgqueuer_log;
DROP TABLE IF EXISTS pgflow.pgqueuer_schedules;
DROP TABLE IF EXISTS pgflow.pgqueuer_statistics;
DROP TYPE IF EXISTS pgflow.pgqueuer_status;
DROP TYPE IF EXISTS pgflow.pgqueuer_statistics_status;
