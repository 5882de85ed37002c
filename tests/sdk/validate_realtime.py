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
    import pydantic
    from openai.types.realtime import SessionUpdateEvent as GaSessionUpdate
    from openai.types.beta.realtime import SessionUpdateEvent as BetaSessionUpdate
    from openai.types.realtime import ConversationItemCreateEvent as GaItemCreate
    from sdk_models import extras
except ImportError as e:  # the test decides whether that is a failure (CI) or a skip
    print(f"openai SDK not importable: {e}", file=sys.stderr)
    sys.exit(3)


def main():
    errors = []
    events = json.load(sys.stdin)
    for n, e in enumerate(events):
        dialect, event = e["dialect"], e["event"]
        classes = {
            ("ga", "session.update"): GaSessionUpdate,
            ("beta", "session.update"): BetaSessionUpdate,
            ("ga", "conversation.item.create"): GaItemCreate,
        }
        cls = classes.get((dialect, event.get("type")))
        if cls is None:
            errors.append(f"#{n}: no SDK model here for {dialect} {event.get('type')}")
            continue
        try:
            m = cls.model_validate(event, strict=True)
        except pydantic.ValidationError as err:
            for d in err.errors():
                loc = ".".join(str(x) for x in d["loc"])
                errors.append(f"#{n} ({dialect}): {loc}: {d['msg']}")
            continue
        # A GA session must be the realtime one, not the transcription session of the union.
        session = getattr(m, "session", None)
        if dialect == "ga" and session is not None and type(session).__name__ != "RealtimeSessionCreateRequest":
            errors.append(f"#{n}: session parsed as {type(session).__name__}")
        for p in extras(m, "event"):
            errors.append(f"#{n} ({dialect}): {p}: not a field of the SDK model")
    for line in errors:
        print(line)
    print(f"{len(events)} event(s) checked, {len(errors)} error(s)", file=sys.stderr)
    sys.exit(1 if errors else 0)


main()
