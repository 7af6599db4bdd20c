//! File access of a confined thread, with Landlock where the kernel has
//! it: a thread may open, make or remove files only beneath the
//! directories its kind needs at run time ([`Files`]), and nothing else.
//! Descriptors opened during set-up (disk images, `/dev/kvm`, the
//! snapshot's memory file) are not affected: Landlock checks opens, not
//! the use of what is already open.
//!
//! Like seccomp, a Landlock domain binds the calling thread and the
//! threads it starts later, so a VM inside the CLI or the MCP server
//! restricts its own threads only.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where one thread may touch files after set-up.
#[derive(Debug, Clone, Default)]
pub struct Files {
    /// Read, write, make and remove files beneath these.
    pub read_write: Vec<PathBuf>,
    /// Read beneath these.
    pub read_only: Vec<PathBuf>,
}

impl Files {
    /// No file at all.
    pub fn none() -> Files {
        Files::default()
    }
}

// linux/landlock.h
const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
const REMOVE_DIR: u64 = 1 << 4;
const REMOVE_FILE: u64 = 1 << 5;
const MAKE_CHAR: u64 = 1 << 6;
const MAKE_DIR: u64 = 1 << 7;
const MAKE_REG: u64 = 1 << 8;
const MAKE_SOCK: u64 = 1 << 9;
const MAKE_FIFO: u64 = 1 << 10;
const MAKE_BLOCK: u64 = 1 << 11;
const MAKE_SYM: u64 = 1 << 12;
/// ABI 2.
const REFER: u64 = 1 << 13;
/// ABI 3.
const TRUNCATE: u64 = 1 << 14;
/// ABI 5.
const IOCTL_DEV: u64 = 1 << 15;
const RULE_PATH_BENEATH: u32 = 1;
const CREATE_RULESET_VERSION: u32 = 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// Landlock's ABI version, or `None` where the kernel lacks or disables
/// it.
pub fn abi() -> Option<i64> {
    // SAFETY: with a null attr, size 0 and the VERSION flag the call only
    // returns a number; it reads no memory.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    (v > 0).then_some(v)
}

/// Every access right `abi` knows: all of them are handled (denied
/// unless a rule allows them).
fn handled(abi: i64) -> u64 {
    let mut all = EXECUTE
        | WRITE_FILE
        | READ_FILE
        | READ_DIR
        | REMOVE_DIR
        | REMOVE_FILE
        | MAKE_CHAR
        | MAKE_DIR
        | MAKE_REG
        | MAKE_SOCK
        | MAKE_FIFO
        | MAKE_BLOCK
        | MAKE_SYM;
    if abi >= 2 {
        all |= REFER;
    }
    if abi >= 3 {
        all |= TRUNCATE;
    }
    if abi >= 5 {
        all |= IOCTL_DEV;
    }
    all
}

fn read_write(abi: i64) -> u64 {
    let rw = WRITE_FILE
        | READ_FILE
        | READ_DIR
        | REMOVE_DIR
        | REMOVE_FILE
        | MAKE_DIR
        | MAKE_REG
        | MAKE_SOCK
        | REFER
        | TRUNCATE;
    rw & handled(abi)
}

const READ_ONLY: u64 = READ_FILE | READ_DIR;

fn os(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Restricts the calling thread to `files` (see the module docs). The
/// caller has set no_new_privs. Without Landlock, returns `Ok(false)`:
/// file access stays as it was (`pyro doctor` says so).
pub fn restrict(files: &Files) -> Result<bool, String> {
    let Some(abi) = abi() else {
        return Ok(false);
    };
    let attr = RulesetAttr {
        handled_access_fs: handled(abi),
    };
    // SAFETY: reads `attr` (its size passed), which lives across the
    // call; returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            std::mem::size_of::<RulesetAttr>(),
            0u32,
        )
    };
    if fd < 0 {
        return Err(os("landlock_create_ruleset"));
    }
    // SAFETY: `fd` is a new descriptor that only we own.
    let ruleset = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let rules = files
        .read_write
        .iter()
        .map(|p| (p, read_write(abi)))
        .chain(files.read_only.iter().map(|p| (p, READ_ONLY)));
    for (path, access) in rules {
        add_rule(&ruleset, path, access)?;
    }
    // SAFETY: takes the ruleset descriptor and flags; no memory.
    if unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) } != 0 {
        return Err(os("landlock_restrict_self"));
    }
    Ok(true)
}

/// Allows `access` beneath `path`; a path that does not exist is
/// skipped (nothing can be opened there anyway), and a file gets only
/// the rights that apply to files.
fn add_rule(ruleset: &OwnedFd, path: &Path, access: u64) -> Result<(), String> {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return Ok(());
    };
    // SAFETY: `c` is a valid C string; O_PATH opens without reading.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Ok(());
    }
    // SAFETY: `fd` is a new descriptor that only we own.
    let parent = unsafe { OwnedFd::from_raw_fd(fd) };
    let access = if path.is_dir() {
        access
    } else {
        access & (WRITE_FILE | READ_FILE | TRUNCATE | EXECUTE)
    };
    let attr = PathBeneathAttr {
        allowed_access: access,
        parent_fd: parent.as_raw_fd(),
    };
    // SAFETY: reads `attr`, which lives across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            RULE_PATH_BENEATH,
            &attr as *const PathBeneathAttr,
            0u32,
        )
    };
    if rc != 0 {
        return Err(os(&format!("landlock_add_rule {}", path.display())));
    }
    Ok(())
}

/// What the name-lookup thread reads: the resolver's files, NSS modules.
pub fn resolver_files() -> Files {
    Files {
        read_write: Vec::new(),
        read_only: ["/etc", "/usr/lib", "/lib", "/lib64", "/usr/lib64"]
            .iter()
            .map(PathBuf::from)
            .collect(),
    }
}
