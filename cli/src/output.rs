//! How results and errors are printed: the result on stdout, a one-line
//! `[command] key=value` summary on stderr, or one JSON document.

use pyro_workspace::Error;
use serde::Serialize;

/// Prints `value` as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("[error] cannot encode result: {e}"),
    }
}

/// Prints an error; returns the exit code: 2 for bad input (a usage
/// error), 1 for everything else.
pub fn error(as_json: bool, err: &Error) -> i32 {
    if as_json {
        json(&serde_json::json!({
            "ok": false,
            "error": { "kind": err.kind(), "message": err.to_string() },
        }));
    } else {
        eprintln!("[error] {err}");
    }
    if matches!(err, Error::InvalidArgument(_)) {
        2
    } else {
        1
    }
}

/// `~/x` instead of `/root/x` for paths under $HOME.
pub fn path(p: &std::path::Path) -> String {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    match home.as_deref().and_then(|h| p.strip_prefix(h).ok()) {
        Some(rest) => format!("~/{}", rest.display()),
        None => p.display().to_string(),
    }
}
