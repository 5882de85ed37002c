//! Token usage: every `response.done` that reports `usage`, from whichever session of the call
//! sent it, becomes one [`CallEvent::Usage`]. The call does not sum or price: the shell's
//! report and metrics do (a rotated or reconnected call's sessions are all billed).

use super::{Call, CallEvent, Output};
use crate::realtime::ServerEvent;

impl Call {
    /// Called with every server event before it is dispatched (or dropped as stale).
    pub(super) fn count_usage(&mut self, generation: u64, ev: &ServerEvent<'_>) {
        if let ServerEvent::ResponseDone { response } = ev {
            if let Some(usage) = response.usage {
                self.out
                    .push_back(Output::Event(CallEvent::Usage { generation, usage }));
            }
        }
    }
}
