-- A number forgotten on request arrives opted out, whatever creates its contact (a lead, a stranger's text through Retell or Twilio, any later path): the contacts trigger over pgflow._contact_suppression; and 0031's check that a forgotten contact holds no personal data, validated.
-- depends: 0032_create_privacy

create trigger contacts_suppress_forgotten_before
  before insert on pgflow.contacts
  for each row execute function pgflow._contact_suppression();
create trigger contacts_suppress_forgotten_after
  after insert on pgflow.contacts
  for each row execute function pgflow._contact_suppression();

alter table pgflow.contacts validate constraint contacts_forgotten_is_empty;
