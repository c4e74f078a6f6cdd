-- Undo 0033: the contacts triggers that suppress a forgotten number (the check stays, as 0031 made it).
-- depends: 0032_create_privacy

drop trigger if exists contacts_suppress_forgotten_after on pgflow.contacts;
drop trigger if exists contacts_suppress_forgotten_before on pgflow.contacts;
