//! How the daemons (`server run`, `agent`) write their own log to stderr: human-readable
//! lines by default, or one JSON object per line (`--log-format json`) for a collector.
//!
//! Stderr, not a file: under systemd it goes to the journal, which rotates it; the agent's
//! per-task logs, which it writes itself, rotate in [`crate::task_log`].

use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event (colours only on a terminal).
    #[default]
    Human,
    /// One JSON object per line: timestamp, level, message and the event's fields at the top.
    Json,
}

#[derive(Args)]
pub struct LogArgs {
    /// The format of the log on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, value_name = "FORMAT",
          env = "CAIRN_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// Installs the process's log subscriber; a second call (a test calling twice) is a no-op.
pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_target(false)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        // Fields at the top level, so a collector's query says `task` rather than
        // `fields.task`; no colour codes inside strings.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_ansi(false)
            .try_init(),
    };
}
