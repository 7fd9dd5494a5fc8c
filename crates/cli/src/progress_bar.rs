//! The progress bar of `cairn run` on a terminal: files and bytes done of those queued so far,
//! and the rate of the last few seconds, redrawn in place on one line of standard output.
//!
//! [`RunBar`] wraps a task's own progress sink (its log and status) and forwards every event
//! to it; [`for_run`] returns the sink unchanged when standard output is not a terminal, so a
//! pipe or a file never receives a byte of the bar. Hand-written rather than indicatif's, so
//! that the line is a pure function ([`render`]) that unit tests check, and so that a problem
//! echoed to standard error first clears the bar instead of landing in the middle of it.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_engine::{Progress, ProgressEvent};

/// Redraws at most this often.
const REDRAW: Duration = Duration::from_millis(100);
/// The rate is measured over this much of the recent past.
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// Characters of the bar itself.
const BAR_WIDTH: usize = 24;
/// Moves to the start of the line and erases it.
const CLEAR_LINE: &str = "\r\x1b[K";

/// What the bar shows.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counts {
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// `inner`, with a progress bar in front of it when standard output is a terminal and the
/// output is for people (`allowed`: not `--json`).
pub fn for_run(inner: Arc<dyn Progress>, allowed: bool) -> Arc<dyn Progress> {
    if allowed && std::io::stdout().is_terminal() {
        Arc::new(RunBar::new(inner))
    } else {
        inner
    }
}

pub struct RunBar {
    inner: Arc<dyn Progress>,
    state: Mutex<BarState>,
}

struct BarState {
    counts: Counts,
    /// Bytes moved over the network (uploads) or written from it (downloads).
    moved: u64,
    samples: VecDeque<(Instant, u64)>,
    last_draw: Option<Instant>,
    /// The terminal's line holds the bar now.
    shown: bool,
}

impl RunBar {
    fn new(inner: Arc<dyn Progress>) -> Self {
        RunBar {
            inner,
            state: Mutex::new(BarState::new()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BarState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl BarState {
    fn new() -> Self {
        BarState {
            counts: Counts::default(),
            moved: 0,
            samples: VecDeque::new(),
            last_draw: None,
            shown: false,
        }
    }

    /// Counts one event; true when it will be echoed to standard error by the inner sink.
    fn count(&mut self, event: &ProgressEvent) -> bool {
        let c = &mut self.counts;
        match event {
            ProgressEvent::Queued { size, .. } => {
                c.files_total += 1;
                c.bytes_total += size;
            }
            ProgressEvent::Uploaded { size, .. } => {
                c.files_done += 1;
                c.bytes_done += size;
            }
            ProgressEvent::Downloaded { size, .. } => {
                c.files_done += 1;
                c.bytes_done += size;
                self.moved += size;
            }
            ProgressEvent::Transferred { bytes } => self.moved += bytes,
            ProgressEvent::Skipped { .. } | ProgressEvent::Failed { .. } => return true,
            _ => {}
        }
        false
    }

    fn rate(&mut self, now: Instant) -> Option<f64> {
        self.samples.push_back((now, self.moved));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let (t0, m0) = *self.samples.front()?;
        let span = now.duration_since(t0).as_secs_f64();
        (span >= 0.5).then(|| (self.moved - m0) as f64 / span)
    }

    fn draw(&mut self, out: &mut impl Write, now: Instant) {
        if self
            .last_draw
            .is_some_and(|t| now.duration_since(t) < REDRAW)
        {
            return;
        }
        if self.counts.files_total == 0 && self.counts.files_done == 0 && self.moved == 0 {
            return;
        }
        // Sampled only when drawn, so a pass of many small files keeps a few dozen samples.
        let rate = self.rate(now);
        self.last_draw = Some(now);
        self.shown = true;
        let _ = write!(
            out,
            "\r{}\x1b[K",
            render(&self.counts, rate, terminal_width())
        );
        let _ = out.flush();
    }

    fn clear(&mut self, out: &mut impl Write) {
        if self.shown {
            let _ = write!(out, "{CLEAR_LINE}");
            let _ = out.flush();
            self.shown = false;
            // Drawn again on the next event, not one redraw interval later.
            self.last_draw = None;
        }
    }
}

impl Progress for RunBar {
    fn event(&self, event: ProgressEvent) {
        let mut state = self.state();
        let echoed = state.count(&event);
        let mut out = std::io::stdout().lock();
        if echoed {
            state.clear(&mut out);
        }
        drop(out);
        self.inner.event(event);
        let mut out = std::io::stdout().lock();
        state.draw(&mut out, Instant::now());
    }
}

impl Drop for RunBar {
    /// The pass is over: the summary line takes the bar's place.
    fn drop(&mut self) {
        let mut out = std::io::stdout().lock();
        self.state().clear(&mut out);
    }
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|w| *w >= 20)
        .unwrap_or(80)
}

/// The bar's line, at most `width - 1` characters (a full line would wrap on some terminals):
/// `[#########---------------] 12/40 files  3.1 MiB/12.0 MiB  1.2 MiB/s`.
pub fn render(c: &Counts, rate: Option<f64>, width: usize) -> String {
    // Downloads are not queued ahead: the totals are at least what is done.
    let files_total = c.files_total.max(c.files_done);
    let bytes_total = c.bytes_total.max(c.bytes_done);
    let fraction = if bytes_total > 0 {
        c.bytes_done as f64 / bytes_total as f64
    } else if files_total > 0 {
        c.files_done as f64 / files_total as f64
    } else {
        0.0
    };
    let filled = ((fraction * BAR_WIDTH as f64).round() as usize).min(BAR_WIDTH);
    let rate = match rate {
        Some(r) => format!("{}/s", human_bytes(r as u64)),
        None => "-/s".into(),
    };
    let line = format!(
        "[{}{}] {}/{files_total} files  {}/{}  {rate}",
        "#".repeat(filled),
        "-".repeat(BAR_WIDTH - filled),
        c.files_done,
        human_bytes(c.bytes_done),
        human_bytes(bytes_total),
    );
    line.chars().take(width.saturating_sub(1)).collect()
}

/// Bytes in binary units with one decimal: `512 B`, `1.5 KiB`, `3.0 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_model::RelPath;

    fn counts(files_done: u64, files_total: u64, bytes_done: u64, bytes_total: u64) -> Counts {
        Counts {
            files_done,
            files_total,
            bytes_done,
            bytes_total,
        }
    }

    #[test]
    fn the_line_shows_files_bytes_and_rate() {
        assert_eq!(
            render(&counts(0, 4, 0, 4 << 20), None, 80),
            "[------------------------] 0/4 files  0 B/4.0 MiB  -/s"
        );
        assert_eq!(
            render(&counts(2, 4, 1 << 20, 4 << 20), Some(1536.0 * 1024.0), 80),
            "[######------------------] 2/4 files  1.0 MiB/4.0 MiB  1.5 MiB/s"
        );
        assert_eq!(
            render(&counts(4, 4, 4 << 20, 4 << 20), Some(0.0), 80),
            "[########################] 4/4 files  4.0 MiB/4.0 MiB  0 B/s"
        );
    }

    #[test]
    fn empty_files_and_unqueued_downloads_still_make_sense() {
        // Only empty files: the files count drives the bar.
        assert!(render(&counts(1, 2, 0, 0), None, 80)
            .starts_with("[############------------] 1/2 files"));
        // Downloads are counted without being queued: done never exceeds the total shown.
        assert!(render(&counts(3, 0, 300, 0), None, 80).contains("3/3 files  300 B/300 B"));
    }

    #[test]
    fn the_line_fits_the_terminal() {
        let line = render(&counts(1, 2, 3, 4), None, 30);
        assert_eq!(line.chars().count(), 29);
    }

    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn events_count_and_the_bar_clears_before_a_problem_is_echoed() {
        let mut state = BarState::new();
        let path = RelPath::parse("a").expect("path");
        state.count(&ProgressEvent::Queued {
            path: path.clone(),
            size: 10,
        });
        state.count(&ProgressEvent::Uploaded {
            path: path.clone(),
            size: 10,
        });
        state.count(&ProgressEvent::Transferred { bytes: 12 });
        assert_eq!(state.counts, counts(1, 1, 10, 10));
        assert_eq!(state.moved, 12);
        let mut out = Vec::new();
        let start = Instant::now();
        state.draw(&mut out, start);
        let drawn = String::from_utf8(out).expect("utf-8");
        assert!(
            drawn.starts_with("\r[####") && drawn.ends_with("\x1b[K"),
            "{drawn:?}"
        );
        // Within the redraw interval nothing is written.
        let mut out = Vec::new();
        state.draw(&mut out, start + Duration::from_millis(10));
        assert!(out.is_empty());
        assert!(state.count(&ProgressEvent::Failed {
            path: "a".into(),
            reason: "why".into(),
        }));
        let mut out = Vec::new();
        state.clear(&mut out);
        assert_eq!(out, CLEAR_LINE.as_bytes());
        let mut out = Vec::new();
        state.clear(&mut out);
        assert!(out.is_empty(), "a cleared line is not cleared twice");
    }
}
