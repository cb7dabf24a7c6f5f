//! `cheaper`: the adaptive worker count, uWSGI's `spare` algorithm
//! (`core/master_utils.c`, `uwsgi_cheaper_algo_spare`), pure and table-tested. The
//! master's policy asks it once per master cycle (a second) what to do, given how many
//! workers run and how many of them are busy (a request running).
//!
//! The rules, as uWSGI's:
//!
//! - every running worker busy: `overload` goes up by one (and the idle count resets);
//!   any idle worker: `overload` goes down by one;
//! - `overload` above `cheaper-overload` (and room below `processes`): add
//!   `cheaper-step` workers, and `overload` starts again from 0;
//! - `overload` at 0: if exactly one worker is idle, that is the stable state; otherwise
//!   the idle count goes up, and every `cheaper-overload` idle cycles one worker is
//!   retired, down to `cheaper`.

/// The settings of the algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cheaper {
    /// `cheaper`: the fewest workers.
    pub min: usize,
    /// `cheaper-initial`: workers at start.
    pub initial: usize,
    /// `cheaper-step`: workers added at once.
    pub step: usize,
    /// `cheaper-overload`: cycles.
    pub overload: u64,
}

/// The algorithm's memory between cycles (uWSGI keeps it in static variables).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spare {
    /// Cycles of overload (see the module doc).
    pub overload_count: u64,
    /// Idle cycles since the last overload.
    pub idle_count: u64,
}

/// What a cycle decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing.
    Keep,
    /// Add this many workers.
    Add(usize),
    /// Retire one idle worker.
    RetireOne,
}

impl Spare {
    /// One master cycle: `running` workers, `busy` of them serving a request, at most
    /// `max` (`processes`).
    pub fn cycle(&mut self, c: &Cheaper, running: usize, busy: usize, max: usize) -> Decision {
        if running > busy {
            self.overload_count = self.overload_count.saturating_sub(1);
        } else {
            self.overload_count += 1;
            self.idle_count = 0;
        }
        if running < max && self.overload_count > c.overload {
            self.overload_count = 0;
            return Decision::Add(c.step.min(max - running));
        }
        if self.overload_count == 0 {
            if running > busy && running - busy == 1 {
                return Decision::Keep;
            }
            self.idle_count += 1;
            if running > c.min && self.idle_count % c.overload.max(1) == 0 {
                return Decision::RetireOne;
            }
        }
        Decision::Keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;

    /// cheaper 2, step 2, overload 3, processes 10: uWSGI's own example.
    const C: Cheaper = Cheaper {
        min: 2,
        initial: 2,
        step: 2,
        overload: 3,
    };

    /// Cycles in a row from a fresh state: (running, busy) => decision.
    #[test]
    fn spare_cycles_as_uwsgi() {
        type Case = (&'static str, &'static [((usize, usize), Decision)]);
        let cases: &[Case] = &[
            (
                "all busy for more than 3 cycles: add a step",
                &[
                    ((2, 2), Keep),
                    ((2, 2), Keep),
                    ((2, 2), Keep),
                    ((2, 2), Add(2)),
                ],
            ),
            (
                "the step is capped at processes",
                &[
                    ((9, 9), Keep),
                    ((9, 9), Keep),
                    ((9, 9), Keep),
                    ((9, 9), Add(1)),
                ],
            ),
            (
                "at processes nothing is added",
                &[
                    ((10, 10), Keep),
                    ((10, 10), Keep),
                    ((10, 10), Keep),
                    ((10, 10), Keep),
                    ((10, 10), Keep),
                ],
            ),
            (
                "one idle worker is the stable state",
                &[
                    ((4, 3), Keep),
                    ((4, 3), Keep),
                    ((4, 3), Keep),
                    ((4, 3), Keep),
                ],
            ),
            (
                "idle: one retired every 3 cycles",
                &[
                    ((4, 0), Keep),
                    ((4, 0), Keep),
                    ((4, 0), RetireOne),
                    ((3, 0), Keep),
                    ((3, 0), Keep),
                    ((3, 0), RetireOne),
                ],
            ),
            (
                "never below cheaper",
                &[
                    ((2, 0), Keep),
                    ((2, 0), Keep),
                    ((2, 0), Keep),
                    ((2, 0), Keep),
                ],
            ),
            (
                "an idle worker wears the overload down before retiring starts",
                &[
                    ((3, 3), Keep),
                    ((3, 3), Keep),
                    ((3, 0), Keep),
                    ((3, 0), Keep),
                    ((3, 0), Keep),
                    ((3, 0), RetireOne),
                ],
            ),
        ];
        for (name, steps) in cases {
            let mut s = Spare::default();
            for (i, ((running, busy), want)) in steps.iter().enumerate() {
                assert_eq!(s.cycle(&C, *running, *busy, 10), *want, "{name}: cycle {i}");
            }
        }
    }
}
