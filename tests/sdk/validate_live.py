"""Checks GPT-Live events against the OpenAI Python SDK's generated models (`openai.types.live`).

Usage: validate_live.py client|server|samples
- client: reads a JSON array of client events on stdin; each must validate, in pydantic's
  strict mode, as the member of the SDK's `ClientEvent` union its `type` names, with no field
  the model does not declare (the real server refuses unknown fields).
- server: the same for server events and the `ServerEvent` union.
- samples: prints a JSON array `{"variant": NAME, "event": {...}}` of server events built with
  the SDK's models (validated, then dumped to JSON by them), for the bridge's parser to read.
  NAME is the variant of `callbridge_core::live::ServerEvent` the event must parse into.

Exit 0: all valid. Exit 1: errors printed, one a line. Exit 3: `openai` is not installed.
Used by tests/live_schema.rs and tests/sim_live.rs (pinned version: .ci/run).
"""

import json
import sys
import typing

try:
    from openai.types.live import ClientEvent, ServerEvent
    from openai.types.live.session_resource import SessionResource
    from openai.types.responses import ResponseOutputItemDoneEvent
    from sdk_models import extras, check_all
except ImportError as e:  # the test decides whether that is a failure (CI) or a skip
    print(f"openai SDK not importable: {e}", file=sys.stderr)
    sys.exit(3)


def members(union):
    """The models of a discriminated union, by the literal of their `type` field."""
    inner = typing.get_args(union)[0]  # Annotated[Union[...], PropertyInfo]
    out = {}
    for cls in typing.get_args(inner):
        (literal,) = typing.get_args(cls.model_fields["type"].annotation)
        out[literal] = cls
    return out


def check(events, union, what):
    by_type = members(union)
    cases = []
    for n, event in enumerate(events):
        ty = event.get("type")
        label = f"#{n} ({ty})" if ty in by_type else f"#{n}: `{ty}` is not in the SDK's {what} union"
        cases.append((label, by_type.get(ty), event, {"item": "FunctionCallOutput"}))
    return check_all(cases)


SESSION = {
    "id": "sess_live_1",
    "expires_at": 1_800_000_000,
    "model": "gpt-live-1",
    "status": "active",
    "audio": {"format": {"type": "audio/pcmu", "rate": 8000}, "output": {"voice": "marin"}},
}
USAGE = {"seconds": 42.0, "active_seconds": 40, "paused_seconds": 2}


def samples():
    by_type = members(ServerEvent)
    call_done = ResponseOutputItemDoneEvent.model_validate({
        "type": "response.output_item.done", "output_index": 0, "sequence_number": 7,
        "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "lookup_order",
                 "arguments": "{\"order\":\"A-17\"}", "status": "completed"},
    }).model_dump(mode="json")
    text_delta = {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0,
                  "content_index": 0, "delta": "hi", "sequence_number": 8, "logprobs": []}
    rows = [
        ("SessionStarted", {"type": "session.started", "event_id": "e1", "session": SESSION}),
        ("SessionUpdated", {"type": "session.updated", "event_id": "e2", "session": SESSION}),
        ("OutputAudioDelta", {"type": "session.output_audio.delta", "delta": "//8A/w=="}),
        ("InputTranscriptDelta", {"type": "session.input_transcript.delta", "event_id": "e3",
                                  "delta": "where is my order", "start_ms": 1200, "end_ms": 2400}),
        ("OutputTranscriptDelta", {"type": "session.output_transcript.delta", "event_id": "e4",
                                   "delta": "Let me check.", "start_ms": 2600, "end_ms": 3300}),
        ("DelegationCreated", {"type": "session.delegation.created", "event_id": "e5", "offset_ms": 2500,
                               "delegation": {"id": "del_1", "target": "responses", "type": "delegation",
                                              "response_id": "resp_1"}}),
        ("FunctionCall", {"type": "response.event", "event_id": "e6", "delegation_id": "del_1",
                          "event": call_done}),
        ("ResponseEvent", {"type": "response.event", "event_id": "e7", "event": text_delta}),
        ("FixturePlaying", {"type": "session.output_audio.fixture.playing", "event_id": "e8"}),
        ("FixturePlayed", {"type": "session.output_audio.fixture.played", "event_id": "e9"}),
        ("CommentaryAppended", {"type": "session.commentary.appended", "event_id": "e10",
                                "start_ms": 5000, "end_ms": 5000}),
        ("UsageUpdated", {"type": "session.usage.updated", "event_id": "e11", "usage": USAGE,
                          "context_window": {"usage_ratio": 0.1}}),
        ("SessionClosed", {"type": "session.closed", "event_id": "e12", "reason": "expired",
                           "session": SESSION, "usage": USAGE}),
        ("FatalError", {"type": "error", "event_id": "e13",
                        "error": {"type": "insufficient_quota", "code": "insufficient_quota",
                                  "message": "You exceeded your current quota."}}),
        ("Error", {"type": "error", "event_id": "e14",
                   "error": {"type": "invalid_request_error", "code": "unknown_parameter",
                             "message": "Unknown parameter: 'session.voice'.",
                             "param": "session.voice", "client_event_id": "c1"}}),
        ("Info", {"type": "info", "event_id": "e15", "code": "data_channel_permissions",
                  "message": "applied"}),
        ("Unknown", {"type": "transport.ringing", "event_id": "e16", "session_id": "sess_live_1"}),
        ("Unknown", {"type": "session.input_audio.muted", "event_id": "e17"}),
    ]
    out = []
    for variant, event in rows:
        model = by_type[event["type"]].model_validate(event, strict=True)
        bad = extras(model, "event")
        if bad:
            print(f"sample {event['type']} has undeclared fields: {bad}")
            sys.exit(1)
        out.append({"variant": variant, "event": model.model_dump(mode="json")})
    print(json.dumps(out))
    print(f"{len(out)} sample server event(s) built by the SDK's models", file=sys.stderr)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "client"
    events = json.load(sys.stdin)
    if mode == "samples":
        return samples()
    union, what = (ClientEvent, "ClientEvent") if mode == "client" else (ServerEvent, "ServerEvent")
    errors = check(events, union, what)
    for line in errors:
        print(line)
    print(f"{len(events)} {what}(s) checked, {len(errors)} error(s)", file=sys.stderr)
    sys.exit(1 if errors else 0)


main()
