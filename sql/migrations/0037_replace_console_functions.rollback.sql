-- Undo 0037: the console's functions as 0023 made them.
-- depends: 0036_index_console_expiry

CREATE OR REPLACE FUNCTION pgflow.prune(p_now timestamp with time zone DEFAULT NULL::timestamp with time zone, p_keep_events interval DEFAULT '180 days'::interval, p_keep_job_log interval DEFAULT '14 days'::interval, p_keep_cron_runs interval DEFAULT '7 days'::interval, p_keep_webhooks interval DEFAULT '90 days'::interval, p_batch integer DEFAULT 10000)
 RETURNS jsonb
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO ''
AS $function$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_events integer;
  v_log integer;
  v_webhooks integer;
  v_cron integer := 0;
begin
  if not pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtext('pgflow.prune')) then
    return pg_catalog.jsonb_build_object('skipped', true);
  end if;
  perform pg_catalog.set_config('statement_timeout', '55s', true);
  perform pg_catalog.set_config('lock_timeout', '5s', true);
  delete from pgflow.events where id in (
    select id from pgflow.events where occurred_at < v_now - p_keep_events
     order by occurred_at limit p_batch);
  get diagnostics v_events = row_count;
  delete from pgflow.pgqueuer_log where id in (
    select id from pgflow.pgqueuer_log where created < v_now - p_keep_job_log
     order by created limit p_batch);
  get diagnostics v_log = row_count;
  delete from pgflow.webhook_deliveries where id in (
    select id from pgflow.webhook_deliveries where received_at < v_now - p_keep_webhooks
     order by received_at limit p_batch);
  get diagnostics v_webhooks = row_count;
  if pg_catalog.to_regclass('cron.job_run_details') is not null then
    execute 'delete from cron.job_run_details where runid in (
               select runid from cron.job_run_details where end_time < $1 limit $2)'
      using v_now - p_keep_cron_runs, p_batch;
    get diagnostics v_cron = row_count;
  end if;
  return pg_catalog.jsonb_build_object('events', v_events, 'job_log', v_log,
                                       'webhook_deliveries', v_webhooks, 'cron_runs', v_cron);
end;
$function$;

CREATE OR REPLACE FUNCTION pgflow.conversation_view(p_conversation_id bigint, p_now timestamp with time zone DEFAULT NULL::timestamp with time zone)
 RETURNS jsonb
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO ''
AS $function$
  select pg_catalog.jsonb_build_object(
    'conversation', pg_catalog.to_jsonb(cv) - 'agent_turns',
    'agent_turns', cv.agent_turns,
    'needs_person', pgflow._needs_person(cv, ct),
    'contact', pg_catalog.jsonb_build_object(
      'id', ct.id, 'phone', ct.phone, 'first_name', ct.first_name, 'last_name', ct.last_name,
      'email', ct.email, 'timezone', ct.timezone, 'opted_out_at', ct.opted_out_at,
      'opt_out_source', ct.opt_out_source, 'consent_at', ct.consent_at,
      'consent_source', ct.consent_source, 'consent_text', ct.consent_text,
      'held_at', ct.held_at, 'held_by', ct.held_by),
    'campaign', (select pg_catalog.jsonb_build_object('slug', c.slug, 'name', c.name,
                                                      'status', c.status)
                   from pgflow.campaigns c where c.id = cv.campaign_id),
    'agent', (select a.name from pgflow.agents a where a.id = cv.agent_id),
    'transcript', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', t.id, 'direction', t.direction, 'kind', t.kind, 'body', t.body,
               'delivery_status', t.delivery_status, 'delivery_error', t.delivery_error,
               'step_position', t.step_position, 'created_at', t.created_at,
               'sent_at', t.sent_at, 'send_after', t.send_after, 'attempts', t.attempts,
               'segments', t.segments, 'intent', t.intent) order by t.created_at, t.id)
        from (select m.* from pgflow.messages m where m.conversation_id = cv.id
               order by m.created_at desc, m.id desc limit 500) t), '[]'),
    'notes', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'at', n.occurred_at, 'entity', n.entity, 'from', n.from_status,
               'to', n.to_status, 'reason', n.reason) order by n.occurred_at, n.id)
        from (select ev.* from pgflow.events ev
               where (ev.entity = 'conversation' and ev.entity_id = cv.id)
                  or (ev.entity = 'enrollment' and ev.entity_id = cv.enrollment_id)
                  or (ev.entity = 'contact' and ev.entity_id = ct.id
                      and ev.occurred_at >= cv.created_at)
               order by ev.occurred_at desc, ev.id desc limit 200) n), '[]'),
    'drip', (
      select pg_catalog.jsonb_build_object(
        'enrollment_id', e.id, 'status', e.status, 'next_step', e.next_step,
        'next_message_at', e.next_message_at, 'stop_reason', e.stop_reason,
        'steps', coalesce((
          select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'position', st.position, 'delay', st.delay::text,
                   'message_id', sm.id, 'status', sm.delivery_status,
                   'sent_at', sm.sent_at, 'send_after', sm.send_after,
                   'error', sm.delivery_error, 'attempts', sm.attempts,
                   'planned_at', case when sm.id is null and e.next_step = st.position
                                      and e.status = 'active' then e.next_message_at end)
                   order by st.position)
            from pgflow.campaign_steps st
            left join lateral (
              select m.* from pgflow.messages m
               where m.enrollment_id = e.id and m.step_position = st.position
               order by m.id desc limit 1) sm on true
           where st.campaign_id = e.campaign_id), '[]'))
        from pgflow.enrollments e where e.id = cv.enrollment_id),
    'signals', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'source', s.source, 'status', s.status, 'reason', s.reason,
               'confidence', s.confidence, 'model', s.model, 'at', s.created_at)
               order by s.created_at, s.id)
        from pgflow.outcome_signals s where s.conversation_id = cv.id), '[]'),
    'audit', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'at', l.occurred_at, 'actor', l.actor, 'action', l.action,
               'conversation_id', l.conversation_id, 'detail', l.detail)
               order by l.occurred_at, l.id)
        from pgflow.audit_log l
       where l.conversation_id = cv.id
          or (l.contact_id = ct.id and l.occurred_at >= cv.created_at)), '[]'),
    'others', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', o.id, 'status', o.status, 'conversion_status', o.conversion_status,
               'created_at', o.created_at) order by o.id desc)
        from pgflow.conversations o where o.contact_id = ct.id and o.id <> cv.id), '[]'))
    from pgflow.conversations cv
    join pgflow.contacts ct on ct.id = cv.contact_id
   where cv.id = p_conversation_id
$function$;

drop function pgflow.console_campaign_slugs();
