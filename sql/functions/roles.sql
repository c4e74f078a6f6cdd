-- Who may execute which function. The entry points run as their owner (security definer,
-- search_path = ''), so a role needs EXECUTE on them and nothing on the tables. Roles are
-- NOLOGIN groups: grant them to login users (docs/operations.md). Nothing for PUBLIC.

revoke execute on all functions in schema pgflow from public;

-- The web process (`pgflow serve`): take leads and provider webhooks, report health and
-- metrics, and serve the console (its people act through these functions).
grant execute on function
  pgflow.add_console_user(text, text, text, text, bigint, timestamptz),
  pgflow.change_console_user(text, text, text, text, bigint, timestamptz),
  pgflow.console_user_list(timestamptz),
  pgflow.conversation_view(bigint, timestamptz),
  pgflow.hand_back(bigint, text, bigint, boolean, timestamptz),
  pgflow.human_reply(bigint, text, text, bigint, text, timestamptz),
  pgflow.inbox(jsonb, jsonb, integer, timestamptz),
  pgflow.settle(bigint, text, text, text, bigint, timestamptz),
  pgflow.settle_dead_letters(text, bigint[], text, bigint, timestamptz),
  pgflow.take_over(bigint, text, bigint, text, timestamptz),
  pgflow.console_alerts(integer),
  pgflow.console_campaign_slugs(),
  pgflow.console_campaigns(),
  pgflow.console_cursor(),
  pgflow.console_dead_letters(text, integer),
  pgflow.console_review(integer),
  pgflow.console_session(bytea, timestamptz),
  pgflow.deferrals(),
  pgflow.console_sign_in_user(text, timestamptz),
  pgflow.end_console_session(bytea, timestamptz),
  pgflow.funnel(text, timestamptz),
  pgflow.health(timestamptz),
  pgflow.ingest_lead(jsonb, timestamptz, jsonb),
  pgflow.number_report(timestamptz),
  pgflow.record_business_event(jsonb, text, timestamptz),
  pgflow.record_retell_event(jsonb, boolean, timestamptz),
  pgflow.reject_lead(text, text, text, text, timestamptz),
  pgflow.record_sign_in(text, boolean, bytea, text, text, timestamptz),
  pgflow.record_twilio_inbound(jsonb, timestamptz),
  pgflow.record_twilio_status(bigint, jsonb, timestamptz),
  pgflow.send_latency(interval, timestamptz),
  pgflow.sends_per_hour(text, integer, timestamptz)
  to pgflow_web;

-- The worker (`pgflow worker`): claim and record sends, agent turns, outcomes, alerts.
grant execute on function
  pgflow.agent_turn(bigint, timestamptz),
  pgflow.alert_notice(bigint),
  pgflow.chat_to_end(bigint),
  pgflow.claim_message(bigint, uuid, text, timestamptz),
  pgflow.claim_messages(bigint[], uuid, timestamptz),
  pgflow.health(timestamptz),
  pgflow.inbound_intent(text),
  pgflow.mark_chat_ended(text, timestamptz),
  pgflow.opt_out_question(bigint),
  pgflow.outcome_question(bigint, timestamptz),
  pgflow.record_agent_reply(bigint, text, text, text, timestamptz),
  pgflow.record_alert_notice(bigint, text, text, timestamptz),
  pgflow.record_chat(jsonb, text, boolean, timestamptz),
  pgflow.record_classification(bigint, text, text, text, double precision, text, text, timestamptz, text),
  pgflow.record_opt_out_judgment(bigint, boolean, timestamptz),
  pgflow.record_send(bigint, integer, jsonb, double precision, timestamptz),
  pgflow.record_sends(jsonb, double precision, timestamptz),
  pgflow.record_twilio_status(bigint, jsonb, timestamptz),
  pgflow.receipt_to_check(bigint),
  pgflow.release_interrupted(bigint, integer, timestamptz),
  pgflow.watch(text, timestamptz, numeric, integer, interval),
  pgflow.worker_heartbeat(uuid, text, integer, text, boolean, timestamptz)
  to pgflow_worker;

-- Operators (the CLI): campaigns, the tick by hand, dead letters, transitions, outcomes,
-- proof of consent and erasure (forget_contact: operators only).
grant execute on function
  pgflow.add_console_user(text, text, text, text, bigint, timestamptz),
  pgflow.change_console_user(text, text, text, text, bigint, timestamptz),
  pgflow.console_user_list(timestamptz),
  pgflow.conversation_view(bigint, timestamptz),
  pgflow.hand_back(bigint, text, bigint, boolean, timestamptz),
  pgflow.human_reply(bigint, text, text, bigint, text, timestamptz),
  pgflow.inbox(jsonb, jsonb, integer, timestamptz),
  pgflow.settle(bigint, text, text, text, bigint, timestamptz),
  pgflow.settle_dead_letters(text, bigint[], text, bigint, timestamptz),
  pgflow.take_over(bigint, text, bigint, text, timestamptz),
  pgflow.apply_campaigns(jsonb, timestamptz),
  pgflow.campaign_refusal(text),
  pgflow.contact_consent(text),
  pgflow.contact_report(text, integer),
  pgflow.deferrals(),
  pgflow.discard_dead_letters(bigint[], timestamptz),
  pgflow.end_conversation(bigint, text, text, text, timestamptz),
  pgflow.forget_contact(text, text, text, timestamptz),
  pgflow.funnel(text, timestamptz),
  pgflow.health(timestamptz),
  pgflow.import_leads(text, text, integer[], jsonb[], text[], text[], text[], timestamptz),
  pgflow.inbound_intent(text),
  pgflow.ingest_lead(jsonb, timestamptz, jsonb),
  pgflow.number_report(timestamptz),
  pgflow.opt_in_contact(bigint, text, bigint, text, timestamptz),
  pgflow.opt_out_contact(bigint, text, bigint, text, timestamptz),
  pgflow.pause_enrollment(bigint, text, timestamptz),
  pgflow.prune(timestamptz, interval, interval, interval, interval, integer),
  pgflow.reject_lead(text, text, text, text, timestamptz),
  pgflow.requeue_dead_letters(bigint[], text, timestamptz),
  pgflow.send_latency(interval, timestamptz),
  pgflow.set_number_limits(text, jsonb, timestamptz),
  pgflow.set_outcome(bigint, text, text, text, timestamptz),
  pgflow.stop_enrollment(bigint, text, timestamptz),
  pgflow.simulate_campaign(text, jsonb, integer, timestamptz),
  pgflow.tick(timestamptz, integer),
  pgflow.twilio_numbers(),
  pgflow.watch(text, timestamptz, numeric, integer, interval)
  to pgflow_operator;

-- Dashboards and `pgflow status`: reads (SELECT on every table is granted by the migrations).
grant execute on function
  pgflow.console_alerts(integer),
  pgflow.console_campaigns(),
  pgflow.contact_consent(text),
  pgflow.contact_report(text, integer),
  pgflow.conversation_view(bigint, timestamptz),
  pgflow.deferrals(),
  pgflow.funnel(text, timestamptz),
  pgflow.health(timestamptz),
  pgflow.inbound_intent(text),
  pgflow.inbox(jsonb, jsonb, integer, timestamptz),
  pgflow.number_report(timestamptz),
  pgflow.send_latency(interval, timestamptz),
  pgflow.sends_per_hour(text, integer, timestamptz)
  to pgflow_reader;
