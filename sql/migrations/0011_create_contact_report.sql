-- pgflow.contact_report(): one contact's drips, conversations and transcript, for `pgflow conversations show`.
-- depends: 0010_create_roles

create function pgflow.contact_report(p_phone text, p_limit integer default 200)
returns jsonb
language sql stable security definer
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'contact', pg_catalog.jsonb_build_object(
      'id', ct.id, 'phone', ct.phone, 'first_name', ct.first_name, 'last_name', ct.last_name,
      'timezone', ct.timezone, 'opted_out_at', ct.opted_out_at,
      'opt_out_source', ct.opt_out_source, 'consent_at', ct.consent_at,
      'consent_source', ct.consent_source),
    'enrollments', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', e.id, 'campaign', c.slug, 'status', e.status, 'next_step', e.next_step,
               'next_message_at', e.next_message_at, 'enrolled_at', e.enrolled_at,
               'ended_at', e.ended_at, 'stop_reason', e.stop_reason) order by e.id)
        from pgflow.enrollments e join pgflow.campaigns c on c.id = e.campaign_id
       where e.contact_id = ct.id), '[]'),
    'conversations', coalesce((
      select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
               'id', cv.id, 'from_number', cv.from_number, 'status', cv.status,
               'conversion_status', cv.conversion_status, 'outcome_reason', cv.outcome_reason,
               'outcome_source', cv.outcome_source, 'created_at', cv.created_at,
               'ended_at', cv.ended_at) order by cv.id)
        from pgflow.conversations cv where cv.contact_id = ct.id), '[]'),
    'messages', coalesce((
      select pg_catalog.jsonb_agg(x.m order by x.created_at, x.id)
        from (select m.id, m.created_at, pg_catalog.jsonb_build_object(
                       'id', m.id, 'conversation_id', m.conversation_id,
                       'at', coalesce(m.sent_at, m.created_at), 'direction', m.direction,
                       'kind', m.kind, 'step', m.step_position, 'status', m.delivery_status,
                       'attempts', m.attempts, 'error', m.delivery_error, 'body', m.body,
                       'segments', m.segments) as m
                from pgflow.messages m where m.contact_id = ct.id
               order by m.created_at desc, m.id desc limit p_limit) x), '[]'))
    from pgflow.contacts ct
   where ct.phone = p_phone
$$;

revoke execute on function pgflow.contact_report(text, integer) from public;
grant execute on function pgflow.contact_report(text, integer) to pgflow_operator, pgflow_reader;
