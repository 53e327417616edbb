//! The state machine against the naive model (`state::model`): any sequence
//! of writes (puts with and without leases, deletes, txns, lease grants and
//! revokes, compactions) and reads at any revision gives the same result in
//! both, step by step, and the same keys, leases and revisions at the end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use placement_center::state::model::{self, Model, Op};
use placement_center::state::KvState;

fuzz_target!(|data: &[u8]| {
    let mut state = KvState::new();
    let mut model = Model::new();
    for op in Op::from_bytes(data) {
        if let Err(difference) = model::step(&mut state, &mut model, &op) {
            panic!("{difference}");
        }
    }
    if let Err(difference) = model::same_end(&state, &model) {
        panic!("{difference}");
    }
});
