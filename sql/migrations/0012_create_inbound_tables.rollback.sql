-- Undo 0012: drop the inbound tables and columns.
alter table pgflow.campaigns drop column goal;
alter table pgflow.agents
  drop constraint agents_reply_debounce_range,
  drop constraint agents_max_turns_range,
  drop column reply_debounce,
  drop column max_turns;
alter table pgflow.webhook_deliveries drop column response;
drop table pgflow.outcome_signals;
alter table pgflow.conversations
  drop constraint conversations_review_consistent,
  drop column closing_message_id,
  drop column classify_requested_at,
  drop column review_requested_at,
  drop column review_reason,
  drop constraint conversations_outcome_source_valid,
  add constraint conversations_outcome_source_valid
    check (outcome_source in ('rule', 'llm', 'human', 'webhook'));
alter table pgflow.conversations
  drop constraint conversations_agent_turns_nonnegative,
  drop constraint conversations_chat_status_valid,
  drop column agent_turns,
  drop column engaged_at,
  drop column chat_status;
alter table pgflow.messages
  drop constraint messages_intent_inbound,
  drop constraint messages_intent_valid,
  drop column intent,
  drop column chat_message_id,
  drop column chat_id;
drop table pgflow.opt_outs;
alter table pgflow.messages drop column number_slot_at;
drop table pgflow.number_usage;
drop table pgflow.campaign_numbers;
drop trigger campaigns_pool_from_number on pgflow.campaigns;
drop function pgflow._pool_from_number();
drop table pgflow.sending_numbers;
