//! The shell's prompt marker: bash runs `PROMPT_COMMAND` before each
//! prompt, which prints [`MARKER`], an OSC sequence no terminal shows.
//! The agent takes it out of the output and so knows when the shell is
//! back at its prompt: a command typed has finished. Idle waits use it
//! (a command that is silent for a while, as one starting up on a slow
//! guest is, has not finished).

/// Printed before each prompt (`ESC ] 6973 ; pyro-prompt BEL`).
pub const MARKER: &[u8] = b"\x1b]6973;pyro-prompt\x07";
/// The `PROMPT_COMMAND` that prints it.
pub const PROMPT_COMMAND: &str = r"printf '\033]6973;pyro-prompt\007'";

/// Takes markers out of a stream that arrives in pieces.
#[derive(Default)]
pub struct Markers {
    /// The end of the last piece, if it could be the start of a marker.
    held: Vec<u8>,
}

impl Markers {
    /// The output in `piece` (after what was held back) without
    /// markers, and how many markers it had. The bytes at its end that
    /// may begin a marker are held back for the next piece.
    pub fn strip(&mut self, piece: &[u8]) -> (Vec<u8>, usize) {
        let mut data = std::mem::take(&mut self.held);
        data.extend_from_slice(piece);
        let mut out = Vec::with_capacity(data.len());
        let mut found = 0;
        let mut i = 0;
        while i < data.len() {
            if data[i..].starts_with(MARKER) {
                found += 1;
                i += MARKER.len();
            } else if MARKER.starts_with(&data[i..]) {
                self.held = data[i..].to_vec();
                break;
            } else {
                out.push(data[i]);
                i += 1;
            }
        }
        (out, found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_taken_out_also_when_split_across_pieces() {
        let mut m = Markers::default();
        let (out, n) = m.strip(b"done\r\n\x1b]6973;pyro-prompt\x07pyro$ ");
        assert_eq!((&out[..], n), (&b"done\r\npyro$ "[..], 1));
        let (out, n) = m.strip(b"ls\r\n\x1b]69");
        assert_eq!((&out[..], n), (&b"ls\r\n"[..], 0));
        let (out, n) = m.strip(b"73;pyro-prompt\x07pyro$ ");
        assert_eq!((&out[..], n), (&b"pyro$ "[..], 1));
        // A prefix that turns out not to be a marker is output.
        let (out, _) = m.strip(b"\x1b]");
        assert!(out.is_empty());
        let (out, n) = m.strip(b"0;title\x07");
        assert_eq!((&out[..], n), (&b"\x1b]0;title\x07"[..], 0));
    }
}
