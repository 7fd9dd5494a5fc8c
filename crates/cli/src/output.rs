//! What the CLI prints about names that came from disks or servers: control characters are
//! escaped so that a file name can never move the cursor, clear the screen or forge a line of
//! output in the user's terminal.

use std::borrow::Cow;
use std::path::Path;

/// `text` with every control character (C0, DEL, C1) and backslash written as an escape
/// (`\n`, `\x1b`, `\u{9b}`, `\\`); unchanged (and not copied) when there is none.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` with control characters escaped and backslashes left alone: for text that was
/// escaped when it was written (the task logs), so it is not escaped twice.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.split('\\')
            .map(|part| escape(part).into_owned())
            .collect::<Vec<_>>()
            .join("\\"),
    )
}

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\\'
}

/// A local path for the terminal: escaped, and lossy where it is not UTF-8.
pub fn escape_path(path: &Path) -> String {
    escape(&path.to_string_lossy()).into_owned()
}

/// Makes a closed standard output or error (`cairn status | head -1`) end the program quietly
/// with status 0, as `head` expects of the command it reads from (ripgrep does the same); every
/// other panic keeps the default report.
///
/// Rust ignores SIGPIPE, so a write to a closed pipe fails with EPIPE and the print macros
/// panic. Restoring the signal's default would need `unsafe` (forbidden here), and catching
/// every print would touch every command; the panic is the one place all of them meet.
pub fn exit_quietly_on_closed_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if is_closed_pipe(info.payload()) {
            std::process::exit(0);
        }
        report(info);
    }));
}

/// True for the panic of a print macro whose stream was closed by its reader.
fn is_closed_pipe(payload: &(dyn std::any::Any + Send)) -> bool {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    text.starts_with("failed printing to std") && text.contains("Broken pipe")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("plain name.txt"), "plain name.txt");
        assert_eq!(escape("a\nb"), "a\\nb");
        assert_eq!(escape("\u{1b}[2Jwiped"), "\\x1b[2Jwiped");
        assert_eq!(escape("c1\u{9b}31m"), "c1\\u{9b}31m");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        assert_eq!(escape("del\u{7f}"), "del\\x7f");
        assert_eq!(escape("café ✓"), "café ✓");
        assert_eq!(escape_controls("a\\x1b\u{1b}"), "a\\x1b\\x1b");
    }

    #[test]
    fn only_the_panic_of_a_print_to_a_closed_pipe_is_quiet() {
        let closed: String = "failed printing to stdout: Broken pipe (os error 32)".into();
        assert!(is_closed_pipe(&closed));
        assert!(!is_closed_pipe(
            &"failed printing to stdout: No space left on device"
        ));
        assert!(!is_closed_pipe(&"index out of bounds"));
        assert!(!is_closed_pipe(&42_u32));
    }
}
