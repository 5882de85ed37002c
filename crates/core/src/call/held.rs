//! Messages for Twilio made before its `start` named the stream: a greeting can be spoken
//! (the upstream dialled at socket open, in parallel with `start`) before the stream exists
//! to carry it. They are held here, in order, and go out the moment `start` arrives — not
//! with the next message: a greeting made before `start` may be all there is for a while.

use super::{Call, Output};
use crate::twilio::Outbound;

/// Twilio-bound messages kept while the stream SID is unknown (10 s of frames and marks);
/// past that they are dropped, so a stream that never starts costs bounded memory.
pub const MAX_HELD: usize = 600;

#[derive(Debug, Default)]
pub(crate) struct Held {
    /// Grows only if something is made before `start` (rare: `start` comes within
    /// milliseconds of the socket opening, the upstream takes longer), and is given back at
    /// `start`.
    msgs: Vec<Outbound>,
}

impl Held {
    fn push(&mut self, msg: Outbound) {
        if self.msgs.len() < MAX_HELD {
            self.msgs.push(msg);
        }
    }

    /// The call ended: nothing held will be sent.
    pub(super) fn discard(&mut self) {
        self.msgs = Vec::new();
    }
}

impl Call {
    /// A message for Twilio: out now, or held until `start` names the stream.
    pub(super) fn send_twilio(&mut self, msg: Outbound) {
        if self.stream_sid.is_some() {
            self.out.push_back(Output::ToTwilio(msg));
        } else {
            self.held.push(msg);
        }
    }

    /// Whether messages for Twilio are being held (no `start` yet): nothing of the agent's
    /// has reached the caller.
    pub(super) fn holding_for_start(&self) -> bool {
        self.stream_sid.is_none()
    }

    /// `start` named the stream: what was held goes out, in the order it was made.
    pub(super) fn release_held(&mut self) {
        let held = std::mem::take(&mut self.held.msgs);
        self.out.extend(held.into_iter().map(Output::ToTwilio));
    }
}
