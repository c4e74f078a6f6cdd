"""`pgflow twilio setup`: each Twilio sending number's incoming texts pointed at us,
idempotently.

For every number of a campaign on the Twilio transport, the number's IncomingPhoneNumber
gets `SmsUrl` = `PGFLOW_PUBLIC_URL/webhooks/twilio/inbound` and `SmsMethod` = POST; nothing
else of it changes. Its `status_callback` is for voice calls and is left alone: a text's
delivery status goes to the `StatusCallback` given with each send. Its `sms_fallback_url` is
left alone too.

`plan` reads (one lookup a number) and changes nothing; `apply` writes what the plan found
different. Each number comes out as one `Change`:
- `create`: the number had no SmsUrl; `update`: it pointed elsewhere, or was not a POST (a
  `warning` follows when another service got its texts: every lead texting that number
  reaches us from then on, whatever campaign wrote to them);
- `unchanged`: already right; `missing`: not in this Twilio account (nothing to write);
- a `warning` also when an SMS application (TwiML app) on the number overrides its SmsUrl.
Running it again after an `apply` gives `unchanged` for every number it wrote."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from pgflow.config import Settings
from pgflow.transport.twilio import INBOUND_PATH, TwilioClient

SMS_METHOD: Final = "POST"
LOCAL_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
# Twilio's placeholder for a new number's texts: replacing it takes nothing from anyone.
TWILIO_DEMO_HOSTS: Final = frozenset({"demo.twilio.com"})
RETELL_HOST_SUFFIX: Final = "retellai.com"
WRITES: Final = ("create", "update")


@dataclasses.dataclass(frozen=True)
class Change:
    target: str  # "number +14155550100"
    action: str  # create | update | unchanged | missing | warning
    detail: str = ""
    campaigns: tuple[str, ...] = ()  # the campaigns that send from the number
    sid: str | None = None  # the number's IncomingPhoneNumber (PN...), when Twilio has it

    @property
    def writes(self) -> bool:
        return self.action in WRITES

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "action": self.action,
            "detail": self.detail,
            "campaigns": list(self.campaigns),
            "sid": self.sid,
        }


def config_problems(settings: Settings) -> list[str]:
    """What keeps the set-up from running, one sentence each (empty: nothing)."""
    problems = []
    sid = settings.twilio_account_sid
    if not sid:
        problems.append("TWILIO_ACCOUNT_SID is not set (the account's SID: AC...)")
    elif not (sid.startswith("AC") and len(sid) == 34):
        problems.append("TWILIO_ACCOUNT_SID must be the account's SID: AC and 32 characters")
    if not settings.twilio_auth_token:
        problems.append("TWILIO_AUTH_TOKEN is not set (the account's auth token)")
    problem = public_url_problem(settings.public_url)
    if problem:
        problems.append(problem)
    return problems


def public_url_problem(public_url: str | None) -> str | None:
    """Why `public_url` cannot be where Twilio posts our numbers' texts; None when it can.
    Twilio signs the URL it calls, and our check of that signature rebuilds it from this
    same setting, so it must be exactly the public address: https, or http on this machine."""
    if not public_url:
        return (
            "PGFLOW_PUBLIC_URL is not set: the public https address Twilio reaches this "
            "server on, e.g. https://sms.example.com"
        )
    parts = urlsplit(public_url)
    host = parts.hostname or ""
    if not host:
        return f"PGFLOW_PUBLIC_URL {public_url!r} names no host"
    if parts.scheme != "https" and not (parts.scheme == "http" and host in LOCAL_HOSTS):
        return (
            f"PGFLOW_PUBLIC_URL {public_url!r} must start with https:// "
            "(http:// only for 127.0.0.1 or localhost)"
        )
    if parts.query or parts.fragment:
        return f"PGFLOW_PUBLIC_URL {public_url!r} must have no query or fragment"
    if "_" in host:
        return f"PGFLOW_PUBLIC_URL {public_url!r}: Twilio refuses a host name with an underscore"
    return None


def sms_url(public_url: str) -> str:
    """The SmsUrl our numbers get: where `TwilioClient.inbound_url` says Twilio posts."""
    return public_url.rstrip("/") + INBOUND_PATH


async def plan(client: TwilioClient, numbers: Mapping[str, Sequence[str]]) -> list[Change]:
    """What `apply` would change, number by number (in number order); reads only."""
    changes: list[Change] = []
    for number in sorted(numbers):
        changes += await _plan_number(client, number, tuple(numbers[number]))
    return changes


async def apply(client: TwilioClient, changes: Sequence[Change]) -> list[Change]:
    """Write the planned `create`s and `update`s; the changes, as done."""
    for change in changes:
        if change.writes and change.sid is not None:
            await client.set_number_sms_url(change.sid, client.inbound_url, SMS_METHOD)
    return list(changes)


async def setup(
    client: TwilioClient, numbers: Mapping[str, Sequence[str]], *, dry_run: bool = False
) -> list[Change]:
    """`plan`, then (unless `dry_run`) `apply`. `numbers`: each number -> its campaigns."""
    changes = await plan(client, numbers)
    return changes if dry_run else await apply(client, changes)


async def _plan_number(
    client: TwilioClient, number: str, campaigns: tuple[str, ...]
) -> list[Change]:
    target = f"number {number}"
    found = await client.find_number(number)
    if found is None:
        detail = "not in this Twilio account: buy or port it, or fix the campaign's from_number"
        return [Change(target, "missing", detail, campaigns)]
    wanted = client.inbound_url
    method = (found.sms_method or SMS_METHOD).upper()
    warnings: list[Change] = []
    if found.sms_application_sid:
        warnings.append(
            Change(
                target,
                "warning",
                f"its SMS application {found.sms_application_sid} overrides SmsUrl: "
                "clear the number's SMS application in Twilio's console",
                campaigns,
                found.sid,
            )
        )
    if found.sms_url == wanted and method == SMS_METHOD:
        done = Change(target, "unchanged", "already ours", campaigns, found.sid)
        return [done, *warnings]
    if found.sms_url is None:
        action, detail = "create", "no SmsUrl yet"
    elif found.sms_url == wanted:
        action, detail = "update", f"old SmsMethod {method}"
    else:
        action, detail = "update", f"old SmsUrl {shown_url(found.sms_url)} ({method})"
        taken = _taken_from(found.sms_url, number)
        if taken:
            warnings.insert(0, Change(target, "warning", taken, campaigns, found.sid))
    return [Change(target, action, detail, campaigns, found.sid), *warnings]


def _taken_from(old_url: str, number: str) -> str | None:
    """The warning for replacing `old_url`: whose texts now come to us instead."""
    host = (urlsplit(old_url).hostname or "").lower()
    if host in TWILIO_DEMO_HOSTS:
        return None
    switched = f"once switched, every lead who texts {number} reaches pgflow"
    whoever = "whatever campaign wrote to them"
    if host == RETELL_HOST_SUFFIX or host.endswith("." + RETELL_HOST_SUFFIX):
        return (
            f"its texts went to Retell ({shown_url(old_url)}): {switched}, not a Retell "
            f"agent, {whoever}"
        )
    return f"its texts went to {shown_url(old_url)}: {switched} instead, {whoever}"


def shown_url(url: str) -> str:
    """`url` fit to print: a password in it and its query (which may carry a key) hidden."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:***@{netloc.rsplit('@', 1)[1]}"
    query = "***" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
