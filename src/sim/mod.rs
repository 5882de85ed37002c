//! An in-repo OpenAI Realtime API simulator (a peer speaking the published protocol).
