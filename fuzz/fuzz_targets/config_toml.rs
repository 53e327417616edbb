//! A config file: any text parses to a config or an error; a parsed config
//! validates or names its problem, and a valid one survives TOML again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use placement_center::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = Config::from_toml(text) else { return };
    if config.validate().is_ok() {
        let again = toml::to_string(&config).expect("a config serializes");
        assert_eq!(Config::from_toml(&again).expect("our own TOML parses"), config);
    }
});
