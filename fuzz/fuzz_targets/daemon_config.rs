//! Fuzz the daemon's configuration file as `arbiterd` reads it (`Config::from_toml`: TOML,
//! then the `--set KEY=VALUE` overrides, then validation). The input is the file's text,
//! then optionally a NUL byte and one override per line. Beyond "no panic": an accepted
//! configuration validates again, written back as TOML it reads back as the same
//! configuration, and it differs from itself in no key (`changed_keys`, which SIGHUP
//! reloading relies on).
#![no_main]

use arbiter_daemon::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (file, overrides) = text.split_once('\0').unwrap_or((text, ""));
    let overrides: Vec<String> = overrides.lines().map(str::to_owned).collect();
    let Ok(config) = Config::from_toml(file, &overrides) else {
        return;
    };
    config
        .validate()
        .expect("an accepted configuration validates");
    let again = toml::to_string(&config).expect("a configuration serialises");
    let reread = Config::from_toml(&again, &[])
        .unwrap_or_else(|e| panic!("the configuration written back does not read: {e}\n{again}"));
    assert_eq!(reread, config, "written back:\n{again}");
    assert_eq!(config.changed_keys(&config), Vec::<String>::new());
    for key in config.changed_keys(&Config::default()) {
        let _ = Config::reloadable(&key);
    }
});
