//! The HTTP edge: connections held, accept failures, connections ended by a timeout. Labels
//! are closed sets.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

pub struct HttpMetrics {
    /// HTTP connections being served (not counting media sockets once upgraded: calls are
    /// counted by `calls_active`).
    pub connections: IntGauge,
    /// `accept()` failures by `kind`: `fd_limit` (EMFILE/ENFILE: out of file descriptors),
    /// `other`. The listener keeps going after each.
    pub accept_errors: IntCounterVec,
    /// Connections that ended in an error, by `kind`: `header_timeout` (the request head did
    /// not arrive within `http_header_timeout_ms`, or a keep-alive connection stayed idle that
    /// long), `other`.
    pub connection_errors: IntCounterVec,
}

impl HttpMetrics {
    pub fn new() -> Result<HttpMetrics, prometheus::Error> {
        Ok(HttpMetrics {
            connections: IntGauge::new(
                "http_connections",
                "HTTP connections being served (upgraded media sockets not included)",
            )?,
            accept_errors: IntCounterVec::new(
                Opts::new(
                    "http_accept_errors_total",
                    "Failed accepts on the listener, by kind (fd_limit, other)",
                ),
                &["kind"],
            )?,
            connection_errors: IntCounterVec::new(
                Opts::new(
                    "http_connection_errors_total",
                    "HTTP connections ended by an error, by kind (header_timeout, other)",
                ),
                &["kind"],
            )?,
        })
    }

    pub fn register(&self, r: &Registry) -> Result<(), prometheus::Error> {
        r.register(Box::new(self.connections.clone()))?;
        r.register(Box::new(self.accept_errors.clone()))?;
        r.register(Box::new(self.connection_errors.clone()))?;
        // Exported at 0 from the start, so a rate sees the first one.
        for kind in ["fd_limit", "other"] {
            self.accept_errors.with_label_values(&[kind]);
        }
        for kind in ["header_timeout", "other"] {
            self.connection_errors.with_label_values(&[kind]);
        }
        Ok(())
    }
}
