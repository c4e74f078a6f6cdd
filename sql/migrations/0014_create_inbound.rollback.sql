-- Undo 0014: drop the inbound functions.
drop function pgflow.record_retell_event(jsonb, boolean, timestamptz);
drop function pgflow._answer_inbound(jsonb, timestamptz);
drop function pgflow._agent_variables(pgflow.contacts, pgflow.campaigns, pgflow.agents, text);
drop function pgflow.record_chat(jsonb, text, boolean, timestamptz);
drop function pgflow._record_retell_analysis(bigint, jsonb, timestamptz);
drop function pgflow._escalate(bigint, text, text, boolean, timestamptz);
drop function pgflow.set_outcome(bigint, text, text, text, timestamptz);
drop function pgflow._request_classification(bigint, timestamptz);
drop function pgflow._flag_review(bigint, text, timestamptz);
drop function pgflow._live_conversation(pgflow.conversations, timestamptz);
drop function pgflow._chat_conversation(jsonb);
drop function pgflow._chat_items(jsonb);
drop function pgflow._short_key(text);
drop function pgflow._on_inbound(bigint, boolean, timestamptz);
drop function pgflow._engage(bigint, timestamptz, timestamptz);
drop function pgflow.opt_in_contact(bigint, text, bigint, text, timestamptz);
drop function pgflow.opt_out_contact(bigint, text, bigint, text, timestamptz);
drop function pgflow._end_chats(bigint[]);
drop function pgflow._system_message(bigint, text, text, timestamptz);
drop function pgflow._enqueue_after(text, bigint[], integer, timestamptz);
drop function pgflow.inbound_intent(text);
drop function pgflow._sms_words(text);
create or replace function pgflow.end_conversation(
  p_id bigint,
  p_conversion_status text,
  p_reason text,
  p_source text,
  p_now timestamptz default null
) returns pgflow.conversations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_now timestamptz := coalesce(p_now, pg_catalog.now());
  v_row pgflow.conversations;
begin
  if p_conversion_status is null or p_conversion_status not in
     ('success', 'qualified', 'unqualified', 'escalated', 'no_response', 'discarded') then
    raise exception 'unknown conversion status %', coalesce(p_conversion_status, '(null)')
      using errcode = 'PF003';
  end if;
  if p_source is null or p_source not in ('rule', 'llm', 'human', 'webhook') then
    raise exception 'unknown outcome source %', coalesce(p_source, '(null)')
      using errcode = 'PF003';
  end if;
  perform pgflow._set_reason(p_conversion_status || coalesce(': ' || p_reason, ''));
  update pgflow.conversations
     set status = 'ended', ended_at = v_now, updated_at = v_now, reply_deadline_at = null,
         conversion_status = p_conversion_status, outcome_reason = p_reason,
         outcome_source = p_source
   where id = p_id and status in ('open', 'engaged')
  returning * into v_row;
  if not found then
    perform pgflow._transition_failed('conversation', p_id,
      (select status from pgflow.conversations where id = p_id), 'end', '{open,engaged}');
  end if;
  if v_row.enrollment_id is not null then
    perform pgflow._set_reason('conversation ended: ' || p_conversion_status);
    update pgflow.enrollments
       set status = 'stopped', stop_reason = 'conversation ended: ' || p_conversion_status,
           ended_at = v_now, updated_at = v_now, next_message_at = null
     where id = v_row.enrollment_id and status in ('active', 'paused');
  end if;
  return v_row;
end;
$$;

