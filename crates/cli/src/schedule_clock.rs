//! Where the present falls in a task's weekly schedule ([`cairn_model::Schedule`]): the hour of
//! the week in this computer's time zone (`TZ`, else the system's), and how long until the
//! schedule next changes its mind.
//!
//! The agent asks [`window`] before it starts a pass (no pass in a suspended hour) and while it
//! runs one (the pass is stopped when a suspended hour starts). The schedule stays pure; the
//! clock is read here only. Builds with `test-hooks` let `CAIRN_TEST_CLOCK_OFFSET_SECS` move
//! this clock, so tests reach an hour's edge without waiting for it.

use std::time::Duration;

use cairn_model::Schedule;

/// What the schedule says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Window {
    /// No hour of the week suspends the task.
    Always,
    /// The task may run; a suspended hour starts in this long.
    RunsFor(Duration),
    /// The task is suspended until `until` (for people, in local time), that far ahead;
    /// `None` when no hour of the week runs it.
    Suspended {
        left: Option<Duration>,
        until: String,
    },
}

impl Window {
    pub fn is_suspended(&self) -> bool {
        matches!(self, Window::Suspended { .. })
    }
}

/// The schedule's answer at this moment.
pub fn window(schedule: Option<&Schedule>) -> Window {
    let Some(schedule) = schedule else {
        return Window::Always;
    };
    let now = now();
    let weekday = now.weekday().to_monday_zero_offset() as usize;
    let slot = Schedule::slot(weekday, now.hour() as usize);
    let into_hour = Duration::from_secs(now.minute() as u64 * 60 + now.second() as u64)
        + Duration::from_nanos(now.subsec_nanosecond().max(0) as u64);
    let after = |hours: usize| Duration::from_secs(hours as u64 * 3600).saturating_sub(into_hour);
    if schedule.runs_at(slot) {
        return match schedule.hours_until_suspend(slot) {
            Some(h) => Window::RunsFor(after(h)),
            None => Window::Always,
        };
    }
    match schedule.hours_until_run(slot) {
        Some(h) => {
            let left = after(h);
            let until = jiff::SignedDuration::try_from(left)
                .ok()
                .and_then(|d| now.checked_add(d).ok())
                .map(|t| t.strftime("%a %Y-%m-%d %H:%M %Z").to_string())
                .unwrap_or_else(|| format!("in {} s", left.as_secs()));
            Window::Suspended {
                left: Some(left),
                until,
            }
        }
        None => Window::Suspended {
            left: None,
            until: "the schedule runs it in some hour (it runs in none now)".into(),
        },
    }
}

/// The local time, moved by the test hook where it is built in.
fn now() -> jiff::Zoned {
    let now = jiff::Zoned::now();
    #[cfg(feature = "test-hooks")]
    if let Some(offset) = std::env::var("CAIRN_TEST_CLOCK_OFFSET_SECS")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
    {
        if let Ok(moved) = now.checked_add(jiff::SignedDuration::from_secs(offset)) {
            return moved;
        }
    }
    now
}
