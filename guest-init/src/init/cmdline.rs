//! `pyro.*` keys from the kernel command line.
//!
//! The kernel does not hand dotted `key=value` parameters to init as
//! environment, so they are read from `/proc/cmdline`.

use std::collections::HashMap;

/// The `pyro.*` parameters of this boot.
pub struct Args(HashMap<String, String>);

impl Args {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

/// Reads `/proc/cmdline`; an unreadable file means no parameters.
pub fn read() -> Args {
    let text = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    Args(parse(&text))
}

fn parse(text: &str) -> HashMap<String, String> {
    text.split_whitespace()
        .take_while(|word| *word != "--")
        .filter_map(|word| word.split_once('='))
        .filter(|(key, _)| key.starts_with("pyro."))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn keeps_only_pyro_keys_before_the_init_args() {
        let args = parse("console=ttyS0 pyro.mode=poweroff quiet pyro.x=1=2 -- pyro.y=3\n");
        assert_eq!(args.get("pyro.mode").map(String::as_str), Some("poweroff"));
        assert_eq!(args.get("pyro.x").map(String::as_str), Some("1=2"));
        assert!(!args.contains_key("pyro.y"));
        assert!(!args.contains_key("console"));
    }
}
