//! A task's weekly schedule (seed 002's "scheduling grid"): each of the week's 168 hours either
//! runs or suspends the task.
//!
//! [`Schedule::parse`] reads what a user types: `always`, a grid of 168 `1`/`0` characters
//! (Monday 00:00 first), or rules applied in order over a week that runs at every hour, such as
//! `mon-fri 09-18=suspend; sat 00-06=suspend`. Days are `mon`..`sun`, ranges (`fri-mon` wraps),
//! lists (`sat,sun`) or `all`; hours are `HH-HH` (the end hour not included, `00-24` the whole
//! day), one hour `HH`, or nothing for the whole day. The grid is kept as the 168 characters,
//! so a saved configuration reads the same whatever syntax made it.
//!
//! Pure: the caller says which hour of the week it is ([`Schedule::slot`]), in the time zone it
//! chooses, so every rule is tested without a clock. Rules rather than only a grid were chosen
//! because a grid is unreadable on a command line; the grid stays accepted because it is the
//! seed's own form and what a script can compute.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Hours in a week; slot 0 is Monday 00:00-01:00.
pub const WEEK_HOURS: usize = 168;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Which hours of the week a task runs in; the rest suspend it.
#[derive(Clone, PartialEq, Eq)]
pub struct Schedule {
    run: [bool; WEEK_HOURS],
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({})", self.grid())
    }
}

impl Schedule {
    /// The schedule `text` describes; `None` for `always` (no hour suspended).
    ///
    /// # Errors
    /// Text that is neither a grid nor rules; the message quotes the part that is wrong.
    pub fn parse(text: &str) -> Result<Option<Schedule>, String> {
        let t = text.trim();
        if t.is_empty() || t.eq_ignore_ascii_case("always") {
            return Ok(None);
        }
        let schedule = if t.len() == WEEK_HOURS && t.chars().all(|c| matches!(c, '0' | '1')) {
            let mut run = [true; WEEK_HOURS];
            for (slot, c) in t.chars().enumerate() {
                run[slot] = c == '1';
            }
            Schedule { run }
        } else {
            let mut s = Schedule {
                run: [true; WEEK_HOURS],
            };
            for rule in t.split(';').map(str::trim).filter(|r| !r.is_empty()) {
                s.apply(rule)?;
            }
            s
        };
        Ok(Some(schedule).filter(|s| s.run.iter().any(|r| !r)))
    }

    fn apply(&mut self, rule: &str) -> Result<(), String> {
        let (when, what) = rule
            .split_once('=')
            .ok_or_else(|| format!("schedule rule {rule:?}: give DAYS [HOURS]=run|suspend"))?;
        let run = match what.trim().to_ascii_lowercase().as_str() {
            "run" => true,
            "suspend" => false,
            other => {
                return Err(format!(
                    "schedule rule {rule:?}: {other:?} is neither run nor suspend"
                ))
            }
        };
        let mut parts = when.split_whitespace();
        let days = parts.next().ok_or_else(|| {
            format!("schedule rule {rule:?}: name the days (mon-fri, sat,sun, all)")
        })?;
        let hours = parts.next().unwrap_or("00-24");
        if let Some(extra) = parts.next() {
            return Err(format!("schedule rule {rule:?}: {extra:?} is left over"));
        }
        let days = parse_days(days).map_err(|e| format!("schedule rule {rule:?}: {e}"))?;
        let (from, to) = parse_hours(hours).map_err(|e| format!("schedule rule {rule:?}: {e}"))?;
        for day in days {
            for hour in from..to {
                self.run[day * 24 + hour] = run;
            }
        }
        Ok(())
    }

    /// The hour of the week of `weekday` (0 = Monday) and `hour` (0..24).
    pub fn slot(weekday: usize, hour: usize) -> usize {
        (weekday % 7) * 24 + hour % 24
    }

    /// Whether the task runs during `slot`.
    pub fn runs_at(&self, slot: usize) -> bool {
        self.run[slot % WEEK_HOURS]
    }

    /// Whole hours from the start of `slot` to the start of the next hour that suspends the
    /// task (0 when `slot` itself does); `None` when no hour does.
    pub fn hours_until_suspend(&self, slot: usize) -> Option<usize> {
        (0..WEEK_HOURS).find(|h| !self.runs_at(slot + h))
    }

    /// Whole hours from the start of `slot` to the start of the next hour that runs the task
    /// (0 when `slot` itself does); `None` when no hour does.
    pub fn hours_until_run(&self, slot: usize) -> Option<usize> {
        (0..WEEK_HOURS).find(|h| self.runs_at(slot + h))
    }

    /// The grid: 168 characters, `1` run, `0` suspend, Monday 00:00 first.
    pub fn grid(&self) -> String {
        self.run
            .iter()
            .map(|r| if *r { '1' } else { '0' })
            .collect()
    }

    /// For people: the suspended hours as rules `parse` reads back (`mon-fri 09-18=suspend`
    /// style, one rule per day and run of hours).
    pub fn describe(&self) -> String {
        let mut rules = Vec::new();
        for (day, name) in DAYS.iter().enumerate() {
            let mut hour = 0;
            while hour < 24 {
                if self.run[day * 24 + hour] {
                    hour += 1;
                    continue;
                }
                let start = hour;
                while hour < 24 && !self.run[day * 24 + hour] {
                    hour += 1;
                }
                rules.push(format!("{name} {start:02}-{hour:02}=suspend"));
            }
        }
        rules.join("; ")
    }
}

fn day_index(name: &str) -> Result<usize, String> {
    let lower = name.to_ascii_lowercase();
    DAYS.iter()
        .position(|d| lower.starts_with(d) && (lower.len() == 3 || is_day_word(&lower)))
        .ok_or_else(|| format!("{name:?} is not a day (mon, tue, wed, thu, fri, sat, sun)"))
}

/// Whole day names (`monday`, `tuesday`, ...) are taken too.
fn is_day_word(lower: &str) -> bool {
    [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
    .contains(&lower)
}

/// `mon`, `mon-fri` (wrapping: `fri-mon`), `sat,sun`, `all`.
fn parse_days(text: &str) -> Result<Vec<usize>, String> {
    if matches!(text.to_ascii_lowercase().as_str(), "all" | "daily" | "*") {
        return Ok((0..7).collect());
    }
    let mut days = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day_index(a)?, day_index(b)?);
                let mut d = a;
                loop {
                    days.push(d);
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days.push(day_index(part)?),
        }
    }
    if days.is_empty() {
        return Err("name the days (mon-fri, sat,sun, all)".into());
    }
    Ok(days)
}

/// `HH-HH` (end not included, 00..24) or `HH`: the hours `[from, to)`.
fn parse_hours(text: &str) -> Result<(usize, usize), String> {
    let hour = |s: &str, most: usize| -> Result<usize, String> {
        match s.trim().parse::<usize>() {
            Ok(h) if h <= most => Ok(h),
            _ => Err(format!("{s:?} is not an hour (00 to {most})")),
        }
    };
    let (from, to) = match text.split_once('-') {
        Some((a, b)) => (hour(a, 23)?, hour(b, 24)?),
        None => {
            let h = hour(text, 23)?;
            (h, h + 1)
        }
    };
    if from >= to {
        return Err(format!(
            "hours {text:?}: the first hour must come before the second (the second is not included; 22-24 for the last two)"
        ));
    }
    Ok((from, to))
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.grid())
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() != WEEK_HOURS {
            return Err(serde::de::Error::custom(
                "a schedule is a grid of 168 hours (1 run, 0 suspend)",
            ));
        }
        Schedule::parse(&text)
            .map_err(serde::de::Error::custom)?
            .ok_or_else(|| serde::de::Error::custom("a saved schedule suspends some hour"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Schedule {
        Schedule::parse(text)
            .expect("valid schedule")
            .expect("some hour suspended")
    }

    #[test]
    fn rules_suspend_working_hours_on_weekdays() {
        let s = parsed("mon-fri 09-18=suspend");
        assert!(s.runs_at(Schedule::slot(0, 8)));
        assert!(!s.runs_at(Schedule::slot(0, 9)));
        assert!(!s.runs_at(Schedule::slot(4, 17)));
        assert!(
            s.runs_at(Schedule::slot(4, 18)),
            "the end hour is not included"
        );
        assert!(s.runs_at(Schedule::slot(5, 12)), "saturday runs");
        assert_eq!(s.describe().split("; ").count(), 5);
        assert_eq!(parsed(&s.describe()), s, "describe reads back");
        assert_eq!(parsed(&s.grid()), s, "the grid reads back");
    }

    #[test]
    fn later_rules_win_and_days_wrap() {
        let s = parsed("all=suspend; fri-mon 22-24=run; wed 3=run");
        assert!(!s.runs_at(Schedule::slot(1, 23)), "tuesday stays suspended");
        for day in [4, 5, 6, 0] {
            assert!(s.runs_at(Schedule::slot(day, 22)), "day {day}");
        }
        assert!(s.runs_at(Schedule::slot(2, 3)));
        assert!(!s.runs_at(Schedule::slot(2, 4)));
        let sat_sun = parsed("sat,sun=suspend");
        assert!(!sat_sun.runs_at(Schedule::slot(6, 0)));
        assert!(sat_sun.runs_at(Schedule::slot(0, 0)));
    }

    #[test]
    fn always_and_an_all_run_grid_are_no_schedule() {
        assert_eq!(Schedule::parse("always"), Ok(None));
        assert_eq!(Schedule::parse(&"1".repeat(WEEK_HOURS)), Ok(None));
        assert_eq!(Schedule::parse("mon=run"), Ok(None));
    }

    #[test]
    fn bad_rules_are_refused_naming_the_part() {
        for (text, says) in [
            ("mon-fri 09-18", "DAYS [HOURS]=run|suspend"),
            ("moon 09-18=suspend", "\"moon\" is not a day"),
            ("mon 18-09=suspend", "must come before"),
            ("mon 09-25=suspend", "not an hour"),
            ("mon 09-18=sleep", "neither run nor suspend"),
            ("mon 09 18=suspend", "left over"),
        ] {
            let err = Schedule::parse(text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
        assert!(Schedule::parse(&"2".repeat(WEEK_HOURS)).is_err());
    }

    #[test]
    fn hours_until_the_next_change_wrap_around_the_week() {
        let s = parsed("mon 10-12=suspend");
        assert_eq!(s.hours_until_suspend(Schedule::slot(0, 9)), Some(1));
        assert_eq!(s.hours_until_suspend(Schedule::slot(0, 10)), Some(0));
        assert_eq!(s.hours_until_run(Schedule::slot(0, 10)), Some(2));
        assert_eq!(
            s.hours_until_suspend(Schedule::slot(0, 12)),
            Some(WEEK_HOURS - 2),
            "next week's monday 10:00"
        );
        let never = parsed("all=suspend");
        assert_eq!(never.hours_until_run(0), None);
    }

    #[test]
    fn a_saved_schedule_round_trips_as_its_grid() {
        let s = parsed("sun 23=suspend");
        let json = serde_json::to_string(&s).expect("serialises");
        assert_eq!(json.len(), WEEK_HOURS + 2);
        let back: Schedule = serde_json::from_str(&json).expect("reads back");
        assert_eq!(back, s);
        assert!(serde_json::from_str::<Schedule>("\"mon=suspend\"").is_err());
    }
}
