-- Undo 0014: drop the inbound functions.
drop function pgflow.record_retell_event(jsonb, boolean, timestamptz);
drop function pgflow._answer_inbound(jsonb, timestamptz);
drop function pgflow._agent_variables(pgflow.contacts, pgflow.campaigns, pgflow.agents, text);
drop function pgflow.record_chat(jsonb, text, boolean, timestamptz);
drop function pgflow._live_conversation(pgflow.conversations, timestamptz);
drop function pgflow._chat_conversation(jsonb);
drop function pgflow._chat_items(jsonb);
drop function pgflow._on_inbound(bigint, boolean, timestamptz);
drop function pgflow._engage(bigint, timestamptz, timestamptz);
drop function pgflow.opt_in_contact(bigint, text, bigint, text, timestamptz);
drop function pgflow.opt_out_contact(bigint, text, bigint, text, timestamptz);
drop function pgflow._end_chats(bigint[]);
drop function pgflow._system_message(bigint, text, text, timestamptz);
drop function pgflow._enqueue_after(text, bigint[], integer, timestamptz);
drop function pgflow.inbound_intent(text);
drop function pgflow._sms_words(text);
