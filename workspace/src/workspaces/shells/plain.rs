//! `shell read --plain`: terminal output rendered the way a terminal
//! would show it, through a real terminal emulator (`vt100`), so `\r`
//! redraws, erased lines, colours and cursor moves come out as the
//! final text instead of escape codes. Rendered on the host, where the
//! bytes arrive: the rendering is a function of the bytes read, and the
//! guest's PID 1 stays small.

use std::num::NonZeroU16;

/// Bytes fed to the emulator between two harvests of its scrollback:
/// a piece of this many bytes can scroll at most this many lines, so
/// with a scrollback of twice as many nothing is lost between harvests,
/// and memory stays bounded however many lines the output has.
const PIECE: usize = 1024;

/// The text `bytes` leave on a terminal `cols` wide (and `rows` high)
/// that starts blank: every line written, in order, lines that scrolled
/// off included; trailing blanks and blank last lines trimmed. A line
/// the terminal wrapped is one line here.
pub fn render(bytes: &[u8], cols: u16, rows: u16) -> String {
    let cols = NonZeroU16::new(cols).unwrap_or(NonZeroU16::MIN);
    let rows = NonZeroU16::new(rows).unwrap_or(NonZeroU16::MIN);
    let mut parser = vt100::Parser::new(rows, cols, 2 * PIECE);
    let mut lines = Lines::default();
    for piece in bytes.chunks(PIECE) {
        parser.process(piece);
        harvest_scrollback(parser.screen_mut(), &mut lines);
    }
    let screen = parser.screen_mut();
    screen.set_scrollback(0);
    let visible: Vec<String> = screen.rows(0, cols.get()).collect();
    for (i, row) in visible.into_iter().enumerate() {
        lines.push(row, screen.row_wrapped(i as u16));
    }
    lines.finish()
}

/// Moves the rows that scrolled off the top into `lines`.
fn harvest_scrollback(screen: &mut vt100::Screen, lines: &mut Lines) {
    let len = screen.scrollback_len();
    if len == 0 {
        return;
    }
    let (rows, cols) = screen.size();
    let mut first = 0;
    while first < len {
        // Scrolled back by `len - first`, the first visible row is
        // scrollback row `first`.
        screen.set_scrollback(len - first);
        let page: Vec<String> = screen.rows(0, cols.get()).collect();
        for (i, row) in page.into_iter().enumerate().take(len - first) {
            lines.push(row, screen.row_wrapped(i as u16));
        }
        first += usize::from(rows.get());
    }
    screen.set_scrollback(0);
    screen.clear_scrollback();
}

#[derive(Default)]
struct Lines {
    text: String,
    /// The last row wrapped: the next one continues its line.
    continued: bool,
}

impl Lines {
    fn push(&mut self, row: String, wrapped: bool) {
        if !self.text.is_empty() && !self.continued {
            self.text.push('\n');
        }
        if wrapped {
            self.text.push_str(&row);
        } else {
            self.text.push_str(row.trim_end());
        }
        self.continued = wrapped;
    }

    fn finish(self) -> String {
        let mut text = self.text;
        let trimmed = text.trim_end_matches([' ', '\n']).len();
        text.truncate(trimmed);
        if !text.is_empty() {
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn carriage_return_redraws_leave_the_last_frame() {
        let out = b"pyro$ ./progress\r\nprogress 1/5\rprogress 2/5\rprogress 5/5\r\ndone\r\npyro$ ";
        assert_eq!(
            render(out, 80, 24),
            "pyro$ ./progress\nprogress 5/5\ndone\npyro$\n"
        );
    }

    #[test]
    fn colours_erases_and_backspaces_are_applied_not_shown() {
        let out =
            b"\x1b[1;31mred\x1b[0m text\r\nabcdef\x1b[3D\x1b[Kxy\r\nab\x08c\r\n\x1b[?2004hpyro$ ";
        assert_eq!(render(out, 80, 24), "red text\nabcxy\nac\npyro$\n");
    }

    #[test]
    fn long_output_keeps_lines_that_scrolled_off_and_wrapped_lines_whole() {
        let mut out = Vec::new();
        for i in 0..5000 {
            out.extend_from_slice(format!("line {i}\r\n").as_bytes());
        }
        out.extend_from_slice(&[b'x'; 25]);
        let text = render(&out, 10, 5);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5001);
        assert_eq!(lines[0], "line 0");
        assert_eq!(lines[4999], "line 4999");
        assert_eq!(lines[5000], "x".repeat(25), "a wrapped line stays one line");
    }

    #[test]
    fn a_full_screen_redraw_shows_the_screen() {
        let out = b"old junk\r\n\x1b[2J\x1b[H top\x1b[3;1Hthird row\x1b[1;1HT";
        // Clearing the screen erases what was on it (nothing scrolls).
        assert_eq!(render(out, 20, 5), "Ttop\n\nthird row\n");
    }

    #[test]
    fn nothing_renders_as_nothing() {
        assert_eq!(render(b"", 80, 24), "");
        assert_eq!(render(b"\x1b[0m", 80, 24), "");
    }
}
