//! A backup file (what `--restore-from` reads): any bytes decode to a state
//! or to an error, and a decoded state reads back from its own encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use placement_center::backup;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(state) = backup::decode(data) {
        let again = backup::decode(&backup::encode(&state.encode_to_vec())).expect("our own encoding decodes");
        assert_eq!(again, state);
    }
});
