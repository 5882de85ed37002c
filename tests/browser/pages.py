"""Drives the softphone and the console in a real Chromium (run by tests/browser.rs).

The bridge and the Realtime simulator are already running; Chromium's fake microphone plays
a WAV of recorded speech (the caller's first line, a pause, then a second line that talks over
the agent's long answer). Prints one JSON object with what the pages measured; exits non-zero
with a message on the first expectation that fails.

Usage: pages.py BASE_URL SOFTPHONE_TOKEN CONSOLE_TOKEN WAV SCREENSHOT_DIR CHROMIUM
"""

import json
import os
import re
import sys
import time

from playwright.sync_api import sync_playwright

BASE, SP_TOKEN, CO_TOKEN, WAV, SHOTS, CHROMIUM = sys.argv[1:7]
# Generous: the machine running the tests may be loaded.
WAIT_MS = 45_000


def fail(msg):
    print(f"browser test: {msg}", file=sys.stderr)
    sys.exit(1)


def softphone_stats(page):
    return page.evaluate("() => window.softphone")


def wait_for(page, js, what):
    try:
        page.wait_for_function(js, timeout=WAIT_MS, polling=100)
    except Exception as e:  # noqa: BLE001 - report what we waited for
        fail(f"timed out waiting for {what}: {e}\nsoftphone stats: {page.evaluate('() => window.softphone || null')}")


args = [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    f"--use-file-for-fake-audio-capture={WAV}",
    "--autoplay-policy=no-user-gesture-required",
]
if hasattr(os, "geteuid") and os.geteuid() == 0:
    args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox

result = {}
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
    ctx = browser.new_context(viewport={"width": 1000, "height": 760})
    ctx.grant_permissions(["microphone"], origin=BASE)

    # Without the token both pages refuse.
    anon = ctx.new_page()
    for path in ("/softphone", "/console", "/console/events"):
        r = anon.goto(BASE + path)
        if r is None or r.status != 401:
            fail(f"{path} without a token answered {r and r.status}, not 401")
    anon.close()

    # The console through its login form: the token goes in once, the page and its feed then
    # run on the HttpOnly session cookie (no token in the URL).
    console = ctx.new_page()
    r = console.goto(f"{BASE}/console")
    if r is None or r.status != 401:
        fail(f"/console without a token answered {r and r.status}, not 401 with the login form")
    console.fill("#token", "wrong-token-wrong")
    console.click("#login")
    wait_for(console, "() => /not right/.test(document.getElementById('error').textContent)", "the login form to refuse a wrong token")
    console.fill("#token", CO_TOKEN)
    console.click("#login")
    wait_for(console, "() => document.getElementById('conn') && document.getElementById('conn').textContent === 'live'", "the console's live feed after logging in")
    if "token" in console.url:
        fail(f"the token is in the console's URL after logging in: {console.url}")
    cookies = [c for c in ctx.cookies() if c["name"] == "callbridge_console"]
    if not cookies or not cookies[0]["httpOnly"] or cookies[0]["sameSite"] != "Strict":
        fail(f"the console's session cookie is not HttpOnly + SameSite=Strict: {cookies}")
    if console.evaluate("() => document.cookie").find("callbridge_console") >= 0:
        fail("page scripts can read the session cookie")

    phone = ctx.new_page()
    r = phone.goto(f"{BASE}/softphone?token={SP_TOKEN}")
    if r is None or r.status != 200:
        fail(f"/softphone with the token answered {r and r.status}")
    # The picker lists the configured profiles; pick one (the session and console show it).
    wait_for(phone, "() => Array.isArray(window.softphone.profiles)", "the profile list")
    options = phone.evaluate("() => [...document.querySelectorAll('#profiles option')].map(o => o.value)")
    placeholder = phone.get_attribute("#profile", "placeholder")
    if placeholder != "default: support":
        fail(f"the profile field's placeholder is {placeholder!r}, not the default profile")
    phone.fill("#profile", "sales")
    phone.get_by_role("button", name="Call").click()
    wait_for(phone, "() => window.softphone.state === 'in call'", "the call to connect")
    # The bridge chose the call's SID (the page's ticket names it); the softphone's token does
    # not open a feed by SID alone, only by the ticket.
    call_sid = softphone_stats(phone)["callSid"]
    if not re.fullmatch(r"CA[0-9a-f]{32}", call_sid or ""):
        fail(f"the softphone's call SID is {call_sid!r}, not one the bridge chose")
    by_sid = phone.evaluate(
        "async ([sid, tok]) => (await fetch('/softphone/events?call=' + sid, { headers: { Authorization: 'Bearer ' + tok } })).status",
        [call_sid, SP_TOKEN],
    )
    if by_sid != 400:
        fail(f"/softphone/events?call= answered {by_sid}, not 400")

    # The console shows the call live.
    wait_for(console, "() => document.querySelectorAll('#active tr.call').length === 1", "the call in the console's active list")
    wait_for(console, "() => /sales/.test(document.querySelector('#active tr.call').textContent)", "the call's profile in the console")

    # The agent's answer reaches the speakers: measured by the page's player.
    wait_for(phone, "() => window.softphone.playedMs > 1500 && window.softphone.peakOut > 0.05", "the agent's audio to play")
    # The caller's second line talks over it: the bridge clears, the page drops what it queued.
    wait_for(phone, "() => window.softphone.clears >= 1", "a barge-in (clear)")
    s = softphone_stats(phone)
    result["played_ms_at_clear"] = s["playedMs"]
    result["dropped_ms_at_clear"] = s["droppedMsAtClear"][0]
    if s["droppedMsAtClear"][0] < 200:
        fail(f"the clear came with only {s['droppedMsAtClear'][0]} ms queued: playback was not cut mid-answer")
    # Playback stopped at once: while the caller is still saying the second line (2.2 s of
    # speech; the next answer cannot start before it ends) the speakers get nothing more.
    before = softphone_stats(phone)["playedMs"]
    time.sleep(0.6)
    after = softphone_stats(phone)["playedMs"]
    result["played_ms_after_clear"] = after - before
    if after - before > 40:
        fail(f"{after - before} ms of agent audio played after the clear")

    # Transcripts both ways on the softphone (from the bridge's call events).
    wait_for(phone, "() => window.softphone.transcript.some(l => l.who === 'caller' && /order/.test(l.text))", "the caller's transcript on the softphone")
    wait_for(phone, "() => window.softphone.transcript.some(l => l.who === 'agent')", "the agent's transcript on the softphone")
    wait_for(phone, "() => window.softphone.lastTurnLatencyMs !== null", "a turn latency on the softphone")
    # The second answer plays after the barge-in.
    wait_for(phone, "() => window.softphone.transcript.some(l => l.who === 'caller' && /Saturday/.test(l.text))", "the second caller line's transcript")
    wait_for(phone, f"() => window.softphone.playedMs > {s['playedMs'] + 1000}", "the answer to the second line to play")

    # Follow the call in the console: click it, see its transcript and events.
    console.click("#active tr.call")
    wait_for(console, "() => /check on my order/.test(document.getElementById('lines').textContent)", "the transcript in the console's call view")
    wait_for(console, "() => /barge-in/.test(document.getElementById('lines').textContent)", "the barge-in in the console's call view")
    wait_for(console, "() => /agent speaking|listening/.test(document.querySelector('#active tr.call').textContent)", "the call's state")

    os.makedirs(SHOTS, exist_ok=True)
    phone.screenshot(path=os.path.join(SHOTS, "softphone.png"))
    console.screenshot(path=os.path.join(SHOTS, "console.png"))

    s = softphone_stats(phone)
    phone.get_by_role("button", name="Hang up").click()
    wait_for(console, "() => /caller_hung_up/.test(document.getElementById('recent').textContent)", "the call's outcome in the console")
    wait_for(console, "() => document.querySelectorAll('#active tr.call').length === 0", "the call to leave the active list")

    result.update(
        played_ms=s["playedMs"],
        frames_sent=s["framesSent"],
        frames_received=s["framesReceived"],
        marks_received=s["marksReceived"],
        marks_echoed=s["marksEchoed"],
        clears=s["clears"],
        last_turn_latency_ms=s["lastTurnLatencyMs"],
        transcript=s["transcript"],
        profiles=options,
        call_sid=call_sid,
        console_event_types=console.evaluate("() => [...new Set(window.consoleFeed.map(e => e.type))]"),
    )
    browser.close()

print(json.dumps(result))
