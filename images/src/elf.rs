//! Just enough ELF parsing to tell a static x86_64 executable from a
//! dynamically linked one (which would need a loader the image may lack).

/// Why a file is not a static x86_64 executable.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotStatic {
    NotElf,
    Not64BitLittleEndian,
    NotX86_64,
    NotExecutable,
    Truncated,
    /// It names a program interpreter (PT_INTERP): dynamically linked.
    Dynamic(String),
}

impl std::fmt::Display for NotStatic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotStatic::NotElf => write!(f, "not an ELF file"),
            NotStatic::Not64BitLittleEndian => write!(f, "not a 64-bit little-endian ELF file"),
            NotStatic::NotX86_64 => write!(f, "not an x86_64 binary"),
            NotStatic::NotExecutable => write!(f, "not an executable"),
            NotStatic::Truncated => write!(f, "truncated ELF file"),
            NotStatic::Dynamic(i) => write!(
                f,
                "dynamically linked (interpreter {i}); build it with RUSTFLAGS='-C target-feature=+crt-static'"
            ),
        }
    }
}

const PT_INTERP: u32 = 3;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Accepts static executables and static-pie (ET_DYN without PT_INTERP).
pub(crate) fn check_static_x86_64(b: &[u8]) -> Result<(), NotStatic> {
    if b.get(..4) != Some(b"\x7fELF") {
        return Err(NotStatic::NotElf);
    }
    if b.get(4) != Some(&2) || b.get(5) != Some(&1) {
        return Err(NotStatic::Not64BitLittleEndian);
    }
    let e_type = u16_at(b, 0x10).ok_or(NotStatic::Truncated)?;
    let machine = u16_at(b, 0x12).ok_or(NotStatic::Truncated)?;
    if machine != EM_X86_64 {
        return Err(NotStatic::NotX86_64);
    }
    if e_type != ET_EXEC && e_type != ET_DYN {
        return Err(NotStatic::NotExecutable);
    }
    let phoff = u64_at(b, 0x20).ok_or(NotStatic::Truncated)? as usize;
    let phentsize = u16_at(b, 0x36).ok_or(NotStatic::Truncated)? as usize;
    let phnum = u16_at(b, 0x38).ok_or(NotStatic::Truncated)? as usize;
    if phnum == 0 || phentsize < 56 {
        return Err(NotStatic::NotExecutable);
    }
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let p_type = u32_at(b, ph).ok_or(NotStatic::Truncated)?;
        if p_type == PT_INTERP {
            let off = u64_at(b, ph + 8).ok_or(NotStatic::Truncated)? as usize;
            let size = u64_at(b, ph + 32).ok_or(NotStatic::Truncated)? as usize;
            let interp = b
                .get(off..off.saturating_add(size))
                .map(|s| {
                    String::from_utf8_lossy(s)
                        .trim_end_matches('\0')
                        .to_string()
                })
                .unwrap_or_default();
            return Err(NotStatic::Dynamic(interp));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header with program headers of the given types.
    fn elf(e_type: u16, machine: u16, phdrs: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x10..0x12].copy_from_slice(&e_type.to_le_bytes());
        b[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        let interp_off = 64 + 56 * phdrs.len();
        for &t in phdrs {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&t.to_le_bytes());
            ph[8..16].copy_from_slice(&(interp_off as u64).to_le_bytes());
            ph[32..40].copy_from_slice(&12u64.to_le_bytes());
            b.extend(ph);
        }
        b.extend(b"/lib/ld.so\0\0");
        b
    }

    #[test]
    fn static_and_static_pie_pass() {
        assert_eq!(
            check_static_x86_64(&elf(ET_EXEC, EM_X86_64, &[1, 1])),
            Ok(())
        );
        assert_eq!(
            check_static_x86_64(&elf(ET_DYN, EM_X86_64, &[6, 1, 2])),
            Ok(())
        );
    }

    #[test]
    fn dynamic_and_foreign_fail() {
        assert_eq!(
            check_static_x86_64(&elf(ET_DYN, EM_X86_64, &[6, PT_INTERP, 1])),
            Err(NotStatic::Dynamic("/lib/ld.so".into()))
        );
        assert_eq!(
            check_static_x86_64(&elf(ET_EXEC, 183, &[1])),
            Err(NotStatic::NotX86_64)
        );
        assert_eq!(
            check_static_x86_64(&elf(1, EM_X86_64, &[1])),
            Err(NotStatic::NotExecutable)
        );
        assert_eq!(check_static_x86_64(b"#!/bin/sh\n"), Err(NotStatic::NotElf));
        let mut t = elf(ET_EXEC, EM_X86_64, &[1, 1]);
        t.truncate(100);
        assert_eq!(check_static_x86_64(&t), Err(NotStatic::Truncated));
    }

    #[test]
    fn host_binaries() {
        // Debian's /bin/sh is dynamically linked.
        if let Ok(b) = std::fs::read("/bin/sh") {
            assert!(matches!(
                check_static_x86_64(&b),
                Err(NotStatic::Dynamic(_))
            ));
        }
    }
}
