//! The polling period of a cloud task: how long after a pass ends the replica looks for remote
//! changes again (seed 002 "Polling period": at most one day; the default of ten
//! minutes). Local changes do not wait for it: the watcher triggers a pass.

use std::time::Duration;

use super::RuleError;

/// Seconds between the end of one pass and the next look at the remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PollPeriod(u32);

impl PollPeriod {
    /// Ten minutes.
    pub const DEFAULT_SECS: u32 = 600;
    /// One day (seed 002: "The maximum polling period is one day (86,400 seconds)").
    pub const MAX_SECS: u32 = 86_400;

    /// A period of `secs` seconds.
    ///
    /// # Errors
    /// Zero (the task would poll without pause) or more than a day; a value above the maximum is
    /// refused rather than clamped, so a typo is not silently turned into a day.
    pub fn try_from_secs(secs: u64) -> Result<PollPeriod, RuleError> {
        if secs == 0 {
            return Err(RuleError::PollPeriod {
                given: secs,
                problem: "the period is at least 1 second",
            });
        }
        match u32::try_from(secs) {
            Ok(s) if s <= Self::MAX_SECS => Ok(PollPeriod(s)),
            _ => Err(RuleError::PollPeriod {
                given: secs,
                problem: "the period is at most one day (86400 s)",
            }),
        }
    }

    pub fn as_secs(self) -> u32 {
        self.0
    }

    pub fn as_duration(self) -> Duration {
        Duration::from_secs(u64::from(self.0))
    }
}

impl Default for PollPeriod {
    fn default() -> Self {
        PollPeriod(Self::DEFAULT_SECS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_ten_minutes() {
        assert_eq!(
            PollPeriod::default().as_duration(),
            Duration::from_secs(600)
        );
    }

    #[test]
    fn bounds_are_one_second_and_one_day() {
        assert_eq!(PollPeriod::try_from_secs(1).map(PollPeriod::as_secs), Ok(1));
        assert_eq!(
            PollPeriod::try_from_secs(86_400).map(PollPeriod::as_secs),
            Ok(86_400)
        );
        for refused in [0, 86_401, u64::from(u32::MAX) + 1, u64::MAX] {
            assert!(PollPeriod::try_from_secs(refused).is_err(), "{refused}");
        }
        assert_eq!(
            PollPeriod::try_from_secs(86_401)
                .expect_err("the rule refuses it")
                .to_string(),
            "polling period 86401 s: the period is at most one day (86400 s)"
        );
    }
}
