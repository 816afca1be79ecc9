//! The counts kept in this process: exact within it, the default, and the fallback of
//! `on_error: local`. Keyed like the shared store, with the same maths ([`super::step`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::{now_here, settle_cell, step, Cell, Charge, Decision, Now};

#[derive(Debug)]
pub struct Local {
    origin: Instant,
    cells: Mutex<Cells>,
}

#[derive(Debug)]
struct Cells {
    map: HashMap<String, Cell>,
    /// The size at which counts that no longer hold anything are dropped: one limit per
    /// header value (`value: "*"`) must not let clients grow the map without end.
    sweep_at: usize,
}

const FIRST_SWEEP: usize = 4_096;

impl Default for Local {
    fn default() -> Self {
        Local {
            origin: Instant::now(),
            cells: Mutex::new(Cells {
                map: HashMap::new(),
                sweep_at: FIRST_SWEEP,
            }),
        }
    }
}

impl Local {
    /// Checks every charge, then takes them all or none.
    pub fn check(&self, charges: &[Charge]) -> Decision {
        self.check_at(charges, now_here(self.origin))
    }

    fn check_at(&self, charges: &[Charge], now: Now) -> Decision {
        let mut guard = self.lock();
        if guard.map.len() >= guard.sweep_at {
            // A rate whose arrival time has passed, or a budget of an earlier day, counts
            // nothing: the same as no entry.
            guard.map.retain(|_, cell| match *cell {
                Cell::Tat { tat, .. } => tat > now.nanos,
                Cell::Used { day, .. } => day == now.day,
            });
            guard.sweep_at = (guard.map.len() * 2).max(FIRST_SWEEP);
        }
        let cells = &mut guard.map;
        let mut verdicts = Vec::with_capacity(charges.len());
        let mut taken = Vec::with_capacity(charges.len());
        for (index, c) in charges.iter().enumerate() {
            let (verdict, cell) = step(cells.get(&c.key).copied(), now, c.meter, c.cost);
            if !verdict.allowed {
                return Decision::Refused { index, verdict };
            }
            verdicts.push(verdict);
            taken.push(cell);
        }
        for (c, cell) in charges.iter().zip(taken) {
            cells.insert(c.key.clone(), cell);
        }
        Decision::Allowed {
            day: now.day,
            verdicts,
        }
    }

    /// Adds each delta to its charge's count (see [`settle_cell`]).
    pub fn settle(&self, settles: &[(Charge, i64)], day: u64) {
        let now = now_here(self.origin);
        let mut guard = self.lock();
        let cells = &mut guard.map;
        for (c, delta) in settles {
            if let Some(cell) = settle_cell(cells.get(&c.key).copied(), now, c.meter, day, *delta) {
                cells.insert(c.key.clone(), cell);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cells> {
        match self.cells.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}
