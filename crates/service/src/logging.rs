//! The process's log output: `RUST_LOG` (default `info`) in text or JSON, with one rule that
//! `RUST_LOG` cannot lift: **dependencies never log at `trace`**.
//!
//! Why: at `trace`, tungstenite's client handshake logs the whole upgrade request it writes
//! (`Request: "GET … Authorization: Bearer sk-…"`), raw bytes in which `HeaderValue`'s
//! `set_sensitive` cannot help, and other crates' trace output dumps what crosses the wire.
//! Our own targets (`callbridge…`) keep every level; a dependency's `debug` is still shown
//! (handshake done/failed, connection errors). `tests/edge_logs.rs` runs the real binary at
//! `RUST_LOG=trace` through a call, tools, a setup lookup, a report and the pages, and greps
//! everything it printed for every configured secret.

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::LogFormat;

/// Whether an event may be shown at all (before `RUST_LOG` is asked): anything of ours, and
/// a dependency's up to `debug`.
pub fn exposable(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::DEBUG || meta.target().starts_with("callbridge")
}

/// Installs the global subscriber (once; later calls do nothing), `RUST_LOG` or `info`.
pub fn init(format: LogFormat) {
    init_with_default(format, "info");
}

/// As [`init`], with `default` where `RUST_LOG` is not set (the replay command shows errors
/// only: the bridge's own logs would drown its diff).
pub fn init_with_default(format: LogFormat, default: &str) {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // The hint keeps `RUST_LOG`'s level the process-wide maximum: without it the combined
    // filter has none, `log`'s max level becomes `trace`, and every `log::trace!` of a
    // dependency on the media path (tungstenite logs per frame) costs a filter lookup.
    let filter = env.and(filter_fn(exposable).with_max_level_hint(LevelFilter::TRACE));
    let layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().with_filter(filter).boxed(),
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::callsite::Identifier;
    use tracing::field::FieldSet;
    use tracing::metadata::Kind;

    struct Site;
    impl tracing::Callsite for Site {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!("not registered")
        }
    }
    static SITE: Site = Site;

    fn meta(target: &'static str, level: Level) -> Metadata<'static> {
        Metadata::new(
            "e",
            target,
            level,
            None,
            None,
            None,
            FieldSet::new(&[], Identifier(&SITE)),
            Kind::EVENT,
        )
    }

    #[test]
    fn dependencies_stop_at_debug_and_ours_do_not() {
        assert!(!exposable(&meta(
            "tungstenite::handshake::client",
            Level::TRACE
        )));
        assert!(!exposable(&meta("hyper::proto::h1::io", Level::TRACE)));
        assert!(exposable(&meta(
            "tungstenite::handshake::client",
            Level::DEBUG
        )));
        assert!(exposable(&meta("callbridge::server::media", Level::TRACE)));
        assert!(exposable(&meta("reqwest::connect", Level::WARN)));
    }
}
