// callbridge softphone: the browser plays Twilio's part of a Media Streams call.
//
// Mic -> "mic" worklet -> 20 ms mu-law frames -> `media` messages on /media (with increasing
// sequenceNumber, chunk and timestamp). The agent's `media` frames -> "player" worklet; its
// `mark`s go into the same queue and are echoed when the playout reaches them; `clear` empties
// the queue at once. `stop` on hang-up. The transcript comes from this call's own feed
// (/softphone/events), since Twilio's protocol carries none. The bridge chooses the call's SID:
// its ticket opens /media once and the feed shows that call only.
(() => {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const token = new URLSearchParams(location.search).get('token') || '';
  // Opened with ?token= (scripts, the README's quick start) or after the login form (the
  // session cookie goes with every same-origin request by itself).
  const auth = token ? { headers: { Authorization: 'Bearer ' + token } } : {};

  // What the page measured, for people and for the browser test.
  const stats = {
    state: 'idle',
    framesSent: 0,
    framesReceived: 0,
    marksReceived: 0,
    marksEchoed: 0,
    clears: 0,
    droppedMsAtClear: [],
    playedMs: 0,
    playing: false,
    peakOut: 0,
    lastTurnLatencyMs: null,
    transcript: [],
    closeReason: null,
    profiles: null,
    callSid: null,
  };
  window.softphone = stats;

  let ws = null;
  let ctx = null;
  let mic = null;
  let player = null;
  let media = null;
  let events = null;
  let streamSid = null;
  let callSid = null;
  let seq = 0;
  let chunk = 0;
  let startedAt = 0;

  const hex = (n) => Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, '0')).join('');
  const b64 = (bytes) => btoa(String.fromCharCode.apply(null, bytes));
  const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const level = (el, rms) => { el.style.width = Math.min(100, Math.sqrt(rms) * 180).toFixed(0) + '%'; };

  function setState(s) {
    stats.state = s;
    $('status').textContent = s;
  }

  function line(who, text) {
    stats.transcript.push({ who, text });
    const li = document.createElement('li');
    li.className = who;
    if (who !== 'event') {
      const w = document.createElement('span');
      w.className = 'who';
      w.textContent = who === 'caller' ? 'You' : 'Agent';
      li.appendChild(w);
    }
    li.appendChild(document.createTextNode(text));
    $('transcript').appendChild(li);
    li.scrollIntoView({ block: 'nearest' });
  }

  function send(obj) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      obj.sequenceNumber = String(++seq);
      ws.send(JSON.stringify(obj));
    }
  }

  async function call() {
    $('call').disabled = true;
    $('transcript').replaceChildren();
    stats.transcript = [];
    setState('connecting');
    try {
      const r = await fetch('/softphone/ticket', auth);
      if (!r.ok) throw new Error('ticket refused (' + r.status + '): is the token right?');
      const t = await r.json();
      media = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
      ctx = new AudioContext();
      await ctx.audioWorklet.addModule('/softphone/mic-worklet.js');
      await ctx.resume();
      mic = new AudioWorkletNode(ctx, 'mic', { numberOfOutputs: 0 });
      ctx.createMediaStreamSource(media).connect(mic);
      player = new AudioWorkletNode(ctx, 'player', { numberOfInputs: 0, outputChannelCount: [1], processorOptions: { jitterMs: 60 } });
      player.connect(ctx.destination);
      player.port.onmessage = (e) => onPlayer(e.data);

      const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
      const url = `${proto}//${location.host}${t.path}?${t.param}=${encodeURIComponent(t.ticket)}`;
      callSid = stats.callSid = t.call_sid;
      streamSid = 'MZ' + hex(16);
      follow(t.ticket);
      ws = new WebSocket(url);
      seq = 0;
      chunk = 0;
      ws.onopen = () => {
        send({ event: 'connected', protocol: 'Call', version: '1.0.0' });
        send({
          event: 'start',
          streamSid,
          start: {
            streamSid,
            accountSid: 'ACsoftphone',
            callSid,
            tracks: ['inbound'],
            customParameters: Object.assign(
              { From: 'browser: ' + ($('name').value.trim() || 'caller'), direction: 'softphone' },
              $('profile').value.trim() ? { profile: $('profile').value.trim() } : {},
            ),
            mediaFormat: { encoding: 'audio/x-mulaw', sampleRate: 8000, channels: 1 },
          },
        });
        startedAt = performance.now();
        mic.port.onmessage = (e) => onMicFrame(e.data);
        setState('in call');
        $('hangup').disabled = false;
      };
      ws.onmessage = (e) => onBridge(e.data);
      ws.onclose = (e) => {
        stats.closeReason = e.reason || String(e.code);
        if (stats.state !== 'ended') line('event', 'the bridge ended the call (' + stats.closeReason + ')');
        teardown();
      };
      ws.onerror = () => setState('connection failed');
    } catch (err) {
      setState('error: ' + err.message);
      teardown();
    }
  }

  function onMicFrame(m) {
    level($('mic-level'), m.rms);
    chunk++;
    stats.framesSent++;
    send({
      event: 'media',
      streamSid,
      media: { track: 'inbound', chunk: String(chunk), timestamp: String((chunk - 1) * 20), payload: b64(m.bytes) },
    });
  }

  function onBridge(text) {
    let m;
    try { m = JSON.parse(text); } catch { return; }
    if (m.event === 'media' && m.media && typeof m.media.payload === 'string') {
      stats.framesReceived++;
      const bytes = unb64(m.media.payload);
      player.port.postMessage({ type: 'frame', bytes }, [bytes.buffer]);
    } else if (m.event === 'mark' && m.mark) {
      stats.marksReceived++;
      player.port.postMessage({ type: 'mark', name: m.mark.name });
    } else if (m.event === 'clear') {
      // Honoured at once: the player drops what it holds and reports the pending marks.
      stats.clears++;
      player.port.postMessage({ type: 'clear' });
    }
  }

  function echoMark(name) {
    stats.marksEchoed++;
    send({ event: 'mark', streamSid, mark: { name } });
  }

  function onPlayer(m) {
    if (m.type === 'played') {
      echoMark(m.name);
    } else if (m.type === 'cleared') {
      stats.droppedMsAtClear.push(m.droppedMs);
      m.marks.forEach(echoMark);
    } else if (m.type === 'stats') {
      stats.playedMs = m.playedMs;
      stats.playing = m.playing;
      stats.peakOut = Math.max(stats.peakOut, m.peak);
      $('played').textContent = (m.playedMs / 1000).toFixed(1) + ' s';
      level($('agent-level'), m.playing ? m.peak * m.peak : 0);
    }
  }

  // This call's transcript and turn latencies, from the bridge's own call events (the ticket
  // names the call; the token or login still opens the feed).
  function follow(ticket) {
    events = new EventSource('/softphone/events?' + (token ? 'token=' + encodeURIComponent(token) + '&' : '') + 'ticket=' + encodeURIComponent(ticket));
    events.onmessage = (e) => {
      let ev;
      try { ev = JSON.parse(e.data); } catch { return; }
      if (ev.line) line(ev.line.who, ev.line.text);
      if (ev.call) {
        if (ev.call.last_turn_latency_ms != null) {
          stats.lastTurnLatencyMs = ev.call.last_turn_latency_ms;
          $('latency').textContent = ev.call.last_turn_latency_ms + ' ms';
        }
        $('barge-ins').textContent = ev.call.barge_ins;
        if (ev.type === 'ended') events.close();
      }
    };
  }

  function hangup() {
    if (ws && ws.readyState === WebSocket.OPEN) {
      send({ event: 'stop', streamSid, stop: { accountSid: 'ACsoftphone', callSid } });
      setState('ended');
      line('event', 'you hung up');
      ws.close(1000, 'hung up');
    }
    teardown();
  }

  function teardown() {
    if (media) media.getTracks().forEach((t) => t.stop());
    if (ctx) ctx.close();
    // Keep following the feed briefly so the call's last lines (and "ended") arrive.
    const ev = events;
    if (ev) setTimeout(() => ev.close(), 3000);
    media = ctx = mic = player = events = null;
    ws = null;
    $('call').disabled = false;
    $('hangup').disabled = true;
    level($('mic-level'), 0);
    level($('agent-level'), 0);
    if (stats.state === 'in call') setState('ended');
  }

  // The picker offers the configured profiles (typing another name still works: the bridge
  // then falls back to the dialled number's profile or the default, as for a phone call).
  async function loadProfiles() {
    try {
      const r = await fetch('/softphone/profiles', auth);
      if (!r.ok) return;
      const p = await r.json();
      $('profiles').replaceChildren(...p.profiles.map((name) => {
        const o = document.createElement('option');
        o.value = name;
        return o;
      }));
      if (p.default) $('profile').placeholder = 'default: ' + p.default;
      stats.profiles = p.profiles;
    } catch (e) {
      // No list: the field stays free text.
    }
  }

  $('call').addEventListener('click', call);
  $('hangup').addEventListener('click', hangup);
  loadProfiles();
})();
