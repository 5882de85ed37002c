"""Validates Realtime client events against the OpenAI Python SDK's generated models.

Reads a JSON array of events on stdin: `{"dialect": "ga"|"beta", "event": {...}}`. A GA
`session.update` is validated with `openai.types.realtime.SessionUpdateEvent` (whose session
is `RealtimeSessionCreateRequest`), a beta one with `openai.types.beta.realtime
.SessionUpdateEvent`, a GA `conversation.item.create` with `ConversationItemCreateEvent`, in
pydantic's strict mode. The SDK's models accept unknown fields
(`extra="allow"`), so every model in the result is also checked for fields it does not
declare: an unknown field is an error here, as it is for the real server.

Exit 0: all valid. Exit 1: errors printed, one a line. Exit 3: `openai` is not installed.
Used by tests/realtime_settings.rs (pinned version: .ci/run).
"""

import json
import sys

try:
    from openai.types.realtime import SessionUpdateEvent as GaSessionUpdate
    from openai.types.beta.realtime import SessionUpdateEvent as BetaSessionUpdate
    from openai.types.realtime import ConversationItemCreateEvent as GaItemCreate
    from sdk_models import check_all
except ImportError as e:  # the test decides whether that is a failure (CI) or a skip
    print(f"openai SDK not importable: {e}", file=sys.stderr)
    sys.exit(3)


def main():
    events = json.load(sys.stdin)
    classes = {
        ("ga", "session.update"): GaSessionUpdate,
        ("beta", "session.update"): BetaSessionUpdate,
        ("ga", "conversation.item.create"): GaItemCreate,
    }
    cases = []
    for n, e in enumerate(events):
        dialect, event = e["dialect"], e["event"]
        cls = classes.get((dialect, event.get("type")))
        label = f"#{n} ({dialect})" if cls else f"#{n}: no SDK model here for {dialect} {event.get('type')}"
        # A GA session must be the realtime one, not the transcription session of the union.
        expected = {"session": "RealtimeSessionCreateRequest"} if dialect == "ga" else {}
        cases.append((label, cls, event, expected))
    errors = check_all(cases)
    for line in errors:
        print(line)
    print(f"{len(events)} event(s) checked, {len(errors)} error(s)", file=sys.stderr)
    sys.exit(1 if errors else 0)


main()
