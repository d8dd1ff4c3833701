//! The master's children: a worker's pid, which can only ever name that one process, and the
//! pause between attempts to start a worker when none can be started.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A child process's id: always a single positive pid, so signalling it can never reach a
/// process group or, with -1, every process the master may signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildPid(Pid);

impl ChildPid {
    /// `None` unless `pid` is 1..=i32::MAX (`Child::id` is a `u32`; anything above i32::MAX
    /// would turn negative as a `pid_t`).
    pub fn new(pid: u32) -> Option<ChildPid> {
        i32::try_from(pid)
            .ok()
            .filter(|&p| p > 0)
            .map(|p| ChildPid(Pid::from_raw(p)))
    }

    /// The pid, for logs.
    pub fn raw(self) -> i32 {
        self.0.as_raw()
    }

    pub fn kill(self) {
        let _ = kill(self.0, Signal::SIGKILL);
    }
}

/// The pause before start attempt `n + 1` after `n` failures: 0.2 s, doubling, at most 5 s.
pub fn retry_delay(failures: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << failures.saturating_sub(1).min(5)))
        .min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::ChildPid;

    #[test]
    fn failed_starts_are_retried_with_backoff() {
        let ms = |n| super::retry_delay(n).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(6), ms(7), ms(40)],
            [200, 400, 800, 5000, 5000, 5000]
        );
    }

    #[test]
    fn a_child_pid_is_one_positive_pid() {
        assert_eq!(ChildPid::new(4242).map(ChildPid::raw), Some(4242));
        assert_eq!(ChildPid::new(0), None, "0 would signal the process group");
        assert_eq!(ChildPid::new(u32::MAX), None, "would be -1: every process");
        assert_eq!(
            ChildPid::new(1 << 31),
            None,
            "would be negative: a process group"
        );
    }
}
