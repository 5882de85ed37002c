//! Side effects the call asks the shell to perform (the call decides, the shell does).
//!
//! Each effect names what it is about (here: an upstream *generation*, the number of one
//! Realtime socket in the call's life); the shell reports the outcome back as an input with
//! that id, and the call ignores results for ids it no longer waits for.

use crate::realtime::ClientEvent;

/// Something for the shell to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Dial a new Realtime socket for this generation. The shell answers with
    /// `Call::on_upstream_open(generation, ..)` or `Call::on_upstream_lost(generation, ..)`.
    /// (Generation 1 is dialled by the shell when the media socket opens, unasked.)
    ConnectUpstream { generation: u64 },
    /// Send an event on the socket of this generation, which is not (yet) the one
    /// [`crate::call::Output::ToRealtime`] goes to: the setup of a successor session.
    SendUpstream { generation: u64, event: ClientEvent },
    /// From now on, `Output::ToRealtime` goes to this generation's socket. Outputs are in
    /// order, so every caller frame before this went to the old socket and every one after
    /// goes to the new one.
    UseUpstream { generation: u64 },
    /// Close this generation's socket (a normal close), if the shell still has it.
    CloseUpstream { generation: u64 },
}
